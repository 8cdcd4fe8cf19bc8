//! The open op set: the [`Op`] trait every recorded op implements, and the
//! [`OpKind`] key by which a [`crate::RuleSet`] chooses a rule for it.
//!
//! An op is a value of a type that implements [`Op`]: it holds what its
//! forward pass saved for the backward rules (a ReLU's sign bits, a
//! convolution's weight, a sigmoid's output) and computes its standard
//! backward. The built-in ops live in [`crate::ops`], one module per op
//! family with its forward, its standard backward and its alternative rules
//! side by side; code outside this crate adds an op the same way: a type
//! that implements [`Op`], recorded with [`crate::Tape::record`]. A rule
//! reaches an op's saved values by type ([`crate::RuleContext::op`]).

use crate::error::Result;
use crate::lrp::{Affine, Homogeneous};
use crate::rule::{then_after, Elementwise, RuleContext};
use sightline_tensor::{Element, Epilogue, Tensor};
use std::any::Any;
use std::fmt::{self, Debug};

/// The kind of an op: the key by which a [`crate::RuleSet`] chooses a rule
/// and the name messages give it. Two kinds are the same when their names
/// are; the built-in kinds are the associated constants, and an op defined
/// outside the crate makes its own with [`OpKind::new`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpKind(&'static str);

impl OpKind {
    /// A kind named `name` (snake case by convention: `softplus`).
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    /// The kind's name.
    pub const fn name(self) -> &'static str {
        self.0
    }

    /// 2-d convolution ([`crate::ops::conv`]).
    pub const CONV2D: Self = Self("conv2d");
    /// Fully connected layer ([`crate::ops::linear`]).
    pub const LINEAR: Self = Self("linear");
    /// ReLU ([`crate::ops::relu`]).
    pub const RELU: Self = Self("relu");
    /// Max pooling ([`crate::ops::pool`]).
    pub const MAX_POOL2D: Self = Self("max_pool2d");
    /// Average pooling ([`crate::ops::pool`]).
    pub const AVG_POOL2D: Self = Self("avg_pool2d");
    /// Adaptive average pooling ([`crate::ops::pool`]).
    pub const ADAPTIVE_AVG_POOL2D: Self = Self("adaptive_avg_pool2d");
    /// Batch norm in inference ([`crate::ops::norm`]).
    pub const BATCH_NORM: Self = Self("batch_norm");
    /// Elementwise sum with broadcasting ([`crate::ops::arith`]).
    pub const ADD: Self = Self("add");
    /// The residual sum of a skip connection, TorchRay's `eltwise_sum`
    /// ([`crate::ops::arith::residual_sum`]).
    pub const RESIDUAL_SUM: Self = Self("residual_sum");
    /// Elementwise product with broadcasting ([`crate::ops::arith`]).
    pub const MUL: Self = Self("mul");
    /// A change of shape ([`crate::ops::shape`]).
    pub const RESHAPE: Self = Self("reshape");
    /// Sum over one axis ([`crate::ops::reduce`]).
    pub const SUM_AXIS: Self = Self("sum_axis");
    /// Mean over one axis ([`crate::ops::reduce`]).
    pub const MEAN_AXIS: Self = Self("mean_axis");
    /// Log-softmax over the last axis ([`crate::ops::softmax`]).
    pub const LOG_SOFTMAX: Self = Self("log_softmax");
    /// Bilinear or nearest resize ([`crate::ops::resize`]).
    pub const RESIZE: Self = Self("resize");
    /// Difference with broadcasting ([`crate::ops::arith`]).
    pub const SUB: Self = Self("sub");
    /// Quotient with broadcasting ([`crate::ops::arith`]).
    pub const DIV: Self = Self("div");
    /// Logistic sigmoid ([`crate::ops::activation`]).
    pub const SIGMOID: Self = Self("sigmoid");
    /// Hard sigmoid `max(0, min(1, alpha x + beta))` ([`crate::ops::activation`]).
    pub const HARD_SIGMOID: Self = Self("hard_sigmoid");
    /// SiLU (swish) `x sigmoid(x)` ([`crate::ops::activation`]).
    pub const SILU: Self = Self("silu");
    /// Hard swish `x hard_sigmoid(x)` ([`crate::ops::activation`]).
    pub const HARD_SWISH: Self = Self("hard_swish");
    /// The error function (GELU's) ([`crate::ops::activation`]).
    pub const ERF: Self = Self("erf");
    /// Clamp to `[min, max]` (ReLU6) ([`crate::ops::activation`]).
    pub const CLIP: Self = Self("clip");
    /// Softmax over one axis ([`crate::ops::softmax`]).
    pub const SOFTMAX: Self = Self("softmax");
    /// Layer normalisation over the trailing axes ([`crate::ops::norm`]).
    pub const LAYER_NORM: Self = Self("layer_norm");
    /// Matrix product with batch broadcasting ([`crate::ops::matmul`]).
    pub const MATMUL: Self = Self("matmul");
    /// Permutation of axes ([`crate::ops::shape`]).
    pub const TRANSPOSE: Self = Self("transpose");
    /// Concatenation along an axis ([`crate::ops::shape`]).
    pub const CONCAT: Self = Self("concat");
    /// A strided range along one axis ([`crate::ops::shape`]).
    pub const SLICE: Self = Self("slice");
    /// Selection by constant indices along one axis ([`crate::ops::shape`]).
    pub const GATHER: Self = Self("gather");
    /// Broadcast to a larger shape ([`crate::ops::shape`]).
    pub const EXPAND: Self = Self("expand");
    /// Constant padding ([`crate::ops::shape`]).
    pub const PAD: Self = Self("pad");
    /// Mean over several axes ([`crate::ops::reduce`]).
    pub const MEAN_AXES: Self = Self("mean_axes");
}

