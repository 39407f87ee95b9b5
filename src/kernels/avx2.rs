//! x86-64 AVX2 + FMA kernels: input quantization, the integer product on packed weights and
//! the float epilogue, bit for bit equal to the scalar reference.
//!
//! **Exact products.** Weights (i8, possibly -128) are sign-extended to i16 with `vpmovsxbw`
//! and inputs are kept as i16; `vpmaddwd` multiplies i16 pairs and adds each pair into an i32
//! lane. Every product is at most `128 * 128 = 2^14`, a pair sum at most `2^15`, so nothing
//! saturates (no `vpmaddubsw`, no `vpsignb`). The i32 lane accumulators are exact for any run
//! of at most [`EXACT_I32_RUN`](super::scalar::EXACT_I32_RUN) products; the driver never asks
//! for longer runs.
//!
//! **Tiles.** One call computes `MR` rows (1..=4) x 16 channels (one panel of
//! [`PackedWeights`](super::pack::PackedWeights)): per K pair, two 16-byte weight loads
//! sign-extended into two registers, one broadcast `(x[2p], x[2p+1])` per row, `2 * MR`
//! `vpmaddwd` + `vpaddd` into `2 * MR` accumulators. One row (`MR = 1`, the GEMV bound by the
//! weight stream) goes through `dots_gemv`: 4 K pairs per iteration into independent
//! accumulators and a software prefetch of the stream.
//!
//! Every function here is `#[target_feature(enable = "avx2,fma")]` and `unsafe` to call; the
//! callers in [`super::driver`] run only with [`Kernel::Avx2`](super::Kernel), which
//! [`Kernel::is_available`](super::Kernel::is_available) grants only after
//! `is_x86_feature_detected!("avx2")` and `("fma")`.

use std::arch::x86_64::*;

use super::driver::MR as MR_MAX;
use super::pack::{NR, PAIR_BYTES};
use crate::flavour::{EpilogueKind, Flavour, NanRule};
use crate::layer::epilogue::EpilogueSpec;
use crate::quantize::inputs::RowParams;
use crate::quantize::plan::{plan, Rounding, RowPlan};

/// Vectorised [`crate::quantize::plan::quantize_row_i16`]: quantizes a finite row into i16 (`out` has
/// `row.len()` rounded up to even values; the padding is 0).
///
/// # Safety
/// 1. The CPU supports AVX2 and FMA.
/// 2. `out.len() >= row.len()` (checked with `assert!`).
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn quantize_row_i16(
    flavour: Flavour,
    asymmetric: bool,
    row: &[f32],
    out: &mut [i16],
) -> RowParams {
    assert!(out.len() >= row.len());
    let k = row.len();
    let (mn, mx) = min_max(row);
    let p = plan(flavour, asymmetric, k, mn, mx);
    // Rows whose multiplier overflows (tiny ranges) or where XNNPACK's DAZ could matter take
    // the definition element by element: their conversions of infinities and NaN differ per
    // build (see `crate::quantize::plan`).
    let chunks = if p.vector_safe { k / 8 } else { 0 };
    let src = row.as_ptr();
    let dst = out.as_mut_ptr();
    // SAFETY: in every arm, each chunk c < chunks reads row[8c..8c + 8] and writes
    // out[8c..8c + 8], in bounds since 8 * chunks <= k <= out.len() (asserted above); AVX2 and
    // FMA are available per this function's contract 1.
    unsafe {
        match p.rounding {
            Rounding::X86 => quantize_chunks(src, dst, chunks, &p, |y, z, f| round_x86(y, z, f)),
            Rounding::Away => quantize_chunks(src, dst, chunks, &p, |y, z, f| round_away(y, z, f)),
            Rounding::PortableZpFirst => {
                quantize_chunks(src, dst, chunks, &p, |y, z, f| round_portable(y, z, f))
            }
            Rounding::TiesEven => {
                quantize_chunks(src, dst, chunks, &p, |y, z, f| round_even(y, z, f))
            }
        }
    }
    for i in chunks * 8..k {
        out[i] = p.one(i, row[i]) as i16;
    }
    out[k..].fill(0);
    p.params
}

