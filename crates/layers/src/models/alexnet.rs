//! torchvision's AlexNet.

use super::FeatureClassifier;
use crate::arch::AlexNetConfig;
use crate::default_layers::DefaultLayers;
use crate::error::Result;
use crate::layers::{
    AdaptiveAvgPool2d, Conv2d, ConvSpec, Dropout, Linear, MaxPool2d, ReLU, Sequential,
};
use crate::weights::WeightSource;
use sightline_tensor::Element;

/// Builds torchvision's `AlexNet`: `features` (5 convolutions, 3 max pools),
/// `avgpool` (6x6), `classifier` (Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear).
pub(crate) fn build_alexnet<T: Element>(
    src: &mut dyn WeightSource<T>,
    cfg: &AlexNetConfig,
) -> Result<FeatureClassifier<T>> {
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
    Ok(FeatureClassifier::new(
        f,
        AdaptiveAvgPool2d::new(6, 6),
        c,
        DefaultLayers {
            grad_cam: "features.11".to_string(),
            excitation: "features.5".to_string(),
            contrast: "classifier.5".to_string(),
            classifier: "classifier.6".to_string(),
        },
    ))
}
