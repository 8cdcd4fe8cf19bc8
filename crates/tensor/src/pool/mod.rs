//! 2-d pooling with PyTorch's CPU semantics: max pooling (returning the argmax
//! indices its backward pass needs), average pooling and adaptive average
//! pooling, forward and backward.
//!
//! Every kernel works on one (n, c) plane per rayon task and visits a window
//! in a fixed order, so results do not depend on the number of threads.

use crate::element::{cst, Element};
use crate::error::{Result, TensorError};
use crate::layout::try_buffer;
use crate::policy::SimdCap;
use crate::tensor::{check_nonzero, checked_numel, Tensor};
use rayon::prelude::*;

/// Arguments of a 2-d max pooling (PyTorch's `MaxPool2d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2dParams {
    /// Window size (vertical, horizontal).
    pub kernel: (usize, usize),
    /// Step between windows (vertical, horizontal).
    pub stride: (usize, usize),
    /// Implicit `-inf` padding on each side (vertical, horizontal), at most half the kernel.
    pub padding: (usize, usize),
    /// Spacing between window taps (vertical, horizontal).
    pub dilation: (usize, usize),
    /// Round the output size up, so the last window may hang over the edge.
    pub ceil_mode: bool,
    /// The highest SIMD level of the interior kernels (every level gives
    /// the same bits; the cap is for measuring).
    pub simd: SimdCap,
}

impl MaxPool2dParams {
    /// Square kernel, stride and padding; no dilation, floor mode, the best
    /// SIMD level.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        Self {
            kernel: (kernel, kernel),
            stride: (stride, stride),
            padding: (padding, padding),
            dilation: (1, 1),
            ceil_mode: false,
            simd: SimdCap::default(),
        }
    }

    /// The same pooling computed with the kernels of the best level at or
    /// below `simd`.
    pub fn with_simd(self, simd: SimdCap) -> Self {
        Self { simd, ..self }
    }

    fn window(&self) -> Window {
        Window {
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
            ceil_mode: self.ceil_mode,
        }
    }
}

/// Arguments of a 2-d average pooling (PyTorch's `AvgPool2d` without `divisor_override`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2dParams {
    /// Window size (vertical, horizontal).
    pub kernel: (usize, usize),
    /// Step between windows (vertical, horizontal).
    pub stride: (usize, usize),
    /// Implicit zero padding on each side (vertical, horizontal), at most half the kernel.
    pub padding: (usize, usize),
    /// Round the output size up, so the last window may hang over the edge.
    pub ceil_mode: bool,
    /// Count the padding in the divisor (PyTorch's default).
    pub count_include_pad: bool,
}

impl AvgPool2dParams {
    /// Square kernel, stride and padding; floor mode, padding counted in the divisor.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        Self {
            kernel: (kernel, kernel),
            stride: (stride, stride),
            padding: (padding, padding),
            ceil_mode: false,
            count_include_pad: true,
        }
    }

    fn window(&self) -> Window {
        Window {
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: (1, 1),
            ceil_mode: self.ceil_mode,
        }
    }
}

/// Output length of a pooling window along one axis: PyTorch's
/// `pooling_output_shape`, or `None` when that is below 1 or `kernel`,
/// `stride` or `dilation` is zero.
///
/// `out = floor_or_ceil((input + 2 padding - dilation (kernel - 1) - 1) / stride) + 1`;
/// in ceil mode a last window that would start beyond the input and the left
/// padding is dropped.
pub fn pool_output_len(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Option<usize> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let span = dilation.checked_mul(kernel - 1)?.checked_add(1)?;
    let round_up = if ceil_mode { stride - 1 } else { 0 };
    let room = padding
        .checked_mul(2)?
        .checked_add(input)?
        .checked_add(round_up)?
        .checked_sub(span)?;
    let mut out = room / stride + 1;
    if ceil_mode && (out - 1) * stride >= input + padding {
        out -= 1;
    }
    (out > 0).then_some(out)
}

