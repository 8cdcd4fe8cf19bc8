//! One forward pass, many answers: every method and every target from one tape.

use crate::error::{AttributionError, Result};
use crate::method::Method;
use crate::postprocess::{
    grad_cam, max_abs_channels, resize_map, smooth_map, sum_channels, sum_channels_product, Resize,
};
use crate::target::Target;
use sightline_autograd::ops::{conv::ExcitationConv, linear::ExcitationLinear};
use sightline_autograd::{OpKind, Retain, RuleSet, Tape, Var, VarId};
use sightline_layers::Model;
use sightline_tensor::elementwise::sub;
use sightline_tensor::{Element, ResizeMode, Tensor};
use std::sync::Arc;

/// Options of TorchRay's saliency contract.
#[derive(Clone, Debug, PartialEq)]
pub struct SaliencyOptions {
    /// The probed layer's torchvision path; `""` is the input; `None` is the
    /// method's default (the input for gradient-style methods, the model's
    /// default layers for Grad-CAM and excitation backprop).
    pub layer: Option<String>,
    /// Resize of the map.
    pub resize: Resize,
    /// Interpolation of the resize.
    pub resize_mode: ResizeMode,
    /// Gaussian smoothing, `sigma = smooth * max(h, w)`; 0 is off.
    pub smooth: f64,
}

impl Default for SaliencyOptions {
    fn default() -> Self {
        Self {
            layer: None,
            resize: Resize::Off,
            resize_mode: ResizeMode::Bilinear,
            smooth: 0.0,
        }
    }
}

impl SaliencyOptions {
    /// Options probing `layer`.
    pub fn at(layer: &str) -> Self {
        Self {
            layer: Some(layer.to_string()),
            ..Self::default()
        }
    }
}

/// A saliency answer.
#[derive(Clone, Debug)]
pub struct Saliency<T> {
    /// The map, N x 1 x h x w (after resize and smoothing).
    pub map: Tensor<T>,
    /// The raw pseudo-gradient at the probe.
    pub gradient: Tensor<T>,
    /// The probed activation (the input for `""`).
    pub activation: Arc<Tensor<T>>,
    /// The probed layer.
    pub layer: String,
}

/// A recorded forward pass of a model on one batch, ready to be explained
/// with any method and any target without running the model again.
pub struct Explainer<'m, T: Element> {
    model: &'m Model<T>,
    tape: Tape<T>,
    input: Var<T>,
    logits: Var<T>,
}

impl<'m, T: Element> Explainer<'m, T> {
    /// Runs the forward pass, keeping what every method may need.
    pub fn new(model: &'m Model<T>, input: &Tensor<T>) -> Result<Self> {
        Self::with_retention(model, input, Retain::All, &[])
    }

    /// Runs the forward pass, keeping what `methods` need at `layers` only.
    ///
    /// Gradient-style methods then keep no activations but the named layers'
    /// outputs: the least memory.
    pub fn for_methods(
        model: &'m Model<T>,
        input: &Tensor<T>,
        methods: &[Method],
        layers: &[&str],
    ) -> Result<Self> {
        let retain = if methods.iter().any(Method::needs_all_values) {
            Retain::All
        } else {
            Retain::Minimal
        };
        Self::with_retention(model, input, retain, layers)
    }

    /// Runs the forward pass with an explicit retention policy.
    pub fn with_retention(
        model: &'m Model<T>,
        input: &Tensor<T>,
        retain: Retain,
        layers: &[&str],
    ) -> Result<Self> {
        for l in layers {
            check_layer(model, l)?;
        }
        let mut tape = Tape::with_kept_layers(retain, layers);
        let input = tape.input(input.clone());
        let logits = model.forward(&mut tape, &input)?;
        Ok(Self {
            model,
            tape,
            input,
            logits,
        })
    }

    /// The model's output.
    pub fn logits(&self) -> &Tensor<T> {
        self.logits.value()
    }

    /// The model.
    pub fn model(&self) -> &Model<T> {
        self.model
    }

