//! Reductions over one axis: sum, mean, max (with the index of the first maximum).
//!
//! A tensor is viewed as `outer x axis x inner` around the reduced axis; the
//! result keeps the axis with length 1, so it broadcasts back by [`expand_axis`].

use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::layout::try_buffer;
use crate::tensor::Tensor;

fn split(shape: &[usize], axis: usize, op: &'static str) -> Result<(usize, usize, usize)> {
    if axis >= shape.len() {
        return Err(TensorError::Axis {
            op,
            axis,
            shape: shape.to_vec(),
        });
    }
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    Ok((outer, shape[axis], inner))
}

fn kept_shape(shape: &[usize], axis: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    s[axis] = 1;
    s
}

/// Sum over `axis`, keeping it with length 1.
pub fn sum_axis<T: Element>(x: &Tensor<T>, axis: usize) -> Result<Tensor<T>> {
    let (outer, len, inner) = split(x.shape(), axis, "sum_axis")?;
    let mut out = vec![T::zero(); outer * inner];
    for o in 0..outer {
        for a in 0..len {
            let src = &x.data()[(o * len + a) * inner..(o * len + a + 1) * inner];
            out[o * inner..(o + 1) * inner]
                .iter_mut()
                .zip(src)
                .for_each(|(d, &v)| *d += v);
        }
    }
    Tensor::from_vec(kept_shape(x.shape(), axis), out)
}

/// Mean over `axis`, keeping it with length 1.
pub fn mean_axis<T: Element>(x: &Tensor<T>, axis: usize) -> Result<Tensor<T>> {
    let len = *x.shape().get(axis).ok_or(TensorError::Axis {
        op: "mean_axis",
        axis,
        shape: x.shape().to_vec(),
    })?;
    if len == 0 {
        return Err(TensorError::ZeroSized {
            op: "mean_axis",
            shape: x.shape().to_vec(),
        });
    }
    let s = sum_axis(x, axis)?;
    let n = T::from_usize(len).unwrap_or_else(T::one);
    Ok(s.map(|v| v / n))
}

/// Maximum over `axis` (keeping it with length 1) and, per result, the index
/// along the axis of the first maximal element.
pub fn max_axis<T: Element>(x: &Tensor<T>, axis: usize) -> Result<(Tensor<T>, Vec<usize>)> {
    let (outer, len, inner) = split(x.shape(), axis, "max_axis")?;
    if len == 0 {
        return Err(TensorError::ZeroSized {
            op: "max_axis",
            shape: x.shape().to_vec(),
        });
    }
    let mut out = Vec::with_capacity(outer * inner);
    let mut arg = vec![0usize; outer * inner];
    if inner == 0 {
        return Ok((Tensor::from_vec(kept_shape(x.shape(), axis), out)?, arg));
    }
    // Row by row along the axis, so that every read runs over contiguous
    // memory.
    for (o, block) in x.data().chunks_exact(len * inner).enumerate() {
        let (first, rest) = block.split_at(inner);
        out.extend_from_slice(first);
        let (best, best_a) = (&mut out[o * inner..], &mut arg[o * inner..(o + 1) * inner]);
        for (a, row) in rest.chunks_exact(inner).enumerate() {
            for ((b, ba), &v) in best.iter_mut().zip(best_a.iter_mut()).zip(row) {
                if v > *b || (v.is_nan() && !b.is_nan()) {
                    *b = v;
                    *ba = a + 1;
                }
            }
        }
    }
    Ok((Tensor::from_vec(kept_shape(x.shape(), axis), out)?, arg))
}

/// The maxima along `axis` without their positions (PyTorch's `amax`),
/// the axis kept with length 1: the values [`max_axis`] gives (a NaN
/// wins), in one vectorized sweep per row along the axis. A saliency map's
/// maximum over channels takes this path: with the positions, a
/// mispredicted branch per pixel made it 0.5 ms of a ResNet-50 call.
pub fn amax_axis<T: Element>(x: &Tensor<T>, axis: usize) -> Result<Tensor<T>> {
    let (outer, len, inner) = split(x.shape(), axis, "amax_axis")?;
    if len == 0 {
        return Err(TensorError::ZeroSized {
            op: "amax_axis",
            shape: x.shape().to_vec(),
        });
    }
    let mut out = Vec::with_capacity(outer * inner);
    if inner > 0 {
        for block in x.data().chunks_exact(len * inner) {
            let (first, rest) = block.split_at(inner);
            let at = out.len();
            out.extend_from_slice(first);
            for row in rest.chunks_exact(inner) {
                // A NaN already there stays; a NaN met wins; else the larger.
                for (b, &v) in out[at..].iter_mut().zip(row) {
                    *b = if (v > *b || v.is_nan()) && !b.is_nan() {
                        v
                    } else {
                        *b
                    };
                }
            }
        }
    }
    Tensor::from_vec(kept_shape(x.shape(), axis), out)
}