/// Bin `i` of `output` adaptive-pooling bins over `input` elements:
/// `(floor(i input / output), ceil((i + 1) input / output))`, PyTorch's
/// `start_index` and `end_index`. Bins overlap when `input` is not a multiple
/// of `output` and repeat elements when `output > input`; `(0, 0)` if
/// `output` is 0.
pub fn adaptive_bin(i: usize, input: usize, output: usize) -> (usize, usize) {
    if output == 0 {
        return (0, 0);
    }
    let (i, input, output) = (i as u128, input as u128, output as u128);
    let start = i * input / output;
    let end = ((i + 1) * input).div_ceil(output);
    (start as usize, end as usize)
}

/// The four dimensions of an N x C x H x W shape, none of them zero, and
/// their product checked ([`checked_numel`]: the backward passes take the
/// input shape as an argument).
pub(crate) fn shape4(op: &'static str, shape: &[usize]) -> Result<[usize; 4]> {
    let [n, c, h, w] = *shape else {
        return Err(TensorError::Rank {
            op,
            expected: 4,
            shape: shape.to_vec(),
        });
    };
    check_nonzero(op, shape)?;
    checked_numel(shape, op)?;
    Ok([n, c, h, w])
}

/// The dimensions of a pooling backward's output gradient and input, each
/// N x C x H x W with no zero, and the same N and C.
pub(crate) fn backward_dims(
    op: &'static str,
    gout: &[usize],
    input: &[usize],
) -> Result<([usize; 4], [usize; 4])> {
    let (out, inp) = (shape4(op, gout)?, shape4(op, input)?);
    if out[..2] != inp[..2] {
        return Err(TensorError::ShapeMismatch {
            op,
            left: gout.to_vec(),
            right: input.to_vec(),
        });
    }
    Ok((out, inp))
}

/// Window geometry shared by max and average pooling.
#[derive(Clone, Copy, Debug)]
struct Window {
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
    ceil_mode: bool,
}

impl Window {
    /// Checks the window against PyTorch's rules and the input shape; returns
    /// the input dimensions and the output height and width.
    fn output(&self, op: &'static str, shape: &[usize]) -> Result<([usize; 4], usize, usize)> {
        let dims = shape4(op, shape)?;
        let invalid = |message: String| TensorError::InvalidParameter { op, message };
        let (k, s, p, d) = (self.kernel, self.stride, self.padding, self.dilation);
        if [k.0, k.1, s.0, s.1, d.0, d.1].contains(&0) {
            return Err(invalid(format!(
                "kernel {k:?}, stride {s:?} and dilation {d:?} must be positive"
            )));
        }
        if p.0 > k.0 / 2 || p.1 > k.1 / 2 {
            return Err(invalid(format!(
                "pad should be at most half of kernel size, got padding {p:?} for kernel {k:?}"
            )));
        }
        // `input + 2 padding (+ stride - 1 in ceil mode)` and `dilation (kernel - 1) + 1`,
        // which `pool_output_len` computes, must not overflow: an error
        // that says so rather than "too small".
        let round_up = |s: usize| if self.ceil_mode { s - 1 } else { 0 };
        let fits = |input: usize, k: usize, s: usize, p: usize, d: usize| {
            let padded = p.checked_mul(2).and_then(|v| v.checked_add(input));
            let padded = padded.and_then(|v| v.checked_add(round_up(s)));
            let span = d.checked_mul(k - 1).and_then(|v| v.checked_add(1));
            padded.is_some() && span.is_some()
        };
        if !fits(dims[2], k.0, s.0, p.0, d.0) || !fits(dims[3], k.1, s.1, p.1, d.1) {
            return Err(invalid(format!(
                "kernel {k:?}, stride {s:?}, padding {p:?} and dilation {d:?} over input \
                 {shape:?}: the padded input or the dilated window is too large"
            )));
        }
        let ho = pool_output_len(dims[2], k.0, s.0, p.0, d.0, self.ceil_mode);
        let wo = pool_output_len(dims[3], k.1, s.1, p.1, d.1, self.ceil_mode);
        match (ho, wo) {
            (Some(ho), Some(wo)) => Ok((dims, ho, wo)),
            _ => Err(invalid(format!(
                "output size is too small for input {shape:?} with kernel {k:?}, stride {s:?}, \
                 padding {p:?}, dilation {d:?}"
            ))),
        }
    }
}

