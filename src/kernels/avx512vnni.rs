//! x86-64 AVX-512 VNNI kernel (`vpdpbusd`): **experimental and untested on the development
//! machine** (an AMD Zen 3 without AVX-512). It is reported by
//! [`Kernel::available`](super::Kernel::available) on CPUs that have AVX-512 F/BW/VNNI (so the
//! whole test suite exercises it there) but [`Kernel::detect`](super::Kernel::detect) does not
//! pick it unless asked to (`HYBRIDQ_KERNEL=avx512vnni` or `kernel: Some(..)`), until it has
//! been validated on real hardware or under Intel SDE.
//!
//! **Products.** `vpdpbusd` multiplies unsigned bytes by signed bytes, four adjacent pairs per
//! i32 lane, and adds the four products to the lane without saturation. The inputs are made
//! unsigned by adding 128 (`u = q + 128` in [0, 255]); each product `u * w` is at most
//! `255 * 128 = 32,640` in magnitude, which the instruction's 16-bit intermediates hold, and a
//! lane holds `sum_k (q + 128) * w = dot + 128 * row_sum`, exact in i32 while
//! `K * 255 * 128 < 2^31`, i.e. K <= 65,793 (the driver's i32 limit; longer K is cut into
//! chunks of 65,536 products added in i64). The epilogue then subtracts
//! `row_sum * (zp + 128)` instead of `row_sum * zp` (row sums are stored with the packed
//! weights), in wrapping i32 (exact because the true value fits).
//!
//! **Tile.** `MR` rows (1..=4) x 16 channels: per K quad one 64-byte weight load (16 channels x
//! 4 K, packed with `g = 4`) and, per row, one broadcast of the row's four u8 and one
//! `vpdpbusd`. The i32 results go through the AVX2 epilogue (AVX-512 F implies AVX2 and FMA).
//! The driver applies it (and the long-K path's raw store) to [`dots_halves`].

use std::arch::x86_64::*;

use super::pack::NR;

/// Bytes of one K quad of one panel (`g = 4`).
const QUAD_BYTES: usize = 4 * NR;

/// Raw `sum_k (x[r][k] + 128) * w[c][k]` of an `MR x 16` tile over `kq` quads.
///
/// # Safety
/// 1. AVX-512 F, BW, VNNI, AVX2 and FMA are available.
/// 2. `xu` is valid for reading `(MR - 1) * xu_stride + 4 * kq` bytes (row r starts at
///    `xu + r * xu_stride`), and `w` for reading `kq * 64` bytes.
/// 3. `4 * kq * 255 * 128 < 2^31` (at most 65,793 products per lane).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
#[inline]
unsafe fn dots<const MR: usize>(
    xu: *const u8,
    xu_stride: usize,
    w: *const i8,
    kq: usize,
) -> [__m512i; MR] {
    let mut acc = [_mm512_setzero_si512(); MR];
    for q in 0..kq {
        // SAFETY: q < kq: bytes [64q, 64q + 64) of the panel (contract 2).
        let wv = unsafe { _mm512_loadu_si512(w.add(q * QUAD_BYTES).cast()) };
        for (r, a) in acc.iter_mut().enumerate() {
            // SAFETY: reads xu[r * xu_stride + 4q .. + 4] (contract 2); unaligned is allowed.
            let quad = unsafe { xu.add(r * xu_stride + 4 * q).cast::<i32>().read_unaligned() };
            // Unsigned inputs first, signed weights second: u8 x s8.
            *a = _mm512_dpbusd_epi32(*a, _mm512_set1_epi32(quad), wv);
        }
    }
    acc
}

/// The dots of an `MR x 16` tile as the two 8-lane halves (channels 0-7, 8-15) of each row:
/// the operand of the AVX2 epilogue (with the zero point offset by 128) and of
/// [`store_raw`](super::avx2::store_raw).
///
/// # Safety
/// As [`dots`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
pub(crate) unsafe fn dots_halves<const MR: usize>(
    xu: *const u8,
    xu_stride: usize,
    w: *const i8,
    kq: usize,
) -> [[__m256i; 2]; MR] {
    // SAFETY: forwarded contract.
    let acc = unsafe { dots::<MR>(xu, xu_stride, w, kq) };
    let mut h = [[_mm256_setzero_si256(); 2]; MR];
    for (d, a) in h.iter_mut().zip(&acc) {
        *d = [
            _mm512_castsi512_si256(*a),
            _mm512_extracti64x4_epi64::<1>(*a),
        ];
    }
    h
}
