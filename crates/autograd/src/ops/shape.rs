//! Changes of shape and layout: reshape (flatten), transpose, concat,
//! slice, gather, expand and constant padding; recording and standard
//! backward.
//!
//! None of these ops keeps a value: each backward needs only the shapes and
//! the op's parameters (a slice's range, a gather's indices).

use crate::error::Result;
use crate::op::{Op, OpKind};
use crate::ops::one_input;
use crate::rule::RuleContext;
use crate::tape::{Tape, Var};
use sightline_tensor::broadcast::{expand as expand_kernel, reduce_to_shape};
use sightline_tensor::shape_ops::{
    concat as concat_kernel, gather as gather_kernel, gather_backward, inverse_perm,
    pad as pad_kernel, slice as slice_kernel, slice_backward, split, transpose as transpose_kernel,
    unpad,
};
use sightline_tensor::{Element, Tensor, TensorError};

/// A recorded reshape.
#[derive(Debug)]
pub struct ReshapeOp {
    /// The input's shape, restored by the backward pass.
    pub from: Vec<usize>,
}

/// Records a reshape of `x` to `shape` (same number of elements).
pub fn reshape<T: Element>(tape: &mut Tape<T>, x: &Var<T>, shape: &[usize]) -> Result<Var<T>> {
    let y = x
        .value()
        .clone()
        .reshape(shape.to_vec())
        .map_err(tape.kernel_err("reshape"))?;
    let from = x.shape().to_vec();
    Ok(tape.record(ReshapeOp { from }, &[x], y))
}

/// Records `torch.flatten(x, 1)`: N x (everything else).
pub fn flatten<T: Element>(tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
    let n = x.shape().first().copied().unwrap_or(1);
    let rest = x.value().len() / n.max(1);
    reshape(tape, x, &[n, rest])
}

impl ReshapeOp {
    /// [`ReshapeOp::standard`] owning `g`: relabelled, not copied.
    pub(crate) fn standard_owned<T: Element>(
        &self,
        ctx: &RuleContext<'_, T>,
        g: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        if !ctx.needs(0) {
            return Ok(vec![None]);
        }
        Ok(vec![Some(
            g.reshape(self.from.clone()).map_err(|e| ctx.kernel(e))?,
        )])
    }

    pub(crate) fn standard<T: Element>(
        &self,
        ctx: &RuleContext<'_, T>,
        g: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        if !ctx.needs(0) {
            return Ok(vec![None]);
        }
        Ok(vec![Some(
            g.clone()
                .reshape(self.from.clone())
                .map_err(|e| ctx.kernel(e))?,
        )])
    }
}

impl<T: Element> Op<T> for ReshapeOp {
    fn kind(&self) -> OpKind {
        OpKind::RESHAPE
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        self.standard(ctx, g)
    }

    fn backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        g: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        self.standard_owned(ctx, g)
    }
}

/// The shape of input `i` of the node (empty if the node has no such
/// input, which the kernels then reject).
fn input_shape<'a, T>(ctx: &RuleContext<'a, T>, i: usize) -> &'a [usize] {
    ctx.node.input_shapes.get(i).map_or(&[], Vec::as_slice)
}

/// A recorded permutation of axes.
#[derive(Debug)]
pub struct TransposeOp {
    /// The permutation that undoes the op's: the backward transposes the
    /// gradient by it.
    pub inverse: Vec<usize>,
}

/// Records `x` with its axes permuted (ONNX Transpose): output axis `i` is
/// input axis `perm[i]`. An error unless `perm` is a permutation of `x`'s
/// axes.
pub fn transpose<T: Element>(tape: &mut Tape<T>, x: &Var<T>, perm: &[usize]) -> Result<Var<T>> {
    let y = transpose_kernel(x.value(), perm).map_err(tape.kernel_err("transpose"))?;
    let inverse = inverse_perm(perm).map_err(tape.kernel_err("transpose"))?;
    Ok(tape.record(TransposeOp { inverse }, &[x], y))
}

impl<T: Element> Op<T> for TransposeOp {
    fn kind(&self) -> OpKind {
        OpKind::TRANSPOSE
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        one_input(ctx, || transpose_kernel(g, &self.inverse))
    }
}

