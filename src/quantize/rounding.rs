//! The scalar definitions of every rounding rule hybridq reproduces. SIMD kernels emulate these
//! and are tested against them bit for bit.

/// Rounds half away from zero (C's `round`, Rust's [`f32::round`]).
///
/// ```
/// use hybridq::quantize::rounding::round_away;
/// assert_eq!(round_away(0.5), 1.0);
/// assert_eq!(round_away(-2.5), -3.0);
/// assert_eq!(round_away(0.49999997), 0.0);
/// ```
#[inline]
pub fn round_away(y: f32) -> f32 {
    y.round()
}

/// TFLite's x86 vector rounding: add ±0.5 in f32 (one rounding), then truncate toward zero.
///
/// This is what NEON's `RoundToNearest` becomes when compiled through the NEON-to-SSE layer of
/// the x86-64 wheels. It agrees with [`round_away`] except where `y ± 0.5` rounds up in f32:
///
/// ```
/// use hybridq::quantize::rounding::round_half_up_trunc;
/// assert_eq!(round_half_up_trunc(0.49999997), 1.0); // round_away gives 0
/// assert_eq!(round_half_up_trunc(-0.49999997), -1.0);
/// assert_eq!(round_half_up_trunc(2.5), 3.0);
/// ```
#[inline]
pub fn round_half_up_trunc(y: f32) -> f32 {
    let half = if y < 0.0 { -0.5 } else { 0.5 };
    (y + half).trunc()
}

/// Rounds half to even (x86 `cvtps2dq` under the default MXCSR, C's `lrintf`).
///
/// ```
/// use hybridq::quantize::rounding::round_ties_even;
/// assert_eq!(round_ties_even(0.5), 0.0);
/// assert_eq!(round_ties_even(1.5), 2.0);
/// assert_eq!(round_ties_even(-2.5), -2.0);
/// ```
#[inline]
pub fn round_ties_even(y: f32) -> f32 {
    y.round_ties_even()
}

/// Converts an already rounded float to i32, saturating (NaN gives 0): AArch64's `fcvtzs` /
/// `fcvtas`, and Rust's `as`. Every caller clamps the result to an int8 range afterwards.
#[inline]
pub(crate) fn to_i32(y: f32) -> i32 {
    y as i32
}

/// x86-64 `cvttss2si` / `cvttps2dq`: truncation toward zero; NaN and every value outside
/// `[-2^31, 2^31)` give the "integer indefinite" `i32::MIN`.
#[inline]
pub(crate) fn cvtt_x86(v: f32) -> i32 {
    if (-2_147_483_648.0..2_147_483_648.0).contains(&v) {
        v as i32
    } else {
        i32::MIN
    }
}

/// NEON_2_SSE's `vcvtq_s32_f32` (what TFLite's x86-64 build runs for NEON's conversion):
/// `cvttps2dq`, xor all-ones where `v >= 2^31`, so large and infinite positive values give
/// `i32::MAX` while NaN and large negative values give `i32::MIN`.
#[inline]
pub(crate) fn cvt_neon2sse(v: f32) -> i32 {
    if v >= 2_147_483_648.0 {
        i32::MAX
    } else {
        cvtt_x86(v)
    }
}

/// x86-64 `cvtps2dq` under the default rounding mode: ties to even; NaN and out-of-range values
/// give `i32::MIN`.
#[inline]
pub(crate) fn cvt_rne_x86(v: f32) -> i32 {
    cvtt_x86(round_ties_even(v))
}

/// How clang compiled TFLite's scalar tail `clamp((int32)(zp + round(y)), lo, hi)` in the x86-64
/// wheel: the clamp is done in f32 (`maxss`/`minss`, which let a NaN through), then
/// `cvttss2si`, and the low byte is stored. Infinities clamp to `lo` / `hi`; NaN gives
/// `i32::MIN`, whose low byte is 0.
#[inline]
pub(crate) fn tail_clamp_to_byte(v: f32, lo: i32, hi: i32) -> i32 {
    if v.is_nan() {
        0
    } else {
        v.clamp(lo as f32, hi as f32) as i32
    }
}

/// A subnormal value becomes zero of the same sign (x86 FTZ on a result, DAZ on an operand);
/// every other value, NaN included, is unchanged.
#[inline]
pub(crate) fn flush_subnormal(v: f32) -> f32 {
    if v.is_subnormal() {
        0.0f32.copysign(v)
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_up_trunc_differs_from_round_away_only_just_below_a_half() {
        // Every 7th float in [0, 8], both signs.
        let last = 8.0f32.to_bits();
        for bits in (0..=last).step_by(7) {
            for y in [f32::from_bits(bits), -f32::from_bits(bits)] {
                let (a, b) = (round_away(y), round_half_up_trunc(y));
                if a != b {
                    let frac = y.abs().fract();
                    assert!(frac > 0.4999 && frac < 0.5, "y={y} away={a} trunc={b}");
                    assert_eq!((b - a).abs(), 1.0);
                }
            }
        }
    }

    #[test]
    fn x86_conversions_of_non_finite_and_out_of_range_values() {
        for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 3e9, -3e9] {
            assert_eq!(cvtt_x86(v), i32::MIN, "{v}");
        }
        assert_eq!(cvtt_x86(-2_147_483_648.0), i32::MIN);
        assert_eq!(cvtt_x86(-2.9), -2);
        assert_eq!(cvt_neon2sse(f32::INFINITY), i32::MAX);
        assert_eq!(cvt_neon2sse(2_147_483_648.0), i32::MAX);
        assert_eq!(cvt_neon2sse(f32::NAN), i32::MIN);
        assert_eq!(cvt_neon2sse(f32::NEG_INFINITY), i32::MIN);
        assert_eq!(cvt_rne_x86(2.5), 2);
        assert_eq!(cvt_rne_x86(f32::INFINITY), i32::MIN);
        assert_eq!(tail_clamp_to_byte(f32::NAN, -128, 127), 0);
        assert_eq!(tail_clamp_to_byte(f32::INFINITY, -128, 127), 127);
        assert_eq!(tail_clamp_to_byte(f32::NEG_INFINITY, -128, 127), -128);
        assert_eq!(tail_clamp_to_byte(-3.0, -128, 127), -3);
        assert_eq!(to_i32(f32::NAN), 0);
        assert_eq!(to_i32(f32::INFINITY), i32::MAX);
    }

    #[test]
    fn flush_keeps_the_sign_and_only_touches_subnormals() {
        let sub = f32::from_bits(1);
        assert_eq!(flush_subnormal(sub).to_bits(), 0);
        assert_eq!(flush_subnormal(-sub).to_bits(), (-0.0f32).to_bits());
        assert_eq!(flush_subnormal(f32::MIN_POSITIVE), f32::MIN_POSITIVE);
        assert!(flush_subnormal(f32::NAN).is_nan());
        assert_eq!(flush_subnormal(-0.0).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn ties() {
        for (y, away, even) in [
            (0.5f32, 1.0f32, 0.0f32),
            (1.5, 2.0, 2.0),
            (2.5, 3.0, 2.0),
            (-0.5, -1.0, -0.0),
        ] {
            assert_eq!(round_away(y), away);
            assert_eq!(round_ties_even(y), even);
        }
    }
}
