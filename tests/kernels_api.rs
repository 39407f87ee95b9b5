//! The kernel selection API: names, parsing, availability, errors.

use hybridq::{Error, HybridConfig, HybridLinear, Kernel, QuantizedWeights};
use ndarray::array;

#[test]
fn scalar_is_always_available_and_last() {
    let all = Kernel::available();
    assert_eq!(all.last(), Some(&Kernel::Scalar));
    assert!(all.contains(&Kernel::detect()));
    for k in &all {
        assert!(k.is_available());
        assert_eq!(k.name().parse::<Kernel>().unwrap(), *k);
        assert_eq!(k.to_string(), k.name());
    }
}

#[test]
fn names_round_trip_and_unknown_names_list_the_available_ones() {
    for &k in Kernel::ALL {
        match k.name().parse::<Kernel>() {
            Ok(p) => assert_eq!(p, k),
            Err(Error::KernelUnavailable { name, .. }) => {
                assert!(!k.is_available());
                assert_eq!(name, k.name());
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    match "avx512-nonexistent".parse::<Kernel>() {
        Err(Error::KernelUnavailable { name, available }) => {
            assert_eq!(name, "avx512-nonexistent");
            assert!(available.contains("scalar"), "{available}");
        }
        other => panic!("expected KernelUnavailable, got {other:?}"),
    }
}

#[test]
fn peak_is_measured_for_available_simd_kernels_only() {
    for &k in Kernel::ALL {
        let peak = k.peak_gops();
        if k == Kernel::Scalar || !k.is_available() {
            assert_eq!(peak, None, "{k}");
        } else {
            // Positive and finite; no bound on its size (machines differ).
            let p = peak.unwrap_or(f64::NAN);
            assert!(p.is_finite() && p > 0.0, "{k}: {p}");
        }
    }
}

#[test]
fn unavailable_kernels_are_refused_at_construction() {
    let w = QuantizedWeights::from_parts(array![[1i8, -128], [3, 4]].view(), &[0.5]).unwrap();
    for &k in Kernel::ALL {
        let config = HybridConfig {
            kernel: Some(k),
            ..HybridConfig::default()
        };
        let built = HybridLinear::new(w.clone(), None, config);
        if k.is_available() {
            assert_eq!(built.unwrap().kernel(), k);
        } else {
            assert!(matches!(built, Err(Error::KernelUnavailable { .. })));
        }
    }
}

#[test]
fn layer_is_send_sync_and_reports_its_kernel_and_threads() {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<HybridLinear>();
    let w = QuantizedWeights::from_parts(array![[1i8, 2], [3, 4]].view(), &[0.5]).unwrap();
    let l = HybridLinear::new(w, None, HybridConfig::default()).unwrap();
    assert!(Kernel::available().contains(&l.kernel()));
    assert!(l.threads() >= 1);
    let one = l.clone().with_threads(1);
    assert_eq!(one.threads(), 1);
    let s = l.with_config(HybridConfig {
        kernel: Some(Kernel::Scalar),
        threads: 3,
        ..*l.config()
    });
    assert_eq!((s.kernel(), s.threads()), (Kernel::Scalar, 3));
}

/// `HYBRIDQ_KERNEL` is honoured, and an invalid value makes layer construction fail instead
/// of silently running another kernel (checked through the CLI, since the variable is read
/// once per process).
#[test]
#[cfg(feature = "cli")]
fn environment_override_is_honoured_and_checked() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hybrid");
    let run = |value: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hybridq"))
            .args(["check", fixtures])
            .env("HYBRIDQ_KERNEL", value)
            .output()
            .unwrap()
    };
    for k in Kernel::available() {
        let out = run(k.name());
        assert!(
            out.status.success(),
            "{k}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let out = run("no-such-kernel");
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("no-such-kernel") && text.contains("not available"),
        "{text}"
    );
}

/// `hybridq bench --json` names the kernels it ran: the forced int8 kernel and the forced f32
/// kernel, for every kernel of both registries this CPU runs.
#[test]
#[cfg(feature = "cli")]
fn bench_reports_the_forced_kernels() {
    let bench = |var: &str, value: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hybridq"))
            .args([
                "bench",
                "--shapes",
                "2x64x48",
                "--threads",
                "1",
                "--seconds",
                "0.01",
                "--json",
            ])
            .env(var, value)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{var}={value}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    for k in Kernel::available() {
        let json = bench("HYBRIDQ_KERNEL", k.name());
        assert!(
            json.contains(&format!("\"kernel\": \"{}\"", k.name())),
            "{k}: {json}"
        );
    }
    for k in hybridq::FloatKernel::available() {
        let json = bench("HYBRIDQ_F32_KERNEL", k.name());
        assert!(
            json.contains(&format!("\"kernel\": \"{}\"", k.name())),
            "{k}: {json}"
        );
    }
}

/// A reader that goes away (`hybridq bench | head -1`) ends the command quietly, not with a
/// panic.
#[test]
#[cfg(feature = "cli")]
fn bench_survives_a_closed_pipe() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hybridq"))
        .args([
            "bench",
            "--shapes",
            "1x64x64,2x64x64",
            "--threads",
            "1",
            "--seconds",
            "0.02",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !err.contains("panicked"),
        "{:?}: {err}",
        out.status
    );
}

/// `hybridq bench --serve` answers each request line with the call times of the layer and
/// kernel asked for, answers a bad line or a huge shape with an error and goes on, and ends at
/// end of input.
#[test]
#[cfg(feature = "cli")]
fn bench_serve_answers_requests_with_the_forced_kernel() {
    use std::io::Write as _;
    for k in Kernel::available() {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hybridq"))
            .args(["bench", "--serve", "--kernel", k.name()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(
                b"hybrid 3x64x48 1 0.001\nfloat 3x64x48 2 0\nhybrid 3x64 1 0\n\
                  hybrid 4000000000x4000000000x4000000000 1 0\nhybrid 3x64x48 2 0\n",
            )
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{k}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{k}: {text}");
        assert!(
            lines[0].starts_with(&format!(
                "{{\"impl\": \"hybrid\", \"kernel\": \"{}\", \"times_us\": [",
                k.name()
            )),
            "{k}: {}",
            lines[0]
        );
        assert!(lines[1].starts_with("{\"impl\": \"float\""), "{}", lines[1]);
        assert!(lines[2].starts_with("{\"error\": "), "{}", lines[2]);
        assert!(
            lines[3].starts_with("{\"error\": ") && lines[3].contains("more than 2^28"),
            "{}",
            lines[3]
        );
        assert!(
            lines[4].starts_with("{\"impl\": \"hybrid\""),
            "{}",
            lines[4]
        );
        for line in [lines[0], lines[1], lines[4]] {
            let times = line.split('[').nth(1).unwrap().trim_end_matches("]}");
            for t in times.split(", ") {
                assert!(t.parse::<f64>().unwrap() > 0.0, "{line}");
            }
        }
    }
}