/// A recorded concatenation.
#[derive(Debug)]
pub struct ConcatOp {
    /// The axis along which the inputs were joined.
    pub axis: usize,
    /// Each input's length along it, in order.
    pub sizes: Vec<usize>,
}

/// Records the tensors `xs` joined along `axis` (ONNX Concat): all of one
/// rank, with the same lengths on every other axis. An error for no
/// input, an axis out of range or shapes that do not fit.
pub fn concat<T: Element>(tape: &mut Tape<T>, xs: &[&Var<T>], axis: usize) -> Result<Var<T>> {
    let values: Vec<&Tensor<T>> = xs.iter().map(|v| v.value()).collect();
    let y = concat_kernel(&values, axis).map_err(tape.kernel_err("concat"))?;
    // The kernel checked that `axis` is an axis of every input.
    let sizes = xs
        .iter()
        .map(|v| v.shape().get(axis).copied().unwrap_or(0))
        .collect();
    Ok(tape.record(ConcatOp { axis, sizes }, xs, y))
}

impl ConcatOp {
    /// The gradient cut back into the inputs' parts: one pass over it
    /// ([`split`]) when every part is wanted, else a slice per wanted part
    /// (a constant joined to a feature map costs nothing).
    fn standard<T: Element>(
        &self,
        ctx: &RuleContext<'_, T>,
        g: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let n = self.sizes.len();
        if (0..n).all(|i| ctx.needs(i)) {
            let parts = split(g, self.axis, &self.sizes).map_err(|e| ctx.kernel(e))?;
            return Ok(parts.into_iter().map(Some).collect());
        }
        let mut out = Vec::with_capacity(n);
        let mut start = 0usize;
        for (i, &size) in self.sizes.iter().enumerate() {
            // The sizes add up to the gradient's axis, which exists.
            let end = start.saturating_add(size);
            out.push(if ctx.needs(i) {
                Some(slice_kernel(g, self.axis, start, end, 1).map_err(|e| ctx.kernel(e))?)
            } else {
                None
            });
            start = end;
        }
        Ok(out)
    }
}

impl<T: Element> Op<T> for ConcatOp {
    fn kind(&self) -> OpKind {
        OpKind::CONCAT
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        self.standard(ctx, g)
    }

    /// A concatenation of one tensor hands the gradient over uncopied.
    fn backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        g: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        if self.sizes.len() == 1 && g.shape() == input_shape(ctx, 0) {
            return Ok(vec![ctx.needs(0).then_some(g)]);
        }
        self.standard(ctx, &g)
    }
}

/// The positions a slice takes along its axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SliceRange {
    /// `start, start + step, ...` below `end` (a positive step).
    Ascending {
        /// The first position.
        start: usize,
        /// The bound (excluded).
        end: usize,
        /// The step, at least 1.
        step: usize,
    },
    /// The positions of a negative step, listed in the order taken (from
    /// the highest down): the slice is a gather of them.
    Descending(Vec<usize>),
}

impl SliceRange {
    /// The positions `start, start + step, ...` before `end` along an axis
    /// of length `len`, with ONNX Slice's bounds already clamped: for a
    /// positive step `0 <= start, end <= len`; for a negative one
    /// `start < len` and `end >= -1` (`-1`: down to position 0), unless
    /// the range is empty (`start <= end`). An error for a step of 0 or
    /// bounds outside these.
    pub fn new(len: usize, start: i64, end: i64, step: i64) -> sightline_tensor::Result<Self> {
        let invalid = || TensorError::InvalidParameter {
            op: "slice",
            message: format!(
                "slice {start}..{end} step {step} does not fit an axis of length {len} \
                 (a non-zero step, bounds clamped to the axis)"
            ),
        };
        if step > 0 {
            let (start, end) = (usize::try_from(start), usize::try_from(end));
            let (Ok(start), Ok(end), Ok(step)) = (start, end, usize::try_from(step)) else {
                return Err(invalid());
            };
            // The kernel checks the bounds against the axis.
            return Ok(Self::Ascending { start, end, step });
        }
        if step == 0 {
            return Err(invalid());
        }
        let (s, e, by) = (i128::from(start), i128::from(end), -i128::from(step));
        if s <= e {
            return Ok(Self::Descending(Vec::new()));
        }
        if e < -1 || s >= len as i128 {
            return Err(invalid());
        }
        // Positions s, s - by, ... above e, all within [0, len): at most
        // `len` of them.
        let n = (s - e + by - 1) / by;
        Ok(Self::Descending(
            (0..n).map(|j| (s - j * by) as usize).collect(),
        ))
    }
}

