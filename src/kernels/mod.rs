//! Compute kernels: the int8 dot products behind the hybrid layer, and f32 products for the
//! float layer.
//!
//! [`scalar`] is the reference every SIMD kernel must equal bit for bit. This is the only module
//! tree allowed to use `unsafe`; every block carries a `// SAFETY:` comment.
//!
//! The kernel that runs is chosen once, at layer construction, from what the CPU has
//! ([`Kernel::detect`]); see `docs/kernels.md` for the table of kernels.
//!
//! Layout of the tree:
//! - [`scalar`]: the portable reference (no `unsafe`);
//! - [`pack`]: the packed weight layout made once per layer (panels of 16 output channels,
//!   K in pairs, zero padded) and the per-channel epilogue constants;
//! - `avx2` (x86-64 only): the AVX2 + FMA quantizer, GEMV/GEMM tiles and epilogue;
//! - `avx512vnni` (x86-64 only, experimental, untested on the development machine): `vpdpbusd`
//!   tiles with the +128 input offset, reusing the AVX2 quantizer and epilogue;
//! - `avxvnni` (x86-64 only, experimental likewise): the same scheme with the 256-bit VEX
//!   `vpdpbusd` of AVX-VNNI;
//! - [`driver`]: blocking of the product over (channel panels, row blocks) and the split over
//!   threads (never over K, so the output bits never depend on the thread count);
//! - [`pool`]: the small spinning thread pool every parallel section runs on;
//! - `peak`: the measured one-core peak of each kernel's multiply-add step
//!   ([`Kernel::peak_gops`]);
//! - [`float`], [`float_packed`]: the float layer's f32 products;
//!
//! Adding an ISA: an aarch64 NEON `dotprod` kernel (`sdot`, i8 x i8 into i32 lanes, exact with
//! no +128 trick) belongs in a `neon_dotprod.rs` module gated by
//! `#[cfg(target_arch = "aarch64")]`, a `Kernel::NeonDotprod` variant reported by
//! [`Kernel::available`] after `std::arch::is_aarch64_feature_detected!("dotprod")`, its own
//! packing in [`pack`] (4 consecutive K per channel, 4 channels per 128-bit register), and an
//! arm in [`driver`]'s tile dispatch. The property tests iterate [`Kernel::available`], so a new
//! kernel is tested as soon as it is registered there.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512vnni;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avxvnni;
pub(crate) mod driver;
/// Raw output pointer handed to parallel tasks that each write a disjoint set of elements (their
/// own output columns); the callers state that disjointness where they split the work.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub(crate) *mut f32);
// SAFETY: a `SharedOut` is only used by tasks that write disjoint elements (see `float::
// gemv_threaded` and `float_packed::matmul`), and the pointee outlives the parallel section.
unsafe impl Send for SharedOut {}
// SAFETY: as above; the pointer is only used for disjoint writes.
unsafe impl Sync for SharedOut {}

pub(crate) mod float;
pub(crate) mod float_packed;
pub(crate) mod pack;
mod peak;
pub(crate) mod pool;

pub(crate) use pool::for_each_chunk;

pub(crate) mod scalar;

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// An implementation of the hybrid layer's integer product, input quantization and epilogue.
///
/// Every kernel computes the same bits: [`Kernel::Scalar`] is the reference and the others are
/// tested against it. Choose one with [`HybridConfig::kernel`](crate::HybridConfig), or let
/// the layer call [`Kernel::detect`].
///
/// ```
/// use hybridq::Kernel;
/// let all = Kernel::available();
/// assert!(all.contains(&Kernel::Scalar));
/// assert!(all.contains(&Kernel::detect()));
/// assert_eq!("scalar".parse::<Kernel>().unwrap(), Kernel::Scalar);
/// assert!("no-such-kernel".parse::<Kernel>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kernel {
    /// The portable scalar reference (`scalar`): row-major weights, one dot product per output.
    Scalar,
    /// x86-64 AVX2 + FMA (`avx2`): weights packed in panels of 16 channels, i8 sign-extended to
    /// i16 and multiplied with `vpmaddwd` (exact), 4 x 16 register tiles.
    Avx2,
    /// x86-64 AVX-512 VNNI (`avx512vnni`): `vpdpbusd` on inputs offset by +128 (u8) against
    /// signed weights, corrected by `128 * row_sum`. **Experimental: never run on real hardware
    /// by its authors** (the development machine has no AVX-512); it is listed by
    /// [`Kernel::available`] where the CPU has it, so the test suite covers it there, but
    /// [`Kernel::detect`] only picks it when `HYBRIDQ_KERNEL=avx512vnni`.
    Avx512Vnni,
    /// x86-64 AVX-VNNI (`avxvnni`): the 256-bit VEX-encoded `vpdpbusd` (Intel Alder Lake and
    /// later, AMD Zen 5), the same +128 scheme and packing as [`Kernel::Avx512Vnni`].
    /// **Experimental** for the same reason; [`Kernel::detect`] only picks it when
    /// `HYBRIDQ_KERNEL=avxvnni`.
    AvxVnni,
}

