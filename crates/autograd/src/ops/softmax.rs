//! Log-softmax over the last axis: recording and standard backward.

use crate::error::Result;
use crate::op::{Op, OpKind};
use crate::rule::RuleContext;
use crate::tape::{Tape, Var};
use sightline_tensor::softmax::{log_softmax as ls_kernel, log_softmax_backward};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// A recorded log-softmax: its output, from which the backward pass derives the softmax.
#[derive(Debug)]
pub struct LogSoftmaxOp<T> {
    /// The log-softmax values.
    pub output: Arc<Tensor<T>>,
}

/// Records the log-softmax of `x` over its last axis.
pub fn log_softmax<T: Element>(tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
    let y = ls_kernel(x.value()).map_err(tape.kernel_err("log_softmax"))?;
    Ok(tape.record_keeping_output(|output| LogSoftmaxOp { output }, &[x], y))
}

impl<T: Element> LogSoftmaxOp<T> {
    pub(crate) fn standard(
        &self,
        ctx: &RuleContext<'_, T>,
        g: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        if !ctx.needs(0) {
            return Ok(vec![None]);
        }
        Ok(vec![Some(
            log_softmax_backward(g, &self.output).map_err(|e| ctx.kernel(e))?,
        )])
    }
}

impl<T: Element> Op<T> for LogSoftmaxOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::LOG_SOFTMAX
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        self.standard(ctx, g)
    }
}
