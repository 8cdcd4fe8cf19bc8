//! The forward convolution: Winograd where it wins, im2col + GEMM
//! otherwise (and always for [`conv2d_im2col`], the reference), plus bias.

use super::dispatch::{use_winograd, WINOGRAD_MIN_TILES};
use super::gemm_blocks::{
    conv2d_column_blocks, conv2d_shared_panel, CHANNEL_BLOCK, SHARED_PANEL_COLS,
};
use super::{Conv2dParams, ConvGeometry};
use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::tensor::Tensor;
use crate::winograd::{self, WinogradKernel};
use rayon::prelude::*;

/// Convolution forward: `input` N x Cin x H x W, `weight` Cout x Cin/groups x kh x kw,
/// optional `bias` of Cout; returns N x Cout x Ho x Wo.
pub fn conv2d<T: Element>(
    input: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    p: Conv2dParams,
) -> Result<Tensor<T>> {
    let g = ConvGeometry::new(input.shape(), weight.shape(), p)?;
    check_bias(&g, bias)?;
    if use_winograd(&g, WINOGRAD_MIN_TILES) {
        let k = WinogradKernel::forward(weight)?;
        return winograd::conv3x3(input, &k, p.padding, bias.map(|b| b.data()));
    }
    conv2d_im2col_checked(input, weight, bias, &g)
}

fn check_bias<T: Element>(g: &ConvGeometry, bias: Option<&Tensor<T>>) -> Result<()> {
    if let Some(b) = bias {
        if b.shape() != [g.cout] {
            return Err(TensorError::ShapeMismatch {
                op: "conv2d bias",
                left: vec![g.cout],
                right: b.shape().to_vec(),
            });
        }
    }
    Ok(())
}

/// [`conv2d`] always through im2col + GEMM (the reference for Winograd).
pub fn conv2d_im2col<T: Element>(
    input: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    p: Conv2dParams,
) -> Result<Tensor<T>> {
    let g = ConvGeometry::new(input.shape(), weight.shape(), p)?;
    check_bias(&g, bias)?;
    conv2d_im2col_checked(input, weight, bias, &g)
}

pub(super) fn conv2d_im2col_checked<T: Element>(
    input: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    g: &ConvGeometry,
) -> Result<Tensor<T>> {
    let hwo = g.ho * g.wo;
    let mut out: Tensor<T> = Tensor::zeros([g.n, g.cout, g.ho, g.wo]);
    if !g.is_pointwise() && hwo <= SHARED_PANEL_COLS && g.cout_g() > CHANNEL_BLOCK {
        conv2d_shared_panel(input, weight, g, &mut out)?;
    } else {
        conv2d_column_blocks(input, weight, g, &mut out)?;
    }
    if let Some(b) = bias {
        add_channel_bias(&mut out, b.data());
    }
    Ok(out)
}

/// Adds `bias[c]` to every element of channel `c` of an N x C x ... tensor.
pub fn add_channel_bias<T: Element>(out: &mut Tensor<T>, bias: &[T]) {
    let c = bias.len();
    let inner = out.len() / (out.shape()[0] * c).max(1);
    out.data_mut()
        .par_chunks_mut(inner.max(1))
        .enumerate()
        .for_each(|(i, plane)| {
            let b = bias[i % c];
            plane.iter_mut().for_each(|v| *v += b);
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::reference::{naive, seq};

    #[test]
    fn forward_matches_direct_convolution() {
        let cases = [
            (
                [2, 4, 9, 7],
                [6, 2, 3, 2],
                Conv2dParams {
                    stride: (2, 1),
                    padding: (1, 2),
                    dilation: (1, 2),
                    groups: 2,
                },
            ),
            ([1, 3, 5, 5], [4, 3, 1, 1], Conv2dParams::default()),
            ([1, 2, 40, 40], [3, 2, 3, 3], Conv2dParams::new(1, 1)),
        ];
        for (xs, ws, p) in cases {
            let x = seq(&xs, 7);
            let w = seq(&ws, 5);
            let got = conv2d(&x, &w, None, p).unwrap();
            let want = naive(&x, &w, p);
            assert!(got.max_abs_diff(&want).unwrap() < 1e-12, "{p:?}");
        }
    }

    #[test]
    fn every_path_matches_direct_convolution() {
        // (input, weight, params): shared panel (small image, many output
        // channels), pointwise split by channels, strided, Winograd, grouped.
        let cases = [
            ([1, 3, 9, 8], [70, 3, 3, 3], Conv2dParams::new(2, 1)),
            ([2, 40, 5, 6], [80, 40, 1, 1], Conv2dParams::default()),
            ([1, 20, 21, 23], [18, 20, 3, 3], Conv2dParams::new(1, 1)),
            ([1, 17, 12, 13], [16, 17, 3, 3], Conv2dParams::new(1, 0)),
            ([1, 4, 7, 7], [6, 2, 3, 3], {
                let mut p = Conv2dParams::new(1, 2);
                p.groups = 2;
                p
            }),
        ];
        for (xs, ws, p) in cases {
            let x = seq(&xs, 7);
            let w = seq(&ws, 5);
            let got = conv2d(&x, &w, None, p).unwrap();
            let want = naive(&x, &w, p);
            assert!(
                got.max_abs_diff(&want).unwrap() < 1e-10,
                "{xs:?} {ws:?} {p:?}"
            );
        }
    }

    #[test]
    fn bias_adds_per_channel() {
        let x = Tensor::<f32>::zeros([2, 1, 3, 3]);
        let w = Tensor::<f32>::zeros([2, 1, 3, 3]);
        let b = Tensor::from_vec([2], vec![1.5, -2.0]).unwrap();
        let y = conv2d(&x, &w, Some(&b), Conv2dParams::new(1, 1)).unwrap();
        assert_eq!(y.data()[0], 1.5);
        assert_eq!(y.data()[9], -2.0);
        assert_eq!(y.data()[18], 1.5);
    }
}
