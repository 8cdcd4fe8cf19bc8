//! `sightline evaluate`: scores saliency methods over a folder of images
//! (deletion and insertion AUC, the model-randomisation sanity check), in
//! shards that resume and merge.

use super::explain::model::{kept_layers, load_model, method_layers, model_forms};
use super::explain::setup::{unique_stems, TargetSpec};
use super::options::{method_list, ExtremalArgs, LrpOptions, RiseArgs};
use super::CliError;
use indicatif::{ProgressBar, ProgressStyle};
use sightline::budget::{model_pass_bytes, parse_size, MemoryBudget};
use sightline::evaluation_report::{
    parse_shard, Failure, ImageScores, MethodScores, Report, SanityEntry,
};
use sightline::files::{read_regular_text, MAX_JSON_BYTES};
use sightline::imageio::{expand_inputs, parse_triple, EncodedImage, Preprocess};
use sightline::render::write_atomic;
use sightline_attribution::evaluation::{
    cascading_randomization, causal_metric, CausalMode, CausalOptions,
};
use sightline_attribution::{Explainer, Method, Resize, SaliencyOptions, Target};
use sightline_layers::Model;
use sightline_tensor::Tensor;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The metrics `evaluate` computes.
const METRICS: [&str; 3] = ["deletion", "insertion", "sanity"];

/// Arguments of `evaluate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model exported to ONNX, in place of `--arch` and `--weights`.
    #[arg(long, conflicts_with_all = ["arch", "weights"])]
    pub model: Option<PathBuf>,
    /// Architecture: a preset or the path of an architecture JSON file.
    #[arg(long)]
    pub arch: Option<String>,
    /// Weights (safetensors); without them, random weights from `--seed`.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Seed of the random weights used without `--weights`.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Saliency methods to score, comma-separated (any `explain` takes).
    #[arg(long, value_delimiter = ',')]
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
    /// Layer probed by grad_cam, linear_approx and the excitation methods.
    #[arg(long)]
    pub layer: Option<String>,
    /// The class whose probability the games follow (`K`), or each image's
    /// best class (`top1`).
    #[arg(long, default_value = "top1")]
    pub target: String,
    /// Metrics, comma-separated: deletion, insertion, sanity.
    #[arg(long, value_delimiter = ',', default_value = "deletion,insertion")]
    pub metrics: Vec<String>,
    /// Pixels removed or inserted per step [default: the input's width].
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub step: usize,
    /// Images per forward pass of the deletion and insertion games.
    #[arg(long, default_value_t = 16, allow_negative_numbers = true)]
    pub eval_batch: usize,
    /// Seed of the sanity check's random weights.
    #[arg(long, default_value_t = 0)]
    pub sanity_seed: u64,
    /// Resize the short side to this many pixels before the centre crop.
    #[arg(long, default_value_t = 256, allow_negative_numbers = true)]
    pub resize: u32,
    /// Side of the centre crop (the model's input).
    #[arg(long, default_value_t = 224, allow_negative_numbers = true)]
    pub size: u32,
    /// Channel means of the normalisation (r,g,b).
    #[arg(long, value_parser = parse_triple, default_value = "0.485,0.456,0.406", allow_hyphen_values = true)]
    pub mean: [f32; 3],
    /// Channel standard deviations of the normalisation (r,g,b).
    #[arg(long, value_parser = parse_triple, default_value = "0.229,0.224,0.225", allow_hyphen_values = true)]
    pub std: [f32; 3],
    /// This run's share of the images, `K/N` (0 <= K < N): every N-th
    /// image from the K-th, so N runs (a SLURM array, a Kubernetes indexed
    /// job) cover them all.
    #[arg(long)]
    pub shard: Option<String>,
    /// Merge the reports of the folders given as inputs (each a shard's
    /// `--out`) into `--out/report.json` instead of scoring images.
    #[arg(long)]
    pub merge: bool,
    /// Memory the run may plan to use (`4G`, `512M`, bytes) [default: 3/4
    /// of the machine's available memory].
    #[arg(long, value_parser = parse_size)]
    pub max_memory: Option<u64>,
    /// Output folder: `images/STEM.json` per image (an image whose file is
    /// already there is not scored again) and `report.json`.
    #[arg(long)]
    pub out: PathBuf,
    /// Images or folders of images (with `--merge`: shards' output folders).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

