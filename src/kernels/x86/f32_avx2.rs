//! The float layer's AVX2 + FMA kernel (`f32-avx2-fma`): tiles of up to 6 rows x one panel
//! (12 ymm accumulators, each panel row loaded once for all rows), one row x 4 panels
//! (8 independent chains) for single rows, and on Intel a software prefetch of every panel
//! 1 KiB ahead.

use std::arch::x86_64::*;

use crate::kernels::contract::{F32Kernel, F32Tile};

/// Channels per panel.
const NR: usize = 16;

/// Panel bytes ahead of the current K step that every tile prefetches on Intel (AMD: none,
/// see [`super::weight_prefetch`]), as in the AVX-512 kernel. Measured with this kernel forced
/// on the Intel Xeon family 6 model 207 of 2026-12-06, one thread, six to eight rotating
/// rounds, median us without -> with: 8 x 4096 x 4096 4,798 -> 4,338 (9,262 -> 6,340 in a
/// slower hour), 128 x 4096 x 4096 57,514 -> 55,521, 1 x 4096 x 14336 14,539 -> 13,827,
/// 32 x 1024 x 4096 3,453 -> 3,348, 512 x 768 x 3072 even (30,246 / 30,355). AMD, where the
/// AVX2-only Zen 3 runs this kernel, keeps it as it was.
const PREFETCH_AHEAD: usize = 1024;

/// Proof that this CPU runs AVX2 and FMA, with the prefetch distance for this CPU.
#[derive(Clone, Copy, Debug)]
pub(crate) struct F32Avx2 {
    prefetch: usize,
}

// SAFETY: `new` checks AVX2 and FMA, all the instructions `tile` uses; `tile` reads and writes
// only what its `F32Tile` describes.
unsafe impl F32Kernel for F32Avx2 {
    const NAME: &'static str = "f32-avx2-fma";
    const ROWS: usize = 6;
    const PANELS: usize = 1;
    const ROW_PANELS: usize = 4;

    fn new() -> Option<Self> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then(|| F32Avx2 {
            prefetch: super::weight_prefetch(PREFETCH_AHEAD),
        })
    }

    unsafe fn tile(self, t: &F32Tile) {
        let ahead = self.prefetch;
        // SAFETY: holding `self` proves AVX2 and FMA; the caller guarantees `t`'s extents and
        // bounds (m <= 6, np <= 1, or np <= 4 when m == 1).
        unsafe {
            match (t.m, t.np) {
                (1, 4) => tile::<1, 4>(t, ahead),
                (1, 3) => tile::<1, 3>(t, ahead),
                (1, 2) => tile::<1, 2>(t, ahead),
                (1, _) => tile::<1, 1>(t, ahead),
                (2, _) => tile::<2, 1>(t, ahead),
                (3, _) => tile::<3, 1>(t, ahead),
                (4, _) => tile::<4, 1>(t, ahead),
                (5, _) => tile::<5, 1>(t, ahead),
                _ => tile::<6, 1>(t, ahead),
            }
        }
    }
}

/// `M` rows x `P` panels: per K step, `2P` panel loads, `M` broadcasts, `2MP` FMAs; each panel
/// prefetched `ahead` bytes ahead (none when 0).
///
/// # Safety
/// AVX2 and FMA; `t.m == M`, `t.np == P` and `t`'s extents as [`F32Kernel::tile`] states.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const M: usize, const P: usize>(t: &F32Tile, ahead: usize) {
    let k = t.k;
    let mut acc = [[[_mm256_setzero_ps(); 2]; P]; M];
    for p in 0..k {
        // SAFETY: p < k keeps every panel read within `P * k * NR` values and every input read
        // within `k * M` (the caller's extents); prefetches never fault.
        unsafe {
            let mut b = [[_mm256_setzero_ps(); 2]; P];
            for (q, bq) in b.iter_mut().enumerate() {
                let w = t.panels.add(q * k * NR + p * NR);
                if ahead > 0 {
                    _mm_prefetch::<_MM_HINT_T0>(w.cast::<i8>().wrapping_add(ahead));
                }
                *bq = [_mm256_loadu_ps(w), _mm256_loadu_ps(w.add(8))];
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let a = _mm256_broadcast_ss(&*t.x.add(p * M + r));
                for (c, bq) in row.iter_mut().zip(&b) {
                    c[0] = _mm256_fmadd_ps(a, bq[0], c[0]);
                    c[1] = _mm256_fmadd_ps(a, bq[1], c[1]);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (q, c) in row.iter().enumerate() {
            let col0 = q * NR;
            let cols = t.cols.saturating_sub(col0).min(NR);
            // SAFETY: columns col0..col0 + cols of row r < M lie inside the tile's output.
            unsafe {
                let o = t.out.add(r * t.ldo + col0);
                if cols == NR {
                    _mm256_storeu_ps(o, c[0]);
                    _mm256_storeu_ps(o.add(8), c[1]);
                } else if cols > 0 {
                    let mut tmp = [0.0f32; NR];
                    _mm256_storeu_ps(tmp.as_mut_ptr(), c[0]);
                    _mm256_storeu_ps(tmp.as_mut_ptr().add(8), c[1]);
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), o, cols);
                }
            }
        }
    }
}
