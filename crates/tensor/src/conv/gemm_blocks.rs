//! im2col + GEMM in parallel blocks: by output columns (the unfolded panel
//! of a block stays in cache), or, for small images, one panel per image
//! shared by blocks of output channels. Blocks are sized from the shapes
//! only, so results do not depend on the number of threads.

use super::im2col::{im2col_block, unfold_row};
use super::ConvGeometry;
use crate::cblock::CBlock;
use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::gemm::MatRef;
use crate::scratch::{scratch_len, with_scratch};
use crate::tensor::Tensor;
use rayon::prelude::*;

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
pub(super) const SHARED_PANEL_COLS: usize = 1024;

/// Output channels per task when the unfolded panel is shared.
pub(super) const CHANNEL_BLOCK: usize = 64;

/// Tasks wanted per call so that a few threads stay balanced.
const MIN_TASKS: usize = 8;

/// im2col + GEMM in blocks of output columns, one task per (image, block);
/// a pointwise convolution (no unfolding) with too few column blocks is also
/// split by blocks of output channels.
pub(super) fn conv2d_column_blocks<T: Element>(
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
pub(super) fn column_blocks<'w, T: Element>(
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
        scratch_len("conv2d im2col", &[&[g.k_rows(), block]])?
    };
    let tasks = g.n * blocks * row_blocks;
    (0..tasks).into_par_iter().try_for_each(|task| {
        let n = task / (blocks * row_blocks);
        let b = (task / row_blocks) % blocks;
        let rb = task % row_blocks;
        let (j0, j1) = (b * block, ((b + 1) * block).min(hwo));
        let (r0, r1) = (rb * rows_per, ((rb + 1) * rows_per).min(cog));
        let img = &input.data()[n * in_img..(n + 1) * in_img];
        with_scratch("conv2d im2col", panel_len, |cols: &mut [T]| {
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
                assert!(start + (r1 - r0 - 1) * hwo + (j1 - j0) <= out_len);
                // SAFETY: this task alone writes rows r0..r1 of image n, group
                // grp, columns j0..j1 of the output, inside `out` (asserted);
                // the block claims only those columns of each row, not the
                // other tasks' columns between them.
                let dst = unsafe { CBlock::from_raw(o.0.add(start), hwo, r1 - r0, j1 - j0) };
                gemm_strided(wmat, bmat, dst)?;
            }
            Ok::<(), TensorError>(())
        })?
    })
}

/// im2col of the whole image once per (image, group), then GEMMs over blocks
/// of output channels: for small images, where column blocks would be few
/// and narrow.
pub(super) fn conv2d_shared_panel<T: Element>(
    input: &Tensor<T>,
    weight: &Tensor<T>,
    g: &ConvGeometry,
    out: &mut Tensor<T>,
) -> Result<()> {
    let hwo = g.ho * g.wo;
    let rows = g.k_rows();
    let cog = g.cout_g();
    let in_img = g.cin * g.h * g.w;
    let len = scratch_len("conv2d shared im2col", &[&[rows, hwo]])?;
    with_scratch("conv2d shared im2col", len, |cols: &mut [T]| {
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
                        gemm_strided(wmat, bmat, CBlock::of_slice(dst, hwo, m))
                    })?;
            }
        }
        Ok(())
    })?
}

impl<'a, T> MatRef<'a, T> {
    /// The view starting `j` columns further right.
    fn offset_cols(mut self, j: usize) -> Self {
        self.data = &self.data[j * self.cs..];
        self
    }
}

/// `C = A B` into the block `dst` (single-threaded call).
fn gemm_strided<T: Element>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    mut dst: CBlock<'_, T>,
) -> Result<()> {
    if a.cols != b.rows || !dst.holds(a.rows, b.cols) {
        return Err(TensorError::ShapeMismatch {
            op: "conv2d gemm",
            left: vec![a.rows, a.cols],
            right: vec![b.rows, b.cols],
        });
    }
    // SAFETY: sizes and strides were checked against the buffers above (views
    // come from checked slices; the product writes the `a.rows x b.cols`
    // that `dst` holds), and `dst` does not alias the inputs.
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
            dst.ldc() as isize,
            1,
        );
    }
    Ok(())
}
