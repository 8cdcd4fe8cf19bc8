//! Zennit's built-in composites, by name, with their parameters.

use super::Composite;
use crate::error::{AttributionError, Result};
use sightline_autograd::lrp::{
    AlphaBeta, Epsilon, Flat, Gamma, Norm, Pass, ZBox, ZPlus, DEFAULT_STABILIZER,
};
use sightline_autograd::{OpKind, Rule};
use sightline_tensor::Element;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The parameters Zennit's composites take. Equal (and hashed) by their
/// values' bits.
#[derive(Clone, Copy, Debug)]
pub struct LrpParams {
    /// The epsilon rule's stabiliser on fully connected layers (Zennit's
    /// default 1e-6; its examples and the fixtures use 0.1).
    pub epsilon: f64,
    /// The gamma rule's gamma ([`ZennitComposite::EpsilonGammaBox`]).
    pub gamma: f64,
    /// The input bounds of the z-box rule on the first layer
    /// ([`ZennitComposite::EpsilonGammaBox`]); required there.
    pub bounds: Option<(f64, f64)>,
    /// The stabiliser of every other rule.
    pub stabilizer: f64,
}

impl LrpParams {
    fn bits(&self) -> (u64, u64, Option<(u64, u64)>, u64) {
        (
            self.epsilon.to_bits(),
            self.gamma.to_bits(),
            self.bounds.map(|(l, h)| (l.to_bits(), h.to_bits())),
            self.stabilizer.to_bits(),
        )
    }
}

impl PartialEq for LrpParams {
    fn eq(&self, other: &Self) -> bool {
        self.bits() == other.bits()
    }
}

impl Eq for LrpParams {}

impl std::hash::Hash for LrpParams {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bits().hash(state);
    }
}

impl Default for LrpParams {
    /// Zennit's defaults: epsilon 1e-6, gamma 0.25, no bounds, stabiliser
    /// 1e-6.
    fn default() -> Self {
        Self {
            epsilon: 1e-6,
            gamma: 0.25,
            bounds: None,
            stabilizer: DEFAULT_STABILIZER,
        }
    }
}

/// Zennit's composites (`zennit.composites`): one rule per kind of layer,
/// with a special first layer for some.
///
/// All map activations and batch norms to [`Pass`] and average pools and
/// residual sums to [`Norm`] (Zennit's `layer_map_base`), except
/// [`ZennitComposite::ExcitationBackprop`], which keeps the activations'
/// gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ZennitComposite {
    /// z+ on convolutions, epsilon on fully connected layers.
    EpsilonPlus,
    /// [`ZennitComposite::EpsilonPlus`] with flat on the first convolution
    /// or linear layer.
    EpsilonPlusFlat,
    /// alpha 2 beta 1 on convolutions, epsilon on fully connected layers.
    EpsilonAlpha2Beta1,
    /// [`ZennitComposite::EpsilonAlpha2Beta1`] with flat on the first layer.
    EpsilonAlpha2Beta1Flat,
    /// gamma on convolutions, epsilon on fully connected layers, z-box
    /// (input bounds) on the first convolution.
    EpsilonGammaBox,
    /// z+ on convolutions and fully connected layers, norm on average pools
    /// and sums, the gradient elsewhere (Zennit's `ExcitationBackprop`).
    ExcitationBackprop,
}

/// Zennit's "activation" kinds among sightline's ops.
const ACTIVATIONS: [OpKind; 6] = [
    OpKind::RELU,
    OpKind::SILU,
    OpKind::CLIP,
    OpKind::SIGMOID,
    OpKind::HARD_SIGMOID,
    OpKind::HARD_SWISH,
];

/// Average pools and explicit sums: the norm rule's ops.
const PROPORTIONAL: [OpKind; 3] = [
    OpKind::AVG_POOL2D,
    OpKind::ADAPTIVE_AVG_POOL2D,
    OpKind::RESIDUAL_SUM,
];

/// Zennit's `Linear` type: convolutions and fully connected layers.
const LINEAR_LAYERS: [OpKind; 2] = [OpKind::CONV2D, OpKind::LINEAR];

impl ZennitComposite {
    /// Every composite, in Zennit's order.
    pub const ALL: [ZennitComposite; 6] = [
        ZennitComposite::EpsilonPlus,
        ZennitComposite::EpsilonPlusFlat,
        ZennitComposite::EpsilonAlpha2Beta1,
        ZennitComposite::EpsilonAlpha2Beta1Flat,
        ZennitComposite::EpsilonGammaBox,
        ZennitComposite::ExcitationBackprop,
    ];

