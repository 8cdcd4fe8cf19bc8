//! Softmax over any axis (ONNX Softmax, opset 13 and later) and its
//! backward. (The log-softmax over the last axis lives in
//! [`crate::softmax`].)
//!
//! The tensor is viewed as `outer x len x inner` around the axis. Along a
//! last axis (`inner == 1`) each row is contiguous; otherwise the axis is
//! walked row by row of `inner` contiguous elements, so that every pass
//! reads memory in order. Whole blocks of the axis are computed by one
//! task each, sums in a fixed order: the same bits whatever the number of
//! threads.

use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::layout::{checked_numel, for_each_rows};
use crate::reduce_axes::{dot_lanes, sum_lanes};
use crate::tensor::Tensor;

/// `(outer, len, inner)` around `axis`.
fn around(shape: &[usize], axis: usize, op: &'static str) -> Result<(usize, usize, usize)> {
    if axis >= shape.len() {
        return Err(TensorError::Axis {
            op,
            axis,
            shape: shape.to_vec(),
        });
    }
    checked_numel(shape, op)?;
    Ok((
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    ))
}

/// Softmax of `x` along `axis`: `exp(x - max) / sum(exp(x - max))`, the
/// maximum subtracted for stability, the division done as a product by the
/// sum's reciprocal (PyTorch's CPU kernel).
pub fn softmax<T: Element>(x: &Tensor<T>, axis: usize) -> Result<Tensor<T>> {
    const OP: &str = "softmax_axis";
    let (_, len, inner) = around(x.shape(), axis, OP)?;
    let mut out = x.par_clone();
    let block = len * inner;
    for_each_rows(out.data_mut(), block, 4, |_, blocks| {
        for b in blocks.chunks_exact_mut(block) {
            if inner == 1 {
                softmax_row(b);
            } else {
                softmax_strided(b, inner);
            }
        }
    });
    Ok(out)
}

/// Softmax of one contiguous row, in place.
fn softmax_row<T: Element>(row: &mut [T]) {
    let max = row.iter().copied().fold(T::neg_infinity(), T::max);
    row.iter_mut().for_each(|v| *v = (*v - max).exp());
    let inv = T::one() / sum_lanes(row);
    row.iter_mut().for_each(|v| *v *= inv);
}

/// Softmax along the rows of a `len x inner` block, column by column, in
/// place.
fn softmax_strided<T: Element>(block: &mut [T], inner: usize) {
    let (first, rest) = block.split_at(inner);
    let mut acc = first.to_vec();
    for row in rest.chunks_exact(inner) {
        acc.iter_mut().zip(row).for_each(|(m, &v)| *m = m.max(v));
    }
    let max = std::mem::replace(&mut acc, vec![T::zero(); inner]);
    for row in block.chunks_exact_mut(inner) {
        for ((v, &m), s) in row.iter_mut().zip(&max).zip(acc.iter_mut()) {
            *v = (*v - m).exp();
            *s += *v;
        }
    }
    acc.iter_mut().for_each(|s| *s = T::one() / *s);
    for row in block.chunks_exact_mut(inner) {
        row.iter_mut().zip(&acc).for_each(|(v, &inv)| *v *= inv);
    }
}

