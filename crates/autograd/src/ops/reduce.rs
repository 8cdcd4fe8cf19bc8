//! Sum and mean over one axis, mean over several: recording and standard
//! backward.

use crate::error::Result;
use crate::op::{Op, OpKind};
use crate::rule::RuleContext;
use crate::tape::{Tape, Var};
use sightline_tensor::reduce::{expand_axis, mean_axis as mean_kernel, sum_axis as sum_kernel};
use sightline_tensor::reduce_axes::{mean_axes as mean_axes_kernel, mean_axes_backward};
use sightline_tensor::{Element, Tensor};

/// A recorded reduction over one axis (kept with length 1).
#[derive(Debug)]
pub struct ReduceOp {
    /// The reduced axis.
    pub axis: usize,
    /// Its length in the input.
    pub len: usize,
}

/// A recorded sum over one axis.
#[derive(Debug)]
pub struct SumAxisOp(pub ReduceOp);

/// A recorded mean over one axis.
#[derive(Debug)]
pub struct MeanAxisOp(pub ReduceOp);

impl<T: Element> Op<T> for SumAxisOp {
    fn kind(&self) -> OpKind {
        OpKind::SUM_AXIS
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        self.0.standard_sum(ctx, g)
    }
}

impl<T: Element> Op<T> for MeanAxisOp {
    fn kind(&self) -> OpKind {
        OpKind::MEAN_AXIS
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        self.0.standard_mean(ctx, g)
    }
}

/// Records the sum over `axis`.
pub fn sum_axis<T: Element>(tape: &mut Tape<T>, x: &Var<T>, axis: usize) -> Result<Var<T>> {
    let y = sum_kernel(x.value(), axis).map_err(tape.kernel_err("sum_axis"))?;
    let len = x.shape()[axis];
    Ok(tape.record(SumAxisOp(ReduceOp { axis, len }), &[x], y))
}

/// Records the mean over `axis`.
pub fn mean_axis<T: Element>(tape: &mut Tape<T>, x: &Var<T>, axis: usize) -> Result<Var<T>> {
    let y = mean_kernel(x.value(), axis).map_err(tape.kernel_err("mean_axis"))?;
    let len = x.shape()[axis];
    Ok(tape.record(MeanAxisOp(ReduceOp { axis, len }), &[x], y))
}

impl ReduceOp {
    pub(crate) fn standard_sum<T: Element>(
        &self,
        ctx: &RuleContext<'_, T>,
        g: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        if !ctx.needs(0) {
            return Ok(vec![None]);
        }
        Ok(vec![Some(
            expand_axis(g, self.axis, self.len).map_err(|e| ctx.kernel(e))?,
        )])
    }

    pub(crate) fn standard_mean<T: Element>(
        &self,
        ctx: &RuleContext<'_, T>,
        g: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        if !ctx.needs(0) {
            return Ok(vec![None]);
        }
        let n = T::from_usize(self.len).unwrap_or_else(T::one);
        let gx = expand_axis(g, self.axis, self.len).map_err(|e| ctx.kernel(e))?;
        Ok(vec![Some(gx.map(|v| v / n))])
    }
}

/// A recorded mean over several axes.
#[derive(Debug)]
pub struct MeanAxesOp {
    /// The reduced axes, strictly increasing.
    pub axes: Vec<usize>,
    /// Whether they were kept with length 1.
    pub keepdims: bool,
}

/// Records the mean of `x` over `axes` (strictly increasing; ONNX
/// ReduceMean), the reduced axes kept with length 1 when `keepdims`, else
/// removed. The backward spreads the gradient evenly over the elements
/// each mean averaged. An error for an axis out of range, axes not strictly
/// increasing, or a reduced axis of length 0.
pub fn mean_axes<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    axes: &[usize],
    keepdims: bool,
) -> Result<Var<T>> {
    let y = mean_axes_kernel(x.value(), axes, keepdims).map_err(tape.kernel_err("mean_axes"))?;
    let op = MeanAxesOp {
        axes: axes.to_vec(),
        keepdims,
    };
    Ok(tape.record(op, &[x], y))
}

impl<T: Element> Op<T> for MeanAxesOp {
    fn kind(&self) -> OpKind {
        OpKind::MEAN_AXES
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        if !ctx.needs(0) {
            return Ok(vec![None]);
        }
        let shape = ctx.node.input_shapes.first().map_or(&[][..], Vec::as_slice);
        Ok(vec![Some(
            mean_axes_backward(g, shape, &self.axes, self.keepdims).map_err(|e| ctx.kernel(e))?,
        )])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Retain, RuleSet};

    /// The mean of a `[2, 3, 2]` tensor over axes 0 and 2, kept or not:
    /// values and a gradient spread evenly over the four elements of each
    /// mean, by hand.
    #[test]
    fn mean_over_several_axes() {
        for keepdims in [true, false] {
            let mut tape = Tape::new(Retain::Minimal);
            let x =
                tape.input(Tensor::from_vec([2, 3, 2], (0..12).map(f64::from).collect()).unwrap());
            let y = mean_axes(&mut tape, &x, &[0, 2], keepdims).unwrap();
            let out_shape = if keepdims { vec![1, 3, 1] } else { vec![3] };
            assert_eq!(y.shape(), out_shape);
            // x[i, j, k] = 6 i + 2 j + k: mean over i, k = 3 + 2 j + 0.5.
            assert_eq!(y.value().data(), [3.5, 5.5, 7.5]);
            let seed = Tensor::from_vec(out_shape, vec![4.0, 8.0, -4.0]).unwrap();
            let g = tape
                .backward(y.id(), &seed, &RuleSet::standard(), &[x.id()])
                .unwrap()
                .remove(0);
            assert_eq!(g.shape(), [2, 3, 2]);
            let want = [1.0, 1.0, 2.0, 2.0, -1.0, -1.0];
            assert_eq!(g.data()[..6], want);
            assert_eq!(g.data()[6..], want);
            assert_eq!(tape.nodes()[0].op.kind(), OpKind::MEAN_AXES);
        }
    }

    #[test]
    fn bad_axes_are_an_error() {
        let mut tape = Tape::<f64>::new(Retain::Minimal);
        let x = tape.input(Tensor::zeros([2, 3]));
        assert!(mean_axes(&mut tape, &x, &[2], false).is_err());
        assert!(mean_axes(&mut tape, &x, &[1, 0], false).is_err());
    }
}
