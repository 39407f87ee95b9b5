//! Through the public API: every available kernel gives the scalar reference's bits on random
//! layers (every flavour, symmetric and asymmetric inputs, activations, per-channel and
//! per-tensor scales, -128 weights, NaN rows under the propagate policy).
//! Larger runs: `HYBRIDQ_EXHAUSTIVE=1`.

use hybridq::{
    Activation, Flavour, HybridConfig, HybridLinear, Kernel, Linear, NonFinitePolicy,
    QuantizedWeights,
};
use ndarray::Array2;
use proptest::prelude::*;

/// Cases per property: `PROPTEST_CASES` when set (few, say, under an emulator; `with_cases`
/// would otherwise override it), else `fast`, or 20 times that with `HYBRIDQ_EXHAUSTIVE=1`.
fn cases(fast: u32) -> u32 {
    if let Some(n) = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        n
    } else if std::env::var("HYBRIDQ_EXHAUSTIVE").is_ok_and(|v| v == "1") {
        fast * 20
    } else {
        fast
    }
}

#[derive(Debug, Clone)]
struct Case {
    b: usize,
    k: usize,
    n: usize,
    w: Vec<i8>,
    scales: Vec<f32>,
    bias: Option<Vec<f32>>,
    x: Vec<f32>,
    flavour: Flavour,
    asym: bool,
    act: Activation,
    nan_row: Option<usize>,
}

fn weights(len: usize) -> impl Strategy<Value = Vec<i8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<i8>(), len),
        1 => prop::collection::vec(prop::sample::select(vec![-128i8, 127, -127]), len),
        1 => prop::collection::vec(-1i8..=1, len),
    ]
}

#[path = "support/extreme.rs"]
mod extreme;

fn inputs(len: usize) -> impl Strategy<Value = Vec<f32>> {
    prop_oneof![
        2 => extreme::extreme_row(len),
        3 => prop::collection::vec(-8.0f32..8.0, len),
        1 => prop::collection::vec(0.0f32..1e4, len),
        1 => prop::collection::vec(prop::sample::select(vec![0.0f32, -0.0, 0.5, -2.5, 127.0, -128.0]), len),
        1 => (prop::collection::vec(Just(0.0f32), len), any::<prop::sample::Index>(), -1e3f32..1e3)
            .prop_map(|(mut v, i, s)| { let at = i.index(v.len()); v[at] = s; v }),
    ]
}

/// Positive scales in [1e-6, 1] on a log grid (proptest's f32 range sampler can trip an
/// internal assertion on ranges with a tiny lower bound).
fn scale() -> impl Strategy<Value = f32> {
    (0u32..=600).prop_map(|i| 10f32.powf(-(i as f32) / 100.0))
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=10, 1usize..=80, 1usize..=40).prop_flat_map(|(b, k, n)| {
        (
            weights(n * k),
            prop_oneof![
                3 => prop::collection::vec(scale(), n),
                1 => prop::collection::vec(extreme::any_positive_scale(), n),
                1 => scale().prop_map(|s| vec![s]),
            ],
            prop::option::of(prop_oneof![
                3 => prop::collection::vec(-3.0f32..3.0, n),
                1 => extreme::mixed_row(n),
            ]),
            inputs(b * k),
            prop::sample::select(Flavour::ALL.to_vec()),
            any::<bool>(),
            prop::sample::select(Activation::ALL.to_vec()),
            prop::option::of(0..b),
        )
            .prop_map(
                move |(w, scales, bias, x, flavour, asym, act, nan_row)| Case {
                    b,
                    k,
                    n,
                    w,
                    scales,
                    bias,
                    x,
                    flavour,
                    asym,
                    act,
                    nan_row,
                },
            )
    })
}

fn run(c: &Case, kernel: Kernel, threads: usize) -> Vec<u32> {
    let w = Array2::from_shape_vec((c.n, c.k), c.w.clone()).unwrap();
    let w = QuantizedWeights::from_parts(w.view(), &c.scales).unwrap();
    let bias = c.bias.clone().map(ndarray::Array1::from);
    let config = HybridConfig {
        asymmetric_inputs: c.asym,
        activation: c.act,
        flavour: c.flavour,
        non_finite: NonFinitePolicy::Propagate,
        kernel: Some(kernel),
        threads,
    };
    let layer = HybridLinear::new(w, bias.as_ref().map(|b| b.view()), config).unwrap();
    let mut x = Array2::from_shape_vec((c.b, c.k), c.x.clone()).unwrap();
    if let Some(r) = c.nan_row {
        x[[r, c.k / 2]] = f32::NAN;
    }
    layer
        .forward(x.view())
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(10000)))]

    #[test]
    fn every_kernel_equals_the_scalar_reference(c in case(), threads in 1usize..4) {
        let want = run(&c, Kernel::Scalar, 1);
        for kernel in Kernel::available() {
            prop_assert_eq!(run(&c, kernel, threads), want.clone(), "{}", kernel);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(2000)))]

    /// `RowQuantizer` (the public view of a kernel's input step) gives `quantize_row`'s
    /// parameters and values on every kernel, for rows of any length and magnitude; a
    /// non-finite value is a typed error.
    #[test]
    fn every_row_quantizer_equals_quantize_row(
        row in (1usize..=300).prop_flat_map(inputs),
        flavour in prop::sample::select(Flavour::ALL.to_vec()),
        asym in any::<bool>(),
    ) {
        let mut want = vec![0i8; row.len()];
        let params = hybridq::quantize::inputs::quantize_row(flavour, asym, &row, &mut want);
        for kernel in Kernel::available() {
            let mut q = hybridq::RowQuantizer::new(kernel, flavour, asym).unwrap();
            prop_assert_eq!(q.quantize(&row).unwrap(), params, "{}", kernel);
            prop_assert_eq!(q.values(), want.clone(), "{}", kernel);
            let mut bad = row.clone();
            bad[row.len() / 2] = f32::NAN;
            let is_non_finite = matches!(q.quantize(&bad), Err(hybridq::Error::NonFinite { .. }));
            prop_assert!(is_non_finite, "{}", kernel);
        }
    }
}
