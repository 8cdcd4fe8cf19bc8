//! Checked shapes of a depthwise convolution, and the zero-padded input
//! rows, split by column phase, that the forward and weight-gradient
//! kernels read.

use super::DepthwiseParams;
use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::tensor::check_nonzero;

/// Bytes of the padded rows one task keeps at a time: a band of rows that
/// stays in L2 while its taps are summed.
const BAND_BYTES: usize = 64 << 10;

/// Lanes (elements summed side by side) of the kernels' runs for rows of
/// `width` elements: few for narrow rows, whose last run is mostly padding,
/// more for wide ones, for independent sums in flight.
pub(super) fn lanes_for(width: usize) -> usize {
    match width {
        0..=8 => 8,
        9..=16 => 16,
        _ => 32,
    }
}

/// The error of a size that does not fit in `usize` (or in an
/// allocation); `shape` the dimensions it was computed from.
pub(super) fn too_large(op: &'static str, shape: &[usize]) -> TensorError {
    TensorError::TooLarge {
        op,
        shape: shape.to_vec(),
    }
}

/// The product of `dims`, or an error naming `op` if it overflows or if
/// that many elements of the largest element type (8 bytes) would exceed
/// the largest allocation (`isize::MAX` bytes).
pub(super) fn checked_len(op: &'static str, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= isize::MAX as usize / 8)
        .ok_or_else(|| too_large(op, dims))
}

/// Checked geometry of one depthwise convolution: input `[n, c, h, w]`,
/// weight `[c m, 1, kh, kw]`, output `[n, c m, ho, wo]`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geometry {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Output channels per input channel.
    pub m: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Output height.
    pub ho: usize,
    /// Output width.
    pub wo: usize,
    /// The parameters.
    pub p: DepthwiseParams,
}

impl Geometry {
    /// Checks the input and weight shapes and the parameters, and derives
    /// the output size; every size the kernels compute from these fits in
    /// `usize`.
    pub fn new(
        op: &'static str,
        input: &[usize],
        weight: &[usize],
        p: DepthwiseParams,
    ) -> Result<Self> {
        let [n, c, h, w] = *input else {
            return Err(TensorError::Rank {
                op,
                expected: 4,
                shape: input.to_vec(),
            });
        };
        let [cout, one, kh, kw] = *weight else {
            return Err(TensorError::Rank {
                op,
                expected: 4,
                shape: weight.to_vec(),
            });
        };
        check_nonzero(op, input)?;
        check_nonzero(op, weight)?;
        if p.stride.0 == 0 || p.stride.1 == 0 || p.dilation.0 == 0 || p.dilation.1 == 0 {
            return Err(TensorError::InvalidParameter {
                op,
                message: format!("stride and dilation must be positive, got {p:?}"),
            });
        }
        if one != 1 || cout % c != 0 {
            return Err(TensorError::ShapeMismatch {
                op,
                left: input.to_vec(),
                right: weight.to_vec(),
            });
        }
        let pads = p.pads;
        let ho = window_len(op, h, kh, p.stride.0, pads.top, pads.bottom, p.dilation.0)?;
        let wo = window_len(op, w, kw, p.stride.1, pads.left, pads.right, p.dilation.1)?;
        let (Some(ho), Some(wo)) = (ho, wo) else {
            return Err(TensorError::InvalidParameter {
                op,
                message: format!(
                    "kernel {kh}x{kw} (dilation {:?}) larger than the padded input \
                     (input {h}x{w}, padding {pads:?})",
                    p.dilation
                ),
            });
        };
        let g = Self {
            n,
            c,
            m: cout / c,
            h,
            w,
            kh,
            kw,
            ho,
            wo,
            p,
        };
        // The sizes the kernels index with, checked once here.
        checked_len(op, &[n, cout, ho, wo])?;
        checked_len(op, &[n, c, h, w])?;
        checked_len(op, &[cout, kh, kw])?;
        Ok(g)
    }

    /// Output channels.
    pub fn cout(&self) -> usize {
        self.c * self.m
    }

