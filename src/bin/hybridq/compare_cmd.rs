//! `hybridq compare`: one layer in every mode (float32, float16 / bfloat16 / int8 weight-only,
//! hybrid, full integer) on the same inputs, with the error against float32, the weight bytes
//! and the median time of a call.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use hybridq::npz::NpzArchive;
use hybridq::stats::ErrorStats;
use hybridq::toolkit::modes::{build, Mode};
use hybridq::{Activation, Error, Result, Scratch};
use ndarray::{Array1, Array2, Ix1, Ix2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Median wall time of `f` in microseconds over enough runs to fill about 0.3 s.
fn median_us(mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let start = Instant::now();
    f()?;
    let once = start.elapsed().as_secs_f64().max(1e-7);
    let runs = ((0.3 / once) as usize).clamp(5, 1000);
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[runs / 2])
}

/// Weights `[N, K]` and an optional bias from a `.npy` (the weights) or `.npz` (keys
/// `weights`, optional `bias`) file.
fn load_weights(path: &Path) -> Result<(Array2<f32>, Option<Array1<f32>>)> {
    let archive = NpzArchive::open(path)?;
    if path.extension().is_some_and(|e| e == "npy") {
        return Ok((archive.array::<f32, Ix2>("array")?, None));
    }
    if !archive.contains("weights") {
        return Err(Error::File {
            path: path.to_path_buf(),
            message: "an .npz of weights needs a `weights` array (f32 [N, K])".into(),
        });
    }
    let w = archive.array::<f32, Ix2>("weights")?;
    let b = archive.optional_array::<f32, Ix1>("bias")?;
    Ok((w, b))
}

pub fn run(
    batch: usize,
    k: usize,
    n: usize,
    weights: Option<&Path>,
    seed: u64,
) -> Result<ExitCode> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (w, bias, source) = match weights {
        Some(p) => {
            let (w, b) = load_weights(p)?;
            (w, b, p.display().to_string())
        }
        None => {
            crate::limits::check_problem("hybridq compare", batch, k, n)?;
            let w = Array2::from_shape_fn((n, k), |_| {
                rng.random_range(-1.0f32..1.0) / (k as f32).sqrt()
            });
            let b = Array1::from_shape_fn(n, |_| rng.random_range(-0.1f32..0.1));
            (w, Some(b), format!("random (seed {seed})"))
        }
    };
    let (n, k) = w.dim();
    if batch == 0 {
        return Err(Error::InvalidArgument {
            op: "hybridq compare",
            message: "--batch must be at least 1".into(),
        });
    }
    crate::limits::check_problem("hybridq compare", batch, k, n)?;
    // Inputs: roughly normal (sum of uniforms); the full-integer mode is calibrated on other
    // rows from the same distribution, as a converter would be.
    let normal = |rng: &mut StdRng| -> f32 {
        (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>() * 0.866
    };
    let x = Array2::from_shape_fn((batch, k), |_| normal(&mut rng));
    let calibration = Array2::from_shape_fn((64, k), |_| normal(&mut rng));

    say!("hybridq compare: a {k} -> {n} dense layer, batch {batch}, weights {source}");
    say!(
        "(errors against the float32 layer; the full-integer mode's input and output ranges \
         come from min/max calibration on 64 other rows)"
    );
    say!();
    say!(
        "{:<30} {:>12} {:>12} {:>9} {:>13} {:>11}",
        "mode",
        "max abs err",
        "max rel err",
        "SQNR dB",
        "weight bytes",
        "median us"
    );
    let xs = x.as_slice().expect("standard layout");
    let mut reference: Option<Vec<f32>> = None;
    for mode in Mode::ALL {
        let built = build(
            mode,
            w.view(),
            bias.as_ref().map(|b| b.view()),
            Activation::None,
            calibration.view(),
        )?;
        let mut out = vec![0f32; batch * n];
        let mut scratch = Scratch::new();
        let t = median_us(|| built.layer.forward_rows(xs, batch, &mut out, &mut scratch))?;
        let reference = reference.get_or_insert_with(|| out.clone());
        let s = ErrorStats::compare(reference, &out);
        say!(
            "{:<30} {:>12.3e} {:>12.3e} {:>9.1} {:>13} {:>11.1}",
            mode.name(),
            s.max_abs,
            s.max_rel,
            s.sqnr_db,
            built.weight_bytes,
            t
        );
    }
    Ok(ExitCode::SUCCESS)
}
