//! Training the demo model with sightline's own autograd: softmax
//! cross-entropy, parameter gradients from the tape, and Adam with decoupled
//! weight decay (AdamW) on [`Model::parameters_mut`].

use super::dataset::{self, CLASSES, IMAGE_SIZE};
use super::{DemoError, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sightline_autograd::{Retain, RuleSet, Tape, VarId};
use sightline_layers::{Architecture, Model};
use sightline_tensor::softmax::cross_entropy;
use sightline_tensor::Tensor;
use std::collections::HashMap;
use std::sync::Arc;

/// The demo model's architecture: a small VGG (4 conv + ReLU stages with
/// 2 x 2 max pools, global average pool, 64-wide classifier, 6 classes).
pub const ARCHITECTURE_JSON: &str = r#"{"kind":"vgg","cfg":[16,"M",32,"M",64,"M",64,"M"],"batch_norm":false,"avgpool":[1,1],"hidden":64,"num_classes":6}"#;

/// The demo model's architecture, parsed from [`ARCHITECTURE_JSON`].
pub fn demo_architecture() -> Architecture {
    Architecture::from_json(ARCHITECTURE_JSON).expect("the demo architecture is valid JSON")
}

/// Parts of each batch computed in parallel.
const SHARDS: usize = 2;

/// Options of [`train`].
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    /// Seed of the initial weights and of the shuffling.
    pub seed: u64,
    /// Seed of the training images.
    pub data_seed: u64,
    /// Passes over the training images.
    pub epochs: usize,
    /// Number of training images.
    pub train_size: usize,
    /// Number of validation images (seed [`dataset::VALIDATION_SEED`]) scored after each epoch.
    pub val_size: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate (cosine decay to 0 over the run).
    pub lr: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// Image side in pixels.
    pub size: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            data_seed: dataset::TRAIN_SEED,
            epochs: 6,
            train_size: 8_000,
            val_size: 600,
            batch_size: 32,
            lr: 3e-3,
            weight_decay: 1e-4,
            size: IMAGE_SIZE,
        }
    }
}

/// Adam (Kingma and Ba 2015) with decoupled weight decay (Loshchilov and
/// Hutter 2019), state kept per parameter name.
#[derive(Clone, Debug)]
pub struct Adam {
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Denominator guard.
    pub eps: f32,
    /// Decoupled weight decay (applied to weights, not biases).
    pub weight_decay: f32,
    step: i32,
    moments: HashMap<String, (Vec<f32>, Vec<f32>)>,
}

impl Adam {
    /// An optimizer with the usual `beta1 = 0.9`, `beta2 = 0.999`, `eps = 1e-8`.
    pub fn new(weight_decay: f32) -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
            moments: HashMap::new(),
        }
    }

    /// Applies one update with learning rate `lr` from gradients by parameter
    /// name (as [`Tape::params`] names them); every trainable parameter must
    /// have its gradient, shaped like it.
    pub fn step(
        &mut self,
        model: &mut Model<f32>,
        grads: &HashMap<String, Tensor<f32>>,
        lr: f32,
    ) -> Result<()> {
        self.step += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.step);
        let c2 = 1.0 - b2.powi(self.step);
        for (name, param) in model.parameters_mut() {
            let g = grads
                .get(&name)
                .ok_or_else(|| DemoError::Invalid(format!("no gradient for parameter `{name}`")))?;
            if g.shape() != param.shape() {
                return Err(DemoError::Invalid(format!(
                    "gradient of `{name}` has shape {:?}, the parameter {:?}",
                    g.shape(),
                    param.shape()
                )));
            }
            let decay = if name.ends_with(".weight") {
                self.weight_decay
            } else {
                0.0
            };
            let (m, v) = self
                .moments
                .entry(name)
                .or_insert_with(|| (vec![0.0; g.len()], vec![0.0; g.len()]));
            let p = Arc::make_mut(param).data_mut();
            for (((p, &g), m), v) in p
                .iter_mut()
                .zip(g.data())
                .zip(m.iter_mut())
                .zip(v.iter_mut())
            {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *p -= lr * ((*m / c1) / ((*v / c2).sqrt() + self.eps) + decay * *p);
            }
        }
        Ok(())
    }
}

/// The mean cross-entropy of `model` on `x` against `targets` and the
/// gradient of every trainable parameter, by name.
pub fn loss_and_gradients(
    model: &Model<f32>,
    x: &Tensor<f32>,
    targets: &[usize],
) -> Result<(f32, HashMap<String, Tensor<f32>>)> {
    let mut tape = Tape::new(Retain::Minimal).training();
    let input = tape.input(x.clone());
    let logits = model.forward(&mut tape, &input)?;
    let (loss, seed) = cross_entropy(logits.value(), targets)?;
    let params: Vec<(String, VarId)> = tape.params().to_vec();
    let ids: Vec<VarId> = params.iter().map(|(_, id)| *id).collect();
    let grads = tape.backward(logits.id(), &seed, &RuleSet::standard(), &ids)?;
    Ok((
        loss,
        params.into_iter().map(|(n, _)| n).zip(grads).collect(),
    ))
}

/// Gradients by parameter name.
pub type Gradients = HashMap<String, Tensor<f32>>;

