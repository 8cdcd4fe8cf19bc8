//! The saliency methods of the explainer: TorchRay's backprop methods,
//! Captum's methods, layer-wise relevance propagation with Zennit's
//! composites and the perturbation methods; their rule sets and reductions.

use crate::captum::{IgParams, NoiseTunnelParams};
use crate::error::{AttributionError, Result};
use crate::lrp::{LrpParams, ZennitComposite};
use crate::perturbation::{ExtremalParams, ExtremalVariant, RiseParams};
use sightline_layers::{Canonizer, DefaultLayers, MergeBatchNorm, Model, ResNetCanonizer};
use sightline_tensor::Element;
use std::fmt;
use std::str::FromStr;

/// A saliency method the [`crate::Explainer`] answers from one forward pass.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Simonyan et al. 2014: standard gradient, `max_c |g|`.
    Gradient,
    /// Zeiler and Fergus 2014: ReLU passes `max(g, 0)`, `max_c |g|`.
    Deconvnet,
    /// Springenberg et al. 2015: ReLU zeroes where `x < 0` then clamps, `max_c |g|`.
    GuidedBackprop,
    /// Selvaraju et al. 2017: `max(sum_c mean(g_c) a_c, 0)` at a layer.
    GradCam,
    /// `sum_c a_c g_c` at a layer (or the input).
    LinearApprox,
    /// Zhang et al. 2016: excitation rules, `sum_c g`.
    ExcitationBackprop,
    /// Zhang et al. 2016, contrastive: the negated classifier's excitation at the
    /// contrast layer is subtracted, then `max(sum_c g, 0)`.
    ContrastiveExcitationBackprop {
        /// Layer where the contrast is subtracted (default: the model's).
        contrast_layer: Option<String>,
        /// Layer whose weights are negated for the contrast (default: the model's classifier).
        classifier_layer: Option<String>,
    },
    /// Layer-wise relevance propagation with one of Zennit's composites:
    /// the relevance at the probe (the input by default), `Σ_c R_c`.
    Lrp {
        /// The composite.
        composite: ZennitComposite,
        /// Its parameters.
        params: LrpParams,
    },
    /// Petsiuk et al. 2018 (TorchRay's `rise`): random masks weighted by the
    /// sigmoid of the target's logit on the masked input, at the input
    /// (forward passes only: the explainer runs them on its model and input).
    Rise(RiseParams),
    /// Fong et al. 2019 (TorchRay's `extremal_perturbation`): the smooth
    /// mask of a given area that best keeps the target's score, optimised
    /// by gradient steps (the explainer runs them on its model and input).
    ExtremalPerturbation(ExtremalParams),
    /// Captum's `Saliency` (`abs = True`, its default): `|g|` at the input,
    /// per channel; the map is its sum over channels.
    Saliency,
    /// Captum's `InputXGradient`: `x * g` at the input, per channel; the
    /// map is its sum over channels.
    InputXGradient,
    /// Captum's `IntegratedGradients` (Sundararajan et al. 2017):
    /// `(x - b) * sum_k w_k grad(b + t_k (x - b))` per channel (forward and
    /// backward passes of its own on the path, one image at a time); the
    /// map is its sum over channels.
    IntegratedGradients(IgParams),
    /// Captum's `NoiseTunnel` (Smilkov et al. 2017) around saliency, input
    /// x gradient or integrated gradients: SmoothGrad, SmoothGrad squared
    /// or VarGrad of the method on noisy copies of the input (passes of its
    /// own, one image at a time); the map is its sum over channels.
    NoiseTunnel(NoiseTunnelParams),
    /// Captum's `GuidedGradCam`: Captum's guided backprop at the input
    /// times the layer's Grad-CAM (clamped) upsampled by nearest
    /// interpolation, per channel; the map is its sum over channels.
    GuidedGradCam,
    /// Captum's `LayerGradCam` (`relu_attributions = False`):
    /// `sum_c mean(g_c) a_c` at the layer, unclamped, 1 x h x w per item.
    LayerGradCam,
}

impl Method {
    /// Every method, with default layers, in TorchRay's order.
    pub fn all() -> Vec<Method> {
        vec![
            Method::Gradient,
            Method::Deconvnet,
            Method::GuidedBackprop,
            Method::GradCam,
            Method::LinearApprox,
            Method::ExcitationBackprop,
            Method::ContrastiveExcitationBackprop {
                contrast_layer: None,
                classifier_layer: None,
            },
        ]
    }

