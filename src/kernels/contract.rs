//! The kernel contract: what an int8 product kernel and an f32 product kernel promise, and the
//! vector-width tokens that the shared epilogues and quantizers run on.
//!
//! A kernel value can only be made by `new()`, which returns `Some` only where the CPU runs
//! every instruction the kernel uses (rten-gemm's pattern): holding one is the proof that its
//! methods may execute those instructions, so they are safe functions that check their slice
//! bounds once per call. The traits are `unsafe` to implement because the rest of the crate
//! relies on that promise.

use crate::flavour::Flavour;
use crate::integer::TensorQuant;
use crate::quantize::inputs::RowParams;
#[cfg(doc)]
use crate::quantize::plan::RowPlan;

/// The element type of a kernel's quantized input rows.
pub(crate) trait InputElement:
    Copy + Default + Send + Sync + std::fmt::Debug + 'static
{
    /// The value that pads a row past K: it must contribute nothing once the kernel's
    /// [`Int8Kernel::INPUT_OFFSET`] correction is applied (0 for i8/i16, 128 for `q + 128`).
    const PAD: Self;
    /// The element for the int8 value `q` (widened, or offset by 128).
    fn from_q(q: i32) -> Self;
    /// The int8 value the element stands for.
    fn to_q(self) -> i32;
}

impl InputElement for i8 {
    const PAD: Self = 0;
    #[inline]
    fn from_q(q: i32) -> Self {
        q as i8
    }
    #[inline]
    fn to_q(self) -> i32 {
        self as i32
    }
}

impl InputElement for i16 {
    const PAD: Self = 0;
    #[inline]
    fn from_q(q: i32) -> Self {
        q as i16
    }
    #[inline]
    fn to_q(self) -> i32 {
        self as i32
    }
}

impl InputElement for u8 {
    const PAD: Self = 128;
    #[inline]
    fn from_q(q: i32) -> Self {
        (q + 128) as u8
    }
    #[inline]
    fn to_q(self) -> i32 {
        self as i32 - 128
    }
}

/// A proof that the CPU runs the vector code of one width, and the shared code of that width:
/// the hybrid and the full-integer epilogues over a tile of i32 dots. One implementation per
/// width (portable, 256-bit, 512-bit), shared by every kernel of that width.
///
/// # Safety
/// A value may only exist where the CPU supports the instructions its methods use.
pub(crate) unsafe trait Width: Copy + Send + Sync + 'static {
    /// The epilogues take tiles whose channels are a multiple of this (a kernel's
    /// `CHANNELS` must be one: checked when the kernel's tiles are built).
    const CHANNEL_MULTIPLE: usize;
    /// The hybrid epilogue of one tile (see [`crate::engine`]).
    fn hybrid(self, t: &mut crate::engine::hybrid::HybridTile<'_, '_>);
    /// The full-integer epilogue of one tile.
    fn integer(self, t: &mut crate::engine::integer::IntegerTile<'_, '_>);
    /// [`TensorQuant::quantize`] of every value of `x` into `out` (as long); returns whether
    /// every value was finite, found on the same pass (the full-integer layer refuses the
    /// input otherwise).
    fn quantize_int8(self, q: TensorQuant, x: &[f32], out: &mut [i8]) -> bool;
}

