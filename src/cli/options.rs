//! Options several subcommands share: the parameters of the methods (the
//! LRP composites', RISE's, extremal perturbation's, Captum's) and the
//! kernel policy.

use super::CliError;
use sightline::files::read_regular;
use sightline::imageio::Preprocess;
use sightline_attribution::captum::{
    IgBaseline, IgParams, Integration, NoiseKind, NoiseTunnelParams, TunnelledMethod,
};
use sightline_attribution::lrp::LrpParams;
use sightline_attribution::perturbation::{ExtremalParams, ExtremalVariant, RiseParams};
use sightline_attribution::Method;
use sightline_tensor::{KernelPolicy, SimdCap, Tensor, WinogradPolicy};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

/// The methods named by `names` (without repeats, in the order given),
/// each with its parameters from the options: LRP's, RISE's, extremal
/// perturbation's (an option that no named method takes is an error);
/// Captum's methods with Captum's defaults.
pub fn method_list(
    names: &[String],
    lrp: &LrpOptions,
    rise: &RiseArgs,
    extremal: &ExtremalArgs,
) -> Result<Vec<Method>, CliError> {
    let options = MethodArgs {
        lrp: lrp.clone(),
        rise: rise.clone(),
        extremal: extremal.clone(),
        captum: CaptumArgs::default(),
    };
    options.methods(names, &Preprocess::default())
}

/// The parameters of every method that has some, as `explain` and `bench`
/// take them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MethodArgs {
    /// Parameters of the LRP methods.
    #[command(flatten)]
    pub lrp: LrpOptions,
    /// Parameters of RISE.
    #[command(flatten)]
    pub rise: RiseArgs,
    /// Parameters of extremal perturbation.
    #[command(flatten)]
    pub extremal: ExtremalArgs,
    /// Parameters of Captum's methods.
    #[command(flatten)]
    pub captum: CaptumArgs,
}

impl MethodArgs {
    /// The methods named by `names` (without repeats, in the order given),
    /// each with its parameters from these options; `preprocess` gives the
    /// normalised value of a black pixel (`--baseline black`). An option
    /// that no named method takes, or a value a method refuses, is an
    /// error.
    pub fn methods(
        &self,
        names: &[String],
        preprocess: &Preprocess,
    ) -> Result<Vec<Method>, CliError> {
        let methods = super::explain::model::parse_methods(names)?;
        let methods = self.lrp.apply(methods)?;
        let methods = self.rise.apply(methods)?;
        let methods = self.extremal.apply(methods)?;
        let baseline = self
            .captum
            .baseline
            .as_ref()
            .map(|b| b.resolve(preprocess))
            .transpose()?;
        self.captum.apply(methods, baseline)
    }
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

/// The baseline of integrated gradients as `--baseline` names it.
#[derive(Clone, Debug, PartialEq)]
pub enum BaselineArg {
    /// 0 everywhere (Captum's default).
    Zero,
    /// The normalised image of black pixels: `(0 - mean_c) / std_c` per channel.
    Black,
    /// One value everywhere, in the units of the normalised input.
    Value(f64),
    /// A `.npy` file: float32 or float64, `C x H x W` or `1 x C x H x W`.
    File(PathBuf),
}

impl FromStr for BaselineArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        Ok(match s {
            "zero" => BaselineArg::Zero,
            "black" => BaselineArg::Black,
            _ if s.ends_with(".npy") => BaselineArg::File(PathBuf::from(s)),
            _ => match s.parse::<f64>() {
                Ok(v) if v.is_finite() => BaselineArg::Value(v),
                _ => {
                    return Err(format!(
                        "`{s}`: expected zero, black, a finite number or FILE.npy"
                    ))
                }
            },
        })
    }
}

/// Largest `--baseline FILE.npy` read (1 GiB).
pub const MAX_BASELINE_BYTES: u64 = 1 << 30;

impl BaselineArg {
    /// The baseline: `black` through `preprocess`'s normalisation of a
    /// black pixel, a file read and checked (finite values, 3 or 4
    /// dimensions, C order).
    pub fn resolve(&self, preprocess: &Preprocess) -> Result<IgBaseline, CliError> {
        Ok(match self {
            BaselineArg::Zero => IgBaseline::Scalar(0.0),
            BaselineArg::Value(v) => IgBaseline::Scalar(*v),
            BaselineArg::Black => {
                let black = preprocess.to_tensor(&image::RgbImage::new(1, 1));
                IgBaseline::PerChannel(black.data().iter().map(|&v| f64::from(v)).collect())
            }
            BaselineArg::File(path) => IgBaseline::Tensor(Arc::new(read_npy_f32(path)?)),
        })
    }
}

