//! Which build of TensorFlow Lite (or XNNPACK) the numerics reproduce.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The numerics to reproduce: one value per build whose bits differ. Each name says the build
/// (see `docs/how-it-works.md`, "Flavours", for the rules and the source lines behind them).
///
/// | flavour | build | rounding of `y = x * inv` | zero point | epilogue |
/// |---|---|---|---|---|
/// | `TfliteX86` | TFLite 2.21 / LiteRT 2.3 x86-64 wheels, built-in kernel | `trunc(y ± 0.5)` on the first `K - K % 8` values, ties away on the tail | after rounding | `bias + acc * s`, two roundings |
/// | `TfliteArm64` | TFLite / LiteRT AArch64, CPU without dot product | ties away | after rounding | `fma(acc, s, bias)`, one rounding |
/// | `TfliteArm64Dotprod` | the same on a CPU with `sdot` | ties away | after rounding | two roundings where the `sdot` kernels run (a rule on B, K, N), one elsewhere |
/// | `TflitePortable` | the portable C++ code (no SIMD), as the x86-64 wheel compiles it | ties away | before rounding, in f32 | two roundings |
/// | `Xnnpack` | the XNNPACK delegate on x86-64 (`qd8-f32-qc8w`) | ties to even | after rounding | `fma(acc * sf, ws, bias)`; denormals flushed |
/// | `XnnpackArm64` | the XNNPACK delegate on AArch64 without dot product | ties to even | after rounding | as `Xnnpack`, with ARM's conversions and NaN |
/// | `XnnpackArm64Dotprod` | the XNNPACK delegate on AArch64 with `sdot` (KleidiAI `qai8dxp`) | ties away | after rounding | `f32(acc * f32(ws * sf)) + bias`, two roundings; denormals flushed |
///
/// `TfliteX86` is the default: TFLite 2.21's `tf.lite` and LiteRT 2.3.0's interpreter give the
/// same bits on x86-64.
///
/// ```
/// use hybridq::Flavour;
/// assert_eq!(Flavour::default(), Flavour::TfliteX86);
/// assert_eq!("xnnpack-arm64-dotprod".parse::<Flavour>().unwrap(), Flavour::XnnpackArm64Dotprod);
/// for f in Flavour::ALL {
///     assert_eq!(f.name().parse::<Flavour>().unwrap(), f);
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// TFLite 2.21 as shipped in the x86-64 wheels (NEON quantizers compiled through an SSE
    /// translation layer), and LiteRT 2.3.0's x86-64 interpreter. The default.
    #[default]
    TfliteX86,
    /// TFLite on AArch64 without dot-product instructions (Cortex-A72 and older): NEON
    /// quantizers with ties-away conversion, and the last step fused into one rounding.
    TfliteArm64,
    /// TFLite on AArch64 with dot-product instructions (Neoverse-N1, Cortex-A76 and later):
    /// like [`Flavour::TfliteArm64`], except where the built-in kernel picks its `sdot`
    /// kernels, whose last step rounds twice. The choice depends on the call's rows B, depth K
    /// and channels N, so a row's bits here can depend on the batch it is in.
    TfliteArm64Dotprod,
    /// TFLite's portable C++ build (no SIMD).
    TflitePortable,
    /// TFLite's default XNNPACK delegate on x86-64 (`qd8-f32-qc8w`): always asymmetric, ties
    /// to even, fused multiply-add epilogue, denormals flushed.
    Xnnpack,
    /// The XNNPACK delegate on AArch64 without dot product: [`Flavour::Xnnpack`]'s numerics
    /// with ARM's saturating conversions and NaN-propagating clamp (they differ only on rows
    /// of extreme magnitude).
    XnnpackArm64,
    /// The XNNPACK delegate on AArch64 with dot product, which runs KleidiAI's `qai8dxp`
    /// kernels: ties-away quantization and a two-rounding epilogue.
    XnnpackArm64Dotprod,
}

