//! The norm rule, for parameter-free linear ops (average pools, sums).

use super::affine::mul;
use super::stabilizer::{check_non_negative, scaled, DEFAULT_STABILIZER};
use crate::error::Result;
use crate::rule::{Rule, RuleContext};
use sightline_tensor::{Element, Tensor};

/// An op linear in its inputs with no parameters, `y = f(x_1, ..., x_n)`
/// (an average pool, a sum of skip connection and residual): what
/// [`Norm`] needs. An op exposes it through [`crate::Op::homogeneous`]; the
/// op's standard backward is `f`'s transpose.
pub trait Homogeneous<T: Element> {
    /// The inputs the forward pass saw, in node order, if the tape retained
    /// them.
    fn terms(&self) -> Option<Vec<&Tensor<T>>>;

    /// `f` of `terms` (the op's output, computed again).
    fn output(&self, terms: &[&Tensor<T>]) -> sightline_tensor::Result<Tensor<T>>;
}

/// `R_i = x_i * f^T (R / stab(f(x)))`: each input's share of the output
/// (Zennit's `Norm`, which its composites put on average pools and on the
/// explicit sums of residual blocks). On a sum it splits the relevance in
/// proportion to the terms; on an average pool, to the pooled values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Norm {
    stabilizer: f64,
}

impl Norm {
    /// The rule with stabiliser `stabilizer` (finite, at least 0).
    pub fn new(stabilizer: f64) -> Result<Self> {
        check_non_negative("norm", "stabilizer", stabilizer)?;
        Ok(Self { stabilizer })
    }
}

impl Default for Norm {
    fn default() -> Self {
        Self {
            stabilizer: DEFAULT_STABILIZER,
        }
    }
}

impl<T: Element> Rule<T> for Norm {
    fn name(&self) -> &str {
        "lrp_norm"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, r: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let op = ctx
            .node
            .op
            .homogeneous()
            .ok_or_else(|| ctx.mismatch("lrp_norm"))?;
        let terms = op
            .terms()
            .ok_or_else(|| ctx.not_retained("lrp_norm", "inputs"))?;
        let y = op.output(&terms).map_err(|e| ctx.kernel(e))?;
        let s = scaled(r, &y, self.stabilizer).map_err(|e| ctx.kernel(e))?;
        let grads = ctx.node.op.backward(ctx, &s)?;
        grads
            .into_iter()
            .zip(&terms)
            .map(|(g, x)| g.map(|g| mul(x, &g).map_err(|e| ctx.kernel(e))).transpose())
            .collect()
    }
}