/// The environment variable that [`Kernel::detect`] reads once (for tests and benchmarks).
pub const KERNEL_ENV: &str = "HYBRIDQ_KERNEL";

impl Kernel {
    /// Every kernel this build knows, best first (whether or not this CPU can run it).
    pub const ALL: [Kernel; 4] = [
        Kernel::Avx512Vnni,
        Kernel::AvxVnni,
        Kernel::Avx2,
        Kernel::Scalar,
    ];

    /// The kernel's name: `scalar`, `avx2`, `avxvnni`, `avx512vnni`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512Vnni => "avx512vnni",
            Kernel::AvxVnni => "avxvnni",
        }
    }

    /// Whether the kernel is experimental (not yet validated on hardware that runs it):
    /// [`Kernel::detect`] never picks such a kernel on its own.
    pub fn is_experimental(self) -> bool {
        matches!(self, Kernel::Avx512Vnni | Kernel::AvxVnni)
    }

    /// Whether the kernel multiplies inputs offset to u8 (`q + 128`, the VNNI kernels).
    pub(crate) fn uses_u8_inputs(self) -> bool {
        matches!(self, Kernel::Avx512Vnni | Kernel::AvxVnni)
    }

    /// K values per step of the kernel's packed weights (0: no packing).
    pub(crate) fn pack_group(self) -> usize {
        match self {
            Kernel::Scalar => 0,
            Kernel::Avx2 => 2,
            Kernel::Avx512Vnni | Kernel::AvxVnni => 4,
        }
    }

    /// Whether this CPU (and this build) can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            Kernel::Avx2 => avx2_available(),
            Kernel::Avx512Vnni => avx512vnni_available(),
            Kernel::AvxVnni => avxvnni_available(),
        }
    }

    /// Measures the kernel's int8 multiply-add peak on one core, in GOP/s (2 operations per
    /// multiply-add): independent chains of its core instruction (`vpmaddwd` + `vpaddd` for
    /// `avx2`, `vpdpbusd` for the VNNI kernels) on the calling thread, best of several runs of
    /// about a millisecond each. `None` for `scalar` and for kernels this CPU cannot run.
    ///
    /// `hybridq bench` divides the layer's GOP/s by this to show how much of the machine a
    /// call uses.
    ///
    /// ```
    /// use hybridq::Kernel;
    /// assert_eq!(Kernel::Scalar.peak_gops(), None);
    /// if let Some(p) = Kernel::detect().peak_gops() {
    ///     assert!(p.is_finite() && p > 0.0);
    /// }
    /// ```
    pub fn peak_gops(self) -> Option<f64> {
        peak::peak_gops(self)
    }

    /// The kernels this CPU can run, best first ([`Kernel::Scalar`] is always last).
    pub fn available() -> Vec<Kernel> {
        Kernel::ALL
            .into_iter()
            .filter(|k| k.is_available())
            .collect()
    }

    /// The kernel to use when none is configured: the value of the environment variable
    /// `HYBRIDQ_KERNEL` if it names an available kernel, otherwise the best available one that
    /// is not [experimental](Kernel::is_experimental).
    ///
    /// The environment is read once per process. An invalid `HYBRIDQ_KERNEL` is ignored here,
    /// but [`HybridLinear`](crate::HybridLinear) refuses to build with it (see
    /// [`Kernel::from_env`]), so that a test run cannot silently fall back to another kernel.
    pub fn detect() -> Kernel {
        match Kernel::from_env() {
            Ok(Some(k)) => k,
            _ => Kernel::available()
                .into_iter()
                .find(|k| !k.is_experimental())
                .unwrap_or(Kernel::Scalar),
        }
    }

    /// The kernel named by `HYBRIDQ_KERNEL` (read once per process): `Ok(None)` when the
    /// variable is unset or empty, [`Error::KernelUnavailable`] when it names an unknown kernel
    /// or one this CPU cannot run.
    pub fn from_env() -> Result<Option<Kernel>> {
        static ENV: OnceLock<Option<String>> = OnceLock::new();
        let value = ENV.get_or_init(|| {
            std::env::var(KERNEL_ENV)
                .ok()
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| !v.is_empty())
        });
        value.as_deref().map(str::parse).transpose()
    }

    /// [`Error::KernelUnavailable`] unless this CPU can run the kernel.
    pub fn check_available(self) -> Result<Kernel> {
        if self.is_available() {
            Ok(self)
        } else {
            Err(unavailable(self.name()))
        }
    }
}

