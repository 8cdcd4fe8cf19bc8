//! One forward pass, many answers: every method and every target from one tape.

use crate::captum::{self, TunnelledMethod};
use crate::error::{AttributionError, Result};
use crate::method::Method;
use crate::perturbation::{extremal_perturbation, rise, MaskSource, RiseDraws, RiseOptions};
use crate::postprocess::{
    grad_cam, max_abs_channels, resize_map, smooth_map, sum_channels, sum_channels_product, Resize,
};
use crate::target::Target;
use sightline_autograd::ops::{conv::ExcitationConv, linear::ExcitationLinear};
use sightline_autograd::{Branch, OpKind, Pass, Retain, RuleSet, Tape, Var, VarId};
use sightline_layers::Model;
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
    /// The map, N x 1 x h x w (after resize and smoothing). For Captum's
    /// methods, the attribution summed over its channels (as Captum's
    /// `visualize_image_attr` shows it with sign `"all"`).
    pub map: Tensor<T>,
    /// The raw pseudo-gradient at the probe.
    pub gradient: Tensor<T>,
    /// The probed activation (the input for `""`).
    pub activation: Arc<Tensor<T>>,
    /// The probed layer.
    pub layer: String,
    /// Captum's raw attribution for Captum's methods ([`Method::is_captum`]):
    /// per channel, N x C x H x W at the input (N x 1 x h x w at the layer
    /// for `layer_grad_cam`), neither resized nor smoothed; `None` for the
    /// other methods, whose answer is the map.
    pub attribution: Option<Tensor<T>>,
}

/// A recorded forward pass of a model on one batch, ready to be explained
/// with any method and any target without running the model again. Every
/// constructor records under the model's kernel policy
/// ([`Model::kernels`]).
pub struct Explainer<'m, T: Element> {
    model: &'m Model<T>,
    tape: Tape<T>,
    input: Var<T>,
    logits: Var<T>,
}

