//! Offline weight quantization: float `[N, K]` weights to symmetric int8 with one scale per
//! output channel (row) or per tensor.

use ndarray::{Array2, ArrayView2};

use crate::error::{check_finite, Error, Result};
use crate::quantize::rounding::round_away;

/// Largest depth K a layer accepts. Row sums are kept in i32; with |w| <= 128 they are exact
/// below 2^24 elements.
pub const MAX_DEPTH: usize = (1 << 24) - 1;

/// How many scales the weights carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// One scale per output channel (row of `W[N][K]`): TFLite's converter default for dense
    /// layers.
    #[default]
    PerChannel,
    /// One scale for the whole tensor.
    PerTensor,
}

impl Granularity {
    /// `per-channel` or `per-tensor`, the names its `FromStr` parses.
    pub fn name(self) -> &'static str {
        match self {
            Granularity::PerChannel => "per-channel",
            Granularity::PerTensor => "per-tensor",
        }
    }
}

impl std::fmt::Display for Granularity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Granularity {
    type Err = Error;

    /// Parses `per-channel` or `per-tensor`; anything else is [`Error::InvalidArgument`].
    ///
    /// ```
    /// use hybridq::Granularity;
    /// assert_eq!("per-tensor".parse::<Granularity>().unwrap(), Granularity::PerTensor);
    /// assert!("per-row".parse::<Granularity>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "per-channel" => Ok(Granularity::PerChannel),
            "per-tensor" => Ok(Granularity::PerTensor),
            _ => Err(Error::invalid(
                "Granularity::from_str",
                format!("`{s}`: expected per-channel or per-tensor"),
            )),
        }
    }
}

/// Which offline quantizer to reproduce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WeightRule {
    /// `TFLiteConverter` with `optimizations=[DEFAULT]` (the MLIR dynamic-range quantizer), what
    /// users get today: the range in f64, `scale = M / 127`, `q = round_away(w / scale)` in f64,
    /// and a range of at least `[-5e-7, 5e-7]`.
    #[default]
    Converter,
    /// The legacy `quantize_weights` tool: an f32 reciprocal `127 / M` multiplied in f32. An
    /// all-zero channel stores scale 0 per channel (1.0 per tensor).
    Legacy,
}

/// Symmetric int8 weights `W[N][K]` with their scales and cached row sums.
///
/// Real weights are approximated by `w[n][k] ~= scale(n) * q[n][k]`. Values produced by the
/// quantizers lie in `[-127, 127]`; pre-quantized weights loaded with
/// [`QuantizedWeights::from_parts`] may also hold -128, which every kernel handles exactly.
///
/// ```
/// use hybridq::{Granularity, QuantizedWeights};
/// use ndarray::array;
///
/// let w = array![[0.5f32, -1.0, 0.25], [2.0, 0.0, -0.5]];
/// let q = QuantizedWeights::quantize(w.view(), Granularity::PerChannel).unwrap();
/// assert_eq!(q.values().row(0).to_vec(), vec![64, -127, 32]);
/// assert_eq!(q.scales(), &[1.0f32 / 127.0, 2.0 / 127.0]);
/// assert_eq!(q.row_sums(), &[-31, 95]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedWeights {
    values: Array2<i8>,
    scales: Vec<f32>,
    granularity: Granularity,
    row_sums: Vec<i32>,
}

impl QuantizedWeights {
    /// Quantizes float weights `[N, K]` as TFLite's converter does ([`WeightRule::Converter`]).
    pub fn quantize(weights: ArrayView2<'_, f32>, granularity: Granularity) -> Result<Self> {
        Self::quantize_with(weights, granularity, WeightRule::Converter)
    }

    /// Quantizes float weights `[N, K]` with the legacy `quantize_weights` rule.
    pub fn quantize_legacy(weights: ArrayView2<'_, f32>, granularity: Granularity) -> Result<Self> {
        Self::quantize_with(weights, granularity, WeightRule::Legacy)
    }

