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
    let mut out = Tensor::try_full_for(vec![n, fout], T::zero(), "linear")?;
    fill_bias(&mut out, bias, fout)?;
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

/// [`linear`] and `x map(W)^T` (no bias) in one read of the weight, where
/// both are streamed products (a few rows of a large layer: see
/// [`backward_input_streams`]); each result the same bits as [`linear`] and
/// [`linear_map_weight`] give alone. `None` for the second where the shapes
/// do not stream (then compute it apart if it is needed).
///
/// The excitation rule's denominator needs `x max(W, 0)^T`: a forward pass
/// that keeps what every rule needs makes it here, sharing the read of
/// VGG16's 411 MB `fc6` weight with the forward product.
pub fn linear_and_mapped<T: Element>(
    x: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    map: impl Fn(T) -> T + Sync + Send,
) -> Result<(Tensor<T>, Option<Tensor<T>>)> {
    let (n, fin, fout) = forward_dims(x, weight)?;
    let mut out = Tensor::try_full_for(vec![n, fout], T::zero(), "linear")?;
    fill_bias(&mut out, bias, fout)?;
    let beta = if bias.is_some() { T::one() } else { T::zero() };
    let mut mapped = Tensor::try_full_for(vec![n, fout], T::zero(), "linear")?;
    let a = MatRef::row_major(x.data(), n, fin);
    let b = MatRef::row_major(weight.data(), fout, fin).t();
    if crate::gemv::gemv_and_mapped(a, b, beta, out.data_mut(), mapped.data_mut(), &map) {
        return Ok((out, Some(mapped)));
    }
    Ok((linear(x, weight, bias)?, None))
}

/// Gradient with respect to the input: `g W` (N x In).
///
/// Up to 4 rows of `g` stream the weight once and read only the rows of
/// `W` that some row of `g` scales by a non-zero (after a ReLU, half or
/// more of them): a zero in `g` contributes nothing, also against an
/// infinite or NaN weight (where `0 * inf` would be NaN). Up to 12 rows
/// stream it once per group of 4, each row the bits it has alone (a batch
/// of 8 reads VGG16's `fc6` weight twice instead of packing it for a GEMM:
/// 24 ms against 50).
pub fn linear_backward_input<T: Element>(g: &Tensor<T>, weight: &Tensor<T>) -> Result<Tensor<T>> {
    let (n, fout, fin) = backward_input_dims(g, weight)?;
    let mut out = Tensor::try_full_for(vec![n, fin], T::zero(), "linear_backward_input")?;
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
    let mut out = Tensor::try_full_for(vec![n, fout], T::zero(), "linear")?;
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
/// making that copy at batch sizes up to 12 (the weight is streamed once
/// per group of 4 rows).
pub fn linear_backward_input_map_weight<T: Element>(
    g: &Tensor<T>,
    weight: &Tensor<T>,
    map: impl Fn(T) -> T + Sync + Send,
) -> Result<Tensor<T>> {
    let (n, fout, fin) = backward_input_dims(g, weight)?;
    let mut out = Tensor::try_full_for(vec![n, fin], T::zero(), "linear_backward_input")?;
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

/// Writes `bias` (of `fout`) into every row of `out`, or the mismatch.
fn fill_bias<T: Element>(out: &mut Tensor<T>, bias: Option<&Tensor<T>>, fout: usize) -> Result<()> {
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
    Ok(())
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
    let mut out = Tensor::try_full_for(vec![fout, fin], T::zero(), "linear_backward_weight")?;
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

    /// Zero-sized inputs whose output would have 2^80 elements (0 once
    /// wrapped): errors.
    #[test]
    fn output_sizes_are_checked() {
        let x = Tensor::<f32>::zeros([1 << 40, 0]);
        let w = Tensor::<f32>::zeros([1 << 40, 0]);
        assert!(matches!(
            linear(&x, &w, None),
            Err(TensorError::TooLarge { op: "linear", .. })
        ));
        assert!(linear_map_weight(&x, &w, |v| v).is_err());
        assert!(crate::gemm::matmul(&x, &Tensor::zeros([0, 1 << 40])).is_err());
        let g = Tensor::<f32>::zeros([0, 1 << 40]);
        assert!(linear_backward_weight(&g, &Tensor::zeros([0, 1 << 40])).is_err());
        let g = Tensor::<f32>::zeros([1 << 40, 0]);
        assert!(linear_backward_input(&g, &Tensor::zeros([0, 1 << 40])).is_err());
        let y = linear_backward_input(&Tensor::<f32>::ones([2, 3]), &Tensor::ones([3, 4])).unwrap();
        assert_eq!((y.shape(), y.data()), (&[2, 4][..], &[3.0; 8][..]));
    }

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

    /// The forward product and the mapped one from one read are the bits of
    /// each computed alone, with and without bias, at 1 and 3 rows; small
    /// layers (not streamed) give no mapped product.
    #[test]
    fn forward_and_mapped_in_one_read() {
        let (fin, fout) = (300, 1000);
        let w = crate::testing::seq::<f32>(&[fout, fin], 5);
        let b = crate::testing::seq::<f32>(&[fout], 3);
        let clamp = |v: f32| v.max(0.0);
        let bits = |t: &Tensor<f32>| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for rows in [1, 3] {
            let x = crate::testing::seq::<f32>(&[rows, fin], 7);
            for bias in [None, Some(&b)] {
                let (y, z) = linear_and_mapped(&x, &w, bias, clamp).unwrap();
                assert_eq!(bits(&y), bits(&linear(&x, &w, bias).unwrap()));
                let want = linear_map_weight(&x, &w, clamp).unwrap();
                assert_eq!(bits(&z.unwrap()), bits(&want));
            }
        }
        let small = crate::testing::seq::<f32>(&[10, 20], 5);
        let x = crate::testing::seq::<f32>(&[1, 20], 7);
        let (y, z) = linear_and_mapped(&x, &small, None, clamp).unwrap();
        assert!(z.is_none());
        assert_eq!(bits(&y), bits(&linear(&x, &small, None).unwrap()));
        assert!(linear_and_mapped(&x, &w, None, clamp).is_err());
    }

    /// Input gradients of 5 to 12 rows stream the weight in groups of 4:
    /// each row the bits of its product alone, zero entries (a ReLU's)
    /// included; 13 rows take the GEMM, within rounding of them.
    #[test]
    fn input_gradient_rows_in_groups_are_the_bits_of_one_row() {
        let (fin, fout) = (700, 900);
        let w = crate::testing::seq::<f32>(&[fout, fin], 5);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for rows in [5, 8, 12, 13] {
            let mut g = crate::testing::seq::<f32>(&[rows, fout], 3);
            g.data_mut().iter_mut().step_by(3).for_each(|v| *v = 0.0);
            let got = linear_backward_input(&g, &w).unwrap();
            for r in 0..rows {
                let one = Tensor::from_vec([1, fout], g.data()[r * fout..(r + 1) * fout].to_vec());
                let want = linear_backward_input(&one.unwrap(), &w).unwrap();
                let row = &got.data()[r * fin..(r + 1) * fin];
                if rows <= 12 {
                    assert_eq!(bits(row), bits(want.data()), "{rows} rows, row {r}");
                } else {
                    let err = row.iter().zip(want.data()).map(|(a, b)| (a - b).abs());
                    assert!(err.fold(0.0, f32::max) <= 1e-5 * want.max_abs());
                }
            }
        }
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
