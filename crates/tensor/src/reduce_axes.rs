//! Mean over a set of axes (ONNX ReduceMean; global average pooling is the
//! mean over H and W) and its backward, with the fixed-order sum that the
//! reductions of this family share.

use crate::broadcast::{expand, reduce_to_shape};
use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::tensor::Tensor;

/// The sum of `v` in a fixed order: eight interleaved lanes (element `i`
/// into lane `i % 8`), the lanes added pairwise, then the tail in order.
/// Faster and more accurate than a running sum, and the same bits whatever
/// the thread count (one caller sums one run).
#[inline]
pub(crate) fn sum_lanes<T: Element>(v: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    for &x in chunks.remainder() {
        s += x;
    }
    s
}

/// The inner product of `a` and `b` (of one length) in the fixed order of
/// [`sum_lanes`].
#[inline]
pub(crate) fn dot_lanes<T: Element>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}

/// The shape with the reduced axes kept as 1, and the number of elements
/// each mean averages, after checking `axes` (strictly increasing, in
/// range).
fn kept_shape(shape: &[usize], axes: &[usize], op: &'static str) -> Result<(Vec<usize>, usize)> {
    let mut kept = shape.to_vec();
    let mut count = 1usize;
    for (i, &axis) in axes.iter().enumerate() {
        if axis >= shape.len() {
            return Err(TensorError::Axis {
                op,
                axis,
                shape: shape.to_vec(),
            });
        }
        if i > 0 && axes[i - 1] >= axis {
            return Err(TensorError::InvalidParameter {
                op,
                message: format!("axes {axes:?} must be strictly increasing"),
            });
        }
        count = count
            .checked_mul(shape[axis])
            .ok_or(TensorError::TooLarge {
                op,
                shape: shape.to_vec(),
            })?;
        kept[axis] = 1;
    }
    if count == 0 {
        return Err(TensorError::ZeroSized {
            op,
            shape: shape.to_vec(),
        });
    }
    Ok((kept, count))
}

/// The result shape of a reduction: the kept shape, or without the reduced
/// axes.
fn result_shape(kept: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    if keepdims {
        return kept.to_vec();
    }
    kept.iter()
        .enumerate()
        .filter(|(d, _)| axes.binary_search(d).is_err())
        .map(|(_, &len)| len)
        .collect()
}

/// The mean of `x` over `axes` (strictly increasing; empty: no axis is
/// reduced and the result is a copy), the reduced axes kept with length 1
/// when `keepdims`, else removed. A sum divided by the count, as PyTorch's
/// `mean`. An error for an axis out of range, axes not strictly increasing,
/// or a reduced axis of length 0.
pub fn mean_axes<T: Element>(x: &Tensor<T>, axes: &[usize], keepdims: bool) -> Result<Tensor<T>> {
    const OP: &str = "mean_axes";
    let (kept, count) = kept_shape(x.shape(), axes, OP)?;
    let sum = reduce_to_shape(x, &kept)?;
    let n = T::from_usize(count).ok_or(TensorError::TooLarge {
        op: OP,
        shape: x.shape().to_vec(),
    })?;
    sum.map(move |v| v / n)
        .reshape(result_shape(&kept, axes, keepdims))
}

