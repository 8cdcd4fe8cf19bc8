//! ONNX MatMul (numpy `matmul`): matrix products over broadcast batch
//! dimensions, and the backward with the broadcast batches summed back.
//!
//! A 1-d first operand `[K]` is taken as `[1, K]` and a 1-d second operand
//! `[K]` as `[K, 1]`, the added axis removed from the result. The batch
//! dimensions (all but the last two) broadcast by numpy's rules. Every
//! product runs through [`crate::gemm::gemm`] (`matrixmultiply` with
//! strides): the batches are read in place, a transposed operand by its
//! strides, and a batch of first operands against one second operand is a
//! single product with the batch folded into the rows.
//!
//! Batches run in parallel when the work is large; each result matrix is
//! computed by one task (its terms added in batch order), and a product's
//! bits do not depend on the thread count, so neither do the results.

use crate::broadcast::{broadcast_shape_for, broadcast_strides};
use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::gemm::{gemm, MatRef};
use crate::layout::{checked_numel, try_full};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Multiply-adds below which the batches run one after the other.
const PAR_WORK: usize = 1 << 18;

/// The shapes of a product, resolved.
struct Plan {
    /// Rows of a first-operand matrix.
    m: usize,
    /// Inner dimension.
    k: usize,
    /// Columns of a second-operand matrix.
    n: usize,
    /// For each batch of the result, the batch of `a` and of `b` it reads.
    a_batch: Vec<usize>,
    b_batch: Vec<usize>,
    /// Number of matrices `a` and `b` hold.
    a_count: usize,
    b_count: usize,
    /// The result's shape (without the axes added to 1-d operands).
    out_shape: Vec<usize>,
}

