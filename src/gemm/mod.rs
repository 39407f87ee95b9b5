//! Everything between a layer and its kernels: the packed weight layout, the thread pool, the
//! int8 product driver (generic over [`Int8Kernel`](crate::kernels::contract::Int8Kernel)) and
//! the float product driver, and the output regions the drivers hand to the epilogues.
//!
//! Like `kernels`, this module may use `unsafe` (the pool's lifetime erasure, the packed
//! storage's byte view, and the disjoint output regions of parallel tasks); every block
//! carries a `// SAFETY:` comment.
#![allow(unsafe_code)]

pub(crate) mod driver;
pub(crate) mod float;
pub(crate) mod float_portable;
pub(crate) mod pack;
pub(crate) mod pool;

/// An output matrix (`rows x n`, row-major) shared by the tasks of one call, each of which
/// writes only the [`OutRegion`]s the driver gives it.
pub(crate) struct SharedOut<T> {
    ptr: *mut T,
    len: usize,
    n: usize,
}

// SAFETY: the drivers hand every task disjoint regions (see `driver::run`), so no two threads
// write the same element, and the borrow of the matrix outlives the parallel section.
unsafe impl<T: Send> Send for SharedOut<T> {}
// SAFETY: as above; shared references only let tasks create their own disjoint regions.
unsafe impl<T: Send> Sync for SharedOut<T> {}

impl<T> SharedOut<T> {
    /// Wraps `out` (`rows x n` values).
    pub(crate) fn new(out: &mut [T], n: usize) -> Self {
        Self {
            ptr: out.as_mut_ptr(),
            len: out.len(),
            n,
        }
    }

    /// The region of rows `[r0, r0 + rows)` and columns `[c0, c0 + width)`.
    ///
    /// # Safety
    /// No other region of the same matrix that is alive at the same time may overlap it.
    ///
    /// # Panics
    /// If the region is not inside the matrix.
    pub(crate) unsafe fn region(
        &self,
        r0: usize,
        rows: usize,
        c0: usize,
        width: usize,
    ) -> OutRegion<'_, T> {
        assert!(c0 + width <= self.n);
        assert!(rows == 0 || (r0 + rows - 1) * self.n + c0 + width <= self.len);
        OutRegion {
            // SAFETY: r0 * n + c0 is within the matrix (asserted).
            ptr: unsafe { self.ptr.add(r0 * self.n + c0) },
            stride: self.n,
            rows,
            width,
            _life: std::marker::PhantomData,
        }
    }
}

/// A rectangle of an output matrix that one task owns while it writes it.
pub(crate) struct OutRegion<'a, T> {
    ptr: *mut T,
    stride: usize,
    rows: usize,
    width: usize,
    _life: std::marker::PhantomData<&'a mut T>,
}

impl<T> OutRegion<'_, T> {
    /// Rows of the region.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of the region.
    pub(crate) fn width(&self) -> usize {
        self.width
    }

    /// The address of the region's first value and the distance between its rows: row `r`
    /// holds the `width` values from `ptr + r * stride`, which the holder of `&mut self` may
    /// write (and only those).
    pub(crate) fn raw_parts(&mut self) -> (*mut T, usize) {
        (self.ptr, self.stride)
    }

    /// Row `r` of the region (`width` values).
    ///
    /// # Panics
    /// If `r >= rows`.
    pub(crate) fn row(&mut self, r: usize) -> &mut [T] {
        assert!(r < self.rows);
        // SAFETY: the region lies inside the matrix and no other live region overlaps it
        // (`SharedOut::region`'s contract); `&mut self` makes the returned row unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r * self.stride), self.width) }
    }
}

/// Raw output pointer handed to the float drivers' parallel tasks, each of which writes a
/// disjoint set of elements (its own output columns); the drivers state that disjointness where
/// they split the work.
#[derive(Clone, Copy)]
pub(crate) struct RawOut(pub(crate) *mut f32);
// SAFETY: a `RawOut` is only used by tasks that write disjoint elements (see
// `float_portable::gemv_threaded` and `float::matmul`), and the pointee outlives the section.
unsafe impl Send for RawOut {}
// SAFETY: as above; the pointer is only used for disjoint writes.
unsafe impl Sync for RawOut {}
