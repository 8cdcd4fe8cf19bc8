//! Fully connected layer: recording, standard backward, excitation rule.

use crate::error::Result;
use crate::lrp::Affine;
use crate::op::{Op, OpKind};
use crate::ops::{
    add_excitation_epsilon, excitation_denominator, excitation_with_denominator, ExcitationSlots,
};
use crate::rule::{Rule, RuleContext};
use crate::tape::{Tape, Var};
use sightline_tensor::linear::{
    backward_input_streams, linear as linear_kernel, linear_and_mapped, linear_backward_bias,
    linear_backward_input, linear_backward_input_map_weight, linear_backward_weight,
    linear_map_weight,
};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// A recorded linear layer.
#[derive(Debug)]
pub struct LinearOp<T> {
    /// The weight, Out x In (shared with the layer).
    pub weight: Arc<Tensor<T>>,
    /// The input, kept when a rule or a weight gradient may need it.
    pub input: Option<Arc<Tensor<T>>>,
    /// Whether a bias was added (a third input).
    pub has_bias: bool,
    /// The bias (shared with the layer), kept when the input is: the LRP
    /// rules run the layer again with it ([`crate::lrp::Affine`]).
    pub bias: Option<Arc<Tensor<T>>>,
    /// The excitation rule's denominator `x max(±W, 0)^T + 1e-20`, per
    /// sign, made on the first excitation pass through this node and
    /// dropped with the tape (the clamped weight itself is not kept: VGG16's
    /// fc6 would be 411 MB).
    excitation: Box<ExcitationSlots<T>>,
}

/// Records `x W^T + b`.
pub fn linear<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    weight: &Var<T>,
    bias: Option<&Var<T>>,
) -> Result<Var<T>> {
    let (xv, wv, bv) = (x.value(), weight.value(), bias.map(|b| b.value()));
    let excitation = ExcitationSlots::new();
    let y = if tape.keeps_all() {
        // A forward pass for every rule: the excitation rule's denominator
        // `x max(W, 0)^T + 1e-20` comes from the same read of the weight
        // (where the product streams it), the same bits as made later.
        let (y, plus) = linear_and_mapped(xv, wv, bv, |w: T| w.max(T::zero()))
            .map_err(tape.kernel_err("linear"))?;
        if let Some(mut z) = plus {
            add_excitation_epsilon(&mut z);
            excitation.preset(false, z);
        }
        y
    } else {
        linear_kernel(xv, wv, bv).map_err(tape.kernel_err("linear"))?
    };
    let keep_input = tape.keeps_all() || tape.requires_grad(weight.id());
    let op = LinearOp {
        weight: weight.value_arc().clone(),
        input: keep_input.then(|| x.value_arc().clone()),
        has_bias: bias.is_some(),
        bias: bias.filter(|_| keep_input).map(|b| b.value_arc().clone()),
        excitation,
    };
    let mut inputs = vec![x, weight];
    inputs.extend(bias);
    Ok(tape.record(op, &inputs, y))
}

impl<T: Element> LinearOp<T> {
    pub(crate) fn standard(
        &self,
        ctx: &RuleContext<'_, T>,
        g: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let mut out = vec![None, None];
        if ctx.needs(0) {
            out[0] = Some(linear_backward_input(g, &self.weight).map_err(|e| ctx.kernel(e))?);
        }
        if ctx.needs(1) {
            let x = self
                .input
                .as_ref()
                .ok_or_else(|| ctx.not_retained("standard", "input"))?;
            out[1] = Some(linear_backward_weight(g, x).map_err(|e| ctx.kernel(e))?);
        }
        if self.has_bias {
            out.push(if ctx.needs(2) {
                Some(linear_backward_bias(g).map_err(|e| ctx.kernel(e))?)
            } else {
                None
            });
        }
        Ok(out)
    }

