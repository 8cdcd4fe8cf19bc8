//! Shape inference: pure functions from input shapes and resolved
//! attributes to output shapes, with checked arithmetic. They return a
//! message; the caller names the node.

/// A shape-inference failure message.
pub type ShapeResult<T> = std::result::Result<T, String>;

/// The element count of `shape`, checked for overflow.
pub fn numel(shape: &[usize]) -> ShapeResult<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} has too many elements"))
}

/// `axis` in `[-rank, rank - 1]`, made non-negative.
pub fn normalize_axis(axis: i64, rank: usize) -> ShapeResult<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// `axis` in `[-rank, rank]` (an axis position between dimensions, as
/// Flatten takes), made non-negative.
pub fn normalize_position(axis: i64, rank: usize) -> ShapeResult<usize> {
    let r = rank as i64;
    if axis < -r || axis > r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// Axes normalised, sorted and checked to be distinct.
pub fn normalize_axes(axes: &[i64], rank: usize) -> ShapeResult<Vec<usize>> {
    let mut out = axes
        .iter()
        .map(|&a| normalize_axis(a, rank))
        .collect::<ShapeResult<Vec<_>>>()?;
    out.sort_unstable();
    if out.windows(2).any(|w| w[0] == w[1]) {
        return Err(format!("axes {axes:?} repeat an axis"));
    }
    Ok(out)
}

/// numpy (multidirectional) broadcasting of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> ShapeResult<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for (i, o) in out.iter_mut().enumerate() {
        let da = dim_from_right(a, rank - 1 - i);
        let db = dim_from_right(b, rank - 1 - i);
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    Ok(out)
}

/// Dimension `k` counted from the right (0 = last), 1 past the left end.
fn dim_from_right(shape: &[usize], k: usize) -> usize {
    if k < shape.len() {
        shape[shape.len() - 1 - k]
    } else {
        1
    }
}

/// Whether `from` broadcasts to `to` without changing `to`
/// (unidirectional broadcasting).
pub fn broadcasts_to(from: &[usize], to: &[usize]) -> bool {
    from.len() <= to.len()
        && (0..from.len()).all(|k| {
            let f = dim_from_right(from, k);
            f == 1 || f == dim_from_right(to, k)
        })
}

/// `auto_pad` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoPad {
    /// Explicit pads.
    NotSet,
    /// No padding.
    Valid,
    /// Output `ceil(in / stride)`, extra padding at the end.
    SameUpper,
    /// Output `ceil(in / stride)`, extra padding at the start.
    SameLower,
}

/// The (begin, end) padding `auto_pad` asks for on one spatial axis.
pub fn auto_pads(
    mode: AutoPad,
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> ShapeResult<Option<(usize, usize)>> {
    match mode {
        AutoPad::NotSet => Ok(None),
        AutoPad::Valid => Ok(Some((0, 0))),
        AutoPad::SameUpper | AutoPad::SameLower => {
            let too_big = || format!("window {kernel} dilation {dilation} is too large");
            let out = input.div_ceil(stride.max(1));
            let span = kernel
                .checked_sub(1)
                .and_then(|k| k.checked_mul(dilation))
                .and_then(|k| k.checked_add(1))
                .ok_or_else(too_big)?;
            let needed = out
                .saturating_sub(1)
                .checked_mul(stride)
                .and_then(|v| v.checked_add(span))
                .ok_or_else(too_big)?;
            let total = needed.saturating_sub(input);
            let small = total / 2;
            let large = total - small;
            Ok(Some(if mode == AutoPad::SameUpper {
                (small, large)
            } else {
                (large, small)
            }))
        }
    }
}

/// The output size of a sliding window along one axis.
///
/// `ceil_mode` rounds up and then drops a last window that would start in
/// the trailing padding (PyTorch's rule, which ONNX adopted in opset 19).
pub fn window_output(
    input: usize,
    kernel: usize,
    stride: usize,
    pad_begin: usize,
    pad_end: usize,
    dilation: usize,
    ceil_mode: bool,
) -> ShapeResult<usize> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return Err(format!(
            "kernel {kernel}, stride {stride} and dilation {dilation} must be positive"
        ));
    }
    let overflow = || "window arithmetic overflows".to_string();
    let padded = input
        .checked_add(pad_begin)
        .and_then(|v| v.checked_add(pad_end))
        .ok_or_else(overflow)?;
    let span = (kernel - 1)
        .checked_mul(dilation)
        .and_then(|v| v.checked_add(1))
        .ok_or_else(overflow)?;
    if span > padded {
        return Err(format!(
            "window of {span} (kernel {kernel}, dilation {dilation}) is larger than the padded input of {padded}"
        ));
    }
    let room = padded - span;
    let mut out = if ceil_mode {
        room.div_ceil(stride) + 1
    } else {
        room / stride + 1
    };
    if ceil_mode && (out - 1).checked_mul(stride).ok_or_else(overflow)? >= input + pad_begin {
        out -= 1;
    }
    Ok(out)
}

