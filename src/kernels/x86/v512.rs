//! The 512-bit width (AVX-512 F/BW/VL/DQ, with AVX2 + FMA for the full-integer input
//! quantizer it shares with the 256-bit width): the row quantizer and the hybrid and
//! full-integer epilogues of the AVX-512 kernels, 16 lanes per vector and masked loads and
//! stores for partial ones, bit for bit the 256-bit code and the portable definitions.

use std::arch::x86_64::*;

use super::v256::{
    Reciprocal, CLAMPED_BEYOND, FUSED, GEMMLOWP, KLEIDI, NEAR_HALF, RUY, SINGLE, TWO_ROUNDINGS,
    V256, XNNPACK_FUSED,
};
use crate::engine::hybrid::HybridTile;
use crate::engine::integer::{IntegerOut, IntegerTile};
use crate::flavour::{EpilogueKind, Flavour, NanRule};
use crate::integer::TensorQuant;
use crate::kernels::contract::{InputElement, Width};
use crate::quantize::inputs::RowParams;
use crate::quantize::plan::{plan, Rounding as QRounding, RowPlan};
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

    /// Quantizes a row into `out` as u8 (`q + 128`), padding the rest of `out` with
    /// `u8::PAD`: the 256-bit quantizer ([`V256::quantize`]) on 16 lanes, bit for bit, since
    /// every step is per lane: the same vector part (the first `K - K % 8` values, the last
    /// 8 of them in a masked chunk where K % 16 >= 8), the same rounding per plan, the
    /// definition element by element for the rest and for rows whose plan is not vector-safe;
    /// `None` for a row with a NaN or an infinity.
    pub(crate) fn quantize_u8(
        self,
        flavour: Flavour,
        asymmetric: bool,
        row: &[f32],
        out: &mut [u8],
    ) -> Option<RowParams> {
        assert!(out.len() >= row.len());
        // SAFETY: AVX-512 F (`self`).
        let (mn, mx) = unsafe { min_max(row) }?;
        let p = plan(flavour, asymmetric, row.len(), mn, mx);
        let vector = if p.vector_safe { row.len() / 8 * 8 } else { 0 };
        // SAFETY: AVX-512 F/BW (`self`); vector <= row.len() <= out.len().
        unsafe { quantize_u8(row, out, vector, &p) };
        for i in vector..row.len() {
            out[i] = u8::from_q(p.one(i, row[i]));
        }
        out[row.len()..].fill(u8::PAD);
        Some(p.params)
    }
}

/// `(min(0, min row), max(0, max row))` on 16 lanes with four independent min / max chains
/// (order-free for finite rows), or `None` if the row holds a NaN or an infinity: the 256-bit
/// `min_max`'s check (`bad + v * 0` stays ±0 only while every `v` is finite).
///
/// # Safety
/// AVX-512 F.
#[target_feature(enable = "avx512f")]
unsafe fn min_max(row: &[f32]) -> Option<(f32, f32)> {
    let zero = _mm512_setzero_ps();
    let mut lo = [zero; 4];
    let mut hi = [zero; 4];
    let mut bad = [zero; 4];
    let mut blocks = row.chunks_exact(64);
    for c in &mut blocks {
        for j in 0..4 {
            // SAFETY: `c` holds exactly 64 f32; loadu has no alignment requirement.
            let v = unsafe { _mm512_loadu_ps(c.as_ptr().add(16 * j)) };
            lo[j] = _mm512_min_ps(lo[j], v);
            hi[j] = _mm512_max_ps(hi[j], v);
            bad[j] = _mm512_fmadd_ps(v, zero, bad[j]);
        }
    }
    for c in blocks.remainder().chunks(16) {
        let mask = ((1u32 << c.len()) - 1) as __mmask16;
        // SAFETY: the masked load reads only the `c.len()` values of `c` (masked-off lanes are
        // zero, which the min and max with zero already include, and finite).
        let v = unsafe { _mm512_maskz_loadu_ps(mask, c.as_ptr()) };
        lo[0] = _mm512_min_ps(lo[0], v);
        hi[0] = _mm512_max_ps(hi[0], v);
        bad[0] = _mm512_fmadd_ps(v, zero, bad[0]);
    }
    let bad = _mm512_add_ps(_mm512_add_ps(bad[0], bad[1]), _mm512_add_ps(bad[2], bad[3]));
    if _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(bad, zero) != u16::MAX {
        return None;
    }
    let lo = _mm512_min_ps(_mm512_min_ps(lo[0], lo[1]), _mm512_min_ps(lo[2], lo[3]));
    let hi = _mm512_max_ps(_mm512_max_ps(hi[0], hi[1]), _mm512_max_ps(hi[2], hi[3]));
    Some((_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi)))
}

