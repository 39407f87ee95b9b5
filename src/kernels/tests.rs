//! Every registered kernel this CPU runs against the scalar reference, bit for bit: input
//! quantization in all flavours, the packed layout, and the integer product with its epilogue
//! (in-crate, since kernels are private). The registry is the list: a kernel added there is
//! tested here without a line changing. Larger runs: `HYBRIDQ_EXHAUSTIVE=1`.

use proptest::prelude::*;

use super::contract::{InputElement, Int8Kernel};
use super::{Kernel, KernelVisitor};
use crate::activation::Activation;
use crate::engine::hybrid::{layout_of, HybridSink};
use crate::flavour::Flavour;
use crate::gemm::driver::{self, Rows};
use crate::gemm::pack::PackedWeights;
use crate::layer::epilogue::EpilogueSpec;
use crate::quantize::inputs::{quantize_row, RowParams};

#[path = "../../tests/support/extreme.rs"]
mod extreme;

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

/// A row quantized by a kernel: the int8 values it stands for (padding included) and the
/// parameters (`None`: the kernel found a NaN or an infinity).
struct Quantize<'a> {
    flavour: Flavour,
    asym: bool,
    row: &'a [f32],
}

impl KernelVisitor for Quantize<'_> {
    type Out = (Vec<i32>, bool, Option<RowParams>);
    fn visit<K: Int8Kernel>(self, k: K, _id: Kernel) -> Self::Out {
        let len = self.row.len().next_multiple_of(K::K_ALIGN) + K::K_ALIGN;
        let mut out = vec![K::Input::from_q(99); len];
        let p = k.quantize(self.flavour, self.asym, self.row, &mut out);
        let padded = out[self.row.len()..]
            .iter()
            .all(|&v| v.to_q() == K::Input::PAD.to_q());
        let q = out[..self.row.len()].iter().map(|v| v.to_q()).collect();
        (q, padded, p)
    }
}

fn check_quantize(row: &[f32]) -> std::result::Result<(), TestCaseError> {
    for flavour in Flavour::ALL {
        for asym in [false, true] {
            let mut want = vec![0i8; row.len()];
            let pw = quantize_row(flavour, asym, row, &mut want);
            let want: Vec<i32> = want.iter().map(|&v| v as i32).collect();
            for kernel in Kernel::available() {
                let (q, padded, p) = kernel
                    .visit(Quantize { flavour, asym, row })
                    .expect("available");
                prop_assert!(padded, "{} {} {}: padding", kernel, flavour, asym);
                let Some(p) = p else {
                    return Err(TestCaseError::fail(format!("{kernel}: finite row refused")));
                };
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
                prop_assert_eq!(&q, &want, "{} {} {}", kernel, flavour, asym);
            }
        }
    }
    Ok(())
}

/// Rows of 1..200 values (past 64: the 512-bit quantizer's four-vector loop, several times
/// with every tail): ordinary ranges, wide dynamic range, few distinct values, spikes, and
/// values across the whole f32 range (subnormal, tiny, huge, rows mixing them).
fn row_strategy() -> impl Strategy<Value = Vec<f32>> {
    let value = prop_oneof![
        4 => -10.0f32..10.0,
        1 => -1e6f32..1e6,
        1 => prop::sample::select(vec![0.0f32, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 127.0, -128.0, 0.49999997, -0.49999997]),
        1 => (-1000i32..1000).prop_map(|v| v as f32 * 0.25),
    ];
    (1usize..200).prop_flat_map(move |k| {
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
        k in 1usize..150,
        scale in prop::sample::select(vec![1.0f32, 0.5, 3.0, 1.0 / 3.0, 127.0 / 255.0]),
        offset in -160i32..160,
        picks in prop::collection::vec(0usize..12, 150),
    ) {
        // Rows whose x * inv land exactly on (or one ulp beside) half-integers.
        let ties = [0.5f32, -0.5, 1.5, 2.5, -2.5, 0.49999997, -0.49999997, 126.5, -127.5, 3.5, 0.0, 1.0];
        let row: Vec<f32> = (0..k)
            .map(|i| (ties[picks[i]] + (offset % 7) as f32) * scale)
            .collect();
        check_quantize(&row)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2000)))]

    /// Every kernel's quantizer refuses a row with a NaN or an infinity wherever it sits (in
    /// the four-vector loops, the single vectors, the masked or scalar tails), and a row with
    /// several of them.
    #[test]
    fn quantization_refuses_non_finite_rows(
        row in row_strategy(),
        at in prop::collection::vec((0usize..200, 0usize..3), 1..4),
        asym in any::<bool>(),
    ) {
        let mut row = row;
        for &(i, which) in &at {
            let i = i % row.len();
            row[i] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][which];
        }
        for kernel in Kernel::available() {
            let flavour = Flavour::ALL[at[0].0 % Flavour::ALL.len()];
            let (_, _, p) = kernel.visit(Quantize { flavour, asym, row: &row }).expect("available");
            prop_assert!(p.is_none(), "{} accepted a non-finite row at {:?}", kernel, at);
        }
    }
}

