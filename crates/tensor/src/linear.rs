//! Fully connected layer: `y = x W^T + b`, and its backward.

use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::gemm::{gemm, gemm_map_b, MatRef};
use crate::tensor::Tensor;

/// Linear forward: `x` N x In, `weight` Out x In, optional `bias` of Out; returns N x Out.
pub fn linear<T: Element>(
    x: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
) -> Result<Tensor<T>> {
    let (n, fin, fout) = forward_dims(x, weight)?;
    let mut out = Tensor::zeros([n, fout]);
    if let Some(b) = bias {
        if b.shape() != [fout] {
            return Err(TensorError::ShapeMismatch {
                op: "linear bias",
                left: vec![fout],
                right: b.shape().to_vec(),
            });
        }
        for row in out.data_mut().chunks_mut(fout) {
            row.copy_from_slice(b.data());
        }
    }
    let beta = if bias.is_some() { T::one() } else { T::zero() };
    gemm(
        T::one(),
        MatRef::row_major(x.data(), n, fin),
        MatRef::row_major(weight.data(), fout, fin).t(),
        beta,
        out.data_mut(),
    )?;
    Ok(out)
}

/// Gradient with respect to the input: `g W` (N x In).
pub fn linear_backward_input<T: Element>(g: &Tensor<T>, weight: &Tensor<T>) -> Result<Tensor<T>> {
    let (n, fout, fin) = backward_input_dims(g, weight)?;
    let mut out = Tensor::zeros([n, fin]);
    gemm(
        T::one(),
        MatRef::row_major(g.data(), n, fout),
        MatRef::row_major(weight.data(), fout, fin),
        T::zero(),
        out.data_mut(),
    )?;
    Ok(out)
}

/// Whether [`linear_backward_input`] of `rows` gradient rows streams
/// `weight` once for all of them, each row's result independent of the
/// others (the same bits as computing it alone when that streams too):
/// true for a few rows (up to 4) of a large enough layer. A caller with
/// several gradients of the same layer (several backward passes) can then
/// stack them and read the weight once.
pub fn backward_input_streams<T: Element>(rows: usize, weight: &Tensor<T>) -> bool {
    match weight.shape() {
        &[fout, fin] => rows > 0 && crate::gemv::takes_gemv(rows, fout, fin),
        _ => false,
    }
}

/// `x map(W)^T` (no bias), with `map` applied to every entry of the weight:
/// bit-identical to [`linear`] on `weight.map(map)`, without making that
/// copy at batch sizes up to 4 (the weight is streamed once).
pub fn linear_map_weight<T: Element>(
    x: &Tensor<T>,
    weight: &Tensor<T>,
    map: impl Fn(T) -> T + Sync + Send,
) -> Result<Tensor<T>> {
    let (n, fin, fout) = forward_dims(x, weight)?;
    let mut out = Tensor::zeros([n, fout]);
    gemm_map_b(
        T::one(),
        MatRef::row_major(x.data(), n, fin),
        MatRef::row_major(weight.data(), fout, fin).t(),
        T::zero(),
        out.data_mut(),
        map,
    )?;
    Ok(out)
}

/// `g map(W)` (N x In), with `map` applied to every entry of the weight:
/// bit-identical to [`linear_backward_input`] on `weight.map(map)`, without
/// making that copy at batch sizes up to 4.
pub fn linear_backward_input_map_weight<T: Element>(
    g: &Tensor<T>,
    weight: &Tensor<T>,
    map: impl Fn(T) -> T + Sync + Send,
) -> Result<Tensor<T>> {
    let (n, fout, fin) = backward_input_dims(g, weight)?;
    let mut out = Tensor::zeros([n, fin]);
    gemm_map_b(
        T::one(),
        MatRef::row_major(g.data(), n, fout),
        MatRef::row_major(weight.data(), fout, fin),
        T::zero(),
        out.data_mut(),
        map,
    )?;
    Ok(out)
}

/// `(N, In, Out)` of a forward product, or the mismatch.
fn forward_dims<T: Element>(x: &Tensor<T>, weight: &Tensor<T>) -> Result<(usize, usize, usize)> {
    let [n, fin] = x.dims2("linear")?;
    let [fout, win] = weight.dims2("linear")?;
    if fin != win {
        return Err(TensorError::ShapeMismatch {
            op: "linear",
            left: x.shape().to_vec(),
            right: weight.shape().to_vec(),
        });
    }
    Ok((n, fin, fout))
}

