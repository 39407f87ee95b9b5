//! Sizes typed on the command line that would need more memory than a layer of 2^28 weights
//! (`bench --shapes`, `bench --serve`, `demo`, `compare`) are errors that name the tensor,
//! never an allocation failure or a panic.
#![cfg(feature = "cli")]

use std::io::Write as _;
use std::process::{Command, Stdio};

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hybridq"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn huge_made_up_problems_are_errors() {
    for (args, tensor) in [
        (
            &["bench", "--shapes", "1x4x4,100000x100000x100000"][..],
            "weights N x K would be 100000 x 100000",
        ),
        (
            &["bench", "--shapes", "1x99999999999999999999x2"][..],
            "is not BxKxN",
        ),
        (
            &["demo", "--batch", "1", "--k", "65536", "--n", "65536"][..],
            "weights N x K would be 65536 x 65536",
        ),
        (
            &["compare", "--batch", "100000000", "--k", "64", "--n", "8"][..],
            "inputs B x K would be 100000000 x 64",
        ),
        (
            &["compare", "--batch", "300000000", "--k", "1", "--n", "1"][..],
            "inputs B x K would be 300000000 x 1",
        ),
    ] {
        let (ok, stderr) = run(args);
        assert!(!ok, "{args:?} succeeded");
        assert!(
            stderr.contains(tensor) && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn serve_answers_a_huge_shape_with_an_error_and_goes_on() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hybridq"))
        .args(["bench", "--serve"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hybrid 4000000000x4000000000x4000000000 1 0\nhybrid 2x8x8 1 0\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("{\"error\": ") && lines[0].contains("more than 2^28"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("{\"impl\": \"hybrid\""),
        "{}",
        lines[1]
    );
}