/// A recorded slice along one axis.
#[derive(Debug)]
pub struct SliceOp {
    /// The sliced axis.
    pub axis: usize,
    /// The positions taken along it.
    pub range: SliceRange,
}

/// Records the positions `start, start + step, ...` of `x` before `end`
/// along `axis` (ONNX Slice on one axis, its bounds already clamped by the
/// planner: see [`SliceRange::new`]). The step may be negative (`step =
/// -1, start = len - 1, end = -1` reverses the axis). The backward writes
/// the gradient back at the positions taken, zeros elsewhere.
pub fn slice<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    axis: usize,
    start: i64,
    end: i64,
    step: i64,
) -> Result<Var<T>> {
    let err = tape.kernel_err("slice");
    let len = *x.shape().get(axis).ok_or_else(|| {
        err(TensorError::Axis {
            op: "slice",
            axis,
            shape: x.shape().to_vec(),
        })
    })?;
    let range = SliceRange::new(len, start, end, step).map_err(&err)?;
    let y = match &range {
        SliceRange::Ascending { start, end, step } => {
            slice_kernel(x.value(), axis, *start, *end, *step)
        }
        SliceRange::Descending(at) => gather_kernel(x.value(), axis, at, &[at.len()]),
    }
    .map_err(err)?;
    Ok(tape.record(SliceOp { axis, range }, &[x], y))
}

impl<T: Element> Op<T> for SliceOp {
    fn kind(&self) -> OpKind {
        OpKind::SLICE
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let shape = input_shape(ctx, 0);
        one_input(ctx, || match &self.range {
            SliceRange::Ascending { start, end, step } => {
                slice_backward(g, shape, self.axis, *start, *end, *step)
            }
            // The positions are distinct: the scatter-add only scatters.
            SliceRange::Descending(at) => gather_backward(g, shape, self.axis, at, &[at.len()]),
        })
    }
}

/// A recorded gather by constant indices.
#[derive(Debug)]
pub struct GatherOp {
    /// The axis indexed.
    pub axis: usize,
    /// The indices (non-negative), in row-major order of their shape.
    pub indices: Vec<usize>,
    /// The shape of the indices.
    pub indices_shape: Vec<usize>,
}

/// Records the slices of `x` at `indices` along `axis` (ONNX Gather with
/// constant indices, already made non-negative): the output's shape is
/// `x.shape[..axis] ++ indices_shape ++ x.shape[axis + 1..]`. The backward
/// adds each output slice's gradient into the input slice it came from. An
/// error for an index out of range or indices that do not fill their shape.
pub fn gather<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    axis: usize,
    indices: &[usize],
    indices_shape: &[usize],
) -> Result<Var<T>> {
    let y = gather_kernel(x.value(), axis, indices, indices_shape)
        .map_err(tape.kernel_err("gather"))?;
    let op = GatherOp {
        axis,
        indices: indices.to_vec(),
        indices_shape: indices_shape.to_vec(),
    };
    Ok(tape.record(op, &[x], y))
}

impl<T: Element> Op<T> for GatherOp {
    fn kind(&self) -> OpKind {
        OpKind::GATHER
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let shape = input_shape(ctx, 0);
        one_input(ctx, || {
            gather_backward(g, shape, self.axis, &self.indices, &self.indices_shape)
        })
    }
}

/// A recorded broadcast to a larger shape.
#[derive(Debug)]
pub struct ExpandOp;

