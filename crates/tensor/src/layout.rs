//! Shape arithmetic shared by the broadcasting, matrix-product and shape
//! kernels: element counts with checked arithmetic, output buffers
//! allocated fallibly, the merging of a strided view's dimensions, a walker
//! over a strided view's offsets, and the strided copy built on it.
//!
//! Every parallel loop here hands each output element to exactly one task,
//! so that results do not depend on the number of threads.

use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Output elements from which a kernel of this family runs on all threads.
pub(crate) const PAR_MIN: usize = 1 << 16;
/// Output elements per parallel task (rounded to whole rows).
pub(crate) const CHUNK: usize = 1 << 14;

pub(crate) use crate::tensor::checked_numel;

/// Row-major strides of a shape whose element count has been checked.
pub(crate) fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}

/// A tensor of `shape` whose elements `write` writes, every one, into a
/// buffer allocated fallibly (an allocation that fails is
/// [`TensorError::TooLarge`], not an abort). In this crate's unit tests the
/// buffer starts as NaN, so that an element a kernel fails to write shows.
///
/// # Safety
/// When `write` returns `Ok`, it has written every element.
pub(crate) unsafe fn try_write<T: Element>(
    shape: Vec<usize>,
    op: &'static str,
    write: impl FnOnce(&mut [MaybeUninit<T>]) -> Result<()>,
) -> Result<Tensor<T>> {
    let (mut data, len) = try_buffer::<T>(&shape, op)?;
    let spare = &mut data.spare_capacity_mut()[..len];
    #[cfg(test)]
    spare.fill(MaybeUninit::new(T::nan()));
    write(spare)?;
    // SAFETY: `write` returned Ok, so it wrote all `len` elements (the
    // caller's contract).
    unsafe { data.set_len(len) };
    Tensor::from_vec(shape, data)
}

/// An empty buffer with room for the elements of `shape` (checked
/// element count, fallible allocation: [`TensorError::TooLarge`] naming
/// `op`), and that count: for kernels that fill their output by pushing or
/// through its spare capacity.
pub(crate) fn try_buffer<T>(shape: &[usize], op: &'static str) -> Result<(Vec<T>, usize)> {
    let len = checked_numel(shape, op)?;
    let mut data: Vec<T> = Vec::new();
    data.try_reserve_exact(len)
        .map_err(|_| TensorError::TooLarge {
            op,
            shape: shape.to_vec(),
        })?;
    Ok((data, len))
}

/// A tensor of `shape` filled with `value`, allocated fallibly; errors
/// name `op`.
pub(crate) fn try_full<T: Element>(
    shape: Vec<usize>,
    value: T,
    op: &'static str,
) -> Result<Tensor<T>> {
    Tensor::try_full_for(shape, value, op)
}

/// A strided view's dimensions with the strides of `K` operands, simplified:
/// dimensions of length 1 dropped, and each dimension merged into the one
/// before it where every operand steps over both as over one (stride of the
/// outer = stride of the inner x length of the inner; a broadcast operand,
/// stride 0 on both, merges too). At least one dimension is left (`[1]`
/// with stride 0 for a single element).
pub(crate) fn merge_dims<const K: usize>(
    dims: &[usize],
    strides: [&[usize]; K],
) -> (Vec<usize>, [Vec<usize>; K]) {
    let mut out_dims: Vec<usize> = Vec::with_capacity(dims.len());
    let mut out_strides: [Vec<usize>; K] = std::array::from_fn(|_| Vec::with_capacity(dims.len()));
    for (d, &len) in dims.iter().enumerate() {
        if len == 1 {
            continue;
        }
        let merges = !out_dims.is_empty()
            && (0..K).all(|k| out_strides[k].last() == Some(&(strides[k][d] * len)));
        if merges {
            if let Some(last) = out_dims.last_mut() {
                *last *= len;
            }
            for (k, s) in out_strides.iter_mut().enumerate() {
                if let Some(s) = s.last_mut() {
                    *s = strides[k][d];
                }
            }
        } else {
            out_dims.push(len);
            for (k, s) in out_strides.iter_mut().enumerate() {
                s.push(strides[k][d]);
            }
        }
    }
    if out_dims.is_empty() {
        out_dims.push(1);
        for s in &mut out_strides {
            s.push(0);
        }
    }
    (out_dims, out_strides)
}

/// Walks the positions of a row-major index space over `dims`, keeping for
/// each of `K` operands the offset `sum(index[d] * stride[d])`.
pub(crate) struct Walker<'a, const K: usize> {
    dims: &'a [usize],
    strides: [&'a [usize]; K],
    index: Vec<usize>,
    /// The offset of each operand at the current position.
    pub(crate) off: [usize; K],
}

