//! The 512-bit width (AVX-512 F, with AVX2 + FMA for the shared quantizer): the hybrid and
//! full-integer epilogues of the AVX-512 kernels, 16 channels per vector and masked stores for
//! partial tiles, bit for bit the portable definitions.

use std::arch::x86_64::*;

use super::v256::{FUSED, GEMMLOWP, KLEIDI, RUY, SINGLE, TWO_ROUNDINGS, V256, XNNPACK_FUSED};
use crate::engine::hybrid::HybridTile;
use crate::engine::integer::IntegerTile;
use crate::flavour::{EpilogueKind, NanRule};
use crate::integer::TensorQuant;
use crate::kernels::contract::Width;
use crate::toolkit::fixed_point::Rounding;

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
            ch.is_multiple_of(16)
                && t.row_sums.len() >= ch
                && t.scales.len() >= ch
                && t.init.len() >= ch
        );
        assert!(t.acc.len() >= t.out.rows() * ch && t.params.len() >= t.out.rows());
        // SAFETY: AVX-512 F (`self`); the slices were checked above.
        unsafe { hybrid512(t) }
    }

    fn integer(self, t: &mut IntegerTile<'_, '_>) {
        let ch = t.channels;
        assert!(
            ch.is_multiple_of(16) && t.fold.len() >= ch && t.m0.len() >= ch && t.shift.len() >= ch
        );
        assert!(t.acc.len() >= t.out.rows() * ch && t.act_min <= t.act_max);
        // SAFETY: AVX-512 F/BW (`self`); the slices were checked above.
        unsafe {
            match t.rounding {
                Rounding::Gemmlowp => integer512::<GEMMLOWP>(t),
                Rounding::Ruy => integer512::<RUY>(t),
                Rounding::Single => integer512::<SINGLE>(t),
            }
        }
    }

    fn quantize_int8(self, q: TensorQuant, x: &[f32], out: &mut [i8]) {
        self.0.quantize_int8(q, x, out);
    }

    fn dequantize_int8(self, q: TensorQuant, x: &[i8], out: &mut [f32]) {
        self.0.dequantize_int8(q, x, out);
    }
}

/// The hybrid epilogue of a tile, 16 channels per vector: the operation orders, flushes,
/// clamps and NaN rules of `EpilogueSpec::value`, instantiated per combination of them so
/// that the per-vector code has no branches.
///
/// # Safety
/// AVX-512 F; the tile's slices hold what `Width::hybrid` asserted.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
unsafe fn hybrid512(t: &mut HybridTile<'_, '_>) {
    let e = t.spec;
    macro_rules! by_flags {
        ($kind:expr) => {
            match (e.flush, e.clamps(), e.arm_nan) {
                (false, false, false) => tile512::<{ $kind }, false, false, false>(t),
                (false, false, true) => tile512::<{ $kind }, false, false, true>(t),
                (false, true, false) => tile512::<{ $kind }, false, true, false>(t),
                (false, true, true) => tile512::<{ $kind }, false, true, true>(t),
                (true, false, false) => tile512::<{ $kind }, true, false, false>(t),
                (true, false, true) => tile512::<{ $kind }, true, false, true>(t),
                (true, true, false) => tile512::<{ $kind }, true, true, false>(t),
                (true, true, true) => tile512::<{ $kind }, true, true, true>(t),
            }
        };
    }
    // SAFETY: as this function's.
    unsafe {
        match e.kind {
            EpilogueKind::TfliteTwoRoundings => by_flags!(TWO_ROUNDINGS),
            EpilogueKind::TfliteFused => by_flags!(FUSED),
            EpilogueKind::XnnpackFused => by_flags!(XNNPACK_FUSED),
            EpilogueKind::KleidiTwoRoundings => by_flags!(KLEIDI),
        }
    }
}

