//! Measured per-core peak of each kernel's multiply-add instruction: the ceiling its tiles are
//! held to ("what fraction of the machine does the kernel reach?"), measured rather than taken
//! from a data sheet, since clocks, VMs and microarchitectures differ.
//!
//! Each measurement runs [`CHAINS`] independent accumulator chains of the kernel's core step
//! (`vpmaddwd` + `vpaddd` for `avx2`, as in its tile; `vpdpbusd` for the VNNI kernels) on the
//! calling thread, enough of them to be bound by throughput rather than latency, and keeps the
//! best of several runs.

#[cfg(target_arch = "x86_64")]
use std::time::Instant;

use super::Kernel;

/// Independent chains per measurement (enough to cover latency 5 at 2 instructions per cycle).
#[cfg(target_arch = "x86_64")]
const CHAINS: usize = 12;

/// Iterations of all chains per timed run.
#[cfg(target_arch = "x86_64")]
const ITERS: usize = 1 << 18;

/// Timed runs; the fastest counts.
#[cfg(target_arch = "x86_64")]
const RUNS: usize = 8;

/// The kernel's measured peak in GOP/s (2 operations per int8 multiply-add) on one core, or
/// `None` for `scalar` and kernels this CPU cannot run.
pub(crate) fn peak_gops(kernel: Kernel) -> Option<f64> {
    #[cfg(not(target_arch = "x86_64"))]
    {
        // No SIMD kernel on other targets yet (the NEON slot would add its measurement here).
        let _ = kernel;
        None
    }
    #[cfg(target_arch = "x86_64")]
    measure(kernel)
}

/// [`peak_gops`] on x86-64.
#[cfg(target_arch = "x86_64")]
fn measure(kernel: Kernel) -> Option<f64> {
    if !kernel.is_available() {
        return None;
    }
    let (macs_per_iter, run): (usize, fn(usize, i32) -> i32) = match kernel {
        Kernel::Scalar => return None,
        Kernel::Avx2 => (CHAINS * 16, |iters, seed| {
            // SAFETY: AVX2 and FMA are available (`is_available` above).
            unsafe { x86::madd_chains(iters, seed) }
        }),
        Kernel::AvxVnni => (CHAINS * 32, |iters, seed| {
            // SAFETY: AVX-VNNI, AVX2 and FMA are available (`is_available` above).
            unsafe { x86::dpbusd256_chains(iters, seed) }
        }),
        Kernel::Avx512Vnni => (CHAINS * 64, |iters, seed| {
            // SAFETY: AVX-512 F/BW/VNNI are available (`is_available` above).
            unsafe { x86::dpbusd512_chains(iters, seed) }
        }),
    };
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
    Some(2.0 * (macs_per_iter * ITERS) as f64 / best / 1e9)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
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
    pub(super) unsafe fn madd_chains(iters: usize, seed: i32) -> i32 {
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
    pub(super) unsafe fn dpbusd256_chains(iters: usize, seed: i32) -> i32 {
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
    pub(super) unsafe fn dpbusd512_chains(iters: usize, seed: i32) -> i32 {
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