/// Records `x` broadcast to `shape` (ONNX Expand: the result's shape is the
/// broadcast of `x`'s shape and `shape`). The backward sums the gradient
/// over the broadcast axes. An error for shapes that do not broadcast.
pub fn expand<T: Element>(tape: &mut Tape<T>, x: &Var<T>, shape: &[usize]) -> Result<Var<T>> {
    let y = expand_kernel(x.value(), shape).map_err(tape.kernel_err("expand"))?;
    Ok(tape.record(ExpandOp, &[x], y))
}

impl<T: Element> Op<T> for ExpandOp {
    fn kind(&self) -> OpKind {
        OpKind::EXPAND
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let shape = input_shape(ctx, 0);
        one_input(ctx, || reduce_to_shape(g, shape))
    }

    /// An expand that changed no shape hands the gradient over uncopied.
    fn backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        g: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        if g.shape() == input_shape(ctx, 0) {
            return Ok(vec![ctx.needs(0).then_some(g)]);
        }
        self.backward(ctx, &g)
    }
}

/// A recorded constant padding.
#[derive(Debug)]
pub struct PadOp {
    /// The values added before each axis.
    pub begin: Vec<usize>,
    /// The values added after each axis.
    pub end: Vec<usize>,
}

/// Records `x` padded with `value`: `begin[d]` values before and `end[d]`
/// after along each axis `d` (ONNX Pad, constant mode, non-negative pads).
/// The backward crops the gradient back to `x`'s shape. An error unless
/// there is one pad of each kind per axis.
pub fn pad<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    begin: &[usize],
    end: &[usize],
    value: T,
) -> Result<Var<T>> {
    let y = pad_kernel(x.value(), begin, end, value).map_err(tape.kernel_err("pad"))?;
    let op = PadOp {
        begin: begin.to_vec(),
        end: end.to_vec(),
    };
    Ok(tape.record(op, &[x], y))
}

impl<T: Element> Op<T> for PadOp {
    fn kind(&self) -> OpKind {
        OpKind::PAD
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        one_input(ctx, || unpad(g, &self.begin, &self.end))
    }

    /// A padding of zeros everywhere hands the gradient over uncopied.
    fn backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        g: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        if g.shape() == input_shape(ctx, 0) {
            return Ok(vec![ctx.needs(0).then_some(g)]);
        }
        self.backward(ctx, &g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Retain, RuleSet};

    /// `x` = 0, 1, 2, ... of `shape` as an input of a new tape.
    fn iota(tape: &mut Tape<f64>, shape: &[usize]) -> Var<f64> {
        let n = shape.iter().product::<usize>();
        tape.input(Tensor::from_vec(shape.to_vec(), (0..n).map(|v| v as f64).collect()).unwrap())
    }

    /// The gradients of `wrt` for the seed `seed` (of `y`'s shape).
    fn grads(
        tape: &Tape<f64>,
        y: &Var<f64>,
        seed: Vec<f64>,
        wrt: &[&Var<f64>],
    ) -> Vec<Tensor<f64>> {
        let seed = Tensor::from_vec(y.shape().to_vec(), seed).unwrap();
        let ids: Vec<_> = wrt.iter().map(|v| v.id()).collect();
        tape.backward(y.id(), &seed, &RuleSet::standard(), &ids)
            .unwrap()
    }

