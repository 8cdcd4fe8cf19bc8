//! The integration rules of Captum's integrated gradients: where along the
//! path the gradient is taken (`alphas`) and with what weight (`step sizes`).

use crate::error::{AttributionError, Result};
use std::str::FromStr;

/// An integration rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Integration {
    /// Gauss-Legendre on [0, 1] (Captum's default).
    #[default]
    GaussLegendre,
    /// Left Riemann sum: `t_k = k / n`.
    RiemannLeft,
    /// Right Riemann sum: `t_k = (k + 1) / n`.
    RiemannRight,
    /// Midpoint Riemann sum: `t_k = (k + 0.5) / n`.
    RiemannMiddle,
    /// Captum's trapezoid: `t_k = k / (n - 1)`, weights `1/n` halved at both ends.
    RiemannTrapezoid,
}

impl FromStr for Integration {
    type Err = AttributionError;

    fn from_str(s: &str) -> Result<Self> {
        Integration::ALL
            .into_iter()
            .find(|i| i.name() == s)
            .ok_or_else(|| {
                AttributionError::InvalidOption(format!(
                    "unknown integration `{s}` (gausslegendre, riemann_trapezoid, riemann_left, riemann_right, riemann_middle)"
                ))
            })
    }
}

/// Most steps an integration rule takes ([`Integration::points`]): Captum's
/// examples use 50 to 300; Gauss-Legendre's nodes cost `O(n^2)` to find,
/// 0.1 s at this bound.
pub const MAX_STEPS: usize = 10_000;

impl Integration {
    /// Every rule, Captum's default first.
    pub const ALL: [Integration; 5] = [
        Integration::GaussLegendre,
        Integration::RiemannTrapezoid,
        Integration::RiemannLeft,
        Integration::RiemannRight,
        Integration::RiemannMiddle,
    ];

    /// The rule's name, as Captum spells it and [`FromStr`] parses it.
    pub fn name(self) -> &'static str {
        match self {
            Integration::GaussLegendre => "gausslegendre",
            Integration::RiemannLeft => "riemann_left",
            Integration::RiemannRight => "riemann_right",
            Integration::RiemannMiddle => "riemann_middle",
            Integration::RiemannTrapezoid => "riemann_trapezoid",
        }
    }

    /// The points `t_k` in [0, 1] and weights `w_k` of an `n`-step rule
    /// (`n` at most [`MAX_STEPS`]).
    pub fn points(self, n: usize) -> Result<Vec<(f64, f64)>> {
        if n > MAX_STEPS {
            return Err(AttributionError::InvalidOption(format!(
                "{self:?} with {n} steps: at most {MAX_STEPS} are taken"
            )));
        }
        let min = if self == Integration::GaussLegendre {
            1
        } else {
            2
        };
        if n < min {
            return Err(AttributionError::InvalidOption(format!(
                "{self:?} needs at least {min} steps, got {n}"
            )));
        }
        let nf = n as f64;
        Ok(match self {
            Integration::GaussLegendre => gauss_legendre(n)
                .into_iter()
                .map(|(u, v)| ((1.0 + u) / 2.0, v / 2.0))
                .collect(),
            Integration::RiemannLeft => (0..n).map(|k| (k as f64 / nf, 1.0 / nf)).collect(),
            Integration::RiemannRight => (0..n).map(|k| ((k + 1) as f64 / nf, 1.0 / nf)).collect(),
            Integration::RiemannMiddle => {
                (0..n).map(|k| ((k as f64 + 0.5) / nf, 1.0 / nf)).collect()
            }
            Integration::RiemannTrapezoid => (0..n)
                .map(|k| {
                    let w = if k == 0 || k == n - 1 {
                        0.5 / nf
                    } else {
                        1.0 / nf
                    };
                    (k as f64 / (nf - 1.0), w)
                })
                .collect(),
        })
    }
}

/// Nodes (ascending) and weights of the `n`-point Gauss-Legendre rule on [-1, 1],
/// by Newton's method on the Legendre polynomial.
pub fn gauss_legendre(n: usize) -> Vec<(f64, f64)> {
    let mut out = vec![(0.0, 0.0); n];
    for i in 0..n.div_ceil(2) {
        // Tricomi's initial guess for the i-th largest root.
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            let (p, d) = legendre(n, x);
            dp = d;
            let dx = p / d;
            x -= dx;
            if dx.abs() < 1e-16 {
                break;
            }
        }
        let (_, d) = legendre(n, x);
        dp = if d != 0.0 { d } else { dp };
        let w = 2.0 / ((1.0 - x * x) * dp * dp);
        out[i] = (-x, w);
        out[n - 1 - i] = (x, w);
    }
    out
}

/// `P_n(x)` and its derivative.
fn legendre(n: usize, x: f64) -> (f64, f64) {
    let (mut p0, mut p1) = (1.0, x);
    if n == 0 {
        return (1.0, 0.0);
    }
    for k in 2..=n {
        let kf = k as f64;
        let p2 = ((2.0 * kf - 1.0) * x * p1 - (kf - 1.0) * p0) / kf;
        p0 = p1;
        p1 = p2;
    }
    let d = n as f64 * (x * p1 - p0) / (x * x - 1.0);
    (p1, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_legendre_matches_known_rules() {
        let r = gauss_legendre(2);
        let a = 1.0 / 3f64.sqrt();
        assert!((r[0].0 + a).abs() < 1e-15 && (r[1].0 - a).abs() < 1e-15);
        assert!((r[0].1 - 1.0).abs() < 1e-14);
        let r = gauss_legendre(3);
        assert!(r[1].0.abs() < 1e-15 && (r[1].1 - 8.0 / 9.0).abs() < 1e-14);
        // Integrates x^(2n-1) exactly; weights sum to 2.
        for n in [1, 5, 24, 50] {
            let r = gauss_legendre(n);
            assert!(
                (r.iter().map(|p| p.1).sum::<f64>() - 2.0).abs() < 1e-12,
                "n={n}"
            );
            let m: f64 = r.iter().map(|(x, w)| w * x.powi(2 * n as i32 - 2)).sum();
            assert!((m - 2.0 / (2 * n - 1) as f64).abs() < 1e-12, "n={n}");
            assert!(r.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn names_round_trip() {
        for i in Integration::ALL {
            assert_eq!(i.name().parse::<Integration>().unwrap(), i);
        }
        let e = "simpson".parse::<Integration>().unwrap_err().to_string();
        assert!(e.contains("simpson") && e.contains("riemann_middle"), "{e}");
    }

    #[test]
    fn riemann_rules() {
        let t = Integration::RiemannTrapezoid.points(4).unwrap();
        assert_eq!(
            t.iter().map(|p| p.0).collect::<Vec<_>>(),
            [0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0]
        );
        assert!((t.iter().map(|p| p.1).sum::<f64>() - 0.75).abs() < 1e-15);
        let l = Integration::RiemannMiddle.points(2).unwrap();
        assert_eq!(l, vec![(0.25, 0.5), (0.75, 0.5)]);
        assert!(Integration::RiemannLeft.points(1).is_err());
        assert!(Integration::GaussLegendre.points(0).is_err());
        assert_eq!(
            Integration::RiemannLeft.points(MAX_STEPS).unwrap().len(),
            MAX_STEPS
        );
        for n in [MAX_STEPS + 1, usize::MAX] {
            let e = Integration::GaussLegendre.points(n).unwrap_err();
            assert!(e.to_string().contains("at most 10000"), "{e}");
        }
    }
}
