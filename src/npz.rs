//! Defensive reading of `.npz` archives (numpy's `savez` and `savez_compressed`) and `.npy`
//! arrays.
//!
//! Opening an archive reads only its directory: the entry names and their declared sizes,
//! which are checked against [`ReadLimits`] before any data is read or decompressed. An entry
//! is read (and inflated) only when an array is asked for, with its declared size enforced
//! while it is read, and every array header is checked against the bytes that are really there
//! (and against what an array can hold) before any buffer is sized from it. A truncated,
//! corrupt or hostile file therefore gives an [`Error::File`], within memory bounded by the
//! limits and time bounded by the file's size, instead of a panic or a huge allocation.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Cursor, Read, Seek};
use std::path::{Path, PathBuf};

use ndarray::{Array, Dimension};
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadNpyExt, ReadableElement};

use crate::error::{Error, Result};

/// The default limit of one archive entry, decompressed (1 GiB).
pub const MAX_ENTRY_BYTES: u64 = 1 << 30;

/// The default limit of a whole archive, decompressed (2 GiB): the sum of the sizes its
/// entries declare. Far below the memory of any machine this crate runs on; raise it with
/// [`ReadLimits`] for larger weight files.
pub const MAX_ARCHIVE_BYTES: u64 = 2 << 30;

/// How much an archive may make this process read and hold.
///
/// ```
/// use hybridq::npz::ReadLimits;
/// let l = ReadLimits::default();
/// assert_eq!(l.max_entry_bytes, 1 << 30);
/// let small = ReadLimits::with_total(1 << 20);
/// assert_eq!(small.max_total_bytes, 1 << 20);
/// assert_eq!(small.max_entry_bytes, 1 << 20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest decompressed size of one entry.
    pub max_entry_bytes: u64,
    /// Largest sum of the decompressed sizes of all entries.
    pub max_total_bytes: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_entry_bytes: MAX_ENTRY_BYTES,
            max_total_bytes: MAX_ARCHIVE_BYTES,
        }
    }
}

impl ReadLimits {
    /// A total limit (and the same per-entry limit, or the default one if that is smaller).
    pub fn with_total(max_total_bytes: u64) -> Self {
        Self {
            max_entry_bytes: MAX_ENTRY_BYTES.min(max_total_bytes),
            max_total_bytes,
        }
    }
}

/// Where one entry's bytes are.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Index in the zip directory.
    index: usize,
    /// Declared decompressed size.
    size: u64,
}

enum Source<R> {
    /// A zip archive, read entry by entry.
    Zip(RefCell<zip::ZipArchive<R>>),
    /// A bare `.npy` file, held whole (its size is bounded by the limits).
    Npy(Vec<u8>),
}

/// The arrays of one `.npz` archive (or a single `.npy` file), read on demand by key.
pub struct NpzArchive<R = File> {
    path: PathBuf,
    source: Source<R>,
    entries: BTreeMap<String, Entry>,
    limits: ReadLimits,
}

impl<R> std::fmt::Debug for NpzArchive<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpzArchive")
            .field("path", &self.path)
            .field("entries", &self.entries)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl NpzArchive<File> {
    /// Opens the `.npz` archive at `path` with the default [`ReadLimits`]. A `.npy` file is read
    /// as an archive with the single key `"array"`.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, ReadLimits::default())
    }

    /// Opens `path` with the given limits. Only regular files are opened (a FIFO or a device
    /// would block or never end): anything else is an [`Error::File`].
    pub fn open_with(path: &Path, limits: ReadLimits) -> Result<Self> {
        let fail = |message: String| file_error(path, message);
        let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot open: {e}")))?;
        if !meta.is_file() {
            return Err(fail(format!(
                "not a regular file ({})",
                describe_file_type(&meta.file_type())
            )));
        }
        let file = File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
        if path.extension().is_some_and(|e| e == "npy") {
            let max = limits.max_entry_bytes.min(limits.max_total_bytes);
            let mut bytes = Vec::new();
            file.take(max + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| fail(format!("cannot read: {e}")))?;
            if bytes.len() as u64 > max {
                return Err(fail(format!("larger than the limit of {max} bytes")));
            }
            return Ok(Self::from_npy_bytes(path, bytes, limits));
        }
        Self::from_reader(path, file, limits)
    }
}

