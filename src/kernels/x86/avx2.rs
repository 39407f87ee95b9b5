//! The AVX2 + FMA int8 kernel (`avx2`): exact i16 products with `vpmaddwd`.
//!
//! **Exact products.** Weights (i8, possibly -128) are sign-extended to i16 with `vpmovsxbw`
//! and inputs are kept as i16; `vpmaddwd` multiplies i16 pairs and adds each pair into an i32
//! lane. Every product is at most `128 * 128 = 2^14`, a pair sum at most `2^15`, so nothing
//! saturates (no `vpmaddubsw`, no `vpsignb`). The i32 lanes are exact for runs of at most
//! 131,071 products (`EXACT_RUN`); the driver never asks for longer ones.
//!
//! **Tiles.** [`Avx2`]: 4 rows x 16 channels (one panel): per K pair, two 16-byte weight loads
//! sign-extended into two registers, one broadcast `(x[2p], x[2p+1])` per row, 8 `vpmaddwd` +
//! `vpaddd` into 8 accumulators. [`Avx2Row`] (the one-row kernel, bound by the weight stream):
//! 4 K pairs per iteration into independent accumulators and a software prefetch 2 KiB ahead.

use std::arch::x86_64::*;

use super::v256::V256;
use crate::flavour::Flavour;
use crate::gemm::pack::PANEL;
use crate::kernels::contract::Int8Kernel;
use crate::kernels::scalar::EXACT_I32_RUN;
use crate::quantize::inputs::RowParams;

/// Bytes of one K pair of one panel.
const PAIR_BYTES: usize = 2 * PANEL;

/// Bytes ahead of the current K pair at which the one-row kernel prefetches the weight stream
/// (about the bytes in flight that DRAM latency x bandwidth asks for; measured against 1 and
/// 4 KiB on 4096 x 4096 and 4096 x 14336).
const PREFETCH: usize = 2048;

/// K pairs per iteration of the one-row kernel.
const GEMV_UNROLL: usize = 4;

/// The 4-row AVX2 kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2(V256);

/// The one-row AVX2 kernel (the GEMV).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2Row(V256);

/// Asserts the slices `dots` reads: rows of `2 * steps` i16 at `x_stride`, one panel of
/// `steps` pairs.
fn check(
    x: &[i16],
    x_stride: usize,
    rows: usize,
    w: &[i8],
    steps: usize,
    acc: &[i32],
    max_rows: usize,
) {
    assert!((1..=max_rows).contains(&rows) && acc.len() >= max_rows * PANEL);
    assert!(x.len() >= (rows - 1) * x_stride + 2 * steps && w.len() >= steps * PAIR_BYTES);
    assert!(2 * steps <= EXACT_I32_RUN);
}

// SAFETY: `new` requires AVX2 and FMA (the `V256` token); `dots` asserts its bounds (`check`)
// before reading.
unsafe impl Int8Kernel for Avx2 {
    const NAME: &'static str = "avx2";
    const ROWS: usize = 4;
    const CHANNELS: usize = PANEL;
    const K_STEP: usize = 2;
    const K_ALIGN: usize = 2;
    const INPUT_OFFSET: i32 = 0;
    const EXACT_RUN: usize = EXACT_I32_RUN;
    type Input = i16;
    type Width = V256;
    type Small = Avx2Row;

    fn new() -> Option<Self> {
        V256::new().map(Avx2)
    }

    fn small(self) -> Avx2Row {
        Avx2Row(self.0)
    }

    fn width(self) -> V256 {
        self.0
    }

    fn quantize(
        self,
        flavour: Flavour,
        asymmetric: bool,
        row: &[f32],
        out: &mut [i16],
    ) -> Option<RowParams> {
        self.0.quantize(flavour, asymmetric, row, out)
    }

    fn dots(
        self,
        x: &[i16],
        x_stride: usize,
        rows: usize,
        w: &[i8],
        _panel_stride: usize,
        steps: usize,
        acc: &mut [i32],
    ) {
        check(x, x_stride, rows, w, steps, acc, 4);
        // Rows past `rows` read the last row again (their dots are not used).
        let row = |r: usize| x[r.min(rows - 1) * x_stride..].as_ptr();
        let xs = [row(0), row(1), row(2), row(3)];
        // SAFETY: AVX2 and FMA (`self.0`); each row pointer has `2 * steps` i16 and `w` has
        // `steps * 32` bytes (checked).
        unsafe { tile4(xs, w.as_ptr(), steps, acc) }
    }

    fn peak_gops(self) -> Option<f64> {
        Some(super::peak::measure(|iters, seed| {
            // SAFETY: AVX2 (`self.0`).
            unsafe { super::peak::madd_chains(iters, seed) }
        }))
    }
}

// SAFETY: as for `Avx2`.
unsafe impl Int8Kernel for Avx2Row {
    const NAME: &'static str = "avx2";
    const ROWS: usize = 1;
    const CHANNELS: usize = PANEL;
    const K_STEP: usize = 2;
    const K_ALIGN: usize = 2;
    const INPUT_OFFSET: i32 = 0;
    const EXACT_RUN: usize = EXACT_I32_RUN;
    type Input = i16;
    type Width = V256;
    type Small = Avx2Row;

    fn new() -> Option<Self> {
        V256::new().map(Avx2Row)
    }

    fn small(self) -> Self {
        self
    }

    fn width(self) -> V256 {
        self.0
    }

