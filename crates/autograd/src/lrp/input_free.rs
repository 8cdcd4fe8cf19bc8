//! Rules that ignore the input's values: w-square and flat.

use super::affine::AffineNode;
use super::stabilizer::{check_non_negative, scaled, DEFAULT_STABILIZER};
use crate::error::Result;
use crate::rule::{Rule, RuleContext};
use sightline_tensor::{Element, Tensor};

/// The w-square rule: `R_in = W²^T (R / stab(1 W² + b²))`, relevance spread
/// by the squared weights whatever the input (Montavon et al. 2017;
/// Zennit's `WSquare`, which squares the bias too). A first layer's rule
/// when the input is unbounded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WSquare {
    stabilizer: f64,
}

impl WSquare {
    /// The rule with stabiliser `stabilizer` (finite, at least 0).
    pub fn new(stabilizer: f64) -> Result<Self> {
        check_non_negative("wsquare", "stabilizer", stabilizer)?;
        Ok(Self { stabilizer })
    }
}

impl Default for WSquare {
    fn default() -> Self {
        Self {
            stabilizer: DEFAULT_STABILIZER,
        }
    }
}

impl<T: Element> Rule<T> for WSquare {
    fn name(&self) -> &str {
        "lrp_wsquare"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, r: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let node = AffineNode::of(ctx, "lrp_wsquare")?;
        let square = |t: &Tensor<T>| t.map(|v| v * v);
        let w2 = square(node.op.weight());
        let b2 = node.op.bias().map(square);
        spread(&node, r, &w2, b2.as_ref(), self.stabilizer)
    }
}

/// The flat rule: [`WSquare`] with every weight 1 and no bias, so relevance
/// spreads evenly over each output's receptive field (Lapuschkin et al.
/// 2019; Zennit's `Flat`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flat {
    stabilizer: f64,
}

impl Flat {
    /// The rule with stabiliser `stabilizer` (finite, at least 0).
    pub fn new(stabilizer: f64) -> Result<Self> {
        check_non_negative("flat", "stabilizer", stabilizer)?;
        Ok(Self { stabilizer })
    }
}

impl Default for Flat {
    fn default() -> Self {
        Self {
            stabilizer: DEFAULT_STABILIZER,
        }
    }
}

impl<T: Element> Rule<T> for Flat {
    fn name(&self) -> &str {
        "lrp_flat"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, r: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let node = AffineNode::of(ctx, "lrp_flat")?;
        let ones = Tensor::full(node.op.weight().shape().to_vec(), T::one());
        spread(&node, r, &ones, None, self.stabilizer)
    }
}

/// `w^T (R / stab(1 w + b))`, the input all ones (the padding stays zero,
/// so border outputs have fewer terms, as in Zennit).
fn spread<T: Element>(
    node: &AffineNode<'_, T>,
    r: &Tensor<T>,
    w: &Tensor<T>,
    b: Option<&Tensor<T>>,
    stabilizer: f64,
) -> Result<Vec<Option<Tensor<T>>>> {
    let ones = Tensor::full(node.input_shape().to_vec(), T::one());
    let z = node.forward(&ones, w, b)?;
    let s = node.kernel(scaled(r, &z, stabilizer))?;
    Ok(node.result(node.back(&s, w)?))
}
