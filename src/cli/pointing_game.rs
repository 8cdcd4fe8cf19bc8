//! `sightline pointing-game`: TorchRay's pointing game, on generated images
//! with the demo model (or another 6-class model), or on a Pascal VOC-style
//! folder with any model.

use sightline::budget::{model_pass_bytes, parse_size, product, MemoryBudget};
use sightline::demo::dataset::{self, CLASSES, IMAGE_SIZE};
use sightline::demo::embedded::{self, Card};
use sightline::demo::pointing::{
    play_generated, scaled_tolerance, PointingGame, TORCHRAY_TOLERANCE,
};
use sightline::demo::voc::{play_folder_within, Subset, VOC_CLASSES};
use sightline::files::{check_regular, read_regular_text, MAX_JSON_BYTES};
use sightline::imageio::{parse_triple, Preprocess};
use sightline_attribution::Method;
use sightline_layers::{Architecture, Model};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `pointing-game`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Methods, comma-separated (default: all): gradient, deconvnet,
    /// guided_backprop, grad_cam, linear_approx, excitation_backprop,
    /// contrastive_excitation_backprop.
    #[arg(long, value_delimiter = ',')]
    methods: Vec<String>,
    /// Tolerance in pixels [default: 15 px scaled from 224 px to --size for
    /// generated images, TorchRay's 15 px for --voc].
    #[arg(long, allow_negative_numbers = true)]
    tolerance: Option<f64>,
    /// Number of generated images.
    #[arg(long, default_value_t = 200, allow_negative_numbers = true)]
    count: usize,
    /// Seed of the generated images (the demo model trained on seed 1).
    #[arg(long, default_value_t = dataset::TEST_SEED)]
    seed: u64,
    /// Side of the generated images, in pixels.
    #[arg(long, default_value_t = IMAGE_SIZE, allow_negative_numbers = true)]
    size: usize,
    /// Images per forward pass (generated images).
    #[arg(long, default_value_t = 50, allow_negative_numbers = true)]
    batch: usize,
    /// A Pascal VOC-style folder (`Annotations/*.xml` and `JPEGImages/`, or
    /// XML files beside their images) instead of generated images.
    #[arg(long)]
    voc: Option<PathBuf>,
    /// With --voc: only the classes that have a `difficult` box in an image.
    #[arg(long)]
    difficult: bool,
    /// With --voc: resize every image to this square size before the model
    /// (maps are resized back to the annotation's size); default: as is.
    #[arg(long, allow_negative_numbers = true)]
    input_size: Option<usize>,
    /// A model exported to ONNX, in place of `--arch` and `--weights`.
    #[arg(long, conflicts_with_all = ["arch", "weights"])]
    model: Option<PathBuf>,
    /// Architecture: a preset, an architecture JSON file, or a model card
    /// JSON like assets/demo_model.json [default: the built-in demo model].
    #[arg(long, requires = "weights")]
    arch: Option<String>,
    /// Weights of --arch (safetensors with torchvision names).
    #[arg(long, requires = "arch")]
    weights: Option<PathBuf>,
    /// Class names in logit order, comma-separated [default: the model
    /// card's, or the 20 VOC classes for a 20-class model].
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// Channel means of the normalisation (r,g,b) [default: the model card's, else ImageNet's].
    #[arg(long, value_parser = parse_triple, allow_hyphen_values = true)]
    mean: Option<[f32; 3]>,
    /// Channel standard deviations (r,g,b) [default: the model card's, else ImageNet's].
    #[arg(long, value_parser = parse_triple, allow_hyphen_values = true)]
    std: Option<[f32; 3]>,
    /// Memory the game may plan to use (`4G`, `512M`, bytes) [default: 3/4
    /// of the machine's available memory].
    #[arg(long, value_parser = parse_size)]
    max_memory: Option<u64>,
}

