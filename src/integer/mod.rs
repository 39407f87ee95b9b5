//! Full-integer fully-connected layer: int8 input and output with zero points, int8 weights,
//! i32 bias, requantized with a fixed-point multiplier, matching TensorFlow Lite 2.21's
//! optimized int8 kernel (x86-64, ruy) bit for bit.
//!
//! With `x = S_x (q_x - Z_x)`, `w = S_w[n] q_w` and `y = S_y (q_y - Z_y)`:
//!
//! ```text
//! acc[n]  = sum_k (q_x[k] - Z_x) * q_w[n][k] + q_b[n]          (i32; q_b has scale S_x S_w[n])
//!         = sum_k q_x[k] q_w[n][k] - Z_x * sum_k q_w[n][k] + q_b[n]
//! q_y[n]  = clamp(Z_y + M[n] * acc[n], lo, hi)                  (M[n] = S_x S_w[n] / S_y)
//! ```
//!
//! `M[n]` is applied as a [`QuantizedMultiplier`] in the chosen [`Rounding`] (ruy by default);
//! `[lo, hi]` is `[-128, 127]` narrowed by the fused activation, in the quantized domain.
//!
//! ```
//! use hybridq::integer::{IntegerLinear, TensorQuant};
//! use hybridq::Activation;
//! use ndarray::array;
//!
//! let w_q = array![[64i8, -127, 32], [127, 0, -32]];
//! let layer = IntegerLinear::new(
//!     w_q.view(), &[1.0 / 127.0, 2.0 / 127.0], None,
//!     TensorQuant::new(0.05, 3)?, TensorQuant::new(0.02, -5)?, Activation::None)?;
//! let x_q = array![[23i8, 43, 63]]; // 1.0, 2.0, 3.0 with S_x = 0.05, Z_x = 3
//! let y_q = layer.forward_q(x_q.view())?;
//! let y: Vec<f32> = y_q.iter().map(|&q| 0.02 * (q as f32 + 5.0)).collect();
//! assert!((y[0] - (0.5 - 2.0 + 0.75)).abs() <= 0.03);
//! assert!((y[1] - (2.0 - 0.5 * 3.0)).abs() <= 0.03);
//! # Ok::<(), hybridq::Error>(())
//! ```

use std::sync::Arc;

use ndarray::{Array2, ArrayView1, ArrayView2};

use crate::activation::Activation;
use crate::engine::integer::{IntegerParams, IntegerProduct};
use crate::error::{check_bias_len, check_finite, checked_bias, Error, Result};
use crate::kernels::Kernel;
use crate::layer::rows::check_rows;
use crate::layer::{Linear, Scratch};
use crate::quantize::weights::{Granularity, QuantizedWeights, MAX_DEPTH};
use crate::toolkit::affine::AffineParams;
use crate::toolkit::fixed_point::{QuantizedMultiplier, Rounding};

/// Scale and zero point of an int8 activation tensor, as a `.tflite` file stores them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorQuant {
    /// The scale `S` (finite, > 0).
    pub scale: f32,
    /// The zero point `Z`, an int8 code.
    pub zero_point: i32,
}

