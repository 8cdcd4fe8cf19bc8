//! `sightline explain`: saliency maps of real images with a real model,
//! written as heatmaps, overlays, raw `.npy` maps, a grid and a JSON summary.
//!
//! Everything that can be checked before the first file is written is
//! checked first (architecture, weights, methods, layers, target, options,
//! inputs); every file is written atomically; an image that cannot be read
//! is reported at the end (exit code 1) while the others are explained.

use super::CliError;
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use sightline::imageio::{expand_inputs, parse_triple, Preprocess};
use sightline::labels::Labels;
use sightline::render::{
    check_alpha, grid, heatmap, overlay, write_atomic, write_png, Colormap, GridStyle, MapRef,
    Normalize, ValueRange,
};
use sightline_attribution::{Explainer, Method, Resize, SaliencyOptions, Target};
use sightline_layers::{Architecture, Model};
use sightline_tensor::softmax::softmax;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `explain`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Architecture: a preset (vgg11..vgg19, vgg16_bn.., resnet18..resnet152,
    /// alexnet) or the path of an architecture JSON file.
    #[arg(long)]
    pub arch: String,
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
    /// Colour scale: `per-map`, or `shared` (one range per method over the
    /// whole run, so that maps of one method compare across images and classes).
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
    fn classes(self, logits: &sightline_tensor::Tensor<f32>) -> Result<Vec<usize>, CliError> {
        Ok(match self {
            TargetSpec::Class(k) => vec![k],
            TargetSpec::Top(n) => Target::top_k(logits, n)?
                .into_iter()
                .next()
                .unwrap_or_default(),
        })
    }
}

/// The architecture named by `spec`: a preset name, or a JSON file when
/// `spec` is an existing file or ends in `.json`. The file holds an
/// architecture object, or an object with one under `"architecture"` (as
/// `assets/demo_model.json` and reference manifests' model entries do).
pub fn architecture(spec: &str) -> Result<Architecture, CliError> {
    let path = Path::new(spec);
    if !(path.is_file() || spec.ends_with(".json")) {
        return Ok(Architecture::preset(spec)?);
    }
    let err =
        |e: &dyn std::fmt::Display| -> CliError { format!("architecture file {spec}: {e}").into() };
    let text = std::fs::read_to_string(path).map_err(|e| err(&e))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| err(&e))?;
    let value = value.get("architecture").unwrap_or(&value);
    Architecture::from_json_value(value).map_err(|e| err(&e))
}

/// The model: `arch` with the weights of `weights`, or random weights from `seed`.
pub fn load_model(
    arch_spec: &str,
    weights: Option<&Path>,
    seed: u64,
) -> Result<Model<f32>, CliError> {
    let arch = architecture(arch_spec)?;
    match weights {
        Some(path) => {
            if !path.is_file() {
                return Err(format!("weights file {}: no such file", path.display()).into());
            }
            Model::from_safetensors(&arch, path).map_err(|e| {
                format!("weights {} do not fit `{arch_spec}`: {e}", path.display()).into()
            })
        }
        None => Ok(Model::random(&arch, seed)?),
    }
}

/// The methods named by `names`, without repeats, in the order given.
pub fn parse_methods(names: &[String]) -> Result<Vec<Method>, CliError> {
    let mut methods: Vec<Method> = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let m: Method = name.parse()?;
        if !methods.contains(&m) {
            methods.push(m);
        }
    }
    if methods.is_empty() {
        return Err("no method given (--method M1,M2,...)".into());
    }
    Ok(methods)
}

/// Whether a method probes a layer (and so takes `--layer`).
fn takes_layer(m: &Method) -> bool {
    matches!(
        m,
        Method::GradCam
            | Method::LinearApprox
            | Method::ExcitationBackprop
            | Method::ContrastiveExcitationBackprop { .. }
    )
}

/// The layer each method probes: `--layer` for the methods that take one,
/// else the method's default (`""` is the input).
pub fn method_layers(
    model: &Model<f32>,
    methods: &[Method],
    layer: Option<&str>,
) -> Result<Vec<String>, CliError> {
    if let Some(l) = layer {
        if !l.is_empty() && !model.has_layer(l) {
            let known = model.layer_paths();
            let shown: Vec<&str> = known.iter().map(String::as_str).take(40).collect();
            return Err(format!(
                "unknown layer `{l}`; the model's layers include: {}{}",
                shown.join(", "),
                if known.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            )
            .into());
        }
    }
    let defaults = model.default_layers();
    Ok(methods
        .iter()
        .map(|m| match (layer, m) {
            (Some(l), m) if takes_layer(m) => l.to_string(),
            (_, Method::GradCam) => defaults.grad_cam.clone(),
            (_, Method::ExcitationBackprop | Method::ContrastiveExcitationBackprop { .. }) => {
                defaults.excitation.clone()
            }
            _ => String::new(),
        })
        .collect())
}

