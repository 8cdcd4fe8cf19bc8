//! Log-softmax over the last axis and softmax over any axis: recording and
//! standard backward.

use crate::error::Result;
use crate::op::{Op, OpKind};
use crate::rule::RuleContext;
use crate::tape::{Tape, Var};
use sightline_tensor::softmax::{log_softmax as ls_kernel, log_softmax_backward};
use sightline_tensor::softmax_axis::{softmax as softmax_kernel, softmax_backward};
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

/// A recorded softmax along one axis.
#[derive(Debug)]
pub struct SoftmaxOp<T> {
    /// The axis normalised.
    pub axis: usize,
    /// The softmax values `y` (the buffer the output variable holds).
    pub output: Arc<Tensor<T>>,
}

/// Records the softmax of `x` along `axis` (ONNX Softmax, opset 13 on).
/// Its backward, `y * (g - sum(g * y))` with the sum along the axis, reads
/// the output, which the op shares with the returned variable (no copy).
/// An error for an axis out of range.
pub fn softmax<T: Element>(tape: &mut Tape<T>, x: &Var<T>, axis: usize) -> Result<Var<T>> {
    let y = softmax_kernel(x.value(), axis).map_err(tape.kernel_err("softmax"))?;
    Ok(tape.record_keeping_output(|output| SoftmaxOp { axis, output }, &[x], y))
}

impl<T: Element> Op<T> for SoftmaxOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::SOFTMAX
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        if !ctx.needs(0) {
            return Ok(vec![None]);
        }
        Ok(vec![Some(
            softmax_backward(g, &self.output, self.axis).map_err(|e| ctx.kernel(e))?,
        )])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Retain, RuleSet};

    /// Softmax over the first axis of a `[2, 2]` tensor (columns): values
    /// and gradient by hand, and the op keeps the output variable's buffer.
    #[test]
    fn softmax_along_a_leading_axis() {
        let mut tape = Tape::new(Retain::Minimal);
        let l3 = 3.0f64.ln();
        // Column 0: [0, ln 3] -> [1/4, 3/4]; column 1: [5, 5] -> [1/2, 1/2].
        let x = tape.input(Tensor::from_vec([2, 2], vec![0.0, 5.0, l3, 5.0]).unwrap());
        let y = softmax(&mut tape, &x, 0).unwrap();
        let want = [0.25, 0.5, 0.75, 0.5];
        for (a, b) in y.value().data().iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
        let node = tape.nodes().last().unwrap();
        let op = node.op.downcast_ref::<SoftmaxOp<f64>>().unwrap();
        assert!(Arc::ptr_eq(&op.output, y.value_arc()));
        assert_eq!(node.op.kind(), OpKind::SOFTMAX);
        // Column 0 with g = [1, 0]: sum(g y) = 1/4, so y (g - 1/4) =
        // [3/16, -3/16]; column 1 with g = [2, 2] gives 0.
        let seed = Tensor::from_vec([2, 2], vec![1.0, 2.0, 0.0, 2.0]).unwrap();
        let g = tape
            .backward(y.id(), &seed, &RuleSet::standard(), &[x.id()])
            .unwrap()
            .remove(0);
        let want = [3.0 / 16.0, 0.0, -3.0 / 16.0, 0.0];
        for (a, b) in g.data().iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{a} vs {b}");
        }
    }

    #[test]
    fn softmax_axis_out_of_range_is_an_error() {
        let mut tape = Tape::<f32>::new(Retain::Minimal);
        let x = tape.input(Tensor::zeros([2, 3]));
        let err = softmax(&mut tape, &x, 2).unwrap_err();
        assert!(err.to_string().contains("softmax"), "{err}");
    }
}
