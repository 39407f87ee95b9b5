//! Every shipped golden case (made by the real TFLite 2.21) through the library, bit for bit.
#![cfg(feature = "npz")]

use std::path::PathBuf;

use hybridq::bound::error_bounds;
use hybridq::check::check_hybrid;
use hybridq::fixture::{collect_case_files, load, Case, HybridCase};
use hybridq::{HybridConfig, HybridLinear, QuantizedWeights};

fn layer_of(case: &HybridCase) -> HybridLinear {
    let w = QuantizedWeights::from_parts(
        case.weights_q.view(),
        case.weight_scales.as_slice().unwrap(),
    )
    .unwrap();
    let config = HybridConfig {
        asymmetric_inputs: case.asymmetric_inputs,
        activation: case.activation,
        ..HybridConfig::default()
    };
    HybridLinear::new(w, case.bias.as_ref().map(|b| b.view()), config).unwrap()
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("hybrid")
}

#[test]
fn every_hybrid_fixture_is_bit_exact_in_both_flavours() {
    let files = collect_case_files(&[fixture_dir()]).expect("fixture directory is readable");
    assert!(
        files.len() >= 60,
        "expected at least 60 shipped cases, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let Case::Hybrid(case) = load(file).unwrap_or_else(|e| panic!("{e}")) else {
            panic!("{} is not a hybrid case", file.display());
        };
        let report = check_hybrid(&case).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if !report.passed() {
            failures.push(format!("{}: {report}", case.name()));
        }
        // Independent of bit-exactness: TFLite's hybrid output stays within the analytic
        // error bound of TFLite's float model wherever f32 does not overflow (TFLite's float
        // kernel clamps an overflow to +-f32::MAX); a non-finite hybrid output or a saturated
        // float one only comes from a row of magnitude near f32::MAX (see `hybridq::bound`).
        let x = case.input.as_slice().unwrap();
        let bounds = error_bounds(&layer_of(&case), case.weights.view(), x).unwrap();
        let n = case.n();
        for (i, ((&e, &f), &b)) in case
            .expected
            .iter()
            .zip(case.expected_float.iter())
            .zip(&bounds)
            .enumerate()
        {
            if e.is_finite() && f.abs() < f32::MAX {
                assert!(
                    ((e as f64) - (f as f64)).abs() <= b,
                    "{}: |{e} - {f}| > bound {b}",
                    case.name()
                );
            } else {
                let row = &x[i / n * case.k()..(i / n + 1) * case.k()];
                let top = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                assert!(
                    top > 1e37,
                    "{}: output {e} (float {f}) from a row of max |x| {top}",
                    case.name()
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn fixture_suite_covers_what_the_issue_asks() {
    let files = collect_case_files(&[fixture_dir()]).unwrap();
    let cases: Vec<_> = files
        .iter()
        .map(|f| match load(f).unwrap() {
            Case::Hybrid(c) => c,
            other => panic!("unexpected case kind {other:?}"),
        })
        .collect();
    let any = |pred: &dyn Fn(&hybridq::fixture::HybridCase) -> bool| cases.iter().any(pred);
    assert!(any(&|c| c.k() % 8 != 0) && any(&|c| c.k() % 64 == 0));
    assert!(any(&|c| c.n() % 8 != 0) && any(&|c| c.n() % 64 == 0));
    assert!(any(&|c| c.input.ndim() == 3 && c.keep_num_dims));
    assert!(any(&|c| c.asymmetric_inputs) && any(&|c| !c.asymmetric_inputs));
    for code in 0..4 {
        assert!(
            any(&|c| c.activation.code() == code),
            "activation {code} missing"
        );
    }
    assert!(any(&|c| c.bias.is_some()) && any(&|c| c.bias.is_none()));
    assert!(any(&|c| c.weight_scales.len() == 1) && any(&|c| c.weight_scales.len() > 1));
    assert!(
        any(&|c| c.input.iter().all(|&v| v == 0.0)),
        "an all-zero input tensor"
    );
    assert!(
        any(&|c| c.input.iter().any(|&v| v.abs() > 1e19)),
        "magnitudes near 1e20"
    );
    assert!(
        any(&|c| c.input.iter().any(|&v| v != 0.0 && v.abs() < 1e-19)),
        "magnitudes near 1e-20"
    );
    let batches: std::collections::BTreeSet<usize> =
        cases.iter().map(|c| c.input.len() / c.k()).collect();
    assert!(batches.contains(&1) && batches.iter().any(|&b| b >= 17));
    // Rows of extreme magnitude: subnormal values, rows whose range makes the quantization
    // multiplier overflow, and f32::MAX.
    assert!(any(&|c| c.input.iter().any(|&v| v.is_subnormal())));
    assert!(any(&|c| c.input.rows().into_iter().any(|r| {
        let top = r.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        top > 0.0 && top < 3e-37
    })));
    assert!(any(&|c| c.input.iter().any(|&v| v == f32::MAX)));
    // Tie values: an input exactly 0.49999997 or 0.5 in a row whose scale is 1.
    assert!(any(&|c| c.input.iter().any(|&v| v.abs() == 0.49999997)));
}
