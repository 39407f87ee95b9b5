//! The quantization plan of one input row: the single scalar definition of how each flavour
//! turns a finite f32 row into int8, from the row's range to every element's integer.
//!
//! [`plan`] computes the row's scale, zero point and multiplier from its minimum and maximum;
//! [`RowPlan::one`] quantizes one element. [`quantize_row`](super::inputs::quantize_row) is
//! these two, and every SIMD quantizer reproduces them bit for bit (see `docs/kernels.md`).
//!
//! **Rows of extreme magnitude.** For every finite row whose multiplier is finite, `x * mult`
//! lies within about ±255 and every flavour's conversion is an ordinary rounding. The
//! multiplier overflows to infinity when the row's range is tiny (symmetric `127 / range`
//! below about 3.7e-37, asymmetric `1 / sf` below about 7.5e-37, XNNPACK `255 / range`);
//! then `x * mult` is ±infinity, or NaN for `x = 0`, and each build's float -> int conversion
//! and clamp decide the integer. Those conversions were read from the compiled code of the
//! `tensorflow-cpu` 2.21 x86-64 wheel and confirmed on rows made by the real interpreter
//! (`fixtures/hybrid_extremes/`):
//!
//! | flavour, part of the row | conversion of `y = x * mult` | +inf | -inf | NaN |
//! |---|---|---|---|---|
//! | `tflite-x86`, first `K - K % 8` | `cvttps2dq(y ± 0.5)` xor all-ones where `>= 2^31` (NEON_2_SSE's `vcvtq_s32_f32`), then `+ zp` in wrapping i32, clamp | `i32::MAX + zp` | `i32::MIN + zp` | `i32::MIN + zp` |
//! | `tflite-x86`, symmetric tail | `cvttss2si(round(y))`, clamp in i32 | -127 | -127 | -127 |
//! | `tflite-x86`, asymmetric tail | `zp + round(y)` in f32, clamp in f32 (NaN passes), `cvttss2si`, low byte | 127 | -128 | 0 |
//! | `tflite-portable`, symmetric | `cvttss2si(round(y))` / `cvttps2dq`, clamp in i32 | -127 | -127 | -127 |
//! | `tflite-portable`, asymmetric, first `K - K % 8` | `cvttps2dq(round(zp + y))`, saturating packs | -128 | -128 | -128 |
//! | `tflite-portable`, asymmetric tail | as the `tflite-x86` asymmetric tail, with `round(zp + y)` | 127 | -128 | 0 |
//! | `tflite-arm64`, `-dotprod` | saturating (`fcvtas`, NaN -> 0), `+ zp` in wrapping i32 in the vector part | saturated | saturated | 0 (+ zp) |
//! | `xnnpack` | `min(y, 32767)` (NaN -> 32767), `cvtps2dq`, saturating i16 `+ zp`, saturating pack | 127 | -128 | 127 |
//! | `xnnpack-arm64` | `vcvtnq` (saturating, NaN -> 0), `vqmovn`, `vqaddq` with `zp` | 127 | -128 | `zp` |
//! | `xnnpack-arm64-dotprod` (KleidiAI) | `vcvtaq` (saturating, NaN -> 0), `vqmovn`, `vaddq_s16` (wrapping) `+ zp`, clamp | 127, or -128 if `zp > 0` | -128, or 127 if `zp < 0` | `zp` |
//!
//! The ARM rows were confirmed on LiteRT 2.3.0's aarch64 build under emulation
//! (`fixtures/aarch64_*`, cases 077-094).
//!
//! **XNNPACK runs with denormals disabled.** Every XNNPACK operator runs under
//! `PTHREADPOOL_FLAG_DISABLE_DENORMALS` (MXCSR FTZ and DAZ on x86-64, FPCR.FZ on AArch64, which
//! KleidiAI's kernels inherit there): subnormal inputs read as
//! zero and subnormal results become zero. In a row this changes the minimum and maximum
//! (flushing is monotonic, so the flushed extremes are the extremes' flush), every element
//! (a subnormal `x` quantizes as 0) and the dequantization scale `1 / m` (zero when `m > 2^126`);
//! the epilogue's are in [`crate::layer`]'s epilogue. The other flavours use IEEE arithmetic.

use crate::flavour::{Flavour, QuantizerKind};
use crate::quantize::inputs::RowParams;
use crate::quantize::rounding::{
    cvt_neon2sse, cvt_rne_x86, cvtt_x86, flush_subnormal, round_away, round_ties_even,
    tail_clamp_to_byte, to_i32,
};