    /// Every LRP composite as a method (`lrp.NAME`), with `params`.
    pub fn lrp_all(params: LrpParams) -> Vec<Method> {
        ZennitComposite::ALL
            .into_iter()
            .map(|composite| Method::Lrp { composite, params })
            .collect()
    }

    /// Captum's methods, with Captum's default parameters (their
    /// [`crate::Saliency::attribution`] is Captum's raw, per-channel
    /// answer).
    pub fn captum_all() -> Vec<Method> {
        vec![
            Method::Saliency,
            Method::InputXGradient,
            Method::IntegratedGradients(IgParams::default()),
            Method::NoiseTunnel(NoiseTunnelParams::default()),
            Method::GuidedGradCam,
            Method::LayerGradCam,
        ]
    }

    /// The perturbation methods, with default parameters (not in
    /// [`Method::all`]: thousands of forward passes each).
    pub fn perturbation_all() -> Vec<Method> {
        vec![
            Method::Rise(RiseParams::default()),
            Method::ExtremalPerturbation(ExtremalParams::default()),
        ]
    }

    /// Every method [`FromStr`] takes, with default parameters: TorchRay's
    /// backprop methods, Captum's, the LRP composites, the perturbation
    /// methods.
    fn every() -> impl Iterator<Item = Method> {
        Method::all()
            .into_iter()
            .chain(Method::captum_all())
            .chain(Method::lrp_all(LrpParams::default()))
            .chain(Method::perturbation_all())
    }