impl<'a, const K: usize> Walker<'a, K> {
    /// A walker at linear position `start` (row-major over `dims`).
    pub(crate) fn new(dims: &'a [usize], strides: [&'a [usize]; K], start: usize) -> Self {
        let mut index = vec![0; dims.len()];
        let mut off = [0; K];
        let mut rem = start;
        for d in (0..dims.len()).rev() {
            let i = rem.checked_rem(dims[d]).unwrap_or(0);
            rem = rem.checked_div(dims[d]).unwrap_or(0);
            index[d] = i;
            for (o, s) in off.iter_mut().zip(&strides) {
                *o += i * s[d];
            }
        }
        Self {
            dims,
            strides,
            index,
            off,
        }
    }

    /// The index of the current position along each dimension.
    pub(crate) fn index(&self) -> &[usize] {
        &self.index
    }

    /// Moves to the next position (past the last one, back to the first).
    #[inline]
    pub(crate) fn step(&mut self) {
        for d in (0..self.dims.len()).rev() {
            self.index[d] += 1;
            for (o, s) in self.off.iter_mut().zip(&self.strides) {
                *o += s[d];
            }
            if self.index[d] < self.dims[d] {
                return;
            }
            for (o, s) in self.off.iter_mut().zip(&self.strides) {
                *o -= self.index[d] * s[d];
            }
            self.index[d] = 0;
        }
    }
}

/// Runs `fill(row, col, piece)` over `out`, a row-major buffer of rows of
/// `row_len` elements each costing about `cost` element reads, cut into
/// pieces that start at column `col` of row `row`: in one call below
/// [`PAR_MIN`] reads in all, else in tasks of about [`CHUNK`] reads on all
/// threads (whole rows, or parts of one row when rows are longer than
/// that). Each element belongs to one piece, and the cut depends on the
/// sizes only.
pub(crate) fn for_each_piece<T: Send>(
    out: &mut [T],
    row_len: usize,
    cost: usize,
    fill: impl Fn(usize, usize, &mut [T]) + Sync + Send,
) {
    if row_len == 0 || out.is_empty() {
        return;
    }
    let cost = cost.max(1);
    if out.len().saturating_mul(cost) < PAR_MIN {
        fill(0, 0, out);
        return;
    }
    let piece_len = (CHUNK / cost).max(1);
    if row_len >= piece_len {
        out.par_chunks_mut(row_len)
            .enumerate()
            .for_each(|(r, row)| {
                row.par_chunks_mut(piece_len)
                    .enumerate()
                    .for_each(|(c, piece)| fill(r, c * piece_len, piece));
            });
    } else {
        let rows_per_task = piece_len / row_len;
        out.par_chunks_mut(rows_per_task * row_len)
            .enumerate()
            .for_each(|(c, rows)| fill(c * rows_per_task, 0, rows));
    }
}

/// Runs `fill(first_row, rows)` over `out` cut into groups of whole rows
/// of `row_len` elements each costing about `cost` element reads: in one
/// call below [`PAR_MIN`] reads in all, else in tasks of about [`CHUNK`]
/// reads (at least one row) on all threads. For kernels whose rows cannot
/// be cut (a softmax, a normalisation).
pub(crate) fn for_each_rows<T: Send>(
    out: &mut [T],
    row_len: usize,
    cost: usize,
    fill: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if row_len == 0 || out.is_empty() {
        return;
    }
    let cost = cost.max(1);
    if out.len().saturating_mul(cost) < PAR_MIN {
        fill(0, out);
        return;
    }
    let rows_per_task = (CHUNK / row_len.saturating_mul(cost)).max(1);
    out.par_chunks_mut(rows_per_task * row_len)
        .enumerate()
        .for_each(|(c, rows)| fill(c * rows_per_task, rows));
}