/// [`hybrid512`] for one epilogue kind (`KIND`), flush, clamp and ARM-NaN setting. The loop
/// runs over the tile's 16-channel vectors, rows inside, so that each vector's constants
/// (flushed scale and bias, `row_sum * offset`) are made once and stay in registers (with the
/// rows outside they lived in stack arrays: on the AMD Zen 4, 512 x 768 x 3072, the epilogue
/// and its array copies took 12% of the profile, now 10%);
/// the zero-point product `row_sum * zp` only for rows with a zero point: in wrapping i32,
/// `acc - row_sum * (zp + offset) = acc - row_sum * offset - row_sum * zp`.
///
/// # Safety
/// As [`hybrid512`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
unsafe fn tile512<const KIND: u8, const FLUSH: bool, const CLAMP: bool, const ARM: bool>(
    t: &mut HybridTile<'_, '_>,
) {
    let (ch, e) = (t.channels, t.spec);
    let width = t.out.width();
    let vectors = width.div_ceil(16).min(ch / 16);
    let (lo, hi) = e.act.bounds();
    let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    let propagate = e.nan == NanRule::Propagate;
    let offset = _mm512_set1_epi32(t.offset);
    let rows = t.out.rows();
    for h in 0..vectors {
        // SAFETY: 16 * h + 16 <= ch, within the channel slices (asserted by the caller).
        let (rs, mut ws, mut bias) = unsafe {
            (
                _mm512_loadu_si512(t.row_sums.as_ptr().add(16 * h).cast()),
                _mm512_loadu_ps(t.scales.as_ptr().add(16 * h)),
                _mm512_loadu_ps(t.init.as_ptr().add(16 * h)),
            )
        };
        // XNNPACK runs with denormals disabled: DAZ on the weight scales and the bias.
        if FLUSH {
            ws = flush_subnormal_ps(ws);
            bias = flush_subnormal_ps(bias);
        }
        let rs_off = _mm512_mullo_epi32(rs, offset);
        let lanes = (width - 16 * h).min(16);
        let mask = if lanes < 16 {
            (1u16 << lanes) - 1
        } else {
            u16::MAX
        };
        for r in 0..rows {
            let p = t.params[r];
            let (zp, sf) = (_mm512_set1_epi32(p.zero_point), _mm512_set1_ps(p.scale));
            // SAFETY: 16 * h + 16 <= ch, within acc's row (asserted by the caller).
            let a = unsafe { _mm512_loadu_si512(t.acc.as_ptr().add(r * ch + 16 * h).cast()) };
            let mut d = _mm512_sub_epi32(a, rs_off);
            if p.zero_point != 0 {
                d = _mm512_sub_epi32(d, _mm512_mullo_epi32(rs, zp));
            }
            let accf = _mm512_cvtepi32_ps(d);
            // The four operation orders of `EpilogueSpec::value`; no FMA except where named.
            let mut v = match KIND {
                TWO_ROUNDINGS => _mm512_add_ps(bias, _mm512_mul_ps(accf, _mm512_mul_ps(sf, ws))),
                FUSED => _mm512_fmadd_ps(accf, _mm512_mul_ps(sf, ws), bias),
                XNNPACK_FUSED => _mm512_fmadd_ps(_mm512_mul_ps(accf, sf), ws, bias),
                _ => {
                    let s = flush_subnormal_ps(_mm512_mul_ps(ws, sf));
                    _mm512_add_ps(_mm512_mul_ps(accf, s), bias)
                }
            };
            if FLUSH {
                v = flush_subnormal_ps(v);
            }
            if CLAMP {
                // As the 256-bit epilogue: min(hi, v) keeps a NaN, max(., lo) makes it lo.
                let clamped = _mm512_max_ps(_mm512_min_ps(hi, v), lo);
                v = if propagate {
                    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                    _mm512_mask_blend_ps(nan, clamped, v)
                } else {
                    clamped
                };
            }
            if ARM {
                let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                v = _mm512_mask_blend_ps(nan, v, _mm512_set1_ps(f32::NAN));
            }
            let row = t.out.row(r).as_mut_ptr();
            // SAFETY: the row holds `width` values; lanes past `width - 16 * h` are masked off.
            unsafe { _mm512_mask_storeu_ps(row.add(16 * h), mask, v) };
        }
    }
}

/// The 64-bit products `a * b` of the even i32 lanes and of the odd ones.
#[inline]
#[target_feature(enable = "avx512f")]
fn mul_even_odd(a: __m512i, b: __m512i) -> (__m512i, __m512i) {
    (
        _mm512_mul_epi32(a, b),
        _mm512_mul_epi32(_mm512_srli_epi64::<32>(a), _mm512_srli_epi64::<32>(b)),
    )
}

/// The low 32 bits of the even products and of the odd ones, back in lane order.
#[inline]
#[target_feature(enable = "avx512f")]
fn low_halves(even: __m512i, odd: __m512i) -> __m512i {
    _mm512_mask_blend_epi32(0xaaaa, even, _mm512_slli_epi64::<32>(odd))
}

