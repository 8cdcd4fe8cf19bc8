//! Elementwise kernels: add, mul, clamp; ReLU with its sign mask lives in
//! [`crate::sign_mask`] and is re-exported here.

use crate::element::Element;
use crate::error::Result;
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::mem::MaybeUninit;

pub use crate::sign_mask::{clip_in_place, relu, relu_in_place, SignMask};

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
    let write = |out: &mut [MaybeUninit<T>]| {
        out.par_chunks_mut(CHUNK)
            .zip(a.data().par_chunks(CHUNK).zip(b.data().par_chunks(CHUNK)))
            .for_each(|(o, (x, y))| {
                for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                    o.write(f(x, y));
                }
            });
        Ok(())
    };
    // SAFETY: the chunks of the output pair with equal chunks of `a` and
    // `b` (one shape), and every element of each is written.
    unsafe { Tensor::write_whole(a.shape().to_vec(), write) }
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
