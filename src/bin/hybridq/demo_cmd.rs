//! `hybridq demo`: a default layer, hybrid beside float, plus the fixtures.

use std::path::Path;
use std::process::ExitCode;

use crate::timing::median_us;
use hybridq::stats::ErrorStats;
use hybridq::{
    Flavour, FloatLinear, Granularity, HybridConfig, HybridLinear, Linear, Result, Scratch,
};
use ndarray::{Array1, Array2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn run(batch: usize, k: usize, n: usize, fixtures: &Path) -> Result<ExitCode> {
    crate::limits::check_problem("hybridq demo", batch, k, n)?;
    let mut rng = StdRng::seed_from_u64(7);
    let w = Array2::from_shape_fn((n, k), |_| {
        rng.random_range(-1.0f32..1.0) / (k as f32).sqrt()
    });
    let bias = Array1::from_shape_fn(n, |_| rng.random_range(-0.1f32..0.1));
    let x = Array2::from_shape_fn((batch, k), |_| rng.random_range(-3.0f32..3.0));

    say!(
        "hybridq demo: a {k} -> {n} dense layer, batch {batch}, random weights and inputs (seed 7)"
    );
    let float = FloatLinear::new(w.view(), Some(bias.view()), Default::default())?;
    let reference = float.forward(x.view())?;
    let mut out = Array2::<f32>::zeros((batch, n));
    let mut scratch = Scratch::new();
    let t_float = median_us(0.3, || {
        float
            .forward_into(x.view(), out.view_mut(), &mut scratch)
            .expect("valid shapes")
    });
    say!();
    say!(
        "{:<34} {:>12} {:>12} {:>10} {:>12}",
        "layer",
        "max abs err",
        "max rel err",
        "SQNR dB",
        "median us"
    );
    say!(
        "{:<34} {:>12} {:>12} {:>10} {:>12.1}",
        "float (f32)",
        "-",
        "-",
        "-",
        t_float
    );
    for (label, granularity, flavour, asym) in [
        (
            "hybrid per-channel asym tflite-x86",
            Granularity::PerChannel,
            Flavour::TfliteX86,
            true,
        ),
        (
            "hybrid per-channel sym tflite-x86",
            Granularity::PerChannel,
            Flavour::TfliteX86,
            false,
        ),
        (
            "hybrid per-tensor asym tflite-x86",
            Granularity::PerTensor,
            Flavour::TfliteX86,
            true,
        ),
        (
            "hybrid per-channel xnnpack",
            Granularity::PerChannel,
            Flavour::Xnnpack,
            true,
        ),
    ] {
        let config = HybridConfig {
            asymmetric_inputs: asym,
            flavour,
            ..HybridConfig::default()
        };
        let layer = HybridLinear::from_f32(w.view(), Some(bias.view()), granularity, config)?;
        let y = layer.forward(x.view())?;
        let s = ErrorStats::compare(
            reference.as_slice().expect("standard"),
            y.as_slice().expect("standard"),
        );
        let t = median_us(0.3, || {
            layer
                .forward_into(x.view(), out.view_mut(), &mut scratch)
                .expect("valid shapes")
        });
        say!(
            "{label:<34} {:>12.3e} {:>12.3e} {:>10.1} {:>12.1}",
            s.max_abs,
            s.max_rel,
            s.sqnr_db,
            t
        );
    }
    say!();
    say!(
        "weights: float {} bytes, int8 {} bytes",
        4 * n * k,
        n * k + 4 * n
    );
    say!();
    if fixtures.is_dir() {
        say!("fixtures made by TFLite 2.21 ({}):", fixtures.display());
        let summary = crate::check_cmd::check_all(
            &[fixtures.to_path_buf()],
            hybridq::npz::ReadLimits::with_total(hybridq::fixture::MAX_CASE_BYTES),
            Default::default(),
            false,
        )?;
        let worst_rel = summary
            .reports
            .iter()
            .map(|r| r.vs_float.max_rel)
            .fold(0.0f64, f64::max);
        let min_sqnr = summary
            .reports
            .iter()
            .map(|r| r.vs_float.sqnr_db)
            .fold(f64::INFINITY, f64::min);
        let hybrid_passed = summary.reports.iter().filter(|r| r.passed()).count();
        say!(
            "  hybrid cases, bit-exact vs TFLite built-in and XNNPACK: {hybrid_passed} of {}",
            summary.reports.len()
        );
        say!(
            "  full-integer cases, bit-exact vs TFLite's int8 kernel: {} passed",
            summary.integer_passed
        );
        say!(
            "  all cases: {} passed, {} failed",
            summary.passed,
            summary.failed
        );
        say!("  hybrid error vs TFLite float model: largest max_rel {worst_rel:.3e}, lowest SQNR {min_sqnr:.1} dB");
        if summary.failed > 0 {
            return Ok(ExitCode::FAILURE);
        }
    } else {
        say!("no fixture directory at {}: skipped", fixtures.display());
    }
    Ok(ExitCode::SUCCESS)
}
