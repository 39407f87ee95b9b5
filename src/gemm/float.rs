//! The float layer's product driver: weights packed once into panels of [`NR`] output channels
//! (K-major), input rows interleaved per row block, and the register tiles of an
//! [`F32Kernel`] over panel groups and row blocks.
//!
//! Every output `y[r][c]` is one chain of fused multiply-adds over `p = 0..K` in order, starting
//! from `+0.0`: `acc = fma(x[r][p], w[c][p], acc)`. No kernel, tile shape, thread split or batch
//! size changes that chain, so a row's output never depends on the other rows, and
//! [`matmul_scalar`], which runs the same chain with `f32::mul_add` on the plain rows, is the
//! bit-exact reference of every kernel.

use super::RawOut as SharedOut;
use crate::kernels::contract::{F32Kernel, F32Tile};
use crate::kernels::float_registry::F32Visitor;

/// Output channels per panel.
pub(crate) const NR: usize = 16;

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

    #[cfg(test)]
    fn panel(&self, i: usize) -> &[f32] {
        &self.panels[i * self.k * NR..(i + 1) * self.k * NR]
    }

    fn panel_count(&self) -> usize {
        self.n.div_ceil(NR)
    }
}

/// The scalar reference: `out[r][c] = fold_p fma(x[r][p], w[c][p], acc)` from `+0.0`, on the
/// plain (not interleaved) rows.
#[cfg(test)]
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

/// The row blocks `(first row, rows)` of a tile pass: as few blocks as `max` rows allow, of
/// near-equal size, so that no block is a latency-bound sliver (8 rows, 6 at most: 4 + 4, not
/// 6 + 2).
fn row_blocks(rows: usize, max: usize) -> impl Iterator<Item = (usize, usize)> {
    let blocks = rows.div_ceil(max).max(1);
    let (base, extra) = (rows / blocks, rows % blocks);
    (0..blocks).scan(0, move |start, b| {
        let m = base + usize::from(b < extra);
        let item = (*start, m);
        *start += m;
        Some(item)
    })
}

/// One call of the product: `out[rows, N] = x[rows, K] * W^T` on up to `threads` threads,
/// with `interleaved` as the buffer for the interleaved input rows (grown, never shrunk).
pub(crate) struct Matmul<'a> {
    pub(crate) w: &'a PackedF32,
    pub(crate) rows: usize,
    pub(crate) x: &'a [f32],
    pub(crate) out: &'a mut [f32],
    pub(crate) threads: usize,
    pub(crate) interleaved: &'a mut Vec<f32>,
}