/// `(N, Out, In)` of an input-gradient product, or the mismatch.
fn backward_input_dims<T: Element>(
    g: &Tensor<T>,
    weight: &Tensor<T>,
) -> Result<(usize, usize, usize)> {
    let [n, fout] = g.dims2("linear_backward_input")?;
    let [wout, fin] = weight.dims2("linear_backward_input")?;
    if fout != wout {
        return Err(TensorError::ShapeMismatch {
            op: "linear_backward_input",
            left: g.shape().to_vec(),
            right: weight.shape().to_vec(),
        });
    }
    Ok((n, fout, fin))
}

/// Gradient with respect to the weight: `g^T x` (Out x In).
pub fn linear_backward_weight<T: Element>(g: &Tensor<T>, x: &Tensor<T>) -> Result<Tensor<T>> {
    let [n, fout] = g.dims2("linear_backward_weight")?;
    let [nx, fin] = x.dims2("linear_backward_weight")?;
    if n != nx {
        return Err(TensorError::ShapeMismatch {
            op: "linear_backward_weight",
            left: g.shape().to_vec(),
            right: x.shape().to_vec(),
        });
    }
    let mut out = Tensor::zeros([fout, fin]);
    gemm(
        T::one(),
        MatRef::row_major(g.data(), n, fout).t(),
        MatRef::row_major(x.data(), n, fin),
        T::zero(),
        out.data_mut(),
    )?;
    Ok(out)
}

/// Gradient with respect to the bias: `g` summed over the batch.
pub fn linear_backward_bias<T: Element>(g: &Tensor<T>) -> Result<Tensor<T>> {
    let [_, fout] = g.dims2("linear_backward_bias")?;
    let mut out = vec![T::zero(); fout];
    for row in g.data().chunks(fout) {
        out.iter_mut().zip(row).for_each(|(o, &v)| *o += v);
    }
    Tensor::from_vec([fout], out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_and_backward_values() {
        let x = Tensor::<f64>::from_vec([2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let w = Tensor::from_vec([2, 3], vec![1., 0., -1., 0.5, 0.5, 0.5]).unwrap();
        let b = Tensor::from_vec([2], vec![10., 20.]).unwrap();
        let y = linear(&x, &w, Some(&b)).unwrap();
        assert_eq!(y.data(), &[8., 23., 8., 27.5]);
        let g = Tensor::from_vec([2, 2], vec![1., 0., 0., 2.]).unwrap();
        assert_eq!(
            linear_backward_input(&g, &w).unwrap().data(),
            &[1., 0., -1., 1., 1., 1.]
        );
        assert_eq!(
            linear_backward_weight(&g, &x).unwrap().data(),
            &[1., 2., 3., 8., 10., 12.]
        );
        assert_eq!(linear_backward_bias(&g).unwrap().data(), &[1., 2.]);
    }

    #[test]
    fn mapped_weight_equals_mapped_copy() {
        // Batch 1 and 3 (the matrix-vector paths) and 7 (the GEMM path).
        let clamp = |w: f32| (-w).max(0.0);
        for n in [1, 3, 7] {
            let x = Tensor::<f32>::from_vec(
                [n, 700],
                (0..n * 700)
                    .map(|i| ((i * 7) % 13) as f32 * 0.1 - 0.6)
                    .collect(),
            )
            .unwrap();
            let w = Tensor::<f32>::from_vec(
                [900, 700],
                (0..900 * 700)
                    .map(|i| ((i * 5) % 11) as f32 * 0.1 - 0.5)
                    .collect(),
            )
            .unwrap();
            let wc = w.map(clamp);
            let y = linear_map_weight(&x, &w, clamp).unwrap();
            assert_eq!(y.data(), linear(&x, &wc, None).unwrap().data());
            let gi = linear_backward_input_map_weight(&y, &w, clamp).unwrap();
            assert_eq!(gi.data(), linear_backward_input(&y, &wc).unwrap().data());
        }
        let x = Tensor::<f32>::zeros([1, 3]);
        assert!(linear_map_weight(&x, &Tensor::zeros([2, 4]), |w| w).is_err());
        assert!(linear_backward_input_map_weight(&x, &Tensor::zeros([2, 4]), |w| w).is_err());
    }

    #[test]
    fn mismatches_are_errors() {
        let x = Tensor::<f32>::zeros([2, 3]);
        let w = Tensor::<f32>::zeros([2, 4]);
        assert!(linear(&x, &w, None).is_err());
        let w = Tensor::<f32>::zeros([2, 3]);
        assert!(linear(&x, &w, Some(&Tensor::zeros([3]))).is_err());
    }
}
