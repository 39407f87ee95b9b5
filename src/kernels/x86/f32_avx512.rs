//! The float layer's AVX-512 kernel (`f32-avx512`): one zmm register per panel row, tiles of
//! up to 12 rows x 2 panels (24 accumulators, each panel row loaded once for all rows, the
//! inputs broadcast from memory), one row x 4 panels (4 chains) for single rows, masked
//! stores for the last panel, and on Intel a software prefetch of every panel 1 KiB ahead.

use std::arch::x86_64::*;

use crate::kernels::contract::{F32Kernel, F32Tile};

/// Channels per panel (one zmm register).
const NR: usize = 16;

/// Panel bytes ahead of the current K step that every tile prefetches on Intel (AMD: none,
/// see [`super::weight_prefetch`]). A one-row tile streams its weights from memory once;
/// a tile of several rows reads a panel group of `K * 128` bytes that lives in L2 (not L1:
/// 512 KiB at K = 4096) while every row block passes over it. On the Intel Xeon family 6
/// model 207 of 2026-12-06, one thread, four interleaved rounds, median us without -> with:
/// 128 x 4096 x 4096 32,531-32,823 -> 29,305-29,820, 32 x 1024 x 4096 1,789-1,890 ->
/// 1,683-1,696, 512 x 768 x 3072 16,039-16,578 -> 15,571-16,173 (512 to 1,536 bytes ahead
/// within 3% of each other). Not measured on AMD, which keeps its tiles as they were.
const PREFETCH_AHEAD: usize = 1024;

/// Proof that this CPU runs AVX-512 F, with the prefetch distance for this CPU.
#[derive(Clone, Copy, Debug)]
pub(crate) struct F32Avx512 {
    prefetch: usize,
}

// SAFETY: `new` checks AVX-512 F, which holds every instruction `tile` uses (FMA, masked
// stores); `tile` reads and writes only what its `F32Tile` describes.
unsafe impl F32Kernel for F32Avx512 {
    const NAME: &'static str = "f32-avx512";
    const ROWS: usize = 12;
    const PANELS: usize = 2;
    // Four weight streams for one row: on the AMD Zen 4 of 2026-12-03, one thread, 1 x 1024 x
    // 1024 took 52-55 us instead of 58-61 with eight, 1 x 4096 x 4096 2,434-2,581 instead of
    // 2,630-3,428 (two and three streams: within the noise of four). Four chains of 64-byte
    // FMAs still outrun any cache level's stream.
    const ROW_PANELS: usize = 4;

    fn new() -> Option<Self> {
        is_x86_feature_detected!("avx512f").then(|| F32Avx512 {
            prefetch: super::weight_prefetch(PREFETCH_AHEAD),
        })
    }

    unsafe fn tile(self, t: &F32Tile) {
        let ahead = self.prefetch;
        // SAFETY: holding `self` proves AVX-512 F; the caller guarantees `t`'s extents and
        // bounds (m <= 12, np <= 2, or np <= 4 when m == 1).
        unsafe {
            match t.m {
                1 => match t.np {
                    4 => tile::<1, 4>(t, ahead),
                    3 => tile::<1, 3>(t, ahead),
                    2 => tile::<1, 2>(t, ahead),
                    _ => tile::<1, 1>(t, ahead),
                },
                2 => panels::<2>(t, ahead),
                3 => panels::<3>(t, ahead),
                4 => panels::<4>(t, ahead),
                5 => panels::<5>(t, ahead),
                6 => panels::<6>(t, ahead),
                7 => panels::<7>(t, ahead),
                8 => panels::<8>(t, ahead),
                9 => panels::<9>(t, ahead),
                10 => panels::<10>(t, ahead),
                11 => panels::<11>(t, ahead),
                _ => panels::<12>(t, ahead),
            }
        }
    }
}

/// `M` rows on one or two panels.
///
/// # Safety
/// As [`tile`].
#[target_feature(enable = "avx512f")]
unsafe fn panels<const M: usize>(t: &F32Tile, ahead: usize) {
    // SAFETY: forwarded (the caller's contract).
    unsafe {
        if t.np >= 2 {
            tile::<M, 2>(t, ahead)
        } else {
            tile::<M, 1>(t, ahead)
        }
    }
}

/// `M` rows x `P` panels: per K step, `P` panel loads, `M` broadcasts, `MP` FMAs; each panel
/// prefetched `ahead` bytes ahead (none when 0).
///
/// # Safety
/// AVX-512 F; `t.m == M`, `t.np == P` and `t`'s extents as [`F32Kernel::tile`] states.
#[target_feature(enable = "avx512f")]
unsafe fn tile<const M: usize, const P: usize>(t: &F32Tile, ahead: usize) {
    let k = t.k;
    let mut acc = [[_mm512_setzero_ps(); P]; M];
    for p in 0..k {
        // SAFETY: p < k keeps every panel read within `P * k * NR` values and every input read
        // within `k * M` (the caller's extents); prefetches never fault.
        unsafe {
            let mut b = [_mm512_setzero_ps(); P];
            for (q, bq) in b.iter_mut().enumerate() {
                let w = t.panels.add(q * k * NR + p * NR);
                if ahead > 0 {
                    _mm_prefetch::<_MM_HINT_T0>(w.cast::<i8>().wrapping_add(ahead));
                }
                *bq = _mm512_loadu_ps(w);
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(*t.x.add(p * M + r));
                for (c, bq) in row.iter_mut().zip(&b) {
                    *c = _mm512_fmadd_ps(a, *bq, *c);
                }
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (q, c) in row.iter().enumerate() {
            let col0 = q * NR;
            let cols = t.cols.saturating_sub(col0).min(NR);
            // SAFETY: columns col0..col0 + cols of row r < M lie inside the tile's output; the
            // masked store writes only the first `cols` lanes.
            unsafe {
                let o = t.out.add(r * t.ldo + col0);
                if cols == NR {
                    _mm512_storeu_ps(o, *c);
                } else if cols > 0 {
                    _mm512_mask_storeu_ps(o, ((1u32 << cols) - 1) as u16, *c);
                }
            }
        }
    }
}
