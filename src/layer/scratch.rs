//! Reusable buffers for a layer call.

use crate::quantize::inputs::RowParams;

/// Temporaries of a forward call: quantized input rows and their parameters, and staging copies
/// for views that are not in standard layout. Buffers only grow; reuse one `Scratch` across
/// calls (one per thread) to keep the hot path free of allocation.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Quantized input rows in the kernel's element type (64-byte aligned storage).
    pub(crate) quantized: Vec<crate::gemm::pack::Line>,
    pub(crate) params: Vec<RowParams>,
    pub(crate) row_is_finite: Vec<bool>,
    pub(crate) input: Vec<f32>,
    pub(crate) output: Vec<f32>,
    /// The float layer's input rows interleaved per row block.
    pub(crate) interleaved: Vec<f32>,
    /// The full-integer layer's quantized input (its float API).
    pub(crate) int8_in: Vec<i8>,
}

impl Scratch {
    /// An empty scratch; it grows on first use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Grows the buffers for `rows` rows of `k` inputs and `n` outputs, so that later calls of
    /// at most that size do not allocate (for any kernel: room for i16 rows padded to 64).
    pub fn reserve(&mut self, rows: usize, k: usize, n: usize) {
        let bytes = rows * k.next_multiple_of(64) * 2;
        let lines = bytes.div_ceil(64);
        if self.quantized.len() < lines {
            self.quantized
                .resize(lines, crate::gemm::pack::Line([0; 64]));
        }
        grow(&mut self.params, rows, RowParams::ZERO_ROW);
        grow(&mut self.row_is_finite, rows, true);
        grow(&mut self.input, rows * k, 0.0);
        grow(&mut self.output, rows * n, 0.0);
        grow(&mut self.interleaved, rows * k, 0.0);
    }
}

/// Makes `v` at least `len` long (never shrinks).
pub(crate) fn grow<T: Clone>(v: &mut Vec<T>, len: usize, fill: T) {
    if v.len() < len {
        v.resize(len, fill);
    }
}
