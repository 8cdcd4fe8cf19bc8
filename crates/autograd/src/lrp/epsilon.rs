//! The epsilon rule (LRP-epsilon; LRP-0 with `epsilon = 0`).

use super::affine::{mul, AffineNode};
use super::stabilizer::{check_non_negative, scaled};
use crate::error::Result;
use crate::rule::{Rule, RuleContext};
use sightline_tensor::{Element, Tensor};

/// `R_in = x * W^T (R / stab_eps(x W + b))`: relevance in proportion to
/// each input's contribution, the denominator moved away from zero by
/// `epsilon` (Bach et al. 2015; Zennit's `Epsilon`). As `epsilon` goes to 0
/// it is gradient times input through the layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Epsilon {
    epsilon: f64,
}

impl Epsilon {
    /// The rule with stabiliser `epsilon` (finite, at least 0).
    pub fn new(epsilon: f64) -> Result<Self> {
        check_non_negative("epsilon", "epsilon", epsilon)?;
        Ok(Self { epsilon })
    }

    /// The stabiliser.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }
}

impl Default for Epsilon {
    /// Zennit's default, `epsilon = 1e-6`.
    fn default() -> Self {
        Self { epsilon: 1e-6 }
    }
}

impl<T: Element> Rule<T> for Epsilon {
    fn name(&self) -> &str {
        "lrp_epsilon"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, r: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let node = AffineNode::of(ctx, "lrp_epsilon")?;
        let z = node.forward(node.x, node.op.weight(), node.op.bias())?;
        let s = node.kernel(scaled(r, &z, self.epsilon))?;
        let back = node.back(&s, node.op.weight())?;
        Ok(node.result(node.kernel(mul(node.x, &back))?))
    }
}
