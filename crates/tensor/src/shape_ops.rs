//! Shape kernels of the ONNX op set and their backwards: transpose,
//! concat, split, slice, gather, pad.
//!
//! Each output is written once, element by element from its sources, in
//! pieces on all threads when large; the backwards that add (gather's) add
//! in a fixed order per output element, so every result is the same
//! whatever the number of threads.

use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::layout::{
    checked_numel, contiguous_strides, for_each_piece, for_each_segment, merge_dims, strided_copy,
    try_write, Walker,
};
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Side of the square tiles in which a transpose of the two innermost
/// dimensions is copied.
const TILE: usize = 32;

fn axis_error(op: &'static str, axis: usize, shape: &[usize]) -> TensorError {
    TensorError::Axis {
        op,
        axis,
        shape: shape.to_vec(),
    }
}

/// An error unless `perm` is a permutation of `0..rank`.
fn check_perm(perm: &[usize], rank: usize, op: &'static str) -> Result<()> {
    let mut seen = vec![false; rank];
    let valid = perm.len() == rank
        && perm
            .iter()
            .all(|&p| p < rank && !std::mem::replace(&mut seen[p], true));
    if !valid {
        return Err(TensorError::InvalidParameter {
            op,
            message: format!("{perm:?} is not a permutation of the {rank} axes"),
        });
    }
    Ok(())
}

/// The permutation that undoes `perm` (a transpose's backward is the
/// transpose by it). An error unless `perm` is a permutation of
/// `0..perm.len()`.
pub fn inverse_perm(perm: &[usize]) -> Result<Vec<usize>> {
    check_perm(perm, perm.len(), "inverse_perm")?;
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    Ok(inv)
}

/// The axes of `x` permuted (ONNX Transpose, numpy `transpose`): output
/// axis `i` is input axis `perm[i]`.
///
/// Axes that stay adjacent are merged first; a permutation that keeps the
/// last axis copies contiguous runs, and one that swaps the two innermost
/// (merged) axes, as NCHW <-> NHWC or a batched matrix transpose, is copied
/// in square tiles so that reads and writes both stay in cache.
pub fn transpose<T: Element>(x: &Tensor<T>, perm: &[usize]) -> Result<Tensor<T>> {
    const OP: &str = "transpose";
    check_perm(perm, x.ndim(), OP)?;
    let out_shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    let in_strides = contiguous_strides(x.shape());
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let (dims, [st]) = merge_dims(&out_shape, [&strides]);
    let m = dims.len() - 1;
    let src = x.data();
    let write = |out: &mut [MaybeUninit<T>]| {
        if out.is_empty() {
            return Ok(());
        }
        if m >= 1 && st[m] != 1 && st[m - 1] == 1 {
            let (rows, cols, col_stride) = (dims[m - 1], dims[m], st[m]);
            let batch_dims = &dims[..m - 1];
            let batch_strides = &st[..m - 1];
            let block = |batch: usize, row0: usize, piece: &mut [MaybeUninit<T>]| {
                let base = Walker::new(batch_dims, [batch_strides], batch).off[0];
                transpose_tiles(src, base + row0, col_stride, cols, piece);
            };
            if out.len() < crate::layout::PAR_MIN {
                for (b, plane) in out.chunks_mut(rows * cols).enumerate() {
                    block(b, 0, plane);
                }
            } else {
                out.par_chunks_mut(rows * cols)
                    .enumerate()
                    .for_each(|(b, plane)| {
                        plane
                            .par_chunks_mut(TILE * cols)
                            .enumerate()
                            .for_each(|(t, piece)| block(b, t * TILE, piece));
                    });
            }
        } else {
            strided_copy(src, 0, &dims, &st, out);
        }
        Ok(())
    };
    // SAFETY: both paths write every element of the output.
    unsafe { try_write(out_shape, OP, write) }
}

/// Writes `out[r * cols + c] = src[base + r + c * col_stride]` for the
/// rows of `out` (a whole number of rows of `cols`), tile by tile.
fn transpose_tiles<T: Element>(
    src: &[T],
    base: usize,
    col_stride: usize,
    cols: usize,
    out: &mut [MaybeUninit<T>],
) {
    let rows = out.len() / cols;
    for r0 in (0..rows).step_by(TILE) {
        let r1 = (r0 + TILE).min(rows);
        for c0 in (0..cols).step_by(TILE) {
            let c1 = (c0 + TILE).min(cols);
            for r in r0..r1 {
                let row = &mut out[r * cols + c0..r * cols + c1];
                let at = base + r + c0 * col_stride;
                for (j, o) in row.iter_mut().enumerate() {
                    o.write(src[at + j * col_stride]);
                }
            }
        }
    }
}

/// `(outer, len, inner)` around `axis` of `shape`: the product of the axes
/// before, the axis's length, the product of the axes after.
fn around(shape: &[usize], axis: usize, op: &'static str) -> Result<(usize, usize, usize)> {
    if axis >= shape.len() {
        return Err(axis_error(op, axis, shape));
    }
    checked_numel(shape, op)?;
    Ok((
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    ))
}

