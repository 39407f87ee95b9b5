//! Golden cases made by the real TensorFlow Lite: the `.npz` schema of `fixtures/` and its
//! validation.
//!
//! A hybrid case holds exactly these keys (see `fixtures/README.md`): `input` f32 `[..., K]`,
//! `weights` f32 `[N, K]`, `weights_q` i8 `[N, K]`, `weight_scales` f32 `[N]` or `[1]`, an
//! optional `bias` f32 `[N]`, the i32 0-d flags `asymmetric_inputs`, `activation` and
//! `keep_num_dims`, and the f32 outputs `expected` (TFLite's built-in kernel),
//! `expected_xnnpack` (the XNNPACK delegate) and `expected_float` (the float model).
//!
//! A full-integer case (recognised by its `input_q` key) holds exactly: `input_q` i8
//! `[..., K]`, the 0-d `input_scale` f32 and `input_zero_point` i32, `weights_q` i8 `[N, K]`,
//! `weight_scales` f32 `[N]` or `[1]`, an optional `bias_q` i32 `[N]`, the 0-d `output_scale`
//! f32, `output_zero_point` i32 and `activation` i32, and `expected_q` i8 `[..., N]` (TFLite's
//! optimized int8 kernel).

use std::path::{Path, PathBuf};

use ndarray::{Array0, Array1, Array2, ArrayD, Ix0, Ix1, Ix2, IxDyn};

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::npz::NpzArchive;

/// The keys of a hybrid case (`bias` may be absent).
pub const HYBRID_KEYS: [&str; 11] = [
    "input",
    "weights",
    "weights_q",
    "weight_scales",
    "bias",
    "asymmetric_inputs",
    "activation",
    "keep_num_dims",
    "expected",
    "expected_xnnpack",
    "expected_float",
];

/// The keys of a full-integer case (`bias_q` may be absent).
pub const INTEGER_KEYS: [&str; 10] = [
    "input_q",
    "input_scale",
    "input_zero_point",
    "weights_q",
    "weight_scales",
    "bias_q",
    "output_scale",
    "output_zero_point",
    "activation",
    "expected_q",
];

/// One full-integer (int8 in, int8 out) fully-connected case.
#[derive(Debug, Clone)]
pub struct IntegerCase {
    /// The file it came from.
    pub path: PathBuf,
    /// int8 input `[..., K]`.
    pub input_q: ArrayD<i8>,
    /// Input scale.
    pub input_scale: f32,
    /// Input zero point, in `[-128, 127]`.
    pub input_zero_point: i32,
    /// int8 weights `[N, K]` (zero point 0).
    pub weights_q: Array2<i8>,
    /// Weight scales, `[N]` or `[1]`.
    pub weight_scales: Array1<f32>,
    /// Optional i32 bias `[N]` with scale `input_scale * weight_scales[n]`.
    pub bias_q: Option<Array1<i32>>,
    /// Output scale.
    pub output_scale: f32,
    /// Output zero point, in `[-128, 127]`.
    pub output_zero_point: i32,
    /// The fused activation.
    pub activation: Activation,
    /// TFLite's int8 output `[..., N]`.
    pub expected_q: ArrayD<i8>,
}

impl IntegerCase {
    /// Depth K.
    pub fn k(&self) -> usize {
        self.weights_q.ncols()
    }

    /// Output channels N.
    pub fn n(&self) -> usize {
        self.weights_q.nrows()
    }

    /// The case's file name without directory and extension.
    pub fn name(&self) -> String {
        case_name(&self.path)
    }
}

/// One hybrid fully-connected case.
#[derive(Debug, Clone)]
pub struct HybridCase {
    /// The file it came from.
    pub path: PathBuf,
    /// Float input `[..., K]`.
    pub input: ArrayD<f32>,
    /// Float weights `[N, K]`.
    pub weights: Array2<f32>,
    /// The converter's int8 weights `[N, K]`.
    pub weights_q: Array2<i8>,
    /// The converter's scales, `[N]` or `[1]`.
    pub weight_scales: Array1<f32>,
    /// Optional bias `[N]`.
    pub bias: Option<Array1<f32>>,
    /// `asymmetric_quantize_inputs` of the op.
    pub asymmetric_inputs: bool,
    /// The fused activation.
    pub activation: Activation,
    /// `keep_num_dims` of the op: the output keeps the input's leading dimensions.
    pub keep_num_dims: bool,
    /// Output of TFLite's built-in kernel.
    pub expected: ArrayD<f32>,
    /// Output of TFLite with its default XNNPACK delegate.
    pub expected_xnnpack: ArrayD<f32>,
    /// Output of the float model.
    pub expected_float: ArrayD<f32>,
}

