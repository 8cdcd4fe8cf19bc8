//! `sightline explain`: saliency maps of real images with a real model,
//! written as heatmaps, overlays, raw `.npy` maps, a grid and a JSON summary.
//!
//! Everything that can be checked before the first file is written is
//! checked first (architecture, weights, methods, layers, target, options,
//! inputs); every file is written atomically; an image that cannot be read
//! is reported at the end (exit code 1) while the others are explained.

mod maps;
pub(crate) mod model;
mod outputs;
pub(crate) mod setup;
mod summary;

pub use model::{load_model, method_layers};
pub(crate) use setup::transforms_weights;

use super::options::{ExtremalArgs, LrpOptions, RiseArgs};
use super::CliError;
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use maps::{explain_image, ms_since, ImageResult, Outcome};
use outputs::{ensure_out, grid_rows, write_pictures, write_raw};
use setup::setup;
use sightline::budget::parse_size;
use sightline::errln;
use sightline::imageio::parse_triple;
use sightline::interrupt::Interrupt;
use sightline::render::{
    grid, write_atomic, write_png, Colormap, GridStyle, Normalize, ValueRange,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use summary::summary_json;

/// Arguments of `explain`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model exported to ONNX (either PyTorch exporter; external weights
    /// `MODEL.onnx.data` beside it), in place of `--arch` and `--weights`.
    #[arg(long, conflicts_with_all = ["arch", "weights"], required_unless_present = "arch")]
    pub model: Option<PathBuf>,
    /// Architecture: a preset (vgg11..vgg19, vgg16_bn.., resnet18..resnet152,
    /// alexnet) or the path of an architecture JSON file.
    #[arg(long)]
    pub arch: Option<String>,
    /// Weights (safetensors with torchvision `state_dict` names); without
    /// them, random weights from `--seed` (an untrained network).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Seed of the random weights used without `--weights`.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Saliency methods, comma-separated: gradient, deconvnet,
    /// guided_backprop, grad_cam, linear_approx, excitation_backprop,
    /// contrastive_excitation_backprop, the LRP composites
    /// lrp.epsilon_plus, lrp.epsilon_plus_flat, lrp.epsilon_alpha2_beta1,
    /// lrp.epsilon_alpha2_beta1_flat, lrp.epsilon_gamma_box,
    /// lrp.excitation_backprop, rise and extremal_perturbation.
    #[arg(long, value_delimiter = ',', required = true)]
    pub method: Vec<String>,
    /// Parameters of the LRP methods.
    #[command(flatten)]
    pub lrp: LrpOptions,
    /// Parameters of RISE.
    #[command(flatten)]
    pub rise: RiseArgs,
    /// Parameters of extremal perturbation.
    #[command(flatten)]
    pub extremal: ExtremalArgs,
    /// The class to explain (`K`), or the N best classes of each image (`topN`).
    #[arg(long, default_value = "top1", allow_hyphen_values = true)]
    pub target: String,
    /// Layer probed by grad_cam, linear_approx and the excitation methods
    /// (default: the model's default layers; gradient, deconvnet and
    /// guided_backprop always probe the input).
    #[arg(long)]
    pub layer: Option<String>,
    /// The short side is resized to this many pixels.
    #[arg(long, default_value_t = 256, allow_negative_numbers = true)]
    pub resize: u32,
    /// Side of the centred square crop.
    #[arg(long, default_value_t = 224, allow_negative_numbers = true)]
    pub size: u32,
    /// Keep the whole resized image (no crop).
    #[arg(long)]
    pub no_crop: bool,
    /// Channel means of the normalisation (r,g,b).
    #[arg(long, value_parser = parse_triple, default_value = "0.485,0.456,0.406", allow_hyphen_values = true)]
    pub mean: [f32; 3],
    /// Channel standard deviations of the normalisation (r,g,b).
    #[arg(long, value_parser = parse_triple, default_value = "0.229,0.224,0.225", allow_hyphen_values = true)]
    pub std: [f32; 3],
    /// TorchRay's Gaussian smoothing of the maps (sigma = smooth * max(h, w)); 0 is off.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub smooth: f64,
    /// Colormap of the heatmaps: jet, viridis, gray, or coolwarm (diverging,
    /// centred on zero: for signed maps such as LRP relevance).
    #[arg(long, default_value = "jet")]
    pub colormap: Colormap,
    /// Colour scale: `per-map`; `shared` (one range per method over the
    /// whole run, so that maps of one method compare across images and
    /// classes); or `shared-all` (one range for every map of every method).
    #[arg(long, default_value = "per-map")]
    pub normalize: Normalize,
    /// Opacity of the heatmap in the overlays, in [0, 1].
    #[arg(long, default_value_t = 0.5, allow_negative_numbers = true)]
    pub alpha: f32,
    /// At most this many rows (image x class) in `grid.png`.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true)]
    pub grid_rows: usize,
    /// Memory the run may plan to use (`4G`, `512M`, bytes) [default: 3/4
    /// of the machine's available memory]: an image that would need more
    /// fails on its own; options that would are refused before anything
    /// is written.
    #[arg(long, value_parser = parse_size)]
    pub max_memory: Option<u64>,
    /// Output folder (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    /// Images (JPEG or PNG) and folders of images.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

fn progress_bar(n: usize) -> ProgressBar {
    let pb = ProgressBar::new(n as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:30} {pos}/{len} images  {elapsed_precise}  ETA {eta}")
    {
        pb.set_style(style);
    }
    pb
}

/// Runs `explain`: exit code 0, or 1 when some image could not be
/// explained, or 128 + the signal when SIGINT or SIGTERM stopped it (the
/// image under way is finished and `summary.json` written first).
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let start = Instant::now();
    let s = setup(&args)?;
    // Installed once the options are known good: a signal before this point
    // ends the process as usual.
    let interrupt = Interrupt::install()
        .map_err(|e| format!("cannot install the SIGINT and SIGTERM handlers: {e}"))?;
    let out = args.out.as_path();
    let pb = progress_bar(s.inputs.len());
    let mut done: Vec<ImageResult> = Vec::new();
    let mut failed: Vec<(PathBuf, String)> = Vec::new();
    let mut rows: Vec<Vec<RgbImage>> = Vec::new();
    let mut shared: Vec<Option<ValueRange>> = vec![None; s.methods.len()];
    for (index, (path, stem)) in s.inputs.iter().zip(&s.stems).enumerate() {
        if let Some(signal) = interrupt.signal_name() {
            for p in &s.inputs[index..] {
                failed.push((
                    p.clone(),
                    format!("interrupted ({signal}) before this image"),
                ));
            }
            break;
        }
        let nothing_written = done.is_empty() && failed.is_empty();
        let outcome = match explain_image(&s, &args, path, stem) {
            Ok(o) => o,
            // With a crop every image reaches the model at the same size, so
            // an error of the first one (an input too small for the model, a
            // layer a method cannot use) is an error of the options: fatal,
            // before any file is written. Otherwise it is this image's.
            Err(e) if nothing_written && s.preprocess.crop.is_some() => return Err(e),
            Err(e) => Outcome::Failed(format!("{}: {e}", path.display())),
        };
        let mut r = match outcome {
            Outcome::Done(r) => *r,
            Outcome::Failed(msg) => {
                pb.suspend(|| errln!("sightline: {msg}"));
                failed.push((path.clone(), msg));
                pb.inc(1);
                continue;
            }
        };
        let t = Instant::now();
        let written = write_raw(out, &s, &mut r).and_then(|()| {
            if args.normalize == Normalize::PerMap {
                let overlays = write_pictures(out, &s, &args, &mut r, None)?;
                if rows.len() < args.grid_rows {
                    rows.extend(grid_rows(&s, &r, &overlays));
                }
                r.image = RgbImage::new(0, 0);
                r.maps.iter_mut().for_each(|m| m.values = Vec::new());
            }
            Ok(())
        });
        if let Err(e) = written {
            let msg = format!("{}: {e}", path.display());
            pb.suspend(|| errln!("sightline: {msg}"));
            failed.push((path.clone(), msg));
            pb.inc(1);
            continue;
        }
        if args.normalize != Normalize::PerMap {
            for m in &r.maps {
                shared[m.method] = match (shared[m.method], m.range) {
                    (Some(a), Some(b)) => Some(a.union(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        r.timings.insert("write", ms_since(t));
        let line: Vec<String> = r
            .classes
            .iter()
            .map(|&(k, p)| s.labels.describe(k, p))
            .collect();
        pb.suspend(|| sightline::outln!("{}: {}", path.display(), line.join(", ")));
        done.push(r);
        pb.inc(1);
    }
    pb.finish_and_clear();
    if args.normalize == Normalize::SharedAll {
        let all = shared.iter().flatten().copied().reduce(ValueRange::union);
        shared.iter_mut().for_each(|r| *r = all);
    }
    if args.normalize != Normalize::PerMap {
        let mut kept = Vec::with_capacity(done.len());
        for mut r in done {
            match write_pictures(out, &s, &args, &mut r, Some(&shared)) {
                Ok(overlays) => {
                    if rows.len() < args.grid_rows {
                        rows.extend(grid_rows(&s, &r, &overlays));
                    }
                    kept.push(r);
                }
                Err(e) => {
                    let msg = format!("{}: {e}", r.path.display());
                    errln!("sightline: {msg}");
                    failed.push((r.path.clone(), msg));
                }
            }
        }
        done = kept;
    }
    rows.truncate(args.grid_rows);
    let grid_file = if rows.is_empty() {
        None
    } else {
        match ensure_out(out).and_then(|()| {
            Ok(write_png(
                &grid(&rows, GridStyle::default()),
                &out.join("grid.png"),
            )?)
        }) {
            Ok(()) => Some("grid.png"),
            Err(e) => {
                errln!("sightline: {e}");
                None
            }
        }
    };
    let interrupted = interrupt.signal_name();
    let summary = summary_json(
        &args,
        &s,
        &done,
        &failed,
        (grid_file, rows.len()),
        interrupted,
        start,
    );
    ensure_out(out)?;
    let text = serde_json::to_string_pretty(&summary)?;
    write_atomic(&out.join("summary.json"), text.as_bytes())?;
    if args.weights.is_none() && args.model.is_none() {
        errln!(
            "sightline: note: no --weights, so random weights (seed {}): the maps explain an untrained network",
            args.seed
        );
    }
    if let Some(signal) = interrupted {
        errln!(
            "sightline: interrupted by {signal}: {} of {} images explained; summary.json lists the rest",
            done.len(),
            s.inputs.len()
        );
        return Ok(ExitCode::from(interrupt.exit_status()));
    }
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    errln!(
        "sightline: {} of {} images could not be explained:",
        failed.len(),
        s.inputs.len()
    );
    for (p, _) in &failed {
        errln!("  {}", p.display());
    }
    Ok(ExitCode::FAILURE)
}