    /// [`LinearOp::standard`] of several gradients: their input gradients
    /// stacked into one product that reads the weight once, where each row
    /// is computed as it would be alone (see
    /// [`sightline_tensor::linear::backward_input_streams`]) and only the
    /// input gradient is wanted (weight and bias gradients would sum over
    /// the stack); one product per gradient otherwise.
    pub(crate) fn standard_many(
        &self,
        ctx: &RuleContext<'_, T>,
        grads: &[&Tensor<T>],
    ) -> Result<Vec<Vec<Option<Tensor<T>>>>> {
        if !(ctx.needs(0)
            && !ctx.needs(1)
            && !(self.has_bias && ctx.needs(2))
            && stackable(grads, &self.weight))
        {
            return grads.iter().map(|g| self.standard(ctx, g)).collect();
        }
        let owned: Vec<Tensor<T>> = grads.iter().map(|&g| g.clone()).collect();
        let parts = stacked_product(&owned, |s| linear_backward_input(s, &self.weight))
            .map_err(|e| ctx.kernel(e))?;
        Ok(parts
            .into_iter()
            .map(|part| {
                let mut out = vec![Some(part), None];
                if self.has_bias {
                    out.push(None);
                }
                out
            })
            .collect())
    }
}

/// Excitation backprop through a linear layer:
/// `x * (g / (x W+^T + 1e-20)) W+`, `W+ = max(W, 0)`, no bias.
///
/// The denominator is computed on the first pass through a recorded node
/// and kept on it; `W+` is never materialised at batch sizes up to 4.
///
/// With `negate_weights`, `W+ = max(-W, 0)` (the contrastive pass).
#[derive(Clone, Copy, Debug, Default)]
pub struct ExcitationLinear {
    /// Use the negated weights (contrastive pass).
    pub negate_weights: bool,
}

impl<T: Element> Rule<T> for ExcitationLinear {
    fn name(&self) -> &str {
        "excitation_linear"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let mut out = self.passes(ctx, &[g])?;
        Ok(out.pop().unwrap_or_default())
    }

    fn backward_many(
        &self,
        ctx: &RuleContext<'_, T>,
        grads: &[&Tensor<T>],
    ) -> Result<Vec<Vec<Option<Tensor<T>>>>> {
        self.passes(ctx, grads)
    }
}

