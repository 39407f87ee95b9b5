//! The CLI: `hybridq check` on int8 cases, `hybridq compare` on a small layer.
#![cfg(feature = "cli")]

use std::process::Command;

fn hybridq(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hybridq"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn check_prints_one_line_per_int8_case_and_counts_them() {
    let (ok, stdout, _) = hybridq(&["check", "fixtures/int8"]);
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/int8"))
        .unwrap()
        .count();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), files + 1, "{stdout}");
    assert!(lines[..files]
        .iter()
        .all(|l| l.starts_with("PASS int8_case") && l.contains(" bit-exact")));
    assert_eq!(lines[files], format!("{files} passed, 0 failed"));
    assert!(ok);
}

#[test]
fn check_fails_an_int8_case_with_a_wrong_expected_value() {
    let dir = std::env::temp_dir().join(format!("hybridq-int8-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/int8/int8_case000_K32_N32_B4_act0_pc_wnormal_xnormal.npz"
    );
    let hybridq::fixture::Case::Integer(c) = hybridq::fixture::load(src.as_ref()).unwrap() else {
        panic!("not an int8 case")
    };
    let mut npz =
        ndarray_npy::NpzWriter::new_compressed(std::fs::File::create(dir.join("bad.npz")).unwrap());
    npz.add_array("input_q", &c.input_q).unwrap();
    npz.add_array("input_scale", &ndarray::arr0(c.input_scale))
        .unwrap();
    npz.add_array("input_zero_point", &ndarray::arr0(c.input_zero_point))
        .unwrap();
    npz.add_array("weights_q", &c.weights_q).unwrap();
    npz.add_array("weight_scales", &c.weight_scales).unwrap();
    npz.add_array("bias_q", c.bias_q.as_ref().unwrap()).unwrap();
    npz.add_array("output_scale", &ndarray::arr0(c.output_scale))
        .unwrap();
    npz.add_array("output_zero_point", &ndarray::arr0(c.output_zero_point))
        .unwrap();
    npz.add_array("activation", &ndarray::arr0(c.activation.code()))
        .unwrap();
    let mut wrong = c.expected_q.clone();
    wrong[[1, 2]] = wrong[[1, 2]].wrapping_add(1);
    npz.add_array("expected_q", &wrong).unwrap();
    npz.finish().unwrap();
    let (ok, stdout, _) = hybridq(&["check", dir.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stdout.contains("FAIL bad: int8 127/128 bit-exact (first diff at 34"),
        "{stdout}"
    );
    assert!(stdout.ends_with("0 passed, 1 failed\n"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compare_prints_every_mode() {
    let (ok, stdout, stderr) = hybridq(&["compare", "--k", "64", "--n", "48", "--batch", "3"]);
    assert!(ok, "{stderr}");
    let names = [
        "float32",
        "float16 weights",
        "bfloat16 weights",
        "int8 weights (weight-only)",
        "hybrid int8 (dynamic range)",
        "full integer int8",
    ];
    let mut sqnr = Vec::new();
    for name in names {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no `{name}` line in\n{stdout}"));
        let cols: Vec<&str> = line[name.len()..].split_whitespace().collect();
        assert_eq!(cols.len(), 5, "{line}");
        sqnr.push(cols[2].parse::<f64>().unwrap());
    }
    assert_eq!(sqnr[0], f64::INFINITY);
    assert!(
        sqnr[1..].iter().all(|&s| s.is_finite() && s > 20.0),
        "{sqnr:?}"
    );
    let (ok, _, stderr) = hybridq(&["compare", "--batch", "0"]);
    assert!(!ok && stderr.contains("--batch"), "{stderr}");
}
