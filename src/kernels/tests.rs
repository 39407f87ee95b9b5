//! Every available kernel against the scalar reference, bit for bit: input quantization in all
//! flavours, and the integer product with its epilogue (in-crate, since kernels are private).
//! Larger runs: `HYBRIDQ_EXHAUSTIVE=1`.

use proptest::prelude::*;

use super::driver::{run_scalar, run_simd, Product};
use super::pack::PackedWeights;
use super::Kernel;
use crate::activation::Activation;
use crate::flavour::Flavour;
use crate::layer::epilogue::EpilogueSpec;
use crate::quantize::inputs::{quantize_row, RowParams};

fn exhaustive() -> bool {
    std::env::var("HYBRIDQ_EXHAUSTIVE").is_ok_and(|v| v == "1")
}

/// Cases per property: `PROPTEST_CASES` when set (few, say, under an emulator; `with_cases`
/// would otherwise override it), else `fast`, or 20 times that with `HYBRIDQ_EXHAUSTIVE=1`.
fn cases(fast: u32) -> u32 {
    if let Some(n) = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        n
    } else if exhaustive() {
        fast * 20
    } else {
        fast
    }
}

/// SIMD kernels (everything available except the reference).
fn simd_kernels() -> Vec<Kernel> {
    Kernel::available()
        .into_iter()
        .filter(|&k| k != Kernel::Scalar)
        .collect()
}

/// Quantizes `row` with `kernel` through the layer's entry point.
fn quantize_with(
    kernel: Kernel,
    flavour: Flavour,
    asym: bool,
    row: &[f32],
) -> (Vec<i16>, RowParams) {
    let k = row.len();
    let stride = 2 * k.div_ceil(2);
    let mut q = vec![99i16; stride];
    let mut p = [RowParams::ZERO_ROW];
    super::quantize_rows(kernel, flavour, asym, row, k, &[true], &mut q, &mut p, 1);
    (q, p[0])
}

fn check_quantize(row: &[f32]) -> std::result::Result<(), TestCaseError> {
    for flavour in Flavour::ALL {
        for asym in [false, true] {
            let mut want = vec![0i8; row.len()];
            let pw = quantize_row(flavour, asym, row, &mut want);
            let mut scalar16 = vec![7i16; 2 * row.len().div_ceil(2)];
            let ps = crate::quantize::plan::quantize_row_i16(flavour, asym, row, &mut scalar16);
            let mut kernels = vec![(Kernel::Scalar, scalar16, ps)];
            for kernel in simd_kernels() {
                let (q, p) = quantize_with(kernel, flavour, asym, row);
                kernels.push((kernel, q, p));
            }
            for (kernel, q, p) in kernels {
                prop_assert_eq!(
                    p.scale.to_bits(),
                    pw.scale.to_bits(),
                    "{} {} {}",
                    kernel,
                    flavour,
                    asym
                );
                prop_assert_eq!(
                    p.zero_point,
                    pw.zero_point,
                    "{} {} {}",
                    kernel,
                    flavour,
                    asym
                );
                let got: Vec<i16> = q[..row.len()].to_vec();
                let want16: Vec<i16> = want.iter().map(|&v| v as i16).collect();
                prop_assert_eq!(
                    &got,
                    &want16,
                    "{} {} asym={} row={:?}",
                    kernel,
                    flavour,
                    asym,
                    row
                );
                prop_assert!(q[row.len()..].iter().all(|&v| v == 0), "padding");
            }
        }
    }
    Ok(())
}

#[path = "../../tests/support/extreme.rs"]
mod extreme;

/// Rows of 1..70 values: ordinary ranges, wide dynamic range, few distinct values, spikes, and
/// values across the whole f32 range (subnormal, tiny, huge, rows mixing them).
fn row_strategy() -> impl Strategy<Value = Vec<f32>> {
    let value = prop_oneof![
        4 => -10.0f32..10.0,
        1 => -1e6f32..1e6,
        1 => prop::sample::select(vec![0.0f32, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 127.0, -128.0, 0.49999997, -0.49999997]),
        1 => (-1000i32..1000).prop_map(|v| v as f32 * 0.25),
    ];
    (1usize..70).prop_flat_map(move |k| {
        prop_oneof![
            1 => prop::collection::vec(value.clone(), k),
            1 => extreme::extreme_row(k),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(10000)))]

    #[test]
    fn quantization_matches_reference(row in row_strategy()) {
        check_quantize(&row)?;
    }

    #[test]
    fn quantization_of_scaled_ties_matches_reference(
        k in 1usize..40,
        scale in prop::sample::select(vec![1.0f32, 0.5, 3.0, 1.0 / 3.0, 127.0 / 255.0]),
        offset in -160i32..160,
        picks in prop::collection::vec(0usize..12, 40),
    ) {
        // Rows whose x * inv land exactly on (or one ulp beside) half-integers.
        let ties = [0.5f32, -0.5, 1.5, 2.5, -2.5, 0.49999997, -0.49999997, 126.5, -127.5, 3.5, 0.0, 1.0];
        let row: Vec<f32> = (0..k)
            .map(|i| (ties[picks[i]] + (offset % 7) as f32) * scale)
            .collect();
        check_quantize(&row)?;
    }
}

