//! The AVX-VNNI int8 kernel (`avxvnni`: the VEX-encoded, 256-bit `vpdpbusd` of Intel Alder
//! Lake / Sapphire Rapids and later and of AMD Zen 5), and its exact AVX2 stand-in
//! (`avxvnni-emulated`), which runs the same tile code on any AVX2 CPU so that only the
//! instruction itself is left to the hardware.
//!
//! **Products.** The scheme of the AVX-512 VNNI kernel on 256-bit registers: inputs offset to
//! u8 (`u = q + 128`), four u8 x s8 products per i32 lane added without saturation, lanes
//! holding `dot + 128 * row_sum` (exact for K <= 65,793), corrected by the shared 256-bit
//! epilogue.
//!
//! **Tiles.** `ROWS` rows x one panel (16 channels = two ymm per row): per K quad two 32-byte
//! weight loads reused by every row, one broadcast per row, `2 * ROWS` independent chains
//! (16 ymm registers bound the tile: 6 rows use 12 accumulators, 2 weights and a broadcast).

use std::arch::x86_64::*;

use super::v256::V256;
use crate::flavour::Flavour;
use crate::gemm::pack::PANEL;
use crate::kernels::contract::Int8Kernel;
use crate::quantize::inputs::RowParams;

use super::avx512vnni::{check_u8, EXACT_U8_RUN};

/// Bytes of one K quad of one panel.
const QUAD_BYTES: usize = 4 * PANEL;

/// `acc + sum of the four u8 x s8 products of each i32 lane` (what `vpdpbusd` computes).
pub(crate) trait Dpbusd256: Copy + Send + Sync + 'static {
    /// The kernel's registry name.
    const NAME: &'static str;
    /// The proof, where the CPU runs it.
    fn new() -> Option<Self>;
    /// The 256-bit width it runs with.
    fn width(self) -> V256;
    /// `vpdpbusd(acc, u, w)`.
    ///
    /// # Safety
    /// The CPU runs the implementation (the value is the proof).
    unsafe fn dpbusd(self, acc: __m256i, u: __m256i, w: __m256i) -> __m256i;
    /// [`tile`] compiled with the implementation's features.
    ///
    /// # Safety
    /// As [`tile`].
    unsafe fn tile<const R: usize>(
        self,
        x: [*const u8; R],
        w: *const i8,
        steps: usize,
        acc: &mut [i32],
    );
    /// The one-core peak of its step, GOP/s.
    fn peak(self) -> f64;
}

/// The real VEX `vpdpbusd` (AVX-VNNI).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vex(V256);

impl Dpbusd256 for Vex {
    const NAME: &'static str = "avxvnni";
    fn new() -> Option<Self> {
        let w = V256::new()?;
        std::arch::is_x86_feature_detected!("avxvnni").then_some(Vex(w))
    }
    fn width(self) -> V256 {
        self.0
    }
    #[inline(always)]
    unsafe fn dpbusd(self, acc: __m256i, u: __m256i, w: __m256i) -> __m256i {
        // SAFETY: AVX-VNNI is available (`self`).
        unsafe { vex_dpbusd(acc, u, w) }
    }
    #[target_feature(enable = "avx2,fma,avxvnni")]
    unsafe fn tile<const R: usize>(
        self,
        x: [*const u8; R],
        w: *const i8,
        steps: usize,
        acc: &mut [i32],
    ) {
        // SAFETY: forwarded contract.
        unsafe { tile(self, x, w, steps, acc) }
    }
    fn peak(self) -> f64 {
        super::peak::measure_chains(32, |iters, seed| {
            // SAFETY: AVX-VNNI (`self`).
            unsafe { super::peak::dpbusd256_chains(iters, seed) }
        })
    }
}

#[inline]
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn vex_dpbusd(acc: __m256i, u: __m256i, w: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(acc, u, w)
}

/// An exact AVX2 stand-in for `vpdpbusd`: u8 and i8 widened to i16, `vpmaddwd` (pair sums of
/// at most `2 * 255 * 128`, no saturation), adjacent pairs added, lanes put back in order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Emulated(V256);

impl Dpbusd256 for Emulated {
    const NAME: &'static str = "avxvnni-emulated";
    fn new() -> Option<Self> {
        V256::new().map(Emulated)
    }
    fn width(self) -> V256 {
        self.0
    }
    #[inline(always)]
    unsafe fn dpbusd(self, acc: __m256i, u: __m256i, w: __m256i) -> __m256i {
        // SAFETY: AVX2 is available (`self`).
        unsafe { emulated_dpbusd(acc, u, w) }
    }
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const R: usize>(
        self,
        x: [*const u8; R],
        w: *const i8,
        steps: usize,
        acc: &mut [i32],
    ) {
        // SAFETY: forwarded contract.
        unsafe { tile(self, x, w, steps, acc) }
    }
    fn peak(self) -> f64 {
        // Four instructions per emulated step: a quarter of the vpmaddwd chains' rate.
        super::peak::measure(|iters, seed| {
            // SAFETY: AVX2 (`self`).
            unsafe { super::peak::madd_chains(iters, seed) }
        }) / 2.0
    }
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn emulated_dpbusd(acc: __m256i, u: __m256i, w: __m256i) -> __m256i {
    let (u_lo, u_hi) = (_mm256_castsi256_si128(u), _mm256_extracti128_si256::<1>(u));
    let (w_lo, w_hi) = (_mm256_castsi256_si128(w), _mm256_extracti128_si256::<1>(w));
    // Pair sums of bytes 0..16 (quads 0-3) and 16..32 (quads 4-7).
    let p_lo = _mm256_madd_epi16(_mm256_cvtepu8_epi16(u_lo), _mm256_cvtepi8_epi16(w_lo));
    let p_hi = _mm256_madd_epi16(_mm256_cvtepu8_epi16(u_hi), _mm256_cvtepi8_epi16(w_hi));
    // hadd per 128-bit lane: [q0 q1 q4 q5 | q2 q3 q6 q7]; reorder the 64-bit pairs.
    let q = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_hadd_epi32(p_lo, p_hi));
    _mm256_add_epi32(acc, q)
}