/// Backward of [`mean_axes`]: `g` (the mean's shape) broadcast back to
/// `in_shape` and divided by the count (PyTorch's `grad.expand(...) / n`).
pub fn mean_axes_backward<T: Element>(
    g: &Tensor<T>,
    in_shape: &[usize],
    axes: &[usize],
    keepdims: bool,
) -> Result<Tensor<T>> {
    const OP: &str = "mean_axes_backward";
    let (kept, count) = kept_shape(in_shape, axes, OP)?;
    if g.shape() != result_shape(&kept, axes, keepdims) {
        return Err(TensorError::ShapeMismatch {
            op: OP,
            left: g.shape().to_vec(),
            right: in_shape.to_vec(),
        });
    }
    let n = T::from_usize(count).ok_or(TensorError::TooLarge {
        op: OP,
        shape: in_shape.to_vec(),
    })?;
    // Dividing before broadcasting gives the same values with fewer
    // divisions.
    let scaled = g.map(move |v| v / n).reshape(kept)?;
    expand(&scaled, in_shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{rnd, t};
    use crate::testing_grad::{arb_tensor, assert_close, bits, numeric_grad, on_threads};
    use proptest::prelude::*;

    #[test]
    fn lane_sum_is_exact_on_integers_and_ordered() {
        let v: Vec<f64> = (1..=21).map(f64::from).collect();
        assert_eq!(sum_lanes(&v), 231.0);
        assert_eq!(sum_lanes::<f64>(&[]), 0.0);
        assert_eq!(sum_lanes(&[2.5f32]), 2.5);
    }

    #[test]
    fn means_hand_computed() {
        let x = t(
            &[2, 2, 3],
            &[1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12.],
        );
        let m = mean_axes(&x, &[1, 2], true).unwrap();
        assert_eq!((m.shape(), m.data()), (&[2, 1, 1][..], &[3.5, 9.5][..]));
        let m = mean_axes(&x, &[0], false).unwrap();
        assert_eq!(m.shape(), &[2, 3]);
        assert_eq!(m.data(), &[4., 5., 6., 7., 8., 9.]);
        let m = mean_axes(&x, &[0, 1, 2], false).unwrap();
        assert_eq!((m.shape(), m.data()), (&[][..], &[6.5][..]));
        let m = mean_axes(&x, &[], false).unwrap();
        assert_eq!(m, x);
        let g = t(&[2], &[3., 6.]);
        let gx = mean_axes_backward(&g, &[2, 2, 3], &[1, 2], false).unwrap();
        assert_eq!(
            gx.data(),
            &[0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1., 1., 1., 1., 1., 1.]
        );
    }

    #[test]
    fn bad_axes_are_errors() {
        let x = Tensor::<f64>::zeros([2, 3]);
        assert!(matches!(
            mean_axes(&x, &[2], true),
            Err(TensorError::Axis {
                op: "mean_axes",
                ..
            })
        ));
        assert!(matches!(
            mean_axes(&x, &[1, 0], true),
            Err(TensorError::InvalidParameter { .. })
        ));
        assert!(mean_axes(&x, &[1, 1], true).is_err());
        assert!(matches!(
            mean_axes(&Tensor::<f64>::zeros([2, 0]), &[1], true),
            Err(TensorError::ZeroSized { .. })
        ));
        let g = Tensor::<f64>::zeros([2, 1]);
        assert!(mean_axes_backward(&g, &[2, 3], &[1], false).is_err());
        assert!(mean_axes_backward(&g, &[2, 3], &[1], true).is_ok());
    }

    proptest! {
        #[test]
        fn mean_backward_by_finite_differences(
            x in arb_tensor(vec![2, 3, 2, 2]),
            mask in 1u8..16,
            keepdims in any::<bool>(),
        ) {
            let axes: Vec<usize> = (0..4).filter(|d| mask & (1 << d) != 0).collect();
            let f = |x: &Tensor<f64>| mean_axes(x, &axes, keepdims).unwrap();
            let g = rnd(f(&x).shape(), 5);
            let got = mean_axes_backward(&g, x.shape(), &axes, keepdims).unwrap();
            assert_close(&got, &numeric_grad(f, &x, &g), 1e-6);
        }
    }

    #[test]
    fn global_average_pool_is_bit_identical_across_thread_counts() {
        let x = rnd(&[4, 64, 28, 28], 9).cast::<f32>();
        let run = |threads| {
            on_threads(threads, || {
                let m = mean_axes(&x, &[2, 3], true).unwrap();
                let c = mean_axes(&x, &[0, 2], false).unwrap();
                let g = mean_axes_backward(&m, x.shape(), &[2, 3], true).unwrap();
                (m, c, g)
            })
        };
        let (a, b) = (run(1), run(4));
        assert_eq!(bits(a.0.data()), bits(b.0.data()));
        assert_eq!(bits(a.1.data()), bits(b.1.data()));
        assert_eq!(bits(a.2.data()), bits(b.2.data()));
        // Against a plain f64 mean.
        let xd = x.cast::<f64>();
        for (p, &v) in a.0.data().iter().enumerate() {
            let want: f64 = xd.data()[p * 784..(p + 1) * 784].iter().sum::<f64>() / 784.0;
            assert!((f64::from(v) - want).abs() < 1e-6);
        }
        assert_eq!(a.2.data()[5], a.0.data()[0] / 784.0);
    }
}
