//! 2-d convolution: forward, and backward for input, weight and bias.
//!
//! 3 x 3 convolutions with stride 1 (most of VGG's and ResNet's) go through
//! Winograd F(2x2, 3x3) ([`crate::winograd`]) where it wins; the others are
//! im2col + GEMM, done in blocks of output columns so the unfolded panel stays
//! in cache and the blocks run in parallel (or, for small images, one panel
//! shared by blocks of output channels). The backward-input pass of a
//! stride-1 convolution is itself a convolution (of the output gradient with
//! the transposed, flipped kernel), so it reuses the forward kernels; other
//! strides, and convolutions back to few channels (the first layer), go
//! through GEMM + col2im.

use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::gemm::{gemm, MatRef};
use crate::scratch::with_scratch;
use crate::tensor::{check_nonzero, Tensor};
use crate::winograd::{self, WinogradKernel};
use rayon::prelude::*;
use std::sync::OnceLock;

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
    (PANEL_ELEMS / rows.max(1))
        .clamp(MIN_COLUMN_BLOCK, 1024)
        .min(cols)
        .max(1)
}

/// Narrowest column block: below this the GEMM repacks the weights too often.
const MIN_COLUMN_BLOCK: usize = 256;

/// Output pixels per image up to which the forward pass unfolds the whole
/// image once and splits the GEMM by output channels instead of columns.
const SHARED_PANEL_COLS: usize = 1024;

/// Output channels per task when the unfolded panel is shared.
const CHANNEL_BLOCK: usize = 64;

/// Whether a convolution with this geometry goes through Winograd
/// F(2x2, 3x3): with enough channels, and enough tiles (2 x 2 output blocks)
/// to pay back transforming the kernel (`min_tiles`). A function of the
/// shapes only, so a given layer always takes the same path.
fn use_winograd(g: &ConvGeometry, min_tiles: usize) -> bool {
    let mode = winograd_mode();
    let shape_ok = g.kh == 3
        && g.kw == 3
        && g.p.stride == (1, 1)
        && g.p.dilation == (1, 1)
        && g.p.groups == 1
        && mode != WinogradMode::Off;
    if mode == WinogradMode::All {
        return shape_ok;
    }
    let tiles = g.n * g.ho.div_ceil(2) * g.wo.div_ceil(2);
    shape_ok
        && g.cin >= WINOGRAD_MIN_CHANNELS
        && g.cout >= WINOGRAD_MIN_CHANNELS
        && tiles >= min_tiles
}

/// Input and output channels from which Winograd pays (measured: below it
/// the transforms cost more than the multiplies saved).
const WINOGRAD_MIN_CHANNELS: usize = 16;

/// Tiles (per call) from which transforming the kernel on every call pays, in
/// the forward pass (measured: transforming a 512 x 512 kernel costs about
/// what Winograd saves on a 14 x 14 output; 28 x 28 wins clearly).
const WINOGRAD_MIN_TILES: usize = 100;

/// The same for the input gradient, whose transformed kernel is cached on
/// the tape and reused by every further backward pass (several targets or
/// methods, integrated gradients): 14 x 14 outputs (49 tiles) qualify, 7 x 7
/// (16 tiles) do not.
const WINOGRAD_MIN_TILES_CACHED: usize = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WinogradMode {
    Off,
    Auto,
    All,
}