/// A `.npy` file of float32 or float64 values in C order, as float32
/// (float64 rounded), with its shape; non-finite values are refused.
pub fn read_npy_f32(path: &Path) -> Result<Tensor<f32>, CliError> {
    let err = |m: String| -> CliError { format!("--baseline {}: {m}", path.display()).into() };
    let bytes = read_regular(path, "baseline file", MAX_BASELINE_BYTES)?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| err(format!("not a .npy file: {e}")))?;
    if npy.order() != npyz::Order::C {
        return Err(err("Fortran order; save it in C order".into()));
    }
    let shape: Vec<usize> = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| err("a dimension too large".into()))?;
    let type_str = match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => return Err(err(format!("values of type {other:?}, not float"))),
    };
    let values: Vec<f32> = match type_str.as_str() {
        "<f4" => npy.into_vec::<f32>().map_err(|e| err(e.to_string()))?,
        "<f8" => npy
            .into_vec::<f64>()
            .map_err(|e| err(e.to_string()))?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        other => {
            return Err(err(format!(
                "values of type {other}; float32 (<f4) or float64 (<f8) are read"
            )))
        }
    };
    if values.iter().any(|v| !v.is_finite()) {
        return Err(err("holds NaN or infinite values".into()));
    }
    Tensor::from_vec(shape, values).map_err(|e| err(e.to_string()))
}

/// The parameters of Captum's methods (`integrated_gradients`,
/// `noise_tunnel`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CaptumArgs {
    /// Points on integrated gradients' path [default: Captum's 50].
    #[arg(long, allow_negative_numbers = true)]
    pub ig_steps: Option<usize>,
    /// Integration rule of integrated gradients: gausslegendre,
    /// riemann_trapezoid, riemann_left, riemann_right or riemann_middle
    /// [default: gausslegendre].
    #[arg(long)]
    pub ig_method: Option<Integration>,
    /// Baseline of integrated gradients: zero, black (the normalised image
    /// of black pixels), a number (in normalised input units) or FILE.npy
    /// (float32 or float64, C x H x W or 1 x C x H x W: the model input's
    /// size) [default: zero].
    #[arg(long, allow_hyphen_values = true)]
    pub baseline: Option<BaselineArg>,
    /// How the noise tunnel combines its samples: smoothgrad, smoothgrad_sq
    /// or vargrad [default: smoothgrad].
    #[arg(long)]
    pub nt_type: Option<NoiseKind>,
    /// Noisy samples of the noise tunnel per image [default: Captum's 5].
    #[arg(long, allow_negative_numbers = true)]
    pub nt_samples: Option<usize>,
    /// Standard deviation of the noise tunnel's Gaussian noise, in
    /// normalised input units [default: Captum's 1.0].
    #[arg(long, allow_negative_numbers = true)]
    pub nt_stdev: Option<f64>,
    /// Seed of the noise tunnel's noise (each image's noise is drawn from
    /// it afresh) [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    pub nt_seed: Option<u64>,
    /// The method the noise tunnel wraps: saliency, input_x_gradient or
    /// integrated_gradients [default: saliency].
    #[arg(long)]
    pub nt_method: Option<TunnelledMethod>,
}

