//! `hybridq`: check golden cases, demonstrate and compare the hybrid layer.

/// `println!` that ends the process quietly when stdout is a closed pipe (`hybridq bench |
/// head`), where `println!` would panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

mod bench_cmd;
mod bench_serve;
mod check_cmd;
mod compare_cmd;
mod demo_cmd;
mod limits;
mod model_cmd;
mod timing;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Hybrid int8 quantization engine: TensorFlow Lite's hybrid numerics, bit for bit.
#[derive(Parser)]
#[command(name = "hybridq", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check golden `.npz` cases (files or directories) bit for bit against TFLite's outputs.
    Check {
        /// Case files or directories (searched recursively for `.npz`).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Largest decompressed size of one case file, in MiB (a larger archive is a failed
        /// case, found from its directory before anything is decompressed).
        #[arg(long, default_value_t = hybridq::fixture::MAX_CASE_BYTES >> 20)]
        max_case_mib: u64,
        /// The flavour checked against `expected` (default: the one the case names, else
        /// tflite-x86). One of tflite-x86, tflite-arm64, tflite-arm64-dotprod,
        /// tflite-portable, xnnpack, xnnpack-arm64, xnnpack-arm64-dotprod.
        #[arg(long)]
        flavour: Option<hybridq::Flavour>,
        /// The flavour checked against `expected_xnnpack` (default: the one the case names,
        /// else xnnpack).
        #[arg(long)]
        xnnpack_flavour: Option<hybridq::Flavour>,
    },
    /// Time the hybrid and the float layer on a set of shapes: median microseconds, GOP/s
    /// (2*B*K*N / t) and the hybrid/float time ratio. The two layers take five turns each
    /// within `--seconds`, so that a slow stretch of a shared host slows both alike.
    Bench {
        /// Comma-separated `BxKxN` shapes.
        #[arg(long, default_value = bench_cmd::DEFAULT_SHAPES)]
        shapes: String,
        /// Comma-separated thread counts (0 = all cores).
        #[arg(long, default_value = "1,0", value_delimiter = ',')]
        threads: Vec<usize>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Seconds of timed calls per layer, shape and thread count (over its five turns).
        #[arg(long, default_value_t = 0.5)]
        seconds: f64,
        /// Force a hybrid kernel by name (`hybridq bench --list-kernels` shows this CPU's).
        #[arg(long)]
        kernel: Option<String>,
        /// List the kernels this CPU can run and exit.
        #[arg(long)]
        list_kernels: bool,
        /// Answer timing requests on stdin instead, one per line,
        /// `<hybrid|float> <BxKxN> <threads> <seconds>`, each with a JSON line of call times:
        /// for a driver that alternates hybridq with other engines (`run_peers.py`).
        #[arg(long, conflicts_with_all = ["shapes", "threads", "json", "seconds", "list_kernels"])]
        serve: bool,
    },
    /// Quantize a float safetensors model (every dense layer's weight by the policy) into a
    /// quantized model file, printing a per-layer table (shape, mode, bytes, weight SQNR and max
    /// abs error) and the totals.
    Quantize {
        /// The float model (safetensors: f32, f16 or bf16 tensors).
        input: PathBuf,
        /// The quantized model file to write (replaced atomically).
        #[arg(short, long)]
        output: PathBuf,
        /// The mode of the layers the rules do not keep in float: hybrid, int8-weights, f16,
        /// bf16 or float.
        #[arg(long, default_value = "hybrid")]
        mode: hybridq::Mode,
        /// per-channel or per-tensor weight scales.
        #[arg(long, default_value = "per-channel")]
        granularity: hybridq::Granularity,
        /// Glob of the dense layers' weight tensors (repeatable).
        #[arg(long = "weights", default_value = "*weight")]
        weights: Vec<String>,
        /// Glob of weights kept in float (repeatable; replaces the default `*embeddings*`).
        #[arg(long = "keep", default_value = "*embeddings*")]
        keep: Vec<String>,
        /// Weights with fewer elements stay float (TFLite's rule: 1024).
        #[arg(long, default_value_t = hybridq::model::policy::TFLITE_MIN_ELEMENTS)]
        min_elements: usize,
        /// `GLOB=MODE[:GRANULARITY]`: another mode (and granularity) for matching weights
        /// (repeatable; later ones win).
        #[arg(long = "override")]
        overrides: Vec<String>,
        /// The flavour recorded as the model's default numerics.
        #[arg(long, default_value = "tflite-x86")]
        flavour: hybridq::Flavour,
    },
    /// Print the layers and metadata of a quantized model file, or the tensors of a float
    /// safetensors file and what `quantize` would make of them.
    Inspect {
        /// The file.
        path: PathBuf,
    },
    /// Quantize a default layer, run it beside the float layer and the shipped fixtures, and
    /// print accuracy and timing side by side.
    Demo {
        /// Batch rows B.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Input features K.
        #[arg(long, default_value_t = 1024)]
        k: usize,
        /// Output features N.
        #[arg(long, default_value_t = 1024)]
        n: usize,
        /// Fixture directory to check alongside (skipped when it does not exist).
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))]
        fixtures: PathBuf,
    },
    /// Run one layer in every mode (float32, float16/bfloat16/int8 weight-only, hybrid, full
    /// integer) on the same inputs: error against float32, weight bytes, median time.
    Compare {
        /// Batch rows B.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Input features K (random weights).
        #[arg(long, default_value_t = 1024)]
        k: usize,
        /// Output features N (random weights).
        #[arg(long, default_value_t = 1024)]
        n: usize,
        /// Weights from a file instead: `.npy` f32 [N, K], or `.npz` with `weights` and an
        /// optional `bias`.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Seed of the random weights and inputs.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check {
            paths,
            max_case_mib,
            flavour,
            xnnpack_flavour,
        } => check_cmd::run(
            &paths,
            hybridq::npz::ReadLimits::with_total(max_case_mib.saturating_mul(1 << 20)),
            hybridq::check::CheckOptions {
                flavour,
                xnnpack_flavour,
            },
        ),
        Command::Bench {
            list_kernels: true, ..
        } => {
            bench_cmd::list_kernels();
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            serve: true,
            kernel,
            ..
        } => kernel
            .map(|k| k.parse::<hybridq::Kernel>())
            .transpose()
            .and_then(bench_serve::serve),
        Command::Bench {
            shapes,
            threads,
            json,
            seconds,
            kernel,
            ..
        } => bench_cmd::parse_shapes(&shapes).and_then(|shapes| {
            let kernel = kernel.map(|k| k.parse::<hybridq::Kernel>()).transpose()?;
            let all = std::thread::available_parallelism().map_or(1, |n| n.get());
            let mut threads: Vec<usize> = threads
                .into_iter()
                .map(|t| if t == 0 { all } else { t })
                .collect();
            threads.dedup();
            bench_cmd::run(&bench_cmd::Options {
                shapes,
                threads,
                json,
                budget_s: seconds,
                kernel,
            })
        }),
        Command::Demo {
            batch,
            k,
            n,
            fixtures,
        } => demo_cmd::run(batch, k, n, &fixtures),
        Command::Quantize {
            input,
            output,
            mode,
            granularity,
            weights,
            keep,
            min_elements,
            overrides,
            flavour,
        } => overrides
            .iter()
            .map(|o| o.parse())
            .collect::<hybridq::Result<_>>()
            .and_then(|overrides| {
                let policy = hybridq::model::Policy {
                    mode,
                    granularity,
                    weights,
                    keep_float: keep,
                    min_elements,
                    overrides,
                    flavour,
                };
                model_cmd::quantize(&input, &output, &policy)
            }),
        Command::Inspect { path } => model_cmd::inspect(&path),
        Command::Compare {
            batch,
            k,
            n,
            weights,
            seed,
        } => compare_cmd::run(batch, k, n, weights.as_deref(), seed),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hybridq: {e}");
            ExitCode::from(2)
        }
    }
}