/// [`loss_and_gradients`] of a batch computed in `shards` parts in parallel
/// (a fixed number, so the result does not depend on the number of threads)
/// and combined as the whole batch's mean.
pub fn sharded_loss_and_gradients(
    model: &Model<f32>,
    samples: &[dataset::Sample],
    shards: usize,
) -> Result<(f32, HashMap<String, Tensor<f32>>)> {
    use rayon::prelude::*;
    let per = samples.len().div_ceil(shards.max(1)).max(1);
    let parts: Vec<Result<(usize, f32, Gradients)>> = samples
        .par_chunks(per)
        .map(|chunk| {
            let targets: Vec<usize> = chunk.iter().map(|s| s.class).collect();
            let (loss, grads) = loss_and_gradients(model, &dataset::to_input(chunk), &targets)?;
            Ok((chunk.len(), loss, grads))
        })
        .collect();
    let total = samples.len() as f32;
    let mut loss = 0.0;
    let mut sum: HashMap<String, Tensor<f32>> = HashMap::new();
    for part in parts {
        let (n, l, grads) = part?;
        let w = n as f32 / total;
        loss += w * l;
        for (name, g) in grads {
            match sum.get_mut(&name) {
                Some(acc) => acc
                    .data_mut()
                    .iter_mut()
                    .zip(g.data())
                    .for_each(|(a, &b)| *a += w * b),
                None => {
                    sum.insert(name, g.map(|v| w * v));
                }
            }
        }
    }
    Ok((loss, sum))
}

/// The fraction of `samples` whose highest logit is their class.
pub fn accuracy(model: &Model<f32>, samples: &[dataset::Sample]) -> Result<f64> {
    if samples.is_empty() {
        return Ok(0.0);
    }
    let mut correct = 0usize;
    for chunk in samples.chunks(100) {
        let logits = model.logits(&dataset::to_input(chunk))?;
        let k = logits.shape()[1];
        for (row, s) in logits.data().chunks(k).zip(chunk) {
            correct += usize::from(argmax(row) == s.class);
        }
    }
    Ok(correct as f64 / samples.len() as f64)
}

/// Index of the first largest value.
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// What [`train`] reports after each step.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Steps done so far, over all epochs.
    pub step: usize,
    /// Steps of the whole run.
    pub total_steps: usize,
    /// Loss of the step's batch.
    pub loss: f32,
    /// Validation accuracy, on the last step of an epoch.
    pub val_accuracy: Option<f64>,
}

/// One epoch's summary.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochStats {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub mean_loss: f64,
    /// Validation accuracy at the end of the epoch.
    pub val_accuracy: f64,
}

/// A trained model and its history.
#[derive(Clone, Debug)]
pub struct Trained {
    /// The model.
    pub model: Model<f32>,
    /// One entry per epoch.
    pub epochs: Vec<EpochStats>,
}

/// Trains the demo architecture from random weights on generated images.
pub fn train(opts: &TrainOptions, on_progress: &mut dyn FnMut(&Progress)) -> Result<Trained> {
    let model = Model::<f32>::random(&demo_architecture(), opts.seed)?;
    train_model(model, opts, on_progress)
}

/// Trains `model` (with [`CLASSES`]`.len()` outputs) on generated images.
pub fn train_model(
    mut model: Model<f32>,
    opts: &TrainOptions,
    on_progress: &mut dyn FnMut(&Progress),
) -> Result<Trained> {
    if opts.batch_size == 0 || opts.train_size == 0 || opts.epochs == 0 {
        return Err(DemoError::Invalid(
            "epochs, train size and batch size must be positive".into(),
        ));
    }
    if model.num_classes() != CLASSES.len() {
        return Err(DemoError::Invalid(format!(
            "the model has {} classes, the demo images {}",
            model.num_classes(),
            CLASSES.len()
        )));
    }
    let validation = dataset::generate(dataset::VALIDATION_SEED, 0, opts.val_size, opts.size);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x5EED);
    let mut optimizer = Adam::new(opts.weight_decay);
    let steps_per_epoch = opts.train_size.div_ceil(opts.batch_size);
    let total_steps = steps_per_epoch * opts.epochs;
    let mut order: Vec<u64> = (0..opts.train_size as u64).collect();
    let mut history = Vec::new();
    let mut step = 0;
    for epoch in 1..=opts.epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0f64;
        for (i, batch) in order.chunks(opts.batch_size).enumerate() {
            let samples: Vec<dataset::Sample> = {
                use rayon::prelude::*;
                batch
                    .par_iter()
                    .map(|&j| dataset::sample(opts.data_seed, j, opts.size))
                    .collect()
            };
            let (loss, grads) = sharded_loss_and_gradients(&model, &samples, SHARDS)?;
            if !loss.is_finite() {
                return Err(DemoError::Invalid(format!(
                    "training diverged at step {step} (loss {loss}); try a smaller learning rate"
                )));
            }
            let lr = opts.lr
                * 0.5
                * (1.0 + (std::f32::consts::PI * step as f32 / total_steps as f32).cos());
            optimizer.step(&mut model, &grads, lr)?;
            step += 1;
            loss_sum += loss as f64;
            let last = i + 1 == steps_per_epoch;
            let val_accuracy = if last {
                Some(accuracy(&model, &validation)?)
            } else {
                None
            };
            on_progress(&Progress {
                epoch,
                step,
                total_steps,
                loss,
                val_accuracy,
            });
            if let Some(val_accuracy) = val_accuracy {
                history.push(EpochStats {
                    epoch,
                    mean_loss: loss_sum / steps_per_epoch as f64,
                    val_accuracy,
                });
            }
        }
    }
    Ok(Trained {
        model,
        epochs: history,
    })
}
