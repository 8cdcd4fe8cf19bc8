//! torchvision's VGG (`features`, `avgpool`, `classifier`), widths configurable.

use super::FeatureClassifier;
use crate::arch::{VggConfig, VggItem};
use crate::default_layers::DefaultLayers;
use crate::error::Result;
use crate::layers::{
    build_conv_then_batch_norm, AdaptiveAvgPool2d, Conv2d, ConvSpec, Dropout, Linear, MaxPool2d,
    ReLU, Sequential,
};
use crate::module::join_path;
use crate::weights::WeightSource;
use sightline_tensor::Element;

/// torchvision's `make_layers`: conv 3x3 pad 1 [+ batch norm] + ReLU per
/// number, 2x2 max pool per `"M"`. Also returns the index of the last ReLU
/// and of every max pool.
fn make_layers<T: Element>(
    src: &mut dyn WeightSource<T>,
    cfg: &VggConfig,
) -> Result<(Sequential<T>, usize, Vec<usize>)> {
    let mut features = Sequential::default();
    let (mut channels, mut last_relu, mut pools) = (3, 0, Vec::new());
    for item in &cfg.cfg {
        match *item {
            VggItem::MaxPool => {
                pools.push(features.len());
                features.push(MaxPool2d::new(2, 2, 0));
            }
            VggItem::Conv(out) => {
                let index = features.len();
                let path = |i: usize| join_path("features", &i.to_string());
                let spec = ConvSpec::new(channels, out, 3).padding(1);
                if cfg.batch_norm {
                    let (conv, bn) =
                        build_conv_then_batch_norm(src, &path(index), spec, &path(index + 1))?;
                    features.push(conv);
                    features.push(bn);
                } else {
                    features.push(Conv2d::build(src, &path(index), spec)?);
                }
                last_relu = features.len();
                features.push(ReLU);
                channels = out;
            }
        }
    }
    Ok((features, last_relu, pools))
}

/// Builds torchvision's `VGG` for a (validated) configuration from a weight source.
pub(crate) fn build_vgg<T: Element>(
    src: &mut dyn WeightSource<T>,
    cfg: &VggConfig,
) -> Result<FeatureClassifier<T>> {
    let (features, last_relu, pools) = make_layers(src, cfg)?;
    let [ph, pw] = cfg.avgpool;
    let flat = cfg.last_channels() * ph * pw;
    let mut classifier = Sequential::default();
    classifier.push(Linear::build(src, "classifier.0", flat, cfg.hidden)?);
    classifier.push(ReLU);
    classifier.push(Dropout::default());
    classifier.push(Linear::build(src, "classifier.3", cfg.hidden, cfg.hidden)?);
    classifier.push(ReLU);
    classifier.push(Dropout::default());
    classifier.push(Linear::build(
        src,
        "classifier.6",
        cfg.hidden,
        cfg.num_classes,
    )?);
    // The next-to-last pool (VGG-16's fourth, features.23); with a single
    // pool, that pool; with none, the last ReLU.
    let excitation = match pools.len() {
        0 => last_relu,
        1 => pools[0],
        n => pools[n - 2],
    };
    let defaults = DefaultLayers {
        grad_cam: format!("features.{last_relu}"),
        excitation: format!("features.{excitation}"),
        contrast: "classifier.4".to_string(),
        classifier: "classifier.6".to_string(),
    };
    Ok(FeatureClassifier::new(
        features,
        AdaptiveAvgPool2d::new(ph, pw),
        classifier,
        defaults,
    ))
}
