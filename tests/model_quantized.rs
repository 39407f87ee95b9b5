//! A whole model: the quantization policy over a tensor set, the quantized format (save and
//! load bit-identical, loaded layers computing exactly what the saved ones compute, an atomic
//! save), and every bad file a typed error.
#![cfg(feature = "safetensors")]

use std::collections::HashMap;

use hybridq::model::{
    FloatTensor, Override, Policy, QuantizedModel, Reason, SourceDtype, TensorSet, METADATA_KEY,
};
use hybridq::{Error, Gelu, Granularity, Linear, LinearOptions, Mode};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

fn tensor(shape: &[usize], seed: usize, dtype: SourceDtype) -> FloatTensor {
    let len: usize = shape.iter().product();
    let data = (0..len)
        .map(|i| {
            let v = (((i * 37 + seed * 101) % 211) as f32 - 105.0) / 70.0;
            match dtype {
                SourceDtype::F32 => v,
                SourceDtype::F16 => half::f16::from_f32(v).to_f32(),
                SourceDtype::Bf16 => half::bf16::from_f32(v).to_f32(),
            }
        })
        .collect();
    FloatTensor {
        shape: shape.to_vec(),
        data,
        dtype,
    }
}

/// A small BERT-like tensor set: two dense layers with biases, one without, a small one, an
/// embedding table, a layer norm, and a bf16 weight.
fn model_set() -> TensorSet {
    let mut set = TensorSet::default();
    let entries: [(&str, &[usize], SourceDtype); 10] = [
        (
            "embeddings.word_embeddings.weight",
            &[100, 32],
            SourceDtype::F32,
        ),
        ("embeddings.LayerNorm.weight", &[32], SourceDtype::F32),
        ("embeddings.LayerNorm.bias", &[32], SourceDtype::F32),
        (
            "layer.0.attention.query.weight",
            &[32, 32],
            SourceDtype::F32,
        ),
        ("layer.0.attention.query.bias", &[32], SourceDtype::F32),
        (
            "layer.0.intermediate.dense.weight",
            &[64, 32],
            SourceDtype::F16,
        ),
        ("layer.0.intermediate.dense.bias", &[64], SourceDtype::F16),
        ("layer.0.output.dense.weight", &[32, 64], SourceDtype::Bf16),
        ("pooler.dense.weight", &[8, 32], SourceDtype::F32),
        ("pooler.dense.bias", &[8], SourceDtype::F32),
    ];
    for (i, (name, shape, dtype)) in entries.into_iter().enumerate() {
        set.insert(name, tensor(shape, i, dtype)).unwrap();
    }
    set
}

fn input(b: usize, k: usize) -> ndarray::Array2<f32> {
    ndarray::Array2::from_shape_fn((b, k), |(i, j)| {
        (((i * 13 + j * 7) % 19) as f32 - 9.0) / 3.0
    })
}

