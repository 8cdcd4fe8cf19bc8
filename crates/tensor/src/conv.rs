//! 2-d convolution: forward, and backward for input, weight and bias.
//!
//! The forward pass is im2col + GEMM, done in blocks of output columns so the
//! unfolded panel stays in cache and the blocks run in parallel. The
//! backward-input pass of a stride-1 convolution is itself a convolution (of
//! the output gradient with the transposed, flipped kernel), so it reuses the
//! forward kernel; other strides go through GEMM + col2im.

use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::gemm::{gemm, MatRef};
use crate::tensor::{check_nonzero, Tensor};
use rayon::prelude::*;

/// Geometry of a 2-d convolution (PyTorch's `Conv2d` arguments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Stride (vertical, horizontal).
    pub stride: (usize, usize),
    /// Zero padding (vertical, horizontal).
    pub padding: (usize, usize),
    /// Dilation (vertical, horizontal).
    pub dilation: (usize, usize),
    /// Number of channel groups.
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Self {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

impl Conv2dParams {
    /// Square stride and padding, no dilation, one group.
    pub fn new(stride: usize, padding: usize) -> Self {
        Self {
            stride: (stride, stride),
            padding: (padding, padding),
            ..Self::default()
        }
    }
}

/// Output length of a sliding window along one axis, or `None` when the
/// (dilated) window does not fit in the padded input.
pub fn window_output_len(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Option<usize> {
    let span = dilation * (kernel - 1) + 1;
    let padded = input + 2 * padding;
    (padded >= span).then(|| (padded - span) / stride + 1)
}

/// Checked geometry of one convolution call.
#[derive(Clone, Copy, Debug)]
pub struct ConvGeometry {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Output height.
    pub ho: usize,
    /// Output width.
    pub wo: usize,
    /// The parameters.
    pub p: Conv2dParams,
}

impl ConvGeometry {
    /// Checks the shapes of input, weight and parameters and derives the output size.
    pub fn new(input: &[usize], weight: &[usize], p: Conv2dParams) -> Result<Self> {
        let op = "conv2d";
        let [n, cin, h, w] = *input else {
            return Err(TensorError::Rank {
                op,
                expected: 4,
                shape: input.to_vec(),
            });
        };
        let [cout, cig, kh, kw] = *weight else {
            return Err(TensorError::Rank {
                op,
                expected: 4,
                shape: weight.to_vec(),
            });
        };
        check_nonzero(op, input)?;
        check_nonzero(op, weight)?;
        if p.groups == 0
            || p.stride.0 == 0
            || p.stride.1 == 0
            || p.dilation.0 == 0
            || p.dilation.1 == 0
        {
            return Err(TensorError::InvalidParameter {
                op,
                message: format!("stride, dilation and groups must be positive, got {p:?}"),
            });
        }
        if cin % p.groups != 0 || cout % p.groups != 0 || cig * p.groups != cin {
            return Err(TensorError::ShapeMismatch {
                op,
                left: input.to_vec(),
                right: weight.to_vec(),
            });
        }
        let ho = window_output_len(h, kh, p.stride.0, p.padding.0, p.dilation.0);
        let wo = window_output_len(w, kw, p.stride.1, p.padding.1, p.dilation.1);
        let (Some(ho), Some(wo)) = (ho, wo) else {
            return Err(TensorError::InvalidParameter {
                op,
                message: format!(
                    "kernel {kh}x{kw} (dilation {:?}) larger than padded input {}x{} (input {h}x{w}, padding {:?})",
                    p.dilation,
                    h + 2 * p.padding.0,
                    w + 2 * p.padding.1,
                    p.padding
                ),
            });
        };
        Ok(Self {
            n,
            cin,
            h,
            w,
            cout,
            kh,
            kw,
            ho,
            wo,
            p,
        })
    }

    /// Input channels per group.
    pub fn cin_g(&self) -> usize {
        self.cin / self.p.groups
    }

    /// Output channels per group.
    pub fn cout_g(&self) -> usize {
        self.cout / self.p.groups
    }

    /// Rows of one group's unfolded input: `cin_g * kh * kw`.
    pub fn k_rows(&self) -> usize {
        self.cin_g() * self.kh * self.kw
    }

    /// Multiply-adds of the forward pass.
    pub fn macs(&self) -> usize {
        self.n * self.cout * self.ho * self.wo * self.k_rows()
    }

    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.p.stride == (1, 1) && self.p.padding == (0, 0)
    }
}

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: only used to give rayon tasks disjoint regions of one buffer.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// Unfolded elements per column block: sized for the L2 cache; a function of
/// the shapes only, so results never depend on the thread count.
const PANEL_ELEMS: usize = 1 << 17;

fn column_block(rows: usize, cols: usize) -> usize {
    (PANEL_ELEMS / rows.max(1)).clamp(64, 1024).min(cols).max(1)
}

/// Fills `cols` (rows x (j1 - j0), row-major) with the unfolded input of one
/// image and one group, for output columns `j0..j1`.
fn im2col_block<T: Element>(
    img: &[T],
    g: &ConvGeometry,
    c0: usize,
    j0: usize,
    j1: usize,
    cols: &mut [T],
) {
    let (sh, sw) = g.p.stride;
    let (ph, pw) = g.p.padding;
    let (dh, dw) = g.p.dilation;
    let width = j1 - j0;
    let mut row = 0;
    for c in 0..g.cin_g() {
        let plane = &img[(c0 + c) * g.h * g.w..(c0 + c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let dst = &mut cols[row * width..(row + 1) * width];
                let (mut oy, mut ox) = (j0 / g.wo, j0 % g.wo);
                for d in dst.iter_mut() {
                    let iy = (oy * sh + ki * dh) as isize - ph as isize;
                    let ix = (ox * sw + kj * dw) as isize - pw as isize;
                    *d = if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w {
                        plane[iy as usize * g.w + ix as usize]
                    } else {
                        T::zero()
                    };
                    ox += 1;
                    if ox == g.wo {
                        ox = 0;
                        oy += 1;
                    }
                }
                row += 1;
            }
        }
    }
}

/// Convolution forward: `input` N x Cin x H x W, `weight` Cout x Cin/groups x kh x kw,
/// optional `bias` of Cout; returns N x Cout x Ho x Wo.
pub fn conv2d<T: Element>(
    input: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    p: Conv2dParams,
) -> Result<Tensor<T>> {
    let g = ConvGeometry::new(input.shape(), weight.shape(), p)?;
    if let Some(b) = bias {
        if b.shape() != [g.cout] {
            return Err(TensorError::ShapeMismatch {
                op: "conv2d bias",
                left: vec![g.cout],
                right: b.shape().to_vec(),
            });
        }
    }
    let hwo = g.ho * g.wo;
    let mut out: Tensor<T> = Tensor::zeros([g.n, g.cout, g.ho, g.wo]);
    let block = column_block(g.k_rows(), hwo);
    let blocks = hwo.div_ceil(block);
    let out_ptr = SendPtr(out.data_mut().as_mut_ptr());
    let in_img = g.cin * g.h * g.w;
    let out_len = out.len();
    (0..g.n * blocks).into_par_iter().try_for_each(|task| {
        let (n, b) = (task / blocks, task % blocks);
        let (j0, j1) = (b * block, ((b + 1) * block).min(hwo));
        let img = &input.data()[n * in_img..(n + 1) * in_img];
        let mut cols = if g.is_pointwise() {
            Vec::new()
        } else {
            vec![T::zero(); g.k_rows() * (j1 - j0)]
        };
        for grp in 0..g.p.groups {
            let c0 = grp * g.cin_g();
            let bmat = if g.is_pointwise() {
                MatRef {
                    data: &img[c0 * hwo..],
                    rows: g.cin_g(),
                    cols: j1 - j0,
                    rs: hwo,
                    cs: 1,
                }
                .offset_cols(j0)
            } else {
                im2col_block(img, &g, c0, j0, j1, &mut cols);
                MatRef::row_major(&cols, g.k_rows(), j1 - j0)
            };
            let w_rows = g.cout_g();
            let wmat = MatRef::row_major(
                &weight.data()[grp * w_rows * g.k_rows()..(grp + 1) * w_rows * g.k_rows()],
                w_rows,
                g.k_rows(),
            );
            let o = out_ptr;
            let start = n * g.cout * hwo + grp * w_rows * hwo + j0;
            // SAFETY: this task alone writes rows of image n, group grp,
            // columns j0..j1 of the output; the view stays inside `out`.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(o.0.add(start), (w_rows - 1) * hwo + (j1 - j0))
            };
            debug_assert!(start + dst.len() <= out_len);
            gemm_strided(wmat, bmat, dst, hwo)?;
        }
        Ok::<(), TensorError>(())
    })?;
    if let Some(b) = bias {
        add_channel_bias(&mut out, b.data());
    }
    Ok(out)
}