impl TensorQuant {
    /// Checked constructor.
    ///
    /// Errors: a scale that is not finite and > 0 ([`Error::BadScale`]), a zero point outside
    /// `[-128, 127]` ([`Error::OutOfRange`]).
    ///
    /// ```
    /// use hybridq::integer::TensorQuant;
    /// assert!(TensorQuant::new(0.1, -128).is_ok());
    /// assert!(TensorQuant::new(0.0, 0).is_err());
    /// assert!(TensorQuant::new(0.1, 128).is_err());
    /// ```
    pub fn new(scale: f32, zero_point: i32) -> Result<Self> {
        const OP: &str = "TensorQuant::new";
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::BadScale {
                op: OP,
                index: 0,
                value: scale,
            });
        }
        if !(-128..=127).contains(&zero_point) {
            return Err(Error::OutOfRange {
                op: OP,
                what: "zero point",
                index: 0,
                value: zero_point as i64,
                min: -128,
                max: 127,
            });
        }
        Ok(Self { scale, zero_point })
    }

    /// The int8 parameters of an [`AffineParams`] (its scale rounded to f32).
    ///
    /// Errors: parameters chosen for another type ([`Error::InvalidArgument`]), or as
    /// [`TensorQuant::new`].
    ///
    /// ```
    /// use hybridq::integer::TensorQuant;
    /// use hybridq::toolkit::affine::{AffineParams, QuantType};
    /// let p = AffineParams::from_range(-20.0, 1000.0, QuantType::Int8, false)?;
    /// assert_eq!(TensorQuant::from_affine(&p)?, TensorQuant::new(4.0, -123)?);
    /// # Ok::<(), hybridq::Error>(())
    /// ```
    pub fn from_affine(p: &AffineParams) -> Result<Self> {
        if p.qmin < -128 || p.qmax > 127 {
            return Err(Error::invalid(
                "TensorQuant::from_affine",
                format!("codes [{}, {}] are not int8 codes", p.qmin, p.qmax),
            ));
        }
        Self::new(p.scale_f32(), p.zero_point)
    }

    /// `clamp(Z + round_away(r / S), -128, 127)` (f32 division, NaN to `Z`).
    #[inline]
    pub fn quantize(&self, r: f32) -> i8 {
        let q = (r / self.scale).round();
        let q = if q.is_nan() { 0 } else { q as i32 };
        q.saturating_add(self.zero_point).clamp(-128, 127) as i8
    }

    /// `S * (q - Z)` in f32.
    #[inline]
    pub fn dequantize(&self, q: i8) -> f32 {
        self.scale * (q as i32 - self.zero_point) as f32
    }
}

/// TFLite's quantized activation range for an int8 output with scale `s` and zero point `zp`:
/// `Q(v) = zp + round_away(f32(v / s))` (saturating to i32), then `[max(-128, Q(lo)),
/// min(127, Q(hi))]` for the activation's float bounds.
///
/// ```
/// use hybridq::integer::activation_range;
/// use hybridq::Activation;
/// assert_eq!(activation_range(Activation::None, 0.1, 5), (-128, 127));
/// assert_eq!(activation_range(Activation::Relu, 0.1, 5), (5, 127));
/// assert_eq!(activation_range(Activation::Relu6, 0.1, -100), (-100, -40));
/// assert_eq!(activation_range(Activation::ReluN1To1, 0.1, 0), (-10, 10));
/// ```
pub fn activation_range(activation: Activation, scale: f32, zero_point: i32) -> (i32, i32) {
    let q = |v: f32| -> i32 { zero_point.saturating_add((v / scale).round() as i32) };
    let (mut lo, mut hi) = (-128, 127);
    match activation {
        Activation::None => {}
        Activation::Relu => lo = lo.max(q(0.0)),
        Activation::Relu6 => {
            lo = lo.max(q(0.0));
            hi = hi.min(q(6.0));
        }
        Activation::ReluN1To1 => {
            lo = lo.max(q(-1.0));
            hi = hi.min(q(1.0));
        }
    }
    (lo, hi)
}

/// The real multipliers of the layer, as TFLite 2.21 computes them: per tensor
/// `f64(f32(S_x * S_w)) / f64(S_y)` (the product rounded in f32), per channel
/// `f64(S_x) * f64(S_w[n]) / f64(S_y)` (all in f64).
///
/// ```
/// use hybridq::integer::real_multipliers;
/// let per_tensor = real_multipliers(0.1, &[0.3], 0.5);
/// assert_eq!(per_tensor, vec![(0.1f32 * 0.3f32) as f64 / 0.5f32 as f64]);
/// let per_channel = real_multipliers(0.1, &[0.3, 0.2], 0.5);
/// assert_eq!(per_channel[0], 0.1f32 as f64 * 0.3f32 as f64 / 0.5f32 as f64);
/// assert_ne!(per_tensor[0], per_channel[0]);
/// ```
pub fn real_multipliers(input_scale: f32, weight_scales: &[f32], output_scale: f32) -> Vec<f64> {
    if weight_scales.len() == 1 {
        vec![(input_scale * weight_scales[0]) as f64 / output_scale as f64]
    } else {
        weight_scales
            .iter()
            .map(|&s| input_scale as f64 * s as f64 / output_scale as f64)
            .collect()
    }
}