/// Everything checked before the first image.
struct Setup {
    model: Model<f32>,
    methods: Vec<Method>,
    layers: Vec<String>,
    target: TargetSpec,
    preprocess: Preprocess,
    labels: Labels,
    inputs: Vec<PathBuf>,
    stems: Vec<String>,
}

fn setup(args: &Args) -> Result<Setup, CliError> {
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
    let methods = parse_methods(&args.method)?;
    let model = load_model(&args.arch, args.weights.as_deref(), args.seed)?;
    let layers = method_layers(&model, &methods, args.layer.as_deref())?;
    let target = TargetSpec::parse(args.target.trim(), model.num_classes())?;
    let inputs = expand_inputs(&args.inputs)?;
    let stems = unique_stems(&inputs);
    if args.out.exists() && !args.out.is_dir() {
        return Err(format!("--out {}: exists and is not a folder", args.out.display()).into());
    }
    let labels = Labels::for_classes(model.num_classes());
    Ok(Setup {
        model,
        methods,
        layers,
        target,
        preprocess,
        labels,
        inputs,
        stems,
    })
}

/// File stems of the outputs, made unique (`cat`, `cat-2`, ...).
fn unique_stems(inputs: &[PathBuf]) -> Vec<String> {
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

/// One map of one image: a method and a class.
struct MapResult {
    method: usize,
    class: usize,
    layer: String,
    width: usize,
    height: usize,
    values: Vec<f32>,
    ms: f64,
    files: BTreeMap<&'static str, String>,
    /// The map's own (min, max) of finite values.
    range: Option<ValueRange>,
    /// The (min, max) stretched to the colormap.
    scale: Option<ValueRange>,
}

/// One explained image.
struct ImageResult {
    stem: String,
    path: PathBuf,
    original_size: (u32, u32),
    /// The picture the model saw (emptied once no longer needed).
    image: RgbImage,
    input_size: (u32, u32),
    classes: Vec<(usize, f32)>,
    maps: Vec<MapResult>,
    timings: BTreeMap<&'static str, f64>,
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The outcome of one image: explained, or failed on its own account.
enum Outcome {
    Done(Box<ImageResult>),
    Failed(String),
}

/// Reads one image, runs one forward pass and computes every map (nothing is written).
fn explain_image(s: &Setup, args: &Args, path: &Path, stem: &str) -> Result<Outcome, CliError> {
    let t0 = Instant::now();
    let prepared = match s.preprocess.load(path) {
        Ok(p) => p,
        Err(e) => return Ok(Outcome::Failed(e.to_string())),
    };
    let mut timings = BTreeMap::new();
    timings.insert("load", ms_since(t0));
    let t1 = Instant::now();
    let keep: Vec<&str> = s
        .layers
        .iter()
        .map(String::as_str)
        .filter(|l| !l.is_empty())
        .collect();
    // Every image reaches the model with a short side of `--resize` (and the
    // crop's size), so an error here (an input too small for the model, a
    // layer a method cannot use) is an error of the options: fatal, and met
    // on the first image, before any file is written.
    let explainer = Explainer::for_methods(&s.model, &prepared.tensor, &s.methods, &keep)?;
    let probs = softmax(explainer.logits())?;
    let classes: Vec<(usize, f32)> = s
        .target
        .classes(explainer.logits())?
        .into_iter()
        .map(|k| (k, probs.data()[k]))
        .collect();
    timings.insert("forward", ms_since(t1));
    let t2 = Instant::now();
    let mut maps = Vec::new();
    for (mi, method) in s.methods.iter().enumerate() {
        for &(class, _) in &classes {
            let t = Instant::now();
            let opts = SaliencyOptions {
                layer: Some(s.layers[mi].clone()),
                resize: Resize::Input,
                smooth: args.smooth,
                ..SaliencyOptions::default()
            };
            let sal = explainer.saliency(method, &Target::Class(class), &opts)?;
            let map = MapRef::from_tensor(&sal.map)?;
            maps.push(MapResult {
                method: mi,
                class,
                layer: sal.layer,
                width: map.width(),
                height: map.height(),
                values: map.values().to_vec(),
                ms: ms_since(t),
                files: BTreeMap::new(),
                range: ValueRange::of(map.values()),
                scale: None,
            });
        }
    }
    timings.insert("saliency", ms_since(t2));
    Ok(Outcome::Done(Box::new(ImageResult {
        stem: stem.to_string(),
        input_size: prepared.image.dimensions(),
        path: prepared.path,
        original_size: prepared.original_size,
        image: prepared.image,
        classes,
        maps,
        timings,
    })))
}

/// The `.npy` bytes of a map: f32, shape `h x w`, C order.
pub fn npy_bytes(values: &[f32], height: usize, width: usize) -> std::io::Result<Vec<u8>> {
    use npyz::WriterBuilder;
    let mut bytes = Vec::new();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[height as u64, width as u64])
        .writer(&mut bytes)
        .begin_nd()?;
    writer.extend(values.iter().copied())?;
    writer.finish()?;
    Ok(bytes)
}

/// Creates the output folder the first time a file is written.
fn ensure_out(out: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()).into())
}

