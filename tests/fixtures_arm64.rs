//! The AArch64 fixture sets (LiteRT 2.3.0's aarch64 wheel on emulated Cortex-A72 and
//! Neoverse-N1, `fixtures/generate_arm64.py`): each passes with its build's flavours, fails
//! with the others (the sets tell the builds apart), covers every branch of the built-in
//! kernel's sdot / ruy / C-loop choice, and `hybridq check --flavour` selects flavours.
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::Command;

use hybridq::check::{check_hybrid_with, CheckOptions};
use hybridq::fixture::{collect_case_files, load, Case, HybridCase};
use hybridq::flavour::arm64_sdot_kernel_runs;
use hybridq::Flavour;

const A72: &str = "fixtures/aarch64_litert-2.3.0_cortex-a72";
const N1: &str = "fixtures/aarch64_litert-2.3.0_neoverse-n1";

fn cases(dir: &str) -> Vec<HybridCase> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    collect_case_files(&[dir])
        .unwrap()
        .iter()
        .map(|f| match load(f).unwrap() {
            Case::Hybrid(c) => c,
            other => panic!("{other:?}"),
        })
        .collect()
}

/// How many cases pass the built-in and the XNNPACK comparison with the given flavours.
fn passes(cases: &[HybridCase], builtin: Flavour, xnnpack: Flavour) -> (usize, usize) {
    let options = CheckOptions {
        flavour: Some(builtin),
        xnnpack_flavour: Some(xnnpack),
    };
    cases.iter().fold((0, 0), |(b, x), c| {
        let r = check_hybrid_with(c, options).unwrap();
        (
            b + r.tflite.passed() as usize,
            x + r.xnnpack.passed() as usize,
        )
    })
}

#[test]
fn each_set_passes_with_its_own_flavours_only() {
    let (a72, n1) = (cases(A72), cases(N1));
    assert_eq!((a72.len(), n1.len()), (127, 127));
    assert_eq!(
        passes(&a72, Flavour::TfliteArm64, Flavour::XnnpackArm64),
        (127, 127)
    );
    assert_eq!(
        passes(
            &n1,
            Flavour::TfliteArm64Dotprod,
            Flavour::XnnpackArm64Dotprod
        ),
        (127, 127)
    );
    // The x86-64 flavours, and each ARM core's flavours on the other core's set, fail in many
    // cases: the sets discriminate.
    let fails = |cases: &[HybridCase], b: Flavour, x: Flavour| {
        let (pb, px) = passes(cases, b, x);
        (cases.len() - pb, cases.len() - px)
    };
    let (b, x) = fails(&a72, Flavour::TfliteX86, Flavour::XnnpackArm64Dotprod);
    assert!(b >= 10 && x >= 10, "{b} {x}");
    let (b, x) = fails(&n1, Flavour::TfliteArm64, Flavour::Xnnpack);
    assert!(b >= 10 && x >= 10, "{b} {x}");
    let (b, x) = fails(&a72, Flavour::TfliteArm64Dotprod, Flavour::Xnnpack);
    assert!(b >= 10 && x >= 1, "{b} {x}");
}

#[test]
fn the_neoverse_set_covers_every_branch_of_the_kernel_choice() {
    let n1 = cases(N1);
    let rows = |c: &HybridCase| c.input.len() / c.k();
    let sdot = n1
        .iter()
        .filter(|c| arm64_sdot_kernel_runs(rows(c), c.n(), c.k()))
        .count();
    // ruy: at least 16 rows and N % 4 == 0 where sdot would otherwise run.
    let ruy = n1
        .iter()
        .filter(|c| {
            let (b, n, k) = (rows(c), c.n(), c.k());
            k % 16 == 0
                && n % 4 == 0
                && n >= b
                && b % 4 == 0
                && b >= 16
                && !arm64_sdot_kernel_runs(b, n, k)
        })
        .count();
    let padded = n1
        .iter()
        .filter(|c| rows(c) % 4 != 0 && arm64_sdot_kernel_runs(rows(c), c.n(), c.k()))
        .count();
    assert!(
        sdot >= 10 && ruy >= 2 && padded >= 2,
        "{sdot} {ruy} {padded}"
    );
    assert!(n1.len() - sdot >= 10);
}

#[test]
fn check_takes_the_flavours_from_the_command_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hybridq"))
            .arg("check")
            .args(args)
            .arg(root.join(N1))
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        (
            out.status.success(),
            stdout.lines().last().unwrap_or("").to_string(),
        )
    };
    assert_eq!(run(&[]), (true, "127 passed, 0 failed".to_string()));
    let explicit = run(&[
        "--flavour",
        "tflite-arm64-dotprod",
        "--xnnpack-flavour",
        "xnnpack-arm64-dotprod",
    ]);
    assert_eq!(explicit, (true, "127 passed, 0 failed".to_string()));
    let (ok, last) = run(&["--flavour", "tflite-x86", "--xnnpack-flavour", "xnnpack"]);
    assert!(!ok && !last.ends_with(" 0 failed"), "{last}");
    let (ok, _) = run(&["--flavour", "no-such-flavour"]);
    assert!(!ok);
}