/// The tensors joined along `axis` (ONNX Concat): every input has the same
/// rank and the same lengths on every other axis.
pub fn concat<T: Element>(inputs: &[&Tensor<T>], axis: usize) -> Result<Tensor<T>> {
    const OP: &str = "concat";
    let first = inputs.first().ok_or(TensorError::InvalidParameter {
        op: OP,
        message: "no tensor to concatenate".into(),
    })?;
    let (outer, _, inner) = around(first.shape(), axis, OP)?;
    let mut total = 0usize;
    for t in inputs {
        let fits = t.ndim() == first.ndim()
            && t.shape()
                .iter()
                .zip(first.shape())
                .enumerate()
                .all(|(d, (a, b))| d == axis || a == b);
        if !fits {
            return Err(TensorError::ShapeMismatch {
                op: OP,
                left: first.shape().to_vec(),
                right: t.shape().to_vec(),
            });
        }
        total = total
            .checked_add(t.shape()[axis])
            .ok_or_else(|| TensorError::TooLarge {
                op: OP,
                shape: t.shape().to_vec(),
            })?;
    }
    let mut shape = first.shape().to_vec();
    shape[axis] = total;
    checked_numel(&shape, OP)?;
    // Per outer index, each input contributes a run of `len * inner`.
    let runs: Vec<usize> = inputs.iter().map(|t| t.shape()[axis] * inner).collect();
    let row_len = total * inner;
    let write = |out: &mut [MaybeUninit<T>]| {
        if out.is_empty() {
            return Ok(());
        }
        let outer_dims = [outer];
        for_each_piece(out, row_len, 1, |row, col, piece| {
            let mut walk = Walker::new(&outer_dims, [&[1][..]], row);
            for_each_segment(&mut walk, row_len, col, piece, |walk, col, seg| {
                let o = walk.off[0];
                // The runs that meet columns col..col + seg.len().
                let (mut start, mut at) = (0usize, 0usize);
                for (t, &run) in inputs.iter().zip(&runs) {
                    let (lo, hi) = (start.max(col), (start + run).min(col + seg.len()));
                    if lo < hi {
                        let from = &t.data()[o * run + lo - start..o * run + hi - start];
                        for (d, &v) in seg[at..at + hi - lo].iter_mut().zip(from) {
                            d.write(v);
                        }
                        at += hi - lo;
                    }
                    start += run;
                }
            });
        });
        Ok(())
    };
    // SAFETY: the runs of the inputs tile each output row.
    unsafe { try_write(shape, OP, write) }
}

