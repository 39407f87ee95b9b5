//! The float layer's main kernel: weights packed once into panels of [`NR`] output channels
//! (K-major), and an `MR x 16` AVX2+FMA register tile that broadcasts input values against a
//! panel.
//!
//! Every output `y[r][c]` is one chain of fused multiply-adds over `p = 0..K` in order, starting
//! from `+0.0`: `acc = fma(x[r][p], w[c][p], acc)`. No tile shape, thread split or batch size
//! changes that chain, so a row's output never depends on the other rows, and
//! [`matmul_scalar`], which runs the same chain with `f32::mul_add`, is the bit-exact scalar
//! twin.

// Without the AVX2 tile (other targets) `matmul` falls back to the scalar twin before its
// SIMD plumbing; that plumbing must still compile warning-free.
#![cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]

use super::RawOut as SharedOut;

/// Output channels per panel (two 8-lane vectors).
pub(crate) const NR: usize = 16;

/// Input rows per register tile (`2 * MR` accumulators of 16 ymm registers).
pub(crate) const MR: usize = 6;

/// Multiply-adds per task below which a call uses fewer tasks (as the int8 driver's).
use super::driver::MACS_PER_TASK;

/// Weights `[N, K]` repacked as `ceil(N / 16)` panels of `K x 16` values (channel-minor, zero
/// padded past N).
#[derive(Clone)]
pub(crate) struct PackedF32 {
    n: usize,
    k: usize,
    panels: Vec<f32>,
}

impl std::fmt::Debug for PackedF32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedF32 {{ n: {}, k: {} }}", self.n, self.k)
    }
}

impl PackedF32 {
    /// Packs row-major weights `w[n][k]`.
    pub(crate) fn pack(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "PackedF32::pack: n * k weights");
        let count = n.div_ceil(NR);
        let len = count * k * NR;
        let mut panels: Vec<f32> = Vec::with_capacity(len);
        // Large layers stream their weights: back them with huge pages before the first touch.
        super::pack::advise_huge_pages(&mut panels.spare_capacity_mut()[..len]);
        panels.resize(len, 0.0);
        for (j, row) in w.chunks_exact(k.max(1)).take(n).enumerate() {
            let panel = &mut panels[(j / NR) * k * NR..];
            for (p, &v) in row.iter().enumerate() {
                panel[p * NR + j % NR] = v;
            }
        }
        Self { n, k, panels }
    }

    /// The weights back in row-major `[N, K]` order.
    pub(crate) fn unpack(&self) -> Vec<f32> {
        let mut w = vec![0.0f32; self.n * self.k];
        for j in 0..self.n {
            let panel = &self.panels[(j / NR) * self.k * NR..];
            for p in 0..self.k {
                w[j * self.k + p] = panel[p * NR + j % NR];
            }
        }
        w
    }

    fn panel(&self, i: usize) -> &[f32] {
        &self.panels[i * self.k * NR..(i + 1) * self.k * NR]
    }

    fn panel_count(&self) -> usize {
        self.n.div_ceil(NR)
    }
}

/// Whether this CPU runs the SIMD kernel (AVX2 and FMA).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The scalar twin: `out[r][c] = fold_p fma(x[r][p], w[c][p], acc)` from `+0.0`.
pub(crate) fn matmul_scalar(w: &PackedF32, rows: usize, x: &[f32], out: &mut [f32]) {
    let (k, n) = (w.k, w.n);
    assert!(x.len() >= rows * k && out.len() >= rows * n);
    for r in 0..rows {
        let xr = &x[r * k..(r + 1) * k];
        for c in 0..n {
            let panel = w.panel(c / NR);
            let lane = c % NR;
            out[r * n + c] = xr
                .iter()
                .enumerate()
                .fold(0.0f32, |acc, (p, &v)| v.mul_add(panel[p * NR + lane], acc));
        }
    }
}

/// The row blocks `(first row, rows)` of a tile pass: as few blocks as [`MR`] allows, of
/// near-equal size, so that no block is a latency-bound sliver (8 rows -> 4 + 4, not 6 + 2).
fn row_blocks(rows: usize) -> impl Iterator<Item = (usize, usize)> {
    let blocks = rows.div_ceil(MR).max(1);
    let (base, extra) = (rows / blocks, rows % blocks);
    (0..blocks).scan(0, move |start, b| {
        let m = base + usize::from(b < extra);
        let item = (*start, m);
        *start += m;
        Some(item)
    })
}

