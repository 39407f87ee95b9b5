//! The packed weight layout, made once when a layer is built (no call repacks).
//!
//! Weights `q[N][K]` are cut into panels of [`NR`] = 16 output channels. Within a panel, K is
//! walked in steps of `g` consecutive values (`g` = 2 for AVX2, 4 for AVX-512 VNNI); each step
//! takes `16 * g` bytes, channel c of the panel contributing its `g` values at offset `c * g`:
//!
//! ```text
//! g = 2, panel j, pair p:  [c0 k2p, c0 k2p+1, c1 k2p, c1 k2p+1, ... c15 k2p, c15 k2p+1]
//! g = 4, panel j, quad q:  [c0 k4q .. c0 k4q+3, c1 k4q .. c1 k4q+3, ... c15 k4q+3]
//! ```
//!
//! For g = 2, sign-extending one 16-byte half to sixteen i16 (`vpmovsxbw`) gives exactly the
//! operand of `vpmaddwd` against a broadcast `(x[2p], x[2p+1])` i16 pair: one i32 lane per
//! channel, no horizontal reduction. For g = 4, the 64 bytes are the signed operand of
//! `vpdpbusd` against a broadcast u8 quad. K is zero padded to a multiple of g and N to a
//! multiple of 16; zeros add nothing to an integer dot product, and padded channels are never
//! stored.
//!
//! The per-channel epilogue constants (row sums for the zero-point correction, weight scales
//! repeated per channel, bias or 0.0) are padded the same way, so the epilogue loads them with
//! plain vector loads.

// Without an x86-64 SIMD kernel (other targets) only the scalar path is live, so the SIMD
// plumbing is unused there; it must still compile warning-free.
#![cfg_attr(
    not(target_arch = "x86_64"),
    allow(dead_code, unused_imports, unused_variables, unused_mut)
)]

/// Output channels per panel.
pub(crate) const NR: usize = 16;

/// Bytes of one K pair of one panel (the AVX2 layout, g = 2).
pub(crate) const PAIR_BYTES: usize = 2 * NR;

/// 64-byte aligned storage unit, so panels start on cache lines (and stay aligned when the
/// layer is cloned).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(crate) struct Line(pub(crate) [i8; 64]);

/// Weights packed for the SIMD kernels, with their epilogue constants.
#[derive(Clone)]
pub(crate) struct PackedWeights {
    lines: Vec<Line>,
    /// Output channels N.
    pub(crate) n: usize,
    /// Depth K.
    pub(crate) k: usize,
    /// K steps per panel: `ceil(K / g)` (pairs for g = 2, quads for g = 4).
    pub(crate) kp: usize,
    /// K values per step, `g`.
    pub(crate) group: usize,
    /// Bytes of one step of one panel: `16 * g`.
    pub(crate) step_bytes: usize,
    /// Number of panels: `ceil(N / 16)`.
    pub(crate) panels: usize,
    /// `row_sum[n]`, zero padded to `panels * 16`.
    pub(crate) row_sums: Vec<i32>,
    /// Weight scale of each channel (per-tensor scales repeated), padded with 1.0.
    pub(crate) scales: Vec<f32>,
    /// Bias (or 0.0 without one), padded with 0.0.
    pub(crate) init: Vec<f32>,
}

impl PackedWeights {
    /// Packs row-major `values[n * k]` in steps of `group` (2 or 4) K values, with their row
    /// sums, scales (`scale(n)`) and bias.
    pub(crate) fn new(
        values: &[i8],
        n: usize,
        k: usize,
        group: usize,
        row_sums: &[i32],
        scale: impl Fn(usize) -> f32,
        bias: Option<&[f32]>,
    ) -> Self {
        assert_eq!(values.len(), n * k, "PackedWeights::new: n * k values");
        assert!(group == 2 || group == 4, "PackedWeights::new: group 2 or 4");
        let kp = k.div_ceil(group);
        let step_bytes = NR * group;
        let panels = n.div_ceil(NR);
        let bytes = panels * kp * step_bytes;
        let mut lines = Vec::with_capacity(bytes.div_ceil(64));
        advise_huge_pages(lines.spare_capacity_mut());
        lines.resize(bytes.div_ceil(64), Line([0; 64]));
        {
            let flat = lines_as_bytes_mut(&mut lines);
            for c in 0..n {
                let (panel, lane) = (c / NR, c % NR);
                let base = panel * kp * step_bytes + lane * group;
                for (kk, &v) in values[c * k..(c + 1) * k].iter().enumerate() {
                    flat[base + (kk / group) * step_bytes + (kk % group)] = v;
                }
            }
        }
        let padded = panels * NR;
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
            kp,
            group,
            step_bytes,
            panels,
            row_sums: rs,
            scales,
            init,
        }
    }

    /// The packed bytes (`panels * kp * step_bytes` of them, then padding).
    pub(crate) fn bytes(&self) -> &[i8] {
        lines_as_bytes(&self.lines)
    }

    /// The bytes of panel `j`: `kp * step_bytes` of them.
    pub(crate) fn panel(&self, j: usize) -> &[i8] {
        let len = self.kp * self.step_bytes;
        &self.bytes()[j * len..(j + 1) * len]
    }
}

impl std::fmt::Debug for PackedWeights {
    /// The shape only (the packed bytes can be many megabytes).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedWeights")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("panels", &self.panels)
            .field("kp", &self.kp)
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
        let p = PackedWeights::new(&values, n, k, 2, &rs, |c| c as f32 + 1.0, None);
        assert_eq!((p.kp, p.panels), (3, 2));
        assert_eq!(p.bytes().as_ptr() as usize % 64, 0);
        let want = |c: usize, kk: usize| {
            if c < n && kk < k {
                values[c * k + kk]
            } else {
                0
            }
        };
        for c in 0..p.panels * NR {
            for kk in 0..p.kp * 2 {
                let (panel, lane) = (c / NR, c % NR);
                // The AVX2 description: channels 0-7 then 8-15, each a (k, k + 1) pair.
                let byte = p.panel(panel)
                    [(kk / 2) * PAIR_BYTES + (lane / 8) * 16 + (lane % 8) * 2 + kk % 2];
                assert_eq!(byte, want(c, kk), "c {c} k {kk}");
            }
        }
        let p4 = PackedWeights::new(&values, n, k, 4, &rs, |c| c as f32 + 1.0, None);
        assert_eq!((p4.kp, p4.step_bytes), (2, 64));
        for c in 0..p4.panels * NR {
            for kk in 0..p4.kp * 4 {
                let byte = p4.panel(c / NR)[(kk / 4) * 64 + (c % NR) * 4 + kk % 4];
                assert_eq!(byte, want(c, kk), "c {c} k {kk}");
            }
        }
        assert_eq!(p.row_sums[n], 0);
        assert_eq!(p.scales[3], 4.0);
        assert_eq!(p.init[0], 0.0);
    }
}
