//! TorchRay's backprop saliency methods: their rule sets and reductions.

use crate::error::{AttributionError, Result};
use std::fmt;
use std::str::FromStr;

/// A TorchRay backprop saliency method.
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

    /// The method's name (TorchRay's function name).
    pub fn name(&self) -> &'static str {
        match self {
            Method::Gradient => "gradient",
            Method::Deconvnet => "deconvnet",
            Method::GuidedBackprop => "guided_backprop",
            Method::GradCam => "grad_cam",
            Method::LinearApprox => "linear_approx",
            Method::ExcitationBackprop => "excitation_backprop",
            Method::ContrastiveExcitationBackprop { .. } => "contrastive_excitation_backprop",
        }
    }

    /// Whether the method's rules need the inputs of conv, linear, pools and
    /// sums kept by the forward pass.
    pub fn needs_all_values(&self) -> bool {
        matches!(
            self,
            Method::ExcitationBackprop | Method::ContrastiveExcitationBackprop { .. }
        )
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = AttributionError;

    fn from_str(s: &str) -> Result<Self> {
        Method::all()
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| AttributionError::UnknownMethod {
                name: s.to_string(),
                known: Method::all()
                    .iter()
                    .map(|m| m.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Method::all() {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
        }
        let e = "gradcam".parse::<Method>().unwrap_err().to_string();
        assert!(e.contains("gradcam") && e.contains("grad_cam"), "{e}");
    }
}
