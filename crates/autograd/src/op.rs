//! The recorded ops: what each saved in the forward pass, and its standard backward.

use crate::error::Result;
use crate::ops;
use crate::rule::RuleContext;
use sightline_tensor::{Element, Epilogue, Tensor};

/// One recorded op and what it saved for its backward rules.
///
/// A user-written [`crate::Rule`] matches on this to reach the saved values.
#[derive(Debug)]
pub enum Op<T> {
    /// 2-d convolution, inputs `[x, weight, (bias)]`.
    Conv2d(ops::conv::Conv2dOp<T>),
    /// Fully connected layer, inputs `[x, weight, (bias)]`.
    Linear(ops::linear::LinearOp<T>),
    /// ReLU, input `[x]`.
    Relu(ops::relu::ReluOp),
    /// Max pooling, input `[x]`.
    MaxPool2d(ops::pool::MaxPoolOp),
    /// Average pooling, input `[x]`.
    AvgPool2d(ops::pool::AvgPoolOp<T>),
    /// Adaptive average pooling, input `[x]`.
    AdaptiveAvgPool2d(ops::pool::AdaptiveAvgPoolOp<T>),
    /// Batch norm in inference, input `[x]`.
    BatchNorm(ops::norm::BatchNormOp<T>),
    /// Elementwise sum (the residual sum of a ResNet block), inputs `[a, b]`.
    Add(ops::arith::AddOp<T>),
    /// Elementwise product, inputs `[a, b]`.
    Mul(ops::arith::MulOp<T>),
    /// A change of shape (flatten), input `[x]`.
    Reshape(ops::shape::ReshapeOp),
    /// Sum over one axis, input `[x]`.
    SumAxis(ops::reduce::ReduceOp),
    /// Mean over one axis, input `[x]`.
    MeanAxis(ops::reduce::ReduceOp),
    /// Log-softmax over the last axis, input `[x]`.
    LogSoftmax(ops::softmax::LogSoftmaxOp<T>),
    /// Resize (bilinear or nearest), input `[x]`.
    Resize(ops::resize::ResizeOp),
}

/// The kind of an op, the key by which a [`crate::RuleSet`] chooses a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// [`Op::Conv2d`].
    Conv2d,
    /// [`Op::Linear`].
    Linear,
    /// [`Op::Relu`].
    Relu,
    /// [`Op::MaxPool2d`].
    MaxPool2d,
    /// [`Op::AvgPool2d`].
    AvgPool2d,
    /// [`Op::AdaptiveAvgPool2d`].
    AdaptiveAvgPool2d,
    /// [`Op::BatchNorm`].
    BatchNorm,
    /// [`Op::Add`].
    Add,
    /// [`Op::Mul`].
    Mul,
    /// [`Op::Reshape`].
    Reshape,
    /// [`Op::SumAxis`].
    SumAxis,
    /// [`Op::MeanAxis`].
    MeanAxis,
    /// [`Op::LogSoftmax`].
    LogSoftmax,
    /// [`Op::Resize`].
    Resize,
}