/// TFLite x86 vector rounding: `trunc(f32(y + (y < 0 ? -0.5 : 0.5)))`, then `+ zp`.
#[inline]
#[target_feature(enable = "avx512f")]
fn round_x86(y: __m512, zp: __m512i, _zpf: __m512) -> __m512i {
    let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(y, _mm512_setzero_ps());
    let half = _mm512_mask_blend_ps(neg, _mm512_set1_ps(0.5), _mm512_set1_ps(-0.5));
    _mm512_add_epi32(_mm512_cvttps_epi32(_mm512_add_ps(y, half)), zp)
}

/// Exact round-half-away-from-zero of every lane, the operations of the 256-bit twin.
#[inline]
#[target_feature(enable = "avx512f")]
fn round_away_ps(y: __m512) -> __m512 {
    let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
    // y - trunc(y) is exact (both share the exponent range, |y - t| < 1).
    let d = _mm512_sub_ps(y, t);
    let sign = _mm512_set1_epi32(i32::MIN);
    let abs_d = _mm512_abs_ps(d);
    let ge = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(abs_d, _mm512_set1_ps(0.5));
    let one = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(_mm512_set1_ps(1.0)),
        _mm512_and_si512(_mm512_castps_si512(y), sign),
    ));
    // `t + (+0.0)` where the lane does not round up, as the 256-bit `and` gives.
    _mm512_add_ps(t, _mm512_maskz_mov_ps(ge, one))
}

/// Ties away from zero, then `+ zp`.
#[inline]
#[target_feature(enable = "avx512f")]
fn round_away(y: __m512, zp: __m512i, _zpf: __m512) -> __m512i {
    _mm512_add_epi32(_mm512_cvttps_epi32(round_away_ps(y)), zp)
}

/// Portable asymmetric: `round_away(f32(zp + y))`.
#[inline]
#[target_feature(enable = "avx512f")]
fn round_portable(y: __m512, _zp: __m512i, zpf: __m512) -> __m512i {
    _mm512_cvttps_epi32(round_away_ps(_mm512_add_ps(zpf, y)))
}

/// Ties to even (explicit rounding mode, independent of MXCSR), then `+ zp`.
#[inline]
#[target_feature(enable = "avx512f")]
fn round_even(y: __m512, zp: __m512i, _zpf: __m512) -> __m512i {
    let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(y);
    _mm512_add_epi32(_mm512_cvttps_epi32(r), zp)
}