#[test]
fn ties_before_and_after_the_last_multiple_of_eight() {
    // Symmetric with range 127 (inv = 1), asymmetric with range 255 (sf = 1) and zero points
    // 0 and -28: y = x exactly, so each value below is a tie (or just off one).
    let ties = [0.5f32, -0.5, 0.49999997, -0.49999997, 1.5, 2.5, -1.5, -2.5];
    for len in [9usize, 15, 16, 17, 23, 24, 31] {
        for &(lo, hi) in &[(-127.0f32, 127.0f32), (-128.0, 127.0), (-100.0, 155.0)] {
            for shift in 0..ties.len() {
                let mut row: Vec<f32> = (0..len).map(|i| ties[(i + shift) % ties.len()]).collect();
                row[0] = lo;
                row[len / 2] = hi;
                check_quantize(&row).unwrap();
            }
        }
    }
}

/// Raw quantized operands and parameters for a product.
#[derive(Debug, Clone)]
struct ProductCase {
    b: usize,
    k: usize,
    n: usize,
    w: Vec<i8>,
    q: Vec<i8>,
    params: Vec<RowParams>,
    scales: Vec<f32>,
    bias: Option<Vec<f32>>,
}

fn i8_strategy(len: usize, min: i8) -> impl Strategy<Value = Vec<i8>> {
    prop_oneof![
        3 => prop::collection::vec(min..=127i8, len),
        1 => prop::collection::vec(prop::sample::select(vec![min, 127, -127, min]), len),
        1 => prop::collection::vec(Just(0i8), len),
        1 => (prop::collection::vec(-2i8..=2, len), 0..len.max(1), prop::sample::select(vec![min, 127]))
            .prop_map(|(mut v, i, s)| { let l = v.len(); if l > 0 { v[i % l] = s; } v }),
    ]
}

/// Positive scales in (0, max] (drawn on a log grid: proptest's f32 range sampler can trip an
/// internal assertion on ranges with a tiny lower bound).
fn scale_strategy(max: f32) -> impl Strategy<Value = f32> {
    (0u32..=1000).prop_map(move |i| max * 2f32.powf(-(i as f32) / 50.0))
}

/// Row scales as the quantizers make them: ordinary, or anywhere in the f32 range (0, the
/// subnormal scales of tiny rows, the huge ones of rows near f32::MAX).
fn row_scale_strategy() -> impl Strategy<Value = f32> {
    prop_oneof![
        3 => scale_strategy(10.0),
        1 => extreme::any_positive_scale(),
        1 => Just(0.0f32),
    ]
}

fn product_strategy(
    max_b: usize,
    max_k: usize,
    max_n: usize,
) -> impl Strategy<Value = ProductCase> {
    (1..=max_b, 1..=max_k, 1..=max_n).prop_flat_map(|(b, k, n)| {
        (
            i8_strategy(n * k, -128),
            i8_strategy(b * k, -128),
            prop::collection::vec((-128i32..=127, row_scale_strategy()), b),
            prop::collection::vec(
                prop_oneof![3 => scale_strategy(1.0), 1 => extreme::any_positive_scale()],
                n,
            ),
            prop::option::of(prop_oneof![
                3 => prop::collection::vec(-5.0f32..5.0, n),
                1 => extreme::mixed_row(n),
            ]),
        )
            .prop_map(move |(w, q, rp, scales, bias)| ProductCase {
                b,
                k,
                n,
                w,
                q,
                params: rp
                    .into_iter()
                    .map(|(zp, scale)| RowParams {
                        scale,
                        zero_point: zp,
                    })
                    .collect(),
                scales,
                bias,
            })
    })
}

