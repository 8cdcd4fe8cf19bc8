//! Batch norm in inference: recording, standard backward, excitation rule (identity).

use crate::error::Result;
use crate::op::{Op, OpKind};
use crate::rule::{Rule, RuleContext};
use crate::tape::{Tape, Var};
use sightline_tensor::norm::{batch_norm as bn_kernel, batch_norm_backward_input, BatchNormAffine};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// A recorded batch norm: its per-channel affine form.
#[derive(Debug)]
pub struct BatchNormOp<T> {
    /// Scale and shift per channel (shared with the layer).
    pub affine: Arc<BatchNormAffine<T>>,
}

/// Records an inference batch norm.
pub fn batch_norm<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    affine: &Arc<BatchNormAffine<T>>,
) -> Result<Var<T>> {
    let y = bn_kernel(x.value(), affine).map_err(tape.kernel_err("batch_norm"))?;
    let affine = affine.clone();
    Ok(tape.record(BatchNormOp { affine }, &[x], y))
}

impl<T: Element> BatchNormOp<T> {
    pub(crate) fn standard(
        &self,
        ctx: &RuleContext<'_, T>,
        g: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        if !ctx.needs(0) {
            return Ok(vec![None]);
        }
        Ok(vec![Some(
            batch_norm_backward_input(g, &self.affine).map_err(|e| ctx.kernel(e))?,
        )])
    }
}

impl<T: Element> Op<T> for BatchNormOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::BATCH_NORM
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        self.standard(ctx, g)
    }
}

/// Excitation backprop through batch norm: the gradient passes unchanged (TorchRay).
#[derive(Clone, Copy, Debug, Default)]
pub struct ExcitationBatchNorm;

impl<T: Element> Rule<T> for ExcitationBatchNorm {
    fn name(&self) -> &str {
        "excitation_batch_norm"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        ctx.op::<BatchNormOp<T>>(Rule::<T>::name(self))?;
        Ok(vec![ctx.needs(0).then(|| g.clone())])
    }

    fn backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        g: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        ctx.op::<BatchNormOp<T>>(Rule::<T>::name(self))?;
        Ok(vec![ctx.needs(0).then_some(g)])
    }
}
