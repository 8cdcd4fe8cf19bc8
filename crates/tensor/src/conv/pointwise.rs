//! 1 x 1, stride-1, one-group convolutions (most of ResNet's layers) as a
//! product `Y (Cout x HW) = W (Cout x Cin) X (Cin x HW)` per image, run by
//! the register-blocked micro-kernels of [`crate::winograd`] on a weight
//! packed once ([`PackedPointwise`], cacheable), reading the input in place:
//! an image's channels are already the rows of `X`, so apart from the last,
//! partial panel of columns nothing is packed per call.
//!
//! The input gradient of such a convolution is the same product with the
//! transposed weight (`W^T gout`), so it uses the same driver with a weight
//! packed transposed.
//!
//! Work is split into tasks by shape only (image, block of columns, block of
//! output channels); each output element is one micro-kernel dot product
//! over all input channels in order, so results do not depend on the number
//! of threads.

use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::scratch::with_scratch;
use crate::tensor::Tensor;
use crate::winograd::{micro_kind, Micro, NR};
use rayon::prelude::*;

/// A 1 x 1 convolution's weight packed in micro-panels of output channels:
/// `[panel][cin][mr]`, output channels padded with zeros to a multiple of
/// `mr`, the panel height of the micro-kernel chosen for this CPU and
/// element type.
#[derive(Clone, Debug)]
pub struct PackedPointwise<T> {
    cout: usize,
    cin: usize,
    micro: Micro,
    mr: usize,
    panels: usize,
    data: Vec<T>,
}

impl<T> PackedPointwise<T> {
    /// Output channels of the product.
    pub fn out_channels(&self) -> usize {
        self.cout
    }

    /// Input channels of the product.
    pub fn in_channels(&self) -> usize {
        self.cin
    }
}

impl<T: Element> PackedPointwise<T> {
    /// The packed weight of a forward convolution with `weight`
    /// (Cout x Cin x 1 x 1).
    pub fn forward(weight: &Tensor<T>) -> Result<Self> {
        let [cout, cin] = dims_1x1(weight)?;
        let w = weight.data();
        Ok(Self::build(cout, cin, |o, i| w[o * cin + i]))
    }

    /// The packed weight of the product that computes the input gradient of
    /// a convolution with `weight` (Cout x Cin x 1 x 1): `W^T`, Cin x Cout.
    pub fn backward_input(weight: &Tensor<T>) -> Result<Self> {
        let [cout, cin] = dims_1x1(weight)?;
        let w = weight.data();
        Ok(Self::build(cin, cout, |o, i| w[i * cin + o]))
    }

    fn build(cout: usize, cin: usize, value: impl Fn(usize, usize) -> T + Sync) -> Self {
        let micro = micro_kind::<T>();
        let mr = micro.mr();
        let panels = cout.div_ceil(mr);
        let mut data = vec![T::zero(); panels * cin * mr];
        data.par_chunks_mut((cin * mr).max(1))
            .enumerate()
            .for_each(|(p, panel)| {
                for (i, row) in panel.chunks_exact_mut(mr).enumerate() {
                    for (r, d) in row.iter_mut().enumerate() {
                        let o = p * mr + r;
                        if o < cout {
                            *d = value(o, i);
                        }
                    }
                }
            });
        Self {
            cout,
            cin,
            micro,
            mr,
            panels,
            data,
        }
    }

    fn panel(&self, p: usize) -> &[T] {
        let len = self.cin * self.mr;
        &self.data[p * len..(p + 1) * len]
    }
}

fn dims_1x1<T: Element>(weight: &Tensor<T>) -> Result<[usize; 2]> {
    let [cout, cin, kh, kw] = weight.dims4("pointwise kernel")?;
    if (kh, kw) != (1, 1) || cin == 0 {
        return Err(TensorError::InvalidParameter {
            op: "pointwise kernel",
            message: format!(
                "needs a Cout x Cin x 1 x 1 weight with Cin > 0, got {:?}",
                weight.shape()
            ),
        });
    }
    Ok([cout, cin])
}

