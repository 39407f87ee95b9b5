//! `hybridq bench --serve`: timings on request, for a driver that interleaves hybridq with
//! other engines in one process's lifetime (`benches/peers/run_peers.py`).
//!
//! A shared host runs slow for stretches of a second or more. An engine timed in one block
//! while another is timed in the next can land in different stretches, and the ratio then
//! measures the host. A driver that alternates the engines in short slices gives each the
//! same stretches; this mode keeps hybridq's layers built between slices so that a slice
//! costs one request.
//!
//! Protocol, one line each way: the request `<hybrid|float> <BxKxN> <threads> <seconds>`;
//! the answer a JSON object, `{"impl": .., "kernel": .., "times_us": [..]}` (the wall time of
//! each timed call, after one warm-up call) or `{"error": ".."}` for a request it cannot
//! serve. It ends at the end of its input.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::BufRead;
use std::process::ExitCode;

use hybridq::{FloatLinear, HybridLinear, Linear, Result, Scratch};
use ndarray::{Array2, ArrayView2};

use crate::bench_cmd::{hybrid_layer, parse_shapes, random_problem, Shape};
use crate::timing::samples_us;

/// One shape's problem and layers, built at its first request.
struct Built {
    x: Array2<f32>,
    out: Array2<f32>,
    hybrid: HybridLinear,
    float: FloatLinear,
}

impl Built {
    fn new(shape: Shape, kernel: Option<hybridq::Kernel>) -> Result<Self> {
        let (w, x) = random_problem(shape);
        Ok(Built {
            hybrid: hybrid_layer(&w, kernel)?,
            float: FloatLinear::new(w.view(), None, Default::default())?,
            out: Array2::zeros((shape.b, shape.n)),
            x,
        })
    }
}

/// A parsed request.
struct Request {
    hybrid: bool,
    shape: Shape,
    threads: usize,
    seconds: f64,
}

fn parse_request(line: &str) -> std::result::Result<Request, String> {
    let parts: Vec<&str> = line.split_whitespace().collect();
    let [imp, shape, threads, seconds] = parts[..] else {
        return Err(format!(
            "`{line}` is not `<hybrid|float> <BxKxN> <threads> <seconds>`"
        ));
    };
    let hybrid = match imp {
        "hybrid" => true,
        "float" => false,
        other => return Err(format!("unknown layer `{other}`: hybrid or float")),
    };
    let shape = match parse_shapes(shape).map_err(|e| e.to_string())?[..] {
        [one] => one,
        _ => return Err(format!("`{shape}` is not one shape")),
    };
    let threads = threads
        .parse::<usize>()
        .ok()
        .filter(|&t| t > 0)
        .ok_or_else(|| format!("threads `{threads}` is not a positive integer"))?;
    let seconds = seconds
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 60.0)
        .ok_or_else(|| format!("seconds `{seconds}` is not a number in [0, 60]"))?;
    Ok(Request {
        hybrid,
        shape,
        threads,
        seconds,
    })
}

/// Serves requests from stdin until its end.
pub fn serve(kernel: Option<hybridq::Kernel>) -> Result<ExitCode> {
    let mut built: HashMap<String, Built> = HashMap::new();
    let mut scratch = Scratch::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match parse_request(&line) {
            Ok(req) => match answer(&mut built, &mut scratch, kernel, &req) {
                Ok(a) => a,
                Err(e) => error_json(&e.to_string()),
            },
            Err(message) => error_json(&message),
        };
        say!("{answer}");
    }
    Ok(ExitCode::SUCCESS)
}

fn answer(
    built: &mut HashMap<String, Built>,
    scratch: &mut Scratch,
    kernel: Option<hybridq::Kernel>,
    req: &Request,
) -> Result<String> {
    let b = match built.entry(req.shape.label()) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => e.insert(Built::new(req.shape, kernel)?),
    };
    let (x, out) = (b.x.view(), &mut b.out);
    let (name, times) = if req.hybrid {
        time_layer(&mut b.hybrid, req, x, out, scratch)
    } else {
        time_layer(&mut b.float, req, x, out, scratch)
    };
    let imp = if req.hybrid { "hybrid" } else { "float" };
    let mut s = format!("{{\"impl\": \"{imp}\", \"kernel\": \"{name}\", \"times_us\": [");
    for (i, t) in times.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(s, "{sep}{t:.3}");
    }
    s.push_str("]}");
    Ok(s)
}

/// The kernel name and the call times of `layer` on `req.threads` threads.
fn time_layer<L: Linear>(
    layer: &mut L,
    req: &Request,
    x: ArrayView2<'_, f32>,
    out: &mut Array2<f32>,
    scratch: &mut Scratch,
) -> (&'static str, Vec<f64>) {
    layer.set_threads(req.threads);
    let layer = &*layer;
    let times = samples_us(req.seconds, 1, || {
        layer
            .forward_into(x, out.view_mut(), scratch)
            .expect("valid shapes")
    });
    (layer.kernel_name(), times)
}

fn error_json(message: &str) -> String {
    let escaped: String = message
        .chars()
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c if c.is_control() => vec![' '],
            c => vec![c],
        })
        .collect();
    format!("{{\"error\": \"{escaped}\"}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_reject() {
        let r = parse_request("hybrid 2x8x16 1 0.01").unwrap();
        assert!(r.hybrid && r.threads == 1 && r.seconds == 0.01);
        assert_eq!((r.shape.b, r.shape.k, r.shape.n), (2, 8, 16));
        assert!(!parse_request("float 1x4x4 2 0").unwrap().hybrid);
        for bad in [
            "",
            "hybrid 2x8x16 1",
            "int8 2x8x16 1 0.1",
            "hybrid 2x8 1 0.1",
            "hybrid 2x8x16,1x1x1 1 0.1",
            "hybrid 2x8x16 0 0.1",
            "hybrid 2x8x16 1 -1",
            "hybrid 2x8x16 1 NaN",
            "hybrid 2x8x16 1 1e9",
        ] {
            assert!(parse_request(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_answer_times_the_layer_asked_for() {
        let mut built = HashMap::new();
        let mut scratch = Scratch::new();
        for (line, imp) in [
            ("hybrid 3x8x16 1 0", "hybrid"),
            ("float 3x8x16 2 0", "float"),
        ] {
            let req = parse_request(line).unwrap();
            let a = answer(&mut built, &mut scratch, None, &req).unwrap();
            assert!(a.starts_with(&format!("{{\"impl\": \"{imp}\"")), "{a}");
            let times = a.split("[").nth(1).unwrap().trim_end_matches("]}");
            assert_eq!(times.split(", ").count(), 1, "{a}");
            assert!(times.parse::<f64>().unwrap() >= 0.0);
        }
        assert_eq!(built.len(), 1);
        assert_eq!(error_json("a \"b\"\n"), "{\"error\": \"a \\\"b\\\" \"}");
    }
}
