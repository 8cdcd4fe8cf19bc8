//! [`Layer`]: any of the layers of this crate, so that containers hold a tree
//! of concrete layers rather than trait objects.

use super::{
    AdaptiveAvgPool2d, AvgPool2d, BasicBlock, BatchNorm2d, Bottleneck, Conv2d, Dropout, Flatten,
    Linear, MaxPool2d, ReLU, Sequential,
};
use crate::error::Result;
use crate::module::{Module, NamedTensor};
use sightline_autograd::{Tape, Var};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// One layer of a model, as a child of a [`Sequential`].
#[derive(Clone, Debug)]
pub enum Layer<T> {
    /// A convolution.
    Conv2d(Conv2d<T>),
    /// A fully connected layer.
    Linear(Linear<T>),
    /// A ReLU.
    ReLU(ReLU),
    /// A max pool.
    MaxPool2d(MaxPool2d),
    /// An average pool.
    AvgPool2d(AvgPool2d),
    /// An adaptive average pool.
    AdaptiveAvgPool2d(AdaptiveAvgPool2d),
    /// A batch norm (inference).
    BatchNorm2d(BatchNorm2d<T>),
    /// A dropout (the identity in inference).
    Dropout(Dropout),
    /// A flatten.
    Flatten(Flatten),
    /// A container.
    Sequential(Sequential<T>),
    /// A ResNet basic block.
    BasicBlock(BasicBlock<T>),
    /// A ResNet bottleneck block.
    Bottleneck(Bottleneck<T>),
}

impl<T: Element> Layer<T> {
    /// The layer as a module.
    fn module(&self) -> &dyn Module<T> {
        match self {
            Self::Conv2d(m) => m,
            Self::Linear(m) => m,
            Self::ReLU(m) => m,
            Self::MaxPool2d(m) => m,
            Self::AvgPool2d(m) => m,
            Self::AdaptiveAvgPool2d(m) => m,
            Self::BatchNorm2d(m) => m,
            Self::Dropout(m) => m,
            Self::Flatten(m) => m,
            Self::Sequential(m) => m,
            Self::BasicBlock(m) => m,
            Self::Bottleneck(m) => m,
        }
    }

    /// The layer as a mutable module.
    fn module_mut(&mut self) -> &mut dyn Module<T> {
        match self {
            Self::Conv2d(m) => m,
            Self::Linear(m) => m,
            Self::ReLU(m) => m,
            Self::MaxPool2d(m) => m,
            Self::AvgPool2d(m) => m,
            Self::AdaptiveAvgPool2d(m) => m,
            Self::BatchNorm2d(m) => m,
            Self::Dropout(m) => m,
            Self::Flatten(m) => m,
            Self::Sequential(m) => m,
            Self::BasicBlock(m) => m,
            Self::Bottleneck(m) => m,
        }
    }
}

impl<T: Element> Module<T> for Layer<T> {
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        self.module().forward(tape, x)
    }

    fn forward_owned(&self, tape: &mut Tape<T>, x: Var<T>) -> Result<Var<T>> {
        self.module().forward_owned(tape, x)
    }

    fn submodule_paths(&self, prefix: &str, out: &mut Vec<String>) {
        self.module().submodule_paths(prefix, out);
    }

    fn named_tensors<'a>(&'a self, prefix: &str, out: &mut Vec<NamedTensor<'a, T>>) {
        self.module().named_tensors(prefix, out);
    }

    fn trainable_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut Arc<Tensor<T>>)>,
    ) {
        self.module_mut().trainable_mut(prefix, out);
    }

    fn batch_norms_after_convs_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut BatchNorm2d<T>)>,
    ) {
        self.module_mut().batch_norms_after_convs_mut(prefix, out);
    }
}

macro_rules! impl_from {
    ($($variant:ident => $ty:ty),* $(,)?) => {
        $(impl<T: Element> From<$ty> for Layer<T> {
            fn from(m: $ty) -> Self {
                Self::$variant(m)
            }
        })*
    };
}

impl_from!(
    Conv2d => Conv2d<T>,
    Linear => Linear<T>,
    ReLU => ReLU,
    MaxPool2d => MaxPool2d,
    AvgPool2d => AvgPool2d,
    AdaptiveAvgPool2d => AdaptiveAvgPool2d,
    BatchNorm2d => BatchNorm2d<T>,
    Dropout => Dropout,
    Flatten => Flatten,
    Sequential => Sequential<T>,
    BasicBlock => BasicBlock<T>,
    Bottleneck => Bottleneck<T>,
);