/// Output shape of a 2-d convolution.
#[allow(clippy::too_many_arguments)]
pub fn conv_output(
    x: &[usize],
    w: &[usize],
    bias: Option<&[usize]>,
    kernel: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    dilations: [usize; 2],
    group: usize,
) -> ShapeResult<Vec<usize>> {
    let [n, c, h, wd] = rank4(x, "input")?;
    let [m, cg, kh, kw] = rank4(w, "weight")?;
    if [kh, kw] != kernel {
        return Err(format!(
            "kernel_shape {kernel:?} does not match the weight's {:?}",
            [kh, kw]
        ));
    }
    if group == 0 {
        return Err("group must be positive".into());
    }
    if cg.checked_mul(group) != Some(c) {
        return Err(format!(
            "input has {c} channels but the weight takes {cg} per group x {group} groups"
        ));
    }
    if m % group != 0 {
        return Err(format!(
            "{m} output channels do not divide into {group} groups"
        ));
    }
    if let Some(b) = bias {
        if b != [m] {
            return Err(format!("bias shape {b:?} is not [{m}]"));
        }
    }
    let oh = window_output(h, kh, strides[0], pads[0], pads[2], dilations[0], false)?;
    let ow = window_output(wd, kw, strides[1], pads[1], pads[3], dilations[1], false)?;
    Ok(vec![n, m, oh, ow])
}

/// Output shape of a 2-d pooling window over `[N, C, H, W]`.
pub fn pool_output(
    x: &[usize],
    kernel: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    dilations: [usize; 2],
    ceil_mode: bool,
) -> ShapeResult<Vec<usize>> {
    let [n, c, h, w] = rank4(x, "input")?;
    let oh = window_output(
        h,
        kernel[0],
        strides[0],
        pads[0],
        pads[2],
        dilations[0],
        ceil_mode,
    )?;
    let ow = window_output(
        w,
        kernel[1],
        strides[1],
        pads[1],
        pads[3],
        dilations[1],
        ceil_mode,
    )?;
    Ok(vec![n, c, oh, ow])
}

/// The four dimensions of a rank-4 shape.
pub fn rank4(shape: &[usize], what: &str) -> ShapeResult<[usize; 4]> {
    match shape {
        &[a, b, c, d] => Ok([a, b, c, d]),
        _ => Err(format!(
            "{what} shape {shape:?} is not 4-d (only 2-d spatial ops are supported)"
        )),
    }
}

/// Output shape of Gemm.
pub fn gemm_output(
    a: &[usize],
    b: &[usize],
    c: Option<&[usize]>,
    trans_a: bool,
    trans_b: bool,
) -> ShapeResult<Vec<usize>> {
    let (&[a0, a1], &[b0, b1]) = (a, b) else {
        return Err(format!("operands {a:?} and {b:?} must both be 2-d"));
    };
    let (m, k) = if trans_a { (a1, a0) } else { (a0, a1) };
    let (kb, n) = if trans_b { (b1, b0) } else { (b0, b1) };
    if k != kb {
        return Err(format!(
            "inner dimensions differ: A {a:?} (transA {trans_a}) and B {b:?} (transB {trans_b})"
        ));
    }
    if let Some(c) = c {
        if !broadcasts_to(c, &[m, n]) {
            return Err(format!("C shape {c:?} does not broadcast to [{m}, {n}]"));
        }
    }
    Ok(vec![m, n])
}

