//! The parameters of RISE as a method of the explainer.

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
