//! The 256-bit width (AVX2 + FMA): the row quantizer of every x86-64 kernel and the hybrid
//! and full-integer epilogues of the 256-bit kernels, bit for bit the portable definitions
//! (`quantize::plan`, `EpilogueSpec::value`, `IntegerTile::portable`).
//!
//! A [`V256`] value exists only where AVX2 and FMA were detected; every function taking one is
//! therefore safe to call, and runs its `#[target_feature]` code inside `unsafe` blocks whose
//! `// SAFETY:` comments point at that proof and at the slice bounds asserted first.

use std::arch::x86_64::*;

use crate::engine::hybrid::HybridTile;
use crate::engine::integer::IntegerTile;
use crate::flavour::{EpilogueKind, Flavour, NanRule};
use crate::kernels::contract::{InputElement, Width};
use crate::quantize::inputs::RowParams;
use crate::quantize::plan::{plan, Rounding, RowPlan};

/// Proof that the CPU runs AVX2 and FMA.
#[derive(Clone, Copy, Debug)]
pub(crate) struct V256(());

impl V256 {
    /// The token, where AVX2 and FMA are available.
    pub(crate) fn new() -> Option<Self> {
        (std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
            .then_some(V256(()))
    }

    /// Quantizes a finite row into `out` (element type i16, or u8 = `q + 128`), padding the
    /// rest of `out` with `T::PAD`: vectorised [`RowPlan::one`] for rows whose plan allows it,
    /// the definition element by element otherwise.
    pub(crate) fn quantize<T: Store8>(
        self,
        flavour: Flavour,
        asymmetric: bool,
        row: &[f32],
        out: &mut [T],
    ) -> RowParams {
        assert!(out.len() >= row.len());
        // SAFETY: AVX2 and FMA are available (`self`).
        let (mn, mx) = unsafe { min_max(row) };
        let p = plan(flavour, asymmetric, row.len(), mn, mx);
        // Rows whose multiplier overflows (tiny ranges) or where XNNPACK's DAZ could matter
        // take the definition element by element: their conversions of infinities and NaN
        // differ per build (see `crate::quantize::plan`).
        let chunks = if p.vector_safe { row.len() / 8 } else { 0 };
        // SAFETY: AVX2 and FMA are available (`self`); chunks * 8 <= row.len() <= out.len().
        unsafe {
            match p.rounding {
                Rounding::X86 => chunks8(row, out, chunks, &p, |y, z, f| round_x86(y, z, f)),
                Rounding::Away => chunks8(row, out, chunks, &p, |y, z, f| round_away(y, z, f)),
                Rounding::PortableZpFirst => {
                    chunks8(row, out, chunks, &p, |y, z, f| round_portable(y, z, f))
                }
                Rounding::TiesEven => chunks8(row, out, chunks, &p, |y, z, f| round_even(y, z, f)),
            }
        }
        for i in chunks * 8..row.len() {
            out[i] = T::from_q(p.one(i, row[i]));
        }
        out[row.len()..].fill(T::PAD);
        p.params
    }
}

/// How 8 quantized lanes (already clamped to [-128, 127]) are stored in a row of `Self`.
pub(crate) trait Store8: InputElement {
    /// Stores the 8 lanes of `q` at `dst[..8]`.
    ///
    /// # Safety
    /// AVX2 is available and `dst` is valid for writing 8 elements.
    unsafe fn store8(q: __m256i, dst: *mut Self);
}

impl Store8 for i16 {
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn store8(q: __m256i, dst: *mut i16) {
        // i32 -> i16: the values are in [-128, 127], so the saturating pack is exact.
        let packed = _mm256_permute4x64_epi64::<0b1000>(_mm256_packs_epi32(q, q));
        // SAFETY: 8 i16 = 16 bytes at dst (the caller's contract).
        unsafe { _mm_storeu_si128(dst.cast(), _mm256_castsi256_si128(packed)) };
    }
}

impl Store8 for u8 {
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn store8(q: __m256i, dst: *mut u8) {
        // q + 128 in [0, 255]: i32 -> i16 -> u8, both packs exact.
        let u = _mm256_add_epi32(q, _mm256_set1_epi32(128));
        let w = _mm256_permute4x64_epi64::<0b1000>(_mm256_packs_epi32(u, u));
        let b = _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_castsi256_si128(w));
        // SAFETY: 8 bytes at dst (the caller's contract).
        unsafe { _mm_storel_epi64(dst.cast(), b) };
    }
}

