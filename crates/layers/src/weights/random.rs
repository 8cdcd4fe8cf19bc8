//! Deterministic random initialisation.

use super::{Init, WeightSource};
use crate::error::Result;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// Draws every tensor from its own ChaCha8 stream, seeded by the model seed
/// and the tensor's key: the values do not depend on the order of the calls.
pub(crate) struct RandomSource {
    seed: u64,
}

impl RandomSource {
    /// A source for the model seed `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self { seed }
    }
}

/// FNV-1a hash of a key (stable across platforms and releases).
fn fnv1a(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl<T: Element> WeightSource<T> for RandomSource {
    fn tensor(&mut self, key: &str, shape: &[usize], init: Init) -> Result<Arc<Tensor<T>>> {
        let t = match init {
            Init::Zeros => Tensor::zeros(shape.to_vec()),
            Init::Ones => Tensor::ones(shape.to_vec()),
            Init::Kaiming { fan } => {
                let std = (2.0 / fan.max(1) as f64).sqrt();
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ fnv1a(key));
                let mut t = Tensor::zeros(shape.to_vec());
                for v in t.data_mut() {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    *v = T::from_f64_lossy(z * std);
                }
                t
            }
        };
        Ok(Arc::new(t))
    }

    fn counter(&mut self, _key: &str) -> Result<()> {
        Ok(())
    }
}
