//! One way to build a layer in any mode (`LinearOptions`, `build_linear`), held as
//! `Box<dyn Linear>`: the same bits as the concrete constructors, calls through the trait
//! object that do not allocate once the scratch has grown, threads settable on a boxed layer,
//! GELU outside TFLite's fused set, and typed errors.

use hybridq::integer::{IntegerLinear, TensorQuant};
use hybridq::{
    build_linear, Activation, FloatKernel, FloatLinear, Gelu, Granularity, HybridConfig,
    HybridLinear, Kernel, Linear, LinearOptions, Mode, Nonlinearity, Scratch,
};
use ndarray::{Array2, Array3};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

fn weights(n: usize, k: usize) -> Array2<f32> {
    Array2::from_shape_fn((n, k), |(i, j)| {
        (((i * 31 + j * 17) % 23) as f32 - 11.0) / 7.0
    })
}

fn input(b: usize, k: usize) -> Array2<f32> {
    Array2::from_shape_fn((b, k), |(i, j)| {
        (((i * 13 + j * 7) % 19) as f32 - 9.0) / 3.0
    })
}

fn bits(a: &ndarray::ArrayD<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn every_mode_builds_and_runs_through_dyn_without_allocating() {
    let (n, k, b) = (40, 70, 6);
    let (w, x) = (weights(n, k), input(b, k));
    let bias = ndarray::Array1::from_shape_fn(n, |i| i as f32 / 10.0 - 1.0);
    let x3 = x.clone().into_shape_with_order((2, 3, k)).unwrap();
    for mode in Mode::ALL {
        for nl in Nonlinearity::ALL {
            // The portable float kernel calls matrixmultiply, which allocates its own packing.
            let options = LinearOptions::new(mode)
                .nonlinearity(nl)
                .threads(1)
                .float_kernel(FloatKernel::Scalar);
            let layer =
                build_linear(w.view(), Some(bias.view()), &options, Some(x.view())).unwrap();
            assert_eq!((layer.in_features(), layer.out_features()), (k, n));
            assert_eq!(layer.nonlinearity(), nl, "{mode}");
            assert_eq!(layer.threads(), 1);
            let want = layer.forward(x3.view()).unwrap();
            let mut out = Array3::<f32>::zeros((2, 3, n));
            let mut scratch = Scratch::new();
            layer
                .forward_into(x3.view(), out.view_mut(), &mut scratch)
                .unwrap();
            assert_eq!(out, want, "{mode} {nl}");
            let count = allocations(|| {
                layer
                    .forward_into(x3.view(), out.view_mut(), &mut scratch)
                    .unwrap()
            });
            assert_eq!(count, 0, "{mode} {nl}: a warm call through dyn allocated");
        }
    }
}

#[test]
fn options_give_the_concrete_constructors_bits() {
    let (n, k, b) = (33, 50, 5);
    let (w, x) = (weights(n, k), input(b, k));
    for kernel in Kernel::available() {
        for granularity in [Granularity::PerChannel, Granularity::PerTensor] {
            let config = HybridConfig {
                kernel: Some(kernel),
                activation: Activation::Relu6,
                threads: 1,
                ..HybridConfig::default()
            };
            let direct = HybridLinear::from_f32(w.view(), None, granularity, config).unwrap();
            let options = LinearOptions::new(Mode::Hybrid)
                .granularity(granularity)
                .nonlinearity(Activation::Relu6)
                .kernel(kernel)
                .threads(1);
            let built = build_linear(w.view(), None, &options, None).unwrap();
            assert_eq!(built.kernel_name(), kernel.name());
            assert_eq!(
                bits(&built.forward(x.view().into_dyn()).unwrap()),
                bits(&direct.forward(x.view().into_dyn()).unwrap()),
                "{kernel}"
            );
            assert_eq!(built.weight_bytes(), direct.weights().storage_bytes());
        }
    }
    // A float layer converted to a mode equals the layer built in that mode from its weights.
    let float = FloatLinear::new(w.view(), None, Activation::Relu).unwrap();
    for mode in Mode::ALL {
        let options = LinearOptions::new(mode).threads(1);
        let converted = float.to_mode(&options, Some(x.view())).unwrap();
        let built = build_linear(
            w.view(),
            None,
            &options.nonlinearity(Activation::Relu),
            Some(x.view()),
        )
        .unwrap();
        assert_eq!(converted.activation(), Activation::Relu);
        assert_eq!(
            bits(&converted.forward(x.view().into_dyn()).unwrap()),
            bits(&built.forward(x.view().into_dyn()).unwrap()),
            "{mode}"
        );
    }
}

#[test]
fn threads_are_set_on_a_boxed_layer_and_change_no_bit() {
    let (n, k, b) = (64, 300, 9);
    let (w, x) = (weights(n, k), input(b, k));
    for mode in Mode::ALL {
        let mut layer = build_linear(
            w.view(),
            None,
            &LinearOptions::new(mode).threads(1),
            Some(x.view()),
        )
        .unwrap();
        let one = bits(&layer.forward(x.view().into_dyn()).unwrap());
        layer.set_threads(2);
        assert_eq!(layer.threads(), 2, "{mode}");
        assert_eq!(
            bits(&layer.forward(x.view().into_dyn()).unwrap()),
            one,
            "{mode}"
        );
        layer.set_threads(0);
        assert!(layer.threads() >= 1);
    }
}

#[test]
fn gelu_follows_the_layer_in_its_defined_float_order() {
    let (n, k, b) = (20, 30, 4);
    let (w, x) = (weights(n, k), input(b, k));
    let plain = build_linear(
        w.view(),
        None,
        &LinearOptions::new(Mode::Hybrid).threads(1),
        None,
    )
    .unwrap()
    .forward(x.view())
    .unwrap();
    for gelu in [Gelu::Erf, Gelu::Tanh] {
        let options = LinearOptions::new(Mode::Hybrid)
            .nonlinearity(gelu)
            .threads(1);
        let layer = build_linear(w.view(), None, &options, None).unwrap();
        assert_eq!(layer.activation(), Activation::None);
        let y = layer.forward(x.view()).unwrap();
        for (a, p) in y.iter().zip(plain.iter()) {
            assert_eq!(a.to_bits(), gelu.apply(*p).to_bits());
        }
    }
    // Against an f64 evaluation of the definitions (erf from its series, which converges
    // for |x| <= 6), over the range a layer output takes.
    fn erf64(x: f64) -> f64 {
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }
    for i in -600..=600 {
        let x = i as f32 / 100.0;
        let xe = x as f64;
        let erf_form = 0.5 * xe * (1.0 + erf64(xe / 2f64.sqrt()));
        let c = (2.0 / std::f64::consts::PI).sqrt();
        let tanh_form = 0.5 * xe * (1.0 + (c * (xe + 0.044715 * xe * xe * xe)).tanh());
        for (got, want) in [
            (Gelu::Erf.apply(x), erf_form),
            (Gelu::Tanh.apply(x), tanh_form),
        ] {
            // `1 + erf` (or `1 + tanh`) cancels for negative x: its rounding error is up to an
            // epsilon absolute, times 0.5|x|; elsewhere a few epsilons relative.
            let tol = 4.0 * f32::EPSILON as f64 * want.abs().max(0.5 * xe.abs()).max(1e-6);
            assert!(
                (got as f64 - want).abs() <= tol,
                "gelu({x}) = {got}, want {want}"
            );
        }
    }
    assert!(Gelu::Erf.apply(f32::NAN).is_nan());
    assert_eq!(Gelu::Erf.apply(f32::INFINITY), f32::INFINITY);
    assert!(Gelu::Tanh.apply(f32::NEG_INFINITY).is_nan());
    assert_eq!(Gelu::Tanh.apply(-1e30), -0.0);
}

#[test]
fn bad_options_are_typed_errors() {
    let (w, x) = (weights(8, 16), input(3, 16));
    let integer = LinearOptions::new(Mode::FullInteger);
    let e = build_linear(w.view(), None, &integer, None).err().unwrap();
    assert!(matches!(e, hybridq::Error::InvalidArgument { .. }), "{e}");
    let narrow = input(3, 15);
    let e = build_linear(w.view(), None, &integer, Some(narrow.view()))
        .err()
        .unwrap();
    assert!(matches!(e, hybridq::Error::ShapeMismatch { .. }), "{e}");
    let mut nan = x.clone();
    nan[[1, 2]] = f32::NAN;
    let e = build_linear(w.view(), None, &integer, Some(nan.view()))
        .err()
        .unwrap();
    assert!(matches!(e, hybridq::Error::NonFinite { .. }), "{e}");
    // A wrapped layer cannot carry a fused clamp as well.
    let relu = FloatLinear::new(w.view(), None, Activation::Relu).unwrap();
    let e = hybridq::Activated::new(Box::new(relu), Gelu::Erf)
        .err()
        .unwrap();
    assert!(matches!(e, hybridq::Error::InvalidArgument { .. }), "{e}");
    assert!("gelu_erf".parse::<Nonlinearity>().is_err());
    assert!("hybrid8".parse::<Mode>().is_err());
    // The full-integer layer with a kernel, through the options and directly: the same bits.
    let input_q = TensorQuant::new(0.05, 3).unwrap();
    let direct = IntegerLinear::from_f32(
        w.view(),
        None,
        Granularity::PerChannel,
        input_q,
        TensorQuant::new(0.2, -5).unwrap(),
        Activation::None,
    )
    .unwrap();
    for kernel in Kernel::available() {
        let k = direct.clone().with_kernel(kernel).unwrap();
        assert_eq!(k.kernel(), kernel);
        let xq = x.mapv(|v| input_q.quantize(v));
        assert_eq!(
            k.forward_q(xq.view()).unwrap(),
            direct.forward_q(xq.view()).unwrap()
        );
    }
}
