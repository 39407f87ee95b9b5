//! The 256-bit width (AVX2 + FMA): the row quantizer of the 256-bit kernels (the AVX-512
//! kernels run its 16-lane twin, `V512::quantize_u8`), the full-integer input quantizer of
//! every x86-64 kernel, and the hybrid and full-integer epilogues of the 256-bit kernels, bit
//! for bit the portable definitions (`quantize::plan`, `EpilogueSpec::value`,
//! `IntegerTile::portable`).
//!
//! A [`V256`] value exists only where AVX2 and FMA were detected; every function taking one is
//! therefore safe to call, and runs its `#[target_feature]` code inside `unsafe` blocks whose
//! `// SAFETY:` comments point at that proof and at the slice bounds asserted first.

use std::arch::x86_64::*;

use crate::engine::hybrid::HybridTile;
use crate::engine::integer::{IntegerOut, IntegerTile};
use crate::flavour::{EpilogueKind, Flavour, NanRule};
use crate::integer::TensorQuant;
use crate::kernels::contract::{InputElement, Width};
use crate::quantize::inputs::RowParams;
use crate::quantize::plan::{plan, Rounding as QRounding, RowPlan};
use crate::toolkit::fixed_point::Rounding;

/// Proof that the CPU runs AVX2 and FMA.
#[derive(Clone, Copy, Debug)]
pub(crate) struct V256(());

impl V256 {
    /// The token, where AVX2 and FMA are available.
    pub(crate) fn new() -> Option<Self> {
        (std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
            .then_some(V256(()))
    }

    /// Quantizes a row into `out` (element type i16, or u8 = `q + 128`), padding the rest of
    /// `out` with `T::PAD`: vectorised [`RowPlan::one`] for rows whose plan allows it, the
    /// definition element by element otherwise; `None` for a row with a NaN or an infinity.
    pub(crate) fn quantize<T: Store8>(
        self,
        flavour: Flavour,
        asymmetric: bool,
        row: &[f32],
        out: &mut [T],
    ) -> Option<RowParams> {
        assert!(out.len() >= row.len());
        // SAFETY: AVX2 and FMA are available (`self`).
        let (mn, mx) = unsafe { min_max(row) }?;
        let p = plan(flavour, asymmetric, row.len(), mn, mx);
        // Rows whose multiplier overflows (tiny ranges) or where XNNPACK's DAZ could matter
        // take the definition element by element: their conversions of infinities and NaN
        // differ per build (see `crate::quantize::plan`).
        let chunks = if p.vector_safe { row.len() / 8 } else { 0 };
        // SAFETY: AVX2 and FMA are available (`self`); chunks * 8 <= row.len() <= out.len().
        unsafe { chunks8(row, out, chunks, &p) };
        for i in chunks * 8..row.len() {
            out[i] = T::from_q(p.one(i, row[i]));
        }
        out[row.len()..].fill(T::PAD);
        Some(p.params)
    }
}

/// How 8 quantized lanes (already clamped to [-128, 127]) are stored in a row of `Self`.
pub(crate) trait Store8: InputElement {
    /// Stores the 8 lanes of `q` at `dst[..8]`.
    ///
    /// # Safety
    /// AVX2 is available and `dst` is valid for writing 8 elements.
    unsafe fn store8(q: __m256i, dst: *mut Self);

    /// Stores the 32 lanes of `q[0..4]` at `dst[..32]`.
    ///
    /// # Safety
    /// AVX2 is available and `dst` is valid for writing 32 elements.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn store32(q: [__m256i; 4], dst: *mut Self) {
        for (j, &v) in q.iter().enumerate() {
            // SAFETY: 8 elements at dst + 8j, within the 32 of the caller's contract.
            unsafe { Self::store8(v, dst.add(8 * j)) };
        }
    }
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

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn store32(q: [__m256i; 4], dst: *mut u8) {
        // The packs interleave 128-bit lanes: (q0, q1) -> [q0.lo q1.lo q0.hi q1.hi] as i16,
        // then with (q2, q3) -> bytes [q0.lo q1.lo q2.lo q3.lo q0.hi q1.hi q2.hi q3.hi] in
        // groups of 4; the dword permutation restores the order. Both packs are exact for
        // values in [-128, 127]; the bias flips the sign bit: (q + 128) as u8 = q as u8 ^ 0x80.
        let w01 = _mm256_packs_epi32(q[0], q[1]);
        let w23 = _mm256_packs_epi32(q[2], q[3]);
        let b = _mm256_packs_epi16(w01, w23);
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let b = _mm256_permutevar8x32_epi32(b, order);
        let u = _mm256_xor_si256(b, _mm256_set1_epi8(i8::MIN));
        // SAFETY: 32 bytes at dst (the caller's contract).
        unsafe { _mm256_storeu_si256(dst.cast(), u) };
    }
}

