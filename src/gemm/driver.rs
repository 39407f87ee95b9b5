//! The int8 product driver, generic over the kernel: blocking over (channel tiles, row
//! tiles), the kernel chain for left-over rows, the long-K path and the split over threads.
//!
//! Work is split over output channels (whole kernel tiles) or, when there are fewer channel
//! tiles than threads, over rows; never over K. Every output value is therefore computed by the
//! same instruction sequence whatever the thread count. (Which kernel of the chain computes a
//! row depends on where the row falls in the batch, and every kernel of a chain gives the same
//! integers, so the bits never depend on the batch either.)
//!
//! Rows: full tiles of the kernel's `ROWS`; the rows left over go to a tile of the kernel
//! itself when there are more of them than its `Small` kernel's tile holds (the tile reads its
//! last row again for the missing ones, and only real rows are written), otherwise to `Small`,
//! recursively (`12 -> 8 -> 4 -> 1` rows for the AVX-512 VNNI kernel: a 10-row call runs one
//! 12-row tile, a 6-row call one 8-row tile, a 3-row call one 4-row tile, a single row the
//! one-row kernel; [`split`] says when `Small` takes one of the kernel's tiles too). Every row
//! block of the chain passes over a channel group before the next group starts.

use std::cell::RefCell;

use super::pack::{PackedWeights, PANEL};
use super::{OutRegion, SharedOut};
use crate::kernels::contract::{Int8Kernel, Pull, PullRun, Width};

/// Largest K for which the zero-point correction `acc - row_sum * zp` is combined in wrapping
/// i32: the true value is at most `K * 128 * 255` in magnitude, below 2^31 up to here.
pub(crate) const I32_COMBINE_MAX_K: usize = 65_793;

/// Products per i32 run of the long-K path: within the exact run of i8 x i8 (131,071) and of
/// u8 x i8 (65,793) lanes.
pub(crate) const LONG_K_CHUNK: usize = 65_536;

/// Weight bytes of the channel group kept in L2 while all row tiles pass over it.
const GROUP_BYTES: usize = 192 * 1024;

/// Fewest row blocks over a channel group for which the blocks after the first pull the next
/// group into L2 ([`next_group_pull`]): with fewer, each would pull half the group or more, at
/// a rate the core's L3 bandwidth does not keep up with. On the Intel Xeon family 6 model 207
/// (one thread, best of three processes each, us, without / with the pull), 2 and 3 blocks
/// were slower with it (16 x 4096 x 4096 1,015-1,034 / 1,041-1,057; 24 x 4096 x 4096
/// 1,402-1,414 / 1,471-1,487) and 4 or more faster (32 x 1024 x 4096 451-454 / 424-429,
/// 64 x 1024 x 4096 883-897 / 839-842, 64 x 4096 x 4096 3,394-3,482 / 3,167-3,235,
/// 128 x 4096 x 4096 6,524-6,642 / 6,362-6,374).
const PULL_MIN_BLOCKS: usize = 4;

/// Multiply-adds per task below which a call uses fewer tasks (down to one, on the calling
/// thread): handing a task to a spinning pool worker costs well under a microsecond, about the
/// time of 2^16 multiply-adds (a parked worker takes longer to wake, see [`super::pool`]).
pub(crate) const MACS_PER_TASK: usize = 1 << 16;

/// Pieces of work per participating thread: each thread claims the pieces of its own range
/// first and then takes others' left-overs (`super::pool`), so a thread that runs slower (a
/// busy sibling hyperthread, a worker woken late) takes fewer. On the Intel Xeon
/// with AMX, 2 threads, 512 x 768 x 3072: with one piece per thread the calling thread spent
/// 15% of its time waiting for the other.
pub(crate) const CHUNKS_PER_TASK: usize = 4;

/// How many pieces `units` (whole tiles, row blocks, panel groups) are cut into for a call on
/// `tasks` threads: [`CHUNKS_PER_TASK`] per thread, at most one unit each.
pub(crate) fn pieces(tasks: usize, units: usize) -> usize {
    (tasks * CHUNKS_PER_TASK).min(units).max(1)
}

