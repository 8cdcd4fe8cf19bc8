//! Layer-wise relevance propagation: composites that say which of
//! [`sightline_autograd::lrp`]'s rules runs on which op, as Zennit's do.
//!
//! A [`Composite`] maps op kinds, layer names and "the first layer" to
//! rules; given a recorded tape it becomes a [`sightline_autograd::RuleSet`]
//! for one backward pass, so one forward pass serves any number of
//! composites and targets. [`ZennitComposite`] names Zennit's built-in
//! composites with their parameters. Canonizers (merging batch norms into
//! the layer before them, explicit residual sums) are model transforms and
//! live with the model, not here.

mod composite;
mod zennit;

pub use composite::Composite;
pub use zennit::{LrpParams, ZennitComposite};
