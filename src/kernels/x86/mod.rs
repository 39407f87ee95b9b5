//! The x86-64 kernels and the vector widths they share.
//!
//! - [`v256`]: the AVX2 + FMA width: the row quantizer and the 256-bit epilogues;
//! - [`v512`]: the AVX-512 width: the 512-bit epilogues;
//! - [`amx`]: `tdpbusd` on AMX tiles (the `amx` kernel), AVX-512 VNNI for small batches;
//! - [`avx2`]: `vpmaddwd` on i16 (the `avx2` kernel);
//! - [`avx512vnni`]: `vpdpbusd` on u8 (the `avx512vnni` kernel);
//! - [`avxvnni`]: the 256-bit VEX `vpdpbusd` (`avxvnni`) and its AVX2 stand-in;
//! - [`f32_avx2`], [`f32_avx512`]: the float layer's f32 kernels;
//! - [`peak`]: the measured one-core peak of each kernel's core instruction.

pub(crate) mod amx;
pub(crate) mod avx2;
pub(crate) mod avx512vnni;
pub(crate) mod avxvnni;
pub(crate) mod f32_avx2;
pub(crate) mod f32_avx512;
pub(crate) mod peak;
pub(crate) mod v256;
pub(crate) mod v512;
