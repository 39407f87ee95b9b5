//! The product driver: blocking over (channel panels, row blocks), the choice of tile, the
//! long-K fallback and the split over threads.
//!
//! Work is split over output channels (whole panels) or, when there are fewer panels than
//! threads, over rows; never over K. Every output value is therefore computed by the same
//! instruction sequence whatever the thread count or the batch composition.

// Without an x86-64 SIMD kernel (other targets) only the scalar path is live, so the SIMD
// plumbing is unused there; it must still compile warning-free.
#![cfg_attr(
    not(target_arch = "x86_64"),
    allow(
        dead_code,
        unused_imports,
        unused_variables,
        unused_mut,
        unreachable_code,
        clippy::never_loop
    )
)]

use super::pack::{PackedWeights, NR, PAIR_BYTES};
use super::scalar;
use super::Kernel;
use crate::layer::epilogue::EpilogueSpec;
use crate::quantize::inputs::RowParams;

/// Rows per register tile of the SIMD kernels (the `MR` of `MR x 16`).
pub(crate) const MR: usize = 4;

/// Largest K for which the zero-point correction `acc - row_sum * zp` is combined in wrapping
/// i32: the true value is at most `K * 128 * 255` in magnitude, below 2^31 up to here.
pub(crate) const I32_COMBINE_MAX_K: usize = 65_793;

/// Products per i32 run of the long-K path: within [`scalar::EXACT_I32_RUN`] for i8 x i8, and
/// within the 65,793 of u8 x i8 (`65_536 * 255 * 128 < 2^31`) for the VNNI kernel.
const LONG_K_CHUNK: usize = 65_536;
const _: () = assert!(LONG_K_CHUNK <= scalar::EXACT_I32_RUN && LONG_K_CHUNK <= I32_COMBINE_MAX_K);

/// Weight bytes of the panel group kept in L2 while all row blocks pass over it (the loop over
/// panels inside one group cuts N; Zen 3 has 512 KiB of L2 per core).
const GROUP_BYTES: usize = 192 * 1024;

/// Multiply-adds per task below which a call uses fewer tasks (down to one, on the calling
/// thread): handing a task to a spinning pool worker costs well under a microsecond, about the
/// time of 2^16 multiply-adds (a parked worker takes longer to wake, see [`super::pool`]).
pub(crate) const MACS_PER_TASK: usize = 1 << 16;

/// Tasks for a call of `macs` multiply-adds on up to `threads` threads.
fn tasks_for(macs: usize, threads: usize) -> usize {
    threads.clamp(1, (macs / MACS_PER_TASK).max(1))
}

/// One product: quantized rows against packed weights, into `out` (`rows * n`, row-major).
pub(crate) struct Product<'a> {
    /// Packed weights and epilogue constants.
    pub(crate) packed: &'a PackedWeights,
    /// Quantized rows as i16, row r at `x[r * 2 * ceil(K / 2)..]`, zero padded (AVX2).
    pub(crate) x: &'a [i16],
    /// Quantized rows offset to u8 (`q + 128`), row r at `xu[r * u8_stride(K)..]` (VNNI;
    /// empty for the other kernels).
    pub(crate) xu: &'a [u8],
    /// Number of rows.
    pub(crate) rows: usize,
    /// Row parameters (`rows` of them).
    pub(crate) params: &'a [RowParams],
    /// The epilogue (the build's operation order, flushes, clamp and NaN).
    pub(crate) epilogue: EpilogueSpec,
}

/// A raw output pointer shared by the tasks of one call.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

// SAFETY: tasks of one call write disjoint elements (disjoint panels or disjoint rows, see
// `run_simd`), and the pointer outlives them (`run_simd` borrows `out` mutably until every task has returned).
unsafe impl Send for OutPtr {}
// SAFETY: as above; the pointer itself is only copied.
unsafe impl Sync for OutPtr {}