/// The float epilogue a build runs (see `layer::epilogue`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EpilogueKind {
    /// `f32(bias + f32(f32(acc) * s))` with `s = f32(sf * ws)`.
    TfliteTwoRoundings,
    /// `fma(f32(acc), s, bias)` with `s = f32(sf * ws)`.
    TfliteFused,
    /// `fma(f32(f32(acc) * sf), ws, bias)`.
    XnnpackFused,
    /// `f32(f32(f32(acc) * f32(ws * sf)) + bias)` (KleidiAI).
    KleidiTwoRoundings,
}

/// How a build's input quantizer converts (see `quantize::plan`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QuantizerKind {
    /// TFLite's NEON code through NEON_2_SSE, and clang's scalar tails, on x86-64.
    TfliteX86,
    /// TFLite's NEON code on AArch64.
    TfliteArm64,
    /// TFLite's portable code as the x86-64 wheel compiles it.
    TflitePortable,
    /// XNNPACK's `f32-qs8-vcvt` on x86-64.
    XnnpackX86,
    /// XNNPACK's `f32-qs8-vcvt` on AArch64 (`vcvtnq`, saturating).
    XnnpackArm64,
    /// KleidiAI's `lhs_quant_pack_qai8dxp_f32`.
    Kleidi,
}

/// What an output clamp does with a NaN (only rows near `f32::MAX` make one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NanRule {
    /// TFLite's `std::max(lo, std::min(v, hi))` with an activation (NaN becomes `lo`); no
    /// clamp without one.
    TfliteActivation,
    /// x86 `maxps(v, lo)` first, always, even without an activation: NaN becomes `lo`.
    ToLowerBound,
    /// ARM `fmax` / `fmin`: NaN stays.
    Propagate,
}

impl Flavour {
    /// Every flavour, in declaration order.
    pub const ALL: [Flavour; 7] = [
        Flavour::TfliteX86,
        Flavour::TfliteArm64,
        Flavour::TfliteArm64Dotprod,
        Flavour::TflitePortable,
        Flavour::Xnnpack,
        Flavour::XnnpackArm64,
        Flavour::XnnpackArm64Dotprod,
    ];

    /// The flavour's command-line name (`tflite-x86`, `tflite-arm64`, `tflite-arm64-dotprod`,
    /// `tflite-portable`, `xnnpack`, `xnnpack-arm64`, `xnnpack-arm64-dotprod`).
    pub fn name(self) -> &'static str {
        match self {
            Flavour::TfliteX86 => "tflite-x86",
            Flavour::TfliteArm64 => "tflite-arm64",
            Flavour::TfliteArm64Dotprod => "tflite-arm64-dotprod",
            Flavour::TflitePortable => "tflite-portable",
            Flavour::Xnnpack => "xnnpack",
            Flavour::XnnpackArm64 => "xnnpack-arm64",
            Flavour::XnnpackArm64Dotprod => "xnnpack-arm64-dotprod",
        }
    }

    /// Whether the flavour is an XNNPACK delegate's: always asymmetric (TFLite's
    /// `asymmetric_quantize_inputs` is ignored), no shortcut for an all-zero input, denormals
    /// flushed.
    pub fn is_xnnpack(self) -> bool {
        matches!(
            self,
            Flavour::Xnnpack | Flavour::XnnpackArm64 | Flavour::XnnpackArm64Dotprod
        )
    }

    /// Whether the build runs on AArch64 (its NaN is the positive default NaN, bits
    /// `0x7fc00000`, where x86-64 makes `0xffc00000`).
    pub(crate) fn is_arm(self) -> bool {
        matches!(
            self,
            Flavour::TfliteArm64
                | Flavour::TfliteArm64Dotprod
                | Flavour::XnnpackArm64
                | Flavour::XnnpackArm64Dotprod
        )
    }

    /// The input quantizer.
    pub(crate) fn quantizer(self) -> QuantizerKind {
        match self {
            Flavour::TfliteX86 => QuantizerKind::TfliteX86,
            Flavour::TfliteArm64 | Flavour::TfliteArm64Dotprod => QuantizerKind::TfliteArm64,
            Flavour::TflitePortable => QuantizerKind::TflitePortable,
            Flavour::Xnnpack => QuantizerKind::XnnpackX86,
            Flavour::XnnpackArm64 => QuantizerKind::XnnpackArm64,
            Flavour::XnnpackArm64Dotprod => QuantizerKind::Kleidi,
        }
    }

    /// What the output clamp does with a NaN.
    pub(crate) fn nan_rule(self) -> NanRule {
        match self {
            Flavour::Xnnpack => NanRule::ToLowerBound,
            Flavour::XnnpackArm64 | Flavour::XnnpackArm64Dotprod => NanRule::Propagate,
            _ => NanRule::TfliteActivation,
        }
    }

    /// The epilogue of a call of `rows` rows against `n` channels of depth `k`.
    pub(crate) fn epilogue(self, rows: usize, n: usize, k: usize) -> EpilogueKind {
        match self {
            Flavour::TfliteX86 | Flavour::TflitePortable => EpilogueKind::TfliteTwoRoundings,
            Flavour::TfliteArm64 => EpilogueKind::TfliteFused,
            Flavour::TfliteArm64Dotprod if arm64_sdot_kernel_runs(rows, n, k) => {
                EpilogueKind::TfliteTwoRoundings
            }
            Flavour::TfliteArm64Dotprod => EpilogueKind::TfliteFused,
            Flavour::Xnnpack | Flavour::XnnpackArm64 => EpilogueKind::XnnpackFused,
            Flavour::XnnpackArm64Dotprod => EpilogueKind::KleidiTwoRoundings,
        }
    }
}

