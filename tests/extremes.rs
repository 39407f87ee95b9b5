//! Rows at the ends of the f32 range (issue 8): the probe cases that once made the kernels
//! disagree, and XNNPACK's overflow at the top of the range, which is faithful to the real
//! delegate and outside the analytic error bound. The shipped fixtures 077-094 check the same
//! class against the real TFLite.

use hybridq::bound::error_bounds;
use hybridq::quantize::inputs::quantize_row;
use hybridq::{Flavour, FloatLinear, HybridConfig, HybridLinear, Kernel, Linear, QuantizedWeights};
use ndarray::{array, Array2};

fn layer(
    w: &Array2<f32>,
    scale: f32,
    flavour: Flavour,
    asym: bool,
    kernel: Kernel,
) -> HybridLinear {
    let q = w.mapv(|v| v as i8);
    let weights = QuantizedWeights::from_parts(q.view(), &[scale]).unwrap();
    let config = HybridConfig {
        asymmetric_inputs: asym,
        flavour,
        kernel: Some(kernel),
        threads: 1,
        ..HybridConfig::default()
    };
    HybridLinear::new(weights, None, config).unwrap()
}

/// The outputs of every kernel, as bits.
fn outputs_per_kernel(
    w: &Array2<f32>,
    x: &Array2<f32>,
    flavour: Flavour,
    asym: bool,
) -> Vec<Vec<u32>> {
    Kernel::available()
        .into_iter()
        .map(|k| {
            let y = layer(w, 1.0, flavour, asym, k).forward(x.view()).unwrap();
            y.iter().map(|v| v.to_bits()).collect()
        })
        .collect()
}

#[test]
fn a_row_of_min_positive_gives_one_answer_in_every_kernel_and_flavour() {
    // The probe of issue 8: ones((1, 8)) with scale 1, a row of 8 x f32::MIN_POSITIVE. Its
    // symmetric multiplier 127 / MIN_POSITIVE overflows; the kernels used to disagree on the
    // sign (scalar +, SIMD -) and, in the portable flavour, on the value.
    for k in [8usize, 9, 3] {
        let x = Array2::from_elem((1, k), f32::MIN_POSITIVE);
        let w = Array2::<f32>::ones((1, k));
        for flavour in Flavour::ALL {
            for asym in [false, true] {
                let all = outputs_per_kernel(&w, &x, flavour, asym);
                assert!(
                    all.windows(2).all(|p| p[0] == p[1]),
                    "K {k} {flavour} asym {asym}: {all:?}"
                );
            }
        }
    }
    // TFLite's x86-64 build: the eight products are +inf, converted by NEON_2_SSE's
    // vcvtq_s32_f32 to i32::MAX, clamped to +127: the output is +8 * 127 * (range / 127).
    let (w, x) = (
        Array2::<f32>::ones((1, 8)),
        Array2::from_elem((1, 8), f32::MIN_POSITIVE),
    );
    let y = layer(&w, 1.0, Flavour::TfliteX86, false, Kernel::Scalar)
        .forward(x.view())
        .unwrap();
    let sf = f32::MIN_POSITIVE / 127.0;
    assert_eq!(y[[0, 0]], (8.0 * 127.0) * sf);
    assert!(y[[0, 0]] > 0.0);
}

#[test]
fn the_x86_tail_converts_infinity_to_the_wrong_sign() {
    // K = 9: the ninth element is in TFLite's scalar tail, where cvttss2si gives i32::MIN for
    // +inf and the clamp makes it -127 (the first eight, in the vector part, give +127).
    let row = [f32::MIN_POSITIVE; 9];
    let mut q = [0i8; 9];
    quantize_row(Flavour::TfliteX86, false, &row, &mut q);
    assert_eq!(q, [127, 127, 127, 127, 127, 127, 127, 127, -127]);
    // ARM64's conversions saturate instead.
    quantize_row(Flavour::TfliteArm64, false, &row, &mut q);
    assert_eq!(q, [127; 9]);
    // XNNPACK flushes the subnormal scale 1 / m to zero, so the product vanishes.
    let p = quantize_row(Flavour::Xnnpack, true, &row, &mut q);
    assert_eq!(p.scale, 0.0);
}

#[test]
fn xnnpack_treats_subnormal_rows_as_zero() {
    // DAZ: a row of subnormals is an all-zero row to XNNPACK (m = 1, zero point 127), while
    // the TFLite flavours quantize it with a subnormal scale.
    let row = [1e-40f32, -3e-41, 0.0, 5e-39];
    let mut q = [0i8; 4];
    let p = quantize_row(Flavour::Xnnpack, true, &row, &mut q);
    assert_eq!((p.scale, p.zero_point, q), (1.0, 127, [127; 4]));
    let p = quantize_row(Flavour::TfliteX86, true, &row, &mut q);
    assert!(p.scale > 0.0 && p.scale.is_subnormal());
}

#[test]
fn xnnpack_overflows_at_the_top_of_the_range() {
    // Issue 8, item 4: w = [[0.5]], x = [[f32::MAX]]. TFLite multiplies sf * s_w first and stays
    // finite; XNNPACK multiplies the accumulator by the row scale 1 / m first, which overflows,
    // as the real delegate does on such rows (fixtures 087-089).
    let w = array![[0.5f32]];
    let x = array![[f32::MAX]];
    let float = FloatLinear::new(w.view(), None, Default::default()).unwrap();
    let y_float = float.forward(x.view()).unwrap()[[0, 0]];
    assert_eq!(y_float, 1.7014117e38);
    for kernel in Kernel::available() {
        let config = |flavour| HybridConfig {
            flavour,
            kernel: Some(kernel),
            ..HybridConfig::default()
        };
        let tflite = HybridLinear::from_f32(
            w.view(),
            None,
            Default::default(),
            config(Flavour::TfliteX86),
        )
        .unwrap();
        let xnn =
            HybridLinear::from_f32(w.view(), None, Default::default(), config(Flavour::Xnnpack))
                .unwrap();
        let y_tflite = tflite.forward(x.view()).unwrap()[[0, 0]];
        let y_xnn = xnn.forward(x.view()).unwrap()[[0, 0]];
        assert_eq!(y_tflite, 1.7014117e38, "{kernel}");
        assert_eq!(y_xnn, f32::INFINITY, "{kernel}");
        // The analytic bound holds for the TFLite flavour and is exceeded by XNNPACK's overflow.
        let bound = error_bounds(&tflite, w.view(), x.as_slice().unwrap()).unwrap()[0];
        assert!(((y_tflite as f64) - (y_float as f64)).abs() <= bound);
        let bound = error_bounds(&xnn, w.view(), x.as_slice().unwrap()).unwrap()[0];
        let gap = ((y_xnn as f64) - (y_float as f64)).abs();
        assert!(gap.is_infinite() && gap > bound, "{gap} vs {bound}");
    }
}
