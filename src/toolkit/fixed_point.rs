//! Fixed-point requantization: a real multiplier as `M0 * 2^(shift - 31)` and the three ways
//! TFLite builds multiply an i32 accumulator by it.
//!
//! A real multiplier `M > 0` is stored as an i32 `M0` in `[2^30, 2^31)` (a Q0.31 fraction in
//! `[0.5, 1)`) and a power-of-two `shift`, so that `M ~= M0 * 2^(shift - 31)`
//! ([`QuantizedMultiplier::from_real`], TFLite's `QuantizeMultiplier`). Multiplying an
//! accumulator `x` by `M` then needs only integer operations; the builds differ in how they
//! round ([`Rounding`]).
//!
//! ```
//! use hybridq::toolkit::fixed_point::{QuantizedMultiplier, Rounding};
//!
//! let m = QuantizedMultiplier::from_real(0.75)?;
//! assert_eq!((m.m0(), m.shift()), (3 << 29, 0)); // 0.75 = (3 * 2^29) * 2^(0 - 31)
//! assert_eq!(m.apply(100, Rounding::Gemmlowp), 75);
//! // -2 * 0.75 = -1.5: gemmlowp rounds the tie away from zero, ruy and single rounding up.
//! let half = QuantizedMultiplier::from_real(0.375)?; // M0 = 0.75 * 2^31, shift -1
//! assert_eq!(half.apply(-4, Rounding::Gemmlowp), -2);
//! assert_eq!(half.apply(-4, Rounding::Ruy), -1);
//! assert_eq!(half.apply(-4, Rounding::Single), -1);
//! # Ok::<(), hybridq::Error>(())
//! ```

use crate::error::{Error, Result};

/// Smallest shift a [`QuantizedMultiplier`] holds: `M0 * 2^-62` is the smallest multiplier kept
/// (TFLite flushes smaller ones to zero).
pub const MIN_SHIFT: i32 = -31;

/// Largest shift a [`QuantizedMultiplier`] holds (a left shift by 30 before the high multiply).
/// TFLite's double-rounding path would shift an i32 by 31 or more, which is undefined in C++;
/// hybridq refuses such multipliers (`M >= 2^30`) instead.
pub const MAX_SHIFT: i32 = 30;

/// How `x * M0 * 2^(shift - 31)` is rounded to an integer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Rounding {
    /// gemmlowp's double rounding, TFLite's reference default: `x << max(shift, 0)` (i32,
    /// wrapping), [`saturating_rounding_doubling_high_mul`] (ties up), then
    /// [`rounding_divide_by_pot`] by `max(-shift, 0)` (ties away from zero).
    Gemmlowp,
    /// `TFLITE_SINGLE_ROUNDING`: one rounding shift of the exact 64-bit product,
    /// `(x * M0 + 2^(30 - shift)) >> (31 - shift)` (ties up), truncated to i32.
    Single,
    /// ruy (what TFLite's optimized x86-64 int8 kernels use): like [`Rounding::Gemmlowp`], but
    /// the final shift is [`ruy_rounding_right_shift`] (ties toward +infinity).
    #[default]
    Ruy,
}

impl Rounding {
    /// Every rounding, for tests and tables.
    pub const ALL: [Rounding; 3] = [Rounding::Gemmlowp, Rounding::Single, Rounding::Ruy];
}

/// A real multiplier `M ~= m0 * 2^(shift - 31)`, with `m0` in `[2^30, 2^31)` or zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantizedMultiplier {
    m0: i32,
    shift: i32,
}

