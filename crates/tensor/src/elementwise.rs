//! Elementwise kernels: add, mul, ReLU with its sign mask, clamp.

use crate::element::Element;
use crate::error::Result;
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Elements per parallel chunk; fixed so results do not depend on the thread count.
const CHUNK: usize = 1 << 14;

/// `a + b` for tensors of one shape.
pub fn add<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    zip_par(a, b, "add", |x, y| x + y)
}

/// `a - b` for tensors of one shape.
pub fn sub<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    zip_par(a, b, "sub", |x, y| x - y)
}

/// `a * b` elementwise for tensors of one shape.
pub fn mul<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    zip_par(a, b, "mul", |x, y| x * y)
}

/// `a * s` for a scalar `s`.
pub fn scale<T: Element>(a: &Tensor<T>, s: T) -> Tensor<T> {
    a.map(|v| v * s)
}

/// Adds `b` into `a` in place (same shapes).
pub fn add_assign<T: Element>(a: &mut Tensor<T>, b: &Tensor<T>) -> Result<()> {
    a.expect_same_shape(b, "add_assign")?;
    a.data_mut()
        .par_chunks_mut(CHUNK)
        .zip(b.data().par_chunks(CHUNK))
        .for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(p, &q)| *p += q));
    Ok(())
}

fn zip_par<T: Element>(
    a: &Tensor<T>,
    b: &Tensor<T>,
    op: &'static str,
    f: impl Fn(T, T) -> T + Sync + Send,
) -> Result<Tensor<T>> {
    a.expect_same_shape(b, op)?;
    let mut out = Tensor::zeros(a.shape().to_vec());
    out.data_mut()
        .par_chunks_mut(CHUNK)
        .zip(a.data().par_chunks(CHUNK).zip(b.data().par_chunks(CHUNK)))
        .for_each(|(o, (x, y))| {
            for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                *o = f(x, y);
            }
        });
    Ok(out)
}

/// The signs of a ReLU's input, two bits per element: `x > 0` and `x >= 0`.
///
/// That is all any ReLU rule needs (standard: pass where `x > 0`; guided:
/// zero where `x < 0`), at 1/16 of the memory of a copy of the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignMask {
    positive: Vec<u64>,
    non_negative: Vec<u64>,
    len: usize,
}

impl SignMask {
    /// Records the signs of `x`.
    pub fn of<T: Element>(x: &[T]) -> Self {
        let words = x.len().div_ceil(64);
        let mut positive = vec![0u64; words];
        let mut non_negative = vec![0u64; words];
        positive
            .par_iter_mut()
            .zip(non_negative.par_iter_mut())
            .enumerate()
            .for_each(|(w, (p, nn))| {
                let chunk = &x[w * 64..((w + 1) * 64).min(x.len())];
                for (b, &v) in chunk.iter().enumerate() {
                    *p |= u64::from(v > T::zero()) << b;
                    *nn |= u64::from(v >= T::zero()) << b;
                }
            });
        Self {
            positive,
            non_negative,
            len: x.len(),
        }
    }

    /// Number of elements recorded.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no element was recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether element `i` was strictly positive.
    pub fn is_positive(&self, i: usize) -> bool {
        self.positive[i / 64] >> (i % 64) & 1 == 1
    }

    /// Whether element `i` was non-negative.
    pub fn is_non_negative(&self, i: usize) -> bool {
        self.non_negative[i / 64] >> (i % 64) & 1 == 1
    }

    /// Applies `f(g, positive, non_negative)` to every gradient element in place.
    pub fn apply<T: Element>(&self, g: &mut [T], f: impl Fn(T, bool, bool) -> T + Sync + Send) {
        g.par_chunks_mut(64 * 256)
            .enumerate()
            .for_each(|(c, chunk)| {
                for (k, word) in chunk.chunks_mut(64).enumerate() {
                    let w = c * 256 + k;
                    let (p, nn) = (self.positive[w], self.non_negative[w]);
                    for (b, v) in word.iter_mut().enumerate() {
                        *v = f(*v, p >> b & 1 == 1, nn >> b & 1 == 1);
                    }
                }
            });
    }
}

/// ReLU forward: `max(x, 0)` and the sign mask of `x`.
pub fn relu<T: Element>(x: &Tensor<T>) -> (Tensor<T>, SignMask) {
    let mask = SignMask::of(x.data());
    let mut out = x.clone();
    out.data_mut().par_chunks_mut(CHUNK).for_each(|c| {
        c.iter_mut().for_each(|v| {
            if *v <= T::zero() {
                *v = T::zero();
            }
        })
    });
    (out, mask)
}

/// `clamp(x, lo, hi)` elementwise; either bound may be absent.
pub fn clamp<T: Element>(x: &Tensor<T>, lo: Option<T>, hi: Option<T>) -> Tensor<T> {
    x.map(|v| {
        let v = lo.map_or(v, |l| if v < l { l } else { v });
        hi.map_or(v, |h| if v > h { h } else { v })
    })
}

/// Backward of [`clamp`]: the gradient passes where `lo <= x <= hi` (PyTorch's convention).
pub fn clamp_backward<T: Element>(
    g: &Tensor<T>,
    x: &Tensor<T>,
    lo: Option<T>,
    hi: Option<T>,
) -> Result<Tensor<T>> {
    zip_par(g, x, "clamp_backward", |g, x| {
        let inside = lo.is_none_or(|l| x >= l) && hi.is_none_or(|h| x <= h);
        if inside {
            g
        } else {
            T::zero()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu_and_mask() {
        let x = Tensor::<f32>::from_vec([5], vec![-1.0, 0.0, 2.0, -0.0, 3.0]).unwrap();
        let (y, m) = relu(&x);
        assert_eq!(y.data(), &[0.0, 0.0, 2.0, 0.0, 3.0]);
        assert_eq!(
            (0..5).map(|i| m.is_positive(i)).collect::<Vec<_>>(),
            [false, false, true, false, true]
        );
        assert_eq!(
            (0..5).map(|i| m.is_non_negative(i)).collect::<Vec<_>>(),
            [false, true, true, true, true]
        );
        let mut g = vec![1.0f32; 5];
        m.apply(&mut g, |g, p, _| if p { g } else { 0.0 });
        assert_eq!(g, [0.0, 0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn mask_spans_many_words() {
        let x: Vec<f64> = (0..70_000).map(|i| (i % 3) as f64 - 1.0).collect();
        let m = SignMask::of(&x);
        let mut g = vec![1.0; x.len()];
        m.apply(&mut g, |g, _, nn| if nn { g } else { 0.0 });
        for (i, v) in g.iter().enumerate() {
            assert_eq!(*v, if i % 3 == 0 { 0.0 } else { 1.0 });
        }
    }

    #[test]
    fn clamp_and_its_backward() {
        let x = Tensor::<f64>::from_vec([4], vec![-2.0, 0.0, 1.0, 5.0]).unwrap();
        let y = clamp(&x, Some(0.0), Some(1.0));
        assert_eq!(y.data(), &[0.0, 0.0, 1.0, 1.0]);
        let g = Tensor::ones([4]);
        let gx = clamp_backward(&g, &x, Some(0.0), Some(1.0)).unwrap();
        assert_eq!(gx.data(), &[0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let a = Tensor::<f32>::zeros([2, 2]);
        let b = Tensor::<f32>::zeros([4]);
        assert!(add(&a, &b).is_err());
        assert!(mul(&a, &b).is_err());
    }
}