/// `x` cut along `axis` into consecutive parts of `sizes` (ONNX Split):
/// the sizes must add up to the axis's length. The backward of [`concat()`],
/// whose backward it is in turn.
pub fn split<T: Element>(x: &Tensor<T>, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor<T>>> {
    const OP: &str = "split";
    let (outer, len, inner) = around(x.shape(), axis, OP)?;
    sizes
        .iter()
        .try_fold(0usize, |acc, &s| acc.checked_add(s))
        .filter(|&s| s == len)
        .ok_or_else(|| TensorError::InvalidParameter {
            op: OP,
            message: format!(
                "sizes {sizes:?} do not add up to axis {axis} of {:?}",
                x.shape()
            ),
        })?;
    let mut parts = Vec::with_capacity(sizes.len());
    let mut start = 0;
    for &size in sizes {
        let mut shape = x.shape().to_vec();
        shape[axis] = size;
        let write = |out: &mut [MaybeUninit<T>]| {
            strided_copy(
                x.data(),
                start * inner,
                &[outer, size * inner],
                &[len * inner, 1],
                out,
            );
            Ok(())
        };
        // SAFETY: `strided_copy` writes every element of the view.
        parts.push(unsafe { try_write(shape, OP, write) }?);
        start += size;
    }
    Ok(parts)
}

/// The number of positions `start, start + step, ...` below `end` (0 when
/// `start >= end`), after checking them against an axis of length `len`.
fn slice_len(len: usize, start: usize, end: usize, step: usize, op: &'static str) -> Result<usize> {
    if step == 0 || start > len || end > len {
        return Err(TensorError::InvalidParameter {
            op,
            message: format!(
                "slice {start}..{end} step {step} does not fit an axis of length {len} \
                 (bounds within the axis, step at least 1)"
            ),
        });
    }
    Ok(end.saturating_sub(start).div_ceil(step))
}

/// The positions `start, start + step, ...` below `end` along `axis`
/// (ONNX Slice on one axis, its bounds already clamped to the axis:
/// `start <= len`, `end <= len`, `step >= 1`; `start >= end` gives an empty
/// axis). Negative steps are not supported.
pub fn slice<T: Element>(
    x: &Tensor<T>,
    axis: usize,
    start: usize,
    end: usize,
    step: usize,
) -> Result<Tensor<T>> {
    const OP: &str = "slice";
    let (outer, len, inner) = around(x.shape(), axis, OP)?;
    let n = slice_len(len, start, end, step, OP)?;
    let mut shape = x.shape().to_vec();
    shape[axis] = n;
    let write = |out: &mut [MaybeUninit<T>]| {
        strided_copy(
            x.data(),
            start * inner,
            &[outer, n, inner],
            &[len * inner, step * inner, 1],
            out,
        );
        Ok(())
    };
    // SAFETY: `strided_copy` writes every element of the view.
    unsafe { try_write(shape, OP, write) }
}

/// Backward of [`slice()`]: a tensor of `in_shape` holding `grad` at the
/// sliced positions and zeros elsewhere.
pub fn slice_backward<T: Element>(
    grad: &Tensor<T>,
    in_shape: &[usize],
    axis: usize,
    start: usize,
    end: usize,
    step: usize,
) -> Result<Tensor<T>> {
    const OP: &str = "slice_backward";
    let (outer, len, inner) = around(in_shape, axis, OP)?;
    let n = slice_len(len, start, end, step, OP)?;
    let mut want = in_shape.to_vec();
    want[axis] = n;
    if grad.shape() != want {
        return Err(TensorError::ShapeMismatch {
            op: OP,
            left: grad.shape().to_vec(),
            right: want,
        });
    }
    let g = grad.data();
    let write = |out: &mut [MaybeUninit<T>]| {
        // One row per (outer, position along the axis): a row of the
        // gradient where the slice took it, zeros elsewhere.
        let dims = [outer, len];
        for_each_piece(out, inner, 1, |row, col, piece| {
            let mut walk = Walker::new(&dims, [&[0, 0][..]], row);
            for_each_segment(&mut walk, inner, col, piece, |walk, col, seg| {
                let (o, a) = (walk.index()[0], walk.index()[1]);
                let taken = a
                    .checked_sub(start)
                    .filter(|d| d % step == 0 && d / step < n)
                    .map(|d| d / step);
                match taken {
                    Some(j) => {
                        let at = (o * n + j) * inner + col;
                        for (d, &v) in seg.iter_mut().zip(&g[at..]) {
                            d.write(v);
                        }
                    }
                    None => seg.iter_mut().for_each(|d| {
                        d.write(T::zero());
                    }),
                }
            });
        });
        Ok(())
    };
    // SAFETY: every row is written, from the gradient or as zeros.
    unsafe { try_write(in_shape.to_vec(), OP, write) }
}

/// Checks gather's indices against the axis, and gives the output shape:
/// `shape[..axis] ++ indices_shape ++ shape[axis + 1..]`.
fn gather_shape(
    shape: &[usize],
    axis: usize,
    indices: &[usize],
    indices_shape: &[usize],
    op: &'static str,
) -> Result<Vec<usize>> {
    let (_, len, _) = around(shape, axis, op)?;
    if checked_numel(indices_shape, op)? != indices.len() {
        return Err(TensorError::LengthMismatch {
            op,
            shape: indices_shape.to_vec(),
            expected: checked_numel(indices_shape, op)?,
            found: indices.len(),
        });
    }
    if let Some(&index) = indices.iter().find(|&&i| i >= len) {
        return Err(TensorError::Index {
            op,
            index,
            axis,
            len,
        });
    }
    let mut out = shape[..axis].to_vec();
    out.extend_from_slice(indices_shape);
    out.extend_from_slice(&shape[axis + 1..]);
    checked_numel(&out, op)?;
    Ok(out)
}

/// The slices of `x` at `indices` along `axis` (ONNX Gather, indices
/// already made non-negative): the output's shape is
/// `x.shape[..axis] ++ indices_shape ++ x.shape[axis + 1..]`, and
/// `indices` holds `numel(indices_shape)` indices in row-major order.
pub fn gather<T: Element>(
    x: &Tensor<T>,
    axis: usize,
    indices: &[usize],
    indices_shape: &[usize],
) -> Result<Tensor<T>> {
    const OP: &str = "gather";
    let shape = gather_shape(x.shape(), axis, indices, indices_shape, OP)?;
    let (outer, len, inner) = around(x.shape(), axis, OP)?;
    let src = x.data();
    let write = |out: &mut [MaybeUninit<T>]| {
        let dims = [outer, indices.len()];
        let strides = [len * inner, 0];
        for_each_piece(out, inner, 1, |row, col, piece| {
            let mut walk = Walker::new(&dims, [&strides[..]], row);
            for_each_segment(&mut walk, inner, col, piece, |walk, col, seg| {
                let at = walk.off[0] + indices[walk.index()[1]] * inner + col;
                for (d, &v) in seg.iter_mut().zip(&src[at..]) {
                    d.write(v);
                }
            });
        });
        Ok(())
    };
    // SAFETY: every output row is copied from one row of `x`.
    unsafe { try_write(shape, OP, write) }
}

/// Backward of [`gather`]: a tensor of `x_shape` where each slice along
/// `axis` is the sum of the gradient's slices gathered from it (zeros for
/// slices never gathered), added in the order of `indices`.
pub fn gather_backward<T: Element>(
    grad: &Tensor<T>,
    x_shape: &[usize],
    axis: usize,
    indices: &[usize],
    indices_shape: &[usize],
) -> Result<Tensor<T>> {
    const OP: &str = "gather_backward";
    let shape = gather_shape(x_shape, axis, indices, indices_shape, OP)?;
    if grad.shape() != shape {
        return Err(TensorError::ShapeMismatch {
            op: OP,
            left: grad.shape().to_vec(),
            right: shape,
        });
    }
    let (outer, len, inner) = around(x_shape, axis, OP)?;
    // For each position along the axis, the indices that gathered it, in
    // order: `users[first[a]..first[a + 1]]`.
    let mut first = vec![0usize; len + 1];
    for &i in indices {
        first[i + 1] += 1;
    }
    for a in 0..len {
        first[a + 1] += first[a];
    }
    let mut users = vec![0usize; indices.len()];
    let mut fill = first.clone();
    for (j, &i) in indices.iter().enumerate() {
        users[fill[i]] = j;
        fill[i] += 1;
    }
    let g = grad.data();
    let nidx = indices.len();
    let write = |out: &mut [MaybeUninit<T>]| {
        let dims = [outer, len];
        let cost = nidx.div_ceil(len.max(1)).max(1);
        for_each_piece(out, inner, cost, |row, col, piece| {
            let mut walk = Walker::new(&dims, [&[0, 0][..]], row);
            for_each_segment(&mut walk, inner, col, piece, |walk, col, seg| {
                let (o, a) = (walk.index()[0], walk.index()[1]);
                let mine = &users[first[a]..first[a + 1]];
                let n = seg.len();
                let row_of = |j: usize| &g[(o * nidx + j) * inner + col..][..n];
                match mine.split_first() {
                    None => seg.iter_mut().for_each(|d| {
                        d.write(T::zero());
                    }),
                    Some((&j0, rest)) => {
                        for (d, &v) in seg.iter_mut().zip(row_of(j0)) {
                            d.write(v);
                        }
                        // SAFETY: every element of `seg` was written just above.
                        let seg: &mut [T] =
                            unsafe { &mut *(seg as *mut [MaybeUninit<T>] as *mut [T]) };
                        for &j in rest {
                            seg.iter_mut().zip(row_of(j)).for_each(|(d, &v)| *d += v);
                        }
                    }
                }
            });
        });
        Ok(())
    };
    // SAFETY: every row is written, from the gradient or as zeros.
    unsafe { try_write(x_shape.to_vec(), OP, write) }
}

/// The padded shape, after checking the pads' lengths.
fn padded_shape(
    shape: &[usize],
    begin: &[usize],
    end: &[usize],
    op: &'static str,
) -> Result<Vec<usize>> {
    if begin.len() != shape.len() || end.len() != shape.len() {
        return Err(TensorError::InvalidParameter {
            op,
            message: format!(
                "pads {begin:?} / {end:?} do not give one value per axis of {shape:?}"
            ),
        });
    }
    let out = shape
        .iter()
        .zip(begin.iter().zip(end))
        .map(|(&d, (&b, &e))| d.checked_add(b)?.checked_add(e))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| TensorError::TooLarge {
            op,
            shape: shape.to_vec(),
        })?;
    checked_numel(&out, op)?;
    Ok(out)
}

