//! Max pooling, forward (the maxima and their indices) and backward.
//!
//! The forward pass splits each output plane into the interior, the output
//! columns whose windows hold no padding (all but a column or two at each
//! edge), and the border. With a horizontal stride of 1 or 2 the interior
//! goes to a kernel that takes a run of outputs of a row at once, every tap
//! of the window in row-major order for all of them, and keeps their maxima
//! in registers: the outputs are independent, so the work vectorizes,
//! instead of one window's serial chain of compares. The kernel covers a
//! band of output rows per call (all the rows whose windows hold the same
//! in-bound rows). It is built for baseline x86-64, AVX2 and AVX-512 (for
//! `f32`, with intrinsics and masked tails, so that narrow rows such as
//! VGG16's 7 and 14 outputs vectorize too), and the best build the CPU runs
//! is picked at run time, at or below the parameters' [`crate::SimdCap`]
//! ([`MaxPool2dParams::simd`], as for the other kernels). The border, and every column for strides of 3 or
//! more, scan their windows one by one. Every way visits a window's taps in
//! the same order and applies the same rule with compares and selects only
//! (no arithmetic on the values), so every build gives the same bits, those
//! of the one-window-at-a-time scan (the tests check them against it).
//!
//! Parallel tasks take whole planes, a fixed number each, so the results do
//! not depend on the number of threads. The outputs are written once each,
//! without being zeroed first.

use super::{backward_dims, MaxPool2dParams};
use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::layout::try_buffer;
use crate::simd::{simd_level_capped, SimdLevel as Level};
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

#[cfg(target_arch = "x86_64")]
mod x86;

/// Input and output elements a parallel task covers at least: whole planes,
/// as many as fit (one if a plane is larger), enough for a task to
/// outweigh its scheduling, few enough to balance the threads.
const TASK_ELEMS: usize = 1 << 14;

/// In-bound taps of each max-pooling window along one axis, as `(first, end)`
/// stepped by the dilation (PyTorch's `ih0`, `ih1`); `None` if some window
/// holds only padding.
fn max_taps(
    input: usize,
    output: usize,
    k: usize,
    s: usize,
    pad: usize,
    d: usize,
) -> Option<Vec<(usize, usize)>> {
    (0..output)
        .map(|o| {
            // Positions in padded coordinates: the input starts at `pad`.
            let p0 = o * s;
            // The first tap at or after `pad`, in input coordinates.
            let first = p0 + pad.saturating_sub(p0).div_ceil(d) * d - pad;
            let end = (p0 + d * (k - 1) + 1).min(input + pad).saturating_sub(pad);
            (first < end).then_some((first, end))
        })
        .collect()
}

/// The checked geometry of a max pooling, shared by all planes.
struct Geometry {
    /// Input plane height and width.
    h: usize,
    w: usize,
    /// Output plane width.
    wo: usize,
    /// In-bound taps of each output row, `(first, end)` stepped by `dh`.
    rows: Vec<(usize, usize)>,
    /// In-bound taps of each output column, `(first, end)` stepped by `dw`.
    cols: Vec<(usize, usize)>,
    /// The output columns that the interior kernels compute: those whose
    /// windows hold no padding, if the horizontal stride is 1 or 2; else none.
    interior: Range<usize>,
    /// The output rows in runs whose windows hold the same in-bound rows,
    /// shifted by the vertical stride from one output row to the next (all
    /// rows but those clipped at the top and bottom edges form one run);
    /// empty if `interior` is.
    bands: Vec<Band>,
    /// Plane offset between the windows of consecutive output rows in a band.
    row_step: usize,
    /// Horizontal stride.
    sw: usize,
    /// Vertical and horizontal dilation.
    dh: usize,
    dw: usize,
}

/// A run of output rows whose interior windows an interior kernel computes
/// in one call.
struct Band {
    /// The output rows.
    rows: Range<usize>,
    /// Plane offsets of the taps of the band's first interior window (first
    /// row, first interior column), in the window's row-major order.
    taps: Vec<u32>,
}