/// A fully-connected layer computed entirely in integers (see the [module](self) docs).
#[derive(Clone, Debug)]
pub struct IntegerLinear {
    weights: Vec<i8>,
    n: usize,
    k: usize,
    weight_scales: Vec<f32>,
    row_sums: Vec<i32>,
    bias: Option<Vec<i32>>,
    input: TensorQuant,
    output: TensorQuant,
    activation: Activation,
    multipliers: Vec<QuantizedMultiplier>,
    act_min: i32,
    act_max: i32,
    rounding: Rounding,
    threads: usize,
    /// The int8 product on the layer's kernel, shared by clones (always `Some` once built).
    engine: Option<Arc<dyn IntegerProduct>>,
}

impl IntegerLinear {
    /// Builds the layer from int8 weights `[N, K]` (weight zero point 0), their scales (`[N]` per
    /// channel or `[1]` per tensor), an optional i32 bias `[N]` with scale `S_x * S_w[n]`, the
    /// input and output parameters and a fused activation. Rounding: [`Rounding::Ruy`].
    ///
    /// Errors: N = 0 ([`Error::Empty`]), K above [`MAX_DEPTH`], scales or bias of the wrong
    /// length ([`Error::ShapeMismatch`]), a weight scale that is not finite and > 0
    /// ([`Error::BadScale`]), or a multiplier `S_x S_w / S_y` of `2^30` or more
    /// ([`Error::InvalidArgument`]).
    pub fn new(
        weights_q: ArrayView2<'_, i8>,
        weight_scales: &[f32],
        bias_q: Option<ArrayView1<'_, i32>>,
        input: TensorQuant,
        output: TensorQuant,
        activation: Activation,
    ) -> Result<Self> {
        const OP: &str = "IntegerLinear::new";
        let (n, k) = weights_q.dim();
        if n == 0 {
            return Err(Error::Empty {
                op: OP,
                what: "output channels N",
                got: format!("[{n}, {k}]"),
            });
        }
        if k > MAX_DEPTH {
            return Err(Error::invalid(
                OP,
                format!("depth K = {k} exceeds {MAX_DEPTH}"),
            ));
        }
        if weight_scales.len() != n && weight_scales.len() != 1 {
            return Err(Error::shape(
                OP,
                format!("{n} or 1 weight scales"),
                format!("{}", weight_scales.len()),
            ));
        }
        if let Some(i) = weight_scales
            .iter()
            .position(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(Error::BadScale {
                op: OP,
                index: i,
                value: weight_scales[i],
            });
        }
        // Re-validate the activation parameters (their fields are public).
        let input = TensorQuant::new(input.scale, input.zero_point)?;
        let output = TensorQuant::new(output.scale, output.zero_point)?;
        if let Some(b) = &bias_q {
            check_bias_len(OP, n, b.len())?;
        }
        let bias = bias_q.map(|b| b.to_vec());
        let multipliers = real_multipliers(input.scale, weight_scales, output.scale)
            .into_iter()
            .map(QuantizedMultiplier::from_real)
            .collect::<Result<Vec<_>>>()?;
        let weights: Vec<i8> = weights_q.iter().copied().collect();
        let row_sums = if k == 0 {
            vec![0; n]
        } else {
            weights
                .chunks_exact(k)
                .map(|r| r.iter().map(|&v| v as i32).sum())
                .collect()
        };
        let (act_min, act_max) = activation_range(activation, output.scale, output.zero_point);
        let kernel = Kernel::resolve(None)?;
        let mut layer = Self {
            weights,
            n,
            k,
            weight_scales: weight_scales.to_vec(),
            row_sums,
            bias,
            input,
            output,
            activation,
            multipliers,
            act_min,
            act_max,
            rounding: Rounding::Ruy,
            threads: crate::layer::resolve_threads(0),
            engine: None,
        };
        layer.engine = Some(layer.build_engine(kernel)?);
        Ok(layer)
    }