/// How `y = x * mult` becomes an integer where every `y` is finite (the rule a SIMD quantizer
/// vectorises; [`RowPlan::one`] is the full definition).
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
    /// `y = f32(x * mult)` (0 for an all-zero row, so that every q is the zero point).
    pub(crate) mult: f32,
    /// Zero point (added after rounding, or before for `PortableZpFirst`).
    pub(crate) zp: i32,
    /// Lower clamp bound of q.
    pub(crate) lo: i32,
    /// Upper clamp bound of q.
    pub(crate) hi: i32,
    /// Rounding rule of finite `y`.
    pub(crate) rounding: Rounding,
    /// Elements before this index are TFLite's vector part (`K - K % 8`).
    pub(crate) vec_end: usize,
    /// Whether a SIMD quantizer may apply [`RowPlan::rounding`] to every element: `mult` is
    /// finite (so is every `x * mult`), and for XNNPACK no subnormal `x` can round away from
    /// the zero point (`mult <= 2^125`, so `|x * mult| < 0.5`). Otherwise the row goes through
    /// [`RowPlan::one`].
    pub(crate) vector_safe: bool,
    kind: QuantizerKind,
    asymmetric: bool,
}

/// `2^125`: above this XNNPACK multiplier, a subnormal input (below `2^-126`) scaled by it
/// could reach 0.5, where flushing it to zero first changes its integer.
const XNNPACK_DAZ_SAFE_MULT: f32 = f32::from_bits((127 + 125) << 23);

/// The plan of a finite row of length `k` whose minimum and maximum are `mn` and `mx`.
pub(crate) fn plan(flavour: Flavour, asymmetric: bool, k: usize, mn: f32, mx: f32) -> RowPlan {
    let kind = flavour.quantizer();
    let asymmetric = asymmetric || flavour.is_xnnpack();
    let vec_end = k / 8 * 8;
    let rounding = match kind {
        QuantizerKind::TfliteX86 => Rounding::X86,
        QuantizerKind::TfliteArm64 | QuantizerKind::Kleidi => Rounding::Away,
        QuantizerKind::TflitePortable if asymmetric => Rounding::PortableZpFirst,
        QuantizerKind::TflitePortable => Rounding::Away,
        QuantizerKind::XnnpackX86 | QuantizerKind::XnnpackArm64 => Rounding::TiesEven,
    };
    let base = RowPlan {
        params: RowParams::ZERO_ROW,
        mult: 0.0,
        zp: 0,
        lo: -128,
        hi: 127,
        rounding,
        vec_end,
        vector_safe: true,
        kind,
        asymmetric,
    };
    let p = match (kind, asymmetric) {
        (QuantizerKind::XnnpackX86 | QuantizerKind::XnnpackArm64 | QuantizerKind::Kleidi, _) => {
            // DAZ: the extremes of the flushed row are the flushed extremes.
            let (mn, mx) = (flush_subnormal(mn), flush_subnormal(mx));
            let rmin = if mn < 0.0 { mn } else { 0.0 };
            let rmax = if mx < 0.0 { 0.0 } else { mx };
            let (m, zp) = xnnpack_params(rmin, rmax);
            // FTZ: 1 / m is subnormal for m > 2^126. KleidiAI guards m = 0 (a range that
            // overflows f32), where XNNPACK's 1 / 0 is infinite.
            let scale = if kind == QuantizerKind::Kleidi && m == 0.0 {
                0.0
            } else {
                flush_subnormal(1.0f32 / m)
            };
            RowPlan {
                params: RowParams {
                    scale,
                    zero_point: zp,
                },
                mult: m,
                zp,
                ..base
            }
        }
        (_, false) => {
            let range = mn.abs().max(mx.abs());
            if range == 0.0 {
                return base;
            }
            RowPlan {
                params: RowParams {
                    scale: range / 127.0,
                    zero_point: 0,
                },
                // A separate division, not 1 / scale; infinite for ranges below 127 / f32::MAX.
                mult: 127.0 / range,
                lo: -127,
                ..base
            }
        }
        (_, true) => {
            let (rmin, rmax) = (mn.min(0.0), mx.max(0.0));
            if rmin == rmax {
                return base;
            }
            let portable = kind == QuantizerKind::TflitePortable;
            let scale = if portable {
                (rmax as f64 - rmin as f64) / 255.0
            } else {
                (rmax - rmin) as f64 / 255.0
            };
            let zp = tflite_zero_point(rmin as f64, rmax as f64, scale);
            let sf = scale as f32;
            // The NEON builds guard a zero scale; the portable one divides by it.
            let mult = if sf == 0.0 && !portable {
                0.0
            } else {
                1.0f32 / sf
            };
            RowPlan {
                params: RowParams {
                    scale: sf,
                    zero_point: zp,
                },
                mult,
                zp,
                ..base
            }
        }
    };
    let flushes = flavour.is_xnnpack();
    RowPlan {
        vector_safe: p.mult.is_finite() && (!flushes || p.mult <= XNNPACK_DAZ_SAFE_MULT),
        ..p
    }
}