impl Geometry {
    /// Checks `p` against the input shape; returns the input dimensions and the geometry.
    fn new(op: &'static str, shape: &[usize], p: MaxPool2dParams) -> Result<([usize; 4], Self)> {
        let ([n, c, h, w], ho, wo) = p.window().output(op, shape)?;
        let rows = max_taps(h, ho, p.kernel.0, p.stride.0, p.padding.0, p.dilation.0);
        let cols = max_taps(w, wo, p.kernel.1, p.stride.1, p.padding.1, p.dilation.1);
        let (Some(rows), Some(cols)) = (rows, cols) else {
            return Err(TensorError::InvalidParameter {
                op,
                message: format!("a window of {p:?} over input {shape:?} holds only padding"),
            });
        };
        if u32::try_from(h * w - 1).is_err() {
            return Err(TensorError::InvalidParameter {
                op,
                message: format!("planes of input {shape:?} are too large for u32 indices"),
            });
        }
        let ((sh, sw), (dh, dw), kw) = (p.stride, p.dilation, p.kernel.1);
        // A window holds no padding iff its taps span the whole kernel.
        let span = dw * (kw - 1) + 1;
        let full = |&(x0, x1): &(usize, usize)| x1 - x0 == span;
        let lo = cols.iter().position(full).unwrap_or(0);
        let mut hi = lo + cols[lo..].iter().take_while(|c| full(c)).count();
        if !(sw == 1 || sw == 2) {
            hi = lo;
        }
        let mut bands = Vec::new();
        let mut oy = 0;
        while lo < hi && oy < ho {
            let (y0, y1) = rows[oy];
            let shifted = |k: usize| (y0 + k * sh, y1 + k * sh);
            let end = (oy + 1..ho)
                .find(|&e| rows[e] != shifted(e - oy))
                .unwrap_or(ho);
            let x0 = cols[lo].0;
            let taps = (y0..y1)
                .step_by(dh)
                .flat_map(|iy| (0..kw).map(move |kx| (iy * w + x0 + kx * dw) as u32))
                .collect();
            bands.push(Band {
                rows: oy..end,
                taps,
            });
            oy = end;
        }
        let geometry = Self {
            h,
            w,
            wo,
            rows,
            cols,
            interior: lo..hi,
            bands,
            row_step: sh * w,
            sw,
            dh,
            dw,
        };
        Ok(([n, c, h, w], geometry))
    }
}

/// Max pooling of an N x C x H x W tensor: the output N x C x Ho x Wo and,
/// per output element, the flat index `iy * W + ix` within its input plane
/// of the element it took.
///
/// The window is scanned in row-major order and an element replaces the
/// current maximum when it is strictly greater or NaN (PyTorch's rule), so
/// ties go to the first maximum, a NaN wins (the last one if several), and
/// padding never wins.
pub fn max_pool2d<T: Element>(x: &Tensor<T>, p: MaxPool2dParams) -> Result<(Tensor<T>, Vec<u32>)> {
    max_pool2d_with(simd_level_capped(p.simd), x, p)
}

/// [`max_pool2d`] with the kernels built for `level` (the baseline ones if
/// the CPU does not run `level`): the tests run every build the CPU has.
fn max_pool2d_with<T: Element>(
    level: Level,
    x: &Tensor<T>,
    p: MaxPool2dParams,
) -> Result<(Tensor<T>, Vec<u32>)> {
    let level = if level.runs() { level } else { Level::Baseline };
    let ([n, c, h, w], g) = Geometry::new("max_pool2d", x.shape(), p)?;
    let (ho, wo) = (g.rows.len(), g.wo);
    let out_shape = [n, c, ho, wo];
    let (mut out, len) = try_buffer(&out_shape, "max_pool2d")?;
    let (mut indices, _) = try_buffer(&out_shape, "max_pool2d")?;
    let planes = (TASK_ELEMS / (h * w + ho * wo)).max(1);
    // The outputs are written once, without zeroing them first.
    let written: usize = out.spare_capacity_mut()[..len]
        .par_chunks_mut(planes * ho * wo)
        .zip(indices.spare_capacity_mut()[..len].par_chunks_mut(planes * ho * wo))
        .zip(x.data().par_chunks(planes * h * w))
        .map(|((out, idx), x)| {
            // SAFETY: the CPU runs `level`.
            unsafe { planes_dispatch(level, &g, x, out, idx) }
        })
        .sum();
    // The chunks cover `out[..len]` and `indices[..len]` (`n c` output planes
    // of each, and as many input planes), so this holds.
    assert_eq!(written, len, "max_pool2d: every output is written");
    // SAFETY: the tasks wrote their planes of `out[..len]` and
    // `indices[..len]` whole (see `planes`), and the planes cover both.
    unsafe {
        out.set_len(len);
        indices.set_len(len);
    }
    Ok((Tensor::from_vec([n, c, ho, wo], out)?, indices))
}