    /// The name of every method [`FromStr`] takes: TorchRay's, then
    /// Captum's, then the LRP composites', then the perturbation methods'.
    /// This is the one list of method names.
    pub fn names() -> Vec<&'static str> {
        Method::every().map(|m| m.name()).collect()
    }

    /// The method's name (TorchRay's function name; `lrp.` and Zennit's
    /// composite name for LRP).
    pub fn name(&self) -> &'static str {
        match self {
            Method::Gradient => "gradient",
            Method::Deconvnet => "deconvnet",
            Method::GuidedBackprop => "guided_backprop",
            Method::GradCam => "grad_cam",
            Method::LinearApprox => "linear_approx",
            Method::ExcitationBackprop => "excitation_backprop",
            Method::ContrastiveExcitationBackprop { .. } => "contrastive_excitation_backprop",
            Method::Lrp { composite, .. } => composite.method_name(),
            Method::Rise(_) => "rise",
            Method::ExtremalPerturbation(_) => "extremal_perturbation",
            Method::Saliency => "saliency",
            Method::InputXGradient => "input_x_gradient",
            Method::IntegratedGradients(_) => "integrated_gradients",
            Method::NoiseTunnel(_) => "noise_tunnel",
            Method::GuidedGradCam => "guided_grad_cam",
            Method::LayerGradCam => "layer_grad_cam",
        }
    }

    /// Whether the method probes a layer that can be chosen (Grad-CAM and
    /// its Captum forms, linear approximation, the excitation methods);
    /// the others explain the input.
    pub fn takes_layer(&self) -> bool {
        matches!(
            self,
            Method::GradCam
                | Method::LinearApprox
                | Method::ExcitationBackprop
                | Method::ContrastiveExcitationBackprop { .. }
                | Method::GuidedGradCam
                | Method::LayerGradCam
        )
    }

    /// The layer the method probes unless told otherwise: the model's
    /// Grad-CAM layer for the Grad-CAM methods, its excitation layer for
    /// the excitation methods, else the input (`""`).
    pub fn default_layer(&self, defaults: &DefaultLayers) -> String {
        match self {
            Method::GradCam | Method::GuidedGradCam | Method::LayerGradCam => {
                defaults.grad_cam.clone()
            }
            Method::ExcitationBackprop | Method::ContrastiveExcitationBackprop { .. } => {
                defaults.excitation.clone()
            }
            _ => String::new(),
        }
    }

    /// Whether the method is one of Captum's: its answer carries Captum's
    /// raw attribution ([`crate::Saliency::attribution`]: per channel at
    /// the input, or at the layer for `layer_grad_cam`) besides the map.
    pub fn is_captum(&self) -> bool {
        matches!(
            self,
            Method::Saliency
                | Method::InputXGradient
                | Method::IntegratedGradients(_)
                | Method::NoiseTunnel(_)
                | Method::GuidedGradCam
                | Method::LayerGradCam
        )
    }

    /// Whether the method runs forward (and backward) passes of its own,
    /// one image at a time, instead of backward passes over the
    /// explainer's tape: the perturbation methods, integrated gradients
    /// and the noise tunnel.
    pub fn runs_own_passes(&self) -> bool {
        self.is_perturbation()
            || matches!(
                self,
                Method::IntegratedGradients(_) | Method::NoiseTunnel(_)
            )
    }

    /// Images the method puts through the model at once for one input
    /// image: RISE's batch of masked copies, two for dual extremal
    /// perturbation, integrated gradients' path points per pass, the noise
    /// tunnel's noisy copies per pass (times the path points when it wraps
    /// integrated gradients), one otherwise (what the memory budget plans
    /// for).
    pub fn images_per_pass(&self) -> usize {
        match self {
            Method::Rise(p) => p.batch_size,
            Method::ExtremalPerturbation(p) if p.variant == ExtremalVariant::Dual => 2,
            Method::IntegratedGradients(p) => p.images_per_pass(1),
            Method::NoiseTunnel(p) => p.images_per_pass(),
            _ => 1,
        }
    }

    /// Checks the method's parameters without an input (the LRP
    /// composite's, RISE's, extremal perturbation's, integrated
    /// gradients', the noise tunnel's); the other methods have none.
    pub fn validate(&self) -> Result<()> {
        match self {
            Method::Lrp { composite, params } => composite.composite::<f32>(params).map(|_| ()),
            Method::Rise(p) => p.validate(),
            Method::ExtremalPerturbation(p) => p.validate(),
            Method::IntegratedGradients(p) => p.validate(),
            Method::NoiseTunnel(p) => p.validate(),
            _ => Ok(()),
        }
    }

    /// Whether the method runs forward passes on perturbed inputs instead
    /// of a backward pass over the explainer's tape.
    pub fn is_perturbation(&self) -> bool {
        matches!(self, Method::Rise(_) | Method::ExtremalPerturbation(_))
    }

    /// The form of the model the method runs on.
    pub fn model_form(&self) -> ModelForm {
        match self {
            Method::ExcitationBackprop | Method::ContrastiveExcitationBackprop { .. } => {
                ModelForm::AsIs
            }
            Method::Lrp { .. } => ModelForm::Zennit,
            // The gradient-style methods (Captum's too) and the
            // perturbation methods: the merged model computes the same
            // function with fewer ops.
            _ => ModelForm::BatchNormsMerged,
        }
    }

    /// Whether the method's map is signed (relevance, attributions that
    /// can be negative), so a diverging colormap centred on zero shows it
    /// best.
    pub fn is_signed(&self) -> bool {
        match self {
            Method::NoiseTunnel(p) => p.is_signed(),
            _ => matches!(
                self,
                Method::LinearApprox
                    | Method::Lrp { .. }
                    | Method::InputXGradient
                    | Method::IntegratedGradients(_)
                    | Method::GuidedGradCam
                    | Method::LayerGradCam
            ),
        }
    }

    /// Whether the method's rules need the inputs of conv, linear, pools and
    /// sums kept by the forward pass.
    pub fn needs_all_values(&self) -> bool {
        matches!(
            self,
            Method::ExcitationBackprop
                | Method::ContrastiveExcitationBackprop { .. }
                | Method::Lrp { .. }
        )
    }
}

/// The form of the model a method runs on: what canonizer, if any, is
/// applied before its forward pass ([`sightline_layers::canonize`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModelForm {
    /// As it is: TorchRay's excitation backprop treats batch norm as the
    /// identity with the convolution's own kernel.
    AsIs,
    /// Each batch norm after a convolution merged into it and removed: the
    /// same function with one op fewer per pair (the gradient-style
    /// methods).
    BatchNormsMerged,
    /// Zennit's canonized model ([`ResNetCanonizer`]: batch norms merged as
    /// Zennit merges them, explicit residual sums): the LRP composites.
    Zennit,
}