/// `(min(0, min row), max(0, max row))`, vectorised (order-free for finite values).
#[target_feature(enable = "avx2,fma")]
fn min_max(row: &[f32]) -> (f32, f32) {
    let mut lo = _mm256_setzero_ps();
    let mut hi = _mm256_setzero_ps();
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 8 f32; loadu has no alignment requirement.
        let v = unsafe { _mm256_loadu_ps(c.as_ptr()) };
        lo = _mm256_min_ps(lo, v);
        hi = _mm256_max_ps(hi, v);
    }
    let mut l = [0.0f32; 8];
    let mut h = [0.0f32; 8];
    // SAFETY: both arrays hold 8 f32.
    unsafe {
        _mm256_storeu_ps(l.as_mut_ptr(), lo);
        _mm256_storeu_ps(h.as_mut_ptr(), hi);
    }
    let (mut a, mut b) = (0.0f32, 0.0f32);
    for (&x, &y) in l.iter().zip(&h) {
        a = a.min(x);
        b = b.max(y);
    }
    for &x in chunks.remainder() {
        a = a.min(x);
        b = b.max(x);
    }
    (a, b)
}

/// TFLite x86 vector rounding: `trunc(f32(y + (y < 0 ? -0.5 : 0.5)))`, then `+ zp`.
#[target_feature(enable = "avx2,fma")]
fn round_x86(y: __m256, zp: __m256i, _zpf: __m256) -> __m256i {
    let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(y, _mm256_setzero_ps());
    let half = _mm256_blendv_ps(_mm256_set1_ps(0.5), _mm256_set1_ps(-0.5), neg);
    _mm256_add_epi32(_mm256_cvttps_epi32(_mm256_add_ps(y, half)), zp)
}

/// Exact round-half-away-from-zero of every lane (as `f32::round`).
#[target_feature(enable = "avx2,fma")]
fn round_away_ps(y: __m256) -> __m256 {
    let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
    // y - trunc(y) is exact (both share the exponent range, |y - t| < 1).
    let d = _mm256_sub_ps(y, t);
    let sign = _mm256_and_ps(y, _mm256_set1_ps(-0.0));
    let abs_d = _mm256_andnot_ps(_mm256_set1_ps(-0.0), d);
    let ge = _mm256_cmp_ps::<_CMP_GE_OQ>(abs_d, _mm256_set1_ps(0.5));
    let one = _mm256_or_ps(_mm256_set1_ps(1.0), sign);
    _mm256_add_ps(t, _mm256_and_ps(ge, one))
}

/// Ties away from zero, then `+ zp`.
#[target_feature(enable = "avx2,fma")]
fn round_away(y: __m256, zp: __m256i, _zpf: __m256) -> __m256i {
    _mm256_add_epi32(_mm256_cvttps_epi32(round_away_ps(y)), zp)
}

/// Portable asymmetric: `round_away(f32(zp + y))`.
#[target_feature(enable = "avx2,fma")]
fn round_portable(y: __m256, _zp: __m256i, zpf: __m256) -> __m256i {
    _mm256_cvttps_epi32(round_away_ps(_mm256_add_ps(zpf, y)))
}

/// Ties to even (explicit rounding mode, independent of MXCSR), then `+ zp`.
#[target_feature(enable = "avx2,fma")]
fn round_even(y: __m256, zp: __m256i, _zpf: __m256) -> __m256i {
    let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(y);
    _mm256_add_epi32(_mm256_cvttps_epi32(r), zp)
}

