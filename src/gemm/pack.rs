//! The packed int8 weight layout, made once when a layer is built (no call repacks).
//!
//! Weights `q[N][K]` are cut into panels of [`PANEL`] = 16 output channels. Within a panel, K is
//! walked in steps of `g` consecutive values (the kernel's `K_STEP`: 1 for the scalar
//! reference, 2 for AVX2, 4 for the VNNI and AMX kernels); each step takes `16 * g` bytes,
//! channel c of the panel contributing its `g` values at offset `c * g`:
//!
//! ```text
//! g = 2, panel j, pair p:  [c0 k2p, c0 k2p+1, c1 k2p, c1 k2p+1, ... c15 k2p, c15 k2p+1]
//! g = 4, panel j, quad q:  [c0 k4q .. c0 k4q+3, c1 k4q .. c1 k4q+3, ... c15 k4q+3]
//! ```
//!
//! For g = 2, sign-extending one 16-byte half to sixteen i16 (`vpmovsxbw`) gives exactly the
//! operand of `vpmaddwd` against a broadcast `(x[2p], x[2p+1])` i16 pair. For g = 4, the 64
//! bytes are the signed operand of `vpdpbusd` against a broadcast u8 quad, and 16 consecutive
//! quads (1 KiB) are exactly one AMX `B` tile (16 rows of 64 bytes, "VNNI layout"). K is zero
//! padded to the kernel's `K_ALIGN` (64 for AMX) and N to a whole number of the kernel's
//! channel tiles; zeros add nothing to an integer dot product, and padded channels are never
//! stored.
//!
//! The per-channel epilogue constants (row sums for the zero-point correction, weight scales
//! repeated per channel, bias or 0.0) are padded the same way, so the epilogues load them with
//! plain vector loads.

use crate::kernels::contract::InputElement;

/// Output channels per panel.
pub(crate) const PANEL: usize = 16;

/// How a kernel wants its weights: K values per step, K padded to a multiple of `k_align`,
/// panels padded to a multiple of `panels_per_tile`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// K values per step (`g`).
    pub(crate) k_step: usize,
    /// K is zero padded to a multiple of this (a multiple of `k_step`).
    pub(crate) k_align: usize,
    /// The panel count is padded to a multiple of this (a kernel tile's channels / 16).
    pub(crate) panels_per_tile: usize,
}

/// 64-byte aligned storage unit, so panels start on cache lines (and stay aligned when the
/// layer is cloned).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(crate) struct Line(pub(crate) [i8; 64]);

/// Weights packed for a kernel, with their epilogue constants.
#[derive(Clone)]
pub(crate) struct PackedWeights {
    lines: Vec<Line>,
    /// Output channels N.
    pub(crate) n: usize,
    /// Depth K.
    pub(crate) k: usize,
    /// K padded to the layout's `k_align`.
    pub(crate) k_padded: usize,
    /// K steps per panel: `k_padded / k_step`.
    pub(crate) steps: usize,
    /// The layout.
    pub(crate) layout: Layout,
    /// Number of panels: `ceil(N / 16)`, padded to the tile.
    pub(crate) panels: usize,
    /// `row_sum[n]`, zero padded to `panels * 16`.
    pub(crate) row_sums: Vec<i32>,
    /// Weight scale of each channel (per-tensor scales repeated), padded with 1.0.
    pub(crate) scales: Vec<f32>,
    /// Bias (or 0.0 without one), padded with 0.0.
    pub(crate) init: Vec<f32>,
}

