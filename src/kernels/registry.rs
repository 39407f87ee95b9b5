//! The registry: the one list of int8 kernels. [`Kernel`] (the public selector), its names,
//! availability, dispatch ([`Kernel::visit`]), the property tests, the fixture tests, the
//! benches, [`Kernel::peak_gops`], `hybridq bench --list-kernels` and `.ci/run` all come from
//! the `registry!` invocation below; a kernel that is not listed cannot be selected, and a
//! listed one cannot escape the tests, which iterate [`Kernel::available`].

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use super::contract::Int8Kernel;
use super::KERNEL_ENV;
use crate::error::{Error, Result};

/// Something to do with a concrete kernel type: build an engine, measure a peak, run a test.
pub(crate) trait KernelVisitor {
    /// The result.
    type Out;
    /// Runs with kernel `k` (proof that this CPU runs it), registered as `id`.
    fn visit<K: Int8Kernel>(self, k: K, id: Kernel) -> Self::Out;
}

macro_rules! registry {
    ($(
        $(#[doc = $doc:literal])*
        $(#[cfg($cfg:meta)])?
        $variant:ident => $ty:ty, experimental: $experimental:expr;
    )*) => {
        /// An implementation of the int8 product, input quantization and epilogue.
        ///
        /// Every kernel computes the same bits: [`Kernel::Scalar`] is the reference and the
        /// others are tested against it. Choose one with
        /// [`HybridConfig::kernel`](crate::HybridConfig), or let the layer call
        /// [`Kernel::detect`]. The list is best first.
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
            $(
                $(#[doc = $doc])*
                $(#[cfg($cfg)])?
                $variant,
            )*
        }

        impl Kernel {
            /// Every kernel this build knows, best first (whether or not this CPU runs it).
            pub const ALL: &'static [Kernel] = &[$($(#[cfg($cfg)])? Kernel::$variant,)*];

            /// The kernel's name (`scalar`, `avx2`, ...).
            pub fn name(self) -> &'static str {
                match self {
                    $($(#[cfg($cfg)])? Kernel::$variant => <$ty as Int8Kernel>::NAME,)*
                }
            }

            /// Whether the kernel is experimental: [`Kernel::detect`] never picks it on its
            /// own (a stand-in for testing, or not yet validated on hardware that runs it).
            pub fn is_experimental(self) -> bool {
                match self {
                    $($(#[cfg($cfg)])? Kernel::$variant => $experimental,)*
                }
            }

            /// Calls `v` with the kernel, if this CPU runs it.
            pub(crate) fn visit<V: KernelVisitor>(self, v: V) -> Option<V::Out> {
                match self {
                    $($(#[cfg($cfg)])? Kernel::$variant => {
                        <$ty as Int8Kernel>::new().map(|k| v.visit(k, self))
                    })*
                }
            }
        }
    };
}

registry! {
    /// x86-64 AMX (`amx`, Sapphire Rapids and later): `tdpbusd` on 16 x 16 tiles of i32,
    /// 32 x 32 tiles of output; calls and left-over rows of 8 rows or fewer run the
    /// `avx512vnni` kernels on the same packed weights.
    #[cfg(target_arch = "x86_64")]
    Amx => super::x86::amx::Amx, experimental: false;
    /// x86-64 AVX-512 VNNI (`avx512vnni`): `vpdpbusd` on inputs offset by +128 (u8) against
    /// signed weights, corrected by `128 * row_sum`; 12 x 32 register tiles (24 accumulator
    /// chains), then 8 x 32 and 4 x 32, then a one-row kernel with two weight streams.
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni => super::x86::avx512vnni::Avx512Vnni, experimental: false;
    /// x86-64 AVX-VNNI (`avxvnni`): the 256-bit VEX `vpdpbusd` with the +128 scheme of
    /// `avx512vnni`; 6 x 16 tiles (12 chains), then 4 x 16 and one row.
    #[cfg(target_arch = "x86_64")]
    AvxVnni => super::x86::avxvnni::AvxVnni, experimental: false;
    /// x86-64 AVX2 + FMA (`avx2`): weights in panels of 16 channels, i8 sign-extended to i16
    /// and multiplied with `vpmaddwd` (exact), 4 x 16 register tiles and a one-row kernel.
    #[cfg(target_arch = "x86_64")]
    Avx2 => super::x86::avx2::Avx2, experimental: false;
    /// The AVX-VNNI tiles of `avxvnni` on an exact AVX2 stand-in for `vpdpbusd`
    /// (`avxvnni-emulated`): runs on any AVX2 CPU, so the tile logic, the layout and the
    /// +128 correction are tested where AVX-VNNI is missing. Experimental: slower than `avx2`.
    #[cfg(target_arch = "x86_64")]
    AvxVnniEmulated => super::x86::avxvnni::AvxVnniEmulated, experimental: true;
    /// The portable scalar reference (`scalar`), on its own packed layout.
    Scalar => super::scalar::Scalar, experimental: false;
}

impl Kernel {
    /// Whether this CPU (and this build) can run the kernel.
    pub fn is_available(self) -> bool {
        struct Yes;
        impl KernelVisitor for Yes {
            type Out = ();
            fn visit<K: Int8Kernel>(self, _k: K, _id: Kernel) {}
        }
        self.visit(Yes).is_some()
    }

    /// Measures the kernel's int8 multiply-add peak on one core, in GOP/s (2 operations per
    /// multiply-add): independent chains of its core instruction (`vpmaddwd` + `vpaddd` for
    /// `avx2`, `vpdpbusd` for the VNNI kernels, `tdpbusd` for AMX) on the calling thread, best
    /// of several runs of about a millisecond each. `None` for `scalar` and for kernels this
    /// CPU cannot run.
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
        struct Peak;
        impl KernelVisitor for Peak {
            type Out = Option<f64>;
            fn visit<K: Int8Kernel>(self, k: K, _id: Kernel) -> Option<f64> {
                k.peak_gops()
            }
        }
        self.visit(Peak).flatten()
    }

    /// The kernels this CPU can run, best first ([`Kernel::Scalar`] is always last).
    pub fn available() -> Vec<Kernel> {
        Kernel::ALL
            .iter()
            .copied()
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
            _ => Kernel::best(),
        }
    }

    /// The best available kernel that is not experimental (what [`Kernel::detect`] picks
    /// without `HYBRIDQ_KERNEL`).
    pub fn best() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            Kernel::available()
                .into_iter()
                .find(|k| !k.is_experimental())
                .unwrap_or(Kernel::Scalar)
        })
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

    /// The kernel a layer runs when configured with `kernel`: that one if this CPU runs it,
    /// else (for `None`) `HYBRIDQ_KERNEL`'s, else [`Kernel::detect`]'s; an unavailable or
    /// unknown kernel is [`Error::KernelUnavailable`].
    pub fn resolve(kernel: Option<Kernel>) -> Result<Kernel> {
        match kernel {
            Some(k) => k.check_available(),
            None => Ok(Kernel::from_env()?.unwrap_or_else(Kernel::detect)),
        }
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

impl Kernel {
    /// The [`Error::KernelUnavailable`] for this kernel, listing the ones this CPU runs.
    pub(crate) fn unavailable_error(self) -> Error {
        unavailable(self.name())
    }
}

fn unavailable(name: &str) -> Error {
    Error::kernel_unavailable(name, Kernel::available().iter().map(|k| k.name()))
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
            .iter()
            .copied()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| unavailable(s))?
            .check_available()
    }
}