impl HybridCase {
    /// Depth K.
    pub fn k(&self) -> usize {
        self.weights.ncols()
    }

    /// Output channels N.
    pub fn n(&self) -> usize {
        self.weights.nrows()
    }

    /// The case's file name without directory and extension.
    pub fn name(&self) -> String {
        case_name(&self.path)
    }

    /// The output shape TFLite produces for this case.
    pub fn output_shape(&self) -> Vec<usize> {
        let shape = self.input.shape();
        if self.keep_num_dims {
            let mut out = shape.to_vec();
            *out.last_mut().expect("validated rank >= 1") = self.n();
            out
        } else {
            vec![shape[..shape.len() - 1].iter().product(), self.n()]
        }
    }
}

/// A golden case of any kind this crate can check.
#[derive(Debug, Clone)]
#[non_exhaustive]
// Cases are loaded one at a time; boxing would only complicate matching on them.
#[allow(clippy::large_enum_variant)]
pub enum Case {
    /// A hybrid fully-connected case (f32 input, int8 weights, f32 output).
    Hybrid(HybridCase),
    /// A full-integer fully-connected case (int8 input, weights and output).
    Integer(IntegerCase),
}

/// The file stem of `path`, used as the case name.
pub fn case_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Reads and validates one case file.
///
/// Every problem (not an npz, truncated, a missing or unexpected key, a wrong dtype, rank or
/// shape, an unknown activation code, a flag that is not 0 or 1) is an [`Error::File`] that names
/// the key and what is wrong.
pub fn load(path: &Path) -> Result<Case> {
    let archive = NpzArchive::open(path)?;
    if archive.contains("input_q") {
        return load_integer(&archive).map(Case::Integer);
    }
    load_hybrid(&archive).map(Case::Hybrid)
}

fn file_error(path: &Path, message: String) -> Error {
    Error::File {
        path: path.to_path_buf(),
        message,
    }
}

fn load_hybrid(a: &NpzArchive) -> Result<HybridCase> {
    let path = a.path();
    let fail = |message: String| file_error(path, message);
    if let Some(extra) = a.keys().find(|k| !HYBRID_KEYS.contains(k)) {
        return Err(fail(format!("unexpected key `{extra}` in a hybrid case")));
    }
    let input: ArrayD<f32> = a.array::<f32, IxDyn>("input")?;
    let weights: Array2<f32> = a.array::<f32, Ix2>("weights")?;
    let weights_q: Array2<i8> = a.array::<i8, Ix2>("weights_q")?;
    let weight_scales: Array1<f32> = a.array::<f32, Ix1>("weight_scales")?;
    let bias: Option<Array1<f32>> = a.optional_array::<f32, Ix1>("bias")?;
    let flag = |key: &str| -> Result<i32> {
        let v: Array0<i32> = a.array::<i32, Ix0>(key)?;
        Ok(v.into_scalar())
    };
    let bool_flag = |key: &str| -> Result<bool> {
        match flag(key)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(fail(format!("array `{key}`: expected 0 or 1, got {v}"))),
        }
    };
    let asymmetric_inputs = bool_flag("asymmetric_inputs")?;
    let keep_num_dims = bool_flag("keep_num_dims")?;
    let activation = Activation::from_code(flag("activation")? as i64)
        .map_err(|e| fail(format!("array `activation`: {e}")))?;
    let expected = a.array::<f32, IxDyn>("expected")?;
    let expected_xnnpack = a.array::<f32, IxDyn>("expected_xnnpack")?;
    let expected_float = a.array::<f32, IxDyn>("expected_float")?;

    let (n, k) = weights.dim();
    let shape_err = |key: &str, want: String, got: &[usize]| {
        fail(format!("array `{key}`: expected shape {want}, got {got:?}"))
    };
    if weights_q.dim() != (n, k) {
        return Err(shape_err(
            "weights_q",
            format!("[{n}, {k}]"),
            weights_q.shape(),
        ));
    }
    check_layer_shapes(
        path,
        ("weights", weights.shape()),
        weight_scales.shape(),
        bias.as_ref().map(|b| ("bias", b.shape())),
        ("input", input.shape()),
    )?;
    let case = HybridCase {
        path: path.to_path_buf(),
        input,
        weights,
        weights_q,
        weight_scales,
        bias,
        asymmetric_inputs,
        activation,
        keep_num_dims,
        expected,
        expected_xnnpack,
        expected_float,
    };
    let out_shape = case.output_shape();
    for (key, arr) in [
        ("expected", &case.expected),
        ("expected_xnnpack", &case.expected_xnnpack),
        ("expected_float", &case.expected_float),
    ] {
        if arr.shape() != out_shape.as_slice() {
            return Err(shape_err(key, format!("{out_shape:?}"), arr.shape()));
        }
    }
    Ok(case)
}

