//! torchvision's AlexNet.

use crate::arch::AlexNetConfig;
use crate::default_layers::DefaultLayers;
use crate::error::Result;
use crate::layers::{
    AdaptiveAvgPool2d, Conv2d, ConvSpec, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential,
};
use crate::module::{child_paths, join_path, run_child, Module, NamedTensor};
use crate::weights::WeightSource;
use sightline_autograd::{Tape, Var};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// torchvision's `AlexNet`: `features` (5 convolutions, 3 max pools),
/// `avgpool` (6x6), `classifier` (Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear).
#[derive(Clone, Debug)]
pub struct AlexNet<T> {
    features: Sequential<T>,
    avgpool: AdaptiveAvgPool2d,
    classifier: Sequential<T>,
}

impl<T: Element> AlexNet<T> {
    /// Builds AlexNet from a weight source.
    pub(crate) fn build(src: &mut dyn WeightSource<T>, cfg: &AlexNetConfig) -> Result<Self> {
        let mut f = Sequential::default();
        f.push(Conv2d::build(
            src,
            "features.0",
            ConvSpec::new(3, 64, 11).stride(4).padding(2),
        )?);
        f.push(ReLU);
        f.push(MaxPool2d::new(3, 2, 0));
        f.push(Conv2d::build(
            src,
            "features.3",
            ConvSpec::new(64, 192, 5).padding(2),
        )?);
        f.push(ReLU);
        f.push(MaxPool2d::new(3, 2, 0));
        f.push(Conv2d::build(
            src,
            "features.6",
            ConvSpec::new(192, 384, 3).padding(1),
        )?);
        f.push(ReLU);
        f.push(Conv2d::build(
            src,
            "features.8",
            ConvSpec::new(384, 256, 3).padding(1),
        )?);
        f.push(ReLU);
        f.push(Conv2d::build(
            src,
            "features.10",
            ConvSpec::new(256, 256, 3).padding(1),
        )?);
        f.push(ReLU);
        f.push(MaxPool2d::new(3, 2, 0));
        let mut c = Sequential::default();
        c.push(Dropout::default());
        c.push(Linear::build(src, "classifier.1", 256 * 6 * 6, 4096)?);
        c.push(ReLU);
        c.push(Dropout::default());
        c.push(Linear::build(src, "classifier.4", 4096, 4096)?);
        c.push(ReLU);
        c.push(Linear::build(src, "classifier.6", 4096, cfg.num_classes)?);
        Ok(Self {
            features: f,
            avgpool: AdaptiveAvgPool2d::new(6, 6),
            classifier: c,
        })
    }

    /// The default probe layers (see [`DefaultLayers`]).
    pub(crate) fn default_layers() -> DefaultLayers {
        DefaultLayers {
            grad_cam: "features.11".to_string(),
            excitation: "features.5".to_string(),
            contrast: "classifier.5".to_string(),
            classifier: "classifier.6".to_string(),
        }
    }
}

impl<T: Element> Module<T> for AlexNet<T> {
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
}