    /// The engine of this layer's parameters on `kernel`.
    fn build_engine(&self, kernel: Kernel) -> Result<Arc<dyn IntegerProduct>> {
        let m = &self.multipliers;
        let multiplier = |c: usize| m[if m.len() == 1 { 0 } else { c }];
        let params = IntegerParams {
            weights: self.weights.clone(),
            n: self.n,
            k: self.k,
            row_sums: self.row_sums.clone(),
            bias: self.bias.clone().unwrap_or_else(|| vec![0; self.n]),
            m0: (0..self.n).map(|c| multiplier(c).m0()).collect(),
            shift: (0..self.n).map(|c| multiplier(c).shift()).collect(),
            input_zero_point: self.input.zero_point,
            output_zero_point: self.output.zero_point,
            act_min: self.act_min,
            act_max: self.act_max,
        };
        let kernel = kernel.check_available()?;
        crate::engine::build_integer(kernel, &params).ok_or_else(|| kernel.unavailable_error())
    }

    /// Quantizes float weights (symmetric int8, the converter's rule) and bias
    /// (`round_away(b / (S_x S_w[n]))` in f64, to i32), then builds the layer.
    ///
    /// Errors: as [`IntegerLinear::new`] and [`QuantizedWeights::quantize`], and a bias that
    /// does not fit i32 at its scale ([`Error::OutOfRange`]).
    ///
    /// ```
    /// use hybridq::integer::{IntegerLinear, TensorQuant};
    /// use hybridq::{Activation, Granularity};
    /// use ndarray::array;
    /// let w = array![[0.5f32, -1.0], [2.0, 0.25]];
    /// let b = array![0.1f32, -0.2];
    /// let layer = IntegerLinear::from_f32(w.view(), Some(b.view()), Granularity::PerChannel,
    ///     TensorQuant::new(0.02, 0)?, TensorQuant::new(0.05, 0)?, Activation::None)?;
    /// // bias scale S_x S_w[0] = 0.02 / 127: 0.1 / that = 635
    /// assert_eq!(layer.bias_q().unwrap()[0], 635);
    /// # Ok::<(), hybridq::Error>(())
    /// ```
    pub fn from_f32(
        weights: ArrayView2<'_, f32>,
        bias: Option<ArrayView1<'_, f32>>,
        granularity: Granularity,
        input: TensorQuant,
        output: TensorQuant,
        activation: Activation,
    ) -> Result<Self> {
        const OP: &str = "IntegerLinear::from_f32";
        let q = QuantizedWeights::quantize(weights, granularity)?;
        let n = q.n();
        let bias_q = match checked_bias(OP, n, bias)? {
            None => None,
            Some(b) => {
                let mut out = Vec::with_capacity(n);
                for (i, &v) in b.iter().enumerate() {
                    let s = input.scale as f64 * q.scale(i) as f64;
                    let r = (v as f64 / s).round();
                    if !(r >= i32::MIN as f64 && r <= i32::MAX as f64) {
                        return Err(Error::OutOfRange {
                            op: OP,
                            what: "quantized bias",
                            index: i,
                            value: r.clamp(i64::MIN as f64, i64::MAX as f64) as i64,
                            min: i32::MIN as i64,
                            max: i32::MAX as i64,
                        });
                    }
                    out.push(r as i32);
                }
                Some(ndarray::Array1::from(out))
            }
        };
        Self::new(
            q.values(),
            q.scales(),
            bias_q.as_ref().map(|b| b.view()),
            input,
            output,
            activation,
        )
    }

