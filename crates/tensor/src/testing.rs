//! Helpers shared by the kernels' unit tests.

use crate::element::Element;
use crate::tensor::Tensor;

/// A deterministic ramp of values in [-1, 1) (`(i * mul) % 23`, scaled), in
/// any element type: the inputs of the Winograd and packed-product tests.
pub(crate) fn seq<T: Element>(shape: &[usize], mul: usize) -> Tensor<T> {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| T::from_f64_lossy(((i * mul) % 23) as f64 / 11.0 - 1.0))
        .collect();
    Tensor::from_vec(shape.to_vec(), data).unwrap()
}

/// Deterministic pseudo-random values in [-1, 1).
pub(crate) fn rnd(shape: &[usize], seed: u64) -> Tensor<f64> {
    let mut s = seed;
    let data = (0..shape.iter().product::<usize>())
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect();
    Tensor::from_vec(shape.to_vec(), data).unwrap()
}

/// The inner product of two tensors' elements.
pub(crate) fn dot(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    a.data().iter().zip(b.data()).map(|(x, y)| x * y).sum()
}

/// A tensor from a shape and values.
pub(crate) fn t(shape: &[usize], data: &[f64]) -> Tensor<f64> {
    Tensor::from_vec(shape.to_vec(), data.to_vec()).unwrap()
}