    /// Zennit's registered name (`epsilon_plus_flat`).
    pub fn name(self) -> &'static str {
        match self {
            ZennitComposite::EpsilonPlus => "epsilon_plus",
            ZennitComposite::EpsilonPlusFlat => "epsilon_plus_flat",
            ZennitComposite::EpsilonAlpha2Beta1 => "epsilon_alpha2_beta1",
            ZennitComposite::EpsilonAlpha2Beta1Flat => "epsilon_alpha2_beta1_flat",
            ZennitComposite::EpsilonGammaBox => "epsilon_gamma_box",
            ZennitComposite::ExcitationBackprop => "excitation_backprop",
        }
    }

    /// The method's name in the explainer and the command (`lrp.NAME`).
    pub fn method_name(self) -> &'static str {
        match self {
            ZennitComposite::EpsilonPlus => "lrp.epsilon_plus",
            ZennitComposite::EpsilonPlusFlat => "lrp.epsilon_plus_flat",
            ZennitComposite::EpsilonAlpha2Beta1 => "lrp.epsilon_alpha2_beta1",
            ZennitComposite::EpsilonAlpha2Beta1Flat => "lrp.epsilon_alpha2_beta1_flat",
            ZennitComposite::EpsilonGammaBox => "lrp.epsilon_gamma_box",
            ZennitComposite::ExcitationBackprop => "lrp.excitation_backprop",
        }
    }

    /// Whether the composite uses `params.epsilon` / `params.gamma` /
    /// `params.bounds` (for the command's options).
    pub fn takes(self) -> (bool, bool, bool) {
        match self {
            ZennitComposite::ExcitationBackprop => (false, false, false),
            ZennitComposite::EpsilonGammaBox => (true, true, true),
            _ => (true, false, false),
        }
    }

    /// The composite with `params`: an error for parameters its rules
    /// refuse, or for [`ZennitComposite::EpsilonGammaBox`] without bounds.
    pub fn composite<T: Element>(self, params: &LrpParams) -> Result<Composite<T>> {
        let stab = params.stabilizer;
        let base = |c: Composite<T>| -> Result<Composite<T>> {
            Ok(c.with_kinds(&ACTIVATIONS, Arc::new(Pass))
                .with_kinds(&PROPORTIONAL, Arc::new(Norm::new(stab)?))
                .with_kinds(&[OpKind::BATCH_NORM], Arc::new(Pass)))
        };
        let epsilon =
            || -> Result<Arc<dyn Rule<T>>> { Ok(Arc::new(Epsilon::new(params.epsilon)?)) };
        let zplus = || -> Result<Arc<dyn Rule<T>>> { Ok(Arc::new(ZPlus::new(stab)?)) };
        let alpha_beta = || -> Result<Arc<dyn Rule<T>>> {
            Ok(Arc::new(AlphaBeta::with_stabilizer(2.0, 1.0, stab)?))
        };
        let flat = || -> Result<Arc<dyn Rule<T>>> { Ok(Arc::new(Flat::new(stab)?)) };
        let convs_and_dense = |conv: Arc<dyn Rule<T>>| -> Result<Composite<T>> {
            Ok(base(Composite::new())?
                .with_kinds(&[OpKind::CONV2D], conv)
                .with_kinds(&[OpKind::LINEAR], epsilon()?))
        };
        Ok(match self {
            ZennitComposite::EpsilonPlus => convs_and_dense(zplus()?)?,
            ZennitComposite::EpsilonPlusFlat => {
                convs_and_dense(zplus()?)?.with_first(&LINEAR_LAYERS, flat()?)
            }
            ZennitComposite::EpsilonAlpha2Beta1 => convs_and_dense(alpha_beta()?)?,
            ZennitComposite::EpsilonAlpha2Beta1Flat => {
                convs_and_dense(alpha_beta()?)?.with_first(&LINEAR_LAYERS, flat()?)
            }
            ZennitComposite::EpsilonGammaBox => {
                let (low, high) = params.bounds.ok_or_else(|| {
                    AttributionError::InvalidOption(
                        "the epsilon_gamma_box composite needs the input bounds (low, high)".into(),
                    )
                })?;
                let gamma: Arc<dyn Rule<T>> = Arc::new(Gamma::with_stabilizer(params.gamma, stab)?);
                convs_and_dense(gamma)?.with_first(
                    &[OpKind::CONV2D],
                    Arc::new(ZBox::with_stabilizer(low, high, stab)?),
                )
            }
            ZennitComposite::ExcitationBackprop => Composite::new()
                .with_kinds(&PROPORTIONAL, Arc::new(Norm::new(stab)?))
                .with_kinds(&LINEAR_LAYERS, zplus()?),
        })
    }
}

impl fmt::Display for ZennitComposite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ZennitComposite {
    type Err = AttributionError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| AttributionError::UnknownMethod {
                name: s.to_string(),
                known: Self::ALL.map(|c| c.name()).join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in ZennitComposite::ALL {
            assert_eq!(c.name().parse::<ZennitComposite>().unwrap(), c);
        }
        assert!("epsilon".parse::<ZennitComposite>().is_err());
    }

    #[test]
    fn gamma_box_needs_bounds_and_parameters_are_checked() {
        let p = LrpParams::default();
        assert!(ZennitComposite::EpsilonGammaBox
            .composite::<f32>(&p)
            .is_err());
        let p = LrpParams {
            bounds: Some((-3.0, 3.0)),
            ..p
        };
        assert!(ZennitComposite::EpsilonGammaBox
            .composite::<f32>(&p)
            .is_ok());
        let bad = LrpParams { epsilon: -1.0, ..p };
        assert!(ZennitComposite::EpsilonPlus.composite::<f32>(&bad).is_err());
        let bad = LrpParams {
            bounds: Some((3.0, -3.0)),
            ..p
        };
        assert!(ZennitComposite::EpsilonGammaBox
            .composite::<f32>(&bad)
            .is_err());
    }
}