mod max;
pub use max::{max_pool2d, max_pool2d_backward};

/// One average-pooling window along an axis: the in-bound range `start..end`
/// and the `size` that `count_include_pad` divides by (the window clipped to
/// the input plus one padding, as PyTorch does).
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    size: usize,
}

/// The windows of an average pooling along one axis. Every window overlaps
/// the input, as `padding <= kernel / 2` and the output length guarantee.
fn avg_spans(input: usize, output: usize, k: usize, s: usize, pad: usize) -> Vec<Span> {
    (0..output)
        .map(|o| {
            // Positions in padded coordinates: the input starts at `pad`.
            let p0 = o * s;
            let p1 = (p0 + k).min(input + 2 * pad);
            Span {
                start: p0.saturating_sub(pad),
                end: (p1 - pad).min(input),
                size: p1 - p0,
            }
        })
        .collect()
}

/// Checked geometry of an average pooling: input dimensions and the windows
/// along each axis.
fn avg_geometry(
    op: &'static str,
    shape: &[usize],
    p: AvgPool2dParams,
) -> Result<([usize; 4], Vec<Span>, Vec<Span>)> {
    let (dims, ho, wo) = p.window().output(op, shape)?;
    let rows = avg_spans(dims[2], ho, p.kernel.0, p.stride.0, p.padding.0);
    let cols = avg_spans(dims[3], wo, p.kernel.1, p.stride.1, p.padding.1);
    Ok((dims, rows, cols))
}

/// PyTorch's divisor of a window.
fn divisor<T: Element>(p: AvgPool2dParams, r: Span, c: Span) -> T {
    let count = if p.count_include_pad {
        r.size * c.size
    } else {
        (r.end - r.start) * (c.end - c.start)
    };
    cst(count as f64)
}

/// Average pooling of an N x C x H x W tensor: each output is the sum of its
/// window's in-bound elements divided by the window size (clipped to the
/// input plus padding) with `count_include_pad`, or by the in-bound count
/// without.
pub fn avg_pool2d<T: Element>(x: &Tensor<T>, p: AvgPool2dParams) -> Result<Tensor<T>> {
    let (dims, rows, cols) = avg_geometry("avg_pool2d", x.shape(), p)?;
    let [n, c, h, w] = dims;
    let (ho, wo) = (rows.len(), cols.len());
    let mut out = Tensor::try_full_for(vec![n, c, ho, wo], T::zero(), "avg_pool2d")?;
    out.data_mut()
        .par_chunks_mut(ho * wo)
        .zip(x.data().par_chunks(h * w))
        .for_each(|(out, plane)| {
            for (oy, &r) in rows.iter().enumerate() {
                for (ox, &s) in cols.iter().enumerate() {
                    let mut sum = T::zero();
                    for iy in r.start..r.end {
                        for &v in &plane[iy * w + s.start..iy * w + s.end] {
                            sum += v;
                        }
                    }
                    out[oy * wo + ox] = sum / divisor::<T>(p, r, s);
                }
            }
        });
    Ok(out)
}