/// Calls `seg(walk, col, segment)` for the successive row segments of a
/// piece given by [`for_each_piece`], `walk` at the segment's row.
#[inline]
pub(crate) fn for_each_segment<T, const K: usize>(
    walk: &mut Walker<'_, K>,
    row_len: usize,
    col: usize,
    piece: &mut [T],
    mut seg: impl FnMut(&Walker<'_, K>, usize, &mut [T]),
) {
    let mut col = col;
    let mut rest = piece;
    while !rest.is_empty() {
        let take = (row_len - col).min(rest.len());
        let (now, later) = rest.split_at_mut(take);
        seg(walk, col, now);
        rest = later;
        col = 0;
        walk.step();
    }
}

/// Writes into `out` (row-major over `dims`) the elements
/// `src[base + sum(index[d] * strides[d])]`: the copy of a strided view
/// (a slice, a permutation, a broadcast). Runs along a contiguous last
/// dimension are copied whole, a broadcast one filled.
///
/// The caller guarantees that every offset lies inside `src` and that `out`
/// holds `numel(dims)` elements.
pub(crate) fn strided_copy<T: Element>(
    src: &[T],
    base: usize,
    dims: &[usize],
    strides: &[usize],
    out: &mut [MaybeUninit<T>],
) {
    if out.is_empty() {
        return;
    }
    let (dims, [strides]) = merge_dims(dims, [strides]);
    let m = dims.len() - 1;
    let (row_len, inner_stride) = (dims[m], strides[m]);
    for_each_piece(out, row_len, 1, |row, col, piece| {
        let mut walk = Walker::new(&dims[..m], [&strides[..m]], row);
        for_each_segment(&mut walk, row_len, col, piece, |walk, col, seg| {
            let at = base + walk.off[0] + col * inner_stride;
            let n = seg.len();
            match inner_stride {
                1 => {
                    for (o, &v) in seg.iter_mut().zip(&src[at..at + n]) {
                        o.write(v);
                    }
                }
                0 => {
                    let v = src[at];
                    seg.iter_mut().for_each(|o| {
                        o.write(v);
                    });
                }
                s => {
                    for (j, o) in seg.iter_mut().enumerate() {
                        o.write(src[at + j * s]);
                    }
                }
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numel_is_checked() {
        assert_eq!(checked_numel(&[2, 3, 4], "t").unwrap(), 24);
        assert_eq!(checked_numel(&[], "t").unwrap(), 1);
        assert_eq!(checked_numel(&[3, 0, 7], "t").unwrap(), 0);
        // Zero elements, but strides that would overflow.
        assert!(checked_numel(&[usize::MAX, 0, 7], "t").is_err());
        assert!(matches!(
            checked_numel(&[usize::MAX, 2], "t"),
            Err(TensorError::TooLarge { op: "t", .. })
        ));
        assert!(checked_numel(&[1 << 31, 1 << 31], "t").is_err());
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert!(try_full(vec![1 << 40, 1 << 40], 0.0f32, "t").is_err());
    }

    #[test]
    fn merging_keeps_broadcast_and_contiguous_runs() {
        // [2, 3, 4, 5] against a per-channel [1, 3, 1, 1]: channel strides.
        let (d, [a, b]) = merge_dims(&[2, 3, 4, 5], [&[60, 20, 5, 1], &[0, 1, 0, 0]]);
        assert_eq!(d, vec![2, 3, 20]);
        assert_eq!((a, b), (vec![60, 20, 1], vec![0, 1, 0]));
        // All one: a single element.
        let (d, [a]) = merge_dims(&[1, 1], [&[1, 1]]);
        assert_eq!((d, a), (vec![1], vec![0]));
        // A permuted view does not merge.
        let (d, [a]) = merge_dims(&[3, 2], [&[1, 3]]);
        assert_eq!((d, a), (vec![3, 2], vec![1, 3]));
    }

    #[test]
    fn walker_visits_offsets_in_row_major_order() {
        let dims = [2, 3];
        let strides = [1, 2];
        let mut w = Walker::new(&dims, [&strides], 0);
        let mut seen = vec![];
        for _ in 0..6 {
            seen.push(w.off[0]);
            w.step();
        }
        assert_eq!(seen, vec![0, 2, 4, 1, 3, 5]);
        assert_eq!(w.off[0], 0);
        let w = Walker::new(&dims, [&strides], 4);
        assert_eq!((w.index(), w.off[0]), (&[1, 1][..], 3));
    }

    #[test]
    fn strided_copy_transposes_and_broadcasts() {
        let src: Vec<f64> = (0..6).map(f64::from).collect();
        let mut out = vec![MaybeUninit::new(f64::NAN); 6];
        strided_copy(&src, 0, &[3, 2], &[1, 3], &mut out);
        let got: Vec<f64> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
        assert_eq!(got, vec![0., 3., 1., 4., 2., 5.]);
        let mut out = vec![MaybeUninit::new(f64::NAN); 4];
        strided_copy(&src, 1, &[2, 2], &[3, 0], &mut out);
        let got: Vec<f64> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
        assert_eq!(got, vec![1., 1., 4., 4.]);
    }
}
