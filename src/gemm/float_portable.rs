//! f32 matrix products for the float layer: a fast GEMV-like path for small batches (weights
//! streamed once for up to [`GEMV_MAX_ROWS`] input rows) and matrixmultiply's GEMM beyond.
//! Work is split over output channels (GEMV) or rows (GEMM), never over K.

use super::RawOut as SharedOut;

/// Largest batch handled by the GEMV path (weights streamed once, input rows in groups of
/// [`ROW_GROUP`]); larger batches go to matrixmultiply.
pub(crate) const GEMV_MAX_ROWS: usize = 16;

/// Input rows sharing each pair of weight-row loads in the GEMV micro-kernel.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const ROW_GROUP: usize = 4;

/// `out[rows, n] = x[rows, k] * w[n, k]^T`, all row-major, on up to `threads` threads.
///
/// # Panics
/// If a slice is shorter than its dimensions say.
pub(crate) fn matmul_xwt(
    rows: usize,
    k: usize,
    n: usize,
    x: &[f32],
    w: &[f32],
    out: &mut [f32],
    threads: usize,
) {
    assert!(x.len() >= rows * k && w.len() >= n * k && out.len() >= rows * n);
    let threads = threads.max(1);
    if rows <= GEMV_MAX_ROWS {
        gemv_threaded(rows, k, n, x, w, out, threads);
    } else if threads == 1 {
        sgemm_xwt(rows, k, n, x, w, out);
    } else {
        let per = rows.div_ceil(threads);
        super::pool::for_each_chunk(&mut out[..rows * n], per * n, threads, |t, o| {
            let xs = &x[t * per * k..][..o.len() / n * k];
            sgemm_xwt(o.len() / n, k, n, xs, w, o)
        });
    }
}

fn gemv_threaded(
    rows: usize,
    k: usize,
    n: usize,
    x: &[f32],
    w: &[f32],
    out: &mut [f32],
    threads: usize,
) {
    // One contiguous block of channels per thread: the weights are streamed once in total.
    let block = n.div_ceil(threads).max(16);
    if threads == 1 || block >= n {
        gemv_block(rows, k, n, x, w, 0..n, out.as_mut_ptr());
        return;
    }
    let shared = SharedOut(out.as_mut_ptr());
    super::pool::run(n.div_ceil(block), threads, &|t| {
        let s = shared;
        let start = t * block;
        gemv_block(rows, k, n, x, w, start..(start + block).min(n), s.0);
    });
}

/// Channels `cols` of `out` (row-major `[rows, n]`, given as a raw pointer so that tasks can
/// share it).
fn gemv_block(
    rows: usize,
    k: usize,
    n: usize,
    x: &[f32],
    w: &[f32],
    cols: std::ops::Range<usize>,
    out: *mut f32,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA were detected just above; the pointer and slice bounds are
            // checked by `matmul_xwt`'s assertion and `cols` lies within 0..n.
            unsafe { x86::gemv_block(rows, k, n, x, w, cols, out) };
            return;
        }
    }
    for j in cols {
        let wr = &w[j * k..(j + 1) * k];
        for r in 0..rows {
            let xr = &x[r * k..(r + 1) * k];
            let v: f32 = xr.iter().zip(wr).map(|(a, b)| a * b).sum();
            // SAFETY: r < rows and j < n, so r*n + j < rows*n <= out.len() (asserted by the
            // caller); this task is the only writer of column j.
            unsafe { *out.add(r * n + j) = v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Horizontal sum of 8 lanes.
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
        _mm_cvtss_f32(s)
    }

    /// GEMV for channels `cols`: two weight rows at a time against every input row, so each
    /// weight is loaded once per call.
    ///
    /// # Safety
    /// 1. The CPU supports AVX2 and FMA.
    /// 2. `x` holds `rows * k` values, `w` holds `n * k`, `out` points to `rows * n` writable
    ///    values, `rows <= GEMV_MAX_ROWS`, and `cols` lies within `0..n`.
    /// 3. No other thread writes the columns in `cols` during the call.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gemv_block(
        rows: usize,
        k: usize,
        n: usize,
        x: &[f32],
        w: &[f32],
        cols: std::ops::Range<usize>,
        out: *mut f32,
    ) {
        const R: usize = super::ROW_GROUP;
        debug_assert!(
            rows <= super::GEMV_MAX_ROWS
                && x.len() >= rows * k
                && w.len() >= n * k
                && cols.end <= n
        );
        let kv = k / 8 * 8;
        let xp = x.as_ptr();
        let mut j = cols.start;
        while j < cols.end {
            let pair = (cols.end - j).min(2);
            // SAFETY: j (and j + 1 when pair == 2) < n, so each row start is within `w`.
            let (w0, w1) = unsafe {
                let w0 = w.as_ptr().add(j * k);
                (w0, if pair == 2 { w0.add(k) } else { w0 })
            };
            // The pair of weight rows stays in L1 while every group of input rows passes.
            for g in (0..rows).step_by(R) {
                let gr = (rows - g).min(R);
                // SAFETY: g < rows, so the group's first row starts within `x`.
                let xg = unsafe { xp.add(g * k) };
                let mut acc0 = [_mm256_setzero_ps(); R];
                let mut acc1 = [_mm256_setzero_ps(); R];
                let mut p = 0;
                while p < kv {
                    // SAFETY: p + 8 <= kv <= k, so both weight rows and every input row
                    // g + r < rows are read within bounds (precondition 2); AVX2 is enabled
                    // (precondition 1).
                    unsafe {
                        let a = _mm256_loadu_ps(w0.add(p));
                        let b = _mm256_loadu_ps(w1.add(p));
                        for r in 0..gr {
                            let xv = _mm256_loadu_ps(xg.add(r * k + p));
                            acc0[r] = _mm256_fmadd_ps(xv, a, acc0[r]);
                            acc1[r] = _mm256_fmadd_ps(xv, b, acc1[r]);
                        }
                    }
                    p += 8;
                }
                for r in 0..gr {
                    let mut s0 = hsum(acc0[r]);
                    let mut s1 = hsum(acc1[r]);
                    // SAFETY: q < k and g + r < rows keep every read within `x` and the two
                    // weight rows; (g + r)*n + j (+1) < rows*n is within `out`, whose columns in
                    // `cols` only this call writes (preconditions 2 and 3).
                    unsafe {
                        for q in kv..k {
                            let xv = *xg.add(r * k + q);
                            s0 += xv * *w0.add(q);
                            s1 += xv * *w1.add(q);
                        }
                        *out.add((g + r) * n + j) = s0;
                        if pair == 2 {
                            *out.add((g + r) * n + j + 1) = s1;
                        }
                    }
                }
            }
            j += pair;
        }
    }
}