impl RowPlan {
    /// Quantizes element `i` (value `x`) of the row: the definition, for every finite `x`.
    #[inline]
    pub(crate) fn one(&self, i: usize, x: f32) -> i32 {
        let (zp, lo, hi) = (self.zp, self.lo, self.hi);
        let y = x * self.mult;
        let vector = i < self.vec_end;
        let (i16_lo, i16_hi) = (i16::MIN as i32, i16::MAX as i32);
        match (self.kind, self.asymmetric) {
            (QuantizerKind::XnnpackX86, _) => {
                // DAZ on x, FTZ on the product; min_ps(y, 32767) returns 32767 for a NaN.
                let y = flush_subnormal(flush_subnormal(x) * self.mult);
                let y = if y < 32767.0 { y } else { 32767.0 };
                let c = cvt_rne_x86(y).clamp(i16_lo, i16_hi);
                (c + zp).clamp(i16_lo, i16_hi).clamp(lo, hi)
            }
            (QuantizerKind::XnnpackArm64, _) => {
                // vcvtnq_s32_f32 (saturating, NaN -> 0), vqmovn, vqaddq with the zero point.
                let y = flush_subnormal(flush_subnormal(x) * self.mult);
                let c = to_i32(round_ties_even(y)).clamp(i16_lo, i16_hi);
                (c + zp).clamp(i16_lo, i16_hi).clamp(lo, hi)
            }
            (QuantizerKind::Kleidi, _) => {
                // vcvtaq_s32_f32 (saturating, NaN -> 0), vqmovn_s32, then the zero point added
                // in wrapping i16 (vaddq_s16) before the clamp.
                let y = flush_subnormal(flush_subnormal(x) * self.mult);
                let c = to_i32(round_away(y)).clamp(i16_lo, i16_hi) as i16;
                (c.wrapping_add(zp as i16) as i32).clamp(lo, hi)
            }
            (QuantizerKind::TfliteX86, _) if vector => cvt_neon2sse(round_half_up_trunc_f32(y))
                .wrapping_add(zp)
                .clamp(lo, hi),
            (QuantizerKind::TfliteX86 | QuantizerKind::TflitePortable, false) => {
                cvtt_x86(round_away(y)).clamp(lo, hi)
            }
            (QuantizerKind::TfliteX86, true) => {
                tail_clamp_to_byte(zp as f32 + round_away(y), lo, hi)
            }
            (QuantizerKind::TflitePortable, true) if vector => {
                cvtt_x86(round_away(zp as f32 + y)).clamp(lo, hi)
            }
            (QuantizerKind::TflitePortable, true) => {
                tail_clamp_to_byte(round_away(zp as f32 + y), lo, hi)
            }
            (QuantizerKind::TfliteArm64, _) if vector => {
                to_i32(round_away(y)).wrapping_add(zp).clamp(lo, hi)
            }
            (QuantizerKind::TfliteArm64, _) => to_i32(zp as f32 + round_away(y)).clamp(lo, hi),
        }
    }
}

/// `y + (y < 0 ? -0.5 : 0.5)` in f32, before the vector part's truncating conversion (the
/// `RoundToNearest` of TFLite's NEON code without `vcvtaq`).
#[inline]
fn round_half_up_trunc_f32(y: f32) -> f32 {
    y + if y < 0.0 { -0.5 } else { 0.5 }
}

/// TFLite's zero-point choice (numerics.md 2.2 steps 3-4), in f64.
pub(crate) fn tflite_zero_point(rmin: f64, rmax: f64, scale: f64) -> i32 {
    let zmin = -128.0 - rmin / scale;
    let zmax = 127.0 - rmax / scale;
    let emin = 128.0 + (rmin / scale).abs();
    let emax = 127.0 + (rmax / scale).abs();
    let zpd = if emin < emax { zmin } else { zmax };
    if zpd <= -128.0 {
        -128
    } else if zpd >= 127.0 {
        127
    } else {
        zpd.round() as i32
    }
}

/// XNNPACK's per-row quantization multiplier `m` and zero point (numerics.md section 4), from
/// the row's range `[rmin, rmax]` (both already flushed, `rmin <= 0 <= rmax`).
///
/// The clamps are `math_max_f32` / `math_min_f32` as compiled for x86-64 (`maxss`/`minss`):
/// a NaN zero point (a tiny range makes `m` infinite and `0 * m` NaN) becomes -128.
#[inline]
pub(crate) fn xnnpack_params(rmin: f32, rmax: f32) -> (f32, i32) {
    let m = if rmin == rmax {
        1.0f32
    } else {
        255.0f32 / (rmax - rmin)
    };
    let dmin = rmin * m;
    let dmax = rmax * m;
    let zpf = if (-128.0f32 + dmin) + (127.0f32 + dmax) > 0.0 {
        -128.0f32 - dmin
    } else {
        127.0f32 - dmax
    };
    let zpf = if zpf > -128.0 { zpf } else { -128.0 };
    let zpf = if 127.0 < zpf { 127.0 } else { zpf };
    (m, round_ties_even(zpf) as i32)
}

/// `(min, max)` of a row (0 for an empty row), starting from 0 as the layers do.
pub(crate) fn min_max(row: &[f32]) -> (f32, f32) {
    row.iter()
        .fold((0.0f32, 0.0f32), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

/// The plan of a finite row.
pub(crate) fn plan_row(flavour: Flavour, asymmetric: bool, row: &[f32]) -> RowPlan {
    let (mn, mx) = min_max(row);
    plan(flavour, asymmetric, row.len(), mn, mx)
}
