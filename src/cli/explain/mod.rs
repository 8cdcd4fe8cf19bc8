//! `sightline explain`: saliency maps of real images with a real model,
//! written as heatmaps, overlays, raw `.npy` maps, a grid and a JSON summary.
//!
//! Everything that can be checked before the first file is written is
//! checked first (architecture, weights, methods, layers, target, options,
//! inputs); every file is written atomically; an image that cannot be read
//! is reported at the end (exit code 1) while the others are explained.

mod maps;
mod model;
mod outputs;
mod setup;
mod summary;

pub use model::{load_model, method_layers, parse_methods};

use super::CliError;
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use maps::{explain_image, ms_since, ImageResult, Outcome};
use outputs::{ensure_out, grid_rows, write_pictures, write_raw};
use setup::setup;
use sightline::imageio::parse_triple;
use sightline::render::{
    grid, write_atomic, write_png, Colormap, GridStyle, Normalize, ValueRange,
};
use std::io::Write;
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
    /// contrastive_excitation_backprop.
    #[arg(long, value_delimiter = ',', required = true)]
    pub method: Vec<String>,
    /// The class to explain (`K`), or the N best classes of each image (`topN`).
    #[arg(long, default_value = "top1")]
    pub target: String,
    /// Layer probed by grad_cam, linear_approx and the excitation methods
    /// (default: the model's default layers; gradient, deconvnet and
    /// guided_backprop always probe the input).
    #[arg(long)]
    pub layer: Option<String>,
    /// The short side is resized to this many pixels.
    #[arg(long, default_value_t = 256)]
    pub resize: u32,
    /// Side of the centred square crop.
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    /// Keep the whole resized image (no crop).
    #[arg(long)]
    pub no_crop: bool,
    /// Channel means of the normalisation (r,g,b).
    #[arg(long, value_parser = parse_triple, default_value = "0.485,0.456,0.406")]
    pub mean: [f32; 3],
    /// Channel standard deviations of the normalisation (r,g,b).
    #[arg(long, value_parser = parse_triple, default_value = "0.229,0.224,0.225")]
    pub std: [f32; 3],
    /// TorchRay's Gaussian smoothing of the maps (sigma = smooth * max(h, w)); 0 is off.
    #[arg(long, default_value_t = 0.0)]
    pub smooth: f64,
    /// Colormap of the heatmaps: jet, viridis or gray.
    #[arg(long, default_value = "jet")]
    pub colormap: Colormap,
    /// Colour scale: `per-map`; `shared` (one range per method over the
    /// whole run, so that maps of one method compare across images and
    /// classes); or `shared-all` (one range for every map of every method).
    #[arg(long, default_value = "per-map")]
    pub normalize: Normalize,
    /// Opacity of the heatmap in the overlays, in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f32,
    /// At most this many rows (image x class) in `grid.png`.
    #[arg(long, default_value_t = 64)]
    pub grid_rows: usize,
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

/// Runs `explain`: exit code 0, or 1 when some image could not be explained.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let start = Instant::now();
    let s = setup(&args)?;
    let out = args.out.as_path();
    let pb = progress_bar(s.inputs.len());
    let mut done: Vec<ImageResult> = Vec::new();
    let mut failed: Vec<(PathBuf, String)> = Vec::new();
    let mut rows: Vec<Vec<RgbImage>> = Vec::new();
    let mut shared: Vec<Option<ValueRange>> = vec![None; s.methods.len()];
    for (path, stem) in s.inputs.iter().zip(&s.stems) {
        let mut r = match explain_image(&s, &args, path, stem)? {
            Outcome::Done(r) => *r,
            Outcome::Failed(msg) => {
                pb.suspend(|| eprintln!("sightline: {msg}"));
                failed.push((path.clone(), msg));
                pb.inc(1);
                continue;
            }
        };
        let t = Instant::now();
        write_raw(out, &s, &mut r)?;
        if args.normalize == Normalize::PerMap {
            let overlays = write_pictures(out, &s, &args, &mut r, None)?;
            if rows.len() < args.grid_rows {
                rows.extend(grid_rows(&s, &r, &overlays));
            }
            r.image = RgbImage::new(0, 0);
            r.maps.iter_mut().for_each(|m| m.values = Vec::new());
        } else {
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
        // A closed pipe (`| head`) is not an error worth a panic.
        pb.suspend(|| writeln!(std::io::stdout(), "{}: {}", path.display(), line.join(", ")).ok());
        done.push(r);
        pb.inc(1);
    }
    pb.finish_and_clear();
    if args.normalize == Normalize::SharedAll {
        let all = shared.iter().flatten().copied().reduce(ValueRange::union);
        shared.iter_mut().for_each(|r| *r = all);
    }
    if args.normalize != Normalize::PerMap {
        for r in &mut done {
            let overlays = write_pictures(out, &s, &args, r, Some(&shared))?;
            if rows.len() < args.grid_rows {
                rows.extend(grid_rows(&s, r, &overlays));
            }
        }
    }
    rows.truncate(args.grid_rows);
    let grid_file = if rows.is_empty() {
        None
    } else {
        ensure_out(out)?;
        write_png(&grid(&rows, GridStyle::default()), &out.join("grid.png"))?;
        Some("grid.png")
    };
    let summary = summary_json(&args, &s, &done, &failed, grid_file, rows.len(), start);
    ensure_out(out)?;
    let text = serde_json::to_string_pretty(&summary)?;
    write_atomic(&out.join("summary.json"), text.as_bytes())?;
    if args.weights.is_none() && args.model.is_none() {
        eprintln!(
            "sightline: note: no --weights, so random weights (seed {}): the maps explain an untrained network",
            args.seed
        );
    }
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "sightline: {} of {} images could not be explained:",
        failed.len(),
        s.inputs.len()
    );
    for (p, _) in &failed {
        eprintln!("  {}", p.display());
    }
    Ok(ExitCode::FAILURE)
}
