//! The registry of the float layer's kernels: [`FloatKernel`] (the public selector), its
//! names, availability and dispatch. The packed kernels come from the `float_registry!`
//! invocation below, best first; [`FloatKernel::Portable`] (row-major weights, matrixmultiply)
//! is the fallback where none of them runs.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use super::contract::F32Kernel;
use crate::error::{Error, Result};

/// The environment variable that [`FloatKernel::detect`] reads once (for tests and benches).
pub const F32_KERNEL_ENV: &str = "HYBRIDQ_F32_KERNEL";

/// Something to do with a concrete packed f32 kernel type.
pub(crate) trait F32Visitor {
    /// The result.
    type Out;
    /// Runs with kernel `k` (proof that this CPU runs it).
    fn visit<K: F32Kernel>(self, k: K) -> Self::Out;
}

macro_rules! float_registry {
    ($(
        $(#[doc = $doc:literal])*
        $(#[cfg($cfg:meta)])?
        $variant:ident => $ty:ty, reference: $reference:expr;
    )*) => {
        /// An implementation of the float layer's f32 product.
        ///
        /// The packed kernels (all but [`FloatKernel::Portable`]) compute every output as one
        /// in-order chain of fused multiply-adds over K from `+0.0`, so they give the same bits
        /// as each other and as [`FloatKernel::Scalar`], their reference, for any batch and
        /// thread count. `Portable` keeps the weights row-major and calls matrixmultiply for
        /// large batches: the same values to rounding, not the same bits.
        ///
        /// ```
        /// use hybridq::FloatKernel;
        /// let all = FloatKernel::available();
        /// assert!(all.contains(&FloatKernel::detect()));
        /// assert_eq!("f32-scalar".parse::<FloatKernel>().unwrap(), FloatKernel::Scalar);
        /// assert!("f32-none".parse::<FloatKernel>().is_err());
        /// ```
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum FloatKernel {
            $(
                $(#[doc = $doc])*
                $(#[cfg($cfg)])?
                $variant,
            )*
            /// Row-major weights (`f32-portable`): a GEMV loop for up to 16 rows and
            /// matrixmultiply beyond. The fallback where no packed SIMD kernel runs.
            Portable,
        }

        impl FloatKernel {
            /// Every float kernel this build knows, best first.
            pub const ALL: &'static [FloatKernel] =
                &[$($(#[cfg($cfg)])? FloatKernel::$variant,)* FloatKernel::Portable];

            /// The kernel's name (`f32-avx512`, `f32-avx2-fma`, ...).
            pub fn name(self) -> &'static str {
                match self {
                    $($(#[cfg($cfg)])? FloatKernel::$variant => <$ty as F32Kernel>::NAME,)*
                    FloatKernel::Portable => "f32-portable",
                }
            }

            /// Whether the kernel is a reference that [`FloatKernel::detect`] never picks on
            /// its own ([`FloatKernel::Scalar`]).
            pub fn is_reference(self) -> bool {
                match self {
                    $($(#[cfg($cfg)])? FloatKernel::$variant => $reference,)*
                    FloatKernel::Portable => false,
                }
            }

            /// Calls `v` with the packed kernel, if this CPU runs it (`None` for `Portable`).
            pub(crate) fn visit<V: F32Visitor>(self, v: V) -> Option<V::Out> {
                match self {
                    $($(#[cfg($cfg)])? FloatKernel::$variant => {
                        <$ty as F32Kernel>::new().map(|k| v.visit(k))
                    })*
                    FloatKernel::Portable => None,
                }
            }
        }
    };
}

float_registry! {
    /// x86-64 AVX-512 F (`f32-avx512`): tiles of 12 rows x 32 channels (24 zmm accumulators),
    /// one row x 128 channels for single rows.
    #[cfg(target_arch = "x86_64")]
    Avx512 => super::x86::f32_avx512::F32Avx512, reference: false;
    /// x86-64 AVX2 + FMA (`f32-avx2-fma`): tiles of 6 rows x 16 channels (12 ymm accumulators),
    /// one row x 64 channels for single rows.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma => super::x86::f32_avx2::F32Avx2, reference: false;
    /// The scalar reference on the packed layout (`f32-scalar`), one `f32::mul_add` chain per
    /// output.
    Scalar => super::scalar::ScalarF32, reference: true;
}

impl FloatKernel {
    /// Whether this CPU (and this build) can run the kernel.
    pub fn is_available(self) -> bool {
        struct Yes;
        impl F32Visitor for Yes {
            type Out = ();
            fn visit<K: F32Kernel>(self, _k: K) {}
        }
        self == FloatKernel::Portable || self.visit(Yes).is_some()
    }

    /// Whether the kernel keeps the weights in packed panels (every kernel but `Portable`).
    pub fn is_packed(self) -> bool {
        self != FloatKernel::Portable
    }

    /// The float kernels this CPU can run, best first.
    pub fn available() -> Vec<FloatKernel> {
        FloatKernel::ALL
            .iter()
            .copied()
            .filter(|k| k.is_available())
            .collect()
    }

    /// The best available kernel that is not a reference (what [`FloatKernel::detect`] picks
    /// without `HYBRIDQ_F32_KERNEL`).
    pub fn best() -> FloatKernel {
        static BEST: OnceLock<FloatKernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            FloatKernel::available()
                .into_iter()
                .find(|k| !k.is_reference())
                .unwrap_or(FloatKernel::Portable)
        })
    }

    /// The kernel to use when none is configured: `HYBRIDQ_F32_KERNEL`'s if it names an
    /// available one, else [`FloatKernel::best`].
    pub fn detect() -> FloatKernel {
        match FloatKernel::from_env() {
            Ok(Some(k)) => k,
            _ => FloatKernel::best(),
        }
    }

    /// The kernel named by `HYBRIDQ_F32_KERNEL` (read once per process): `Ok(None)` when unset
    /// or empty, [`Error::KernelUnavailable`] for an unknown kernel or one this CPU cannot run.
    pub fn from_env() -> Result<Option<FloatKernel>> {
        static ENV: OnceLock<Option<String>> = OnceLock::new();
        let value = ENV.get_or_init(|| {
            std::env::var(F32_KERNEL_ENV)
                .ok()
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| !v.is_empty())
        });
        value.as_deref().map(str::parse).transpose()
    }

    /// The kernel a float layer runs when configured with `kernel`: that one if this CPU runs
    /// it, else (for `None`) `HYBRIDQ_F32_KERNEL`'s, else [`FloatKernel::best`]'s.
    pub fn resolve(kernel: Option<FloatKernel>) -> Result<FloatKernel> {
        match kernel {
            Some(k) if k.is_available() => Ok(k),
            Some(k) => Err(unavailable(k.name())),
            None => Ok(FloatKernel::from_env()?.unwrap_or_else(FloatKernel::best)),
        }
    }
}

impl FloatKernel {
    /// The [`Error::KernelUnavailable`] for this kernel, listing the ones this CPU runs.
    pub(crate) fn unavailable_error(self) -> Error {
        unavailable(self.name())
    }
}

fn unavailable(name: &str) -> Error {
    Error::kernel_unavailable(name, FloatKernel::available().iter().map(|k| k.name()))
}

impl fmt::Display for FloatKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FloatKernel {
    type Err = Error;

    /// Parses a float kernel name; an unknown name, or a kernel this CPU cannot run, is
    /// [`Error::KernelUnavailable`].
    fn from_str(s: &str) -> Result<Self> {
        let k = FloatKernel::ALL
            .iter()
            .copied()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| unavailable(s))?;
        FloatKernel::resolve(Some(k))
    }
}
