//! Gather maps for the data-movement ops of the constant evaluator: for
//! each output element (row-major), the index of its source element.
//! Callers bound the output size before asking for a map.

use crate::shape::SliceAxis;

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1].saturating_mul(shape[i + 1]);
    }
    s
}

/// Source indices of a strided view: output element at multi-index `idx`
/// of `out_shape` comes from `base + sum(idx[d] * step[d])`.
fn view(out_shape: &[usize], base: i64, step: &[i64]) -> Vec<usize> {
    let total: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(total);
    if total == 0 {
        return out;
    }
    let rank = out_shape.len();
    let mut idx = vec![0usize; rank];
    let mut pos = base;
    for _ in 0..total {
        out.push(pos.max(0) as usize);
        // Odometer increment, keeping `pos` in step.
        for d in (0..rank).rev() {
            idx[d] += 1;
            pos += step[d];
            if idx[d] < out_shape[d] {
                break;
            }
            pos -= step[d] * out_shape[d] as i64;
            idx[d] = 0;
        }
    }
    out
}

/// Broadcast of `from` to `to` (numpy rules; the caller checked that they
/// broadcast).
pub fn broadcast_map(from: &[usize], to: &[usize]) -> Vec<usize> {
    let src = strides(from);
    let offset = to.len() - from.len().min(to.len());
    let step: Vec<i64> = (0..to.len())
        .map(|d| {
            if d < offset {
                0
            } else {
                let f = d - offset;
                if from[f] == 1 {
                    0
                } else {
                    src[f] as i64
                }
            }
        })
        .collect();
    view(to, 0, &step)
}

/// Transpose of `shape` by `perm` (output axis `i` is input axis
/// `perm[i]`).
pub fn transpose_map(shape: &[usize], perm: &[usize]) -> Vec<usize> {
    let src = strides(shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let step: Vec<i64> = perm.iter().map(|&p| src[p] as i64).collect();
    view(&out_shape, 0, &step)
}

/// Slice of `shape` along the given axes; returns the output shape and map.
pub fn slice_map(shape: &[usize], axes: &[SliceAxis]) -> (Vec<usize>, Vec<usize>) {
    let src = strides(shape);
    let mut out_shape = shape.to_vec();
    let mut step: Vec<i64> = src.iter().map(|&s| s as i64).collect();
    let mut base = 0i64;
    for a in axes {
        out_shape[a.axis] = a.len;
        base += a.start * src[a.axis] as i64;
        step[a.axis] = a.step * src[a.axis] as i64;
    }
    let map = view(&out_shape, base, &step);
    (out_shape, map)
}

/// Gather along `axis` of `shape` at `indices` (resolved, in range).
pub fn gather_map(shape: &[usize], axis: usize, indices: &[usize]) -> Vec<usize> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let dim = shape[axis];
    let mut out = Vec::with_capacity(outer * indices.len() * inner);
    for o in 0..outer {
        for &i in indices {
            let start = (o * dim + i) * inner;
            out.extend(start..start + inner);
        }
    }
    out
}

/// Concatenation of row-major parts along `axis`; every part has the same
/// shape off `axis`, given by `shapes`.
pub fn concat<E: Copy>(parts: &[(&[usize], &[E])], axis: usize) -> Vec<E> {
    let Some((first, _)) = parts.first() else {
        return Vec::new();
    };
    let outer: usize = first[..axis].iter().product();
    let total: usize = parts.iter().map(|(_, d)| d.len()).sum();
    let mut out = Vec::with_capacity(total);
    for o in 0..outer {
        for (shape, data) in parts {
            let chunk: usize = shape[axis..].iter().product();
            out.extend_from_slice(&data[o * chunk..(o + 1) * chunk]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_are_row_major() {
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(strides(&[]), Vec::<usize>::new());
    }

    #[test]
    fn broadcast_repeats_size_one_axes() {
        assert_eq!(broadcast_map(&[3], &[2, 3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(broadcast_map(&[2, 1], &[2, 3]), vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(broadcast_map(&[], &[2]), vec![0, 0]);
    }

    #[test]
    fn transpose_of_a_matrix() {
        // [[0, 1, 2], [3, 4, 5]] -> [[0, 3], [1, 4], [2, 5]]
        assert_eq!(transpose_map(&[2, 3], &[1, 0]), vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(transpose_map(&[2, 1, 2], &[2, 0, 1]), vec![0, 2, 1, 3]);
    }

    #[test]
    fn slices_with_steps() {
        let axes = [SliceAxis {
            axis: 1,
            start: 3,
            end: -1,
            step: -2,
            len: 2,
        }];
        let (shape, map) = slice_map(&[2, 4], &axes);
        assert_eq!(shape, vec![2, 2]);
        assert_eq!(map, vec![3, 1, 7, 5]);
    }

    #[test]
    fn gather_and_concat() {
        assert_eq!(gather_map(&[3, 2], 0, &[2, 0]), vec![4, 5, 0, 1]);
        assert_eq!(gather_map(&[2, 3], 1, &[1]), vec![1, 4]);
        let a = [1, 2, 3, 4];
        let b = [9, 8];
        assert_eq!(
            concat(&[(&[2, 2][..], &a[..]), (&[2, 1][..], &b[..])], 1),
            vec![1, 2, 9, 3, 4, 8]
        );
        assert_eq!(
            concat(&[(&[2, 2][..], &a[..]), (&[1, 2][..], &b[..])], 0),
            vec![1, 2, 3, 4, 9, 8]
        );
    }
}