impl ModelForm {
    /// `model` in this form, keeping the batch norms after the
    /// convolutions `keep` (whose own output a method probes). A network of
    /// the user's own ([`Model::from_classifier`]) is used as it is: it
    /// merges or not in its own code.
    pub fn apply<T: Element>(self, model: &Model<T>, keep: &[&str]) -> Result<Model<T>> {
        let own = model.architecture().is_none() && model.graph().is_none();
        Ok(match self {
            _ if own => model.clone(),
            ModelForm::AsIs => model.clone(),
            ModelForm::BatchNormsMerged => MergeBatchNorm::exact().except(keep).apply(model)?,
            ModelForm::Zennit => ResNetCanonizer::new().except(keep).apply(model)?,
        })
    }
}

/// The methods grouped by the form of model they run on, in form order:
/// `(form, indices into methods)`; one forward pass per group.
pub fn group_by_form(methods: &[Method]) -> Vec<(ModelForm, Vec<usize>)> {
    let mut groups: Vec<(ModelForm, Vec<usize>)> = Vec::new();
    for (i, m) in methods.iter().enumerate() {
        let form = m.model_form();
        match groups.iter_mut().find(|(f, _)| *f == form) {
            Some((_, idx)) => idx.push(i),
            None => groups.push((form, vec![i])),
        }
    }
    groups.sort_by_key(|(f, _)| *f);
    groups
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = AttributionError;

    /// A method by name; an LRP composite gets Zennit's default parameters
    /// (set them on the value).
    fn from_str(s: &str) -> Result<Self> {
        Method::every()
            .find(|m| m.name() == s)
            .ok_or_else(|| AttributionError::UnknownMethod {
                name: s.to_string(),
                known: Method::names().join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Method::every() {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
        }
        assert_eq!(Method::names().len(), 21);
        assert!(Method::all().iter().all(|m| !m.is_perturbation()));
        assert!("rise".parse::<Method>().unwrap().is_perturbation());
        assert!(Method::names().contains(&"lrp.epsilon_plus_flat"));
        for captum in [
            "saliency",
            "input_x_gradient",
            "integrated_gradients",
            "noise_tunnel",
            "guided_grad_cam",
            "layer_grad_cam",
        ] {
            let m: Method = captum.parse().unwrap();
            assert!(m.is_captum() && !m.is_perturbation(), "{captum}");
            assert_eq!(m.model_form(), ModelForm::BatchNormsMerged, "{captum}");
        }
        let e = "gradcam".parse::<Method>().unwrap_err().to_string();
        assert!(e.contains("gradcam") && e.contains("grad_cam"), "{e}");
        assert!(e.contains("integrated_gradients"), "{e}");
    }

    #[test]
    fn layers_signs_and_passes() {
        let defaults = DefaultLayers {
            grad_cam: "features.29".into(),
            excitation: "features.23".into(),
            contrast: "classifier.4".into(),
            classifier: "classifier.6".into(),
        };
        let layer_of = |name: &str| {
            let m: Method = name.parse().unwrap();
            (m.takes_layer(), m.default_layer(&defaults))
        };
        assert_eq!(layer_of("grad_cam"), (true, "features.29".into()));
        assert_eq!(layer_of("layer_grad_cam"), (true, "features.29".into()));
        assert_eq!(layer_of("guided_grad_cam"), (true, "features.29".into()));
        assert_eq!(
            layer_of("excitation_backprop"),
            (true, "features.23".into())
        );
        assert_eq!(layer_of("linear_approx"), (true, String::new()));
        for input_only in ["gradient", "saliency", "integrated_gradients", "rise"] {
            assert_eq!(layer_of(input_only), (false, String::new()), "{input_only}");
        }
        let signed: Vec<&str> = Method::every()
            .filter(Method::is_signed)
            .map(|m| m.name())
            .filter(|n| !n.starts_with("lrp."))
            .collect();
        assert_eq!(
            signed,
            [
                "linear_approx",
                "input_x_gradient",
                "integrated_gradients",
                "guided_grad_cam",
                "layer_grad_cam"
            ]
        );
        let own: Vec<&str> = Method::every()
            .filter(Method::runs_own_passes)
            .map(|m| m.name())
            .collect();
        assert_eq!(
            own,
            [
                "integrated_gradients",
                "noise_tunnel",
                "rise",
                "extremal_perturbation"
            ]
        );
        assert_eq!(
            "integrated_gradients"
                .parse::<Method>()
                .unwrap()
                .images_per_pass(),
            16
        );
        assert_eq!(
            "noise_tunnel".parse::<Method>().unwrap().images_per_pass(),
            5
        );
    }
}
