//! Named float tensors loaded from a safetensors file.
//!
//! A file is read header first: the header (at most 100 MB, parsed by the `safetensors`
//! crate's `Metadata`) is checked against the file's size (offsets back to back, sizes
//! matching dtype x shape, the data ending where the file ends) before any tensor is read, and
//! then each tensor is read on its own and widened to f32 (exact for f32, f16 and bf16), so
//! memory peaks at the widened tensors plus a 1 MiB read buffer, never the file twice.
//! Bytes already in memory go through the crate's own validation; both ways accept and refuse
//! the same files (a test compares them on every truncation and many corruptions). Tensors of
//! other dtypes are listed but cannot be read as floats.
//!
//! The file is not memory-mapped: a map is `unsafe` in Rust (the program's memory would change
//! if another process wrote the file), and every tensor is converted anyway, so a map would
//! save the 1 MiB read buffer at most.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::{ArrayView2, ArrayViewD, IxDyn};
use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// The float dtype a tensor was stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceDtype {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16 (the top half of an f32).
    Bf16,
}

impl SourceDtype {
    /// Bytes per value.
    pub fn bytes(self) -> usize {
        match self {
            SourceDtype::F32 => 4,
            SourceDtype::F16 | SourceDtype::Bf16 => 2,
        }
    }
}

/// A tensor widened to f32, with the dtype it was stored in.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatTensor {
    /// The shape (row-major).
    pub shape: Vec<usize>,
    /// The values, `shape.iter().product()` of them.
    pub data: Vec<f32>,
    /// The stored dtype.
    pub dtype: SourceDtype,
}

impl FloatTensor {
    /// The tensor as an n-dimensional view.
    pub fn view(&self) -> ArrayViewD<'_, f32> {
        ArrayViewD::from_shape(IxDyn(&self.shape), &self.data).expect("shape matches data")
    }
}

/// The float tensors of a file, by name (tensors of other dtypes are not kept, but named in
/// [`TensorSet::skipped`]).
///
/// ```
/// use hybridq::model::TensorSet;
/// // A safetensors file: 8-byte header length, JSON header, data (two f32: 1.0, -2.0).
/// let header = br#"{"w":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}"#;
/// let mut file = (header.len() as u64).to_le_bytes().to_vec();
/// file.extend_from_slice(header);
/// file.extend_from_slice(&1.0f32.to_le_bytes());
/// file.extend_from_slice(&(-2.0f32).to_le_bytes());
/// let set = TensorSet::from_bytes(&file).unwrap();
/// assert_eq!(set.matrix("w").unwrap(), ndarray::array![[1.0f32, -2.0]]);
/// assert!(set.matrix("missing").is_err());
/// assert!(TensorSet::from_bytes(&file[..file.len() - 1]).is_err()); // truncated
/// ```
#[derive(Clone, Debug, Default)]
pub struct TensorSet {
    tensors: BTreeMap<String, FloatTensor>,
    skipped: BTreeMap<String, String>,
}

