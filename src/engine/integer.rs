//! The full-integer scheme on one kernel: int8 rows converted to the kernel's input, the
//! integer product, and TFLite's requantizing epilogue (numerics.md section 6).

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::gemm::driver::{self, Rows, TileAt, TileSink};
use crate::gemm::pack::{elements, elements_mut, PackedWeights};
use crate::gemm::OutRegion;
use crate::integer::TensorQuant;
use crate::kernels::contract::{InputElement, Int8Kernel, Width};
use crate::kernels::Kernel;
use crate::layer::scratch::Scratch;
use crate::toolkit::fixed_point::{
    multiply_by_quantized_multiplier, Rounding, MAX_SHIFT, MIN_SHIFT,
};

/// What the engine needs of an `IntegerLinear`: weights, their row sums, the i32 bias, the
/// per-channel fixed-point multipliers, the zero points, the rounding and the output range.
#[derive(Clone, Debug)]
pub(crate) struct IntegerParams {
    /// Row-major int8 weights `[n, k]`.
    pub(crate) weights: Vec<i8>,
    /// Output channels.
    pub(crate) n: usize,
    /// Depth.
    pub(crate) k: usize,
    /// `sum_k w[n][k]`.
    pub(crate) row_sums: Vec<i32>,
    /// i32 bias (zeros without one).
    pub(crate) bias: Vec<i32>,
    /// Per-channel `M0` (per-tensor repeated).
    pub(crate) m0: Vec<i32>,
    /// Per-channel shift.
    pub(crate) shift: Vec<i32>,
    /// The input zero point.
    pub(crate) input_zero_point: i32,
    /// The output zero point.
    pub(crate) output_zero_point: i32,
    /// The clamp range (the activation's, in the quantized domain).
    pub(crate) act_min: i32,
    /// Upper end of the clamp range.
    pub(crate) act_max: i32,
}

/// A full-integer product on some kernel: what `IntegerLinear` holds.
pub(crate) trait IntegerProduct: Send + Sync {
    /// The kernel it runs.
    fn kernel(&self) -> Kernel;
    /// `out[rows, n] = requantize(x[rows, k] * W^T)` with `rounding`.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        x: &[i8],
        rows: usize,
        rounding: Rounding,
        out: &mut [i8],
        scratch: &mut Scratch,
        threads: usize,
    );
    /// [`TensorQuant::quantize`] of every input value of `rows` rows, in the kernel's vector
    /// width, split by rows over up to `threads` threads where the batch is large enough
    /// ([`super::rows_per_piece`], from `PASS_PARALLEL_VALUES` values); returns whether every
    /// value was finite.
    fn quantize_input(
        &self,
        q: TensorQuant,
        x: &[f32],
        rows: usize,
        out: &mut [i8],
        threads: usize,
    ) -> bool;
    /// [`IntegerProduct::run`] with every output code dequantized by `output`
    /// ([`TensorQuant::dequantize`], whose zero point is the layer's output zero point) in the
    /// epilogue, as it is made: the float API's outputs without a pass over the codes.
    #[allow(clippy::too_many_arguments)]
    fn run_dequantized(
        &self,
        x: &[i8],
        rows: usize,
        rounding: Rounding,
        output: TensorQuant,
        out: &mut [f32],
        scratch: &mut Scratch,
        threads: usize,
    );
}

/// Values below which the float API's pass over the inputs (their quantization) stays on
/// the calling thread: below it, handing the pieces to the pool costs about what it saves.
/// On the Intel Xeon family 6 model 207, 2 threads, six alternating processes each, median us
/// with the pass on one thread / split: 4 x 1024 x 1024 13.8 / 14.9, 8 x 1024 x 1024
/// 23.6 / 22.3 (best calls 18.4 / 18.5), 16 x 1024 x 1024 40.3 / 39.9, 32 x 1024 x 1024
/// 73.6 / 70.4, 64 x 768 x 3072 268 / 263.
const PASS_PARALLEL_VALUES: usize = 1 << 15;

impl fmt::Debug for dyn IntegerProduct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IntegerProduct({})", self.kernel())
    }
}

/// The full-integer product on kernel `K`.
pub(crate) struct IntegerEngine<K: Int8Kernel> {
    kernel: K,
    id: Kernel,
    packed: PackedWeights,
    /// The channel constants, padded to the packed panels.
    consts: ChannelConsts,
    params: Scalars,
}

/// Per-channel constants, zero padded to the packed weights' channels.
#[derive(Clone, Debug)]
struct ChannelConsts {
    /// `bias - (input_zero_point + offset) * row_sum` in wrapping i32: with the kernel's dots
    /// (which include `offset * row_sum`), `acc + fold = dot - zp * row_sum + bias`.
    fold: Vec<i32>,
    m0: Vec<i32>,
    /// Shifts clamped to `MIN_SHIFT..=MAX_SHIFT` (what the multiply does with any other).
    shift: Vec<i32>,
}

/// The per-layer scalars of the epilogue.
#[derive(Clone, Copy, Debug)]
struct Scalars {
    output_zero_point: i32,
    act_min: i32,
    act_max: i32,
}