/// Tasks for a call of `macs` multiply-adds on up to `threads` threads.
pub(crate) fn tasks_for(macs: usize, threads: usize) -> usize {
    threads.clamp(1, (macs / MACS_PER_TASK).max(1))
}

/// Quantized input rows in a kernel's element type: row r at `x[r * stride..]`, each padded
/// to the packed weights' `k_padded`.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a, T> {
    /// The values.
    pub(crate) x: &'a [T],
    /// Elements between row starts.
    pub(crate) stride: usize,
    /// Number of rows.
    pub(crate) rows: usize,
}

/// Where a tile's dots sit: their row stride, the tile's first row and channel, and the offset
/// its inputs carry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TileAt {
    /// Row stride of the dots (`acc[r * channels + c]`).
    pub(crate) channels: usize,
    /// The tile's first row.
    pub(crate) r0: usize,
    /// The tile's first channel.
    pub(crate) c0: usize,
    /// The offset added to the inputs (the dots include `row_sum * offset`).
    pub(crate) offset: i32,
}

/// What turns a tile's dots into output values: the hybrid epilogue, or the full-integer
/// requantization.
pub(crate) trait TileSink: Sync {
    /// The output element.
    type Out: Send;
    /// Finishes the tile whose dots (i32, exact: `K <= I32_COMBINE_MAX_K`) are
    /// `acc[r * channels + c]` for the region's rows and columns; the region starts at row
    /// `r0`, channel `c0`; the dots include `row_sum * offset` for inputs offset by `offset`.
    fn finish<W: Width>(
        &self,
        width: W,
        acc: &[i32],
        at: TileAt,
        out: &mut OutRegion<'_, Self::Out>,
    );
    /// The same for exact i64 dots (long K), in portable code.
    fn finish_long(&self, acc: &[i64], at: TileAt, out: &mut OutRegion<'_, Self::Out>);
}

/// Runs the product of `x` against `pk` through `sink` into `out` (`x.rows * pk.n` values)
/// with kernel `k` on up to `threads` tasks.
///
/// # Panics
/// If `pk` was not packed for `K` (its layout), or a slice is shorter than the shapes say.
pub(crate) fn run<K: Int8Kernel, S: TileSink>(
    k: K,
    pk: &PackedWeights,
    x: Rows<'_, K::Input>,
    sink: &S,
    out: &mut [S::Out],
    threads: usize,
) {
    let tile_panels = K::CHANNELS / PANEL;
    assert!(
        pk.layout.k_step == K::K_STEP
            && pk.k_padded.is_multiple_of(K::K_ALIGN)
            && pk.panels.is_multiple_of(tile_panels),
        "weights packed for another kernel"
    );
    assert!(x.rows == 0 || (x.rows - 1) * x.stride + pk.k_padded <= x.x.len());
    assert!(x.stride >= pk.k_padded && out.len() >= x.rows * pk.n);
    if x.rows == 0 || pk.n == 0 {
        return;
    }
    let tiles = pk.panels / tile_panels;
    let macs = x.rows.saturating_mul(pk.n).saturating_mul(pk.k);
    let tasks = tasks_for(macs, threads);
    let shared = SharedOut::new(&mut out[..x.rows * pk.n], pk.n);
    let block = |r0: usize, r1: usize, t0: usize, t1: usize| {
        with_tile_buffer(|acc| {
            rows_pass(
                k,
                pk,
                x,
                sink,
                &shared,
                (r0, r1),
                (t0 * tile_panels, t1 * tile_panels),
                acc,
            )
        });
    };
    if tasks == 1 {
        block(0, x.rows, 0, tiles);
    } else if tiles >= tasks {
        let chunks = pieces(tasks, tiles);
        super::pool::run(chunks, tasks, &|t| {
            block(0, x.rows, tiles * t / chunks, tiles * (t + 1) / chunks);
        });
    } else {
        let blocks = x.rows.div_ceil(K::ROWS);
        let chunks = pieces(tasks, blocks);
        super::pool::run(chunks, tasks, &|t| {
            let (b0, b1) = (blocks * t / chunks, blocks * (t + 1) / chunks);
            block(
                (b0 * K::ROWS).min(x.rows),
                (b1 * K::ROWS).min(x.rows),
                0,
                tiles,
            );
        });
    }
}

/// Rows `[r0, r1)` against panels `[p0, p1)` (a whole number of `K`'s tiles), one channel
/// group at a time: every row block passes over the group (the left-over rows on
/// `K::Small`'s tiles, [`group_rows`]) before the next group, so the group's weights stream
/// from L3 once and are read from L2 by the other blocks; `acc` is a tile buffer of at least
/// `K::ROWS * K::CHANNELS` values (a `MAX_TILE` buffer serves every kernel of the chain).
#[allow(clippy::too_many_arguments)]
fn rows_pass<K: Int8Kernel, S: TileSink>(
    k: K,
    pk: &PackedWeights,
    x: Rows<'_, K::Input>,
    sink: &S,
    shared: &SharedOut<S::Out>,
    (r0, r1): (usize, usize),
    (p0, p1): (usize, usize),
    acc: &mut [i32],
) {
    if r0 >= r1 {
        return;
    }
    let tile_panels = K::CHANNELS / PANEL;
    let group = (GROUP_BYTES / pk.panel_bytes().max(1))
        .max(1)
        .next_multiple_of(tile_panels);
    let blocks = block_count::<K>(r1 - r0);
    let mut g0 = p0;
    while g0 < p1 {
        let g1 = (g0 + group).min(p1);
        let pass = GroupPass {
            pk,
            sink,
            shared,
            groups: ((g0, g1), p1),
            blocks,
        };
        group_rows(k, &pass, x, (r0, r1), 0, acc);
        g0 = g1;
    }
}

/// One channel group's pass: where it is and how many row blocks pass over it.
struct GroupPass<'a, S: TileSink> {
    pk: &'a PackedWeights,
    sink: &'a S,
    shared: &'a SharedOut<S::Out>,
    /// The group's panels `[g0, g1)` and the end `p1` of the panels of this call.
    groups: ((usize, usize), usize),
    /// Row blocks over the group, all kernels of the chain together ([`block_count`]).
    blocks: usize,
}

