//! One way to build a layer in any mode: [`LinearOptions`] (mode, granularity, nonlinearity,
//! threads, flavour, kernels) and [`build_linear`], which returns a `Box<dyn Linear>` that a
//! pipeline holds beside layers of other modes.

use std::fmt;
use std::str::FromStr;

use ndarray::{ArrayView1, ArrayView2};

use super::nonlinearity::{Activated, Gelu, Nonlinearity};
use super::{FloatLinear, HybridConfig, HybridLinear, Linear, NonFinitePolicy};
use crate::activation::Activation;
use crate::error::{check_finite, Error, Result};
use crate::flavour::Flavour;
use crate::integer::{IntegerLinear, TensorQuant};
use crate::kernels::{FloatKernel, Kernel};
use crate::quantize::weights::Granularity;
use crate::toolkit::affine::QuantType;
use crate::toolkit::calibration::{MinMaxObserver, Observer};
use crate::toolkit::weight_only::{WeightFormat, WeightOnlyLinear};

/// A way to store the weights and compute the layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// f32 weights, f32 arithmetic ([`FloatLinear`]).
    Float,
    /// float16 weights decoded once, f32 arithmetic.
    Float16,
    /// bfloat16 weights decoded once, f32 arithmetic.
    BFloat16,
    /// int8 weights decoded once, f32 arithmetic.
    WeightOnlyInt8,
    /// int8 weights, inputs quantized per row at run time, f32 output ([`HybridLinear`]).
    Hybrid,
    /// int8 everything, input and output ranges calibrated ([`IntegerLinear`]).
    FullInteger,
}

impl Mode {
    /// Every mode, from the most to the least precise.
    pub const ALL: [Mode; 6] = [
        Mode::Float,
        Mode::Float16,
        Mode::BFloat16,
        Mode::WeightOnlyInt8,
        Mode::Hybrid,
        Mode::FullInteger,
    ];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Float => "float32",
            Mode::Float16 => "float16 weights",
            Mode::BFloat16 => "bfloat16 weights",
            Mode::WeightOnlyInt8 => "int8 weights (weight-only)",
            Mode::Hybrid => "hybrid int8 (dynamic range)",
            Mode::FullInteger => "full integer int8",
        }
    }

    /// The identifier used on the command line and in files (`float`, `f16`, `bf16`,
    /// `int8-weights`, `hybrid`, `integer`), which its `FromStr` parses.
    ///
    /// ```
    /// use hybridq::Mode;
    /// for m in Mode::ALL {
    ///     assert_eq!(m.id().parse::<Mode>().unwrap(), m);
    /// }
    /// assert!("int4".parse::<Mode>().is_err());
    /// ```
    pub fn id(self) -> &'static str {
        match self {
            Mode::Float => "float",
            Mode::Float16 => "f16",
            Mode::BFloat16 => "bf16",
            Mode::WeightOnlyInt8 => "int8-weights",
            Mode::Hybrid => "hybrid",
            Mode::FullInteger => "integer",
        }
    }

    /// Whether building the mode needs calibration rows (only [`Mode::FullInteger`]: its input
    /// and output ranges are fixed ahead of time).
    pub fn needs_calibration(self) -> bool {
        self == Mode::FullInteger
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for Mode {
    type Err = Error;

    /// Parses [`Mode::id`]'s identifiers; anything else is [`Error::InvalidArgument`].
    fn from_str(s: &str) -> Result<Self> {
        Mode::ALL
            .into_iter()
            .find(|m| m.id() == s.trim())
            .ok_or_else(|| {
                let ids: Vec<_> = Mode::ALL.iter().map(|m| m.id()).collect();
                Error::invalid(
                    "Mode::from_str",
                    format!("unknown mode `{s}` (known: {})", ids.join(", ")),
                )
            })
    }
}

/// Everything that says how a layer is built, for every mode; a field a mode does not use is
/// ignored by it (the flavour by the float modes, the float kernel by the int8 ones).
///
/// ```
/// use hybridq::{Flavour, Gelu, Granularity, LinearOptions, Mode, Nonlinearity};
/// let o = LinearOptions::new(Mode::Hybrid)
///     .granularity(Granularity::PerTensor)
///     .nonlinearity(Gelu::Erf)
///     .threads(1)
///     .flavour(Flavour::Xnnpack);
/// assert_eq!(o.nonlinearity, Nonlinearity::Gelu(Gelu::Erf));
/// assert_eq!(LinearOptions::default().mode, Mode::Hybrid);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinearOptions {
    /// How the weights are stored and the product computed.
    pub mode: Mode,
    /// One weight scale per output channel or one for the tensor (the int8 modes).
    pub granularity: Granularity,
    /// What follows the product: a TFLite fused activation or a GELU.
    pub nonlinearity: Nonlinearity,
    /// Threads a call is split over (0 = all cores); the same for every mode.
    pub threads: usize,
    /// Which build's numerics the hybrid mode reproduces.
    pub flavour: Flavour,
    /// Per-row zero points for the hybrid mode's inputs (TFLite's
    /// `asymmetric_quantize_inputs`).
    pub asymmetric_inputs: bool,
    /// NaN and infinity handling of the hybrid mode's inputs.
    pub non_finite: NonFinitePolicy,
    /// The int8 kernel (hybrid, full integer); `None`: [`Kernel::detect`].
    pub kernel: Option<Kernel>,
    /// The f32 kernel (float and weight-only modes); `None`: [`FloatKernel::detect`].
    pub float_kernel: Option<FloatKernel>,
}

