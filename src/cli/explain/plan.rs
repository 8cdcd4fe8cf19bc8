//! The plan of an `explain` run: its arguments turned into one validated
//! value before anything runs. Every check that does not need an image is
//! made here (options, model, methods and their parameters, layers and
//! their shapes, target, memory, inputs, the output folder), so that a bad
//! argument is refused before the first file is written; nothing after
//! the plan reads the arguments.

use super::model::{load_model, method_layers, model_forms, ModelFormGroup};
use super::Args;
use crate::cli::CliError;
use sightline::budget::{model_pass_bytes, product, MemoryBudget};
use sightline::imageio::{expand_inputs, Preprocess};
use sightline::labels::Labels;
use sightline::render::{check_alpha, Colormap, Normalize};
use sightline_attribution::captum::{IgParams, TunnelledMethod};
use sightline_attribution::{Method, Target};
use sightline_layers::Model;
use std::collections::HashSet;
use std::path::PathBuf;

/// Most images per forward pass (`--batch`).
pub const MAX_BATCH: usize = 1024;

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
        Ok(self
            .classes_per_item(logits)?
            .into_iter()
            .next()
            .unwrap_or_default())
    }

    /// The classes to explain of each row of `N x K` logits, best first
    /// for `topN`.
    pub(crate) fn classes_per_item(
        self,
        logits: &sightline_tensor::Tensor<f32>,
    ) -> Result<Vec<Vec<usize>>, CliError> {
        let [n, _] = logits.dims2("target")?;
        Ok(match self {
            TargetSpec::Class(k) => vec![vec![k]; n],
            TargetSpec::Top(top) => Target::top_k(logits, top)?,
        })
    }

    /// The number of classes explained per image.
    pub(crate) fn per_image(self) -> usize {
        match self {
            TargetSpec::Class(_) => 1,
            TargetSpec::Top(n) => n,
        }
    }
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

/// Whether a method's rules recompute the layers with transformed weights.
pub(crate) fn transforms_weights(methods: &[Method]) -> bool {
    methods.iter().any(|m| {
        matches!(
            m,
            Method::ExcitationBackprop | Method::ContrastiveExcitationBackprop { .. }
        )
    })
}

/// The model and the forms of it the methods run on.
pub(super) struct ModelPlan {
    /// The model as loaded.
    pub(super) model: Model<f32>,
    /// The model in each form the methods run on, with the indices of
    /// their methods (one forward pass each; made once).
    pub(super) forms: Vec<ModelFormGroup>,
    /// Whether a method recomputes the layers with transformed weights (a
    /// second copy of them in memory).
    pub(super) transformed_weights: bool,
    /// `--arch` as given.
    pub(super) arch: Option<String>,
    /// `--model` as given.
    pub(super) onnx: Option<PathBuf>,
    /// `--weights` as given.
    pub(super) weights: Option<PathBuf>,
    /// The seed of the random weights, when there are no weights.
    pub(super) random_seed: Option<u64>,
}

/// One method of the run: its parameters (in the value), the layer it
/// probes, how its maps are post-processed and drawn.
pub(super) struct MethodPlan {
    /// The method with its parameters.
    pub(super) method: Method,
    /// The layer it probes (`""`: the input).
    pub(super) layer: String,
    /// TorchRay's smoothing of its maps (0 for Captum's methods).
    pub(super) smooth: f64,
    /// The colormap of its heatmaps.
    pub(super) colormap: Colormap,
}

/// One input of the run.
pub(super) struct InputItem {
    /// The file.
    pub(super) path: PathBuf,
    /// The stem of its output files (unique in the run).
    pub(super) stem: String,
}

/// Where the images come from and how they become model inputs. (A new
/// kind of input, such as a `.npy` tensor, is read in `inputs.rs`.)
pub(super) struct InputsPlan {
    /// The images, folders expanded, in order.
    pub(super) items: Vec<InputItem>,
    /// Resize, crop and normalisation.
    pub(super) preprocess: Preprocess,
}