/// The tiles `K`'s chain runs over `rows` rows: full tiles of `K`; the rows left over on one
/// tile of `K` (its last row read again) when there are more of them than `K::Small`'s tile
/// holds, otherwise on `K::Small`'s chain.
fn block_count<K: Int8Kernel>(rows: usize) -> usize {
    const {
        assert!(K::CHANNELS % PANEL == 0 && K::CHANNELS > 0);
        assert!(K::CHANNELS % <K::Width as Width>::CHANNEL_MULTIPLE == 0);
        assert!(
            K::ROWS * K::CHANNELS <= MAX_TILE,
            "tile larger than the tile buffer"
        );
        assert!(K::ROWS == 1 || <K::Small as Int8Kernel>::ROWS < K::ROWS);
        assert!(K::CHANNELS % <K::Small as Int8Kernel>::CHANNELS == 0);
        assert!(K::K_STEP == <K::Small as Int8Kernel>::K_STEP);
    }
    let (own, rest) = split::<K>(rows);
    own.div_ceil(K::ROWS)
        + if rest > 0 {
            block_count::<K::Small>(rest)
        } else {
            0
        }
}

/// How `K`'s chain cuts `rows` rows: the first `own` on `K`'s tiles (the last one with its
/// last row read again where `own` is not a whole number of tiles), the `rest` after them on
/// `K::Small`'s chain.
///
/// Left-over rows that the small kernel's tiles do not cover exactly but would with one of
/// `K`'s tiles added go to the small kernel with that tile, where `K` keeps at least two: on
/// the AVX-512 VNNI chain (12, 8, 4, 1 rows), 64 rows run as 4 x 12 + 2 x 8 rather than
/// 5 x 12 + 4 (a 4-row tile has half the independent chains) and 28 as 12 + 2 x 8. On the
/// Intel Xeon family 6 model 207, one thread, five alternating processes, median us without
/// / with: 64 x 1024 x 4096 843 / 797, 28 x 1024 x 4096 380 / 360, 28 x 4096 x 4096
/// 1,577 / 1,501. With a single tile of `K`, 16 rows stay 12 + 4: the first row block
/// streams the weights from L3, and a 12-row one does more work per byte streamed
/// (16 x 4096 x 4096 936 / 988 as 2 x 8; 16 x 1024 x 4096 235 / 246). The `avxvnni` chain
/// (6, 4, 1 rows) takes the same rule (14 rows as 6 + 2 x 4, 26 as 3 x 6 + 2 x 4): 14 x 1024 x
/// 4096 462 / 442, 26 x 1024 x 4096 768 / 743, 26 x 4096 x 4096 3,020 / 2,947 (same machine,
/// `HYBRIDQ_KERNEL=avxvnni`, four to six processes each).
fn split<K: Int8Kernel>(rows: usize) -> (usize, usize) {
    let small = <K::Small as Int8Kernel>::ROWS;
    let full = rows / K::ROWS * K::ROWS;
    let rem = rows - full;
    if rem > small {
        // More left-over rows than the small kernel's tile holds: one more tile of this
        // kernel.
        (rows, 0)
    } else if !rem.is_multiple_of(small)
        && (rem + K::ROWS).is_multiple_of(small)
        && full >= 2 * K::ROWS
    {
        (full - K::ROWS, rem + K::ROWS)
    } else {
        (full, rem)
    }
}