impl<K: Int8Kernel> IntegerEngine<K> {
    /// Packs the weights for `kernel`.
    pub(crate) fn new(kernel: K, id: Kernel, p: &IntegerParams) -> Self {
        let packed = PackedWeights::new(
            &p.weights,
            p.n,
            p.k,
            super::hybrid::layout_of::<K>(),
            &p.row_sums,
            |_| 1.0,
            None,
        );
        let padded = packed.panels * crate::gemm::pack::PANEL;
        let zp = p.input_zero_point.wrapping_add(K::INPUT_OFFSET);
        let mut consts = ChannelConsts {
            fold: vec![0; padded],
            m0: vec![0; padded],
            shift: vec![0; padded],
        };
        for c in 0..p.n {
            consts.fold[c] = p.bias[c].wrapping_sub(zp.wrapping_mul(p.row_sums[c]));
            consts.m0[c] = p.m0[c];
            consts.shift[c] = p.shift[c].clamp(MIN_SHIFT, MAX_SHIFT);
        }
        Self {
            kernel: kernel.for_weights(packed.weight_bytes()),
            id,
            consts,
            packed,
            params: Scalars {
                output_zero_point: p.output_zero_point,
                act_min: p.act_min,
                act_max: p.act_max,
            },
        }
    }
}

impl<K: Int8Kernel> IntegerProduct for IntegerEngine<K> {
    fn kernel(&self) -> Kernel {
        self.id
    }

    fn quantize_input(
        &self,
        q: TensorQuant,
        x: &[f32],
        rows: usize,
        out: &mut [i8],
        threads: usize,
    ) -> bool {
        let width = self.kernel.width();
        let out = &mut out[..x.len()];
        let Some(per) = super::rows_per_piece(rows, x.len(), threads, PASS_PARALLEL_VALUES) else {
            return width.quantize_int8(q, x, out);
        };
        let piece = per * (x.len() / rows);
        let finite = AtomicBool::new(true);
        crate::gemm::pool::for_each_chunk(out, piece, threads, |i, out| {
            if !width.quantize_int8(q, &x[i * piece..][..out.len()], out) {
                finite.store(false, Ordering::Relaxed);
            }
        });
        finite.into_inner()
    }

    fn run(
        &self,
        x: &[i8],
        rows: usize,
        rounding: Rounding,
        out: &mut [i8],
        scratch: &mut Scratch,
        threads: usize,
    ) {
        self.run_into(x, rows, rounding, 0.0, out, scratch, threads);
    }

    fn run_dequantized(
        &self,
        x: &[i8],
        rows: usize,
        rounding: Rounding,
        output: TensorQuant,
        out: &mut [f32],
        scratch: &mut Scratch,
        threads: usize,
    ) {
        assert_eq!(output.zero_point, self.params.output_zero_point);
        self.run_into(x, rows, rounding, output.scale, out, scratch, threads);
    }
}

impl<K: Int8Kernel> IntegerEngine<K> {
    /// The product into codes or (`O = f32`) reals of scale `scale`.
    #[allow(clippy::too_many_arguments)]
    fn run_into<O: IntegerElement>(
        &self,
        x: &[i8],
        rows: usize,
        rounding: Rounding,
        scale: f32,
        out: &mut [O],
        scratch: &mut Scratch,
        threads: usize,
    ) {
        let pk = &self.packed;
        let (k, stride) = (pk.k, pk.k_padded);
        assert!(x.len() >= rows * k);
        let q = elements_mut::<K::Input>(&mut scratch.quantized, rows * stride);
        for (r, dst) in q.chunks_exact_mut(stride).enumerate() {
            for (d, &v) in dst.iter_mut().zip(&x[r * k..(r + 1) * k]) {
                *d = K::Input::from_q(v as i32);
            }
            dst[k..].fill(K::Input::PAD);
        }
        let q = elements::<K::Input>(&scratch.quantized, rows * stride);
        let sink = IntegerSink {
            consts: &self.consts,
            params: self.params,
            rounding,
            scale,
            out: PhantomData::<O>,
        };
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

/// An output element of the full-integer epilogue: the int8 code, or the code dequantized.
pub(crate) trait IntegerElement: Copy + Send + Sync + 'static {
    /// The tile's outputs in `region` (`scale`: the dequantization's, for reals).
    fn outputs<'a, 'o>(region: &'a mut OutRegion<'o, Self>, scale: f32) -> IntegerOut<'a, 'o>;
}

impl IntegerElement for i8 {
    fn outputs<'a, 'o>(region: &'a mut OutRegion<'o, i8>, _: f32) -> IntegerOut<'a, 'o> {
        IntegerOut::Codes(region)
    }
}

impl IntegerElement for f32 {
    fn outputs<'a, 'o>(region: &'a mut OutRegion<'o, f32>, scale: f32) -> IntegerOut<'a, 'o> {
        IntegerOut::Reals(region, scale)
    }
}

/// The requantizing epilogue as the driver's sink, into codes (`O = i8`) or reals (`O = f32`,
/// each code dequantized with `scale` and the output zero point).
struct IntegerSink<'a, O> {
    consts: &'a ChannelConsts,
    params: Scalars,
    rounding: Rounding,
    scale: f32,
    out: PhantomData<O>,
}