fn load_integer(a: &NpzArchive) -> Result<IntegerCase> {
    let path = a.path();
    let fail = |message: String| file_error(path, message);
    if let Some(extra) = a.keys().find(|k| !INTEGER_KEYS.contains(k)) {
        return Err(fail(format!(
            "unexpected key `{extra}` in a full-integer case"
        )));
    }
    let input_q: ArrayD<i8> = a.array::<i8, IxDyn>("input_q")?;
    let input_scale = a.array::<f32, Ix0>("input_scale")?.into_scalar();
    let input_zero_point = a.array::<i32, Ix0>("input_zero_point")?.into_scalar();
    let weights_q: Array2<i8> = a.array::<i8, Ix2>("weights_q")?;
    let weight_scales: Array1<f32> = a.array::<f32, Ix1>("weight_scales")?;
    let bias_q: Option<Array1<i32>> = a.optional_array::<i32, Ix1>("bias_q")?;
    let output_scale = a.array::<f32, Ix0>("output_scale")?.into_scalar();
    let output_zero_point = a.array::<i32, Ix0>("output_zero_point")?.into_scalar();
    let activation = Activation::from_code(a.array::<i32, Ix0>("activation")?.into_scalar() as i64)
        .map_err(|e| fail(format!("array `activation`: {e}")))?;
    let expected_q: ArrayD<i8> = a.array::<i8, IxDyn>("expected_q")?;

    for (key, s) in [("input_scale", input_scale), ("output_scale", output_scale)] {
        if !(s.is_finite() && s > 0.0) {
            return Err(fail(format!(
                "array `{key}`: a scale must be finite and > 0, got {s}"
            )));
        }
    }
    for (key, z) in [
        ("input_zero_point", input_zero_point),
        ("output_zero_point", output_zero_point),
    ] {
        if !(-128..=127).contains(&z) {
            return Err(fail(format!(
                "array `{key}`: an int8 zero point must be in [-128, 127], got {z}"
            )));
        }
    }
    let n = weights_q.nrows();
    let shape_err = |key: &str, want: String, got: &[usize]| {
        fail(format!("array `{key}`: expected shape {want}, got {got:?}"))
    };
    check_layer_shapes(
        path,
        ("weights_q", weights_q.shape()),
        weight_scales.shape(),
        bias_q.as_ref().map(|b| ("bias_q", b.shape())),
        ("input_q", input_q.shape()),
    )?;
    let mut out_shape = input_q.shape().to_vec();
    *out_shape.last_mut().expect("rank >= 1") = n;
    if expected_q.shape() != out_shape.as_slice() {
        return Err(shape_err(
            "expected_q",
            format!("{out_shape:?}"),
            expected_q.shape(),
        ));
    }
    Ok(IntegerCase {
        path: path.to_path_buf(),
        input_q,
        input_scale,
        input_zero_point,
        weights_q,
        weight_scales,
        bias_q,
        output_scale,
        output_zero_point,
        activation,
        expected_q,
    })
}

/// The shape rules both case kinds share, for weights `[N, K]`: N >= 1, scales `[N]` or `[1]`,
/// a bias `[N]`, an input `[..., K]`. Each argument is `(key, shape)`.
fn check_layer_shapes(
    path: &Path,
    weights: (&str, &[usize]),
    scales: &[usize],
    bias: Option<(&str, &[usize])>,
    input: (&str, &[usize]),
) -> Result<()> {
    let err = |key: &str, want: String, got: &[usize]| {
        file_error(
            path,
            format!("array `{key}`: expected shape {want}, got {got:?}"),
        )
    };
    let (n, k) = (weights.1[0], weights.1[1]);
    if n == 0 {
        return Err(err(weights.0, "[N, K] with N >= 1".into(), weights.1));
    }
    if scales != [n] && scales != [1] {
        return Err(err("weight_scales", format!("[{n}] or [1]"), scales));
    }
    if let Some((key, b)) = bias {
        if b != [n] {
            return Err(err(key, format!("[{n}]"), b));
        }
    }
    if input.1.last() != Some(&k) {
        return Err(err(input.0, format!("[..., {k}]"), input.1));
    }
    Ok(())
}

/// Collects the `.npz` files named by `paths`: files as given, directories searched
/// recursively, sorted by path within each directory.
pub fn collect_case_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| file_error(dir, format!("cannot list directory: {e}")))?;
    for entry in entries {
        let path = entry
            .map_err(|e| file_error(dir, format!("cannot list directory: {e}")))?
            .path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "npz") {
            out.push(path);
        }
    }
    Ok(())
}