/// `SIGHTLINE_WINOGRAD=0` turns Winograd off (to compare against im2col),
/// `SIGHTLINE_WINOGRAD=all` uses it for every 3 x 3 stride-1 convolution it
/// can compute (to check its accuracy on small models); read once.
fn winograd_mode() -> WinogradMode {
    static MODE: OnceLock<WinogradMode> = OnceLock::new();
    *MODE.get_or_init(|| match std::env::var("SIGHTLINE_WINOGRAD").as_deref() {
        Ok("0") | Ok("off") => WinogradMode::Off,
        Ok("all") => WinogradMode::All,
        _ => WinogradMode::Auto,
    })
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

fn conv2d_im2col_checked<T: Element>(
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

/// Tasks wanted per call so that a few threads stay balanced.
const MIN_TASKS: usize = 8;

/// im2col + GEMM in blocks of output columns, one task per (image, block);
/// a pointwise convolution (no unfolding) with too few column blocks is also
/// split by blocks of output channels.
fn conv2d_column_blocks<T: Element>(
    input: &Tensor<T>,
    weight: &Tensor<T>,
    g: &ConvGeometry,
    out: &mut Tensor<T>,
) -> Result<()> {
    let rows = g.k_rows();
    let cog = g.cout_g();
    let w = weight.data();
    column_blocks(input, g, out, &|grp, r0, r1| {
        MatRef::row_major(
            &w[(grp * cog + r0) * rows..(grp * cog + r1) * rows],
            r1 - r0,
            rows,
        )
    })
}

/// The column-block convolution with the weight matrix of rows `r0..r1` of
/// group `grp` given by `weight(grp, r0, r1)` (a view: the weight itself, or
/// its transpose for a pointwise input gradient).
fn column_blocks<'w, T: Element>(
    input: &Tensor<T>,
    g: &ConvGeometry,
    out: &mut Tensor<T>,
    weight: &(dyn Fn(usize, usize, usize) -> MatRef<'w, T> + Sync),
) -> Result<()> {
    let hwo = g.ho * g.wo;
    // Even blocks (the last one is not a sliver), multiples of 16 columns.
    let blocks = hwo.div_ceil(column_block(g.k_rows(), hwo));
    let block = hwo.div_ceil(blocks).next_multiple_of(16).min(hwo);
    let blocks = hwo.div_ceil(block);
    let cog = g.cout_g();
    let row_blocks = if g.is_pointwise() {
        MIN_TASKS.div_ceil(g.n * blocks).min(cog / 32).max(1)
    } else {
        1
    };
    let rows_per = cog.div_ceil(row_blocks).next_multiple_of(16).min(cog);
    let row_blocks = cog.div_ceil(rows_per);
    let out_ptr = SendPtr(out.data_mut().as_mut_ptr());
    let in_img = g.cin * g.h * g.w;
    let out_len = out.len();
    let panel_len = if g.is_pointwise() {
        0
    } else {
        g.k_rows() * block
    };
    let tasks = g.n * blocks * row_blocks;
    (0..tasks).into_par_iter().try_for_each(|task| {
        let n = task / (blocks * row_blocks);
        let b = (task / row_blocks) % blocks;
        let rb = task % row_blocks;
        let (j0, j1) = (b * block, ((b + 1) * block).min(hwo));
        let (r0, r1) = (rb * rows_per, ((rb + 1) * rows_per).min(cog));
        let img = &input.data()[n * in_img..(n + 1) * in_img];
        with_scratch(panel_len, |cols: &mut [T]| {
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
                    let cols = &mut cols[..g.k_rows() * (j1 - j0)];
                    im2col_block(img, g, c0, j0, j1, cols);
                    MatRef::row_major(cols, g.k_rows(), j1 - j0)
                };
                let wmat = weight(grp, r0, r1);
                let o = out_ptr;
                let start = n * g.cout * hwo + (grp * cog + r0) * hwo + j0;
                // SAFETY: this task alone writes rows r0..r1 of image n, group
                // grp, columns j0..j1 of the output; the view stays inside
                // `out` and other tasks' writes fall outside those elements.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(o.0.add(start), (r1 - r0 - 1) * hwo + (j1 - j0))
                };
                debug_assert!(start + dst.len() <= out_len);
                gemm_strided(wmat, bmat, dst, hwo)?;
            }
            Ok::<(), TensorError>(())
        })
    })
}