/// Defines a kernel type of `$rows` rows on the `vpdpbusd` implementation `$dp`.
macro_rules! vnni256_kernel {
    ($name:ident, $dp:ty, $rows:literal, $small:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug)]
        pub(crate) struct $name($dp);

        // SAFETY: `new` requires the `vpdpbusd` implementation's features (its proof, which
        // implies AVX2 and FMA); `dots` asserts its bounds (`check_u8`) before reading.
        unsafe impl Int8Kernel for $name {
            const NAME: &'static str = <$dp as Dpbusd256>::NAME;
            const ROWS: usize = $rows;
            const CHANNELS: usize = PANEL;
            const K_STEP: usize = 4;
            const K_ALIGN: usize = 4;
            const INPUT_OFFSET: i32 = 128;
            const EXACT_RUN: usize = EXACT_U8_RUN;
            type Input = u8;
            type Width = V256;
            type Small = $small;

            fn new() -> Option<Self> {
                <$dp as Dpbusd256>::new().map($name)
            }

            fn small(self) -> $small {
                $small(self.0)
            }

            fn width(self) -> V256 {
                self.0.width()
            }

            fn quantize(
                self,
                flavour: Flavour,
                asymmetric: bool,
                row: &[f32],
                out: &mut [u8],
            ) -> Option<RowParams> {
                self.0.width().quantize(flavour, asymmetric, row, out)
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
                check_u8(x, x_stride, rows, w, panel_stride, steps, acc, $rows, 1);
                let xs: [*const u8; $rows] =
                    std::array::from_fn(|r| x[r.min(rows - 1) * x_stride..].as_ptr());
                // SAFETY: the implementation's features (`self.0`); every row has
                // `4 * steps` bytes and the panel `steps * 64` (checked).
                unsafe { self.0.tile::<$rows>(xs, w.as_ptr(), steps, acc) }
            }

            fn peak_gops(self) -> Option<f64> {
                Some(self.0.peak())
            }
        }
    };
}

vnni256_kernel!(
    AvxVnni,
    Vex,
    6,
    AvxVnni4,
    "AVX-VNNI, 6 rows x 16 channels (12 chains)."
);
vnni256_kernel!(
    AvxVnni4,
    Vex,
    4,
    AvxVnniRow,
    "AVX-VNNI, 4 rows x 16 channels."
);
vnni256_kernel!(AvxVnniRow, Vex, 1, AvxVnniRow, "AVX-VNNI, one row.");
vnni256_kernel!(
    AvxVnniEmulated,
    Emulated,
    6,
    AvxVnniEmulated4,
    "The AVX-VNNI tiles on the AVX2 stand-in."
);
vnni256_kernel!(
    AvxVnniEmulated4,
    Emulated,
    4,
    AvxVnniEmulatedRow,
    "The stand-in, 4 rows."
);
vnni256_kernel!(
    AvxVnniEmulatedRow,
    Emulated,
    1,
    AvxVnniEmulatedRow,
    "The stand-in, one row."
);

/// A tile of `R` rows x 16 channels (inlined into each implementation's `tile`, which
/// carries its target features).
///
/// # Safety
/// `dp`'s features; each `x[r]` valid for `4 * steps` bytes, `w` for `steps * 64`, `acc` for
/// `R * 16` i32.
#[inline(always)]
unsafe fn tile<D: Dpbusd256, const R: usize>(
    dp: D,
    x: [*const u8; R],
    w: *const i8,
    steps: usize,
    acc: &mut [i32],
) {
    // SAFETY: every intrinsic below is AVX2 (implied by `dp`); the reads are in bounds per the
    // contract (q < steps).
    unsafe {
        let mut a = [[_mm256_setzero_si256(); 2]; R];
        for q in 0..steps {
            let wq = w.add(q * QUAD_BYTES);
            let (w0, w1) = (
                _mm256_loadu_si256(wq.cast()),
                _mm256_loadu_si256(wq.add(32).cast()),
            );
            for (r, ar) in a.iter_mut().enumerate() {
                let xv = _mm256_set1_epi32(x[r].add(4 * q).cast::<i32>().read_unaligned());
                // Unsigned inputs first, signed weights second: u8 x s8.
                ar[0] = dp.dpbusd(ar[0], xv, w0);
                ar[1] = dp.dpbusd(ar[1], xv, w1);
            }
        }
        for (r, ar) in a.iter().enumerate() {
            _mm256_storeu_si256(acc.as_mut_ptr().add(r * 16).cast(), ar[0]);
            _mm256_storeu_si256(acc.as_mut_ptr().add(r * 16 + 8).cast(), ar[1]);
        }
    }
}
