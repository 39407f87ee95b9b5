//! Every bad input of the core issue returns a typed error (never a panic), and a failed call
//! leaves the caller's output untouched.

use hybridq::quantize::weights::MAX_DEPTH;
use hybridq::{
    Error, FloatLinear, Granularity, HybridConfig, HybridLinear, Linear, NonFinitePolicy,
    QuantizedWeights, Scratch,
};
use ndarray::{array, Array1, Array2, Array3, ArrayD, IxDyn};

fn layer(k: usize, n: usize) -> HybridLinear {
    let w = Array2::from_shape_fn((n, k), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
    HybridLinear::from_f32(
        w.view(),
        None,
        Granularity::PerChannel,
        HybridConfig::default(),
    )
    .unwrap()
}

#[test]
fn k_mismatch() {
    let l = layer(4, 3);
    let x = Array2::<f32>::ones((2, 5));
    assert!(matches!(
        l.forward(x.view()),
        Err(Error::ShapeMismatch { .. })
    ));
    let f = FloatLinear::new(Array2::<f32>::ones((3, 4)).view(), None, Default::default()).unwrap();
    assert!(matches!(
        f.forward(x.view()),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn zero_dimensional_input() {
    let l = layer(4, 3);
    let x = ArrayD::<f32>::zeros(IxDyn(&[]));
    let e = l.forward(x.view()).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
}

#[test]
fn bias_length_mismatch() {
    let w = Array2::<f32>::ones((3, 4));
    let b = Array1::<f32>::ones(2);
    let e = HybridLinear::from_f32(
        w.view(),
        Some(b.view()),
        Granularity::PerChannel,
        HybridConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    assert!(e.to_string().contains("bias"), "{e}");
    assert!(matches!(
        FloatLinear::new(w.view(), Some(b.view()), Default::default()),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn scale_length_mismatch() {
    let q = Array2::<i8>::ones((3, 4));
    let e = QuantizedWeights::from_parts(q.view(), &[1.0, 1.0]).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    assert!(matches!(
        QuantizedWeights::from_parts(q.view(), &[]),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn empty_dimensions() {
    // No output channels: nothing to compute.
    let w = Array2::<f32>::zeros((0, 4));
    assert!(matches!(
        QuantizedWeights::quantize(w.view(), Granularity::PerChannel),
        Err(Error::Empty { .. })
    ));
    assert!(matches!(
        FloatLinear::new(w.view(), None, Default::default()),
        Err(Error::Empty { .. })
    ));
    let q = Array2::<i8>::zeros((0, 4));
    assert!(matches!(
        QuantizedWeights::from_parts(q.view(), &[1.0]),
        Err(Error::Empty { .. })
    ));
    // An empty batch is a valid, empty result; K = 0 gives zeros as TFLite does (not the bias).
    let l = layer(4, 3);
    assert_eq!(
        l.forward(Array2::<f32>::zeros((0, 4)).view())
            .unwrap()
            .shape(),
        &[0, 3]
    );
    let w0 = Array2::<f32>::zeros((2, 0));
    let b = array![1.0f32, -2.0];
    let l0 = HybridLinear::from_f32(
        w0.view(),
        Some(b.view()),
        Granularity::PerChannel,
        HybridConfig::default(),
    )
    .unwrap();
    assert_eq!(
        l0.forward(Array2::<f32>::zeros((3, 0)).view()).unwrap(),
        Array2::<f32>::zeros((3, 2))
    );
}

#[test]
fn non_finite_weights_and_bias() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut w = Array2::<f32>::ones((2, 3));
        w[[1, 2]] = bad;
        let e = QuantizedWeights::quantize(w.view(), Granularity::PerTensor).unwrap_err();
        assert!(matches!(e, Error::NonFinite { index: 5, .. }), "{e}");
        assert!(matches!(
            FloatLinear::new(w.view(), None, Default::default()),
            Err(Error::NonFinite { .. })
        ));
        let b = array![0.0f32, bad];
        let ok = Array2::<f32>::ones((2, 3));
        let e = HybridLinear::from_f32(
            ok.view(),
            Some(b.view()),
            Granularity::PerChannel,
            HybridConfig::default(),
        )
        .unwrap_err();
        assert!(matches!(e, Error::NonFinite { index: 1, .. }), "{e}");
    }
}

#[test]
fn bad_scales_in_prequantized_weights() {
    let q = array![[1i8, 2], [3, 4]];
    for bad in [
        0.0f32,
        -0.0,
        -0.5,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ] {
        let e = QuantizedWeights::from_parts(q.view(), &[0.25, bad]).unwrap_err();
        assert!(matches!(e, Error::BadScale { index: 1, .. }), "{bad}: {e}");
        let e = QuantizedWeights::from_parts(q.view(), &[bad]).unwrap_err();
        assert!(matches!(e, Error::BadScale { index: 0, .. }), "{bad}: {e}");
    }
}

#[test]
fn non_finite_input_is_refused_before_anything_is_written() {
    let l = layer(4, 3);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut x = Array2::<f32>::ones((3, 4));
        x[[2, 1]] = bad;
        let e = l.forward(x.view()).unwrap_err();
        assert!(matches!(e, Error::NonFinite { index: 9, .. }), "{e}");
        let mut out = Array2::<f32>::from_elem((3, 3), 42.0);
        assert!(l
            .forward_into(x.view(), out.view_mut(), &mut Scratch::new())
            .is_err());
        assert!(
            out.iter().all(|&v| v == 42.0),
            "output was written before the error"
        );
    }
}

#[test]
fn propagate_policy_gives_nan_rows_and_leaves_other_rows_alone() {
    let l = layer(4, 3);
    let p = l.with_config(HybridConfig {
        non_finite: NonFinitePolicy::Propagate,
        ..*l.config()
    });
    let mut x = Array2::from_shape_fn((3, 4), |(i, j)| (i as f32 + 1.0) * (j as f32 - 1.5));
    x[[1, 0]] = f32::NAN;
    let y = p.forward(x.view()).unwrap();
    assert!(y.row(1).iter().all(|v| v.is_nan()));
    for r in [0, 2] {
        let alone = l.forward(x.slice(ndarray::s![r..r + 1, ..])).unwrap();
        let same = alone
            .row(0)
            .iter()
            .zip(y.row(r))
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "row {r} changed");
    }
}

/// Inputs large enough for the threaded quantization pass, which finds the non-finite values
/// (2^18 values and more, 2 threads): the error names the first non-finite value in row-major
/// order, and with `Propagate` exactly the bad rows are NaN and the others equal a one-thread
/// run bit for bit.
#[test]
fn threaded_finite_check_finds_the_first_bad_value() {
    let (rows, k, n) = (300, 1024, 8);
    let w = Array2::from_shape_fn((n, k), |(i, j)| ((i * 7 + j * 3) % 19) as f32 / 9.0 - 1.0);
    let one = HybridLinear::from_f32(
        w.view(),
        None,
        Granularity::PerChannel,
        HybridConfig::default(),
    )
    .unwrap()
    .with_threads(1);
    let two = one.clone().with_threads(2);
    let mut x = Array2::from_shape_fn((rows, k), |(i, j)| ((i * 5 + j) % 23) as f32 / 11.0 - 1.0);
    x[[250, 9]] = f32::NEG_INFINITY;
    x[[200, 5]] = f32::NAN;
    x[[200, 700]] = f32::INFINITY;
    for l in [&one, &two] {
        let e = l.forward(x.view()).unwrap_err();
        assert!(
            matches!(e, Error::NonFinite { index, .. } if index == 200 * k + 5),
            "{e}"
        );
    }
    let propagate = |l: &HybridLinear| {
        l.with_config(HybridConfig {
            non_finite: NonFinitePolicy::Propagate,
            ..*l.config()
        })
        .with_threads(l.threads())
    };
    let (y1, y2) = (
        propagate(&one).forward(x.view()).unwrap(),
        propagate(&two).forward(x.view()).unwrap(),
    );
    for r in 0..rows {
        let bad = r == 200 || r == 250;
        assert_eq!(y2.row(r).iter().all(|v| v.is_nan()), bad, "row {r}");
        if !bad {
            assert!(y1
                .row(r)
                .iter()
                .zip(y2.row(r))
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }
}

#[test]
fn depth_beyond_the_supported_maximum_is_refused() {
    let q = Array2::<i8>::zeros((1, MAX_DEPTH + 1));
    let e = QuantizedWeights::from_parts(q.view(), &[1.0]).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
}

#[test]
fn forward_into_checks_output_shape() {
    let l = layer(4, 3);
    let x = Array3::<f32>::ones((2, 5, 4));
    let mut out = Array3::<f32>::zeros((2, 5, 4));
    let e = l
        .forward_into(x.view(), out.view_mut(), &mut Scratch::new())
        .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
}

#[test]
fn forward_rows_checks_slice_lengths() {
    let l = layer(4, 3);
    let mut out = vec![0.0f32; 6];
    assert!(matches!(
        l.forward_rows(&[0.0; 7], 2, &mut out, &mut Scratch::new()),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        l.forward_rows(&[0.0; 8], 2, &mut out[..5], &mut Scratch::new()),
        Err(Error::ShapeMismatch { .. })
    ));
    // A row count whose product with K overflows usize is a mismatch, not a panic or a wrap.
    let e = l
        .forward_rows(&[0.0; 8], usize::MAX, &mut out, &mut Scratch::new())
        .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    assert!(e.to_string().contains("more than usize holds"), "{e}");
}

#[test]
fn weights_holding_minus_128_compute_the_exact_product() {
    // Symmetric row with range 127: sf = 1, inv = 1, so q_x = x exactly.
    let q = array![
        [-128i8, -128, 127, -128, 5, -128, -128, -128, -128],
        [127, -128, 0, 1, -1, 64, -64, 3, -128]
    ];
    let x = array![[-127.0f32, -100.0, 3.0, 127.0, -7.0, -1.0, -2.0, -3.0, -4.0]];
    let w = QuantizedWeights::from_parts(q.view(), &[0.5, 0.25]).unwrap();
    for flavour in hybridq::Flavour::ALL {
        let config = HybridConfig {
            asymmetric_inputs: false,
            flavour,
            ..HybridConfig::default()
        };
        if flavour.is_xnnpack() {
            continue; // always asymmetric: a different grid; covered by the fixtures.
        }
        let l = HybridLinear::new(w.clone(), None, config).unwrap();
        let y = l.forward(x.view()).unwrap();
        for n in 0..2 {
            let exact: i64 = q
                .row(n)
                .iter()
                .zip(x.row(0))
                .map(|(&a, &b)| a as i64 * b as i64)
                .sum();
            assert_eq!(
                y[[0, n]],
                exact as f32 * w.scale(n),
                "{flavour} channel {n}"
            );
        }
    }
}

#[test]
fn accumulation_beyond_the_i32_range_is_exact() {
    // K = 70_000 all-positive inputs: zero point -128, q - zp up to 255; weights 127. The true
    // accumulator 127 * 255 * 70_000 exceeds i32 (TFLite would wrap); hybridq is exact.
    let k = 70_000;
    let q = Array2::<i8>::from_elem((1, k), 127);
    let w = QuantizedWeights::from_parts(q.view(), &[1.0]).unwrap();
    let l = HybridLinear::new(w, None, HybridConfig::default()).unwrap();
    let x = Array2::<f32>::from_elem((1, k), 255.0);
    let y = l.forward(x.view()).unwrap();
    let exact = 127i64 * 255 * k as i64;
    assert!(exact > i32::MAX as i64);
    assert_eq!(y[[0, 0]], exact as f32);
}

#[test]
fn broadcast_views_of_more_rows_than_memory_are_a_typed_error() {
    // A zero-stride view claims 2^62 (or 2^61 + 1) rows of one value: the output (rows x 4) and
    // the contiguous copy of the input cannot be allocated, and that is an error, not a
    // "capacity overflow" panic.
    let one = Array2::<f32>::ones((1, 1));
    let hybrid = layer(1, 4);
    let float =
        FloatLinear::new(Array2::<f32>::ones((4, 1)).view(), None, Default::default()).unwrap();
    for rows in [1usize << 62, (1 << 61) + 1] {
        let x = one.broadcast((rows, 1)).unwrap();
        for l in [&hybrid as &dyn Linear, &float as &dyn Linear] {
            let err = l.forward_dyn(x.into_dyn()).unwrap_err();
            assert!(matches!(err, Error::TooLarge { .. }), "{rows}: {err:?}");
        }
        assert!(matches!(hybrid.forward(x), Err(Error::TooLarge { .. })));
    }
}

#[test]
fn integer_layer_broadcast_views_of_more_rows_than_memory_are_a_typed_error() {
    use hybridq::integer::{IntegerLinear, TensorQuant};
    let t = TensorQuant::new(0.1, 0).unwrap();
    let l = IntegerLinear::new(
        ndarray::Array2::<i8>::ones((4, 1)).view(),
        &[0.01],
        None,
        t,
        t,
        Default::default(),
    )
    .unwrap();
    let one = ndarray::Array2::<i8>::ones((1, 1));
    for rows in [1usize << 62, (1 << 61) + 1] {
        let x = one.broadcast((rows, 1)).unwrap();
        assert!(matches!(l.forward_q(x), Err(Error::TooLarge { .. })));
        assert!(matches!(l.accumulators(x), Err(Error::TooLarge { .. })));
    }
}