    /// The kernel the layer's integer product runs on (chosen as for the hybrid layer:
    /// `HYBRIDQ_KERNEL`, else [`Kernel::detect`]).
    pub fn kernel(&self) -> Kernel {
        self.engine().kernel()
    }

    /// The same layer on another int8 kernel (the same integers: every kernel computes the
    /// reference's bits).
    ///
    /// Errors: [`Error::KernelUnavailable`] if this CPU cannot run it.
    ///
    /// ```
    /// use hybridq::integer::{IntegerLinear, TensorQuant};
    /// use hybridq::{Activation, Granularity, Kernel};
    /// use ndarray::array;
    /// let w = array![[0.5f32, -1.0], [2.0, 0.25]];
    /// let layer = IntegerLinear::from_f32(w.view(), None, Granularity::PerChannel,
    ///     TensorQuant::new(0.02, 0)?, TensorQuant::new(0.05, 0)?, Activation::None)?;
    /// let scalar = layer.clone().with_kernel(Kernel::Scalar)?;
    /// assert_eq!(scalar.kernel(), Kernel::Scalar);
    /// let x = array![[10i8, -3], [127, -128]];
    /// assert_eq!(scalar.forward_q(x.view())?, layer.forward_q(x.view())?);
    /// # Ok::<(), hybridq::Error>(())
    /// ```
    pub fn with_kernel(mut self, kernel: Kernel) -> Result<Self> {
        self.engine = Some(self.build_engine(kernel)?);
        Ok(self)
    }

    fn engine(&self) -> &dyn IntegerProduct {
        self.engine.as_deref().expect("built in IntegerLinear::new")
    }