#[test]
fn ties_before_and_after_the_last_multiple_of_eight() {
    // Symmetric with range 127 (inv = 1), asymmetric with range 255 (sf = 1) and zero points
    // from the fixtures' tie rows; the tie lands in the vector part or in the tail.
    for k in 1..=33 {
        for pos in 0..k {
            for tie in [0.5f32, -0.5, 2.5, 0.49999997, -0.49999997] {
                let mut row = vec![0.0f32; k];
                row[pos] = tie;
                row[(pos + 1) % k] = if k > 1 { 127.0 } else { tie };
                check_quantize(&row).unwrap();
                let mut row = vec![1.0f32; k];
                row[0] = -100.0;
                row[k - 1] = 155.0;
                row[pos] = tie + 10.0;
                check_quantize(&row).unwrap();
            }
        }
    }
}

/// The layout each kernel packs for holds the weights (the scalar reference reads them back
/// through `PackedWeights::weight`), zero padded to the kernel's K and channel multiples.
struct LayoutRoundTrip<'a> {
    w: &'a [i8],
    n: usize,
    k: usize,
}

impl KernelVisitor for LayoutRoundTrip<'_> {
    type Out = bool;
    fn visit<K: Int8Kernel>(self, _k: K, _id: Kernel) -> bool {
        let rs = vec![0; self.n];
        let pk = PackedWeights::new(self.w, self.n, self.k, layout_of::<K>(), &rs, |_| 1.0, None);
        (0..pk.panels * 16).all(|c| {
            (0..pk.k_padded).all(|kk| {
                let want = if c < self.n && kk < self.k {
                    self.w[c * self.k + kk]
                } else {
                    0
                };
                pk.weight(c, kk) == want
            })
        }) && pk.k_padded.is_multiple_of(K::K_ALIGN)
    }
}

#[test]
fn every_kernel_layout_holds_the_weights() {
    for (n, k) in [(1usize, 1usize), (17, 5), (33, 70), (64, 129)] {
        let w: Vec<i8> = (0..n * k)
            .map(|i| (i as i32 * 37 % 255 - 127) as i8)
            .collect();
        for kernel in Kernel::available() {
            assert!(
                kernel.visit(LayoutRoundTrip { w: &w, n, k }).unwrap(),
                "{kernel} n{n} k{k}"
            );
        }
    }
}

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

/// A product through a kernel: its packing, its input element, the generic driver and the
/// epilogue of its width.
struct Product<'a> {
    c: &'a ProductCase,
    spec: EpilogueSpec,
    threads: usize,
}

impl KernelVisitor for Product<'_> {
    type Out = Vec<u32>;
    fn visit<K: Int8Kernel>(self, k: K, _id: Kernel) -> Vec<u32> {
        let c = self.c;
        let row_sums: Vec<i32> = (0..c.n)
            .map(|j| c.w[j * c.k..(j + 1) * c.k].iter().map(|&v| v as i32).sum())
            .collect();
        let pk = PackedWeights::new(
            &c.w,
            c.n,
            c.k,
            layout_of::<K>(),
            &row_sums,
            |j| c.scales[j],
            c.bias.as_deref(),
        );
        let stride = pk.k_padded;
        let mut x = vec![K::Input::PAD; c.b * stride];
        for r in 0..c.b {
            for i in 0..c.k {
                x[r * stride + i] = K::Input::from_q(c.q[r * c.k + i] as i32);
            }
        }
        let sink = HybridSink {
            params: &c.params,
            packed: &pk,
            spec: self.spec,
        };
        let mut out = vec![f32::NAN; c.b * c.n];
        let rows = Rows {
            x: &x,
            stride,
            rows: c.b,
        };
        driver::run(k, &pk, rows, &sink, &mut out, self.threads);
        out.iter().map(|v| v.to_bits()).collect()
    }
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

