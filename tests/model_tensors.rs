//! Float tensors from safetensors files: f32, f16 and bf16 widened exactly, typed errors for a
//! missing tensor, a wrong dtype or rank, and truncated, corrupt or hostile files.
#![cfg(feature = "safetensors")]

use hybridq::model::{SourceDtype, TensorSet};
use hybridq::Error;

/// A safetensors file from `(name, dtype, shape, bytes)` entries, laid out back to back.
fn file(entries: &[(&str, &str, &[usize], Vec<u8>)]) -> Vec<u8> {
    let mut header = String::from("{");
    let mut data = Vec::new();
    for (i, (name, dtype, shape, bytes)) in entries.iter().enumerate() {
        let (start, end) = (data.len(), data.len() + bytes.len());
        data.extend_from_slice(bytes);
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            r#""{name}":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{start},{end}]}}"#
        ));
    }
    header.push('}');
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

fn le<T: Copy, const N: usize>(values: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|&v| f(v)).collect()
}

#[test]
fn float_dtypes_are_widened_exactly() {
    let f32s = [1.5f32, -0.0, f32::MAX, f32::MIN_POSITIVE / 8.0, -3.25, 7.0];
    let f16s: Vec<half::f16> = [0.5f32, -65504.0, 6.1e-5, 1.0 / 3.0]
        .iter()
        .map(|&v| half::f16::from_f32(v))
        .collect();
    let bf16s: Vec<half::bf16> = [3.0e38f32, -1.0e-38, 0.1]
        .iter()
        .map(|&v| half::bf16::from_f32(v))
        .collect();
    let bytes = file(&[
        ("a.weight", "F32", &[2, 3], le(&f32s, f32::to_le_bytes)),
        ("b", "F16", &[4], le(&f16s, half::f16::to_le_bytes)),
        ("c", "BF16", &[1, 3], le(&bf16s, half::bf16::to_le_bytes)),
    ]);
    let set = TensorSet::from_bytes(&bytes).unwrap();
    assert_eq!(set.names().collect::<Vec<_>>(), ["a.weight", "b", "c"]);
    let a = set.matrix("a.weight").unwrap();
    assert_eq!(a.dim(), (2, 3));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(a.as_slice().unwrap()), bits(&f32s));
    let b = set.get("b").unwrap();
    assert_eq!(b.dtype, SourceDtype::F16);
    assert_eq!(
        bits(&b.data),
        bits(&f16s.iter().map(|v| v.to_f32()).collect::<Vec<_>>())
    );
    let c = set.get("c").unwrap();
    assert_eq!(c.dtype, SourceDtype::Bf16);
    // bf16 -> f32 is the 16 bits shifted up: exact.
    let want: Vec<u32> = bf16s.iter().map(|v| (v.to_bits() as u32) << 16).collect();
    assert_eq!(bits(&c.data), want);
    assert_eq!(c.view().shape(), &[1, 3]);
}

