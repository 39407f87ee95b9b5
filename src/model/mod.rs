//! From files to layers: float tensor sets, the quantization policy for a whole model, and the
//! quantized model format.
//!
//! - [`tensors`]: [`TensorSet`], named float tensors read from safetensors (f32, f16 and bf16
//!   widened to f32 exactly) or `.npz` archives (f32; feature `npz`), with typed errors for a missing tensor, a wrong dtype or rank, and
//!   a truncated or corrupt file.
//! - [`policy`]: [`Policy`], which tensors become which mode (name globs, TFLite's rule that
//!   weights of fewer than 1,024 elements stay float, a keep-in-float list, per-tensor
//!   overrides), applied to a [`TensorSet`].
//! - [`accuracy`]: [`AccuracyProbe`], each quantized layer beside its float reference on real
//!   inputs (output SQNR, cosine, max abs error, input outlier ratio), and a policy that keeps
//!   the worst layers in float under an error budget.
//! - [`quantized`]: [`QuantizedModel`], named layers and kept tensors, saved to and loaded from a
//!   versioned, checksummed safetensors file.

pub mod accuracy;
pub mod policy;
pub mod quantized;
pub mod tensors;

pub use accuracy::{AccuracyProbe, LayerAccuracy};
pub use policy::{Override, Policy, Reason, WeightReport};
pub use quantized::{
    LayerWeights, ModelLayer, QuantizedModel, FORMAT_NAME, FORMAT_VERSION, METADATA_KEY,
};
pub use tensors::{FloatTensor, SourceDtype, TensorSet};
