//! The float epilogue: integer accumulator to f32 output, in each flavour's operation order.

/// TFLite's dense hybrid epilogue (numerics.md 3.5): `s = f32(sf * w_scale)`, then
/// `out = f32(init + f32(acc * s))` with the bias (or 0.0) already in `init`. Never fused.
#[inline]
pub(crate) fn tflite(acc: i64, row_scale: f32, w_scale: f32, init: f32) -> f32 {
    let s = row_scale * w_scale;
    init + (acc as f32) * s
}

/// XNNPACK's qd8-f32-qc8w epilogue (numerics.md 4.4): `fma(f32(acc * s), w_scale, bias)`.
#[inline]
pub(crate) fn xnnpack(acc: i64, row_scale: f32, w_scale: f32, bias: f32) -> f32 {
    ((acc as f32) * row_scale).mul_add(w_scale, bias)
}