/// Every flavour and activation: every kernel's product equals the scalar kernel's.
fn check_product(c: &ProductCase, threads: usize) -> std::result::Result<(), TestCaseError> {
    for flavour in Flavour::ALL {
        for act in Activation::ALL {
            let spec = EpilogueSpec::new(flavour, act, c.b, c.n, c.k);
            let want = Kernel::Scalar
                .visit(Product {
                    c,
                    spec,
                    threads: 1,
                })
                .expect("scalar");
            for kernel in Kernel::available() {
                let got = kernel
                    .visit(Product { c, spec, threads })
                    .expect("available");
                prop_assert_eq!(
                    got,
                    want.clone(),
                    "{} {} {:?} b{} k{} n{}",
                    kernel,
                    flavour,
                    act,
                    c.b,
                    c.k,
                    c.n
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2000)))]

    /// Every remainder of every tile (rows up to 2 x 8, channels up to 2 x 32, K quads).
    #[test]
    fn product_matches_reference_small(c in product_strategy(17, 40, 70)) {
        check_product(&c, 1)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(200)))]

    #[test]
    fn product_matches_reference_threaded(
        c in product_strategy(40, 300, 200),
        threads in 1usize..5,
    ) {
        check_product(&c, threads)?;
    }
}

/// All -128 against all -128 (the `vpmaddwd` pair sum 2 * 2^14 = 2^15 must not saturate, and
/// the i32 runs must not wrap) at depths around the i32 limits, for one row and several.
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
            for b in [1, 2, 9] {
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

/// A small deterministic generator for the fixed-shape tests.
fn lcg(seed: u64) -> impl FnMut() -> u32 {
    let mut seed = seed;
    move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as u32
    }
}