/// `x` padded with `value` (ONNX Pad, constant mode, non-negative pads):
/// `pads_begin[d]` values before and `pads_end[d]` after along each axis
/// `d`.
pub fn pad<T: Element>(
    x: &Tensor<T>,
    pads_begin: &[usize],
    pads_end: &[usize],
    value: T,
) -> Result<Tensor<T>> {
    const OP: &str = "pad";
    let shape = padded_shape(x.shape(), pads_begin, pads_end, OP)?;
    if x.ndim() == 0 {
        return Ok(x.clone());
    }
    let m = x.ndim() - 1;
    let row_len = shape[m];
    let (x_len, lead) = (x.shape()[m], pads_begin[m]);
    let x_strides = contiguous_strides(x.shape());
    let src = x.data();
    let outer = shape[..m].to_vec();
    let write = |out: &mut [MaybeUninit<T>]| {
        let zeros = vec![0; m];
        for_each_piece(out, row_len, 1, |row, col, piece| {
            let mut walk = Walker::new(&outer, [&zeros[..]], row);
            for_each_segment(&mut walk, row_len, col, piece, |walk, col, seg| {
                // The input row this output row holds, if any.
                let mut at = Some(0usize);
                for (d, &i) in walk.index().iter().enumerate() {
                    at = at.and_then(|at| {
                        let k = i.checked_sub(pads_begin[d]).filter(|&k| k < x.shape()[d])?;
                        Some(at + k * x_strides[d])
                    });
                }
                // Columns [lo, hi) of this segment come from the input row,
                // the others are padding.
                let stop = col + seg.len();
                let (lo, hi) = match at {
                    Some(_) => (lead.clamp(col, stop), (lead + x_len).clamp(col, stop)),
                    None => (stop, stop),
                };
                let (before, rest) = seg.split_at_mut(lo - col);
                let (inside, after) = rest.split_at_mut(hi - lo);
                for d in before.iter_mut().chain(after.iter_mut()) {
                    d.write(value);
                }
                if let Some(at) = at {
                    let from = &src[at + lo.saturating_sub(lead)..][..inside.len()];
                    for (d, &v) in inside.iter_mut().zip(from) {
                        d.write(v);
                    }
                }
            });
        });
        Ok(())
    };
    // SAFETY: every element is written, from `x` or as `value`.
    unsafe { try_write(shape, OP, write) }
}

