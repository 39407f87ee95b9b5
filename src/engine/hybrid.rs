//! The hybrid scheme on one kernel: quantize the rows, run the integer product, apply the
//! float epilogue. [`HybridEngine`] owns the packed weights and the kernel; the layer keeps
//! only TFLite's semantics around it (the all-zero shortcut, the non-finite policy, shapes).

use std::fmt;

use crate::flavour::Flavour;
use crate::gemm::driver::{self, Rows, TileAt, TileSink};
use crate::gemm::pack::{elements, elements_mut, Layout, PackedWeights, PANEL};
use crate::gemm::OutRegion;
use crate::kernels::contract::{InputElement, Int8Kernel, Width};
use crate::kernels::Kernel;
use crate::layer::epilogue::EpilogueSpec;
use crate::layer::scratch::{grow, Scratch};
use crate::quantize::inputs::RowParams;
use crate::quantize::weights::QuantizedWeights;

/// A hybrid product on some kernel: what [`crate::HybridLinear`] holds. A call is two steps,
/// so that the layer can refuse a non-finite input before any output is written:
/// [`HybridProduct::quantize`], then [`HybridProduct::product`] on the same scratch.
pub(crate) trait HybridProduct: Send + Sync {
    /// The kernel it runs.
    fn kernel(&self) -> Kernel;
    /// Quantizes `rows` rows of `x` in `flavour` into `scratch`, and sets
    /// `scratch.row_is_finite[b]` to whether row `b` is free of NaN and infinities (a row
    /// that is not gets zeros and [`RowParams::ZERO_ROW`]); returns whether every row is.
    #[allow(clippy::too_many_arguments)]
    fn quantize(
        &self,
        x: &[f32],
        rows: usize,
        flavour: Flavour,
        asymmetric: bool,
        scratch: &mut Scratch,
        threads: usize,
    ) -> bool;
    /// `out = epilogue(product)` of the `rows` rows the last [`HybridProduct::quantize`] left
    /// in `scratch`.
    fn product(
        &self,
        rows: usize,
        spec: EpilogueSpec,
        out: &mut [f32],
        scratch: &Scratch,
        threads: usize,
    );
}

impl fmt::Debug for dyn HybridProduct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HybridProduct({})", self.kernel())
    }
}

/// The layout kernel `K` needs.
pub(crate) fn layout_of<K: Int8Kernel>() -> Layout {
    Layout {
        k_step: K::K_STEP,
        k_align: K::K_ALIGN,
        panels_per_tile: K::CHANNELS / PANEL,
    }
}

/// Weights packed for kernel `K`.
pub(crate) fn pack_for<K: Int8Kernel>(w: &QuantizedWeights, bias: Option<&[f32]>) -> PackedWeights {
    let values = w.values();
    let values = values
        .as_slice()
        .expect("weights are stored in standard layout");
    PackedWeights::new(
        values,
        w.n(),
        w.k(),
        layout_of::<K>(),
        w.row_sums(),
        |j| w.scale(j),
        bias,
    )
}

/// The hybrid product on kernel `K`.
pub(crate) struct HybridEngine<K: Int8Kernel> {
    kernel: K,
    id: Kernel,
    packed: PackedWeights,
}

impl<K: Int8Kernel> HybridEngine<K> {
    /// Packs `w` (and the bias) for `kernel`.
    pub(crate) fn new(kernel: K, id: Kernel, w: &QuantizedWeights, bias: Option<&[f32]>) -> Self {
        let packed = pack_for::<K>(w, bias);
        Self {
            kernel: kernel.for_weights(packed.weight_bytes()),
            id,
            packed,
        }
    }
}

/// Input values below which the pass over the input (the quantization, which also finds NaN
/// and infinities) stays on the calling thread.
const QUANTIZE_PARALLEL_VALUES: usize = 1 << 18;

impl<K: Int8Kernel> HybridProduct for HybridEngine<K> {
    fn kernel(&self) -> Kernel {
        self.id
    }

    fn quantize(
        &self,
        x: &[f32],
        rows: usize,
        flavour: Flavour,
        asymmetric: bool,
        scratch: &mut Scratch,
        threads: usize,
    ) -> bool {
        let pk = &self.packed;
        let (k, stride) = (pk.k, pk.k_padded);
        grow(&mut scratch.params, rows, RowParams::ZERO_ROW);
        grow(&mut scratch.row_is_finite, rows, true);
        let q = elements_mut::<K::Input>(&mut scratch.quantized, rows * stride);
        let params = &mut scratch.params[..rows];
        let finite = &mut scratch.row_is_finite[..rows];
        let kernel = self.kernel;
        let one = |b: usize, qrow: &mut [K::Input], p: &mut RowParams, ok: &mut bool| match kernel
            .quantize(flavour, asymmetric, &x[b * k..(b + 1) * k], qrow)
        {
            Some(params) => (*p, *ok) = (params, true),
            None => {
                qrow.fill(K::Input::from_q(0));
                (*p, *ok) = (RowParams::ZERO_ROW, false);
            }
        };
        if let Some(per) = super::rows_per_piece(rows, rows * k, threads, QUANTIZE_PARALLEL_VALUES)
        {
            crate::gemm::pool::for_each_chunk_triple(
                q,
                per * stride,
                (params, &mut *finite),
                per,
                threads,
                |t, qs, ps, oks| {
                    let rows = qs.chunks_exact_mut(stride).zip(ps).zip(oks);
                    for (i, ((qrow, p), ok)) in rows.enumerate() {
                        one(t * per + i, qrow, p, ok);
                    }
                },
            );
        } else {
            let rows = q
                .chunks_exact_mut(stride)
                .zip(params.iter_mut())
                .zip(finite.iter_mut());
            for (b, ((qrow, p), ok)) in rows.enumerate() {
                one(b, qrow, p, ok);
            }
        }
        finite.iter().all(|&ok| ok)
    }