    /// The input batch.
    pub fn input(&self) -> &Tensor<T> {
        self.input.value()
    }

    /// The variable and (when kept) value of a probe: the input for `""`, else a layer's output.
    fn probe(&self, layer: &str) -> Result<(VarId, Option<Arc<Tensor<T>>>)> {
        if layer.is_empty() {
            return Ok((self.input.id(), Some(self.input.value_arc().clone())));
        }
        check_layer(self.model, layer)?;
        let out = self
            .tape
            .layer_output(layer)
            .ok_or_else(|| unknown_layer(self.model, layer))?;
        Ok((out.id, out.value.clone()))
    }

    /// The probe's activation, or an error if the forward pass did not keep it.
    fn activation(&self, layer: &str, value: Option<Arc<Tensor<T>>>) -> Result<Arc<Tensor<T>>> {
        value.ok_or_else(|| {
            AttributionError::InvalidOption(format!(
                "the forward pass did not keep the output of layer `{layer}`; name it when creating the explainer"
            ))
        })
    }

    /// The pseudo-gradient at a probe for a seed at the logits under `rules`.
    pub fn gradient_at(
        &self,
        layer: &str,
        seed: &Tensor<T>,
        rules: &RuleSet<T>,
    ) -> Result<Tensor<T>> {
        let (id, _) = self.probe(layer)?;
        Ok(self
            .tape
            .backward(self.logits.id(), seed, rules, &[id])?
            .remove(0))
    }

    /// Explains `target` with `method` (TorchRay's contract).
    pub fn saliency(
        &self,
        method: &Method,
        target: &Target<T>,
        opts: &SaliencyOptions,
    ) -> Result<Saliency<T>> {
        let defaults = self.model.default_layers();
        let layer = match (&opts.layer, method) {
            (Some(l), _) => l.clone(),
            (None, Method::GradCam) => defaults.grad_cam.clone(),
            (None, Method::ExcitationBackprop | Method::ContrastiveExcitationBackprop { .. }) => {
                defaults.excitation.clone()
            }
            (None, _) => String::new(),
        };
        let seed = target.seed(self.logits.shape())?;
        let (probe, value) = self.probe(&layer)?;
        let (gradient, raw_map) = match method {
            Method::Gradient | Method::Deconvnet | Method::GuidedBackprop => {
                let rules = match method {
                    Method::Gradient => RuleSet::standard(),
                    Method::Deconvnet => RuleSet::deconvnet(),
                    _ => RuleSet::guided_backprop(),
                };
                let g = self.backward(&seed, &rules, probe)?;
                let m = max_abs_channels(&g)?;
                (g, m)
            }
            Method::GradCam => {
                let g = self.backward(&seed, &RuleSet::standard(), probe)?;
                let a = self.activation(&layer, value.clone())?;
                let m = grad_cam(&a, &g, &layer, true)?;
                (g, m)
            }
            Method::LinearApprox => {
                let g = self.backward(&seed, &RuleSet::standard(), probe)?;
                let a = self.activation(&layer, value.clone())?;
                let m = sum_channels_product(&a, &g)?;
                (g, m)
            }
            Method::ExcitationBackprop => {
                let g = self.backward(&seed, &RuleSet::excitation_backprop(), probe)?;
                let m = sum_channels(&g)?;
                (g, m)
            }
            Method::ContrastiveExcitationBackprop {
                contrast_layer,
                classifier_layer,
            } => {
                let contrast = contrast_layer.clone().unwrap_or(defaults.contrast.clone());
                let classifier = classifier_layer
                    .clone()
                    .unwrap_or(defaults.classifier.clone());
                let g = self.contrastive(&seed, probe, &contrast, &classifier)?;
                let m = sum_channels(&g)?.map(|v| v.max(T::zero()));
                (g, m)
            }
        };
        let activation = match value {
            Some(v) => v,
            None => Arc::new(Tensor::zeros(vec![0])),
        };
        let [_, _, h, w] = self.input.value().dims4("saliency")?;
        let map = resize_map(raw_map, opts.resize, (h, w), opts.resize_mode)?;
        let map = smooth_map(map, opts.smooth)?;
        Ok(Saliency {
            map,
            gradient,
            activation,
            layer,
        })
    }

