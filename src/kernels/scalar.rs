//! Portable scalar kernels: the executable specification. No `unsafe`.

/// Longest run of i8 x i8 products that an i32 accumulator holds exactly: with both factors
/// in [-128, 127], `131_071 * 128 * 128 < 2^31`.
pub(crate) const EXACT_I32_RUN: usize = 131_071;

/// `sum_k a[k] * b[k]`, exact for any length: i32 partial sums over runs of
/// [`EXACT_I32_RUN`], added in i64.
pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i64 {
    debug_assert_eq!(a.len(), b.len());
    a.chunks(EXACT_I32_RUN)
        .zip(b.chunks(EXACT_I32_RUN))
        .map(|(a, b)| {
            a.iter()
                .zip(b)
                .map(|(&x, &y)| x as i32 * y as i32)
                .sum::<i32>() as i64
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_extreme_dot_is_exact() {
        let n = 3 * EXACT_I32_RUN + 17;
        let a = vec![-128i8; n];
        let b = vec![-128i8; n];
        assert_eq!(dot_i8(&a, &b), n as i64 * 16384);
        assert_eq!(dot_i8(&a[..0], &b[..0]), 0);
    }
}