impl CaptumArgs {
    /// The flags of integrated gradients that were given.
    fn ig_given(&self) -> Option<&'static str> {
        [
            (self.ig_steps.is_some(), "--ig-steps"),
            (self.ig_method.is_some(), "--ig-method"),
            (self.baseline.is_some(), "--baseline"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }

    /// The flags of the noise tunnel that were given.
    fn nt_given(&self) -> Option<&'static str> {
        [
            (self.nt_type.is_some(), "--nt-type"),
            (self.nt_samples.is_some(), "--nt-samples"),
            (self.nt_stdev.is_some(), "--nt-stdev"),
            (self.nt_seed.is_some(), "--nt-seed"),
            (self.nt_method.is_some(), "--nt-method"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }

    /// Integrated gradients' parameters with these options.
    fn ig(&self, p: IgParams, baseline: &Option<IgBaseline>) -> IgParams {
        IgParams {
            n_steps: self.ig_steps.unwrap_or(p.n_steps),
            integration: self.ig_method.unwrap_or(p.integration),
            baseline: baseline.clone().unwrap_or(p.baseline),
            ..p
        }
    }

    /// `methods` with integrated gradients and the noise tunnel given these
    /// parameters (`baseline` is `--baseline` resolved): an error for a
    /// value they refuse, or for an option that no method asked for takes
    /// (the integrated gradients options are taken by
    /// `integrated_gradients`, and by `noise_tunnel` when it wraps it).
    pub fn apply(
        &self,
        methods: Vec<Method>,
        baseline: Option<IgBaseline>,
    ) -> Result<Vec<Method>, CliError> {
        let (mut ig_taken, mut nt_taken) = (false, false);
        let out = methods
            .into_iter()
            .map(|m| match m {
                Method::IntegratedGradients(p) => {
                    ig_taken = true;
                    let p = self.ig(p, &baseline);
                    p.validate().map_err(|e| {
                        CliError::from(format!("--method integrated_gradients: {e}"))
                    })?;
                    Ok(Method::IntegratedGradients(p))
                }
                Method::NoiseTunnel(p) => {
                    nt_taken = true;
                    let method = match self.nt_method.clone().unwrap_or(p.method) {
                        TunnelledMethod::IntegratedGradients(ig) => {
                            ig_taken = true;
                            TunnelledMethod::IntegratedGradients(self.ig(ig, &baseline))
                        }
                        other => other,
                    };
                    let p = NoiseTunnelParams {
                        kind: self.nt_type.unwrap_or(p.kind),
                        samples: self.nt_samples.unwrap_or(p.samples),
                        stdev: self.nt_stdev.unwrap_or(p.stdev),
                        seed: self.nt_seed.unwrap_or(p.seed),
                        method,
                        ..p
                    };
                    p.validate()
                        .map_err(|e| CliError::from(format!("--method noise_tunnel: {e}")))?;
                    Ok(Method::NoiseTunnel(p))
                }
                other => Ok(other),
            })
            .collect::<Result<Vec<_>, CliError>>()?;
        if let (Some(flag), false) = (self.ig_given(), ig_taken) {
            return Err(format!(
                "{flag}: no method asked for takes it (--method integrated_gradients, or noise_tunnel with --nt-method integrated_gradients)"
            )
            .into());
        }
        if let (Some(flag), false) = (self.nt_given(), nt_taken) {
            return Err(
                format!("{flag}: no method asked for takes it (--method noise_tunnel)").into(),
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

    fn names(s: &str) -> Vec<String> {
        s.split(',').map(str::to_string).collect()
    }

    #[test]
    fn captum_options_set_the_parameters_and_refuse_what_nothing_takes() {
        let opts = MethodArgs {
            captum: CaptumArgs {
                ig_steps: Some(8),
                ig_method: Some(Integration::RiemannMiddle),
                baseline: Some(BaselineArg::Black),
                nt_type: Some(NoiseKind::VarGrad),
                nt_samples: Some(3),
                nt_stdev: Some(0.25),
                nt_seed: Some(9),
                nt_method: Some(TunnelledMethod::IntegratedGradients(IgParams::default())),
            },
            ..MethodArgs::default()
        };
        let pre = Preprocess::default();
        let got = opts
            .methods(&names("gradient,integrated_gradients,noise_tunnel"), &pre)
            .unwrap();
        // Black: (0 - mean) / std of ImageNet's normalisation, in float32.
        let black: Vec<f64> = (0..3)
            .map(|c| f64::from((0.0f32 - pre.mean[c]) / pre.std[c]))
            .collect();
        let ig = IgParams {
            n_steps: 8,
            integration: Integration::RiemannMiddle,
            baseline: IgBaseline::PerChannel(black),
            ..IgParams::default()
        };
        assert_eq!(got[0], Method::Gradient);
        assert_eq!(got[1], Method::IntegratedGradients(ig.clone()));
        let Method::NoiseTunnel(nt) = &got[2] else {
            panic!("{got:?}")
        };
        assert_eq!(
            (nt.kind, nt.samples, nt.stdev, nt.seed, &nt.method),
            (
                NoiseKind::VarGrad,
                3,
                0.25,
                9,
                &TunnelledMethod::IntegratedGradients(ig)
            )
        );
        // The IG options are taken by the noise tunnel wrapping IG alone.
        let tunnel_ig = MethodArgs {
            captum: CaptumArgs {
                ig_steps: Some(4),
                nt_method: Some(TunnelledMethod::IntegratedGradients(IgParams::default())),
                ..CaptumArgs::default()
            },
            ..MethodArgs::default()
        };
        assert!(tunnel_ig.methods(&names("noise_tunnel"), &pre).is_ok());
        let refused = [
            (
                CaptumArgs {
                    ig_steps: Some(4),
                    ..CaptumArgs::default()
                },
                "noise_tunnel",
                "--ig-steps",
            ),
            (
                CaptumArgs {
                    baseline: Some(BaselineArg::Value(0.5)),
                    ..CaptumArgs::default()
                },
                "gradient",
                "--baseline",
            ),
            (
                CaptumArgs {
                    nt_seed: Some(1),
                    ..CaptumArgs::default()
                },
                "integrated_gradients",
                "--nt-seed",
            ),
            (
                CaptumArgs {
                    ig_steps: Some(0),
                    ..CaptumArgs::default()
                },
                "integrated_gradients",
                "at least 1 steps",
            ),
            (
                CaptumArgs {
                    nt_samples: Some(0),
                    ..CaptumArgs::default()
                },
                "noise_tunnel",
                "1 to 100000 samples",
            ),
            (
                CaptumArgs {
                    nt_stdev: Some(f64::INFINITY),
                    ..CaptumArgs::default()
                },
                "noise_tunnel",
                "standard deviation",
            ),
        ];
        for (captum, method, says) in refused {
            let o = MethodArgs {
                captum,
                ..MethodArgs::default()
            };
            let e = o.methods(&names(method), &pre).unwrap_err().to_string();
            assert!(e.contains(says), "{method}: {e}");
        }
        // The evaluate path: Captum's methods with Captum's defaults.
        let got = method_list(
            &names("saliency,integrated_gradients"),
            &LrpOptions::default(),
            &RiseArgs::default(),
            &ExtremalArgs::default(),
        )
        .unwrap();
        assert_eq!(
            got,
            [
                Method::Saliency,
                Method::IntegratedGradients(IgParams::default())
            ]
        );
    }

    #[test]
    fn baselines_parse_and_files_are_read() {
        assert_eq!("zero".parse::<BaselineArg>(), Ok(BaselineArg::Zero));
        assert_eq!("black".parse::<BaselineArg>(), Ok(BaselineArg::Black));
        assert_eq!("-0.5".parse::<BaselineArg>(), Ok(BaselineArg::Value(-0.5)));
        assert_eq!(
            "b.npy".parse::<BaselineArg>(),
            Ok(BaselineArg::File("b.npy".into()))
        );
        for bad in ["nan", "inf", "white", ""] {
            assert!(bad.parse::<BaselineArg>().is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, shape: &[u64], values: &[f64]| {
            use npyz::WriterBuilder;
            let path = dir.path().join(name);
            let mut bytes = Vec::new();
            let mut w = npyz::WriteOptions::new()
                .default_dtype()
                .shape(shape)
                .writer(&mut bytes)
                .begin_nd()
                .unwrap();
            w.extend(values.iter().copied()).unwrap();
            w.finish().unwrap();
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let f64_file = write("b.npy", &[1, 2, 1, 1], &[0.5, -2.0]);
        let t = read_npy_f32(&f64_file).unwrap();
        assert_eq!(
            (t.shape(), t.data()),
            (&[1usize, 2, 1, 1][..], &[0.5f32, -2.0][..])
        );
        let nan = write("nan.npy", &[1, 1, 1], &[f64::NAN]);
        let e = read_npy_f32(&nan).unwrap_err().to_string();
        assert!(e.contains("nan.npy") && e.contains("NaN"), "{e}");
        let text = dir.path().join("text.npy");
        std::fs::write(&text, b"not numpy").unwrap();
        let e = read_npy_f32(&text).unwrap_err().to_string();
        assert!(e.contains("not a .npy file"), "{e}");
        let pre = Preprocess::default();
        let b = BaselineArg::File(f64_file).resolve(&pre).unwrap();
        assert_eq!(b.item_shape(), Some(vec![2, 1, 1]));
        assert!(BaselineArg::File(dir.path().join("missing.npy"))
            .resolve(&pre)
            .is_err());
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
