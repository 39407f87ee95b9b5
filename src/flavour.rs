//! Which build of TensorFlow Lite (or XNNPACK) the numerics reproduce.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The numerics to reproduce. The flavours differ only in how an input row is quantized and,
/// for [`Flavour::Xnnpack`], in the float epilogue (see `docs/how-it-works.md` and the contract
/// in numerics.md).
///
/// | flavour | rounding of `y = x * inv` | zero point added | epilogue |
/// |---|---|---|---|
/// | `TfliteX86` | `trunc(y ± 0.5)` on the first `K - K % 8` values, ties away on the tail | after rounding | `bias + acc * s`, two roundings |
/// | `TfliteArm64` | ties away | after rounding | same |
/// | `TflitePortable` | ties away | before rounding, in f32 | same |
/// | `Xnnpack` | ties to even | after rounding | one fused multiply-add |
///
/// ```
/// use hybridq::Flavour;
/// assert_eq!(Flavour::default(), Flavour::TfliteX86);
/// assert_eq!("xnnpack".parse::<Flavour>().unwrap(), Flavour::Xnnpack);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// TFLite 2.21 as shipped in the x86-64 wheels (NEON quantizers compiled through an SSE
    /// translation layer). The default: it is the one checkable against a real TFLite here.
    #[default]
    TfliteX86,
    /// TFLite on AArch64 (NEON with ties-away conversion).
    TfliteArm64,
    /// TFLite's portable C++ build (no SIMD).
    TflitePortable,
    /// TFLite's default XNNPACK delegate (`qd8-f32-qc8w`): always asymmetric, ties to even,
    /// fused multiply-add epilogue.
    Xnnpack,
}

impl Flavour {
    /// Every flavour, in declaration order.
    pub const ALL: [Flavour; 4] = [
        Flavour::TfliteX86,
        Flavour::TfliteArm64,
        Flavour::TflitePortable,
        Flavour::Xnnpack,
    ];

    /// The flavour's command-line name (`tflite-x86`, `tflite-arm64`, `tflite-portable`,
    /// `xnnpack`).
    pub fn name(self) -> &'static str {
        match self {
            Flavour::TfliteX86 => "tflite-x86",
            Flavour::TfliteArm64 => "tflite-arm64",
            Flavour::TflitePortable => "tflite-portable",
            Flavour::Xnnpack => "xnnpack",
        }
    }
}

impl fmt::Display for Flavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Flavour {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Flavour::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "Flavour::from_str",
                    format!("unknown flavour `{s}` (expected tflite-x86, tflite-arm64, tflite-portable or xnnpack)"),
                )
            })
    }
}
