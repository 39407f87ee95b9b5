//! Compute kernels: the int8 dot products behind the hybrid layer, and f32 products for the
//! float layer.
//!
//! [`scalar`] is the reference every SIMD kernel must equal bit for bit. This is the only module
//! tree allowed to use `unsafe`; every block carries a `// SAFETY:` comment.
#![allow(unsafe_code)]

pub(crate) mod float;
pub(crate) mod scalar;
