//! The full-float layer: the same API as [`HybridLinear`](super::HybridLinear), f32 weights.

use ndarray::{Array2, ArrayView1, ArrayView2};

use super::rows::check_rows;
use super::{Linear, Scratch};
use crate::activation::Activation;
use crate::error::{check_finite, Error, Result};
use crate::gemm::float::{Matmul, PackedF32};
use crate::kernels::FloatKernel;

/// `y = act(bias + x W^T)` in f32, with `W` `[N, K]` as given (no quantization).
///
/// The layer runs a [`FloatKernel`], chosen once when it is built ([`FloatKernel::detect`], or
/// [`FloatLinear::with_kernel`]). With the packed kernels (`f32-avx512`, `f32-avx2-fma`,
/// `f32-scalar`) the weights are packed once into 16-channel panels and every output is one
/// in-order chain of fused multiply-adds over K, so a row's result never depends on the batch
/// it is in, on the thread count or on the kernel. `f32-portable` (where no packed SIMD kernel
/// runs) uses a GEMV loop for small batches and matrixmultiply for large ones.
///
/// Inputs follow IEEE arithmetic: a NaN in a row propagates to that row's outputs (before the
/// activation clamps it, as TFLite's float kernel does).
#[derive(Clone, Debug)]
pub struct FloatLinear {
    weights: FloatWeights,
    kernel: FloatKernel,
    n: usize,
    k: usize,
    bias: Option<Vec<f32>>,
    activation: Activation,
    threads: usize,
}

impl FloatLinear {
    /// Builds the layer from weights `[N, K]`, an optional bias of length N and an activation.
    ///
    /// Errors: N = 0, a bias of the wrong length, non-finite weights or bias, or a
    /// `HYBRIDQ_F32_KERNEL` that names no available kernel.
    pub fn new(
        weights: ArrayView2<'_, f32>,
        bias: Option<ArrayView1<'_, f32>>,
        activation: Activation,
    ) -> Result<Self> {
        const OP: &str = "FloatLinear::new";
        let (n, k) = weights.dim();
        if n == 0 {
            return Err(Error::Empty {
                op: OP,
                what: "output channels N",
                got: format!("[{n}, {k}]"),
            });
        }
        let weights: Vec<f32> = weights.iter().copied().collect();
        check_finite(OP, "weights", &weights)?;
        let kernel = FloatKernel::resolve(None)?;
        let weights = FloatWeights::new(kernel, weights, n, k);
        let bias = crate::error::checked_bias(OP, n, bias)?;
        Ok(Self {
            weights,
            kernel,
            n,
            k,
            bias,
            activation,
            threads: super::resolve_threads(0),
        })
    }

    /// The same layer computing on up to `threads` threads (0 = all cores). Work is split over
    /// output channels (small batches) or rows (large batches), never over K.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.set_threads(threads);
        self
    }

    /// The same layer on `kernel` (repacking the weights if its layout differs).
    ///
    /// Errors: [`Error::KernelUnavailable`] if this CPU cannot run it.
    ///
    /// ```
    /// use hybridq::{FloatKernel, FloatLinear};
    /// let w = ndarray::array![[1.0f32, 2.0], [3.0, 4.0]];
    /// let layer = FloatLinear::new(w.view(), None, Default::default()).unwrap();
    /// let reference = layer.clone().with_kernel(FloatKernel::Scalar).unwrap();
    /// assert_eq!(reference.kernel(), FloatKernel::Scalar);
    /// let x = ndarray::array![[0.5f32, -1.0]];
    /// assert_eq!(layer.forward(x.view()).unwrap(), reference.forward(x.view()).unwrap());
    /// # use hybridq::Linear;
    /// ```
    pub fn with_kernel(self, kernel: FloatKernel) -> Result<Self> {
        let kernel = FloatKernel::resolve(Some(kernel))?;
        if kernel.is_packed() != self.kernel.is_packed() {
            let w = self.weights().into_raw_vec_and_offset().0;
            return Ok(Self {
                weights: FloatWeights::new(kernel, w, self.n, self.k),
                kernel,
                ..self
            });
        }
        Ok(Self { kernel, ..self })
    }

    /// The kernel that computes this layer.
    pub fn kernel(&self) -> FloatKernel {
        self.kernel
    }

    /// The name of the kernel that computes this layer (`f32-avx512`, `f32-portable`, ...).
    pub fn kernel_name(&self) -> &'static str {
        self.kernel.name()
    }

    /// The number of threads the layer computes on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The weights, `[N, K]` (a copy: the layer may keep them in a packed order).
    pub fn weights(&self) -> Array2<f32> {
        let w = match &self.weights {
            FloatWeights::Packed(p) => p.unpack(),
            FloatWeights::RowMajor(w) => w.clone(),
        };
        Array2::from_shape_vec((self.n, self.k), w).expect("n * k weights")
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }
}

impl Linear for FloatLinear {
    fn in_features(&self) -> usize {
        self.k
    }

    fn threads(&self) -> usize {
        self.threads
    }

    fn set_threads(&mut self, threads: usize) {
        self.threads = super::resolve_threads(threads);
    }

    fn weight_bytes(&self) -> usize {
        4 * self.n * self.k + 4 * self.bias.as_ref().map_or(0, Vec::len)
    }

    fn kernel_name(&self) -> &'static str {
        self.kernel.name()
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
        let (k, n) = (self.k, self.n);
        check_rows("FloatLinear::forward_rows", x.len(), rows, k, out.len(), n)?;
        if rows == 0 {
            return Ok(());
        }
        if k == 0 {
            out.fill(0.0);
            return Ok(());
        }
        match &self.weights {
            FloatWeights::Packed(w) => {
                let call = Matmul {
                    w,
                    rows,
                    x,
                    out: &mut *out,
                    threads: self.threads,
                    interleaved: &mut scratch.interleaved,
                };
                // `self.kernel` was resolved when the layer was built, so this CPU runs it.
                self.kernel
                    .visit(call)
                    .ok_or_else(|| self.kernel.unavailable_error())?;
            }
            FloatWeights::RowMajor(w) => {
                crate::gemm::float_portable::matmul_xwt(rows, k, n, x, w, out, self.threads)
            }
        }
        for out_row in out.chunks_exact_mut(n) {
            for (j, o) in out_row.iter_mut().enumerate() {
                let v = match &self.bias {
                    Some(b) => *o + b[j],
                    None => *o,
                };
                *o = self.activation.apply(v);
            }
        }
        Ok(())
    }
}

/// All cores.
/// How the float layer keeps its weights.
#[derive(Clone, Debug)]
enum FloatWeights {
    /// Panels for the packed kernels.
    Packed(PackedF32),
    /// Row-major `[N, K]` for the portable path.
    RowMajor(Vec<f32>),
}

impl FloatWeights {
    /// Row-major `w[n][k]` in `kernel`'s layout.
    fn new(kernel: FloatKernel, w: Vec<f32>, n: usize, k: usize) -> Self {
        if kernel.is_packed() {
            FloatWeights::Packed(PackedF32::pack(&w, n, k))
        } else {
            FloatWeights::RowMajor(w)
        }
    }
}
