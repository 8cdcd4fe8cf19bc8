//! Layer normalisation (ONNX LayerNormalization, PyTorch `layer_norm`)
//! over the trailing axes from `axis`, and its backward.
//!
//! Each row (the elements sharing the leading axes) is normalised by its
//! mean and biased variance: `y = (x - mean) / sqrt(var + eps) * scale +
//! bias`, evaluated as PyTorch's CPU kernel does, `(x * rstd + (-rstd *
//! mean)) * scale + bias`. The backward follows PyTorch's formulas. Rows
//! run in parallel, one task per row, and the scale's and bias's gradients
//! add the rows in order per element: the same bits whatever the number
//! of threads.

use crate::element::{cst, Element};
use crate::error::{Result, TensorError};
use crate::layout::{checked_numel, for_each_piece, for_each_rows};
use crate::reduce_axes::sum_lanes;
use crate::tensor::Tensor;
use rayon::prelude::*;

/// What the forward leaves for the backward: per row, the mean and the
/// inverse standard deviation `1 / sqrt(var + eps)` (ONNX's optional
/// outputs Mean and InvStdDev, flattened).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNormStats<T> {
    /// The first normalised axis.
    pub axis: usize,
    /// Mean of each row.
    pub mean: Vec<T>,
    /// Inverse standard deviation of each row.
    pub inv_std: Vec<T>,
}

/// The gradients of a layer norm's inputs, each present where asked.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNormGrads<T> {
    /// Gradient of the input.
    pub x: Option<Tensor<T>>,
    /// Gradient of the scale.
    pub scale: Option<Tensor<T>>,
    /// Gradient of the bias.
    pub bias: Option<Tensor<T>>,
}

/// `(rows, row length)` of `x` normalised from `axis`, after checking that
/// `params` (scale, bias) have the normalised shape `x.shape[axis..]`.
fn rows_of<T: Element>(
    x: &Tensor<T>,
    axis: usize,
    params: &[&Tensor<T>],
    op: &'static str,
) -> Result<(usize, usize)> {
    if axis >= x.ndim() {
        return Err(TensorError::Axis {
            op,
            axis,
            shape: x.shape().to_vec(),
        });
    }
    checked_numel(x.shape(), op)?;
    let normalised = &x.shape()[axis..];
    if let Some(p) = params.iter().find(|p| p.shape() != normalised) {
        return Err(TensorError::ShapeMismatch {
            op,
            left: x.shape().to_vec(),
            right: p.shape().to_vec(),
        });
    }
    let n: usize = normalised.iter().product();
    if n == 0 {
        return Err(TensorError::ZeroSized {
            op,
            shape: x.shape().to_vec(),
        });
    }
    Ok((x.shape()[..axis].iter().product(), n))
}

/// The mean and biased variance of a row: the mean first, then the mean
/// of the squared deviations (two passes, each summed in
/// [`sum_lanes`]' order).
fn moments<T: Element>(row: &[T]) -> (T, T) {
    let n = cst::<T>(row.len() as f64);
    let mean = sum_lanes(row) / n;
    let mut acc = [T::zero(); 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            let d = v - mean;
            *a += d * d;
        }
    }
    let mut ss = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    for &v in chunks.remainder() {
        let d = v - mean;
        ss += d * d;
    }
    (mean, ss / n)
}

