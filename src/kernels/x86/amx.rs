//! The AMX int8 kernel (`amx`, Intel Sapphire Rapids and later): `tdpbusd` on tile registers,
//! for 9 rows and more; fewer rows go to the AVX-512 VNNI kernels (its `Small` chain).
//!
//! **Products.** `tdpbusd tmm_c, tmm_a, tmm_b` adds to each i32 of a 16 x 16 `C` tile the dot
//! product of a row of `A` (64 unsigned bytes) with a column of `B` (64 signed bytes, stored
//! as 16 rows of 4-byte groups, "VNNI layout"), without saturation: the VNNI scheme (inputs
//! `q + 128`, lanes `dot + 128 * row_sum`, exact for K <= 65,793) on 16,384 products per
//! instruction. Our packed panels are already `B` tiles: 16 consecutive K quads of a panel are
//! 16 rows of 64 bytes (the packing pads K to a multiple of 64 for this kernel).
//!
//! **Tile.** 32 rows x 32 channels: per 64 K values, two `A` tiles (rows 0-15, 16-31) and two
//! `B` tiles (the two panels) are loaded, and four `tdpbusd` update the four `C` tiles
//! (`tmm0`-`tmm3`); `tmm4`, `tmm5` hold `A`, `tmm6`, `tmm7` hold `B`. A tile of fewer rows is
//! configured with fewer `A` and `C` rows, so only real rows are read. The `C` tiles are
//! stored to the accumulator buffer and the 512-bit epilogue finishes them.
//!
//! **Configuration.** A run of tiles (`dots_run`: one row block against the channel tiles of
//! an L2 group) reads the thread's tile configuration back (`sttilecfg`) once and loads its
//! own only when they differ, and leaves it loaded: a `ldtilecfg` + `tilerelease` per tile
//! cost about a fifth of the time on 512 x 768 x 3072, and the `sttilecfg` alone, once per
//! tile, a quarter of the kernel's profile (it waits for the previous tile's products).
//! Nothing of the previous state is used: every tile is zeroed or loaded before it is read.
//!
//! **Safety.** Rust has no stable AMX intrinsics, so the instructions are `asm!`. Linux hands out AMX state only after
//! `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, which [`Amx::new`] requests once.

use std::arch::asm;
use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
use std::sync::OnceLock;

use super::avx512vnni::{check_u8, Avx512Vnni, Vnni512, EXACT_U8_RUN};
use super::v512::V512;
use crate::flavour::Flavour;
use crate::gemm::pack::PANEL;
use crate::kernels::contract::{Int8Kernel, PullRun};
use crate::quantize::inputs::RowParams;

/// K values per `A` / `B` tile load (16 quads).
const K_BLOCK: usize = 64;

/// How many K blocks ahead the `B` tiles are prefetched.
const PREFETCH_BLOCKS: usize = 2;

/// The AMX kernel: 32 rows x 32 channels.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Amx(Vnni512);

/// Whether the CPU has AMX-TILE and AMX-INT8, the OS saves their state, and the process was
/// granted it (Linux).
fn amx_usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        let (tile, int8) = (leaf7.edx & (1 << 24) != 0, leaf7.edx & (1 << 25) != 0);
        let osxsave = std::arch::x86_64::__cpuid(1).ecx & (1 << 27) != 0;
        if !(tile && int8 && osxsave) {
            return false;
        }
        // XCR0 bits 17 (XTILECFG) and 18 (XTILEDATA): the OS manages the tile state.
        // SAFETY: OSXSAVE is set, so xgetbv is enabled.
        let xcr0 = unsafe { xgetbv0() };
        if xcr0 & (0b11 << 17) != 0b11 << 17 {
            return false;
        }
        request_tile_permission()
    })
}

/// `xgetbv` with ECX = 0.
///
/// # Safety
/// CPUID.1:ECX.OSXSAVE is set.
unsafe fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: xgetbv is enabled (the caller's contract); it only reads XCR0.
    unsafe {
        asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (hi as u64) << 32 | lo as u64
}

#[cfg(target_os = "linux")]
fn request_tile_permission() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with this request only changes which state components the process may
    // use; it takes no pointer.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn request_tile_permission() -> bool {
    // Other systems grant AMX state without a request (or not at all); hybridq only uses AMX
    // where the request is known.
    false
}

