//! Sizes typed on the command line that would need more memory than a layer of 2^28 weights
//! (`bench --shapes`, `demo`, `compare`) are errors that name the tensor, never an allocation
//! failure or a panic (`bench --serve`'s answer to such a request: `tests/kernels_api.rs`).
#![cfg(feature = "cli")]

use std::process::Command;

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