/// Output shape of numpy `matmul`.
pub fn matmul_output(a: &[usize], b: &[usize]) -> ShapeResult<Vec<usize>> {
    if a.is_empty() || b.is_empty() {
        return Err(format!("operands {a:?} and {b:?} must be at least 1-d"));
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (ar, br) = (a2.len(), b2.len());
    let (m, k) = (a2[ar - 2], a2[ar - 1]);
    let (kb, n) = (b2[br - 2], b2[br - 1]);
    if k != kb {
        return Err(format!("inner dimensions differ: {a:?} x {b:?}"));
    }
    let mut out = broadcast(&a2[..ar - 2], &b2[..br - 2])
        .map_err(|_| format!("batch dimensions of {a:?} and {b:?} do not broadcast"))?;
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Ok(out)
}

/// The target of Reshape: `0` copies the input dimension (unless
/// `allowzero`), one `-1` is inferred; the element count must not change.
pub fn reshape_target(input: &[usize], spec: &[i64], allowzero: bool) -> ShapeResult<Vec<usize>> {
    let total = numel(input)?;
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            -1 if infer.is_some() => return Err(format!("shape {spec:?} has more than one -1")),
            -1 => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => {
                let copied = input.get(i).copied().ok_or_else(|| {
                    format!("shape {spec:?} copies dimension {i} the input {input:?} lacks")
                })?;
                out.push(copied);
            }
            d if d < 0 => return Err(format!("shape {spec:?} has a negative size {d}")),
            d => out.push(
                usize::try_from(d).map_err(|_| format!("size {d} does not fit this machine"))?,
            ),
        }
    }
    let known = numel(&out)?;
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return Err(format!(
                "cannot reshape {input:?} ({total} elements) to {spec:?}"
            ));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!(
            "cannot reshape {input:?} ({total} elements) to {spec:?} ({known} elements)"
        ));
    }
    Ok(out)
}

/// Flatten's 2-d output: dimensions before `axis` and from `axis` on.
pub fn flatten_output(input: &[usize], axis: i64) -> ShapeResult<Vec<usize>> {
    let axis = normalize_position(axis, input.len())?;
    Ok(vec![numel(&input[..axis])?, numel(&input[axis..])?])
}

/// Squeeze: remove the given axes (each of size 1), or every size-1 axis.
pub fn squeeze_output(input: &[usize], axes: Option<&[i64]>) -> ShapeResult<Vec<usize>> {
    match axes {
        None => Ok(input.iter().copied().filter(|&d| d != 1).collect()),
        Some(axes) => {
            let axes = normalize_axes(axes, input.len())?;
            if let Some(&a) = axes.iter().find(|&&a| input[a] != 1) {
                return Err(format!(
                    "cannot squeeze axis {a} of size {} in {input:?}",
                    input[a]
                ));
            }
            Ok(input
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect())
        }
    }
}

/// Unsqueeze: insert size-1 axes at the given positions of the output.
pub fn unsqueeze_output(input: &[usize], axes: &[i64]) -> ShapeResult<Vec<usize>> {
    let rank = input.len().checked_add(axes.len()).ok_or("too many axes")?;
    let axes = normalize_axes(axes, rank)?;
    let mut rest = input.iter();
    Ok((0..rank)
        .map(|i| {
            if axes.contains(&i) {
                1
            } else {
                rest.next().copied().unwrap_or(1)
            }
        })
        .collect())
}

/// Transpose's permutation (reversed axes by default), checked.
pub fn transpose_perm(rank: usize, perm: Option<&[i64]>) -> ShapeResult<Vec<usize>> {
    let Some(perm) = perm else {
        return Ok((0..rank).rev().collect());
    };
    if perm.len() != rank {
        return Err(format!("perm {perm:?} does not have {rank} axes"));
    }
    let out = perm
        .iter()
        .map(|&p| normalize_axis(p, rank))
        .collect::<ShapeResult<Vec<_>>>()?;
    let mut seen = vec![false; rank];
    for &p in &out {
        if std::mem::replace(&mut seen[p], true) {
            return Err(format!("perm {perm:?} is not a permutation"));
        }
    }
    Ok(out)
}