impl PackedWeights {
    /// Packs row-major `values[n * k]` for `layout`, with their row sums, scales
    /// (`scale(n)`) and bias.
    pub(crate) fn new(
        values: &[i8],
        n: usize,
        k: usize,
        layout: Layout,
        row_sums: &[i32],
        scale: impl Fn(usize) -> f32,
        bias: Option<&[f32]>,
    ) -> Self {
        let g = layout.k_step;
        assert_eq!(values.len(), n * k, "PackedWeights::new: n * k values");
        assert!(g >= 1 && layout.k_align.is_multiple_of(g) && layout.panels_per_tile >= 1);
        let k_padded = k.next_multiple_of(layout.k_align).max(layout.k_align);
        let steps = k_padded / g;
        let step_bytes = PANEL * g;
        let panels = n.div_ceil(PANEL).next_multiple_of(layout.panels_per_tile);
        let bytes = panels * steps * step_bytes;
        let mut lines = Vec::with_capacity(bytes.div_ceil(64));
        advise_huge_pages(lines.spare_capacity_mut());
        lines.resize(bytes.div_ceil(64), Line([0; 64]));
        {
            let flat = lines_as_bytes_mut(&mut lines);
            for c in 0..n {
                let (panel, lane) = (c / PANEL, c % PANEL);
                let base = panel * steps * step_bytes + lane * g;
                for (kk, &v) in values[c * k..(c + 1) * k].iter().enumerate() {
                    flat[base + (kk / g) * step_bytes + (kk % g)] = v;
                }
            }
        }
        let padded = panels * PANEL;
        let mut rs = vec![0i32; padded];
        rs[..n].copy_from_slice(row_sums);
        let mut scales = vec![1.0f32; padded];
        for (c, s) in scales.iter_mut().take(n).enumerate() {
            *s = scale(c);
        }
        let mut init = vec![0.0f32; padded];
        if let Some(b) = bias {
            init[..n].copy_from_slice(b);
        }
        Self {
            lines,
            n,
            k,
            k_padded,
            steps,
            layout,
            panels,
            row_sums: rs,
            scales,
            init,
        }
    }

    /// Bytes of one step of one panel: `16 * k_step`.
    pub(crate) fn step_bytes(&self) -> usize {
        PANEL * self.layout.k_step
    }

    /// Bytes of one panel: `steps * step_bytes`.
    pub(crate) fn panel_bytes(&self) -> usize {
        self.steps * self.step_bytes()
    }

    /// Bytes of all the panels: what a call streams through the cache.
    pub(crate) fn weight_bytes(&self) -> usize {
        self.panels * self.panel_bytes()
    }

    /// The packed bytes (`panels * panel_bytes` of them, then padding).
    pub(crate) fn bytes(&self) -> &[i8] {
        &lines_as_bytes(&self.lines)[..self.weight_bytes()]
    }

    /// The bytes from panel `j` to the end.
    pub(crate) fn panels_from(&self, j: usize) -> &[i8] {
        &self.bytes()[j * self.panel_bytes()..]
    }

    /// The weight of channel `c` at depth `kk` (0 in the padding), read back from the layout.
    #[cfg(test)]
    pub(crate) fn weight(&self, c: usize, kk: usize) -> i8 {
        let g = self.layout.k_step;
        self.bytes()[(c / PANEL) * self.panel_bytes()
            + (kk / g) * self.step_bytes()
            + (c % PANEL) * g
            + kk % g]
    }
}

impl std::fmt::Debug for PackedWeights {
    /// The shape only (the packed bytes can be many megabytes).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedWeights")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("panels", &self.panels)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

/// Bytes below which the packed weights are left on ordinary pages.
const HUGE_PAGE_MIN: usize = 4 << 20;

/// Asks Linux to back the (not yet touched) storage with transparent huge pages, so that
/// streaming the weights does not cross a 4 KiB page boundary (a TLB miss, and the end of
/// the hardware prefetcher's stream) every 4 KiB. Best effort: the result is ignored, and
/// nothing changes elsewhere or for small layers.
pub(crate) fn advise_huge_pages<T>(storage: &mut [std::mem::MaybeUninit<T>]) {
    let len = std::mem::size_of_val(storage);
    if len < HUGE_PAGE_MIN {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = storage.as_mut_ptr() as usize;
        let (lo, hi) = (start.next_multiple_of(PAGE), (start + len) / PAGE * PAGE);
        if hi > lo {
            // SAFETY: [lo, hi) lies within `storage`, which this function borrows mutably
            // (nothing else refers to it); MADV_HUGEPAGE only changes how the kernel backs the
            // pages, never their contents or validity.
            unsafe {
                libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE);
            }
        }
    }
}

