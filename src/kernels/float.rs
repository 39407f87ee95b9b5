//! f32 matrix products for the float layer.

/// `out[rows, n] = x[rows, k] * w[n, k]^T`, all row-major.
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
