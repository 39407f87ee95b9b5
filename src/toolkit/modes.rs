//! The five ways to run a fully-connected layer, behind one [`Linear`] API, so that a user can
//! pick a mode and compare.
//!
//! ```
//! use hybridq::toolkit::modes::{build, Mode};
//! use hybridq::Activation;
//! use ndarray::Array2;
//!
//! let w = Array2::from_shape_fn((16, 32), |(n, k)| ((n * 7 + k * 3) % 11) as f32 / 11.0 - 0.5);
//! let x = Array2::from_shape_fn((4, 32), |(b, k)| ((b * 5 + k) % 9) as f32 / 4.0 - 1.0);
//! let float = build(Mode::Float, w.view(), None, Activation::None, x.view())?;
//! let y_ref = float.layer.forward_dyn(x.view().into_dyn())?;
//! for mode in Mode::ALL {
//!     let built = build(mode, w.view(), None, Activation::None, x.view())?;
//!     let y = built.layer.forward_dyn(x.view().into_dyn())?;
//!     let err = (&y - &y_ref).iter().fold(0.0f32, |m, v| m.max(v.abs()));
//!     assert!(err < 0.1, "{mode:?}: {err}");
//!     assert!(built.weight_bytes <= 16 * 32 * 4);
//! }
//! # Ok::<(), hybridq::Error>(())
//! ```

use ndarray::{ArrayView1, ArrayView2};

use crate::activation::Activation;
use crate::error::Result;
use crate::integer::{IntegerLinear, TensorQuant};
use crate::layer::{FloatLinear, HybridConfig, HybridLinear, Linear};
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
    /// int8 per-channel weights decoded once, f32 arithmetic.
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
}

/// A built layer and the bytes its weights (and bias) occupy.
pub struct BuiltLayer {
    /// The mode.
    pub mode: Mode,
    /// The layer.
    pub layer: Box<dyn Linear>,
    /// Bytes of stored weights, scales and bias.
    pub weight_bytes: usize,
}

/// Builds `mode`'s layer from float weights `[N, K]`, an optional bias and an activation.
/// `calibration` rows `[R, K]` set the input and output ranges of [`Mode::FullInteger`]
/// (min/max observers on the inputs and on the float layer's outputs); other modes ignore them.
///
/// Errors: those of each layer's constructor, and (full integer) calibration data of the wrong
/// width or with non-finite values.
pub fn build(
    mode: Mode,
    weights: ArrayView2<'_, f32>,
    bias: Option<ArrayView1<'_, f32>>,
    activation: Activation,
    calibration: ArrayView2<'_, f32>,
) -> Result<BuiltLayer> {
    let (n, k) = weights.dim();
    let bias_bytes = bias.map_or(0, |b| 4 * b.len());
    let weight_only = |format| -> Result<(Box<dyn Linear>, usize)> {
        let l = WeightOnlyLinear::new(weights, bias, activation, format)?;
        let bytes = l.storage_bytes() + bias_bytes;
        Ok((Box::new(l), bytes))
    };
    let (layer, weight_bytes): (Box<dyn Linear>, usize) = match mode {
        Mode::Float => (
            Box::new(FloatLinear::new(weights, bias, activation)?),
            4 * n * k + bias_bytes,
        ),
        Mode::Float16 => weight_only(WeightFormat::Float16)?,
        Mode::BFloat16 => weight_only(WeightFormat::BFloat16)?,
        Mode::WeightOnlyInt8 => weight_only(WeightFormat::Int8(Granularity::PerChannel))?,
        Mode::Hybrid => {
            let config = HybridConfig {
                activation,
                ..HybridConfig::default()
            };
            let l = HybridLinear::from_f32(weights, bias, Granularity::PerChannel, config)?;
            let bytes = l.weights().storage_bytes() + bias_bytes;
            (Box::new(l), bytes)
        }
        Mode::FullInteger => {
            let float = FloatLinear::new(weights, bias, activation)?;
            let y = float.forward_dyn(calibration.into_dyn())?;
            let (mut obs_x, mut obs_y) = (MinMaxObserver::new(), MinMaxObserver::new());
            obs_x.observe(&calibration.iter().copied().collect::<Vec<_>>())?;
            obs_y.observe(&y.iter().copied().collect::<Vec<_>>())?;
            let input = TensorQuant::from_affine(&obs_x.params(QuantType::Int8, false)?)?;
            let output = TensorQuant::from_affine(&obs_y.params(QuantType::Int8, false)?)?;
            let l = IntegerLinear::from_f32(
                weights,
                bias,
                Granularity::PerChannel,
                input,
                output,
                activation,
            )?;
            let bytes = l.storage_bytes();
            (Box::new(l), bytes)
        }
    };
    Ok(BuiltLayer {
        mode,
        layer,
        weight_bytes,
    })
}