/// `out[rows, N] = x[rows, K] * W^T` with the SIMD kernel on up to `threads` threads (split over
/// panels). Falls back to [`matmul_scalar`] when the CPU lacks AVX2 or FMA.
///
/// # Panics
/// If a slice is shorter than its dimensions say.
pub(crate) fn matmul(w: &PackedF32, rows: usize, x: &[f32], out: &mut [f32], threads: usize) {
    let (k, n) = (w.k, w.n);
    assert!(x.len() >= rows * k && out.len() >= rows * n);
    if !available() || rows == 0 || n == 0 || k == 0 {
        return matmul_scalar(w, rows, x, out);
    }
    let panels = w.panel_count();
    let tasks = threads
        .max(1)
        .min(panels)
        .min((rows.saturating_mul(k).saturating_mul(n) / MACS_PER_TASK).max(1));
    // Input rows interleaved per row block (p-major), so that a tile's broadcasts read one
    // contiguous stream instead of `m` streams a K-stride apart.
    let mut xp = vec![0.0f32; rows * k];
    for (r0, m) in row_blocks(rows) {
        let dst = &mut xp[r0 * k..(r0 + m) * k];
        for r in 0..m {
            for (p, &v) in x[(r0 + r) * k..(r0 + r + 1) * k].iter().enumerate() {
                dst[p * m + r] = v;
            }
        }
    }
    let xp = &xp[..];
    let shared = SharedOut(out.as_mut_ptr());
    let run = |range: std::ops::Range<usize>| {
        let s = shared;
        let mut i = range.start;
        while i < range.end {
            // A single row is latency-bound on two FMA chains per panel: take four whole
            // panels at once (eight independent chains). Same chain per output either way.
            if rows == 1 && range.end - i >= 4 && (i + 4) * NR <= n {
                // SAFETY: AVX2 and FMA are available (checked above); panels i..i + 4 are full
                // (4 * NR columns below n), `x` holds k values and `out` n (asserted above);
                // this task alone writes those columns.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    x86::row_times_four_panels(
                        &w.panels[i * k * NR..(i + 4) * k * NR],
                        k,
                        x,
                        s.0.add(i * NR),
                    )
                };
                i += 4;
                continue;
            }
            // SAFETY: AVX2 and FMA are available (checked above); the panel holds k * NR values,
            // `x` holds rows * k and `out` rows * n (asserted above); this task alone writes the
            // columns of panel i.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                x86::panel_product(
                    w.panel(i),
                    k,
                    i * NR,
                    (n - i * NR).min(NR),
                    rows,
                    xp,
                    s.0,
                    n,
                )
            };
            i += 1;
        }
    };
    if tasks <= 1 {
        run(0..panels);
    } else {
        let per = panels.div_ceil(tasks);
        super::pool::run(tasks, tasks, &|t| {
            run((t * per).min(panels)..((t + 1) * per).min(panels))
        });
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::NR;
    use std::arch::x86_64::*;

    /// All rows against one panel: tiles of [`MR`](super::MR) rows, then the remainder.
    ///
    /// # Safety
    /// 1. The CPU supports AVX2 and FMA.
    /// 2. `panel` holds `k * NR` values; `x` holds `rows * k` in the blocks of `row_blocks`,
    ///    each interleaved p-major (`x[r0 * k + p * m + r]`); `out` points to `rows * ldo`
    ///    writable values; `col0 + cols <= ldo` and `cols <= NR`.
    /// 3. No other thread writes columns `col0..col0 + cols` of `out` during the call.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn panel_product(
        panel: &[f32],
        k: usize,
        col0: usize,
        cols: usize,
        rows: usize,
        x: &[f32],
        out: *mut f32,
        ldo: usize,
    ) {
        for (r, m) in super::row_blocks(rows) {
            // SAFETY: rows r..r + m exist in `x` and `out` (precondition 2); the block's
            // interleaved inputs start at x[r * k]; the rest as the caller guarantees.
            unsafe {
                let xr = x.as_ptr().add(r * k);
                let o = out.add(r * ldo + col0);
                match m {
                    6 => tile::<6>(panel.as_ptr(), k, xr, o, ldo, cols),
                    5 => tile::<5>(panel.as_ptr(), k, xr, o, ldo, cols),
                    4 => tile::<4>(panel.as_ptr(), k, xr, o, ldo, cols),
                    3 => tile::<3>(panel.as_ptr(), k, xr, o, ldo, cols),
                    2 => tile::<2>(panel.as_ptr(), k, xr, o, ldo, cols),
                    _ => tile::<1>(panel.as_ptr(), k, xr, o, ldo, cols),
                }
            }
        }
    }

    /// One row against four consecutive full panels (64 channels): eight FMA chains.
    ///
    /// # Safety
    /// 1. AVX2 and FMA.
    /// 2. `panels` holds `4 * k * NR` values, `x` at least `k`, and `out` points to `4 * NR`
    ///    writable values.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn row_times_four_panels(panels: &[f32], k: usize, x: &[f32], out: *mut f32) {
        debug_assert!(panels.len() >= 4 * k * NR && x.len() >= k);
        let mut c = [_mm256_setzero_ps(); 8];
        let base = panels.as_ptr();
        for p in 0..k {
            // SAFETY: p < k keeps every read inside its panel and inside `x` (precondition 2).
            unsafe {
                let a = _mm256_broadcast_ss(&*x.as_ptr().add(p));
                for q in 0..4 {
                    let b = base.add(q * k * NR + p * NR);
                    c[2 * q] = _mm256_fmadd_ps(a, _mm256_loadu_ps(b), c[2 * q]);
                    c[2 * q + 1] = _mm256_fmadd_ps(a, _mm256_loadu_ps(b.add(8)), c[2 * q + 1]);
                }
            }
        }
        for (q, v) in c.iter().enumerate() {
            // SAFETY: q * 8 + 8 <= 4 * NR values are writable (precondition 2).
            unsafe { _mm256_storeu_ps(out.add(q * 8), *v) };
        }
    }

    /// `M` rows x 16 channels: for each `p`, two panel loads, `M` broadcasts, `2M` FMAs.
    ///
    /// # Safety
    /// 1. AVX2 and FMA.
    /// 2. `panel` points to `k * NR` values, `x` to `k * M` values (`x[p * M + r]`), `out` to
    ///    `M` rows of stride `ldo` with `cols <= NR` writable values each.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const M: usize>(
        panel: *const f32,
        k: usize,
        x: *const f32,
        out: *mut f32,
        ldo: usize,
        cols: usize,
    ) {
        let mut c0 = [_mm256_setzero_ps(); M];
        let mut c1 = [_mm256_setzero_ps(); M];
        for p in 0..k {
            // SAFETY: p < k keeps the panel reads within k * NR values and the input reads within
            // each row (precondition 2).
            unsafe {
                let b0 = _mm256_loadu_ps(panel.add(p * NR));
                let b1 = _mm256_loadu_ps(panel.add(p * NR + 8));
                for r in 0..M {
                    let a = _mm256_broadcast_ss(&*x.add(p * M + r));
                    c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
                    c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
                }
            }
        }
        for r in 0..M {
            // SAFETY: row r < M of `out` has `cols` writable values (precondition 2).
            unsafe {
                let o = out.add(r * ldo);
                if cols == NR {
                    _mm256_storeu_ps(o, c0[r]);
                    _mm256_storeu_ps(o.add(8), c1[r]);
                } else {
                    let mut tmp = [0.0f32; NR];
                    _mm256_storeu_ps(tmp.as_mut_ptr(), c0[r]);
                    _mm256_storeu_ps(tmp.as_mut_ptr().add(8), c1[r]);
                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), o, cols);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn row_blocks_cover_every_row_evenly() {
        for rows in 0..40 {
            let blocks: Vec<_> = row_blocks(rows).collect();
            let mut next = 0;
            for &(r0, m) in &blocks {
                assert_eq!(r0, next);
                assert!(m <= MR && (rows == 0 || m >= 1));
                next += m;
            }
            assert_eq!(next, rows);
            let (lo, hi) = blocks
                .iter()
                .fold((usize::MAX, 0), |(lo, hi), &(_, m)| (lo.min(m), hi.max(m)));
            assert!(rows == 0 || hi - lo <= 1, "{rows}: {blocks:?}");
        }
        assert_eq!(row_blocks(8).collect::<Vec<_>>(), vec![(0, 4), (4, 4)]);
    }

    #[test]
    fn pack_round_trips() {
        for (n, k) in [(1, 1), (3, 5), (16, 7), (17, 9), (40, 0)] {
            let w: Vec<f32> = (0..n * k).map(|i| i as f32 * 0.5 - 3.0).collect();
            assert_eq!(PackedF32::pack(&w, n, k).unpack(), w);
        }
    }

    #[test]
    fn single_rows_over_four_panel_groups_equal_the_twin() {
        for (k, n) in [(1, 64), (7, 65), (33, 100), (64, 128), (100, 200), (9, 130)] {
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 7919) % 211) as f32 / 37.0 - 2.8)
                .collect();
            let x: Vec<f32> = (0..k)
                .map(|i| ((i * 104729) % 97) as f32 / 13.0 - 3.7)
                .collect();
            let packed = PackedF32::pack(&w, n, k);
            let (mut a, mut b) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            for threads in [1, 2] {
                matmul(&packed, 1, &x, &mut a, threads);
                matmul_scalar(&packed, 1, &x, &mut b);
                assert_eq!(
                    a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "k={k} n={n}"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// The SIMD kernel equals its scalar twin bit for bit, on shapes covering every tile
        /// remainder, at 1 to 3 threads.
        #[test]
        fn simd_equals_scalar_twin(rows in 1usize..20, k in 0usize..70, n in 1usize..120, threads in 1usize..4, seed in any::<u64>()) {
            let mut s = seed;
            let mut next = || {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as i32 - (1 << 23)) as f32 / 1048576.0
            };
            let w: Vec<f32> = (0..n * k).map(|_| next()).collect();
            let x: Vec<f32> = (0..rows * k).map(|_| next()).collect();
            let packed = PackedF32::pack(&w, n, k);
            let mut a = vec![f32::NAN; rows * n];
            let mut b = vec![f32::NAN; rows * n];
            matmul(&packed, rows, &x, &mut a, threads);
            matmul_scalar(&packed, rows, &x, &mut b);
            for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                prop_assert_eq!(p.to_bits(), q.to_bits(), "at {}", i);
            }
        }
    }
}