    /// Taps per kernel: `kh kw`.
    pub fn taps(&self) -> usize {
        self.kh * self.kw
    }

    /// The output shape `[n, c m, ho, wo]`.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.n, self.cout(), self.ho, self.wo]
    }

    /// Rows of the padded input one output row's window covers:
    /// `(kh - 1) dh + 1`.
    pub fn span_h(&self) -> usize {
        (self.kh - 1) * self.p.dilation.0 + 1
    }

    /// Largest column offset of a tap within a phase:
    /// `(kw - 1) dw / sw` (see [`Columns`]).
    pub fn max_phase_offset(&self) -> usize {
        (self.kw - 1) * self.p.dilation.1 / self.p.stride.1
    }
}

/// Output length of a window along one axis (`None` if the window does
/// not fit in the padded input), with checked arithmetic.
fn window_len(
    op: &'static str,
    input: usize,
    kernel: usize,
    stride: usize,
    before: usize,
    after: usize,
    dilation: usize,
) -> Result<Option<usize>> {
    let overflow = || too_large(op, &[input, kernel, before, after, dilation]);
    let span = (kernel - 1)
        .checked_mul(dilation)
        .and_then(|s| s.checked_add(1))
        .ok_or_else(overflow)?;
    let padded = input
        .checked_add(before)
        .and_then(|s| s.checked_add(after))
        .ok_or_else(overflow)?;
    Ok((padded >= span).then(|| (padded - span) / stride + 1))
}

/// How the forward and weight-gradient kernels lay out a padded input row
/// in their scratch: split by column phase, padded column `pc` at
/// `(pc mod sw) phase_len + pc / sw` (phases no tap reads left out), so that tap `kj` of output columns
/// `ox ..` reads the contiguous run from `tap_start[kj] + ox` on.
#[derive(Clone, Debug)]
pub(super) struct Columns {
    /// Where tap `kj`'s run for output column 0 starts in a row.
    pub tap_start: Vec<usize>,
    /// Where the input's columns go in each phase of a row.
    pub segments: Vec<Segment>,
    /// Elements of one phase of a row: every run of `lanes` read from it,
    /// past the last output column too, stays inside.
    pub phase_len: usize,
    /// Elements of one row: `phase_len` times the number of phases read,
    /// `min(sw, (kw - 1) dw + 1)`.
    pub row_len: usize,
    /// Output rows per band.
    pub band_rows: usize,
    /// Elements of the padded rows of one band.
    pub band_len: usize,
}

impl Columns {
    /// The layout for runs of `lanes` outputs, in bands of whole blocks of
    /// `block_rows` output rows (but for the last); an error if it does not
    /// fit in `usize`.
    pub fn new<T>(op: &'static str, g: &Geometry, lanes: usize, block_rows: usize) -> Result<Self> {
        let (sw, dw) = (g.p.stride.1, g.p.dilation.1);
        let overflow = || too_large(op, &[g.h, g.w, g.kh, g.kw]);
        let runs =
            g.wo.div_ceil(lanes)
                .checked_mul(lanes)
                .ok_or_else(overflow)?;
        let phase_len = runs
            .checked_add(g.max_phase_offset())
            .ok_or_else(overflow)?;
        // Phases that hold a column some tap reads (not all `sw` of them
        // when the stride is wider than the kernel).
        let phases = sw.min((g.kw - 1) * dw + 1);
        let row_len = phase_len.checked_mul(phases).ok_or_else(overflow)?;
        let left = g.p.pads.left;
        let segments = (0..phases)
            .map(|ph| {
                // Entries `i` of phase `ph` hold padded column i sw + ph,
                // input column i sw + ph - left where that is in 0..w.
                let lo = left.saturating_sub(ph).div_ceil(sw).min(phase_len);
                let hi = (left + g.w)
                    .saturating_sub(ph)
                    .div_ceil(sw)
                    .clamp(lo, phase_len);
                // (No overflow: when the segment is not empty, entry `lo`
                // is an input column.)
                let first = if lo < hi { lo * sw + ph - left } else { 0 };
                Segment { lo, hi, first }
            })
            .collect();
        let tap_start = (0..g.kw)
            .map(|kj| {
                let at = kj * dw;
                (at % sw) * phase_len + at / sw
            })
            .collect();
        // As many output rows as keep the band's padded rows within
        // BAND_BYTES, in whole blocks, at least one block.
        let (sh, span) = (g.p.stride.0, g.span_h());
        let budget = BAND_BYTES / std::mem::size_of::<T>().max(1) / row_len;
        let rows = (budget.saturating_sub(span) / sh + 1).min(g.ho);
        let band_rows = if rows < g.ho {
            (rows / block_rows).max(1) * block_rows
        } else {
            rows
        };
        let band_rows_in = Self::rows_in(g, band_rows.min(g.ho)).ok_or_else(overflow)?;
        let band_len = checked_len(op, &[band_rows_in, row_len])?;
        Ok(Self {
            tap_start,
            segments,
            phase_len,
            row_len,
            band_rows,
            band_len,
        })
    }

