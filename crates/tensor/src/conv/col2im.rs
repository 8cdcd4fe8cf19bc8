//! Input gradient through GEMM + col2im: `W^T gout` gives the gradient of
//! the unfolded input, which col2im scatter-adds back into the image, in
//! parallel over bands of rows with a fixed summation order.

use super::packed::{packed_product, PackedWeight};
use super::ConvGeometry;
use crate::element::Element;
use crate::error::Result;
use crate::gemm::{gemm, MatRef};
use crate::scratch::with_scratch;
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Input rows per col2im task.
const COL2IM_BAND: usize = 16;

/// The input gradient through col2im; the unfolded gradient `W^T gout` is
/// computed with `packed` (`W^T` packed for the micro-kernels, one group)
/// where given, with `matrixmultiply`'s GEMM otherwise.
pub(super) fn backward_input_col2im<T: Element>(
    gout: &Tensor<T>,
    weight: &Tensor<T>,
    g: &ConvGeometry,
    packed: Option<&PackedWeight<T>>,
) -> Result<Tensor<T>> {
    let hwo = g.ho * g.wo;
    let rows = g.k_rows();
    let mut gin = Tensor::zeros([g.n, g.cin, g.h, g.w]);
    let img_in = g.cin * g.h * g.w;
    with_scratch(g.p.groups * rows * hwo, |cols: &mut [T]| {
        for n in 0..g.n {
            let go = &gout.data()[n * g.cout * hwo..(n + 1) * g.cout * hwo];
            if let Some(k) = packed {
                packed_product(k, go, 1, hwo, None, &mut cols[..rows * hwo]);
            }
            for grp in (0..g.p.groups).filter(|_| packed.is_none()) {
                let cog = g.cout_g();
                let wmat = MatRef::row_major(
                    &weight.data()[grp * cog * rows..(grp + 1) * cog * rows],
                    cog,
                    rows,
                );
                let gmat = MatRef::row_major(&go[grp * cog * hwo..(grp + 1) * cog * hwo], cog, hwo);
                gemm(
                    T::one(),
                    wmat.t(),
                    gmat,
                    T::zero(),
                    &mut cols[grp * rows * hwo..(grp + 1) * rows * hwo],
                )?;
            }
            let dst = &mut gin.data_mut()[n * img_in..(n + 1) * img_in];
            let bands = g.h.div_ceil(COL2IM_BAND);
            let cols = &*cols;
            dst.par_chunks_mut(g.h * g.w)
                .enumerate()
                .flat_map_iter(|(c, plane)| {
                    plane
                        .chunks_mut(COL2IM_BAND * g.w)
                        .enumerate()
                        .map(move |(b, band)| (c, b, band))
                })
                .for_each(|(c, b, band)| {
                    let y0 = b * COL2IM_BAND;
                    debug_assert!(b < bands);
                    col2im_band(cols, g, c, y0, band)
                });
        }
        Ok(gin)
    })
}

/// Output positions `o` along one axis with `o * stride + offset - pad` in
/// `0..len`: the range of `o` in `0..out_len`, and the first input index.
fn valid_range(
    out_len: usize,
    len: usize,
    stride: usize,
    offset: usize,
    pad: usize,
) -> (usize, usize) {
    // o * stride + offset >= pad  and  o * stride + offset < len + pad.
    let lo = pad.saturating_sub(offset).div_ceil(stride);
    let hi = if len + pad > offset {
        (len + pad - offset).div_ceil(stride).min(out_len)
    } else {
        0
    };
    (lo, hi.max(lo))
}

/// Scatter-adds the unfolded rows of input channel `c` into input rows
/// `y0..` (`band` holds whole rows of that channel's plane). Each element sums
/// its contributions in (ki, kj, oy, ox) order, whatever the banding.
fn col2im_band<T: Element>(cols: &[T], g: &ConvGeometry, c: usize, y0: usize, band: &mut [T]) {
    let hwo = g.ho * g.wo;
    let (sh, sw) = g.p.stride;
    let (ph, pw) = g.p.padding;
    let (dh, dw) = g.p.dilation;
    let y1 = y0 + band.len() / g.w;
    let grp = c / g.cin_g();
    let cl = c % g.cin_g();
    let base = grp * g.k_rows() * hwo;
    for ki in 0..g.kh {
        let (oy0, oy1) = valid_range(g.ho, g.h, sh, ki * dh, ph);
        for kj in 0..g.kw {
            let row = (cl * g.kh + ki) * g.kw + kj;
            let src = &cols[base + row * hwo..base + (row + 1) * hwo];
            let (ox0, ox1) = valid_range(g.wo, g.w, sw, kj * dw, pw);
            if ox0 >= ox1 {
                continue;
            }
            let ix0 = ox0 * sw + kj * dw - pw;
            for oy in oy0..oy1 {
                let iy = oy * sh + ki * dh - ph;
                if iy < y0 || iy >= y1 {
                    continue;
                }
                let prow = &mut band[(iy - y0) * g.w..(iy - y0 + 1) * g.w];
                let srow = &src[oy * g.wo + ox0..oy * g.wo + ox1];
                if sw == 1 {
                    for (d, &v) in prow[ix0..ix0 + srow.len()].iter_mut().zip(srow) {
                        *d += v;
                    }
                } else {
                    for (d, &v) in prow[ix0..].iter_mut().step_by(sw).zip(srow) {
                        *d += v;
                    }
                }
            }
        }
    }
}
