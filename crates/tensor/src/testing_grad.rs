//! Helpers for the tests of the ONNX-op kernels: central-difference
//! gradients, a tolerance check, arbitrary tensors for proptests, and a run
//! on a rayon pool of a given size.

use crate::tensor::Tensor;
use proptest::prelude::*;

/// Step of the central differences.
pub(crate) const H: f64 = 1e-6;

/// The gradient of `<f(x), w>` with respect to `x` by central differences.
pub(crate) fn numeric_grad(
    f: impl Fn(&Tensor<f64>) -> Tensor<f64>,
    x: &Tensor<f64>,
    w: &Tensor<f64>,
) -> Tensor<f64> {
    let loss = |t: &Tensor<f64>| -> f64 {
        let y = f(t);
        assert_eq!(y.shape(), w.shape(), "upstream gradient shape");
        y.data().iter().zip(w.data()).map(|(a, b)| a * b).sum()
    };
    let mut grad = x.clone();
    let mut probe = x.clone();
    for i in 0..x.len() {
        let v = x.data()[i];
        probe.data_mut()[i] = v + H;
        let up = loss(&probe);
        probe.data_mut()[i] = v - H;
        let down = loss(&probe);
        probe.data_mut()[i] = v;
        grad.data_mut()[i] = (up - down) / (2.0 * H);
    }
    grad
}

/// Asserts that two tensors of one shape agree to `tol` relative to
/// `max(1, |value|)` elementwise.
pub(crate) fn assert_close(got: &Tensor<f64>, want: &Tensor<f64>, tol: f64) {
    assert_eq!(got.shape(), want.shape());
    for (i, (&g, &w)) in got.data().iter().zip(want.data()).enumerate() {
        let scale = w.abs().max(1.0);
        assert!(
            (g - w).abs() <= tol * scale,
            "element {i}: got {g}, want {w} (shape {:?})",
            got.shape()
        );
    }
}

/// A tensor of `shape` with values drawn from `-2..2`.
pub(crate) fn arb_tensor(shape: Vec<usize>) -> impl Strategy<Value = Tensor<f64>> {
    let n = shape.iter().product::<usize>();
    prop::collection::vec(-2.0f64..2.0, n)
        .prop_map(move |v| Tensor::from_vec(shape.clone(), v).expect("length matches"))
}

/// Runs `f` on a rayon pool of `threads` threads.
pub(crate) fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a thread pool")
        .install(f)
}

/// The bits of an `f32` buffer, for bit-for-bit comparisons.
pub(crate) fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every index of `shape`, in row-major order.
pub(crate) fn all_indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let n: usize = shape.iter().product();
    (0..n)
        .map(|mut p| {
            let mut idx = vec![0; shape.len()];
            for d in (0..shape.len()).rev() {
                idx[d] = p % shape[d];
                p /= shape[d];
            }
            idx
        })
        .collect()
}

/// The flat offset in a tensor of `shape` of the element that `index`, an
/// index into a shape that `shape` broadcasts to, reads.
pub(crate) fn broadcast_offset(shape: &[usize], index: &[usize]) -> usize {
    let lead = index.len() - shape.len();
    shape.iter().enumerate().fold(0, |off, (d, &len)| {
        off * len + if len == 1 { 0 } else { index[lead + d] }
    })
}