impl Plan {
    fn new(a: &[usize], b: &[usize], op: &'static str) -> Result<Self> {
        if a.is_empty() || b.is_empty() {
            return Err(TensorError::Rank {
                op,
                expected: 1,
                shape: if a.is_empty() { a } else { b }.to_vec(),
            });
        }
        let a2: Vec<usize> = if a.len() == 1 {
            vec![1, a[0]]
        } else {
            a.to_vec()
        };
        let b2: Vec<usize> = if b.len() == 1 {
            vec![b[0], 1]
        } else {
            b.to_vec()
        };
        let (ra, rb) = (a2.len(), b2.len());
        let (m, k, k2, n) = (a2[ra - 2], a2[ra - 1], b2[rb - 2], b2[rb - 1]);
        if k != k2 {
            return Err(TensorError::ShapeMismatch {
                op,
                left: a.to_vec(),
                right: b.to_vec(),
            });
        }
        let (ab, bb) = (&a2[..ra - 2], &b2[..rb - 2]);
        let batch = broadcast_shape_for(ab, bb, op)?;
        let mut out_shape = batch.clone();
        if a.len() > 1 {
            out_shape.push(m);
        }
        if b.len() > 1 {
            out_shape.push(n);
        }
        let count = checked_numel(&batch, op)?;
        // The result and the operands are allocated or exist, so these
        // products fit; checked all the same.
        checked_numel(&out_shape, op)?;
        let (sa, sb) = (broadcast_strides(ab, &batch), broadcast_strides(bb, &batch));
        let batch_strides = crate::layout::contiguous_strides(&batch);
        let index = |strides: &[usize], i: usize| -> usize {
            batch
                .iter()
                .zip(&batch_strides)
                .zip(strides)
                .map(|((&len, &bs), &s)| (i / bs) % len * s)
                .sum()
        };
        // Only when there is something to compute (then `count` matrices
        // of the result exist, so the index lists are no larger).
        let work = m > 0 && n > 0 && k > 0;
        let (a_batch, b_batch) = if work {
            (
                (0..count).map(|i| index(&sa, i)).collect(),
                (0..count).map(|i| index(&sb, i)).collect(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Self {
            m,
            k,
            n,
            a_batch,
            b_batch,
            a_count: checked_numel(ab, op)?,
            b_count: checked_numel(bb, op)?,
            out_shape,
        })
    }

    /// Whether `b` is one matrix for every batch while `a` has one matrix
    /// per batch, in order: the batch folds into the rows of `a`.
    fn folds(&self) -> bool {
        self.b_count == 1 && self.a_count == self.a_batch.len()
    }

    /// Multiply-adds of the whole product.
    fn work(&self) -> usize {
        self.a_batch
            .len()
            .saturating_mul(self.m)
            .saturating_mul(self.n)
            .saturating_mul(self.k)
    }
}

/// Runs `each(index, matrix)` over the consecutive matrices of `len`
/// elements in `out`, in parallel when `parallel`.
fn for_each_matrix<T: Element>(
    out: &mut [T],
    len: usize,
    parallel: bool,
    each: impl Fn(usize, &mut [T]) -> Result<()> + Sync + Send,
) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    if parallel {
        out.par_chunks_mut(len)
            .enumerate()
            .try_for_each(|(i, c)| each(i, c))
    } else {
        out.chunks_mut(len)
            .enumerate()
            .try_for_each(|(i, c)| each(i, c))
    }
}

/// The matrix product of `a` and `b` with numpy/ONNX MatMul semantics
/// (1-d promotion, batch dimensions broadcast). An error for a 0-d operand,
/// inner dimensions that differ, or batch dimensions that do not broadcast.
pub fn matmul<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    const OP: &str = "matmul";
    let p = Plan::new(a.shape(), b.shape(), OP)?;
    let (m, k, n) = (p.m, p.k, p.n);
    let mut out = try_full(p.out_shape.clone(), T::zero(), OP)?;
    if p.a_batch.is_empty() {
        // An empty result, or an empty inner dimension: zeros.
        return Ok(out);
    }
    let (ad, bd) = (a.data(), b.data());
    if p.folds() {
        let rows = p.a_batch.len() * m;
        gemm(
            T::one(),
            MatRef::row_major(ad, rows, k),
            MatRef::row_major(bd, k, n),
            T::zero(),
            out.data_mut(),
        )?;
        return Ok(out);
    }
    let parallel = p.work() >= PAR_WORK;
    for_each_matrix(out.data_mut(), m * n, parallel, |i, c| {
        let (ia, ib) = (p.a_batch[i], p.b_batch[i]);
        gemm(
            T::one(),
            MatRef::row_major(&ad[ia * m * k..][..m * k], m, k),
            MatRef::row_major(&bd[ib * k * n..][..k * n], k, n),
            T::zero(),
            c,
        )
    })?;
    Ok(out)
}

/// The gradients of a product's operands `(a, b)`, each present where asked.
pub type MatmulGrads<T> = (Option<Tensor<T>>, Option<Tensor<T>>);

/// The batches of the result that read each matrix of an operand (from the
/// list of which matrix each result batch reads), in batch order.
fn readers(batch_of: &[usize], count: usize) -> Vec<Vec<usize>> {
    let mut r = vec![Vec::new(); count];
    for (i, &j) in batch_of.iter().enumerate() {
        r[j].push(i);
    }
    r
}

