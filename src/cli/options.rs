//! Options several subcommands share: the LRP composites' and RISE's
//! parameters and the kernel policy.

use super::CliError;
use sightline_attribution::lrp::LrpParams;
use sightline_attribution::perturbation::{ExtremalParams, ExtremalVariant, RiseParams};
use sightline_attribution::Method;
use sightline_tensor::{KernelPolicy, SimdCap, WinogradPolicy};

/// The methods named by `names` (without repeats, in the order given),
/// each with its parameters from the options: LRP's, RISE's, extremal
/// perturbation's (an option that no named method takes is an error).
pub fn method_list(
    names: &[String],
    lrp: &LrpOptions,
    rise: &RiseArgs,
    extremal: &ExtremalArgs,
) -> Result<Vec<Method>, CliError> {
    extremal.apply(rise.apply(lrp.apply(super::explain::model::parse_methods(names)?)?)?)
}

/// The parameters of the LRP methods (`lrp.NAME`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LrpOptions {
    /// Epsilon of the epsilon rule on fully connected layers (the
    /// `lrp.epsilon_*` composites) [default: Zennit's 1e-6].
    #[arg(long, allow_negative_numbers = true)]
    pub lrp_epsilon: Option<f64>,
    /// Gamma of the gamma rule on convolutions (`lrp.epsilon_gamma_box`)
    /// [default: 0.25].
    #[arg(long, allow_negative_numbers = true)]
    pub lrp_gamma: Option<f64>,
    /// Input bounds LOW,HIGH of the z-box rule on the first convolution
    /// (`lrp.epsilon_gamma_box`, which needs them): the lowest and highest
    /// values of the normalised input.
    #[arg(long, allow_hyphen_values = true)]
    pub lrp_bounds: Option<String>,
}

impl LrpOptions {
    /// `methods` with the LRP ones given these parameters: an error for an
    /// option no method asked for takes, for a value a rule refuses, or for
    /// `lrp.epsilon_gamma_box` without bounds.
    pub fn apply(&self, methods: Vec<Method>) -> Result<Vec<Method>, CliError> {
        let bounds = match &self.lrp_bounds {
            None => None,
            Some(s) => {
                let parts: Vec<&str> = s.split(',').map(str::trim).collect();
                let parsed: Option<Vec<f64>> = parts.iter().map(|p| p.parse().ok()).collect();
                match parsed.as_deref() {
                    Some(&[low, high]) if low.is_finite() && high.is_finite() && low < high => {
                        Some((low, high))
                    }
                    _ => {
                        return Err(format!(
                        "--lrp-bounds {s}: expected LOW,HIGH, two finite numbers with LOW < HIGH"
                    )
                        .into())
                    }
                }
            }
        };
        let mut used = (false, false, false);
        let out = methods
            .into_iter()
            .map(|m| match m {
                Method::Lrp { composite, params } => {
                    let (eps, gamma, box_) = composite.takes();
                    used = (used.0 || eps, used.1 || gamma, used.2 || box_);
                    let params = LrpParams {
                        epsilon: self.lrp_epsilon.unwrap_or(params.epsilon),
                        gamma: self.lrp_gamma.unwrap_or(params.gamma),
                        bounds: bounds.or(params.bounds),
                        ..params
                    };
                    // Refused parameters and missing bounds, now, before
                    // any image.
                    composite.composite::<f32>(&params).map_err(|e| {
                        CliError::from(format!("--method {}: {e}", composite.method_name()))
                    })?;
                    Ok(Method::Lrp { composite, params })
                }
                other => Ok(other),
            })
            .collect::<Result<Vec<_>, CliError>>()?;
        for (given, taken, flag) in [
            (self.lrp_epsilon.is_some(), used.0, "--lrp-epsilon"),
            (self.lrp_gamma.is_some(), used.1, "--lrp-gamma"),
            (bounds.is_some(), used.2, "--lrp-bounds"),
        ] {
            if given && !taken {
                return Err(format!("{flag}: no method asked for takes it").into());
            }
        }
        Ok(out)
    }
}

