//! The one error type of the crate.
//!
//! Every fallible public function returns [`Result`]. Bad input (wrong shapes, empty tensors,
//! non-finite values, invalid scales, malformed files) is reported here and never panics.

use std::path::PathBuf;

/// Convenience alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in hybridq.
///
/// Each variant names the operation (`op`) and the offending values, so that the message alone
/// says what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two shapes that must agree do not.
    #[error("{op}: shape mismatch: expected {expected}, got {got}")]
    ShapeMismatch {
        /// The operation that checked the shapes.
        op: &'static str,
        /// What the operation needed.
        expected: String,
        /// What it was given.
        got: String,
    },

    /// A dimension is zero where the operation cannot give it a meaning.
    #[error("{op}: {what} must not be empty (got {got})")]
    Empty {
        /// The operation that checked the dimension.
        op: &'static str,
        /// Which dimension or tensor is empty.
        what: &'static str,
        /// The shape that was given.
        got: String,
    },

    /// A NaN or an infinity where only finite values are allowed.
    #[error("{op}: {what} holds a non-finite value ({value}) at flat index {index}")]
    NonFinite {
        /// The operation that found it.
        op: &'static str,
        /// Which tensor holds it.
        what: &'static str,
        /// Flat (row-major) index of the first non-finite element.
        index: usize,
        /// The value itself.
        value: f32,
    },

    /// A quantization scale that is zero, negative, NaN or infinite.
    #[error("{op}: scale {index} is {value}, but a scale must be finite and > 0")]
    BadScale {
        /// The operation that found it.
        op: &'static str,
        /// Index of the scale (output channel, or 0 for a per-tensor scale).
        index: usize,
        /// The scale.
        value: f32,
    },

    /// A quantized value outside the range the representation allows.
    #[error("{op}: {what} value {value} at flat index {index} is outside [{min}, {max}]")]
    OutOfRange {
        /// The operation that found it.
        op: &'static str,
        /// Which tensor holds it.
        what: &'static str,
        /// Flat index of the value.
        index: usize,
        /// The value.
        value: i64,
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },

    /// An option value that is not one of the known codes (for example an activation code).
    #[error("{op}: unknown {what} code {code}")]
    UnknownCode {
        /// The operation that read the code.
        op: &'static str,
        /// What the code stands for.
        what: &'static str,
        /// The code.
        code: i64,
    },

    /// A kernel was requested by name that this build or this CPU cannot run.
    #[error("kernel `{name}` is not available on this CPU (available: {available})")]
    KernelUnavailable {
        /// The requested kernel name.
        name: String,
        /// Comma-separated names this CPU can run.
        available: String,
    },

    /// A buffer the call needs is larger than this process can allocate (its size overflows,
    /// or the allocator refused it), for example the output of a broadcast view with 2^62 rows.
    #[error("{op}: cannot allocate {what} of {elements} values ({reason})")]
    TooLarge {
        /// The operation that needed the buffer.
        op: &'static str,
        /// What the buffer is for.
        what: &'static str,
        /// The number of values asked for (saturated at `usize::MAX` when the count itself
        /// overflows).
        elements: usize,
        /// Why it failed: the size overflows, or the allocator's refusal.
        reason: String,
    },

    /// An invalid argument that fits none of the kinds above.
    #[error("{op}: {message}")]
    InvalidArgument {
        /// The operation that refused the argument.
        op: &'static str,
        /// What is wrong.
        message: String,
    },

    /// A tensor a model needs is not in its tensor set.
    #[error("{op}: no tensor named `{name}`")]
    MissingTensor {
        /// The operation that looked it up.
        op: &'static str,
        /// The name asked for.
        name: String,
    },

    /// A tensor has a dtype or rank its use does not accept.
    #[error("{op}: tensor `{name}` is {got}, expected {expected}")]
    TensorKind {
        /// The operation that refused it.
        op: &'static str,
        /// The tensor.
        name: String,
        /// What was expected (`f32, f16 or bf16`, `rank 2`).
        expected: String,
        /// What the tensor is.
        got: String,
    },

    /// A file could not be read, or it is not a valid case or tensor file.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// A safetensors file without the quantized format's metadata (a float model, say).
    #[error("{path}: not a hybridq-quantized file (no `hybridq` metadata; `hybridq quantize` makes one)")]
    NotQuantized {
        /// The file.
        path: PathBuf,
    },

    /// A quantized model file of a format version this build does not read.
    #[error("{path}: format version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version the file declares.
        found: String,
        /// The version this build reads.
        supported: u32,
    },

    /// A tensor's bytes do not match the checksum its file records (a corrupted file).
    #[error("{path}: tensor `{tensor}` has CRC-32 {got:08x}, the file records {expected:08x}")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// The recorded checksum.
        expected: u32,
        /// The checksum of the bytes read.
        got: u32,
    },
}