impl NpzArchive<Cursor<Vec<u8>>> {
    /// An archive held in memory (`name` stands for its path in messages): a zip, or a bare
    /// `.npy` when `bytes` starts with numpy's magic string.
    pub fn from_bytes(name: &Path, bytes: Vec<u8>, limits: ReadLimits) -> Result<Self> {
        if bytes.starts_with(NPY_MAGIC) {
            let max = limits.max_entry_bytes.min(limits.max_total_bytes);
            if bytes.len() as u64 > max {
                return Err(file_error(
                    name,
                    format!("larger than the limit of {max} bytes"),
                ));
            }
            return Ok(Self::from_npy_bytes(name, bytes, limits));
        }
        Self::from_reader(name, Cursor::new(bytes), limits)
    }
}

impl<R: Read + Seek> NpzArchive<R> {
    fn from_npy_bytes(path: &Path, bytes: Vec<u8>, limits: ReadLimits) -> Self {
        let size = bytes.len() as u64;
        Self {
            path: path.to_path_buf(),
            source: Source::Npy(bytes),
            entries: BTreeMap::from([("array".to_string(), Entry { index: 0, size })]),
            limits,
        }
    }

    /// Reads the directory of the zip archive `reader`: entry names and declared sizes only.
    ///
    /// Errors: not a zip archive, a duplicate key, an entry or a total above `limits`.
    pub fn from_reader(path: &Path, reader: R, limits: ReadLimits) -> Result<Self> {
        let fail = |message: String| file_error(path, message);
        let mut zip = zip::ZipArchive::new(reader)
            .map_err(|e| fail(format!("not a valid npz (zip) archive: {e}")))?;
        let mut entries = BTreeMap::new();
        let mut total: u64 = 0;
        for index in 0..zip.len() {
            let entry = zip
                .by_index_raw(index)
                .map_err(|e| fail(format!("cannot read archive entry {index}: {e}")))?;
            let name = entry.name().to_string();
            let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
            let size = entry.size();
            drop(entry);
            if size > limits.max_entry_bytes {
                return Err(fail(format!(
                    "entry `{key}` declares {size} bytes (limit {} per entry)",
                    limits.max_entry_bytes
                )));
            }
            total = total.saturating_add(size);
            if total > limits.max_total_bytes {
                return Err(fail(format!(
                    "the entries declare more than {} bytes in all (the limit; raise it to \
                     read larger archives)",
                    limits.max_total_bytes
                )));
            }
            if entries.insert(key.clone(), Entry { index, size }).is_some() {
                return Err(fail(format!("duplicate entry `{key}`")));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            source: Source::Zip(RefCell::new(zip)),
            entries,
            limits,
        })
    }

    /// The file this archive was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keys of the archive (without the `.npy` suffix), sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether the archive holds `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The limits this archive was opened with.
    pub fn limits(&self) -> ReadLimits {
        self.limits
    }

    /// The raw `.npy` bytes of entry `key`, read (and inflated) now, exactly as many as the
    /// entry declares.
    fn entry_bytes(&self, key: &str) -> std::result::Result<Vec<u8>, String> {
        let entry = *self.entries.get(key).ok_or_else(|| "missing".to_string())?;
        match &self.source {
            Source::Npy(bytes) => Ok(bytes.clone()),
            Source::Zip(zip) => {
                let mut zip = zip.borrow_mut();
                let file = zip
                    .by_index(entry.index)
                    .map_err(|e| format!("cannot read the entry: {e}"))?;
                let mut bytes = Vec::new();
                bytes
                    .try_reserve_exact(entry.size as usize)
                    .map_err(|e| format!("cannot allocate {} bytes: {e}", entry.size))?;
                file.take(entry.size + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| format!("corrupt or truncated: {e}"))?;
                if bytes.len() as u64 != entry.size {
                    return Err(format!(
                        "holds {} bytes but declares {}",
                        bytes.len(),
                        entry.size
                    ));
                }
                Ok(bytes)
            }
        }
    }

    /// Reads the array `key` with element type `T` and dimensionality `D`.
    ///
    /// Errors (all [`Error::File`]): a missing key, a malformed or truncated `.npy` entry, a
    /// shape no array can hold, a dtype other than `T`, or a rank other than `D`'s.
    pub fn array<T: ReadableElement, D: Dimension>(&self, key: &str) -> Result<Array<T, D>> {
        let fail = |message: String| Error::File {
            path: self.path.clone(),
            message: format!("array `{key}`: {message}"),
        };
        let bytes = self.entry_bytes(key).map_err(fail)?;
        check_npy_sizes(&bytes).map_err(fail)?;
        Array::<T, D>::read_npy(Cursor::new(&bytes)).map_err(|e| fail(e.to_string()))
    }

