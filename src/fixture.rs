//! Golden cases made by the real TensorFlow Lite: the `.npz` schema of `fixtures/` and its
//! validation.
//!
//! A hybrid case holds exactly these keys (see `fixtures/README.md`): `input` f32 `[..., K]`,
//! `weights` f32 `[N, K]`, `weights_q` i8 `[N, K]`, `weight_scales` f32 `[N]` or `[1]`, an
//! optional `bias` f32 `[N]`, the i32 0-d flags `asymmetric_inputs`, `activation` and
//! `keep_num_dims`, and the f32 outputs `expected` (TFLite's built-in kernel),
//! `expected_xnnpack` (the XNNPACK delegate) and `expected_float` (the float model), and
//! optionally `flavour` and `xnnpack_flavour` (u8 ASCII: the names of the [`Flavour`]s that
//! reproduce `expected` and `expected_xnnpack`; absent means `tflite-x86` and `xnnpack`).
//!
//! A full-integer case (recognised by its `input_q` key) holds exactly: `input_q` i8
//! `[..., K]`, the 0-d `input_scale` f32 and `input_zero_point` i32, `weights_q` i8 `[N, K]`,
//! `weight_scales` f32 `[N]` or `[1]`, an optional `bias_q` i32 `[N]`, the 0-d `output_scale`
//! f32, `output_zero_point` i32 and `activation` i32, and `expected_q` i8 `[..., N]` (TFLite's
//! optimized int8 kernel).

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use ndarray::{Array0, Array1, Array2, ArrayD, Ix0, Ix1, Ix2, IxDyn};

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::flavour::Flavour;
use crate::npz::{NpzArchive, ReadLimits};

/// The keys of a hybrid case (`bias`, `flavour` and `xnnpack_flavour` may be absent).
pub const HYBRID_KEYS: [&str; 13] = [
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
    "flavour",
    "xnnpack_flavour",
];

/// The optional keys of a hybrid case.
const HYBRID_OPTIONAL: [&str; 3] = ["bias", "flavour", "xnnpack_flavour"];

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
    /// The flavour that reproduces `expected`, when the case names its build (key
    /// `flavour`, the flavour's name as u8 ASCII); `None` means [`Flavour::TfliteX86`].
    pub flavour: Option<Flavour>,
    /// The flavour that reproduces `expected_xnnpack` (key `xnnpack_flavour`); `None` means
    /// [`Flavour::Xnnpack`].
    pub xnnpack_flavour: Option<Flavour>,
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

/// The default limit of one case file, decompressed (256 MiB): the largest shipped case is
/// under 1 MiB, and a case big enough to matter for a check still fits many times over.
/// [`load_with`] (and `hybridq check --max-case-mib`) takes another.
pub const MAX_CASE_BYTES: u64 = 256 << 20;

/// Reads and validates one case file, with the default limit [`MAX_CASE_BYTES`].
///
/// Every problem (not a regular file, not an npz, truncated, a missing or unexpected key, an
/// archive above the limit, a wrong dtype, rank or shape, an unknown activation code, a flag
/// that is not 0 or 1) is an [`Error::File`] that names the key and what is wrong. The keys are
/// checked before any array is read or decompressed.
pub fn load(path: &Path) -> Result<Case> {
    load_with(path, ReadLimits::with_total(MAX_CASE_BYTES))
}

/// [`load`] with other limits.
pub fn load_with(path: &Path, limits: ReadLimits) -> Result<Case> {
    from_archive(&NpzArchive::open_with(path, limits)?)
}

/// [`load`] from bytes in memory (`name` stands for the path in messages): a case file as
/// `hybridq check` would read it.
pub fn load_bytes(name: &Path, bytes: Vec<u8>, limits: ReadLimits) -> Result<Case> {
    from_archive(&NpzArchive::from_bytes(name, bytes, limits)?)
}

fn from_archive<R: Read + Seek>(archive: &NpzArchive<R>) -> Result<Case> {
    if archive.contains("input_q") {
        check_keys(archive, &INTEGER_KEYS, &["bias_q"], "a full-integer case")?;
        return load_integer(archive).map(Case::Integer);
    }
    check_keys(archive, &HYBRID_KEYS, &HYBRID_OPTIONAL, "a hybrid case")?;
    load_hybrid(archive).map(Case::Hybrid)
}

/// Every key of the archive is one of `keys`, and every one of `keys` not in `optional` is
/// there.
fn check_keys<R: Read + Seek>(
    a: &NpzArchive<R>,
    keys: &[&str],
    optional: &[&str],
    kind: &str,
) -> Result<()> {
    let fail = |message: String| file_error(a.path(), message);
    if let Some(extra) = a.keys().find(|k| !keys.contains(k)) {
        return Err(fail(format!("unexpected key `{extra}` in {kind}")));
    }
    if let Some(missing) = keys
        .iter()
        .find(|&&k| !optional.contains(&k) && !a.contains(k))
    {
        return Err(fail(format!("array `{missing}`: missing")));
    }
    Ok(())
}

fn file_error(path: &Path, message: String) -> Error {
    Error::File {
        path: path.to_path_buf(),
        message,
    }
}

