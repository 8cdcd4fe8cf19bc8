//! The model families, built like torchvision's classes.

mod alexnet;
mod features_classifier;
mod resnet;
mod vgg;

pub use features_classifier::FeatureClassifier;
pub use resnet::ResNet;

use crate::arch::Architecture;
use crate::default_layers::DefaultLayers;
use crate::error::Result;
use crate::module::{Module, NamedTensor};
use crate::weights::WeightSource;
use sightline_autograd::{Tape, Var};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// The network of a model: one of the families.
#[derive(Clone, Debug)]
pub enum Network<T> {
    /// A VGG.
    Vgg(FeatureClassifier<T>),
    /// A ResNet.
    ResNet(ResNet<T>),
    /// An AlexNet.
    AlexNet(FeatureClassifier<T>),
}

impl<T: Element> Network<T> {
    /// Builds the network of a validated architecture from a weight source.
    pub(crate) fn build(arch: &Architecture, src: &mut dyn WeightSource<T>) -> Result<Self> {
        Ok(match arch {
            Architecture::Vgg(c) => Self::Vgg(vgg::build_vgg(src, c)?),
            Architecture::ResNet(c) => Self::ResNet(ResNet::build(src, c)?),
            Architecture::AlexNet(c) => Self::AlexNet(alexnet::build_alexnet(src, c)?),
        })
    }

    /// The default probe layers.
    pub(crate) fn default_layers(&self) -> DefaultLayers {
        match self {
            Self::Vgg(m) | Self::AlexNet(m) => m.default_layers().clone(),
            Self::ResNet(_) => ResNet::<T>::default_layers(),
        }
    }

    fn module(&self) -> &dyn Module<T> {
        match self {
            Self::Vgg(m) => m,
            Self::ResNet(m) => m,
            Self::AlexNet(m) => m,
        }
    }

    fn module_mut(&mut self) -> &mut dyn Module<T> {
        match self {
            Self::Vgg(m) => m,
            Self::ResNet(m) => m,
            Self::AlexNet(m) => m,
        }
    }
}

impl<T: Element> Module<T> for Network<T> {
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        self.module().forward(tape, x)
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
        out: &mut Vec<(String, &'a mut crate::layers::BatchNorm2d<T>)>,
    ) {
        self.module_mut().batch_norms_after_convs_mut(prefix, out);
    }
}