/// Quantizes `chunks` chunks of 8 with the given vector rounding and clamps to the plan's
/// bounds.
///
/// # Safety
/// 1. AVX2 and FMA are available.
/// 2. `src` is valid for reading and `dst` for writing `8 * chunks` elements.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn quantize_chunks(
    src: *const f32,
    dst: *mut i16,
    chunks: usize,
    p: &RowPlan,
    round: impl Fn(__m256, __m256i, __m256) -> __m256i,
) {
    let mult = _mm256_set1_ps(p.mult);
    let zp = _mm256_set1_epi32(p.zp);
    let zpf = _mm256_set1_ps(p.zp as f32);
    let lo = _mm256_set1_epi32(p.lo);
    let hi = _mm256_set1_epi32(p.hi);
    for c in 0..chunks {
        // SAFETY: c < chunks, so 8c + 8 <= 8 * chunks elements (contract 2).
        let x = unsafe { _mm256_loadu_ps(src.add(8 * c)) };
        let q = round(_mm256_mul_ps(x, mult), zp, zpf);
        let q = _mm256_max_epi32(_mm256_min_epi32(q, hi), lo);
        // i32 -> i16 (values are within [-128, 127], so the saturating pack is exact).
        let packed = _mm256_packs_epi32(q, q);
        let packed = _mm256_permute4x64_epi64::<0b1000>(packed);
        // SAFETY: writes 8 i16 at dst[8c..8c+8], in bounds (contract 2).
        unsafe { _mm_storeu_si128(dst.add(8 * c).cast(), _mm256_castsi256_si128(packed)) };
    }
}

/// Raw integer dots of an `MR x 16` tile: `acc[r][c] = sum_p x[r][2p..2p+2] . w[c][2p..2p+2]`
/// over `kp` pairs. With `PREFETCH`, the panel is prefetched 2 KiB ahead (for small batches,
/// which stream the weights from memory once; at large batches, where the tiles are
/// compute-bound on weights held in L2, the extra instructions measured 10-25% slower).
///
/// # Safety
/// 1. AVX2 and FMA are available.
/// 2. `x` is valid for reading `(MR - 1) * x_stride + 2 * kp` i16 (row r starts at
///    `x + r * x_stride`), and `w` for reading `kp * 32` bytes.
/// 3. `kp * 2 <= EXACT_I32_RUN` (otherwise the i32 lanes may wrap).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dots<const MR: usize, const PREFETCH: bool>(
    x: *const i16,
    x_stride: usize,
    w: *const i8,
    kp: usize,
) -> [[__m256i; 2]; MR] {
    let mut acc = [[_mm256_setzero_si256(); 2]; MR];
    for p in 0..kp {
        if PREFETCH && p % 2 == 0 {
            // One prefetch per cache line, as far ahead as the GEMV's (never faults).
            _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(p * PAIR_BYTES + GEMV_PREFETCH).cast());
        }
        // SAFETY: p < kp, so bytes [32p, 32p + 32) are within the panel (contract 2).
        let (w0, w1) = unsafe {
            let wp = w.add(p * PAIR_BYTES);
            (
                _mm256_cvtepi8_epi16(_mm_loadu_si128(wp.cast())),
                _mm256_cvtepi8_epi16(_mm_loadu_si128(wp.add(16).cast())),
            )
        };
        for (r, a) in acc.iter_mut().enumerate() {
            // SAFETY: reads x[r * x_stride + 2p .. + 2], in bounds by contract 2; unaligned
            // reads are allowed.
            let pair = unsafe { x.add(r * x_stride + 2 * p).cast::<i32>().read_unaligned() };
            let xv = _mm256_set1_epi32(pair);
            a[0] = _mm256_add_epi32(a[0], _mm256_madd_epi16(w0, xv));
            a[1] = _mm256_add_epi32(a[1], _mm256_madd_epi16(w1, xv));
        }
    }
    acc
}

/// Bytes ahead of the current K pair at which [`dots_gemv`] prefetches the weight stream
/// (about the bytes in flight that DRAM latency x bandwidth asks for; measured against 1 and
/// 4 KiB on 4096 x 4096 and 4096 x 14336).
const GEMV_PREFETCH: usize = 2048;