    #[test]
    fn transpose_and_its_gradient() {
        let mut tape = Tape::new(Retain::Minimal);
        let x = iota(&mut tape, &[2, 3]);
        let y = transpose(&mut tape, &x, &[1, 0]).unwrap();
        assert_eq!(y.shape(), [3, 2]);
        assert_eq!(y.value().data(), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let g = grads(&tape, &y, vec![10.0, 13.0, 11.0, 14.0, 12.0, 15.0], &[&x]);
        assert_eq!(g[0].data(), [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]);
        assert!(transpose(&mut tape, &x, &[0, 0]).is_err());
    }

    /// Concat along axis 1 of `[2, 1]` and `[2, 2]`: the gradient splits
    /// back, whether both parts are wanted (one split) or one (a slice).
    #[test]
    fn concat_and_its_gradient() {
        let mut tape = Tape::new(Retain::Minimal);
        let a = iota(&mut tape, &[2, 1]);
        let b = iota(&mut tape, &[2, 2]);
        let y = concat(&mut tape, &[&a, &b], 1).unwrap();
        assert_eq!(y.shape(), [2, 3]);
        assert_eq!(y.value().data(), [0.0, 0.0, 1.0, 1.0, 2.0, 3.0]);
        let seed: Vec<f64> = (1..=6).map(f64::from).collect();
        let g = grads(&tape, &y, seed.clone(), &[&a, &b]);
        assert_eq!(g[0].data(), [1.0, 4.0]);
        assert_eq!(g[1].data(), [2.0, 3.0, 5.0, 6.0]);
        let g = grads(&tape, &y, seed, &[&b]);
        assert_eq!(g[0].data(), [2.0, 3.0, 5.0, 6.0]);
        let c = iota(&mut tape, &[3, 1]);
        assert!(concat(&mut tape, &[&a, &c], 1).is_err());
        assert!(concat::<f64>(&mut tape, &[], 0).is_err());
    }

    /// A positive step takes `start, start + step, ...`; the gradient goes
    /// back to those positions, zeros elsewhere.
    #[test]
    fn slice_with_a_positive_step() {
        let mut tape = Tape::new(Retain::Minimal);
        let x = iota(&mut tape, &[2, 5]);
        let y = slice(&mut tape, &x, 1, 1, 5, 2).unwrap();
        assert_eq!(y.shape(), [2, 2]);
        assert_eq!(y.value().data(), [1.0, 3.0, 6.0, 8.0]);
        let g = grads(&tape, &y, vec![1.0, 2.0, 3.0, 4.0], &[&x]);
        assert_eq!(
            g[0].data(),
            [0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 3.0, 0.0, 4.0, 0.0]
        );
    }

    /// A negative step runs from `start` down, above `end` (-1: down to 0,
    /// as the planner clamps a reversal).
    #[test]
    fn slice_with_a_negative_step() {
        let mut tape = Tape::new(Retain::Minimal);
        let x = iota(&mut tape, &[5]);
        let y = slice(&mut tape, &x, 0, 4, -1, -1).unwrap();
        assert_eq!(y.value().data(), [4.0, 3.0, 2.0, 1.0, 0.0]);
        let g = grads(&tape, &y, vec![1.0, 2.0, 3.0, 4.0, 5.0], &[&x]);
        assert_eq!(g[0].data(), [5.0, 4.0, 3.0, 2.0, 1.0]);
        let y = slice(&mut tape, &x, 0, 4, 0, -3).unwrap();
        assert_eq!(y.value().data(), [4.0, 1.0]);
        let g = grads(&tape, &y, vec![1.0, 2.0], &[&x]);
        assert_eq!(g[0].data(), [0.0, 2.0, 0.0, 0.0, 1.0]);
        // Empty: start at or below end.
        let y = slice(&mut tape, &x, 0, 2, 2, -1).unwrap();
        assert_eq!(y.shape(), [0]);
    }

    #[test]
    fn slice_ranges_and_their_errors() {
        assert_eq!(
            SliceRange::new(5, 1, 4, 2).unwrap(),
            SliceRange::Ascending {
                start: 1,
                end: 4,
                step: 2
            }
        );
        assert_eq!(
            SliceRange::new(5, 3, -1, -2).unwrap(),
            SliceRange::Descending(vec![3, 1])
        );
        // Extreme values are errors, not overflows.
        assert_eq!(
            SliceRange::new(5, i64::MAX, i64::MIN, i64::MIN),
            Err(TensorError::InvalidParameter {
                op: "slice",
                message: format!(
                    "slice {}..{} step {} does not fit an axis of length 5 \
                     (a non-zero step, bounds clamped to the axis)",
                    i64::MAX,
                    i64::MIN,
                    i64::MIN
                ),
            })
        );
        assert_eq!(
            SliceRange::new(5, 4, -1, i64::MIN).unwrap(),
            SliceRange::Descending(vec![4])
        );
        for (start, end, step) in [(0, 3, 0), (-1, 3, 1), (0, -2, 1), (5, 0, -1), (3, -2, -1)] {
            assert!(
                SliceRange::new(5, start, end, step).is_err(),
                "{start}..{end} step {step}"
            );
        }
        let mut tape = Tape::new(Retain::Minimal);
        let x = iota(&mut tape, &[5]);
        let err = slice(&mut tape, &x, 0, 0, 6, 1).unwrap_err();
        assert!(err.to_string().contains("slice"), "{err}");
        assert!(slice(&mut tape, &x, 1, 0, 1, 1).is_err());
        assert!(slice(&mut tape, &x, 0, 0, 1, i64::MIN).is_ok());
    }

    /// Gather along axis 1 with repeated indices of shape `[2, 2]`: the
    /// gradient adds up where an index repeats.
    #[test]
    fn gather_and_its_gradient() {
        let mut tape = Tape::new(Retain::Minimal);
        let x = iota(&mut tape, &[2, 3]);
        let y = gather(&mut tape, &x, 1, &[2, 0, 2, 2], &[2, 2]).unwrap();
        assert_eq!(y.shape(), [2, 2, 2]);
        assert_eq!(y.value().data(), [2.0, 0.0, 2.0, 2.0, 5.0, 3.0, 5.0, 5.0]);
        let g = grads(
            &tape,
            &y,
            vec![1.0, 2.0, 4.0, 8.0, 1.0, 1.0, 1.0, 1.0],
            &[&x],
        );
        assert_eq!(g[0].data(), [2.0, 0.0, 13.0, 1.0, 0.0, 3.0]);
        assert!(gather(&mut tape, &x, 1, &[3], &[1]).is_err());
        assert!(gather(&mut tape, &x, 1, &[0, 1], &[3]).is_err());
    }

    /// Expand `[2, 1]` to `[3, 2, 2]`: the gradient sums over the
    /// broadcast axes.
    #[test]
    fn expand_and_its_gradient() {
        let mut tape = Tape::new(Retain::Minimal);
        let x = iota(&mut tape, &[2, 1]);
        let y = expand(&mut tape, &x, &[3, 1, 2]).unwrap();
        assert_eq!(y.shape(), [3, 2, 2]);
        assert_eq!(y.value().data()[..4], [0.0, 0.0, 1.0, 1.0]);
        let g = grads(&tape, &y, (0..12).map(f64::from).collect(), &[&x]);
        // Row 0 of x feeds seeds 0, 1, 4, 5, 8, 9; row 1 the others.
        assert_eq!(g[0].data(), [27.0, 39.0]);
        assert!(expand(&mut tape, &x, &[3, 1]).is_err());
    }

    #[test]
    fn pad_and_its_gradient() {
        let mut tape = Tape::new(Retain::Minimal);
        let x = iota(&mut tape, &[1, 2]);
        let y = pad(&mut tape, &x, &[1, 0], &[0, 1], -1.0).unwrap();
        assert_eq!(y.shape(), [2, 3]);
        assert_eq!(y.value().data(), [-1.0, -1.0, -1.0, 0.0, 1.0, -1.0]);
        let g = grads(&tape, &y, (0..6).map(f64::from).collect(), &[&x]);
        assert_eq!(g[0].data(), [3.0, 4.0]);
        assert!(pad(&mut tape, &x, &[1], &[0, 1], 0.0).is_err());
    }

    /// The ops that may hand an owned gradient over do so only when the
    /// shapes agree, and then without copying it.
    #[test]
    fn owned_gradients_pass_through_uncopied() {
        let mut tape = Tape::new(Retain::Minimal);
        let x = iota(&mut tape, &[2, 3]);
        let ys = [
            concat(&mut tape, &[&x], 1).unwrap(),
            expand(&mut tape, &x, &[2, 3]).unwrap(),
            pad(&mut tape, &x, &[0, 0], &[0, 0], 0.0).unwrap(),
        ];
        for (node, y) in tape.nodes().iter().zip(&ys) {
            let g = Tensor::full(y.shape().to_vec(), 1.0);
            let ptr = g.data().as_ptr();
            let ctx = RuleContext {
                node,
                needs: &[true],
            };
            let out = node.op.backward_owned(&ctx, g).unwrap();
            let got = out[0].as_ref().unwrap();
            assert_eq!(got.data().as_ptr(), ptr, "{}", node.op.name());
            assert_eq!(got.shape(), [2, 3]);
        }
    }
}