/// The 512-bit twin of the 256-bit full-integer epilogue (`v256::integer256`, which states
/// each step), 16 channels per vector: native 64-bit arithmetic shifts, mask registers for
/// the comparisons, and a masked narrowing store for partial tiles.
///
/// # Safety
/// AVX-512 F/BW; the tile's slices hold what `Width::integer` asserted.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
unsafe fn integer512<const ROUNDING: u8>(t: &mut IntegerTile<'_, '_>) {
    const MAX: usize = 4;
    let ch = t.channels;
    let width = t.out.width();
    let vectors = width.div_ceil(16).min(ch / 16);
    assert!(vectors <= MAX);
    let zy = t.output_zero_point;
    let lo = _mm512_set1_epi32(t.act_min - zy);
    let hi = _mm512_set1_epi32(t.act_max - zy);
    let zyv = _mm512_set1_epi32(zy);
    let one = _mm512_set1_epi32(1);
    let min = _mm512_set1_epi32(i32::MIN);
    let zero = _mm512_setzero_si512();
    #[derive(Clone, Copy)]
    struct Consts {
        fold: __m512i,
        m0: __m512i,
        m0_is_min: __mmask16,
        left: __m512i,
        right: __m512i,
        c1: __m512i,
        c2: __m512i,
        c3: __m512i,
        total_even: __m512i,
        total_odd: __m512i,
        nudge_even: __m512i,
        nudge_odd: __m512i,
        mask: __mmask16,
    }
    let mut consts = [Consts {
        fold: zero,
        m0: zero,
        m0_is_min: 0,
        left: zero,
        right: zero,
        c1: zero,
        c2: zero,
        c3: zero,
        total_even: zero,
        total_odd: zero,
        nudge_even: zero,
        nudge_odd: zero,
        mask: 0xffff,
    }; MAX];
    for (h, c) in consts.iter_mut().enumerate().take(vectors) {
        // SAFETY: 16 * h + 16 <= ch, within the channel slices (asserted by the caller).
        let (fold, m0, shift) = unsafe {
            (
                _mm512_loadu_si512(t.fold.as_ptr().add(16 * h).cast()),
                _mm512_loadu_si512(t.m0.as_ptr().add(16 * h).cast()),
                _mm512_loadu_si512(t.shift.as_ptr().add(16 * h).cast()),
            )
        };
        c.fold = fold;
        c.m0 = m0;
        c.m0_is_min = _mm512_cmpeq_epi32_mask(m0, min);
        c.left = _mm512_max_epi32(shift, zero);
        let e = _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero);
        c.right = e;
        if ROUNDING == GEMMLOWP {
            let mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, e), one);
            c.c1 = mask;
            c.c2 = _mm512_srai_epi32::<1>(mask);
        } else if ROUNDING == RUY {
            let nonzero = _mm512_cmpneq_epi32_mask(e, zero);
            let nudge = _mm512_maskz_sllv_epi32(nonzero, one, _mm512_sub_epi32(e, one));
            c.c1 = nudge;
            c.c2 = _mm512_sub_epi32(_mm512_set1_epi32(i32::MAX), nudge);
            c.c3 = _mm512_sllv_epi32(one, _mm512_sub_epi32(_mm512_set1_epi32(31), e));
        } else {
            let total = _mm512_sub_epi32(_mm512_set1_epi32(31), shift);
            c.total_even = _mm512_and_si512(total, _mm512_set1_epi64(0xffff_ffff));
            c.total_odd = _mm512_srli_epi64::<32>(total);
            let one64 = _mm512_set1_epi64(1);
            c.nudge_even = _mm512_sllv_epi64(one64, _mm512_sub_epi64(c.total_even, one64));
            c.nudge_odd = _mm512_sllv_epi64(one64, _mm512_sub_epi64(c.total_odd, one64));
        }
        let lanes = (width - 16 * h).min(16);
        if lanes < 16 {
            c.mask = (1u16 << lanes) - 1;
        }
    }
    let half = _mm512_set1_epi64(1 << 30);
    for r in 0..t.out.rows() {
        let row = t.out.row(r).as_mut_ptr();
        for (h, c) in consts.iter().enumerate().take(vectors) {
            // SAFETY: 16 * h + 16 <= ch, within acc's row (asserted by the caller).
            let acc = unsafe { _mm512_loadu_si512(t.acc.as_ptr().add(r * ch + 16 * h).cast()) };
            let a = _mm512_add_epi32(acc, c.fold);
            let y = if ROUNDING == SINGLE {
                let (even, odd) = mul_even_odd(a, c.m0);
                let even = _mm512_srav_epi64(_mm512_add_epi64(even, c.nudge_even), c.total_even);
                let odd = _mm512_srav_epi64(_mm512_add_epi64(odd, c.nudge_odd), c.total_odd);
                low_halves(even, odd)
            } else {
                let a = _mm512_sllv_epi32(a, c.left);
                let (even, odd) = mul_even_odd(a, c.m0);
                let even = _mm512_srli_epi64::<31>(_mm512_add_epi64(even, half));
                let odd = _mm512_srli_epi64::<31>(_mm512_add_epi64(odd, half));
                let hm = low_halves(even, odd);
                let saturate = _mm512_cmpeq_epi32_mask(a, min) & c.m0_is_min;
                let hm = _mm512_mask_blend_epi32(saturate, hm, _mm512_set1_epi32(i32::MAX));
                if ROUNDING == GEMMLOWP {
                    let rem = _mm512_and_si512(hm, c.c1);
                    let negative = _mm512_cmplt_epi32_mask(hm, zero);
                    let thr = _mm512_mask_add_epi32(c.c2, negative, c.c2, one);
                    let up = _mm512_cmpgt_epi32_mask(rem, thr);
                    let shifted = _mm512_srav_epi32(hm, c.right);
                    _mm512_mask_add_epi32(shifted, up, shifted, one)
                } else {
                    let shifted = _mm512_srav_epi32(_mm512_add_epi32(hm, c.c1), c.right);
                    _mm512_mask_blend_epi32(_mm512_cmpgt_epi32_mask(hm, c.c2), shifted, c.c3)
                }
            };
            let y = _mm512_add_epi32(_mm512_max_epi32(_mm512_min_epi32(y, hi), lo), zyv);
            // SAFETY: the row holds `width` i8; lanes past `width - 16 * h` are masked off.
            // The values are int8, so the saturating narrowing is exact.
            unsafe { _mm512_mask_cvtsepi32_storeu_epi8(row.add(16 * h).cast(), c.mask, y) };
        }
    }
}