impl F32Visitor for Matmul<'_> {
    type Out = ();

    /// Runs the call with kernel `kern`.
    ///
    /// # Panics
    /// If a slice is shorter than its dimensions say.
    fn visit<K: F32Kernel>(self, kern: K) {
        let Matmul {
            w,
            rows,
            x,
            out,
            threads,
            interleaved,
        } = self;
        let (k, n) = (w.k, w.n);
        assert!(x.len() >= rows * k && out.len() >= rows * n);
        if rows == 0 || n == 0 {
            return;
        }
        if k == 0 {
            return out[..rows * n].fill(0.0);
        }
        // Input rows interleaved per row block (p-major), so that a tile's broadcasts read one
        // contiguous stream instead of `m` streams a K-stride apart. One row is its own layout.
        let xp: &[f32] = if rows == 1 {
            x
        } else {
            if interleaved.len() < rows * k {
                interleaved.resize(rows * k, 0.0);
            }
            for (r0, m) in row_blocks(rows, K::ROWS) {
                let dst = &mut interleaved[r0 * k..(r0 + m) * k];
                for r in 0..m {
                    for (p, &v) in x[(r0 + r) * k..(r0 + r + 1) * k].iter().enumerate() {
                        dst[p * m + r] = v;
                    }
                }
            }
            interleaved
        };
        let group = if rows == 1 { K::ROW_PANELS } else { K::PANELS };
        let panels = w.panel_count();
        let groups = panels.div_ceil(group);
        let tasks = threads
            .max(1)
            .min(groups)
            .min((rows.saturating_mul(k).saturating_mul(n) / MACS_PER_TASK).max(1));
        let shared = SharedOut(out.as_mut_ptr());
        let run = |range: std::ops::Range<usize>| {
            let s = shared;
            for g in range {
                let first = g * group;
                let np = group.min(panels - first);
                let cols = (n - first * NR).min(np * NR);
                for (r0, m) in row_blocks(rows, K::ROWS) {
                    let tile = F32Tile {
                        x: xp[r0 * k..].as_ptr(),
                        m,
                        k,
                        panels: w.panels[first * k * NR..(first + np) * k * NR].as_ptr(),
                        np,
                        cols,
                        // SAFETY: row r0 < rows and column first * NR < n of the output.
                        out: unsafe { s.0.add(r0 * n + first * NR) },
                        ldo: n,
                    };
                    // SAFETY: `kern` proves the CPU runs the kernel; the block's `m * k`
                    // interleaved inputs start at xp[r0 * k]; the slice above holds the `np`
                    // panels; rows r0..r0 + m and columns of the group lie inside `out`
                    // (asserted above), which no other task writes (tasks own disjoint groups);
                    // m <= ROWS and np <= the kernel's bound for m by construction.
                    unsafe { kern.tile(&tile) };
                }
            }
        };
        if tasks <= 1 {
            run(0..groups);
        } else {
            // Pieces claimed in turn, as in the int8 driver.
            let chunks = super::driver::pieces(tasks, groups);
            super::pool::run(chunks, tasks, &|t| {
                run(groups * t / chunks..groups * (t + 1) / chunks)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FloatKernel;
    use proptest::prelude::*;

    /// Every packed kernel this CPU runs (the reference `f32-scalar` included).
    fn packed_kernels() -> Vec<FloatKernel> {
        let all: Vec<_> = FloatKernel::available()
            .into_iter()
            .filter(|k| k.is_packed())
            .collect();
        assert!(all.contains(&FloatKernel::Scalar));
        all
    }

    fn run(kernel: FloatKernel, w: &PackedF32, rows: usize, x: &[f32], threads: usize) -> Vec<u32> {
        let mut out = vec![f32::NAN; rows * w.n];
        let mut interleaved = Vec::new();
        let call = Matmul {
            w,
            rows,
            x,
            out: &mut out,
            threads,
            interleaved: &mut interleaved,
        };
        kernel.visit(call).expect("an available packed kernel");
        out.iter().map(|v| canonical_bits(*v)).collect()
    }

    fn reference(w: &PackedF32, rows: usize, x: &[f32]) -> Vec<u32> {
        let mut out = vec![f32::NAN; rows * w.n];
        matmul_scalar(w, rows, x, &mut out);
        out.iter().map(|v| canonical_bits(*v)).collect()
    }

    /// The bits of `v`, with every NaN as one (payloads are not part of the contract: the
    /// software `fmaf` and the FMA instruction may quiet them differently).
    fn canonical_bits(v: f32) -> u32 {
        if v.is_nan() {
            f32::NAN.to_bits()
        } else {
            v.to_bits()
        }
    }

    #[test]
    fn row_blocks_cover_every_row_evenly() {
        for max in [1, 4, 6, 12] {
            for rows in 0..40 {
                let blocks: Vec<_> = row_blocks(rows, max).collect();
                let mut next = 0;
                for &(r0, m) in &blocks {
                    assert_eq!(r0, next);
                    assert!(m <= max && (rows == 0 || m >= 1));
                    next += m;
                }
                assert_eq!(next, rows);
                let (lo, hi) = blocks
                    .iter()
                    .fold((usize::MAX, 0), |(lo, hi), &(_, m)| (lo.min(m), hi.max(m)));
                assert!(rows == 0 || hi - lo <= 1, "{rows}: {blocks:?}");
            }
        }
        assert_eq!(row_blocks(8, 6).collect::<Vec<_>>(), vec![(0, 4), (4, 4)]);
    }

    #[test]
    fn pack_round_trips() {
        for (n, k) in [(1, 1), (3, 5), (16, 7), (17, 9), (40, 0)] {
            let w: Vec<f32> = (0..n * k).map(|i| i as f32 * 0.5 - 3.0).collect();
            assert_eq!(PackedF32::pack(&w, n, k).unpack(), w);
        }
    }

    #[test]
    fn single_rows_over_panel_groups_equal_the_reference() {
        for (k, n) in [
            (1, 64),
            (7, 65),
            (33, 100),
            (64, 128),
            (100, 200),
            (9, 130),
            (5, 257),
        ] {
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 7919) % 211) as f32 / 37.0 - 2.8)
                .collect();
            let x: Vec<f32> = (0..k)
                .map(|i| ((i * 104729) % 97) as f32 / 13.0 - 3.7)
                .collect();
            let packed = PackedF32::pack(&w, n, k);
            for kernel in packed_kernels() {
                for threads in [1, 2] {
                    assert_eq!(
                        run(kernel, &packed, 1, &x, threads),
                        reference(&packed, 1, &x),
                        "{kernel} k={k} n={n}"
                    );
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Every packed kernel equals the reference bit for bit, on shapes covering every tile
        /// and panel-group remainder, at 1 to 3 threads, with values across the whole f32
        /// range (overflow to infinity and NaN included).
        #[test]
        fn every_kernel_equals_the_reference(rows in 1usize..30, k in 0usize..70, n in 1usize..150, threads in 1usize..4, wide in any::<bool>(), seed in any::<u64>()) {
            let mut s = seed;
            let mut next = || {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if wide {
                    // Any finite f32 bit pattern: tiny, huge, subnormal, both signs.
                    let v = f32::from_bits((s >> 32) as u32);
                    if v.is_finite() { v } else { 1.5 }
                } else {
                    ((s >> 40) as i32 - (1 << 23)) as f32 / 1048576.0
                }
            };
            let w: Vec<f32> = (0..n * k).map(|_| next()).collect();
            let x: Vec<f32> = (0..rows * k).map(|_| next()).collect();
            let packed = PackedF32::pack(&w, n, k);
            let want = reference(&packed, rows, &x);
            for kernel in packed_kernels() {
                let got = run(kernel, &packed, rows, &x, threads);
                prop_assert_eq!(&got, &want, "{}", kernel);
            }
        }
    }
}