fn load_hybrid<R: Read + Seek>(a: &NpzArchive<R>) -> Result<HybridCase> {
    let path = a.path();
    let fail = |message: String| file_error(path, message);
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
    let flavour_key = |key: &str| -> Result<Option<Flavour>> {
        let Some(bytes) = a.optional_array::<u8, Ix1>(key)? else {
            return Ok(None);
        };
        let name = std::str::from_utf8(bytes.as_slice().unwrap_or(&[]))
            .map_err(|_| fail(format!("array `{key}`: not ASCII")))?
            .to_string();
        name.parse::<Flavour>()
            .map(Some)
            .map_err(|e| fail(format!("array `{key}`: {e}")))
    };
    let flavour = flavour_key("flavour")?;
    let xnnpack_flavour = flavour_key("xnnpack_flavour")?;
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
        flavour,
        xnnpack_flavour,
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

fn load_integer<R: Read + Seek>(a: &NpzArchive<R>) -> Result<IntegerCase> {
    let path = a.path();
    let fail = |message: String| file_error(path, message);
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

/// What a search for case files found: a case file to load, or an entry it could not read.
#[derive(Debug)]
pub struct Found {
    /// The entry's path.
    pub path: PathBuf,
    /// Why it cannot be a case (a directory that cannot be listed, a FIFO or device named
    /// `*.npz`, a broken link, a path too long to open), or `None` for a case file to load.
    pub problem: Option<Error>,
}

/// Searches `paths` for case files: files as given, directories recursively, the files of
/// each argument sorted by path.
///
/// The walk follows symbolic links but visits every directory and every file once (a link to
/// `.` or a second hard link adds nothing, so no loop can make it run forever), never opens
/// anything but directories (a FIFO or device is reported from its type, never opened), and
/// reports every entry it could not read as a [`Found`] with a problem, so that a caller can
/// count it as a failed case instead of skipping it in silence.
pub fn find_cases(paths: &[PathBuf]) -> Vec<Found> {
    let mut seen = Seen::default();
    let mut out = Vec::new();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(meta) if meta.is_dir() => {
                let mut found = Vec::new();
                walk(p, &meta, &mut seen, &mut found);
                found.sort_by(|a: &Found, b: &Found| a.path.cmp(&b.path));
                out.extend(found);
            }
            // A file named on the command line is taken whatever its name; `load` refuses
            // anything that is not a regular file.
            Ok(meta) => {
                if seen.first_visit(p, &meta) {
                    out.push(Found {
                        path: p.clone(),
                        problem: None,
                    });
                }
            }
            Err(e) => out.push(Found {
                path: p.clone(),
                problem: Some(file_error(p, format!("cannot open: {e}"))),
            }),
        }
    }
    out
}

/// The case files named by `paths` ([`find_cases`]), or the first entry that could not be read.
pub fn collect_case_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    find_cases(paths)
        .into_iter()
        .map(|f| match f.problem {
            None => Ok(f.path),
            Some(e) => Err(e),
        })
        .collect()
}

/// The files and directories a walk has visited, by identity (device and inode on Unix, the
/// canonical path elsewhere).
#[derive(Default)]
struct Seen(std::collections::HashSet<(u64, u64, PathBuf)>);

impl Seen {
    /// Records the entry and says whether this is its first visit.
    fn first_visit(&mut self, path: &Path, meta: &std::fs::Metadata) -> bool {
        #[cfg(unix)]
        let key = {
            use std::os::unix::fs::MetadataExt;
            let _ = path;
            (meta.dev(), meta.ino(), PathBuf::new())
        };
        #[cfg(not(unix))]
        let key = {
            let _ = meta;
            (
                0,
                0,
                std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            )
        };
        self.0.insert(key)
    }
}

/// Walks `root` (already known to be a directory) iteratively, so that a deep tree cannot
/// exhaust the stack.
fn walk(root: &Path, root_meta: &std::fs::Metadata, seen: &mut Seen, out: &mut Vec<Found>) {
    let problem = |path: &Path, message: String| Found {
        path: path.to_path_buf(),
        problem: Some(file_error(path, message)),
    };
    if !seen.first_visit(root, root_meta) {
        return;
    }
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                out.push(problem(&dir, format!("cannot list directory: {e}")));
                continue;
            }
        };
        for entry in entries {
            let path = match entry {
                Ok(entry) => entry.path(),
                Err(e) => {
                    out.push(problem(&dir, format!("cannot list directory: {e}")));
                    continue;
                }
            };
            let is_npz = path.extension().is_some_and(|e| e == "npz");
            // `metadata` follows links: a link is taken as what it points to.
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => {
                    if seen.first_visit(&path, &meta) {
                        pending.push(path);
                    }
                }
                Ok(meta) if is_npz => {
                    if !meta.is_file() {
                        let kind = crate::npz::describe_file_type(&meta.file_type());
                        out.push(problem(&path, format!("not a regular file ({kind})")));
                    } else if seen.first_visit(&path, &meta) {
                        out.push(Found {
                            path,
                            problem: None,
                        });
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    // A broken link that is not named as a case is not a case; anything else
                    // that cannot be looked at (a path too long to open, no permission) might
                    // hide cases, so it is reported.
                    let dangling = e.kind() == std::io::ErrorKind::NotFound
                        && std::fs::symlink_metadata(&path).is_ok();
                    if is_npz || !dangling {
                        out.push(problem(&path, format!("cannot open: {e}")));
                    }
                }
            }
        }
    }
}
