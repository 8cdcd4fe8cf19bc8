//! Resizing of N x C x H x W tensors with the semantics of PyTorch's
//! `interpolate` on CPU (bilinear with `align_corners=False`, and legacy
//! `nearest`), and the exact adjoints for the backward pass.
//!
//! Both directions work on one (n, c) plane per rayon task, so results do not
//! depend on the number of threads.

use crate::element::{cst, Element};
use crate::error::{Result, TensorError};
use crate::pool::shape4;
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Interpolation mode of [`resize2d`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    /// PyTorch's `mode="bilinear", align_corners=False`, without antialiasing.
    Bilinear,
    /// PyTorch's legacy `mode="nearest"`: source `min(floor(dst * in / out), in - 1)`.
    Nearest,
}

/// Source of one output position along an axis: indices `i0`, `i1` and
/// their weights `l0`, `l1` (nearest uses `i0` alone).
#[derive(Clone, Copy)]
struct Tap<T> {
    i0: usize,
    i1: usize,
    l0: T,
    l1: T,
}

/// The taps of every output position along one axis (PyTorch's
/// `compute_source_index_and_lambda` and `nearest_idx`).
fn axis_taps<T: Element>(input: usize, output: usize, mode: ResizeMode) -> Vec<Tap<T>> {
    let tap = |i0, i1, l1: T| Tap {
        i0,
        i1,
        l0: T::one() - l1,
        l1,
    };
    match mode {
        _ if input == output => (0..output).map(|i| tap(i, i, T::zero())).collect(),
        ResizeMode::Nearest => {
            let scale = input as f32 / output as f32;
            (0..output)
                .map(|o| {
                    let i = ((o as f32 * scale).floor() as usize).min(input - 1);
                    tap(i, i, T::zero())
                })
                .collect()
        }
        ResizeMode::Bilinear => {
            let scale = cst::<T>(input as f64) / cst(output as f64);
            let half = cst::<T>(0.5);
            (0..output)
                .map(|o| {
                    let src = (scale * (cst::<T>(o as f64) + half) - half).max(T::zero());
                    let i0 = (src.to_f64_lossless().floor() as usize).min(input - 1);
                    let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
                    let l1 = (src - cst(i0 as f64)).max(T::zero()).min(T::one());
                    tap(i0, i1, l1)
                })
                .collect()
        }
    }
}

/// Checks a target plane size.
fn check_hw(op: &'static str, hw: (usize, usize)) -> Result<()> {
    if hw.0 == 0 || hw.1 == 0 {
        return Err(TensorError::InvalidParameter {
            op,
            message: format!("spatial size {hw:?} must be positive"),
        });
    }
    Ok(())
}

/// Resizes an N x C x H x W tensor to N x C x `out_hw`.
///
/// Bilinear computes `l0y (l0x x[y0, x0] + l1x x[y0, x1]) + l1y (l0x x[y1, x0] + l1x x[y1, x1])`
/// with the source `scale (dst + 0.5) - 0.5` (clamped at 0), `scale = in / out`
/// in `T`, as PyTorch's CPU kernel. Nearest takes `x[floor(dst scale)]` with
/// the scale in `f32`. An unchanged size returns an exact copy.
pub fn resize2d<T: Element>(
    x: &Tensor<T>,
    out_hw: (usize, usize),
    mode: ResizeMode,
) -> Result<Tensor<T>> {
    let op = "resize2d";
    let [n, c, h, w] = shape4(op, x.shape())?;
    check_hw(op, out_hw)?;
    if (h, w) == out_hw {
        return Ok(x.clone());
    }
    let (ho, wo) = out_hw;
    // The output first: a size that overflows or cannot be allocated is an
    // error before the taps (one per output row and column) are made.
    let mut out = Tensor::try_full_for(vec![n, c, ho, wo], T::zero(), op)?;
    let (rows, cols) = (axis_taps::<T>(h, ho, mode), axis_taps::<T>(w, wo, mode));
    out.data_mut()
        .par_chunks_mut(ho * wo)
        .zip(x.data().par_chunks(h * w))
        .for_each(|(out, plane)| {
            for (orow, ty) in out.chunks_mut(wo).zip(&rows) {
                let r0 = &plane[ty.i0 * w..(ty.i0 + 1) * w];
                let r1 = &plane[ty.i1 * w..(ty.i1 + 1) * w];
                for (o, tx) in orow.iter_mut().zip(&cols) {
                    *o = match mode {
                        ResizeMode::Nearest => r0[tx.i0],
                        ResizeMode::Bilinear => {
                            ty.l0 * (tx.l0 * r0[tx.i0] + tx.l1 * r0[tx.i1])
                                + ty.l1 * (tx.l0 * r1[tx.i0] + tx.l1 * r1[tx.i1])
                        }
                    };
                }
            }
        });
    Ok(out)
}