/// Quantizes `row[..vector]` (`vector` a multiple of 8) with the plan's vector rounding,
/// clamps to the plan's bounds and stores `q + 128` as u8. One loop per rounding, so that each
/// rounding function is inlined.
///
/// Four vectors (64 values) at a time are narrowed with saturation ([`narrow4_i8`]), then
/// clamped to the plan's bounds on bytes and offset by 128 with one `xor`: the bounds lie
/// within int8, so clamping the saturated value is clamping the value (saturation is a
/// monotone clamp to a wider range), and `q ^ 0x80` is `q + 128` for an int8 `q`. The vectors
/// left over, 16 lanes at a time (a last chunk of 8 masked), clamp in i32 and narrow with
/// `vpmovdb`.
///
/// # Safety
/// AVX-512 F/BW; `vector <= row.len() <= out.len()`.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_u8(row: &[f32], out: &mut [u8], vector: usize, p: &RowPlan) {
    debug_assert!(vector.is_multiple_of(8) && vector <= row.len() && row.len() <= out.len());
    assert!(-128 <= p.lo && p.lo <= p.hi && p.hi <= 127);
    let mult = _mm512_set1_ps(p.mult);
    let zp = _mm512_set1_epi32(p.zp);
    let zpf = _mm512_set1_ps(p.zp as f32);
    let lo = _mm512_set1_epi32(p.lo);
    let hi = _mm512_set1_epi32(p.hi);
    let (lo8, hi8) = (_mm512_set1_epi8(p.lo as i8), _mm512_set1_epi8(p.hi as i8));
    let bias = _mm512_set1_epi32(128);
    let flip = _mm512_set1_epi8(i8::MIN);
    let (src, dst) = (row.as_ptr(), out.as_mut_ptr());
    macro_rules! each_chunk {
        ($round:ident) => {{
            // The rounded values (+ zp, unclamped) of the 16 values from `start`.
            let codes = |start: usize| {
                // SAFETY: start + 16 <= vector (the callers), within `row` (the contract).
                let x = unsafe { _mm512_loadu_ps(src.add(start)) };
                $round(_mm512_mul_ps(x, mult), zp, zpf)
            };
            let mut start = 0;
            while start + 64 <= vector {
                let q = narrow4_i8([
                    codes(start),
                    codes(start + 16),
                    codes(start + 32),
                    codes(start + 48),
                ]);
                let q = _mm512_max_epi8(_mm512_min_epi8(q, hi8), lo8);
                // SAFETY: start + 64 <= vector <= out.len() (the contract).
                unsafe { _mm512_storeu_si512(dst.add(start).cast(), _mm512_xor_si512(q, flip)) };
                start += 64;
            }
            while start < vector {
                let mask = if vector - start >= 16 {
                    u16::MAX
                } else {
                    0x00ff
                };
                // SAFETY: the lanes of `mask` are values start..min(start + 16, vector), within
                // `row` and `out` (the contract); masked-off lanes are neither read nor stored.
                unsafe {
                    let x = _mm512_maskz_loadu_ps(mask, src.add(start));
                    let q = $round(_mm512_mul_ps(x, mult), zp, zpf);
                    let q = _mm512_max_epi32(_mm512_min_epi32(q, hi), lo);
                    // q + 128 in [0, 255]: the truncation to bytes is exact.
                    let u = _mm512_add_epi32(q, bias);
                    _mm512_mask_cvtepi32_storeu_epi8(dst.add(start).cast(), mask, u);
                }
                start += 16;
            }
        }};
    }
    match p.rounding {
        QRounding::X86 => each_chunk!(round_x86),
        QRounding::Away => each_chunk!(round_away),
        QRounding::PortableZpFirst => each_chunk!(round_portable),
        QRounding::TiesEven => each_chunk!(round_even),
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
    /// [`rows512`] works on two vectors at a time.
    const CHANNEL_MULTIPLE: usize = 32;

    fn hybrid(self, t: &mut HybridTile<'_, '_>) {
        t.assert_bounds(Self::CHANNEL_MULTIPLE);
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
            match (t.rounding, matches!(t.out, IntegerOut::Reals(..))) {
                (Rounding::Gemmlowp, false) => integer512::<GEMMLOWP, false>(t),
                (Rounding::Ruy, false) => integer512::<RUY, false>(t),
                (Rounding::Single, false) => integer512::<SINGLE, false>(t),
                (Rounding::Gemmlowp, true) => integer512::<GEMMLOWP, true>(t),
                (Rounding::Ruy, true) => integer512::<RUY, true>(t),
                (Rounding::Single, true) => integer512::<SINGLE, true>(t),
            }
        }
    }

    fn quantize_int8(self, q: TensorQuant, x: &[f32], out: &mut [i8]) -> bool {
        let len = x.len().min(out.len());
        // As the 256-bit width: the vector code assumes an int8 zero point.
        let vectors = if (-128..=127).contains(&q.zero_point) {
            len / 16
        } else {
            0
        };
        // SAFETY: AVX-512 F/BW (`self`); 16 * vectors <= len, within both slices.
        let finite = unsafe { quantize_int8_512(q, x, out, vectors) };
        let done = 16 * vectors;
        self.0.quantize_int8(q, &x[done..len], &mut out[done..len]) && finite
    }
}

