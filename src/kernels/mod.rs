//! Compute kernels: the int8 products behind the hybrid and full-integer layers, the f32
//! products of the float layer, and the vector widths their shared epilogues run on.
//!
//! [`scalar`] is the reference every SIMD kernel must equal bit for bit. This module tree
//! (with `gemm`) is the only one allowed to use `unsafe`; every block carries a `// SAFETY:`
//! comment.
//!
//! - [`contract`]: what a kernel promises ([`contract::Int8Kernel`], [`contract::F32Kernel`],
//!   [`contract::Width`]);
//! - [`registry`]: the one list of int8 kernels that dispatch, the tests, the benches,
//!   [`Kernel::peak_gops`] and the command line iterate;
//! - [`float_registry`]: the same for the float layer's f32 kernels ([`FloatKernel`]);
//! - [`scalar`]: the portable reference kernel and epilogue width;
//! - [`elementwise`]: the finite check and the GELU loop, built for the CPU's widest vectors;
//! - `x86` (x86-64 only): the 256-bit and 512-bit widths and the x86 kernels.
//!
//! Adding a kernel is one file (a type implementing the contract) and one line in
//! [`registry`]; see `docs/kernels.md`.
#![allow(unsafe_code)]

pub(crate) mod contract;
pub(crate) mod elementwise;
pub(crate) mod float_registry;
pub(crate) mod registry;
pub(crate) mod scalar;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

#[cfg(test)]
mod tests;

pub use float_registry::{FloatKernel, F32_KERNEL_ENV};
pub use registry::Kernel;
pub(crate) use registry::KernelVisitor;

/// The environment variable that [`Kernel::detect`] reads once (for tests and benchmarks).
pub const KERNEL_ENV: &str = "HYBRIDQ_KERNEL";
