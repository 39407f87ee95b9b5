//! Measured per-core peak of each kernel's multiply-add instruction: the ceiling its tiles are
//! held to ("what fraction of the machine does the kernel reach?"), measured rather than taken
//! from a data sheet, since clocks, VMs and microarchitectures differ.
//!
//! Each measurement runs [`CHAINS`] independent accumulator chains of the kernel's core step
//! (`vpmaddwd` + `vpaddd` for `avx2`, as in its tile; `vpdpbusd` for the VNNI kernels) on the
//! calling thread, enough of them to be bound by throughput rather than latency, and keeps the
//! best of several runs.

use std::time::Instant;

/// Independent chains per measurement (enough to cover latency 5 at 2 instructions per cycle).
const CHAINS: usize = 12;

/// Iterations of all chains per timed run.
const ITERS: usize = 1 << 18;

/// Timed runs; the fastest counts.
const RUNS: usize = 8;

/// Times `run(iters, seed)` (which performs `iters` iterations of [`CHAINS`] chains, each
/// step `macs_per_step` multiply-adds) and returns GOP/s: best of [`RUNS`] after one warm-up.
pub(crate) fn measure_chains(macs_per_step: usize, run: impl Fn(usize, i32) -> i32) -> f64 {
    let mut best = f64::INFINITY;
    let mut sink = 0i32;
    for r in 0..=RUNS {
        let start = Instant::now();
        sink = sink.wrapping_add(run(ITERS, std::hint::black_box(r as i32 + 3)));
        let s = start.elapsed().as_secs_f64();
        // Run 0 warms the core up (clock, caches) and is not counted.
        if r > 0 {
            best = best.min(s);
        }
    }
    std::hint::black_box(sink);
    2.0 * (CHAINS * macs_per_step * ITERS) as f64 / best / 1e9
}

/// [`measure_chains`] for 16-MAC steps (`vpmaddwd` on 16 i16 pairs).
pub(crate) fn measure(run: impl Fn(usize, i32) -> i32) -> f64 {
    measure_chains(16, run)
}

pub(crate) use chains::*;

mod chains {
    use super::CHAINS;
    use std::arch::x86_64::*;

    /// Sums the i32 lanes of the chains (so that no chain is dead code).
    #[target_feature(enable = "avx2")]
    fn fold(acc: &[__m256i; CHAINS]) -> i32 {
        let mut s = _mm256_setzero_si256();
        for a in acc {
            s = _mm256_add_epi32(s, *a);
        }
        _mm256_extract_epi32::<0>(s) ^ _mm256_extract_epi32::<7>(s)
    }

    /// `CHAINS` chains of `x = vpaddd(vpmaddwd(x, b), c)`, the AVX2 tile's step.
    ///
    /// # Safety
    /// AVX2 and FMA are available.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn madd_chains(iters: usize, seed: i32) -> i32 {
        let b = _mm256_set1_epi32(seed);
        let c = _mm256_set1_epi32(seed.rotate_left(7));
        let mut acc = [_mm256_setzero_si256(); CHAINS];
        for (i, a) in acc.iter_mut().enumerate() {
            *a = _mm256_set1_epi32(seed ^ i as i32);
        }
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_add_epi32(_mm256_madd_epi16(*a, b), c);
            }
        }
        fold(&acc)
    }

    /// `CHAINS` chains of 256-bit `x = vpdpbusd(x, a, b)`.
    ///
    /// # Safety
    /// AVX-VNNI, AVX2 and FMA are available.
    #[target_feature(enable = "avx2,fma,avxvnni")]
    pub(crate) unsafe fn dpbusd256_chains(iters: usize, seed: i32) -> i32 {
        let a = _mm256_set1_epi32(seed);
        let b = _mm256_set1_epi32(seed.rotate_left(7));
        let mut acc = [_mm256_setzero_si256(); CHAINS];
        for (i, x) in acc.iter_mut().enumerate() {
            *x = _mm256_set1_epi32(i as i32);
        }
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_dpbusd_avx_epi32(*x, a, b);
            }
        }
        fold(&acc)
    }

    /// `CHAINS` chains of 512-bit `x = vpdpbusd(x, a, b)`.
    ///
    /// # Safety
    /// AVX-512 F, BW and VNNI are available.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2")]
    pub(crate) unsafe fn dpbusd512_chains(iters: usize, seed: i32) -> i32 {
        let a = _mm512_set1_epi32(seed);
        let b = _mm512_set1_epi32(seed.rotate_left(7));
        let mut acc = [_mm512_setzero_si512(); CHAINS];
        for (i, x) in acc.iter_mut().enumerate() {
            *x = _mm512_set1_epi32(i as i32);
        }
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_dpbusd_epi32(*x, a, b);
            }
        }
        let mut s = _mm512_setzero_si512();
        for x in &acc {
            s = _mm512_add_epi32(s, *x);
        }
        _mm512_reduce_add_epi32(s)
    }
}
