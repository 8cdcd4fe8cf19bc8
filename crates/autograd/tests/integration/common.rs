//! Helpers shared by the autograd integration tests.
#![allow(dead_code)]

use sightline_tensor::{Element, Tensor};

/// Deterministic pseudo-random values in `[lo, hi]`.
pub fn uniform<T: Element>(shape: &[usize], seed: u64, lo: f64, hi: f64) -> Tensor<T> {
    let n: usize = shape.iter().product();
    let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
    let data = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((s >> 11) as f64) / ((1u64 << 53) as f64);
            T::from_f64_lossy(lo + (hi - lo) * u)
        })
        .collect();
    Tensor::from_vec(shape.to_vec(), data).unwrap()
}