impl ExcitationLinear {
    /// The rule for the gradients of one or several passes. The passes'
    /// normalised gradients `g / denominator` are stacked into one product
    /// with `W+` that reads the weight once where it streams (each row as
    /// it would be alone), one product per pass otherwise; then each is
    /// multiplied by `x`. The same operations in the same order either way.
    fn passes<T: Element>(
        &self,
        ctx: &RuleContext<'_, T>,
        grads: &[&Tensor<T>],
    ) -> Result<Vec<Vec<Option<Tensor<T>>>>> {
        let op: &LinearOp<T> = ctx.op(Rule::<T>::name(self))?;
        let none =
            || -> Vec<Option<Tensor<T>>> { (0..ctx.node.inputs.len()).map(|_| None).collect() };
        if !ctx.needs(0) {
            return Ok(grads.iter().map(|_| none()).collect());
        }
        let x = op
            .input
            .as_ref()
            .ok_or_else(|| ctx.not_retained(Rule::<T>::name(self), "input"))?;
        let sign = if self.negate_weights {
            -T::one()
        } else {
            T::one()
        };
        // W+ is read through a clamp, not copied: at small batches the
        // products stream the weight once each; bit-identical to the
        // products with a clamped copy.
        let clamp = move |w: T| (w * sign).max(T::zero());
        // (For the positive sign, a forward pass that keeps everything
        // already made the denominator: see `linear`.)
        let denominator = op.excitation.denominator(self.negate_weights, || {
            excitation_denominator(ctx, x, |a| linear_map_weight(a, &op.weight, clamp))
        })?;
        let gins = if stackable(grads, &op.weight) {
            let normalised = grads
                .iter()
                .map(|g| g.zip_map(denominator, "excitation normalise", |g, d| g / d))
                .collect::<sightline_tensor::Result<Vec<_>>>()
                .map_err(|e| ctx.kernel(e))?;
            stacked_product(&normalised, |s| {
                linear_backward_input_map_weight(s, &op.weight, clamp)
            })
            .map_err(|e| ctx.kernel(e))?
            .into_iter()
            .map(|back| back.zip_map(x, "excitation multiply", |b, a| b * a))
            .collect::<sightline_tensor::Result<Vec<_>>>()
            .map_err(|e| ctx.kernel(e))?
        } else {
            grads
                .iter()
                .map(|g| {
                    excitation_with_denominator(ctx, x, g, denominator, |s| {
                        linear_backward_input_map_weight(s, &op.weight, clamp)
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        Ok(gins
            .into_iter()
            .map(|gin| {
                let mut out = none();
                out[0] = Some(gin);
                out
            })
            .collect())
    }
}

/// Whether several passes' gradients at a linear layer can be stacked into
/// one product that streams `weight`, each row computed as it would be
/// alone: two or more 2-d gradients of one width, each and all of them few
/// enough rows to stream.
fn stackable<T: Element>(grads: &[&Tensor<T>], weight: &Tensor<T>) -> bool {
    let rows: Vec<usize> = grads
        .iter()
        .map(|g| g.shape().first().copied().unwrap_or(0))
        .collect();
    grads.len() > 1
        && grads
            .iter()
            .all(|g| g.ndim() == 2 && g.shape()[1..] == grads[0].shape()[1..])
        && rows.iter().all(|&r| backward_input_streams(r, weight))
        && backward_input_streams(rows.iter().sum(), weight)
}

/// `product` of the gradients stacked along the rows, split back into one
/// result per gradient.
fn stacked_product<T: Element>(
    grads: &[Tensor<T>],
    product: impl FnOnce(&Tensor<T>) -> sightline_tensor::Result<Tensor<T>>,
) -> sightline_tensor::Result<Vec<Tensor<T>>> {
    let stacked = Tensor::concat0(grads)?;
    let all = product(&stacked)?;
    let width = all.shape()[1];
    let mut rows = all.data().chunks(width);
    grads
        .iter()
        .map(|g| {
            let r = g.shape()[0];
            let data: Vec<T> = rows.by_ref().take(r).flatten().copied().collect();
            Tensor::from_vec([r, width], data)
        })
        .collect()
}

impl<T: Element> Op<T> for LinearOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::LINEAR
    }

    fn multiply_adds(&self, _: &[Vec<usize>], output_shape: &[usize]) -> u64 {
        let per_output =
            self.weight.len() / self.weight.shape().first().copied().unwrap_or(1).max(1);
        (output_shape.iter().product::<usize>() as u64).saturating_mul(per_output as u64)
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        self.standard(ctx, g)
    }

    fn backward_many(
        &self,
        ctx: &RuleContext<'_, T>,
        grads: &[&Tensor<T>],
    ) -> Result<Vec<Vec<Option<Tensor<T>>>>> {
        self.standard_many(ctx, grads)
    }

    fn affine(&self) -> Option<&dyn Affine<T>> {
        Some(self)
    }
}

/// The layer as the LRP rules run it: `x W^T + b` with other weights.
impl<T: Element> Affine<T> for LinearOp<T> {
    fn input(&self) -> Option<&Tensor<T>> {
        self.input.as_deref()
    }

    fn weight(&self) -> &Tensor<T> {
        &self.weight
    }

    fn bias(&self) -> Option<&Tensor<T>> {
        self.bias.as_deref()
    }

    fn forward_with(
        &self,
        x: &Tensor<T>,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
    ) -> sightline_tensor::Result<Tensor<T>> {
        linear_kernel(x, weight, bias)
    }

    fn input_gradient_with(
        &self,
        grad: &Tensor<T>,
        weight: &Tensor<T>,
        _input_shape: &[usize],
    ) -> sightline_tensor::Result<Tensor<T>> {
        linear_backward_input(grad, weight)
    }
}