/// The parameters of RISE (`--method rise`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RiseArgs {
    /// Number of RISE masks [default: TorchRay's 8000].
    #[arg(long, allow_negative_numbers = true)]
    pub rise_masks: Option<usize>,
    /// Cells per side of RISE's low-resolution grids [default: 7].
    #[arg(long, allow_negative_numbers = true)]
    pub rise_cells: Option<usize>,
    /// Probability that a RISE grid cell is kept [default: 0.5].
    #[arg(long, allow_negative_numbers = true)]
    pub rise_p: Option<f64>,
    /// Masked copies per RISE forward pass [default: 32].
    #[arg(long, allow_negative_numbers = true)]
    pub rise_batch: Option<usize>,
    /// Seed of RISE's random masks [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    pub rise_seed: Option<u64>,
}

impl RiseArgs {
    /// `methods` with RISE given these parameters: an error for a value
    /// RISE refuses, or for an option given without `--method rise`.
    pub fn apply(&self, methods: Vec<Method>) -> Result<Vec<Method>, CliError> {
        let given = self.rise_masks.is_some()
            || self.rise_cells.is_some()
            || self.rise_p.is_some()
            || self.rise_batch.is_some()
            || self.rise_seed.is_some();
        let mut taken = false;
        let out = methods
            .into_iter()
            .map(|m| match m {
                Method::Rise(p) => {
                    taken = true;
                    let params = RiseParams {
                        num_masks: self.rise_masks.unwrap_or(p.num_masks),
                        num_cells: self.rise_cells.unwrap_or(p.num_cells),
                        p: self.rise_p.unwrap_or(p.p),
                        batch_size: self.rise_batch.unwrap_or(p.batch_size),
                        seed: self.rise_seed.unwrap_or(p.seed),
                    };
                    params
                        .validate()
                        .map_err(|e| CliError::from(format!("--method rise: {e}")))?;
                    Ok(Method::Rise(params))
                }
                other => Ok(other),
            })
            .collect::<Result<Vec<_>, CliError>>()?;
        if given && !taken {
            return Err("--rise-*: no method asked for takes them (--method rise)".into());
        }
        Ok(out)
    }
}

/// The parameters of extremal perturbation (`--method extremal_perturbation`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ExtremalArgs {
    /// Fraction of the image the extremal perturbation mask keeps [default: 0.1].
    #[arg(long, allow_negative_numbers = true)]
    pub ep_area: Option<f64>,
    /// Optimisation steps of extremal perturbation [default: TorchRay's 800].
    #[arg(long, allow_negative_numbers = true)]
    pub ep_iters: Option<usize>,
    /// Pixels between the mask's parameters [default: 7, TorchRay's at 224 x 224].
    #[arg(long, allow_negative_numbers = true)]
    pub ep_step: Option<usize>,
    /// Width of the mask's bumps in pixels [default: 21].
    #[arg(long, allow_negative_numbers = true)]
    pub ep_sigma: Option<f64>,
    /// preserve, delete or dual [default: preserve].
    #[arg(long)]
    pub ep_variant: Option<String>,
    /// Flip the input left-right on even steps: true or false [default: true, TorchRay's].
    #[arg(long)]
    pub ep_jitter: Option<bool>,
}

impl ExtremalArgs {
    /// `methods` with extremal perturbation given these parameters: an
    /// error for a value it refuses, or for an option given without
    /// `--method extremal_perturbation`.
    pub fn apply(&self, methods: Vec<Method>) -> Result<Vec<Method>, CliError> {
        let given = self.ep_area.is_some()
            || self.ep_iters.is_some()
            || self.ep_step.is_some()
            || self.ep_sigma.is_some()
            || self.ep_variant.is_some()
            || self.ep_jitter.is_some();
        let variant = self
            .ep_variant
            .as_deref()
            .map(|v| v.parse::<ExtremalVariant>())
            .transpose()
            .map_err(|e| CliError::from(format!("--ep-variant: {e}")))?;
        let mut taken = false;
        let out = methods
            .into_iter()
            .map(|m| match m {
                Method::ExtremalPerturbation(p) => {
                    taken = true;
                    let params = ExtremalParams {
                        area: self.ep_area.unwrap_or(p.area),
                        max_iter: self.ep_iters.unwrap_or(p.max_iter),
                        step: self.ep_step.unwrap_or(p.step),
                        sigma: self.ep_sigma.unwrap_or(p.sigma),
                        variant: variant.unwrap_or(p.variant),
                        jitter: self.ep_jitter.unwrap_or(p.jitter),
                    };
                    params.validate().map_err(|e| {
                        CliError::from(format!("--method extremal_perturbation: {e}"))
                    })?;
                    Ok(Method::ExtremalPerturbation(params))
                }
                other => Ok(other),
            })
            .collect::<Result<Vec<_>, CliError>>()?;
        if given && !taken {
            return Err(
                "--ep-*: no method asked for takes them (--method extremal_perturbation)".into(),
            );
        }
        Ok(out)
    }
}

