//! Every kind of malformed case file is a failed case with a message that says why: never a
//! panic, never a huge allocation. Checked through the library and through `hybridq check`.
#![cfg(feature = "cli")]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use hybridq::fixture::{load, Case, HybridCase};
use hybridq::Error;
use ndarray::{arr0, Array1, ArrayD, IxDyn};
use ndarray_npy::NpzWriter;

const GOOD: &str = "fixtures/hybrid/case008_K33_N63_B6_asym_act0_pc_wnormal_xnormal.npz";

fn good_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(GOOD)
}

fn good_case() -> HybridCase {
    match load(&good_path()).unwrap() {
        Case::Hybrid(c) => c,
        other => panic!("{other:?}"),
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hybridq-malformed-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes the case with `edit` applied to its named arrays.
fn write_case(
    path: &Path,
    edit: impl FnOnce(&mut NpzWriter<fs::File>, &HybridCase) -> Vec<&'static str>,
) {
    let c = good_case();
    let mut npz = NpzWriter::new_compressed(fs::File::create(path).unwrap());
    let skip = edit(&mut npz, &c);
    let mut add_f = |name: &'static str, a: ArrayD<f32>| {
        if !skip.contains(&name) {
            npz.add_array(name, &a).unwrap();
        }
    };
    add_f("input", c.input.clone());
    add_f("weights", c.weights.clone().into_dyn());
    add_f("weight_scales", c.weight_scales.clone().into_dyn());
    add_f("expected", c.expected.clone());
    add_f("expected_xnnpack", c.expected_xnnpack.clone());
    add_f("expected_float", c.expected_float.clone());
    if let Some(b) = &c.bias {
        add_f("bias", b.clone().into_dyn());
    }
    let mut add_i = |name: &'static str, v: i32| {
        if !skip.contains(&name) {
            npz.add_array(name, &arr0(v)).unwrap();
        }
    };
    add_i("asymmetric_inputs", c.asymmetric_inputs as i32);
    add_i("activation", c.activation.code());
    add_i("keep_num_dims", c.keep_num_dims as i32);
    if !skip.contains(&"weights_q") {
        npz.add_array("weights_q", &c.weights_q).unwrap();
    }
    npz.finish().unwrap();
}

/// The good case with its entry `name` replaced by raw bytes (for hand-made broken .npy
/// headers that the key checks let through to the array reader).
fn write_raw_entry(path: &Path, name: &str, bytes: &[u8]) {
    let mut good = zip::ZipArchive::new(fs::File::open(good_path()).unwrap()).unwrap();
    let mut zip = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..good.len() {
        let mut entry = good.by_index(i).unwrap();
        let entry_name = entry.name().to_string();
        zip.start_file(entry_name.as_str(), stored).unwrap();
        if entry_name == name {
            zip.write_all(bytes).unwrap();
        } else {
            std::io::copy(&mut entry, &mut zip).unwrap();
        }
    }
    zip.finish().unwrap();
}

