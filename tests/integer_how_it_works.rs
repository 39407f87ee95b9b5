//! The formulas of `docs/how-it-works.md`, one test each (the document links here).

use hybridq::integer::{IntegerLinear, TensorQuant};
use hybridq::stats::ErrorStats;
use hybridq::toolkit::modes::{build, Mode};
use hybridq::{Activation, Granularity, QuantizedWeights};
use ndarray::{s, Array1, Array2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random_layer(rng: &mut StdRng, n: usize, k: usize, act: Activation) -> IntegerLinear {
    let w = Array2::from_shape_fn((n, k), |_| rng.random_range(-127..=127i32) as i8);
    let scales: Vec<f32> = (0..n).map(|_| rng.random_range(0.001..0.02f32)).collect();
    let bias = Array1::from_shape_fn(n, |_| rng.random_range(-3000..3000));
    IntegerLinear::new(
        w.view(),
        &scales,
        Some(bias.view()),
        TensorQuant::new(0.03, rng.random_range(-20..20)).unwrap(),
        TensorQuant::new(0.05, rng.random_range(-20..20)).unwrap(),
        act,
    )
    .unwrap()
}

/// Section 2: with x = S_x (q_x - Z_x), w = S_w q_w, b = S_x S_w q_b, the real dot product
/// sum_k w x + b equals S_x S_w * acc, where acc = sum q_w q_x - Z_x sum q_w + q_b is the
/// integer accumulator. (Checked in f64, where every term is exact.)
#[test]
fn real_dot_product_is_the_scaled_integer_accumulator() {
    let mut rng = StdRng::seed_from_u64(1);
    let layer = random_layer(&mut rng, 17, 33, Activation::None);
    let x = Array2::from_shape_fn((4, 33), |_| rng.random_range(-128..=127i32) as i8);
    let acc = layer.accumulators(x.view()).unwrap();
    let (sx, zx) = (
        layer.input_quant().scale as f64,
        layer.input_quant().zero_point,
    );
    let w = layer.weights_q();
    for r in 0..4 {
        for n in 0..17 {
            let sw = layer.weight_scales()[n] as f64;
            let real: f64 = (0..33)
                .map(|k| (sw * w[[n, k]] as f64) * (sx * (x[[r, k]] as i32 - zx) as f64))
                .sum::<f64>()
                + sx * sw * layer.bias_q().unwrap()[n] as f64;
            let scaled = sx * sw * acc[[r, n]] as f64;
            assert!(
                (real - scaled).abs() <= 1e-12 * real.abs().max(1.0),
                "{real} {scaled}"
            );
            // and the two ways of writing acc agree exactly
            let direct: i64 = (0..33)
                .map(|k| (x[[r, k]] as i64 - zx as i64) * w[[n, k]] as i64)
                .sum::<i64>()
                + layer.bias_q().unwrap()[n] as i64;
            assert_eq!(acc[[r, n]] as i64, direct);
        }
    }
}

/// Section 3: products of int8 codes fit i16 (|q_w| <= 128, |q_x - Z_x| <= 255 needs i32 for
/// the product, i16 for q_w q_x), and the i32 sum is exact up to K = 65793
/// (255 * 128 * 65793 < 2^31); past that TFLite's i32 wraps, and so does hybridq.
#[test]
fn accumulator_is_exact_in_i32_up_to_k_65793() {
    for (k, exact) in [(65_793usize, true), (65_794, false)] {
        let w = Array2::from_elem((1, k), -128i8);
        let layer = IntegerLinear::new(
            w.view(),
            &[1e-6],
            None,
            TensorQuant::new(1.0, -128).unwrap(),
            TensorQuant::new(1.0, 0).unwrap(),
            Activation::None,
        )
        .unwrap();
        let x = Array2::from_elem((1, k), 127i8); // q_x - Z_x = 255
        let acc = layer.accumulators(x.view()).unwrap()[[0, 0]] as i64;
        let want = 255i64 * -128 * k as i64;
        assert_eq!(acc == want, exact, "K = {k}: {acc} vs {want}");
        assert_eq!(acc, (want as i32) as i64, "wraps modulo 2^32 like TFLite");
    }
}

/// Section 4: the output scale comes from the range the outputs took on calibration data, so
/// those outputs fit 8 bits without clamping; inputs far outside that range clamp at -128/127.
#[test]
fn calibrated_output_scale_keeps_results_in_8_bits_and_the_rest_clamps() {
    let mut rng = StdRng::seed_from_u64(2);
    let (n, k) = (32, 64);
    let w = Array2::from_shape_fn((n, k), |_| rng.random_range(-1.0f32..1.0) / 8.0);
    let cal = Array2::from_shape_fn((64, k), |_| rng.random_range(-1.0f32..1.0));
    let built = build(
        Mode::FullInteger,
        w.view(),
        None,
        Activation::None,
        cal.view(),
    )
    .unwrap();
    let y = built.layer.forward_dyn(cal.view().into_dyn()).unwrap();
    let float = build(Mode::Float, w.view(), None, Activation::None, cal.view()).unwrap();
    let yf = float.layer.forward_dyn(cal.view().into_dyn()).unwrap();
    let (lo, hi) = yf
        .iter()
        .fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
    let step = (hi - lo) / 255.0;
    // every calibration output is represented within about one output step (plus the input
    // and weight rounding), none is clamped away
    let s = ErrorStats::compare(yf.as_slice().unwrap(), y.as_slice().unwrap());
    assert!(s.max_abs < 3.0 * step as f64, "{s} step {step}");
    // inputs of +-1 everywhere (still inside the input range) push many outputs past the
    // calibrated output range: exactly those clamp to the end codes
    let big = cal.mapv(f32::signum);
    let yb = built.layer.forward_dyn(big.view().into_dyn()).unwrap();
    let ybf = float.layer.forward_dyn(big.view().into_dyn()).unwrap();
    let mut clamped = 0;
    for (&q, &f) in yb.iter().zip(&ybf) {
        assert!(q >= lo - step && q <= hi + step, "{q} outside [{lo}, {hi}]");
        if f > hi + 3.0 * step || f < lo - 3.0 * step {
            clamped += 1;
            assert!(q >= hi - step || q <= lo + step, "{f} -> {q}");
        }
    }
    assert!(clamped > 20, "{clamped} of {}", yb.len());
}

/// Section 5: padding an input with the zero point Z_x (real 0.0) changes nothing, whatever
/// the padded weights are; a ReLU is a clamp at the output zero point Z_y.
#[test]
fn zero_point_padding_is_free_and_relu_clamps_at_the_zero_point() {
    let mut rng = StdRng::seed_from_u64(3);
    let (n, k, pad) = (9, 20, 7);
    let big = random_layer(&mut rng, n, k + pad, Activation::None);
    let small = IntegerLinear::new(
        big.weights_q().slice(s![.., ..k]),
        big.weight_scales(),
        big.bias_q().map(ndarray::ArrayView1::from),
        big.input_quant(),
        big.output_quant(),
        Activation::None,
    )
    .unwrap();
    let x = Array2::from_shape_fn((3, k), |_| rng.random_range(-128..=127i32) as i8);
    let mut padded = Array2::from_elem((3, k + pad), big.input_quant().zero_point as i8);
    padded.slice_mut(s![.., ..k]).assign(&x);
    assert_eq!(
        big.forward_q(padded.view()).unwrap(),
        small.forward_q(x.view()).unwrap()
    );

    let relu = IntegerLinear::new(
        small.weights_q(),
        small.weight_scales(),
        small.bias_q().map(ndarray::ArrayView1::from),
        small.input_quant(),
        small.output_quant(),
        Activation::Relu,
    )
    .unwrap();
    let z = small.output_quant().zero_point as i8;
    let y = small.forward_q(x.view()).unwrap();
    let y_relu = relu.forward_q(x.view()).unwrap();
    assert_eq!(y_relu, y.mapv(|v| v.max(z)));
    assert!(y.iter().any(|&v| v < z), "the test needs negative outputs");
}

/// Section 7: one scale per output channel costs 4 bytes per channel and follows each row's
/// own range; one scale per tensor must cover the largest row, so small rows lose precision.
#[test]
fn per_channel_scales_follow_each_rows_range() {
    let mut rng = StdRng::seed_from_u64(4);
    let (n, k) = (16, 128);
    let w = Array2::from_shape_fn((n, k), |(r, _)| {
        rng.random_range(-1.0f32..1.0) * if r % 2 == 0 { 0.01 } else { 1.0 }
    });
    let err = |g| {
        let q = QuantizedWeights::quantize(w.view(), g).unwrap();
        let s = ErrorStats::compare(w.as_slice().unwrap(), q.dequantize().as_slice().unwrap());
        (s.sqnr_db, q.storage_bytes())
    };
    let (pc, pc_bytes) = err(Granularity::PerChannel);
    let (pt, pt_bytes) = err(Granularity::PerTensor);
    assert_eq!(pc_bytes - pt_bytes, 4 * (n - 1));
    assert!(pc > pt, "{pc} {pt}");
    // the small rows alone: per tensor leaves them about 1 code of 127, per channel all 127
    let small_rows: Vec<usize> = (0..n).step_by(2).collect();
    let q = QuantizedWeights::quantize(w.view(), Granularity::PerTensor).unwrap();
    let max_code = small_rows
        .iter()
        .flat_map(|&r| q.values().row(r).to_vec())
        .map(|v| (v as i32).abs())
        .max()
        .unwrap();
    assert!(max_code <= 2, "{max_code}");
}
