//! Affine parameters, calibration observers, weight-only layers and the mode builder.

use hybridq::integer::TensorQuant;
use hybridq::stats::ErrorStats;
use hybridq::toolkit::affine::{AffineParams, QuantType};
use hybridq::toolkit::calibration::{
    HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver, Observer,
};
use hybridq::toolkit::modes::{build, Mode};
use hybridq::toolkit::weight_only::{WeightFormat, WeightOnlyLinear};
use hybridq::{Activation, Error, FloatLinear, Granularity, Linear, QuantizedWeights};
use ndarray::{Array1, Array2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// r = S (q - Z): values inside the representable range come back within half a step, values
/// of the data range (which the nudged zero point may push just outside) within one step, and
/// the zero point is an exact code.
#[test]
fn affine_round_trip_error_is_bounded_by_the_scale() {
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..3000 {
        let a: f64 = rng.random_range(-1e3..1e3);
        let b: f64 = a + rng.random_range(0.0..1e3);
        let ty = [QuantType::Int8, QuantType::UInt8, QuantType::Int16][rng.random_range(0..3)];
        let narrow = rng.random_bool(0.5);
        let p = AffineParams::from_range(a, b, ty, narrow).unwrap();
        assert!(p.rmin <= a.min(0.0) && p.rmax >= b.max(0.0));
        assert_eq!(p.dequantize_one(p.zero_point), 0.0);
        let s = p.scale_f32() as f64;
        let (lo, hi) = (
            p.dequantize_one(p.qmin) as f64,
            p.dequantize_one(p.qmax) as f64,
        );
        for _ in 0..20 {
            let r = rng.random_range(p.rmin..=p.rmax) as f32;
            let back = p.dequantize_one(p.quantize_one(r)) as f64;
            let err = (back - r as f64).abs();
            if (lo..=hi).contains(&(r as f64)) {
                assert!(
                    err <= 0.5 * s * (1.0 + 1e-5) + 1e-6 * r.abs() as f64,
                    "{p:?} {r}"
                );
            } else {
                assert!(err <= s * (1.0 + 1e-5) + 1e-6 * r.abs() as f64, "{p:?} {r}");
            }
        }
    }
}

#[test]
fn zero_point_comes_from_the_side_with_the_smaller_error() {
    // [-20, 1000] over uint8: from-min gives 5 (error 5), from-max gives 5 too (error 505).
    // [-1000, 20] over uint8: the range is mirrored, zero point 250 from the max side.
    let p = AffineParams::from_range(-1000.0, 20.0, QuantType::UInt8, false).unwrap();
    assert_eq!((p.scale, p.zero_point), (4.0, 250));
    assert_eq!(p.quantize_one(20.0), 255);
    assert_eq!(p.quantize_one(-1000.0), 0);
    // A zero point below qmin is clamped: a positive-only range starts at code qmin.
    let p = AffineParams::from_range(1.0, 2.0, QuantType::Int8, false).unwrap();
    assert_eq!(p.zero_point, -128);
    let p = AffineParams::from_range(-2.0, -1.0, QuantType::Int8, false).unwrap();
    assert_eq!(p.zero_point, 127);
}

#[test]
fn affine_params_feed_the_integer_layer() {
    let p = AffineParams::from_range(-3.0, 5.0, QuantType::Int8, false).unwrap();
    let q = TensorQuant::from_affine(&p).unwrap();
    assert_eq!(q.quantize(0.0) as i32, p.zero_point);
    let u = AffineParams::from_range(-3.0, 5.0, QuantType::UInt8, false).unwrap();
    assert!(matches!(
        TensorQuant::from_affine(&u),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn observers() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut data: Vec<f32> = (0..100_000)
        .map(|_| (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum())
        .collect();
    let (true_lo, true_hi) = data
        .iter()
        .fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
    data[777] = 5000.0;
    let mut mm = MinMaxObserver::new();
    let mut hist = HistogramObserver::new(99.99);
    let mut full = HistogramObserver::new(100.0);
    for chunk in data.chunks(1000) {
        mm.observe(chunk).unwrap();
        hist.observe(chunk).unwrap();
        full.observe(chunk).unwrap();
    }
    assert_eq!(mm.range(), Some((true_lo, 5000.0)));
    assert_eq!(full.range(), Some((true_lo, 5000.0)));
    let (lo, hi) = hist.range().unwrap();
    assert!(
        lo >= true_lo && lo < true_lo + 1.5 && hi <= true_hi + 0.1 && hi > true_hi - 1.5,
        "{lo} {hi}"
    );
    let p_hist = hist.params(QuantType::Int8, false).unwrap();
    let p_mm = mm.params(QuantType::Int8, false).unwrap();
    assert!(p_hist.scale * 100.0 < p_mm.scale);

    let mut ema = MovingAverageMinMaxObserver::new(0.25).unwrap();
    ema.observe(&[-4.0, 4.0]).unwrap();
    ema.observe(&[0.0, 8.0]).unwrap();
    assert_eq!(ema.range(), Some((-3.0, 5.0)));
    for o in [&mut mm as &mut dyn Observer, &mut hist, &mut ema] {
        let before = o.range();
        assert!(matches!(
            o.observe(&[1.0, f32::NAN]),
            Err(Error::NonFinite { .. })
        ));
        assert_eq!(o.range(), before);
        o.observe(&[]).unwrap();
        assert_eq!(o.range(), before);
    }
    assert!(MinMaxObserver::new()
        .params(QuantType::Int8, false)
        .is_err());
}

#[test]
fn weight_only_layers_compute_in_float_on_the_decoded_weights() {
    let mut rng = StdRng::seed_from_u64(9);
    let (n, k) = (37, 61);
    let w = Array2::from_shape_fn((n, k), |_| rng.random_range(-2.0f32..2.0));
    let b = Array1::from_shape_fn(n, |_| rng.random_range(-1.0f32..1.0));
    let x = Array2::from_shape_fn((5, k), |_| rng.random_range(-1.0f32..1.0));
    let decoded_f16 = w.mapv(|v| half::f16::from_f32(v).to_f32());
    let decoded_bf16 = w.mapv(|v| half::bf16::from_f32(v).to_f32());
    let decoded_i8 = QuantizedWeights::quantize(w.view(), Granularity::PerChannel)
        .unwrap()
        .dequantize();
    for (format, decoded, bytes) in [
        (WeightFormat::Float16, &decoded_f16, 2 * n * k),
        (WeightFormat::BFloat16, &decoded_bf16, 2 * n * k),
        (
            WeightFormat::Int8(Granularity::PerChannel),
            &decoded_i8,
            n * k + 4 * n,
        ),
    ] {
        let layer =
            WeightOnlyLinear::new(w.view(), Some(b.view()), Activation::Relu, format).unwrap();
        assert_eq!(layer.storage_bytes(), bytes);
        assert_eq!(layer.decoded_weights(), decoded.view());
        let float = FloatLinear::new(decoded.view(), Some(b.view()), Activation::Relu).unwrap();
        let (y, want) = (
            layer.forward(x.view()).unwrap(),
            float.forward(x.view()).unwrap(),
        );
        assert_eq!(y, want, "{format:?}");
    }
    let big = Array2::from_elem((2, 2), 1e5f32);
    assert!(matches!(
        WeightOnlyLinear::new(big.view(), None, Activation::None, WeightFormat::Float16),
        Err(Error::OutOfRange { .. })
    ));
    assert!(
        WeightOnlyLinear::new(big.view(), None, Activation::None, WeightFormat::BFloat16).is_ok()
    );
}

#[test]
fn modes_lose_precision_in_the_expected_order() {
    let mut rng = StdRng::seed_from_u64(13);
    let (n, k, rows) = (64, 256, 16);
    let w = Array2::from_shape_fn((n, k), |_| rng.random_range(-1.0f32..1.0) / 16.0);
    let b = Array1::from_shape_fn(n, |_| rng.random_range(-0.1f32..0.1));
    let cal = Array2::from_shape_fn((64, k), |_| rng.random_range(-2.0f32..2.0));
    let x = Array2::from_shape_fn((rows, k), |_| rng.random_range(-2.0f32..2.0));
    let reference = build(
        Mode::Float,
        w.view(),
        Some(b.view()),
        Activation::None,
        cal.view(),
    )
    .unwrap()
    .layer
    .forward_dyn(x.view().into_dyn())
    .unwrap();
    let mut sqnr = Vec::new();
    for mode in Mode::ALL {
        let built = build(mode, w.view(), Some(b.view()), Activation::None, cal.view()).unwrap();
        let y = built.layer.forward_dyn(x.view().into_dyn()).unwrap();
        let s = ErrorStats::compare(reference.as_slice().unwrap(), y.as_slice().unwrap());
        sqnr.push((mode, s.sqnr_db, built.weight_bytes));
    }
    assert_eq!(sqnr[0].1, f64::INFINITY);
    for pair in sqnr.windows(2) {
        assert!(pair[0].1 > pair[1].1, "{sqnr:?}");
        assert!(pair[0].2 >= pair[1].2, "{sqnr:?}");
    }
    // int8 modes: 8-bit codes keep a 6 dB/bit budget well above 25 dB on these shapes.
    assert!(sqnr.iter().all(|s| s.1 > 25.0), "{sqnr:?}");
}
