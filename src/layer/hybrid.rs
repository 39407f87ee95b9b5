//! The hybrid fully-connected layer: int8 weights, f32 inputs quantized per row at run time,
//! i32 accumulation, f32 output. TFLite's `EvalHybridDense`, bit for bit.

use std::sync::Arc;

use ndarray::{ArrayView1, ArrayView2};

use super::rows::check_rows;
use super::{Linear, Scratch};
use crate::activation::Activation;
use crate::engine::hybrid::HybridProduct;
use crate::error::{Error, Result};
use crate::flavour::Flavour;
use crate::kernels::Kernel;
use crate::layer::epilogue::EpilogueSpec;
use crate::quantize::weights::{Granularity, QuantizedWeights};

/// What to do with NaN or infinite input values (TFLite's behaviour is undefined there).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NonFinitePolicy {
    /// Refuse the call with [`Error::NonFinite`] before any output is written (default).
    #[default]
    Error,
    /// Compute every finite row normally; every output of a row that holds a NaN or an
    /// infinity is NaN (the activation is not applied to it).
    Propagate,
}

/// Options of a [`HybridLinear`].
///
/// ```
/// use hybridq::{Activation, Flavour, HybridConfig};
/// let c = HybridConfig { activation: Activation::Relu, ..HybridConfig::default() };
/// assert!(c.asymmetric_inputs);
/// assert_eq!(c.flavour, Flavour::TfliteX86);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HybridConfig {
    /// Quantize inputs with a per-row zero point (TFLite's `asymmetric_quantize_inputs`, which
    /// the converter turns on). Ignored by the XNNPACK flavours, which are always asymmetric.
    pub asymmetric_inputs: bool,
    /// Fused activation on the float output.
    pub activation: Activation,
    /// Which numerics to reproduce.
    pub flavour: Flavour,
    /// NaN and infinity handling for inputs.
    pub non_finite: NonFinitePolicy,
    /// The kernel to run; `None` picks [`Kernel::detect`] when the layer is built. Every
    /// kernel computes the same bits. Building a layer with a kernel this CPU cannot run is
    /// [`Error::KernelUnavailable`].
    pub kernel: Option<Kernel>,
    /// Threads to split a call over (0 = all cores; 1 runs on the calling thread and never
    /// spawns). Work is split over output channels or rows, never over K, so the output bits
    /// do not depend on it.
    pub threads: usize,
}

impl Default for HybridConfig {
    fn default() -> Self {
        Self {
            asymmetric_inputs: true,
            activation: Activation::None,
            flavour: Flavour::TfliteX86,
            non_finite: NonFinitePolicy::Error,
            kernel: None,
            threads: 0,
        }
    }
}

/// A fully-connected layer with symmetric int8 weights and f32 inputs and outputs: TFLite's
/// hybrid (dynamic-range) `FULLY_CONNECTED`.
///
/// For each input row b: quantize the row to int8 with its own scale `sf[b]` and zero point
/// `zp[b]`; for each output channel n, `acc = sum_k q_w[n][k] * q_x[b][k] - row_sum[n] * zp[b]`
/// (exact); then `y = act(bias[n] + acc * f32(sf[b] * w_scale[n]))` in the flavour's float
/// order.
///
/// **Exactness of the accumulator.** hybridq computes `acc` exactly for every K up to
/// [`MAX_DEPTH`](crate::quantize::weights::MAX_DEPTH) (i32 partial sums combined in i64). TFLite
/// wraps in i32; the two agree whenever TFLite's i32 does not overflow, which is guaranteed
/// for `K <= 65_793` (`65_793 * 128 * 255 < 2^31`).
///
/// **Batch composition.** Row b's output depends on row b alone, with one exception inherited
/// from TFLite's flavours: when the *whole* input is zero, TFLite skips the product and
/// returns `act(bias)`, which differs from a zero row in a non-zero batch only in the sign of a
/// `-0.0` bias (`-0.0 + 0.0 = +0.0`).
///
/// **Kernels.** The layer runs one [`Kernel`], fixed when it is built (see
/// [`HybridConfig::kernel`]); SIMD kernels use a packed copy of the weights made once here.
/// Every kernel gives the same bits as [`Kernel::Scalar`], for any thread count.
#[derive(Clone, Debug)]
pub struct HybridLinear {
    weights: QuantizedWeights,
    bias: Option<Vec<f32>>,
    config: HybridConfig,
    threads: usize,
    /// The kernel with the weights in its packed layout, shared by clones.
    engine: Arc<dyn HybridProduct>,
}

impl HybridLinear {
    /// Builds the layer from quantized weights and an optional f32 bias of length N, packing
    /// the weights for the configured (or detected) kernel.
    ///
    /// Errors: a bias of the wrong length or with non-finite values;
    /// [`Error::KernelUnavailable`] when `config.kernel` (or the `HYBRIDQ_KERNEL` environment
    /// variable, when `config.kernel` is `None`) names a kernel this CPU cannot run.
    pub fn new(
        weights: QuantizedWeights,
        bias: Option<ArrayView1<'_, f32>>,
        config: HybridConfig,
    ) -> Result<Self> {
        const OP: &str = "HybridLinear::new";
        let bias = crate::error::checked_bias(OP, weights.n(), bias)?;
        let kernel = Kernel::resolve(config.kernel)?;
        let engine = engine_for(kernel, &weights, bias.as_deref())?;
        Ok(Self {
            weights,
            bias,
            config,
            threads: super::resolve_threads(config.threads),
            engine,
        })
    }

