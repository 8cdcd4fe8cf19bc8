//! Separable Gaussian blur with replicate padding: TorchRay's
//! `imsmooth(x, sigma, padding_mode='replicate')`, which its saliency methods
//! apply for their `smooth` argument.
//!
//! Each (n, c) plane is one rayon task, so results do not depend on the
//! number of threads.

use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::pool::shape4;
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Largest `sigma` accepted: it bounds the kernel to `2 ceil(4 sigma) + 1` taps.
pub const MAX_SIGMA: f64 = 1e6;

/// The normalised 1-d Gaussian of TorchRay's `imsmooth`: radius
/// `r = ceil(4 sigma)`, taps `exp(-(i / (sqrt(2) sigma + eps))^2)` for
/// `i = -r..=r` (eps the `f32` machine epsilon, `1.19209290e-07`), divided by
/// their sum.
///
/// A `sigma` that is not positive (or NaN) gives the identity `[1.0]`, as
/// TorchRay does for 0; one above [`MAX_SIGMA`] is clamped to it.
pub fn gaussian_kernel(sigma: f64) -> Vec<f64> {
    if sigma.is_nan() || sigma <= 0.0 {
        return vec![1.0];
    }
    let sigma = sigma.min(MAX_SIGMA);
    let r = (4.0 * sigma).ceil() as i64;
    let scale = std::f64::consts::SQRT_2 * sigma + f64::from(f32::EPSILON);
    let taps: Vec<f64> = (-r..=r)
        .map(|i| (-(i as f64 / scale).powi(2)).exp())
        .collect();
    let sum: f64 = taps.iter().sum();
    taps.into_iter().map(|t| t / sum).collect()
}

