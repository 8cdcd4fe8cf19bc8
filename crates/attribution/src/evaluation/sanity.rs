//! The model-randomisation sanity check (Adebayo et al. 2018, cascading
//! randomisation).

use super::rank::spearman;
use crate::error::{AttributionError, Result};
use crate::explainer::{Explainer, SaliencyOptions};
use crate::method::Method;
use crate::postprocess::Resize;
use crate::target::Target;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use sightline_layers::Model;
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// One step of the cascade: the layers from the top down to `layer`
/// re-randomised, and how much each method's map still resembles the map
/// of the trained model.
#[derive(Clone, Debug, PartialEq)]
pub struct SanityStep {
    /// The layer randomised at this step (with every layer above it).
    pub layer: String,
    /// Per method (in the order asked): Spearman's rank correlation of the
    /// maps, and of their absolute values; `None` where a map is constant.
    pub correlations: Vec<(Option<f64>, Option<f64>)>,
}

/// Adebayo et al.'s cascading randomisation: the layers with weights
/// (convolutions and fully connected layers) are re-randomised one at a
/// time from the logits down, cumulatively; after each, every method's map
/// of `x` for `target` (at the input's size) is compared with the trained
/// model's by Spearman's rank correlation, of the values and of their
/// absolute values. A method whose maps stay correlated as the weights are
/// destroyed does not explain the model.
///
/// A weight (and bias) is replaced by independent normal values with the
/// standard deviation of the trained one (its scale kept), from a ChaCha8
/// generator seeded with `seed` and the layer's position. Works on the
/// presets (whose weights the library can set); an ONNX graph's weights
/// are fixed, and a model without settable weights is an error.
pub fn cascading_randomization<T: Element>(
    model: &Model<T>,
    x: &Tensor<T>,
    target: &Target<T>,
    methods: &[Method],
    seed: u64,
) -> Result<Vec<SanityStep>> {
    let mut model = model.clone();
    let layers = layer_names(&mut model);
    if layers.is_empty() {
        return Err(AttributionError::InvalidOption(
            "the sanity check re-randomises weights, and this model has none it can set \
             (an ONNX graph or a network of your own)"
                .into(),
        ));
    }
    let original = maps(&model, x, target, methods)?;
    let mut steps = Vec::with_capacity(layers.len());
    for (depth, layer) in layers.iter().rev().enumerate() {
        randomise(&mut model, layer, seed, depth as u64)?;
        let now = maps(&model, x, target, methods)?;
        let correlations = original
            .iter()
            .zip(&now)
            .map(|(a, b)| {
                let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
                (spearman(a, b), spearman(&abs(a), &abs(b)))
            })
            .collect();
        steps.push(SanityStep {
            layer: layer.clone(),
            correlations,
        });
    }
    Ok(steps)
}

/// The layers with settable weights, in forward order (`features.0`,
/// ..., `classifier.6`).
fn layer_names<T: Element>(model: &mut Model<T>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (name, _) in model.parameters_mut() {
        let layer = name
            .rsplit_once('.')
            .map_or(name.as_str(), |(l, _)| l)
            .to_string();
        if out.last() != Some(&layer) {
            out.push(layer);
        }
    }
    out
}

/// Replaces the weight and bias of `layer` by normal values of their own
/// standard deviation.
fn randomise<T: Element>(model: &mut Model<T>, layer: &str, seed: u64, depth: u64) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ depth.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for (name, tensor) in model.parameters_mut() {
        if name.rsplit_once('.').map(|(l, _)| l) != Some(layer) {
            continue;
        }
        let values = tensor.data();
        let n = values.len().max(1) as f64;
        let mean = values.iter().map(|v| v.to_f64_lossless()).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|v| (v.to_f64_lossless() - mean).powi(2))
            .sum::<f64>()
            / n;
        let normal = Normal::new(0.0, var.sqrt())
            .map_err(|e| AttributionError::InvalidOption(format!("{name}: {e}")))?;
        let fresh: Vec<T> = (0..values.len())
            .map(|_| T::from_f64_lossy(normal.sample(&mut rng)))
            .collect();
        *tensor = Arc::new(Tensor::from_vec(tensor.shape().to_vec(), fresh)?);
    }
    Ok(())
}

/// Each method's map of `x` for `target`, at the input's size, on the
/// model's form for that method.
fn maps<T: Element>(
    model: &Model<T>,
    x: &Tensor<T>,
    target: &Target<T>,
    methods: &[Method],
) -> Result<Vec<Vec<f64>>> {
    let opts = SaliencyOptions {
        resize: Resize::Input,
        ..SaliencyOptions::default()
    };
    methods
        .iter()
        .map(|m| {
            let form = m.model_form().apply(model, &[])?;
            let ex = Explainer::new(&form, x)?;
            let s = ex.saliency(m, target, &opts)?;
            Ok(s.map.data().iter().map(|v| v.to_f64_lossless()).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_layers::Architecture;

    #[test]
    fn the_cascade_goes_top_down_and_decorrelates_the_gradient() {
        let arch = Architecture::from_json(
            r#"{"kind": "vgg", "cfg": [6, "M", 8], "avgpool": [2, 2], "hidden": 8, "num_classes": 4}"#,
        )
        .unwrap();
        let model = Model::<f64>::random(&arch, 3).unwrap();
        let x = Tensor::from_vec(
            [1, 3, 8, 8],
            (0..192).map(|v| (v as f64 * 0.23).sin()).collect(),
        )
        .unwrap();
        let steps = cascading_randomization(
            &model,
            &x,
            &Target::Class(2),
            &[Method::Gradient, Method::GradCam],
            7,
        )
        .unwrap();
        let layers: Vec<&str> = steps.iter().map(|s| s.layer.as_str()).collect();
        assert_eq!(
            layers,
            [
                "classifier.6",
                "classifier.3",
                "classifier.0",
                "features.3",
                "features.0"
            ]
        );
        // Every correlation is a correlation; with every layer random the
        // gradient no longer ranks the pixels as the trained model did.
        for s in &steps {
            for r in s.correlations.iter().flat_map(|&(a, b)| [a, b]).flatten() {
                assert!((-1.0..=1.0).contains(&r), "{s:?}");
            }
        }
        let last = steps.last().unwrap().correlations[0].0.unwrap();
        assert!(
            last < 0.9,
            "gradient still correlated {last} after full randomisation"
        );
        // The same seed repeats the run.
        let methods = [Method::Gradient, Method::GradCam];
        let again = cascading_randomization(&model, &x, &Target::Class(2), &methods, 7).unwrap();
        assert_eq!(again, steps);
    }
}