    /// Quantizes float weights `[N, K]` as TFLite's converter does and builds the layer.
    pub fn from_f32(
        weights: ArrayView2<'_, f32>,
        bias: Option<ArrayView1<'_, f32>>,
        granularity: Granularity,
        config: HybridConfig,
    ) -> Result<Self> {
        Self::new(
            QuantizedWeights::quantize(weights, granularity)?,
            bias,
            config,
        )
    }

    /// The quantized weights.
    pub fn weights(&self) -> &QuantizedWeights {
        &self.weights
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }

    /// The layer's options.
    pub fn config(&self) -> &HybridConfig {
        &self.config
    }

    /// The kernel this layer runs.
    pub fn kernel(&self) -> Kernel {
        self.engine.kernel()
    }

    /// The number of threads a call is split over.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The same layer computing on up to `threads` threads (0 = all cores).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.set_threads(threads);
        self
    }

    /// The same layer with other options (weights are cloned, packed weights shared).
    ///
    /// # Panics
    /// If `config.kernel` names a kernel this CPU cannot run; [`HybridLinear::try_with_config`]
    /// returns an error instead.
    #[track_caller]
    pub fn with_config(&self, config: HybridConfig) -> Self {
        match self.try_with_config(config) {
            Ok(l) => l,
            Err(e) => panic!("HybridLinear::with_config: {e}"),
        }
    }

    /// The same layer with other options; [`Error::KernelUnavailable`] if `config.kernel`
    /// names a kernel this CPU cannot run.
    pub fn try_with_config(&self, config: HybridConfig) -> Result<Self> {
        let kernel = Kernel::resolve(config.kernel)?;
        let engine = if kernel == self.kernel() {
            self.engine.clone()
        } else {
            engine_for(kernel, &self.weights, self.bias.as_deref())?
        };
        Ok(Self {
            weights: self.weights.clone(),
            bias: self.bias.clone(),
            config,
            threads: super::resolve_threads(config.threads),
            engine,
        })
    }

    /// The error for the first NaN or infinity of `x`, whose rows `finite` flags (at least
    /// one row is flagged).
    fn non_finite_error(&self, x: &[f32], finite: &[bool]) -> Error {
        let k = self.weights.k();
        let b = finite
            .iter()
            .position(|&ok| !ok)
            .expect("a row with a non-finite value");
        let row = &x[b * k..(b + 1) * k];
        let i = crate::error::first_non_finite(row).expect("a non-finite value");
        Error::NonFinite {
            op: "HybridLinear::forward",
            what: "input",
            index: b * k + i,
            value: row[i],
        }
    }
}

impl Linear for HybridLinear {
    fn in_features(&self) -> usize {
        self.weights.k()
    }

    fn threads(&self) -> usize {
        self.threads
    }

    fn set_threads(&mut self, threads: usize) {
        self.config.threads = threads;
        self.threads = super::resolve_threads(threads);
    }

    fn weight_bytes(&self) -> usize {
        self.weights.storage_bytes() + 4 * self.bias.as_ref().map_or(0, |b| b.len())
    }

    fn kernel_name(&self) -> &'static str {
        self.kernel().name()
    }

    fn out_features(&self) -> usize {
        self.weights.n()
    }

    fn activation(&self) -> Activation {
        self.config.activation
    }

    fn forward_rows(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<()> {
        let (k, n) = (self.weights.k(), self.weights.n());
        check_rows("HybridLinear::forward_rows", x.len(), rows, k, out.len(), n)?;
        if rows == 0 {
            return Ok(());
        }
        if k == 0 {
            // TFLite fills the output with zeros: no bias, no activation.
            out.fill(0.0);
            return Ok(());
        }
        let act = self.config.activation;
        let flavour = self.config.flavour;
        // An all-zero input is finite; the test stops at the first non-zero value.
        if !flavour.is_xnnpack() && x.iter().all(|&v| v == 0.0) {
            // TFLite's shortcut: no product, the activation of the bias.
            let init = |j: usize| self.bias.as_ref().map_or(0.0, |b| b[j]);
            for out_row in out.chunks_exact_mut(n) {
                for (j, o) in out_row.iter_mut().enumerate() {
                    *o = act.apply(init(j));
                }
            }
            return Ok(());
        }
        // The quantizer finds NaN and infinities on its pass over each row, so the input is
        // checked before any output is written and read once for both.
        let asymmetric = self.config.asymmetric_inputs;
        let finite = self
            .engine
            .quantize(x, rows, flavour, asymmetric, scratch, self.threads);
        if !finite && self.config.non_finite == NonFinitePolicy::Error {
            return Err(self.non_finite_error(x, &scratch.row_is_finite[..rows]));
        }
        let spec = EpilogueSpec::new(flavour, act, rows, n, k);
        self.engine.product(rows, spec, out, scratch, self.threads);
        if !finite {
            for (out_row, &ok) in out.chunks_exact_mut(n).zip(&scratch.row_is_finite) {
                if !ok {
                    out_row.fill(f32::NAN);
                }
            }
        }
        Ok(())
    }
}

/// The engine of `kernel` for these weights.
fn engine_for(
    kernel: Kernel,
    weights: &QuantizedWeights,
    bias: Option<&[f32]>,
) -> Result<Arc<dyn HybridProduct>> {
    let kernel = kernel.check_available()?;
    crate::engine::build_hybrid(kernel, weights, bias).ok_or_else(|| {
        Error::invalid(
            "HybridLinear::new",
            format!("kernel {kernel} could not be built"),
        )
    })
}