/// Rows `[r0, r1)` over one channel group on `K`'s chain ([`block_count`]'s tiles), the
/// first of them row block `first` of the pass.
fn group_rows<K: Int8Kernel, S: TileSink>(
    k: K,
    pass: &GroupPass<'_, S>,
    x: Rows<'_, K::Input>,
    (r0, r1): (usize, usize),
    first: usize,
    acc: &mut [i32],
) {
    let tile_panels = K::CHANNELS / PANEL;
    let (own, rest) = split::<K>(r1 - r0);
    let own_end = r0 + own;
    let ((g0, g1), p1) = pass.groups;
    let tile_acc = &mut acc[..K::ROWS * K::CHANNELS];
    let mut block = first;
    let mut r = r0;
    while r < own_end {
        let rows = (own_end - r).min(K::ROWS);
        let pull = next_group_pull(pass.pk, tile_panels, (g0, g1), p1, block, pass.blocks);
        tiles_run(
            k,
            pass.pk,
            x,
            pass.sink,
            pass.shared,
            r,
            rows,
            (g0, g1),
            pull,
            tile_acc,
        );
        r += rows;
        block += 1;
    }
    if rest > 0 {
        group_rows(k.small(), pass, x, (own_end, r1), block, acc);
    }
}

/// What row block `block` of `blocks` over the channel group of panels `[g0, g1)` pulls into
/// L2: a share of the next group's weights (up to panel `p1`), so that the next group's first
/// row block reads L2 instead of streaming from L3.
///
/// The first row block of a group streams the group's weights from L3 (or memory) and the
/// others read them from L2; while those others run, the core's L3 bandwidth is idle. So each
/// of them pulls every `(blocks - 1)`-th K step of the next group's tiles, its own phase: the
/// whole next group between them, spread evenly. (A group's pull costs one prefetch per panel
/// per pulled K step; it needs [`PULL_MIN_BLOCKS`] blocks, and the last group has no next
/// one.)
fn next_group_pull(
    pk: &PackedWeights,
    tile_panels: usize,
    (g0, g1): (usize, usize),
    p1: usize,
    block: usize,
    blocks: usize,
) -> PullRun {
    let live_end = p1.min(pk.n.div_ceil(PANEL));
    if block == 0 || g1 >= live_end || blocks < PULL_MIN_BLOCKS {
        return PullRun::NONE;
    }
    // Tile t of this group pulls tile t of the next, which may be shorter.
    let next_tiles = (live_end - g1).min(g1 - g0).div_ceil(tile_panels);
    PullRun {
        each: Pull {
            delta: (g1 - g0) * pk.panel_bytes(),
            every: blocks - 1,
            phase: block - 1,
        },
        tiles: next_tiles,
    }
}

