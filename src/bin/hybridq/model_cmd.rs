//! `hybridq quantize` (a float safetensors model to a quantized model file, with a per-layer
//! table) and `hybridq inspect` (the layers and metadata of a quantized or float file).

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use hybridq::model::{
    policy::glob_match, LayerWeights, Policy, QuantizedModel, TensorSet, WeightReport,
};
use hybridq::{Error, Mode, Result};

/// Bytes as `12.3 MiB`.
fn size(bytes: usize) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// `hybridq quantize IN -o OUT`.
pub fn quantize(input: &Path, output: &Path, policy: &Policy) -> Result<ExitCode> {
    let start = Instant::now();
    let set = TensorSet::read(input)?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} layers")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let (model, reports) = policy.apply_with_progress(&set, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    model.save(output)?;
    let written = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    say!(
        "hybridq quantize: {} -> {} (default {} {}, flavour {})",
        input.display(),
        output.display(),
        policy.mode,
        policy.granularity,
        policy.flavour
    );
    report_table(&reports);
    let (before, after) = reports
        .iter()
        .fold((0, 0), |(b, a), r| (b + r.bytes_before, a + r.bytes_after));
    let quantized = reports.iter().filter(|r| r.mode != Mode::Float).count();
    let kept: usize = model
        .kept_names()
        .map(|n| model.kept(n).map_or(0, |t| t.data.len() * t.dtype.bytes()))
        .sum();
    say!(
        "totals: {} layers ({quantized} quantized, {} float), layer bytes {} -> {} ({:.2}x smaller); \
         {} kept tensors ({}); file {}; {:.2} s",
        reports.len(),
        reports.len() - quantized,
        size(before),
        size(after),
        before as f64 / after.max(1) as f64,
        model.kept_names().count(),
        size(kept),
        size(written as usize),
        start.elapsed().as_secs_f64()
    );
    for (name, dtype) in set.skipped() {
        say!("note: `{name}` ({dtype}) is not a float tensor and was not written");
    }
    Ok(ExitCode::SUCCESS)
}

fn report_table(reports: &[WeightReport]) {
    let width = reports
        .iter()
        .map(|r| r.layer.len())
        .max()
        .unwrap_or(5)
        .max(5);
    say!(
        "{:<width$}  {:>12}  {:<14} {:<12} {:<15} {:>11} {:>11} {:>9} {:>10}",
        "layer",
        "shape",
        "mode",
        "granularity",
        "why",
        "bytes in",
        "bytes out",
        "SQNR dB",
        "max |err|"
    );
    for r in reports {
        let sqnr = if r.error.sqnr_db.is_finite() {
            format!("{:.1}", r.error.sqnr_db)
        } else {
            "exact".into()
        };
        let granularity = if matches!(r.mode, Mode::Hybrid | Mode::WeightOnlyInt8) {
            r.granularity.name()
        } else {
            "-"
        };
        say!(
            "{:<width$}  {:>12}  {:<14} {:<12} {:<15} {:>11} {:>11} {:>9} {:>10.3e}",
            r.layer,
            format!("{}x{}", r.shape[0], r.shape[1]),
            r.mode.id(),
            granularity,
            r.reason.describe(),
            size(r.bytes_before),
            size(r.bytes_after),
            sqnr,
            r.error.max_abs
        );
    }
}

/// `hybridq inspect FILE`: a quantized model's metadata and layers, or a float file's tensors
/// and what the default policy would make of them.
pub fn inspect(path: &Path) -> Result<ExitCode> {
    match QuantizedModel::load(path) {
        Ok(model) => {
            inspect_quantized(path, &model);
            Ok(ExitCode::SUCCESS)
        }
        // Not a quantized file: maybe a float one.
        Err(Error::NotQuantized { .. }) => {
            inspect_float(path, &TensorSet::read(path)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e),
    }
}

fn inspect_quantized(path: &Path, model: &QuantizedModel) {
    say!(
        "{}: {} version {}, default flavour {}, checksums verified",
        path.display(),
        hybridq::model::FORMAT_NAME,
        hybridq::model::FORMAT_VERSION,
        model.flavour()
    );
    let width = model
        .layers()
        .map(|l| l.name().len())
        .max()
        .unwrap_or(5)
        .max(5);
    say!(
        "{:<width$}  {:>12}  {:<14} {:<12} {:>5} {:>11}",
        "layer",
        "shape",
        "mode",
        "granularity",
        "bias",
        "bytes"
    );
    let mut total = 0;
    for l in model.layers() {
        let w = l.weights();
        let [n, k] = w.shape();
        let granularity = match w {
            LayerWeights::Int8 { weights, .. } => weights.granularity().name(),
            _ => "-",
        };
        let bytes = w.stored_bytes() + 4 * l.bias().map_or(0, <[f32]>::len);
        total += bytes;
        say!(
            "{:<width$}  {:>12}  {:<14} {:<12} {:>5} {:>11}",
            l.name(),
            format!("{n}x{k}"),
            w.mode().id(),
            granularity,
            if l.bias().is_some() { "yes" } else { "no" },
            size(bytes)
        );
    }
    let kept: Vec<&str> = model.kept_names().collect();
    let kept_bytes: usize = kept
        .iter()
        .map(|n| model.kept(n).map_or(0, |t| t.data.len() * t.dtype.bytes()))
        .sum();
    say!(
        "{} layers ({}), {} kept tensors ({})",
        model.layers().count(),
        size(total),
        kept.len(),
        size(kept_bytes)
    );
    for name in kept {
        if let Ok(t) = model.kept(name) {
            say!("  kept {name}: {:?} {:?}", t.dtype, t.shape);
        }
    }
}

fn inspect_float(path: &Path, set: &TensorSet) {
    let policy = Policy::default();
    say!(
        "{}: a float safetensors file, {} float tensors (what `hybridq quantize` with the \
         defaults would store)",
        path.display(),
        set.len()
    );
    for name in set.names() {
        let Ok(t) = set.get(name) else { continue };
        let role = if policy.is_layer_weight(name, &t.shape) {
            let (mode, _, reason) = policy.decide(name, &t.shape);
            format!("layer weight -> {} ({})", mode.id(), reason.describe())
        } else if policy
            .weights
            .iter()
            .any(|p| glob_match(p, &name.replace("bias", "weight")))
        {
            "bias or 1-d weight (kept)".to_string()
        } else {
            "kept".to_string()
        };
        say!("  {name}: {:?} {:?}  {role}", t.dtype, t.shape);
    }
    for (name, dtype) in set.skipped() {
        say!("  {name}: {dtype} (not a float tensor)");
    }
}
