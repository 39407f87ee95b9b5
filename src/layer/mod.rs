//! The user-facing layers: [`HybridLinear`] (int8 weights, float in and out) and
//! [`FloatLinear`] (the full-float twin with the same API), and the [`Linear`] trait that lets a
//! pipeline swap one for the other.

pub(crate) mod epilogue;
mod float;
mod hybrid;
pub(crate) mod rows;
pub(crate) mod scratch;

pub use float::FloatLinear;
pub use hybrid::{HybridConfig, HybridLinear, NonFinitePolicy};
pub use scratch::Scratch;

use ndarray::{Array, ArrayView, ArrayViewMut, Dimension};

use crate::activation::Activation;
use crate::error::Result;

/// A fully-connected layer `y[..., n] = act(bias[n] + sum_k x[..., k] * W[n][k])`.
///
/// `forward` takes an input of any rank `[..., K]` and returns `[..., N]` (TFLite's
/// `keep_num_dims` behaviour). Each row's output depends on that row alone.
///
/// ```
/// use hybridq::{FloatLinear, HybridConfig, HybridLinear, Granularity, Linear};
/// use ndarray::array;
///
/// let w = array![[0.5f32, -1.0, 0.25, 2.0], [1.0, 1.0, -1.0, 0.0]];
/// let x = array![[[1.0f32, 2.0, 3.0, 4.0]], [[0.0, -1.0, 0.5, 0.25]]]; // [2, 1, 4]
/// let hybrid = HybridLinear::from_f32(w.view(), None, Granularity::PerChannel, HybridConfig::default()).unwrap();
/// let float = FloatLinear::new(w.view(), None, Default::default()).unwrap();
/// for layer in [&hybrid as &dyn Linear, &float as &dyn Linear] {
///     let y = layer.forward_dyn(x.view().into_dyn()).unwrap();
///     assert_eq!(y.shape(), &[2, 1, 2]);
/// }
/// let (yh, yf) = (hybrid.forward(x.view()).unwrap(), float.forward(x.view()).unwrap());
/// assert!((yh[[0, 0, 0]] - yf[[0, 0, 0]]).abs() < 0.05);
/// ```
pub trait Linear: Send + Sync {
    /// Input features K.
    fn in_features(&self) -> usize;

    /// Output features N.
    fn out_features(&self) -> usize;

    /// The fused activation.
    fn activation(&self) -> Activation;

    /// Computes `rows` rows: `x` holds `rows * K` values, `out` receives `rows * N`.
    ///
    /// Errors: slice lengths that do not match, or (by the layer's policy) non-finite inputs.
    fn forward_rows(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<()>;

    /// Runs the layer on `[..., K]`, returning `[..., N]` (allocates the output and scratch).
    fn forward<D: Dimension>(&self, x: ArrayView<'_, f32, D>) -> Result<Array<f32, D>>
    where
        Self: Sized,
    {
        let mut scratch = Scratch::new();
        rows::forward_alloc(self, x, &mut scratch)
    }

    /// Like [`Linear::forward`], on a dynamic-rank input (usable through `dyn Linear`).
    fn forward_dyn(
        &self,
        x: ArrayView<'_, f32, ndarray::IxDyn>,
    ) -> Result<Array<f32, ndarray::IxDyn>> {
        let mut scratch = Scratch::new();
        rows::forward_alloc(self, x, &mut scratch)
    }

    /// Runs the layer on `[..., K]` into caller-owned `out` (`[..., N]`), using `scratch` for
    /// temporaries. For [`HybridLinear`], once `scratch` has grown to the batch size (see
    /// [`Scratch::reserve`]) this call does not allocate. ([`FloatLinear`]'s large-batch path
    /// calls matrixmultiply, which allocates its own packing buffers.)
    fn forward_into<D: Dimension>(
        &self,
        x: ArrayView<'_, f32, D>,
        out: ArrayViewMut<'_, f32, D>,
        scratch: &mut Scratch,
    ) -> Result<()>
    where
        Self: Sized,
    {
        rows::forward_into(self, x, out, scratch)
    }
}