fn bits(a: &ndarray::Array2<f32>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn the_policy_decides_per_tensor() {
    let set = model_set();
    let policy = Policy {
        overrides: vec![Override {
            pattern: "*intermediate*".into(),
            mode: Some(Mode::WeightOnlyInt8),
            granularity: Some(Granularity::PerTensor),
        }],
        ..Policy::default()
    };
    let (model, report) = policy.apply_with_report(&set).unwrap();
    let by_name: HashMap<&str, _> = report.iter().map(|r| (r.layer.as_str(), r)).collect();
    // Embeddings are kept by pattern, the 8 x 32 pooler by TFLite's 1,024-element rule.
    assert_eq!(
        by_name["embeddings.word_embeddings"].reason,
        Reason::KeptByPattern
    );
    assert_eq!(by_name["embeddings.word_embeddings"].mode, Mode::Float);
    assert_eq!(by_name["pooler.dense"].reason, Reason::TooSmall);
    assert_eq!(by_name["layer.0.attention.query"].mode, Mode::Hybrid);
    assert_eq!(by_name["layer.0.attention.query"].reason, Reason::Default);
    let inter = by_name["layer.0.intermediate.dense"];
    assert_eq!(
        (inter.mode, inter.granularity, inter.reason),
        (
            Mode::WeightOnlyInt8,
            Granularity::PerTensor,
            Reason::Override
        )
    );
    // Bytes: f16 source 64 x 32 x 2 + bias 64 x 2; stored int8 + one scale + f32 bias.
    assert_eq!(inter.bytes_before, 64 * 32 * 2 + 64 * 2);
    assert_eq!(inter.bytes_after, 64 * 32 + 4 + 64 * 4);
    // The weight error: exact for float, a finite SQNR for int8.
    assert_eq!(by_name["pooler.dense"].error.max_abs, 0.0);
    let q = by_name["layer.0.attention.query"];
    assert!(
        q.error.sqnr_db > 30.0 && q.error.sqnr_db.is_finite(),
        "{}",
        q.error.sqnr_db
    );
    // Biases are attached to their layers; the layer norm is kept; nothing is lost.
    assert_eq!(
        model.layer("layer.0.attention.query").unwrap().bias_name(),
        Some("layer.0.attention.query.bias")
    );
    assert!(model
        .layer("layer.0.output.dense")
        .unwrap()
        .bias()
        .is_none());
    let kept: Vec<&str> = model.kept_names().collect();
    assert_eq!(
        kept,
        ["embeddings.LayerNorm.bias", "embeddings.LayerNorm.weight"]
    );
    assert_eq!(model.layers().count(), 5);
    // The full-integer mode cannot be stored: a typed error, not a panic.
    let bad = Policy {
        mode: Mode::FullInteger,
        ..Policy::default()
    };
    assert!(matches!(
        bad.apply(&set),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn save_and_load_are_bit_identical_and_compute_the_same() {
    let set = model_set();
    for mode in [
        Mode::Hybrid,
        Mode::WeightOnlyInt8,
        Mode::Float16,
        Mode::BFloat16,
        Mode::Float,
    ] {
        for granularity in [Granularity::PerChannel, Granularity::PerTensor] {
            let policy = Policy {
                mode,
                granularity,
                ..Policy::default()
            };
            let model = policy.apply(&set).unwrap();
            let bytes = model.to_bytes().unwrap();
            assert!(
                model.to_bytes().unwrap() == bytes,
                "the same model, the same bytes"
            );
            let loaded = QuantizedModel::from_bytes(&bytes).unwrap();
            assert_eq!(loaded, model, "{mode} {granularity:?}");
            assert!(
                loaded.to_bytes().unwrap() == bytes,
                "loaded and saved again: the same bytes"
            );
            for layer in model.layers() {
                let [_, k] = layer.weights().shape();
                let x = input(5, k);
                for nl in [
                    hybridq::Nonlinearity::Gelu(Gelu::Tanh),
                    hybridq::Activation::Relu.into(),
                ] {
                    let options = LinearOptions::default().nonlinearity(nl).threads(1);
                    let a = model.linear(layer.name(), &options).unwrap();
                    let b = loaded.linear(layer.name(), &options).unwrap();
                    assert_eq!(a.kernel_name(), b.kernel_name());
                    assert_eq!(
                        bits(&a.forward(x.view()).unwrap()),
                        bits(&b.forward(x.view()).unwrap()),
                        "{}",
                        layer.name()
                    );
                }
            }
        }
    }
}

#[test]
fn a_hybrid_layer_from_the_model_is_the_layer_quantized_in_memory() {
    let set = model_set();
    let model = Policy::default().apply(&set).unwrap();
    let w = set.matrix("layer.0.attention.query.weight").unwrap();
    let b = set.get("layer.0.attention.query.bias").unwrap();
    let options = LinearOptions::default().threads(1);
    let direct =
        hybridq::build_linear(w, Some(ndarray::ArrayView1::from(&b.data)), &options, None).unwrap();
    let from_model = model.linear("layer.0.attention.query", &options).unwrap();
    let x = input(7, 32);
    assert_eq!(
        bits(&direct.forward(x.view()).unwrap()),
        bits(&from_model.forward(x.view()).unwrap())
    );
    assert!(matches!(
        model.linear("no.such.layer", &options),
        Err(Error::MissingTensor { .. })
    ));
}

#[test]
fn save_is_atomic_and_leaves_no_temporary_file() {
    let dir = std::env::temp_dir().join(format!("hybridq-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    let model = Policy::default().apply(&model_set()).unwrap();
    std::fs::write(&path, b"an older file").unwrap();
    model.save(&path).unwrap();
    assert_eq!(QuantizedModel::load(&path).unwrap(), model);
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from("model.safetensors")]);
    // A target in a directory that does not exist: a typed error, nothing written.
    let missing = dir.join("no/such/dir/model.safetensors");
    assert!(matches!(model.save(&missing), Err(Error::File { .. })));
    // A directory is not a model file.
    assert!(matches!(
        QuantizedModel::load(&dir),
        Err(Error::File { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every truncation and single-byte corruption: an error or (a byte the format does not
/// depend on, such as header padding) the same model; never a panic.
#[test]
fn truncated_and_corrupted_files_are_errors() {
    let model = Policy::default().apply(&model_set()).unwrap();
    let bytes = model.to_bytes().unwrap();
    for len in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
        assert!(
            QuantizedModel::from_bytes(&bytes[..len]).is_err(),
            "truncated to {len}"
        );
    }
    let mut unchanged = 0;
    for at in (0..bytes.len()).step_by(3) {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[at] ^= flip;
            match QuantizedModel::from_bytes(&b) {
                Err(_) => {}
                Ok(m) => {
                    assert_eq!(m, model, "byte {at} ^ {flip:#x} loaded as another model");
                    unchanged += 1;
                }
            }
        }
    }
    // Only bytes without meaning (JSON whitespace) may change without an error.
    assert!(unchanged < 40, "{unchanged} corruptions went unnoticed");
}

/// Parses a quantized file into its JSON document and tensors, lets `edit` change them,
/// recomputes nothing (unless `resum`) and writes the file again.
fn rewrite(
    bytes: &[u8],
    resum: bool,
    edit: impl FnOnce(&mut Value, &mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>),
) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    let mut doc: Value =
        serde_json::from_str(&header.metadata().as_ref().unwrap()[METADATA_KEY]).unwrap();
    let mut tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut doc, &mut tensors);
    if resum {
        doc.as_object_mut().unwrap().remove("metadata_checksum");
        let sums: serde_json::Map<String, Value> = tensors
            .iter()
            .map(|(n, _, _, b)| {
                (
                    n.clone(),
                    Value::String(format!("{:08x}", crc32fast::hash(b))),
                )
            })
            .collect();
        doc["checksums"] = Value::Object(sums);
        let sum = format!("{:08x}", crc32fast::hash(doc.to_string().as_bytes()));
        doc["metadata_checksum"] = Value::String(sum);
    }
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let meta = HashMap::from([(METADATA_KEY.to_string(), doc.to_string())]);
    safetensors::serialize(views, Some(meta)).unwrap()
}

#[test]
fn hostile_and_inconsistent_files_are_typed_errors() {
    let model = Policy::default().apply(&model_set()).unwrap();
    let good = model.to_bytes().unwrap();
    let load = |b: &[u8]| QuantizedModel::from_bytes(b).expect_err("an error");
    let q = "layer.0.attention.query.weight";
    // Another version, another format, no metadata at all (a float model).
    let e = load(&rewrite(&good, false, |d, _| {
        d["format_version"] = 2.into()
    }));
    assert!(matches!(e, Error::UnsupportedVersion { .. }), "{e}");
    let e = load(&rewrite(&good, true, |d, _| d["format"] = "gguf".into()));
    assert!(matches!(e, Error::File { .. }), "{e}");
    let float_file = safetensors::serialize(
        vec![(
            "w",
            safetensors::tensor::TensorView::new(Dtype::F32, vec![1], &[0u8; 4]).unwrap(),
        )],
        None,
    )
    .unwrap();
    assert!(matches!(load(&float_file), Error::NotQuantized { .. }));
    // The metadata edited without its checksum: refused as corrupt.
    let e = load(&rewrite(&good, false, |d, _| {
        d["layers"][0]["name"] = "other".into()
    }));
    assert!(matches!(e, Error::Checksum { .. }), "{e}");
    // A tensor's bytes changed: the checksum says so.
    let e = load(&rewrite(&good, false, |_, t| {
        let w = t.iter_mut().find(|(n, ..)| n == q).unwrap();
        w.3[5] ^= 1;
    }));
    assert!(
        matches!(e, Error::Checksum { ref tensor, .. } if tensor == q),
        "{e}"
    );
    // A zero, negative or NaN scale, with valid checksums: refused by the weights' checks.
    for bad in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        let e = load(&rewrite(&good, true, |_, t| {
            let s = t
                .iter_mut()
                .find(|(n, ..)| n == &format!("{q}_scale"))
                .unwrap();
            s.3[..4].copy_from_slice(&bad.to_le_bytes());
        }));
        assert!(matches!(e, Error::BadScale { .. }), "{bad}: {e}");
    }
    // A missing tensor, a wrong dtype, a wrong shape, a stray tensor.
    let e = load(&rewrite(&good, true, |_, t| t.retain(|(n, ..)| n != q)));
    assert!(matches!(e, Error::MissingTensor { .. }), "{e}");
    let e = load(&rewrite(&good, true, |_, t| {
        let w = t.iter_mut().find(|(n, ..)| n == q).unwrap();
        w.1 = Dtype::U8;
    }));
    assert!(matches!(e, Error::TensorKind { .. }), "{e}");
    let e = load(&rewrite(&good, true, |_, t| {
        let w = t.iter_mut().find(|(n, ..)| n == q).unwrap();
        w.2 = vec![16, 64];
    }));
    assert!(matches!(e, Error::TensorKind { .. }), "{e}");
    let e = load(&rewrite(&good, true, |_, t| {
        t.push(("stray".into(), Dtype::F32, vec![1], vec![0; 4]))
    }));
    assert!(matches!(e, Error::File { .. }), "{e}");
    // Metadata that lies: a layer shape beyond the tensor, an unknown mode, a non-array.
    let e = load(&rewrite(&good, true, |d, _| {
        d["layers"][0]["shape"] = serde_json::json!([1u64 << 40, 1u64 << 40])
    }));
    assert!(
        matches!(e, Error::TensorKind { .. } | Error::File { .. }),
        "{e}"
    );
    let e = load(&rewrite(&good, true, |d, _| {
        d["layers"][0]["mode"] = "int4".into()
    }));
    assert!(matches!(e, Error::File { .. }), "{e}");
    let e = load(&rewrite(&good, true, |d, _| d["layers"] = 7.into()));
    assert!(matches!(e, Error::File { .. }), "{e}");
    // A header that declares far more data than the file holds.
    let mut huge = good.clone();
    huge.truncate(8 + 64);
    assert!(QuantizedModel::from_bytes(&huge).is_err());
}

/// The fuzz seeds are written by `fuzz/make_seeds.py` from the format's description alone (an
/// independent writer in Python): they load, with the layers they declare.
#[test]
fn files_written_from_the_format_description_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/quantized_model");
    let m = QuantizedModel::load(dir.join("hybrid_and_f16")).unwrap();
    let fc = m.layer("fc").unwrap();
    assert_eq!(
        (fc.weights().mode(), fc.weights().shape()),
        (Mode::Hybrid, [4, 8])
    );
    assert_eq!(fc.bias(), Some(&[0.5f32, -0.5, 0.0, 2.0][..]));
    assert_eq!(m.layer("up").unwrap().weights().mode(), Mode::Float16);
    assert_eq!(m.kept_names().collect::<Vec<_>>(), ["norm.weight"]);
    let t = QuantizedModel::load(dir.join("per_tensor")).unwrap();
    let l = t.layer("t").unwrap();
    assert_eq!(
        (l.weights().mode(), l.weights().granularity()),
        (Mode::WeightOnlyInt8, Granularity::PerTensor)
    );
    let layer = t.linear("t", &LinearOptions::default().threads(1)).unwrap();
    assert_eq!(layer.in_features(), 16);
}
