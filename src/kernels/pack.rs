//! The packed weight layout, made once when a layer is built (no call repacks).
//!
//! Weights `q[N][K]` are cut into panels of [`NR`] = 16 output channels. Within a panel, K is
//! walked in pairs `(2p, 2p + 1)`; each pair takes 32 bytes: 16 for channels 0..8 of the panel
//! then 16 for channels 8..16, each channel contributing its two consecutive K values:
//!
//! ```text
//! panel j, pair p:  [c0 k2p, c0 k2p+1, c1 k2p, c1 k2p+1, ... c7 k2p+1 | c8 k2p, ... c15 k2p+1]
//! ```
//!
//! Sign-extending one 16-byte half to sixteen i16 (`vpmovsxbw`) gives exactly the operand of
//! `vpmaddwd` against a broadcast `(x[2p], x[2p+1])` i16 pair: one i32 lane per channel, no
//! horizontal reduction. K is zero padded to an even length and N to a multiple of 16; zeros
//! add nothing to an integer dot product, and padded channels are never stored.
//!
//! The per-channel epilogue constants (row sums for the zero-point correction, weight scales
//! repeated per channel, bias or 0.0) are padded the same way, so the epilogue loads them with
//! plain vector loads.

/// Output channels per panel.
pub(crate) const NR: usize = 16;

/// Bytes of one K pair of one panel.
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
    /// K pairs per panel: `ceil(K / 2)`.
    pub(crate) kp: usize,
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
    /// Packs row-major `values[n * k]` with their row sums, scales (`scale(n)`) and bias.
    pub(crate) fn new(
        values: &[i8],
        n: usize,
        k: usize,
        row_sums: &[i32],
        scale: impl Fn(usize) -> f32,
        bias: Option<&[f32]>,
    ) -> Self {
        assert_eq!(values.len(), n * k, "PackedWeights::new: n * k values");
        let kp = k.div_ceil(2);
        let panels = n.div_ceil(NR);
        let bytes = panels * kp * PAIR_BYTES;
        let mut lines = vec![Line([0; 64]); bytes.div_ceil(64)];
        {
            let flat = lines_as_bytes_mut(&mut lines);
            for c in 0..n {
                let (panel, lane) = (c / NR, c % NR);
                let (half, ch) = (lane / 8, lane % 8);
                let base = panel * kp * PAIR_BYTES + half * 16 + ch * 2;
                for (kk, &v) in values[c * k..(c + 1) * k].iter().enumerate() {
                    flat[base + (kk / 2) * PAIR_BYTES + (kk % 2)] = v;
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
            panels,
            row_sums: rs,
            scales,
            init,
        }
    }

    /// The packed bytes (`panels * kp * 32` of them, then padding).
    pub(crate) fn bytes(&self) -> &[i8] {
        lines_as_bytes(&self.lines)
    }

    /// The bytes of panel `j`: `kp * 32` of them.
    pub(crate) fn panel(&self, j: usize) -> &[i8] {
        let len = self.kp * PAIR_BYTES;
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
        let p = PackedWeights::new(&values, n, k, &rs, |c| c as f32 + 1.0, None);
        assert_eq!((p.kp, p.panels), (3, 2));
        assert_eq!(p.bytes().as_ptr() as usize % 64, 0);
        for c in 0..p.panels * NR {
            for kk in 0..p.kp * 2 {
                let (panel, lane) = (c / NR, c % NR);
                let byte = p.panel(panel)
                    [(kk / 2) * PAIR_BYTES + (lane / 8) * 16 + (lane % 8) * 2 + kk % 2];
                let want = if c < n && kk < k {
                    values[c * k + kk]
                } else {
                    0
                };
                assert_eq!(byte, want, "c {c} k {kk}");
            }
        }
        assert_eq!(p.row_sums[n], 0);
        assert_eq!(p.scales[3], 4.0);
        assert_eq!(p.init[0], 0.0);
    }
}
