//! Per-row quantization plans: the scalar part of input quantization (a row's range to its
//! scale, zero point and multiplier) shared by every SIMD quantizer, which then only has to
//! round `x * mult` element by element.
//!
//! Each plan reproduces the parameter computation of [`crate::quantize::inputs::quantize_row`]
//! (the reference) from the row's range; `quantize_row_i16` below is the scalar fallback used
//! for row tails and is tested against the reference in every flavour.

// Without an x86-64 SIMD kernel (other targets) only the scalar path is live, so the SIMD
// plumbing is unused there; it must still compile warning-free.
#![cfg_attr(
    not(target_arch = "x86_64"),
    allow(dead_code, unused_imports, unused_variables, unused_mut)
)]

use crate::flavour::Flavour;
use crate::quantize::inputs::{tflite_zero_point, xnnpack_params, RowParams};
use crate::quantize::rounding::{round_away, round_half_up_trunc, round_ties_even, to_i32};

/// How `y = x * mult` becomes an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rounding {
    /// TFLite x86: `trunc(y +- 0.5)` before `vec_end`, ties away after; zero point after.
    X86,
    /// Ties away from zero; zero point added after rounding.
    Away,
    /// TFLite portable asymmetric: `round_away(f32(zp + y))`, nothing added after.
    PortableZpFirst,
    /// Ties to even; zero point added after rounding.
    TiesEven,
}

/// Everything needed to quantize the elements of one row.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowPlan {
    /// The row's parameters as the reference returns them.
    pub(crate) params: RowParams,
    /// `y = f32(x * mult)` (0 for an all-zero row, so that every q is 0).
    pub(crate) mult: f32,
    /// Zero point (added after rounding, or before for `PortableZpFirst`).
    pub(crate) zp: i32,
    /// Clamp bounds of q.
    pub(crate) lo: i32,
    /// Upper clamp bound of q.
    pub(crate) hi: i32,
    /// Rounding rule.
    pub(crate) rounding: Rounding,
    /// Elements before this index use the vector rule of [`Rounding::X86`].
    pub(crate) vec_end: usize,
}

/// The plan of a finite row of length `k` whose minimum and maximum are `mn` and `mx`.
pub(crate) fn plan(flavour: Flavour, asymmetric: bool, k: usize, mn: f32, mx: f32) -> RowPlan {
    let (rmin, rmax) = (mn.min(0.0), mx.max(0.0));
    let vec_end = k / 8 * 8;
    let rounding = match flavour {
        Flavour::TfliteX86 => Rounding::X86,
        Flavour::TfliteArm64 => Rounding::Away,
        Flavour::TflitePortable if asymmetric => Rounding::PortableZpFirst,
        Flavour::TflitePortable => Rounding::Away,
        Flavour::Xnnpack => Rounding::TiesEven,
    };
    let zero = RowPlan {
        params: RowParams::ZERO_ROW,
        mult: 0.0,
        zp: 0,
        lo: -128,
        hi: 127,
        rounding,
        vec_end,
    };
    match (flavour, asymmetric) {
        (Flavour::Xnnpack, _) => {
            let (m, zp) = xnnpack_params(rmin, rmax);
            RowPlan {
                params: RowParams {
                    scale: 1.0f32 / m,
                    zero_point: zp,
                },
                mult: m,
                zp,
                ..zero
            }
        }
        (_, false) => {
            let range = (-rmin).max(rmax);
            if range == 0.0 {
                return zero;
            }
            RowPlan {
                params: RowParams {
                    scale: range / 127.0,
                    zero_point: 0,
                },
                mult: 127.0 / range,
                lo: -127,
                ..zero
            }
        }
        (_, true) => {
            if rmin == rmax {
                return zero;
            }
            let scale = if flavour == Flavour::TflitePortable {
                (rmax as f64 - rmin as f64) / 255.0
            } else {
                (rmax - rmin) as f64 / 255.0
            };
            let zp = tflite_zero_point(rmin as f64, rmax as f64, scale);
            let sf = scale as f32;
            RowPlan {
                params: RowParams {
                    scale: sf,
                    zero_point: zp,
                },
                mult: 1.0f32 / sf,
                zp,
                ..zero
            }
        }
    }
}

impl RowPlan {
    /// Quantizes element `i` (value `x`) of the row, exactly as the reference does.
    #[inline]
    pub(crate) fn one(&self, i: usize, x: f32) -> i32 {
        let y = x * self.mult;
        let q = match self.rounding {
            Rounding::X86 if i < self.vec_end => to_i32(round_half_up_trunc(y)) + self.zp,
            Rounding::X86 | Rounding::Away => to_i32(round_away(y)) + self.zp,
            Rounding::PortableZpFirst => to_i32(round_away(self.zp as f32 + y)),
            Rounding::TiesEven => to_i32(round_ties_even(y)) + self.zp,
        };
        q.clamp(self.lo, self.hi)
    }
}

/// `(min, max)` of a row (0 for an empty row).
pub(crate) fn min_max(row: &[f32]) -> (f32, f32) {
    row.iter()
        .fold((0.0f32, 0.0f32), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

/// Scalar quantization of a finite row into i16 values (the kernels' input layout): `out`
/// holds `row.len()` values, rounded up to even; the padding is 0.
pub(crate) fn quantize_row_i16(
    flavour: Flavour,
    asymmetric: bool,
    row: &[f32],
    out: &mut [i16],
) -> RowParams {
    let (mn, mx) = min_max(row);
    let p = plan(flavour, asymmetric, row.len(), mn, mx);
    for (i, (o, &x)) in out.iter_mut().zip(row).enumerate() {
        *o = p.one(i, x) as i16;
    }
    out[row.len()..].fill(0);
    p.params
}