fn unavailable(name: &str) -> Error {
    Error::KernelUnavailable {
        name: name.to_string(),
        available: Kernel::available()
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_available() -> bool {
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_available() -> bool {
    false
}

/// AVX-512 F + BW + VNNI (and AVX2 + FMA, which the shared quantizer and epilogue use).
#[cfg(target_arch = "x86_64")]
fn avx512vnni_available() -> bool {
    static VNNI: OnceLock<bool> = OnceLock::new();
    *VNNI.get_or_init(|| {
        avx2_available()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512vnni_available() -> bool {
    false
}

/// AVX-VNNI (and AVX2 + FMA).
#[cfg(target_arch = "x86_64")]
fn avxvnni_available() -> bool {
    static VNNI: OnceLock<bool> = OnceLock::new();
    *VNNI.get_or_init(|| avx2_available() && std::arch::is_x86_feature_detected!("avxvnni"))
}

#[cfg(not(target_arch = "x86_64"))]
fn avxvnni_available() -> bool {
    false
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kernel {
    type Err = Error;

    /// Parses a kernel name; an unknown name, or a kernel this CPU cannot run, is
    /// [`Error::KernelUnavailable`].
    fn from_str(s: &str) -> Result<Self> {
        Kernel::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| unavailable(s))?
            .check_available()
    }
}

/// Quantizes `finite.len()` rows of `x` (each `k` long) into i16 rows of stride
/// `2 * ceil(k / 2)` (zero padded) with a SIMD kernel; rows marked non-finite get
/// [`RowParams::ZERO_ROW`](crate::quantize::inputs::RowParams::ZERO_ROW) and zeros. Bit for bit [`quantize_row`](crate::quantize::inputs::quantize_row).
///
/// # Panics
/// If the slices are shorter than the shapes say, or `kernel` is not available.
#[allow(clippy::too_many_arguments)]
pub(crate) fn quantize_rows(
    kernel: Kernel,
    flavour: crate::flavour::Flavour,
    asymmetric: bool,
    x: &[f32],
    k: usize,
    finite: &[bool],
    out: &mut [i16],
    params: &mut [crate::quantize::inputs::RowParams],
    threads: usize,
) {
    use crate::quantize::inputs::RowParams;
    let rows = finite.len();
    let stride = 2 * k.div_ceil(2);
    assert!(kernel.is_available() && x.len() >= rows * k && out.len() >= rows * stride);
    assert!(params.len() >= rows && k > 0);
    let one = |b: usize, q: &mut [i16], p: &mut RowParams| {
        let row = &x[b * k..(b + 1) * k];
        *p = if !finite[b] {
            q.fill(0);
            RowParams::ZERO_ROW
        } else {
            match kernel {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `kernel` is available (asserted above), and every SIMD kernel is
                // available only when AVX2 and FMA were detected; `q` holds `stride >= k`
                // values.
                Kernel::Avx2 | Kernel::Avx512Vnni | Kernel::AvxVnni => unsafe {
                    avx2::quantize_row_i16(flavour, asymmetric, row, q)
                },
                _ => crate::quantize::plan::quantize_row_i16(flavour, asymmetric, row, q),
            }
        };
    };
    let out = &mut out[..rows * stride];
    let params = &mut params[..rows];
    if threads <= 1 || rows < 2 || rows * k < (1 << 18) {
        for (b, (q, p)) in out
            .chunks_exact_mut(stride)
            .zip(params.iter_mut())
            .enumerate()
        {
            one(b, q, p);
        }
    } else {
        let per = rows.div_ceil(threads);
        pool::for_each_chunk_pair(out, per * stride, params, per, threads, |t, qs, ps| {
            for (i, (q, p)) in qs.chunks_exact_mut(stride).zip(ps).enumerate() {
                one(t * per + i, q, p);
            }
        });
    }
}
#[cfg(test)]
mod tests;

/// Stride (in bytes) of the VNNI kernel's u8 input rows: K rounded up to a multiple of 4.
pub(crate) fn u8_stride(k: usize) -> usize {
    k.div_ceil(4) * 4
}

/// The VNNI kernel's inputs: `u = q + 128` (u8) from i16 rows of stride `2 * ceil(k / 2)`,
/// into rows of stride [`u8_stride`]`(k)`; the padding (where the weights are 0) is 128.
pub(crate) fn offset_rows_u8(q16: &[i16], rows: usize, k: usize, out: &mut [u8]) {
    let (s16, s8) = (2 * k.div_ceil(2), u8_stride(k));
    for (src, dst) in q16
        .chunks_exact(s16)
        .zip(out.chunks_exact_mut(s8))
        .take(rows)
    {
        for (d, &v) in dst.iter_mut().zip(&src[..k]) {
            *d = (v + 128) as u8;
        }
        dst[k..].fill(128);
    }
}