/// `(min(0, min row), max(0, max row))`, vectorised (order-free for finite values).
#[target_feature(enable = "avx2,fma")]
unsafe fn min_max(row: &[f32]) -> (f32, f32) {
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
#[inline]
#[target_feature(enable = "avx2,fma")]
fn round_x86(y: __m256, zp: __m256i, _zpf: __m256) -> __m256i {
    let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(y, _mm256_setzero_ps());
    let half = _mm256_blendv_ps(_mm256_set1_ps(0.5), _mm256_set1_ps(-0.5), neg);
    _mm256_add_epi32(_mm256_cvttps_epi32(_mm256_add_ps(y, half)), zp)
}

/// Exact round-half-away-from-zero of every lane (as `f32::round`).
#[inline]
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
#[inline]
#[target_feature(enable = "avx2,fma")]
fn round_away(y: __m256, zp: __m256i, _zpf: __m256) -> __m256i {
    _mm256_add_epi32(_mm256_cvttps_epi32(round_away_ps(y)), zp)
}

/// Portable asymmetric: `round_away(f32(zp + y))`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn round_portable(y: __m256, _zp: __m256i, zpf: __m256) -> __m256i {
    _mm256_cvttps_epi32(round_away_ps(_mm256_add_ps(zpf, y)))
}

/// Ties to even (explicit rounding mode, independent of MXCSR), then `+ zp`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn round_even(y: __m256, zp: __m256i, _zpf: __m256) -> __m256i {
    let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(y);
    _mm256_add_epi32(_mm256_cvttps_epi32(r), zp)
}

/// Quantizes `chunks` chunks of 8 with the given vector rounding, clamps to the plan's
/// bounds and stores them as `T`.
///
/// # Safety
/// AVX2 and FMA are available; `8 * chunks <= row.len() <= out.len()`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn chunks8<T: Store8>(
    row: &[f32],
    out: &mut [T],
    chunks: usize,
    p: &RowPlan,
    round: impl Fn(__m256, __m256i, __m256) -> __m256i,
) {
    debug_assert!(8 * chunks <= row.len() && row.len() <= out.len());
    let mult = _mm256_set1_ps(p.mult);
    let zp = _mm256_set1_epi32(p.zp);
    let zpf = _mm256_set1_ps(p.zp as f32);
    let lo = _mm256_set1_epi32(p.lo);
    let hi = _mm256_set1_epi32(p.hi);
    let (src, dst) = (row.as_ptr(), out.as_mut_ptr());
    for c in 0..chunks {
        // SAFETY: c < chunks, so 8c + 8 <= row.len() (the contract).
        let x = unsafe { _mm256_loadu_ps(src.add(8 * c)) };
        let q = round(_mm256_mul_ps(x, mult), zp, zpf);
        let q = _mm256_max_epi32(_mm256_min_epi32(q, hi), lo);
        // SAFETY: 8c + 8 <= out.len() (the contract); AVX2 is available.
        unsafe { T::store8(q, dst.add(8 * c)) };
    }
}

/// Every subnormal lane becomes zero of the same sign (x86 FTZ / DAZ, as XNNPACK runs);
/// other lanes, NaN included, are unchanged ([`crate::quantize::rounding::flush_subnormal`]).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn flush_subnormal_ps(v: __m256) -> __m256 {
    let sign = _mm256_set1_ps(-0.0);
    let tiny =
        _mm256_cmp_ps::<_CMP_LT_OQ>(_mm256_andnot_ps(sign, v), _mm256_set1_ps(f32::MIN_POSITIVE));
    _mm256_blendv_ps(v, _mm256_and_ps(v, sign), tiny)
}

