//! The full-float layer: the same API as [`HybridLinear`](super::HybridLinear), f32 weights.

use ndarray::{Array2, ArrayView1, ArrayView2};

use super::rows::check_rows;
use super::{Linear, Scratch};
use crate::activation::Activation;
use crate::error::{check_finite, Error, Result};
use crate::gemm::float::{self as float_packed, PackedF32};

/// `y = act(bias + x W^T)` in f32, with `W` `[N, K]` as given (no quantization).
///
/// On CPUs with AVX2 and FMA the weights are packed once into 16-channel panels and every output
/// is one in-order chain of fused multiply-adds over K, so a row's result never depends on the
/// batch it is in or on the thread count. Elsewhere a GEMV loop (small batches) or
/// matrixmultiply (large ones) computes it.
///
/// Inputs follow IEEE arithmetic: a NaN in a row propagates to that row's outputs (before the
/// activation clamps it, as TFLite's float kernel does).
#[derive(Clone, Debug)]
pub struct FloatLinear {
    weights: FloatWeights,
    n: usize,
    k: usize,
    bias: Option<Vec<f32>>,
    activation: Activation,
    threads: usize,
}

impl FloatLinear {
    /// Builds the layer from weights `[N, K]`, an optional bias of length N and an activation.
    ///
    /// Errors: N = 0, a bias of the wrong length, or non-finite weights or bias.
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
        let weights = if float_packed::available() {
            FloatWeights::Packed(PackedF32::pack(&weights, n, k))
        } else {
            FloatWeights::RowMajor(weights)
        };
        let bias = crate::error::checked_bias(OP, n, bias)?;
        Ok(Self {
            weights,
            n,
            k,
            bias,
            activation,
            threads: default_threads(),
        })
    }

    /// The same layer computing on up to `threads` threads (0 = all cores). Work is split over
    /// output channels (small batches) or rows (large batches), never over K.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = if threads == 0 {
            default_threads()
        } else {
            threads
        };
        self
    }

    /// The kernel that computes this layer: `f32-avx2-fma` (packed panels) or `f32-portable`.
    pub fn kernel_name(&self) -> &'static str {
        match self.weights {
            FloatWeights::Packed(_) => "f32-avx2-fma",
            FloatWeights::RowMajor(_) => "f32-portable",
        }
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
        _scratch: &mut Scratch,
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
            FloatWeights::Packed(p) => float_packed::matmul(p, rows, x, out, self.threads),
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
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How the float layer keeps its weights.
#[derive(Clone, Debug)]
enum FloatWeights {
    /// Panels for the AVX2+FMA kernel.
    Packed(PackedF32),
    /// Row-major `[N, K]` for the portable path.
    RowMajor(Vec<f32>),
}