/// What is written and how it looks.
pub(super) struct OutputsPlan {
    /// The output folder (created with the first file).
    pub(super) folder: PathBuf,
    /// `--colormap` as given (`None`: each method's own).
    pub(super) colormap: Option<Colormap>,
    /// How maps are stretched to the colormap.
    pub(super) normalize: Normalize,
    /// Opacity of the heatmap in the overlays.
    pub(super) alpha: f32,
    /// Most rows of `grid.png`.
    pub(super) grid_rows: usize,
    /// Whether each preprocessed input is written as `NAME.input.npy`.
    pub(super) save_input: bool,
}

/// An `explain` run, validated.
pub(super) struct Plan {
    /// The model.
    pub(super) model: ModelPlan,
    /// The methods, in the order asked.
    pub(super) methods: Vec<MethodPlan>,
    /// What each image is explained for.
    pub(super) target: TargetSpec,
    /// `--target` as given.
    pub(super) target_text: String,
    /// The inputs and their preprocessing.
    pub(super) inputs: InputsPlan,
    /// The outputs.
    pub(super) outputs: OutputsPlan,
    /// Images per forward pass.
    pub(super) batch: usize,
    /// The memory the run may plan to use.
    pub(super) budget: MemoryBudget,
    /// The class names.
    pub(super) labels: Labels,
}

impl Plan {
    /// Checks every argument and builds the plan; an error here is exit
    /// code 2, with nothing written.
    pub(super) fn new(args: Args) -> Result<Plan, CliError> {
        check_alpha(args.alpha)?;
        if !args.smooth.is_finite() || args.smooth < 0.0 {
            return Err(format!("--smooth must be finite and >= 0, got {}", args.smooth).into());
        }
        if args.batch == 0 || args.batch > MAX_BATCH {
            return Err(format!("--batch must lie in 1..={MAX_BATCH}, got {}", args.batch).into());
        }
        let preprocess = Preprocess {
            resize: Some(args.resize),
            crop: (!args.no_crop).then_some(args.size),
            mean: args.mean,
            std: args.std,
        };
        preprocess.validate()?;
        let methods = args.params.methods(&args.method, &preprocess)?;
        let takes_smooth = |m: &Method| !m.is_captum();
        if args.smooth > 0.0 && !methods.iter().any(takes_smooth) {
            return Err(format!(
                "--smooth {}: no method asked for takes it (Captum's methods write their raw attribution)",
                args.smooth
            )
            .into());
        }
        let budget = MemoryBudget::from_option(args.max_memory);
        let model = load_model(
            args.model.as_deref(),
            args.arch.as_deref(),
            args.weights.as_deref(),
            args.seed,
            &budget,
        )?;
        let transformed_weights = transforms_weights(&methods);
        check_sizes(
            &args,
            &preprocess,
            &model,
            &budget,
            transformed_weights,
            &methods,
        )?;
        let layers = method_layers(&model, &methods, args.layer.as_deref())?;
        check_shapes(&model, &methods, &layers, preprocess.crop)?;
        check_baselines(&methods, model.channels(), preprocess.crop)?;
        let target = TargetSpec::parse(args.target.trim(), model.num_classes())?;
        let paths = expand_inputs(&args.inputs)?;
        let stems = unique_stems(&paths);
        if args.out.exists() && !args.out.is_dir() {
            return Err(format!("--out {}: exists and is not a folder", args.out.display()).into());
        }
        let labels = Labels::for_classes(model.num_classes());
        let forms = model_forms(&model, &methods, &layers)?;
        let methods = methods
            .into_iter()
            .zip(layers)
            .map(|(method, layer)| MethodPlan {
                smooth: if takes_smooth(&method) {
                    args.smooth
                } else {
                    0.0
                },
                colormap: args.colormap.unwrap_or(if method.is_signed() {
                    Colormap::Coolwarm
                } else {
                    Colormap::Jet
                }),
                method,
                layer,
            })
            .collect();
        let random_seed = (args.weights.is_none() && args.model.is_none()).then_some(args.seed);
        Ok(Plan {
            model: ModelPlan {
                model,
                forms,
                transformed_weights,
                arch: args.arch,
                onnx: args.model,
                weights: args.weights,
                random_seed,
            },
            methods,
            target,
            target_text: args.target,
            inputs: InputsPlan {
                items: paths
                    .into_iter()
                    .zip(stems)
                    .map(|(path, stem)| InputItem { path, stem })
                    .collect(),
                preprocess,
            },
            outputs: OutputsPlan {
                folder: args.out,
                colormap: args.colormap,
                normalize: args.normalize,
                alpha: args.alpha,
                grid_rows: args.grid_rows,
                save_input: args.save_input,
            },
            batch: args.batch,
            budget,
            labels,
        })
    }