// SAFETY: a `V256` exists only where AVX2 and FMA were detected (`V256::new`).
unsafe impl Width for V256 {
    fn hybrid(self, t: &mut HybridTile<'_, '_>) {
        let ch = t.channels;
        assert!(
            ch % 8 == 0 && t.row_sums.len() >= ch && t.scales.len() >= ch && t.init.len() >= ch
        );
        assert!(t.acc.len() >= t.out.rows() * ch && t.params.len() >= t.out.rows());
        // SAFETY: AVX2 and FMA (`self`); the slices were checked above.
        unsafe { hybrid256(t) }
    }

    fn integer(self, t: &mut IntegerTile<'_, '_>) {
        t.portable();
    }
}

/// The hybrid epilogue of a tile, 8 channels per vector; the same four operation orders,
/// flushes, clamps and NaN rules as `EpilogueSpec::value`.
///
/// # Safety
/// AVX2 and FMA are available; the tile's slices hold what `Width::hybrid` asserted.
#[target_feature(enable = "avx2,fma")]
unsafe fn hybrid256(t: &mut HybridTile<'_, '_>) {
    let (ch, e) = (t.channels, t.spec);
    let (lo, hi) = e.act.bounds();
    let (lo, hi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
    let clamps = e.clamps();
    let width = t.out.width();
    for r in 0..t.out.rows() {
        let p = t.params[r];
        let zp = _mm256_set1_epi32(p.zero_point.wrapping_add(t.offset));
        let sf = _mm256_set1_ps(p.scale);
        let mut y = [0.0f32; 64];
        for h in 0..ch / 8 {
            // SAFETY: h * 8 + 8 <= ch, within acc's row and the channel slices (asserted).
            let (a, rs, ws, bias) = unsafe {
                (
                    _mm256_loadu_si256(t.acc.as_ptr().add(r * ch + h * 8).cast()),
                    _mm256_loadu_si256(t.row_sums.as_ptr().add(h * 8).cast()),
                    _mm256_loadu_ps(t.scales.as_ptr().add(h * 8)),
                    _mm256_loadu_ps(t.init.as_ptr().add(h * 8)),
                )
            };
            // XNNPACK runs with denormals disabled: DAZ on the weight scales and the bias.
            let (ws, bias) = if e.flush {
                (flush_subnormal_ps(ws), flush_subnormal_ps(bias))
            } else {
                (ws, bias)
            };
            let accf = _mm256_cvtepi32_ps(_mm256_sub_epi32(a, _mm256_mullo_epi32(rs, zp)));
            // The four operation orders of `EpilogueSpec::value`; no FMA except where named.
            let mut v = match e.kind {
                EpilogueKind::TfliteTwoRoundings => {
                    _mm256_add_ps(bias, _mm256_mul_ps(accf, _mm256_mul_ps(sf, ws)))
                }
                EpilogueKind::TfliteFused => _mm256_fmadd_ps(accf, _mm256_mul_ps(sf, ws), bias),
                EpilogueKind::XnnpackFused => _mm256_fmadd_ps(_mm256_mul_ps(accf, sf), ws, bias),
                EpilogueKind::KleidiTwoRoundings => {
                    let s = flush_subnormal_ps(_mm256_mul_ps(ws, sf));
                    _mm256_add_ps(_mm256_mul_ps(accf, s), bias)
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
            // SAFETY: h * 8 + 8 <= ch <= 64.
            unsafe { _mm256_storeu_ps(y.as_mut_ptr().add(h * 8), v) };
        }
        t.out.row(r).copy_from_slice(&y[..width]);
    }
}
