//! Affine (asymmetric) quantization parameters: `r = S * (q - Z)`.
//!
//! [`AffineParams::from_range`] is TFLite's `ChooseQuantizationParams<T>`: the float range is
//! widened to contain 0 (so that 0.0 is an exact code), the scale spreads it over the integer
//! range, and the zero point is taken from the end of the range with the smaller error, then
//! nudged (clamped or rounded) to an integer code.
//!
//! ```
//! use hybridq::toolkit::affine::{AffineParams, QuantType};
//!
//! // [0, 1000] over uint8: 255 steps of 3.9215...
//! let p = AffineParams::from_range(0.0, 1000.0, QuantType::UInt8, false)?;
//! assert_eq!(p.scale, 1000.0 / 255.0);
//! assert!((p.scale - 3.9215686).abs() < 1e-6);
//! assert_eq!(p.zero_point, 0);
//!
//! // [-20, 1000] over uint8: scale 4, zero point 5, so -20.0 maps to code 0.
//! let p = AffineParams::from_range(-20.0, 1000.0, QuantType::UInt8, false)?;
//! assert_eq!((p.scale, p.zero_point), (4.0, 5));
//! assert_eq!(p.quantize_one(-20.0), 0);
//! assert_eq!(p.quantize_one(0.0), 5);
//! assert_eq!(p.dequantize_one(0), -20.0);
//!
//! // The same range over int8: the codes move down by 128.
//! let p = AffineParams::from_range(-20.0, 1000.0, QuantType::Int8, false)?;
//! assert_eq!((p.scale, p.zero_point), (4.0, -123));
//!
//! // [40, 1000] is widened to [0, 1000]: codes 0..=9 stand for values below 40 that never
//! // occur, 10 of the 255 steps (3.92% of the range) are wasted.
//! let p = AffineParams::from_range(40.0, 1000.0, QuantType::UInt8, false)?;
//! assert_eq!((p.rmin, p.rmax), (0.0, 1000.0));
//! assert_eq!(p.quantize_one(40.0), 10);
//! assert_eq!(p.wasted_codes(40.0, 1000.0), 10);
//! assert!((p.wasted_fraction(40.0, 1000.0) - 0.0392).abs() < 1e-4);
//! # Ok::<(), hybridq::Error>(())
//! ```

use crate::error::{Error, Result};

/// The integer type of a quantized tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantType {
    /// `i8`, codes `[-128, 127]`.
    Int8,
    /// `u8`, codes `[0, 255]`.
    UInt8,
    /// `i16`, codes `[-32768, 32767]`.
    Int16,
}

impl QuantType {
    /// The code range `[min, max]` of the type.
    pub fn range(self) -> (i32, i32) {
        match self {
            QuantType::Int8 => (i8::MIN as i32, i8::MAX as i32),
            QuantType::UInt8 => (0, u8::MAX as i32),
            QuantType::Int16 => (i16::MIN as i32, i16::MAX as i32),
        }
    }
}

/// An integer element type that can hold quantized codes.
pub trait QuantElement: Copy {
    /// The [`QuantType`] this Rust type stores.
    const TYPE: QuantType;
    /// Converts a code already clamped to the type's range.
    fn from_code(code: i32) -> Self;
    /// The code as i32.
    fn to_code(self) -> i32;
}

macro_rules! quant_element {
    ($t:ty, $q:expr) => {
        impl QuantElement for $t {
            const TYPE: QuantType = $q;
            #[inline]
            fn from_code(code: i32) -> Self {
                code as $t
            }
            #[inline]
            fn to_code(self) -> i32 {
                self as i32
            }
        }
    };
}
quant_element!(i8, QuantType::Int8);
quant_element!(u8, QuantType::UInt8);
quant_element!(i16, QuantType::Int16);

/// Scale and zero point of an affine quantization, with the range they were chosen for.
///
/// A real value `r` is represented by the code `q` with `r = scale * (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AffineParams {
    /// The step between two codes (TFLite computes it in f64; the flatbuffer stores it as f32,
    /// see [`AffineParams::scale_f32`]).
    pub scale: f64,
    /// The code that stands for 0.0 exactly.
    pub zero_point: i32,
    /// Smallest code used (`type min`, plus one with narrow range).
    pub qmin: i32,
    /// Largest code used.
    pub qmax: i32,
    /// Lower end of the widened float range (`<= 0`).
    pub rmin: f64,
    /// Upper end of the widened float range (`>= 0`).
    pub rmax: f64,
}

