//! The AVX-512 VNNI int8 kernels (`avx512vnni`): `vpdpbusd` on inputs offset to u8.
//!
//! **Products.** `vpdpbusd` multiplies unsigned bytes by signed bytes, four adjacent pairs per
//! i32 lane, and adds the four products to the lane without saturation. The inputs are made
//! unsigned by adding 128 (`u = q + 128` in [0, 255], written so by the quantizer); each
//! product `u * w` is at most `255 * 128 = 32,640` in magnitude, which the instruction's 16-bit
//! intermediates hold, and a lane holds `sum_k (q + 128) * w = dot + 128 * row_sum`, exact in
//! i32 while `K * 255 * 128 < 2^31`, i.e. K <= 65,793 (`EXACT_RUN`; the driver cuts longer K
//! into chunks added in i64). The epilogue subtracts `row_sum * (zp + 128)`.
//!
//! **Tiles** (register-blocked, sized by measurement, see `docs/kernels.md`): per K quad,
//! `PANELS` 64-byte weight loads (16 channels x 4 K each, one per panel) are reused by every
//! row, and each row broadcasts its four u8 once for all panels: `ROWS x PANELS` independent
//! `vpdpbusd` chains, enough to cover the instruction's latency at two per cycle. The one-row
//! kernel instead keeps `PANELS` weight streams in flight with `UNROLL` quads per iteration into
//! independent accumulators and prefetches each stream.

use std::arch::x86_64::*;

use super::v512::V512;
use crate::flavour::Flavour;
use crate::gemm::pack::PANEL;
use crate::kernels::contract::{Int8Kernel, Pull, PullRun};
use crate::quantize::inputs::RowParams;

/// Bytes of one K quad of one panel.
const QUAD_BYTES: usize = 4 * PANEL;

/// Longest run of u8 x i8 products an i32 lane holds exactly: `65_793 * 255 * 128 < 2^31`.
pub(crate) const EXACT_U8_RUN: usize = 65_793;

/// Bytes ahead at which the tiles, and on Intel the one-row kernel, prefetch each weight
/// stream.
const PREFETCH: usize = 2048;

/// Proof that the CPU runs AVX-512 VNNI (with the [`V512`] width), with the one-row kernel's
/// prefetch distance for this CPU ([`super::weight_prefetch`]) and whether the tiles act on
/// the driver's L2 [`Pull`] ([`super::pulls_into_l2`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vnni512 {
    width: V512,
    row_prefetch: usize,
    pull: bool,
}

impl Vnni512 {
    /// The proof, where AVX-512 F/BW/VL/DQ/VNNI, AVX2 and FMA are available.
    pub(crate) fn new() -> Option<Self> {
        let width = V512::new()?;
        std::arch::is_x86_feature_detected!("avx512vnni").then_some(Vnni512 {
            width,
            row_prefetch: super::weight_prefetch(PREFETCH),
            pull: super::pulls_into_l2(),
        })
    }

    /// The width it implies.
    pub(crate) fn width(self) -> V512 {
        self.width
    }

    /// The proof for a layer of `weight_bytes` packed weights: the one-row kernel prefetches
    /// its weight streams, and the tiles pull the next channel group into L2, only when the
    /// weights do not fit this core's L2 ([`super::l2_bytes`]; where they fit, the next group
    /// is already there: 32 x 1024 x 1024 took 1% longer with the pull).
    /// Weights that stay in L2 between calls stream faster without: on the Intel Xeon family
    /// 6 model 207 (2 MiB L2) of 2026-12-06, one thread, three interleaved rounds, median us
    /// without / with the prefetch 2 KiB ahead: 1 x 384 x 1536 5.5 / 6.3, 1 x 1024 x 1024
    /// 8.8 / 9.8, 1 x 512 x 512 2.5 / 2.8 (2 threads alike), while 1 x 4096 x 4096 (16 MiB,
    /// from L3) read 555-582 / 561-572 and 1 x 4096 x 14336 1,974-2,068 / 1,965-2,031.
    pub(crate) fn for_weights(self, weight_bytes: usize) -> Self {
        if weight_bytes <= super::l2_bytes() {
            Vnni512 {
                row_prefetch: 0,
                pull: false,
                ..self
            }
        } else {
            self
        }
    }

    /// The measured peak of `vpdpbusd` on 512-bit registers.
    pub(crate) fn peak(self) -> f64 {
        super::peak::measure_chains(64, |iters, seed| {
            // SAFETY: AVX-512 VNNI (`self`).
            unsafe { super::peak::dpbusd512_chains(iters, seed) }
        })
    }
}

/// Asserts what a tile of `rows <= max_rows` rows and `panels` panels reads and writes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_u8(
    x: &[u8],
    x_stride: usize,
    rows: usize,
    w: &[i8],
    panel_stride: usize,
    steps: usize,
    acc: &[i32],
    max_rows: usize,
    panels: usize,
) {
    assert!((1..=max_rows).contains(&rows) && acc.len() >= max_rows * panels * PANEL);
    assert!(x.len() >= (rows - 1) * x_stride + 4 * steps);
    assert!(w.len() >= (panels - 1) * panel_stride + steps * QUAD_BYTES);
    assert!(4 * steps <= EXACT_U8_RUN);
}

