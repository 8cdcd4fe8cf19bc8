//! Ordinary convolutions with asymmetric padding: the input padded
//! explicitly beyond the symmetric part, which [`conv2d`] pads itself.

use super::geometry::checked_len;
use super::Pads2d;
use crate::conv::{conv2d, conv2d_backward_input, Conv2dParams};
use crate::element::Element;
use crate::error::Result;
use crate::tensor::Tensor;
use rayon::prelude::*;

/// [`conv2d`] with padding `pads` on each side, possibly asymmetric (ONNX
/// `Conv` `pads`): `x` `[N, Cin, H, W]`, `weight`
/// `[Cout, Cin / groups, KH, KW]`, optional `bias` `[Cout]`.
///
/// With symmetric padding this is [`conv2d`] itself (the same bits);
/// otherwise the input is copied with the padding beyond the symmetric part
/// added, and [`conv2d`] pads the rest.
///
/// # Errors
/// Those of [`conv2d`], and [`crate::TensorError::TooLarge`] if the padded
/// input's size overflows.
pub fn conv2d_padded<T: Element>(
    x: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    stride: (usize, usize),
    pads: Pads2d,
    dilation: (usize, usize),
    groups: usize,
) -> Result<Tensor<T>> {
    let (padding, extra) = pads.split_symmetric();
    let p = Conv2dParams {
        stride,
        padding,
        dilation,
        groups,
        ..Conv2dParams::default()
    };
    if extra.is_zero() {
        return conv2d(x, weight, bias, p);
    }
    conv2d(&pad_planes(x, extra)?, weight, bias, p)
}

/// Gradient of [`conv2d_padded`] with respect to its input, given the
/// output gradient `grad` and the input's spatial size `input_hw`: the
/// input gradient of the explicitly padded input, with the padding
/// cropped off (the same bits as [`conv2d_backward_input`] when the
/// padding is symmetric).
///
/// # Errors
/// Those of [`conv2d_backward_input`] (on the padded input's size), and
/// [`crate::TensorError::TooLarge`] if that size overflows.
pub fn conv2d_padded_backward_input<T: Element>(
    grad: &Tensor<T>,
    weight: &Tensor<T>,
    input_hw: (usize, usize),
    stride: (usize, usize),
    pads: Pads2d,
    dilation: (usize, usize),
    groups: usize,
) -> Result<Tensor<T>> {
    const OP: &str = "conv2d_padded_backward_input";
    let (padding, extra) = pads.split_symmetric();
    let p = Conv2dParams {
        stride,
        padding,
        dilation,
        groups,
        ..Conv2dParams::default()
    };
    if extra.is_zero() {
        return conv2d_backward_input(grad, weight, input_hw, p);
    }
    let (h, w) = input_hw;
    let padded = (
        checked_sum(OP, &[h, extra.top, extra.bottom])?,
        checked_sum(OP, &[w, extra.left, extra.right])?,
    );
    let full = conv2d_backward_input(grad, weight, padded, p)?;
    crop_planes(&full, extra, input_hw)
}

fn checked_sum(op: &'static str, terms: &[usize]) -> Result<usize> {
    terms
        .iter()
        .try_fold(0usize, |acc, &t| acc.checked_add(t))
        .ok_or_else(|| super::geometry::too_large(op, terms))
}

/// `x` (`[N, C, H, W]`) with `pads` zeros around each plane.
pub(super) fn pad_planes<T: Element>(x: &Tensor<T>, pads: Pads2d) -> Result<Tensor<T>> {
    const OP: &str = "conv2d_padded";
    let [n, c, h, w] = x.dims4(OP)?;
    let hp = checked_sum(OP, &[h, pads.top, pads.bottom])?;
    let wp = checked_sum(OP, &[w, pads.left, pads.right])?;
    checked_len(OP, &[n, c, hp, wp])?;
    let mut out = Tensor::try_full_for(vec![n, c, hp, wp], T::zero(), OP)?;
    if h * w == 0 {
        return Ok(out);
    }
    out.data_mut()
        .par_chunks_mut(hp * wp)
        .zip(x.data().par_chunks(h * w))
        .for_each(|(dst, src)| {
            for (d, s) in dst[pads.top * wp..]
                .chunks_exact_mut(wp)
                .zip(src.chunks_exact(w))
            {
                d[pads.left..pads.left + w].copy_from_slice(s);
            }
        });
    Ok(out)
}

/// The `hw`-sized window of each plane of `x` starting `pads.top` rows
/// down and `pads.left` columns in.
pub(super) fn crop_planes<T: Element>(
    x: &Tensor<T>,
    pads: Pads2d,
    (h, w): (usize, usize),
) -> Result<Tensor<T>> {
    const OP: &str = "conv2d_padded_backward_input";
    let [n, c, hp, wp] = x.dims4(OP)?;
    if pads.top.saturating_add(h) > hp || pads.left.saturating_add(w) > wp {
        return Err(crate::error::TensorError::ShapeMismatch {
            op: OP,
            left: x.shape().to_vec(),
            right: vec![n, c, h, w],
        });
    }
    let mut out = Tensor::zeros([n, c, h, w]);
    if h * w == 0 {
        return Ok(out);
    }
    out.data_mut()
        .par_chunks_mut(h * w)
        .zip(x.data().par_chunks(hp * wp))
        .for_each(|(dst, src)| {
            for (d, s) in dst
                .chunks_exact_mut(w)
                .zip(src[pads.top * wp..].chunks_exact(wp))
            {
                d.copy_from_slice(&s[pads.left..pads.left + w]);
            }
        });
    Ok(out)
}