impl Default for LinearOptions {
    /// Hybrid, per channel, no activation, all cores, TFLite x86 numerics, asymmetric inputs.
    fn default() -> Self {
        let h = HybridConfig::default();
        LinearOptions {
            mode: Mode::Hybrid,
            granularity: Granularity::PerChannel,
            nonlinearity: Nonlinearity::default(),
            threads: h.threads,
            flavour: h.flavour,
            asymmetric_inputs: h.asymmetric_inputs,
            non_finite: h.non_finite,
            kernel: None,
            float_kernel: None,
        }
    }
}

impl LinearOptions {
    /// The defaults for `mode`.
    pub fn new(mode: Mode) -> Self {
        LinearOptions {
            mode,
            ..LinearOptions::default()
        }
    }

    /// With another mode.
    pub fn mode(self, mode: Mode) -> Self {
        LinearOptions { mode, ..self }
    }

    /// With another weight granularity.
    pub fn granularity(self, granularity: Granularity) -> Self {
        LinearOptions {
            granularity,
            ..self
        }
    }

    /// With another nonlinearity (an [`Activation`] or a [`Gelu`](super::Gelu)).
    pub fn nonlinearity(self, nonlinearity: impl Into<Nonlinearity>) -> Self {
        LinearOptions {
            nonlinearity: nonlinearity.into(),
            ..self
        }
    }

    /// With another thread count (0 = all cores).
    pub fn threads(self, threads: usize) -> Self {
        LinearOptions { threads, ..self }
    }

    /// With another numerics flavour for the hybrid mode.
    pub fn flavour(self, flavour: Flavour) -> Self {
        LinearOptions { flavour, ..self }
    }

    /// With or without per-row zero points for the hybrid mode's inputs.
    pub fn asymmetric_inputs(self, asymmetric_inputs: bool) -> Self {
        LinearOptions {
            asymmetric_inputs,
            ..self
        }
    }

    /// With another non-finite input policy for the hybrid mode.
    pub fn non_finite(self, non_finite: NonFinitePolicy) -> Self {
        LinearOptions { non_finite, ..self }
    }

    /// With a fixed int8 kernel.
    pub fn kernel(self, kernel: Kernel) -> Self {
        LinearOptions {
            kernel: Some(kernel),
            ..self
        }
    }

    /// With a fixed f32 kernel.
    pub fn float_kernel(self, kernel: FloatKernel) -> Self {
        LinearOptions {
            float_kernel: Some(kernel),
            ..self
        }
    }