/// Scores the images (or merges shards), writes the report, prints the table.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    if args.out.exists() && !args.out.is_dir() {
        return Err(format!("--out {}: exists and is not a folder", args.out.display()).into());
    }
    if args.merge {
        return merge(&args);
    }
    let metrics = parse_metrics(&args.metrics)?;
    let methods = method_list(&args.method, &args.lrp, &args.rise, &args.extremal)?;
    let preprocess = Preprocess {
        resize: Some(args.resize),
        crop: Some(args.size),
        mean: args.mean,
        std: args.std,
    };
    preprocess.validate()?;
    let (shard, shards) = match &args.shard {
        Some(s) => parse_shard(s)?,
        None => (0, 1),
    };
    if args.eval_batch == 0 || args.eval_batch > 4096 {
        return Err(format!("--eval-batch must lie in 1..=4096, got {}", args.eval_batch).into());
    }
    let budget = MemoryBudget::from_option(args.max_memory);
    let model = load_model(
        args.model.as_deref(),
        args.arch.as_deref(),
        args.weights.as_deref(),
        args.seed,
        &budget,
    )?;
    let layers = method_layers(&model, &methods, args.layer.as_deref())?;
    let target = TargetSpec::parse(args.target.trim(), model.num_classes())?;
    if matches!(target, TargetSpec::Top(n) if n > 1) {
        return Err("--target: the games follow one class per image (K or top1)".into());
    }
    if metrics.contains(&"sanity") && model.architecture().is_none() {
        return Err("--metrics sanity re-randomises the weights, which only the presets can set (not an ONNX graph)".into());
    }
    let all_inputs = expand_inputs(&args.inputs)?;
    let all_stems = unique_stems(&all_inputs);
    let mine: Vec<(PathBuf, String)> = all_inputs
        .into_iter()
        .zip(all_stems)
        .enumerate()
        .filter(|(i, _)| i % shards == shard)
        .map(|(_, p)| p)
        .collect();
    let images_dir = args.out.join("images");
    std::fs::create_dir_all(&images_dir)
        .map_err(|e| format!("--out {}: {e}", images_dir.display()))?;
    let forms = model_forms(&model, &methods, &layers)?;
    let job = Job {
        model: &model,
        forms: &forms,
        methods: &methods,
        layers: &layers,
        target,
        metrics: &metrics,
        preprocess: &preprocess,
        budget: &budget,
        causal: CausalOptions {
            step: args.step,
            batch_size: args.eval_batch,
            ..CausalOptions::default()
        },
        sanity_seed: args.sanity_seed,
    };
    let bar = progress(mine.len() as u64);
    let (mut images, mut failed, mut resumed) = (Vec::new(), Vec::new(), 0usize);
    for (path, stem) in &mine {
        let file = images_dir.join(format!("{stem}.json"));
        match read_scores(&file, stem) {
            Some(done) => {
                resumed += 1;
                images.push(done);
            }
            None => match job.score(path, stem)? {
                Ok(scores) => {
                    let text = serde_json::to_string_pretty(&scores)?;
                    write_atomic(&file, text.as_bytes())?;
                    images.push(scores);
                }
                Err(error) => failed.push(Failure {
                    stem: stem.clone(),
                    path: path.display().to_string(),
                    error,
                }),
            },
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let report = Report::new(
        model.describe(),
        methods.iter().map(|m| m.name().to_string()).collect(),
        metrics.iter().map(|m| m.to_string()).collect(),
        images,
        failed,
    );
    finish(&args.out, &report)?;
    if resumed > 0 {
        sightline::errln!(
            "{resumed} image(s) already scored in {} were kept",
            images_dir.display()
        );
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What every image is scored with.
struct Job<'a> {
    model: &'a Model<f32>,
    forms: &'a [(Model<f32>, Vec<usize>)],
    methods: &'a [Method],
    layers: &'a [String],
    target: TargetSpec,
    metrics: &'a [&'static str],
    preprocess: &'a Preprocess,
    budget: &'a MemoryBudget,
    causal: CausalOptions,
    sanity_seed: u64,
}

impl Job<'_> {
    /// One image's scores, or why it could not be scored (an error of the
    /// options, met on the first image, ends the run).
    fn score(&self, path: &Path, stem: &str) -> Result<Result<ImageScores, String>, CliError> {
        let encoded = match EncodedImage::read(path) {
            Ok(e) => e,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let (w, h) = (encoded.width, encoded.height);
        let (iw, ih) = self.preprocess.input_size(w, h);
        let batch = self
            .methods
            .iter()
            .map(Method::images_per_pass)
            .fold(self.causal.batch_size, usize::max);
        let shape = [batch, self.model.channels(), ih as usize, iw as usize];
        let needed = self
            .preprocess
            .memory_bytes(w, h)
            .saturating_add(model_pass_bytes(self.model, &shape, false));
        if let Err(e) = self
            .budget
            .check(format!("{} ({w} x {h})", path.display()), needed)
        {
            return Ok(Err(e.to_string()));
        }
        let prepared = match self.preprocess.prepare(&encoded) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let x = &prepared.tensor;
        let logits = self.model.logits(x)?;
        if logits.data().iter().any(|v| !v.is_finite()) {
            return Ok(Err(format!(
                "{}: the model's logits are not finite",
                path.display()
            )));
        }
        let class = self.target.classes(&logits)?.first().copied().unwrap_or(0);
        let maps = self.maps(x, class)?;
        let mut methods = BTreeMap::new();
        for (m, map) in self.methods.iter().zip(&maps) {
            let mut scores = MethodScores::default();
            for (metric, mode) in [
                ("deletion", CausalMode::Deletion),
                ("insertion", CausalMode::Insertion),
            ] {
                if self.metrics.contains(&metric) {
                    let curve = causal_metric(self.model, x, map, Some(class), mode, &self.causal)?;
                    match mode {
                        CausalMode::Deletion => scores.deletion_auc = Some(curve.auc),
                        CausalMode::Insertion => scores.insertion_auc = Some(curve.auc),
                    }
                }
            }
            methods.insert(m.name().to_string(), scores);
        }
        if self.metrics.contains(&"sanity") {
            let steps = cascading_randomization(
                self.model,
                x,
                &Target::Class(class),
                self.methods,
                self.sanity_seed,
            )?;
            for (k, m) in self.methods.iter().enumerate() {
                let entries = steps
                    .iter()
                    .map(|s| SanityEntry {
                        layer: s.layer.clone(),
                        spearman: s.correlations[k].0,
                        spearman_abs: s.correlations[k].1,
                    })
                    .collect();
                if let Some(scores) = methods.get_mut(m.name()) {
                    scores.sanity = Some(entries);
                }
            }
        }
        Ok(Ok(ImageScores {
            stem: stem.to_string(),
            path: path.display().to_string(),
            class,
            methods,
        }))
    }

    /// Each method's map of `x` for `class`, at the input's size.
    fn maps(&self, x: &Tensor<f32>, class: usize) -> Result<Vec<Tensor<f32>>, CliError> {
        let mut maps: Vec<Option<Tensor<f32>>> = vec![None; self.methods.len()];
        for (model, idx) in self.forms {
            let methods: Vec<Method> = idx.iter().map(|&i| self.methods[i].clone()).collect();
            let ex = Explainer::for_methods(model, x, &methods, &kept_layers(self.layers, idx))?;
            let requests: Vec<_> = idx
                .iter()
                .map(|&i| {
                    let opts = SaliencyOptions {
                        layer: Some(self.layers[i].clone()),
                        resize: Resize::Input,
                        ..SaliencyOptions::default()
                    };
                    (self.methods[i].clone(), opts)
                })
                .collect();
            for (&i, mut got) in idx
                .iter()
                .zip(ex.saliency_requests(&requests, &[Target::Class(class)])?)
            {
                maps[i] = got.pop().map(|s| s.map);
            }
        }
        maps.into_iter()
            .map(|m| m.ok_or_else(|| CliError::from("a method gave no map")))
            .collect()
    }
}

/// The metrics named, without repeats, in `METRICS`' order.
fn parse_metrics(names: &[String]) -> Result<Vec<&'static str>, CliError> {
    let mut out = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let Some(&m) = METRICS.iter().find(|&&m| m == name) else {
            return Err(format!(
                "--metrics: unknown metric `{name}` ({})",
                METRICS.join(", ")
            )
            .into());
        };
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        return Err("--metrics: name at least one metric".into());
    }
    out.sort_by_key(|m| METRICS.iter().position(|x| x == m));
    Ok(out)
}

