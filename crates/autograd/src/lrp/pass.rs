//! The pass rule: relevance through an elementwise op unchanged.

use crate::error::{AutogradError, Result};
use crate::rule::{Elementwise, Rule, RuleContext};
use sightline_tensor::{Element, Tensor};

/// Hands the relevance at the output to input 0 unchanged (Zennit's
/// `Pass`): for activations and other elementwise ops whose gradient should
/// not gate the relevance. Runs on any op whose input 0 has the output's
/// shape; the other inputs get nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass;

impl<T: Element> Rule<T> for Pass {
    fn name(&self) -> &str {
        "lrp_pass"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, r: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        self.backward_owned(ctx, r.par_clone())
    }

    fn backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        r: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let input = ctx
            .node
            .input_shapes
            .first()
            .ok_or_else(|| ctx.mismatch("lrp_pass"))?;
        if input.as_slice() != r.shape() {
            return Err(AutogradError::RuleOutput {
                rule: "lrp_pass".into(),
                op: ctx.node.op.name(),
                layer: ctx.node.layer.to_string(),
                expected: input.clone(),
                found: r.shape().to_vec(),
            });
        }
        let mut out: Vec<Option<Tensor<T>>> = (0..ctx.node.inputs.len()).map(|_| None).collect();
        out[0] = Some(r);
        Ok(out)
    }

    fn elementwise<'a>(&'a self, ctx: &RuleContext<'a, T>) -> Option<Elementwise<'a, T>> {
        // Only where the op itself is elementwise (its input has the
        // output's shape): then the relevance is left as it is.
        let elementwise =
            ctx.node.inputs.len() == 1 && ctx.node.op.backward_elementwise(ctx).is_some();
        elementwise.then(|| -> Elementwise<'a, T> { Box::new(|_, _| Ok(())) })
    }
}