/// The tiles of rows `[r, r + rows)` against panels `[g0, g1)` (whole tiles; those wholly in
/// the channel padding are skipped), each finished by `sink` as soon as its dots are done;
/// the run's tiles pull `pull` into L2 where the kernel acts on it (a speed hint: the long-K
/// path, the one-row kernels and most kernels ignore it).
#[allow(clippy::too_many_arguments)]
fn tiles_run<K: Int8Kernel, S: TileSink>(
    k: K,
    pk: &PackedWeights,
    x: Rows<'_, K::Input>,
    sink: &S,
    shared: &SharedOut<S::Out>,
    r: usize,
    rows: usize,
    (g0, g1): (usize, usize),
    pull: PullRun,
    acc: &mut [i32],
) {
    let tile_panels = K::CHANNELS / PANEL;
    let live_end = g1.min(pk.n.div_ceil(PANEL));
    let tiles = live_end.saturating_sub(g0).div_ceil(tile_panels);
    let xs = &x.x[r * x.stride..];
    let at = |t: usize| TileAt {
        channels: K::CHANNELS,
        r0: r,
        c0: (g0 + t * tile_panels) * PANEL,
        offset: K::INPUT_OFFSET,
    };
    let region = |at: TileAt| {
        // SAFETY: tasks get disjoint row ranges or disjoint panel ranges (`run`), and within a
        // task the tiles of one pass are disjoint (rows_pass walks rows and panels without
        // overlap) and each region lives only while its tile is finished, so no live region
        // overlaps this one.
        unsafe { shared.region(r, rows, at.c0, (pk.n - at.c0).min(K::CHANNELS)) }
    };
    if pk.k_padded > I32_COMBINE_MAX_K.min(K::EXACT_RUN) {
        for t in 0..tiles {
            let w = pk.panels_from(g0 + t * tile_panels);
            long_tile(k, pk, xs, x.stride, rows, w, acc, &mut |long| {
                sink.finish_long(long, at(t), &mut region(at(t)))
            });
        }
        return;
    }
    let panel_bytes = pk.panel_bytes();
    k.dots_run(
        xs,
        x.stride,
        rows,
        pk.panels_from(g0),
        panel_bytes,
        tile_panels * panel_bytes,
        pk.steps,
        tiles,
        pull,
        acc,
        &mut |t, dots| sink.finish(k.width(), dots, at(t), &mut region(at(t))),
    );
}

/// One tile of long K: exact i32 runs of `LONG_K_CHUNK` values, added in i64 and handed to
/// `finish`.
#[allow(clippy::too_many_arguments)]
fn long_tile<K: Int8Kernel>(
    k: K,
    pk: &PackedWeights,
    xs: &[K::Input],
    x_stride: usize,
    rows: usize,
    w: &[i8],
    acc: &mut [i32],
    finish: &mut impl FnMut(&[i64]),
) {
    let mut long = vec![0i64; K::ROWS * K::CHANNELS];
    let chunk_steps = (LONG_K_CHUNK / K::K_STEP).min(K::EXACT_RUN / K::K_STEP);
    let mut s0 = 0;
    while s0 < pk.steps {
        let steps = (pk.steps - s0).min(chunk_steps);
        let xk = &xs[s0 * K::K_STEP..];
        let wk = &w[s0 * pk.step_bytes()..];
        k.dots(xk, x_stride, rows, wk, pk.panel_bytes(), steps, acc);
        for (l, &a) in long.iter_mut().zip(acc.iter()) {
            *l += a as i64;
        }
        s0 += steps;
    }
    finish(&long);
}