/// The first `len` elements of `T` stored in `lines` (64-byte aligned), growing `lines`
/// (zero filled) as needed: the engines' buffers of quantized rows.
pub(crate) fn elements_mut<T: InputElement>(lines: &mut Vec<Line>, len: usize) -> &mut [T] {
    let need = (len * std::mem::size_of::<T>()).div_ceil(64);
    if lines.len() < need {
        lines.resize(need, Line([0; 64]));
    }
    // SAFETY: `T` is one of i8, u8, i16 (the `InputElement` impls): plain integers for which
    // every bit pattern is valid, with alignment <= 64; `lines` holds at least
    // `len * size_of::<T>()` initialized bytes, borrowed mutably for the result's lifetime.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<T>(), len) }
}

/// The first `len` elements of `T` stored in `lines`.
///
/// # Panics
/// If `lines` holds fewer.
pub(crate) fn elements<T: InputElement>(lines: &[Line], len: usize) -> &[T] {
    assert!(lines.len() * 64 >= len * std::mem::size_of::<T>());
    // SAFETY: as in `elements_mut`, with a shared borrow.
    unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<T>(), len) }
}

fn lines_as_bytes(lines: &[Line]) -> &[i8] {
    // SAFETY: `Line` is `repr(C)` around `[i8; 64]` with size 64 and no padding, so a slice of
    // `lines.len()` lines is `lines.len() * 64` initialized, contiguous i8; the returned slice
    // borrows `lines` immutably for its whole lifetime.
    unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<i8>(), lines.len() * 64) }
}

fn lines_as_bytes_mut(lines: &mut [Line]) -> &mut [i8] {
    // SAFETY: as in `lines_as_bytes`; the mutable borrow of `lines` is held by the result, so
    // no other reference to the bytes exists, and every bit pattern is a valid i8.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<i8>(), lines.len() * 64) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips() {
        let (n, k) = (19, 5);
        let values: Vec<i8> = (0..n * k)
            .map(|i| (i as i32 * 37 % 255 - 127) as i8)
            .collect();
        let rs: Vec<i32> = (0..n)
            .map(|c| values[c * k..(c + 1) * k].iter().map(|&v| v as i32).sum())
            .collect();
        let want = |c: usize, kk: usize| {
            if c < n && kk < k {
                values[c * k + kk]
            } else {
                0
            }
        };
        for (g, align, tile) in [(1, 1, 1), (2, 2, 1), (4, 4, 1), (4, 64, 2)] {
            let layout = Layout {
                k_step: g,
                k_align: align,
                panels_per_tile: tile,
            };
            let p = PackedWeights::new(&values, n, k, layout, &rs, |c| c as f32 + 1.0, None);
            assert_eq!(p.k_padded, k.next_multiple_of(align));
            assert_eq!(p.panels, 2usize.next_multiple_of(tile));
            assert_eq!(p.bytes().as_ptr() as usize % 64, 0);
            for c in 0..p.panels * PANEL {
                for kk in 0..p.k_padded {
                    assert_eq!(p.weight(c, kk), want(c, kk), "g {g} c {c} k {kk}");
                }
            }
            assert_eq!(p.row_sums[n], 0);
            assert_eq!(p.scales[3], 4.0);
            assert_eq!(p.init[0], 0.0);
        }
        // The AVX2 description of g = 2: channels 0-7 then 8-15, each a (k, k + 1) pair.
        let layout = Layout {
            k_step: 2,
            k_align: 2,
            panels_per_tile: 1,
        };
        let p = PackedWeights::new(&values, n, k, layout, &rs, |_| 1.0, None);
        for c in 0..PANEL {
            for kk in 0..p.k_padded {
                let byte = p.bytes()[(kk / 2) * 32 + (c / 8) * 16 + (c % 8) * 2 + kk % 2];
                assert_eq!(byte, want(c, kk));
            }
        }
    }
}