/// K pairs per iteration of [`dots_gemv`].
const GEMV_UNROLL: usize = 4;

/// The dots of one row against one panel (the GEMV case, bound by the weight stream): the same
/// products as [`dots`] with `MR = 1`, but [`GEMV_UNROLL`] K pairs per iteration into
/// independent accumulators (more loads in flight) and a software prefetch of the stream.
/// The partial sums are added in i32 at the end: integer addition is exact (every partial sum
/// is bounded by the total's bound), so the result equals [`dots`]'s bit for bit.
///
/// # Safety
/// As for [`dots`] with `MR = 1`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dots_gemv(x: *const i16, w: *const i8, kp: usize) -> [__m256i; 2] {
    let mut a = [_mm256_setzero_si256(); 2 * GEMV_UNROLL];
    let mut p = 0;
    while p + GEMV_UNROLL <= kp {
        let wp = w.wrapping_add(p * PAIR_BYTES);
        // A prefetch never faults: past the end of the panel it fetches the next panel's
        // start (or nothing useful past the last one).
        _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(GEMV_PREFETCH).cast());
        _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(GEMV_PREFETCH + 64).cast());
        for u in 0..GEMV_UNROLL {
            // SAFETY: p + u < kp: bytes [32(p + u), 32(p + u) + 32) of the panel and the i16
            // pair x[2(p + u)..] are in bounds (contract 2 of `dots`).
            unsafe {
                let wq = wp.add(u * PAIR_BYTES);
                let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wq.cast()));
                let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wq.add(16).cast()));
                let xv = _mm256_set1_epi32(x.add(2 * (p + u)).cast::<i32>().read_unaligned());
                a[2 * u] = _mm256_add_epi32(a[2 * u], _mm256_madd_epi16(w0, xv));
                a[2 * u + 1] = _mm256_add_epi32(a[2 * u + 1], _mm256_madd_epi16(w1, xv));
            }
        }
        p += GEMV_UNROLL;
    }
    while p < kp {
        // SAFETY: p < kp, in bounds as above.
        unsafe {
            let wq = w.add(p * PAIR_BYTES);
            let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wq.cast()));
            let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wq.add(16).cast()));
            let xv = _mm256_set1_epi32(x.add(2 * p).cast::<i32>().read_unaligned());
            a[0] = _mm256_add_epi32(a[0], _mm256_madd_epi16(w0, xv));
            a[1] = _mm256_add_epi32(a[1], _mm256_madd_epi16(w1, xv));
        }
        p += 1;
    }
    let mut s = [a[0], a[1]];
    for u in 1..GEMV_UNROLL {
        s[0] = _mm256_add_epi32(s[0], a[2 * u]);
        s[1] = _mm256_add_epi32(s[1], a[2 * u + 1]);
    }
    s
}

/// Raw dots of a tile stored as i32 (for the chunked long-K path).
///
/// # Safety
/// As for [`dots`], and `MR <= 4`.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn tile_raw<const MR: usize>(
    x: *const i16,
    x_stride: usize,
    w: *const i8,
    kp: usize,
    out: &mut [[i32; NR]; MR_MAX],
) {
    // SAFETY: forwarded contract.
    store_raw(&unsafe { dots::<MR, false>(x, x_stride, w, kp) }, out)
}

/// Stores the i32 lanes of an `MR x 16` tile (channels 0-7, 8-15 of each row) into `out`.
#[target_feature(enable = "avx2,fma")]
pub(crate) fn store_raw<const MR: usize>(acc: &[[__m256i; 2]; MR], out: &mut [[i32; NR]; MR_MAX]) {
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: each row of `out` holds 16 i32 = two 256-bit stores.
        unsafe {
            _mm256_storeu_si256(o.as_mut_ptr().cast(), a[0]);
            _mm256_storeu_si256(o.as_mut_ptr().add(8).cast(), a[1]);
        }
    }
}

