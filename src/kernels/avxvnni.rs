//! x86-64 AVX-VNNI kernel (the VEX-encoded, 256-bit `vpdpbusd` of Alder Lake and later Intel
//! cores and of AMD Zen 5): **experimental**, for the same reason as
//! [`avx512vnni`](super::avx512vnni): the development machine (AMD Zen 3) cannot execute it.
//! [`Kernel::detect`](super::Kernel::detect) only picks it when asked to
//! (`HYBRIDQ_KERNEL=avxvnni` or `kernel: Some(..)`).
//!
//! **Products.** Exactly the scheme of the AVX-512 VNNI kernel on 256-bit registers: inputs
//! offset to u8 (`u = q + 128`), `vpdpbusd` adds four u8 x s8 products per i32 lane without
//! saturation, each lane holds `dot + 128 * row_sum` (exact for K <= 65,793), and the shared
//! AVX2 epilogue subtracts `row_sum * (zp + 128)`.
//!
//! **Tile.** `MR` rows (1..=4) x 16 channels over the same packed panels as the AVX-512 kernel
//! (K in quads, 64 bytes per quad: channels 0-7 in the first 32 bytes, 8-15 in the second): per
//! quad two 32-byte weight loads and, per row, one broadcast of the row's four u8 and two
//! `vpdpbusd`, into `2 * MR` accumulators. The driver applies the AVX2 epilogue (and the long-K
//! path's raw store) to [`dots_halves`].

use std::arch::x86_64::*;

use super::pack::NR;

/// Bytes of one K quad of one panel (`g = 4`).
const QUAD_BYTES: usize = 4 * NR;

/// Raw `sum_k (x[r][k] + 128) * w[c][k]` of an `MR x 16` tile over `kq` quads, as the two
/// 8-lane halves (channels 0-7, 8-15) of each row.
///
/// # Safety
/// 1. AVX2, FMA and AVX-VNNI are available.
/// 2. `xu` is valid for reading `(MR - 1) * xu_stride + 4 * kq` bytes (row r starts at
///    `xu + r * xu_stride`), and `w` for reading `kq * 64` bytes.
/// 3. `4 * kq * 255 * 128 < 2^31` (at most 65,793 products per lane).
#[target_feature(enable = "avx2,fma,avxvnni")]
pub(crate) unsafe fn dots_halves<const MR: usize>(
    xu: *const u8,
    xu_stride: usize,
    w: *const i8,
    kq: usize,
) -> [[__m256i; 2]; MR] {
    let mut acc = [[_mm256_setzero_si256(); 2]; MR];
    for q in 0..kq {
        // SAFETY: q < kq: bytes [64q, 64q + 64) of the panel (contract 2).
        let (w0, w1) = unsafe {
            let wq = w.add(q * QUAD_BYTES);
            (
                _mm256_loadu_si256(wq.cast()),
                _mm256_loadu_si256(wq.add(32).cast()),
            )
        };
        for (r, a) in acc.iter_mut().enumerate() {
            // SAFETY: reads xu[r * xu_stride + 4q .. + 4] (contract 2); unaligned is allowed.
            let quad = unsafe { xu.add(r * xu_stride + 4 * q).cast::<i32>().read_unaligned() };
            let xv = _mm256_set1_epi32(quad);
            // Unsigned inputs first, signed weights second: u8 x s8.
            a[0] = _mm256_dpbusd_avx_epi32(a[0], xv, w0);
            a[1] = _mm256_dpbusd_avx_epi32(a[1], xv, w1);
        }
    }
    acc
}
