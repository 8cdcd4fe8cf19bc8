//! Convolutions as products with a weight packed once ([`PackedWeight`],
//! cacheable), run by the register-blocked micro-kernels of
//! [`crate::winograd`]: `Y (Cout x cols) = W (Cout x K) B (K x cols)` per
//! image, with `B` read in place (row stride `cols`), so apart from the last,
//! partial panel of columns nothing is packed per call.
//!
//! * 1 x 1, stride-1, one-group convolutions (most of ResNet's layers):
//!   `B` is the input image itself ([`conv1x1`]); their input gradient is the
//!   same product with the transposed weight (`W^T gout`).
//! * other one-group convolutions that do not take Winograd: `B` is the
//!   unfolded input (im2col), and for the input gradient through col2im,
//!   `W^T gout` gives the unfolded gradient; those pack `B` into panels
//!   block by block ([`super::panels`]).
//!
//! Work is split into tasks by shape only (image, block of columns, block of
//! output channels); each output element is one micro-kernel dot product
//! over all input channels in order, so results do not depend on the number
//! of threads.

use super::thin::{thin_available, thin_product, LANES, THIN_MAX, THIN_PANELS};
use crate::cblock::CBlock;
use crate::element::Element;
use crate::epilogue::Epilogue;
use crate::error::{Result, TensorError};
use crate::policy::SimdCap;
use crate::scratch::{scratch_len, with_scratch};
use crate::tensor::Tensor;
use crate::winograd::{micro_kind, Micro, NR};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// A one-group convolution's weight as a matrix (`Cout x K`, `K = Cin kh
/// kw`, or its transpose) packed in micro-panels of rows: `[panel][K][mr]`,
/// rows padded with zeros to a multiple of `mr`, the panel height of the
/// micro-kernel chosen for this CPU and element type under the
/// [`SimdCap`] it was packed with (the products on it run that
/// micro-kernel).
#[derive(Clone, Debug)]
pub struct PackedWeight<T> {
    cout: usize,
    cin: usize,
    micro: Micro,
    mr: usize,
    panels: usize,
    data: Vec<T>,
}

impl<T> PackedWeight<T> {
    /// Rows of the matrix (output channels of the product).
    pub fn out_channels(&self) -> usize {
        self.cout
    }

    /// Columns of the matrix (rows of the right-hand side: input channels
    /// of the product).
    pub fn in_channels(&self) -> usize {
        self.cin
    }
}

impl<T: Element> PackedWeight<T> {
    /// `W` of a one-group convolution with `weight` (Cout x Cin x kh x kw)
    /// as a `Cout x (Cin kh kw)` matrix: for its forward pass; for the best
    /// micro-kernel this CPU runs.
    pub fn forward(weight: &Tensor<T>) -> Result<Self> {
        Self::forward_capped(weight, SimdCap::Best)
    }

    /// [`PackedWeight::forward`] for the best micro-kernel at or below
    /// `simd`.
    pub fn forward_capped(weight: &Tensor<T>, simd: SimdCap) -> Result<Self> {
        let [cout, k] = matrix_dims(weight)?;
        let w = weight.data();
        Ok(Self::build(cout, k, |o, i| w[o * k + i], simd))
    }

    /// `W^T`, `(Cin kh kw) x Cout`: for the input gradient (of the input
    /// itself for 1 x 1 kernels, of the unfolded input otherwise); for the
    /// best micro-kernel this CPU runs.
    pub fn transposed(weight: &Tensor<T>) -> Result<Self> {
        Self::transposed_capped(weight, SimdCap::Best)
    }

    /// [`PackedWeight::transposed`] for the best micro-kernel at or below
    /// `simd`.
    pub fn transposed_capped(weight: &Tensor<T>, simd: SimdCap) -> Result<Self> {
        let [cout, k] = matrix_dims(weight)?;
        let w = weight.data();
        Ok(Self::build(k, cout, |o, i| w[i * k + o], simd))
    }

    /// Whether this weight is packed for the micro-kernel a packing under
    /// `simd` would choose. A cached one that is not is not used under that
    /// cap.
    pub(crate) fn built_for(&self, simd: SimdCap) -> bool {
        self.micro == micro_kind::<T>(simd)
    }