/// Builds every malformed kind in `dir` and returns (file, words the message must contain).
fn make_malformed(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let mut out = Vec::new();
    let good = fs::read(good_path()).unwrap();

    let p = dir.join("truncated_half.npz");
    fs::write(&p, &good[..good.len() / 2]).unwrap();
    out.push((p, "npz"));
    let p = dir.join("truncated_tail.npz");
    fs::write(&p, &good[..good.len() - 30]).unwrap();
    out.push((p, "npz"));
    let p = dir.join("empty.npz");
    fs::write(&p, b"").unwrap();
    out.push((p, "npz"));
    let p = dir.join("not_an_npz.npz");
    fs::write(&p, b"input,weights\n1,2\n").unwrap();
    out.push((p, "npz"));

    let p = dir.join("missing_expected.npz");
    write_case(&p, |_, _| vec!["expected"]);
    out.push((p, "`expected`: missing"));
    let p = dir.join("missing_flag.npz");
    write_case(&p, |_, _| vec!["keep_num_dims"]);
    out.push((p, "`keep_num_dims`: missing"));

    let p = dir.join("input_f64.npz");
    write_case(&p, |npz, c| {
        npz.add_array("input", &c.input.mapv(|v| v as f64)).unwrap();
        vec!["input"]
    });
    out.push((p, "`input`"));
    let p = dir.join("weights_q_i16.npz");
    write_case(&p, |npz, c| {
        npz.add_array("weights_q", &c.weights_q.mapv(|v| v as i16))
            .unwrap();
        vec!["weights_q"]
    });
    out.push((p, "`weights_q`"));
    let p = dir.join("activation_i64.npz");
    write_case(&p, |npz, _| {
        npz.add_array("activation", &arr0(0i64)).unwrap();
        vec!["activation"]
    });
    out.push((p, "`activation`"));

    let p = dir.join("weights_q_wrong_shape.npz");
    write_case(&p, |npz, c| {
        let (n, k) = c.weights_q.dim();
        npz.add_array("weights_q", &ndarray::Array2::<i8>::zeros((n, k + 1)))
            .unwrap();
        vec!["weights_q"]
    });
    out.push((p, "`weights_q`: expected shape"));
    let p = dir.join("expected_wrong_shape.npz");
    write_case(&p, |npz, c| {
        npz.add_array(
            "expected",
            &ArrayD::<f32>::zeros(IxDyn(&[c.expected.len()])),
        )
        .unwrap();
        vec!["expected"]
    });
    out.push((p, "`expected`: expected shape"));
    let p = dir.join("scales_wrong_length.npz");
    write_case(&p, |npz, _| {
        npz.add_array("weight_scales", &Array1::<f32>::ones(2))
            .unwrap();
        vec!["weight_scales"]
    });
    out.push((p, "`weight_scales`"));
    let p = dir.join("weights_1d.npz");
    write_case(&p, |npz, c| {
        npz.add_array("weights", &Array1::<f32>::ones(c.weights.len()))
            .unwrap();
        vec!["weights"]
    });
    out.push((p, "`weights`"));
    let p = dir.join("bad_activation_code.npz");
    write_case(&p, |npz, _| {
        npz.add_array("activation", &arr0(7i32)).unwrap();
        vec!["activation"]
    });
    out.push((p, "activation code 7"));
    let p = dir.join("bad_flag.npz");
    write_case(&p, |npz, _| {
        npz.add_array("asymmetric_inputs", &arr0(2i32)).unwrap();
        vec!["asymmetric_inputs"]
    });
    out.push((p, "expected 0 or 1"));
    let p = dir.join("extra_key.npz");
    write_case(&p, |npz, _| {
        npz.add_array("surprise", &arr0(1i32)).unwrap();
        vec![]
    });
    out.push((p, "unexpected key `surprise`"));
    let p = dir.join("bad_scale.npz");
    write_case(&p, |npz, c| {
        let mut s = c.weight_scales.clone();
        s[3] = 0.0;
        npz.add_array("weight_scales", &s).unwrap();
        vec!["weight_scales"]
    });
    out.push((p, "scale 3 is 0"));

    // Hand-made .npy entries: a header that promises far more data than there is, a header
    // length beyond the entry, and a bad magic string.
    let mut lying = b"\x93NUMPY\x01\x00".to_vec();
    let dict = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000), }";
    let pad = 64 - (10 + dict.len() + 1) % 64;
    let header_len = (dict.len() + pad + 1) as u16;
    lying.extend_from_slice(&header_len.to_le_bytes());
    lying.extend_from_slice(dict);
    lying.extend(std::iter::repeat_n(b' ', pad));
    lying.push(b'\n');
    lying.extend_from_slice(&[0u8; 16]);
    let p = dir.join("huge_shape_header.npz");
    write_raw_entry(&p, "input.npy", &lying);
    out.push((p, "truncated"));
    let p = dir.join("header_past_end.npz");
    write_raw_entry(&p, "input.npy", b"\x93NUMPY\x01\x00\xff\xff{'descr'");
    out.push((p, "header declares"));
    let p = dir.join("bad_magic.npz");
    write_raw_entry(&p, "input.npy", b"NOTNUMPY\x01\x00\x10\x00{'descr': '<f4'}");
    out.push((p, "magic"));
    // Zero-length axes with huge others: no data is needed, but no array can have that shape
    // (ndarray-npy used to panic on it).
    for (i, shape) in ["(0, 4294967296, 4294967296)", "(0, 18446744073709551615)"]
        .iter()
        .enumerate()
    {
        let p = dir.join(format!("zero_length_axis_{i}.npz"));
        write_raw_entry(&p, "input.npy", &npy_header(shape));
        out.push((p, "larger than any array"));
    }
    out
}