/// `TensorQuant::quantize` on `vectors` chunks of 16: `round_away(x / S) + Z` clamped to
/// int8, as the 256-bit `quantize_int8_chunks`, in fewer operations (the 512-bit operations
/// share two ports on Intel, so each one counts):
/// - the quotient from the product where provably the same ([`quotient512`]);
/// - the quotient held in `[-256, 256]` (for an int8 zero point every value beyond clamps to
///   the same code);
/// - ties away from zero as `trunc(v + copysign(0.5, v))` for `|v| >= 0.5`, and 0 for the
///   rest and for NaN (from `0 / 0`). For `0.5 <= |v| <= 256` the truncated rounded sum is
///   `floor(|v| + 0.5)` (with `v`'s sign): `0.5` is a multiple of `v`'s ulp, so a sum that
///   stays in `v`'s binade is exact, and one that rounds into the next binade lies in
///   `[2^(e+1), 2^(e+1) + 0.5]`, where every value truncates to `2^(e+1)` (a sum just below
///   an integer stays in `v`'s binade). Below 0.5 the sum could round up to 1
///   (`v = 0.5 - 2^-25`), hence the mask;
/// - the clamp to int8 by saturation: two packs in the four-vector loop, `vpmovsdb` for the
///   vectors left over.
///
/// Returns whether every value was finite (`bad + x * 0` stays ±0 while they are, as in
/// `min_max`).
///
/// # Safety
/// AVX-512 F/BW; `16 * vectors` values in `x` and `out`.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_int8_512(q: TensorQuant, x: &[f32], out: &mut [i8], vectors: usize) -> bool {
    assert!(16 * vectors <= x.len() && 16 * vectors <= out.len());
    let s = _mm512_set1_ps(q.scale);
    let recip = Reciprocal::of(q.scale);
    let zp = _mm512_set1_epi32(q.zero_point);
    let (bound, nbound) = (_mm512_set1_ps(256.0), _mm512_set1_ps(-256.0));
    let (half, sign) = (_mm512_set1_ps(0.5), _mm512_set1_epi32(i32::MIN));
    let zero = _mm512_setzero_ps();
    let mut bad = zero;
    // The code of every lane of x[16c..16c + 16], + Z, in i32.
    let mut codes = |c: usize| {
        // SAFETY: c < vectors: 16 values at 16c (asserted).
        let xv = unsafe { _mm512_loadu_ps(x.as_ptr().add(16 * c)) };
        bad = _mm512_fmadd_ps(xv, zero, bad);
        let v = quotient512(xv, s, recip);
        // False for NaN and |v| < 0.5: those lanes convert to 0.
        let away = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_abs_ps(v), half);
        let v = _mm512_min_ps(_mm512_max_ps(v, nbound), bound);
        // copysign(0.5, v): 0.5 | (v & sign), one ternary-logic operation.
        let signed_half = _mm512_castsi512_ps(_mm512_ternarylogic_epi32::<0xF8>(
            _mm512_castps_si512(half),
            _mm512_castps_si512(v),
            sign,
        ));
        let t = _mm512_maskz_cvttps_epi32(away, _mm512_add_ps(v, signed_half));
        _mm512_add_epi32(t, zp)
    };
    // Four vectors at a time, saturated to int8 (the clamp) by `narrow4_i8`: 64 bytes, one
    // store.
    let mut c = 0;
    while c + 4 <= vectors {
        let b = narrow4_i8([codes(c), codes(c + 1), codes(c + 2), codes(c + 3)]);
        // SAFETY: c + 4 <= vectors: 64 bytes at 16c in `out` (asserted).
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(16 * c).cast(), b) };
        c += 4;
    }
    while c < vectors {
        let b = _mm512_cvtsepi32_epi8(codes(c));
        // SAFETY: c < vectors: 16 bytes at 16c in `out` (asserted).
        unsafe { _mm_storeu_si128(out.as_mut_ptr().add(16 * c).cast(), b) };
        c += 1;
    }
    _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(bad, zero) == u16::MAX
}

/// Four vectors of 16 i32 narrowed to 64 i8 in order, each value saturated to int8: two
/// saturating packs (i32 -> i16 -> i8) and one dword permutation, so that the 64 bytes leave
/// in one store (a `vpmov[s]db` to memory per vector was the quantizers' bottleneck on the
/// Intel Xeon model 207). The packs work per 128-bit lane: lane L of the result holds dword L
/// of `v[0]`, `v[1]`, `v[2]`, `v[3]` in turn, so dword `i` of the ordered bytes is dword
/// `[0, 4, 8, 12, 1, 5, ...][i]` of the packs.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn narrow4_i8(v: [__m512i; 4]) -> __m512i {
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let ab = _mm512_packs_epi32(v[0], v[1]);
    let cd = _mm512_packs_epi32(v[2], v[3]);
    _mm512_permutexvar_epi32(order, _mm512_packs_epi16(ab, cd))
}