/// im2col of the whole image once per (image, group), then GEMMs over blocks
/// of output channels: for small images, where column blocks would be few
/// and narrow.
fn conv2d_shared_panel<T: Element>(
    input: &Tensor<T>,
    weight: &Tensor<T>,
    g: &ConvGeometry,
    out: &mut Tensor<T>,
) -> Result<()> {
    let hwo = g.ho * g.wo;
    let rows = g.k_rows();
    let cog = g.cout_g();
    let in_img = g.cin * g.h * g.w;
    with_scratch(rows * hwo, |cols: &mut [T]| {
        for n in 0..g.n {
            let img = &input.data()[n * in_img..(n + 1) * in_img];
            for grp in 0..g.p.groups {
                let c0 = grp * g.cin_g();
                cols.par_chunks_mut(hwo)
                    .enumerate()
                    .for_each(|(r, row)| unfold_row(img, g, c0, r, row));
                let bmat = MatRef::row_major(cols, rows, hwo);
                let dst = &mut out.data_mut()[(n * g.cout + grp * cog) * hwo..][..cog * hwo];
                dst.par_chunks_mut(CHANNEL_BLOCK * hwo)
                    .enumerate()
                    .try_for_each(|(cb, dst)| {
                        let r0 = grp * cog + cb * CHANNEL_BLOCK;
                        let m = dst.len() / hwo;
                        let wmat =
                            MatRef::row_major(&weight.data()[r0 * rows..][..m * rows], m, rows);
                        gemm_strided(wmat, bmat, dst, hwo)
                    })?;
            }
        }
        Ok(())
    })
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
    // One task per output row (group, input channel): sequential writes.
    out.par_chunks_mut(cog * kk)
        .enumerate()
        .for_each(|(row, dst)| {
            let (grp, ci) = (row / cig, row % cig);
            for (co, d) in dst.chunks_exact_mut(kk).enumerate() {
                let s = &src[((grp * cog + co) * cig + ci) * kk..][..kk];
                for (d, &v) in d.iter_mut().rev().zip(s) {
                    *d = v;
                }
            }
        });
    Tensor::from_vec([cig * groups, cog, kh, kw], out)
}

/// Kernels derived from one weight for its input-gradient pass, computed on
/// first use and kept: the Winograd transform of the transposed, flipped
/// kernel, or the transposed, flipped kernel itself.
///
/// A cache belongs to one weight and one set of parameters: pass the same
/// ones with it every time.
#[derive(Debug, Default)]
pub struct BackwardInputCache<T> {
    winograd: OnceLock<WinogradKernel<T>>,
    flipped: OnceLock<Tensor<T>>,
}

impl<T> BackwardInputCache<T> {
    /// An empty cache.
    pub fn new() -> Self {
        Self {
            winograd: OnceLock::new(),
            flipped: OnceLock::new(),
        }
    }
}

/// Input channels per group below which a stride-1 input gradient goes
/// through GEMM + col2im instead of the transposed convolution (whose GEMM
/// would have only that many rows).
const COL2IM_MAX_CHANNELS: usize = 16;

/// Gradient of the convolution with respect to its input, given the output
/// gradient `gout` (N x Cout x Ho x Wo) and the input's spatial size.
pub fn conv2d_backward_input<T: Element>(
    gout: &Tensor<T>,
    weight: &Tensor<T>,
    input_hw: (usize, usize),
    p: Conv2dParams,
) -> Result<Tensor<T>> {
    conv2d_backward_input_cached(gout, weight, input_hw, p, &BackwardInputCache::new())
}