/// The shape `input` takes under `perm`.
pub fn permute(input: &[usize], perm: &[usize]) -> Vec<usize> {
    perm.iter()
        .map(|&p| input.get(p).copied().unwrap_or(0))
        .collect()
}

/// Concat's output: equal ranks, equal dimensions off `axis`.
pub fn concat_output(shapes: &[&[usize]], axis: usize) -> ShapeResult<Vec<usize>> {
    let Some(first) = shapes.first() else {
        return Err("no inputs".into());
    };
    if axis >= first.len() {
        return Err(format!("axis {axis} is out of range for {first:?}"));
    }
    let mut out = first.to_vec();
    for s in &shapes[1..] {
        let fits = s.len() == first.len()
            && s.iter()
                .zip(first.iter())
                .enumerate()
                .all(|(i, (a, b))| i == axis || a == b);
        if !fits {
            return Err(format!("shapes {first:?} and {s:?} differ off axis {axis}"));
        }
        out[axis] = out[axis]
            .checked_add(s[axis])
            .ok_or("concatenated size overflows")?;
    }
    Ok(out)
}

/// Split sizes: explicit sizes, `num_outputs` parts of `ceil(dim / n)`
/// (the last smaller), or `outputs` equal parts.
pub fn split_sizes(
    dim: usize,
    split: Option<&[i64]>,
    num_outputs: Option<usize>,
    outputs: usize,
) -> ShapeResult<Vec<usize>> {
    let sizes: Vec<usize> = if let Some(split) = split {
        split
            .iter()
            .map(|&s| usize::try_from(s).map_err(|_| format!("split sizes {split:?} are negative")))
            .collect::<ShapeResult<_>>()?
    } else if let Some(n) = num_outputs {
        if n == 0 || n > dim.max(1) {
            return Err(format!("cannot split {dim} into {n} parts"));
        }
        let chunk = dim.div_ceil(n);
        let mut left = dim;
        (0..n)
            .map(|_| {
                let s = chunk.min(left);
                left -= s;
                s
            })
            .collect()
    } else {
        if outputs == 0 || !dim.is_multiple_of(outputs) {
            return Err(format!("cannot split {dim} into {outputs} equal parts"));
        }
        vec![dim / outputs; outputs]
    };
    if sizes.len() != outputs {
        return Err(format!("{} split sizes for {outputs} outputs", sizes.len()));
    }
    let sum = sizes
        .iter()
        .try_fold(0usize, |a, &s| a.checked_add(s))
        .ok_or("split sizes overflow")?;
    if sum != dim {
        return Err(format!(
            "split sizes {sizes:?} sum to {sum}, not the axis' {dim}"
        ));
    }
    Ok(sizes)
}

/// One axis of a Slice, clamped as ONNX does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceAxis {
    /// The axis.
    pub axis: usize,
    /// First index.
    pub start: i64,
    /// One past the last index, in the direction of `step`.
    pub end: i64,
    /// Step (non-zero).
    pub step: i64,
    /// Number of elements taken.
    pub len: usize,
}

impl SliceAxis {
    /// Whether the slice keeps the whole axis of size `dim` in order.
    pub fn is_whole(&self, dim: usize) -> bool {
        self.step == 1 && self.start == 0 && self.len == dim
    }
}