/// An int8 x int8 -> i32 product kernel on packed weights ([`crate::gemm::pack`]).
///
/// The kernel computes raw dot products of a tile of `ROWS` input rows against `CHANNELS`
/// channels (`CHANNELS / 16` consecutive panels); the driver ([`crate::gemm::driver`]) walks
/// the tiles and hands each one to an epilogue of the kernel's [`Width`]. `Small` is the
/// kernel the driver uses for the rows left over after the full tiles: the same packed layout
/// and input, fewer rows (a one-row kernel is its own `Small`).
///
/// # Safety
/// `new` returns `Some` only where the CPU supports every instruction of `dots`, `quantize`
/// and `width`'s methods; `dots` reads only within the slices it is given (it asserts the
/// lengths its arguments imply) and writes only `acc[..ROWS * CHANNELS]`.
pub(crate) unsafe trait Int8Kernel: Copy + Send + Sync + 'static {
    /// The registry name (`avx2`, `avx512vnni`, ...).
    const NAME: &'static str;
    /// Input rows of a tile.
    const ROWS: usize;
    /// Output channels of a tile: a multiple of 16 and of its width's
    /// [`Width::CHANNEL_MULTIPLE`].
    const CHANNELS: usize;
    /// K values per packed step.
    const K_STEP: usize;
    /// K is padded to a multiple of this (a multiple of `K_STEP`).
    const K_ALIGN: usize;
    /// Added to every input value (`q + 128` for the u8 kernels); the epilogue subtracts
    /// `row_sum * INPUT_OFFSET`.
    const INPUT_OFFSET: i32;
    /// Longest run of K values one call of `dots` sums exactly in i32 lanes.
    const EXACT_RUN: usize;
    /// The input element.
    type Input: InputElement;
    /// The width of the shared epilogue this kernel feeds.
    type Width: Width;
    /// The kernel for left-over rows.
    type Small: Int8Kernel<Input = Self::Input>;

    /// The kernel, where this CPU runs it.
    fn new() -> Option<Self>;
    /// The kernel for left-over rows.
    fn small(self) -> Self::Small;
    /// The kernel tuned for a layer of `weight_bytes` packed weights, chosen once per layer
    /// (by default the kernel itself): a kernel whose best loop depends on whether the weights
    /// stay in L2 between calls picks it here. The choice may change speed, never a value.
    fn for_weights(self, weight_bytes: usize) -> Self {
        let _ = weight_bytes;
        self
    }
    /// The epilogue width.
    fn width(self) -> Self::Width;

    /// Quantizes a row in `flavour` into `out` (at least `row.len()` values), padding
    /// `out[row.len()..]` with [`InputElement::PAD`], and returns its parameters: bit for bit
    /// [`RowPlan::one`] of [`crate::quantize::plan::plan_row`]. `None` when the row holds a
    /// NaN or an infinity, found on the pass that finds its range (`out` then holds
    /// unspecified values): the layer needs no pass of its own over the input.
    fn quantize(
        self,
        flavour: Flavour,
        asymmetric: bool,
        row: &[f32],
        out: &mut [Self::Input],
    ) -> Option<RowParams>;

    /// The raw dots of a tile: for `r < rows` (`1 <= rows <= ROWS`) and `c < CHANNELS`,
    /// `acc[r * CHANNELS + c] = sum_{s < steps} sum_{g < K_STEP} x[r][s * K_STEP + g] *
    /// w[c][s * K_STEP + g]` in wrapping i32, where row r starts at `x[r * x_stride]` and
    /// channel c's panel at `w[(c / 16) * panel_stride]`. Rows at and past `rows` of `acc`
    /// hold unspecified values.
    #[allow(clippy::too_many_arguments)]
    fn dots(
        self,
        x: &[Self::Input],
        x_stride: usize,
        rows: usize,
        w: &[i8],
        panel_stride: usize,
        steps: usize,
        acc: &mut [i32],
    );

    /// [`Int8Kernel::dots`] that also pulls the weights `pull` names into L2 while it runs
    /// (a speed hint: the dots are the same). The default ignores the hint.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn dots_pulling(
        self,
        x: &[Self::Input],
        x_stride: usize,
        rows: usize,
        w: &[i8],
        panel_stride: usize,
        steps: usize,
        pull: Pull,
        acc: &mut [i32],
    ) {
        let _ = pull;
        self.dots(x, x_stride, rows, w, panel_stride, steps, acc);
    }

    /// The dots of `tiles` consecutive channel tiles of the same rows: tile `t` reads the
    /// panels at `w[t * tile_stride..]` and its dots (as [`Int8Kernel::dots`] gives them) are
    /// handed to `finish(t, acc)` before the next tile starts; the first `pull.tiles` tiles
    /// pull `pull`'s weights into L2 ([`Int8Kernel::dots_pulling`], with [`Pull::NONE`] for
    /// the others). The default is a `dots_pulling` call per tile; a kernel with a setup cost
    /// per call (AMX's tile configuration) pays it once per run.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn dots_run(
        self,
        x: &[Self::Input],
        x_stride: usize,
        rows: usize,
        w: &[i8],
        panel_stride: usize,
        tile_stride: usize,
        steps: usize,
        tiles: usize,
        pull: PullRun,
        acc: &mut [i32],
        finish: &mut impl FnMut(usize, &[i32]),
    ) {
        for t in 0..tiles {
            let w = &w[t * tile_stride..];
            let each = pull.of_tile(t);
            self.dots_pulling(x, x_stride, rows, w, panel_stride, steps, each, acc);
            finish(t, acc);
        }
    }

    /// The one-core peak of the kernel's core instruction in GOP/s (see `Kernel::peak_gops`),
    /// or `None` for the portable reference.
    fn peak_gops(self) -> Option<f64>;
}