/// Writes the input picture and the raw maps of one image.
fn write_raw(out: &Path, s: &Setup, r: &mut ImageResult) -> Result<(), CliError> {
    ensure_out(out)?;
    let input = format!("{}.input.png", r.stem);
    write_png(&r.image, &out.join(&input))?;
    for m in &mut r.maps {
        let name = format!("{}.{}.{}.npy", r.stem, s.methods[m.method].name(), m.class);
        write_atomic(&out.join(&name), &npy_bytes(&m.values, m.height, m.width)?)?;
        m.files.insert("npy", name);
        m.files.insert("input", input.clone());
    }
    Ok(())
}

/// Writes the heatmap and overlay of every map of one image, each with `range`
/// of its method (or its own range); returns the overlays, one per map.
fn write_pictures(
    out: &Path,
    s: &Setup,
    args: &Args,
    r: &mut ImageResult,
    shared: Option<&[Option<ValueRange>]>,
) -> Result<Vec<RgbImage>, CliError> {
    let mut overlays = Vec::new();
    for m in &mut r.maps {
        let range = match shared {
            Some(ranges) => ranges[m.method],
            None => m.range,
        }
        .unwrap_or(ValueRange { min: 0.0, max: 0.0 });
        let map = MapRef::new(&m.values, m.width, m.height)?;
        let heat = heatmap(&map, range, args.colormap);
        let blend = overlay(&r.image, &heat, args.alpha)?;
        let base = format!("{}.{}.{}", r.stem, s.methods[m.method].name(), m.class);
        let (heat_name, overlay_name) =
            (format!("{base}.heatmap.png"), format!("{base}.overlay.png"));
        write_png(&heat, &out.join(&heat_name))?;
        write_png(&blend, &out.join(&overlay_name))?;
        m.files.insert("heatmap", heat_name);
        m.files.insert("overlay", overlay_name);
        m.scale = Some(range);
        overlays.push(blend);
    }
    Ok(overlays)
}

/// Grid rows of one image: per class, the input then one overlay per method.
fn grid_rows(s: &Setup, r: &ImageResult, overlays: &[RgbImage]) -> Vec<Vec<RgbImage>> {
    r.classes
        .iter()
        .map(|&(class, _)| {
            let mut row = vec![r.image.clone()];
            for mi in 0..s.methods.len() {
                if let Some(i) = r
                    .maps
                    .iter()
                    .position(|m| m.method == mi && m.class == class)
                {
                    row.push(overlays[i].clone());
                }
            }
            row
        })
        .collect()
}

/// The JSON record of one image, with its maps' data dropped.
fn image_json(s: &Setup, r: &ImageResult) -> Value {
    let classes: Vec<Value> = r
        .classes
        .iter()
        .map(|&(k, p)| json!({ "class": k, "label": s.labels.name(k), "score": p }))
        .collect();
    let maps: Vec<Value> = r
        .maps
        .iter()
        .map(|m| {
            json!({
                "method": s.methods[m.method].name(),
                "class": m.class,
                "layer": m.layer,
                "width": m.width,
                "height": m.height,
                "min": m.range.map(|r| r.min),
                "max": m.range.map(|r| r.max),
                "scale": m.scale.map(|r| [r.min, r.max]),
                "files": m.files,
                "ms": m.ms,
            })
        })
        .collect();
    json!({
        "image": r.path.display().to_string(),
        "stem": r.stem,
        "original_size": [r.original_size.0, r.original_size.1],
        "input_size": [r.input_size.0, r.input_size.1],
        "classes": classes,
        "maps": maps,
        "timings_ms": r.timings,
    })
}

/// The JSON summary of the run.
fn summary_json(
    args: &Args,
    s: &Setup,
    done: &[ImageResult],
    failed: &[(PathBuf, String)],
    grid_file: Option<&str>,
    grid_rows: usize,
    start: Instant,
) -> Value {
    json!({
        "arch": args.arch,
        "weights": args.weights.as_ref().map(|w| w.display().to_string()),
        "methods": s.methods.iter().map(Method::name).collect::<Vec<_>>(),
        "layers": s.methods.iter().zip(&s.layers).map(|(m, l)| (m.name(), l.clone())).collect::<BTreeMap<_, _>>(),
        "target": args.target,
        "preprocess": {
            "resize": args.resize,
            "crop": s.preprocess.crop,
            "mean": args.mean,
            "std": args.std,
        },
        "colormap": args.colormap.name(),
        "normalize": args.normalize.name(),
        "alpha": args.alpha,
        "smooth": args.smooth,
        "images": done.iter().map(|r| image_json(s, r)).collect::<Vec<_>>(),
        "failed": failed.iter().map(|(p, e)| json!({ "image": p.display().to_string(), "error": e })).collect::<Vec<_>>(),
        "grid": grid_file,
        "grid_rows": grid_rows,
        "threads": rayon::current_num_threads(),
        "timings_ms": { "total": ms_since(start) },
    })
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
    if args.normalize == Normalize::Shared {
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
    if args.weights.is_none() {
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