/// Slice bounds for each listed axis, clamped (`starts`, `ends`, `axes`,
/// `steps` are Slice's inputs; missing axes are `0..`, missing steps 1).
pub fn slice_axes(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> ShapeResult<Vec<SliceAxis>> {
    let n = starts.len();
    if ends.len() != n || axes.is_some_and(|a| a.len() != n) || steps.is_some_and(|s| s.len() != n)
    {
        return Err("starts, ends, axes and steps differ in length".into());
    }
    let default_axes: Vec<i64> = (0..n as i64).collect();
    let axes_in = axes.unwrap_or(&default_axes);
    let mut seen = Vec::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let axis = normalize_axis(axes_in[i], shape.len())?;
        if seen.contains(&axis) {
            return Err(format!("axis {axis} is sliced twice"));
        }
        seen.push(axis);
        let step = steps.map_or(1, |s| s[i]);
        if step == 0 {
            return Err("a step of 0".into());
        }
        let dim = shape[axis] as i128;
        let resolve = |v: i64| -> i128 {
            let v = v as i128;
            if v < 0 {
                v + dim
            } else {
                v
            }
        };
        let (start, end) = if step > 0 {
            (
                resolve(starts[i]).clamp(0, dim),
                resolve(ends[i]).clamp(0, dim),
            )
        } else {
            (
                resolve(starts[i]).clamp(0, dim - 1),
                resolve(ends[i]).clamp(-1, dim - 1),
            )
        };
        let step128 = step as i128;
        let len = if step > 0 {
            if end > start {
                (end - start + step128 - 1) / step128
            } else {
                0
            }
        } else if start > end {
            (start - end + (-step128) - 1) / (-step128)
        } else {
            0
        };
        // Everything here is within [-1, dim] or [0, dim], so it fits i64.
        let (start, end) = if len == 0 {
            (start.max(0), start.max(0))
        } else {
            (start, end)
        };
        out.push(SliceAxis {
            axis,
            start: start as i64,
            end: end as i64,
            step,
            len: len as usize,
        });
    }
    Ok(out)
}

/// Gather's output shape.
pub fn gather_output(data: &[usize], axis: usize, indices_shape: &[usize]) -> Vec<usize> {
    let mut out = data[..axis].to_vec();
    out.extend_from_slice(indices_shape);
    out.extend_from_slice(&data[axis + 1..]);
    out
}

/// Indices resolved against an axis of size `dim` (negative from the end).
pub fn resolve_indices(indices: &[i64], dim: usize) -> ShapeResult<Vec<usize>> {
    indices
        .iter()
        .map(|&i| {
            let d = dim as i128;
            let r = if i < 0 { i as i128 + d } else { i as i128 };
            if (0..d).contains(&r) {
                Ok(r as usize)
            } else {
                Err(format!("index {i} is out of range for an axis of {dim}"))
            }
        })
        .collect()
}

/// The shape after reducing `axes` (normalised).
pub fn reduce_output(input: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    input
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| {
            if !axes.contains(&i) {
                Some(d)
            } else if keepdims {
                Some(1)
            } else {
                None
            }
        })
        .collect()
}