/// Gradient of [`avg_pool2d`]: each output gradient, divided by its window's
/// divisor, is added to every in-bound element of the window.
pub fn avg_pool2d_backward<T: Element>(
    gout: &Tensor<T>,
    input_shape: &[usize],
    p: AvgPool2dParams,
) -> Result<Tensor<T>> {
    let op = "avg_pool2d_backward";
    let (dims, rows, cols) = avg_geometry(op, input_shape, p)?;
    let [n, c, h, w] = dims;
    let (ho, wo) = (rows.len(), cols.len());
    if gout.shape() != [n, c, ho, wo] {
        return Err(TensorError::ShapeMismatch {
            op,
            left: gout.shape().to_vec(),
            right: vec![n, c, ho, wo],
        });
    }
    let mut gin = Tensor::try_full_for(input_shape.to_vec(), T::zero(), op)?;
    gin.data_mut()
        .par_chunks_mut(h * w)
        .zip(gout.data().par_chunks(ho * wo))
        .for_each(|(gin, g)| {
            for (oy, &r) in rows.iter().enumerate() {
                for (ox, &s) in cols.iter().enumerate() {
                    let delta = g[oy * wo + ox] / divisor::<T>(p, r, s);
                    for iy in r.start..r.end {
                        for v in &mut gin[iy * w + s.start..iy * w + s.end] {
                            *v += delta;
                        }
                    }
                }
            }
        });
    Ok(gin)
}

/// The bins of an adaptive pooling along one axis, with their sizes in `T`
/// (allocated fallibly: [`TensorError::TooLarge`] naming `op`).
fn adaptive_bins<T: Element>(
    op: &'static str,
    input: usize,
    output: usize,
) -> Result<Vec<(usize, usize, T)>> {
    let (mut bins, _) = try_buffer(&[output], op)?;
    bins.extend((0..output).map(|i| {
        let (start, end) = adaptive_bin(i, input, output);
        (start, end, cst((end - start) as f64))
    }));
    Ok(bins)
}

/// Checks an adaptive pooling's output size.
fn check_out_hw(op: &'static str, out_hw: (usize, usize)) -> Result<()> {
    if out_hw.0 == 0 || out_hw.1 == 0 {
        return Err(TensorError::InvalidParameter {
            op,
            message: format!("output size {out_hw:?} must be positive"),
        });
    }
    Ok(())
}

/// Adaptive average pooling of an N x C x H x W tensor to N x C x `out_hw`:
/// output `(oy, ox)` averages the bins [`adaptive_bin`]`(oy, H, Ho)` x
/// `adaptive_bin(ox, W, Wo)` (as PyTorch, `sum / kh / kw`).
pub fn adaptive_avg_pool2d<T: Element>(x: &Tensor<T>, out_hw: (usize, usize)) -> Result<Tensor<T>> {
    let op = "adaptive_avg_pool2d";
    let [n, c, h, w] = shape4(op, x.shape())?;
    check_out_hw(op, out_hw)?;
    let (ho, wo) = out_hw;
    // The output first: a size that overflows or cannot be allocated is an
    // error before the bins (one per output row and column) are made.
    let mut out = Tensor::try_full_for(vec![n, c, ho, wo], T::zero(), op)?;
    let (rows, cols) = (
        adaptive_bins::<T>(op, h, ho)?,
        adaptive_bins::<T>(op, w, wo)?,
    );
    out.data_mut()
        .par_chunks_mut(ho * wo)
        .zip(x.data().par_chunks(h * w))
        .for_each(|(out, plane)| {
            for (oy, &(y0, y1, kh)) in rows.iter().enumerate() {
                for (ox, &(x0, x1, kw)) in cols.iter().enumerate() {
                    let mut sum = T::zero();
                    for iy in y0..y1 {
                        for &v in &plane[iy * w + x0..iy * w + x1] {
                            sum += v;
                        }
                    }
                    out[oy * wo + ox] = sum / kh / kw;
                }
            }
        });
    Ok(out)
}

