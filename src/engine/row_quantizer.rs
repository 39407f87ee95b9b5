//! [`RowQuantizer`]: a kernel's run-time input quantization on its own, the first step of
//! every hybrid call, for benchmarks and for checking a kernel's rows against
//! [`quantize_row`](crate::quantize::inputs::quantize_row).

use std::fmt;

use crate::error::{check_finite, Result};
use crate::flavour::Flavour;
use crate::kernels::contract::{InputElement, Int8Kernel};
use crate::kernels::{Kernel, KernelVisitor};
use crate::quantize::inputs::RowParams;

/// One kernel's row quantizer with its own buffer: [`RowQuantizer::quantize`] writes a row in
/// the kernel's input element (int8, or int8 + 128 for the VNNI and AMX kernels) exactly as a
/// hybrid layer on that kernel does before its product.
///
/// ```
/// use hybridq::quantize::inputs::quantize_row;
/// use hybridq::{Flavour, Kernel, RowQuantizer};
/// let row = [0.5f32, -2.0, 1.25, 0.0, 3.0];
/// let mut reference = [0i8; 5];
/// let expected = quantize_row(Flavour::default(), true, &row, &mut reference);
/// for kernel in Kernel::available() {
///     let mut q = RowQuantizer::new(kernel, Flavour::default(), true)?;
///     assert_eq!(q.quantize(&row)?, expected);
///     assert_eq!(q.values(), reference);
/// }
/// # Ok::<(), hybridq::Error>(())
/// ```
pub struct RowQuantizer {
    inner: Box<dyn QuantizeRows>,
    kernel: Kernel,
}

trait QuantizeRows: Send + Sync {
    /// `None` for a row with a NaN or an infinity.
    fn quantize(&mut self, row: &[f32]) -> Option<RowParams>;
    fn values(&self) -> Vec<i8>;
}

struct OnKernel<K: Int8Kernel> {
    k: K,
    flavour: Flavour,
    asymmetric: bool,
    buf: Vec<K::Input>,
}

impl<K: Int8Kernel> QuantizeRows for OnKernel<K> {
    fn quantize(&mut self, row: &[f32]) -> Option<RowParams> {
        if self.buf.len() != row.len() {
            self.buf.resize(row.len(), K::Input::PAD);
        }
        self.k
            .quantize(self.flavour, self.asymmetric, row, &mut self.buf)
    }

    fn values(&self) -> Vec<i8> {
        self.buf.iter().map(|v| v.to_q() as i8).collect()
    }
}

impl RowQuantizer {
    /// The quantizer of `kernel` for rows in `flavour` (`asymmetric` as
    /// [`HybridConfig::asymmetric`](crate::HybridConfig)).
    ///
    /// Errors: [`Error::KernelUnavailable`](crate::Error::KernelUnavailable) if this CPU
    /// cannot run the kernel.
    pub fn new(kernel: Kernel, flavour: Flavour, asymmetric: bool) -> Result<Self> {
        struct Build(Flavour, bool);
        impl KernelVisitor for Build {
            type Out = Box<dyn QuantizeRows>;
            fn visit<K: Int8Kernel>(self, k: K, _id: Kernel) -> Self::Out {
                Box::new(OnKernel {
                    k,
                    flavour: self.0,
                    asymmetric: self.1,
                    buf: Vec::new(),
                })
            }
        }
        let inner = kernel
            .visit(Build(flavour, asymmetric))
            .ok_or_else(|| kernel.unavailable_error())?;
        Ok(RowQuantizer { inner, kernel })
    }

    /// The kernel.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Quantizes `row` into the buffer and returns its scale and zero point. The buffer grows
    /// to the row on the first call of a length and is reused after.
    ///
    /// Errors: a NaN or infinite value ([`Error::NonFinite`](crate::Error::NonFinite)), which
    /// a hybrid layer handles by its [`NonFinitePolicy`](crate::NonFinitePolicy) before this
    /// step.
    pub fn quantize(&mut self, row: &[f32]) -> Result<RowParams> {
        match self.inner.quantize(row) {
            Some(p) => Ok(p),
            None => {
                check_finite("RowQuantizer::quantize", "row", row)?;
                unreachable!("the kernel's quantizer refused a finite row")
            }
        }
    }

    /// The int8 values of the last row quantized.
    pub fn values(&self) -> Vec<i8> {
        self.inner.values()
    }
}

impl fmt::Debug for RowQuantizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RowQuantizer({})", self.kernel)
    }
}