    /// The most images any method puts through the model at once for one
    /// image (RISE's masked copies, integrated gradients' path points, ...).
    pub(super) fn images_per_pass(&self) -> usize {
        self.methods
            .iter()
            .map(|m| m.method.images_per_pass())
            .fold(1, usize::max)
    }

    /// Bytes of a forward pass of `n` inputs of `width x height` with what
    /// the methods keep, plus (when a method runs passes of its own) its
    /// largest pass of one image.
    pub(super) fn pass_bytes(&self, n: usize, width: u32, height: u32) -> u64 {
        let m = &self.model;
        let shape = |n: usize| [n, m.model.channels(), height as usize, width as usize];
        let per_pass = self.images_per_pass();
        model_pass_bytes(&m.model, &shape(n), m.transformed_weights).saturating_add(
            if per_pass > 1 {
                model_pass_bytes(&m.model, &shape(per_pass), m.transformed_weights)
            } else {
                0
            },
        )
    }
}

/// The integrated gradients parameters of a method (its own, or those of
/// the integrated gradients a noise tunnel wraps).
fn ig_params(m: &Method) -> Option<&IgParams> {
    match m {
        Method::IntegratedGradients(p) => Some(p),
        Method::NoiseTunnel(p) => match &p.method {
            TunnelledMethod::IntegratedGradients(ig) => Some(ig),
            _ => None,
        },
        _ => None,
    }
}

/// A baseline read from a file must have the model's channels and, with a
/// crop, the model input's size.
fn check_baselines(methods: &[Method], channels: usize, crop: Option<u32>) -> Result<(), CliError> {
    for p in methods.iter().filter_map(ig_params) {
        let Some(shape) = p.baseline.item_shape() else {
            continue;
        };
        let fits = match (shape.as_slice(), crop) {
            ([c, h, w], Some(s)) => *c == channels && *h == s as usize && *w == s as usize,
            ([c, _, _], None) => *c == channels,
            _ => false,
        };
        if !fits {
            let want = crop.map_or(format!("{channels} x H x W"), |s| {
                format!("{channels} x {s} x {s}")
            });
            return Err(format!(
                "--baseline: a tensor of shape {shape:?} does not fit the model input ({want}, or 1 x {want})"
            )
            .into());
        }
    }
    Ok(())
}

/// Checks the options whose memory does not depend on the image: the
/// resize of an image (at least `--resize` squared) and, with a crop, one
/// pass of the model on `--batch` images of `--size` x `--size`.
fn check_sizes(
    args: &Args,
    preprocess: &Preprocess,
    model: &Model<f32>,
    budget: &MemoryBudget,
    transformed_weights: bool,
    methods: &[Method],
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
        let batch = args.batch;
        let shape = [batch, model.channels(), size as usize, size as usize];
        let side = u64::from(size);
        // Per image: the padded canvas, the crop and the input tensor
        // (kept until the batch is written), then the pass.
        let crop_bytes = product(18, &[side, side, batch as u64]);
        let per_pass = methods
            .iter()
            .map(Method::images_per_pass)
            .fold(1, usize::max);
        let own = if per_pass > 1 {
            let own_shape = [per_pass, shape[1], shape[2], shape[3]];
            model_pass_bytes(model, &own_shape, transformed_weights)
        } else {
            0
        };
        let what = if batch == 1 {
            format!(
                "--size {size} (one pass of {} on 1 x {} x {size} x {size})",
                model.describe(),
                model.channels()
            )
        } else {
            format!(
                "--batch {batch} --size {size} (one pass of {} on {batch} x {} x {size} x {size})",
                model.describe(),
                model.channels()
            )
        };
        budget.check(
            what,
            model_pass_bytes(model, &shape, transformed_weights)
                .saturating_add(crop_bytes)
                .saturating_add(own),
        )?;
    }
    Ok(())
}