/// The one-row kernels (unrolled K loops, several weight streams) on every remainder of the
/// unrolled loop and of the channel tile, with extreme values (-128 on both sides).
#[test]
fn one_row_matches_reference_on_every_remainder() {
    let mut next = lcg(7);
    for k in (1..=24).chain([63, 64, 65, 127, 128, 129, 4095, 4096, 4097]) {
        for n in [1usize, 7, 16, 17, 33, 48, 65] {
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

/// Products large enough to run on several tasks (channel split, then row split), several
/// channel groups under four or more row blocks (where the AVX-512 VNNI tiles pull the next
/// group into L2, on Intel: a pull changes no value, so these catch a bad address or a
/// panic; last group shorter, left-over rows), and every row count from 1 to 40 (every path
/// of the kernel chain).
#[test]
fn threaded_splits_and_row_counts_match_reference() {
    let mut next = lcg(1);
    let mut shapes = vec![
        (3usize, 1500usize, 1500usize),
        (300, 900, 16),
        (40, 1000, 600),
        (35, 700, 1000),
    ];
    shapes.extend((1..=64).map(|b| (b, 96, 40)));
    for (b, k, n) in shapes {
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
        for threads in [1, 2, 3, 8] {
            check_product(&c, threads).unwrap();
        }
    }
}

/// A full-integer layer's parameters and inputs, over the whole i32 range where the epilogue
/// takes i32 (bias, M0, shift) so that every wrap, saturation and rounding tie is reachable.
#[derive(Clone, Debug)]
struct IntegerCase {
    b: usize,
    p: crate::engine::integer::IntegerParams,
    x: Vec<i8>,
    /// The output scale of the float API (its epilogue dequantizes each code with it).
    scale: f32,
}

fn integer_strategy(
    max_b: usize,
    max_k: usize,
    max_n: usize,
) -> impl Strategy<Value = IntegerCase> {
    (1..=max_b, 1..=max_k, 1..=max_n).prop_flat_map(|(b, k, n)| {
        let i32_any = prop_oneof![
            4 => -1000i32..1000,
            2 => any::<i32>(),
            1 => Just(i32::MIN),
            1 => Just(i32::MAX),
        ];
        let m0 = prop_oneof![
            4 => (1i32 << 30)..i32::MAX,
            1 => Just(0),
            1 => Just(i32::MIN),
            1 => any::<i32>(),
        ];
        // Beyond MIN_SHIFT..=MAX_SHIFT too: the engine clamps as the definition does.
        let shift = prop_oneof![4 => -12i32..4, 1 => -40i32..40];
        (
            i8_strategy(n * k, -128),
            i8_strategy(b * k, -128),
            proptest::collection::vec(i32_any, n),
            proptest::collection::vec(m0, n),
            proptest::collection::vec(shift, n),
            -128i32..=127,
            -128i32..=127,
            (-128i32..=127, -128i32..=127),
            extreme::any_positive_scale(),
        )
            .prop_map(move |(w, x, bias, m0, shift, zx, zy, (a, c), scale)| {
                let row_sums = (0..n)
                    .map(|j| w[j * k..(j + 1) * k].iter().map(|&v| v as i32).sum())
                    .collect();
                IntegerCase {
                    b,
                    p: crate::engine::integer::IntegerParams {
                        weights: w,
                        n,
                        k,
                        row_sums,
                        bias,
                        m0,
                        shift,
                        input_zero_point: zx,
                        output_zero_point: zy,
                        act_min: a.min(c),
                        act_max: a.max(c),
                    },
                    x,
                    scale,
                }
            })
    })
}

/// Every rounding: every kernel's full-integer product equals the scalar kernel's, and its
/// dequantizing epilogue gives `TensorQuant::dequantize` of those codes, bit for bit.
fn check_integer(c: &IntegerCase, threads: usize) -> std::result::Result<(), TestCaseError> {
    use crate::toolkit::fixed_point::Rounding;
    let output = crate::integer::TensorQuant {
        scale: c.scale,
        zero_point: c.p.output_zero_point,
    };
    let run = |kernel: Kernel, rounding: Rounding, threads: usize| {
        let engine = crate::engine::build_integer(kernel, &c.p).expect("available");
        let mut codes = vec![0i8; c.b * c.p.n];
        let mut reals = vec![0f32; c.b * c.p.n];
        let mut scratch = crate::layer::scratch::Scratch::new();
        engine.run(&c.x, c.b, rounding, &mut codes, &mut scratch, threads);
        engine.run_dequantized(
            &c.x,
            c.b,
            rounding,
            output,
            &mut reals,
            &mut scratch,
            threads,
        );
        (codes, reals.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
    };
    for rounding in Rounding::ALL {
        let (want, _) = run(Kernel::Scalar, rounding, 1);
        let want_reals: Vec<u32> = want
            .iter()
            .map(|&q| output.dequantize(q).to_bits())
            .collect();
        for kernel in Kernel::available() {
            let (got, got_reals) = run(kernel, rounding, threads);
            let at = format!("{kernel} {rounding:?} b{} k{} n{}", c.b, c.p.k, c.p.n);
            prop_assert_eq!(&got, &want, "{}", at);
            prop_assert_eq!(&got_reals, &want_reals, "{} reals", at);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(1000)))]

    /// Every remainder of every tile, every rounding, the whole i32 range of the epilogue.
    #[test]
    fn integer_product_matches_reference_small(c in integer_strategy(17, 40, 70)) {
        check_integer(&c, 1)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(100)))]

    #[test]
    fn integer_product_matches_reference_threaded(
        c in integer_strategy(40, 300, 200),
        threads in 1usize..5,
    ) {
        check_integer(&c, threads)?;
    }
}

/// The full-integer layer's input quantization in a kernel's width.
struct TensorCodes<'a> {
    q: crate::integer::TensorQuant,
    x: &'a [f32],
}

impl KernelVisitor for TensorCodes<'_> {
    type Out = (Vec<i8>, bool);
    fn visit<K: Int8Kernel>(self, k: K, _id: Kernel) -> Self::Out {
        use super::contract::Width;
        let mut q = vec![0i8; self.x.len()];
        let finite = k.width().quantize_int8(self.q, self.x, &mut q);
        (q, finite)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(500)))]

    /// Every width's int8 tensor quantization equals `TensorQuant`'s, over the whole f32
    /// range of inputs and scales (infinities, NaN and out-of-range zero points included),
    /// and says whether every input was finite.
    #[test]
    fn tensor_quantization_matches_reference(
        x in prop_oneof![3 => extreme::extreme_row(45), 1 => proptest::collection::vec(any::<u32>().prop_map(f32::from_bits), 45)],
        scale in prop_oneof![4 => extreme::any_positive_scale(), 1 => Just(0.0f32), 1 => Just(f32::INFINITY)],
        zp in prop_oneof![4 => -128i32..=127, 1 => -1000i32..1000],
    ) {
        let q = crate::integer::TensorQuant { scale, zero_point: zp };
        let want_q: Vec<i8> = x.iter().map(|&v| q.quantize(v)).collect();
        let finite = x.iter().all(|v| v.is_finite());
        for kernel in Kernel::available() {
            let (got_q, got_finite) = kernel
                .visit(TensorCodes { q, x: &x })
                .expect("available");
            prop_assert_eq!(&got_q, &want_q, "{} quantize", kernel);
            prop_assert_eq!(got_finite, finite, "{} finite", kernel);
        }
    }
}