    /// Quantizes float weights `[N, K]` with the given rule.
    ///
    /// Errors: `N == 0`, `K` above [`MAX_DEPTH`], or a NaN or infinite weight.
    pub fn quantize_with(
        weights: ArrayView2<'_, f32>,
        granularity: Granularity,
        rule: WeightRule,
    ) -> Result<Self> {
        const OP: &str = "QuantizedWeights::quantize";
        let (n, k) = weights.dim();
        check_weight_shape(OP, n, k)?;
        let w = weights.as_standard_layout();
        let flat = w.as_slice().expect("standard layout is contiguous");
        check_finite(OP, "weights", flat)?;

        let mut values = Vec::with_capacity(n * k);
        let mut scales = Vec::new();
        match granularity {
            Granularity::PerChannel => {
                for row in 0..n {
                    let block = &flat[row * k..(row + 1) * k];
                    scales.push(quantize_block(block, rule, granularity, &mut values));
                }
            }
            Granularity::PerTensor => {
                scales.push(quantize_block(flat, rule, granularity, &mut values));
            }
        }
        let values = Array2::from_shape_vec((n, k), values).expect("n * k values were pushed");
        Ok(Self::assemble(values, scales, granularity))
    }

    /// Loads weights that are already quantized (for example from a `.tflite` file or a fixture),
    /// and validates them.
    ///
    /// `scales` holds `N` values (per channel) or one (per tensor). Every scale must be finite
    /// and > 0. Any int8 value is accepted, -128 included.
    pub fn from_parts(values: ArrayView2<'_, i8>, scales: &[f32]) -> Result<Self> {
        const OP: &str = "QuantizedWeights::from_parts";
        let (n, k) = values.dim();
        check_weight_shape(OP, n, k)?;
        let granularity = if scales.len() == n {
            Granularity::PerChannel
        } else if scales.len() == 1 {
            Granularity::PerTensor
        } else {
            return Err(Error::shape(
                OP,
                format!("{n} scales (per channel) or 1 (per tensor)"),
                format!("{} scales", scales.len()),
            ));
        };
        if let Some((index, &value)) = scales
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.is_finite() && **s > 0.0))
        {
            return Err(Error::BadScale {
                op: OP,
                index,
                value,
            });
        }
        Ok(Self::assemble(
            values.to_owned(),
            scales.to_vec(),
            granularity,
        ))
    }

    fn assemble(values: Array2<i8>, scales: Vec<f32>, granularity: Granularity) -> Self {
        let row_sums = values
            .rows()
            .into_iter()
            .map(|r| r.iter().map(|&v| v as i32).sum())
            .collect();
        Self {
            values,
            scales,
            granularity,
            row_sums,
        }
    }

    /// Number of output channels N.
    pub fn n(&self) -> usize {
        self.values.nrows()
    }

    /// Depth K (inputs per output channel).
    pub fn k(&self) -> usize {
        self.values.ncols()
    }

    /// The int8 values, `[N, K]`.
    pub fn values(&self) -> ArrayView2<'_, i8> {
        self.values.view()
    }

    /// The scales: `N` of them per channel, one per tensor.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// The scale of output channel `n`.
    #[inline]
    pub fn scale(&self, n: usize) -> f32 {
        match self.granularity {
            Granularity::PerChannel => self.scales[n],
            Granularity::PerTensor => self.scales[0],
        }
    }

    /// Per channel or per tensor.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// `row_sum[n] = sum_k q[n][k]`, computed once: the zero-point correction of asymmetric
    /// inputs subtracts `row_sum[n] * zp`.
    pub fn row_sums(&self) -> &[i32] {
        &self.row_sums
    }

    /// The real weights the int8 values stand for: `scale(n) * q[n][k]`, rounded to f32.
    pub fn dequantize(&self) -> Array2<f32> {
        let mut out = self.values.mapv(|v| v as f32);
        for (n, mut row) in out.rows_mut().into_iter().enumerate() {
            let s = self.scale(n);
            row.mapv_inplace(|v| v * s);
        }
        out
    }

    /// Bytes of weight storage (values and scales).
    pub fn storage_bytes(&self) -> usize {
        self.values.len() + 4 * self.scales.len()
    }
}