/// Gradient of [`resize2d`] back to N x C x `input_hw`: every output gradient
/// is scatter-added to its sources with the forward weights (the exact
/// adjoint; bilinear adds `l0y l0x g`, `l0y l1x g`, `l1y l0x g`, `l1y l1x g`
/// in that order, as PyTorch's CPU kernel).
pub fn resize2d_backward<T: Element>(
    gout: &Tensor<T>,
    input_hw: (usize, usize),
    mode: ResizeMode,
) -> Result<Tensor<T>> {
    let op = "resize2d_backward";
    let [n, c, ho, wo] = shape4(op, gout.shape())?;
    check_hw(op, input_hw)?;
    if input_hw == (ho, wo) {
        return Ok(gout.clone());
    }
    let (h, w) = input_hw;
    let mut gin = Tensor::try_full_for(vec![n, c, h, w], T::zero(), op)?;
    let (rows, cols) = (axis_taps::<T>(h, ho, mode), axis_taps::<T>(w, wo, mode));
    gin.data_mut()
        .par_chunks_mut(h * w)
        .zip(gout.data().par_chunks(ho * wo))
        .for_each(|(gin, g)| {
            for (grow, ty) in g.chunks(wo).zip(&rows) {
                let (y0, y1) = (ty.i0 * w, ty.i1 * w);
                for (&g, tx) in grow.iter().zip(&cols) {
                    match mode {
                        ResizeMode::Nearest => gin[y0 + tx.i0] += g,
                        ResizeMode::Bilinear => {
                            gin[y0 + tx.i0] += ty.l0 * tx.l0 * g;
                            gin[y0 + tx.i1] += ty.l0 * tx.l1 * g;
                            gin[y1 + tx.i0] += ty.l1 * tx.l0 * g;
                            gin[y1 + tx.i1] += ty.l1 * tx.l1 * g;
                        }
                    }
                }
            }
        });
    Ok(gin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{dot, rnd, t};

    #[test]
    fn huge_sizes_are_errors() {
        let x = Tensor::<f32>::zeros([1, 1, 2, 2]);
        for hw in [(1 << 32, 1 << 32), (usize::MAX, 3), (1 << 30, 1 << 29)] {
            for mode in [ResizeMode::Nearest, ResizeMode::Bilinear] {
                let e = resize2d(&x, hw, mode).unwrap_err();
                assert!(matches!(e, TensorError::TooLarge { op: "resize2d", .. }));
                let e = resize2d_backward(&x, hw, mode).unwrap_err();
                assert!(matches!(
                    e,
                    TensorError::TooLarge {
                        op: "resize2d_backward",
                        ..
                    }
                ));
            }
        }
    }

    #[test]
    fn bilinear_upsampling_by_two() {
        // Per axis: [a, 0.75a + 0.25b, 0.25a + 0.75b, b].
        let y = resize2d(&t(&[1, 1, 1, 2], &[1., 5.]), (1, 4), ResizeMode::Bilinear).unwrap();
        assert_eq!(y.data(), &[1., 2., 4., 5.]);
        let y = resize2d(
            &t(&[1, 1, 2, 2], &[1., 5., 9., 13.]),
            (4, 4),
            ResizeMode::Bilinear,
        )
        .unwrap();
        #[rustfmt::skip]
        let want = [1., 2., 4., 5., 3., 4., 6., 7., 7., 8., 10., 11., 9., 10., 12., 13.];
        assert_eq!(y.data(), &want);
        let y = resize2d(
            &t(&[1, 1, 2, 1], &[1., 5.]).cast::<f32>(),
            (4, 1),
            ResizeMode::Bilinear,
        )
        .unwrap();
        assert_eq!(y.data(), &[1., 2., 4., 5.]);
    }

    #[test]
    fn bilinear_downsampling_averages_pairs() {
        let y = resize2d(
            &t(&[1, 1, 1, 4], &[1., 2., 3., 4.]),
            (1, 2),
            ResizeMode::Bilinear,
        )
        .unwrap();
        assert_eq!(y.data(), &[1.5, 3.5]);
        // 3 -> 2: sources 0.25 and 1.75.
        let y = resize2d(
            &t(&[1, 1, 3, 1], &[0., 4., 8.]),
            (2, 1),
            ResizeMode::Bilinear,
        )
        .unwrap();
        assert_eq!(y.data(), &[1., 7.]);
    }

    #[test]
    fn nearest_picks_floor_of_scaled_index() {
        let x = t(&[1, 1, 1, 3], &[10., 20., 30.]);
        let y = resize2d(&x, (1, 7), ResizeMode::Nearest).unwrap();
        assert_eq!(y.data(), &[10., 10., 10., 20., 20., 30., 30.]);
        let taps = axis_taps::<f32>(3, 7, ResizeMode::Nearest);
        assert_eq!(
            taps.iter().map(|t| t.i0).collect::<Vec<_>>(),
            [0, 0, 0, 1, 1, 2, 2]
        );
        let y = resize2d(
            &t(&[1, 1, 4, 1], &[1., 2., 3., 4.]),
            (2, 1),
            ResizeMode::Nearest,
        )
        .unwrap();
        assert_eq!(y.data(), &[1., 3.]);
    }

    #[test]
    fn same_size_is_an_exact_copy() {
        let x = t(&[1, 2, 1, 2], &[f64::INFINITY, -0.0, 1e-300, f64::NAN]);
        for mode in [ResizeMode::Bilinear, ResizeMode::Nearest] {
            let y = resize2d(&x, (1, 2), mode).unwrap();
            let bits = |t: &Tensor<f64>| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&x));
        }
    }

    #[test]
    fn backward_is_adjoint() {
        for mode in [ResizeMode::Bilinear, ResizeMode::Nearest] {
            for out_hw in [(7, 4), (3, 2), (5, 6), (11, 1)] {
                let x = rnd(&[2, 2, 5, 3], 9);
                let y = resize2d(&x, out_hw, mode).unwrap();
                let g = rnd(y.shape(), 10);
                let gin = resize2d_backward(&g, (5, 3), mode).unwrap();
                assert_eq!(gin.shape(), x.shape());
                let (lhs, rhs) = (dot(&y, &g), dot(&x, &gin));
                assert!(
                    (lhs - rhs).abs() < 1e-12,
                    "{mode:?} {out_hw:?}: {lhs} vs {rhs}"
                );
            }
        }
    }

    #[test]
    fn bad_sizes_are_rejected() {
        let x = Tensor::<f32>::zeros([1, 1, 2, 2]);
        let e = resize2d(&x, (0, 2), ResizeMode::Bilinear);
        assert!(matches!(
            e,
            Err(TensorError::InvalidParameter { op: "resize2d", .. })
        ));
        let e = resize2d(&Tensor::<f32>::zeros([2, 2]), (2, 2), ResizeMode::Nearest);
        assert!(matches!(e, Err(TensorError::Rank { .. })));
        let e = resize2d(
            &Tensor::<f32>::zeros([1, 1, 0, 2]),
            (2, 2),
            ResizeMode::Nearest,
        );
        assert!(matches!(e, Err(TensorError::ZeroSized { .. })));
        let e = resize2d_backward(&x, (3, 0), ResizeMode::Bilinear);
        assert!(matches!(
            e,
            Err(TensorError::InvalidParameter {
                op: "resize2d_backward",
                ..
            })
        ));
    }
}
