//! Matrix multiply through `matrixmultiply`, split over rayon by column blocks.
//!
//! Every output element is computed by one call with the same `k` order, so
//! the result is bit-identical whatever the number of threads.

use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::gemv::gemv;
use crate::tensor::Tensor;
use rayon::prelude::*;

/// A read-only strided matrix view.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    /// Backing buffer.
    pub data: &'a [T],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Row stride in elements.
    pub rs: usize,
    /// Column stride in elements.
    pub cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major contiguous matrix.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// Work (multiply-adds) below which a GEMM runs on one thread.
const PAR_WORK: usize = 1 << 18;
/// Column block width used when splitting a GEMM: a multiple of every kernel's
/// register tile, fixed so that results do not depend on the thread count.
const COL_BLOCK: usize = 256;

/// `C = alpha * A * B + beta * C`, with `C` row-major `m x n` in `c`.
///
/// Products with few rows of `A` and much work (up to 4 rows, or up to 12
/// where `B` has contiguous rows) stream `B` instead of packing it (the
/// matrix-vector paths); there a zero entry of `A` contributes nothing to a
/// row of `C`, also against an infinite or NaN entry of `B`, and each row
/// of `C` is the bits it has computed alone.
pub fn gemm<T: Element>(
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    c: &mut [T],
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || c.len() != m * n || !a.fits() || !b.fits() {
        return Err(TensorError::ShapeMismatch {
            op: "gemm",
            left: vec![a.rows, a.cols],
            right: vec![b.rows, b.cols],
        });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if gemv(alpha, a, b, beta, c, &|w| w) {
        return Ok(());
    }
    if m * n * k < PAR_WORK || n <= COL_BLOCK {
        // SAFETY: the views were checked to lie inside their buffers and `c` is
        // exactly m x n row-major; `c` is a distinct mutable borrow.
        unsafe { gemm_block(alpha, a, b, 0, n, beta, c.as_mut_ptr(), n) };
        return Ok(());
    }
    let c_ptr = SendPtr(c.as_mut_ptr());
    let blocks = n.div_ceil(COL_BLOCK);
    (0..blocks).into_par_iter().for_each(|blk| {
        let j0 = blk * COL_BLOCK;
        let j1 = (j0 + COL_BLOCK).min(n);
        let p = c_ptr;
        // SAFETY: each task writes the disjoint column range j0..j1 of C.
        unsafe { gemm_block(alpha, a, b, j0, j1, beta, p.0.add(j0), n) };
    });
    Ok(())
}

/// [`gemm`] with every entry `w` of `B` read as `map(w)`: bit-identical to
/// [`gemm`] on a copy of `B`'s buffer mapped entry by entry (same layout),
/// without the copy on the matrix-vector paths (few rows of `A`: `B` is
/// streamed once and mapped in registers). Other products make that copy.
///
/// For a linear layer's rules on a transformed weight (excitation
/// backprop's `max(W, 0)`), whose products at batch 1 are memory-bound.
pub fn gemm_map_b<T: Element, F: Fn(T) -> T + Sync + Send>(
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    c: &mut [T],
    map: F,
) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || c.len() != m * n || !a.fits() || !b.fits() {
        return Err(TensorError::ShapeMismatch {
            op: "gemm_map_b",
            left: vec![a.rows, a.cols],
            right: vec![b.rows, b.cols],
        });
    }
    if m == 0 || n == 0 || gemv(alpha, a, b, beta, c, &map) {
        return Ok(());
    }
    let mapped: Vec<T> = b.data.par_iter().map(|&w| map(w)).collect();
    gemm(alpha, a, MatRef { data: &mapped, ..b }, beta, c)
}

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: used only to hand disjoint regions of one buffer to rayon tasks.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// Columns `j0..j1` of `C = alpha A B + beta C`; `c` points at C[0, j0], row stride `ldc`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_block<T: Element>(
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    j0: usize,
    j1: usize,
    beta: T,
    c: *mut T,
    ldc: usize,
) {
    if a.cols == 0 {
        // Empty inner dimension: C = beta C.
        for i in 0..a.rows {
            for j in 0..(j1 - j0) {
                let p = c.add(i * ldc + j);
                *p = if beta == T::zero() {
                    T::zero()
                } else {
                    *p * beta
                };
            }
        }
        return;
    }
    T::gemm_raw(
        a.rows,
        a.cols,
        j1 - j0,
        alpha,
        a.data.as_ptr(),
        a.rs as isize,
        a.cs as isize,
        b.data.as_ptr().add(j0 * b.cs),
        b.rs as isize,
        b.cs as isize,
        beta,
        c,
        ldc as isize,
        1,
    );
}