/// How the convolutions and pools compute: a value on the model, never the
/// environment.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KernelOptions {
    /// Winograd policy of the 3 x 3 convolutions: auto (the shapes decide),
    /// off (im2col everywhere), all, f2 or f4.
    #[arg(long, default_value = "auto")]
    pub winograd: WinogradPolicy,
    /// Highest instruction set of the hand-vectorised kernels: best (what
    /// the CPU has), avx2 (what a CPU without AVX-512 runs) or generic.
    #[arg(long, default_value = "best")]
    pub simd: SimdCap,
}

impl KernelOptions {
    /// The policy these options name.
    pub fn policy(&self) -> KernelPolicy {
        KernelPolicy::new(self.winograd, self.simd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_attribution::lrp::ZennitComposite;

    fn lrp(c: ZennitComposite) -> Method {
        Method::Lrp {
            composite: c,
            params: LrpParams::default(),
        }
    }

    #[test]
    fn rise_options_set_the_parameters_and_refuse_bad_values() {
        let opts = RiseArgs {
            rise_masks: Some(100),
            rise_p: Some(0.25),
            ..RiseArgs::default()
        };
        let got = opts
            .apply(vec![Method::Gradient, "rise".parse().unwrap()])
            .unwrap();
        let Method::Rise(p) = &got[1] else {
            panic!("{got:?}")
        };
        assert_eq!(
            (p.num_masks, p.num_cells, p.p, p.batch_size),
            (100, 7, 0.25, 32)
        );
        let e = opts.apply(vec![Method::Gradient]).unwrap_err().to_string();
        assert!(e.contains("--method rise"), "{e}");
        let bad = RiseArgs {
            rise_cells: Some(1),
            ..RiseArgs::default()
        };
        let e = bad
            .apply(vec!["rise".parse().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("2 cells"), "{e}");
    }

    #[test]
    fn lrp_options_set_the_parameters_and_refuse_what_nothing_takes() {
        let opts = LrpOptions {
            lrp_epsilon: Some(0.1),
            lrp_gamma: Some(0.5),
            lrp_bounds: Some("-3,3".into()),
        };
        let got = opts
            .apply(vec![
                Method::Gradient,
                lrp(ZennitComposite::EpsilonGammaBox),
            ])
            .unwrap();
        let Method::Lrp { params, .. } = &got[1] else {
            panic!("{got:?}")
        };
        assert_eq!(
            (params.epsilon, params.gamma, params.bounds),
            (0.1, 0.5, Some((-3.0, 3.0)))
        );
        assert_eq!(got[0], Method::Gradient);
        // Bounds are required by the gamma-box composite, checked now.
        let e = LrpOptions::default()
            .apply(vec![lrp(ZennitComposite::EpsilonGammaBox)])
            .unwrap_err();
        assert!(e.to_string().contains("bounds"), "{e}");
        // An option no method takes, bad values.
        let gamma_only = LrpOptions {
            lrp_gamma: Some(0.5),
            ..LrpOptions::default()
        };
        assert!(gamma_only
            .apply(vec![lrp(ZennitComposite::EpsilonPlus)])
            .is_err());
        for bad in ["3,-3", "1", "a,b", "nan,1"] {
            let o = LrpOptions {
                lrp_bounds: Some(bad.into()),
                ..LrpOptions::default()
            };
            assert!(
                o.apply(vec![lrp(ZennitComposite::EpsilonGammaBox)])
                    .is_err(),
                "{bad}"
            );
        }
        let negative = LrpOptions {
            lrp_epsilon: Some(-1.0),
            ..LrpOptions::default()
        };
        assert!(negative
            .apply(vec![lrp(ZennitComposite::EpsilonPlus)])
            .is_err());
    }
}