/// Whether TFLite's built-in hybrid kernel on an AArch64 CPU with `sdot` runs its hand-written
/// `sdot` kernels for `rows` x `k` inputs against `n` channels (`neon_tensor_utils.cc`,
/// `NeonMatrixBatchVectorMultiplyAccumulate` and `...Impl`): not when ruy takes the call
/// (`UseCpuBackendGemm` and `n % 4 == 0`), else when `k % 16 == 0`, `n` is even, `n >= rows`
/// and either `rows % 4 == 0` (`DotprodMatrixBatchFourVectorMultiplyAccumulate`) or
/// `rows >= 2` and `n * k >= 128 * 128` (the padded variant). Those kernels round twice; ruy's
/// path and the C loop are compiled to a fused multiply-add.
///
/// ```
/// use hybridq::flavour::arm64_sdot_kernel_runs;
/// assert!(arm64_sdot_kernel_runs(4, 64, 32));       // rows % 4 == 0
/// assert!(arm64_sdot_kernel_runs(3, 256, 64));      // padded: n * k = 16384
/// assert!(!arm64_sdot_kernel_runs(3, 254, 64));     // n * k too small
/// assert!(!arm64_sdot_kernel_runs(16, 64, 64));     // ruy
/// assert!(arm64_sdot_kernel_runs(16, 66, 64));      // n % 4 != 0: not ruy
/// assert!(arm64_sdot_kernel_runs(16, 1024, 16));    // too rectangular for ruy
/// ```
pub fn arm64_sdot_kernel_runs(rows: usize, n: usize, k: usize) -> bool {
    if n.is_multiple_of(4) && use_cpu_backend_gemm_with_sdot(n, k, rows) {
        return false;
    }
    k.is_multiple_of(16)
        && n.is_multiple_of(2)
        && n >= rows
        && (rows.is_multiple_of(4) || (rows >= 2 && n.saturating_mul(k) >= 128 * 128))
}

/// TFLite's `UseCpuBackendGemm(rows = n, cols = k, batch = rows)` on a CPU with `sdot`: ruy
/// for at least 16 rows unless the weight matrix is too rectangular.
fn use_cpu_backend_gemm_with_sdot(n: usize, k: usize, batch: usize) -> bool {
    if batch < 16 || n == 0 || k == 0 {
        return false;
    }
    let floor_log2 = |v: usize| v.ilog2() as i64;
    let (row_rect, col_rect) = (n / k, k / n);
    let rect_lg2 = if row_rect > 0 {
        floor_log2(row_rect)
    } else {
        floor_log2(col_rect)
    };
    floor_log2(batch) - rect_lg2 > 2
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
                let names: Vec<&str> = Flavour::ALL.iter().map(|f| f.name()).collect();
                Error::invalid(
                    "Flavour::from_str",
                    format!(
                        "unknown flavour `{s}` (expected one of {})",
                        names.join(", ")
                    ),
                )
            })
    }
}