/// Weights a tile pulls into L2 while it computes, so that a later pass over them reads L2
/// instead of streaming from L3 (a speed hint; no value depends on it): for the K steps `s`
/// with `s % every == phase`, the bytes that step reads from each of the tile's panels, moved
/// `delta` bytes on. The driver spreads one channel group's pull over the row blocks that
/// follow the group's first ([`crate::gemm::driver`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pull {
    /// Bytes from the tile's weights to the weights to pull.
    pub(crate) delta: usize,
    /// The period, in K steps, of the steps whose bytes are pulled (at least 1).
    pub(crate) every: usize,
    /// The first such step (`phase < every`).
    pub(crate) phase: usize,
}

impl Pull {
    /// Nothing to pull.
    pub(crate) const NONE: Pull = Pull {
        delta: 0,
        every: 1,
        phase: 0,
    };
}

/// A [`Pull`] for the first `tiles` tiles of a run ([`Int8Kernel::dots_run`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PullRun {
    /// What each of those tiles pulls.
    pub(crate) each: Pull,
    /// How many tiles, from the first, pull.
    pub(crate) tiles: usize,
}

impl PullRun {
    /// What tile `t` of the run pulls: `each` for the first `tiles`, nothing after.
    pub(crate) fn of_tile(self, t: usize) -> Pull {
        if t < self.tiles {
            self.each
        } else {
            Pull::NONE
        }
    }

    /// No tile pulls.
    pub(crate) const NONE: PullRun = PullRun {
        each: Pull::NONE,
        tiles: 0,
    };
}

/// The operands of one f32 register tile: `m` input rows against `np` consecutive panels.
///
/// Raw pointers, because the tasks of a threaded call write disjoint columns of one output.
pub(crate) struct F32Tile {
    /// The `m` input rows interleaved p-major: `x[p * m + r]`, `k * m` values.
    pub(crate) x: *const f32,
    /// Rows of the tile (`1 <= m <= ROWS`).
    pub(crate) m: usize,
    /// Depth K (at least 1).
    pub(crate) k: usize,
    /// `np` consecutive panels of `k * 16` values each (channel-minor, zero padded).
    pub(crate) panels: *const f32,
    /// Panels of the tile (`1 <= np <= PANELS`, or `<= ROW_PANELS` when `m == 1`).
    pub(crate) np: usize,
    /// Output columns to write: `(np - 1) * 16 < cols <= np * 16`.
    pub(crate) cols: usize,
    /// Output row 0, column 0 of the tile; row `r` starts at `out + r * ldo`.
    pub(crate) out: *mut f32,
    /// The output's row stride.
    pub(crate) ldo: usize,
}

/// An f32 product kernel for the float layer, on panels of 16 channels (`K x 16`, K-major).
///
/// Every output is one in-order chain of fused multiply-adds over K from `+0.0`, so every f32
/// kernel gives the bits of the scalar twin (`f32::mul_add`) whatever its tile.
///
/// # Safety
/// As [`Int8Kernel`]: `new` returns `Some` only where the CPU runs the kernel, and `tile`
/// reads and writes only what its [`F32Tile`] describes.
pub(crate) unsafe trait F32Kernel: Copy + Send + Sync + 'static {
    /// The registry name.
    const NAME: &'static str;
    /// Most rows of a tile.
    const ROWS: usize;
    /// Most panels of a tile of several rows.
    const PANELS: usize;
    /// Most panels of a one-row tile (a single row needs more panels for enough chains).
    const ROW_PANELS: usize;
    /// The kernel, where this CPU runs it.
    fn new() -> Option<Self>;
    /// `out[r * ldo + c] = chain_p fma(x[p * m + r], panel[c / 16][p * 16 + c % 16], acc)`
    /// from `+0.0`, for `r < m` and `c < cols`.
    ///
    /// # Safety
    /// Every pointer of `t` is valid for the extent its field describes, the bounds on `m`,
    /// `np` and `cols` hold, and no other thread writes the tile's outputs during the call.
    unsafe fn tile(self, t: &F32Tile);
}