impl Debug for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpKind({})", self.0)
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A recorded op: what its forward pass saved, and its standard backward.
///
/// Only [`Op::kind`] and [`Op::backward`] are required. The other methods
/// are fast paths with defaults that give the same values: a walk that owns
/// the output gradient hands it over ([`Op::backward_owned`]), an op whose
/// backward is elementwise can run inside the kernel of the op above
/// ([`Op::backward_elementwise`]), an op can take an elementwise map into
/// its own kernel ([`Op::backward_owned_then`]), and several passes'
/// gradients can be computed at once ([`Op::backward_many`]).
///
/// Everything an op keeps lives as long as the tape: keep what the rules
/// need, not more (a ReLU keeps two sign bits per element, not its input).
/// An op that needs its own output records through
/// [`crate::Tape::record_keeping_output`], which hands it the output's
/// shared buffer instead of a copy.
pub trait Op<T: Element>: Any + Send + Sync + Debug {
    /// The op's kind.
    fn kind(&self) -> OpKind;

    /// The standard (exact gradient) backward: from the gradient at the
    /// output, one entry per input of the node, `None` where
    /// `ctx.needs(i)` is false or the input has no gradient; each tensor
    /// shaped like its input (`ctx.node.input_shapes`).
    fn backward(
        &self,
        ctx: &RuleContext<'_, T>,
        grad: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>>;

    /// The multiply-adds of the forward pass, given the node's input shapes
    /// and its output shape: what `sightline bench` counts as the work of
    /// a call. The default: 0 (an op whose cost is memory traffic).
    fn multiply_adds(&self, input_shapes: &[Vec<usize>], output_shape: &[usize]) -> u64 {
        let _ = (input_shapes, output_shape);
        0
    }

    /// [`Op::backward`] with the output gradient by value, which the op may
    /// reuse (mask it in place, hand it to an input). The default calls
    /// `backward`.
    fn backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        grad: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        self.backward(ctx, &grad)
    }

    /// The standard backward as an elementwise map, where it is one (see
    /// [`crate::Rule::elementwise`]). The default: `None`.
    fn backward_elementwise<'a>(&'a self, ctx: &RuleContext<'a, T>) -> Option<Elementwise<'a, T>> {
        let _ = ctx;
        None
    }

    /// Whether [`Op::backward_owned_then`] applies its map inside the
    /// op's kernel. The default: `false`.
    fn fuses_then(&self, ctx: &RuleContext<'_, T>) -> bool {
        let _ = ctx;
        false
    }

    /// [`Op::backward_owned`] with `then` applied to input 0's gradient.
    /// The default applies it after the fact.
    fn backward_owned_then(
        &self,
        ctx: &RuleContext<'_, T>,
        grad: Tensor<T>,
        then: Epilogue<'_, T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        then_after(ctx, self.backward_owned(ctx, grad)?, then)
    }

    /// [`Op::backward`] of several passes' gradients, one result per
    /// gradient, each the same bits as computed alone. The default runs
    /// `backward` per gradient.
    fn backward_many(
        &self,
        ctx: &RuleContext<'_, T>,
        grads: &[&Tensor<T>],
    ) -> Result<Vec<Vec<Option<Tensor<T>>>>> {
        grads.iter().map(|g| self.backward(ctx, g)).collect()
    }

    /// The op as an affine map of its input 0 (`x (*) W + b`), for the LRP
    /// rules that run it again with modified weights
    /// ([`crate::lrp::Affine`]). The default: `None` (those rules then
    /// refuse the op).
    fn affine(&self) -> Option<&dyn Affine<T>> {
        None
    }

    /// The op as a parameter-free linear map of its inputs, for the LRP
    /// norm rule ([`crate::lrp::Homogeneous`]). The default: `None`.
    fn homogeneous(&self) -> Option<&dyn Homogeneous<T>> {
        None
    }
}

impl<T: Element> dyn Op<T> {
    /// The op as its concrete type, if it is one: how a rule reaches the
    /// values an op saved.
    pub fn downcast_ref<O: Op<T>>(&self) -> Option<&O> {
        let any: &dyn Any = self;
        any.downcast_ref::<O>()
    }

    /// Whether the op is of type `O`.
    pub fn is<O: Op<T>>(&self) -> bool {
        self.downcast_ref::<O>().is_some()
    }

    /// The name of the op's kind, for messages.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }
}
