//! The analytic error bound of a hybrid result against the float layer it approximates.
//!
//! With `x^ = sf (q_x - zp)` the dequantized input and `w^ = s_w q_w` the dequantized weight,
//!
//! ```text
//! y_hybrid - y_float = sum_k (x^_k - x_k) w^_k + sum_k x_k (w^_k - w_k)
//! |y_hybrid - y_float| <= e_x * sum_k |w^_k| + e_w * sum_k |x_k| + slop
//! ```
//!
//! where `e_w = s_w / 2` (round to nearest, plus the f32 rounding of the stored scale),
//! `e_x = sf / 2` for symmetric rows and `e_x = sf` for asymmetric ones (the zero point is
//! rounded to an integer, so an extreme value can sit up to one step past the grid and be
//! clamped), and `slop` covers f32 rounding of the sums (relative `1e-5` of `sum |x||w|`).
//! Fused activations are 1-Lipschitz clamps, so the bound holds after them too.
//!
//! **Where it does not apply.** The bound is about the quantization error in exact arithmetic
//! and assumes f32 does not overflow: a row whose products reach `f32::MAX` (inputs near 1e38)
//! gives an infinite or NaN hybrid output where the float layer may stay finite, in every
//! TFLite build and in XNNPACK alike (`fixtures/hybrid/case087`-`089`). XNNPACK overflows
//! earlier than TFLite, because it multiplies the accumulator by the row scale before the
//! weight scale: `w = [[0.5]]`, `x = [[f32::MAX]]` gives `inf` in [`Flavour::Xnnpack`] (as
//! the real delegate does) and 1.7014117e38 in the TFLite flavours and the float layer, so the
//! XNNPACK flavour does not meet the bound there (`tests/extremes.rs`). Rows whose range is so
//! small that the quantization multiplier overflows (below about 1e-36) are quantized to
//! build-specific integers that may even have the wrong sign; their outputs are below 1e-30,
//! inside the bound's absolute slop, so the bound still holds there but says nothing useful.

use ndarray::ArrayView2;

use crate::error::{Error, Result};
use crate::layer::{HybridLinear, Linear};
use crate::quantize::inputs::quantize_row;
#[cfg(doc)]
use crate::Flavour;

/// Per-output bounds `|y_hybrid - y_float| <= bound[b][n]` for `rows` rows of `x` (row-major,
/// `rows * K` values, all finite), where `weights` are the float weights `[N, K]` the layer
/// approximates. Returned row-major, `rows * N`.
///
/// ```
/// use hybridq::bound::error_bounds;
/// use hybridq::{FloatLinear, Granularity, HybridConfig, HybridLinear, Linear};
/// use ndarray::array;
///
/// let w = array![[0.3f32, -0.7, 0.1], [1.5, 0.2, -0.9]];
/// let x = array![[0.5f32, -1.25, 2.0]];
/// let h = HybridLinear::from_f32(w.view(), None, Granularity::PerChannel, HybridConfig::default())?;
/// let f = FloatLinear::new(w.view(), None, Default::default())?;
/// let (yh, yf) = (h.forward(x.view())?, f.forward(x.view())?);
/// let b = error_bounds(&h, w.view(), x.as_slice().unwrap())?;
/// for i in 0..2 {
///     assert!(((yh[[0, i]] - yf[[0, i]]).abs() as f64) <= b[i]);
/// }
/// # Ok::<(), hybridq::Error>(())
/// ```
pub fn error_bounds(
    layer: &HybridLinear,
    weights: ArrayView2<'_, f32>,
    x: &[f32],
) -> Result<Vec<f64>> {
    const OP: &str = "error_bounds";
    let (k, n) = (layer.in_features(), layer.out_features());
    if weights.dim() != (n, k) {
        return Err(Error::shape(
            OP,
            format!("weights [{n}, {k}]"),
            format!("{:?}", weights.shape()),
        ));
    }
    if k == 0 || !x.len().is_multiple_of(k) {
        return Err(Error::shape(
            OP,
            format!("a multiple of K = {k} inputs"),
            format!("{}", x.len()),
        ));
    }
    crate::error::check_finite(OP, "input", x)?;
    let qw = layer.weights();
    let dequant = qw.dequantize();
    let abs_w: Vec<f64> = dequant
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|v| v.abs() as f64).sum())
        .collect();
    let bias = layer.bias();
    let config = layer.config();
    let asymmetric = config.asymmetric_inputs || config.flavour.is_xnnpack();
    let mut q = vec![0i8; k];
    let mut out = Vec::with_capacity(x.len() / k * n);
    for row in x.chunks_exact(k) {
        let p = quantize_row(config.flavour, config.asymmetric_inputs, row, &mut q);
        let step = if asymmetric { 1.0 } else { 0.5 };
        let e_x = p.scale as f64 * step * (1.0 + 1e-5);
        let abs_x: f64 = row.iter().map(|v| v.abs() as f64).sum();
        for j in 0..n {
            let e_w = qw.scale(j) as f64 * 0.5 * (1.0 + 2e-5);
            let magnitude: f64 = row
                .iter()
                .zip(weights.row(j))
                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                .sum::<f64>()
                + bias.map_or(0.0, |b| b[j].abs() as f64);
            let slop = 1e-5 * magnitude + 1e-30;
            out.push(e_x * abs_w[j] + e_w * abs_x + slop);
        }
    }
    Ok(out)
}