/// The 256-bit `quotient_ps` on 16 lanes: `x * (1 / S)` where every lane's rounded integer
/// provably equals that of `x / S` (the argument is at `quotient_ps`), else `x / S`.
#[inline]
#[target_feature(enable = "avx512f")]
fn quotient512(x: __m512, s: __m512, recip: Reciprocal) -> __m512 {
    let Some(r) = recip.get() else {
        return _mm512_div_ps(x, s);
    };
    let y = _mm512_mul_ps(x, _mm512_set1_ps(r));
    let abs_y = _mm512_abs_ps(y);
    let frac = _mm512_sub_ps(
        y,
        _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y),
    );
    let to_half = _mm512_abs_ps(_mm512_sub_ps(_mm512_abs_ps(frac), _mm512_set1_ps(0.5)));
    let tolerance = _mm512_mul_ps(abs_y, _mm512_set1_ps(NEAR_HALF));
    let near = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(to_half, tolerance)
        & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(abs_y, _mm512_set1_ps(CLAMPED_BEYOND));
    if near == 0 {
        y
    } else {
        _mm512_div_ps(x, s)
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

/// [`hybrid512`] for one epilogue kind (`KIND`), flush, clamp and ARM-NaN setting: the
/// tile's rows with a zero point ([`rows512`] with `ZP`) or without.
///
/// # Safety
/// As [`hybrid512`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
unsafe fn tile512<const KIND: u8, const FLUSH: bool, const CLAMP: bool, const ARM: bool>(
    t: &mut HybridTile<'_, '_>,
) {
    // SAFETY: as this function's.
    unsafe {
        if t.any_zero_point() {
            rows512::<KIND, FLUSH, CLAMP, ARM, true>(t)
        } else {
            rows512::<KIND, FLUSH, CLAMP, ARM, false>(t)
        }
    }
}

/// One 16-channel vector's constants in the epilogue.
#[derive(Clone, Copy)]
struct Channels512 {
    /// Row sums.
    rs: __m512i,
    /// `-row_sum * offset` (wrapping).
    minus_rs_off: __m512i,
    /// Weight scales (flushed where the flavour flushes).
    ws: __m512,
    /// Bias or 0 (likewise).
    bias: __m512,
    /// The lanes inside the region.
    mask: __mmask16,
}

/// The epilogue's loop: over the tile's channels two 16-channel vectors at a time, rows
/// inside, and in each row both vectors, so that the two vectors' constants stay in registers
/// and each row's two stores are adjacent lines (with each vector's rows in turn, 512 x 768 x
/// 3072 took 1.2% longer on the Intel Xeon family 6 model 207: eight alternating processes,
/// median of medians 3,810 / 3,766 us). A row costs one add for its correction where no row
/// of the tile has a zero point (`ZP` false), and a multiply more where one has: in wrapping
/// i32, `acc - row_sum * (zp + offset) = acc + (-row_sum * offset) - row_sum * zp`. The rows
/// are walked by pointer with no bounds check per row (the caller asserted them once): the
/// epilogue runs between two tiles' products, and each of its instructions delays the next
/// tile's first `vpdpbusd`.
///
/// # Safety
/// As [`hybrid512`], and the tile's channels are a multiple of 32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
unsafe fn rows512<
    const KIND: u8,
    const FLUSH: bool,
    const CLAMP: bool,
    const ARM: bool,
    const ZP: bool,
>(
    t: &mut HybridTile<'_, '_>,
) {
    let (ch, e) = (t.channels, t.spec);
    let (width, rows) = (t.out.width(), t.out.rows());
    let (out, stride) = t.out.raw_parts();
    let params = &t.params[..rows];
    let (lo, hi) = e.act.bounds();
    let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    let propagate = e.nan == NanRule::Propagate;
    let offset = _mm512_set1_epi32(t.offset);
    let value = |a: __m512i, c: &Channels512, p: RowParams| {
        let mut d = _mm512_add_epi32(a, c.minus_rs_off);
        if ZP {
            d = _mm512_sub_epi32(d, _mm512_mullo_epi32(c.rs, _mm512_set1_epi32(p.zero_point)));
        }
        let accf = _mm512_cvtepi32_ps(d);
        let sf = _mm512_set1_ps(p.scale);
        let (ws, bias) = (c.ws, c.bias);
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
        v
    };
    for h in (0..width.div_ceil(16).min(ch / 16)).step_by(2) {
        let c: [Channels512; 2] = std::array::from_fn(|i| {
            let at = 16 * (h + i);
            // SAFETY: at + 16 <= ch (h is even and ch a multiple of 32), within the channel
            // slices (asserted by the caller).
            let (rs, mut ws, mut bias) = unsafe {
                (
                    _mm512_loadu_si512(t.row_sums.as_ptr().add(at).cast()),
                    _mm512_loadu_ps(t.scales.as_ptr().add(at)),
                    _mm512_loadu_ps(t.init.as_ptr().add(at)),
                )
            };
            // XNNPACK runs with denormals disabled: DAZ on the weight scales and the bias.
            if FLUSH {
                ws = flush_subnormal_ps(ws);
                bias = flush_subnormal_ps(bias);
            }
            let lanes = width.saturating_sub(at).min(16);
            Channels512 {
                rs,
                minus_rs_off: _mm512_sub_epi32(
                    _mm512_setzero_si512(),
                    _mm512_mullo_epi32(rs, offset),
                ),
                ws,
                bias,
                mask: ((1u32 << lanes) - 1) as __mmask16,
            }
        });
        // SAFETY: the caller asserted `acc.len() >= rows * ch`; 16 * h + 32 <= ch.
        let mut acc = unsafe { t.acc.as_ptr().add(16 * h) };
        let mut dst = out.wrapping_add(16 * h);
        for &p in params {
            for (i, c) in c.iter().enumerate() {
                // SAFETY: `acc` is at `r * ch + 16 * h` for this row r < rows: 32 values of it
                // are the row's; `dst` is this row's value 16 * h of the region, which the
                // caller holds (`raw_parts`), and lanes past `width - 16 * (h + i)` are masked
                // off (all of them where that vector lies past the region).
                unsafe {
                    let v = value(_mm512_loadu_si512(acc.add(16 * i).cast()), c, p);
                    _mm512_mask_storeu_ps(dst.wrapping_add(16 * i), c.mask, v);
                }
            }
            acc = acc.wrapping_add(ch);
            dst = dst.wrapping_add(stride);
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
unsafe fn integer512<const ROUNDING: u8, const REALS: bool>(t: &mut IntegerTile<'_, '_>) {
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
    let rows = t.out.rows();
    // The region's codes, or its reals and their scale (`REALS` says which, as `t.out`):
    // row r at `ptr + r * stride`.
    let (codes, reals, stride, scale) = match &mut t.out {
        IntegerOut::Codes(o) => {
            let (ptr, stride) = o.raw_parts();
            (ptr, std::ptr::null_mut(), stride, 0.0)
        }
        IntegerOut::Reals(o, scale) => {
            let (ptr, stride) = o.raw_parts();
            (std::ptr::null_mut(), ptr, stride, *scale)
        }
    };
    let scale = _mm512_set1_ps(scale);
    // Channel vectors outside, rows inside: one vector's constants stay in registers for all
    // the tile's rows.
    for (h, c) in consts.iter().enumerate().take(vectors) {
        for r in 0..rows {
            // SAFETY: 16 * h + 16 <= ch, within acc's row r < rows (asserted by the caller).
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
            // `code - Z_y`, exactly (see `integer256`).
            let y = _mm512_max_epi32(_mm512_min_epi32(y, hi), lo);
            if REALS {
                // `S * (code - Z_y)`, `TensorQuant::dequantize`'s operations.
                let v = _mm512_mul_ps(scale, _mm512_cvtepi32_ps(y));
                // SAFETY: row r < rows of the region holds `width` f32 from
                // `reals + r * stride` (`raw_parts`); lanes past `width - 16 * h` are masked
                // off.
                unsafe { _mm512_mask_storeu_ps(reals.add(r * stride + 16 * h), c.mask, v) };
            } else {
                // SAFETY: as above, `width` i8 from `codes + r * stride`. The values are
                // int8, so the saturating narrowing is exact.
                unsafe {
                    _mm512_mask_cvtsepi32_storeu_epi8(
                        codes.add(r * stride + 16 * h).cast(),
                        c.mask,
                        _mm512_add_epi32(y, zyv),
                    )
                };
            }
        }
    }
}