/// With a crop every image reaches the model at one size: the model must
/// take it (an input too small for its pools is refused), and every layer
/// a method probes must have a spatial (N x C x H x W) output there.
fn check_shapes(
    model: &Model<f32>,
    methods: &[Method],
    layers: &[String],
    crop: Option<u32>,
) -> Result<(), CliError> {
    let Some(size) = crop else {
        return Ok(());
    };
    let shapes = model
        .layer_shapes(&[1, model.channels(), size as usize, size as usize])
        .map_err(|e| format!("--size {size}: {e}"))?;
    for (m, layer) in methods.iter().zip(layers) {
        if layer.is_empty() {
            continue;
        }
        let shape = shapes.iter().find(|(p, _)| p == layer).map(|(_, s)| s);
        match shape {
            Some(s) if s.len() == 4 => {}
            Some(s) => {
                return Err(format!(
                    "{m} needs a 4-d (N x C x H x W) layer output, but `{layer}` has shape {s:?} on {size} x {size} inputs"
                )
                .into())
            }
            None => {
                return Err(format!(
                    "{m}: layer `{layer}` has no output on {size} x {size} inputs"
                )
                .into())
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    const TINY_VGG: &str =
        r#"{"kind":"vgg","cfg":[4,"M",8,"M"],"avgpool":[2,2],"hidden":16,"num_classes":10}"#;

    /// The arguments `extra` with the tiny model, 32 x 32 inputs and an
    /// output folder inside `dir` (the image need not exist: folders are
    /// expanded, files are read later).
    fn args(dir: &std::path::Path, extra: &[&str]) -> Args {
        let arch = dir.join("tiny.json");
        std::fs::write(&arch, TINY_VGG).unwrap();
        let image = dir.join("a.png");
        image::RgbImage::new(8, 8).save(&image).unwrap();
        let mut argv = vec!["explain".to_string(), "--arch".into()];
        argv.push(arch.display().to_string());
        for flag in ["--resize", "--size"] {
            if !extra.contains(&flag) {
                argv.extend([flag.to_string(), "32".into()]);
            }
        }
        argv.push("--out".into());
        argv.push(dir.join("out").display().to_string());
        argv.extend(extra.iter().map(|s| s.to_string()));
        argv.push(image.display().to_string());
        Cli::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn the_plan_holds_methods_layers_colormaps_and_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let plan = Plan::new(args(
            dir.path(),
            &[
                "--method",
                "gradient,grad_cam,integrated_gradients,layer_grad_cam",
                "--layer",
                "grad_cam=features.1",
                "--ig-steps",
                "6",
                "--smooth",
                "0.1",
                "--target",
                "top2",
                "--batch",
                "3",
                "--save-input",
            ],
        ))
        .unwrap();
        let names: Vec<&str> = plan.methods.iter().map(|m| m.method.name()).collect();
        assert_eq!(
            names,
            [
                "gradient",
                "grad_cam",
                "integrated_gradients",
                "layer_grad_cam"
            ]
        );
        let layers: Vec<&str> = plan.methods.iter().map(|m| m.layer.as_str()).collect();
        assert_eq!(layers, ["", "features.1", "", "features.4"]);
        let smooth: Vec<f64> = plan.methods.iter().map(|m| m.smooth).collect();
        assert_eq!(smooth, [0.1, 0.1, 0.0, 0.0]);
        let cmaps: Vec<Colormap> = plan.methods.iter().map(|m| m.colormap).collect();
        assert_eq!(
            cmaps,
            [
                Colormap::Jet,
                Colormap::Jet,
                Colormap::Coolwarm,
                Colormap::Coolwarm
            ]
        );
        let Method::IntegratedGradients(p) = &plan.methods[2].method else {
            panic!("integrated gradients")
        };
        assert_eq!(p.n_steps, 6);
        assert_eq!(plan.target, TargetSpec::Top(2));
        assert_eq!((plan.batch, plan.outputs.save_input), (3, true));
        assert_eq!(plan.inputs.items.len(), 1);
        assert_eq!(plan.inputs.items[0].stem, "a");
        assert_eq!(plan.inputs.preprocess.crop, Some(32));
        assert_eq!(plan.model.random_seed, Some(0));
        // The gradient-style methods share one form of the model.
        assert_eq!(plan.model.forms.len(), 1);
        // One colormap for all when given.
        let plan = Plan::new(args(
            dir.path(),
            &[
                "--method",
                "gradient,lrp.epsilon_plus",
                "--colormap",
                "gray",
            ],
        ))
        .unwrap();
        assert!(plan.methods.iter().all(|m| m.colormap == Colormap::Gray));
        assert!(!dir.path().join("out").exists(), "planning writes nothing");
    }

    #[test]
    fn the_plan_refuses_what_it_can_check_without_an_image() {
        let dir = tempfile::tempdir().unwrap();
        let baseline = dir.path().join("b.npy");
        {
            use npyz::WriterBuilder;
            let mut bytes = Vec::new();
            let mut w = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&[3, 16, 16])
                .writer(&mut bytes)
                .begin_nd()
                .unwrap();
            w.extend(std::iter::repeat_n(0.0f32, 3 * 16 * 16)).unwrap();
            w.finish().unwrap();
            std::fs::write(&baseline, bytes).unwrap();
        }
        let baseline_arg = baseline.display().to_string();
        for (extra, says) in [
            (
                vec!["--method", "grad_cam", "--layer", "classifier.0"],
                "classifier.0",
            ),
            (
                vec!["--method", "gradient", "--size", "3"],
                "input too small",
            ),
            (
                vec!["--method", "saliency", "--smooth", "0.1"],
                "--smooth 0.1",
            ),
            (vec!["--method", "gradient", "--batch", "0"], "--batch"),
            (
                vec![
                    "--method",
                    "integrated_gradients",
                    "--baseline",
                    &baseline_arg,
                ],
                "does not fit the model input (3 x 32 x 32",
            ),
            (
                vec!["--method", "gradient", "--nt-samples", "3"],
                "--nt-samples",
            ),
            (
                vec![
                    "--method",
                    "gradient,grad_cam",
                    "--layer",
                    "gradient=features.1",
                ],
                "gradient probes no layer",
            ),
            // 2 MiB over the fixed 64: one image fits, a thousand do not.
            (
                vec![
                    "--method",
                    "gradient",
                    "--batch",
                    "1000",
                    "--max-memory",
                    "66M",
                ],
                "--batch 1000 --size 32",
            ),
        ] {
            let e = match Plan::new(args(dir.path(), &extra)) {
                Ok(_) => panic!("{extra:?} was accepted"),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(says), "{extra:?}: {e}");
        }
        assert!(!dir.path().join("out").exists(), "planning writes nothing");
        let one = args(dir.path(), &["--method", "gradient", "--max-memory", "66M"]);
        assert!(Plan::new(one).is_ok());
    }

    #[test]
    fn targets_give_classes_per_item() {
        let logits =
            sightline_tensor::Tensor::from_vec([2, 3], vec![0.1f32, 0.5, 0.2, 3.0, 1.0, 2.0])
                .unwrap();
        assert_eq!(
            TargetSpec::Top(2).classes_per_item(&logits).unwrap(),
            vec![vec![1, 2], vec![0, 2]]
        );
        assert_eq!(
            TargetSpec::Class(1).classes_per_item(&logits).unwrap(),
            vec![vec![1], vec![1]]
        );
        assert_eq!(TargetSpec::Top(2).per_image(), 2);
        assert!(TargetSpec::parse("top11", 10).is_err());
        assert_eq!(TargetSpec::parse("9", 10), Ok(TargetSpec::Class(9)));
    }
}
