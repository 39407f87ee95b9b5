//! Fused activations applied to the float output of a layer.

use crate::error::{Error, Result};

/// A fused activation, with TFLite's codes (`ActivationFunctionType`).
///
/// The clamps follow C++'s `std::max(lo, v)` / `std::min(v, hi)`, so a NaN output becomes the
/// lower bound, exactly as TFLite's kernel does:
///
/// ```
/// use hybridq::Activation;
/// assert_eq!(Activation::Relu6.apply(7.5), 6.0);
/// assert_eq!(Activation::Relu.apply(f32::NAN), 0.0);
/// assert_eq!(Activation::ReluN1To1.apply(-3.0), -1.0);
/// assert_eq!(Activation::from_code(3).unwrap(), Activation::Relu6);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    /// Identity (code 0).
    #[default]
    None,
    /// `max(0, v)` (code 1).
    Relu,
    /// `max(-1, min(v, 1))` (code 2).
    ReluN1To1,
    /// `max(0, min(v, 6))` (code 3).
    Relu6,
}

impl Activation {
    /// Every activation, in code order.
    pub const ALL: [Activation; 4] = [
        Activation::None,
        Activation::Relu,
        Activation::ReluN1To1,
        Activation::Relu6,
    ];

    /// The activation for TFLite's code (0 none, 1 relu, 2 relu_n1_to_1, 3 relu6).
    pub fn from_code(code: i64) -> Result<Self> {
        match code {
            0 => Ok(Activation::None),
            1 => Ok(Activation::Relu),
            2 => Ok(Activation::ReluN1To1),
            3 => Ok(Activation::Relu6),
            _ => Err(Error::UnknownCode {
                op: "Activation::from_code",
                what: "activation",
                code,
            }),
        }
    }

    /// TFLite's code for this activation.
    pub fn code(self) -> i32 {
        match self {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::ReluN1To1 => 2,
            Activation::Relu6 => 3,
        }
    }

    /// The clamp interval `[lo, hi]` (infinite where the activation does not clamp).
    pub fn bounds(self) -> (f32, f32) {
        match self {
            Activation::None => (f32::NEG_INFINITY, f32::INFINITY),
            Activation::Relu => (0.0, f32::INFINITY),
            Activation::ReluN1To1 => (-1.0, 1.0),
            Activation::Relu6 => (0.0, 6.0),
        }
    }

    /// Applies the activation to one value, with `std::max(lo, std::min(v, hi))` semantics.
    #[inline]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Activation::None => v,
            Activation::Relu => cpp_max(0.0, v),
            Activation::ReluN1To1 => cpp_max(-1.0, cpp_min(v, 1.0)),
            Activation::Relu6 => cpp_max(0.0, cpp_min(v, 6.0)),
        }
    }
}

/// `std::max(a, b)`: `(a < b) ? b : a` (returns `a` when either is NaN).
#[inline]
fn cpp_max(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

/// `std::min(a, b)`: `(b < a) ? b : a` (returns `a` when either is NaN).
#[inline]
fn cpp_min(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for a in Activation::ALL {
            assert_eq!(Activation::from_code(a.code() as i64).unwrap(), a);
        }
        assert!(Activation::from_code(4).is_err());
        assert!(Activation::from_code(-1).is_err());
    }

    #[test]
    fn clamps_follow_std_max_min() {
        assert_eq!(Activation::Relu.apply(-0.0).to_bits(), 0.0f32.to_bits());
        assert_eq!(Activation::Relu6.apply(f32::NAN), 0.0);
        assert_eq!(Activation::ReluN1To1.apply(f32::NAN), -1.0);
        assert!(Activation::None.apply(f32::NAN).is_nan());
        assert_eq!(Activation::ReluN1To1.apply(0.25), 0.25);
        assert_eq!(Activation::Relu6.apply(f32::INFINITY), 6.0);
    }
}
