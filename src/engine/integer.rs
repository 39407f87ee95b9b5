//! The full-integer scheme on one kernel: int8 rows converted to the kernel's input, the
//! integer product, and TFLite's requantizing epilogue (numerics.md section 6).

use std::fmt;

use crate::gemm::driver::{self, Rows, TileSink};
use crate::gemm::pack::{elements, elements_mut, PackedWeights};
use crate::gemm::OutRegion;
use crate::kernels::contract::{InputElement, Int8Kernel, Width};
use crate::kernels::Kernel;
use crate::layer::scratch::Scratch;
use crate::toolkit::fixed_point::{multiply_by_quantized_multiplier, Rounding};

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
}

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
    row_sums: Vec<i32>,
    bias: Vec<i32>,
    m0: Vec<i32>,
    shift: Vec<i32>,
}

/// The per-layer scalars of the epilogue.
#[derive(Clone, Copy, Debug)]
struct Scalars {
    input_zero_point: i32,
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
        let pad = |v: &[i32]| {
            let mut out = vec![0i32; padded];
            out[..v.len()].copy_from_slice(v);
            out
        };
        Self {
            kernel,
            id,
            consts: ChannelConsts {
                row_sums: pad(&p.row_sums),
                bias: pad(&p.bias),
                m0: pad(&p.m0),
                shift: pad(&p.shift),
            },
            packed,
            params: Scalars {
                input_zero_point: p.input_zero_point,
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

    fn run(
        &self,
        x: &[i8],
        rows: usize,
        rounding: Rounding,
        out: &mut [i8],
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

/// The requantizing epilogue as the driver's sink.
struct IntegerSink<'a> {
    consts: &'a ChannelConsts,
    params: Scalars,
    rounding: Rounding,
}

impl TileSink for IntegerSink<'_> {
    type Out = i8;

    fn finish<W: Width>(
        &self,
        width: W,
        acc: &[i32],
        channels: usize,
        _r0: usize,
        c0: usize,
        offset: i32,
        out: &mut OutRegion<'_, i8>,
    ) {
        let c = self.consts;
        let s = self.params;
        let range = c0..c0 + channels;
        let mut t = IntegerTile {
            acc,
            channels,
            row_sums: &c.row_sums[range.clone()],
            bias: &c.bias[range.clone()],
            m0: &c.m0[range.clone()],
            shift: &c.shift[range],
            zero_point: s.input_zero_point.wrapping_add(offset),
            output_zero_point: s.output_zero_point,
            rounding: self.rounding,
            act_min: s.act_min,
            act_max: s.act_max,
            out,
        };
        width.integer(&mut t);
    }

    fn finish_long(
        &self,
        acc: &[i64],
        channels: usize,
        _r0: usize,
        c0: usize,
        offset: i32,
        out: &mut OutRegion<'_, i8>,
    ) {
        // TFLite's i32 accumulator wraps: the exact i64 dot, truncated, is what it holds.
        let wrapped: Vec<i32> = acc.iter().map(|&v| v as i32).collect();
        let c = self.consts;
        let s = self.params;
        let range = c0..c0 + channels;
        IntegerTile {
            acc: &wrapped,
            channels,
            row_sums: &c.row_sums[range.clone()],
            bias: &c.bias[range.clone()],
            m0: &c.m0[range.clone()],
            shift: &c.shift[range],
            zero_point: s.input_zero_point.wrapping_add(offset),
            output_zero_point: s.output_zero_point,
            rounding: self.rounding,
            act_min: s.act_min,
            act_max: s.act_max,
            out,
        }
        .portable();
    }
}

/// One tile's requantization operands.
pub(crate) struct IntegerTile<'a, 'o> {
    /// Dots `acc[r * channels + c]` (including `row_sum * offset`).
    pub(crate) acc: &'a [i32],
    /// Row stride of `acc`.
    pub(crate) channels: usize,
    /// Row sums of the tile's channels.
    pub(crate) row_sums: &'a [i32],
    /// i32 bias of the tile's channels.
    pub(crate) bias: &'a [i32],
    /// `M0` of the tile's channels.
    pub(crate) m0: &'a [i32],
    /// Shifts of the tile's channels.
    pub(crate) shift: &'a [i32],
    /// Input zero point plus the kernel's input offset.
    pub(crate) zero_point: i32,
    /// Output zero point.
    pub(crate) output_zero_point: i32,
    /// The multiply's rounding.
    pub(crate) rounding: Rounding,
    /// Lower end of the output range.
    pub(crate) act_min: i32,
    /// Upper end.
    pub(crate) act_max: i32,
    /// The outputs.
    pub(crate) out: &'a mut OutRegion<'o, i8>,
}

impl IntegerTile<'_, '_> {
    /// The definition: `acc - zp * row_sum + bias` in wrapping i32, the fixed-point multiply,
    /// `+ Z_y` (saturating), the clamp.
    pub(crate) fn portable(&mut self) {
        for r in 0..self.out.rows() {
            let acc = &self.acc[r * self.channels..];
            let (rs, bias, m0, shift) = (self.row_sums, self.bias, self.m0, self.shift);
            let (zp, zy, rounding) = (self.zero_point, self.output_zero_point, self.rounding);
            let (lo, hi) = (self.act_min, self.act_max);
            for (c, o) in self.out.row(r).iter_mut().enumerate() {
                let a = acc[c]
                    .wrapping_sub(zp.wrapping_mul(rs[c]))
                    .wrapping_add(bias[c]);
                let y = multiply_by_quantized_multiplier(a, m0[c], shift[c], rounding)
                    .saturating_add(zy);
                *o = y.clamp(lo, hi) as i8;
            }
        }
    }
}