/// The scores already written for `stem`, if its file is there and whole.
fn read_scores(file: &Path, stem: &str) -> Option<ImageScores> {
    let text = read_regular_text(file, "scores", MAX_JSON_BYTES).ok()?;
    serde_json::from_str::<ImageScores>(&text)
        .ok()
        .filter(|s| s.stem == stem)
}

/// `--merge`: the shards' reports into one.
fn merge(args: &Args) -> Result<ExitCode, CliError> {
    let mut reports = Vec::new();
    for dir in &args.inputs {
        let path = dir.join("report.json");
        let text = read_regular_text(&path, "report", 1 << 30)?;
        let report: Report = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a report of `evaluate`: {e}", path.display()))?;
        reports.push(report);
    }
    let report = Report::merge(&reports)?;
    std::fs::create_dir_all(&args.out).map_err(|e| format!("--out {}: {e}", args.out.display()))?;
    finish(&args.out, &report)?;
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Writes `report.json` and prints the table.
fn finish(out: &Path, report: &Report) -> Result<(), CliError> {
    write_atomic(
        &out.join("report.json"),
        serde_json::to_string_pretty(report)?.as_bytes(),
    )?;
    let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    let mut text = format!(
        "{:<34} {:>7} {:>13} {:>14} {:>18}\n",
        "method", "images", "deletion AUC", "insertion AUC", "sanity (all rand.)"
    );
    for m in &report.methods {
        let s = &report.summary[m];
        text.push_str(&format!(
            "{:<34} {:>7} {:>13} {:>14} {:>18}\n",
            m,
            s.images,
            cell(s.deletion_auc),
            cell(s.insertion_auc),
            cell(s.sanity.last().and_then(|(_, r)| *r)),
        ));
    }
    for f in &report.failed {
        text.push_str(&format!("failed: {}: {}\n", f.path, f.error));
    }
    text.push_str(&format!("report: {}\n", out.join("report.json").display()));
    sightline::out!("{text}");
    Ok(())
}

/// A progress bar with the time left, on standard error.
fn progress(len: u64) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:30} {pos}/{len} images  {elapsed_precise}  ETA {eta}")
    {
        pb.set_style(style);
    }
    pb
}
