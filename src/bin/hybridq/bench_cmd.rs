//! `hybridq bench`: median microseconds, GOP/s and the hybrid/float ratio per shape and thread
//! count.

use std::fmt::Write as _;
use std::process::ExitCode;

use hybridq::{FloatLinear, Granularity, HybridConfig, HybridLinear, Linear, Result, Scratch};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::timing::medians_in_turns;

/// The shapes of the speed issue, `B x K x N`.
pub const DEFAULT_SHAPES: &str =
    "1x1024x1024,1x4096x4096,1x4096x14336,8x4096x4096,32x1024x4096,128x4096x4096,512x768x3072";

/// Turns the hybrid and the float layer take on each shape and thread count
/// ([`medians_in_turns`]), `--seconds` between them.
const TURNS: usize = 5;

/// One `B x K x N` problem.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub b: usize,
    pub k: usize,
    pub n: usize,
}

impl Shape {
    pub fn label(&self) -> String {
        format!("{}x{}x{}", self.b, self.k, self.n)
    }
}

/// Parses `1x4096x4096,8x1024x1024`.
pub fn parse_shapes(s: &str) -> Result<Vec<Shape>> {
    s.split(',')
        .map(|item| {
            let dims: Vec<usize> = item
                .trim()
                .split('x')
                .map(|d| d.parse::<usize>())
                .collect::<Result<_, _>>()
                .map_err(|_| bad_shape(item))?;
            match dims[..] {
                [b, k, n] if b > 0 && k > 0 && n > 0 => {
                    crate::limits::check_problem("hybridq bench --shapes", b, k, n)?;
                    Ok(Shape { b, k, n })
                }
                _ => Err(bad_shape(item)),
            }
        })
        .collect()
}

fn bad_shape(item: &str) -> hybridq::Error {
    hybridq::Error::InvalidArgument {
        op: "hybridq bench --shapes",
        message: format!("`{item}` is not BxKxN with positive sizes"),
    }
}

/// One measurement.
struct Row {
    shape: Shape,
    threads: usize,
    imp: &'static str,
    kernel: String,
    median_us: f64,
    /// The hybrid kernel's measured one-core peak (GOP/s); `None` for the float layer.
    peak_gops: Option<f64>,
}

impl Row {
    fn gops(&self) -> f64 {
        2.0 * (self.shape.b * self.shape.k * self.shape.n) as f64 / (self.median_us * 1e3)
    }

    /// GOP/s as a fraction of the peak of the cores used (`threads` of them, at most the
    /// machine's).
    fn of_peak(&self) -> Option<f64> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.peak_gops
            .map(|p| self.gops() / (p * self.threads.clamp(1, cores) as f64))
    }
}

/// Options of the command.
pub struct Options {
    pub shapes: Vec<Shape>,
    pub threads: Vec<usize>,
    pub json: bool,
    pub budget_s: f64,
    /// The hybrid kernel to force (`None`: the best this CPU has, or `HYBRIDQ_KERNEL`).
    pub kernel: Option<hybridq::Kernel>,
}

/// The benchmark's problem of `shape`: weights `N x K` uniform in [-1, 1) and inputs `B x K`
/// uniform in [-4, 4), the same for a shape whatever else is measured.
pub fn random_problem(shape: Shape) -> (Array2<f32>, Array2<f32>) {
    let mut rng = StdRng::seed_from_u64(11);
    let w = Array2::from_shape_fn((shape.n, shape.k), |_| rng.random_range(-1.0f32..1.0));
    let x = Array2::from_shape_fn((shape.b, shape.k), |_| rng.random_range(-4.0f32..4.0));
    (w, x)
}

/// The hybrid layer of weights `w` on `kernel` (`None`: the default choice).
pub fn hybrid_layer(w: &Array2<f32>, kernel: Option<hybridq::Kernel>) -> Result<HybridLinear> {
    let config = HybridConfig {
        kernel,
        ..HybridConfig::default()
    };
    HybridLinear::from_f32(w.view(), None, Granularity::PerChannel, config)
}