/// Gradient of [`adaptive_avg_pool2d`]: each output gradient, divided by its
/// bin's height and width, is added to every element of the bin.
pub fn adaptive_avg_pool2d_backward<T: Element>(
    gout: &Tensor<T>,
    input_shape: &[usize],
) -> Result<Tensor<T>> {
    let op = "adaptive_avg_pool2d_backward";
    let ([_, _, ho, wo], [_, _, h, w]) = backward_dims(op, gout.shape(), input_shape)?;
    let mut gin = Tensor::try_full_for(input_shape.to_vec(), T::zero(), op)?;
    let (rows, cols) = (
        adaptive_bins::<T>(op, h, ho)?,
        adaptive_bins::<T>(op, w, wo)?,
    );
    gin.data_mut()
        .par_chunks_mut(h * w)
        .zip(gout.data().par_chunks(ho * wo))
        .for_each(|(gin, g)| {
            for (oy, &(y0, y1, kh)) in rows.iter().enumerate() {
                for (ox, &(x0, x1, kw)) in cols.iter().enumerate() {
                    let delta = g[oy * wo + ox] / kh / kw;
                    for iy in y0..y1 {
                        for v in &mut gin[iy * w + x0..iy * w + x1] {
                            *v += delta;
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
    fn output_len_follows_pytorch() {
        assert_eq!(pool_output_len(5, 2, 2, 0, 1, false), Some(2));
        assert_eq!(pool_output_len(5, 2, 2, 0, 1, true), Some(3));
        // Ceil mode would give 4, but the last window would start in the right padding.
        assert_eq!(pool_output_len(5, 2, 2, 1, 1, true), Some(3));
        assert_eq!(pool_output_len(5, 2, 2, 1, 1, false), Some(3));
        assert_eq!(pool_output_len(6, 3, 2, 1, 1, true), Some(4));
        assert_eq!(pool_output_len(7, 3, 2, 1, 2, false), Some(3));
        // A kernel larger than the input: only ceil mode yields a (partial) window.
        assert_eq!(pool_output_len(2, 3, 2, 0, 1, true), Some(1));
        assert_eq!(pool_output_len(2, 3, 2, 0, 1, false), None);
        assert_eq!(pool_output_len(4, 3, 1, 0, 2, false), None);
        assert_eq!(pool_output_len(4, 0, 1, 0, 1, false), None);
        assert_eq!(pool_output_len(4, 2, 0, 0, 1, false), None);
    }

    #[test]
    fn invalid_pooling_is_rejected() {
        let x = Tensor::<f32>::zeros([1, 1, 4, 4]);
        let invalid = |r: Result<(Tensor<f32>, Vec<u32>)>| {
            matches!(
                r,
                Err(TensorError::InvalidParameter {
                    op: "max_pool2d",
                    ..
                })
            )
        };
        assert!(invalid(max_pool2d(&x, MaxPool2dParams::new(2, 1, 2))));
        assert!(invalid(max_pool2d(&x, MaxPool2dParams::new(3, 1, 2))));
        assert!(max_pool2d(&x, MaxPool2dParams::new(3, 1, 1)).is_ok());
        assert!(invalid(max_pool2d(&x, MaxPool2dParams::new(2, 0, 0))));
        assert!(invalid(max_pool2d(&x, MaxPool2dParams::new(0, 1, 0))));
        assert!(invalid(max_pool2d(&x, MaxPool2dParams::new(5, 1, 0))));
        // Dilated taps that skip the whole 2-wide input: -1 and 2.
        let p = MaxPool2dParams {
            dilation: (1, 3),
            ..MaxPool2dParams::new(2, 1, 1)
        };
        assert!(invalid(max_pool2d(&Tensor::<f32>::zeros([1, 1, 2, 2]), p)));
        let e = max_pool2d(&Tensor::<f32>::zeros([4, 4]), MaxPool2dParams::new(2, 2, 0));
        assert!(matches!(e, Err(TensorError::Rank { expected: 4, .. })));
        let e = max_pool2d(
            &Tensor::<f32>::zeros([1, 0, 4, 4]),
            MaxPool2dParams::new(2, 2, 0),
        );
        assert!(matches!(e, Err(TensorError::ZeroSized { .. })));
        let e = avg_pool2d(&x, AvgPool2dParams::new(2, 1, 2));
        assert!(matches!(
            e,
            Err(TensorError::InvalidParameter {
                op: "avg_pool2d",
                ..
            })
        ));
        let e = adaptive_avg_pool2d(&x, (0, 2));
        assert!(matches!(e, Err(TensorError::InvalidParameter { .. })));
    }

    #[test]
    fn huge_windows_and_sizes_are_errors() {
        let x = Tensor::<f32>::zeros([1, 1, 4, 4]);
        let too_large = |k: usize, s: usize, p: usize| {
            let e = max_pool2d(&x, MaxPool2dParams::new(k, s, p)).unwrap_err();
            assert!(
                matches!(
                    e,
                    TensorError::InvalidParameter {
                        op: "max_pool2d",
                        ..
                    }
                ),
                "{k} {s} {p}: {e}"
            );
            let e = avg_pool2d(&x, AvgPool2dParams::new(k, s, p)).unwrap_err();
            assert!(matches!(
                e,
                TensorError::InvalidParameter {
                    op: "avg_pool2d",
                    ..
                }
            ));
        };
        too_large(usize::MAX, 1, usize::MAX / 2);
        too_large(usize::MAX, 1, 0);
        // A huge stride: one window in floor mode; in ceil mode, rounding
        // up overflows.
        let (y, _) = max_pool2d(&x, MaxPool2dParams::new(4, usize::MAX, 2)).unwrap();
        assert_eq!((y.shape(), y.data()), (&[1, 1, 1, 1][..], &[0.0][..]));
        let ceil = MaxPool2dParams {
            ceil_mode: true,
            ..MaxPool2dParams::new(4, usize::MAX, 2)
        };
        assert!(max_pool2d(&x, ceil).is_err());
        let dilated = MaxPool2dParams {
            dilation: (usize::MAX, 1),
            ..MaxPool2dParams::new(2, 1, 0)
        };
        assert!(max_pool2d(&x, dilated).is_err());
        // A kernel and padding near usize::MAX / 2 that fit: one window,
        // clipped to the input.
        let k = usize::MAX / 4;
        let p = AvgPool2dParams {
            count_include_pad: false,
            ..AvgPool2dParams::new(k, k, k / 2)
        };
        let y = avg_pool2d(&t(&[1, 1, 1, 2], &[1., 3.]), p).unwrap();
        assert_eq!((y.shape(), y.data()), (&[1, 1, 1, 1][..], &[2.0][..]));

        // Adaptive pooling to a huge size: an error, not an empty tensor.
        for out_hw in [(1 << 32, 1 << 32), (usize::MAX, 2), (1 << 30, 1 << 29)] {
            let e = adaptive_avg_pool2d(&x, out_hw).unwrap_err();
            assert!(
                matches!(
                    e,
                    TensorError::TooLarge {
                        op: "adaptive_avg_pool2d",
                        ..
                    }
                ),
                "{out_hw:?}: {e}"
            );
        }
        // Backward passes given a huge input shape.
        let g = Tensor::<f32>::zeros([1, 1, 1, 1]);
        let huge = [1, 1, 1 << 32, 1 << 32];
        assert!(matches!(
            adaptive_avg_pool2d_backward(&g, &huge),
            Err(TensorError::TooLarge { .. })
        ));
        assert!(avg_pool2d_backward(&g, &huge, AvgPool2dParams::new(1, 1, 0)).is_err());
        assert!(max_pool2d_backward(&g, &[0], &huge).is_err());
    }

    #[test]
    fn avg_pool_divisor_with_and_without_padding() {
        let x = t(&[1, 1, 3, 3], &[1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        let p = AvgPool2dParams::new(2, 2, 1);
        assert_eq!(avg_pool2d(&x, p).unwrap().data(), &[0.25, 1.25, 2.75, 7.0]);
        let p = AvgPool2dParams {
            count_include_pad: false,
            ..p
        };
        assert_eq!(avg_pool2d(&x, p).unwrap().data(), &[1.0, 2.5, 5.5, 7.0]);
        // Ceil mode: the last window hangs over the edge and is clipped there.
        let p = AvgPool2dParams {
            kernel: (1, 2),
            stride: (1, 2),
            padding: (0, 0),
            ceil_mode: true,
            count_include_pad: true,
        };
        let y = avg_pool2d(&t(&[1, 1, 1, 3], &[1., 2., 3.]), p).unwrap();
        assert_eq!(y.data(), &[1.5, 3.0]);
    }

    #[test]
    fn avg_pool_backward_is_adjoint() {
        for count_include_pad in [true, false] {
            let p = AvgPool2dParams {
                ceil_mode: true,
                count_include_pad,
                ..AvgPool2dParams::new(3, 2, 1)
            };
            let x = rnd(&[2, 2, 6, 7], 4);
            let y = avg_pool2d(&x, p).unwrap();
            let g = rnd(y.shape(), 5);
            let gin = avg_pool2d_backward(&g, x.shape(), p).unwrap();
            let (lhs, rhs) = (dot(&y, &g), dot(&x, &gin));
            assert!((lhs - rhs).abs() < 1e-12, "{lhs} vs {rhs}");
        }
        let e = avg_pool2d_backward(
            &Tensor::<f64>::zeros([2, 2, 3, 4]),
            &[2, 2, 6, 7],
            AvgPool2dParams::new(2, 2, 0),
        );
        assert!(matches!(e, Err(TensorError::ShapeMismatch { .. })));
    }

    #[test]
    fn adaptive_bins_follow_pytorch() {
        let bins = |i, o| (0..o).map(|k| adaptive_bin(k, i, o)).collect::<Vec<_>>();
        assert_eq!(bins(5, 3), vec![(0, 2), (1, 4), (3, 5)]);
        assert_eq!(bins(3, 5), vec![(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]);
        assert_eq!(bins(7, 7), (0..7).map(|i| (i, i + 1)).collect::<Vec<_>>());
        assert_eq!(adaptive_bin(0, 4, 0), (0, 0));
    }

    #[test]
    fn adaptive_avg_pool_values() {
        let y = adaptive_avg_pool2d(&t(&[1, 1, 1, 5], &[1., 2., 3., 4., 5.]), (1, 3)).unwrap();
        assert_eq!(y.data(), &[1.5, 3.0, 4.5]);
        let y = adaptive_avg_pool2d(&t(&[1, 1, 1, 3], &[1., 2., 3.]), (1, 5)).unwrap();
        assert_eq!(y.data(), &[1.0, 1.5, 2.0, 2.5, 3.0]);
        let x = rnd(&[1, 2, 3, 4], 6);
        assert_eq!(adaptive_avg_pool2d(&x, (3, 4)).unwrap(), x);
        let y = adaptive_avg_pool2d(&x, (1, 1)).unwrap();
        assert!((y.data()[0] - x.data()[..12].iter().sum::<f64>() / 12.0).abs() < 1e-15);
    }

    #[test]
    fn adaptive_avg_pool_backward_is_adjoint() {
        for out_hw in [(3, 4), (6, 9), (1, 1)] {
            let x = rnd(&[2, 2, 5, 7], 7);
            let y = adaptive_avg_pool2d(&x, out_hw).unwrap();
            let g = rnd(y.shape(), 8);
            let gin = adaptive_avg_pool2d_backward(&g, x.shape()).unwrap();
            let (lhs, rhs) = (dot(&y, &g), dot(&x, &gin));
            assert!((lhs - rhs).abs() < 1e-12, "{out_hw:?}: {lhs} vs {rhs}");
        }
        let e = adaptive_avg_pool2d_backward(&Tensor::<f64>::zeros([1, 2, 2, 2]), &[2, 2, 4, 4]);
        assert!(matches!(e, Err(TensorError::ShapeMismatch { .. })));
    }
}