/// Backward of [`softmax`] along `axis` from its output `y`:
/// `y * (g - sum(g * y))`, the sum along the axis.
pub fn softmax_backward<T: Element>(
    g: &Tensor<T>,
    y: &Tensor<T>,
    axis: usize,
) -> Result<Tensor<T>> {
    const OP: &str = "softmax_axis_backward";
    g.expect_same_shape(y, OP)?;
    let (_, len, inner) = around(g.shape(), axis, OP)?;
    let mut out = g.par_clone();
    let block = len * inner;
    let yd = y.data();
    for_each_rows(out.data_mut(), block, 3, |first, blocks| {
        for (i, b) in blocks.chunks_exact_mut(block).enumerate() {
            let yb = &yd[(first + i) * block..][..block];
            if inner == 1 {
                let dot = dot_lanes(b, yb);
                b.iter_mut().zip(yb).for_each(|(v, &y)| *v = y * (*v - dot));
            } else {
                let mut dot = vec![T::zero(); inner];
                for (gr, yr) in b.chunks_exact(inner).zip(yb.chunks_exact(inner)) {
                    for ((d, &g), &y) in dot.iter_mut().zip(gr).zip(yr) {
                        *d += g * y;
                    }
                }
                for (gr, yr) in b.chunks_exact_mut(inner).zip(yb.chunks_exact(inner)) {
                    for ((v, &y), &d) in gr.iter_mut().zip(yr).zip(&dot) {
                        *v = y * (*v - d);
                    }
                }
            }
        }
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape_ops::transpose;
    use crate::testing::{rnd, t};
    use crate::testing_grad::{arb_tensor, assert_close, bits, numeric_grad, on_threads};
    use proptest::prelude::*;

    #[test]
    fn hand_computed_rows_and_columns() {
        let x = t(&[2, 3], &[1., 2., 3., 1001., 1002., 1003.]);
        let y = softmax(&x, 1).unwrap();
        let want = [
            0.090_030_573_170_380_46,
            0.244_728_471_054_797_64,
            0.665_240_955_774_821_6,
        ];
        for (r, row) in y.data().chunks(3).enumerate() {
            for (v, w) in row.iter().zip(want) {
                assert!((v - w).abs() < 1e-15, "row {r}");
            }
        }
        // Over the first axis: each column of two.
        let y = softmax(&x, 0).unwrap();
        for c in 0..3 {
            assert_eq!(y.data()[c], 0.0);
            assert_eq!(y.data()[3 + c], 1.0);
        }
        let x = t(&[2, 2], &[0., 0., 3f64.ln(), 0.]);
        let y = softmax(&x, 0).unwrap();
        assert_eq!(y.data()[1], 0.5);
        assert!((y.data()[0] - 0.25).abs() < 1e-15 && (y.data()[2] - 0.75).abs() < 1e-15);
        assert!(matches!(
            softmax(&x, 2),
            Err(TensorError::Axis {
                op: "softmax_axis",
                ..
            })
        ));
        assert!(softmax_backward(&x, &t(&[4], &[0.; 4]), 0).is_err());
        assert_eq!(
            softmax(&Tensor::<f64>::zeros([2, 0, 3]), 1)
                .unwrap()
                .shape(),
            &[2, 0, 3]
        );
    }

    #[test]
    fn any_axis_matches_the_last_axis_after_a_transpose() {
        let x = rnd(&[3, 4, 5], 7);
        let last = softmax(&x, 2).unwrap();
        let reference = crate::softmax::softmax(&x).unwrap();
        assert!(last.max_abs_diff(&reference).unwrap() < 1e-15);
        let mid = softmax(&x, 1).unwrap();
        let via = transpose(
            &softmax(&transpose(&x, &[0, 2, 1]).unwrap(), 2).unwrap(),
            &[0, 2, 1],
        )
        .unwrap();
        assert!(mid.max_abs_diff(&via).unwrap() < 1e-15);
    }

    proptest! {
        #[test]
        fn backward_by_finite_differences(x in arb_tensor(vec![2, 3, 4]), axis in 0usize..3) {
            let f = |x: &Tensor<f64>| softmax(x, axis).unwrap();
            let g = rnd(&[2, 3, 4], 3);
            let got = softmax_backward(&g, &f(&x), axis).unwrap();
            assert_close(&got, &numeric_grad(f, &x, &g), 1e-6);
        }
    }

    #[test]
    fn large_softmax_is_bit_identical_across_thread_counts() {
        let x = rnd(&[6, 300, 64], 1).map(|v| 4.0 * v).cast::<f32>();
        let g = rnd(&[6, 300, 64], 2).cast::<f32>();
        let run = |threads| {
            on_threads(threads, || {
                let (a, b) = (softmax(&x, 2).unwrap(), softmax(&x, 1).unwrap());
                let (ga, gb) = (
                    softmax_backward(&g, &a, 2).unwrap(),
                    softmax_backward(&g, &b, 1).unwrap(),
                );
                [a, b, ga, gb]
            })
        };
        let (one, four) = (run(1), run(4));
        for (p, q) in one.iter().zip(&four) {
            assert_eq!(bits(p.data()), bits(q.data()));
        }
        let want = softmax(&x.cast::<f64>(), 1).unwrap();
        assert!(one[1].cast::<f64>().max_abs_diff(&want).unwrap() < 1e-6);
    }
}
