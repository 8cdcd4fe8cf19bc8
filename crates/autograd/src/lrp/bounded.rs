//! The z-box rule, for inputs known to lie in a box.

use super::affine::{add, mul, negative, positive, AffineNode};
use super::stabilizer::{check_non_negative, scaled, DEFAULT_STABILIZER};
use crate::error::{AutogradError, Result};
use crate::rule::{Rule, RuleContext};
use sightline_tensor::{cst, Element, Tensor};

/// The z-box rule for inputs in `[low, high]` (Montavon et al. 2017;
/// Zennit's `ZBox`): with `L` and `H` the input filled with `low` and
/// `high`, `z = x W + b - (L W+ + b+) - (H W- + b-)` and
/// `R_in = x W^T s - (L W+^T s + H W-^T s)`, `s = R / stab(z)`. The first
/// layer's rule when the input is bounded (pixels).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ZBox {
    low: f64,
    high: f64,
    stabilizer: f64,
}

impl ZBox {
    /// The rule for inputs in `[low, high]` (finite, `low <= high`) with the
    /// default stabiliser.
    pub fn new(low: f64, high: f64) -> Result<Self> {
        Self::with_stabilizer(low, high, DEFAULT_STABILIZER)
    }

    /// The rule with its stabiliser given.
    pub fn with_stabilizer(low: f64, high: f64, stabilizer: f64) -> Result<Self> {
        check_non_negative("zbox", "stabilizer", stabilizer)?;
        if !(low.is_finite() && high.is_finite() && low <= high) {
            return Err(AutogradError::InvalidRule {
                rule: "zbox",
                reason: format!("the bounds must be finite with low <= high, got [{low}, {high}]"),
            });
        }
        Ok(Self {
            low,
            high,
            stabilizer,
        })
    }

    /// The bounds `(low, high)`.
    pub fn bounds(&self) -> (f64, f64) {
        (self.low, self.high)
    }
}

impl<T: Element> Rule<T> for ZBox {
    fn name(&self) -> &str {
        "lrp_zbox"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, r: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let node = AffineNode::of(ctx, "lrp_zbox")?;
        let w = node.op.weight();
        let b = node.op.bias();
        let (wp, wn) = (positive(w), negative(w));
        let (bp, bn) = (b.map(positive), b.map(negative));
        let shape = node.input_shape().to_vec();
        let low = Tensor::full(shape.clone(), cst::<T>(self.low));
        let high = Tensor::full(shape, cst::<T>(self.high));
        let z0 = node.forward(node.x, w, b)?;
        let z1 = node.forward(&low, &wp, bp.as_ref())?;
        let z2 = node.forward(&high, &wn, bn.as_ref())?;
        // Zennit's `positive - sum(negatives)`.
        let z = node.kernel(z0.zip_map(&node.kernel(add(&z1, &z2))?, "lrp zbox", |a, b| a - b))?;
        let s = node.kernel(scaled(r, &z, self.stabilizer))?;
        let r0 = node.kernel(mul(node.x, &node.back(&s, w)?))?;
        let r1 = node.kernel(mul(&low, &node.back(&s, &wp)?))?;
        let r2 = node.kernel(mul(&high, &node.back(&s, &wn)?))?;
        let out =
            node.kernel(r0.zip_map(&node.kernel(add(&r1, &r2))?, "lrp zbox", |a, b| a - b))?;
        Ok(node.result(out))
    }
}
