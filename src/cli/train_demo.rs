//! `sightline train-demo`: trains the demo model on generated images with
//! sightline's own autograd and writes its weights and model card.

use indicatif::{ProgressBar, ProgressStyle};
use sightline::demo::dataset::{self, CLASSES, IMAGE_SIZE, MEAN, STD};
use sightline::demo::train::{accuracy, train, TrainOptions, ARCHITECTURE_JSON};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `train-demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to write the weights (float32 safetensors); the model card goes
    /// beside it with the extension `.json`. The shipped model is
    /// `assets/demo_model.safetensors`: retraining it in place needs
    /// `--overwrite`.
    #[arg(long)]
    out: PathBuf,
    /// Replace the weights and the model card if they exist (without it, an
    /// existing file is refused before training).
    #[arg(long)]
    overwrite: bool,
    /// Seed of the initial weights and of the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seed of the training images.
    #[arg(long, default_value_t = dataset::TRAIN_SEED)]
    data_seed: u64,
    /// Passes over the training images.
    #[arg(long, default_value_t = TrainOptions::default().epochs)]
    epochs: usize,
    /// Number of training images.
    #[arg(long, default_value_t = TrainOptions::default().train_size)]
    train_size: usize,
    /// Images per optimizer step.
    #[arg(long, default_value_t = TrainOptions::default().batch_size)]
    batch_size: usize,
    /// Peak learning rate of Adam (cosine decay to 0).
    #[arg(long, default_value_t = TrainOptions::default().lr)]
    lr: f32,
    /// Decoupled weight decay.
    #[arg(long, default_value_t = TrainOptions::default().weight_decay)]
    weight_decay: f32,
    /// Validation images scored after each epoch.
    #[arg(long, default_value_t = TrainOptions::default().val_size)]
    val_size: usize,
    /// Held-out test images (seed 3) scored at the end.
    #[arg(long, default_value_t = 1000)]
    test_size: usize,
    /// Memory training may plan to use (`4G`, `512M`, bytes) [default: 3/4
    /// of the machine's available memory].
    #[arg(long, value_parser = sightline::budget::parse_size)]
    max_memory: Option<u64>,
}

/// Trains, reports the held-out accuracy and writes the weights and the card.
pub fn run(args: Args) -> Result<ExitCode, super::CliError> {
    let opts = TrainOptions {
        seed: args.seed,
        data_seed: args.data_seed,
        epochs: args.epochs,
        train_size: args.train_size,
        val_size: args.val_size,
        batch_size: args.batch_size,
        lr: args.lr,
        weight_decay: args.weight_decay,
        size: IMAGE_SIZE,
    };
    if !(opts.lr.is_finite() && opts.lr > 0.0) {
        return Err(format!("--lr must be positive, got {}", opts.lr).into());
    }
    // The images are generated up front: f32 pixels and a mask each; then
    // one batch's pass with its gradients.
    let budget = sightline::budget::MemoryBudget::from_option(args.max_memory);
    let images = [opts.train_size, opts.val_size, args.test_size]
        .iter()
        .fold(0u64, |a, &n| a.saturating_add(n as u64));
    let side = IMAGE_SIZE as u64;
    let arch = sightline_layers::Architecture::from_json(ARCHITECTURE_JSON)?;
    let pass = sightline::footprint::architecture_footprint::<f32>(
        &arch,
        &[opts.batch_size, 3, IMAGE_SIZE, IMAGE_SIZE],
        rayon::current_num_threads(),
    )?;
    budget.check(
        format!(
            "--train-size {} --val-size {} --test-size {} --batch-size {} (the generated images and one batch)",
            opts.train_size, opts.val_size, args.test_size, opts.batch_size
        ),
        sightline::budget::product(13, &[images, side, side])
            .saturating_add(pass.total())
            .saturating_add(pass.weights.saturating_mul(3)),
    )?;
    let card_path = args.out.with_extension("json");
    // Fail before training, not after, when the output folder is missing
    // or a file would be replaced without `--overwrite`.
    for p in [&args.out, &card_path] {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(format!("output folder `{}` does not exist", dir.display()).into());
            }
        }
        if !args.overwrite && p.exists() {
            return Err(format!(
                "`{}` exists: pass --overwrite to replace it (or another --out)",
                p.display()
            )
            .into());
        }
    }
    sightline::errln!(
        "training {} on {} generated images x {} epochs (batch {})",
        ARCHITECTURE_JSON,
        opts.train_size,
        opts.epochs,
        opts.batch_size
    );
    let started = Instant::now();
    let steps = (opts.train_size.div_ceil(opts.batch_size.max(1)) * opts.epochs) as u64;
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} steps, {elapsed_precise} (eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let trained = train(&opts, &mut |p| {
        bar.set_position(p.step as u64);
        bar.set_message(format!("epoch {} loss {:.3}", p.epoch, p.loss));
        if let Some(acc) = p.val_accuracy {
            let line = format!(
                "epoch {:>2}: last loss {:.4}, validation accuracy {:.1}%",
                p.epoch,
                p.loss,
                100.0 * acc
            );
            // A hidden bar (stderr not a terminal) drops its println.
            if bar.is_hidden() {
                sightline::errln!("{line}");
            } else {
                bar.println(line);
            }
        }
    })?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let test = dataset::generate(dataset::TEST_SEED, 0, args.test_size, IMAGE_SIZE);
    let test_accuracy = accuracy(&trained.model, &test)?;
    sightline::outln!(
        "trained in {seconds:.1} s; held-out accuracy {:.1}% on {} images (seed {})",
        100.0 * test_accuracy,
        test.len(),
        dataset::TEST_SEED
    );

    let card = serde_json::json!({
        "architecture": serde_json::from_str::<serde_json::Value>(ARCHITECTURE_JSON)?,
        "classes": CLASSES,
        "image_size": IMAGE_SIZE,
        "mean": [MEAN, MEAN, MEAN],
        "std": [STD, STD, STD],
        "training": {
            "seed": opts.seed,
            "data_seed": opts.data_seed,
            "epochs": opts.epochs,
            "train_size": opts.train_size,
            "batch_size": opts.batch_size,
            "lr": f32_json(opts.lr),
            "weight_decay": f32_json(opts.weight_decay),
            "optimizer": "adamw",
            "seconds": (seconds * 10.0).round() / 10.0,
            "validation_accuracy": trained.epochs.last().map(|e| e.val_accuracy),
        },
        "test": { "seed": dataset::TEST_SEED, "images": test.len(), "accuracy": test_accuracy },
    });
    write_atomic(&args.out, &trained.model.to_safetensors_bytes()?)?;
    write_atomic(
        &card_path,
        (serde_json::to_string_pretty(&card)? + "\n").as_bytes(),
    )?;
    sightline::outln!("wrote {} and {}", args.out.display(), card_path.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` atomically ([`sightline::render::write_atomic`]: an
/// exclusively created temporary file, renamed over `path`).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), super::CliError> {
    Ok(sightline::render::write_atomic(path, bytes)?)
}

/// An f32 as the JSON number of its shortest decimal form (0.003, not 0.003000000026).
fn f32_json(v: f32) -> serde_json::Value {
    v.to_string()
        .parse::<f64>()
        .map_or(serde_json::Value::Null, serde_json::Value::from)
}