impl TensorSet {
    /// Parses a safetensors file held in memory.
    ///
    /// Errors: [`Error::File`] (path `<memory>`) for a truncated or corrupt file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::parse(bytes, Path::new("<memory>"))
    }

    /// Reads and parses the safetensors file at `path`.
    ///
    /// Errors: [`Error::File`] for an unreadable, truncated or corrupt file, or a path that
    /// is not a regular file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file_error = |message: String| Error::File {
            path: path.to_path_buf(),
            message,
        };
        let mut file = open_regular_file(path)?;
        let len = file
            .metadata()
            .map_err(|e| file_error(e.to_string()))?
            .len();
        let corrupt = |what: &str| file_error(format!("not a valid safetensors file: {what}"));
        let mut n = [0u8; 8];
        read_at(&mut file, 0, &mut n).map_err(|_| corrupt("shorter than its header length"))?;
        let n = u64::from_le_bytes(n);
        if n > MAX_HEADER_BYTES || n > len.saturating_sub(8) {
            return Err(corrupt(&format!(
                "a header of {n} bytes in a file of {len}"
            )));
        }
        let mut header = vec![0u8; n as usize];
        read_at(&mut file, 8, &mut header).map_err(|e| file_error(e.to_string()))?;
        let header = std::str::from_utf8(&header).map_err(|e| corrupt(&e.to_string()))?;
        let metadata: Metadata =
            serde_json::from_str(header).map_err(|e| corrupt(&e.to_string()))?;
        let data_start = 8 + n;
        let data_len = checked_data_len(&metadata).map_err(|e| corrupt(&e))?;
        if data_start.checked_add(data_len as u64) != Some(len) {
            return Err(corrupt(&format!(
                "{data_len} bytes of tensor data declared, {} in the file",
                len - data_start
            )));
        }
        let mut set = TensorSet::default();
        let mut stored = Vec::new();
        for name in metadata.offset_keys() {
            let info = metadata.info(&name).expect("a key of the metadata");
            let Some(dtype) = source_dtype(info.dtype) else {
                set.skipped.insert(name, format!("{:?}", info.dtype));
                continue;
            };
            // Read and widened a chunk at a time (a whole number of values per chunk).
            let (s, e) = info.data_offsets;
            let mut data = Vec::with_capacity((e - s) / dtype.bytes());
            for at in (s..e).step_by(READ_CHUNK) {
                stored.resize((e - at).min(READ_CHUNK), 0);
                read_at(&mut file, data_start + at as u64, &mut stored)
                    .map_err(|e| file_error(e.to_string()))?;
                widen_into(dtype, &stored, &mut data);
            }
            let tensor = FloatTensor {
                shape: info.shape.clone(),
                data,
                dtype,
            };
            set.tensors.insert(name, tensor);
        }
        Ok(set)
    }

    /// Reads the float tensors of an `.npz` archive (numpy's `savez`): every f32 and f16
    /// array (widened exactly), under its key. Arrays of other dtypes (f64, integers, bool) are
    /// listed in [`TensorSet::skipped`]; the reader's limits ([`crate::npz::ReadLimits`]) bound
    /// what a hostile archive can make it allocate. (numpy has no bf16: store bf16 weights in
    /// safetensors.)
    ///
    /// Errors: [`Error::File`] for an unreadable, truncated or corrupt archive or entry.
    #[cfg(feature = "npz")]
    pub fn read_npz(path: impl AsRef<Path>) -> Result<Self> {
        use ndarray::IxDyn;
        let npz = crate::npz::NpzArchive::open(path.as_ref())?;
        let mut set = TensorSet::default();
        let keys: Vec<String> = npz.keys().map(String::from).collect();
        // The values in row-major order, copied only when the array is not in that order.
        let insert = |set: &mut TensorSet, key: String, a: ndarray::ArrayD<f32>, dtype| {
            let shape = a.shape().to_vec();
            let a = if a.is_standard_layout() {
                a
            } else {
                a.as_standard_layout().into_owned()
            };
            let (data, _) = a.into_raw_vec_and_offset();
            set.tensors.insert(key, FloatTensor { shape, data, dtype });
        };
        for key in keys {
            let f32_error = match npz.array::<f32, IxDyn>(&key) {
                Ok(a) => {
                    insert(&mut set, key, a, SourceDtype::F32);
                    continue;
                }
                Err(e) => e,
            };
            if let Ok(a) = npz.f16_array_widened(&key) {
                insert(&mut set, key, a, SourceDtype::F16);
                continue;
            }
            // Another dtype the reader knows is skipped; anything else is an error. The
            // dtypes are tried in turn (each try reads the entry), up to the first that fits.
            let other: [(&str, &dyn Fn() -> bool); 7] = [
                ("f64", &|| npz.array::<f64, IxDyn>(&key).is_ok()),
                ("i64", &|| npz.array::<i64, IxDyn>(&key).is_ok()),
                ("i32", &|| npz.array::<i32, IxDyn>(&key).is_ok()),
                ("i16", &|| npz.array::<i16, IxDyn>(&key).is_ok()),
                ("i8", &|| npz.array::<i8, IxDyn>(&key).is_ok()),
                ("u8", &|| npz.array::<u8, IxDyn>(&key).is_ok()),
                ("bool", &|| npz.array::<bool, IxDyn>(&key).is_ok()),
            ];
            let Some((dtype, _)) = other.iter().find(|(_, fits)| fits()) else {
                return Err(f32_error);
            };
            let dtype = dtype.to_string();
            set.skipped.insert(key, dtype);
        }
        Ok(set)
    }

    fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::File {
            path: path.to_path_buf(),
            message: format!("not a valid safetensors file: {e}"),
        })?;
        let mut set = TensorSet::default();
        for (name, view) in st.iter() {
            set.add(
                name.to_string(),
                view.dtype(),
                view.shape().to_vec(),
                view.data(),
            );
        }
        Ok(set)
    }

    /// Adds a validated stored tensor: widened when its dtype is a float, else listed as
    /// skipped.
    fn add(&mut self, name: String, dtype: Dtype, shape: Vec<usize>, data: &[u8]) {
        match float_values(dtype, data) {
            Some((dtype, data)) => {
                let tensor = FloatTensor { shape, data, dtype };
                self.tensors.insert(name, tensor);
            }
            None => {
                self.skipped.insert(name, format!("{dtype:?}"));
            }
        }
    }

    /// Adds (or replaces) tensor `name`.
    ///
    /// Errors: [`Error::ShapeMismatch`] when the shape's product is not the number of values.
    ///
    /// ```
    /// use hybridq::model::{FloatTensor, SourceDtype, TensorSet};
    /// let mut set = TensorSet::default();
    /// let t = FloatTensor { shape: vec![2, 2], data: vec![1.0, 2.0, 3.0, 4.0], dtype: SourceDtype::F32 };
    /// set.insert("w", t.clone())?;
    /// assert_eq!(set.get("w")?, &t);
    /// assert!(set.insert("bad", FloatTensor { shape: vec![3], ..t }).is_err());
    /// # Ok::<(), hybridq::Error>(())
    /// ```
    pub fn insert(&mut self, name: impl Into<String>, tensor: FloatTensor) -> Result<()> {
        let elements = tensor
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d));
        if elements != Some(tensor.data.len()) {
            return Err(Error::shape(
                "TensorSet::insert",
                format!("{} values for shape {:?}", tensor.data.len(), tensor.shape),
                format!("shape {:?}", tensor.shape),
            ));
        }
        let name = name.into();
        self.skipped.remove(&name);
        self.tensors.insert(name, tensor);
        Ok(())
    }

    /// The float tensor `name`.
    ///
    /// Errors: [`Error::MissingTensor`], or [`Error::TensorKind`] when the file holds it in a
    /// dtype that is not a float.
    pub fn get(&self, name: &str) -> Result<&FloatTensor> {
        const OP: &str = "TensorSet::get";
        if let Some(t) = self.tensors.get(name) {
            return Ok(t);
        }
        match self.skipped.get(name) {
            Some(dtype) => Err(Error::TensorKind {
                op: OP,
                name: name.to_string(),
                expected: "f32, f16 or bf16".into(),
                got: dtype.clone(),
            }),
            None => Err(Error::MissingTensor {
                op: OP,
                name: name.to_string(),
            }),
        }
    }

    /// The rank-2 float tensor `name` (a weight matrix `[N, K]`).
    ///
    /// Errors: as [`TensorSet::get`], and [`Error::TensorKind`] for another rank.
    pub fn matrix(&self, name: &str) -> Result<ArrayView2<'_, f32>> {
        let t = self.get(name)?;
        match *t.shape {
            [n, k] => Ok(ArrayView2::from_shape((n, k), &t.data).expect("shape matches data")),
            _ => Err(Error::TensorKind {
                op: "TensorSet::matrix",
                name: name.to_string(),
                expected: "rank 2".into(),
                got: format!("rank {} {:?}", t.shape.len(), t.shape),
            }),
        }
    }

    /// The names of the float tensors, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The tensors of other dtypes: name and dtype.
    pub fn skipped(&self) -> impl Iterator<Item = (&str, &str)> {
        self.skipped.iter().map(|(n, d)| (n.as_str(), d.as_str()))
    }

    /// The number of float tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the set holds no float tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