/// Columns (pixels) per task at most: the task's slice of the input
/// (`cin x cols`) stays in L2 while every panel of the weight streams by.
const MAX_COLS: usize = 256;
/// Tasks wanted per call, so that a few threads stay balanced.
const MIN_TASKS: usize = 8;

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: only used to give rayon tasks disjoint regions of one buffer.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// `out[n] = K x[n] (+ bias)` for every image of `x` (N x Cin x H x W), with
/// `K` a packed 1 x 1 kernel: a 1 x 1, stride-1, one-group convolution (or
/// its input gradient, with [`PackedPointwise::backward_input`]).
pub fn conv1x1<T: Element>(
    x: &Tensor<T>,
    kernel: &PackedPointwise<T>,
    bias: Option<&[T]>,
) -> Result<Tensor<T>> {
    let [n, cin, h, w] = x.dims4("pointwise conv")?;
    if cin != kernel.cin || bias.is_some_and(|b| b.len() != kernel.cout) {
        return Err(TensorError::ShapeMismatch {
            op: "pointwise conv",
            left: x.shape().to_vec(),
            right: vec![kernel.cout, kernel.cin, 1, 1],
        });
    }
    let (cout, hw, mr) = (kernel.cout, h * w, kernel.mr);
    let mut out: Tensor<T> = Tensor::zeros([n, cout, h, w]);
    if n == 0 || hw == 0 || cout == 0 {
        return Ok(out);
    }
    // Blocks of columns (whole micro-panels), then blocks of output
    // channels when the columns alone give too few tasks.
    let col_panels = hw.div_ceil(NR);
    let per_block = col_panels.div_ceil(hw.div_ceil(MAX_COLS)).max(1);
    let col_blocks = col_panels.div_ceil(per_block);
    let want = MIN_TASKS.div_ceil(n * col_blocks);
    let chan_blocks = want.min(kernel.panels).max(1);
    let panels_per = kernel.panels.div_ceil(chan_blocks);
    let chan_blocks = kernel.panels.div_ceil(panels_per);

    let micro = kernel.micro.function::<T>();
    let wide = kernel.micro.wide_function::<T>();
    let out_ptr = SendPtr(out.data_mut().as_mut_ptr());
    let tasks = n * col_blocks * chan_blocks;
    (0..tasks).into_par_iter().for_each(|task| {
        let img = task / (col_blocks * chan_blocks);
        let cb = (task / chan_blocks) % col_blocks;
        let kb = task % chan_blocks;
        let xs = &x.data()[img * cin * hw..(img + 1) * cin * hw];
        let tp0 = cb * per_block;
        let tp1 = ((cb + 1) * per_block).min(col_panels);
        let p0 = kb * panels_per;
        let p1 = ((kb + 1) * panels_per).min(kernel.panels);
        let o = out_ptr;
        // Full column panels read `x` in place; the last, partial one (when
        // HW is not a multiple of NR) is copied, zero padded, into scratch.
        let full_end = tp1.min(hw / NR);
        let partial = tp1 > full_end;
        with_scratch::<T, _>(cin * NR + mr * 2 * NR, |s| {
            let (tail, tile) = s.split_at_mut(cin * NR);
            if partial {
                let c0 = full_end * NR;
                for (i, row) in tail.chunks_exact_mut(NR).enumerate() {
                    let src = &xs[i * hw + c0..(i + 1) * hw];
                    row[..src.len()].copy_from_slice(src);
                    row[src.len()..].fill(T::zero());
                }
            }
            for p in p0..p1 {
                let a = kernel.panel(p);
                let rows = (cout - p * mr).min(mr);
                let direct = rows == mr;
                // SAFETY: this task alone writes channels of panels p0..p1,
                // columns of panels tp0..tp1, of image img; the pointer is
                // to the first of its rows, inside `out`.
                let dst = unsafe { o.0.add((img * cout + p * mr) * hw) };
                let mut tp = tp0;
                while tp < full_end {
                    let two = wide.is_some() && tp + 2 <= full_end;
                    let width = if two { 2 * NR } else { NR };
                    let kern = if two { wide.expect("checked") } else { micro };
                    if direct {
                        // SAFETY: rows p*mr .. p*mr+mr of this image, columns
                        // tp*NR .. tp*NR+width, all inside `out` and this
                        // task's own (see above).
                        let c = unsafe {
                            std::slice::from_raw_parts_mut(dst.add(tp * NR), (mr - 1) * hw + width)
                        };
                        kern(cin, a, &xs[tp * NR..], hw, c, hw);
                    } else {
                        kern(cin, a, &xs[tp * NR..], hw, tile, 2 * NR);
                        // SAFETY: as above, for the `rows` rows that exist.
                        unsafe { copy_rows(tile, 2 * NR, dst.add(tp * NR), hw, rows, width) };
                    }
                    tp += if two { 2 } else { 1 };
                }
                if partial {
                    let c0 = full_end * NR;
                    micro(cin, a, tail, NR, tile, 2 * NR);
                    // SAFETY: as above, the `hw - c0` columns that exist.
                    unsafe { copy_rows(tile, 2 * NR, dst.add(c0), hw, rows, hw - c0) };
                }
                if let Some(b) = bias {
                    let (c0, c1) = (tp0 * NR, (tp1 * NR).min(hw));
                    for r in 0..rows {
                        let bv = b[p * mr + r];
                        // SAFETY: row r of this panel, columns c0..c1: this
                        // task's own, inside `out`.
                        let row = unsafe {
                            std::slice::from_raw_parts_mut(dst.add(r * hw + c0), c1 - c0)
                        };
                        row.iter_mut().for_each(|v| *v += bv);
                    }
                }
            }
        });
    });
    Ok(out)
}