    /// The fused activation of the layer and the GELU that follows it, if any.
    pub(crate) fn split_nonlinearity(&self) -> (Activation, Option<Gelu>) {
        match self.nonlinearity {
            Nonlinearity::Fused(a) => (a, None),
            Nonlinearity::Gelu(g) => (Activation::None, Some(g)),
        }
    }

    /// `layer` on the options' float kernel, if one is set.
    pub(crate) fn with_float_kernel(&self, layer: WeightOnlyLinear) -> Result<WeightOnlyLinear> {
        match self.float_kernel {
            Some(k) => layer.with_kernel(k),
            None => Ok(layer),
        }
    }

    /// `layer` wrapped in `gelu` if there is one, on the options' threads.
    pub(crate) fn finish(
        &self,
        mut layer: Box<dyn Linear>,
        gelu: Option<Gelu>,
    ) -> Result<Box<dyn Linear>> {
        if let Some(g) = gelu {
            layer = Box::new(Activated::new(layer, g)?);
        }
        layer.set_threads(self.threads);
        Ok(layer)
    }

    /// The hybrid layer's configuration for these options and fused activation `activation`.
    pub(crate) fn hybrid_config(&self, activation: Activation) -> HybridConfig {
        HybridConfig {
            asymmetric_inputs: self.asymmetric_inputs,
            activation,
            flavour: self.flavour,
            non_finite: self.non_finite,
            kernel: self.kernel,
            threads: self.threads,
        }
    }
}

/// Builds the layer `options` describe from float weights `[N, K]` and an optional bias `[N]`.
/// `calibration` rows `[R, K]` are needed by [`Mode::FullInteger`] only (min/max of the rows
/// for the input range, of the float layer's outputs on them for the output range) and
/// ignored by the other modes.
///
/// Errors: those of each layer's constructor; a kernel this CPU cannot run
/// ([`Error::KernelUnavailable`]); for [`Mode::FullInteger`], missing calibration, or rows of
/// the wrong width or with non-finite values.
///
/// ```
/// use hybridq::{build_linear, Activation, Linear, LinearOptions, Mode};
/// use ndarray::Array2;
/// let w = Array2::from_shape_fn((16, 32), |(n, k)| ((n * 7 + k * 3) % 11) as f32 / 11.0 - 0.5);
/// let x = Array2::from_shape_fn((4, 32), |(b, k)| ((b * 5 + k) % 9) as f32 / 4.0 - 1.0);
/// let float = build_linear(w.view(), None, &LinearOptions::new(Mode::Float), None)?;
/// let y_ref = float.forward(x.view())?;
/// for mode in Mode::ALL {
///     let options = LinearOptions::new(mode).threads(1);
///     let layer = build_linear(w.view(), None, &options, Some(x.view()))?;
///     let err = (&layer.forward(x.view())? - &y_ref).iter().fold(0.0f32, |m, v| m.max(v.abs()));
///     assert!(err < 0.1, "{mode}: {err}");
///     assert_eq!(layer.threads(), 1);
/// }
/// // Only the full-integer mode needs calibration rows.
/// assert!(build_linear(w.view(), None, &LinearOptions::new(Mode::FullInteger), None).is_err());
/// # Ok::<(), hybridq::Error>(())
/// ```
pub fn build_linear(
    weights: ArrayView2<'_, f32>,
    bias: Option<ArrayView1<'_, f32>>,
    options: &LinearOptions,
    calibration: Option<ArrayView2<'_, f32>>,
) -> Result<Box<dyn Linear>> {
    let (activation, gelu) = options.split_nonlinearity();
    let float_kernel = |l: FloatLinear| match options.float_kernel {
        Some(k) => l.with_kernel(k),
        None => Ok(l),
    };
    let weight_only = |format| -> Result<Box<dyn Linear>> {
        let l = WeightOnlyLinear::new(weights, bias, activation, format)?;
        Ok(Box::new(options.with_float_kernel(l)?))
    };
    let layer: Box<dyn Linear> = match options.mode {
        Mode::Float => Box::new(float_kernel(FloatLinear::new(weights, bias, activation)?)?),
        Mode::Float16 => weight_only(WeightFormat::Float16)?,
        Mode::BFloat16 => weight_only(WeightFormat::BFloat16)?,
        Mode::WeightOnlyInt8 => weight_only(WeightFormat::Int8(options.granularity))?,
        Mode::Hybrid => Box::new(HybridLinear::from_f32(
            weights,
            bias,
            options.granularity,
            options.hybrid_config(activation),
        )?),
        Mode::FullInteger => {
            let rows = calibration.ok_or_else(|| {
                Error::invalid(
                    "build_linear",
                    "Mode::FullInteger needs calibration rows [R, K] for its input and output ranges",
                )
            })?;
            let (input, output) = calibrate(weights, bias, activation, rows)?;
            let l = IntegerLinear::from_f32(
                weights,
                bias,
                options.granularity,
                input,
                output,
                activation,
            )?;
            let l = match options.kernel {
                Some(k) => l.with_kernel(k)?,
                None => l,
            };
            Box::new(l)
        }
    };
    options.finish(layer, gelu)
}