/// [`conv2d_backward_input`] keeping what it derives from `weight` in `cache`
/// for the next call with the same weight and parameters.
pub fn conv2d_backward_input_cached<T: Element>(
    gout: &Tensor<T>,
    weight: &Tensor<T>,
    input_hw: (usize, usize),
    p: Conv2dParams,
    cache: &BackwardInputCache<T>,
) -> Result<Tensor<T>> {
    let g = backward_geometry(gout, weight, input_hw, p)?;
    if g.is_pointwise() {
        return pointwise_backward_input(gout, weight, &g);
    }
    let (kh, kw) = (g.kh, g.kw);
    let (dh, dw) = p.dilation;
    let (ph, pw) = p.padding;
    if p.stride == (1, 1)
        && ph <= dh * (kh - 1)
        && pw <= dw * (kw - 1)
        && g.cin_g() >= COL2IM_MAX_CHANNELS
    {
        let tp = Conv2dParams {
            stride: (1, 1),
            padding: (dh * (kh - 1) - ph, dw * (kw - 1) - pw),
            dilation: p.dilation,
            groups: p.groups,
        };
        // The geometry of the transposed convolution.
        let tg = ConvGeometry::new(gout.shape(), &[g.cin, g.cout_g(), kh, kw], tp)?;
        if use_winograd(&tg, WINOGRAD_MIN_TILES_CACHED) {
            let k = match cache.winograd.get() {
                Some(k) => k,
                None => {
                    let k = WinogradKernel::backward_input(weight)?;
                    cache.winograd.get_or_init(|| k)
                }
            };
            return winograd::conv3x3(gout, k, tp.padding, None);
        }
        let wt = match cache.flipped.get() {
            Some(w) => w,
            None => {
                let w = transpose_flip_kernel(weight, p.groups)?;
                cache.flipped.get_or_init(|| w)
            }
        };
        return conv2d_im2col_checked(gout, wt, None, &tg);
    }
    backward_input_col2im(gout, weight, &g)
}

/// Input gradient of a 1 x 1, stride-1, unpadded convolution: per group,
/// `W^T gout`, with `W^T` a strided view of the weight (no copy).
fn pointwise_backward_input<T: Element>(
    gout: &Tensor<T>,
    weight: &Tensor<T>,
    g: &ConvGeometry,
) -> Result<Tensor<T>> {
    // The transposed convolution: gout's channels in, the input's out.
    let tg = ConvGeometry::new(
        gout.shape(),
        &[g.cin, g.cout_g(), 1, 1],
        Conv2dParams {
            groups: g.p.groups,
            ..Conv2dParams::default()
        },
    )?;
    let (cog, cig) = (g.cout_g(), g.cin_g());
    let w = weight.data();
    let mut gin = Tensor::zeros([g.n, g.cin, g.h, g.w]);
    column_blocks(gout, &tg, &mut gin, &|grp, r0, r1| MatRef {
        data: &w[grp * cog * cig + r0..(grp + 1) * cog * cig],
        rows: r1 - r0,
        cols: cog,
        rs: 1,
        cs: cig,
    })?;
    Ok(gin)
}

/// [`conv2d_backward_input`] without Winograd (the reference for it).
pub fn backward_input_im2col<T: Element>(
    gout: &Tensor<T>,
    weight: &Tensor<T>,
    input_hw: (usize, usize),
    p: Conv2dParams,
) -> Result<Tensor<T>> {
    let g = backward_geometry(gout, weight, input_hw, p)?;
    let (dh, dw) = p.dilation;
    let (ph, pw) = p.padding;
    if p.stride == (1, 1) && ph <= dh * (g.kh - 1) && pw <= dw * (g.kw - 1) {
        let wt = transpose_flip_kernel(weight, p.groups)?;
        let tp = Conv2dParams {
            stride: (1, 1),
            padding: (dh * (g.kh - 1) - ph, dw * (g.kw - 1) - pw),
            dilation: p.dilation,
            groups: p.groups,
        };
        return conv2d_im2col(gout, &wt, None, tp);
    }
    backward_input_col2im(gout, weight, &g)
}

/// Checks the shapes of an input-gradient call; the geometry of the forward
/// convolution.
fn backward_geometry<T: Element>(
    gout: &Tensor<T>,
    weight: &Tensor<T>,
    input_hw: (usize, usize),
    p: Conv2dParams,
) -> Result<ConvGeometry> {
    let [n, cout, ho, wo] = gout.dims4("conv2d_backward_input")?;
    let [wc, cig, _, _] = weight.dims4("conv2d_backward_input")?;
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
    Ok(g)
}

/// Input rows per col2im task.
const COL2IM_BAND: usize = 16;

