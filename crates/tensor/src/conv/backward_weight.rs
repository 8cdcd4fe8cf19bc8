//! Gradients of a convolution with respect to its weight (im2col + GEMM,
//! summed over the batch) and its bias.

use super::im2col::unfold_row;
use super::{depthwise_conv2d_backward_weight, Conv2dParams, ConvGeometry};
use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::gemm::{gemm, MatRef};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Gradient of the convolution with respect to its weight (summed over the batch).
pub fn conv2d_backward_weight<T: Element>(
    input: &Tensor<T>,
    gout: &Tensor<T>,
    weight_shape: &[usize],
    p: Conv2dParams,
) -> Result<Tensor<T>> {
    let g = ConvGeometry::new(input.shape(), weight_shape, p)?;
    if gout.shape() != [g.n, g.cout, g.ho, g.wo] {
        return Err(TensorError::ShapeMismatch {
            op: "conv2d_backward_weight",
            left: gout.shape().to_vec(),
            right: vec![g.n, g.cout, g.ho, g.wo],
        });
    }
    if g.is_depthwise() {
        return depthwise_conv2d_backward_weight(gout, input, weight_shape, g.depthwise_params());
    }
    let hwo = g.ho * g.wo;
    let rows = g.k_rows();
    let cog = g.cout_g();
    let mut gw = Tensor::try_full_for(weight_shape.to_vec(), T::zero(), "conv2d_backward_weight")?;
    let mut cols = vec![T::zero(); rows * hwo];
    let img_in = g.cin * g.h * g.w;
    for n in 0..g.n {
        let img = &input.data()[n * img_in..(n + 1) * img_in];
        let go = &gout.data()[n * g.cout * hwo..(n + 1) * g.cout * hwo];
        for grp in 0..g.p.groups {
            let c0 = grp * g.cin_g();
            cols.par_chunks_mut(hwo)
                .enumerate()
                .for_each(|(r, row)| unfold_row(img, &g, c0, r, row));
            let gmat = MatRef::row_major(&go[grp * cog * hwo..(grp + 1) * cog * hwo], cog, hwo);
            let cmat = MatRef::row_major(&cols, rows, hwo);
            gemm(
                T::one(),
                gmat,
                cmat.t(),
                T::one(),
                &mut gw.data_mut()[grp * cog * rows..(grp + 1) * cog * rows],
            )?;
        }
    }
    Ok(gw)
}

/// Gradient of the convolution with respect to its bias: the output gradient summed per channel.
pub fn conv2d_backward_bias<T: Element>(gout: &Tensor<T>) -> Result<Tensor<T>> {
    let [n, c, h, w] = gout.dims4("conv2d_backward_bias")?;
    let hw = h * w;
    let data: Vec<T> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut s = T::zero();
            for i in 0..n {
                let plane = &gout.data()[(i * c + ch) * hw..(i * c + ch + 1) * hw];
                s += plane.iter().copied().sum::<T>();
            }
            s
        })
        .collect();
    Tensor::from_vec([c], data)
}
