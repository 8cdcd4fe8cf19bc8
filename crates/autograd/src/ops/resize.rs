//! Resize (bilinear or nearest, `align_corners = False`): recording and standard backward.

use crate::error::Result;
use crate::op::{Op, OpKind};
use crate::rule::RuleContext;
use crate::tape::{Tape, Var};
use sightline_tensor::resize::{resize2d, resize2d_backward};
use sightline_tensor::{Element, ResizeMode, Tensor};

/// A recorded resize.
#[derive(Debug)]
pub struct ResizeOp {
    /// The interpolation.
    pub mode: ResizeMode,
}

/// Records a resize of an N x C x H x W tensor to `out_hw`.
pub fn resize<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    out_hw: (usize, usize),
    mode: ResizeMode,
) -> Result<Var<T>> {
    let y = resize2d(x.value(), out_hw, mode).map_err(tape.kernel_err("resize"))?;
    Ok(tape.record(ResizeOp { mode }, &[x], y))
}

impl ResizeOp {
    pub(crate) fn standard<T: Element>(
        &self,
        ctx: &RuleContext<'_, T>,
        g: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        if !ctx.needs(0) {
            return Ok(vec![None]);
        }
        let s = &ctx.node.input_shapes[0];
        Ok(vec![Some(
            resize2d_backward(g, (s[2], s[3]), self.mode).map_err(|e| ctx.kernel(e))?,
        )])
    }
}

impl<T: Element> Op<T> for ResizeOp {
    fn kind(&self) -> OpKind {
        OpKind::RESIZE
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        self.standard(ctx, g)
    }
}
