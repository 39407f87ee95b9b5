//! Property tests of the hybrid layer against float and against itself.

use hybridq::bound::error_bounds;
use hybridq::{Activation, Flavour, FloatLinear, Granularity, HybridConfig, HybridLinear, Linear};
use ndarray::{s, Array1, Array2};
use proptest::prelude::*;

/// A value drawn from one of several regimes: ordinary, tiny, large, zero, or a spike.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        6 => -4.0f32..4.0,
        1 => -1e-3f32..1e-3,
        1 => -1e3f32..1e3,
        1 => Just(0.0f32),
        1 => prop_oneof![Just(-127.0f32), Just(127.0), Just(0.5), Just(-0.5), Just(0.49999997)],
    ]
}

#[derive(Debug, Clone)]
struct Case {
    w: Array2<f32>,
    bias: Option<Array1<f32>>,
    x: Array2<f32>,
    config: HybridConfig,
    granularity: Granularity,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..70, 1usize..40, 1usize..9)
        .prop_flat_map(|(k, n, b)| {
            (
                prop::collection::vec(value(), n * k),
                prop::option::of(prop::collection::vec(-2.0f32..2.0, n)),
                prop::collection::vec(value(), b * k),
                any::<bool>(),
                prop::sample::select(Flavour::ALL.to_vec()),
                prop::sample::select(Activation::ALL.to_vec()),
                prop_oneof![Just(Granularity::PerChannel), Just(Granularity::PerTensor)],
                Just((k, n, b)),
            )
        })
        .prop_map(
            |(w, bias, x, asym, flavour, activation, granularity, (k, n, b))| Case {
                w: Array2::from_shape_vec((n, k), w).unwrap(),
                bias: bias.map(Array1::from),
                x: Array2::from_shape_vec((b, k), x).unwrap(),
                config: HybridConfig {
                    asymmetric_inputs: asym,
                    flavour,
                    activation,
                    ..HybridConfig::default()
                },
                granularity,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Every output of the hybrid layer lies within the analytic bound of the float layer.
    #[test]
    fn hybrid_stays_within_the_analytic_bound_of_float(c in case()) {
        let h = HybridLinear::from_f32(c.w.view(), c.bias.as_ref().map(|b| b.view()), c.granularity, c.config).unwrap();
        let f = FloatLinear::new(c.w.view(), c.bias.as_ref().map(|b| b.view()), c.config.activation).unwrap();
        let yh = h.forward(c.x.view()).unwrap();
        let yf = f.forward(c.x.view()).unwrap();
        let bounds = error_bounds(&h, c.w.view(), c.x.as_slice().unwrap()).unwrap();
        for ((a, b), bound) in yh.iter().zip(yf.iter()).zip(&bounds) {
            let d = (*a as f64 - *b as f64).abs();
            prop_assert!(d <= *bound, "hybrid {a} float {b} diff {d} > bound {bound}");
        }
    }

    /// Row b's output depends on row b alone (for inputs that are not all zero), except in
    /// `tflite-arm64-dotprod`, where TFLite itself picks its sdot kernel (and so its rounding)
    /// from the batch size.
    #[test]
    fn each_row_depends_on_itself_alone(c in case()) {
        prop_assume!(c.x.iter().any(|&v| v != 0.0));
        prop_assume!(c.config.flavour != hybridq::Flavour::TfliteArm64Dotprod);
        let h = HybridLinear::from_f32(c.w.view(), c.bias.as_ref().map(|b| b.view()), c.granularity, c.config).unwrap();
        let batch = h.forward(c.x.view()).unwrap();
        for r in 0..c.x.nrows() {
            let row = c.x.slice(s![r..r + 1, ..]);
            prop_assume!(row.iter().any(|&v| v != 0.0));
            let alone = h.forward(row).unwrap();
            for (a, b) in alone.iter().zip(batch.row(r)) {
                prop_assert_eq!(a.to_bits(), b.to_bits());
            }
        }
    }

    /// The quantized weights reproduce the float weights within half a step per channel.
    #[test]
    fn weight_quantization_error_is_at_most_half_a_step(c in case()) {
        let q = hybridq::QuantizedWeights::quantize(c.w.view(), c.granularity).unwrap();
        let back = q.dequantize();
        for (((n, _), &w), &d) in c.w.indexed_iter().zip(back.iter()) {
            let step = q.scale(n) as f64;
            prop_assert!((w as f64 - d as f64).abs() <= 0.5 * step * (1.0 + 2e-5), "w {w} back {d} step {step}");
        }
    }
}
