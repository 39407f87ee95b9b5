//! The 512-bit width (AVX-512 F, with AVX2 + FMA for the shared quantizer): the hybrid and
//! full-integer epilogues of the AVX-512 kernels, 16 channels per vector and masked stores for
//! partial tiles, bit for bit the portable definitions.

use std::arch::x86_64::*;

use super::v256::V256;
use crate::engine::hybrid::HybridTile;
use crate::engine::integer::IntegerTile;
use crate::flavour::{EpilogueKind, NanRule};
use crate::kernels::contract::Width;

/// Proof that the CPU runs AVX-512 F/BW/VL/DQ (and AVX2 + FMA).
#[derive(Clone, Copy, Debug)]
pub(crate) struct V512(V256);

impl V512 {
    /// The token, where AVX-512 F/BW/VL/DQ, AVX2 and FMA are available.
    pub(crate) fn new() -> Option<Self> {
        let v256 = V256::new()?;
        (std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq"))
        .then_some(V512(v256))
    }

    /// The 256-bit token it implies (for the shared quantizer).
    pub(crate) fn v256(self) -> V256 {
        self.0
    }
}

/// Every subnormal lane becomes zero of the same sign; other lanes are unchanged.
#[inline]
#[target_feature(enable = "avx512f")]
fn flush_subnormal_ps(v: __m512) -> __m512 {
    let abs = _mm512_abs_ps(v);
    let tiny = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(abs, _mm512_set1_ps(f32::MIN_POSITIVE));
    let signed_zero = _mm512_castsi512_ps(_mm512_and_si512(
        _mm512_castps_si512(v),
        _mm512_set1_epi32(i32::MIN),
    ));
    _mm512_mask_blend_ps(tiny, v, signed_zero)
}

// SAFETY: a `V512` exists only where AVX-512 F/BW/VL/DQ, AVX2 and FMA were detected.
unsafe impl Width for V512 {
    fn hybrid(self, t: &mut HybridTile<'_, '_>) {
        let ch = t.channels;
        assert!(
            ch % 16 == 0 && t.row_sums.len() >= ch && t.scales.len() >= ch && t.init.len() >= ch
        );
        assert!(t.acc.len() >= t.out.rows() * ch && t.params.len() >= t.out.rows());
        // SAFETY: AVX-512 F (`self`); the slices were checked above.
        unsafe { hybrid512(t) }
    }

    fn integer(self, t: &mut IntegerTile<'_, '_>) {
        t.portable();
    }
}

/// The hybrid epilogue of a tile, 16 channels per vector: the operation orders, flushes,
/// clamps and NaN rules of `EpilogueSpec::value`.
///
/// # Safety
/// AVX-512 F; the tile's slices hold what `Width::hybrid` asserted.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
unsafe fn hybrid512(t: &mut HybridTile<'_, '_>) {
    let (ch, e) = (t.channels, t.spec);
    let (lo, hi) = e.act.bounds();
    let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    let clamps = e.clamps();
    let width = t.out.width();
    for r in 0..t.out.rows() {
        let p = t.params[r];
        let zp = _mm512_set1_epi32(p.zero_point.wrapping_add(t.offset));
        let sf = _mm512_set1_ps(p.scale);
        let row = t.out.row(r).as_mut_ptr();
        for h in 0..ch / 16 {
            let c0 = h * 16;
            if c0 >= width {
                break;
            }
            // SAFETY: c0 + 16 <= ch, within acc's row and the channel slices (asserted).
            let (a, rs, ws, bias) = unsafe {
                (
                    _mm512_loadu_si512(t.acc.as_ptr().add(r * ch + c0).cast()),
                    _mm512_loadu_si512(t.row_sums.as_ptr().add(c0).cast()),
                    _mm512_loadu_ps(t.scales.as_ptr().add(c0)),
                    _mm512_loadu_ps(t.init.as_ptr().add(c0)),
                )
            };
            let (ws, bias) = if e.flush {
                (flush_subnormal_ps(ws), flush_subnormal_ps(bias))
            } else {
                (ws, bias)
            };
            let accf = _mm512_cvtepi32_ps(_mm512_sub_epi32(a, _mm512_mullo_epi32(rs, zp)));
            let mut v = match e.kind {
                EpilogueKind::TfliteTwoRoundings => {
                    _mm512_add_ps(bias, _mm512_mul_ps(accf, _mm512_mul_ps(sf, ws)))
                }
                EpilogueKind::TfliteFused => _mm512_fmadd_ps(accf, _mm512_mul_ps(sf, ws), bias),
                EpilogueKind::XnnpackFused => _mm512_fmadd_ps(_mm512_mul_ps(accf, sf), ws, bias),
                EpilogueKind::KleidiTwoRoundings => {
                    let s = flush_subnormal_ps(_mm512_mul_ps(ws, sf));
                    _mm512_add_ps(_mm512_mul_ps(accf, s), bias)
                }
            };
            if e.flush {
                v = flush_subnormal_ps(v);
            }
            if clamps {
                // As the 256-bit epilogue: min(hi, v) keeps a NaN, max(., lo) makes it lo.
                let clamped = _mm512_max_ps(_mm512_min_ps(hi, v), lo);
                v = if e.nan == NanRule::Propagate {
                    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                    _mm512_mask_blend_ps(nan, clamped, v)
                } else {
                    clamped
                };
            }
            if e.arm_nan {
                let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                v = _mm512_mask_blend_ps(nan, v, _mm512_set1_ps(f32::NAN));
            }
            let lanes = (width - c0).min(16);
            let mask: __mmask16 = if lanes == 16 {
                0xffff
            } else {
                (1u16 << lanes) - 1
            };
            // SAFETY: the row holds `width` values; lanes past `width - c0` are masked off.
            unsafe { _mm512_mask_storeu_ps(row.add(c0), mask, v) };
        }
    }
}
