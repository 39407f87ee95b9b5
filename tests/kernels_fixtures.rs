//! The golden fixtures (made by the real TFLite 2.21) with every kernel this CPU can run forced
//! in turn: each must reproduce `expected` (TfliteX86) and `expected_xnnpack` bit for bit.

use std::path::PathBuf;

use hybridq::check::BitComparison;
use hybridq::fixture::{collect_case_files, load, Case};
use hybridq::{Flavour, HybridConfig, HybridLinear, Kernel, Linear, QuantizedWeights};

#[test]
fn every_kernel_reproduces_every_fixture() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/hybrid");
    let files = collect_case_files(&[dir]).unwrap();
    assert!(files.len() >= 95, "found only {} fixtures", files.len());
    let kernels = Kernel::available();
    let mut checked = 0;
    for file in &files {
        let Case::Hybrid(case) = load(file).unwrap() else {
            panic!("{} is not a hybrid case", file.display())
        };
        let w = QuantizedWeights::from_parts(case.weights_q.view(), &case.weight_scales.to_vec())
            .unwrap();
        for &kernel in &kernels {
            for threads in [1, 2] {
                for (flavour, expected) in [
                    (Flavour::TfliteX86, &case.expected),
                    (Flavour::Xnnpack, &case.expected_xnnpack),
                ] {
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