/// The 64-byte tile configuration (palette 1) for a tile of `rows` rows (1..=32).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn new(rows: usize) -> Self {
        let mut c = [0u8; 64];
        c[0] = 1; // palette 1
        let (r0, r1) = (rows.min(16) as u8, rows.saturating_sub(16) as u8);
        // tmm0, tmm1: C rows 0-15 (channels 0-15, 16-31); tmm2, tmm3: C rows 16-31.
        // tmm4, tmm5: A rows 0-15, 16-31; tmm6, tmm7: B of the two panels.
        let shape: [(u8, u16); 8] = [
            (r0, 64),
            (r0, 64),
            (r1, 64),
            (r1, 64),
            (r0, 64),
            (r1, 64),
            (16, 64),
            (16, 64),
        ];
        for (t, &(r, colsb)) in shape.iter().enumerate() {
            if r > 0 {
                c[16 + 2 * t..18 + 2 * t].copy_from_slice(&colsb.to_le_bytes());
                c[48 + t] = r;
            }
        }
        TileConfig(c)
    }

    /// Whether two configurations are equal, as eight 64-bit compares inline (`!=` on the
    /// byte arrays called `memcmp`: 5% of MiniLM's time, one call per tile).
    #[inline(always)]
    fn same_as(&self, other: &TileConfig) -> bool {
        let word = |c: &[u8; 64], i: usize| {
            u64::from_ne_bytes(c[8 * i..8 * i + 8].try_into().expect("8 bytes"))
        };
        (0..8).all(|i| word(&self.0, i) == word(&other.0, i))
    }
}

// SAFETY: `new` requires AMX-TILE/INT8 with OS support and the process's permission, and
// AVX-512 VNNI for the small kernels and the width; `dots` asserts its bounds (`check_u8`, and
// K a multiple of 64) before any tile load.
unsafe impl Int8Kernel for Amx {
    const NAME: &'static str = "amx";
    const ROWS: usize = 32;
    const CHANNELS: usize = 2 * PANEL;
    const K_STEP: usize = 4;
    const K_ALIGN: usize = K_BLOCK;
    const INPUT_OFFSET: i32 = 128;
    const EXACT_RUN: usize = EXACT_U8_RUN;
    type Input = u8;
    type Width = V512;
    type Small = Avx512Vnni;

    fn new() -> Option<Self> {
        let vnni = Vnni512::new()?;
        amx_usable().then_some(Amx(vnni))
    }

    fn small(self) -> Avx512Vnni {
        Avx512Vnni::from_proof(self.0)
    }

    fn for_weights(self, weight_bytes: usize) -> Self {
        Amx(self.0.for_weights(weight_bytes))
    }

    fn width(self) -> V512 {
        self.0.width()
    }

    fn quantize(
        self,
        flavour: Flavour,
        asymmetric: bool,
        row: &[f32],
        out: &mut [u8],
    ) -> Option<RowParams> {
        self.0.width().quantize_u8(flavour, asymmetric, row, out)
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
        self.dots_run(
            x,
            x_stride,
            rows,
            w,
            panel_stride,
            0,
            steps,
            1,
            PullRun::NONE,
            acc,
            &mut |_, _| {},
        );
    }

    fn dots_run(
        self,
        x: &[u8],
        x_stride: usize,
        rows: usize,
        w: &[i8],
        panel_stride: usize,
        tile_stride: usize,
        steps: usize,
        tiles: usize,
        // Not measured with AMX (no machine since the pull was added exposed it).
        _pull: PullRun,
        acc: &mut [i32],
        finish: &mut impl FnMut(usize, &[i32]),
    ) {
        if tiles == 0 {
            return;
        }
        let last = (tiles - 1) * tile_stride;
        check_u8(
            x,
            x_stride,
            rows,
            &w[last..],
            panel_stride,
            steps,
            acc,
            32,
            2,
        );
        assert!((4 * steps).is_multiple_of(K_BLOCK) && x_stride <= u32::MAX as usize);
        configure(rows);
        for t in 0..tiles {
            let wt = &w[t * tile_stride..];
            // SAFETY: AMX is usable (`self`) and configured for `rows` rows (`configure`, and
            // nothing in this loop touches the tile state but these calls: `finish` runs
            // vector code only). The bounds `compute` needs were checked for the last
            // (highest) tile, so they hold for every tile of the run; `acc` was checked too.
            unsafe {
                compute(x, x_stride, rows, wt, panel_stride, steps);
                store(rows, acc);
            }
            finish(t, acc);
        }
    }