/// Backward of [`matmul`]: given the gradient of the result, the gradients
/// of `a` (`grad @ b^T`) and of `b` (`a^T @ grad`), each with `a`'s or
/// `b`'s shape (broadcast batches summed back, in batch order), computed
/// only where asked.
pub fn matmul_backward<T: Element>(
    a: &Tensor<T>,
    b: &Tensor<T>,
    grad: &Tensor<T>,
    need_a: bool,
    need_b: bool,
) -> Result<MatmulGrads<T>> {
    const OP: &str = "matmul_backward";
    let p = Plan::new(a.shape(), b.shape(), OP)?;
    if grad.shape() != p.out_shape {
        return Err(TensorError::ShapeMismatch {
            op: OP,
            left: grad.shape().to_vec(),
            right: p.out_shape.clone(),
        });
    }
    let (m, k, n) = (p.m, p.k, p.n);
    let (ad, bd, gd) = (a.data(), b.data(), grad.data());
    let parallel = p.work() >= PAR_WORK;
    let g_at = |i: usize| MatRef::row_major(&gd[i * m * n..][..m * n], m, n);
    let a_at = |j: usize| MatRef::row_major(&ad[j * m * k..][..m * k], m, k);
    let b_at = |j: usize| MatRef::row_major(&bd[j * k * n..][..k * n], k, n);
    let grad_a = if need_a {
        let mut ga = try_full(a.shape().to_vec(), T::zero(), OP)?;
        if !p.a_batch.is_empty() {
            if p.folds() {
                // All batches at once: G [B*m, n] @ b^T [n, k].
                let rows = p.a_batch.len() * m;
                gemm(
                    T::one(),
                    MatRef::row_major(gd, rows, n),
                    b_at(0).t(),
                    T::zero(),
                    ga.data_mut(),
                )?;
            } else {
                let by = readers(&p.a_batch, p.a_count);
                for_each_matrix(ga.data_mut(), m * k, parallel, |j, c| {
                    for (t, &i) in by[j].iter().enumerate() {
                        let beta = if t == 0 { T::zero() } else { T::one() };
                        gemm(T::one(), g_at(i), b_at(p.b_batch[i]).t(), beta, c)?;
                    }
                    Ok(())
                })?;
            }
        }
        Some(ga)
    } else {
        None
    };
    let grad_b = if need_b {
        let mut gb = try_full(b.shape().to_vec(), T::zero(), OP)?;
        if !p.a_batch.is_empty() {
            if p.folds() {
                // The batch folds into the inner dimension: a^T [k, B*m] @ G [B*m, n].
                let rows = p.a_batch.len() * m;
                gemm(
                    T::one(),
                    MatRef::row_major(ad, rows, k).t(),
                    MatRef::row_major(gd, rows, n),
                    T::zero(),
                    gb.data_mut(),
                )?;
            } else {
                let by = readers(&p.b_batch, p.b_count);
                for_each_matrix(gb.data_mut(), k * n, parallel, |j, c| {
                    for (t, &i) in by[j].iter().enumerate() {
                        let beta = if t == 0 { T::zero() } else { T::one() };
                        gemm(T::one(), a_at(p.a_batch[i]).t(), g_at(i), beta, c)?;
                    }
                    Ok(())
                })?;
            }
        }
        Some(gb)
    } else {
        None
    };
    Ok((grad_a, grad_b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::broadcast_shape;
    use crate::testing::{rnd, t};
    use crate::testing_grad::{
        all_indices, assert_close, bits, broadcast_offset, numeric_grad, on_threads,
    };
    use proptest::prelude::*;

    /// numpy's matmul by a triple loop, from its definition.
    fn naive(a: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
        let a2: Vec<usize> = if a.ndim() == 1 {
            vec![1, a.shape()[0]]
        } else {
            a.shape().to_vec()
        };
        let b2: Vec<usize> = if b.ndim() == 1 {
            vec![b.shape()[0], 1]
        } else {
            b.shape().to_vec()
        };
        let (ra, rb) = (a2.len(), b2.len());
        let (m, k, n) = (a2[ra - 2], a2[ra - 1], b2[rb - 1]);
        let batch = broadcast_shape(&a2[..ra - 2], &b2[..rb - 2]).unwrap();
        let mut data = vec![];
        for idx in all_indices(&batch) {
            let ia = broadcast_offset(&a2[..ra - 2], &idx);
            let ib = broadcast_offset(&b2[..rb - 2], &idx);
            for i in 0..m {
                for j in 0..n {
                    let mut s = 0.0;
                    for p in 0..k {
                        s += a.data()[ia * m * k + i * k + p] * b.data()[ib * k * n + p * n + j];
                    }
                    data.push(s);
                }
            }
        }
        let mut shape = batch;
        if a.ndim() > 1 {
            shape.push(m);
        }
        if b.ndim() > 1 {
            shape.push(n);
        }
        Tensor::from_vec(shape, data).unwrap()
    }

    #[test]
    fn hand_computed_products() {
        let a = t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let b = t(&[3, 2], &[7., 8., 9., 10., 11., 12.]);
        let c = matmul(&a, &b).unwrap();
        assert_eq!(
            (c.shape(), c.data()),
            (&[2, 2][..], &[58., 64., 139., 154.][..])
        );
        let v = t(&[3], &[1., 0., -1.]);
        let c = matmul(&a, &v).unwrap();
        assert_eq!((c.shape(), c.data()), (&[2][..], &[-2., -2.][..]));
        let c = matmul(&v, &b).unwrap();
        assert_eq!((c.shape(), c.data()), (&[2][..], &[-4., -4.][..]));
        let c = matmul(&v, &v).unwrap();
        assert_eq!((c.shape(), c.data()), (&[][..], &[2.][..]));
        // A batch of two against one matrix, and one against a batch.
        let ab = t(&[2, 1, 3], &[1., 2., 3., 4., 5., 6.]);
        let c = matmul(&ab, &b).unwrap();
        assert_eq!(
            (c.shape(), c.data()),
            (&[2, 1, 2][..], &[58., 64., 139., 154.][..])
        );
        let bb = t(&[2, 3, 1], &[1., 0., 0., 0., 0., 1.]);
        let c = matmul(&a, &bb).unwrap();
        assert_eq!(
            (c.shape(), c.data()),
            (&[2, 2, 1][..], &[1., 4., 3., 6.][..])
        );
        // An empty inner dimension gives zeros.
        let c = matmul(&Tensor::<f64>::zeros([2, 0]), &Tensor::zeros([0, 3])).unwrap();
        assert_eq!((c.shape(), c.data()), (&[2, 3][..], &[0.; 6][..]));
    }

    #[test]
    fn bad_shapes_are_errors() {
        let a = Tensor::<f64>::zeros([2, 3]);
        assert!(matches!(
            matmul(&a, &Tensor::scalar(1.0)),
            Err(TensorError::Rank { op: "matmul", .. })
        ));
        assert!(matches!(
            matmul(&a, &Tensor::zeros([2, 3])),
            Err(TensorError::ShapeMismatch { op: "matmul", .. })
        ));
        assert!(matmul(&Tensor::<f64>::zeros([2, 2, 3]), &Tensor::zeros([3, 3, 1])).is_err());
        let b = Tensor::<f64>::zeros([3, 4]);
        assert!(matches!(
            matmul_backward(&a, &b, &Tensor::zeros([2, 3]), true, true),
            Err(TensorError::ShapeMismatch {
                op: "matmul_backward",
                ..
            })
        ));
        let (ga, gb) = matmul_backward(&a, &b, &Tensor::zeros([2, 4]), false, true).unwrap();
        assert!(ga.is_none());
        assert_eq!(gb.unwrap().shape(), &[3, 4]);
    }

    #[test]
    fn backward_hand_computed() {
        // c = a b with a [1, 2], b [2, 1]: dc/da = b^T g, dc/db = a^T g.
        let a = t(&[1, 2], &[1., 2.]);
        let b = t(&[2, 1], &[3., 4.]);
        let g = t(&[1, 1], &[2.]);
        let (ga, gb) = matmul_backward(&a, &b, &g, true, true).unwrap();
        assert_eq!(ga.unwrap().data(), &[6., 8.]);
        assert_eq!(gb.unwrap().data(), &[2., 4.]);
        // One matrix against a batch of two: its gradient sums both.
        let a = t(&[1, 1], &[1.]);
        let b = t(&[2, 1, 1], &[3., 4.]);
        let g = t(&[2, 1, 1], &[1., 10.]);
        let (ga, gb) = matmul_backward(&a, &b, &g, true, true).unwrap();
        assert_eq!(ga.unwrap().data(), &[43.]);
        assert_eq!(gb.unwrap().data(), &[1., 10.]);
    }

    /// Two operand shapes for a product: batch shapes that broadcast, and
    /// either operand possibly 1-d.
    fn arb_shapes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        (
            prop::collection::vec((1usize..4, any::<bool>(), any::<bool>()), 0..3),
            1usize..5,
            1usize..5,
            1usize..5,
            0u8..4,
        )
            .prop_map(|(batch, m, k, n, flat)| {
                let mut a: Vec<usize> = batch
                    .iter()
                    .map(|&(d, one, _)| if one { 1 } else { d })
                    .collect();
                let mut b: Vec<usize> = batch
                    .iter()
                    .map(|&(d, _, one)| if one { 1 } else { d })
                    .collect();
                if flat & 1 == 1 {
                    a = vec![k];
                } else {
                    a.extend([m, k]);
                }
                if flat & 2 == 2 {
                    b = vec![k];
                } else {
                    b.extend([k, n]);
                }
                (a, b)
            })
    }

    proptest! {
        #[test]
        fn matches_the_triple_loop((sa, sb) in arb_shapes(), seed in 0u64..1000) {
            let (a, b) = (rnd(&sa, seed), rnd(&sb, seed + 1));
            let got = matmul(&a, &b).unwrap();
            let want = naive(&a, &b);
            prop_assert_eq!(got.shape(), want.shape());
            prop_assert!(got.max_abs_diff(&want).unwrap() < 1e-12);
        }

        #[test]
        fn backward_by_finite_differences((sa, sb) in arb_shapes(), seed in 0u64..1000) {
            let (a, b) = (rnd(&sa, seed), rnd(&sb, seed + 1));
            let g = rnd(matmul(&a, &b).unwrap().shape(), seed + 2);
            let (ga, gb) = matmul_backward(&a, &b, &g, true, true).unwrap();
            let fa = |a: &Tensor<f64>| matmul(a, &b).unwrap();
            let fb = |b: &Tensor<f64>| matmul(&a, b).unwrap();
            assert_close(&ga.unwrap(), &numeric_grad(fa, &a, &g), 1e-6);
            assert_close(&gb.unwrap(), &numeric_grad(fb, &b, &g), 1e-6);
        }
    }

    #[test]
    fn large_products_are_bit_identical_across_thread_counts() {
        // Batched, folded (one right operand), and a broadcast left operand
        // whose gradient sums the batches.
        let a = rnd(&[8, 64, 96], 1).cast::<f32>();
        let b = rnd(&[8, 96, 80], 2).cast::<f32>();
        let w = rnd(&[96, 80], 3).cast::<f32>();
        let a1 = rnd(&[64, 96], 4).cast::<f32>();
        let g = rnd(&[8, 64, 80], 5).cast::<f32>();
        let run = |threads| {
            on_threads(threads, || {
                let mut r = vec![
                    matmul(&a, &b).unwrap(),
                    matmul(&a, &w).unwrap(),
                    matmul(&a1, &b).unwrap(),
                ];
                for (x, y) in [(&a, &b), (&a, &w), (&a1, &b)] {
                    let (ga, gb) = matmul_backward(x, y, &g, true, true).unwrap();
                    r.extend([ga.unwrap(), gb.unwrap()]);
                }
                r
            })
        };
        let (one, four) = (run(1), run(4));
        for (p, q) in one.iter().zip(&four) {
            assert_eq!(bits(p.data()), bits(q.data()));
        }
        // The values, against the triple loop in f64.
        let close = |got: &Tensor<f32>, want: Tensor<f64>| {
            assert!(got.cast::<f64>().max_abs_diff(&want).unwrap() < 1e-3);
        };
        close(&one[0], naive(&a.cast(), &b.cast()));
        close(&one[1], naive(&a.cast(), &w.cast()));
        close(&one[2], naive(&a1.cast(), &b.cast()));
        let gw = one[6].cast::<f64>();
        let mut want = vec![0.0; 96 * 80];
        for i in 0..8 {
            for p in 0..96 {
                for j in 0..80 {
                    want[p * 80 + j] += (0..64)
                        .map(|r| {
                            f64::from(a.data()[i * 64 * 96 + r * 96 + p])
                                * f64::from(g.data()[i * 64 * 80 + r * 80 + j])
                        })
                        .sum::<f64>();
                }
            }
        }
        assert!(
            gw.max_abs_diff(&Tensor::from_vec([96, 80], want).unwrap())
                .unwrap()
                < 1e-3
        );
    }
}
