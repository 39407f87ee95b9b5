//! Bounds on the problems the commands make up themselves (`bench`, `demo`, `compare`), so that
//! a size typed by mistake gets an error instead of an allocation failure.

use hybridq::{Error, Result};

/// Most values one made-up tensor may hold: 2^28, 1 GiB of f32 (the weights of a 16,384 x
/// 16,384 layer).
pub const MAX_VALUES: usize = 1 << 28;

/// Checks that the weights (`n x k`), inputs (`batch x k`) and outputs (`batch x n`) of a
/// made-up `batch x k -> n` problem each hold at most [`MAX_VALUES`] values.
pub fn check_problem(op: &'static str, batch: usize, k: usize, n: usize) -> Result<()> {
    for (what, rows, cols) in [
        ("weights N x K", n, k),
        ("inputs B x K", batch, k),
        ("outputs B x N", batch, n),
    ] {
        if rows.checked_mul(cols).is_none_or(|v| v > MAX_VALUES) {
            return Err(Error::InvalidArgument {
                op,
                message: format!(
                    "{what} would be {rows} x {cols} values, more than 2^28 (1 GiB of f32)"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_up_to_the_bound_pass_and_larger_ones_say_which_tensor() {
        check_problem("t", 1, 16_384, 16_384).unwrap();
        check_problem("t", 128, 4096, 4096).unwrap();
        for (b, k, n, what) in [
            (1, 16_384, 16_385, "weights"),
            (1 << 20, 1 << 9, 1, "inputs"),
            (1 << 20, 1, 1 << 9, "outputs"),
            (1, usize::MAX, 2, "weights"),
            (usize::MAX, 2, 1, "inputs"),
        ] {
            let e = check_problem("t", b, k, n).unwrap_err().to_string();
            assert!(e.contains(what) && e.contains("2^28"), "{b} {k} {n}: {e}");
        }
    }
}