/// Copies `rows x width` values from `src` (row stride `lds`) to `dst` (row
/// stride `ldd`).
///
/// # Safety
/// `dst` must be valid for writes of `(rows - 1) * ldd + width` values, and
/// no other task may access them.
unsafe fn copy_rows<T: Copy>(
    src: &[T],
    lds: usize,
    dst: *mut T,
    ldd: usize,
    rows: usize,
    width: usize,
) {
    for r in 0..rows {
        std::ptr::copy_nonoverlapping(
            src[r * lds..r * lds + width].as_ptr(),
            dst.add(r * ldd),
            width,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{backward_input_im2col, conv2d_im2col, Conv2dParams};

    fn seq<T: Element>(shape: &[usize], mul: usize) -> Tensor<T> {
        let n: usize = shape.iter().product();
        Tensor::from_vec(
            shape.to_vec(),
            (0..n)
                .map(|i| T::from_f64_lossy(((i * mul) % 23) as f64 / 11.0 - 1.0))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn matches_im2col_forward_and_backward_in_f64() {
        // HW below, at and above the panel width, multiples or not; channel
        // counts that leave a partial panel of rows.
        for &(n, cin, cout, h, w) in &[
            (1, 3, 5, 1, 1),
            (2, 20, 13, 4, 4),
            (1, 33, 40, 7, 7),
            (1, 64, 70, 14, 14),
            (2, 17, 25, 6, 11),
            (1, 8, 12, 32, 16),
        ] {
            let x = seq::<f64>(&[n, cin, h, w], 7);
            let wt = seq::<f64>(&[cout, cin, 1, 1], 5);
            let bias: Vec<f64> = (0..cout).map(|i| i as f64 * 0.25 - 1.0).collect();
            let p = Conv2dParams::default();
            let want = conv2d_im2col(
                &x,
                &wt,
                Some(&Tensor::from_vec([cout], bias.clone()).unwrap()),
                p,
            )
            .unwrap();
            let k = PackedPointwise::forward(&wt).unwrap();
            let got = conv1x1(&x, &k, Some(&bias)).unwrap();
            assert_eq!(got.shape(), want.shape());
            assert!(
                got.max_abs_diff(&want).unwrap() < 1e-10,
                "{:?}",
                (cin, cout, h, w)
            );

            let gout = seq::<f64>(want.shape(), 3);
            let want = backward_input_im2col(&gout, &wt, (h, w), p).unwrap();
            let k = PackedPointwise::backward_input(&wt).unwrap();
            let got = conv1x1(&gout, &k, None).unwrap();
            assert_eq!(got.shape(), want.shape());
            assert!(got.max_abs_diff(&want).unwrap() < 1e-10);
        }
    }

    #[test]
    fn f32_matches_im2col_and_is_identical_across_thread_counts() {
        let x = seq::<f32>(&[2, 96, 14, 14], 7);
        let wt = seq::<f32>(&[200, 96, 1, 1], 5);
        let want = conv2d_im2col(&x, &wt, None, Conv2dParams::default()).unwrap();
        let k = PackedPointwise::forward(&wt).unwrap();
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| conv1x1(&x, &k, None).unwrap())
        };
        let got = run(1);
        let max = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(got.max_abs_diff(&want).unwrap() < 1e-6 * max);
        assert_eq!(got.data(), run(3).data());
    }

    #[test]
    fn rejects_other_kernels_and_mismatched_inputs() {
        let w3 = seq::<f32>(&[4, 3, 3, 3], 5);
        assert!(PackedPointwise::forward(&w3).is_err());
        let k = PackedPointwise::forward(&seq::<f32>(&[4, 3, 1, 1], 5)).unwrap();
        assert!(conv1x1(&seq::<f32>(&[1, 5, 4, 4], 7), &k, None).is_err());
        assert!(conv1x1(&seq::<f32>(&[1, 3, 4, 4], 7), &k, Some(&[0.0; 3])).is_err());
    }
}