fn check_product(c: &ProductCase, threads: usize) -> std::result::Result<(), TestCaseError> {
    let (b, k, n) = (c.b, c.k, c.n);
    let row_sums: Vec<i32> = (0..n)
        .map(|j| c.w[j * k..(j + 1) * k].iter().map(|&v| v as i32).sum())
        .collect();
    let stride = 2 * k.div_ceil(2);
    let mut q16 = vec![0i16; b * stride];
    for r in 0..b {
        for i in 0..k {
            q16[r * stride + i] = c.q[r * k + i] as i16;
        }
    }
    let mut xu = vec![0u8; b * super::u8_stride(k)];
    super::offset_rows_u8(&q16, b, k, &mut xu);
    for flavour in Flavour::ALL {
        for act in Activation::ALL {
            let epilogue = EpilogueSpec::new(flavour, act, b, n, k);
            let mut want = vec![f32::NAN; b * n];
            let init = |j: usize| c.bias.as_ref().map_or(0.0, |v| v[j]);
            run_scalar(
                &c.w,
                &row_sums,
                &|j| c.scales[j],
                &init,
                &c.q,
                &c.params,
                k,
                n,
                epilogue,
                &mut want,
                1,
            );
            for kernel in simd_kernels() {
                let packed = PackedWeights::new(
                    &c.w,
                    n,
                    k,
                    kernel.pack_group(),
                    &row_sums,
                    |j| c.scales[j],
                    c.bias.as_deref(),
                );
                let mut got = vec![f32::NAN; b * n];
                let p = Product {
                    packed: &packed,
                    x: &q16,
                    xu: &xu,
                    rows: b,
                    params: &c.params,
                    epilogue,
                };
                run_simd(kernel, &p, &mut got, threads);
                let wb: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
                let gb: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                prop_assert_eq!(
                    gb,
                    wb,
                    "{} {} {:?} b{} k{} n{}",
                    kernel,
                    flavour,
                    act,
                    b,
                    k,
                    n
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(10000)))]

    /// Every remainder of the tile (MR = 4 rows, 16 channels) and of the K pair.
    #[test]
    fn product_matches_reference_small(c in product_strategy(9, 40, 40)) {
        check_product(&c, 1)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(500)))]

    /// Shapes large enough to be split over threads and panel groups.
    #[test]
    fn product_matches_reference_threaded(
        c in product_strategy(11, 700, 90),
        threads in 1usize..5,
    ) {
        check_product(&c, threads)?;
    }
}

/// All -128 against all -128 (the `vpmaddwd` pair sum 2 * 2^14 = 2^15 must not saturate, and
/// the i32 runs must not wrap) at depths around the i32 limits, for one row (the GEMV tile)
/// and two (the MR x 16 tile).
#[test]
fn extreme_values_around_the_i32_limits() {
    let depths: &[usize] = if exhaustive() {
        &[
            1, 2, 65_535, 65_536, 65_793, 65_794, 131_071, 131_072, 131_073, 300_001,
        ]
    } else {
        &[1, 2, 65_793, 65_794, 131_073]
    };
    for &k in depths {
        for (wv, qv, zp) in [
            (-128i8, -128i8, 127),
            (-128, 127, -128),
            (127, -128, 127),
            (-128, -128, 0),
        ] {
            for b in [1, 2] {
                let n = 2;
                let c = ProductCase {
                    b,
                    k,
                    n,
                    w: vec![wv; n * k],
                    q: vec![qv; b * k],
                    params: vec![
                        RowParams {
                            scale: 1e-9,
                            zero_point: zp
                        };
                        b
                    ],
                    scales: vec![1.0; n],
                    bias: None,
                };
                check_product(&c, 1).unwrap();
            }
        }
    }
}

/// The one-row GEMV path (`avx2::dots_gemv`: 4 K pairs per iteration, then single pairs) on
/// every remainder of the unrolled K loop and of the 16-channel panel, with extreme values
/// (-128 on both sides) and single threads and a channel split.
#[test]
fn gemv_matches_reference_on_every_remainder() {
    let mut seed = 7u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as u32
    };
    for k in (1..=24).chain([63, 64, 65, 4095, 4096, 4097]) {
        for n in [1usize, 7, 16, 17, 33, 48] {
            for extreme in [false, true] {
                let mut val = |_| {
                    if extreme {
                        [-128i8, 127, -128][next() as usize % 3]
                    } else {
                        next() as u8 as i8
                    }
                };
                let w = (0..n * k).map(&mut val).collect();
                let q = (0..k).map(&mut val).collect();
                let c = ProductCase {
                    b: 1,
                    k,
                    n,
                    w,
                    q,
                    params: vec![RowParams {
                        scale: 0.37,
                        zero_point: (next() % 256) as i32 - 128,
                    }],
                    scales: (0..n).map(|j| 0.001 * (j + 1) as f32).collect(),
                    bias: Some((0..n).map(|j| j as f32 - 3.5).collect()),
                };
                for threads in [1, 2] {
                    check_product(&c, threads).unwrap();
                }
            }
        }
    }
}

