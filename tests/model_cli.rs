//! `hybridq quantize` and `hybridq inspect` on a small float model written here: the table,
//! the totals, a file that loads, the policy options, and errors that exit with 2.
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::Command;

use hybridq::model::QuantizedModel;
use hybridq::Mode;
use safetensors::{tensor::TensorView, Dtype};

fn hybridq(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hybridq"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hybridq-model-cli-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A float model: two dense layers (f32 and bf16), a small one, an embedding, a norm.
fn write_float_model(path: &Path) {
    let f32s = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| ((((i * 37) % 101) as f32 - 50.0) / 40.0).to_le_bytes())
            .collect()
    };
    let bf16s = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| half::bf16::from_f32(((i % 7) as f32 - 3.0) / 4.0).to_le_bytes())
            .collect()
    };
    let data: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
        ("enc.dense.weight", Dtype::F32, vec![64, 48], f32s(64 * 48)),
        ("enc.dense.bias", Dtype::F32, vec![64], f32s(64)),
        ("enc.out.weight", Dtype::BF16, vec![48, 64], bf16s(48 * 64)),
        ("head.weight", Dtype::F32, vec![4, 48], f32s(4 * 48)),
        ("embeddings.weight", Dtype::F32, vec![100, 48], f32s(4800)),
        ("norm.weight", Dtype::F32, vec![48], f32s(48)),
        ("ids", Dtype::I64, vec![2], vec![0; 16]),
    ];
    let views: Vec<_> = data
        .iter()
        .map(|(n, d, s, b)| (*n, TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn quantize_prints_a_table_and_writes_a_model_that_inspect_reads() {
    let d = dir("quantize");
    let (input, output) = (d.join("float.safetensors"), d.join("q.safetensors"));
    write_float_model(&input);
    let (code, out, err) = hybridq(&[
        "quantize",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--override",
        "enc.out.*=int8-weights:per-tensor",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let row = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {out}"))
    };
    assert!(row("enc.dense ").contains("hybrid") && row("enc.dense ").contains("per-channel"));
    assert!(row("enc.out ").contains("int8-weights") && row("enc.out ").contains("override"));
    assert!(row("head ").contains("kept (small)"));
    assert!(row("embeddings ").contains("kept (pattern)"));
    assert!(
        out.contains("totals: 4 layers (2 quantized, 2 float)"),
        "{out}"
    );
    assert!(out.contains("`ids` (I64) is not a float tensor"), "{out}");
    let model = QuantizedModel::load(&output).unwrap();
    assert_eq!(
        model.layer("enc.dense").unwrap().weights().mode(),
        Mode::Hybrid
    );
    assert_eq!(
        model.layer("enc.out").unwrap().weights().mode(),
        Mode::WeightOnlyInt8
    );
    let (code, out, err) = hybridq(&["inspect", output.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("hybridq-quantized version 1") && out.contains("checksums verified"),
        "{out}"
    );
    assert!(
        out.contains("4 layers") && out.contains("kept norm.weight"),
        "{out}"
    );
    let (code, out, _) = hybridq(&["inspect", input.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("a float safetensors file") && out.contains("enc.dense.weight"),
        "{out}"
    );
    assert!(out.contains("layer weight -> hybrid (default)"), "{out}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn bad_inputs_exit_with_2_and_say_why() {
    let d = dir("bad");
    let input = d.join("float.safetensors");
    write_float_model(&input);
    let out = d.join("q.safetensors");
    let cases: [(&[&str], &str); 5] = [
        (
            &["quantize", "/no/such/file", "-o", out.to_str().unwrap()],
            "No such file",
        ),
        (
            &[
                "quantize",
                input.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--override",
                "x",
            ],
            "GLOB=MODE",
        ),
        (
            &[
                "quantize",
                input.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--mode",
                "integer",
            ],
            "calibrat",
        ),
        (
            &[
                "quantize",
                input.to_str().unwrap(),
                "-o",
                "/no/such/dir/q.safetensors",
            ],
            "cannot save",
        ),
        (&["inspect", d.to_str().unwrap()], "not a regular file"),
    ];
    for (args, says) in cases {
        let (code, _, err) = hybridq(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(!out.exists(), "a failed run wrote its output");
    std::fs::write(d.join("junk"), b"definitely not safetensors").unwrap();
    let (code, _, err) = hybridq(&["inspect", d.join("junk").to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    std::fs::remove_dir_all(&d).unwrap();
}