/// What an interior kernel computes: for output rows `r < rows` and columns
/// `c` in `cols`, output `r wo + c` of its slice takes the maximum of the
/// plane elements `taps[t] + r row_step + S (c - cols.start)` (the taps in
/// order, under the pooling rule), and the same index its offset. All those
/// elements are in the plane (the windows hold no padding).
#[derive(Clone, Copy)]
struct Interior<'a> {
    taps: &'a [u32],
    rows: usize,
    row_step: usize,
    cols: (usize, usize),
    wo: usize,
}

impl Interior<'_> {
    /// Whether the plane elements read (`taps[t] + r row_step + s j` for
    /// `r < rows`, `j < cols.1 - cols.0`) are below `plane` and the outputs
    /// written (`r wo + c`) below `out`, and there is some: the check of the
    /// SIMD kernels, which index without bounds checks.
    fn in_bounds(&self, s: usize, plane: usize, out: usize) -> bool {
        let (c0, c1) = self.cols;
        let Some(&last) = self.taps.iter().max() else {
            return false;
        };
        c0 < c1
            && self.rows > 0
            && last as usize + (self.rows - 1) * self.row_step + s * (c1 - c0 - 1) < plane
            && (self.rows - 1) * self.wo + c1 <= out
    }
}

/// Max pooling of whole planes (`x` the input planes, `out` and `idx` the
/// output planes) with the kernels built for `level`. Returns the number of
/// outputs written: all.
///
/// # Safety
/// The CPU must run `level`.
unsafe fn planes_dispatch<T: Element>(
    level: Level,
    g: &Geometry,
    x: &[T],
    out: &mut [MaybeUninit<T>],
    idx: &mut [MaybeUninit<u32>],
) -> usize {
    if g.bands.is_empty() {
        return planes(g, x, out, idx, |_, _, _, _| {});
    }
    // The interior kernel for the horizontal stride (1 or 2 when there are bands).
    macro_rules! run {
        ($kernel:ident) => {
            if g.sw == 1 {
                planes(g, x, out, idx, |p, b, o, i| {
                    // SAFETY: the CPU runs `level` (this function's contract).
                    unsafe { $kernel::<T, 1>(p, b, o, i) }
                })
            } else {
                planes(g, x, out, idx, |p, b, o, i| {
                    // SAFETY: as above.
                    unsafe { $kernel::<T, 2>(p, b, o, i) }
                })
            }
        };
    }
    match level {
        Level::Baseline => run!(interior_baseline),
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => run!(interior_avx2),
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => run!(interior_avx512),
    }
}

