//! Sum and mean over one axis: recording and standard backward.

use crate::error::Result;
use crate::op::{Op, OpKind};
use crate::rule::RuleContext;
use crate::tape::{Tape, Var};
use sightline_tensor::reduce::{expand_axis, mean_axis as mean_kernel, sum_axis as sum_kernel};
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
