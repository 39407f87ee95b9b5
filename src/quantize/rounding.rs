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

/// Converts an already rounded float to i32, saturating (NaN gives 0). Every caller clamps the
/// result to an int8 range afterwards.
#[inline]
pub(crate) fn to_i32(y: f32) -> i32 {
    y as i32
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
