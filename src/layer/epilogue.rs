//! The float epilogue: integer accumulator to f32 output, in each flavour's operation order.

use crate::activation::Activation;
use crate::quantize::rounding::flush_subnormal;

/// TFLite's dense hybrid epilogue (numerics.md 3.5): `s = f32(sf * w_scale)`, then
/// `out = f32(init + f32(acc * s))` with the bias (or 0.0) already in `init`. Never fused.
#[inline]
pub(crate) fn tflite(acc: i64, row_scale: f32, w_scale: f32, init: f32) -> f32 {
    let s = row_scale * w_scale;
    init + (acc as f32) * s
}

/// XNNPACK's qd8-f32-qc8w epilogue (numerics.md 4.4): `fma(f32(acc * s), w_scale, bias)`, with
/// denormals disabled as XNNPACK runs it (DAZ on the weight scale and the bias, FTZ on the
/// result; `acc * s` is never subnormal, since `s` is already flushed and `|acc| >= 1`).
#[inline]
pub(crate) fn xnnpack(acc: i64, row_scale: f32, w_scale: f32, bias: f32) -> f32 {
    let p = (acc as f32) * row_scale;
    flush_subnormal(p.mul_add(flush_subnormal(w_scale), flush_subnormal(bias)))
}

/// The activation as each flavour applies it: TFLite's `std::max(lo, std::min(v, hi))`, or
/// XNNPACK's output clamp, which it applies even without an activation (bounds -inf and +inf)
/// and which turns a NaN into the lower bound.
#[inline]
pub(crate) fn activate(xnnpack: bool, act: Activation, y: f32) -> f32 {
    if xnnpack && y.is_nan() {
        act.bounds().0
    } else {
        act.apply(y)
    }
}
