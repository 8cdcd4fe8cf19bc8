//! Batch normalisation in inference mode.

use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Per-channel affine form of an inference batch norm: `y = x * scale + shift`
/// with `scale = weight / sqrt(var + eps)` and `shift = bias - mean * scale`
/// (the form PyTorch's CPU kernel evaluates).
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormAffine<T> {
    /// Multiplier per channel.
    pub scale: Vec<T>,
    /// Offset per channel.
    pub shift: Vec<T>,
}

impl<T: Element> BatchNormAffine<T> {
    /// Folds running statistics and affine parameters into scale and shift.
    pub fn new(
        mean: &Tensor<T>,
        var: &Tensor<T>,
        weight: &Tensor<T>,
        bias: &Tensor<T>,
        eps: T,
    ) -> Result<Self> {
        let c = mean.len();
        for t in [var, weight, bias] {
            if t.shape() != [c] || mean.shape() != [c] {
                return Err(TensorError::ShapeMismatch {
                    op: "batch_norm",
                    left: mean.shape().to_vec(),
                    right: t.shape().to_vec(),
                });
            }
        }
        let scale: Vec<T> = (0..c)
            .map(|i| weight.data()[i] / (var.data()[i] + eps).sqrt())
            .collect();
        let shift = (0..c)
            .map(|i| bias.data()[i] - mean.data()[i] * scale[i])
            .collect();
        Ok(Self { scale, shift })
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.scale.len()
    }
}

/// Applies the batch norm to an N x C x ... tensor.
pub fn batch_norm<T: Element>(x: &Tensor<T>, bn: &BatchNormAffine<T>) -> Result<Tensor<T>> {
    let inner = check(x, bn.channels(), "batch_norm")?;
    let c = bn.channels();
    let mut out = x.clone();
    out.data_mut()
        .par_chunks_mut(inner)
        .enumerate()
        .for_each(|(i, plane)| {
            let (s, b) = (bn.scale[i % c], bn.shift[i % c]);
            plane.iter_mut().for_each(|v| *v = *v * s + b);
        });
    Ok(out)
}

/// Backward of the batch norm with respect to its input: `g * scale` per channel.
pub fn batch_norm_backward_input<T: Element>(
    g: &Tensor<T>,
    bn: &BatchNormAffine<T>,
) -> Result<Tensor<T>> {
    let inner = check(g, bn.channels(), "batch_norm_backward_input")?;
    let c = bn.channels();
    let mut out = g.clone();
    out.data_mut()
        .par_chunks_mut(inner)
        .enumerate()
        .for_each(|(i, plane)| {
            let s = bn.scale[i % c];
            plane.iter_mut().for_each(|v| *v *= s);
        });
    Ok(out)
}

/// Folds a batch norm into the convolution (or linear map) before it: the
/// kernel `W'[o] = W[o] * scale[o]` (each output channel's slice scaled) and
/// the bias `b'[o] = b[o] * scale[o] + shift[o]` (`shift[o]` without a bias),
/// so that one convolution with `W'` and `b'` computes `bn(conv(x, W) + b)`
/// up to rounding.
///
/// Fails when the kernel's first dimension, the bias and the batch norm do
/// not have the same number of channels.
pub fn fold_batch_norm<T: Element>(
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    bn: &BatchNormAffine<T>,
) -> Result<(Tensor<T>, Tensor<T>)> {
    let op = "fold_batch_norm";
    let c = bn.channels();
    let mismatch = |t: &Tensor<T>| TensorError::ShapeMismatch {
        op,
        left: t.shape().to_vec(),
        right: vec![c],
    };
    if weight.ndim() < 1 || weight.shape()[0] != c || weight.is_empty() {
        return Err(mismatch(weight));
    }
    if let Some(b) = bias {
        if b.shape() != [c] {
            return Err(mismatch(b));
        }
    }
    let per_channel = weight.len() / c;
    let mut folded = weight.clone();
    folded
        .data_mut()
        .chunks_mut(per_channel)
        .zip(&bn.scale)
        .for_each(|(w, &s)| w.iter_mut().for_each(|v| *v *= s));
    let b = (0..c)
        .map(|o| match bias {
            Some(b) => b.data()[o] * bn.scale[o] + bn.shift[o],
            None => bn.shift[o],
        })
        .collect();
    Ok((folded, Tensor::from_vec([c], b)?))
}

fn check<T: Element>(x: &Tensor<T>, c: usize, op: &'static str) -> Result<usize> {
    if x.ndim() < 2 || x.shape()[1] != c || x.is_empty() {
        return Err(TensorError::ShapeMismatch {
            op,
            left: x.shape().to_vec(),
            right: vec![c],
        });
    }
    Ok(x.len() / (x.shape()[0] * c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_with_running_statistics() {
        let t = |v: Vec<f64>| Tensor::from_vec([2], v).unwrap();
        let bn = BatchNormAffine::new(
            &t(vec![1., -1.]),
            &t(vec![4., 0.25]),
            &t(vec![2., 1.]),
            &t(vec![0., 3.]),
            0.0,
        )
        .unwrap();
        let x = Tensor::from_vec([1, 2, 1, 2], vec![3., 5., -1., 0.]).unwrap();
        let y = batch_norm(&x, &bn).unwrap();
        assert_eq!(y.data(), &[2., 4., 3., 5.]);
        let g = batch_norm_backward_input(&Tensor::ones([1, 2, 1, 2]), &bn).unwrap();
        assert_eq!(g.data(), &[1., 1., 2., 2.]);
        assert!(batch_norm(&Tensor::<f64>::zeros([1, 3, 1, 1]), &bn).is_err());
    }

    /// A convolution with the folded kernel and bias equals the convolution
    /// followed by the batch norm (to rounding), with and without a bias;
    /// mismatched channels are errors.
    #[test]
    fn folding_into_a_convolution_matches_conv_then_batch_norm() {
        use crate::conv::{conv2d, Conv2dParams};
        let t = |shape: Vec<usize>, seed: usize| {
            let n: usize = shape.iter().product();
            let v = (0..n)
                .map(|i| (((i * 7919 + seed * 104_729) % 97) as f64 - 48.0) / 31.0)
                .collect();
            Tensor::from_vec(shape, v).unwrap()
        };
        let bn = BatchNormAffine::new(
            &t(vec![3], 1),
            &t(vec![3], 2).map(|v| v * v + 0.1),
            &t(vec![3], 3),
            &t(vec![3], 4),
            1e-5,
        )
        .unwrap();
        let (x, w, b) = (
            t(vec![2, 2, 5, 4], 5),
            t(vec![3, 2, 3, 3], 6),
            t(vec![3], 7),
        );
        let p = Conv2dParams::new(1, 1);
        for bias in [None, Some(&b)] {
            let want = batch_norm(&conv2d(&x, &w, bias, p).unwrap(), &bn).unwrap();
            let (fw, fb) = fold_batch_norm(&w, bias, &bn).unwrap();
            let got = conv2d(&x, &fw, Some(&fb), p).unwrap();
            for (g, w) in got.data().iter().zip(want.data()) {
                assert!((g - w).abs() <= 1e-12 * (1.0 + w.abs()), "{g} vs {w}");
            }
        }
        assert!(fold_batch_norm(&t(vec![4, 2, 3, 3], 1), None, &bn).is_err());
        assert!(fold_batch_norm(&w, Some(&t(vec![2], 1)), &bn).is_err());
    }
}