/// The next `n`-th f32 above (`n > 0`) or below `v` (finite, nonzero `v` away from the ends of
/// the range).
fn ulps_from(v: f32, n: i32) -> f32 {
    let bits = v.to_bits() as i32;
    // Away from zero for n > 0 in magnitude when v > 0; toward it when v < 0: both are
    // neighbours in value order after the sign is taken into account.
    let step = if v > 0.0 { n } else { -n };
    f32::from_bits((bits + step) as u32)
}

/// Every available kernel's width quantizes `x` with `q` as `TensorQuant::quantize` does.
fn assert_every_width_quantizes_as_reference(q: crate::integer::TensorQuant, x: &[f32], at: &str) {
    let want: Vec<i8> = x.iter().map(|&v| q.quantize(v)).collect();
    for kernel in Kernel::available() {
        let (got, _) = kernel.visit(TensorCodes { q, x }).expect("available");
        // Not assert_eq: a failure over 2^22 values should not print them all.
        assert!(got == want, "{kernel} {at}");
    }
}

/// Inputs whose quotient `x / S` lies within a few ulps of a half-integer, where rounding the
/// product `x * (1 / S)` instead of the quotient would give another code: every width equals
/// `TensorQuant::quantize` there. The cases include inputs where the plain product does round
/// differently (the test would catch a vector path that skipped the division).
#[test]
fn tensor_quantization_at_half_integer_quotients() {
    let mut next = lcg(9);
    let mut scales = vec![
        0.1f32,
        1.0 / 3.0,
        0.007_812_5 * 3.0,
        1.7e-3,
        3.3e5,
        2.5e-37,
        1.0e37,
    ];
    scales.extend((0..40).map(|_| {
        let e = (next() % 200) as i32 - 100;
        (1.0 + (next() % 1_000_000) as f32 / 1e6) * 2f32.powi(e)
    }));
    let mut product_differs = 0;
    for &scale in &scales {
        let mut x = Vec::new();
        for k in -300..300 {
            let mid = (k as f32 + 0.5) * scale;
            if !mid.is_normal() {
                continue;
            }
            x.extend((-6..=6).map(|n| ulps_from(mid, n)));
        }
        // Round up to whole vectors of every width, so the vector code sees them all.
        while !x.len().is_multiple_of(16) {
            x.push(0.0);
        }
        let q = crate::integer::TensorQuant {
            scale,
            zero_point: (next() % 256) as i32 - 128,
        };
        let r = 1.0 / scale;
        product_differs += x
            .iter()
            .filter(|&&v| (v * r).round() != (v / scale).round())
            .count();
        assert_every_width_quantizes_as_reference(q, &x, &format!("scale {scale}"));
    }
    assert!(
        product_differs > 0,
        "no case where x * (1 / S) rounds otherwise"
    );
}

/// With `HYBRIDQ_EXHAUSTIVE=1`: every f32 input, for a few scales, quantized by every width
/// equals `TensorQuant::quantize`.
#[test]
fn tensor_quantization_of_every_f32() {
    if !exhaustive() {
        return;
    }
    for scale in [0.1f32, 1.0 / 3.0, 0.0123, 7.5e-3] {
        let q = crate::integer::TensorQuant {
            scale,
            zero_point: 3,
        };
        let chunk = 1u64 << 22;
        let mut start = 0u64;
        while start < 1u64 << 32 {
            let x: Vec<f32> = (start..start + chunk)
                .map(|b| f32::from_bits(b as u32))
                .collect();
            let at = format!("scale {scale} from bits {start:#x}");
            assert_every_width_quantizes_as_reference(q, &x, &at);
            start += chunk;
        }
    }
}