/// Runs a product with a SIMD kernel on up to `threads` tasks.
///
/// # Panics
/// If `out` or `x` is shorter than the shapes say, or `kernel` is [`Kernel::Scalar`] or not
/// available on this CPU.
pub(crate) fn run_simd(kernel: Kernel, p: &Product<'_>, out: &mut [f32], threads: usize) {
    let (n, kp, rows) = (p.packed.n, p.packed.kp, p.rows);
    assert!(kernel != Kernel::Scalar && kernel.is_available());
    assert!(out.len() >= rows * n && p.params.len() >= rows);
    assert_eq!(
        p.packed.group,
        kernel.pack_group(),
        "weights packed for another kernel"
    );
    match kernel {
        _ if kernel.uses_u8_inputs() => {
            assert!(p.xu.len() >= rows * super::u8_stride(p.packed.k))
        }
        _ => assert!(p.x.len() >= rows * 2 * p.packed.k.div_ceil(2)),
    }
    let _ = kp;
    let panels = p.packed.panels;
    let macs = rows.saturating_mul(n).saturating_mul(p.packed.k);
    let threads = tasks_for(macs, threads);
    let ptr = OutPtr(out.as_mut_ptr());
    let task = |r0: usize, r1: usize, j0: usize, j1: usize| {
        // SAFETY: `kernel` is available (asserted); [r0, r1) x panels [j0, j1) is within the
        // shapes asserted above, and each task gets a disjoint block (built below).
        unsafe { run_block(kernel, p, ptr, r0, r1, j0, j1) }
    };
    if threads == 1 {
        task(0, rows, 0, panels);
    } else if panels >= threads {
        super::pool::run(threads, threads, &|t| {
            let (j0, j1) = (panels * t / threads, panels * (t + 1) / threads);
            task(0, rows, j0, j1);
        });
    } else {
        let blocks = rows.div_ceil(MR);
        super::pool::run(threads, threads, &|t| {
            let (b0, b1) = (blocks * t / threads, blocks * (t + 1) / threads);
            task((b0 * MR).min(rows), (b1 * MR).min(rows), 0, panels);
        });
    }
}

/// Rows `[r0, r1)` x panels `[j0, j1)`.
///
/// # Safety
/// 1. `kernel` is available on this CPU and is not `Scalar`.
/// 2. The block lies within the shapes of `p`, and `out` points to `rows * n` writable f32
///    of which no other thread writes this block's elements during the call.
unsafe fn run_block(
    kernel: Kernel,
    p: &Product<'_>,
    out: OutPtr,
    r0: usize,
    r1: usize,
    j0: usize,
    j1: usize,
) {
    let pk = p.packed;
    let (n, kp) = (pk.n, pk.kp);
    let stride = 2 * pk.k.div_ceil(2);
    let stride_u8 = super::u8_stride(pk.k);
    let group = (GROUP_BYTES / (kp * pk.step_bytes).max(1)).max(1);
    let e = p.epilogue;
    let long_k = pk.k > I32_COMBINE_MAX_K;
    // Small batches stream each panel from memory (at most 2 row blocks, the weights read once
    // per call); large ones are compute-bound on weights held in L2.
    let prefetch = p.rows <= 2 * MR;
    let mut g0 = j0;
    while g0 < j1 {
        let g1 = (g0 + group).min(j1);
        let mut r = r0;
        while r < r1 {
            let mr = (r1 - r).min(MR);
            for j in g0..g1 {
                let c0 = j * NR;
                let width = (n - c0).min(NR);
                let t = Tile {
                    // SAFETY: r < rows, so row r starts within `x` (asserted by the caller).
                    // (`wrapping_add`: the unused operand may be an empty slice.)
                    x: p.x.as_ptr().wrapping_add(r * stride),
                    stride,
                    xu: p.xu.as_ptr().wrapping_add(r * stride_u8),
                    stride_u8,
                    w: pk.panel(j).as_ptr(),
                    kp,
                    params: &p.params[r..r + mr],
                    c0,
                    // SAFETY: r < rows and c0 < n: within the output (contract 2).
                    out: unsafe { out.0.add(r * n + c0) },
                    out_stride: n,
                    width,
                    prefetch,
                };
                // SAFETY: contracts 1-2 forwarded; the tile lies within the block.
                unsafe {
                    if long_k {
                        long_k_tile(kernel, pk, &t, mr, e)
                    } else {
                        simd_tile(kernel, pk, &t, mr, e)
                    }
                }
            }
            r += mr;
        }
        g0 = g1;
    }
}