    /// Padded input rows that `out_rows` output rows read, or `None` on
    /// overflow.
    pub fn rows_in(g: &Geometry, out_rows: usize) -> Option<usize> {
        (out_rows - 1)
            .checked_mul(g.p.stride.0)
            .and_then(|r| r.checked_add(g.span_h()))
    }

    /// Copies padded rows `pr0 .. pr0 + rows` of input plane `src` (`h x w`;
    /// padded row `pr` is input row `pr - top`, zeros above and below) into
    /// `dst`, split by column phase.
    ///
    /// Only the input's values are written in the rows that hold some:
    /// their padding must be zero already, as in a buffer zeroed once for
    /// planes of one layout (the padding is in the same place in every
    /// row); rows wholly of padding are zeroed.
    #[inline(always)]
    pub fn fill<T: Element>(
        &self,
        g: &Geometry,
        src: &[T],
        pr0: usize,
        rows: usize,
        dst: &mut [T],
    ) {
        let (top, left) = (g.p.pads.top, g.p.pads.left);
        let (sw, w) = (g.p.stride.1, g.w);
        for (r, row) in dst[..rows * self.row_len]
            .chunks_exact_mut(self.row_len)
            .enumerate()
        {
            let iy = (pr0 + r).wrapping_sub(top);
            if iy >= g.h {
                row.fill(T::zero());
                continue;
            }
            let line = &src[iy * w..][..w];
            if let (2, [a, b]) = (sw, &self.segments[..]) {
                // Stride 2: even input columns to one phase, odd ones to
                // the other, in one pass.
                let (p0, p1) = row.split_at_mut(self.phase_len);
                let (p0, p1) = (&mut p0[a.lo..a.hi], &mut p1[b.lo..b.hi]);
                let (even, odd) = if left % 2 == 0 { (p0, p1) } else { (p1, p0) };
                let common = even.len().min(odd.len());
                for ((e, o), pair) in even
                    .iter_mut()
                    .zip(odd.iter_mut())
                    .zip(line.chunks_exact(2))
                {
                    *e = pair[0];
                    *o = pair[1];
                }
                for (j, d) in even.iter_mut().enumerate().skip(common) {
                    *d = line[2 * j];
                }
                for (j, d) in odd.iter_mut().enumerate().skip(common) {
                    *d = line[2 * j + 1];
                }
                continue;
            }
            for (seg, dst) in self
                .segments
                .iter()
                .zip(row.chunks_exact_mut(self.phase_len))
            {
                let dst = &mut dst[seg.lo..seg.hi];
                if dst.is_empty() {
                    continue;
                }
                if sw == 1 {
                    dst.copy_from_slice(&line[seg.first..][..dst.len()]);
                } else {
                    for (d, &s) in dst.iter_mut().zip(line[seg.first..].iter().step_by(sw)) {
                        *d = s;
                    }
                }
            }
        }
    }
}