fn backward_input_col2im<T: Element>(
    gout: &Tensor<T>,
    weight: &Tensor<T>,
    g: &ConvGeometry,
) -> Result<Tensor<T>> {
    let hwo = g.ho * g.wo;
    let rows = g.k_rows();
    let mut gin = Tensor::zeros([g.n, g.cin, g.h, g.w]);
    let img_in = g.cin * g.h * g.w;
    with_scratch(g.p.groups * rows * hwo, |cols: &mut [T]| {
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

    /// `<conv(x, w), g> = <x, conv_backward_input(g, w)>` checked element by
    /// element: the input gradient from the naive convolution's adjoint.
    fn naive_backward_input(
        g: &Tensor<f64>,
        w: &Tensor<f64>,
        hw: (usize, usize),
        p: Conv2dParams,
    ) -> Tensor<f64> {
        let [n, _, _, _] = g.dims4("t").unwrap();
        let [_, cig, _, _] = w.dims4("t").unwrap();
        let shape = [n, cig * p.groups, hw.0, hw.1];
        let len: usize = shape.iter().product();
        let mut out = Tensor::zeros(shape.to_vec());
        for i in 0..len {
            let mut e = Tensor::zeros(shape.to_vec());
            e.data_mut()[i] = 1.0;
            let y = naive(&e, w, p);
            out.data_mut()[i] = y.data().iter().zip(g.data()).map(|(a, b)| a * b).sum();
        }
        out
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
    fn backward_input_matches_the_adjoint_on_every_path() {
        // col2im (few input channels, stride 1 and 2), transposed conv,
        // Winograd (cached and not), 1 x 1.
        let cases = [
            ([3, 3, 3], [64, 3, 3, 3], Conv2dParams::new(1, 1)),
            ([5, 7, 2], [6, 2, 3, 3], Conv2dParams::new(2, 1)),
            ([6, 6, 1], [5, 20, 2, 2], Conv2dParams::new(1, 1)),
            ([9, 8, 0], [16, 18, 3, 3], Conv2dParams::new(1, 1)),
            ([4, 4, 0], [20, 16, 1, 1], Conv2dParams::new(2, 0)),
            ([5, 4, 0], [24, 20, 1, 1], Conv2dParams::default()),
            (
                [3, 5, 0],
                [24, 10, 1, 1],
                Conv2dParams {
                    groups: 2,
                    ..Conv2dParams::default()
                },
            ),
        ];
        for ([h, w, _], ws, p) in cases {
            let wt = seq(&ws, 5);
            let ho = window_output_len(h, ws[2], p.stride.0, p.padding.0, 1).unwrap();
            let wo = window_output_len(w, ws[3], p.stride.1, p.padding.1, 1).unwrap();
            let g = seq(&[1, ws[0], ho, wo], 3);
            let want = naive_backward_input(&g, &wt, (h, w), p);
            let cache = BackwardInputCache::new();
            for _ in 0..2 {
                let got = conv2d_backward_input_cached(&g, &wt, (h, w), p, &cache).unwrap();
                assert!(got.max_abs_diff(&want).unwrap() < 1e-10, "{ws:?} {p:?}");
            }
            let got = backward_input_im2col(&g, &wt, (h, w), p).unwrap();
            assert!(got.max_abs_diff(&want).unwrap() < 1e-10, "{ws:?} {p:?}");
        }
    }

    #[test]
    fn cached_winograd_input_gradient_matches_im2col() {
        // 14 x 12 output: 42 tiles, enough for Winograd with a cached kernel.
        let p = Conv2dParams::new(1, 1);
        let wt = seq(&[16, 18, 3, 3], 5);
        let g = seq(&[2, 16, 14, 12], 3);
        let want = backward_input_im2col(&g, &wt, (14, 12), p).unwrap();
        let cache = BackwardInputCache::new();
        for _ in 0..2 {
            let got = conv2d_backward_input_cached(&g, &wt, (14, 12), p, &cache).unwrap();
            assert!(got.max_abs_diff(&want).unwrap() < 1e-10);
        }
        assert!(cache.winograd.get().is_some());
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
