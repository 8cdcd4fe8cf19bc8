//! `sightline explain`: saliency maps of real images with a real model,
//! written as heatmaps, overlays, raw `.npy` maps, a grid and a JSON summary.
//!
//! The arguments become one validated [`plan::Plan`] before anything runs
//! (`plan.rs`: every check that does not need an image); then each batch
//! of images goes load, preprocess (`inputs.rs`), forward and methods
//! (`maps.rs`), render and write (`outputs.rs`), in that order (`run.rs`),
//! and `summary.json` closes the run (`summary.rs`). Nothing after the plan
//! reads the arguments. Every file is written atomically; an image that
//! cannot be read is reported at the end (exit code 1) while the others
//! are explained.

mod inputs;
mod maps;
pub(crate) mod model;
mod outputs;
pub(crate) mod plan;
mod run;
mod summary;

/// `evaluate` reaches the target and file-stem helpers by this name.
pub(crate) use self::plan as setup;
pub use model::{load_model, method_layers};
pub(crate) use plan::transforms_weights;

use super::options::MethodArgs;
use super::CliError;
use sightline::budget::parse_size;
use sightline::imageio::parse_triple;
use sightline::render::{Colormap, Normalize};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

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
    /// Saliency methods, comma-separated: TorchRay's gradient, deconvnet,
    /// guided_backprop, grad_cam, linear_approx, excitation_backprop,
    /// contrastive_excitation_backprop; Captum's saliency,
    /// input_x_gradient, integrated_gradients, noise_tunnel,
    /// guided_grad_cam, layer_grad_cam; the LRP composites
    /// lrp.epsilon_plus, lrp.epsilon_plus_flat, lrp.epsilon_alpha2_beta1,
    /// lrp.epsilon_alpha2_beta1_flat, lrp.epsilon_gamma_box,
    /// lrp.excitation_backprop; rise and extremal_perturbation.
    #[arg(long, value_delimiter = ',', required = true)]
    pub method: Vec<String>,
    /// Parameters of the methods (LRP, RISE, extremal perturbation,
    /// integrated gradients, noise tunnel).
    #[command(flatten)]
    pub params: MethodArgs,
    /// The class to explain (`K`), or the N best classes of each image (`topN`).
    #[arg(long, default_value = "top1", allow_hyphen_values = true)]
    pub target: String,
    /// Layer probed by the methods that probe one (grad_cam,
    /// layer_grad_cam, guided_grad_cam, linear_approx, the excitation
    /// methods): `L` for all of them, or `METHOD=L,METHOD=L` per method
    /// (default: the model's default layers; the other methods explain the
    /// input).
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
    /// TorchRay's Gaussian smoothing of the maps (sigma = smooth * max(h,
    /// w)); 0 is off. Captum's methods do not take it (their `.npy` is the
    /// raw attribution).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub smooth: f64,
    /// Colormap of the heatmaps: jet, viridis, gray, or coolwarm (diverging,
    /// centred on zero) [default: coolwarm for the methods whose maps are
    /// signed (linear_approx, input_x_gradient, integrated_gradients,
    /// guided_grad_cam, layer_grad_cam, the LRP composites), jet for the
    /// others].
    #[arg(long)]
    pub colormap: Option<Colormap>,
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
    /// Images per forward pass and backward pass (images of another
    /// model-input size, with `--no-crop`, go in their own batch; RISE,
    /// extremal perturbation, integrated gradients and the noise tunnel
    /// still take them one at a time); each image's maps are meant to be
    /// the same bits as with `--batch 1`.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub batch: usize,
    /// Also write each preprocessed input as `NAME.input.npy` (float32,
    /// C x H x W: the tensor the model saw).
    #[arg(long)]
    pub save_input: bool,
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

/// Runs `explain`: exit code 0, or 1 when some image could not be
/// explained, or 128 + the signal when SIGINT or SIGTERM stopped it (the
/// batch under way is finished and `summary.json` written first).
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let start = Instant::now();
    let plan = plan::Plan::new(args)?;
    run::run(&plan, start)
}