/// A vector of `len` copies of `fill`, or [`Error::TooLarge`] when it cannot be allocated
/// (instead of the abort or "capacity overflow" panic of `vec!`).
pub(crate) fn try_filled<T: Clone>(
    op: &'static str,
    what: &'static str,
    len: usize,
    fill: T,
) -> Result<Vec<T>> {
    let mut v = try_with_capacity(op, what, len)?;
    v.resize(len, fill);
    Ok(v)
}

/// An empty vector with room for `len` values, or [`Error::TooLarge`].
pub(crate) fn try_with_capacity<T>(
    op: &'static str,
    what: &'static str,
    len: usize,
) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|e| Error::TooLarge {
        op,
        what,
        elements: len,
        reason: e.to_string(),
    })?;
    Ok(v)
}

/// `a * b`, or [`Error::TooLarge`] when the product overflows `usize`.
pub(crate) fn checked_len(
    op: &'static str,
    what: &'static str,
    a: usize,
    b: usize,
) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| Error::TooLarge {
        op,
        what,
        elements: usize::MAX,
        reason: format!("{a} x {b} overflows usize"),
    })
}

impl Error {
    /// Shorthand for [`Error::ShapeMismatch`].
    pub(crate) fn shape(
        op: &'static str,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Error::ShapeMismatch {
            op,
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// Shorthand for [`Error::KernelUnavailable`]: kernel `name` was asked for, `available`
    /// are the names this CPU runs.
    pub(crate) fn kernel_unavailable<'a>(
        name: &str,
        available: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        Error::KernelUnavailable {
            name: name.to_string(),
            available: available.into_iter().collect::<Vec<_>>().join(", "),
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub(crate) fn invalid(op: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            message: message.into(),
        }
    }
}

/// Returns the first non-finite value of `values` as an [`Error::NonFinite`].
pub(crate) fn check_finite(op: &'static str, what: &'static str, values: &[f32]) -> Result<()> {
    match first_non_finite(values) {
        None => Ok(()),
        Some(index) => Err(Error::NonFinite {
            op,
            what,
            index,
            value: values[index],
        }),
    }
}

/// The index of the first NaN or infinity of `values`, if any (on the CPU's widest vectors,
/// [`crate::kernels::elementwise`]).
pub(crate) fn first_non_finite(values: &[f32]) -> Option<usize> {
    crate::kernels::elementwise::Lanes::detect().first_non_finite(values)
}

/// A bias of any element type must hold one value per output channel.
pub(crate) fn check_bias_len(op: &'static str, n: usize, len: usize) -> Result<()> {
    if len != n {
        return Err(Error::shape(
            op,
            format!("bias of length N = {n}"),
            format!("length {len}"),
        ));
    }
    Ok(())
}

/// Validates an optional f32 bias for N output channels (length N, finite values) and copies it.
pub(crate) fn checked_bias(
    op: &'static str,
    n: usize,
    bias: Option<ndarray::ArrayView1<'_, f32>>,
) -> Result<Option<Vec<f32>>> {
    let Some(b) = bias else { return Ok(None) };
    check_bias_len(op, n, b.len())?;
    let b = b.to_vec();
    check_finite(op, "bias", &b)?;
    Ok(Some(b))
}
