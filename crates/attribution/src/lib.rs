//! # sightline-attribution
//!
//! Saliency methods with TorchRay's contract and Captum's methods, on
//! sightline's autograd. Each TorchRay method is a [`RuleSet`](sightline_autograd::RuleSet)
//! plus a reduction; an [`Explainer`] records one forward pass and answers any
//! number of (method, target) questions from it.
#![warn(missing_docs)]

pub mod captum;
pub mod error;
pub mod evaluation;
pub mod explainer;
pub mod lrp;
pub mod method;
pub mod perturbation;
pub mod postprocess;
pub mod target;

pub use error::{AttributionError, Result};
pub use explainer::{saliency, Explainer, Saliency, SaliencyOptions};
pub use method::{group_by_form, Method, ModelForm};
pub use postprocess::Resize;
pub use target::Target;