/// Defines a register-blocked kernel type of `$rows` rows x `$panels` panels.
macro_rules! vnni512_kernel {
    ($name:ident, $rows:literal, $panels:literal, $small:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug)]
        pub(crate) struct $name(Vnni512);

        // SAFETY: `new` requires AVX-512 VNNI (the `Vnni512` proof, which implies AVX-512
        // F/BW/VL/DQ, AVX2 and FMA); `dots` asserts its bounds (`check_u8`) before reading.
        unsafe impl Int8Kernel for $name {
            const NAME: &'static str = "avx512vnni";
            const ROWS: usize = $rows;
            const CHANNELS: usize = $panels * PANEL;
            const K_STEP: usize = 4;
            const K_ALIGN: usize = 4;
            const INPUT_OFFSET: i32 = 128;
            const EXACT_RUN: usize = EXACT_U8_RUN;
            type Input = u8;
            type Width = V512;
            type Small = $small;

            fn new() -> Option<Self> {
                Vnni512::new().map($name)
            }

            fn small(self) -> $small {
                <$small>::from_proof(self.0)
            }

            fn for_weights(self, weight_bytes: usize) -> Self {
                $name(self.0.for_weights(weight_bytes))
            }

            fn width(self) -> V512 {
                self.0.width()
            }

            fn quantize(
                self,
                flavour: Flavour,
                asymmetric: bool,
                row: &[f32],
                out: &mut [u8],
            ) -> Option<RowParams> {
                self.0.width().quantize_u8(flavour, asymmetric, row, out)
            }

            fn dots(
                self,
                x: &[u8],
                x_stride: usize,
                rows: usize,
                w: &[i8],
                panel_stride: usize,
                steps: usize,
                acc: &mut [i32],
            ) {
                self.dots_pulling(x, x_stride, rows, w, panel_stride, steps, Pull::NONE, acc)
            }

            fn dots_pulling(
                self,
                x: &[u8],
                x_stride: usize,
                rows: usize,
                w: &[i8],
                panel_stride: usize,
                steps: usize,
                pull: Pull,
                acc: &mut [i32],
            ) {
                let one = PullRun {
                    each: pull,
                    tiles: 1,
                };
                let (tile_stride, tiles) = (0, 1);
                self.dots_run(
                    x,
                    x_stride,
                    rows,
                    w,
                    panel_stride,
                    tile_stride,
                    steps,
                    tiles,
                    one,
                    acc,
                    &mut |_, _| {},
                )
            }

            /// The run's bounds are checked once, on its last tile (every earlier tile
            /// lies below it), and the tiles follow each other with no call between.
            fn dots_run(
                self,
                x: &[u8],
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
                let Some(last) = tiles.checked_sub(1) else {
                    return;
                };
                check_u8(
                    x,
                    x_stride,
                    rows,
                    &w[last * tile_stride..],
                    panel_stride,
                    steps,
                    acc,
                    $rows,
                    $panels,
                );
                // Rows past `rows` read the last row again (their dots are not used).
                let xs: [*const u8; $rows] =
                    std::array::from_fn(|r| x[r.min(rows - 1) * x_stride..].as_ptr());
                for t in 0..tiles {
                    let ws: [*const i8; $panels] = std::array::from_fn(|p| {
                        w.as_ptr().wrapping_add(t * tile_stride + p * panel_stride)
                    });
                    let each = if self.0.pull {
                        pull.of_tile(t)
                    } else {
                        Pull::NONE
                    };
                    // SAFETY: AVX-512 VNNI (`self.0`); every row has `4 * steps` bytes, and
                    // every panel of tile t <= last `steps * 64` (checked on the last tile,
                    // whose panels lie furthest into `w`).
                    unsafe {
                        if $rows == 1 {
                            stream::<$panels>(xs[0], ws, steps, self.0.row_prefetch, acc)
                        } else {
                            tile::<$rows, $panels>(xs, ws, steps, each, acc)
                        }
                    }
                    finish(t, acc);
                }
            }

            fn peak_gops(self) -> Option<f64> {
                Some(self.0.peak())
            }
        }

        impl $name {
            /// The kernel from the proof.
            pub(crate) fn from_proof(p: Vnni512) -> Self {
                $name(p)
            }
        }
    };
}

// 12 rows, not 8: each weight line then serves 12 rows, and an L2-resident run of tiles
// (what the driver's channel groups give) loses less to the L2 -> L1 stream. On the Intel
// Xeon family 6 model 207, one core, four tiles of K = 1024 in turn from L2: 12 x 32 at 99.3%
// of the measured peak, 8 x 32 at 94.7-96.5%. 24 accumulators, two weight vectors and the
// broadcast use 27 of the 32 registers.
vnni512_kernel!(
    Avx512Vnni,
    12,
    2,
    Avx512Vnni8,
    "AVX-512 VNNI, 12 rows x 32 channels (24 chains)."
);
vnni512_kernel!(
    Avx512Vnni8,
    8,
    2,
    Avx512Vnni4,
    "AVX-512 VNNI, 8 rows x 32 channels (16 chains)."
);
vnni512_kernel!(
    Avx512Vnni4,
    4,
    2,
    Avx512VnniRow,
    "AVX-512 VNNI, 4 rows x 32 channels."
);
vnni512_kernel!(
    Avx512VnniRow,
    1,
    2,
    Avx512VnniRow,
    "AVX-512 VNNI, one row x 32 channels."
);