pub fn run(opts: &Options) -> Result<ExitCode> {
    let mut rows = Vec::new();
    let mut peaks = std::collections::HashMap::new();
    for &shape in &opts.shapes {
        let (w, x) = random_problem(shape);
        let base = hybrid_layer(&w, opts.kernel)?;
        for &threads in &opts.threads {
            let hybrid = base.clone().with_threads(threads);
            let float = FloatLinear::new(w.view(), None, Default::default())?.with_threads(threads);
            let (mut out_h, mut out_f) = (
                Array2::<f32>::zeros((shape.b, shape.n)),
                Array2::<f32>::zeros((shape.b, shape.n)),
            );
            let (mut scratch_h, mut scratch_f) = (Scratch::new(), Scratch::new());
            let mut time_hybrid = || {
                hybrid
                    .forward_into(x.view(), out_h.view_mut(), &mut scratch_h)
                    .expect("valid shapes")
            };
            let mut time_float = || {
                float
                    .forward_into(x.view(), out_f.view_mut(), &mut scratch_f)
                    .expect("valid shapes")
            };
            let medians = medians_in_turns(
                opts.budget_s,
                TURNS,
                &mut [&mut time_hybrid, &mut time_float],
            );
            let kernel = hybrid.kernel();
            let peak = *peaks.entry(kernel).or_insert_with(|| kernel.peak_gops());
            rows.push(Row {
                shape,
                threads,
                imp: "hybrid",
                kernel: kernel.name().into(),
                median_us: medians[0],
                peak_gops: peak,
            });
            rows.push(Row {
                shape,
                threads,
                imp: "float",
                kernel: float.kernel_name().into(),
                median_us: medians[1],
                peak_gops: None,
            });
            if !opts.json {
                eprint!(".");
            }
        }
    }
    if opts.json {
        say!("{}", to_json(&rows));
    } else {
        eprintln!();
        print_table(&rows);
        for (kernel, peak) in &peaks {
            if let Some(p) = peak {
                say!(
                    "({kernel} int8 peak, measured on one core: {p:.1} GOP/s; % peak = GOP/s over \
                     that peak times the threads asked for, counted as cores: it reads low where \
                     threads share a core (SMT) or a small call uses fewer tasks)"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the kernels this CPU can run, the one chosen by default first.
pub fn list_kernels() {
    let chosen = hybridq::Kernel::detect();
    for k in hybridq::Kernel::available() {
        let mark = if k == chosen { " (default)" } else { "" };
        let exp = if k.is_experimental() {
            " [experimental]"
        } else {
            ""
        };
        say!("{}{mark}{exp}", k.name());
    }
}

fn print_table(rows: &[Row]) {
    say!(
        "{:<16} {:>7} {:<7} {:<15} {:>12} {:>9} {:>7} {:>13}",
        "shape BxKxN",
        "threads",
        "impl",
        "kernel",
        "median us",
        "GOP/s",
        "% peak",
        "hybrid/float"
    );
    for pair in rows.chunks(2) {
        let ratio = pair[0].median_us / pair[1].median_us;
        for (i, r) in pair.iter().enumerate() {
            let ratio = if i == 0 {
                format!("{ratio:.2}")
            } else {
                String::new()
            };
            let of_peak = r
                .of_peak()
                .map_or(String::new(), |f| format!("{:.0}", 100.0 * f));
            say!(
                "{:<16} {:>7} {:<7} {:<15} {:>12.1} {:>9.1} {:>7} {:>13}",
                r.shape.label(),
                r.threads,
                r.imp,
                r.kernel,
                r.median_us,
                r.gops(),
                of_peak,
                ratio
            );
        }
    }
    say!("(hybrid/float is the time ratio: below 1 means hybrid is faster)");
}

fn to_json(rows: &[Row]) -> String {
    let mut s = String::from("[\n");
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(
            s,
            "  {{\"shape\": \"{}\", \"b\": {}, \"k\": {}, \"n\": {}, \"threads\": {}, \"impl\": \"{}\", \"kernel\": \"{}\", \"median_us\": {:.3}, \"gops\": {:.3}, \"peak_gops\": {}}}{}",
            r.shape.label(),
            r.shape.b,
            r.shape.k,
            r.shape.n,
            r.threads,
            r.imp,
            r.kernel,
            r.median_us,
            r.gops(),
            r.peak_gops.map_or("null".into(), |p| format!("{p:.3}")),
            if i + 1 < rows.len() { "," } else { "" }
        );
    }
    s.push(']');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_and_reject() {
        let s = parse_shapes(DEFAULT_SHAPES).unwrap();
        assert_eq!(s.len(), 7);
        assert_eq!((s[3].b, s[3].k, s[3].n), (8, 4096, 4096));
        for bad in [
            "1x2",
            "0x4x4",
            "ax4x4",
            "1x4x4x4",
            "",
            "100000x100000x100000",
            "1x99999999999999999x99999999999999999",
        ] {
            assert!(parse_shapes(bad).is_err(), "{bad}");
        }
    }
}
