//! Scoring saliency maps: how well a map explains the model's decision.
//!
//! - [`causal_metric`]: the deletion and insertion games of Petsiuk et al.
//!   (2018, the RISE paper), following their reference implementation
//!   (`evaluation.py` of github.com/eclique/RISE): pixels are removed (or
//!   inserted) in order of saliency, a fixed number per step, and the area
//!   under the curve of the class probability is the score. The protocol
//!   is written out in `docs/evaluation.md`.
//! - [`cascading_randomization`]: the model-randomisation sanity check of
//!   Adebayo et al. (2018): the layers are re-randomised from the top, and
//!   each method's map is compared with the trained model's by
//!   [`spearman`] rank correlation.

mod causal;
mod rank;
mod sanity;
mod substrate;

pub use causal::{auc, causal_metric, CausalCurve, CausalMode, CausalOptions};
pub use rank::spearman;
pub use sanity::{cascading_randomization, SanityStep};
pub use substrate::{blur_substrate, gaussian_kernel_2d};