    fn peak_gops(self) -> Option<f64> {
        Some(peak())
    }
}

/// Makes the thread's tile configuration the one for `rows` rows. Loading one costs about as
/// much as a short tile's products, so it is loaded only when the thread's current one differs
/// (another row count, or another library's tiles): read back and compared, never assumed.
/// The state stays configured for the thread's next run (`tilerelease` would make every run
/// pay the configuration again).
fn configure(rows: usize) {
    let cfg = TileConfig::new(rows);
    let mut current = TileConfig([0u8; 64]);
    // SAFETY: only called by `Amx` methods (AMX is usable); `sttilecfg` writes the 64 bytes of
    // `current`, `ldtilecfg` reads the 64 bytes of a valid palette-1 configuration.
    unsafe {
        asm!("sttilecfg [{p}]", p = in(reg) current.0.as_mut_ptr(), options(nostack));
        if !current.same_as(&cfg) {
            asm!("ldtilecfg [{cfg}]", cfg = in(reg) cfg.0.as_ptr(), options(nostack));
        }
    }
}

/// The dots of one 32-row (or fewer) x 32-channel tile into the C tiles `tmm0`-`tmm3`.
///
/// # Safety
/// AMX is usable and configured for `rows` rows ([`configure`]), and the bounds that
/// [`check_u8`] checks for `32` rows and 2 panels hold, with `4 * steps` a multiple of 64.
unsafe fn compute(
    x: &[u8],
    x_stride: usize,
    rows: usize,
    w: &[i8],
    panel_stride: usize,
    steps: usize,
) {
    let blocks = 4 * steps / K_BLOCK;
    let (xp, w0, w1) = (x.as_ptr(), w.as_ptr(), w[panel_stride..].as_ptr());
    // Rows 16-31 of A (only read when rows > 16; the config gives tmm5 `rows - 16` rows).
    let x1 = if rows > 16 {
        x[16 * x_stride..].as_ptr()
    } else {
        xp
    };
    // SAFETY: every tile load reads, per configured row, 64 bytes at `base + row * stride`: A
    // rows are input rows (`rows` of them, each with `4 * steps` bytes), B rows are 16 quads
    // (1 KiB) of a panel within its `steps * 64` bytes: the caller's contract. A prefetch
    // never faults, and its address stays inside the panel (the block is < `blocks`). The C
    // tiles are zeroed and A, B loaded before they are read, so no state of other code is
    // relied on.
    unsafe {
        asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
        if rows > 16 {
            asm!("tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
        }
        for b in 0..blocks {
            let (a0, a1) = (xp.add(b * K_BLOCK), x1.add(b * K_BLOCK));
            let (b0, b1) = (w0.add(b * K_BLOCK * PANEL), w1.add(b * K_BLOCK * PANEL));
            // The B tiles of two blocks ahead into L1 (3-5% on 512 x 768 x 3072 and
            // 128 x 4096 x 4096): the panels stream from L2 while A stays in L1.
            if b + PREFETCH_BLOCKS < blocks {
                let ahead = PREFETCH_BLOCKS * K_BLOCK * PANEL;
                for line in (0..K_BLOCK * PANEL).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(b0.add(ahead + line).cast());
                    _mm_prefetch::<_MM_HINT_T0>(b1.add(ahead + line).cast());
                }
            }
            if rows > 16 {
                asm!(
                    "tileloadd tmm4, [{a0} + {sx}*1]",
                    "tileloadd tmm6, [{b0} + {sw}*1]",
                    "tileloadd tmm7, [{b1} + {sw}*1]",
                    "tileloadd tmm5, [{a1} + {sx}*1]",
                    "tdpbusd tmm0, tmm4, tmm6",
                    "tdpbusd tmm1, tmm4, tmm7",
                    "tdpbusd tmm2, tmm5, tmm6",
                    "tdpbusd tmm3, tmm5, tmm7",
                    a0 = in(reg) a0, a1 = in(reg) a1, b0 = in(reg) b0, b1 = in(reg) b1,
                    sx = in(reg) x_stride, sw = in(reg) 64usize,
                    options(nostack, readonly),
                );
            } else {
                asm!(
                    "tileloadd tmm4, [{a0} + {sx}*1]",
                    "tileloadd tmm6, [{b0} + {sw}*1]",
                    "tileloadd tmm7, [{b1} + {sw}*1]",
                    "tdpbusd tmm0, tmm4, tmm6",
                    "tdpbusd tmm1, tmm4, tmm7",
                    a0 = in(reg) a0, b0 = in(reg) b0, b1 = in(reg) b1,
                    sx = in(reg) x_stride, sw = in(reg) 64usize,
                    options(nostack, readonly),
                );
            }
        }
    }
}

