//! The engines: a scheme (hybrid, full-integer) on one kernel, owning the packed weights.
//!
//! A layer builds its engine once ([`build_hybrid`], [`build_integer`]) for the kernel it was
//! given or the one [`Kernel::detect`] picks, through the registry; the engine quantizes or
//! converts the rows into the kernel's input, runs the generic driver and applies the
//! scheme's epilogue in the kernel's vector width.

pub(crate) mod hybrid;
pub(crate) mod integer;
pub(crate) mod row_quantizer;

use std::sync::Arc;

use crate::kernels::contract::Int8Kernel;
use crate::kernels::{Kernel, KernelVisitor};
use crate::quantize::weights::QuantizedWeights;

/// Rows per piece of a pass over `rows` rows of `values` values in all on `threads` threads
/// (pieces claimed in turn, as the driver's), or `None` when the pass stays on the calling
/// thread: one thread, one row, or fewer than `min_values` values.
pub(crate) fn rows_per_piece(
    rows: usize,
    values: usize,
    threads: usize,
    min_values: usize,
) -> Option<usize> {
    (threads > 1 && rows > 1 && values >= min_values)
        .then(|| rows.div_ceil(threads * crate::gemm::driver::CHUNKS_PER_TASK))
}

/// The hybrid engine of `w` (and the bias) on `kernel`, or `None` where this CPU cannot run it.
pub(crate) fn build_hybrid(
    kernel: Kernel,
    w: &QuantizedWeights,
    bias: Option<&[f32]>,
) -> Option<Arc<dyn hybrid::HybridProduct>> {
    struct Build<'a>(&'a QuantizedWeights, Option<&'a [f32]>);
    impl KernelVisitor for Build<'_> {
        type Out = Arc<dyn hybrid::HybridProduct>;
        fn visit<K: Int8Kernel>(self, k: K, id: Kernel) -> Self::Out {
            Arc::new(hybrid::HybridEngine::new(k, id, self.0, self.1))
        }
    }
    kernel.visit(Build(w, bias))
}

/// The full-integer engine of `params` on `kernel`, or `None` where this CPU cannot run it.
pub(crate) fn build_integer(
    kernel: Kernel,
    params: &integer::IntegerParams,
) -> Option<Arc<dyn integer::IntegerProduct>> {
    struct Build<'a>(&'a integer::IntegerParams);
    impl KernelVisitor for Build<'_> {
        type Out = Arc<dyn integer::IntegerProduct>;
        fn visit<K: Int8Kernel>(self, k: K, id: Kernel) -> Self::Out {
            Arc::new(integer::IntegerEngine::new(k, id, self.0))
        }
    }
    kernel.visit(Build(params))
}