impl AffineParams {
    /// TFLite's `ChooseQuantizationParams<T>(rmin, rmax, narrow_range)` after widening the range
    /// to contain 0:
    ///
    /// - `qmin = T::min (+1 if narrow)`, `qmax = T::max`;
    /// - `scale = (rmax - rmin) / (qmax - qmin)` in f64;
    /// - `zp_min = qmin - rmin / scale` with error `|qmin| + |rmin / scale|`, `zp_max = qmax -
    ///   rmax / scale` with error `|qmax| + |rmax / scale|`; the one with the smaller error wins
    ///   (`zp_max` on a tie);
    /// - the zero point is clamped to `[qmin, qmax]`, else rounded half away from zero.
    ///
    /// A range that is all zero (`rmin == rmax == 0`, a constant zero tensor) is given the range
    /// `[0, 1]`, as TOCO's `GetOrComputeMinMax` does (TFLite's own function would return scale
    /// 0, which cannot be divided by).
    ///
    /// Errors: a NaN or infinite bound, or `rmin > rmax` ([`Error::InvalidArgument`]).
    ///
    /// ```
    /// use hybridq::toolkit::affine::{AffineParams, QuantType};
    /// let p = AffineParams::from_range(0.0, 0.0, QuantType::Int8, false)?;
    /// assert_eq!((p.rmin, p.rmax, p.scale, p.zero_point), (0.0, 1.0, 1.0 / 255.0, -128));
    /// let p = AffineParams::from_range(-1.0, 1.0, QuantType::Int8, true)?;
    /// assert_eq!((p.qmin, p.scale, p.zero_point), (-127, 1.0 / 127.0, 0));
    /// assert!(AffineParams::from_range(2.0, 1.0, QuantType::Int8, false).is_err());
    /// # Ok::<(), hybridq::Error>(())
    /// ```
    pub fn from_range(rmin: f64, rmax: f64, ty: QuantType, narrow_range: bool) -> Result<Self> {
        const OP: &str = "AffineParams::from_range";
        if !rmin.is_finite() || !rmax.is_finite() || rmin > rmax {
            return Err(Error::invalid(
                OP,
                format!("need finite rmin <= rmax, got [{rmin}, {rmax}]"),
            ));
        }
        let mut rmin = rmin.min(0.0);
        let mut rmax = rmax.max(0.0);
        if rmin == 0.0 && rmax == 0.0 {
            rmax = 1.0;
        }
        rmin += 0.0; // -0.0 -> 0.0
        let (tmin, qmax) = ty.range();
        let qmin = tmin + i32::from(narrow_range);
        let (qmin_d, qmax_d) = (qmin as f64, qmax as f64);
        let scale = (rmax - rmin) / (qmax_d - qmin_d);
        let zp_from_min = qmin_d - rmin / scale;
        let zp_from_max = qmax_d - rmax / scale;
        let err_min = qmin_d.abs() + (rmin / scale).abs();
        let err_max = qmax_d.abs() + (rmax / scale).abs();
        let zp = if err_min < err_max {
            zp_from_min
        } else {
            zp_from_max
        };
        let zero_point = if zp < qmin_d {
            qmin
        } else if zp > qmax_d {
            qmax
        } else {
            zp.round() as i32
        };
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::invalid(
                OP,
                format!("range [{rmin}, {rmax}] gives scale {scale}"),
            ));
        }
        Ok(Self {
            scale,
            zero_point,
            qmin,
            qmax,
            rmin,
            rmax,
        })
    }

    /// Parameters from the values of a tensor: its min and max ([`AffineParams::from_range`]).
    ///
    /// Errors: an empty slice ([`Error::Empty`]) or a non-finite value ([`Error::NonFinite`]).
    ///
    /// ```
    /// use hybridq::toolkit::affine::{AffineParams, QuantType};
    /// let p = AffineParams::from_values(&[0.5, -1.0, 2.0], QuantType::UInt8, false)?;
    /// assert_eq!(p.scale, 3.0 / 255.0);
    /// assert_eq!(p.zero_point, 85);
    /// # Ok::<(), hybridq::Error>(())
    /// ```
    pub fn from_values(values: &[f32], ty: QuantType, narrow_range: bool) -> Result<Self> {
        const OP: &str = "AffineParams::from_values";
        if values.is_empty() {
            return Err(Error::Empty {
                op: OP,
                what: "values",
                got: "[0]".into(),
            });
        }
        crate::error::check_finite(OP, "values", values)?;
        let (lo, hi) = values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        Self::from_range(lo as f64, hi as f64, ty, narrow_range)
    }

    /// The scale as the f32 a `.tflite` file stores.
    pub fn scale_f32(&self) -> f32 {
        self.scale as f32
    }

    /// Quantizes one value: `clamp(zero_point + round_away(r / scale), qmin, qmax)`, the division
    /// in f32 with the f32 scale, as TFLite's reference `AffineQuantize` does. NaN maps to the
    /// zero point.
    pub fn quantize_one(&self, r: f32) -> i32 {
        // `as` saturates (NaN to 0), so the sum cannot overflow.
        let q = (r / self.scale_f32()).round() as i32;
        q.saturating_add(self.zero_point)
            .clamp(self.qmin, self.qmax)
    }

    /// Dequantizes one code: `scale * (q - zero_point)` in f32 with the f32 scale.
    pub fn dequantize_one(&self, q: i32) -> f32 {
        self.scale_f32() * (q - self.zero_point) as f32
    }

    /// Quantizes a buffer into codes of type `T`.
    ///
    /// Errors: `T` is not the type the parameters were chosen for ([`Error::InvalidArgument`]),
    /// or a value is NaN or infinite ([`Error::NonFinite`]).
    ///
    /// ```
    /// use hybridq::toolkit::affine::{AffineParams, QuantType};
    /// let p = AffineParams::from_range(-1.0, 1.0, QuantType::Int8, true)?;
    /// let q: Vec<i8> = p.quantize(&[-1.0, 0.0, 0.25, 3.0])?;
    /// assert_eq!(q, vec![-127, 0, 32, 127]); // 0.25 * 127 = 31.75; 3.0 saturates
    /// let r = p.dequantize(&q);
    /// assert_eq!(r[1], 0.0);
    /// assert!((r[2] - 32.0 / 127.0).abs() < 1e-7);
    /// assert!(p.quantize::<u8>(&[0.0]).is_err());
    /// # Ok::<(), hybridq::Error>(())
    /// ```
    pub fn quantize<T: QuantElement>(&self, values: &[f32]) -> Result<Vec<T>> {
        const OP: &str = "AffineParams::quantize";
        let (tmin, tmax) = T::TYPE.range();
        if self.qmin < tmin || self.qmax > tmax {
            return Err(Error::invalid(
                OP,
                format!(
                    "codes [{}, {}] do not fit {:?}",
                    self.qmin,
                    self.qmax,
                    T::TYPE
                ),
            ));
        }
        crate::error::check_finite(OP, "values", values)?;
        Ok(values
            .iter()
            .map(|&v| T::from_code(self.quantize_one(v)))
            .collect())
    }

    /// Dequantizes a buffer of codes.
    pub fn dequantize<T: QuantElement>(&self, codes: &[T]) -> Vec<f32> {
        codes
            .iter()
            .map(|&q| self.dequantize_one(q.to_code()))
            .collect()
    }

    /// How many codes can never be produced by data in `[data_min, data_max]`: those below the
    /// code of `data_min` and above the code of `data_max` (the price of widening the range to
    /// contain 0, or of a range wider than the data).
    pub fn wasted_codes(&self, data_min: f32, data_max: f32) -> u32 {
        let lo = self.quantize_one(data_min);
        let hi = self.quantize_one(data_max);
        ((lo - self.qmin).max(0) + (self.qmax - hi).max(0)) as u32
    }

    /// [`AffineParams::wasted_codes`] as a fraction of the `qmax - qmin` steps.
    pub fn wasted_fraction(&self, data_min: f32, data_max: f32) -> f64 {
        self.wasted_codes(data_min, data_max) as f64 / (self.qmax - self.qmin) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_always_exact() {
        for (lo, hi) in [(-3.7, 0.2), (0.1, 5.0), (-9.0, -1.0), (-1e-3, 1e4)] {
            for ty in [QuantType::Int8, QuantType::UInt8, QuantType::Int16] {
                for narrow in [false, true] {
                    let p = AffineParams::from_range(lo, hi, ty, narrow).unwrap();
                    assert!(p.qmin <= p.zero_point && p.zero_point <= p.qmax);
                    assert_eq!(p.dequantize_one(p.zero_point), 0.0);
                    assert_eq!(p.quantize_one(0.0), p.zero_point);
                    assert!(p.rmin <= 0.0 && p.rmax >= 0.0);
                }
            }
        }
    }

    #[test]
    fn bad_ranges_are_errors() {
        assert!(AffineParams::from_range(f64::NAN, 1.0, QuantType::Int8, false).is_err());
        assert!(AffineParams::from_range(0.0, f64::INFINITY, QuantType::Int8, false).is_err());
        assert!(AffineParams::from_values(&[], QuantType::Int8, false).is_err());
        assert!(AffineParams::from_values(&[f32::NAN], QuantType::Int8, false).is_err());
    }

    #[test]
    fn extreme_values_saturate_and_nan_is_the_zero_point() {
        let p = AffineParams::from_range(-1.0, 3.0, QuantType::Int16, false).unwrap();
        assert_eq!(p.quantize_one(f32::NAN), p.zero_point);
        assert_eq!(p.quantize_one(1e30), p.qmax);
        assert_eq!(p.quantize_one(f32::NEG_INFINITY), p.qmin);
        assert!(p.quantize::<i16>(&[f32::INFINITY]).is_err());
    }
}