/// A version 1.0 `.npy` header (f32, C order) for `shape`, written as Python would.
fn npy_header(shape: &str) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    let pad = 63 - (10 + dict.len()) % 64;
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&((dict.len() + pad + 1) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out
}

#[test]
fn every_malformed_kind_is_a_typed_error_naming_the_problem() {
    let dir = scratch_dir("lib");
    for (path, words) in make_malformed(&dir) {
        let err = match load(&path) {
            Ok(case) => match hybridq::check::check_case(&case) {
                Ok(r) => panic!("{} loaded and checked: {r}", path.display()),
                Err(e) => e,
            },
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(
            matches!(err, Error::File { .. } | Error::BadScale { .. }),
            "{}: unexpected error kind {err:?}",
            path.display()
        );
        assert!(
            msg.contains(words),
            "{}: message `{msg}` does not mention `{words}`",
            path.display()
        );
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_truncation_of_a_case_file_fails_cleanly() {
    let good = fs::read(good_path()).unwrap();
    let dir = scratch_dir("cuts");
    let p = dir.join("cut.npz");
    let step = (good.len() / 97).max(1);
    for len in (0..good.len()).step_by(step) {
        fs::write(&p, &good[..len]).unwrap();
        assert!(
            load(&p).is_err(),
            "a file cut at {len} of {} bytes loaded",
            good.len()
        );
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cli_reports_each_bad_file_as_a_failed_case() {
    let dir = scratch_dir("cli");
    let bad = make_malformed(&dir);
    fs::copy(good_path(), dir.join("good.npz")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hybridq"))
        .arg("check")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        !out.status.success(),
        "exit status must be non-zero:\n{stdout}"
    );
    assert!(out.stderr.is_empty() || !String::from_utf8_lossy(&out.stderr).contains("panicked"));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), bad.len() + 2, "{stdout}");
    assert_eq!(
        *lines.last().unwrap(),
        format!("1 passed, {} failed", bad.len())
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("FAIL ")).count(),
        bad.len()
    );
    assert!(lines.iter().any(|l| l.starts_with("PASS good:")));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cli_passes_the_shipped_fixtures() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let out = Command::new(env!("CARGO_BIN_EXE_hybridq"))
        .arg("check")
        .arg(&fixtures)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    let last = stdout.lines().last().unwrap();
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
}

#[test]
fn random_byte_corruption_never_panics() {
    use rand::{Rng, SeedableRng};
    let dir = scratch_dir("flips");
    // A stored (uncompressed) copy, so that flips reach the .npy headers and data directly.
    let stored = dir.join("stored.npz");
    {
        let c = good_case();
        let mut npz = NpzWriter::new(fs::File::create(&stored).unwrap());
        npz.add_array("input", &c.input).unwrap();
        npz.add_array("weights", &c.weights).unwrap();
        npz.add_array("weights_q", &c.weights_q).unwrap();
        npz.add_array("weight_scales", &c.weight_scales).unwrap();
        npz.add_array("asymmetric_inputs", &arr0(c.asymmetric_inputs as i32))
            .unwrap();
        npz.add_array("activation", &arr0(c.activation.code()))
            .unwrap();
        npz.add_array("keep_num_dims", &arr0(c.keep_num_dims as i32))
            .unwrap();
        npz.add_array("expected", &c.expected).unwrap();
        npz.add_array("expected_xnnpack", &c.expected_xnnpack)
            .unwrap();
        npz.add_array("expected_float", &c.expected_float).unwrap();
        npz.finish().unwrap();
    }
    let bases = [fs::read(&stored).unwrap(), fs::read(good_path()).unwrap()];
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let p = dir.join("flipped.npz");
    let mut outcomes = [0usize; 2];
    for base in &bases {
        for _ in 0..300 {
            let mut bytes = base.clone();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..bytes.len());
                bytes[i] = rng.random();
            }
            fs::write(&p, &bytes).unwrap();
            // Loading and checking may succeed (a flip in a float) or fail; it must not panic.
            let ok = load(&p)
                .and_then(|c| hybridq::check::check_case(&c))
                .is_ok();
            outcomes[ok as usize] += 1;
        }
    }
    assert!(outcomes[0] > 0, "no corruption was ever detected");
    fs::remove_dir_all(&dir).unwrap();
}
