//! # hybridq
//!
//! A hybrid (weight-only / dynamic-range) int8 quantization engine that reproduces
//! TensorFlow Lite's `EvalHybrid` fully-connected numerics bit for bit.
//!
//! Weights are quantized once to symmetric int8 (one scale per output channel or per tensor).
//! At run time each input row is quantized to int8 with its own scale `sf` and zero point `zp`;
//! the int8 x int8 products accumulate exactly in integers, and the result is rescaled to f32:
//!
//! ```text
//! y[b][n] = act( bias[n] + (sum_k q_w[n][k] * q_x[b][k] - zp[b] * row_sum[n]) * f32(sf[b] * s_w[n]) )
//! ```
//!
//! The rounding rules and the order of every float operation follow the chosen [`Flavour`]
//! (TFLite's x86-64 build by default, which is checked against the real TFLite 2.21 in
//! `fixtures/`).
//!
//! ```
//! use hybridq::{Granularity, HybridConfig, HybridLinear, Linear};
//! use ndarray::array;
//!
//! let w = array![[0.5f32, -1.0, 0.25], [2.0, 0.0, -0.5]];
//! let bias = array![0.1f32, -0.2];
//! let layer = HybridLinear::from_f32(w.view(), Some(bias.view()), Granularity::PerChannel,
//!                                    HybridConfig::default())?;
//! let x = array![[1.0f32, 2.0, 3.0]];
//! let y = layer.forward(x.view())?;
//! assert_eq!(y.shape(), &[1, 2]);
//! assert!((y[[0, 0]] - (0.1 + 0.5 - 2.0 + 0.75)).abs() < 0.02);
//! # Ok::<(), hybridq::Error>(())
//! ```
//!
//! Modules: [`quantize`] (weights and input rows), [`layer`] (the hybrid and float layers),
//! `model` (float tensors from safetensors files; feature `safetensors`), `fixture` and
//! `check` (golden cases made by the real TFLite; feature `npz`), [`stats`] (error against
//! float).
//!
//! The integer product, input quantization and epilogue run on a [`Kernel`] chosen once per
//! layer from what the CPU has (AMX, AVX-512 VNNI, AVX-VNNI or AVX2 on x86-64, else the
//! portable scalar reference), the float layer on a [`FloatKernel`]; every kernel gives the
//! same bits, for any thread count.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    missing_docs,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

pub mod activation;
pub mod bound;
#[cfg(feature = "npz")]
pub mod check;
mod engine;
pub mod error;
#[cfg(feature = "npz")]
pub mod fixture;
pub mod flavour;
mod gemm;
pub mod integer;
mod kernels;
pub mod layer;
#[cfg(feature = "safetensors")]
pub mod model;
#[cfg(feature = "npz")]
pub mod npz;
pub mod quantize;
pub mod stats;
pub mod toolkit;

pub use activation::Activation;
pub use engine::row_quantizer::RowQuantizer;
pub use error::{Error, Result};
pub use flavour::Flavour;
pub use kernels::{FloatKernel, Kernel, F32_KERNEL_ENV, KERNEL_ENV};
pub use layer::{
    build_linear, Activated, FloatLinear, Gelu, HybridConfig, HybridLinear, Linear, LinearOptions,
    Mode, NonFinitePolicy, Nonlinearity, Scratch,
};
pub use quantize::weights::{Granularity, QuantizedWeights, WeightRule};

/// The README's examples, run as doctests so that they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