/// Repeats a tensor whose `axis` has length 1 to length `len` (the adjoint of [`sum_axis`]).
pub fn expand_axis<T: Element>(x: &Tensor<T>, axis: usize, len: usize) -> Result<Tensor<T>> {
    let (outer, one, inner) = split(x.shape(), axis, "expand_axis")?;
    if one != 1 {
        return Err(TensorError::InvalidParameter {
            op: "expand_axis",
            message: format!("axis {axis} of {:?} must have length 1", x.shape()),
        });
    }
    let mut shape = x.shape().to_vec();
    shape[axis] = len;
    // `len` comes from the caller: the new size is checked, and allocated
    // fallibly, before anything is copied.
    let (mut out, _) = try_buffer(&shape, "expand_axis")?;
    for o in 0..outer {
        let src = &x.data()[o * inner..(o + 1) * inner];
        for _ in 0..len {
            out.extend_from_slice(src);
        }
    }
    Tensor::from_vec(shape, out)
}

/// Sum of all elements.
pub fn sum_all<T: Element>(x: &Tensor<T>) -> T {
    x.data().iter().copied().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_axis_checks_the_new_size() {
        let x = Tensor::<f64>::from_vec([2, 1], vec![1.0, 2.0]).unwrap();
        let e = expand_axis(&x, 1, usize::MAX).unwrap_err();
        assert!(matches!(
            e,
            TensorError::TooLarge {
                op: "expand_axis",
                ..
            }
        ));
        assert!(expand_axis(&x, 1, 1 << 62).is_err());
        let y = expand_axis(&x, 1, 3).unwrap();
        assert_eq!(y.data(), &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    }

    fn t() -> Tensor<f64> {
        Tensor::from_vec([2, 3], vec![1., 5., 5., -1., -2., 0.]).unwrap()
    }

    #[test]
    fn sums_and_means() {
        assert_eq!(sum_axis(&t(), 0).unwrap().data(), &[0., 3., 5.]);
        assert_eq!(sum_axis(&t(), 1).unwrap().shape(), &[2, 1]);
        assert_eq!(mean_axis(&t(), 1).unwrap().data(), &[11. / 3., -1.]);
        assert!(sum_axis(&t(), 2).is_err());
    }

    #[test]
    fn max_takes_the_first_maximum() {
        let (m, a) = max_axis(&t(), 1).unwrap();
        assert_eq!(m.data(), &[5., 0.]);
        assert_eq!(a, vec![1, 2]);
    }

    /// Over a middle axis: each position keeps its first maximum, a NaN
    /// wins over numbers (and the first NaN over later ones); an axis of
    /// positions that is empty gives an empty result.
    #[test]
    fn max_over_a_middle_axis_keeps_first_maxima_and_nan() {
        let nan = f64::NAN;
        // [2, 3, 2]: outer 2, axis 3, inner 2.
        let x = Tensor::<f64>::from_vec(
            [2, 3, 2],
            vec![1., 4., 3., 4., 3., nan, -1., nan, -1., -2., -1., nan],
        )
        .unwrap();
        let (m, a) = max_axis(&x, 1).unwrap();
        assert_eq!(m.shape(), &[2, 1, 2]);
        assert_eq!((m.data()[0], m.data()[2]), (3., -1.));
        assert!(m.data()[1].is_nan() && m.data()[3].is_nan());
        assert_eq!(a, vec![1, 2, 0, 0]);
        let (e, ea) = max_axis(&Tensor::<f64>::zeros([2, 3, 0]), 1).unwrap();
        assert_eq!((e.shape(), ea.len()), (&[2, 1, 0][..], 0));
        // amax: the same values, NaN included.
        let v = amax_axis(&x, 1).unwrap();
        assert_eq!(v.shape(), m.shape());
        for (p, q) in v.data().iter().zip(m.data()) {
            assert!(p == q || (p.is_nan() && q.is_nan()));
        }
        assert_eq!(amax_axis(&t(), 1).unwrap().data(), &[5., 0.]);
        assert!(amax_axis(&Tensor::<f64>::zeros([2, 0]), 1).is_err());
        assert_eq!(
            amax_axis(&Tensor::<f64>::zeros([2, 3, 0]), 1)
                .unwrap()
                .shape(),
            &[2, 1, 0]
        );
    }

    #[test]
    fn expand_is_adjoint_of_sum() {
        let s = Tensor::<f64>::from_vec([2, 1], vec![1., 2.]).unwrap();
        assert_eq!(
            expand_axis(&s, 1, 3).unwrap().data(),
            &[1., 1., 1., 2., 2., 2.]
        );
    }
}