/// Layer normalisation of `x` over the axes from `axis` on, with `scale`
/// (and `bias`, if any) of the normalised shape `x.shape[axis..]` and
/// `eps` added to the variance. Returns the result and the per-row
/// statistics the backward needs.
pub fn layer_norm<T: Element>(
    x: &Tensor<T>,
    scale: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    axis: usize,
    eps: f64,
) -> Result<(Tensor<T>, LayerNormStats<T>)> {
    const OP: &str = "layer_norm";
    let mut params = vec![scale];
    params.extend(bias);
    let (rows, n) = rows_of(x, axis, &params, OP)?;
    let eps = cst::<T>(eps);
    let (mean, inv_std): (Vec<T>, Vec<T>) = x
        .data()
        .par_chunks(n)
        .with_min_len((crate::layout::CHUNK / n).max(1))
        .map(|row| {
            let (mean, var) = moments(row);
            (mean, T::one() / (var.max(T::zero()) + eps).sqrt())
        })
        .unzip();
    debug_assert_eq!(mean.len(), rows);
    let mut out = x.par_clone();
    let (gamma, beta) = (scale.data(), bias.map(|b| b.data()));
    for_each_rows(out.data_mut(), n, 2, |first, block| {
        for (i, row) in block.chunks_exact_mut(n).enumerate() {
            let rstd = inv_std[first + i];
            let shift = -rstd * mean[first + i];
            match beta {
                Some(beta) => {
                    for ((v, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
                        *v = (*v * rstd + shift) * g + b;
                    }
                }
                None => {
                    for (v, &g) in row.iter_mut().zip(gamma) {
                        *v = (*v * rstd + shift) * g;
                    }
                }
            }
        }
    });
    Ok((
        out,
        LayerNormStats {
            axis,
            mean,
            inv_std,
        },
    ))
}

/// Backward of [`layer_norm`] from the output gradient `g`, the input `x`,
/// the `scale` and the forward's statistics; each gradient computed only
/// where asked (PyTorch's formulas):
///
/// - x: `rstd * g * scale + b * x + c` per row, with `ds = sum(g * scale *
///   x)`, `db = sum(g * scale)`, `b = (db * mean - ds) * rstd^3 / N` and
///   `c = -b * mean - db * rstd / N`;
/// - scale: `sum over rows of g * (x - mean) * rstd`;
/// - bias: `sum over rows of g`.
pub fn layer_norm_backward<T: Element>(
    g: &Tensor<T>,
    x: &Tensor<T>,
    scale: &Tensor<T>,
    stats: &LayerNormStats<T>,
    need_x: bool,
    need_scale: bool,
    need_bias: bool,
) -> Result<LayerNormGrads<T>> {
    const OP: &str = "layer_norm_backward";
    g.expect_same_shape(x, OP)?;
    let (rows, n) = rows_of(x, stats.axis, &[scale], OP)?;
    if stats.mean.len() != rows || stats.inv_std.len() != rows {
        return Err(TensorError::LengthMismatch {
            op: OP,
            shape: x.shape()[..stats.axis].to_vec(),
            expected: rows,
            found: stats.mean.len().min(stats.inv_std.len()),
        });
    }
    let (gd, xd, gamma) = (g.data(), x.data(), scale.data());
    let (mean, inv_std) = (&stats.mean, &stats.inv_std);
    let grad_x = need_x.then(|| {
        let inv_n = T::one() / cst::<T>(n as f64);
        let mut out = g.par_clone();
        for_each_rows(out.data_mut(), n, 4, |first, block| {
            for (i, row) in block.chunks_exact_mut(n).enumerate() {
                let r = first + i;
                let xr = &xd[r * n..][..n];
                let (mut ds, mut db) = (T::zero(), T::zero());
                for ((&dy, &gm), &xv) in row.iter().zip(gamma).zip(xr) {
                    let dyg = dy * gm;
                    ds += dyg * xv;
                    db += dyg;
                }
                let a = inv_std[r];
                let b = (db * mean[r] - ds) * a * a * a * inv_n;
                let c = -b * mean[r] - db * a * inv_n;
                for ((v, &gm), &xv) in row.iter_mut().zip(gamma).zip(xr) {
                    *v = a * *v * gm + b * xv + c;
                }
            }
        });
        out
    });
    let grad_scale = need_scale.then(|| {
        column_sums(scale, rows, |r, col, piece| {
            let (m, rstd) = (mean[r], inv_std[r]);
            let at = r * n + col;
            let (gr, xr) = (&gd[at..][..piece.len()], &xd[at..][..piece.len()]);
            for ((v, &dy), &xv) in piece.iter_mut().zip(gr).zip(xr) {
                *v += dy * (xv - m) * rstd;
            }
        })
    });
    let grad_bias = need_bias.then(|| {
        column_sums(scale, rows, |r, col, piece| {
            let gr = &gd[r * n + col..][..piece.len()];
            piece.iter_mut().zip(gr).for_each(|(v, &dy)| *v += dy);
        })
    });
    Ok(LayerNormGrads {
        x: grad_x,
        scale: grad_scale,
        bias: grad_bias,
    })
}

/// A tensor of `like`'s shape (the normalised shape, `n` elements) whose
/// columns `add_row(r, col, piece)` adds row `r`'s terms into, for the
/// rows in order: in parallel over pieces of columns, each summed by one
/// task.
fn column_sums<T: Element>(
    like: &Tensor<T>,
    rows: usize,
    add_row: impl Fn(usize, usize, &mut [T]) + Sync + Send,
) -> Tensor<T> {
    let mut out = Tensor::zeros(like.shape().to_vec());
    let n = out.len();
    for_each_piece(out.data_mut(), n, rows, |_, col, piece| {
        for r in 0..rows {
            add_row(r, col, piece);
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{rnd, t};
    use crate::testing_grad::{arb_tensor, assert_close, bits, numeric_grad, on_threads};
    use proptest::prelude::*;

    #[test]
    fn hand_computed_rows() {
        // Rows [1, 2, 3, 4] and [2, 2, 2, 6]: means 2.5 and 3, variances
        // 1.25 and 3.
        let x = t(&[2, 4], &[1., 2., 3., 4., 2., 2., 2., 6.]);
        let scale = t(&[4], &[1., 2., 1., 1.]);
        let bias = t(&[4], &[0., 0., 0., 10.]);
        let (y, st) = layer_norm(&x, &scale, Some(&bias), 1, 0.0).unwrap();
        assert_eq!(st.mean, vec![2.5, 3.0]);
        assert!((st.inv_std[0] - 1.25f64.sqrt().recip()).abs() < 1e-14);
        assert!((st.inv_std[1] - 3f64.sqrt().recip()).abs() < 1e-14);
        let s0 = 1.25f64.sqrt();
        let s1 = 3f64.sqrt();
        let want = [
            -1.5 / s0,
            -1.0 / s0,
            0.5 / s0,
            1.5 / s0 + 10.0,
            -1.0 / s1,
            -2.0 / s1,
            -1.0 / s1,
            3.0 / s1 + 10.0,
        ];
        for (v, w) in y.data().iter().zip(want) {
            assert!((v - w).abs() < 1e-14, "{v} vs {w}");
        }
        // eps, no bias, over two axes: one row of six.
        let x = t(&[1, 2, 3], &[0., 0., 0., 0., 0., 6.]);
        let (y, st) = layer_norm(&x, &Tensor::ones([2, 3]), None, 1, 1.0).unwrap();
        assert_eq!(st.mean, vec![1.0]);
        assert_eq!(st.inv_std, vec![1.0 / 6f64.sqrt()]);
        assert!((y.data()[5] - 5.0 / 6f64.sqrt()).abs() < 1e-14);
        // The gradient of the bias is the column sum; of the scale, the
        // normalised input weighted by the gradient.
        let g = t(&[1, 2, 3], &[1., 1., 1., 1., 1., 2.]);
        let gr =
            layer_norm_backward(&g, &x, &Tensor::ones([2, 3]), &st, false, true, true).unwrap();
        assert!(gr.x.is_none());
        assert_eq!(gr.bias.unwrap().data(), g.data());
        let gs = gr.scale.unwrap();
        assert!((gs.data()[5] - 2.0 * 5.0 / 6f64.sqrt()).abs() < 1e-14);
        assert!((gs.data()[0] + 1.0 / 6f64.sqrt()).abs() < 1e-14);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let x = Tensor::<f64>::zeros([2, 3]);
        assert!(matches!(
            layer_norm(&x, &Tensor::ones([2]), None, 1, 1e-5),
            Err(TensorError::ShapeMismatch {
                op: "layer_norm",
                ..
            })
        ));
        assert!(layer_norm(&x, &Tensor::ones([3]), Some(&Tensor::ones([2, 3])), 1, 1e-5).is_err());
        assert!(matches!(
            layer_norm(&x, &Tensor::ones([3]), None, 2, 1e-5),
            Err(TensorError::Axis { .. })
        ));
        assert!(matches!(
            layer_norm(
                &Tensor::<f64>::zeros([2, 0]),
                &Tensor::ones([0]),
                None,
                1,
                1e-5
            ),
            Err(TensorError::ZeroSized { .. })
        ));
        let (_, st) = layer_norm(&x, &Tensor::ones([3]), None, 1, 1e-5).unwrap();
        let short = LayerNormStats {
            mean: vec![0.0],
            ..st.clone()
        };
        assert!(layer_norm_backward(&x, &x, &Tensor::ones([3]), &short, true, true, true).is_err());
        assert!(layer_norm_backward(
            &x,
            &Tensor::zeros([3, 2]),
            &Tensor::ones([3]),
            &st,
            true,
            false,
            false
        )
        .is_err());
    }

    proptest! {
        #[test]
        fn backward_by_finite_differences(
            x in arb_tensor(vec![2, 3, 4]),
            scale in arb_tensor(vec![3, 4]),
            bias in arb_tensor(vec![3, 4]),
            last in any::<bool>(),
        ) {
            let (axis, eps) = if last { (2, 1e-5) } else { (1, 0.1) };
            let (scale, bias) = if last {
                (scale.select0(0).unwrap(), bias.select0(1).unwrap())
            } else {
                (scale, bias)
            };
            let g = rnd(&[2, 3, 4], 4);
            let (_, st) = layer_norm(&x, &scale, Some(&bias), axis, eps).unwrap();
            let gr = layer_norm_backward(&g, &x, &scale, &st, true, true, true).unwrap();
            let fx = |x: &Tensor<f64>| layer_norm(x, &scale, Some(&bias), axis, eps).unwrap().0;
            let fs = |s: &Tensor<f64>| layer_norm(&x, s, Some(&bias), axis, eps).unwrap().0;
            let fb = |b: &Tensor<f64>| layer_norm(&x, &scale, Some(b), axis, eps).unwrap().0;
            assert_close(&gr.x.unwrap(), &numeric_grad(fx, &x, &g), 1e-5);
            assert_close(&gr.scale.unwrap(), &numeric_grad(fs, &scale, &g), 1e-6);
            assert_close(&gr.bias.unwrap(), &numeric_grad(fb, &bias, &g), 1e-6);
        }
    }

    #[test]
    fn large_layer_norm_is_bit_identical_across_thread_counts() {
        // ViT-sized: 2 x 197 tokens of 384 features.
        let x = rnd(&[2, 197, 384], 1).map(|v| 3.0 * v + 0.5).cast::<f32>();
        let scale = rnd(&[384], 2).cast::<f32>();
        let bias = rnd(&[384], 3).cast::<f32>();
        let g = rnd(&[2, 197, 384], 4).cast::<f32>();
        let run = |threads| {
            on_threads(threads, || {
                let (y, st) = layer_norm(&x, &scale, Some(&bias), 2, 1e-6).unwrap();
                let gr = layer_norm_backward(&g, &x, &scale, &st, true, true, true).unwrap();
                [y, gr.x.unwrap(), gr.scale.unwrap(), gr.bias.unwrap()]
            })
        };
        let (one, four) = (run(1), run(4));
        for (p, q) in one.iter().zip(&four) {
            assert_eq!(bits(p.data()), bits(q.data()));
        }
        let (want, _) = layer_norm(&x.cast(), &scale.cast(), Some(&bias.cast()), 2, 1e-6).unwrap();
        assert!(one[0].cast::<f64>().max_abs_diff(&want).unwrap() < 1e-5);
    }
}
