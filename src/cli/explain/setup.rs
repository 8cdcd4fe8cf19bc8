//! Everything `explain` checks before the first image: options, model,
//! methods, layers, target, inputs and their output file stems.

use super::model::{load_model, method_layers, model_forms};
use super::Args;
use crate::cli::options::method_list;
use crate::cli::CliError;
use sightline::budget::{model_pass_bytes, MemoryBudget};
use sightline::imageio::{expand_inputs, Preprocess};
use sightline::labels::Labels;
use sightline::render::check_alpha;
use sightline_attribution::{Method, Target};
use sightline_layers::Model;
use std::collections::HashSet;
use std::path::PathBuf;

/// What to explain for each image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetSpec {
    /// One class for every image.
    Class(usize),
    /// The N best-scoring classes of each image.
    Top(usize),
}

impl TargetSpec {
    /// Parses `K` or `topN` and checks it against the model's class count.
    pub fn parse(s: &str, num_classes: usize) -> Result<Self, String> {
        let spec = if let Some(n) = s.strip_prefix("top") {
            let n: usize = n
                .parse()
                .map_err(|_| format!("target `{s}`: expected a class number K or topN"))?;
            if n == 0 || n > num_classes {
                return Err(format!(
                    "target `{s}`: N must lie in 1..={num_classes} (the model's classes)"
                ));
            }
            TargetSpec::Top(n)
        } else {
            let k: usize = s
                .parse()
                .map_err(|_| format!("target `{s}`: expected a class number K or topN"))?;
            if k >= num_classes {
                return Err(format!(
                    "target class {k} out of range: the model has {num_classes} classes"
                ));
            }
            TargetSpec::Class(k)
        };
        Ok(spec)
    }

    /// The classes to explain given one image's logits (1 x K), best first for `topN`.
    pub(crate) fn classes(
        self,
        logits: &sightline_tensor::Tensor<f32>,
    ) -> Result<Vec<usize>, CliError> {
        Ok(match self {
            TargetSpec::Class(k) => vec![k],
            TargetSpec::Top(n) => Target::top_k(logits, n)?
                .into_iter()
                .next()
                .unwrap_or_default(),
        })
    }
}

/// Everything checked before the first image.
pub(super) struct Setup {
    pub(super) model: Model<f32>,
    /// The model in each form the methods run on, with their indices (one
    /// forward pass each; made once, before the first image).
    pub(super) forms: Vec<(Model<f32>, Vec<usize>)>,
    pub(super) methods: Vec<Method>,
    pub(super) layers: Vec<String>,
    pub(super) target: TargetSpec,
    pub(super) preprocess: Preprocess,
    pub(super) labels: Labels,
    pub(super) inputs: Vec<PathBuf>,
    pub(super) stems: Vec<String>,
    pub(super) budget: MemoryBudget,
    /// Whether a method recomputes the layers with transformed weights (a
    /// second copy of them in memory).
    pub(super) transformed_weights: bool,
}

/// Whether a method's rules recompute the layers with transformed weights.
pub(crate) fn transforms_weights(methods: &[Method]) -> bool {
    methods.iter().any(|m| {
        matches!(
            m,
            Method::ExcitationBackprop | Method::ContrastiveExcitationBackprop { .. }
        )
    })
}

/// Checks the options whose memory does not depend on the image: the
/// resize of an image (at least `--resize` squared) and, with a crop, one
/// pass of the model on `--size` x `--size`.
fn check_sizes(
    args: &Args,
    preprocess: &Preprocess,
    model: &Model<f32>,
    budget: &MemoryBudget,
    transformed_weights: bool,
) -> Result<(), CliError> {
    let resize = args.resize;
    let no_crop = Preprocess {
        crop: None,
        ..preprocess.clone()
    };
    budget.check(
        format!("--resize {resize} (an image resized to at least {resize} x {resize})"),
        no_crop.memory_bytes(resize, resize),
    )?;
    if let Some(size) = preprocess.crop {
        let shape = [1, model.channels(), size as usize, size as usize];
        let side = u64::from(size);
        // The padded canvas, the crop and the input tensor, then the pass.
        let crop_bytes = sightline::budget::product(18, &[side, side]);
        budget.check(
            format!(
                "--size {size} (one pass of {} on 1 x {} x {size} x {size})",
                model.describe(),
                model.channels()
            ),
            model_pass_bytes(model, &shape, transformed_weights).saturating_add(crop_bytes),
        )?;
    }
    Ok(())
}

pub(super) fn setup(args: &Args) -> Result<Setup, CliError> {
    check_alpha(args.alpha)?;
    if !args.smooth.is_finite() || args.smooth < 0.0 {
        return Err(format!("--smooth must be finite and >= 0, got {}", args.smooth).into());
    }
    let preprocess = Preprocess {
        resize: Some(args.resize),
        crop: (!args.no_crop).then_some(args.size),
        mean: args.mean,
        std: args.std,
    };
    preprocess.validate()?;
    let methods = method_list(&args.method, &args.lrp, &args.rise, &args.extremal)?;
    let budget = MemoryBudget::from_option(args.max_memory);
    let model = load_model(
        args.model.as_deref(),
        args.arch.as_deref(),
        args.weights.as_deref(),
        args.seed,
        &budget,
    )?;
    let transformed_weights = transforms_weights(&methods);
    check_sizes(args, &preprocess, &model, &budget, transformed_weights)?;
    let layers = method_layers(&model, &methods, args.layer.as_deref())?;
    let target = TargetSpec::parse(args.target.trim(), model.num_classes())?;
    let inputs = expand_inputs(&args.inputs)?;
    let stems = unique_stems(&inputs);
    if args.out.exists() && !args.out.is_dir() {
        return Err(format!("--out {}: exists and is not a folder", args.out.display()).into());
    }
    let labels = Labels::for_classes(model.num_classes());
    let forms = model_forms(&model, &methods, &layers)?;
    Ok(Setup {
        model,
        forms,
        methods,
        layers,
        target,
        preprocess,
        labels,
        inputs,
        stems,
        budget,
        transformed_weights,
    })
}

/// File stems of the outputs, made unique (`cat`, `cat-2`, ...).
pub(crate) fn unique_stems(inputs: &[PathBuf]) -> Vec<String> {
    let mut used: HashSet<String> = HashSet::new();
    inputs
        .iter()
        .map(|p| {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into());
            let mut name = stem.clone();
            let mut n = 1;
            while !used.insert(name.clone()) {
                n += 1;
                name = format!("{stem}-{n}");
            }
            name
        })
        .collect()
}