/// Max pooling of whole planes: `kernel` computes the interior of each band
/// (see [`Interior`]), and the border columns scan their windows on their
/// own. Writes every output of `out` and `idx` once; returns their number.
#[inline(always)]
fn planes<T: Element>(
    g: &Geometry,
    x: &[T],
    out: &mut [MaybeUninit<T>],
    idx: &mut [MaybeUninit<u32>],
    kernel: impl Fn(&[T], Interior<'_>, &mut [MaybeUninit<T>], &mut [MaybeUninit<u32>]),
) -> usize {
    let (wo, (lo, hi)) = (g.wo, (g.interior.start, g.interior.end));
    let plane_out = g.rows.len() * wo;
    let planes = x
        .chunks_exact(g.h * g.w)
        .zip(out.chunks_exact_mut(plane_out))
        .zip(idx.chunks_exact_mut(plane_out));
    let mut written = 0;
    for ((plane, out), idx) in planes {
        for band in &g.bands {
            let span = band.rows.start * wo..band.rows.end * wo;
            let interior = Interior {
                taps: &band.taps,
                rows: band.rows.len(),
                row_step: g.row_step,
                cols: (lo, hi),
                wo,
            };
            kernel(plane, interior, &mut out[span.clone()], &mut idx[span]);
            written += band.rows.len() * (hi - lo);
        }
        let rows = out.chunks_exact_mut(wo).zip(idx.chunks_exact_mut(wo));
        for ((out, idx), &ys) in rows.zip(&g.rows) {
            for ox in (0..lo).chain(hi..wo) {
                let (v, i) = window_max(g, plane, ys, g.cols[ox]);
                out[ox].write(v);
                idx[ox].write(i);
                written += 1;
            }
        }
    }
    written
}

/// [`interior`] built for the baseline target. Out of line, like the other
/// builds: within a function of its own the compiler knows that the slices
/// do not overlap, and vectorizes the loops without run-time checks.
///
/// # Safety
/// None: `unsafe` only for the same signature as the other builds.
#[inline(never)]
unsafe fn interior_baseline<T: Element, const S: usize>(
    plane: &[T],
    b: Interior<'_>,
    out: &mut [MaybeUninit<T>],
    idx: &mut [MaybeUninit<u32>],
) {
    interior::<T, S>(plane, b, out, idx)
}

/// `plane` and `out` as `f32`s, if `T` is `f32` (for the intrinsics kernels).
#[cfg(target_arch = "x86_64")]
fn as_f32<'a, T: 'static>(
    plane: &'a [T],
    out: &'a mut [MaybeUninit<T>],
) -> Option<(&'a [f32], &'a mut [MaybeUninit<f32>])> {
    use std::any::TypeId;
    (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| {
        // SAFETY: `T` is `f32`: the same layout.
        unsafe {
            (
                &*(plane as *const [T] as *const [f32]),
                &mut *(out as *mut [MaybeUninit<T>] as *mut [MaybeUninit<f32>]),
            )
        }
    })
}

/// [`interior`] built for AVX2; for `f32`, the intrinsics kernel
/// [`x86::interior_f32_avx2`].
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn interior_avx2<T: Element, const S: usize>(
    plane: &[T],
    b: Interior<'_>,
    out: &mut [MaybeUninit<T>],
    idx: &mut [MaybeUninit<u32>],
) {
    if let Some((plane, out)) = as_f32(plane, out) {
        // SAFETY: the CPU has AVX2.
        return unsafe { x86::interior_f32_avx2::<S>(plane, b, out, idx) };
    }
    interior::<T, S>(plane, b, out, idx)
}

/// [`interior`] built for AVX-512; for `f32`, the intrinsics kernel
/// [`x86::interior_f32_avx512`].
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn interior_avx512<T: Element, const S: usize>(
    plane: &[T],
    b: Interior<'_>,
    out: &mut [MaybeUninit<T>],
    idx: &mut [MaybeUninit<u32>],
) {
    if let Some((plane, out)) = as_f32(plane, out) {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { x86::interior_f32_avx512::<S>(plane, b, out, idx) };
    }
    interior::<T, S>(plane, b, out, idx)
}

/// The interior kernel in portable code (see [`Interior`]); `S` is the
/// horizontal stride, 1 or 2. 2 x 2 and 3 x 3 windows keep each output's
/// maximum in registers over all taps ([`fused`]); others go tap by tap
/// over runs of outputs ([`tap_major`]).
#[inline(always)]
fn interior<T: Element, const S: usize>(
    plane: &[T],
    b: Interior<'_>,
    out: &mut [MaybeUninit<T>],
    idx: &mut [MaybeUninit<u32>],
) {
    let (c0, c1) = b.cols;
    let last = b.taps.iter().copied().max().unwrap_or(0) as usize;
    let rows = out.chunks_mut(b.wo).zip(idx.chunks_mut(b.wo)).take(b.rows);
    for (r, (out, idx)) in rows.enumerate() {
        let shift = r * b.row_step;
        let (out, idx) = (&mut out[c0..c1], &mut idx[c0..c1]);
        // The outputs whose taps can all be read `S` elements at a time: all
        // but at most the last one of the plane's last rows.
        let head = out.len().min(plane.len().saturating_sub(last + shift) / S);
        let (out, tail_out) = out.split_at_mut(head);
        let (idx, tail_idx) = idx.split_at_mut(head);
        let taps = |t: &u32| t + shift as u32;
        if let Ok(t) = <&[u32; 4]>::try_from(b.taps) {
            fused::<T, S, 4>(plane, t.each_ref().map(taps), out, idx);
        } else if let Ok(t) = <&[u32; 9]>::try_from(b.taps) {
            fused::<T, S, 9>(plane, t.each_ref().map(taps), out, idx);
        } else {
            tap_major::<T, S>(plane, b.taps, shift, out, idx);
        }
        for (j, (o, i)) in tail_out.iter_mut().zip(tail_idx).enumerate() {
            let (v, at) = taps_max(plane, b.taps, shift + S * (head + j));
            o.write(v);
            i.write(at);
        }
    }
}

/// [`interior`] for one row and `K` taps, all of them in the loop over the
/// outputs: the compiler vectorizes that loop and keeps the maxima in
/// registers. Output `j` reads element `S j` from each tap's offset, all in
/// `plane`.
#[inline(always)]
fn fused<T: Element, const S: usize, const K: usize>(
    plane: &[T],
    taps: [u32; K],
    out: &mut [MaybeUninit<T>],
    idx: &mut [MaybeUninit<u32>],
) {
    let n = out.len().min(idx.len());
    let (out, idx) = (&mut out[..n], &mut idx[..n]);
    let src = taps.map(|t| &plane[t as usize..].as_chunks::<S>().0[..n]);
    for j in 0..n {
        let mut best = src[0][j][0];
        let mut at = taps[0];
        for t in 1..K {
            let v = src[t][j][0];
            let take = v > best || v.is_nan();
            best = if take { v } else { best };
            at = if take { taps[t] } else { at };
        }
        out[j].write(best);
        idx[j].write(at + (S * j) as u32);
    }
}

/// [`interior`] for one row and any number of taps (shifted by `shift`):
/// runs of up to 64 outputs, each taken tap by tap over the run (a loop
/// that vectorizes) in a buffer on the stack.
#[inline(always)]
fn tap_major<T: Element, const S: usize>(
    plane: &[T],
    taps: &[u32],
    shift: usize,
    out: &mut [MaybeUninit<T>],
    idx: &mut [MaybeUninit<u32>],
) {
    const RUN: usize = 64;
    let Some((&first, rest)) = taps.split_first() else {
        return;
    };
    let (mut best, mut at) = ([T::zero(); RUN], [0u32; RUN]);
    for (k, (out, idx)) in out.chunks_mut(RUN).zip(idx.chunks_mut(RUN)).enumerate() {
        let (best, at) = (&mut best[..out.len()], &mut at[..out.len()]);
        let shift = shift + S * RUN * k;
        let offset = first as usize + shift;
        first_tap::<T, S>(&plane[offset..], offset as u32, best, at);
        for &tap in rest {
            let offset = tap as usize + shift;
            next_tap::<T, S>(&plane[offset..], offset as u32, best, at);
        }
        out.write_copy_of_slice(best);
        idx.write_copy_of_slice(at);
    }
}

/// Starts each output `j` at its first tap: element `S j` of `src`, at
/// plane offset `offset + S j`.
#[inline(always)]
fn first_tap<T: Element, const S: usize>(src: &[T], offset: u32, best: &mut [T], at: &mut [u32]) {
    let (src, _) = src.as_chunks::<S>();
    let mut i = offset;
    for ((b, a), v) in best.iter_mut().zip(at.iter_mut()).zip(src) {
        *b = v[0];
        *a = i;
        i += S as u32;
    }
}

/// Takes element `S j` of `src` (at plane offset `offset + S j`) into
/// output `j` if it is greater than the current maximum or NaN.
#[inline(always)]
fn next_tap<T: Element, const S: usize>(src: &[T], offset: u32, best: &mut [T], at: &mut [u32]) {
    let (src, _) = src.as_chunks::<S>();
    let mut i = offset;
    for ((b, a), v) in best.iter_mut().zip(at.iter_mut()).zip(src) {
        let v = v[0];
        let take = v > *b || v.is_nan();
        *b = if take { v } else { *b };
        *a = if take { i } else { *a };
        i += S as u32;
    }
}

/// The maximum of the plane elements at `taps` (shifted by `shift`), in
/// order, and its offset: one interior output on its own.
#[inline(always)]
fn taps_max<T: Element>(plane: &[T], taps: &[u32], shift: usize) -> (T, u32) {
    let mut best = T::neg_infinity();
    let mut at = taps.first().map_or(0, |&t| t as usize + shift);
    for &tap in taps {
        let i = tap as usize + shift;
        let v = plane[i];
        let take = v > best || v.is_nan();
        best = if take { v } else { best };
        at = if take { i } else { at };
    }
    (best, at as u32)
}

/// The maximum of one window and its plane index, scanned on its own:
/// rows `ys` and columns `xs` (in-bound `(first, end)`, stepped by the
/// dilation).
#[inline(always)]
fn window_max<T: Element>(
    g: &Geometry,
    plane: &[T],
    (y0, y1): (usize, usize),
    (x0, x1): (usize, usize),
) -> (T, u32) {
    let mut best = T::neg_infinity();
    let mut at = y0 * g.w + x0;
    for iy in (y0..y1).step_by(g.dh) {
        for ix in (x0..x1).step_by(g.dw) {
            let v = plane[iy * g.w + ix];
            // Branch-free (the outcome is data-dependent).
            let take = v > best || v.is_nan();
            best = if take { v } else { best };
            at = if take { iy * g.w + ix } else { at };
        }
    }
    (best, at as u32)
}

/// Gradient of [`max_pool2d`]: each output gradient is added to the input
/// element its index points to (several outputs sharing an element sum, in
/// output order), and every other input element is zero.
///
/// Each parallel task zeroes its planes of the result and adds into them
/// while they are in cache, and checks the indices as it goes: the result is
/// written once, with no separate zeroing or checking pass.
pub fn max_pool2d_backward<T: Element>(
    gout: &Tensor<T>,
    indices: &[u32],
    input_shape: &[usize],
) -> Result<Tensor<T>> {
    let op = "max_pool2d_backward";
    let ([n, c, ho, wo], [_, _, h, w]) = backward_dims(op, gout.shape(), input_shape)?;
    if indices.len() != gout.len() {
        return Err(TensorError::LengthMismatch {
            op,
            shape: gout.shape().to_vec(),
            expected: gout.len(),
            found: indices.len(),
        });
    }
    let (plane, plane_out) = (h * w, ho * wo);
    let (mut gin, len) = try_buffer(&[n, c, h, w], op)?;
    let planes = (TASK_ELEMS / (plane + plane_out)).max(1);
    // Copied into each plane of the result: zeroes it and yields it as
    // initialized, without `unsafe`.
    let zeros = vec![T::zero(); plane];
    let (written, in_range) = gin.spare_capacity_mut()[..len]
        .par_chunks_mut(planes * plane)
        .zip(gout.data().par_chunks(planes * plane_out))
        .zip(indices.par_chunks(planes * plane_out))
        .map(|((gin, g), idx)| {
            let (mut written, mut in_range) = (0, true);
            let planes = gin
                .chunks_exact_mut(plane)
                .zip(g.chunks_exact(plane_out))
                .zip(idx.chunks_exact(plane_out));
            for ((gin, g), idx) in planes {
                let gin = gin.write_copy_of_slice(&zeros);
                written += gin.len();
                for (&g, &i) in g.iter().zip(idx) {
                    match gin.get_mut(i as usize) {
                        Some(v) => *v += g,
                        None => in_range = false,
                    }
                }
            }
            (written, in_range)
        })
        // Not `all`, which may skip tasks.
        .reduce(|| (0, true), |a, b| (a.0 + b.0, a.1 & b.1));
    // The chunks cover `gin[..len]` (`n c` planes each of the result, of
    // `gout` and of `indices`), so this holds.
    assert_eq!(written, len, "{op}: every plane is written");
    // SAFETY: the tasks wrote disjoint planes of `gin[..len]`, `len`
    // elements in all: every element.
    unsafe { gin.set_len(len) };
    if !in_range {
        let i = indices.iter().find(|&&i| i as usize >= plane).copied();
        return Err(TensorError::InvalidParameter {
            op,
            message: format!(
                "index {} out of range for input {input_shape:?}",
                i.unwrap_or(u32::MAX)
            ),
        });
    }
    Tensor::from_vec(input_shape.to_vec(), gin)
}

#[cfg(test)]
mod tests;