/// Bytes of tensor data read at a time (a multiple of every dtype's size).
const READ_CHUNK: usize = 1 << 20;

/// The safetensors crate's limit on the header's size.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// The data length `metadata` declares, checked as the crate checks a file in memory: the
/// tensors back to back in offset order from 0, each exactly dtype x shape bytes.
fn checked_data_len(metadata: &Metadata) -> std::result::Result<usize, String> {
    let mut end = 0usize;
    for name in metadata.offset_keys() {
        let info = metadata.info(&name).expect("a key of the metadata");
        let (s, e) = info.data_offsets;
        let bits = info
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|n| n.checked_mul(info.dtype.bitsize()))
            .ok_or_else(|| format!("tensor `{name}`: its size overflows"))?;
        if s != end || e < s || bits % 8 != 0 || e - s != bits / 8 {
            return Err(format!(
                "tensor `{name}`: offsets {s}..{e} for {} bits from byte {end}",
                bits
            ));
        }
        end = e;
    }
    Ok(end)
}

/// Fills `buf` from byte `at` of `file`.
fn read_at(file: &mut std::fs::File, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(at))?;
    file.read_exact(buf)
}

/// The file at `path` opened for reading, which must be a regular file (not a directory,
/// FIFO or device).
///
/// Errors: [`Error::File`].
fn open_regular_file(path: &Path) -> Result<std::fs::File> {
    let file_error = |message: String| Error::File {
        path: path.to_path_buf(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| file_error(e.to_string()))?;
    if !meta.is_file() {
        return Err(file_error("not a regular file".into()));
    }
    std::fs::File::open(path).map_err(|e| file_error(e.to_string()))
}

/// The whole file at `path`, which must be a regular file (not a directory, FIFO or device).
///
/// Errors: [`Error::File`].
pub(crate) fn read_regular_file(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut open_regular_file(path)?, &mut bytes).map_err(|e| {
        Error::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    Ok(bytes)
}

/// The float dtype of a stored dtype, or `None` for another dtype.
fn source_dtype(dtype: Dtype) -> Option<SourceDtype> {
    match dtype {
        Dtype::F32 => Some(SourceDtype::F32),
        Dtype::F16 => Some(SourceDtype::F16),
        Dtype::BF16 => Some(SourceDtype::Bf16),
        _ => None,
    }
}

/// Appends the little-endian values of `data` stored as `dtype`, widened to f32 (exact).
fn widen_into(dtype: SourceDtype, data: &[u8], out: &mut Vec<f32>) {
    fn widen<const N: usize>(data: &[u8], out: &mut Vec<f32>, f: impl Fn([u8; N]) -> f32) {
        out.extend(
            data.chunks_exact(N)
                .map(|c| f(c.try_into().expect("N bytes"))),
        );
    }
    match dtype {
        SourceDtype::F32 => widen(data, out, f32::from_le_bytes),
        SourceDtype::F16 => widen(data, out, |b| half::f16::from_le_bytes(b).to_f32()),
        SourceDtype::Bf16 => widen(data, out, |b| half::bf16::from_le_bytes(b).to_f32()),
    }
}

/// The values of a tensor of a float dtype widened to f32 (exact), or `None` for another dtype.
pub(crate) fn float_values(dtype: Dtype, data: &[u8]) -> Option<(SourceDtype, Vec<f32>)> {
    let dtype = source_dtype(dtype)?;
    let mut values = Vec::with_capacity(data.len() / dtype.bytes());
    widen_into(dtype, data, &mut values);
    Some((dtype, values))
}
