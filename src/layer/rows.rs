//! The ndarray boundary: `[..., K]` views in, `[..., N]` out, flattened to rows.

use ndarray::{Array, ArrayView, ArrayViewMut, Dimension, IxDyn};

use super::scratch::grow;
use super::{Linear, Scratch};
use crate::error::{checked_len, try_filled, Error, Result};

/// Checks `x` is `[..., K]` and returns the number of rows (without allocating).
fn rows_of<L: Linear + ?Sized, D: Dimension>(
    layer: &L,
    x: &ArrayView<'_, f32, D>,
) -> Result<usize> {
    const OP: &str = "Linear::forward";
    let shape = x.shape();
    let k = layer.in_features();
    match shape.last() {
        None => Err(Error::shape(
            OP,
            format!("an input of rank >= 1 with last dimension {k}"),
            "a 0-d input",
        )),
        Some(&last) if last != k => Err(Error::shape(
            OP,
            format!("[..., {k}]"),
            format!("{shape:?}"),
        )),
        // With K = 0 the leading dimensions' product is not bounded by the view's size.
        Some(_) => shape[..shape.len() - 1]
            .iter()
            .try_fold(1usize, |acc, &d| checked_len(OP, "the rows", acc, d)),
    }
}

/// Checks `x` is `[..., K]` and returns the number of rows and the output shape `[..., N]`.
fn output_shape<L: Linear + ?Sized, D: Dimension>(
    layer: &L,
    x: &ArrayView<'_, f32, D>,
) -> Result<(usize, Vec<usize>)> {
    let rows = rows_of(layer, x)?;
    let mut out = x.shape().to_vec();
    *out.last_mut().expect("rank >= 1") = layer.out_features();
    Ok((rows, out))
}

pub(super) fn forward_alloc<L: Linear + ?Sized, D: Dimension>(
    layer: &L,
    x: ArrayView<'_, f32, D>,
    scratch: &mut Scratch,
) -> Result<Array<f32, D>> {
    const OP: &str = "Linear::forward";
    let (rows, out_shape) = output_shape(layer, &x)?;
    // A broadcast view can claim far more rows than memory holds: every size is checked.
    let out_len = checked_len(OP, "the output", rows, layer.out_features())?;
    let mut out = try_filled(OP, "the output", out_len, 0.0f32)?;
    match x.as_slice() {
        Some(flat) => layer.forward_rows(flat, rows, &mut out, scratch)?,
        None => {
            let mut flat = try_filled(OP, "a contiguous copy of the input", x.len(), 0.0f32)?;
            for (dst, &src) in flat.iter_mut().zip(x.iter()) {
                *dst = src;
            }
            layer.forward_rows(&flat, rows, &mut out, scratch)?
        }
    }
    let out = Array::from_shape_vec(IxDyn(&out_shape), out).expect("rows * N values");
    Ok(out
        .into_dimensionality::<D>()
        .expect("same rank as the input"))
}

pub(super) fn forward_into<L: Linear + ?Sized, D: Dimension>(
    layer: &L,
    x: ArrayView<'_, f32, D>,
    mut out: ArrayViewMut<'_, f32, D>,
    scratch: &mut Scratch,
) -> Result<()> {
    let rows = rows_of(layer, &x)?;
    let (xs, os) = (x.shape(), out.shape());
    let lead = xs.len() - 1;
    if os.len() != xs.len() || os[..lead] != xs[..lead] || os[lead] != layer.out_features() {
        let mut want = xs.to_vec();
        want[lead] = layer.out_features();
        return Err(Error::shape(
            "Linear::forward_into",
            format!("output {want:?}"),
            format!("output {os:?}"),
        ));
    }
    // Stage non-standard-layout views through the scratch (taken out to keep borrows simple).
    let mut staged_in = std::mem::take(&mut scratch.input);
    let mut staged_out = std::mem::take(&mut scratch.output);
    let result = (|| {
        let flat_in: &[f32] = match x.as_slice() {
            Some(flat) => flat,
            None => {
                try_grow(&mut staged_in, x.len(), "a contiguous copy of the input")?;
                for (dst, &src) in staged_in.iter_mut().zip(x.iter()) {
                    *dst = src;
                }
                &staged_in[..x.len()]
            }
        };
        match out.as_slice_mut() {
            Some(flat_out) => layer.forward_rows(flat_in, rows, flat_out, scratch),
            None => {
                let len = out.len();
                try_grow(&mut staged_out, len, "a contiguous copy of the output")?;
                layer.forward_rows(flat_in, rows, &mut staged_out[..len], scratch)?;
                for (dst, &src) in out.iter_mut().zip(&staged_out[..len]) {
                    *dst = src;
                }
                Ok(())
            }
        }
    })();
    scratch.input = staged_in;
    scratch.output = staged_out;
    result
}

/// Grows a staging buffer to `len` values, or [`crate::Error::TooLarge`].
fn try_grow(v: &mut Vec<f32>, len: usize, what: &'static str) -> Result<()> {
    if v.len() < len {
        v.try_reserve_exact(len - v.len())
            .map_err(|e| crate::Error::TooLarge {
                op: "Linear::forward_into",
                what,
                elements: len,
                reason: e.to_string(),
            })?;
        grow(v, len, 0.0);
    }
    Ok(())
}

/// Checks the flat slice lengths handed to a `forward_rows`-style call (the layers' and
/// `IntegerLinear::forward_q_rows`): `rows * k` inputs and `rows * n` outputs. A product that
/// does not fit in `usize` is a mismatch, never an overflow.
pub(crate) fn check_rows(
    op: &'static str,
    x_len: usize,
    rows: usize,
    k: usize,
    out_len: usize,
    n: usize,
) -> Result<()> {
    check_len(op, "inputs", x_len, rows, k)?;
    check_len(op, "outputs", out_len, rows, n)
}

/// `len == rows * per`, or a shape error naming `what`.
fn check_len(op: &'static str, what: &str, len: usize, rows: usize, per: usize) -> Result<()> {
    match rows.checked_mul(per) {
        Some(want) if want == len => Ok(()),
        want => Err(Error::shape(
            op,
            match want {
                Some(w) => format!("{rows} x {per} = {w} {what}"),
                None => format!("{rows} x {per} {what} (more than usize holds)"),
            },
            format!("{len}"),
        )),
    }
}
