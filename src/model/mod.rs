//! From files to layers: float tensor sets loaded from safetensors files.
//!
//! - [`tensors`]: [`TensorSet`], named float tensors read from safetensors (f32, f16 and bf16
//!   widened to f32 exactly), with typed errors for a missing tensor, a wrong dtype or rank, and
//!   a truncated or corrupt file.

pub mod tensors;

pub use tensors::{FloatTensor, SourceDtype, TensorSet};