/// The largest `ROWS * CHANNELS` of any kernel (`amx`: 32 rows x 32 channels).
const MAX_TILE: usize = 32 * 32;

thread_local! {
    /// Each thread's buffer for a tile's i32 dots (in thread-local storage: no allocation),
    /// zeroed once for the thread's life; kernels overwrite the dots of the rows they are asked
    /// for, and only those are read. A buffer on the stack of every pass was zeroed at every
    /// pass: on the AMD Zen 4, 1 x 512 x 512 at 2 threads spent 9% of each thread's time in
    /// that `memset`.
    static TILE_BUFFER: RefCell<[i32; MAX_TILE]> = const { RefCell::new([0; MAX_TILE]) };
}

/// Runs `f` with this thread's tile buffer (a fresh one on the stack if the thread's is in
/// use).
fn with_tile_buffer<R>(f: impl FnOnce(&mut [i32]) -> R) -> R {
    TILE_BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut acc) => f(&mut acc[..]),
        Err(_) => f(&mut [0; MAX_TILE]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::pack::Layout;

    /// Over the row blocks of one channel group, the pull names every line of the next
    /// group's live panels exactly once, the padding panel of its last tile at most once, and
    /// nothing before the group's second block or at the last group; fewer than
    /// `PULL_MIN_BLOCKS` blocks pull nothing.
    #[test]
    fn next_group_pull_covers_the_next_group_once() {
        let layout = Layout {
            k_step: 4,
            k_align: 4,
            panels_per_tile: 2,
        };
        // 600 channels: 38 live panels in 19 tiles of 2; 584: 37 live panels and one of
        // padding. Groups of 12 panels: the last group is shorter.
        for n in [600, 584] {
            next_group_pull_case(n, 1000, layout, 12);
        }
    }

    fn next_group_pull_case(n: usize, k: usize, layout: Layout, group: usize) {
        let pk = PackedWeights::new(
            &vec![1; n * k],
            n,
            k,
            layout,
            &vec![k as i32; n],
            |_| 1.0,
            None,
        );
        let live = n.div_ceil(PANEL);
        for blocks in 1..=9 {
            let mut g0 = 0;
            while g0 < pk.panels {
                let g1 = (g0 + group).min(pk.panels);
                // Times each (panel, K step) byte offset of the packed weights is pulled.
                let mut pulled = vec![0u32; pk.panels * pk.steps];
                for block in 0..blocks {
                    let run = next_group_pull(&pk, 2, (g0, g1), pk.panels, block, blocks);
                    if block == 0 || blocks < PULL_MIN_BLOCKS {
                        assert_eq!(run, PullRun::NONE);
                    }
                    let p = run.each;
                    assert!(run.tiles == 0 || (p.every >= 1 && p.phase < p.every));
                    for t in 0..run.tiles {
                        for panel in 0..2 {
                            let first = (g0 + 2 * t + panel) * pk.panel_bytes();
                            for s in (p.phase..pk.steps).step_by(p.every) {
                                let at = first + s * pk.step_bytes() + p.delta;
                                assert_eq!(at % pk.step_bytes(), 0);
                                let (pn, ps) = (at / pk.panel_bytes(), at % pk.panel_bytes());
                                pulled[pn * pk.steps + ps / pk.step_bytes()] += 1;
                            }
                        }
                    }
                }
                let next = g1..(g1 + group).min(live);
                let pulls = blocks >= PULL_MIN_BLOCKS && g1 < live;
                for panel in 0..pk.panels {
                    let want = u32::from(pulls && next.contains(&panel));
                    for s in 0..pk.steps {
                        let got = pulled[panel * pk.steps + s];
                        if panel >= live {
                            assert!(got <= 1, "padding pulled {got} times");
                        } else {
                            assert_eq!(got, want, "{n} {blocks} {g0} {panel} {s}");
                        }
                    }
                }
                g0 = g1;
            }
        }
    }
}