/// A tile of `R` rows x `P` panels that also pulls `pull`'s lines into L2 (one line per
/// panel on each pulled quad: a quad of a panel is one 64-byte line).
///
/// # Safety
/// AVX-512 VNNI; each `x[r]` valid for `4 * steps` bytes, each `w[p]` for `steps * 64`, `acc`
/// for `R * P * 16` i32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile<const R: usize, const P: usize>(
    x: [*const u8; R],
    w: [*const i8; P],
    steps: usize,
    pull: Pull,
    acc: &mut [i32],
) {
    let mut a = [[_mm512_setzero_si512(); P]; R];
    let every = pull.every.max(1);
    let mut next_pull = if pull.delta > 0 {
        pull.phase
    } else {
        usize::MAX
    };
    for q in 0..steps {
        for wp in &w {
            // A prefetch never faults; one line (one quad) per panel.
            _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(q * QUAD_BYTES + PREFETCH).cast());
        }
        if q == next_pull {
            for wp in &w {
                _mm_prefetch::<_MM_HINT_T1>(wp.wrapping_add(q * QUAD_BYTES + pull.delta).cast());
            }
            next_pull += every;
        }
        // SAFETY: q < steps: bytes [64q, 64q + 64) of every panel (contract).
        let wv: [__m512i; P] =
            std::array::from_fn(|p| unsafe { _mm512_loadu_si512(w[p].add(q * QUAD_BYTES).cast()) });
        for (r, ar) in a.iter_mut().enumerate() {
            // SAFETY: reads x[r][4q .. 4q + 4] (contract); unaligned is allowed.
            let quad = unsafe { x[r].add(4 * q).cast::<i32>().read_unaligned() };
            let xv = _mm512_set1_epi32(quad);
            for (ap, &wp) in ar.iter_mut().zip(&wv) {
                // Unsigned inputs first, signed weights second: u8 x s8.
                *ap = _mm512_dpbusd_epi32(*ap, xv, wp);
            }
        }
    }
    for (r, ar) in a.iter().enumerate() {
        for (p, ap) in ar.iter().enumerate() {
            // SAFETY: acc holds R * P * 16 i32 (contract).
            unsafe { _mm512_storeu_si512(acc.as_mut_ptr().add((r * P + p) * 16).cast(), *ap) };
        }
    }
}

/// Quads per iteration of the one-row kernel (independent accumulators per stream).
const UNROLL: usize = 4;

/// One row against `P` panels: `P` weight streams in flight, [`UNROLL`] quads per iteration
/// into independent accumulators (added in i32 at the end: exact), each stream prefetched
/// `prefetch` bytes ahead (none when 0).
///
/// # Safety
/// As [`tile`] with `R = 1`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn stream<const P: usize>(
    x: *const u8,
    w: [*const i8; P],
    steps: usize,
    prefetch: usize,
    acc: &mut [i32],
) {
    let mut a = [[_mm512_setzero_si512(); UNROLL]; P];
    let mut q = 0;
    while q + UNROLL <= steps {
        for (p, ap) in a.iter_mut().enumerate() {
            let wp = w[p].wrapping_add(q * QUAD_BYTES);
            // A prefetch never faults; 4 quads = 256 bytes = 4 lines per stream.
            if prefetch > 0 {
                for l in 0..UNROLL {
                    _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(prefetch + 64 * l).cast());
                }
            }
            for (u, au) in ap.iter_mut().enumerate() {
                // SAFETY: q + u < steps: in bounds (contract).
                unsafe {
                    let quad = x.add(4 * (q + u)).cast::<i32>().read_unaligned();
                    let wv = _mm512_loadu_si512(wp.add(u * QUAD_BYTES).cast());
                    *au = _mm512_dpbusd_epi32(*au, _mm512_set1_epi32(quad), wv);
                }
            }
        }
        q += UNROLL;
    }
    while q < steps {
        for (p, ap) in a.iter_mut().enumerate() {
            // SAFETY: q < steps: in bounds (contract).
            unsafe {
                let quad = x.add(4 * q).cast::<i32>().read_unaligned();
                let wv = _mm512_loadu_si512(w[p].add(q * QUAD_BYTES).cast());
                ap[0] = _mm512_dpbusd_epi32(ap[0], _mm512_set1_epi32(quad), wv);
            }
        }
        q += 1;
    }
    for (p, ap) in a.iter().enumerate() {
        let mut s = ap[0];
        for au in &ap[1..] {
            s = _mm512_add_epi32(s, *au);
        }
        // SAFETY: acc holds P * 16 i32 (contract).
        unsafe { _mm512_storeu_si512(acc.as_mut_ptr().add(p * 16).cast(), s) };
    }
}