impl<'m, T: Element> Explainer<'m, T> {
    /// Runs the forward pass, keeping what every method may need at every
    /// layer: any layer can be probed afterwards.
    ///
    /// The model runs as it is: a canonizer applied to it first (for
    /// example [`crate::ModelForm::apply`], which merges batch norms into
    /// the convolutions before them for the gradient-style methods) changes
    /// what is recorded, and a merged convolution's own output is then not
    /// a layer output.
    pub fn new(model: &'m Model<T>, input: &Tensor<T>) -> Result<Self> {
        Self::record(model, input, Retain::All, &[])
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

    /// Runs the forward pass with an explicit retention policy, keeping the
    /// outputs of `layers`.
    pub fn with_retention(
        model: &'m Model<T>,
        input: &Tensor<T>,
        retain: Retain,
        layers: &[&str],
    ) -> Result<Self> {
        Self::record(model, input, retain, layers)
    }

    fn record(
        model: &'m Model<T>,
        input: &Tensor<T>,
        retain: Retain,
        layers: &[&str],
    ) -> Result<Self> {
        for l in layers {
            check_layer(model, l)?;
        }
        // The model's kernel policy, forward and in every backward pass.
        let mut tape = Tape::with_kept_layers(retain, layers).with_kernels(model.kernels());
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
        let out = self.tape.layer_output(layer).ok_or_else(|| {
            AttributionError::InvalidOption(format!(
                "layer `{layer}` has no output on this forward pass (a canonizer merged the \
                 batch norm after it into it: keep it out of the merge, or probe the batch norm)"
            ))
        })?;
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

    /// The recorded forward pass (for rule sets built from it, such as an
    /// LRP composite's first layer: [`crate::lrp::Composite::rule_set`]).
    pub fn tape(&self) -> &Tape<T> {
        &self.tape
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
        let mut out = self.saliency_many(
            std::slice::from_ref(method),
            std::slice::from_ref(target),
            opts,
        )?;
        Ok(out.remove(0).remove(0))
    }

    /// Explains several methods for several targets from this one forward pass.
    ///
    /// Methods that share a rule set share one backward pass per target (for
    /// example gradient, linear approximation and Grad-CAM all use the
    /// standard rules), so the cost grows with the number of distinct rule
    /// sets, not of methods. The results equal separate calls bit for bit,
    /// method-major: `out[m][t]`.
    pub fn saliency_many(
        &self,
        methods: &[Method],
        targets: &[Target<T>],
        opts: &SaliencyOptions,
    ) -> Result<Vec<Vec<Saliency<T>>>> {
        let requests: Vec<(Method, SaliencyOptions)> =
            methods.iter().map(|m| (m.clone(), opts.clone())).collect();
        self.saliency_requests(&requests, targets)
    }

    /// Like [`Explainer::saliency_many`], with options (layer, resize,
    /// smoothing) of their own for each method: `out[r][t]` answers request
    /// `r` for target `t`.
    pub fn saliency_requests(
        &self,
        requests: &[(Method, SaliencyOptions)],
        targets: &[Target<T>],
    ) -> Result<Vec<Vec<Saliency<T>>>> {
        if requests.iter().any(|(m, _)| m.runs_own_passes()) {
            // The perturbation methods, integrated gradients and the noise
            // tunnel run passes of their own; the others share the tape's
            // backward passes.
            let (perturbed, replayed): (Vec<usize>, Vec<usize>) =
                (0..requests.len()).partition(|&i| requests[i].0.runs_own_passes());
            let mut out: Vec<Vec<Saliency<T>>> = requests.iter().map(|_| Vec::new()).collect();
            let tape_requests: Vec<_> = replayed.iter().map(|&i| requests[i].clone()).collect();
            for (&i, got) in replayed
                .iter()
                .zip(self.saliency_requests(&tape_requests, targets)?)
            {
                out[i] = got;
            }
            for i in perturbed {
                let (method, opts) = &requests[i];
                out[i] = targets
                    .iter()
                    .map(|t| self.own_passes(method, t, opts))
                    .collect::<Result<_>>()?;
            }
            return Ok(out);
        }
        let requests = requests
            .iter()
            .map(|(m, opts)| self.request(m, opts))
            .collect::<Result<Vec<_>>>()?;
        // One backward pass per distinct rule set and target, to every probe it serves.
        let mut passes: Vec<(RuleSet<T>, Vec<VarId>)> = Vec::new();
        let mut pass_of: Vec<usize> = Vec::with_capacity(requests.len());
        let mut input_pass_of: Vec<Option<usize>> = Vec::with_capacity(requests.len());
        let mut want = |rules: &RuleSet<T>, ids: &[VarId]| -> usize {
            // Rule sets are the same by what they do, not by name.
            let idx = match passes.iter().position(|(r, _)| r == rules) {
                Some(i) => i,
                None => {
                    passes.push((rules.clone(), Vec::new()));
                    passes.len() - 1
                }
            };
            let wanted = &mut passes[idx].1;
            for &id in ids {
                if !wanted.contains(&id) {
                    wanted.push(id);
                }
            }
            idx
        };
        for r in &requests {
            let ids: Vec<VarId> = std::iter::once(r.probe)
                .chain(r.contrast.as_ref().map(|c| c.id))
                .collect();
            pass_of.push(want(&r.rules, &ids));
            input_pass_of.push(
                r.input_rules
                    .as_ref()
                    .map(|rules| want(rules, &[self.input.id()])),
            );
        }
        let mut out: Vec<Vec<Saliency<T>>> = requests.iter().map(|_| Vec::new()).collect();
        for target in targets {
            let seed = target.seed(self.logits.shape())?;
            // Each contrastive request's contrast first (its pass to the
            // contrast layer with the classifier negated is short); then all
            // rule sets walk the tape together, the contrastive passes
            // branching off their rule set's pass at the contrast layer
            // (linear layers read their weight once for the passes that run
            // the same rule there).
            let negatives = requests
                .iter()
                .map(|r| {
                    r.contrast
                        .as_ref()
                        .map(|c| self.contrast(&seed, c))
                        .transpose()
                })
                .collect::<Result<Vec<_>>>()?;
            let mut walk: Vec<Pass<'_, T>> = passes
                .iter()
                .map(|(rules, ids)| Pass {
                    seed: &seed,
                    rules,
                    wrt: ids,
                    branch: None,
                })
                .collect();
            let mut branch_of: Vec<Option<usize>> = vec![None; requests.len()];
            for (k, r) in requests.iter().enumerate() {
                let (Some(c), Some(negative)) = (&r.contrast, &negatives[k]) else {
                    continue;
                };
                let from = pass_of[k];
                branch_of[k] = Some(walk.len());
                walk.push(Pass {
                    seed: negative,
                    rules: &passes[from].0,
                    wrt: std::slice::from_ref(&r.probe),
                    branch: Some(Branch { from, at: c.id }),
                });
            }
            let mut results = self.tape.backward_passes(self.logits.id(), &walk)?;
            let mut grads: Vec<(usize, VarId, Tensor<T>)> = Vec::new();
            for (p, ((_, ids), gs)) in passes.iter().zip(results.iter_mut()).enumerate() {
                grads.extend(ids.iter().zip(gs.drain(..)).map(|(&id, g)| (p, id, g)));
            }
            let lookup = |pass: usize, id: VarId| -> Tensor<T> {
                grads
                    .iter()
                    .find(|(p, gid, _)| *p == pass && *gid == id)
                    .map(|(_, _, g)| g.clone())
                    .unwrap_or_else(|| Tensor::zeros(vec![0]))
            };
            for (k, r) in requests.iter().enumerate() {
                let gradient = match branch_of[k] {
                    None => lookup(pass_of[k], r.probe),
                    Some(i) => results[i].remove(0),
                };
                let at_input = input_pass_of[k].map(|p| lookup(p, self.input.id()));
                let (map, attribution) = self.reduce(r, &gradient, at_input)?;
                out[k].push(Saliency {
                    map: self.finish(map, &r.opts)?,
                    gradient,
                    activation: r
                        .value
                        .clone()
                        .unwrap_or_else(|| Arc::new(Tensor::zeros(vec![0]))),
                    layer: r.layer.clone(),
                    attribution,
                });
            }
        }
        Ok(out)
    }

    /// Resolves a method's layer, probe and rules.
    fn request(&self, method: &Method, opts: &SaliencyOptions) -> Result<Request<T>> {
        let defaults = self.model.default_layers();
        let layer = match &opts.layer {
            Some(l) => l.clone(),
            None => method.default_layer(&defaults),
        };
        if !layer.is_empty() && matches!(method, Method::Saliency | Method::InputXGradient) {
            return Err(AttributionError::InvalidOption(format!(
                "{method} explains the input, not a layer (`{layer}`)"
            )));
        }
        let (probe, value) = self.probe(&layer)?;
        let rules = match method {
            Method::Lrp { composite, params } => {
                composite.composite(params)?.rule_set(&self.tape)?
            }
            Method::Gradient
            | Method::GradCam
            | Method::LinearApprox
            | Method::Saliency
            | Method::InputXGradient
            | Method::GuidedGradCam
            | Method::LayerGradCam => RuleSet::standard(),
            Method::Deconvnet => RuleSet::deconvnet(),
            Method::GuidedBackprop => RuleSet::guided_backprop(),
            Method::ExcitationBackprop | Method::ContrastiveExcitationBackprop { .. } => {
                RuleSet::excitation_backprop()
            }
            Method::Rise(_)
            | Method::ExtremalPerturbation(_)
            | Method::IntegratedGradients(_)
            | Method::NoiseTunnel(_) => {
                return Err(AttributionError::InvalidOption(format!(
                    "{method} runs passes of its own, not one backward pass"
                )))
            }
        };
        // Guided Grad-CAM also needs Captum's guided gradient at the input.
        let input_rules =
            matches!(method, Method::GuidedGradCam).then(RuleSet::captum_guided_backprop);
        let contrast = match method {
            Method::ContrastiveExcitationBackprop {
                contrast_layer,
                classifier_layer,
            } => {
                let layer_name = contrast_layer.clone().unwrap_or(defaults.contrast.clone());
                let classifier = classifier_layer
                    .clone()
                    .unwrap_or(defaults.classifier.clone());
                check_layer(self.model, &classifier)?;
                let (id, _) = self.probe(&layer_name)?;
                if id <= probe {
                    return Err(AttributionError::InvalidOption(format!(
                        "the contrast layer `{layer_name}` must come after the saliency layer `{layer}`"
                    )));
                }
                Some(Contrast { id, classifier })
            }
            _ => None,
        };
        if matches!(
            method,
            Method::GradCam | Method::LinearApprox | Method::GuidedGradCam | Method::LayerGradCam
        ) {
            self.activation(&layer, value.clone())?;
        }
        Ok(Request {
            opts: opts.clone(),
            method: method.clone(),
            layer,
            probe,
            value,
            rules,
            input_rules,
            contrast,
        })
    }

    /// The method's reduction of (activation, pseudo-gradient) to a map,
    /// with Captum's raw attribution for Captum's methods; `at_input` is
    /// the gradient at the input of the request's second pass (guided
    /// Grad-CAM's guided gradient).
    fn reduce(
        &self,
        r: &Request<T>,
        g: &Tensor<T>,
        at_input: Option<Tensor<T>>,
    ) -> Result<(Tensor<T>, Option<Tensor<T>>)> {
        let activation = || self.activation(&r.layer, r.value.clone());
        let captum = |a: Tensor<T>| -> Result<(Tensor<T>, Option<Tensor<T>>)> {
            Ok((sum_channels(&a)?, Some(a)))
        };
        let map = match r.method {
            Method::Gradient | Method::Deconvnet | Method::GuidedBackprop => max_abs_channels(g)?,
            Method::GradCam => grad_cam(&*activation()?, g, &r.layer, true)?,
            Method::LinearApprox => sum_channels_product(&*activation()?, g)?,
            Method::ExcitationBackprop | Method::Lrp { .. } => sum_channels(g)?,
            Method::ContrastiveExcitationBackprop { .. } => {
                sum_channels(g)?.map(|v| v.max(T::zero()))
            }
            Method::Saliency => return captum(g.map(|v| v.abs())),
            Method::InputXGradient => {
                return captum(self.input().zip_map(g, "input_x_gradient", |x, g| x * g)?)
            }
            Method::LayerGradCam => {
                let cam = grad_cam(&*activation()?, g, &r.layer, false)?;
                return Ok((cam.clone(), Some(cam)));
            }
            Method::GuidedGradCam => {
                let guided = at_input.ok_or_else(|| {
                    AttributionError::InvalidOption(
                        "guided Grad-CAM without its guided gradient".into(),
                    )
                })?;
                let cam = grad_cam(&*activation()?, g, &r.layer, true)?;
                return captum(captum::guided_grad_cam_product(
                    guided,
                    &cam,
                    ResizeMode::Nearest,
                )?);
            }
            Method::Rise(_)
            | Method::ExtremalPerturbation(_)
            | Method::IntegratedGradients(_)
            | Method::NoiseTunnel(_) => g.clone(),
        };
        Ok((map, None))
    }

    /// The answer of a method that runs passes of its own ([`Method::runs_own_passes`])
    /// for `target`, one image of the batch at a time (so that an image's
    /// answer does not depend on the others): the perturbation methods'
    /// maps (N x 1 x H x W at the input), integrated gradients' and the
    /// noise tunnel's attributions (N x C x H x W, summed over channels
    /// for the map); a layer other than the input is an error. The map is
    /// then resized and smoothed as asked.
    fn own_passes(
        &self,
        method: &Method,
        target: &Target<T>,
        opts: &SaliencyOptions,
    ) -> Result<Saliency<T>> {
        if opts.layer.as_deref().is_some_and(|l| !l.is_empty()) {
            return Err(AttributionError::InvalidOption(format!(
                "{method} explains the input, not a layer (`{}`)",
                opts.layer.as_deref().unwrap_or_default()
            )));
        }
        let x = self.input();
        let [n, c, h, w] = x.dims4("saliency")?;
        // Each item's own target, checked before any pass.
        let items: Vec<Target<T>> = (0..n).map(|i| target.item(i, n)).collect::<Result<_>>()?;
        let item_input =
            |i: usize| -> Result<Tensor<T>> { Ok(x.select0(i)?.reshape([1, c, h, w])?) };
        method.validate()?;
        let answers = items
            .iter()
            .enumerate()
            .map(|(i, t)| self.item_answer(method, &item_input(i)?, t))
            .collect::<Result<Vec<_>>>()?;
        let out = Tensor::concat0(&answers)?;
        let (map, attribution) = if method.is_captum() {
            (sum_channels(&out)?, Some(out))
        } else {
            (out, None)
        };
        Ok(Saliency {
            map: self.finish(map.clone(), opts)?,
            gradient: attribution.clone().unwrap_or(map),
            activation: self.input.value_arc().clone(),
            layer: String::new(),
            attribution,
        })
    }

    /// One image's (`1 x C x H x W`) answer of a method that runs passes
    /// of its own, for its target.
    fn item_answer(&self, method: &Method, x: &Tensor<T>, t: &Target<T>) -> Result<Tensor<T>> {
        let [_, c, h, w] = x.dims4("saliency")?;
        Ok(match method {
            Method::Rise(params) => {
                let draws = RiseDraws::seeded(
                    params.num_masks,
                    params.num_cells,
                    params.p,
                    (h, w),
                    params.seed,
                )?;
                let rise_opts = RiseOptions {
                    batch_size: params.batch_size,
                    classes: t.item_classes(1)?,
                };
                rise(self.model, x, MaskSource::Draws(&draws), &rise_opts)?
            }
            Method::ExtremalPerturbation(params) => {
                extremal_perturbation(self.model, x, t.item_classes(1)?[0], &params.options())?
            }
            Method::IntegratedGradients(params) => {
                captum::integrated_gradients(self.model, x, t, &params.options([c, h, w])?)?
            }
            Method::NoiseTunnel(params) => {
                let model = self.model;
                match &params.method {
                    TunnelledMethod::Saliency => {
                        captum::noise_tunnel(x, t, &params.options(), |b, bt| {
                            captum::saliency(model, b, bt, true)
                        })?
                    }
                    TunnelledMethod::InputXGradient => {
                        captum::noise_tunnel(x, t, &params.options(), |b, bt| {
                            captum::input_x_gradient(model, b, bt)
                        })?
                    }
                    TunnelledMethod::IntegratedGradients(p) => {
                        let ig = p.options([c, h, w])?;
                        captum::noise_tunnel(x, t, &params.options(), |b, bt| {
                            captum::integrated_gradients(model, b, bt, &ig)
                        })?
                    }
                }
            }
            _ => {
                return Err(AttributionError::InvalidOption(format!(
                    "{method} answers from the recorded forward pass"
                )))
            }
        })
    }

    /// Resize and smoothing of TorchRay's contract.
    fn finish(&self, map: Tensor<T>, opts: &SaliencyOptions) -> Result<Tensor<T>> {
        let [_, _, h, w] = self.input.value().dims4("saliency")?;
        let map = resize_map(map, opts.resize, (h, w), opts.resize_mode)?;
        smooth_map(map, opts.smooth)
    }

    /// The contrast of contrastive excitation backprop: the excitation
    /// pass with the classifier's weights negated, from the output to the
    /// contrast layer.
    fn contrast(&self, seed: &Tensor<T>, c: &Contrast) -> Result<Tensor<T>> {
        let negated = RuleSet::excitation_backprop()
            .named("contrastive_excitation_backprop")
            .with_layer(
                &c.classifier,
                Some(OpKind::LINEAR),
                Arc::new(ExcitationLinear {
                    negate_weights: true,
                }),
            )
            .with_layer(
                &c.classifier,
                Some(OpKind::CONV2D),
                Arc::new(ExcitationConv {
                    negate_weights: true,
                }),
            );
        Ok(self
            .tape
            .backward(self.logits.id(), seed, &negated, &[c.id])?
            .remove(0))
    }
}

/// A method resolved against the recorded forward pass.
struct Request<T> {
    opts: SaliencyOptions,
    method: Method,
    layer: String,
    probe: VarId,
    value: Option<Arc<Tensor<T>>>,
    rules: RuleSet<T>,
    /// Rules of a second pass down to the input, when the method needs
    /// one (guided Grad-CAM's guided gradient).
    input_rules: Option<RuleSet<T>>,
    contrast: Option<Contrast>,
}

/// Where contrastive excitation backprop subtracts its contrast.
struct Contrast {
    id: VarId,
    classifier: String,
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
    let default = method.default_layer(&model.default_layers());
    let keep = if opts.layer.is_none() && !default.is_empty() {
        vec![default.as_str()]
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

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_layers::Architecture;
    use sightline_tensor::{KernelPolicy, SimdCap, WinogradPolicy};

    /// Captum's methods answered by the explainer (with their raw
    /// attributions) are the library's functions, bit for bit, and each
    /// image of a batch gets what it gets alone.
    #[test]
    fn captum_methods_are_the_library_s_and_batch_independent() {
        use crate::captum::{IgParams, NoiseTunnelParams, TunnelledMethod};
        // Fewer than 16 channels: no Winograd, whose choice depends on the
        // batch's tile count.
        let arch = Architecture::from_json(
            r#"{"kind":"vgg","cfg":[6,"M",8],"avgpool":[2,2],"hidden":8,"num_classes":5}"#,
        )
        .expect("arch");
        let model = Model::<f64>::random(&arch, 2).expect("model");
        let x = Tensor::from_vec(
            [2, 3, 8, 8],
            (0..384).map(|v| (f64::from(v) * 0.37).sin()).collect(),
        )
        .expect("input");
        let classes = [1, 3];
        let t = Target::PerItem(classes.to_vec());
        let ig = IgParams {
            n_steps: 4,
            ..IgParams::default()
        };
        let nt = NoiseTunnelParams {
            samples: 3,
            stdev: 0.3,
            method: TunnelledMethod::InputXGradient,
            ..NoiseTunnelParams::default()
        };
        let methods = [
            Method::Saliency,
            Method::InputXGradient,
            Method::IntegratedGradients(ig.clone()),
            Method::NoiseTunnel(nt.clone()),
            Method::GuidedGradCam,
            Method::LayerGradCam,
        ];
        let layer = "features.4";
        let requests: Vec<(Method, SaliencyOptions)> = methods
            .iter()
            .map(|m| {
                let l = if m.takes_layer() { layer } else { "" };
                (m.clone(), SaliencyOptions::at(l))
            })
            .collect();
        let answers = |x: &Tensor<f64>, t: &Target<f64>| {
            let ex = Explainer::for_methods(&model, x, &methods, &[layer]).expect("explainer");
            ex.saliency_requests(&requests, std::slice::from_ref(t))
                .expect("answers")
                .into_iter()
                .map(|mut a| a.remove(0))
                .collect::<Vec<_>>()
        };
        let got = answers(&x, &t);
        let raw = |k: usize| got[k].attribution.clone().expect("attribution");
        let want = [
            captum::saliency(&model, &x, &t, true).expect("saliency"),
            captum::input_x_gradient(&model, &x, &t).expect("ixg"),
            Tensor::concat0(
                &(0..2)
                    .map(|i| {
                        let xi = x.select0(i)?.reshape([1, 3, 8, 8])?;
                        let opts = ig.options([3, 8, 8])?;
                        captum::integrated_gradients(&model, &xi, &Target::Class(classes[i]), &opts)
                    })
                    .collect::<Result<Vec<_>>>()
                    .expect("ig"),
            )
            .expect("concat"),
            Tensor::concat0(
                &(0..2)
                    .map(|i| {
                        let xi = x.select0(i)?.reshape([1, 3, 8, 8])?;
                        captum::noise_tunnel(
                            &xi,
                            &Target::Class(classes[i]),
                            &nt.options(),
                            |b, bt| captum::input_x_gradient(&model, b, bt),
                        )
                    })
                    .collect::<Result<Vec<_>>>()
                    .expect("nt"),
            )
            .expect("concat"),
            captum::guided_grad_cam(&model, &x, &t, layer, ResizeMode::Nearest).expect("ggc"),
            captum::layer_grad_cam(&model, &x, &t, layer, false).expect("lgc"),
        ];
        for (k, w) in want.iter().enumerate() {
            assert_eq!(&raw(k), w, "{}", methods[k]);
            // The map: the channel sum at the layer or input, resized as asked (off here).
            assert_eq!(got[k].map, sum_channels(w).expect("sum"), "{}", methods[k]);
        }
        assert_eq!(raw(5).shape(), &[2, 1, 4, 4]);
        // Each image alone: the same bits.
        for (i, &class) in classes.iter().enumerate() {
            let xi = x
                .select0(i)
                .expect("item")
                .reshape([1, 3, 8, 8])
                .expect("item");
            let alone = answers(&xi, &Target::Class(class));
            for (k, a) in alone.iter().enumerate() {
                let a = a.attribution.clone().expect("attribution");
                assert_eq!(
                    a,
                    raw(k)
                        .select0(i)
                        .expect("item")
                        .reshape(a.shape().to_vec())
                        .expect("shape"),
                    "{}",
                    methods[k]
                );
            }
        }
        // Saliency and input x gradient explain the input only.
        let ex = Explainer::for_methods(&model, &x, &methods, &[layer]).expect("explainer");
        assert!(ex
            .saliency(&Method::Saliency, &t, &SaliencyOptions::at(layer))
            .is_err());
    }

    /// Every constructor records under the model's kernel policy.
    #[test]
    fn every_constructor_records_under_the_model_policy() {
        let arch = Architecture::from_json(
            r#"{"kind":"vgg","cfg":[16,"M"],"avgpool":[1,1],"hidden":4,"num_classes":3}"#,
        )
        .expect("arch");
        let policy = KernelPolicy::new(WinogradPolicy::Off, SimdCap::Generic);
        let model = Model::<f32>::random(&arch, 5)
            .expect("model")
            .with_kernels(policy);
        let x = Tensor::full(vec![1, 3, 8, 8], 0.5);
        let explainers = [
            Explainer::new(&model, &x).expect("new"),
            Explainer::for_methods(&model, &x, &[Method::Gradient], &[]).expect("for_methods"),
            Explainer::with_retention(&model, &x, Retain::Minimal, &["features.0"])
                .expect("with_retention"),
        ];
        for e in &explainers {
            assert_eq!(e.tape.kernels(), policy);
        }
        let default = Model::<f32>::random(&arch, 5).expect("model");
        let e = Explainer::new(&default, &x).expect("new");
        assert_eq!(e.tape.kernels(), KernelPolicy::default());
        // The same logits to rounding.
        let err = e
            .logits()
            .max_abs_diff(explainers[0].logits())
            .expect("shapes");
        assert!(err <= 1e-5 * e.logits().max_abs().max(1.0), "{err:e}");
    }
}
