//! Ops with a weight, as the LRP rules see them: `y = x (*) W + b`.

use crate::error::Result;
use crate::rule::RuleContext;
use sightline_tensor::{Element, Tensor};

/// An op that is affine in its input: `y = x (*) W + b`, with `(*)` a
/// product linear in both `x` and `W` (a convolution, a matrix product).
///
/// The LRP rules ([`super::Epsilon`], [`super::ZPlus`], ...) run the op
/// again with modified weights and inputs and send relevance back through
/// it with modified weights; this trait is how they do it without knowing
/// the op. An op exposes it through [`crate::Op::affine`]; the input is the
/// node's input 0.
pub trait Affine<T: Element> {
    /// The input the forward pass saw, if the tape retained it.
    fn input(&self) -> Option<&Tensor<T>>;

    /// The weight the forward pass used.
    fn weight(&self) -> &Tensor<T>;

    /// The bias the forward pass added, if any.
    fn bias(&self) -> Option<&Tensor<T>>;

    /// The op on `x` with `weight` and `bias` instead of its own (same
    /// geometry: stride, padding, groups).
    fn forward_with(
        &self,
        x: &Tensor<T>,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
    ) -> sightline_tensor::Result<Tensor<T>>;

    /// The gradient of `forward_with(x, weight, _)` with respect to `x`
    /// given `grad` at its output: `W^T grad`, shaped like the input.
    fn input_gradient_with(
        &self,
        grad: &Tensor<T>,
        weight: &Tensor<T>,
        input_shape: &[usize],
    ) -> sightline_tensor::Result<Tensor<T>>;
}

/// The op of a node as [`Affine`], with its input, and the kernel calls
/// the rules make through it (errors name the node).
pub(crate) struct AffineNode<'a, T: Element> {
    pub(crate) ctx: &'a RuleContext<'a, T>,
    pub(crate) op: &'a dyn Affine<T>,
    pub(crate) x: &'a Tensor<T>,
}

impl<'a, T: Element> AffineNode<'a, T> {
    /// The node's op as [`Affine`] with its retained input, or the error for
    /// `rule` on an op that is not affine or kept no input.
    pub(crate) fn of(ctx: &'a RuleContext<'a, T>, rule: &str) -> Result<Self> {
        let op = ctx.node.op.affine().ok_or_else(|| ctx.mismatch(rule))?;
        let x = op.input().ok_or_else(|| ctx.not_retained(rule, "input"))?;
        Ok(Self { ctx, op, x })
    }

    /// The node's input shape.
    pub(crate) fn input_shape(&self) -> &[usize] {
        self.x.shape()
    }

    /// `x (*) weight + bias`.
    pub(crate) fn forward(
        &self,
        x: &Tensor<T>,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
    ) -> Result<Tensor<T>> {
        self.op
            .forward_with(x, weight, bias)
            .map_err(|e| self.ctx.kernel(e))
    }

    /// `weight^T grad`.
    pub(crate) fn back(&self, grad: &Tensor<T>, weight: &Tensor<T>) -> Result<Tensor<T>> {
        self.op
            .input_gradient_with(grad, weight, self.input_shape())
            .map_err(|e| self.ctx.kernel(e))
    }

    /// The one-entry-per-input result of a rule: `relevance` for input 0
    /// (when wanted), nothing for the weight and bias.
    pub(crate) fn result(&self, relevance: Tensor<T>) -> Vec<Option<Tensor<T>>> {
        let mut out: Vec<Option<Tensor<T>>> =
            (0..self.ctx.node.inputs.len()).map(|_| None).collect();
        if let Some(first) = out.first_mut() {
            *first = Some(relevance);
        }
        out
    }

    /// Wraps a kernel error with the node.
    pub(crate) fn kernel<R>(&self, r: sightline_tensor::Result<R>) -> Result<R> {
        r.map_err(|e| self.ctx.kernel(e))
    }
}

/// `max(t, 0)` element by element.
pub(crate) fn positive<T: Element>(t: &Tensor<T>) -> Tensor<T> {
    t.map(|v| v.max(T::zero()))
}

/// `min(t, 0)` element by element.
pub(crate) fn negative<T: Element>(t: &Tensor<T>) -> Tensor<T> {
    t.map(|v| v.min(T::zero()))
}

/// Whether any element is below zero (the negative part of an input after
/// a ReLU is all zeros, and its terms can be skipped: they add exact zeros).
pub(crate) fn has_negative<T: Element>(t: &Tensor<T>) -> bool {
    t.data().iter().any(|&v| v < T::zero())
}

/// Whether any element is above zero.
pub(crate) fn has_positive<T: Element>(t: &Tensor<T>) -> bool {
    t.data().iter().any(|&v| v > T::zero())
}

/// `a + b` element by element.
pub(crate) fn add<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> sightline_tensor::Result<Tensor<T>> {
    a.zip_map(b, "lrp add", |a, b| a + b)
}

/// `a * b` element by element.
pub(crate) fn mul<T: Element>(a: &Tensor<T>, b: &Tensor<T>) -> sightline_tensor::Result<Tensor<T>> {
    a.zip_map(b, "lrp multiply", |a, b| a * b)
}