/// One tile's operands.
struct Tile<'a> {
    x: *const i16,
    stride: usize,
    xu: *const u8,
    stride_u8: usize,
    w: *const i8,
    kp: usize,
    params: &'a [RowParams],
    c0: usize,
    out: *mut f32,
    out_stride: usize,
    width: usize,
    /// Prefetch the weight stream (small batches).
    prefetch: bool,
}

/// A fused tile: integer dots and vector epilogue.
///
/// # Safety
/// As [`run_block`], for the tile's rows and columns.
unsafe fn simd_tile(kernel: Kernel, pk: &PackedWeights, t: &Tile<'_>, mr: usize, e: EpilogueSpec) {
    let c = t.c0;
    #[cfg(target_arch = "x86_64")]
    let o = super::avx2::TileOut {
        params: t.params,
        row_sums: &pk.row_sums[c..],
        scales: &pk.scales[c..],
        init: &pk.init[c..],
        e,
        out: t.out,
        out_stride: t.out_stride,
        width: t.width,
    };
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => {
            use super::avx2::tile;
            let (x, s, w, kp, pf) = (t.x, t.stride, t.w, t.kp, t.prefetch);
            // SAFETY: AVX2 and FMA were detected (contract 1); operands are in bounds
            // (contract 2); K <= I32_COMBINE_MAX_K so the runs are exact and the i32
            // combination does not lose the true value.
            unsafe {
                match mr {
                    4 => tile::<4>(x, s, w, kp, pf, &o),
                    3 => tile::<3>(x, s, w, kp, pf, &o),
                    2 => tile::<2>(x, s, w, kp, pf, &o),
                    _ => tile::<1>(x, s, w, kp, pf, &o),
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Vnni | Kernel::AvxVnni => {
            use super::avx2::epilogue_store;
            let (x, s, w, kq) = (t.xu, t.stride_u8, t.w, t.kp);
            macro_rules! tiles {
                ($m:ident) => {
                    match mr {
                        4 => {
                            epilogue_store::<4>(&super::$m::dots_halves::<4>(x, s, w, kq), 128, &o)
                        }
                        3 => {
                            epilogue_store::<3>(&super::$m::dots_halves::<3>(x, s, w, kq), 128, &o)
                        }
                        2 => {
                            epilogue_store::<2>(&super::$m::dots_halves::<2>(x, s, w, kq), 128, &o)
                        }
                        _ => {
                            epilogue_store::<1>(&super::$m::dots_halves::<1>(x, s, w, kq), 128, &o)
                        }
                    }
                };
            }
            // SAFETY: the kernel's features (AVX-512 F/BW/VNNI, or AVX-VNNI; AVX2 and FMA for
            // both) were detected (contract 1); operands are in bounds (contract 2);
            // K <= I32_COMBINE_MAX_K = 65,793, the u8 x i8 limit.
            unsafe {
                if kernel == Kernel::Avx512Vnni {
                    tiles!(avx512vnni)
                } else {
                    tiles!(avxvnni)
                }
            }
        }
        _ => unreachable!("simd_tile called with {kernel}"),
    }
}

/// A long-K tile (K > [`I32_COMBINE_MAX_K`]): i32 dots over chunks of 65,536, added in i64,
/// then the scalar epilogue.
///
/// # Safety
/// As [`run_block`], for the tile's rows and columns.
unsafe fn long_k_tile(
    kernel: Kernel,
    pk: &PackedWeights,
    t: &Tile<'_>,
    mr: usize,
    e: EpilogueSpec,
) {
    let mut acc = [[0i64; NR]; MR];
    let chunk_steps = LONG_K_CHUNK / pk.group;
    let mut p0 = 0;
    while p0 < t.kp {
        let len = (t.kp - p0).min(chunk_steps);
        let mut part = [[0i32; NR]; MR];
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                use super::avx2::tile_raw;
                // SAFETY: AVX2/FMA detected; the chunk [p0, p0 + len) lies within the
                // tile's K pairs (x rows and the panel), and 2 * len <= LONG_K_CHUNK.
                unsafe {
                    let (x, w) = (t.x.add(2 * p0), t.w.add(p0 * PAIR_BYTES));
                    match mr {
                        4 => tile_raw::<4>(x, t.stride, w, len, &mut part),
                        3 => tile_raw::<3>(x, t.stride, w, len, &mut part),
                        2 => tile_raw::<2>(x, t.stride, w, len, &mut part),
                        _ => tile_raw::<1>(x, t.stride, w, len, &mut part),
                    }
                }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni | Kernel::AvxVnni => {
                use super::avx2::store_raw;
                macro_rules! tiles_raw {
                    ($m:ident, $x:expr, $s:expr, $w:expr) => {
                        match mr {
                            4 => store_raw::<4>(
                                &super::$m::dots_halves::<4>($x, $s, $w, len),
                                &mut part,
                            ),
                            3 => store_raw::<3>(
                                &super::$m::dots_halves::<3>($x, $s, $w, len),
                                &mut part,
                            ),
                            2 => store_raw::<2>(
                                &super::$m::dots_halves::<2>($x, $s, $w, len),
                                &mut part,
                            ),
                            _ => store_raw::<1>(
                                &super::$m::dots_halves::<1>($x, $s, $w, len),
                                &mut part,
                            ),
                        }
                    };
                }
                // SAFETY: the kernel's features were detected; the chunk of quads
                // [p0, p0 + len) lies within the tile's u8 rows and the panel, and
                // 4 * len <= LONG_K_CHUNK.
                unsafe {
                    let (x, w, s) = (t.xu.add(4 * p0), t.w.add(p0 * pk.step_bytes), t.stride_u8);
                    if kernel == Kernel::Avx512Vnni {
                        tiles_raw!(avx512vnni, x, s, w)
                    } else {
                        tiles_raw!(avxvnni, x, s, w)
                    }
                }
            }
            _ => unreachable!("long_k_tile called with {kernel}"),
        }
        for (a, q) in acc.iter_mut().zip(&part) {
            for (a, &q) in a.iter_mut().zip(q) {
                *a += q as i64;
            }
        }
        p0 += len;
    }
    // The VNNI kernels summed (q + 128) * w.
    let offset = if kernel.uses_u8_inputs() { 128 } else { 0 };
    for (r, a) in acc.iter().take(mr).enumerate() {
        let p = t.params[r];
        for (c, &dot) in a.iter().take(t.width).enumerate() {
            let ch = t.c0 + c;
            let v = dot - pk.row_sums[ch] as i64 * (p.zero_point as i64 + offset);
            let y = e.value(v, p.scale, pk.scales[ch], pk.init[ch]);
            // SAFETY: row r < mr and column c < width of this tile (contract of run_block).
            unsafe { *t.out.add(r * t.out_stride + c) = y };
        }
    }
}

/// The scalar reference product: `out[b][j] = act(epilogue(dot(w[j], q[b]) - rs[j] * zp[b]))`
/// with i8 rows `q` (`rows * k`) and row-major weights, split over rows on up to `threads`
/// tasks.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_scalar(
    w: &[i8],
    row_sums: &[i32],
    scale: &(dyn Fn(usize) -> f32 + Sync),
    init: &(dyn Fn(usize) -> f32 + Sync),
    q: &[i8],
    params: &[RowParams],
    k: usize,
    n: usize,
    epilogue: EpilogueSpec,
    out: &mut [f32],
    threads: usize,
) {
    let rows = params.len();
    let row = |b: usize, out_row: &mut [f32]| {
        let qb = &q[b * k..(b + 1) * k];
        let p = params[b];
        for (j, o) in out_row.iter_mut().enumerate() {
            let dot = scalar::dot_i8(&w[j * k..(j + 1) * k], qb);
            let acc = dot - row_sums[j] as i64 * p.zero_point as i64;
            *o = epilogue.value(acc, p.scale, scale(j), init(j));
        }
    };
    let threads = tasks_for(rows.saturating_mul(n).saturating_mul(k), threads).min(rows.max(1));
    let out = &mut out[..rows * n];
    if threads == 1 {
        for (b, o) in out.chunks_exact_mut(n).enumerate() {
            row(b, o);
        }
    } else {
        let per = rows.div_ceil(threads);
        super::pool::for_each_chunk(out, per * n, threads, |t, chunk| {
            for (i, o) in chunk.chunks_exact_mut(n).enumerate() {
                row(t * per + i, o);
            }
        });
    }
}