fn check_weight_shape(op: &'static str, n: usize, k: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::Empty {
            op,
            what: "output channels N",
            got: format!("[{n}, {k}]"),
        });
    }
    if k > MAX_DEPTH {
        return Err(Error::invalid(
            op,
            format!("depth K = {k} exceeds the supported maximum {MAX_DEPTH}"),
        ));
    }
    Ok(())
}

/// Quantizes one block (a row, or the whole tensor) and returns its stored scale.
fn quantize_block(
    block: &[f32],
    rule: WeightRule,
    granularity: Granularity,
    out: &mut Vec<i8>,
) -> f32 {
    match rule {
        WeightRule::Converter => {
            let (lo, hi) = block
                .iter()
                .fold((0.0f32, 0.0f32), |(lo, hi), &w| (lo.min(w), hi.max(w)));
            let mut m = (lo as f64).abs().max((hi as f64).abs());
            if 2.0 * m <= 1e-6 {
                m = 5e-7;
            }
            let scale = (m - (-m)) / 254.0;
            out.extend(
                block
                    .iter()
                    .map(|&w| (w as f64 / scale).round().clamp(-127.0, 127.0) as i8),
            );
            scale as f32
        }
        WeightRule::Legacy => {
            let half_range = block.iter().fold(0.0f32, |m, &w| m.max(w.abs()));
            if half_range == 0.0 {
                out.extend(std::iter::repeat_n(0i8, block.len()));
                // The per-channel tool stores 0; the per-tensor one (SymmetricQuantizeFloats) 1.
                return match granularity {
                    Granularity::PerChannel => 0.0,
                    Granularity::PerTensor => 1.0,
                };
            }
            let inv = 127.0f32 / half_range;
            out.extend(
                block
                    .iter()
                    .map(|&w| round_away(w * inv).clamp(-127.0, 127.0) as i8),
            );
            half_range / 127.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn zero_row_gets_tiny_range_scale() {
        let w = array![[0.0f32, 0.0, 0.0, 0.0], [1.0, -1.0, 0.5, 0.0]];
        let q = QuantizedWeights::quantize(w.view(), Granularity::PerChannel).unwrap();
        assert_eq!(q.scales()[0], (1e-6f64 / 254.0) as f32);
        assert_eq!(q.values().row(0).to_vec(), vec![0; 4]);
        assert_eq!(q.values().row(1).to_vec(), vec![127, -127, 64, 0]);
    }

    #[test]
    fn tiny_range_rule_boundary() {
        // 2M <= 1e-6 widens the range to [-5e-7, 5e-7]: a value of 2.5e-7 becomes 64 (63.5 away).
        let w = array![[2.5e-7f32, 0.0, 0.0, 0.0]];
        let q = QuantizedWeights::quantize(w.view(), Granularity::PerTensor).unwrap();
        let expect = (2.5e-7f32 as f64 / (1e-6 / 254.0)).round() as i8;
        assert_eq!(q.values()[[0, 0]], expect);
        // Just above the threshold the range is the row's own.
        let w = array![[6e-7f32, 0.0]];
        let q = QuantizedWeights::quantize(w.view(), Granularity::PerTensor).unwrap();
        assert_eq!(q.values()[[0, 0]], 127);
        assert_eq!(q.scales()[0], (6e-7f32 as f64 * 2.0 / 254.0) as f32);
    }

    #[test]
    fn per_tensor_uses_one_range() {
        let w = array![[1.0f32, 0.5], [0.25, -2.0]];
        let q = QuantizedWeights::quantize(w.view(), Granularity::PerTensor).unwrap();
        assert_eq!(q.scales(), &[(2.0f64 / 127.0) as f32]);
        assert_eq!(q.values().row(0).to_vec(), vec![64, 32]);
        assert_eq!(q.values().row(1).to_vec(), vec![16, -127]);
        assert_eq!(q.scale(1), q.scale(0));
    }

    #[test]
    fn converter_divides_in_f64_where_legacy_multiplies_in_f32() {
        // Weights just around the half-steps of a row with max 0.3: the f32 reciprocal of the
        // legacy rule and the f64 division of the converter must disagree somewhere (G19), and
        // never by more than one step.
        let m = 0.3f32;
        let mut differ = 0;
        for j in 0..127 {
            let centre = ((j as f64 + 0.5) * m as f64 / 127.0) as f32;
            for d in -3i32..=3 {
                let v = f32::from_bits((centre.to_bits() as i32 + d) as u32);
                let w = array![[m, v]];
                let a = QuantizedWeights::quantize(w.view(), Granularity::PerChannel).unwrap();
                let b =
                    QuantizedWeights::quantize_legacy(w.view(), Granularity::PerChannel).unwrap();
                let (qa, qb) = (a.values()[[0, 1]] as i32, b.values()[[0, 1]] as i32);
                assert!((qa - qb).abs() <= 1, "v={v}: {qa} vs {qb}");
                assert_eq!(qa, (v as f64 / (m as f64 / 127.0)).round() as i32);
                differ += (qa != qb) as usize;
            }
        }
        assert!(differ > 0, "the legacy and converter rules never differed");
    }

    #[test]
    fn legacy_zero_channel_scales() {
        let w = array![[0.0f32, 0.0], [1.0, 2.0]];
        let pc = QuantizedWeights::quantize_legacy(w.view(), Granularity::PerChannel).unwrap();
        assert_eq!(pc.scales()[0], 0.0);
        let z = array![[0.0f32, 0.0]];
        let pt = QuantizedWeights::quantize_legacy(z.view(), Granularity::PerTensor).unwrap();
        assert_eq!(pt.scales(), &[1.0]);
    }

    #[test]
    fn rejects_non_finite_and_empty() {
        let w = array![[1.0f32, f32::NAN]];
        assert!(matches!(
            QuantizedWeights::quantize(w.view(), Granularity::PerChannel),
            Err(Error::NonFinite { index: 1, .. })
        ));
        let w = array![[f32::INFINITY, 0.0]];
        assert!(matches!(
            QuantizedWeights::quantize_legacy(w.view(), Granularity::PerTensor),
            Err(Error::NonFinite { index: 0, .. })
        ));
        let w = Array2::<f32>::zeros((0, 4));
        assert!(matches!(
            QuantizedWeights::quantize(w.view(), Granularity::PerChannel),
            Err(Error::Empty { .. })
        ));
    }

    #[test]
    fn from_parts_validates_scales() {
        let v = array![[1i8, -128], [3, 4]];
        for bad in [0.0f32, -1.0, f32::NAN, f32::INFINITY, -0.0] {
            assert!(matches!(
                QuantizedWeights::from_parts(v.view(), &[1.0, bad]),
                Err(Error::BadScale { index: 1, .. })
            ));
        }
        assert!(matches!(
            QuantizedWeights::from_parts(v.view(), &[1.0, 1.0, 1.0]),
            Err(Error::ShapeMismatch { .. })
        ));
        let q = QuantizedWeights::from_parts(v.view(), &[0.5]).unwrap();
        assert_eq!(q.granularity(), Granularity::PerTensor);
        assert_eq!(q.row_sums(), &[-127, 7]);
        assert_eq!(q.dequantize()[[0, 1]], -64.0);
    }

    #[test]
    fn zero_depth_is_allowed() {
        let w = Array2::<f32>::zeros((3, 0));
        let q = QuantizedWeights::quantize(w.view(), Granularity::PerChannel).unwrap();
        assert_eq!(q.scales().len(), 3);
        assert_eq!(q.row_sums(), &[0, 0, 0]);
    }
}