    /// The numpy `float16` array `key` (type `'<f2'` or `'>f2'`, C or Fortran order) widened
    /// to f32, which is exact (ndarray-npy has no f16 element type).
    ///
    /// Errors: [`Error::File`] for a missing or malformed entry, another dtype, or a data
    /// length other than the shape's.
    pub fn f16_array_widened(&self, key: &str) -> Result<ndarray::ArrayD<f32>> {
        let fail = |message: String| Error::File {
            path: self.path.clone(),
            message: format!("array `{key}`: {message}"),
        };
        let bytes = self.entry_bytes(key).map_err(fail)?;
        let (header, data_start) = check_npy_sizes(&bytes).map_err(fail)?;
        let descr = header.type_descriptor.to_string();
        let big_endian = match descr.trim_matches(|c| c == '\'' || c == '"') {
            "<f2" => false,
            ">f2" => true,
            other => return Err(fail(format!("dtype {other}, not float16"))),
        };
        let data = &bytes[data_start..];
        let n: usize = header.shape.iter().product();
        if data.len() != 2 * n {
            return Err(fail(format!(
                "shape {:?} needs {} data bytes, the entry has {}",
                header.shape,
                2 * n,
                data.len()
            )));
        }
        let values: Vec<f32> = data
            .chunks_exact(2)
            .map(|c| {
                let b = [c[0], c[1]];
                let h = if big_endian {
                    half::f16::from_be_bytes(b)
                } else {
                    half::f16::from_le_bytes(b)
                };
                h.to_f32()
            })
            .collect();
        let shape = ndarray::IxDyn(&header.shape);
        if header.layout.is_fortran() {
            ndarray::ArrayD::from_shape_vec(ndarray::ShapeBuilder::f(shape), values)
        } else {
            ndarray::ArrayD::from_shape_vec(shape, values)
        }
        .map_err(|e| fail(e.to_string()))
    }

    /// Like [`NpzArchive::array`], but `None` when the key is absent.
    pub fn optional_array<T: ReadableElement, D: Dimension>(
        &self,
        key: &str,
    ) -> Result<Option<Array<T, D>>> {
        if self.contains(key) {
            self.array(key).map(Some)
        } else {
            Ok(None)
        }
    }
}

fn file_error(path: &Path, message: String) -> Error {
    Error::File {
        path: path.to_path_buf(),
        message,
    }
}

/// A short name for a file type that is not a regular file.
pub(crate) fn describe_file_type(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// numpy's `.npy` magic string.
const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// Checks that an `.npy` byte string holds a complete header, a shape an array can hold
/// (ndarray requires the product of the non-zero axis lengths, in bytes, to fit in `isize`,
/// whatever the zero-length axes), and at least as many data bytes as the header's shape and
/// dtype declare, before any parser sizes a buffer from them; returns the parsed header and
/// where the data starts.
fn check_npy_sizes(bytes: &[u8]) -> std::result::Result<(Header, usize), String> {
    if bytes.len() < 10 || &bytes[..6] != NPY_MAGIC {
        return Err("not an .npy array (bad magic string or too short)".into());
    }
    let (len_bytes, header_len) = match bytes[6] {
        1 => (2usize, u16::from_le_bytes([bytes[8], bytes[9]]) as usize),
        2 | 3 if bytes.len() >= 12 => (
            4,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        ),
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let data_start = 8 + len_bytes + header_len;
    if data_start > bytes.len() {
        return Err(format!(
            "header declares {header_len} bytes but the entry has {}",
            bytes.len()
        ));
    }
    let header =
        Header::from_reader(&mut Cursor::new(bytes)).map_err(|e| format!("bad header: {e}"))?;
    let item = item_size(&header)?;
    let holdable = header
        .shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(item, |acc, &d| acc.checked_mul(d))
        .filter(|&b| b <= isize::MAX as usize)
        .is_some();
    if !holdable {
        return Err(format!(
            "shape {:?} is larger than any array can be",
            header.shape
        ));
    }
    let needed = if header.shape.contains(&0) {
        0
    } else {
        header.shape.iter().product::<usize>() * item
    };
    let have = bytes.len() - data_start;
    if needed > have {
        return Err(format!(
            "truncated: shape {:?} needs {needed} data bytes, the entry has {have}",
            header.shape
        ));
    }
    Ok((header, data_start))
}

/// The element size from a header's type descriptor such as `'<f4'` or `'|i1'`.
fn item_size(header: &Header) -> std::result::Result<usize, String> {
    let descr = header.type_descriptor.to_string();
    let digits: String = descr.chars().filter(|c| c.is_ascii_digit()).collect();
    match digits.parse::<usize>() {
        Ok(n) if (1..=16).contains(&n) => Ok(n),
        _ => Err(format!("unsupported dtype {descr}")),
    }
}