impl<'a, T> MatRef<'a, T> {
    /// The view starting `j` columns further right.
    fn offset_cols(mut self, j: usize) -> Self {
        self.data = &self.data[j * self.cs..];
        self
    }
}

/// `C = A B` where C has row stride `ldc` inside `dst` (single-threaded call).
fn gemm_strided<T: Element>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    dst: &mut [T],
    ldc: usize,
) -> Result<()> {
    if a.cols != b.rows || (a.rows > 0 && dst.len() < (a.rows - 1) * ldc + b.cols) {
        return Err(TensorError::ShapeMismatch {
            op: "conv2d gemm",
            left: vec![a.rows, a.cols],
            right: vec![b.rows, b.cols],
        });
    }
    // SAFETY: sizes and strides were checked against the buffers above (views
    // come from checked slices), and `dst` does not alias the inputs.
    unsafe {
        T::gemm_raw(
            a.rows,
            a.cols,
            b.cols,
            T::one(),
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            T::zero(),
            dst.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
    Ok(())
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

/// The kernel of the convolution that computes a stride-1 convolution's
/// input gradient: channels swapped within each group and taps flipped.
pub fn transpose_flip_kernel<T: Element>(weight: &Tensor<T>, groups: usize) -> Result<Tensor<T>> {
    let [cout, cig, kh, kw] = weight.dims4("transpose_flip_kernel")?;
    if groups == 0 || cout % groups != 0 {
        return Err(TensorError::InvalidParameter {
            op: "transpose_flip_kernel",
            message: format!("{cout} output channels do not split into {groups} groups"),
        });
    }
    let cog = cout / groups;
    let kk = kh * kw;
    let src = weight.data();
    let mut out = vec![T::zero(); src.len()];
    for grp in 0..groups {
        for co in 0..cog {
            for ci in 0..cig {
                for t in 0..kk {
                    let s = (((grp * cog + co) * cig + ci) * kk) + t;
                    let d = (((grp * cig + ci) * cog + co) * kk) + (kk - 1 - t);
                    out[d] = src[s];
                }
            }
        }
    }
    Tensor::from_vec([cig * groups, cog, kh, kw], out)
}

/// Gradient of the convolution with respect to its input, given the output
/// gradient `gout` (N x Cout x Ho x Wo) and the input's spatial size.
pub fn conv2d_backward_input<T: Element>(
    gout: &Tensor<T>,
    weight: &Tensor<T>,
    input_hw: (usize, usize),
    p: Conv2dParams,
) -> Result<Tensor<T>> {
    let [n, cout, ho, wo] = gout.dims4("conv2d_backward_input")?;
    let [wc, cig, kh, kw] = weight.dims4("conv2d_backward_input")?;
    let g = ConvGeometry::new(
        &[n, cig * p.groups.max(1), input_hw.0, input_hw.1],
        weight.shape(),
        p,
    )?;
    if wc != cout || g.ho != ho || g.wo != wo {
        return Err(TensorError::ShapeMismatch {
            op: "conv2d_backward_input",
            left: gout.shape().to_vec(),
            right: vec![n, wc, g.ho, g.wo],
        });
    }
    let (dh, dw) = p.dilation;
    let (ph, pw) = p.padding;
    if p.stride == (1, 1) && ph <= dh * (kh - 1) && pw <= dw * (kw - 1) {
        let wt = transpose_flip_kernel(weight, p.groups)?;
        let tp = Conv2dParams {
            stride: (1, 1),
            padding: (dh * (kh - 1) - ph, dw * (kw - 1) - pw),
            dilation: p.dilation,
            groups: p.groups,
        };
        return conv2d(gout, &wt, None, tp);
    }
    backward_input_col2im(gout, weight, &g)
}

fn backward_input_col2im<T: Element>(
    gout: &Tensor<T>,
    weight: &Tensor<T>,
    g: &ConvGeometry,
) -> Result<Tensor<T>> {
    let hwo = g.ho * g.wo;
    let rows = g.k_rows();
    let mut gin = Tensor::zeros([g.n, g.cin, g.h, g.w]);
    let mut cols = vec![T::zero(); g.p.groups * rows * hwo];
    let img_in = g.cin * g.h * g.w;
    for n in 0..g.n {
        let go = &gout.data()[n * g.cout * hwo..(n + 1) * g.cout * hwo];
        for grp in 0..g.p.groups {
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
        dst.par_chunks_mut(g.h * g.w)
            .enumerate()
            .for_each(|(c, plane)| col2im_channel(&cols, g, c, plane));
    }
    Ok(gin)
}

/// Scatter-adds the unfolded rows of input channel `c` back into its plane.
fn col2im_channel<T: Element>(cols: &[T], g: &ConvGeometry, c: usize, plane: &mut [T]) {
    let hwo = g.ho * g.wo;
    let (sh, sw) = g.p.stride;
    let (ph, pw) = g.p.padding;
    let (dh, dw) = g.p.dilation;
    let grp = c / g.cin_g();
    let cl = c % g.cin_g();
    let base = grp * g.k_rows() * hwo;
    for ki in 0..g.kh {
        for kj in 0..g.kw {
            let row = (cl * g.kh + ki) * g.kw + kj;
            let src = &cols[base + row * hwo..base + (row + 1) * hwo];
            for oy in 0..g.ho {
                let iy = (oy * sh + ki * dh) as isize - ph as isize;
                if iy < 0 || iy as usize >= g.h {
                    continue;
                }
                let prow = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                for ox in 0..g.wo {
                    let ix = (ox * sw + kj * dw) as isize - pw as isize;
                    if ix >= 0 && (ix as usize) < g.w {
                        prow[ix as usize] += src[oy * g.wo + ox];
                    }
                }
            }
        }
    }
}

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
    let hwo = g.ho * g.wo;
    let rows = g.k_rows();
    let cog = g.cout_g();
    let mut gw = Tensor::zeros(weight_shape.to_vec());
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

/// Row `r` of one group's unfolded input over all output columns.
fn unfold_row<T: Element>(img: &[T], g: &ConvGeometry, c0: usize, r: usize, row: &mut [T]) {
    let kk = g.kh * g.kw;
    let (c, ki, kj) = (r / kk, (r % kk) / g.kw, r % g.kw);
    let plane = &img[(c0 + c) * g.h * g.w..(c0 + c + 1) * g.h * g.w];
    for oy in 0..g.ho {
        let iy = (oy * g.p.stride.0 + ki * g.p.dilation.0) as isize - g.p.padding.0 as isize;
        for ox in 0..g.wo {
            let ix = (ox * g.p.stride.1 + kj * g.p.dilation.1) as isize - g.p.padding.1 as isize;
            row[oy * g.wo + ox] =
                if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w {
                    plane[iy as usize * g.w + ix as usize]
                } else {
                    T::zero()
                };
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct, obviously-correct convolution for comparison.
    fn naive(x: &Tensor<f64>, w: &Tensor<f64>, p: Conv2dParams) -> Tensor<f64> {
        let g = ConvGeometry::new(x.shape(), w.shape(), p).unwrap();
        let mut out = Tensor::zeros([g.n, g.cout, g.ho, g.wo]);
        for n in 0..g.n {
            for co in 0..g.cout {
                let grp = co / g.cout_g();
                for oy in 0..g.ho {
                    for ox in 0..g.wo {
                        let mut s = 0.0;
                        for ci in 0..g.cin_g() {
                            for ki in 0..g.kh {
                                for kj in 0..g.kw {
                                    let iy = (oy * p.stride.0 + ki * p.dilation.0) as isize
                                        - p.padding.0 as isize;
                                    let ix = (ox * p.stride.1 + kj * p.dilation.1) as isize
                                        - p.padding.1 as isize;
                                    if iy < 0 || ix < 0 || iy as usize >= g.h || ix as usize >= g.w
                                    {
                                        continue;
                                    }
                                    let c = grp * g.cin_g() + ci;
                                    s += x.data()
                                        [((n * g.cin + c) * g.h + iy as usize) * g.w + ix as usize]
                                        * w.data()[((co * g.cin_g() + ci) * g.kh + ki) * g.kw + kj];
                                }
                            }
                        }
                        out.data_mut()[((n * g.cout + co) * g.ho + oy) * g.wo + ox] = s;
                    }
                }
            }
        }
        out
    }

    fn seq(shape: &[usize], mul: usize) -> Tensor<f64> {
        let n: usize = shape.iter().product();
        Tensor::from_vec(
            shape.to_vec(),
            (0..n)
                .map(|i| ((i * mul) % 17) as f64 / 8.0 - 1.0)
                .collect(),
        )
        .unwrap()
    }

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
    fn kernel_larger_than_padded_input_is_an_error() {
        let x = Tensor::<f32>::zeros([1, 1, 2, 2]);
        let w = Tensor::<f32>::zeros([1, 1, 5, 5]);
        let e = conv2d(&x, &w, None, Conv2dParams::new(1, 1)).unwrap_err();
        assert!(matches!(
            e,
            TensorError::InvalidParameter { op: "conv2d", .. }
        ));
        let w = Tensor::<f32>::zeros([1, 2, 1, 1]);
        assert!(matches!(
            conv2d(&x, &w, None, Conv2dParams::default()),
            Err(TensorError::ShapeMismatch { .. })
        ));
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