    /// The same layer computing on up to `threads` threads (0 = all cores). Work is split over
    /// output channels or rows, never over K.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.set_threads(threads);
        self
    }

    /// The same layer with another rounding of the requantization.
    pub fn with_rounding(mut self, rounding: Rounding) -> Self {
        self.rounding = rounding;
        self
    }

    /// Checks the bias scales a file declares against `S_x * S_w[n]`, with TFLite's tolerance
    /// `|S_x S_w - S_b| / S_y <= 0.02` (in f64, the product in f32 as TFLite's per-tensor
    /// check computes it). `bias_scales` holds one scale per weight scale.
    ///
    /// Errors: a length mismatch or a scale out of tolerance ([`Error::InvalidArgument`]).
    ///
    /// ```
    /// use hybridq::integer::{IntegerLinear, TensorQuant};
    /// use hybridq::Activation;
    /// use ndarray::array;
    /// let layer = IntegerLinear::new(array![[1i8, 2]].view(), &[0.5], None,
    ///     TensorQuant::new(0.1, 0)?, TensorQuant::new(0.2, 0)?, Activation::None)?;
    /// assert!(layer.check_bias_scales(&[0.05]).is_ok());
    /// assert!(layer.check_bias_scales(&[0.06]).is_err());
    /// # Ok::<(), hybridq::Error>(())
    /// ```
    pub fn check_bias_scales(&self, bias_scales: &[f32]) -> Result<()> {
        const OP: &str = "IntegerLinear::check_bias_scales";
        if bias_scales.len() != self.weight_scales.len() {
            return Err(Error::shape(
                OP,
                format!("{} bias scales", self.weight_scales.len()),
                format!("{}", bias_scales.len()),
            ));
        }
        for (i, (&sb, &sw)) in bias_scales.iter().zip(&self.weight_scales).enumerate() {
            let product = (self.input.scale * sw) as f64;
            let rel = (product - sb as f64).abs() / self.output.scale as f64;
            if rel.is_nan() || rel > 0.02 {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "bias scale {i} is {sb}, but S_x * S_w = {product} (|diff| / S_y = {rel} > 0.02)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The int8 weights `[N, K]`.
    pub fn weights_q(&self) -> ArrayView2<'_, i8> {
        ArrayView2::from_shape((self.n, self.k), &self.weights).expect("n * k weights")
    }

    /// The weight scales (`[N]` or `[1]`).
    pub fn weight_scales(&self) -> &[f32] {
        &self.weight_scales
    }

    /// The i32 bias, if any.
    pub fn bias_q(&self) -> Option<&[i32]> {
        self.bias.as_deref()
    }

    /// The input parameters.
    pub fn input_quant(&self) -> TensorQuant {
        self.input
    }

    /// The output parameters.
    pub fn output_quant(&self) -> TensorQuant {
        self.output
    }

    /// The requantization multipliers (one, or one per channel).
    pub fn multipliers(&self) -> &[QuantizedMultiplier] {
        &self.multipliers
    }

    /// The output clamp `[lo, hi]` in int8 codes ([`activation_range`]).
    pub fn activation_bounds(&self) -> (i32, i32) {
        (self.act_min, self.act_max)
    }

    /// The rounding of the requantization.
    pub fn rounding(&self) -> Rounding {
        self.rounding
    }

    /// Bytes of weight storage: int8 weights, f32 scales and the i32 bias.
    pub fn storage_bytes(&self) -> usize {
        self.weights.len()
            + 4 * self.weight_scales.len()
            + 4 * self.bias.as_ref().map_or(0, Vec::len)
    }

    /// The i32 accumulator of one output from its dot product `sum_k q_x q_w`:
    /// `dot - Z_x * sum_k q_w + q_b`, with wrapping i32 arithmetic (equal to
    /// `sum_k (q_x[k] - Z_x) q_w[n][k] + q_b[n]` modulo 2^32, and exact whenever that fits i32,
    /// as it does for K up to 65793; TFLite's i32 arithmetic wraps the same way).
    #[inline]
    fn accumulator(&self, dot: i32, n: usize) -> i32 {
        let mut acc = dot.wrapping_sub(self.input.zero_point.wrapping_mul(self.row_sums[n]));
        if let Some(b) = &self.bias {
            acc = acc.wrapping_add(b[n]);
        }
        acc
    }

    #[inline]
    fn accumulate(&self, x: &[i8], n: usize) -> i32 {
        self.accumulator(dot(x, &self.weights[n * self.k..(n + 1) * self.k]), n)
    }

    /// The i32 accumulators `[rows, N]` before requantization (see the module docs).
    ///
    /// Errors: `x` not `[rows, K]`.
    pub fn accumulators(&self, x_q: ArrayView2<'_, i8>) -> Result<Array2<i32>> {
        const OP: &str = "IntegerLinear::accumulators";
        let x = self.check_input(x_q)?;
        let rows = x_q.nrows();
        let len = crate::error::checked_len(OP, "the accumulators", rows, self.n)?;
        let mut out = crate::error::try_with_capacity(OP, "the accumulators", len)?;
        for r in 0..rows {
            let xr = &x[r * self.k..(r + 1) * self.k];
            out.extend((0..self.n).map(|n| self.accumulate(xr, n)));
        }
        Ok(Array2::from_shape_vec((rows, self.n), out).expect("rows * n"))
    }

    fn check_input<'a>(&self, x_q: ArrayView2<'a, i8>) -> Result<std::borrow::Cow<'a, [i8]>> {
        if x_q.ncols() != self.k {
            return Err(Error::shape(
                "IntegerLinear::forward_q",
                format!("[rows, {}]", self.k),
                format!("{:?}", x_q.shape()),
            ));
        }
        Ok(match x_q.to_slice() {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => {
                let mut copy = crate::error::try_filled(
                    "IntegerLinear::forward_q",
                    "a contiguous copy of the input",
                    x_q.len(),
                    0i8,
                )?;
                for (d, &v) in copy.iter_mut().zip(x_q.iter()) {
                    *d = v;
                }
                std::borrow::Cow::Owned(copy)
            }
        })
    }

    /// Runs the layer on int8 rows `[rows, K]`, returning int8 `[rows, N]`.
    ///
    /// Errors: `x_q` not `[rows, K]`.
    pub fn forward_q(&self, x_q: ArrayView2<'_, i8>) -> Result<Array2<i8>> {
        let x = self.check_input(x_q)?;
        const OP: &str = "IntegerLinear::forward_q";
        let rows = x_q.nrows();
        let len = crate::error::checked_len(OP, "the output", rows, self.n)?;
        let mut out = crate::error::try_filled(OP, "the output", len, 0i8)?;
        self.forward_q_rows(&x, rows, &mut out)?;
        Ok(Array2::from_shape_vec((rows, self.n), out).expect("rows * n"))
    }

    /// Runs `rows` int8 rows from a flat slice (`rows * K`) into `out` (`rows * N`), with a
    /// scratch of its own (see [`IntegerLinear::forward_q_rows_with`] to reuse one).
    ///
    /// Errors: slice lengths that do not match.
    pub fn forward_q_rows(&self, x: &[i8], rows: usize, out: &mut [i8]) -> Result<()> {
        self.forward_q_rows_with(x, rows, out, &mut Scratch::new())
    }

    /// [`IntegerLinear::forward_q_rows`] with a caller-owned scratch: once it has grown to the
    /// batch, the call does not allocate.
    ///
    /// Errors: slice lengths that do not match.
    pub fn forward_q_rows_with(
        &self,
        x: &[i8],
        rows: usize,
        out: &mut [i8],
        scratch: &mut Scratch,
    ) -> Result<()> {
        check_rows(
            "IntegerLinear::forward_q_rows",
            x.len(),
            rows,
            self.k,
            out.len(),
            self.n,
        )?;
        if rows == 0 {
            return Ok(());
        }
        self.engine()
            .run(x, rows, self.rounding, out, scratch, self.threads);
        Ok(())
    }
}