/// `(min(0, min row), max(0, max row))`, vectorised (order-free for finite values), with four
/// independent min / max chains so that the loop is not bound by their latency; `None` if the
/// row holds a NaN or an infinity. The check is one fused multiply-add per vector on the same
/// pass: `bad + v * 0` is ±0 while every `v` is finite, and NaN (which stays) from the first
/// NaN or infinity on.
#[target_feature(enable = "avx2,fma")]
unsafe fn min_max(row: &[f32]) -> Option<(f32, f32)> {
    let zero = _mm256_setzero_ps();
    let mut lo = [zero; 4];
    let mut hi = [zero; 4];
    let mut bad = [zero; 4];
    let mut blocks = row.chunks_exact(32);
    for c in &mut blocks {
        for j in 0..4 {
            // SAFETY: `c` holds exactly 32 f32; loadu has no alignment requirement.
            let v = unsafe { _mm256_loadu_ps(c.as_ptr().add(8 * j)) };
            lo[j] = _mm256_min_ps(lo[j], v);
            hi[j] = _mm256_max_ps(hi[j], v);
            bad[j] = _mm256_fmadd_ps(v, zero, bad[j]);
        }
    }
    let mut chunks = blocks.remainder().chunks_exact(8);
    for c in &mut chunks {
        // SAFETY: `c` holds exactly 8 f32.
        let v = unsafe { _mm256_loadu_ps(c.as_ptr()) };
        lo[0] = _mm256_min_ps(lo[0], v);
        hi[0] = _mm256_max_ps(hi[0], v);
        bad[0] = _mm256_fmadd_ps(v, zero, bad[0]);
    }
    let bad = _mm256_add_ps(_mm256_add_ps(bad[0], bad[1]), _mm256_add_ps(bad[2], bad[3]));
    let mut finite = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(bad, zero)) == 0xff;
    let lo = _mm256_min_ps(_mm256_min_ps(lo[0], lo[1]), _mm256_min_ps(lo[2], lo[3]));
    let hi = _mm256_max_ps(_mm256_max_ps(hi[0], hi[1]), _mm256_max_ps(hi[2], hi[3]));
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
        finite &= x.is_finite();
    }
    finite.then_some((a, b))
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

