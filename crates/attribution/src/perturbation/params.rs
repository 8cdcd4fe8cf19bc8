//! The parameters of the perturbation methods as methods of the explainer.

use super::extremal::{ExtremalOptions, ExtremalVariant};
use super::rise::MAX_MASKS;
use crate::error::{AttributionError, Result};

/// RISE's parameters as [`crate::Method::Rise`] takes them: how many masks,
/// of how many cells, kept with which probability, drawn from which seed,
/// applied how many at a time. Equal (and hashed) by the values' bits.
#[derive(Clone, Copy, Debug)]
pub struct RiseParams {
    /// Number of masks (TorchRay's default 8,000; at most [`MAX_MASKS`]).
    pub num_masks: usize,
    /// Cells per side of the low-resolution grids (default 7).
    pub num_cells: usize,
    /// Probability that a cell is kept (default 0.5).
    pub p: f64,
    /// Masked copies per forward pass (default 32).
    pub batch_size: usize,
    /// Seed of sightline's generator for the draws (default 0).
    pub seed: u64,
}

impl Default for RiseParams {
    /// TorchRay's defaults (`batch_size` 32, as its signature has it).
    fn default() -> Self {
        Self {
            num_masks: 8000,
            num_cells: 7,
            p: 0.5,
            batch_size: 32,
            seed: 0,
        }
    }
}

impl RiseParams {
    /// Checks the values without an input: at least one mask and at most
    /// [`MAX_MASKS`], at least 2 cells, `p` in [0, 1], a positive batch.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(AttributionError::InvalidOption(m));
        if self.num_masks == 0 || self.num_masks > MAX_MASKS {
            return bad(format!(
                "RISE takes 1 to {MAX_MASKS} masks, got {}",
                self.num_masks
            ));
        }
        if self.num_cells < 2 {
            return bad(format!(
                "RISE needs at least 2 cells per side, got {}",
                self.num_cells
            ));
        }
        if !(0.0..=1.0).contains(&self.p) {
            return bad(format!("RISE's p must lie in [0, 1], got {}", self.p));
        }
        if self.batch_size == 0 {
            return bad("RISE's batch size must be positive".into());
        }
        Ok(())
    }

    fn bits(&self) -> (usize, usize, u64, usize, u64) {
        (
            self.num_masks,
            self.num_cells,
            self.p.to_bits(),
            self.batch_size,
            self.seed,
        )
    }
}

impl PartialEq for RiseParams {
    fn eq(&self, other: &Self) -> bool {
        self.bits() == other.bits()
    }
}

impl Eq for RiseParams {}

impl std::hash::Hash for RiseParams {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bits().hash(state);
    }
}

/// Extremal perturbation's parameters as [`crate::Method::ExtremalPerturbation`]
/// takes them (one area: one map). Equal (and hashed) by the values' bits.
#[derive(Clone, Copy, Debug)]
pub struct ExtremalParams {
    /// The fraction of the image the mask keeps (default 0.1).
    pub area: f64,
    /// Optimisation steps (default 800).
    pub max_iter: usize,
    /// Pixels between mask parameters (default 7, TorchRay's for 224 x 224).
    pub step: usize,
    /// Width of the mask's bumps (default 21).
    pub sigma: f64,
    /// Preserve, delete or dual (default preserve).
    pub variant: ExtremalVariant,
    /// Flip the input on even steps (TorchRay's default: yes).
    pub jitter: bool,
}

impl Default for ExtremalParams {
    fn default() -> Self {
        let d = ExtremalOptions::default();
        Self {
            area: 0.1,
            max_iter: d.max_iter,
            step: d.step,
            sigma: d.sigma,
            variant: d.variant,
            jitter: d.jitter,
        }
    }
}

impl ExtremalParams {
    /// The options of [`super::extremal_perturbation`] for these parameters.
    pub fn options(&self) -> ExtremalOptions {
        ExtremalOptions {
            areas: vec![self.area],
            max_iter: self.max_iter,
            step: self.step,
            sigma: self.sigma,
            variant: self.variant,
            jitter: self.jitter,
            ..ExtremalOptions::default()
        }
    }

    /// Checks the values without an input: an area in [0, 1], 1 to
    /// [`super::MAX_ITERATIONS`] steps, a step of 1 to 4096 pixels, a
    /// positive sigma.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(AttributionError::InvalidOption(m));
        if !(0.0..=1.0).contains(&self.area) {
            return bad(format!(
                "extremal perturbation: the area must lie in [0, 1], got {}",
                self.area
            ));
        }
        if self.max_iter == 0 || self.max_iter > super::MAX_ITERATIONS {
            return bad(format!(
                "extremal perturbation takes 1 to {} steps, got {}",
                super::MAX_ITERATIONS,
                self.max_iter
            ));
        }
        if self.step == 0 || self.step > 4096 {
            return bad(format!(
                "extremal perturbation: step must lie in 1..=4096, got {}",
                self.step
            ));
        }
        if !(self.sigma.is_finite() && self.sigma > 0.0 && self.sigma <= 4096.0) {
            return bad(format!(
                "extremal perturbation: sigma must lie in (0, 4096], got {}",
                self.sigma
            ));
        }
        Ok(())
    }

    fn bits(&self) -> (u64, usize, usize, u64, ExtremalVariant, bool) {
        (
            self.area.to_bits(),
            self.max_iter,
            self.step,
            self.sigma.to_bits(),
            self.variant,
            self.jitter,
        )
    }
}

impl PartialEq for ExtremalParams {
    fn eq(&self, other: &Self) -> bool {
        self.bits() == other.bits()
    }
}

impl Eq for ExtremalParams {}

impl std::hash::Hash for ExtremalParams {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bits().hash(state);
    }
}
