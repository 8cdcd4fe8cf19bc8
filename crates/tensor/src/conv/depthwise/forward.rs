//! The forward depthwise convolution: one task per output plane, in bands
//! of output rows over zero-padded, phase-split copies of the input rows.

use super::geometry::{lanes_for, Columns, Geometry};
use super::planes::{run_planes, PlaneKernel};
use super::DepthwiseParams;
use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::simd::{simd_level, SimdLevel};
use crate::tensor::Tensor;
use std::mem::MaybeUninit;

const OP: &str = "depthwise_conv2d";

/// Depthwise convolution: `x` `[N, C, H, W]`, `weight` `[C M, 1, KH, KW]`
/// (`M` output channels per input channel: output channel `o` reads input
/// channel `o / M`), optional `bias` `[C M]`; returns `[N, C M, Ho, Wo]`.
///
/// The same values as [`crate::conv::conv2d`] with `groups = C` (and
/// symmetric padding), to rounding: each output is its bias plus its taps
/// in row-major order, zero padding included.
///
/// # Errors
/// [`TensorError::Rank`] if `x` or `weight` is not 4-d;
/// [`TensorError::ZeroSized`] for an empty dimension;
/// [`TensorError::ShapeMismatch`] if `weight` is not `[C M, 1, KH, KW]` or
/// `bias` not `[C M]`; [`TensorError::InvalidParameter`] for a zero stride
/// or dilation or a window larger than the padded input;
/// [`TensorError::TooLarge`] for sizes that overflow.
pub fn depthwise_conv2d<T: Element>(
    x: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    p: DepthwiseParams,
) -> Result<Tensor<T>> {
    depthwise_conv2d_at(simd_level(), x, weight, bias, p)
}

/// [`depthwise_conv2d`] at a given SIMD level (which the CPU must run).
pub(super) fn depthwise_conv2d_at<T: Element>(
    level: SimdLevel,
    x: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    p: DepthwiseParams,
) -> Result<Tensor<T>> {
    let g = Geometry::new(OP, x.shape(), weight.shape(), p)?;
    if let Some(b) = bias {
        if b.shape() != [g.cout()] {
            return Err(TensorError::ShapeMismatch {
                op: "depthwise_conv2d bias",
                left: vec![g.cout()],
                right: b.shape().to_vec(),
            });
        }
    }
    let bias = bias.map(|b| b.data());
    let args = (x.data(), weight.data(), bias, &g);
    // Blocks of 4 rows of 8 or 16, or 2 of 32: independent sums in flight.
    match lanes_for(g.wo) {
        8 => forward::<T, 8, 4>(level, args),
        16 => forward::<T, 16, 4>(level, args),
        _ => forward::<T, 32, 2>(level, args),
    }
}

type Args<'a, T> = (&'a [T], &'a [T], Option<&'a [T]>, &'a Geometry);

fn forward<T: Element, const L: usize, const R: usize>(
    level: SimdLevel,
    (x, weight, bias, g): Args<'_, T>,
) -> Result<Tensor<T>> {
    let kernel = ForwardPlanes::<T, L, R> {
        x,
        weight,
        bias,
        g,
        cols: Columns::new::<T>(OP, g, L, R)?,
    };
    let plane = g.ho * g.wo;
    let write =
        |out: &mut [MaybeUninit<T>]| run_planes(level, &kernel, out, plane, plane * g.taps());
    // SAFETY: `ForwardPlanes::plane` writes every element of its plane, and
    // the planes tile the output.
    unsafe { Tensor::write_whole(g.output_shape(), write) }
}

/// The output planes of one forward call, in blocks of `R` rows of `L`
/// outputs.
struct ForwardPlanes<'a, T, const L: usize, const R: usize> {
    x: &'a [T],
    weight: &'a [T],
    bias: Option<&'a [T]>,
    g: &'a Geometry,
    cols: Columns,
}

impl<T: Element, const L: usize, const R: usize> PlaneKernel for ForwardPlanes<'_, T, L, R> {
    type Elem = T;
    type Out = MaybeUninit<T>;

    fn scratch_len(&self) -> Result<usize> {
        Ok(self.cols.band_len)
    }

    /// Output plane `index` (image `index / (C M)`, channel `index % (C M)`).
    #[inline(always)]
    fn plane(&self, index: usize, out: &mut [MaybeUninit<T>], band: &mut [T]) -> Result<()> {
        let (g, cols) = (self.g, &self.cols);
        let (n, o) = (index / g.cout(), index % g.cout());
        let hw = g.h * g.w;
        let src = &self.x[(n * g.c + o / g.m) * hw..][..hw];
        let taps = g.taps();
        let k = &self.weight[o * taps..][..taps];
        // Every run starts from the bias (built once: filling the array
        // element by element before each run stalls its vector loads).
        let init = [[self.bias.map_or(T::zero(), |b| b[o]); L]; R];
        let (sh, dh) = (g.p.stride.0, g.p.dilation.0);
        let (wo, row_len) = (g.wo, cols.row_len);
        for oy0 in (0..g.ho).step_by(cols.band_rows) {
            let oy1 = (oy0 + cols.band_rows).min(g.ho);
            // (No overflow: checked for whole bands in `Columns::new`.)
            let rows = Columns::rows_in(g, oy1 - oy0).unwrap_or(0);
            cols.fill(g, src, oy0 * sh, rows, band);
            for (blk, lines) in out[oy0 * wo..oy1 * wo].chunks_mut(R * wo).enumerate() {
                // Where each row of the block starts in the band; rows past
                // the last output row (of a short last block) recompute the
                // first one, and are not stored.
                let nr = lines.len() / wo;
                let base: [usize; R] =
                    std::array::from_fn(|r| (blk * R + if r < nr { r } else { 0 }) * sh * row_len);
                for c0 in (0..wo).step_by(L) {
                    let mut acc = init;
                    for (ki, kr) in k.chunks_exact(g.kw).enumerate() {
                        let tap_row = ki * dh * row_len + c0;
                        for (&wv, &start) in kr.iter().zip(&cols.tap_start) {
                            for (acc, &base) in acc.iter_mut().zip(&base) {
                                let run = &band[base + tap_row + start..][..L];
                                for (a, &v) in acc.iter_mut().zip(run) {
                                    *a += wv * v;
                                }
                            }
                        }
                    }
                    let len = L.min(wo - c0);
                    for (line, acc) in lines.chunks_exact_mut(wo).zip(&acc) {
                        if len == L {
                            line[c0..][..L].write_copy_of_slice(acc);
                        } else {
                            // (A copy: slicing the sums themselves at a
                            // variable length would keep them in memory.)
                            let last: [T; L] = *acc;
                            line[c0..][..len].write_copy_of_slice(&last[..len]);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