/// Quantizes `chunks` chunks of 8 with the plan's vector rounding, clamps to the plan's
/// bounds and stores them as `T`. (One loop per rounding, so that every rounding function is
/// inlined: they share this function's target features.)
///
/// # Safety
/// AVX2 and FMA are available; `8 * chunks <= row.len() <= out.len()`.
#[target_feature(enable = "avx2,fma")]
unsafe fn chunks8<T: Store8>(row: &[f32], out: &mut [T], chunks: usize, p: &RowPlan) {
    debug_assert!(8 * chunks <= row.len() && row.len() <= out.len());
    let mult = _mm256_set1_ps(p.mult);
    let zp = _mm256_set1_epi32(p.zp);
    let zpf = _mm256_set1_ps(p.zp as f32);
    let lo = _mm256_set1_epi32(p.lo);
    let hi = _mm256_set1_epi32(p.hi);
    let (src, dst) = (row.as_ptr(), out.as_mut_ptr());
    macro_rules! each_chunk {
        ($round:ident) => {{
            for c4 in 0..chunks / 4 {
                // SAFETY: 4 * c4 + 4 <= chunks, so the 32 values lie within the contract's
                // bounds.
                unsafe {
                    let mut q = [_mm256_setzero_si256(); 4];
                    for (j, qj) in q.iter_mut().enumerate() {
                        let x = _mm256_loadu_ps(src.add(32 * c4 + 8 * j));
                        let v = $round(_mm256_mul_ps(x, mult), zp, zpf);
                        *qj = _mm256_max_epi32(_mm256_min_epi32(v, hi), lo);
                    }
                    T::store32(q, dst.add(32 * c4));
                }
            }
            for c in chunks / 4 * 4..chunks {
                // SAFETY: c < chunks, so 8c + 8 <= row.len() <= out.len() (the contract).
                unsafe {
                    let x = _mm256_loadu_ps(src.add(8 * c));
                    let q = $round(_mm256_mul_ps(x, mult), zp, zpf);
                    let q = _mm256_max_epi32(_mm256_min_epi32(q, hi), lo);
                    T::store8(q, dst.add(8 * c));
                }
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
    /// [`rows256`] works on two vectors at a time.
    const CHANNEL_MULTIPLE: usize = 16;

    fn hybrid(self, t: &mut HybridTile<'_, '_>) {
        t.assert_bounds(Self::CHANNEL_MULTIPLE);
        // SAFETY: AVX2 and FMA (`self`); the slices were checked above.
        unsafe { hybrid256(t) }
    }

    fn integer(self, t: &mut IntegerTile<'_, '_>) {
        self.integer_tile(t);
    }

    fn quantize_int8(self, q: TensorQuant, x: &[f32], out: &mut [i8]) -> bool {
        let len = x.len().min(out.len());
        // The vector code assumes an int8 zero point (what `TensorQuant::new` checks; the
        // fields are public, so other values take the definition).
        let vectors = if (-128..=127).contains(&q.zero_point) {
            len / 8
        } else {
            0
        };
        // SAFETY: AVX2 (`self`); 8 * vectors <= len, within both slices.
        let mut finite = unsafe { quantize_int8_chunks(q, x, out, vectors) };
        for i in 8 * vectors..len {
            out[i] = q.quantize(x[i]);
            finite &= x[i].is_finite();
        }
        finite
    }
}

/// `TensorQuant::quantize` on `vectors` chunks of 8: `round_away(x / S)` (the same f32
/// division; NaN, from `0 / 0`, to 0), held in `[-256, 256]` before the conversion (for an
/// int8 zero point every value beyond clamps to the same code), `+ Z`, clamped to int8.
///
/// The quotient's rounded integer is taken from `x * (1 / S)` where that is provably the
/// division's, and from the division elsewhere (see [`quotient_ps`]). Returns whether every
/// value was finite.
///
/// # Safety
/// AVX2; `8 * vectors` values in `x` and `out`.
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_int8_chunks(q: TensorQuant, x: &[f32], out: &mut [i8], vectors: usize) -> bool {
    debug_assert!(8 * vectors <= x.len() && 8 * vectors <= out.len());
    let s = _mm256_set1_ps(q.scale);
    let recip = Reciprocal::of(q.scale);
    let zp = _mm256_set1_epi32(q.zero_point);
    let (bound, nbound) = (_mm256_set1_ps(256.0), _mm256_set1_ps(-256.0));
    let (lo, hi) = (_mm256_set1_epi32(-128), _mm256_set1_epi32(127));
    // `bad + x * 0` stays ±0 while every x is finite (as `min_max`'s check).
    let mut bad = _mm256_setzero_ps();
    for c in 0..vectors {
        // SAFETY: c < vectors: 8 values at 8c in both slices (the contract).
        unsafe {
            let xv = _mm256_loadu_ps(x.as_ptr().add(8 * c));
            bad = _mm256_fmadd_ps(xv, _mm256_setzero_ps(), bad);
            let v = quotient_ps(xv, s, recip);
            let v = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v), v);
            let r = _mm256_min_ps(_mm256_max_ps(round_away_ps(v), nbound), bound);
            let y = _mm256_add_epi32(_mm256_cvttps_epi32(r), zp);
            let y = _mm256_max_epi32(_mm256_min_epi32(y, hi), lo);
            let w = _mm256_packs_epi32(y, y);
            let b = _mm256_packs_epi16(w, w);
            let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
            _mm_storel_epi64(
                out.as_mut_ptr().add(8 * c).cast(),
                _mm256_castsi256_si128(b),
            );
        }
    }
    _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(bad, _mm256_setzero_ps())) == 0xff
}

/// The band around half-integers, relative to `|y|`, in which [`quotient_ps`] (and its
/// 512-bit twin) divides: `2^-21`, above the `3.0002 u` bound of its argument.
pub(crate) const NEAR_HALF: f32 = 1.0 / (1 << 21) as f32;

/// Products at or beyond this magnitude need no check: their quotient clamps to the same
/// bound (see [`quotient_ps`]).
pub(crate) const CLAMPED_BEYOND: f32 = 512.0;

/// `1 / S` for [`quotient_ps`], where the product `x * (1 / S)` may stand for `x / S`: `S`
/// and its rounded reciprocal both normal (so the reciprocal carries one rounding's relative
/// error); `None` otherwise. A product that still underflows or overflows is covered at
/// [`quotient_ps`].
#[derive(Clone, Copy)]
pub(crate) struct Reciprocal(Option<f32>);

impl Reciprocal {
    /// The reciprocal of `scale`, where it may be used.
    pub(crate) fn of(scale: f32) -> Self {
        let r = 1.0 / scale;
        Reciprocal((scale.is_normal() && r.is_normal()).then_some(r))
    }

    /// The reciprocal, or `None` where the quotient must be divided.
    pub(crate) fn get(self) -> Option<f32> {
        self.0
    }
}

/// `x / S` where the result is only rounded to an integer afterwards (ties away from zero)
/// and held in `[-256, 256]`: lanes whose rounded integer the product `y = x * (1 / S)`
/// provably shares with the quotient take `y`; if any lane is not provably so, the vector is
/// divided.
///
/// Why it is exact: with `r = fl(1 / S)` and `y = fl(x * r)` normal, `y` lies within
/// `2.0001 u |q|` of the true quotient `q = x / S` (`u = 2^-24`: one rounding in `r`, one in
/// the product), and TFLite's `fl(q)` within `u |q|`. Rounding to an integer is constant
/// between half-integers, so `y` and `fl(q)` round alike unless a half-integer lies within
/// `3.0002 u |q|` of `y`; the vector is divided when one lies within `2^-21 |y|` (more than
/// that bound) of any lane's `y` with `|y| < 512`. Lanes with `|y| >= 512`, infinite ones
/// included, have `|fl(q)| > 256` too (finite or not: the product and the quotient may
/// overflow at different inputs) and clamp to the same bound; a product that underflows is
/// below 0.5 with the quotient, both rounding to 0; a NaN `x` gives NaN either way.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn quotient_ps(x: __m256, s: __m256, recip: Reciprocal) -> __m256 {
    let Some(r) = recip.get() else {
        return _mm256_div_ps(x, s);
    };
    let y = _mm256_mul_ps(x, _mm256_set1_ps(r));
    let abs_y = _mm256_andnot_ps(_mm256_set1_ps(-0.0), y);
    // |y - trunc(y)| is exact; its distance to 0.5 is the distance of y to a half-integer.
    let frac = _mm256_sub_ps(
        y,
        _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y),
    );
    let abs_frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0), frac);
    let to_half = _mm256_andnot_ps(
        _mm256_set1_ps(-0.0),
        _mm256_sub_ps(abs_frac, _mm256_set1_ps(0.5)),
    );
    let tolerance = _mm256_mul_ps(abs_y, _mm256_set1_ps(NEAR_HALF));
    let near = _mm256_and_ps(
        _mm256_cmp_ps::<_CMP_LE_OQ>(to_half, tolerance),
        _mm256_cmp_ps::<_CMP_LT_OQ>(abs_y, _mm256_set1_ps(CLAMPED_BEYOND)),
    );
    if _mm256_movemask_ps(near) == 0 {
        y
    } else {
        _mm256_div_ps(x, s)
    }
}