    fn quantize(
        self,
        flavour: Flavour,
        asymmetric: bool,
        row: &[f32],
        out: &mut [i16],
    ) -> Option<RowParams> {
        self.0.quantize(flavour, asymmetric, row, out)
    }

    fn dots(
        self,
        x: &[i16],
        x_stride: usize,
        rows: usize,
        w: &[i8],
        _panel_stride: usize,
        steps: usize,
        acc: &mut [i32],
    ) {
        check(x, x_stride, rows, w, steps, acc, 1);
        // SAFETY: AVX2 and FMA (`self.0`); bounds checked.
        unsafe { gemv(x.as_ptr(), w.as_ptr(), steps, acc) }
    }

    fn peak_gops(self) -> Option<f64> {
        Avx2(self.0).peak_gops()
    }
}

/// The 4 x 16 tile.
///
/// # Safety
/// AVX2 and FMA; each `x[r]` is valid for `2 * steps` i16, `w` for `steps * 32` bytes, `acc`
/// for 64 i32.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile4(x: [*const i16; 4], w: *const i8, steps: usize, acc: &mut [i32]) {
    let mut a = [[_mm256_setzero_si256(); 2]; 4];
    for p in 0..steps {
        // A prefetch never faults; one per cache line (two K pairs).
        _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(p * PAIR_BYTES + PREFETCH).cast());
        // SAFETY: p < steps: bytes [32p, 32p + 32) of the panel (contract).
        let (w0, w1) = unsafe {
            let wp = w.add(p * PAIR_BYTES);
            (
                _mm256_cvtepi8_epi16(_mm_loadu_si128(wp.cast())),
                _mm256_cvtepi8_epi16(_mm_loadu_si128(wp.add(16).cast())),
            )
        };
        for (r, ar) in a.iter_mut().enumerate() {
            // SAFETY: reads x[r][2p .. 2p + 2] (contract); unaligned reads are allowed.
            let pair = unsafe { x[r].add(2 * p).cast::<i32>().read_unaligned() };
            let xv = _mm256_set1_epi32(pair);
            ar[0] = _mm256_add_epi32(ar[0], _mm256_madd_epi16(w0, xv));
            ar[1] = _mm256_add_epi32(ar[1], _mm256_madd_epi16(w1, xv));
        }
    }
    for (r, ar) in a.iter().enumerate() {
        // SAFETY: acc holds 4 * 16 i32 (contract).
        unsafe {
            _mm256_storeu_si256(acc.as_mut_ptr().add(r * 16).cast(), ar[0]);
            _mm256_storeu_si256(acc.as_mut_ptr().add(r * 16 + 8).cast(), ar[1]);
        }
    }
}

/// The dots of one row against one panel: the products of [`tile4`] with [`GEMV_UNROLL`] K
/// pairs per iteration into independent accumulators (more loads in flight) and a software
/// prefetch of the weight stream. The partial sums are added in i32 at the end: integer
/// addition is exact (every partial sum is bounded by the total's bound), so the result equals
/// the 4-row tile's bit for bit.
///
/// # Safety
/// AVX2 and FMA; `x` valid for `2 * steps` i16, `w` for `steps * 32` bytes, `acc` for 16 i32.
#[target_feature(enable = "avx2,fma")]
unsafe fn gemv(x: *const i16, w: *const i8, steps: usize, acc: &mut [i32]) {
    let mut a = [_mm256_setzero_si256(); 2 * GEMV_UNROLL];
    let mut p = 0;
    while p + GEMV_UNROLL <= steps {
        let wp = w.wrapping_add(p * PAIR_BYTES);
        // A prefetch never faults: past the end of the panel it fetches the next panel's
        // start (or nothing useful past the last one).
        _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(PREFETCH).cast());
        _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(PREFETCH + 64).cast());
        for u in 0..GEMV_UNROLL {
            // SAFETY: p + u < steps: in bounds (contract).
            unsafe {
                let wq = wp.add(u * PAIR_BYTES);
                let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wq.cast()));
                let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wq.add(16).cast()));
                let xv = _mm256_set1_epi32(x.add(2 * (p + u)).cast::<i32>().read_unaligned());
                a[2 * u] = _mm256_add_epi32(a[2 * u], _mm256_madd_epi16(w0, xv));
                a[2 * u + 1] = _mm256_add_epi32(a[2 * u + 1], _mm256_madd_epi16(w1, xv));
            }
        }
        p += GEMV_UNROLL;
    }
    while p < steps {
        // SAFETY: p < steps: in bounds (contract).
        unsafe {
            let wq = w.add(p * PAIR_BYTES);
            let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wq.cast()));
            let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(wq.add(16).cast()));
            let xv = _mm256_set1_epi32(x.add(2 * p).cast::<i32>().read_unaligned());
            a[0] = _mm256_add_epi32(a[0], _mm256_madd_epi16(w0, xv));
            a[1] = _mm256_add_epi32(a[1], _mm256_madd_epi16(w1, xv));
        }
        p += 1;
    }
    let mut s = [a[0], a[1]];
    for u in 1..GEMV_UNROLL {
        s[0] = _mm256_add_epi32(s[0], a[2 * u]);
        s[1] = _mm256_add_epi32(s[1], a[2 * u + 1]);
    }
    // SAFETY: acc holds 16 i32 (contract).
    unsafe {
        _mm256_storeu_si256(acc.as_mut_ptr().cast(), s[0]);
        _mm256_storeu_si256(acc.as_mut_ptr().add(8).cast(), s[1]);
    }
}
