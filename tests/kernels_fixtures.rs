//! The golden fixtures (made by the real TFLite 2.21 on x86-64, and by LiteRT 2.3.0 on two
//! emulated AArch64 cores) with every kernel this CPU can run forced in turn: each must
//! reproduce `expected` and `expected_xnnpack` bit for bit in the flavours of its build.
#![cfg(feature = "npz")]

use std::path::PathBuf;

use hybridq::check::BitComparison;
use hybridq::fixture::{collect_case_files, load, Case};
use hybridq::{Flavour, HybridConfig, HybridLinear, Kernel, Linear, QuantizedWeights};

/// The hybrid sets, with the flavours each must be checked in.
const SETS: [(&str, Flavour, Flavour, usize); 3] = [
    ("fixtures/hybrid", Flavour::TfliteX86, Flavour::Xnnpack, 95),
    (
        "fixtures/aarch64_litert-2.3.0_cortex-a72",
        Flavour::TfliteArm64,
        Flavour::XnnpackArm64,
        127,
    ),
    (
        "fixtures/aarch64_litert-2.3.0_neoverse-n1",
        Flavour::TfliteArm64Dotprod,
        Flavour::XnnpackArm64Dotprod,
        127,
    ),
];

#[test]
fn every_kernel_reproduces_every_fixture() {
    for (dir, builtin, xnnpack, count) in SETS {
        check_set(dir, builtin, xnnpack, count);
    }
}

fn check_set(dir: &str, builtin: Flavour, xnnpack: Flavour, count: usize) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    let files = collect_case_files(&[dir]).unwrap();
    assert!(files.len() >= count, "found only {} fixtures", files.len());
    let kernels = Kernel::available();
    let mut checked = 0;
    for file in &files {
        let Case::Hybrid(case) = load(file).unwrap() else {
            panic!("{} is not a hybrid case", file.display())
        };
        let w = QuantizedWeights::from_parts(case.weights_q.view(), &case.weight_scales.to_vec())
            .unwrap();
        // A case names its build's flavours (or none, for the x86-64 set).
        assert_eq!(
            case.flavour.unwrap_or(Flavour::TfliteX86),
            builtin,
            "{}",
            case.name()
        );
        assert_eq!(
            case.xnnpack_flavour.unwrap_or(Flavour::Xnnpack),
            xnnpack,
            "{}",
            case.name()
        );
        for &kernel in &kernels {
            for threads in [1, 2] {
                for (flavour, expected) in
                    [(builtin, &case.expected), (xnnpack, &case.expected_xnnpack)]
                {
                    let config = HybridConfig {
                        asymmetric_inputs: case.asymmetric_inputs,
                        activation: case.activation,
                        flavour,
                        kernel: Some(kernel),
                        threads,
                        ..HybridConfig::default()
                    };
                    let layer =
                        HybridLinear::new(w.clone(), case.bias.as_ref().map(|b| b.view()), config)
                            .unwrap();
                    assert_eq!(layer.kernel(), kernel);
                    let got: Vec<f32> = layer
                        .forward(case.input.view())
                        .unwrap()
                        .into_iter()
                        .collect();
                    let cmp = BitComparison::of(expected.view(), &got);
                    assert!(
                        cmp.passed(),
                        "{} {kernel} {flavour} t{threads}: {cmp}",
                        case.name()
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, files.len() * kernels.len() * 4);
}