    fn product(
        &self,
        rows: usize,
        spec: EpilogueSpec,
        out: &mut [f32],
        scratch: &Scratch,
        threads: usize,
    ) {
        let pk = &self.packed;
        let stride = pk.k_padded;
        let sink = HybridSink {
            params: &scratch.params[..rows],
            packed: pk,
            spec,
        };
        let q = elements::<K::Input>(&scratch.quantized, rows * stride);
        driver::run(
            self.kernel,
            pk,
            Rows { x: q, stride, rows },
            &sink,
            out,
            threads,
        );
    }
}

/// The hybrid epilogue as the driver's sink.
pub(crate) struct HybridSink<'a> {
    /// The rows' parameters.
    pub(crate) params: &'a [RowParams],
    /// The packed weights (for their channel constants).
    pub(crate) packed: &'a PackedWeights,
    /// The epilogue.
    pub(crate) spec: EpilogueSpec,
}

impl TileSink for HybridSink<'_> {
    type Out = f32;

    fn finish<W: Width>(&self, width: W, acc: &[i32], at: TileAt, out: &mut OutRegion<'_, f32>) {
        let TileAt {
            channels,
            r0,
            c0,
            offset,
        } = at;
        let pk = self.packed;
        let mut t = HybridTile {
            acc,
            channels,
            params: &self.params[r0..r0 + out.rows()],
            row_sums: &pk.row_sums[c0..c0 + channels],
            scales: &pk.scales[c0..c0 + channels],
            init: &pk.init[c0..c0 + channels],
            offset,
            spec: self.spec,
            out,
        };
        width.hybrid(&mut t);
    }

    fn finish_long(&self, acc: &[i64], at: TileAt, out: &mut OutRegion<'_, f32>) {
        let TileAt {
            channels,
            r0,
            c0,
            offset,
        } = at;
        let pk = self.packed;
        for r in 0..out.rows() {
            let p = self.params[r0 + r];
            let zp = p.zero_point as i64 + offset as i64;
            let row = out.row(r);
            for (c, o) in row.iter_mut().enumerate() {
                let ch = c0 + c;
                let v = acc[r * channels + c] - pk.row_sums[ch] as i64 * zp;
                *o = self.spec.value(v, p.scale, pk.scales[ch], pk.init[ch]);
            }
        }
    }
}

/// One tile's hybrid epilogue operands: the i32 dots, the rows' parameters, the tile's
/// channel constants (at least `channels` of each, padded), and where the outputs go.
pub(crate) struct HybridTile<'a, 'o> {
    /// Dots, `acc[r * channels + c]`, including `row_sum * offset`.
    pub(crate) acc: &'a [i32],
    /// Row stride of `acc` (the kernel's channels).
    pub(crate) channels: usize,
    /// Parameters of the region's rows.
    pub(crate) params: &'a [RowParams],
    /// Row sums of the tile's channels.
    pub(crate) row_sums: &'a [i32],
    /// Weight scales of the tile's channels.
    pub(crate) scales: &'a [f32],
    /// Bias (or 0.0) of the tile's channels.
    pub(crate) init: &'a [f32],
    /// The kernel's input offset (128 for `q + 128`).
    pub(crate) offset: i32,
    /// The epilogue.
    pub(crate) spec: EpilogueSpec,
    /// The outputs: `out.rows()` rows of `out.width()` values.
    pub(crate) out: &'a mut OutRegion<'o, f32>,
}

impl HybridTile<'_, '_> {
    /// Asserts what a vector epilogue reads and writes: channels a multiple of
    /// `channel_multiple` (the width's [`Width::CHANNEL_MULTIPLE`]), `channels` constants of
    /// each kind, `channels` dots and one parameter set per output row.
    pub(crate) fn assert_bounds(&self, channel_multiple: usize) {
        let ch = self.channels;
        assert!(
            ch.is_multiple_of(channel_multiple)
                && self.row_sums.len() >= ch
                && self.scales.len() >= ch
                && self.init.len() >= ch
        );
        assert!(self.acc.len() >= self.out.rows() * ch && self.params.len() >= self.out.rows());
    }

    /// Whether any of the tile's rows has a zero point (the vector epilogues skip the
    /// `row_sum * zp` product for tiles without one).
    pub(crate) fn any_zero_point(&self) -> bool {
        self.params[..self.out.rows()]
            .iter()
            .any(|p| p.zero_point != 0)
    }

    /// The definition: `spec.value(acc - row_sum * (zp + offset))`, the correction in
    /// wrapping i32 (exact, since the true value fits for `K <= I32_COMBINE_MAX_K`).
    pub(crate) fn portable(&mut self) {
        for r in 0..self.out.rows() {
            let p = self.params[r];
            let zp = p.zero_point.wrapping_add(self.offset);
            let acc = &self.acc[r * self.channels..];
            let (rs, ws, init, spec) = (self.row_sums, self.scales, self.init, self.spec);
            for (c, o) in self.out.row(r).iter_mut().enumerate() {
                let v = acc[c].wrapping_sub(rs[c].wrapping_mul(zp));
                *o = spec.value(v as i64, p.scale, ws[c], init[c]);
            }
        }
    }
}