impl V256 {
    /// The full-integer epilogue of a tile, 8 channels per vector (also the 512-bit width's).
    pub(crate) fn integer_tile(self, t: &mut IntegerTile<'_, '_>) {
        let ch = t.channels;
        assert!(
            ch.is_multiple_of(8) && t.fold.len() >= ch && t.m0.len() >= ch && t.shift.len() >= ch
        );
        assert!(t.acc.len() >= t.out.rows() * ch && t.act_min <= t.act_max);
        // SAFETY: AVX2 and FMA (`self`); the slices were checked above.
        unsafe {
            match (t.rounding, matches!(t.out, IntegerOut::Reals(..))) {
                (Rounding::Gemmlowp, false) => integer256::<GEMMLOWP, false>(t),
                (Rounding::Ruy, false) => integer256::<RUY, false>(t),
                (Rounding::Single, false) => integer256::<SINGLE, false>(t),
                (Rounding::Gemmlowp, true) => integer256::<GEMMLOWP, true>(t),
                (Rounding::Ruy, true) => integer256::<RUY, true>(t),
                (Rounding::Single, true) => integer256::<SINGLE, true>(t),
            }
        }
    }
}

/// [`Rounding`] as a const parameter.
pub(crate) const GEMMLOWP: u8 = 0;
/// See [`GEMMLOWP`].
pub(crate) const RUY: u8 = 1;
/// See [`GEMMLOWP`].
pub(crate) const SINGLE: u8 = 2;

/// The 64-bit products `a * b` of the even i32 lanes and of the odd ones.
#[inline]
#[target_feature(enable = "avx2")]
fn mul_even_odd(a: __m256i, b: __m256i) -> (__m256i, __m256i) {
    (
        _mm256_mul_epi32(a, b),
        _mm256_mul_epi32(_mm256_srli_epi64::<32>(a), _mm256_srli_epi64::<32>(b)),
    )
}