impl<O: IntegerElement> IntegerSink<'_, O> {
    /// The tile of channels `[c0, c0 + channels)` over `acc`.
    fn tile<'a, 'o>(
        &'a self,
        acc: &'a [i32],
        channels: usize,
        c0: usize,
        out: &'a mut OutRegion<'o, O>,
    ) -> IntegerTile<'a, 'o> {
        let (c, s) = (self.consts, self.params);
        let range = c0..c0 + channels;
        IntegerTile {
            acc,
            channels,
            fold: &c.fold[range.clone()],
            m0: &c.m0[range.clone()],
            shift: &c.shift[range],
            output_zero_point: s.output_zero_point,
            rounding: self.rounding,
            act_min: s.act_min,
            act_max: s.act_max,
            out: O::outputs(out, self.scale),
        }
    }
}

impl<O: IntegerElement> TileSink for IntegerSink<'_, O> {
    type Out = O;

    fn finish<W: Width>(&self, width: W, acc: &[i32], at: TileAt, out: &mut OutRegion<'_, O>) {
        width.integer(&mut self.tile(acc, at.channels, at.c0, out));
    }

    fn finish_long(&self, acc: &[i64], at: TileAt, out: &mut OutRegion<'_, O>) {
        // TFLite's i32 accumulator wraps: the exact i64 dot, truncated, is what it holds.
        let wrapped: Vec<i32> = acc.iter().map(|&v| v as i32).collect();
        self.tile(&wrapped, at.channels, at.c0, out).portable();
    }
}

/// Where a tile's outputs go.
pub(crate) enum IntegerOut<'a, 'o> {
    /// The int8 codes.
    Codes(&'a mut OutRegion<'o, i8>),
    /// Each code dequantized: `scale * (code - output_zero_point)` in f32, the operations of
    /// [`TensorQuant::dequantize`].
    Reals(&'a mut OutRegion<'o, f32>, f32),
}

impl IntegerOut<'_, '_> {
    /// Rows of the region.
    pub(crate) fn rows(&self) -> usize {
        match self {
            IntegerOut::Codes(o) => o.rows(),
            IntegerOut::Reals(o, _) => o.rows(),
        }
    }

    /// Columns of the region.
    pub(crate) fn width(&self) -> usize {
        match self {
            IntegerOut::Codes(o) => o.width(),
            IntegerOut::Reals(o, _) => o.width(),
        }
    }
}

/// One tile's requantization operands.
pub(crate) struct IntegerTile<'a, 'o> {
    /// Dots `acc[r * channels + c]` (including `row_sum * offset`).
    pub(crate) acc: &'a [i32],
    /// Row stride of `acc`.
    pub(crate) channels: usize,
    /// `bias - (zp + offset) * row_sum` (wrapping) of the tile's channels.
    pub(crate) fold: &'a [i32],
    /// `M0` of the tile's channels.
    pub(crate) m0: &'a [i32],
    /// Shifts of the tile's channels, clamped to `MIN_SHIFT..=MAX_SHIFT`.
    pub(crate) shift: &'a [i32],
    /// Output zero point.
    pub(crate) output_zero_point: i32,
    /// The multiply's rounding.
    pub(crate) rounding: Rounding,
    /// Lower end of the output range.
    pub(crate) act_min: i32,
    /// Upper end.
    pub(crate) act_max: i32,
    /// The outputs.
    pub(crate) out: IntegerOut<'a, 'o>,
}

impl IntegerTile<'_, '_> {
    /// The definition: `acc - zp * row_sum + bias` in wrapping i32 (`acc + fold`), the
    /// fixed-point multiply, `+ Z_y` (saturating), the clamp; for reals, the code
    /// dequantized.
    pub(crate) fn portable(&mut self) {
        let (fold, m0, shift) = (self.fold, self.m0, self.shift);
        let (zy, rounding) = (self.output_zero_point, self.rounding);
        let (lo, hi) = (self.act_min, self.act_max);
        for r in 0..self.out.rows() {
            let acc = &self.acc[r * self.channels..];
            let code = |c: usize| {
                let a = acc[c].wrapping_add(fold[c]);
                let y = multiply_by_quantized_multiplier(a, m0[c], shift[c], rounding)
                    .saturating_add(zy);
                y.clamp(lo, hi) as i8
            };
            match &mut self.out {
                IntegerOut::Codes(o) => {
                    for (c, o) in o.row(r).iter_mut().enumerate() {
                        *o = code(c);
                    }
                }
                IntegerOut::Reals(o, scale) => {
                    let q = TensorQuant {
                        scale: *scale,
                        zero_point: zy,
                    };
                    for (c, o) in o.row(r).iter_mut().enumerate() {
                        *o = q.dequantize(code(c));
                    }
                }
            }
        }
    }
}