/// Gaussian blur of every plane of an N x C x H x W tensor with
/// [`gaussian_kernel`]`(sigma)` (taps converted to `T`): a vertical pass, then
/// a horizontal one, each padding by replicating the edge; the output has
/// the input's shape.
///
/// `sigma` must be finite, positive and at most [`MAX_SIGMA`].
pub fn gaussian_blur<T: Element>(x: &Tensor<T>, sigma: f64) -> Result<Tensor<T>> {
    let op = "gaussian_blur";
    let [_, _, h, w] = shape4(op, x.shape())?;
    if sigma.is_nan() || sigma <= 0.0 || sigma > MAX_SIGMA {
        return Err(TensorError::InvalidParameter {
            op,
            message: format!(
                "sigma must be in (0, {MAX_SIGMA}], got {sigma} for input {:?}",
                x.shape()
            ),
        });
    }
    let taps: Vec<T> = gaussian_kernel(sigma)
        .into_iter()
        .map(T::from_f64_lossy)
        .collect();
    let r = taps.len() / 2;
    let mut out = Tensor::zeros(x.shape().to_vec());
    out.data_mut()
        .par_chunks_mut(h * w)
        .zip(x.data().par_chunks(h * w))
        .for_each(|(dst, src)| {
            // Vertical: output row y accumulates the source rows clamp(y + t - r).
            for (y, row) in dst.chunks_mut(w).enumerate() {
                for (t, &k) in taps.iter().enumerate() {
                    let sy = (y + t).saturating_sub(r).min(h - 1);
                    for (d, &s) in row.iter_mut().zip(&src[sy * w..(sy + 1) * w]) {
                        *d += k * s;
                    }
                }
            }
            // Horizontal: each row, padded by replication, slides under the taps.
            let mut padded = vec![T::zero(); w + 2 * r];
            for row in dst.chunks_mut(w) {
                padded[..r].fill(row[0]);
                padded[r..r + w].copy_from_slice(row);
                padded[r + w..].fill(row[w - 1]);
                row.fill(T::zero());
                for (t, &k) in taps.iter().enumerate() {
                    for (d, &s) in row.iter_mut().zip(&padded[t..t + w]) {
                        *d += k * s;
                    }
                }
            }
        });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct 2-d blur with clamped coordinates, for comparison.
    fn naive(x: &Tensor<f64>, sigma: f64) -> Tensor<f64> {
        let k = gaussian_kernel(sigma);
        let r = (k.len() / 2) as isize;
        let [n, c, h, w] = x.dims4("naive").unwrap();
        let mut out = Tensor::zeros(x.shape().to_vec());
        let clamp = |v: isize, len: usize| v.clamp(0, len as isize - 1) as usize;
        for p in 0..n * c {
            for y in 0..h {
                for xx in 0..w {
                    let mut s = 0.0;
                    for (i, ki) in k.iter().enumerate() {
                        for (j, kj) in k.iter().enumerate() {
                            let sy = clamp(y as isize + i as isize - r, h);
                            let sx = clamp(xx as isize + j as isize - r, w);
                            s += ki * kj * x.data()[(p * h + sy) * w + sx];
                        }
                    }
                    out.data_mut()[(p * h + y) * w + xx] = s;
                }
            }
        }
        out
    }

    #[test]
    fn kernel_is_normalised_and_symmetric() {
        for (sigma, len) in [(1.0, 9), (0.3, 5), (2.5, 21), (0.01, 3)] {
            let k = gaussian_kernel(sigma);
            assert_eq!(k.len(), len, "sigma {sigma}");
            assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-15);
            assert!(k.iter().zip(k.iter().rev()).all(|(a, b)| a == b));
            assert!(k.windows(2).take(len / 2).all(|p| p[0] < p[1]));
        }
        let k = gaussian_kernel(1.0);
        let s = std::f64::consts::SQRT_2 + 1.192_092_9e-7;
        assert!((k[5] / k[4] - (-1.0 / (s * s)).exp()).abs() < 1e-15);
        assert!((k[8] / k[4] - (-16.0 / (s * s)).exp()).abs() < 1e-15);
        assert_eq!(gaussian_kernel(0.0), vec![1.0]);
        assert_eq!(gaussian_kernel(f64::NAN), vec![1.0]);
    }

    #[test]
    fn blur_of_constant_is_constant() {
        let x = Tensor::<f32>::full([2, 3, 5, 4], 0.7);
        let y = gaussian_blur(&x, 1.5).unwrap();
        assert_eq!(y.shape(), x.shape());
        assert!(y.data().iter().all(|v| (v - 0.7).abs() < 1e-6));
        let y = gaussian_blur(&Tensor::<f64>::full([1, 1, 3, 3], -2.0), 0.8).unwrap();
        assert!(y.data().iter().all(|v| (v + 2.0).abs() < 1e-14));
    }

    #[test]
    fn impulse_away_from_edges_gives_the_kernel() {
        let mut x = Tensor::<f64>::zeros([1, 1, 11, 11]);
        x.data_mut()[5 * 11 + 5] = 1.0;
        let y = gaussian_blur(&x, 1.0).unwrap();
        let k = gaussian_kernel(1.0);
        for yy in 0..11 {
            for xx in 0..11 {
                let want = if (1..10).contains(&yy) && (1..10).contains(&xx) {
                    k[yy - 1] * k[xx - 1]
                } else {
                    0.0
                };
                assert!((y.data()[yy * 11 + xx] - want).abs() < 1e-16);
            }
        }
    }

    #[test]
    fn replicate_padding_matches_direct_blur() {
        let data = (0..2 * 7 * 5)
            .map(|i| ((i * 37) % 11) as f64 - 5.0)
            .collect();
        let x = Tensor::from_vec([1, 2, 7, 5], data).unwrap();
        for sigma in [0.6, 1.0, 3.0] {
            let got = gaussian_blur(&x, sigma).unwrap();
            assert!(
                got.max_abs_diff(&naive(&x, sigma)).unwrap() < 1e-12,
                "sigma {sigma}"
            );
        }
        // A kernel wider than the plane: everything clamps to the edges.
        let x = Tensor::from_vec([1, 1, 1, 2], vec![0.0, 1.0]).unwrap();
        let got = gaussian_blur(&x, 2.0).unwrap();
        assert!(got.max_abs_diff(&naive(&x, 2.0)).unwrap() < 1e-12);
        assert!((got.data()[0] + got.data()[1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bad_input_is_rejected() {
        let x = Tensor::<f32>::zeros([1, 1, 3, 3]);
        for sigma in [0.0, -1.0, f64::NAN, f64::INFINITY, 2.0 * MAX_SIGMA] {
            let e = gaussian_blur(&x, sigma);
            assert!(matches!(
                e,
                Err(TensorError::InvalidParameter {
                    op: "gaussian_blur",
                    ..
                })
            ));
        }
        let e = gaussian_blur(&Tensor::<f32>::zeros([3, 3]), 1.0);
        assert!(matches!(e, Err(TensorError::Rank { .. })));
        let e = gaussian_blur(&Tensor::<f32>::zeros([1, 0, 3, 3]), 1.0);
        assert!(matches!(e, Err(TensorError::ZeroSized { .. })));
    }
}
