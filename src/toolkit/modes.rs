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
use crate::layer::{build_linear, Linear, LinearOptions};

pub use crate::layer::Mode;

/// A built layer and the bytes its weights (and bias) occupy.
pub struct BuiltLayer {
    /// The mode.
    pub mode: Mode,
    /// The layer.
    pub layer: Box<dyn Linear>,
    /// Bytes of stored weights, scales and bias.
    pub weight_bytes: usize,
}

/// Builds `mode`'s layer from float weights `[N, K]`, an optional bias and an activation, with
/// the defaults of [`LinearOptions::new`] (all cores, per channel); `calibration` rows `[R, K]`
/// set the input and output ranges of [`Mode::FullInteger`] and are ignored by the other modes.
/// [`build_linear`] is the general form.
///
/// Errors: those of [`build_linear`].
pub fn build(
    mode: Mode,
    weights: ArrayView2<'_, f32>,
    bias: Option<ArrayView1<'_, f32>>,
    activation: Activation,
    calibration: ArrayView2<'_, f32>,
) -> Result<BuiltLayer> {
    let options = LinearOptions::new(mode).nonlinearity(activation);
    let layer = build_linear(weights, bias, &options, Some(calibration))?;
    Ok(BuiltLayer {
        mode,
        weight_bytes: layer.weight_bytes(),
        layer,
    })
}