/// The full-integer mode's input and output parameters: int8 min/max ranges of the rows and of
/// the float layer's outputs on them.
fn calibrate(
    weights: ArrayView2<'_, f32>,
    bias: Option<ArrayView1<'_, f32>>,
    activation: Activation,
    rows: ArrayView2<'_, f32>,
) -> Result<(TensorQuant, TensorQuant)> {
    const OP: &str = "build_linear";
    if rows.ncols() != weights.ncols() {
        return Err(Error::shape(
            OP,
            format!("calibration rows [R, {}]", weights.ncols()),
            format!("{:?}", rows.shape()),
        ));
    }
    let flat: Vec<f32> = rows.iter().copied().collect();
    check_finite(OP, "calibration rows", &flat)?;
    let float = FloatLinear::new(weights, bias, activation)?.with_threads(1);
    let y = float.forward(rows)?;
    let (mut obs_x, mut obs_y) = (MinMaxObserver::new(), MinMaxObserver::new());
    obs_x.observe(&flat)?;
    obs_y.observe(&y.iter().copied().collect::<Vec<_>>())?;
    Ok((
        TensorQuant::from_affine(&obs_x.params(QuantType::Int8, false)?)?,
        TensorQuant::from_affine(&obs_y.params(QuantType::Int8, false)?)?,
    ))
}

impl FloatLinear {
    /// This float layer in another mode: its weights, bias and fused activation, built with
    /// `options` ([`build_linear`]; the layer's own activation replaces
    /// `options.nonlinearity`).
    ///
    /// Errors: as [`build_linear`].
    ///
    /// ```
    /// use hybridq::{Activation, FloatLinear, Linear, LinearOptions, Mode};
    /// let w = ndarray::array![[0.5f32, -1.0], [2.0, 0.25]];
    /// let float = FloatLinear::new(w.view(), None, Activation::Relu)?;
    /// let hybrid = float.to_mode(&LinearOptions::new(Mode::Hybrid), None)?;
    /// assert_eq!(hybrid.activation(), Activation::Relu);
    /// let x = ndarray::array![[1.0f32, 1.0]];
    /// let (a, b) = (float.forward(x.view())?, hybrid.forward(x.view())?);
    /// assert!((a[[0, 1]] - b[[0, 1]]).abs() < 0.02);
    /// # Ok::<(), hybridq::Error>(())
    /// ```
    pub fn to_mode(
        &self,
        options: &LinearOptions,
        calibration: Option<ArrayView2<'_, f32>>,
    ) -> Result<Box<dyn Linear>> {
        let options = options.nonlinearity(self.activation());
        let w = self.weights();
        let bias = self.bias().map(ArrayView1::from);
        build_linear(w.view(), bias, &options, calibration)
    }
}
