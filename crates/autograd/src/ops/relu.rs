//! ReLU: recording (sign bits only), standard backward, guided and deconvnet rules.

use crate::error::Result;
use crate::op::Op;
use crate::rule::{Rule, RuleContext};
use crate::tape::{Tape, Var};
use sightline_tensor::elementwise::{relu as relu_kernel, SignMask};
use sightline_tensor::{Element, Tensor};

/// A recorded ReLU: the signs of its input, two bits per element.
#[derive(Debug)]
pub struct ReluOp {
    /// Signs of the input.
    pub mask: SignMask,
}

/// Records `max(x, 0)`.
pub fn relu<T: Element>(tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
    let (y, mask) = relu_kernel(x.value());
    Ok(tape.record(Op::Relu(ReluOp { mask }), &[x], y))
}

fn masked<T: Element>(
    ctx: &RuleContext<'_, T>,
    name: &str,
    g: &Tensor<T>,
    f: impl Fn(T, bool, bool) -> T + Sync + Send,
) -> Result<Vec<Option<Tensor<T>>>> {
    let Op::Relu(op) = &ctx.node.op else {
        return Err(ctx.mismatch(name));
    };
    if !ctx.needs(0) {
        return Ok(vec![None]);
    }
    let mut out = g.clone();
    op.mask.apply(out.data_mut(), f);
    Ok(vec![Some(out)])
}

impl ReluOp {
    /// Standard: `g` where `x > 0`, 0 elsewhere (0 at `x == 0`, PyTorch's convention).
    pub(crate) fn standard<T: Element>(
        &self,
        ctx: &RuleContext<'_, T>,
        g: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        masked(
            ctx,
            "standard",
            g,
            |g, pos, _| if pos { g } else { T::zero() },
        )
    }
}

/// Guided backprop (TorchRay): 0 where `x < 0` (strictly), then `max(., 0)`;
/// a positive gradient passes at `x == 0`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuidedRelu;

impl<T: Element> Rule<T> for GuidedRelu {
    fn name(&self) -> &str {
        "guided_relu"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        masked(ctx, Rule::<T>::name(self), g, |g, _, non_neg| {
            if non_neg {
                g.max(T::zero())
            } else {
                T::zero()
            }
        })
    }
}

/// Guided backprop (Captum): `max(g, 0)` where `x > 0`, 0 elsewhere (also at `x == 0`).
#[derive(Clone, Copy, Debug, Default)]
pub struct CaptumGuidedRelu;

impl<T: Element> Rule<T> for CaptumGuidedRelu {
    fn name(&self) -> &str {
        "captum_guided_relu"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        masked(ctx, Rule::<T>::name(self), g, |g, pos, _| {
            if pos {
                g.max(T::zero())
            } else {
                T::zero()
            }
        })
    }
}

/// Deconvnet: `max(g, 0)`, whatever the input.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeconvnetRelu;

impl<T: Element> Rule<T> for DeconvnetRelu {
    fn name(&self) -> &str {
        "deconvnet_relu"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        masked(ctx, Rule::<T>::name(self), g, |g, _, _| g.max(T::zero()))
    }
}