    fn build(
        cout: usize,
        cin: usize,
        value: impl Fn(usize, usize) -> T + Sync,
        simd: SimdCap,
    ) -> Self {
        let micro = micro_kind::<T>(simd);
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

    /// Panel `p` of the packed rows: `K x mr`, step-major.
    pub(super) fn panel(&self, p: usize) -> &[T] {
        let len = self.cin * self.mr;
        &self.data[p * len..(p + 1) * len]
    }

    /// Number of micro-panels of rows.
    pub(super) fn panels(&self) -> usize {
        self.panels
    }

    /// Rows per micro-panel.
    pub(super) fn mr(&self) -> usize {
        self.mr
    }

    /// The micro-kernels the weight was packed for.
    pub(super) fn micro(&self) -> Micro {
        self.micro
    }
}

fn matrix_dims<T: Element>(weight: &Tensor<T>) -> Result<[usize; 2]> {
    let [cout, cin, kh, kw] = weight.dims4("packed weight")?;
    if cin * kh * kw == 0 {
        return Err(TensorError::InvalidParameter {
            op: "packed weight",
            message: format!("an empty kernel: weight {:?}", weight.shape()),
        });
    }
    Ok([cout, cin * kh * kw])
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

/// A 1 x 1, stride-1, one-group convolution of `x` (N x Cin x H x W) with a
/// packed weight ([`PackedWeight::forward`] of a Cout x Cin x 1 x 1 weight),
/// plus an optional per-channel `bias`; or, with
/// [`PackedWeight::transposed`], the input gradient of one, given the
/// output gradient as `x`.
pub fn conv1x1<T: Element>(
    x: &Tensor<T>,
    kernel: &PackedWeight<T>,
    bias: Option<&[T]>,
) -> Result<Tensor<T>> {
    conv1x1_then(x, kernel, bias, None)
}

/// [`conv1x1`] handing each block of the output to `then` as soon as it is
/// final (see [`Epilogue`]).
pub(crate) fn conv1x1_then<T: Element>(
    x: &Tensor<T>,
    kernel: &PackedWeight<T>,
    bias: Option<&[T]>,
    then: Option<Epilogue<'_, T>>,
) -> Result<Tensor<T>> {
    let [n, cin, h, w] = x.dims4("pointwise conv")?;
    if cin != kernel.cin || bias.is_some_and(|b| b.len() != kernel.cout) {
        return Err(TensorError::ShapeMismatch {
            op: "pointwise conv",
            left: x.shape().to_vec(),
            right: vec![kernel.cout, kernel.cin, 1, 1],
        });
    }
    // SAFETY: `packed_product` writes every element when it returns Ok.
    unsafe {
        Tensor::write_whole([n, kernel.cout, h, w], |out| {
            packed_product(kernel, x.data(), n, h * w, bias, out, then)
        })
    }
}

/// `out[i] = K b[i] (+ bias)` for `n` right-hand sides: `b` holds `n`
/// row-major `K.in_channels() x cols` matrices one after the other, `out`
/// receives `n` matrices of `K.out_channels() x cols`, every element
/// written (it may start uninitialised); each task hands its block to
/// `then` when done. An error of `then` is returned.
///
/// # Panics
/// If the lengths of `b`, `out` or `bias` do not match those shapes (the
/// callers in this crate build them from checked geometries).
pub(super) fn packed_product<T: Element>(
    kernel: &PackedWeight<T>,
    b: &[T],
    n: usize,
    hw: usize,
    bias: Option<&[T]>,
    out: &mut [MaybeUninit<T>],
    then: Option<Epilogue<'_, T>>,
) -> Result<()> {
    let cin = kernel.cin;
    assert_eq!(
        b.len(),
        n * cin * hw,
        "packed_product: right-hand side length"
    );
    assert_eq!(
        out.len(),
        n * kernel.cout * hw,
        "packed_product: output length"
    );
    assert!(
        bias.is_none_or(|b| b.len() == kernel.cout),
        "packed_product: bias length"
    );
    let (cout, mr) = (kernel.cout, kernel.mr);
    if n == 0 || hw == 0 || cout == 0 {
        return Ok(());
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
    // Written only through this pointer (never read before it is written).
    let out_ptr = SendPtr(out.as_mut_ptr().cast::<T>());
    let tasks = n * col_blocks * chan_blocks;
    (0..tasks).into_par_iter().try_for_each(|task| {
        let img = task / (col_blocks * chan_blocks);
        let cb = (task / chan_blocks) % col_blocks;
        let kb = task % chan_blocks;
        let xs = &b[img * cin * hw..(img + 1) * cin * hw];
        let tp0 = cb * per_block;
        let tp1 = ((cb + 1) * per_block).min(col_panels);
        let p0 = kb * panels_per;
        let p1 = ((kb + 1) * panels_per).min(kernel.panels);
        let o = out_ptr;
        // Full column panels read `x` in place; the last, partial one (when
        // HW is not a multiple of NR) too when the thin kernel takes it, else
        // it is copied, zero padded, into scratch (one copy per task and
        // row of `x` cost 1% of ResNet-50's guided backprop at 7 x 7 and
        // 14 x 14, where the thin kernel runs).
        let full_end = tp1.min(hw / NR);
        let partial = tp1 > full_end;
        // The partial panel's columns by the thin kernel, where there is one.
        let thin = thin_columns::<T>(kernel, partial, hw);
        if cin > KC {
            let t = BlockTask {
                img,
                tps: (tp0, full_end, tp1),
                panels: (p0, p1),
            };
            // SAFETY: as below: this task alone writes these channels and
            // columns of image `img`.
            unsafe { blocked_task(kernel, xs, hw, bias, o, &t) }?;
        } else {
            // The partial panel (`cin x NR`), then one tile of two panels.
            let len = scratch_len("pointwise conv panel", &[&[cin, NR], &[mr, 2 * NR]])?;
            with_scratch::<T, _>("pointwise conv panel", len, |s| {
                let (tail, tile) = s.split_at_mut(cin * NR);
                if partial && thin == 0 {
                    copy_partial_panel(tail, xs, hw, full_end * NR);
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
                            let c = unsafe { CBlock::from_raw(dst.add(tp * NR), hw, mr, width) };
                            kern(cin, a, &xs[tp * NR..], hw, c, false);
                        } else {
                            let c = CBlock::of_slice(tile, 2 * NR, mr);
                            kern(cin, a, &xs[tp * NR..], hw, c, false);
                            // SAFETY: as above, for the `rows` rows that exist.
                            unsafe { copy_rows(tile, 2 * NR, dst.add(tp * NR), hw, rows, width) };
                        }
                        tp += if two { 2 } else { 1 };
                    }
                    if partial && thin == 0 {
                        let c0 = full_end * NR;
                        micro(cin, a, tail, NR, CBlock::of_slice(tile, 2 * NR, mr), false);
                        // SAFETY: as above, the `hw - c0` columns that exist.
                        unsafe { copy_rows(tile, 2 * NR, dst.add(c0), hw, rows, hw - c0) };
                    }
                    if let Some(bias) = bias {
                        let c1 = if thin > 0 { full_end * NR } else { hw };
                        let (c0, c1) = (tp0 * NR, (tp1 * NR).min(c1));
                        for r in 0..rows {
                            let bv = bias[p * mr + r];
                            // SAFETY: row r of this panel, columns c0..c1: this
                            // task's own, inside `out`, and written above.
                            let row = unsafe {
                                std::slice::from_raw_parts_mut(dst.add(r * hw + c0), c1 - c0)
                            };
                            row.iter_mut().for_each(|v| *v += bv);
                        }
                    }
                }
                if thin > 0 {
                    let c0 = full_end * NR;
                    thin_tail(
                        kernel,
                        (&xs[c0..], hw),
                        (0, cin),
                        (p0, p1),
                        thin,
                        None,
                        |p, r, t, v| {
                            let ch = p * mr + r;
                            let v = bias.map_or(v, |b| v + b[ch]);
                            // SAFETY: channel `ch` (a row of panels p0..p1 that
                            // exists), column c0 + t < hw of image `img`: this
                            // task's own, inside `out`.
                            unsafe { o.0.add((img * cout + ch) * hw + c0 + t).write(v) };
                        },
                    );
                }
            })?;
        }
        let Some(then) = then else {
            return Ok(());
        };
        let cols = (tp0 * NR, (tp1 * NR).min(hw));
        let chans = (p0 * mr, (p1 * mr).min(cout));
        // Whole rows are one run; else a run per channel.
        let (runs, len) = if cols == (0, hw) {
            (1, (chans.1 - chans.0) * hw)
        } else {
            (chans.1 - chans.0, cols.1 - cols.0)
        };
        for r in 0..runs {
            let at = (img * cout + chans.0 + r) * hw + cols.0;
            // SAFETY: channels `chans` of image `img`, columns `cols` (all
            // of them when there is one run): written by this task alone
            // (see above), inside `out`, and no longer written.
            let run = unsafe { std::slice::from_raw_parts_mut(o.0.add(at), len) };
            then(run, at)?;
        }
        Ok(())
    })
}

/// Copies columns `c0..hw` of every row of `xs` (rows of `hw`) into the
/// rows of `tail` (rows of [`NR`]), zero padded: the last, partial column
/// panel, which the micro-kernels read whole.
fn copy_partial_panel<T: Element>(tail: &mut [T], xs: &[T], hw: usize, c0: usize) {
    for (i, row) in tail.chunks_exact_mut(NR).enumerate() {
        let src = &xs[i * hw + c0..(i + 1) * hw];
        row[..src.len()].copy_from_slice(src);
        row[src.len()..].fill(T::zero());
    }
}

/// The last `cols` columns (fewer than [`NR`], at most [`THIN_MAX`]) of
/// panels `p0..p1` by the thin kernel, over steps `k0 .. k0 + kl`: `b`
/// holds them, read in place (`K` rows of row stride `ldb`, the first
/// column at `b[0]`); the sums start from
/// `init(p, r, t)` where given (a later block of steps), from zero
/// otherwise, and go to `put(p, r, t, value)` for the rows that exist.
fn thin_tail<T: Element>(
    kernel: &PackedWeight<T>,
    (b, ldb): (&[T], usize),
    (k0, kl): (usize, usize),
    (p0, p1): (usize, usize),
    cols: usize,
    init: Option<&dyn Fn(usize, usize, usize) -> T>,
    mut put: impl FnMut(usize, usize, usize, T),
) {
    let mr = kernel.mr;
    for first in (p0..p1).step_by(THIN_PANELS) {
        let np = THIN_PANELS.min(p1 - first);
        let a: [&[T]; THIN_PANELS] =
            std::array::from_fn(|i| &kernel.panel(first + i.min(np - 1))[k0 * mr..]);
        let mut acc = [[T::zero(); LANES]; THIN_PANELS * THIN_MAX];
        let rows = |i: usize| (kernel.cout - (first + i) * mr).min(mr);
        if let Some(init) = init {
            for i in 0..np {
                let block = &mut acc[i * THIN_MAX..i * THIN_MAX + cols];
                for (t, col) in block.iter_mut().enumerate() {
                    for (r, v) in col[..rows(i)].iter_mut().enumerate() {
                        *v = init(first + i, r, t);
                    }
                }
            }
        }
        thin_product(
            kernel.micro,
            kl,
            mr,
            &a[..np],
            &b[k0 * ldb..],
            ldb,
            cols,
            &mut acc,
        );
        for i in 0..np {
            let block = &acc[i * THIN_MAX..i * THIN_MAX + cols];
            for (t, col) in block.iter().enumerate() {
                for (r, &v) in col[..rows(i)].iter().enumerate() {
                    put(first + i, r, t, v);
                }
            }
        }
    }
}

/// Columns of a partial last column panel that go through the thin kernel
/// (`hw % NR` when there is a partial panel, at most [`THIN_MAX`], and the
/// kernel exists for `T` on this CPU), or 0.
fn thin_columns<T: Element>(kernel: &PackedWeight<T>, partial: bool, hw: usize) -> usize {
    let rem = hw % NR;
    if partial && (1..=THIN_MAX).contains(&rem) && thin_available::<T>(kernel.micro) {
        rem
    } else {
        0
    }
}

/// Rows of `B` (input channels) per block of the product when there are more
/// than this: a block of the kernel panel (`KC x mr`) stays in L1 and the
/// task's block of `B` (`KC x` its columns) in L2 while the panels stream by.
const KC: usize = 256;

/// One task of [`packed_product`]: image, column panels (first, end of the
/// full panels, end), kernel panels (first, end).
struct BlockTask {
    img: usize,
    tps: (usize, usize, usize),
    panels: (usize, usize),
}

/// A task of [`packed_product`] over [`KC`]-row blocks of the channel sum:
/// the task's outputs are summed in a scratch block (block by block, each in
/// `k` order), then written to `out` with the bias.
///
/// # Errors
/// [`TensorError::TooLarge`] if the scratch (the partial panel and the
/// block of sums) cannot be had; then nothing is written.
///
/// # Safety
/// `out` must point at the product's output (`n x cout x hw`), of which this
/// task alone writes the channels of its panels and the columns of its
/// column panels in image `t.img`.
unsafe fn blocked_task<T: Element>(
    kernel: &PackedWeight<T>,
    xs: &[T],
    hw: usize,
    bias: Option<&[T]>,
    out: SendPtr<T>,
    t: &BlockTask,
) -> Result<()> {
    let (cin, cout, mr) = (kernel.cin, kernel.cout, kernel.mr);
    let (tp0, full_end, tp1) = t.tps;
    let (p0, p1) = t.panels;
    let micro = kernel.micro.function::<T>();
    let wide = kernel.micro.wide_function::<T>();
    let width = (tp1 - tp0) * NR;
    let rows = (p1 - p0) * mr;
    let partial = tp1 > full_end;
    let thin = thin_columns::<T>(kernel, partial, hw);
    let op = "pointwise conv block sums";
    let len = scratch_len(op, &[&[cin, NR], &[rows, width]])?;
    with_scratch::<T, _>(op, len, |s| {
        let (tail, acc) = s.split_at_mut(cin * NR);
        if partial && thin == 0 {
            copy_partial_panel(tail, xs, hw, full_end * NR);
        }
        for k0 in (0..cin).step_by(KC) {
            let kl = KC.min(cin - k0);
            let more = k0 > 0;
            for p in p0..p1 {
                let a = &kernel.panel(p)[k0 * mr..];
                let c = &mut acc[(p - p0) * mr * width..];
                let mut tp = tp0;
                while tp < full_end {
                    let two = wide.is_some() && tp + 2 <= full_end;
                    let kern = if two { wide.expect("checked") } else { micro };
                    let b = &xs[k0 * hw + tp * NR..];
                    let c = CBlock::of_slice(&mut c[(tp - tp0) * NR..], width, mr);
                    kern(kl, a, b, hw, c, more);
                    tp += if two { 2 } else { 1 };
                }
                if partial && thin == 0 {
                    let b = &tail[k0 * NR..];
                    let c = CBlock::of_slice(&mut c[(full_end - tp0) * NR..], width, mr);
                    micro(kl, a, b, NR, c, more);
                }
            }
            if thin > 0 {
                let at = |p: usize, r: usize, t: usize| {
                    ((p - p0) * mr + r) * width + (full_end - tp0) * NR + t
                };
                let acc_ro = &*acc;
                let mut vals = Vec::with_capacity((p1 - p0) * mr * thin);
                let init = |p: usize, r: usize, t: usize| acc_ro[at(p, r, t)];
                let init: Option<&dyn Fn(usize, usize, usize) -> T> =
                    if more { Some(&init) } else { None };
                thin_tail(
                    kernel,
                    (&xs[full_end * NR..], hw),
                    (k0, kl),
                    (p0, p1),
                    thin,
                    init,
                    |p, r, t, v| vals.push((at(p, r, t), v)),
                );
                for (i, v) in vals {
                    acc[i] = v;
                }
            }
        }
        let (c0, c1) = (tp0 * NR, (tp1 * NR).min(hw));
        for r in 0..rows.min(cout - p0 * mr) {
            let ch = p0 * mr + r;
            let bv = bias.map_or(T::zero(), |b| b[ch]);
            let src = &acc[r * width..r * width + (c1 - c0)];
            // SAFETY: channel `ch`, columns c0..c1 of image `img`: this
            // task's own, inside `out` (see the function's contract); written
            // through the pointer, as they may not be initialised yet.
            let dst = out.0.add((t.img * cout + ch) * hw + c0);
            for (i, &v) in src.iter().enumerate() {
                dst.add(i).write(v + bv);
            }
        }
    })
}

/// Copies `rows x width` values from `src` (row stride `lds`) to `dst` (row
/// stride `ldd`).
///
/// # Safety
/// `dst` must be valid for writes of `width` values at `dst + r * ldd` for
/// each row `r < rows`, and no other task may access those values (the
/// values between the rows are not touched).
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
    use crate::testing::seq;

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
            // More than KC channels in (and out, for the input gradient):
            // the channel sum in blocks.
            (2, 300, 40, 7, 7),
            (1, 270, 530, 6, 5),
            (1, 600, 13, 8, 9),
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
            let k = PackedWeight::forward(&wt).unwrap();
            let got = conv1x1(&x, &k, Some(&bias)).unwrap();
            assert_eq!(got.shape(), want.shape());
            assert!(
                got.max_abs_diff(&want).unwrap() < 1e-10,
                "{:?}",
                (cin, cout, h, w)
            );

