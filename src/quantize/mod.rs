//! Quantization of weights (offline, once) and of input rows (at run time, per call).
//!
//! [`rounding`] defines every rounding rule once; [`weights`] and [`inputs`] are the scalar
//! references that the SIMD kernels must equal bit for bit.

pub mod inputs;
pub(crate) mod plan;
pub mod rounding;
pub mod weights;
