//! Run-time input quantization: each row of K floats gets its own scale and zero point.
//!
//! [`quantize_row`] is the scalar reference of numerics.md sections 2 and 4 (its definition is
//! the crate's row plan, one place for every flavour). The SIMD kernels (in the crate's private
//! `kernels` module) reproduce it bit for bit.

use crate::flavour::Flavour;
use crate::quantize::plan::plan_row;

/// The quantization parameters of one input row: `x ~= scale * (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowParams {
    /// The row's scale (`sf` in TFLite, the dequantization scale `1/m` in XNNPACK).
    pub scale: f32,
    /// The row's zero point, in `[-128, 127]` (0 for symmetric rows).
    pub zero_point: i32,
}

impl RowParams {
    /// The parameters of a row that quantizes to all zeros.
    pub const ZERO_ROW: RowParams = RowParams {
        scale: 1.0,
        zero_point: 0,
    };
}

/// Quantizes one finite row into `q` (same length) in the given flavour.
///
/// `asymmetric` selects TFLite's `asymmetric_quantize_inputs`; the XNNPACK flavour is always
/// asymmetric and ignores it. The row must hold only finite values (the layer checks this
/// first); with a NaN the result is unspecified but memory-safe. Rows of any finite magnitude,
/// subnormal and tiny ones included, give the bits of the build the flavour names (see
/// `docs/how-it-works.md`, "Rows of extreme magnitude").
///
/// ```
/// use hybridq::quantize::inputs::quantize_row;
/// use hybridq::Flavour;
///
/// let row = [127.0f32, 0.49999997, -0.5, 2.5];
/// let mut q = [0i8; 4];
/// let p = quantize_row(Flavour::TfliteX86, false, &row, &mut q);
/// assert_eq!((p.scale, p.zero_point), (1.0, 0));
/// assert_eq!(q, [127, 0, -1, 3]); // K = 4 < 8: every element is in the ties-away tail
///
/// // A row of f32::MIN_POSITIVE: 127 / range overflows to infinity, and TFLite's x86-64 build
/// // converts the infinite products of its vector part to i32::MAX (so 127) but those of its
/// // scalar tail to i32::MIN (so -127).
/// let row = [f32::MIN_POSITIVE; 9];
/// let mut q = [0i8; 9];
/// quantize_row(Flavour::TfliteX86, false, &row, &mut q);
/// assert_eq!(q, [127, 127, 127, 127, 127, 127, 127, 127, -127]);
/// ```
///
/// # Panics
/// If `q.len() != row.len()`.
pub fn quantize_row(flavour: Flavour, asymmetric: bool, row: &[f32], q: &mut [i8]) -> RowParams {
    assert_eq!(
        row.len(),
        q.len(),
        "quantize_row: row and output lengths differ"
    );
    let p = plan_row(flavour, asymmetric, row);
    for (i, (qv, &x)) in q.iter_mut().zip(row).enumerate() {
        *qv = p.one(i, x) as i8;
    }
    p.params
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantize::rounding::round_away;

    fn q(flavour: Flavour, asym: bool, row: &[f32]) -> (Vec<i8>, RowParams) {
        let mut out = vec![0i8; row.len()];
        let p = quantize_row(flavour, asym, row, &mut out);
        (out, p)
    }

    /// A row of 9: eight vector elements and a one-element tail, with range exactly 127.
    fn tie_row(v: f32) -> Vec<f32> {
        vec![127.0, v, -v, 0.0, 0.0, 0.0, 0.0, 0.0, v]
    }

    #[test]
    fn x86_symmetric_rounds_vector_part_half_up_and_tail_away() {
        let (out, p) = q(Flavour::TfliteX86, false, &tie_row(0.49999997));
        assert_eq!(
            p,
            RowParams {
                scale: 1.0,
                zero_point: 0
            }
        );
        assert_eq!(out, vec![127, 1, -1, 0, 0, 0, 0, 0, 0]);
        let (out, _) = q(Flavour::TfliteArm64, false, &tie_row(0.49999997));
        assert_eq!(out, vec![127, 0, 0, 0, 0, 0, 0, 0, 0]);
        let (out, _) = q(Flavour::TfliteX86, false, &tie_row(0.5));
        assert_eq!(out, vec![127, 1, -1, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn symmetric_uses_separate_reciprocal() {
        // range = 3: sf = f32(3/127) and inv = f32(127/3), not 1/sf.
        let row = [3.0f32, 1.0, -2.0];
        let (out, p) = q(Flavour::TflitePortable, false, &row);
        assert_eq!(p.scale, 3.0f32 / 127.0);
        let inv = 127.0f32 / 3.0;
        assert_eq!(
            out,
            vec![127, round_away(inv) as i8, round_away(-2.0 * inv) as i8]
        );
    }

    #[test]
    fn zero_rows() {
        for f in Flavour::ALL {
            for asym in [false, true] {
                let (out, p) = q(f, asym, &[0.0, -0.0, 0.0]);
                assert_eq!(p.scale, 1.0, "{f} {asym}");
                // XNNPACK's zero-point rule picks 127 for an empty range: q = zp still means 0.
                let zp = if f.is_xnnpack() { 127 } else { 0 };
                assert_eq!(p.zero_point, zp, "{f} {asym}");
                assert_eq!(out, vec![zp as i8; 3]);
            }
        }
    }

    #[test]
    fn asymmetric_unit_scale_and_zero_point() {
        // min -128, max 127: range 255, scale 1, zero point 0.
        let row = [-128.0f32, 127.0, 0.5, -0.5, 1.5];
        for f in [Flavour::TfliteArm64, Flavour::TflitePortable] {
            let (out, p) = q(f, true, &row);
            assert_eq!(
                p,
                RowParams {
                    scale: 1.0,
                    zero_point: 0
                }
            );
            assert_eq!(out, vec![-128, 127, 1, -1, 2]);
        }
        let (out, p) = q(Flavour::Xnnpack, true, &row);
        assert_eq!(
            p,
            RowParams {
                scale: 1.0,
                zero_point: 0
            }
        );
        assert_eq!(out, vec![-128, 127, 0, 0, 2]);
    }

    #[test]
    fn all_positive_row_pins_zero_point_low() {
        let row = [1.0f32, 2.0, 3.0];
        let (out, p) = q(Flavour::TfliteX86, true, &row);
        assert_eq!(p.zero_point, -128);
        assert_eq!(out[2], 127);
        let row = [-1.0f32, -2.0, -3.0];
        let (out, p) = q(Flavour::TfliteX86, true, &row);
        assert_eq!(p.zero_point, 127);
        assert_eq!(out[2], -128);
    }

    #[test]
    fn portable_adds_zero_point_before_rounding() {
        // Range [-155, 100]: scale 1, zero point 27; 27 + 0.49999997 rounds to 27.5 in f32.
        let row = [-155.0f32, 100.0, 0.49999997];
        let (out_p, p) = q(Flavour::TflitePortable, true, &row);
        assert_eq!(p.zero_point, 27);
        assert_eq!(out_p[2], 28);
        let (out_a, _) = q(Flavour::TfliteArm64, true, &row);
        assert_eq!(out_a[2], 27);
    }

    #[test]
    fn dequantized_row_is_within_half_a_step() {
        let row: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 101) as f32 / 13.0 - 3.0)
            .collect();
        for f in Flavour::ALL {
            for asym in [false, true] {
                let (out, p) = q(f, asym, &row);
                for (&x, &v) in row.iter().zip(&out) {
                    let back = p.scale * (v as i32 - p.zero_point) as f32;
                    assert!(
                        (back - x).abs() <= 0.5 * p.scale * 1.0001 + 1e-6,
                        "{f} {asym} {x} {back}"
                    );
                }
            }
        }
    }
}
