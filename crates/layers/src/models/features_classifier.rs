//! The shape VGG and AlexNet share: `features`, `avgpool`, flatten, `classifier`.

use crate::default_layers::DefaultLayers;
use crate::error::Result;
use crate::layers::{AdaptiveAvgPool2d, Flatten, Sequential};
use crate::module::{child_paths, join_path, run_child, Module, NamedTensor};
use sightline_autograd::{Tape, Var};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// torchvision's `VGG` and `AlexNet`: a convolutional `features` stack, an
/// adaptive `avgpool`, `torch.flatten`, and a fully connected `classifier`.
#[derive(Clone, Debug)]
pub struct FeatureClassifier<T> {
    features: Sequential<T>,
    avgpool: AdaptiveAvgPool2d,
    classifier: Sequential<T>,
    defaults: DefaultLayers,
}

impl<T: Element> FeatureClassifier<T> {
    /// Assembles the network from its three named parts and its default probe layers.
    pub(crate) fn new(
        features: Sequential<T>,
        avgpool: AdaptiveAvgPool2d,
        classifier: Sequential<T>,
        defaults: DefaultLayers,
    ) -> Self {
        Self {
            features,
            avgpool,
            classifier,
            defaults,
        }
    }

    /// The default probe layers.
    pub(crate) fn default_layers(&self) -> &DefaultLayers {
        &self.defaults
    }
}

impl<T: Element> Module<T> for FeatureClassifier<T> {
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        let x = run_child(tape, "features", &self.features, x)?;
        let x = run_child(tape, "avgpool", &self.avgpool, &x)?;
        let x = Module::<T>::forward(&Flatten, tape, &x)?;
        run_child(tape, "classifier", &self.classifier, &x)
    }

    fn submodule_paths(&self, prefix: &str, out: &mut Vec<String>) {
        child_paths(prefix, "features", &self.features, out);
        child_paths::<T, _>(prefix, "avgpool", &self.avgpool, out);
        child_paths(prefix, "classifier", &self.classifier, out);
    }

    fn named_tensors<'a>(&'a self, prefix: &str, out: &mut Vec<NamedTensor<'a, T>>) {
        self.features
            .named_tensors(&join_path(prefix, "features"), out);
        self.classifier
            .named_tensors(&join_path(prefix, "classifier"), out);
    }

    fn trainable_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut Arc<Tensor<T>>)>,
    ) {
        self.features
            .trainable_mut(&join_path(prefix, "features"), out);
        self.classifier
            .trainable_mut(&join_path(prefix, "classifier"), out);
    }

    fn batch_norms_after_convs_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut crate::layers::BatchNorm2d<T>)>,
    ) {
        self.features
            .batch_norms_after_convs_mut(&join_path(prefix, "features"), out);
    }
}
