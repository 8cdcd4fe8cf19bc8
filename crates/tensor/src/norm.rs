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
}
