//! Perturbation methods: saliency from forward passes on masked inputs,
//! with TorchRay's semantics.
//!
//! - [`rise`] (Petsiuk et al. 2018): the average of random masks weighted
//!   by the model's sigmoid scores on the masked input. Its masks come from
//!   [`RiseDraws`]: drawn from sightline's seeded generator, or given (the
//!   low-resolution grids and shifts, savable as safetensors so a run can be
//!   repeated), or given outright as a mask tensor ([`MaskSource::Masks`]).
//!   As [`crate::Method::Rise`] (with [`RiseParams`]) it runs wherever the
//!   other methods do: the explainer answers it from its model and input.
//! - [`extremal_perturbation`] (Fong et al. 2019): the smooth mask of a
//!   given area that best preserves (or deletes) the target's score,
//!   optimised through the blur perturbation.

mod extremal;
mod params;
mod rise;
mod rise_masks;

pub use extremal::{extremal_perturbation, ExtremalOptions, ExtremalVariant, MAX_ITERATIONS};
pub use params::{ExtremalParams, RiseParams};
pub use rise::{rise, MaskSource, RiseOptions, MAX_MASKS};
pub use rise_masks::{upsample_reflect, RiseDraws};