    fn backward(&self, seed: &Tensor<T>, rules: &RuleSet<T>, probe: VarId) -> Result<Tensor<T>> {
        Ok(self
            .tape
            .backward(self.logits.id(), seed, rules, &[probe])?
            .remove(0))
    }

    /// Contrastive excitation backprop: the excitation at `contrast` with the
    /// classifier's weights negated is subtracted from the normal one there,
    /// and the difference propagates on to the probe.
    fn contrastive(
        &self,
        seed: &Tensor<T>,
        probe: VarId,
        contrast: &str,
        classifier: &str,
    ) -> Result<Tensor<T>> {
        check_layer(self.model, classifier)?;
        let (contrast_id, _) = self.probe(contrast)?;
        if contrast_id <= probe {
            return Err(AttributionError::InvalidOption(format!(
                "the contrast layer `{contrast}` must come after the saliency layer"
            )));
        }
        let eb = RuleSet::excitation_backprop();
        let negated = eb
            .clone()
            .with_layer(
                classifier,
                Some(OpKind::Linear),
                Arc::new(ExcitationLinear {
                    negate_weights: true,
                }),
            )
            .with_layer(
                classifier,
                Some(OpKind::Conv2d),
                Arc::new(ExcitationConv {
                    negate_weights: true,
                }),
            );
        let at_contrast = |rules: &RuleSet<T>| -> Result<Tensor<T>> {
            Ok(self
                .tape
                .backward(self.logits.id(), seed, rules, &[contrast_id])?
                .remove(0))
        };
        let negative = at_contrast(&negated)?;
        let positive = at_contrast(&eb)?;
        let diff = sub(&positive, &negative)?;
        Ok(self
            .tape
            .backward(contrast_id, &diff, &eb, &[probe])?
            .remove(0))
    }

    /// Explains several methods for several targets from this one forward pass.
    ///
    /// The results equal separate calls, method-major: `out[m][t]`.
    pub fn saliency_many(
        &self,
        methods: &[Method],
        targets: &[Target<T>],
        opts: &SaliencyOptions,
    ) -> Result<Vec<Vec<Saliency<T>>>> {
        methods
            .iter()
            .map(|m| targets.iter().map(|t| self.saliency(m, t, opts)).collect())
            .collect()
    }
}

/// Explains one batch with one method: a forward pass keeping only what the method needs.
pub fn saliency<T: Element>(
    model: &Model<T>,
    input: &Tensor<T>,
    method: &Method,
    target: &Target<T>,
    opts: &SaliencyOptions,
) -> Result<Saliency<T>> {
    let keep: Vec<&str> = opts
        .layer
        .iter()
        .map(String::as_str)
        .filter(|l| !l.is_empty())
        .collect();
    let defaults = model.default_layers();
    let keep = if keep.is_empty() && matches!(method, Method::GradCam) {
        vec![defaults.grad_cam.as_str()]
    } else {
        keep
    };
    Explainer::for_methods(model, input, std::slice::from_ref(method), &keep)?
        .saliency(method, target, opts)
}

fn check_layer<T: Element>(model: &Model<T>, layer: &str) -> Result<()> {
    if layer.is_empty() || model.has_layer(layer) {
        Ok(())
    } else {
        Err(unknown_layer(model, layer))
    }
}

fn unknown_layer<T: Element>(model: &Model<T>, layer: &str) -> AttributionError {
    let paths = model.layer_paths();
    let close: Vec<&String> = paths
        .iter()
        .filter(|p| p.starts_with(layer.split('.').next().unwrap_or("")))
        .take(12)
        .collect();
    let shown: Vec<&String> = if close.is_empty() {
        paths.iter().take(12).collect()
    } else {
        close
    };
    AttributionError::UnknownLayer {
        name: layer.to_string(),
        known: shown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}