            let gout = seq::<f64>(want.shape(), 3);
            let want = backward_input_im2col(&gout, &wt, (h, w), p).unwrap();
            let k = PackedWeight::transposed(&wt).unwrap();
            let got = conv1x1(&gout, &k, None).unwrap();
            assert_eq!(got.shape(), want.shape());
            assert!(got.max_abs_diff(&want).unwrap() < 1e-10);
        }
    }

    #[test]
    fn cached_paths_on_packed_weights_match_the_references_in_f64() {
        use crate::conv::{conv2d_backward_input_cached, conv2d_cached};
        use crate::conv::{BackwardInputCache, ForwardCache};
        // Strided, padded, dilated and small-image one-group convolutions:
        // forward on the unfolded input, input gradient through col2im or
        // the transposed convolution, all on packed weights.
        let cases = [
            ([2, 5, 11, 9], [7, 5, 3, 3], Conv2dParams::new(2, 1)),
            ([1, 3, 20, 20], [16, 3, 7, 7], Conv2dParams::new(2, 3)),
            // 5 x 5: too few tiles for Winograd.
            ([1, 20, 5, 5], [30, 20, 3, 3], Conv2dParams::new(1, 1)),
            ([1, 18, 9, 8], [12, 18, 1, 1], Conv2dParams::new(2, 0)),
            (
                [1, 17, 10, 10],
                [9, 17, 3, 2],
                Conv2dParams {
                    dilation: (2, 1),
                    ..Conv2dParams::new(1, 1)
                },
            ),
        ];
        for (xs, ws, p) in cases {
            let x = seq::<f64>(&xs, 7);
            let wt = seq::<f64>(&ws, 5);
            let want = conv2d_im2col(&x, &wt, None, p).unwrap();
            let cache = ForwardCache::new();
            for _ in 0..2 {
                let got = conv2d_cached(&x, &wt, None, p, &cache).unwrap();
                assert!(got.max_abs_diff(&want).unwrap() < 1e-10, "{xs:?} {ws:?}");
            }
            let gout = seq::<f64>(want.shape(), 3);
            let hw = (xs[2], xs[3]);
            let want = backward_input_im2col(&gout, &wt, hw, p).unwrap();
            let cache = BackwardInputCache::new();
            for _ in 0..2 {
                let got = conv2d_backward_input_cached(&gout, &wt, hw, p, &cache).unwrap();
                assert!(got.max_abs_diff(&want).unwrap() < 1e-10, "{xs:?} {ws:?}");
            }
        }
    }

    #[test]
    fn f32_matches_im2col_and_is_identical_across_thread_counts() {
        // 600 channels in (the sum in blocks) and 200 (in one block), with
        // 1 to 4 columns past the last whole panel (the thin kernel).
        for (xs, cout) in [
            ([2, 600, 14, 14], 200),
            ([1, 200, 7, 7], 130),
            ([2, 64, 3, 6], 50),
            ([1, 300, 5, 10], 40),
        ] {
            f32_case(&xs, cout);
        }
    }

    fn f32_case(xs: &[usize; 4], cout: usize) {
        let x = seq::<f32>(xs, 7);
        let wt = seq::<f32>(&[cout, xs[1], 1, 1], 5);
        let bias = seq::<f32>(&[cout], 3);
        let p = Conv2dParams::default();
        let want = conv2d_im2col(&x, &wt, Some(&bias), p).unwrap();
        // Every micro-kernel this CPU runs (each SIMD cap).
        for simd in SimdCap::ALL {
            let k = PackedWeight::forward_capped(&wt, simd).unwrap();
            assert!(k.built_for(simd) && k.micro() == micro_kind::<f32>(simd));
            let run = |threads| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| conv1x1(&x, &k, Some(bias.data())).unwrap())
            };
            let got = run(1);
            let max = want.max_abs();
            let err = got.max_abs_diff(&want).unwrap() / max;
            // 600-term sums in another order than matrixmultiply's (in
            // blocks of KC): rounding of a few f32 ulps of the largest
            // partial sums.
            assert!(err < 5e-6, "{simd}: relative error {err:e}");
            assert_eq!(got.data(), run(3).data(), "{simd}");
        }
    }

    #[test]
    fn rejects_empty_kernels_and_mismatched_inputs() {
        let w0 = seq::<f32>(&[4, 0, 3, 3], 5);
        assert!(PackedWeight::forward(&w0).is_err());
        let k = PackedWeight::forward(&seq::<f32>(&[4, 3, 1, 1], 5)).unwrap();
        assert!(conv1x1(&seq::<f32>(&[1, 5, 4, 4], 7), &k, None).is_err());
        assert!(conv1x1(&seq::<f32>(&[1, 3, 4, 4], 7), &k, Some(&[0.0; 3])).is_err());
    }
}