/// A shape given as an integer tensor (Expand's, ConstantOfShape's), checked
/// non-negative.
pub fn dims_from_ints(values: &[i64]) -> ShapeResult<Vec<usize>> {
    values
        .iter()
        .map(|&v| usize::try_from(v).map_err(|_| format!("shape {values:?} has a negative size")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn broadcasting() {
        assert_eq!(broadcast(&[2, 1, 4], &[3, 1]).unwrap(), vec![2, 3, 4]);
        assert_eq!(broadcast(&[], &[5]).unwrap(), vec![5]);
        assert!(broadcast(&[2, 3], &[4, 3]).is_err());
        assert!(broadcasts_to(&[16, 1, 1], &[1, 16, 8, 8]));
        assert!(!broadcasts_to(&[1, 16, 8, 8], &[16, 1, 1]));
    }

    #[test]
    fn windows_floor_and_ceil() {
        // 112 -> 56 with a 3x3 window, stride 2, pad 1 (ResNet's max pool).
        assert_eq!(window_output(112, 3, 2, 1, 1, 1, false).unwrap(), 56);
        // SqueezeNet: 31, k3 s2, ceil -> 15; floor -> 15; 32 -> ceil 16, floor 15.
        assert_eq!(window_output(32, 3, 2, 0, 0, 1, true).unwrap(), 16);
        assert_eq!(window_output(32, 3, 2, 0, 0, 1, false).unwrap(), 15);
        // The last window may not start in the trailing padding.
        assert_eq!(window_output(5, 2, 2, 1, 1, 1, true).unwrap(), 3);
        assert_eq!(window_output(4, 2, 2, 1, 1, 1, true).unwrap(), 3);
        assert_eq!(window_output(3, 3, 3, 1, 1, 1, true).unwrap(), 2);
        // Dilation widens the window.
        assert_eq!(window_output(10, 3, 1, 0, 0, 2, false).unwrap(), 6);
        let e = window_output(2, 5, 1, 1, 1, 1, false).unwrap_err();
        assert!(e.contains("larger than the padded input of 4"), "{e}");
        assert!(window_output(2, 1, 0, 0, 0, 1, false).is_err());
    }

    #[test]
    fn same_padding() {
        assert_eq!(
            auto_pads(AutoPad::SameUpper, 5, 4, 1, 1).unwrap(),
            Some((1, 2))
        );
        assert_eq!(
            auto_pads(AutoPad::SameLower, 5, 4, 1, 1).unwrap(),
            Some((2, 1))
        );
        assert_eq!(auto_pads(AutoPad::Valid, 5, 4, 1, 1).unwrap(), Some((0, 0)));
        assert_eq!(auto_pads(AutoPad::NotSet, 5, 4, 1, 1).unwrap(), None);
        // stride 2 on 7: out 4, needs 3*2+3 = 9, pads 2.
        assert_eq!(
            auto_pads(AutoPad::SameUpper, 7, 3, 2, 1).unwrap(),
            Some((1, 1))
        );
    }

    #[test]
    fn convolution() {
        let out = conv_output(
            &[2, 3, 48, 64],
            &[8, 3, 3, 3],
            None,
            [3, 3],
            [2, 2],
            [1, 1, 1, 1],
            [1, 1],
            1,
        )
        .unwrap();
        assert_eq!(out, vec![2, 8, 24, 32]);
        // Depthwise.
        let out = conv_output(
            &[1, 8, 5, 5],
            &[8, 1, 3, 3],
            Some(&[8]),
            [3, 3],
            [1, 1],
            [0, 0, 0, 0],
            [1, 1],
            8,
        )
        .unwrap();
        assert_eq!(out, vec![1, 8, 3, 3]);
        let e = conv_output(
            &[1, 4, 5, 5],
            &[8, 3, 3, 3],
            None,
            [3, 3],
            [1, 1],
            [0; 4],
            [1, 1],
            1,
        )
        .unwrap_err();
        assert!(e.contains("4 channels"), "{e}");
        assert!(conv_output(
            &[1, 3, 5],
            &[8, 3, 3, 3],
            None,
            [3, 3],
            [1, 1],
            [0; 4],
            [1, 1],
            1
        )
        .is_err());
        assert!(conv_output(
            &[1, 3, 5, 5],
            &[8, 3, 3, 3],
            Some(&[7]),
            [3, 3],
            [1, 1],
            [0; 4],
            [1, 1],
            1
        )
        .is_err());
    }

    #[test]
    fn matmul_and_gemm() {
        assert_eq!(
            matmul_output(&[17, 2, 16], &[16, 48]).unwrap(),
            vec![17, 2, 48]
        );
        assert_eq!(
            matmul_output(&[2, 2, 17, 8], &[2, 2, 8, 17]).unwrap(),
            vec![2, 2, 17, 17]
        );
        assert_eq!(matmul_output(&[3], &[3, 4]).unwrap(), vec![4]);
        assert_eq!(matmul_output(&[2, 3], &[3]).unwrap(), vec![2]);
        assert_eq!(matmul_output(&[3], &[3]).unwrap(), Vec::<usize>::new());
        assert_eq!(
            matmul_output(&[5, 1, 2, 3], &[4, 3, 6]).unwrap(),
            vec![5, 4, 2, 6]
        );
        assert!(matmul_output(&[2, 3], &[4, 5]).is_err());
        assert_eq!(
            gemm_output(&[34, 16], &[48, 16], Some(&[48]), false, true).unwrap(),
            vec![34, 48]
        );
        assert!(gemm_output(&[34, 16], &[48, 16], None, false, false).is_err());
        assert!(gemm_output(&[2, 3], &[3, 4], Some(&[3]), false, false).is_err());
    }

    #[test]
    fn reshapes() {
        assert_eq!(
            reshape_target(&[2, 16, 4, 4], &[2, 16, -1], false).unwrap(),
            vec![2, 16, 16]
        );
        assert_eq!(
            reshape_target(&[2, 16, 4, 4], &[0, -1], false).unwrap(),
            vec![2, 256]
        );
        assert!(reshape_target(&[1, 16, 4, 4], &[2, 16, 16], true).is_err());
        assert!(reshape_target(&[4], &[-1, -1], false).is_err());
        assert!(reshape_target(&[4], &[-2], false).is_err());
        assert!(reshape_target(&[0, 4], &[0, -1], true).is_err());
        assert_eq!(reshape_target(&[0, 4], &[0, 4], true).unwrap(), vec![0, 4]);
        assert_eq!(flatten_output(&[2, 8, 1, 1], 1).unwrap(), vec![2, 8]);
        assert_eq!(flatten_output(&[2, 8], 0).unwrap(), vec![1, 16]);
        assert_eq!(
            squeeze_output(&[3, 1, 2, 1], Some(&[-1])).unwrap(),
            vec![3, 1, 2]
        );
        assert_eq!(squeeze_output(&[3, 1, 2, 1], None).unwrap(), vec![3, 2]);
        assert!(squeeze_output(&[3, 1], Some(&[0])).is_err());
        assert_eq!(
            unsqueeze_output(&[3, 4], &[0, -1]).unwrap(),
            vec![1, 3, 4, 1]
        );
        assert!(unsqueeze_output(&[3], &[0, 0]).is_err());
    }

    #[test]
    fn transposes_and_concats() {
        assert_eq!(transpose_perm(3, None).unwrap(), vec![2, 1, 0]);
        assert_eq!(transpose_perm(3, Some(&[0, 2, 1])).unwrap(), vec![0, 2, 1]);
        assert!(transpose_perm(3, Some(&[0, 0, 1])).is_err());
        assert!(transpose_perm(2, Some(&[0, 1, 2])).is_err());
        assert_eq!(permute(&[2, 3, 4], &[2, 0, 1]), vec![4, 2, 3]);
        assert_eq!(concat_output(&[&[2, 3], &[2, 5]], 1).unwrap(), vec![2, 8]);
        assert!(concat_output(&[&[2, 3], &[3, 5]], 1).is_err());
        assert!(concat_output(&[&[2, 3], &[2, 3, 1]], 0).is_err());
    }

    #[test]
    fn splits() {
        assert_eq!(split_sizes(16, None, Some(2), 2).unwrap(), vec![8, 8]);
        assert_eq!(split_sizes(7, None, Some(3), 3).unwrap(), vec![3, 3, 1]);
        assert_eq!(split_sizes(6, Some(&[1, 5]), None, 2).unwrap(), vec![1, 5]);
        assert_eq!(split_sizes(6, None, None, 3).unwrap(), vec![2, 2, 2]);
        assert!(split_sizes(7, None, None, 2).is_err());
        assert!(split_sizes(6, Some(&[1, 4]), None, 2).is_err());
        assert!(split_sizes(6, Some(&[-1, 7]), None, 2).is_err());
        assert!(split_sizes(6, Some(&[6]), None, 2).is_err());
    }

    #[test]
    fn slices_clamp_as_onnx() {
        let s = slice_axes(&[10], &[2], &[i64::MAX], None, None).unwrap();
        assert_eq!(
            s[0],
            SliceAxis {
                axis: 0,
                start: 2,
                end: 10,
                step: 1,
                len: 8
            }
        );
        let s = slice_axes(&[10], &[-3], &[-1], Some(&[-1]), Some(&[1])).unwrap();
        assert_eq!((s[0].start, s[0].end, s[0].len), (7, 9, 2));
        // Reverse the whole axis.
        let s = slice_axes(&[5], &[-1], &[i64::MIN], None, Some(&[-1])).unwrap();
        assert_eq!((s[0].start, s[0].end, s[0].len), (4, -1, 5));
        let s = slice_axes(&[10], &[0], &[10], None, Some(&[3])).unwrap();
        assert_eq!(s[0].len, 4);
        let s = slice_axes(&[10], &[8], &[2], None, None).unwrap();
        assert_eq!((s[0].start, s[0].end, s[0].len), (8, 8, 0));
        assert!(slice_axes(&[10], &[0], &[1], None, Some(&[0])).is_err());
        assert!(slice_axes(&[10, 2], &[0, 0], &[1, 1], Some(&[0, -2]), None).is_err());
        assert!(slice_axes(&[10], &[0], &[1, 2], None, None).is_err());
        assert!(s[0].len == 0 && !s[0].is_whole(10));
    }

    #[test]
    fn gathers_and_reductions() {
        assert_eq!(gather_output(&[2, 17, 16], 1, &[]), vec![2, 16]);
        assert_eq!(gather_output(&[3, 17], 0, &[2, 2]), vec![2, 2, 17]);
        assert_eq!(resolve_indices(&[-1, 0], 3).unwrap(), vec![2, 0]);
        assert!(resolve_indices(&[3], 3).is_err());
        assert!(resolve_indices(&[-4], 3).is_err());
        assert_eq!(normalize_axes(&[-1, -2], 4).unwrap(), vec![2, 3]);
        assert!(normalize_axes(&[1, -3], 4).is_err());
        assert_eq!(
            reduce_output(&[2, 3, 4, 5], &[2, 3], true),
            vec![2, 3, 1, 1]
        );
        assert_eq!(reduce_output(&[2, 3, 4, 5], &[2, 3], false), vec![2, 3]);
        assert!(dims_from_ints(&[2, -1]).is_err());
        assert!(numel(&[usize::MAX, 2]).is_err());
    }

    proptest! {
        /// Every window lies inside the padded input, and in ceil mode
        /// every window starts inside the input or its leading padding
        /// (for pads of at most half the window, as PyTorch allows).
        #[test]
        fn windows_stay_inside(input in 1usize..40, k in 1usize..6, s in 1usize..4,
                               pb in 0usize..3, pe in 0usize..3, d in 1usize..3, ceil: bool) {
            // PyTorch's bound on padding: at most half the window.
            let half = ((k - 1) * d).div_ceil(2);
            prop_assume!(pb <= half && pe <= half);
            if let Ok(out) = window_output(input, k, s, pb, pe, d, ceil) {
                prop_assert!(out >= 1);
                let last_start = (out - 1) * s;
                if ceil {
                    prop_assert!(last_start < input + pb);
                } else {
                    prop_assert!(last_start + (k - 1) * d < input + pb + pe);
                }
            }
        }

        /// A slice takes exactly the indices a loop over the clamped bounds
        /// visits.
        #[test]
        fn slices_match_python_ranges(dim in 1usize..12, start in -15i64..15, end in -15i64..15,
                                      step in prop_oneof![-4i64..=-1, 1i64..=4]) {
            let s = slice_axes(&[dim], &[start], &[end], None, Some(&[step])).unwrap()[0];
            let d = dim as i64;
            let expected: Vec<i64> = {
                let norm = |v: i64, lo: i64, hi: i64| {
                    let v = if v < 0 { v + d } else { v };
                    v.clamp(lo, hi)
                };
                // ONNX clamps a negative step's start to [0, dim - 1].
                let (a, b) = if step > 0 { (norm(start, 0, d), norm(end, 0, d)) }
                             else { (norm(start, 0, d - 1), norm(end, -1, d - 1)) };
                let mut v = Vec::new();
                let mut i = a;
                while (step > 0 && i < b) || (step < 0 && i > b) { v.push(i); i += step; }
                v
            };
            prop_assert_eq!(s.len, expected.len());
            if let Some(&first) = expected.first() { prop_assert_eq!(s.start, first); }
        }
    }
}