/// Plays the game and prints the table.
pub fn run(args: Args) -> Result<ExitCode, super::CliError> {
    let methods = if args.methods.is_empty() {
        Method::all()
    } else {
        args.methods
            .iter()
            .map(|m| m.trim().parse::<Method>())
            .collect::<Result<Vec<_>, _>>()?
    };
    if let Some(t) = args.tolerance {
        if !(t.is_finite() && t > 0.0) {
            return Err(format!("--tolerance must be a positive number of pixels, got {t}").into());
        }
    }
    Preprocess {
        resize: None,
        crop: None,
        mean: args.mean.unwrap_or(sightline::imageio::IMAGENET_MEAN),
        std: args.std.unwrap_or(sightline::imageio::IMAGENET_STD),
    }
    .validate()?;
    let budget = MemoryBudget::from_option(args.max_memory);
    let (model, card) = match (&args.model, &args.arch, &args.weights) {
        (Some(onnx), _, _) => (
            Model::from_onnx(onnx).map_err(|e| format!("model {}: {e}", onnx.display()))?,
            None,
        ),
        (None, Some(spec), Some(weights)) => load(spec, weights, &budget)?,
        _ => {
            let (m, c) = embedded::model()?;
            (m, Some(c))
        }
    };
    let classes: Vec<String> = if !args.classes.is_empty() {
        args.classes.iter().map(|c| c.trim().to_string()).collect()
    } else if let Some(c) = &card {
        c.classes.clone()
    } else if model.num_classes() == VOC_CLASSES.len() {
        VOC_CLASSES.iter().map(|c| c.to_string()).collect()
    } else {
        CLASSES.iter().map(|c| c.to_string()).collect()
    };
    if classes.len() != model.num_classes() {
        return Err(format!(
            "{} class names for a model with {} classes (give --classes)",
            classes.len(),
            model.num_classes()
        )
        .into());
    }

    let game = match &args.voc {
        Some(dir) => {
            let tolerance = args.tolerance.unwrap_or(TORCHRAY_TOLERANCE);
            let (mean, std) = match &card {
                Some(c) => (args.mean.unwrap_or(c.mean), args.std.unwrap_or(c.std)),
                None => (
                    args.mean.unwrap_or(sightline::imageio::IMAGENET_MEAN),
                    args.std.unwrap_or(sightline::imageio::IMAGENET_STD),
                ),
            };
            if args.input_size == Some(0) {
                return Err("--input-size must be positive".into());
            }
            let subset = if args.difficult {
                Subset::Difficult
            } else {
                Subset::All
            };
            let mut game = PointingGame::new(&methods, classes.len(), tolerance);
            let stats = play_folder_within(
                &mut game,
                &model,
                dir,
                (&classes, subset),
                (mean, std),
                args.input_size,
                &budget,
            )?;
            let (_, trials) = game.scores[0].totals();
            sightline::outln!(
                "pointing game on {}: {} annotated images, {} played ({} class instances{}), tolerance {tolerance:.2} px",
                dir.display(),
                stats.images,
                stats.played_images,
                trials,
                if args.difficult { ", difficult subset" } else { "" }
            );
            if stats.unknown_classes > 0 {
                sightline::outln!(
                    "skipped {} class instances whose class the model does not know",
                    stats.unknown_classes
                );
            }
            game
        }
        None => {
            if model.num_classes() != CLASSES.len() {
                return Err(format!(
                    "generated images have {} classes ({}), the model {}; use --voc for other models",
                    CLASSES.len(),
                    CLASSES.join(", "),
                    model.num_classes()
                )
                .into());
            }
            if args.count == 0 || args.size < 16 || args.batch == 0 {
                return Err("--count and --batch must be positive and --size at least 16".into());
            }
            // One batch at a time: the samples (f32 pixels and a mask), their
            // trials' masks, the input and one pass of the model.
            let b = args.batch.min(args.count);
            let (bu, su) = (b as u64, args.size as u64);
            let shape = [b, model.channels(), args.size, args.size];
            budget.check(
                format!(
                    "--batch {} --size {} (a batch of {b} generated {} x {} images)",
                    args.batch, args.size, args.size, args.size
                ),
                product(26, &[bu, su, su]).saturating_add(model_pass_bytes(&model, &shape, true)),
            )?;
            let tolerance = args
                .tolerance
                .unwrap_or_else(|| scaled_tolerance(args.size));
            let game = play_generated(
                &model, &methods, args.seed, args.count, args.size, tolerance, args.batch,
            )?;
            sightline::outln!(
                "pointing game on {} generated images (seed {}, {} x {} px), tolerance {tolerance:.2} px",
                args.count, args.seed, args.size, args.size
            );
            game
        }
    };
    sightline::out!("{}", game.table());
    Ok(ExitCode::SUCCESS)
}

/// A model from `--arch` (preset, architecture JSON or model card) and `--weights`,
/// with the card when there is one.
fn load(
    spec: &str,
    weights: &Path,
    budget: &MemoryBudget,
) -> Result<(Model<f32>, Option<Card>), super::CliError> {
    let path = Path::new(spec);
    let on_disk = std::fs::symlink_metadata(path).is_ok();
    let (arch, card) = if on_disk || spec.ends_with(".json") {
        let text = read_regular_text(path, "architecture file", MAX_JSON_BYTES)?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("architecture file `{spec}`: {e}"))?;
        if value.get("architecture").is_some() {
            let card =
                embedded::parse_card(&text).map_err(|e| format!("model card `{spec}`: {e}"))?;
            (card.architecture.clone(), Some(card))
        } else {
            let arch = Architecture::from_json_value(&value)
                .map_err(|e| format!("architecture file `{spec}`: {e}"))?;
            (arch, None)
        }
    } else {
        (Architecture::preset(spec)?, None)
    };
    let declared =
        sightline::footprint::architecture_footprint::<f32>(&arch, &[1, 3, 1, 1], 1)?.weights;
    let size = check_regular(weights, "weights file", u64::MAX)?;
    budget.check(
        format!("loading the weights {}", weights.display()),
        size.saturating_add(declared),
    )?;
    let model = Model::from_safetensors(&arch, weights)?;
    Ok((model, card))
}
