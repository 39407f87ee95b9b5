//! Weight-only layers: the weights are *stored* compactly (int8 with scales, float16 or
//! bfloat16) and turned back into f32 once, when the layer is built; the computation is then
//! the float layer's ([`FloatLinear`]). Storage shrinks 2x or 4x, the arithmetic stays float.
//!
//! ```
//! use hybridq::toolkit::weight_only::{WeightFormat, WeightOnlyLinear};
//! use hybridq::{Activation, Granularity, Linear};
//! use ndarray::array;
//!
//! let w = array![[0.5f32, -1.0, 0.1], [2.0, 0.0, -0.3]];
//! let x = array![[1.0f32, 2.0, 3.0]];
//! for format in [WeightFormat::Int8(Granularity::PerChannel), WeightFormat::Float16,
//!                WeightFormat::BFloat16] {
//!     let layer = WeightOnlyLinear::new(w.view(), None, Activation::None, format)?;
//!     let y = layer.forward(x.view())?;
//!     assert!((y[[0, 0]] - (0.5 - 2.0 + 0.3)).abs() < 0.02, "{format:?}");
//! }
//! let f16 = WeightOnlyLinear::new(w.view(), None, Activation::None, WeightFormat::Float16)?;
//! assert_eq!(f16.storage_bytes(), 6 * 2);
//! # Ok::<(), hybridq::Error>(())
//! ```

use half::{bf16, f16};
use ndarray::{Array2, ArrayView1, ArrayView2};

use crate::activation::Activation;
use crate::error::{check_finite, Error, Result};
use crate::layer::{FloatLinear, Linear, Scratch};
use crate::quantize::weights::{Granularity, QuantizedWeights};

/// How the weights are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    /// Symmetric int8 with f32 scales (the converter's rule), per channel or per tensor.
    Int8(Granularity),
    /// IEEE half precision (round to nearest even; |w| above 65504 is an error).
    Float16,
    /// bfloat16: f32's exponent with an 8-bit significand (round to nearest even).
    BFloat16,
}

#[derive(Clone, Debug)]
enum Stored {
    Int8(QuantizedWeights),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
}

/// A layer whose weights are stored in a [`WeightFormat`] and computed in f32.
#[derive(Clone, Debug)]
pub struct WeightOnlyLinear {
    stored: Stored,
    format: WeightFormat,
    inner: FloatLinear,
}

impl WeightOnlyLinear {
    /// Stores `weights` `[N, K]` in `format`, decodes them once and builds the float layer.
    ///
    /// Errors: those of [`FloatLinear::new`] and [`QuantizedWeights::quantize`], and a weight
    /// that overflows float16 ([`Error::OutOfRange`]).
    pub fn new(
        weights: ArrayView2<'_, f32>,
        bias: Option<ArrayView1<'_, f32>>,
        activation: Activation,
        format: WeightFormat,
    ) -> Result<Self> {
        const OP: &str = "WeightOnlyLinear::new";
        let (n, k) = weights.dim();
        let flat: Vec<f32> = weights.iter().copied().collect();
        check_finite(OP, "weights", &flat)?;
        let (stored, decoded) = match format {
            WeightFormat::Int8(g) => {
                let q = QuantizedWeights::quantize(weights, g)?;
                let d = q.dequantize();
                (Stored::Int8(q), d)
            }
            WeightFormat::Float16 => {
                let h: Vec<f16> = flat.iter().map(|&v| f16::from_f32(v)).collect();
                if let Some(i) = h.iter().position(|v| v.is_infinite()) {
                    return Err(Error::OutOfRange {
                        op: OP,
                        what: "float16 weight",
                        index: i,
                        value: flat[i] as i64,
                        min: -65504,
                        max: 65504,
                    });
                }
                let d = h.iter().map(|v| v.to_f32()).collect();
                (Stored::F16(h), to_array(n, k, d))
            }
            WeightFormat::BFloat16 => {
                let h: Vec<bf16> = flat.iter().map(|&v| bf16::from_f32(v)).collect();
                let d = h.iter().map(|v| v.to_f32()).collect();
                (Stored::Bf16(h), to_array(n, k, d))
            }
        };
        let inner = FloatLinear::new(decoded.view(), bias, activation)?;
        Ok(Self {
            stored,
            format,
            inner,
        })
    }

    /// Builds the layer from already quantized int8 weights.
    ///
    /// Errors: those of [`FloatLinear::new`].
    pub fn from_quantized(
        weights: QuantizedWeights,
        bias: Option<ArrayView1<'_, f32>>,
        activation: Activation,
    ) -> Result<Self> {
        let inner = FloatLinear::new(weights.dequantize().view(), bias, activation)?;
        Ok(Self {
            format: WeightFormat::Int8(weights.granularity()),
            stored: Stored::Int8(weights),
            inner,
        })
    }

    /// The storage format.
    pub fn format(&self) -> WeightFormat {
        self.format
    }

    /// Bytes of the stored weights (and scales); the decoded f32 copy is not counted.
    pub fn storage_bytes(&self) -> usize {
        match &self.stored {
            Stored::Int8(q) => q.storage_bytes(),
            Stored::F16(v) => 2 * v.len(),
            Stored::Bf16(v) => 2 * v.len(),
        }
    }

    /// The same layer on another f32 kernel.
    ///
    /// Errors: [`Error::KernelUnavailable`] if this CPU cannot run it.
    pub fn with_kernel(self, kernel: crate::kernels::FloatKernel) -> Result<Self> {
        Ok(Self {
            inner: self.inner.with_kernel(kernel)?,
            ..self
        })
    }

    /// The same layer computing on up to `threads` threads (0 = all cores).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.set_threads(threads);
        self
    }

    /// The decoded f32 weights the layer computes with.
    pub fn decoded_weights(&self) -> Array2<f32> {
        self.inner.weights()
    }
}

fn to_array(n: usize, k: usize, v: Vec<f32>) -> Array2<f32> {
    Array2::from_shape_vec((n, k), v).expect("n * k values")
}

impl Linear for WeightOnlyLinear {
    fn in_features(&self) -> usize {
        self.inner.in_features()
    }

    fn threads(&self) -> usize {
        self.inner.threads()
    }

    fn set_threads(&mut self, threads: usize) {
        self.inner.set_threads(threads);
    }

    fn weight_bytes(&self) -> usize {
        self.storage_bytes() + 4 * self.inner.bias().map_or(0, <[f32]>::len)
    }

    fn kernel_name(&self) -> &'static str {
        self.inner.kernel_name()
    }

    fn out_features(&self) -> usize {
        self.inner.out_features()
    }

    fn activation(&self) -> Activation {
        self.inner.activation()
    }

    fn forward_rows(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<()> {
        self.inner.forward_rows(x, rows, out, scratch)
    }
}