/// One `MR x 16` tile with its epilogue, for `K <= I32_COMBINE_MAX_K`:
/// `out[r][c] = act(epilogue(acc[r][c] - row_sum[c] * zp[r]))` in i32 (wrapping, exact since
/// the true value fits), written to `o.width <= 16` columns of each row.
///
/// # Safety
/// 1. As [`dots`] 1-3.
/// 2. As [`epilogue_store`] 2-3 for `o`.
///
/// `prefetch`: prefetch the weight stream (small batches; see [`dots`]). One row always does.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn tile<const MR: usize>(
    x: *const i16,
    x_stride: usize,
    w: *const i8,
    kp: usize,
    prefetch: bool,
    o: &TileOut<'_>,
) {
    let acc = if MR == 1 {
        // SAFETY: forwarded contract 1 (one row: `x` holds `2 * kp` i16).
        let a = unsafe { dots_gemv(x, w, kp) };
        let mut acc = [[_mm256_setzero_si256(); 2]; MR];
        acc[0] = a;
        acc
    } else {
        // SAFETY: forwarded contract 1.
        unsafe {
            if prefetch {
                dots::<MR, true>(x, x_stride, w, kp)
            } else {
                dots::<MR, false>(x, x_stride, w, kp)
            }
        }
    };
    // SAFETY: forwarded contract 2.
    unsafe { epilogue_store::<MR>(&acc, 0, o) }
}

/// Every subnormal lane becomes zero of the same sign (x86 FTZ / DAZ, as XNNPACK runs);
/// other lanes, NaN included, are unchanged ([`crate::quantize::rounding::flush_subnormal`]).
#[target_feature(enable = "avx2,fma")]
fn flush_subnormal_ps(v: __m256) -> __m256 {
    let sign = _mm256_set1_ps(-0.0);
    let tiny =
        _mm256_cmp_ps::<_CMP_LT_OQ>(_mm256_andnot_ps(sign, v), _mm256_set1_ps(f32::MIN_POSITIVE));
    _mm256_blendv_ps(v, _mm256_and_ps(v, sign), tiny)
}

/// Where and how a tile's epilogue writes: row parameters, the panel's constants (16 values
/// each), the epilogue flavour, and `width` output columns per row at `out + r * out_stride`.
#[derive(Clone, Copy)]
pub(crate) struct TileOut<'a> {
    /// Row parameters (at least MR).
    pub(crate) params: &'a [RowParams],
    /// The panel's row sums.
    pub(crate) row_sums: &'a [i32],
    /// The panel's weight scales.
    pub(crate) scales: &'a [f32],
    /// The panel's bias (or zeros).
    pub(crate) init: &'a [f32],
    /// The epilogue.
    pub(crate) e: EpilogueSpec,
    /// First output of the tile.
    pub(crate) out: *mut f32,
    /// Output row stride.
    pub(crate) out_stride: usize,
    /// Valid columns (<= 16).
    pub(crate) width: usize,
}