/// `out[rows, n] = x[rows, k] * w[n, k]^T` with matrixmultiply, all row-major.
///
/// # Panics
/// If a slice is shorter than its dimensions say.
pub(crate) fn sgemm_xwt(rows: usize, k: usize, n: usize, x: &[f32], w: &[f32], out: &mut [f32]) {
    assert!(x.len() >= rows * k && w.len() >= n * k && out.len() >= rows * n);
    // SAFETY:
    // - `x` holds rows*k values read at (i, p) -> i*k + p, all < rows*k (asserted above);
    // - `w^T` is read at (p, j) -> p + j*k, all < n*k (asserted above);
    // - `out` is written at (i, j) -> i*n + j, all < rows*n (asserted above), and no other
    //   reference to it is alive during the call;
    // - beta = 0, so `out`'s previous contents (even NaN) are never read.
    unsafe {
        matrixmultiply::sgemm(
            rows,
            k,
            n,
            1.0,
            x.as_ptr(),
            k as isize,
            1,
            w.as_ptr(),
            1,
            k as isize,
            0.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(rows: usize, k: usize, n: usize, x: &[f32], w: &[f32]) -> Vec<f64> {
        let mut out = vec![0.0f64; rows * n];
        for r in 0..rows {
            for j in 0..n {
                out[r * n + j] = (0..k)
                    .map(|p| x[r * k + p] as f64 * w[j * k + p] as f64)
                    .sum();
            }
        }
        out
    }

    #[test]
    fn every_path_matches_an_f64_reference() {
        for &(rows, k, n) in &[
            (1, 1, 1),
            (1, 7, 3),
            (2, 9, 5),
            (3, 33, 17),
            (4, 64, 64),
            (5, 100, 9),
            (9, 17, 40),
            (1, 300, 257),
        ] {
            let x: Vec<f32> = (0..rows * k)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) / 3.0)
                .collect();
            let w: Vec<f32> = (0..n * k)
                .map(|i| ((i * 53 % 19) as f32 - 9.0) / 5.0)
                .collect();
            let want = reference(rows, k, n, &x, &w);
            for threads in [1, 2, 3] {
                let mut out = vec![f32::NAN; rows * n];
                matmul_xwt(rows, k, n, &x, &w, &mut out, threads);
                for (i, (&g, &e)) in out.iter().zip(&want).enumerate() {
                    let tol = 1e-5 * (k as f64) * 40.0;
                    assert!(
                        (g as f64 - e).abs() <= tol,
                        "({rows},{k},{n}) t{threads} at {i}: {g} vs {e}"
                    );
                }
            }
        }
    }
}