#[test]
fn missing_tensors_wrong_dtypes_and_ranks_are_typed_errors() {
    let bytes = file(&[
        ("ids", "I32", &[2], le(&[1i32, 2], i32::to_le_bytes)),
        ("v", "F32", &[3], le(&[1.0f32, 2.0, 3.0], f32::to_le_bytes)),
    ]);
    let set = TensorSet::from_bytes(&bytes).unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set.skipped().collect::<Vec<_>>(), [("ids", "I32")]);
    match set.get("nope") {
        Err(Error::MissingTensor { name, .. }) => assert_eq!(name, "nope"),
        other => panic!("{other:?}"),
    }
    match set.get("ids") {
        Err(Error::TensorKind { name, got, .. }) => {
            assert_eq!((name.as_str(), got.as_str()), ("ids", "I32"))
        }
        other => panic!("{other:?}"),
    }
    match set.matrix("v") {
        Err(e @ Error::TensorKind { .. }) => assert!(e.to_string().contains("rank 1"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn truncated_corrupt_and_hostile_files_are_file_errors() {
    let good = file(&[("w", "F32", &[4, 4], le(&[0.25f32; 16], f32::to_le_bytes))]);
    assert!(TensorSet::from_bytes(&good).is_ok());
    // Every truncation.
    for len in 0..good.len() {
        match TensorSet::from_bytes(&good[..len]) {
            Err(Error::File { .. }) => {}
            other => panic!("truncated to {len}: {other:?}"),
        }
    }
    // Every single-byte corruption: an error or a valid set, never a panic.
    for i in 0..good.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            let _ = TensorSet::from_bytes(&bad);
        }
    }
    // A header length of 2^64 - 1, and a tensor declaring more data than the file holds.
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    assert!(matches!(
        TensorSet::from_bytes(&huge),
        Err(Error::File { .. })
    ));
    let lying = file(&[("w", "F32", &[1 << 40, 1 << 20], vec![0; 16])]);
    assert!(matches!(
        TensorSet::from_bytes(&lying),
        Err(Error::File { .. })
    ));
    // Overlapping offsets and a shape whose size overflows.
    let overflow = file(&[("w", "F32", &[usize::MAX, 2], vec![0; 8])]);
    assert!(matches!(
        TensorSet::from_bytes(&overflow),
        Err(Error::File { .. })
    ));
}

#[test]
fn paths_that_are_not_files_are_file_errors() {
    let dir = std::env::temp_dir();
    assert!(matches!(TensorSet::read(&dir), Err(Error::File { .. })));
    assert!(matches!(
        TensorSet::read(dir.join("hybridq-no-such-file.safetensors")),
        Err(Error::File { .. })
    ));
    let path = dir.join(format!(
        "hybridq-tensors-{}.safetensors",
        std::process::id()
    ));
    std::fs::write(
        &path,
        file(&[("w", "F32", &[1, 1], le(&[2.0f32], f32::to_le_bytes))]),
    )
    .unwrap();
    let set = TensorSet::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(set.matrix("w").unwrap()[[0, 0]], 2.0);
}

/// `.npz` weights (numpy's `savez`): f32 arrays by key, other dtypes skipped, a truncated
/// archive a typed error; the set quantizes like one read from safetensors.
#[cfg(feature = "npz")]
#[test]
fn npz_weights_load_into_a_tensor_set() {
    use ndarray_npy::NpzWriter;
    let dir = std::env::temp_dir().join(format!("hybridq-npz-set-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("w.npz");
    let w = ndarray::Array2::from_shape_fn((64, 32), |(i, j)| (i as f32 - j as f32) / 50.0);
    let mut npz = NpzWriter::new(std::fs::File::create(&path).unwrap());
    npz.add_array("fc.weight", &w).unwrap();
    npz.add_array("fc.bias", &ndarray::Array1::<f32>::zeros(64))
        .unwrap();
    npz.add_array("ids", &ndarray::arr1(&[1i64, 2])).unwrap();
    npz.finish().unwrap();
    let set = TensorSet::read_npz(&path).unwrap();
    assert_eq!(set.matrix("fc.weight").unwrap(), w);
    assert_eq!(set.skipped().collect::<Vec<_>>(), [("ids", "i64")]);
    assert!(matches!(set.get("ids"), Err(Error::TensorKind { .. })));
    let model = hybridq::model::Policy::default().apply(&set).unwrap();
    assert_eq!(model.layer("fc").unwrap().bias_name(), Some("fc.bias"));
    let bytes = std::fs::read(&path).unwrap();
    for len in [0, 10, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(dir.join("cut.npz"), &bytes[..len]).unwrap();
        assert!(
            matches!(
                TensorSet::read_npz(dir.join("cut.npz")),
                Err(Error::File { .. })
            ),
            "{len}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The header-first reader of files (`TensorSet::read`) accepts exactly the files that the
/// in-memory parser (`TensorSet::from_bytes`, the crate's validation) accepts, with the same
/// tensors: on every truncation, every byte flipped in the header and the data, and hostile
/// headers (lengths past the file, sizes that overflow, gaps and overlaps).
#[test]
fn file_reader_agrees_with_the_in_memory_parser() {
    let good = file(&[
        (
            "b",
            "F16",
            &[2],
            le(
                &[half::f16::ONE, half::f16::NEG_ONE],
                half::f16::to_le_bytes,
            ),
        ),
        (
            "a",
            "F32",
            &[2, 2],
            le(&[1.0f32, 2.0, 3.0, 4.0], f32::to_le_bytes),
        ),
        ("ids", "I64", &[1], le(&[7i64], i64::to_le_bytes)),
        (
            "c",
            "BF16",
            &[1],
            le(&[half::bf16::from_f32(0.5)], half::bf16::to_le_bytes),
        ),
    ]);
    let mut cases: Vec<Vec<u8>> = (0..good.len()).map(|l| good[..l].to_vec()).collect();
    for i in 0..good.len() {
        for flip in [0x01u8, 0x20, 0x80] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            cases.push(bad);
        }
    }
    let mut long = good.clone();
    long.push(0);
    cases.push(long);
    cases.push(file(&[("w", "F32", &[usize::MAX, 2], vec![0; 8])]));
    cases.push(file(&[("w", "F32", &[1 << 40, 1 << 20], vec![0; 16])]));
    let mut huge = (u64::MAX).to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    cases.push(huge);
    let gap = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
    let mut gapped = (gap.len() as u64).to_le_bytes().to_vec();
    gapped.extend_from_slice(gap);
    gapped.extend_from_slice(&[0; 8]);
    cases.push(gapped);
    let path =
        std::env::temp_dir().join(format!("hybridq-agree-{}.safetensors", std::process::id()));
    let (mut accepted, mut refused) = (0, 0);
    for bytes in &cases {
        std::fs::write(&path, bytes).unwrap();
        let (from_file, in_memory) = (TensorSet::read(&path), TensorSet::from_bytes(bytes));
        match (&from_file, &in_memory) {
            (Ok(f), Ok(m)) => {
                accepted += 1;
                assert!(f.names().eq(m.names()) && f.skipped().eq(m.skipped()));
                for name in m.names() {
                    assert_eq!(f.get(name).unwrap(), m.get(name).unwrap());
                }
            }
            (Err(Error::File { .. }), Err(Error::File { .. })) => refused += 1,
            _ => panic!(
                "file {from_file:?} vs memory {in_memory:?} on {} bytes",
                bytes.len()
            ),
        }
    }
    std::fs::remove_file(&path).unwrap();
    assert!(
        accepted > 1 && refused > good.len(),
        "{accepted} accepted, {refused} refused"
    );
}

/// An `.npy` entry of numpy `float16` values (`descr`: `'<f2'` or `'>f2'`), written by hand as
/// numpy writes it (ndarray-npy cannot write f16).
#[cfg(feature = "npz")]
fn f16_npy(descr: &str, shape: &str, fortran: bool, bytes: &[u8]) -> Vec<u8> {
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(bytes);
    out
}

/// numpy `float16` arrays in an `.npz` are widened exactly (either byte order, C or Fortran
/// order); a truncated f16 entry is a typed error.
#[cfg(feature = "npz")]
#[test]
fn npz_f16_arrays_are_widened_exactly() {
    use std::io::Write;
    let values = [0.5f32, -65504.0, 6.1e-5, 1.0 / 3.0, 0.0, -2.0];
    let halves: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
    let le_bytes = le(&halves, half::f16::to_le_bytes);
    let be_bytes = le(&halves, half::f16::to_be_bytes);
    let dir = std::env::temp_dir().join(format!("hybridq-npz-f16-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, entries: &[(&str, Vec<u8>)]| {
        let path = dir.join(name);
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        for (key, bytes) in entries {
            zip.start_file(*key, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        path
    };
    let path = write(
        "f16.npz",
        &[
            ("c.npy", f16_npy("<f2", "(2, 3)", false, &le_bytes)),
            ("big.npy", f16_npy(">f2", "(2, 3)", false, &be_bytes)),
            ("fortran.npy", f16_npy("<f2", "(3, 2)", true, &le_bytes)),
        ],
    );
    let set = TensorSet::read_npz(&path).unwrap();
    let exact: Vec<f32> = halves.iter().map(|h| h.to_f32()).collect();
    for key in ["c", "big"] {
        let t = set.get(key).unwrap();
        assert_eq!(
            (t.shape.as_slice(), t.dtype),
            (&[2usize, 3][..], SourceDtype::F16)
        );
        assert_eq!(t.data, exact, "{key}");
    }
    // Fortran order: element (i, j) is value j * 3 + i.
    let f = set.matrix("fortran").unwrap();
    for ((i, j), &v) in f.indexed_iter() {
        assert_eq!(v, exact[j * 3 + i]);
    }
    let truncated = write(
        "short.npz",
        &[("w.npy", f16_npy("<f2", "(2, 3)", false, &le_bytes[..10]))],
    );
    assert!(matches!(
        TensorSet::read_npz(&truncated),
        Err(Error::File { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
