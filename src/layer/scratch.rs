//! Reusable buffers for a layer call.

use crate::quantize::inputs::RowParams;

/// Temporaries of a forward call: quantized input rows and their parameters, and staging copies
/// for views that are not in standard layout. Buffers only grow; reuse one `Scratch` across
/// calls (one per thread) to keep the hot path free of allocation.
#[derive(Debug, Default)]
pub struct Scratch {
    pub(crate) quantized: Vec<i8>,
    /// Quantized rows widened to i16, each zero padded to an even length (SIMD kernels).
    pub(crate) quantized16: Vec<i16>,
    /// Quantized rows offset to u8 (`q + 128`), each padded to a multiple of 4 (VNNI kernel).
    pub(crate) quantized_u8: Vec<u8>,
    pub(crate) params: Vec<RowParams>,
    pub(crate) row_is_finite: Vec<bool>,
    pub(crate) input: Vec<f32>,
    pub(crate) output: Vec<f32>,
}

impl Scratch {
    /// An empty scratch; it grows on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Grows the buffers for `rows` rows of `k` inputs and `n` outputs, so that later calls of
    /// at most that size do not allocate.
    pub fn reserve(&mut self, rows: usize, k: usize, n: usize) {
        grow(&mut self.quantized, rows * k, 0);
        grow(&mut self.quantized16, rows * 2 * k.div_ceil(2), 0);
        grow(
            &mut self.quantized_u8,
            rows * crate::kernels::u8_stride(k),
            0,
        );
        grow(&mut self.params, rows, RowParams::ZERO_ROW);
        grow(&mut self.row_is_finite, rows, true);
        grow(&mut self.input, rows * k, 0.0);
        grow(&mut self.output, rows * n, 0.0);
    }
}

/// Makes `v` at least `len` long (never shrinks).
pub(crate) fn grow<T: Clone>(v: &mut Vec<T>, len: usize, fill: T) {
    if v.len() < len {
        v.resize(len, fill);
    }
}
