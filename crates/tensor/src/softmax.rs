//! Softmax, log-softmax and softmax cross-entropy over the last axis.

use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::tensor::Tensor;

fn rows<T: Element>(x: &Tensor<T>, op: &'static str) -> Result<usize> {
    match x.shape().last() {
        Some(&k) if k > 0 => Ok(k),
        _ => Err(TensorError::ZeroSized {
            op,
            shape: x.shape().to_vec(),
        }),
    }
}

/// Log-softmax over the last axis (max-shifted for stability).
pub fn log_softmax<T: Element>(x: &Tensor<T>) -> Result<Tensor<T>> {
    let k = rows(x, "log_softmax")?;
    let mut out = x.clone();
    for row in out.data_mut().chunks_mut(k) {
        let m = row.iter().copied().fold(T::neg_infinity(), T::max);
        let lse = row.iter().map(|&v| (v - m).exp()).sum::<T>().ln() + m;
        row.iter_mut().for_each(|v| *v -= lse);
    }
    Ok(out)
}

/// Softmax over the last axis.
pub fn softmax<T: Element>(x: &Tensor<T>) -> Result<Tensor<T>> {
    Ok(log_softmax(x)?.map(|v| v.exp()))
}

/// Mean cross-entropy of N x K logits against N class indices, with its
/// gradient with respect to the logits: `(softmax - onehot) / N`.
pub fn cross_entropy<T: Element>(logits: &Tensor<T>, targets: &[usize]) -> Result<(T, Tensor<T>)> {
    let [n, k] = logits.dims2("cross_entropy")?;
    if targets.len() != n {
        return Err(TensorError::ShapeMismatch {
            op: "cross_entropy",
            left: logits.shape().to_vec(),
            right: vec![targets.len()],
        });
    }
    if let Some(&bad) = targets.iter().find(|&&t| t >= k) {
        return Err(TensorError::InvalidParameter {
            op: "cross_entropy",
            message: format!("target class {bad} out of range for {k} classes"),
        });
    }
    let ls = log_softmax(logits)?;
    let nn = T::from_usize(n).unwrap_or_else(T::one);
    let mut loss = T::zero();
    let mut grad = ls.map(|v| v.exp() / nn);
    for (i, &t) in targets.iter().enumerate() {
        loss -= ls.data()[i * k + t];
        grad.data_mut()[i * k + t] -= T::one() / nn;
    }
    Ok((loss / nn, grad))
}

/// Backward of [`log_softmax`]: `g - softmax * sum(g)` per row, given the log-softmax output.
pub fn log_softmax_backward<T: Element>(g: &Tensor<T>, out: &Tensor<T>) -> Result<Tensor<T>> {
    g.expect_same_shape(out, "log_softmax_backward")?;
    let k = rows(g, "log_softmax_backward")?;
    let mut gx = g.clone();
    for (gr, orow) in gx.data_mut().chunks_mut(k).zip(out.data().chunks(k)) {
        let s: T = gr.iter().copied().sum();
        gr.iter_mut()
            .zip(orow)
            .for_each(|(v, &o)| *v -= o.exp() * s);
    }
    Ok(gx)
}

/// Backward of [`softmax`]: `y * (g - sum(g * y))` per row, given the softmax output `y`.
pub fn softmax_backward<T: Element>(g: &Tensor<T>, y: &Tensor<T>) -> Result<Tensor<T>> {
    g.expect_same_shape(y, "softmax_backward")?;
    let k = rows(g, "softmax_backward")?;
    let mut gx = g.clone();
    for (gr, yr) in gx.data_mut().chunks_mut(k).zip(y.data().chunks(k)) {
        let dot: T = gr.iter().zip(yr).map(|(&a, &b)| a * b).sum();
        gr.iter_mut()
            .zip(yr)
            .for_each(|(v, &y)| *v = y * (*v - dot));
    }
    Ok(gx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_sum_to_one_and_are_shift_invariant() {
        let x = Tensor::<f64>::from_vec([2, 3], vec![1., 2., 3., 1001., 1002., 1003.]).unwrap();
        let s = softmax(&x).unwrap();
        for r in s.data().chunks(3) {
            assert!((r.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        assert!((s.data()[0] - s.data()[3]).abs() < 1e-12);
        assert!((s.data()[2] - 0.665_240_955_774_821_6).abs() < 1e-12);
    }

    #[test]
    fn cross_entropy_value_and_gradient() {
        let x = Tensor::<f64>::from_vec([1, 2], vec![0.0, 0.0]).unwrap();
        let (l, g) = cross_entropy(&x, &[1]).unwrap();
        assert!((l - std::f64::consts::LN_2).abs() < 1e-12);
        assert_eq!(g.data(), &[0.5, -0.5]);
        assert!(cross_entropy(&x, &[2]).is_err());
    }
}