impl<T: Element> Op<T> {
    /// The op's kind.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Conv2d(_) => OpKind::Conv2d,
            Op::Linear(_) => OpKind::Linear,
            Op::Relu(_) => OpKind::Relu,
            Op::MaxPool2d(_) => OpKind::MaxPool2d,
            Op::AvgPool2d(_) => OpKind::AvgPool2d,
            Op::AdaptiveAvgPool2d(_) => OpKind::AdaptiveAvgPool2d,
            Op::BatchNorm(_) => OpKind::BatchNorm,
            Op::Add(_) => OpKind::Add,
            Op::Mul(_) => OpKind::Mul,
            Op::Reshape(_) => OpKind::Reshape,
            Op::SumAxis(_) => OpKind::SumAxis,
            Op::MeanAxis(_) => OpKind::MeanAxis,
            Op::LogSoftmax(_) => OpKind::LogSoftmax,
            Op::Resize(_) => OpKind::Resize,
        }
    }

    /// The op's name, for messages.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The standard (exact gradient) backward of the op.
    pub fn standard_backward(
        &self,
        ctx: &RuleContext<'_, T>,
        grad: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        match self {
            Op::Conv2d(o) => o.standard_then(ctx, grad, None),
            Op::Linear(o) => o.standard(ctx, grad),
            Op::Relu(o) => o.standard(ctx, grad),
            Op::MaxPool2d(o) => o.standard(ctx, grad),
            Op::AvgPool2d(o) => o.standard(ctx, grad),
            Op::AdaptiveAvgPool2d(o) => o.standard(ctx, grad),
            Op::BatchNorm(o) => o.standard(ctx, grad),
            Op::Add(o) => o.standard(ctx, grad),
            Op::Mul(o) => o.standard(ctx, grad),
            Op::Reshape(o) => o.standard(ctx, grad),
            Op::SumAxis(o) => o.standard_sum(ctx, grad),
            Op::MeanAxis(o) => o.standard_mean(ctx, grad),
            Op::LogSoftmax(o) => o.standard(ctx, grad),
            Op::Resize(o) => o.standard(ctx, grad),
        }
    }

    /// [`Op::standard_backward`] with the output gradient by value: ReLU
    /// masks it in place, the sum hands it to its first term (a copy to the
    /// second only), a reshape relabels it; the same values as
    /// `standard_backward`, with no new buffer.
    pub fn standard_backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        grad: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        match self {
            Op::Relu(o) => o.standard_owned(ctx, grad),
            Op::Add(o) => o.standard_owned(ctx, grad),
            Op::Reshape(o) => o.standard_owned(ctx, grad),
            _ => self.standard_backward(ctx, &grad),
        }
    }

    /// The standard rule in elementwise form, where it is one (ReLU; see
    /// [`crate::Rule::elementwise`]).
    pub fn standard_elementwise<'a>(
        &'a self,
        ctx: &RuleContext<'a, T>,
    ) -> Option<crate::rule::Elementwise<'a, T>> {
        match self {
            Op::Relu(o) => o.standard_elementwise(ctx),
            _ => None,
        }
    }

    /// [`Op::standard_backward_owned`] with `then` applied to input 0's
    /// gradient: inside the kernel for a convolution, after it otherwise.
    pub fn standard_backward_owned_then(
        &self,
        ctx: &RuleContext<'_, T>,
        grad: Tensor<T>,
        then: Epilogue<'_, T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        match self {
            Op::Conv2d(o) => o.standard_then(ctx, &grad, Some(then)),
            _ => crate::rule::then_after(ctx, self.standard_backward_owned(ctx, grad)?, then),
        }
    }

    /// [`Op::standard_backward`] of several passes' output gradients at
    /// once, one result per gradient, each the same bits as computing it
    /// alone: a linear layer's input gradients are computed together
    /// (reading the weight once) where the kernel allows it, the other ops
    /// run once per gradient.
    pub fn standard_backward_many(
        &self,
        ctx: &RuleContext<'_, T>,
        grads: &[&Tensor<T>],
    ) -> Result<Vec<Vec<Option<Tensor<T>>>>> {
        match self {
            Op::Linear(o) => o.standard_many(ctx, grads),
            _ => grads
                .iter()
                .map(|g| self.standard_backward(ctx, g))
                .collect(),
        }
    }
}

impl OpKind {
    /// The kind's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Conv2d => "conv2d",
            OpKind::Linear => "linear",
            OpKind::Relu => "relu",
            OpKind::MaxPool2d => "max_pool2d",
            OpKind::AvgPool2d => "avg_pool2d",
            OpKind::AdaptiveAvgPool2d => "adaptive_avg_pool2d",
            OpKind::BatchNorm => "batch_norm",
            OpKind::Add => "add",
            OpKind::Mul => "mul",
            OpKind::Reshape => "reshape",
            OpKind::SumAxis => "sum_axis",
            OpKind::MeanAxis => "mean_axis",
            OpKind::LogSoftmax => "log_softmax",
            OpKind::Resize => "resize",
        }
    }
}
