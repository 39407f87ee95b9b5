//! The user-facing layers: [`HybridLinear`] (int8 weights, float in and out) and
//! [`FloatLinear`] (the full-float twin with the same API), and the [`Linear`] trait that lets a
//! pipeline swap one for the other.

pub(crate) mod epilogue;
mod float;
mod hybrid;
mod nonlinearity;
mod options;
pub(crate) mod rows;
pub(crate) mod scratch;

pub use float::FloatLinear;
pub use hybrid::{HybridConfig, HybridLinear, NonFinitePolicy};
pub use nonlinearity::{erf, Activated, Gelu, Nonlinearity, ERF_P, ERF_Q};
pub use options::{build_linear, LinearOptions, Mode};
pub use scratch::Scratch;

use ndarray::{Array, ArrayView, ArrayViewD, ArrayViewMut, ArrayViewMutD, Dimension};

use crate::activation::Activation;
use crate::error::Result;

/// The thread count a layer runs on for a requested `threads` (0 = all cores).
pub(crate) fn resolve_threads(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
}

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

    /// The fused activation (TFLite's clamp; [`Activation::None`] for a layer whose
    /// [`Linear::nonlinearity`] is GELU).
    fn activation(&self) -> Activation;

    /// What follows the product: the fused activation, or a GELU ([`Activated`]).
    fn nonlinearity(&self) -> Nonlinearity {
        Nonlinearity::Fused(self.activation())
    }

    /// The number of threads a call is split over.
    fn threads(&self) -> usize;

    /// Sets the number of threads (0 = all cores); callable on a boxed layer.
    fn set_threads(&mut self, threads: usize);

    /// Bytes of the stored weights, scales and bias (not counting packed or decoded copies
    /// kept for speed).
    fn weight_bytes(&self) -> usize;

    /// The name of the kernel that computes the product (`amx`, `f32-avx512`, ...).
    fn kernel_name(&self) -> &'static str;

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

    /// [`Linear::forward_into`] on dynamic-rank views, callable on a `&dyn Linear` (a
    /// `Box<dyn Linear>` is itself a [`Linear`] and has the generic form too).
    fn forward_into_dyn(
        &self,
        x: ArrayViewD<'_, f32>,
        out: ArrayViewMutD<'_, f32>,
        scratch: &mut Scratch,
    ) -> Result<()> {
        rows::forward_into(self, x, out, scratch)
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

/// A boxed layer is a layer: a pipeline holding `Box<dyn Linear>` calls the generic
/// [`Linear::forward`] and [`Linear::forward_into`] on it as on a concrete one, and
/// `forward_into` does not allocate once `scratch` has grown (every method forwards to the
/// boxed layer's).
///
/// ```
/// use hybridq::{build_linear, LinearOptions, Linear, Mode, Scratch};
/// use ndarray::{Array2, Array3};
/// let w = Array2::from_shape_fn((8, 16), |(n, k)| ((n * 3 + k) % 7) as f32 / 7.0 - 0.5);
/// let layers: Vec<Box<dyn Linear>> = [Mode::Float, Mode::Hybrid, Mode::Float16]
///     .into_iter()
///     .map(|mode| build_linear(w.view(), None, &LinearOptions::new(mode).threads(1), None))
///     .collect::<Result<_, _>>()?;
/// let x = Array3::from_shape_fn((2, 3, 16), |(a, b, k)| (a + b + k) as f32 / 10.0);
/// let (mut out, mut scratch) = (Array3::zeros((2, 3, 8)), Scratch::new());
/// for layer in &layers {
///     layer.forward_into(x.view(), out.view_mut(), &mut scratch)?;
///     assert_eq!(layer.forward(x.view())?, out);
/// }
/// # Ok::<(), hybridq::Error>(())
/// ```
impl<L: Linear + ?Sized> Linear for Box<L> {
    fn in_features(&self) -> usize {
        (**self).in_features()
    }

    fn out_features(&self) -> usize {
        (**self).out_features()
    }

    fn activation(&self) -> Activation {
        (**self).activation()
    }

    fn nonlinearity(&self) -> Nonlinearity {
        (**self).nonlinearity()
    }

    fn threads(&self) -> usize {
        (**self).threads()
    }

    fn set_threads(&mut self, threads: usize) {
        (**self).set_threads(threads)
    }

    fn weight_bytes(&self) -> usize {
        (**self).weight_bytes()
    }

    fn kernel_name(&self) -> &'static str {
        (**self).kernel_name()
    }

    fn forward_rows(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<()> {
        (**self).forward_rows(x, rows, out, scratch)
    }
}
