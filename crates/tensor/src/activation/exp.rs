//! The exponential of one element as straight-line arithmetic, so that a
//! loop of it vectorizes (a call of `libm`'s `expf` per element does not):
//! what the sigmoid and SiLU sweeps take.
//!
//! `f32`: Cephes' `expf` (range reduction by `ln 2` in two parts, a degree-6
//! polynomial on `[-ln 2 / 2, ln 2 / 2]`, then the power of two built in the
//! exponent bits), within 2 ulp of the exact value on the normal range. The
//! power of two is applied as two factors, so results that overflow come out
//! infinite and those below the normal range come out subnormal or 0, as
//! `expf`'s do; NaN stays NaN. Only additions and multiplications, never
//! fused, so the bits are the same at every vector width and thread count.
//! `f64` keeps `libm`'s `exp` (the precision reference).

use crate::element::Element;
use std::any::TypeId;

/// `exp(v)`: the straight-line `f32` form below for `f32`, `libm` for `f64`.
#[inline(always)]
pub(super) fn exp<T: Element>(v: T) -> T {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // f32 -> f64 -> f32 conversions are exact (and fold away).
        T::from_f64_lossy(f64::from(exp_f32(v.to_f64_lossless() as f32)))
    } else {
        v.exp()
    }
}

/// Inputs are clamped to `[LO, HI]` first: below `LO` the exponential is 0
/// in `f32` (after rounding), above `HI` infinite.
const LO: f32 = -104.0;
const HI: f32 = 89.0;
/// `1.5 * 2^23`: adding it rounds a float below `2^22` in magnitude to an
/// integer (round to nearest even), which its low mantissa bits then hold.
const ROUND: f32 = 12_582_912.0;
/// `ln 2` in two parts: `LN2_HI` has few enough mantissa bits that `n *
/// LN2_HI` is exact for the `n` met here.
const LN2_HI: f32 = 355.0 / 512.0;
const LN2_LO: f32 = -2.121_944_4e-4;

/// Cephes' `expf`, branch-free (see the module's doc).
#[inline(always)]
pub(super) fn exp_f32(x: f32) -> f32 {
    // Selects, not `f32::clamp` (which would turn NaN into a bound).
    let x = if x < LO { LO } else { x };
    let x = if x > HI { HI } else { x };
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    // The integer the rounding left in `t`'s mantissa: n in [-150, 129].
    let k = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = x - n * LN2_HI - n * LN2_LO;
    let z = r * r;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let p = p * z + r + 1.0;
    // 2^k as 2^(k/2) * 2^(k - k/2): each factor a normal float.
    let half = k >> 1;
    let pow2 = |e: i32| f32::from_bits((e.wrapping_add(127) as u32).wrapping_shl(23));
    p * pow2(half) * pow2(k.wrapping_sub(half))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two finite floats of one sign.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn within_two_ulp_of_the_exact_value_on_the_normal_range() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.5 {
            let exact = (x as f64).exp() as f32;
            worst = worst.max(ulps(exp_f32(x), exact));
            x += 0.000_731;
        }
        assert!(worst <= 2, "worst {worst} ulp");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(ulps(exp_f32(1.0), std::f32::consts::E) <= 1);
    }

    #[test]
    fn ends_of_the_range_and_special_values() {
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert_eq!(exp_f32(f32::MAX), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-200.0), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        // Subnormal results, as expf's: exp(-100) = 3.72e-44.
        let sub = exp_f32(-100.0);
        assert!(sub > 0.0 && !sub.is_normal());
        assert!((sub as f64 / (-100f64).exp() - 1.0).abs() < 0.05);
        // Just below overflow.
        let big = exp_f32(88.7);
        assert!(big.is_finite() && ulps(big, (88.7f32 as f64).exp() as f32) <= 2);
    }

    #[test]
    fn f64_is_libm() {
        assert_eq!(exp(0.5f64), 0.5f64.exp());
        assert_eq!(exp(0.5f32), exp_f32(0.5));
    }
}
