//! Reshape (flatten): recording and standard backward.

use crate::error::Result;
use crate::op::{Op, OpKind};
use crate::rule::RuleContext;
use crate::tape::{Tape, Var};
use sightline_tensor::{Element, Tensor};

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