/// The low 32 bits of the even products and of the odd ones, back in lane order.
#[inline]
#[target_feature(enable = "avx2")]
fn low_halves(even: __m256i, odd: __m256i) -> __m256i {
    _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd))
}

/// Arithmetic right shift of 64-bit lanes by per-lane counts in `0..64` (AVX2 has only the
/// logical one): with the sign bit flipped the value is offset by `2^63`, which shifts to
/// `2^63 >> s` and is subtracted again.
#[inline]
#[target_feature(enable = "avx2")]
fn srav_epi64(v: __m256i, s: __m256i) -> __m256i {
    let sign = _mm256_set1_epi64x(i64::MIN);
    _mm256_sub_epi64(
        _mm256_srlv_epi64(_mm256_xor_si256(v, sign), s),
        _mm256_srlv_epi64(sign, s),
    )
}

/// Most 8-channel vectors in a tile (64 channels): [`integer256`] keeps each vector's
/// constants in an array of this size.
const MAX_VECTORS: usize = 8;

/// The full-integer epilogue (`IntegerTile::portable`, bit for bit) for one rounding:
///
/// - `a = acc + fold` (wrapping);
/// - single rounding: `(a * M0 + 2^(30 - shift)) >> (31 - shift)` on 64-bit lanes, truncated;
/// - gemmlowp / ruy: `a << max(shift, 0)` (wrapping), then the doubling high multiply
///   `(a * M0 + 2^30) >> 31` (gemmlowp's nudge-and-truncate, which equals this for either
///   sign; only `i32::MIN * i32::MIN` does not fit, and saturates), then the rounding right
///   shift by `max(-shift, 0)`: ties away from zero (gemmlowp: `(h >> e) + (rem > thr)`,
///   `thr = mask / 2 + (h < 0)`) or toward +infinity (ruy: `(h + 2^(e-1)) >> e`, or
///   `2^(31 - e)` where that addition would overflow);
/// - `+ Z_y` saturating, then the clamp, as `clamp(y, lo - Z_y, hi - Z_y) + Z_y` (exact: the
///   bounds are int8 values, far from where the saturation acts).
///
/// # Safety
/// AVX2; the tile's slices hold what [`V256::integer_tile`] asserted.
#[target_feature(enable = "avx2,fma")]
unsafe fn integer256<const ROUNDING: u8, const REALS: bool>(t: &mut IntegerTile<'_, '_>) {
    let ch = t.channels;
    let width = t.out.width();
    let vectors = width.div_ceil(8).min(ch / 8);
    assert!(vectors <= MAX_VECTORS);
    let full = width / 8;
    let zy = t.output_zero_point;
    let lo = _mm256_set1_epi32(t.act_min - zy);
    let hi = _mm256_set1_epi32(t.act_max - zy);
    let zyv = _mm256_set1_epi32(zy);
    let one = _mm256_set1_epi32(1);
    let min = _mm256_set1_epi32(i32::MIN);
    // Per channel: fold, M0, left shift (or the single rounding's 64-bit shift and nudge for
    // the even and odd lanes), right shift, and the rounding's own constants.
    struct Consts {
        fold: __m256i,
        m0: __m256i,
        m0_is_min: __m256i,
        left: __m256i,
        right: __m256i,
        /// gemmlowp: `2^e - 1`; ruy: `2^(e-1)` (0 for e = 0).
        c1: __m256i,
        /// gemmlowp: `mask >> 1`; ruy: `i32::MAX - nudge`.
        c2: __m256i,
        /// ruy: `2^(31 - e)`.
        c3: __m256i,
        total_even: __m256i,
        total_odd: __m256i,
        nudge_even: __m256i,
        nudge_odd: __m256i,
    }
    let zero = _mm256_setzero_si256();
    let mut consts: [Consts; MAX_VECTORS] = std::array::from_fn(|_| Consts {
        fold: zero,
        m0: zero,
        m0_is_min: zero,
        left: zero,
        right: zero,
        c1: zero,
        c2: zero,
        c3: zero,
        total_even: zero,
        total_odd: zero,
        nudge_even: zero,
        nudge_odd: zero,
    });
    for (h, c) in consts.iter_mut().enumerate().take(vectors) {
        // SAFETY: 8 * h + 8 <= ch, within the channel slices (asserted by the caller).
        let (fold, m0, shift) = unsafe {
            (
                _mm256_loadu_si256(t.fold.as_ptr().add(8 * h).cast()),
                _mm256_loadu_si256(t.m0.as_ptr().add(8 * h).cast()),
                _mm256_loadu_si256(t.shift.as_ptr().add(8 * h).cast()),
            )
        };
        c.fold = fold;
        c.m0 = m0;
        c.m0_is_min = _mm256_cmpeq_epi32(m0, min);
        c.left = _mm256_max_epi32(shift, zero);
        let e = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
        c.right = e;
        if ROUNDING == GEMMLOWP {
            // 2^e - 1 for e in 0..=31 (e = 31: 2^31 wraps to i32::MIN, minus one is MAX).
            let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, e), one);
            c.c1 = mask;
            c.c2 = _mm256_srai_epi32::<1>(mask);
        } else if ROUNDING == RUY {
            let is_zero = _mm256_cmpeq_epi32(e, zero);
            let nudge =
                _mm256_andnot_si256(is_zero, _mm256_sllv_epi32(one, _mm256_sub_epi32(e, one)));
            c.c1 = nudge;
            c.c2 = _mm256_sub_epi32(_mm256_set1_epi32(i32::MAX), nudge);
            c.c3 = _mm256_sllv_epi32(one, _mm256_sub_epi32(_mm256_set1_epi32(31), e));
        } else {
            // total = 31 - shift in 1..=62, as 64-bit counts for the even and odd lanes.
            let total = _mm256_sub_epi32(_mm256_set1_epi32(31), shift);
            let low = _mm256_set1_epi64x(0xffff_ffff);
            c.total_even = _mm256_and_si256(total, low);
            c.total_odd = _mm256_srli_epi64::<32>(total);
            let one64 = _mm256_set1_epi64x(1);
            c.nudge_even = _mm256_sllv_epi64(one64, _mm256_sub_epi64(c.total_even, one64));
            c.nudge_odd = _mm256_sllv_epi64(one64, _mm256_sub_epi64(c.total_odd, one64));
        }
    }
    let half = _mm256_set1_epi64x(1 << 30);
    for r in 0..t.out.rows() {
        // The row's codes, or its reals and their scale (`REALS` says which, as `t.out`).
        let (codes, reals, scale): (&mut [i8], &mut [f32], f32) = match &mut t.out {
            IntegerOut::Codes(o) => (o.row(r), &mut [], 0.0),
            IntegerOut::Reals(o, scale) => (&mut [], o.row(r), *scale),
        };
        let scale = _mm256_set1_ps(scale);
        for (h, c) in consts.iter().enumerate().take(vectors) {
            // SAFETY: 8 * h + 8 <= ch, within acc's row (asserted by the caller).
            let acc = unsafe { _mm256_loadu_si256(t.acc.as_ptr().add(r * ch + 8 * h).cast()) };
            let a = _mm256_add_epi32(acc, c.fold);
            let y = if ROUNDING == SINGLE {
                let (even, odd) = mul_even_odd(a, c.m0);
                let even = srav_epi64(_mm256_add_epi64(even, c.nudge_even), c.total_even);
                let odd = srav_epi64(_mm256_add_epi64(odd, c.nudge_odd), c.total_odd);
                low_halves(even, odd)
            } else {
                let a = _mm256_sllv_epi32(a, c.left);
                let (even, odd) = mul_even_odd(a, c.m0);
                // Bits 31..62 of p + 2^30: the logical shift gives them as well as the
                // arithmetic one, and only the low 32 bits are kept.
                let even = _mm256_srli_epi64::<31>(_mm256_add_epi64(even, half));
                let odd = _mm256_srli_epi64::<31>(_mm256_add_epi64(odd, half));
                let hm = low_halves(even, odd);
                let saturate = _mm256_and_si256(_mm256_cmpeq_epi32(a, min), c.m0_is_min);
                let hm = _mm256_blendv_epi8(hm, _mm256_set1_epi32(i32::MAX), saturate);
                if ROUNDING == GEMMLOWP {
                    let rem = _mm256_and_si256(hm, c.c1);
                    // thr = mask / 2 + (h < 0); the comparisons give -1 for true.
                    let thr = _mm256_sub_epi32(c.c2, _mm256_cmpgt_epi32(zero, hm));
                    _mm256_sub_epi32(_mm256_srav_epi32(hm, c.right), _mm256_cmpgt_epi32(rem, thr))
                } else {
                    let shifted = _mm256_srav_epi32(_mm256_add_epi32(hm, c.c1), c.right);
                    _mm256_blendv_epi8(shifted, c.c3, _mm256_cmpgt_epi32(hm, c.c2))
                }
            };
            // `code - Z_y`, exactly (the clamp's bounds are shifted by `Z_y`).
            let y = _mm256_max_epi32(_mm256_min_epi32(y, hi), lo);
            if REALS {
                // `S * (code - Z_y)`, `TensorQuant::dequantize`'s operations.
                let v = _mm256_mul_ps(scale, _mm256_cvtepi32_ps(y));
                if h < full {
                    // SAFETY: 8 * h + 8 <= width, the row's length (f32 elements).
                    unsafe { _mm256_storeu_ps(reals.as_mut_ptr().add(8 * h), v) };
                } else {
                    let mut part = [0f32; 8];
                    // SAFETY: `part` holds 8 f32.
                    unsafe { _mm256_storeu_ps(part.as_mut_ptr(), v) };
                    reals[8 * h..].copy_from_slice(&part[..width - 8 * h]);
                }
                continue;
            }
            let y = _mm256_add_epi32(y, zyv);
            // i32 -> i8: the values are int8, so both saturating packs are exact.
            let w = _mm256_packs_epi32(y, y);
            let b = _mm256_packs_epi16(w, w);
            let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4));
            let bytes = _mm256_castsi256_si128(b);
            if h < full {
                // SAFETY: 8 * h + 8 <= width, the row's length (i8 elements).
                unsafe { _mm_storel_epi64(codes.as_mut_ptr().add(8 * h).cast(), bytes) };
            } else {
                let mut y8 = [0i8; 16];
                // SAFETY: y8 holds 16 bytes.
                unsafe { _mm_storeu_si128(y8.as_mut_ptr().cast(), bytes) };
                codes[8 * h..].copy_from_slice(&y8[..width - 8 * h]);
            }
        }
    }
}