/// A product large enough to run on several tasks (channel split, then row split).
#[test]
fn threaded_splits_match_reference() {
    let mut seed = 1u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as u32
    };
    for (b, k, n) in [(3usize, 1500usize, 1500usize), (300, 900, 16)] {
        let c = ProductCase {
            b,
            k,
            n,
            w: (0..n * k).map(|_| next() as u8 as i8).collect(),
            q: (0..b * k).map(|_| next() as u8 as i8).collect(),
            params: (0..b)
                .map(|i| RowParams {
                    scale: 0.01 + i as f32,
                    zero_point: (next() % 256) as i32 - 128,
                })
                .collect(),
            scales: (0..n).map(|j| 0.001 * (j + 1) as f32).collect(),
            bias: Some((0..n).map(|j| j as f32 - 3.5).collect()),
        };
        for threads in [2, 3, 8] {
            check_product(&c, threads).unwrap();
        }
    }
}

/// The VNNI kernel's arithmetic, emulated in scalar code on its real operands (the g = 4
/// packing and the `q + 128` rows): lane c of `vpdpbusd` accumulates
/// `sum_k u[k] * w[c][k]` (u8 x i8, four per step, no saturation), and the epilogue's
/// `acc - row_sum * (zp + 128)` in wrapping i32 must equal the reference's i64
/// `dot - row_sum * zp`. This checks the layout and the correction on any machine; the
/// intrinsics themselves only run where AVX-512 VNNI exists.
#[test]
fn vnni_layout_and_offset_correction_emulated() {
    let mut seed = 3u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as u32
    };
    for &(b, k, n) in &[
        (1usize, 1usize, 1usize),
        (3, 7, 17),
        (2, 64, 33),
        (2, 65_793, 2),
    ] {
        for extreme in [false, true] {
            let w: Vec<i8> = (0..n * k)
                .map(|_| if extreme { -128 } else { next() as u8 as i8 })
                .collect();
            let q: Vec<i8> = (0..b * k)
                .map(|_| if extreme { 127 } else { next() as u8 as i8 })
                .collect();
            let zps: Vec<i32> = (0..b)
                .map(|_| {
                    if extreme {
                        -128
                    } else {
                        (next() % 256) as i32 - 128
                    }
                })
                .collect();
            let row_sums: Vec<i32> = (0..n)
                .map(|j| w[j * k..(j + 1) * k].iter().map(|&v| v as i32).sum())
                .collect();
            let packed = PackedWeights::new(&w, n, k, 4, &row_sums, |_| 1.0, None);
            let s16 = 2 * k.div_ceil(2);
            let mut q16 = vec![0i16; b * s16];
            for r in 0..b {
                for i in 0..k {
                    q16[r * s16 + i] = q[r * k + i] as i16;
                }
            }
            let su = super::u8_stride(k);
            let mut xu = vec![0u8; b * su];
            super::offset_rows_u8(&q16, b, k, &mut xu);
            for r in 0..b {
                for c in 0..n {
                    let (panel, lane) = (c / 16, c % 16);
                    let pw = packed.panel(panel);
                    let mut lane_acc = 0i32;
                    for step in 0..packed.kp {
                        for e in 0..4 {
                            let u = xu[r * su + 4 * step + e] as i32;
                            let wv = pw[step * 64 + lane * 4 + e] as i32;
                            lane_acc += u * wv; // exact: |lane_acc| <= K * 255 * 128 < 2^31
                        }
                    }
                    let got = lane_acc.wrapping_sub(row_sums[c].wrapping_mul(zps[r] + 128));
                    let want =
                        super::scalar::dot_i8(&w[c * k..(c + 1) * k], &q[r * k..(r + 1) * k])
                            - row_sums[c] as i64 * zps[r] as i64;
                    assert_eq!(got as i64, want, "b{b} k{k} n{n} r{r} c{c}");
                }
            }
        }
    }
}