/// Where the input's columns go in one phase of a padded row: entries
/// `lo .. hi`, from input column `first` on, every `sw`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Segment {
    pub lo: usize,
    pub hi: usize,
    pub first: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::depthwise::Pads2d;

    #[test]
    fn output_size_follows_asymmetric_padding() {
        let p = DepthwiseParams {
            stride: (2, 1),
            pads: Pads2d::from_onnx([0, 1, 1, 2]),
            dilation: (1, 2),
        };
        // Height: (7 + 0 + 1 - 3) / 2 + 1 = 3; width: (5 + 1 + 2 - 5) / 1 + 1 = 4.
        let g = Geometry::new("t", &[2, 3, 7, 5], &[6, 1, 3, 3], p).unwrap();
        assert_eq!((g.ho, g.wo, g.m), (3, 4, 2));
        assert_eq!(g.output_shape(), [2, 6, 3, 4]);
    }

    #[test]
    fn fill_pads_and_splits_by_phase() {
        // One row 1..=5, padding 2 left and 1 right, stride 2: padded
        // 0 0 1 2 3 4 5 0; phase 0 holds 0 1 3 5, phase 1 holds 0 2 4 0.
        let p = DepthwiseParams {
            stride: (1, 2),
            pads: Pads2d::from_onnx([1, 2, 0, 1]),
            dilation: (1, 1),
        };
        let g = Geometry::new("t", &[1, 1, 1, 5], &[1, 1, 1, 2], p).unwrap();
        assert_eq!((g.ho, g.wo), (2, 4));
        let cols = Columns::new::<f64>("t", &g, 8, 1).unwrap();
        assert_eq!(cols.phase_len, 8);
        assert_eq!(cols.tap_start, vec![0, 8]);
        let src = [1.0, 2.0, 3.0, 4.0, 5.0];
        let mut dst = vec![0.0; 2 * cols.row_len];
        cols.fill(&g, &src, 0, 2, &mut dst);
        assert!(dst[..16].iter().all(|&v| v == 0.0), "padded row 0 is zeros");
        assert_eq!(&dst[16..24], &[0.0, 1.0, 3.0, 5.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(&dst[24..32], &[0.0, 2.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn bad_shapes_and_parameters_are_errors() {
        let p = DepthwiseParams::new(1, 1);
        let e = |x: &[usize], w: &[usize], p| Geometry::new("t", x, w, p).unwrap_err();
        assert!(matches!(
            e(&[1, 4, 5, 5], &[4, 2, 3, 3], p),
            TensorError::ShapeMismatch { .. }
        ));
        assert!(matches!(
            e(&[1, 4, 5, 5], &[6, 1, 3, 3], p),
            TensorError::ShapeMismatch { .. }
        ));
        assert!(matches!(
            e(&[4, 5, 5], &[4, 1, 3, 3], p),
            TensorError::Rank { .. }
        ));
        assert!(matches!(
            e(&[1, 4, 5, 5], &[4, 1, 3], p),
            TensorError::Rank { .. }
        ));
        assert!(matches!(
            e(&[1, 0, 5, 5], &[4, 1, 3, 3], p),
            TensorError::ZeroSized { .. }
        ));
        assert!(matches!(
            e(&[1, 4, 2, 2], &[4, 1, 5, 5], p),
            TensorError::InvalidParameter { .. }
        ));
        let zero_stride = DepthwiseParams {
            stride: (0, 1),
            ..p
        };
        assert!(matches!(
            e(&[1, 4, 5, 5], &[4, 1, 3, 3], zero_stride),
            TensorError::InvalidParameter { .. }
        ));
        let zero_dilation = DepthwiseParams {
            dilation: (1, 0),
            ..p
        };
        assert!(matches!(
            e(&[1, 4, 5, 5], &[4, 1, 3, 3], zero_dilation),
            TensorError::InvalidParameter { .. }
        ));
        let huge = DepthwiseParams {
            pads: Pads2d::symmetric(usize::MAX / 2, 0),
            ..p
        };
        assert!(matches!(
            e(&[1, 4, 5, 5], &[4, 1, 3, 3], huge),
            TensorError::TooLarge { .. }
        ));
        assert!(matches!(
            e(&[usize::MAX, 4, 5, 5], &[4, 1, 3, 3], p),
            TensorError::TooLarge { .. }
        ));
    }
}