/// Matrix product of two 2-d tensors.
pub fn matmul<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    let [m, k] = a.dims2("matmul")?;
    let [k2, n] = b.dims2("matmul")?;
    if k != k2 {
        return Err(TensorError::ShapeMismatch {
            op: "matmul",
            left: a.shape().to_vec(),
            right: b.shape().to_vec(),
        });
    }
    let mut out = Tensor::try_full_for(vec![m, n], T::zero(), "matmul")?;
    gemm(
        T::one(),
        MatRef::row_major(a.data(), m, k),
        MatRef::row_major(b.data(), k, n),
        T::zero(),
        out.data_mut(),
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_naive_product_large_and_small() {
        for &(m, k, n) in &[(3, 4, 5), (33, 70, 600), (1, 1, 1), (5, 0, 3)] {
            let a: Vec<f64> = (0..m * k).map(|i| ((i * 7) % 13) as f64 - 6.0).collect();
            let b: Vec<f64> = (0..k * n).map(|i| ((i * 5) % 11) as f64 - 5.0).collect();
            let at = Tensor::from_vec([m, k], a.clone()).unwrap();
            let bt = Tensor::from_vec([k, n], b.clone()).unwrap();
            let c = matmul(&at, &bt).unwrap();
            assert_eq!(c.data(), &naive(&a, &b, m, k, n)[..]);
        }
    }

    #[test]
    fn matrix_vector_paths_match_naive_product() {
        // m <= GEMV_MAX_ROWS and enough work: B = W^T (dots) and B = W (axpys).
        for &(m, k, n) in &[(1, 700, 900), (3, 513, 1000), (4, 2000, 300), (2, 600, 777)] {
            let a: Vec<f64> = (0..m * k).map(|i| ((i * 7) % 13) as f64 - 6.0).collect();
            let w: Vec<f64> = (0..k * n).map(|i| ((i * 5) % 11) as f64 - 5.0).collect();
            let want = naive(&a, &w, m, k, n);
            let mut c = vec![f64::NAN; m * n];
            gemm(
                1.0,
                MatRef::row_major(&a, m, k),
                MatRef::row_major(&w, k, n),
                0.0,
                &mut c,
            )
            .unwrap();
            assert_eq!(c, want);
            // The same product through the transposed layout of B.
            let wt: Vec<f64> = (0..n * k).map(|i| w[(i % k) * n + i / k]).collect();
            let mut c2 = vec![1.0; m * n];
            gemm(
                2.0,
                MatRef::row_major(&a, m, k),
                MatRef::row_major(&wt, n, k).t(),
                -1.0,
                &mut c2,
            )
            .unwrap();
            let want2: Vec<f64> = want.iter().map(|v| 2.0 * v - 1.0).collect();
            assert_eq!(c2, want2);
        }
    }

    #[test]
    fn row_update_path_skips_zero_scales_exactly() {
        // A gradient after a ReLU: many zeros, some negative zeros, and rows
        // of A that are zero at different places (a column of B is skipped
        // only where every row of A is zero there). Each output must be the
        // same bits as adding every term, zeros included, one at a time in
        // k order.
        let (m, k, n) = (3, 1500, 700);
        let a: Vec<f32> = (0..m * k)
            .map(|i| match (i * 7919) % 10 {
                0..=4 => 0.0,
                5 => -0.0,
                r => (((i * 31) % 17) as f32 - 8.0) * 0.37 + r as f32 * 1e-3,
            })
            .map(|v| if (v as i32) % 3 == 0 { 0.0 } else { v })
            .collect();
        let w: Vec<f32> = (0..k * n)
            .map(|i| (((i * 13) % 23) as f32 - 11.0) * 0.113)
            .collect();
        for rows in 1..=m {
            let mut want = vec![0.0f32; rows * n];
            for i in 0..rows {
                for j in 0..n {
                    let mut s = 0.0f32;
                    for p in 0..k {
                        s += a[i * k + p] * w[p * n + j];
                    }
                    want[i * n + j] = s;
                }
            }
            let mut c = vec![f32::NAN; rows * n];
            gemm(
                1.0,
                MatRef::row_major(&a[..rows * k], rows, k),
                MatRef::row_major(&w, k, n),
                0.0,
                &mut c,
            )
            .unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&c), bits(&want), "{rows} rows");
        }
    }

    #[test]
    fn rejects_mismatched_inner_dimension() {
        let a = Tensor::<f32>::zeros([2, 3]);
        let b = Tensor::<f32>::zeros([4, 2]);
        assert!(matches!(
            matmul(&a, &b),
            Err(TensorError::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn transposed_views() {
        let a = Tensor::<f64>::from_vec([2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let mut c = vec![0.0; 9];
        // A^T A : 3x3
        let av = MatRef::row_major(a.data(), 2, 3);
        gemm(1.0, av.t(), av, 0.0, &mut c).unwrap();
        assert_eq!(c, vec![17., 22., 27., 22., 29., 36., 27., 36., 45.]);
    }
}