/// `sum_k x[k] w[k]` in wrapping i32 (exact up to 131071 terms).
#[inline]
fn dot(x: &[i8], w: &[i8]) -> i32 {
    x.iter()
        .zip(w)
        .fold(0i32, |acc, (&a, &b)| acc.wrapping_add(a as i32 * b as i32))
}

/// The float API: inputs are quantized with the input parameters
/// ([`TensorQuant::quantize`]), the integer layer runs, outputs are dequantized. Non-finite
/// inputs are an [`Error::NonFinite`].
impl Linear for IntegerLinear {
    fn in_features(&self) -> usize {
        self.k
    }

    fn threads(&self) -> usize {
        self.threads
    }

    fn set_threads(&mut self, threads: usize) {
        self.threads = crate::layer::resolve_threads(threads);
    }

    fn weight_bytes(&self) -> usize {
        self.storage_bytes()
    }

    fn kernel_name(&self) -> &'static str {
        self.kernel().name()
    }

    fn out_features(&self) -> usize {
        self.n
    }

    fn activation(&self) -> Activation {
        self.activation
    }

    fn forward_rows(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<()> {
        const OP: &str = "IntegerLinear::forward_rows";
        check_rows(OP, x.len(), rows, self.k, out.len(), self.n)?;
        let mut xq = std::mem::take(&mut scratch.int8_in);
        crate::layer::scratch::grow(&mut xq, x.len(), 0);
        // The quantizer finds NaN and infinities on its pass; the error names the first.
        let finite = self
            .engine()
            .quantize_input(self.input, x, rows, &mut xq, self.threads);
        let checked = if finite {
            Ok(())
        } else {
            check_finite(OP, "input", x)
        };
        let result = checked.map(|()| {
            if rows > 0 {
                // The epilogue dequantizes each code as it makes it.
                self.engine().run_dequantized(
                    &xq[..x.len()],
                    rows,
                    self.rounding,
                    self.output,
                    out,
                    scratch,
                    self.threads,
                );
            }
        });
        scratch.int8_in = xq;
        result
    }
}
