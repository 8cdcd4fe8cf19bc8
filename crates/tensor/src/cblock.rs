//! [`CBlock`]: the `C` a micro-kernel or GEMM writes, as rows of a strided matrix
//! that may be shared with other tasks.
//!
//! A micro-kernel writes an `mr x width` block of `C`, row `r` at `r * ldc`
//! from the first. When `C` is a plane of the output that several tasks
//! write at once (each its own columns), the elements between one block's
//! rows belong to other tasks: a `&mut` slice spanning the block would
//! claim them too, while they are being written. A `CBlock` claims only its
//! rows' `width` elements, and hands out one row at a time.

use std::marker::PhantomData;

/// `rows` rows of `width` elements, row `r` starting `r * ldc` elements
/// after the first, borrowed mutably for `'a`. The elements between the rows
/// are not part of it.
pub(crate) struct CBlock<'a, T> {
    ptr: *mut T,
    ldc: usize,
    rows: usize,
    width: usize,
    _rows: PhantomData<&'a mut [T]>,
}

impl<'a, T> CBlock<'a, T> {
    /// The block of `rows` rows at the start of `c` (row stride `ldc`), as
    /// wide as `c` allows up to `ldc`.
    ///
    /// # Panics
    /// If `c` does not hold `rows` rows of at least one element.
    pub(crate) fn of_slice(c: &'a mut [T], ldc: usize, rows: usize) -> Self {
        let before_last = rows.saturating_sub(1) * ldc;
        assert!(
            rows > 0 && c.len() > before_last && (rows == 1 || ldc > 0),
            "C block of {rows} rows with stride {ldc} in {} elements",
            c.len()
        );
        // One row may be as wide as the slice; rows of a taller block end
        // where the next one starts.
        let cap = if rows == 1 { c.len() } else { ldc };
        let width = (c.len() - before_last).min(cap);
        Self {
            ptr: c.as_mut_ptr(),
            ldc,
            rows,
            width,
            _rows: PhantomData,
        }
    }

    /// The block at `ptr`.
    ///
    /// # Safety
    /// For `'a`, the caller alone may read or write the `width` elements of
    /// each of the `rows` rows at `ptr + r * ldc`, which lie inside one
    /// allocation; `width <= ldc` unless `rows` is 1. Those elements may be
    /// uninitialised (an output written whole for the first time): then
    /// only [`CBlock::write`] and the micro-kernels without `accumulate`
    /// may touch a row until it is written, not [`CBlock::row`].
    pub(crate) unsafe fn from_raw(ptr: *mut T, ldc: usize, rows: usize, width: usize) -> Self {
        Self {
            ptr,
            ldc,
            rows,
            width,
            _rows: PhantomData,
        }
    }

    /// The part of the block from row `r0` and column `c0` on.
    ///
    /// # Panics
    /// If `r0` or `c0` is outside the block.
    pub(crate) fn sub(&mut self, r0: usize, c0: usize) -> CBlock<'_, T> {
        assert!(
            r0 < self.rows && c0 < self.width,
            "({r0}, {c0}) outside a {} x {} C block",
            self.rows,
            self.width
        );
        CBlock {
            // SAFETY: inside the block's first row `r0` (asserted), so
            // inside its allocation.
            ptr: unsafe { self.ptr.add(r0 * self.ldc + c0) },
            ldc: self.ldc,
            rows: self.rows - r0,
            width: self.width - c0,
            _rows: PhantomData,
        }
    }

    /// Row stride.
    pub(crate) fn ldc(&self) -> usize {
        self.ldc
    }

    /// Whether the block holds `rows` rows of `width` elements.
    pub(crate) fn holds(&self, rows: usize, width: usize) -> bool {
        rows <= self.rows && width <= self.width
    }

    /// Row `r`.
    ///
    /// # Panics
    /// If `r` is not a row of the block.
    pub(crate) fn row(&mut self, r: usize) -> &mut [T] {
        assert!(r < self.rows, "row {r} of a {}-row C block", self.rows);
        // SAFETY: row `r` is `width` elements at `ptr + r * ldc`, which the
        // block borrows exclusively (constructors); `&mut self` keeps this
        // the only slice made from it at a time.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r * self.ldc), self.width) }
    }

    /// Writes `values` into row `r` from column `c0`, through the pointer:
    /// the row may not have been initialised yet (an output written whole
    /// for the first time).
    pub(crate) fn write(&mut self, r: usize, c0: usize, values: &[T])
    where
        T: Copy,
    {
        assert!(
            r < self.rows && c0 + values.len() <= self.width,
            "{} values at ({r}, {c0}) of a {} x {} C block",
            values.len(),
            self.rows,
            self.width
        );
        // SAFETY: row r < rows holds `width >= c0 + values.len()` elements
        // that this block may write (the constructors' contract), and
        // `values` is a distinct slice.
        unsafe {
            std::ptr::copy_nonoverlapping(
                values.as_ptr(),
                self.ptr.add(r * self.ldc + c0),
                values.len(),
            )
        };
    }

    /// The first element, for a kernel that writes the block through
    /// pointers after checking [`CBlock::holds`].
    pub(crate) fn as_mut_ptr(&mut self) -> *mut T {
        self.ptr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_a_slice_block() {
        let mut c: Vec<i32> = (0..23).collect();
        let mut b = CBlock::of_slice(&mut c[2..], 8, 3);
        assert!(b.holds(3, 5) && !b.holds(3, 6) && !b.holds(4, 1));
        assert_eq!(b.row(1), &[10, 11, 12, 13, 14]);
        b.row(2)[4] = -1;
        assert_eq!(c[22], -1);
        let mut wide = CBlock::of_slice(&mut c, 8, 2);
        assert!(wide.holds(2, 8));
        assert_eq!(wide.row(0).len(), 8);
        let mut corner = wide.sub(1, 3);
        assert!(corner.holds(1, 5) && !corner.holds(2, 1) && !corner.holds(1, 6));
        assert_eq!(corner.row(0), &[11, 12, 13, 14, 15]);
        corner.write(0, 1, &[-5, -6]);
        assert_eq!(&c[11..15], &[11, -5, -6, 14]);
    }

    #[test]
    fn one_row_is_as_wide_as_its_slice() {
        let mut c = [0f32; 40];
        let mut b = CBlock::of_slice(&mut c, 16, 1);
        assert!(b.holds(1, 40));
        assert_eq!(b.row(0).len(), 40);
    }

    #[test]
    #[should_panic(expected = "C block of 2 rows with stride 0")]
    fn rows_need_a_stride() {
        let mut c = [0f32; 4];
        CBlock::of_slice(&mut c, 0, 2);
    }

    #[test]
    #[should_panic(expected = "C block of 3 rows")]
    fn a_slice_too_short_for_the_rows() {
        let mut c = [0f32; 16];
        CBlock::of_slice(&mut c, 8, 3);
    }
}