impl QuantizedMultiplier {
    /// TFLite's `QuantizeMultiplier(double)`:
    ///
    /// 1. `M == 0` gives `(0, 0)`;
    /// 2. `frexp` splits `M = q * 2^e` with `q` in `[0.5, 1)`; `m0 = round_away(q * 2^31)`;
    /// 3. if `m0` rounded up to `2^31`, it becomes `2^30` and `e + 1`;
    /// 4. if `e < -31` the multiplier is flushed to `(0, 0)`.
    ///
    /// Errors ([`Error::InvalidArgument`]): `M` negative, NaN or infinite (TFLite asserts
    /// instead), or `M >= 2^30` rounded (a shift above [`MAX_SHIFT`]).
    ///
    /// ```
    /// use hybridq::toolkit::fixed_point::QuantizedMultiplier;
    /// let m = QuantizedMultiplier::from_real(1.0)?;
    /// assert_eq!((m.m0(), m.shift()), (1 << 30, 1));
    /// // rounds up to 2^31: renormalised to 2^30 with one more in the shift
    /// let m = QuantizedMultiplier::from_real(1.0 - 1e-12)?;
    /// assert_eq!((m.m0(), m.shift()), (1 << 30, 1));
    /// // tiny multipliers flush to zero
    /// assert_eq!(QuantizedMultiplier::from_real(1e-12)?.m0(), 0);
    /// assert!(QuantizedMultiplier::from_real(-0.5).is_err());
    /// assert!(QuantizedMultiplier::from_real(f64::NAN).is_err());
    /// # Ok::<(), hybridq::Error>(())
    /// ```
    pub fn from_real(real: f64) -> Result<Self> {
        const OP: &str = "QuantizedMultiplier::from_real";
        if !real.is_finite() || real < 0.0 {
            return Err(Error::invalid(
                OP,
                format!("a multiplier must be finite and >= 0, got {real}"),
            ));
        }
        if real == 0.0 {
            return Ok(Self { m0: 0, shift: 0 });
        }
        let (q, mut e) = frexp(real);
        let mut q_fixed = (q * 2f64.powi(31)).round() as i64;
        debug_assert!(q_fixed <= 1 << 31);
        if q_fixed == 1 << 31 {
            q_fixed = 1 << 30;
            e += 1;
        }
        if e < MIN_SHIFT {
            return Ok(Self { m0: 0, shift: 0 });
        }
        if e > MAX_SHIFT {
            return Err(Error::invalid(
                OP,
                format!("multiplier {real} needs a shift of {e} > {MAX_SHIFT}"),
            ));
        }
        Ok(Self {
            m0: q_fixed as i32,
            shift: e,
        })
    }

    /// A multiplier from its parts, for pre-computed values.
    ///
    /// Errors: `m0 < 0`, or `shift` outside [`MIN_SHIFT`]`..=`[`MAX_SHIFT`].
    ///
    /// ```
    /// use hybridq::toolkit::fixed_point::QuantizedMultiplier;
    /// assert_eq!(QuantizedMultiplier::from_parts(1 << 30, -3)?.to_f64(), 0.0625);
    /// assert!(QuantizedMultiplier::from_parts(-1, 0).is_err());
    /// assert!(QuantizedMultiplier::from_parts(1 << 30, 31).is_err());
    /// # Ok::<(), hybridq::Error>(())
    /// ```
    pub fn from_parts(m0: i32, shift: i32) -> Result<Self> {
        if m0 < 0 || !(MIN_SHIFT..=MAX_SHIFT).contains(&shift) {
            return Err(Error::invalid(
                "QuantizedMultiplier::from_parts",
                format!(
                    "need m0 >= 0 and {MIN_SHIFT} <= shift <= {MAX_SHIFT}, got ({m0}, {shift})"
                ),
            ));
        }
        Ok(Self { m0, shift })
    }

    /// The Q0.31 mantissa `M0`.
    pub fn m0(self) -> i32 {
        self.m0
    }

    /// The power-of-two exponent (positive: left shift).
    pub fn shift(self) -> i32 {
        self.shift
    }

    /// The represented multiplier `m0 * 2^(shift - 31)`, exactly (it fits an f64).
    pub fn to_f64(self) -> f64 {
        self.m0 as f64 * 2f64.powi(self.shift - 31)
    }

    /// `x * M` rounded as `rounding` says ([`multiply_by_quantized_multiplier`]).
    #[inline]
    pub fn apply(self, x: i32, rounding: Rounding) -> i32 {
        multiply_by_quantized_multiplier(x, self.m0, self.shift, rounding)
    }
}