/// The hybrid epilogue of a tile, 8 channels per vector: the four operation orders, flushes,
/// clamps and NaN rules of `EpilogueSpec::value`, instantiated per combination of them (as the
/// 512-bit epilogue) so that the per-vector code has no branches.
///
/// # Safety
/// AVX2 and FMA are available; the tile's slices hold what `Width::hybrid` asserted.
#[target_feature(enable = "avx2,fma")]
unsafe fn hybrid256(t: &mut HybridTile<'_, '_>) {
    let e = t.spec;
    macro_rules! by_flags {
        ($kind:expr) => {
            match (e.flush, e.clamps(), e.arm_nan) {
                (false, false, false) => tile256::<{ $kind }, false, false, false>(t),
                (false, false, true) => tile256::<{ $kind }, false, false, true>(t),
                (false, true, false) => tile256::<{ $kind }, false, true, false>(t),
                (false, true, true) => tile256::<{ $kind }, false, true, true>(t),
                (true, false, false) => tile256::<{ $kind }, true, false, false>(t),
                (true, false, true) => tile256::<{ $kind }, true, false, true>(t),
                (true, true, false) => tile256::<{ $kind }, true, true, false>(t),
                (true, true, true) => tile256::<{ $kind }, true, true, true>(t),
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

/// [`EpilogueKind`] as a const parameter.
pub(crate) const TWO_ROUNDINGS: u8 = 0;
/// See [`TWO_ROUNDINGS`].
pub(crate) const FUSED: u8 = 1;
/// See [`TWO_ROUNDINGS`].
pub(crate) const XNNPACK_FUSED: u8 = 2;
/// See [`TWO_ROUNDINGS`].
pub(crate) const KLEIDI: u8 = 3;

/// [`hybrid256`] for one epilogue kind (`KIND`), flush, clamp and ARM-NaN setting: the
/// tile's rows with a zero point ([`rows256`] with `ZP`) or without.
///
/// # Safety
/// As [`hybrid256`].
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile256<const KIND: u8, const FLUSH: bool, const CLAMP: bool, const ARM: bool>(
    t: &mut HybridTile<'_, '_>,
) {
    // SAFETY: as this function's.
    unsafe {
        if t.any_zero_point() {
            rows256::<KIND, FLUSH, CLAMP, ARM, true>(t)
        } else {
            rows256::<KIND, FLUSH, CLAMP, ARM, false>(t)
        }
    }
}

/// One 8-channel vector's constants in the epilogue.
#[derive(Clone, Copy)]
struct Channels256 {
    /// Row sums.
    rs: __m256i,
    /// `-row_sum * offset` (wrapping).
    minus_rs_off: __m256i,
    /// Weight scales (flushed where the flavour flushes).
    ws: __m256,
    /// Bias or 0 (likewise).
    bias: __m256,
    /// The vector's lanes inside the region (0 to 8).
    lanes: usize,
}

/// The 256-bit twin of `v512::rows512`, with the same order of work: the tile's channels two
/// 8-channel vectors at a time, rows inside and both vectors in each row, the rows walked by
/// pointer; `ZP` false for tiles without a zero point. Full vectors are stored directly, a
/// partial one through an 8-value scratch (AVX2 has no cheap masked store).
///
/// # Safety
/// As [`hybrid256`], and the tile's channels are a multiple of 16.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows256<
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
    let (lo, hi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
    let propagate = e.nan == NanRule::Propagate;
    let offset = _mm256_set1_epi32(t.offset);
    let value = |a: __m256i, c: &Channels256, p: RowParams| {
        let mut d = _mm256_add_epi32(a, c.minus_rs_off);
        if ZP {
            d = _mm256_sub_epi32(d, _mm256_mullo_epi32(c.rs, _mm256_set1_epi32(p.zero_point)));
        }
        let accf = _mm256_cvtepi32_ps(d);
        let sf = _mm256_set1_ps(p.scale);
        let (ws, bias) = (c.ws, c.bias);
        // The four operation orders of `EpilogueSpec::value`; no FMA except where named.
        let mut v = match KIND {
            TWO_ROUNDINGS => _mm256_add_ps(bias, _mm256_mul_ps(accf, _mm256_mul_ps(sf, ws))),
            FUSED => _mm256_fmadd_ps(accf, _mm256_mul_ps(sf, ws), bias),
            XNNPACK_FUSED => _mm256_fmadd_ps(_mm256_mul_ps(accf, sf), ws, bias),
            _ => {
                let s = flush_subnormal_ps(_mm256_mul_ps(ws, sf));
                _mm256_add_ps(_mm256_mul_ps(accf, s), bias)
            }
        };
        if FLUSH {
            v = flush_subnormal_ps(v);
        }
        if CLAMP {
            // std::max(lo, std::min(v, hi)): min_ps(hi, v) = hi < v ? hi : v keeps a NaN;
            // max_ps(v, lo) = v > lo ? v : lo turns it into lo (x86 XNNPACK's order too).
            let clamped = _mm256_max_ps(_mm256_min_ps(hi, v), lo);
            v = if propagate {
                // ARM's fmax / fmin keep the NaN.
                _mm256_blendv_ps(clamped, v, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v))
            } else {
                clamped
            };
        }
        if ARM {
            let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v);
            v = _mm256_blendv_ps(v, _mm256_set1_ps(f32::NAN), nan);
        }
        v
    };
    for h in (0..width.div_ceil(8).min(ch / 8)).step_by(2) {
        let c: [Channels256; 2] = std::array::from_fn(|i| {
            let at = 8 * (h + i);
            // SAFETY: at + 8 <= ch (h is even and ch a multiple of 16), within the channel
            // slices (asserted by the caller).
            let (rs, mut ws, mut bias) = unsafe {
                (
                    _mm256_loadu_si256(t.row_sums.as_ptr().add(at).cast()),
                    _mm256_loadu_ps(t.scales.as_ptr().add(at)),
                    _mm256_loadu_ps(t.init.as_ptr().add(at)),
                )
            };
            // XNNPACK runs with denormals disabled: DAZ on the weight scales and the bias.
            if FLUSH {
                ws = flush_subnormal_ps(ws);
                bias = flush_subnormal_ps(bias);
            }
            Channels256 {
                rs,
                minus_rs_off: _mm256_sub_epi32(
                    _mm256_setzero_si256(),
                    _mm256_mullo_epi32(rs, offset),
                ),
                ws,
                bias,
                lanes: width.saturating_sub(at).min(8),
            }
        });
        // SAFETY: the caller asserted `acc.len() >= rows * ch`; 8 * h + 16 <= ch.
        let mut acc = unsafe { t.acc.as_ptr().add(8 * h) };
        let mut dst = out.wrapping_add(8 * h);
        for &p in params {
            for (i, c) in c.iter().enumerate() {
                // SAFETY: `acc` is at `r * ch + 8 * h` for this row r < rows: 16 values of it
                // are the row's; `dst + 8 * i` is this row's value 8 * (h + i) of the region,
                // which the caller holds (`raw_parts`), and only its `c.lanes` values inside
                // the region are written.
                unsafe {
                    let v = value(_mm256_loadu_si256(acc.add(8 * i).cast()), c, p);
                    let at = dst.wrapping_add(8 * i);
                    if c.lanes == 8 {
                        _mm256_storeu_ps(at, v);
                    } else if c.lanes > 0 {
                        let mut y = [0.0f32; 8];
                        _mm256_storeu_ps(y.as_mut_ptr(), v);
                        std::ptr::copy_nonoverlapping(y.as_ptr(), at, c.lanes);
                    }
                }
            }
            acc = acc.wrapping_add(ch);
            dst = dst.wrapping_add(stride);
        }
    }
}