/// The vector epilogue of an `MR x 16` tile of i32 dots:
/// `out[r][c] = act(epilogue(acc[r][c] - row_sum[c] * (zp[r] + zp_offset)))`, the correction in
/// wrapping i32 (exact when the true value fits, i.e. K <= I32_COMBINE_MAX_K). `zp_offset` is
/// 0 for signed inputs and 128 for the VNNI kernel's `x + 128` inputs.
///
/// # Safety
/// 1. AVX2 and FMA are available.
/// 2. `o.params.len() >= MR`; `o.row_sums`, `o.scales`, `o.init` hold at least 16 values.
/// 3. `o.out` is valid for writing `o.width` f32 at `o.out + r * o.out_stride` for each
///    `r < MR`, and no other thread writes those elements during the call.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn epilogue_store<const MR: usize>(
    acc: &[[__m256i; 2]; MR],
    zp_offset: i32,
    o: &TileOut<'_>,
) {
    let TileOut {
        params,
        row_sums,
        scales,
        init,
        e,
        out,
        out_stride,
        width,
    } = *o;
    assert!(params.len() >= MR && row_sums.len() >= NR && scales.len() >= NR && init.len() >= NR);
    assert!(width <= NR);
    // SAFETY: the slices hold at least 16 values each (asserted above).
    let (rs, ws, bias) = unsafe {
        (
            [
                _mm256_loadu_si256(row_sums.as_ptr().cast()),
                _mm256_loadu_si256(row_sums.as_ptr().add(8).cast()),
            ],
            [
                _mm256_loadu_ps(scales.as_ptr()),
                _mm256_loadu_ps(scales.as_ptr().add(8)),
            ],
            [
                _mm256_loadu_ps(init.as_ptr()),
                _mm256_loadu_ps(init.as_ptr().add(8)),
            ],
        )
    };
    // XNNPACK runs with denormals disabled: DAZ on the weight scales and the bias.
    let (ws, bias) = if e.flush {
        (
            [flush_subnormal_ps(ws[0]), flush_subnormal_ps(ws[1])],
            [flush_subnormal_ps(bias[0]), flush_subnormal_ps(bias[1])],
        )
    } else {
        (ws, bias)
    };
    let (lo, hi) = e.act.bounds();
    let (lo, hi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
    let clamps = e.clamps();
    for (r, a) in acc.iter().enumerate() {
        let p = params[r];
        let zp = _mm256_set1_epi32(p.zero_point.wrapping_add(zp_offset));
        let sf = _mm256_set1_ps(p.scale);
        let mut y = [_mm256_setzero_ps(); 2];
        for h in 0..2 {
            let corrected = _mm256_sub_epi32(a[h], _mm256_mullo_epi32(rs[h], zp));
            let accf = _mm256_cvtepi32_ps(corrected);
            // The four operation orders of `EpilogueSpec::value`; no FMA except where named.
            let mut v = match e.kind {
                EpilogueKind::TfliteTwoRoundings => {
                    _mm256_add_ps(bias[h], _mm256_mul_ps(accf, _mm256_mul_ps(sf, ws[h])))
                }
                EpilogueKind::TfliteFused => {
                    _mm256_fmadd_ps(accf, _mm256_mul_ps(sf, ws[h]), bias[h])
                }
                EpilogueKind::XnnpackFused => {
                    _mm256_fmadd_ps(_mm256_mul_ps(accf, sf), ws[h], bias[h])
                }
                EpilogueKind::KleidiTwoRoundings => {
                    let s = flush_subnormal_ps(_mm256_mul_ps(ws[h], sf));
                    _mm256_add_ps(_mm256_mul_ps(accf, s), bias[h])
                }
            };
            if e.flush {
                v = flush_subnormal_ps(v);
            }
            if clamps {
                // std::max(lo, std::min(v, hi)): min_ps(hi, v) = hi < v ? hi : v keeps a NaN;
                // max_ps(v, lo) = v > lo ? v : lo turns it into lo (x86 XNNPACK's order too).
                let clamped = _mm256_max_ps(_mm256_min_ps(hi, v), lo);
                v = if e.nan == NanRule::Propagate {
                    // ARM's fmax / fmin keep the NaN.
                    _mm256_blendv_ps(clamped, v, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v))
                } else {
                    clamped
                };
            }
            if e.arm_nan {
                let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v);
                v = _mm256_blendv_ps(v, _mm256_set1_ps(f32::NAN), nan);
            }
            y[h] = v;
        }
        // SAFETY: contract 3: row r of the output holds `width` writable f32 (width <= 16,
        // asserted).
        unsafe {
            let dst = out.add(r * out_stride);
            if width == NR {
                _mm256_storeu_ps(dst, y[0]);
                _mm256_storeu_ps(dst.add(8), y[1]);
            } else {
                let mut tmp = [0.0f32; NR];
                _mm256_storeu_ps(tmp.as_mut_ptr(), y[0]);
                _mm256_storeu_ps(tmp.as_mut_ptr().add(8), y[1]);
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, width);
            }
        }
    }
}
