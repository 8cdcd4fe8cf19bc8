//! Zennit's stabiliser of a rule's denominator.

use crate::error::{AutogradError, Result};
use sightline_tensor::{cst, Element, Tensor};

/// The stabiliser every rule but [`super::Epsilon`] uses unless told
/// otherwise (Zennit's default).
pub const DEFAULT_STABILIZER: f64 = 1e-6;

/// `z + eps sign(z)` with `sign(0) = 1`: the denominator moved away from
/// zero by `eps` on its own side (Zennit's `stabilize`). NaN stays NaN.
#[inline]
pub fn stabilize<T: Element>(z: T, eps: T) -> T {
    if z < T::zero() {
        z - eps
    } else {
        z + eps
    }
}

/// `relevance / stabilize(z, eps)`, element by element: the scaled
/// relevance every rule sends back through its modified op.
pub(crate) fn scaled<T: Element>(
    relevance: &Tensor<T>,
    z: &Tensor<T>,
    eps: f64,
) -> sightline_tensor::Result<Tensor<T>> {
    let eps = cst::<T>(eps);
    relevance.zip_map(z, "lrp normalise", |r, z| r / stabilize(z, eps))
}

/// An error unless `value` (parameter `what` of `rule`) is finite and at
/// least 0.
pub(crate) fn check_non_negative(rule: &'static str, what: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(AutogradError::InvalidRule {
            rule,
            reason: format!("{what} must be finite and at least 0, got {value}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_away_from_zero_on_its_own_side() {
        assert_eq!(stabilize(2.0_f64, 0.5), 2.5);
        assert_eq!(stabilize(-2.0_f64, 0.5), -2.5);
        assert_eq!(stabilize(0.0_f64, 0.5), 0.5);
        assert_eq!(stabilize(-0.0_f64, 0.5), 0.5);
        assert!(stabilize(f64::NAN, 0.5).is_nan());
    }

    #[test]
    fn parameters_are_checked() {
        assert!(check_non_negative("epsilon", "epsilon", 0.0).is_ok());
        for bad in [-1e-9, f64::NAN, f64::INFINITY] {
            let e = check_non_negative("epsilon", "epsilon", bad).unwrap_err();
            assert!(e.to_string().contains("epsilon"), "{e}");
        }
    }
}
