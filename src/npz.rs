//! Defensive reading of `.npz` archives (numpy's `savez` and `savez_compressed`) and `.npy`
//! arrays.
//!
//! Every entry is read into memory with its declared size checked first, and every array
//! header is checked against the bytes that are really there before any buffer is sized from
//! it, so a truncated or hostile file gives an [`Error::File`] instead of a panic or a huge
//! allocation.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use ndarray::{Array, Dimension};
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadNpyExt, ReadableElement};

use crate::error::{Error, Result};

/// The largest archive entry read (1 GiB): far above any layer this crate is meant for.
pub const MAX_ENTRY_BYTES: u64 = 1 << 30;

/// The arrays of one `.npz` archive (or a single `.npy` file), as raw `.npy` bytes by key.
#[derive(Debug, Clone)]
pub struct NpzArchive {
    path: PathBuf,
    entries: BTreeMap<String, Vec<u8>>,
}

impl NpzArchive {
    /// Reads every entry of the `.npz` archive at `path`. A `.npy` file is read as an archive
    /// with the single key `"array"`.
    pub fn open(path: &Path) -> Result<Self> {
        let fail = |message: String| Error::File {
            path: path.to_path_buf(),
            message,
        };
        let file = File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
        if path.extension().is_some_and(|e| e == "npy") {
            let mut bytes = Vec::new();
            file.take(MAX_ENTRY_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| fail(format!("cannot read: {e}")))?;
            if bytes.len() as u64 > MAX_ENTRY_BYTES {
                return Err(fail(format!("larger than {MAX_ENTRY_BYTES} bytes")));
            }
            let entries = BTreeMap::from([("array".to_string(), bytes)]);
            return Ok(Self {
                path: path.to_path_buf(),
                entries,
            });
        }
        let mut zip = zip::ZipArchive::new(file)
            .map_err(|e| fail(format!("not a valid npz (zip) archive: {e}")))?;
        let mut entries = BTreeMap::new();
        for i in 0..zip.len() {
            let mut entry = zip
                .by_index(i)
                .map_err(|e| fail(format!("cannot read archive entry {i}: {e}")))?;
            let name = entry.name().to_string();
            let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
            let declared = entry.size();
            if declared > MAX_ENTRY_BYTES {
                return Err(fail(format!(
                    "entry `{key}` declares {declared} bytes (limit {MAX_ENTRY_BYTES})"
                )));
            }
            let mut bytes = Vec::with_capacity(declared as usize);
            (&mut entry)
                .take(declared + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| fail(format!("entry `{key}` is corrupt or truncated: {e}")))?;
            if bytes.len() as u64 != declared {
                return Err(fail(format!(
                    "entry `{key}` holds {} bytes but declares {declared}",
                    bytes.len()
                )));
            }
            if entries.insert(key.clone(), bytes).is_some() {
                return Err(fail(format!("duplicate entry `{key}`")));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            entries,
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

    /// Reads the array `key` with element type `T` and dimensionality `D`.
    ///
    /// Errors (all [`Error::File`]): a missing key, a malformed or truncated `.npy` entry, a
    /// dtype other than `T`, or a rank other than `D`'s.
    pub fn array<T: ReadableElement, D: Dimension>(&self, key: &str) -> Result<Array<T, D>> {
        let fail = |message: String| Error::File {
            path: self.path.clone(),
            message: format!("array `{key}`: {message}"),
        };
        let bytes = self
            .entries
            .get(key)
            .ok_or_else(|| fail("missing".to_string()))?;
        check_npy_sizes(bytes).map_err(&fail)?;
        Array::<T, D>::read_npy(Cursor::new(bytes)).map_err(|e| fail(e.to_string()))
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

/// Checks that an `.npy` byte string holds a complete header and at least as many data bytes as
/// the header's shape and dtype declare, before any parser sizes a buffer from them.
fn check_npy_sizes(bytes: &[u8]) -> std::result::Result<(), String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
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
    let needed = header
        .shape
        .iter()
        .try_fold(item, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {:?} overflows", header.shape))?;
    let have = bytes.len() - data_start;
    if needed > have {
        return Err(format!(
            "truncated: shape {:?} needs {needed} data bytes, the entry has {have}",
            header.shape
        ));
    }
    Ok(())
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
