//! The float epilogue: integer accumulator to f32 output, in each build's operation order,
//! then the output clamp. The scalar definition that the SIMD epilogues reproduce.

use crate::activation::Activation;
use crate::flavour::{EpilogueKind, Flavour, NanRule};
use crate::quantize::rounding::flush_subnormal;

/// Everything the epilogue of one call needs besides the per-element operands: the build's
/// order of operations, whether it flushes denormals (XNNPACK), what its clamp does with a
/// NaN, and which NaN it makes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct EpilogueSpec {
    /// The operation order.
    pub(crate) kind: EpilogueKind,
    /// XNNPACK's disabled denormals: DAZ on the weight scale and the bias, FTZ on results.
    pub(crate) flush: bool,
    /// What the clamp does with a NaN.
    pub(crate) nan: NanRule,
    /// Make every NaN the AArch64 default NaN (`0x7fc00000`); x86-64 makes `0xffc00000`,
    /// which the host's own instructions already give.
    pub(crate) arm_nan: bool,
    /// The fused activation.
    pub(crate) act: Activation,
}

impl EpilogueSpec {
    /// The epilogue of `flavour` for a call of `rows` rows, `n` channels and depth `k`.
    pub(crate) fn new(flavour: Flavour, act: Activation, rows: usize, n: usize, k: usize) -> Self {
        Self {
            kind: flavour.epilogue(rows, n, k),
            flush: flavour.is_xnnpack(),
            nan: flavour.nan_rule(),
            arm_nan: flavour.is_arm(),
            act,
        }
    }

    /// Whether the SIMD epilogue must clamp (an activation, or a build that always clamps).
    pub(crate) fn clamps(&self) -> bool {
        self.act != Activation::None || self.nan != NanRule::TfliteActivation
    }

    /// One output: `acc` with the row scale `sf`, the weight scale `ws` and the bias (or 0).
    #[inline]
    pub(crate) fn value(&self, acc: i64, sf: f32, ws: f32, bias: f32) -> f32 {
        let flush = |v: f32| if self.flush { flush_subnormal(v) } else { v };
        let (ws, bias) = (flush(ws), flush(bias));
        let accf = acc as f32;
        let y = match self.kind {
            EpilogueKind::TfliteTwoRoundings => bias + accf * (sf * ws),
            EpilogueKind::TfliteFused => accf.mul_add(sf * ws, bias),
            EpilogueKind::XnnpackFused => (accf * sf).mul_add(ws, bias),
            // f32(acc) * s is never subnormal: s is 0 or normal and |acc| >= 1.
            EpilogueKind::KleidiTwoRoundings => accf * flush(ws * sf) + bias,
        };
        self.clamp(flush(y))
    }

    /// The output clamp, as the build applies it.
    #[inline]
    pub(crate) fn clamp(&self, y: f32) -> f32 {
        let (lo, hi) = self.act.bounds();
        let y = match self.nan {
            NanRule::TfliteActivation => self.act.apply(y),
            NanRule::ToLowerBound if y.is_nan() => lo,
            NanRule::ToLowerBound | NanRule::Propagate if y.is_nan() => y,
            // maxps / fmax and minps / fmin as the builds use them: `-0.0` clamped at a lower
            // bound of `+0.0` becomes `+0.0`.
            NanRule::ToLowerBound | NanRule::Propagate => {
                let y = if y > lo { y } else { lo };
                if hi < y {
                    hi
                } else {
                    y
                }
            }
        };
        if self.arm_nan && y.is_nan() {
            f32::NAN
        } else {
            y
        }
    }
}
