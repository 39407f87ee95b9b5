//! The x86-64 kernels and the vector widths they share.
//!
//! - [`v256`]: the AVX2 + FMA width: the row quantizer and the 256-bit epilogues;
//! - [`v512`]: the AVX-512 width: the 512-bit epilogues;
//! - [`amx`]: `tdpbusd` on AMX tiles (the `amx` kernel), AVX-512 VNNI for small batches;
//! - [`avx2`]: `vpmaddwd` on i16 (the `avx2` kernel);
//! - [`avx512vnni`]: `vpdpbusd` on u8 (the `avx512vnni` kernel);
//! - [`avxvnni`]: the 256-bit VEX `vpdpbusd` (`avxvnni`) and its AVX2 stand-in;
//! - [`f32_avx2`], [`f32_avx512`]: the float layer's f32 kernels;
//! - [`peak`]: the measured one-core peak of each kernel's core instruction.
//!
//! Three tunings depend on the CPU rather than its instructions: [`weight_prefetch`] and
//! [`pulls_into_l2`] (the vendor) and [`l2_bytes`] (the cache the one-row kernel's prefetch is
//! chosen by).

pub(crate) mod amx;
pub(crate) mod avx2;
pub(crate) mod avx512vnni;
pub(crate) mod avxvnni;
pub(crate) mod f32_avx2;
pub(crate) mod f32_avx512;
pub(crate) mod peak;
pub(crate) mod v256;
pub(crate) mod v512;

/// Bytes ahead at which the kernels' weight streams are prefetched (`avx512vnni`'s one-row
/// stream, and the tiles of `f32-avx512` and `f32-avx2-fma`, one row or several): `intel` (the
/// distance measured on Intel) except on AMD, where they issue no prefetch at all.
///
/// Measured on an AMD EPYC Zen 4 (family 25, model 17), 2026-12-03, one process per setting,
/// three rounds, median microseconds: without the prefetch, `avx512vnni` took 2,068-2,308 us
/// instead of 2,731-3,051 on 1 x 4096 x 14336 at 1 thread (56 MiB of weights from memory) and
/// 1,030-1,365 instead of 1,629-2,103 at 2 threads, with 1 x 4096 x 4096 (16 MiB, in L3) even
/// or better; `f32-avx512` took 2,302-2,838 us instead of 3,847-3,943 on 1 x 4096 x 4096. Zen 4's
/// hardware prefetchers follow the streams on their own, and the extra load-port operations and
/// miss buffers the prefetches take only slow them down. Prefetching to L2 or with the
/// non-temporal hint, or from further ahead, was no better. On the Intel Xeon (model 167) the
/// prefetch was measured faster, so Intel keeps it.
pub(crate) fn weight_prefetch(intel: usize) -> usize {
    if is_amd() {
        0
    } else {
        intel
    }
}

/// Whether the AVX-512 VNNI tiles pull the driver's next channel group into L2 while the row
/// blocks after a group's first run ([`crate::kernels::contract::Pull`]): on Intel, not on AMD.
///
/// Measured on the Intel Xeon family 6 model 207 (2 MiB L2, 260 MiB L3), 2026-12-06, one
/// thread: without the pull, the first row block of each channel group streams its weights
/// from L3 at one core's L3 bandwidth, and 32 x 1024 x 4096 took 451-460 us at best over four
/// processes, 424-431 us with it (and 128 x 4096 x 4096 1-3% less). It is not measured on AMD,
/// whose cores reach their L3 faster and whose hardware prefetchers made every software
/// prefetch measured there slower ([`weight_prefetch`]), so AMD keeps what was measured.
pub(crate) fn pulls_into_l2() -> bool {
    !is_amd()
}

/// The L2 cache in bytes of the core that first asks (read once with `cpuid` leaf 4, the
/// deterministic cache parameters of Intel CPUs), or 0 where that leaf does not describe one
/// (AMD, which has no prefetch to turn off: [`weight_prefetch`]). A speed hint only.
pub(crate) fn l2_bytes() -> usize {
    static L2: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *L2.get_or_init(|| {
        if is_amd() {
            return 0;
        }
        // SAFETY: `cpuid` exists on every x86-64 CPU; leaf 0 gives the highest leaf, and leaf 4
        // is read only where it exists (`__cpuid*` are `unsafe fn` in older Rust releases).
        #[allow(unused_unsafe)]
        let max_leaf = unsafe { std::arch::x86_64::__cpuid(0) }.eax;
        if max_leaf < 4 {
            return 0;
        }
        for sub in 0..16 {
            // SAFETY: as above (leaf 4 exists).
            #[allow(unused_unsafe)]
            let r = unsafe { std::arch::x86_64::__cpuid_count(4, sub) };
            let kind = r.eax & 0x1f;
            if kind == 0 {
                break;
            }
            // Level 2, data or unified: ways x partitions x line size x sets.
            if (r.eax >> 5) & 0x7 == 2 && (kind == 1 || kind == 3) {
                let ways = ((r.ebx >> 22) & 0x3ff) as usize + 1;
                let partitions = ((r.ebx >> 12) & 0x3ff) as usize + 1;
                let line = (r.ebx & 0xfff) as usize + 1;
                let sets = r.ecx as usize + 1;
                // Saturating: a hypervisor's garbage must not overflow.
                return ways
                    .saturating_mul(partitions)
                    .saturating_mul(line)
                    .saturating_mul(sets);
            }
        }
        0
    })
}

/// Whether the CPU's vendor string is `AuthenticAMD` (read once: `cpuid` exits to the
/// hypervisor in a virtual machine).
fn is_amd() -> bool {
    static AMD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AMD.get_or_init(|| {
        // SAFETY: `cpuid` leaf 0 exists on every x86-64 CPU (`__cpuid` is an `unsafe fn` in older
        // Rust releases, safe in newer ones).
        #[allow(unused_unsafe)]
        let r = unsafe { std::arch::x86_64::__cpuid(0) };
        let vendor = [
            r.ebx.to_le_bytes(),
            r.edx.to_le_bytes(),
            r.ecx.to_le_bytes(),
        ];
        vendor.concat() == b"AuthenticAMD"
    })
}

#[cfg(test)]
mod tests {
    /// `l2_bytes` is 0 on AMD, and otherwise, where it finds an L2, the size Linux reports
    /// for the L2 of one of the CPUs (cores may differ: hybrid desktop parts).
    #[test]
    fn l2_bytes_is_a_size_linux_reports() {
        let l2 = super::l2_bytes();
        if super::is_amd() {
            assert_eq!(l2, 0);
            return;
        }
        let mut reported = Vec::new();
        for cpu in 0..1024 {
            let dir = format!("/sys/devices/system/cpu/cpu{cpu}/cache/index2");
            let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).ok();
            let (Some(level), Some(size)) = (read("level"), read("size")) else {
                continue;
            };
            let size = size.trim();
            if level.trim() == "2" && size.ends_with('K') {
                let kib: usize = size[..size.len() - 1].parse().expect("a size in KiB");
                reported.push(kib * 1024);
            }
        }
        if l2 != 0 && !reported.is_empty() {
            assert!(reported.contains(&l2), "{l2} not in {reported:?}");
        }
    }
}