/// Stores the C tiles of a tile of `rows` rows into `acc` (32 rows of 32 i32).
///
/// # Safety
/// AMX is usable and configured for `rows` rows; `acc` holds 1,024 values.
unsafe fn store(rows: usize, acc: &mut [i32]) {
    let (ac, stride_c) = (acc.as_mut_ptr(), 2 * PANEL * 4);
    // SAFETY: the stores write the configured C rows (at most 32 rows of 32 i32) into `acc`.
    unsafe {
        asm!(
            "tilestored [{c0} + {sc}*1], tmm0",
            "tilestored [{c1} + {sc}*1], tmm1",
            c0 = in(reg) ac, c1 = in(reg) ac.add(PANEL), sc = in(reg) stride_c,
            options(nostack),
        );
        if rows > 16 {
            asm!(
                "tilestored [{c2} + {sc}*1], tmm2",
                "tilestored [{c3} + {sc}*1], tmm3",
                c2 = in(reg) ac.add(16 * 2 * PANEL), c3 = in(reg) ac.add(16 * 2 * PANEL + PANEL),
                sc = in(reg) stride_c,
                options(nostack),
            );
        }
    }
}

/// The one-core peak of `tdpbusd` (16,384 multiply-adds each) on four independent `C` tiles
/// with `A` and `B` held in registers.
fn peak() -> f64 {
    const ITERS: usize = 1 << 12;
    let cfg = TileConfig::new(32);
    let a = vec![1u8; 16 * 64];
    let b = vec![1i8; 16 * 64];
    let mut best = f64::INFINITY;
    for run in 0..6 {
        let start = std::time::Instant::now();
        // SAFETY: only called through `Amx::peak_gops` (AMX is usable); the loads read 16 rows
        // of 64 bytes from `a` and `b` (1 KiB each); the state is released at the end.
        unsafe {
            asm!(
                "ldtilecfg [{cfg}]",
                "tileloadd tmm4, [{a} + {s}*1]",
                "tileloadd tmm5, [{a} + {s}*1]",
                "tileloadd tmm6, [{b} + {s}*1]",
                "tileloadd tmm7, [{b} + {s}*1]",
                "tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
                cfg = in(reg) cfg.0.as_ptr(), a = in(reg) a.as_ptr(), b = in(reg) b.as_ptr(),
                s = in(reg) 64usize, options(nostack, readonly),
            );
            for _ in 0..ITERS {
                asm!(
                    "tdpbusd tmm0, tmm4, tmm6",
                    "tdpbusd tmm1, tmm4, tmm7",
                    "tdpbusd tmm2, tmm5, tmm6",
                    "tdpbusd tmm3, tmm5, tmm7",
                    options(nostack, nomem),
                );
            }
            asm!("tilerelease", options(nostack, nomem));
        }
        let s = start.elapsed().as_secs_f64();
        if run > 0 {
            best = best.min(s);
        }
    }
    2.0 * (ITERS * 4 * 16 * 16 * 64) as f64 / best / 1e9
}