/// Backward of [`pad`]: the part of `grad` inside the pads (a slice on
/// every axis).
pub fn unpad<T: Element>(
    grad: &Tensor<T>,
    pads_begin: &[usize],
    pads_end: &[usize],
) -> Result<Tensor<T>> {
    const OP: &str = "unpad";
    let r = grad.ndim();
    if pads_begin.len() != r || pads_end.len() != r {
        return Err(TensorError::InvalidParameter {
            op: OP,
            message: format!(
                "pads {pads_begin:?} / {pads_end:?} do not give one value per axis of {:?}",
                grad.shape()
            ),
        });
    }
    let shape = grad
        .shape()
        .iter()
        .zip(pads_begin.iter().zip(pads_end))
        .map(|(&d, (&b, &e))| d.checked_sub(b)?.checked_sub(e))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| TensorError::InvalidParameter {
            op: OP,
            message: format!(
                "pads {pads_begin:?} / {pads_end:?} exceed the shape {:?}",
                grad.shape()
            ),
        })?;
    let strides = contiguous_strides(grad.shape());
    let base = pads_begin.iter().zip(&strides).map(|(b, s)| b * s).sum();
    let write = |out: &mut [MaybeUninit<T>]| {
        strided_copy(grad.data(), base, &shape, &strides, out);
        Ok(())
    };
    // SAFETY: `strided_copy` writes every element of the view.
    unsafe { try_write(shape.clone(), OP, write) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{dot, rnd, t};
    use crate::testing_grad::{
        all_indices, arb_tensor, assert_close, bits, numeric_grad, on_threads,
    };
    use proptest::prelude::*;

    /// A dimension: mostly small, sometimes huge.
    fn dim() -> impl Strategy<Value = usize> {
        prop_oneof![
            4 => 0usize..4,
            1 => Just(1usize << 20),
            1 => Just(1usize << 32),
            1 => Just(usize::MAX / 2),
            1 => Just(usize::MAX),
        ]
    }

    /// What a shape op must do with an output of `dims` (`None`: a
    /// dimension overflowed on the way): `Some(Some(len))` succeed with
    /// `len` elements, `Some(None)` fail with `TooLarge`; `None` for sizes
    /// that fit but are too large to allocate in a test.
    fn expected(dims: Option<Vec<usize>>) -> Option<Option<usize>> {
        let limit = (isize::MAX as u128) / 8;
        let Some(dims) = dims else {
            return Some(None);
        };
        let nonzero = dims
            .iter()
            .filter(|&&d| d != 0)
            .fold(1u128, |a, &d| a.saturating_mul(d as u128));
        let len = dims.iter().map(|&d| d as u128).product::<u128>();
        if nonzero > limit {
            Some(None)
        } else if nonzero <= 1 << 16 {
            Some(Some(len as usize))
        } else {
            None
        }
    }

    /// The outcome of a shape op against [`expected`].
    fn check<T: Element>(
        got: Result<Tensor<T>>,
        want: Option<Option<usize>>,
    ) -> std::result::Result<(), TestCaseError> {
        match (got, want) {
            (Ok(t), Some(Some(len))) => prop_assert_eq!(t.len(), len),
            (Err(e), Some(None)) => {
                prop_assert!(matches!(e, TensorError::TooLarge { .. }), "{}", e)
            }
            (got, want) => prop_assert!(false, "{:?} for {:?}", got.map(|t| t.len()), want),
        }
        Ok(())
    }

    proptest! {
        /// Random, possibly huge, output sizes given to the shape ops
        /// (expand, pad, slice_backward, unpad's inverse): each either
        /// succeeds with the product of the output shape as length or
        /// returns `TooLarge`, never panics or wraps.
        #[test]
        fn huge_shapes_succeed_or_are_errors(
            target in prop::collection::vec(dim(), 1..5),
            extra in prop::collection::vec(dim(), 4),
        ) {
            let rank = target.len();
            let ones = Tensor::<f32>::ones(vec![1; rank]);
            let want = expected(Some(target.clone()));
            if want.is_some() {
                // A target axis of 0 or any length: ONNX Expand broadcasts
                // 1 to it.
                check(crate::broadcast::expand(&ones, &target), want)?;
            }
            let padded: Option<Vec<usize>> = (0..rank)
                .map(|d| 1usize.checked_add(target[d])?.checked_add(extra[d]))
                .collect();
            let want = expected(padded);
            if want.is_some() {
                check(pad(&ones, &target, &extra[..rank], 0.5), want)?;
            }
            // The gradient of a one-element slice back into `target`.
            let want = expected(Some(target.clone()));
            if want.is_some() && target[0] > 0 {
                let mut g = target.clone();
                g[0] = 1;
                if let Some(Some(_)) = expected(Some(g.clone())) {
                    let grad = Tensor::<f32>::ones(g);
                    check(slice_backward(&grad, &target, 0, 0, 1, 1), want)?;
                }
            }
        }
    }

    /// The flat offset of `index` in a row-major tensor of `shape`.
    fn offset(shape: &[usize], index: &[usize]) -> usize {
        shape.iter().zip(index).fold(0, |o, (&d, &i)| o * d + i)
    }

    fn naive_transpose(x: &Tensor<f64>, perm: &[usize]) -> Tensor<f64> {
        let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
        let data = all_indices(&shape)
            .iter()
            .map(|o| {
                let mut i = vec![0; perm.len()];
                for (d, &p) in perm.iter().enumerate() {
                    i[p] = o[d];
                }
                x.data()[offset(x.shape(), &i)]
            })
            .collect();
        Tensor::from_vec(shape, data).unwrap()
    }

    #[test]
    fn transpose_hand_computed_and_errors() {
        let x = t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let y = transpose(&x, &[1, 0]).unwrap();
        assert_eq!(
            (y.shape(), y.data()),
            (&[3, 2][..], &[1., 4., 2., 5., 3., 6.][..])
        );
        let x = t(&[1, 2, 2, 1], &[1., 2., 3., 4.]);
        let y = transpose(&x, &[0, 3, 1, 2]).unwrap();
        assert_eq!(
            (y.shape(), y.data()),
            (&[1, 1, 2, 2][..], &[1., 2., 3., 4.][..])
        );
        let y = transpose(&x, &[0, 2, 1, 3]).unwrap();
        assert_eq!(y.data(), &[1., 3., 2., 4.]);
        assert_eq!(transpose(&Tensor::scalar(2.0), &[]).unwrap().data(), &[2.]);
        for bad in [&[0, 0][..], &[0], &[1, 2], &[0, 1, 2]] {
            assert!(matches!(
                transpose(&t(&[2, 3], &[0.; 6]), bad),
                Err(TensorError::InvalidParameter {
                    op: "transpose",
                    ..
                })
            ));
        }
        assert_eq!(inverse_perm(&[2, 0, 1]).unwrap(), vec![1, 2, 0]);
        assert!(inverse_perm(&[1, 1]).is_err());
        assert_eq!(
            transpose(&Tensor::<f64>::zeros([0, 3]), &[1, 0])
                .unwrap()
                .shape(),
            &[3, 0]
        );
    }

    #[test]
    fn transpose_tiled_and_run_paths_match_the_naive_rule() {
        // NCHW -> NHWC and back, a batched matrix transpose with edges
        // that are not multiples of the tile, heads swapped with tokens,
        // and a permutation that takes the strided fallback.
        let cases: [(&[usize], &[usize]); 5] = [
            (&[2, 3, 37, 41], &[0, 2, 3, 1]),
            (&[2, 37, 41, 3], &[0, 3, 1, 2]),
            (&[3, 45, 70], &[0, 2, 1]),
            (&[2, 7, 3, 5], &[0, 2, 1, 3]),
            (&[4, 3, 5, 2], &[3, 0, 1, 2]),
        ];
        for (shape, perm) in cases {
            let x = rnd(shape, 3);
            assert_eq!(
                transpose(&x, perm).unwrap(),
                naive_transpose(&x, perm),
                "{shape:?} {perm:?}"
            );
        }
    }

    fn arb_shape() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(1usize..5, 1..5)
    }

    proptest! {
        #[test]
        fn transpose_matches_naive_and_inverts(
            (shape, perm) in arb_shape().prop_flat_map(|s| {
                let r = s.len();
                (Just(s), Just((0..r).collect::<Vec<usize>>()).prop_shuffle())
            }),
            seed in 0u64..1000,
        ) {
            let x = rnd(&shape, seed);
            let y = transpose(&x, &perm).unwrap();
            prop_assert_eq!(&y, &naive_transpose(&x, &perm));
            prop_assert_eq!(transpose(&y, &inverse_perm(&perm).unwrap()).unwrap(), x.clone());
            // The backward (transpose by the inverse) by finite differences.
            let g = rnd(y.shape(), seed + 1);
            let back = transpose(&g, &inverse_perm(&perm).unwrap()).unwrap();
            assert_close(&back, &numeric_grad(|x| transpose(x, &perm).unwrap(), &x, &g), 1e-8);
        }

        #[test]
        fn split_then_concat_is_the_identity(
            (shape, axis, cuts) in arb_shape().prop_flat_map(|s| {
                let r = s.len();
                (Just(s), 0..r, prop::collection::vec(0usize..5, 0..3))
            }),
            seed in 0u64..1000,
        ) {
            let x = rnd(&shape, seed);
            let len = shape[axis];
            // Sizes from sorted cut points (empty parts included).
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
            points.sort();
            let mut sizes = vec![];
            let mut at = 0;
            for p in points.into_iter().chain([len]) {
                sizes.push(p - at);
                at = p;
            }
            let parts = split(&x, axis, &sizes).unwrap();
            for (p, &s) in parts.iter().zip(&sizes) {
                prop_assert_eq!(p.shape()[axis], s);
            }
            let refs: Vec<&Tensor<f64>> = parts.iter().collect();
            let back = concat(&refs, axis).unwrap();
            prop_assert_eq!(&back, &x);
            // And concat then split gives the parts back.
            let again = split(&back, axis, &sizes).unwrap();
            prop_assert_eq!(again, parts.clone());
            // concat's backward is split: finite differences on the first part.
            let g = rnd(x.shape(), seed + 2);
            let f = |p0: &Tensor<f64>| {
                let mut r = refs.clone();
                r[0] = p0;
                concat(&r, axis).unwrap()
            };
            let gp = split(&g, axis, &sizes).unwrap();
            assert_close(&gp[0], &numeric_grad(f, &parts[0], &g), 1e-8);
        }

        #[test]
        fn slice_matches_naive_and_its_backward_is_the_adjoint(
            (shape, axis, start, end, step) in arb_shape().prop_flat_map(|s| {
                let r = s.len();
                (Just(s), 0..r, 0usize..6, 0usize..6, 1usize..4)
            }),
            seed in 0u64..1000,
        ) {
            let len = shape[axis];
            let (start, end) = (start.min(len), end.min(len));
            let x = rnd(&shape, seed);
            let y = slice(&x, axis, start, end, step).unwrap();
            let picked: Vec<usize> = (start..end).step_by(step).collect();
            prop_assert_eq!(y.shape()[axis], picked.len());
            for o in all_indices(y.shape()) {
                let mut i = o.clone();
                i[axis] = picked[o[axis]];
                prop_assert_eq!(y.data()[offset(y.shape(), &o)], x.data()[offset(&shape, &i)]);
            }
            let g = rnd(y.shape(), seed + 1);
            let back = slice_backward(&g, &shape, axis, start, end, step).unwrap();
            let l = dot(&y, &g);
            prop_assert!((l - dot(&x, &back)).abs() < 1e-12);
            assert_close(&back, &numeric_grad(|x| slice(x, axis, start, end, step).unwrap(), &x, &g), 1e-8);
        }

        #[test]
        fn gather_backward_by_finite_differences(
            x in arb_tensor(vec![2, 4, 3]),
            axis in 0usize..3,
            raw in prop::collection::vec(0usize..100, 0..7),
        ) {
            let len = x.shape()[axis];
            let idx: Vec<usize> = raw.iter().map(|i| i % len).collect();
            let ishape = if idx.len() == 6 { vec![2, 3] } else { vec![idx.len()] };
            let f = |x: &Tensor<f64>| gather(x, axis, &idx, &ishape).unwrap();
            let g = rnd(f(&x).shape(), 9);
            let got = gather_backward(&g, x.shape(), axis, &idx, &ishape).unwrap();
            assert_close(&got, &numeric_grad(f, &x, &g), 1e-8);
        }

        #[test]
        fn unpad_is_the_backward_of_pad(
            x in arb_tensor(vec![2, 3, 2]),
            begin in prop::collection::vec(0usize..3, 3),
            end in prop::collection::vec(0usize..3, 3),
        ) {
            let f = |x: &Tensor<f64>| pad(x, &begin, &end, 0.5).unwrap();
            let y = f(&x);
            let g = rnd(y.shape(), 4);
            let got = unpad(&g, &begin, &end).unwrap();
            assert_close(&got, &numeric_grad(f, &x, &g), 1e-8);
            prop_assert_eq!(unpad(&y, &begin, &end).unwrap(), x);
        }
    }

    #[test]
    fn concat_split_slice_hand_computed_and_errors() {
        let a = t(&[2, 1], &[1., 2.]);
        let b = t(&[2, 2], &[3., 4., 5., 6.]);
        let c = concat(&[&a, &b], 1).unwrap();
        assert_eq!(
            (c.shape(), c.data()),
            (&[2, 3][..], &[1., 3., 4., 2., 5., 6.][..])
        );
        let c0 = concat(&[&b, &b], 0).unwrap();
        assert_eq!(c0.data(), &[3., 4., 5., 6., 3., 4., 5., 6.]);
        assert!(matches!(
            concat(&[&a, &b], 0),
            Err(TensorError::ShapeMismatch { op: "concat", .. })
        ));
        assert!(concat::<f64>(&[], 0).is_err());
        assert!(matches!(concat(&[&a], 2), Err(TensorError::Axis { .. })));
        let parts = split(&c, 1, &[1, 2]).unwrap();
        assert_eq!(parts[0], a);
        assert_eq!(parts[1], b);
        assert!(matches!(
            split(&c, 1, &[1, 1]),
            Err(TensorError::InvalidParameter { op: "split", .. })
        ));
        assert!(split(&c, 1, &[usize::MAX, 4]).is_err());
        let x = t(&[2, 5], &[0., 1., 2., 3., 4., 5., 6., 7., 8., 9.]);
        let s = slice(&x, 1, 1, 5, 2).unwrap();
        assert_eq!((s.shape(), s.data()), (&[2, 2][..], &[1., 3., 6., 8.][..]));
        let e = slice(&x, 1, 4, 2, 1).unwrap();
        assert_eq!(e.shape(), &[2, 0]);
        let s0 = slice(&x, 0, 1, 2, 1).unwrap();
        assert_eq!(s0.data(), &[5., 6., 7., 8., 9.]);
        for (start, end, step) in [(0, 6, 1), (6, 5, 1), (0, 5, 0)] {
            assert!(matches!(
                slice(&x, 1, start, end, step),
                Err(TensorError::InvalidParameter { op: "slice", .. })
            ));
        }
        let g = t(&[2, 2], &[1., 2., 3., 4.]);
        let back = slice_backward(&g, &[2, 5], 1, 1, 5, 2).unwrap();
        assert_eq!(back.data(), &[0., 1., 0., 2., 0., 0., 3., 0., 4., 0.]);
        assert!(slice_backward(&g, &[2, 5], 1, 0, 5, 2).is_err());
    }

    #[test]
    fn gather_and_pad_hand_computed_and_errors() {
        let x = t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        // A scalar index removes the axis (ViT's class token: x[:, 0]).
        let y = gather(&x, 1, &[0], &[]).unwrap();
        assert_eq!((y.shape(), y.data()), (&[2][..], &[1., 4.][..]));
        let y = gather(&x, 1, &[2, 0, 2, 1], &[2, 2]).unwrap();
        assert_eq!(y.shape(), &[2, 2, 2]);
        assert_eq!(y.data(), &[3., 1., 3., 2., 6., 4., 6., 5.]);
        let y = gather(&x, 0, &[1], &[1]).unwrap();
        assert_eq!((y.shape(), y.data()), (&[1, 3][..], &[4., 5., 6.][..]));
        assert!(matches!(
            gather(&x, 1, &[3], &[1]),
            Err(TensorError::Index {
                op: "gather",
                index: 3,
                axis: 1,
                len: 3
            })
        ));
        assert!(matches!(
            gather(&x, 1, &[0, 1], &[3]),
            Err(TensorError::LengthMismatch { .. })
        ));
        // Repeated indices add up in the backward.
        let g = t(&[2, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let gx = gather_backward(&g, &[2, 3], 1, &[2, 0, 2, 1], &[2, 2]).unwrap();
        assert_eq!(gx.data(), &[2., 4., 4., 6., 8., 12.]);
        assert!(gather_backward(&g, &[2, 3], 1, &[2, 0, 2], &[3]).is_err());
        let p = pad(&t(&[1, 2], &[1., 2.]), &[1, 0], &[0, 2], -1.0).unwrap();
        assert_eq!(p.shape(), &[2, 4]);
        assert_eq!(p.data(), &[-1., -1., -1., -1., 1., 2., -1., -1.]);
        assert!(pad(&x, &[1], &[1, 1], 0.0).is_err());
        assert!(pad(&x, &[usize::MAX, 0], &[1, 1], 0.0).is_err());
        assert_eq!(unpad(&p, &[1, 0], &[0, 2]).unwrap().data(), &[1., 2.]);
        assert!(matches!(
            unpad(&p, &[2, 0], &[1, 0]),
            Err(TensorError::InvalidParameter { op: "unpad", .. })
        ));
    }

    #[test]
    fn large_shape_kernels_are_bit_identical_across_thread_counts() {
        let x = rnd(&[2, 24, 56, 56], 1).cast::<f32>();
        let y = rnd(&[2, 8, 56, 56], 2).cast::<f32>();
        let idx: Vec<usize> = (0..300).map(|i| (i * 7) % 56).collect();
        let long = rnd(&[1, 40_000], 3).cast::<f32>();
        let run = |threads| {
            on_threads(threads, || {
                let nhwc = transpose(&x, &[0, 2, 3, 1]).unwrap();
                let back = transpose(&nhwc, &[0, 3, 1, 2]).unwrap();
                let heads = transpose(&x, &[0, 2, 1, 3]).unwrap();
                let cat = concat(&[&x, &y, &x], 1).unwrap();
                let parts = split(&cat, 1, &[24, 8, 24]).unwrap();
                let sl = slice(&x, 1, 1, 24, 2).unwrap();
                let sb = slice_backward(&sl, x.shape(), 1, 1, 24, 2).unwrap();
                let ga = gather(&x, 2, &idx, &[300]).unwrap();
                let gb = gather_backward(&ga, x.shape(), 2, &idx, &[300]).unwrap();
                let pd = pad(&x, &[0, 0, 1, 2], &[0, 1, 2, 1], 0.0).unwrap();
                let up = unpad(&pd, &[0, 0, 1, 2], &[0, 1, 2, 1]).unwrap();
                let lp = pad(&long, &[0, 3], &[0, 5], 1.0).unwrap();
                let lc = concat(&[&long, &long], 1).unwrap();
                vec![
                    nhwc,
                    back,
                    heads,
                    cat,
                    parts[1].clone(),
                    sl,
                    sb,
                    ga,
                    gb,
                    pd,
                    up,
                    lp,
                    lc,
                ]
            })
        };
        let (one, four) = (run(1), run(4));
        for (p, q) in one.iter().zip(&four) {
            assert_eq!(bits(p.data()), bits(q.data()));
        }
        let xd = x.cast::<f64>();
        assert_eq!(one[0].cast::<f64>(), naive_transpose(&xd, &[0, 2, 3, 1]));
        assert_eq!(one[1], x);
        assert_eq!(one[2].cast::<f64>(), naive_transpose(&xd, &[0, 2, 1, 3]));
        assert_eq!(one[4], y);
        assert_eq!(one[10], x);
        assert_eq!(one[11].data()[..4], [1.0, 1.0, 1.0, long.data()[0]]);
        assert_eq!(one[12].data()[40_000], long.data()[0]);
        // The gather's backward adds each gathered row: index 0 is taken
        // by i = 0, 8, 16, ... (i * 7 % 56 == 0 every 8), 38 times.
        let times = idx.iter().filter(|&&i| i == 0).count() as f64;
        let want = f64::from(x.data()[0]) * times;
        assert!((f64::from(one[8].data()[0]) - want).abs() < 1e-5 * times);
    }
}