/// `frexp` for finite positive `v`: `v = q * 2^e` with `q` in `[0.5, 1)`.
fn frexp(v: f64) -> (f64, i32) {
    debug_assert!(v.is_finite() && v > 0.0);
    let bits = v.to_bits();
    let exp_bits = ((bits >> 52) & 0x7ff) as i32;
    if exp_bits == 0 {
        // subnormal: scale into the normal range first
        let (q, e) = frexp(v * 2f64.powi(64));
        return (q, e - 64);
    }
    let e = exp_bits - 1022;
    let q = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (q, e)
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul`: `a * b / 2^31` rounded half toward
/// +infinity, with `i32::MIN * i32::MIN` saturated to `i32::MAX`.
///
/// It is computed literally as gemmlowp does: a nudge of `2^30` (or `1 - 2^30` for a negative
/// product), then a division that truncates toward zero.
///
/// ```
/// use hybridq::toolkit::fixed_point::saturating_rounding_doubling_high_mul as srdhm;
/// assert_eq!(srdhm(3, 1 << 30), 2); // 1.5 -> 2
/// assert_eq!(srdhm(-3, 1 << 30), -1); // -1.5 -> -1
/// assert_eq!(srdhm(-1, 1 << 30), 0); // -0.5 -> 0
/// assert_eq!(srdhm(i32::MIN, i32::MIN), i32::MAX);
/// ```
#[inline]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let p = a as i64 * b as i64;
    let nudge: i64 = if p >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    ((p + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent` rounded half away from zero, for
/// `exponent` in `0..=31` (values outside are clamped into it).
///
/// ```
/// use hybridq::toolkit::fixed_point::rounding_divide_by_pot as rdbpot;
/// assert_eq!(rdbpot(5, 1), 3); // 2.5 -> 3
/// assert_eq!(rdbpot(-5, 1), -3); // -2.5 -> -3
/// assert_eq!(rdbpot(-7, 2), -2); // -1.75 -> -2
/// ```
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let exponent = exponent.clamp(0, 31) as u32;
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// ruy's `RoundingRightShift`: `x / 2^exponent` rounded half toward +infinity, for `exponent`
/// in `0..=31` (clamped into it); where `x + 2^(exponent-1)` would overflow the result is
/// `2^(31 - exponent)`, which is the exact rounded value.
///
/// ```
/// use hybridq::toolkit::fixed_point::ruy_rounding_right_shift as rrs;
/// assert_eq!(rrs(5, 1), 3); // 2.5 -> 3
/// assert_eq!(rrs(-5, 1), -2); // -2.5 -> -2 (gemmlowp: -3)
/// assert_eq!(rrs(i32::MAX, 4), 1 << 27);
/// ```
#[inline]
pub fn ruy_rounding_right_shift(x: i32, exponent: i32) -> i32 {
    let exponent = exponent.clamp(0, 31) as u32;
    if exponent == 0 {
        return x;
    }
    let nudge = 1i32 << (exponent - 1);
    if x > i32::MAX - nudge {
        return 1i32 << (31 - exponent);
    }
    (x + nudge) >> exponent
}

/// TFLite's `MultiplyByQuantizedMultiplier(x, M0, shift)` in the chosen [`Rounding`]:
///
/// - [`Rounding::Gemmlowp`] and [`Rounding::Ruy`]:
///   `a = x * 2^max(shift, 0)` in i32 (wrapping, as the C++ overflows),
///   `h = SRDHM(a, M0)`, then the rounding right shift by `max(-shift, 0)`;
/// - [`Rounding::Single`]: `(x * M0 + 2^(30 - shift)) >> (31 - shift)` in i64, truncated to
///   i32 (wrapping where it does not fit).
///
/// `shift` is clamped to [`MIN_SHIFT`]`..=`[`MAX_SHIFT`] (values a [`QuantizedMultiplier`]
/// never holds), so this function never panics.
///
/// ```
/// use hybridq::toolkit::fixed_point::{multiply_by_quantized_multiplier as mbqm, Rounding};
/// // M0 = 2^30 (0.5) with shift -2: x / 8
/// assert_eq!(mbqm(-12, 1 << 30, -2, Rounding::Gemmlowp), -2); // -1.5 -> -2
/// assert_eq!(mbqm(-12, 1 << 30, -2, Rounding::Ruy), -1);
/// assert_eq!(mbqm(-12, 1 << 30, -2, Rounding::Single), -1);
/// assert_eq!(mbqm(100, 1 << 30, 3, Rounding::Gemmlowp), 400);
/// ```
#[inline]
pub fn multiply_by_quantized_multiplier(x: i32, m0: i32, shift: i32, rounding: Rounding) -> i32 {
    let shift = shift.clamp(MIN_SHIFT, MAX_SHIFT);
    match rounding {
        Rounding::Single => {
            let total = (31 - shift) as u32;
            let p = x as i64 * m0 as i64 + (1i64 << (total - 1));
            (p >> total) as i32
        }
        Rounding::Gemmlowp | Rounding::Ruy => {
            let left = shift.max(0) as u32;
            let right = (-shift).max(0);
            let a = x.wrapping_mul(1i32 << left);
            let h = saturating_rounding_doubling_high_mul(a, m0);
            if rounding == Rounding::Gemmlowp {
                rounding_divide_by_pot(h, right)
            } else {
                ruy_rounding_right_shift(h, right)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frexp_matches_definition() {
        for v in [1.0, 0.5, 0.75, 3.0, 1e-300, 5e-324, 1e300, 0.1] {
            let (q, e) = frexp(v);
            assert!((0.5..1.0).contains(&q), "{v}: {q}");
            assert_eq!(q * 2f64.powi(e + 100), v * 2f64.powi(100));
        }
    }
}
