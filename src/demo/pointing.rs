//! TorchRay's pointing game (Zhang et al. 2016): a saliency map "points" at
//! its first maximum (row-major) after being resized (bilinear) to the
//! image's size; the point hits when some pixel of the target class's mask
//! lies strictly closer than the tolerance. Accuracy is the mean over classes
//! of `hits / (hits + misses)`.

use super::dataset::{self, Sample};
use super::{DemoError, Result};
use sightline_attribution::{Explainer, Method, Resize, SaliencyOptions, Target};
use sightline_layers::Model;
use sightline_tensor::Tensor;

/// TorchRay's tolerance, 15 pixels, for 224-pixel images.
pub const TORCHRAY_TOLERANCE: f64 = 15.0;

/// The tolerance scaled from TorchRay's 15 px at 224 px to `size` pixels.
pub fn scaled_tolerance(size: usize) -> f64 {
    TORCHRAY_TOLERANCE * size as f64 / 224.0
}

/// A class's ground-truth region: a boolean occupancy map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height x width` values, row-major.
    pub data: Vec<bool>,
}

impl Mask {
    /// An empty mask.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![false; width * height],
        }
    }

    /// Whether a pixel of the mask lies at a distance strictly below
    /// `tolerance` from `point = (x, y)` (TorchRay's acceptance disc).
    pub fn hit(&self, point: (usize, usize), tolerance: f64) -> bool {
        let t2 = tolerance * tolerance;
        let (px, py) = (point.0 as f64, point.1 as f64);
        self.data.iter().enumerate().any(|(i, &m)| {
            let (x, y) = ((i % self.width) as f64, (i / self.width) as f64);
            m && (x - px) * (x - px) + (y - py) * (y - py) < t2
        })
    }
}

/// The `(x, y)` of the first maximum, row-major, of a `width`-wide map
/// (NaNs are never a maximum).
pub fn first_max(map: &[f32], width: usize) -> (usize, usize) {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in map.iter().enumerate() {
        if !v.is_nan() && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    let i = best.map_or(0, |(i, _)| i);
    (i % width.max(1), i / width.max(1))
}

/// The center baseline's point: `(width / 2, height / 2)`.
pub fn center_point(width: usize, height: usize) -> (usize, usize) {
    (width / 2, height / 2)
}

/// One class of one image to point at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trial {
    /// The class (logit index).
    pub class: usize,
    /// Where the class's objects are.
    pub mask: Mask,
}

/// Hits and misses per class of one pointing method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Score {
    /// The method's name (`center` for the baseline).
    pub name: String,
    /// Hits per class.
    pub hits: Vec<usize>,
    /// Misses per class.
    pub misses: Vec<usize>,
}

impl Score {
    /// An empty score over `classes` classes.
    pub fn new(name: &str, classes: usize) -> Self {
        Self {
            name: name.to_string(),
            hits: vec![0; classes],
            misses: vec![0; classes],
        }
    }

    /// Counts one trial.
    pub fn record(&mut self, class: usize, hit: bool) {
        if hit {
            self.hits[class] += 1;
        } else {
            self.misses[class] += 1;
        }
    }

    /// `hits / (hits + misses)` of a class, `None` when it had no trial.
    pub fn class_accuracy(&self, class: usize) -> Option<f64> {
        let n = self.hits[class] + self.misses[class];
        (n > 0).then(|| self.hits[class] as f64 / n as f64)
    }

    /// The mean of the class accuracies over the classes that had a trial
    /// (TorchRay counts a class without trial as 0; the two agree when every
    /// class has one). 0 when there was no trial at all.
    pub fn accuracy(&self) -> f64 {
        let accs: Vec<f64> = (0..self.hits.len())
            .filter_map(|c| self.class_accuracy(c))
            .collect();
        if accs.is_empty() {
            0.0
        } else {
            accs.iter().sum::<f64>() / accs.len() as f64
        }
    }

    /// Total hits and trials.
    pub fn totals(&self) -> (usize, usize) {
        let h: usize = self.hits.iter().sum();
        (h, h + self.misses.iter().sum::<usize>())
    }
}

/// The pointing game of the center baseline and a list of methods.
#[derive(Clone, Debug, PartialEq)]
pub struct PointingGame {
    /// Methods played (default layers).
    pub methods: Vec<Method>,
    /// Tolerance in pixels of the mask's image.
    pub tolerance: f64,
    /// One score per row: `center`, then each method.
    pub scores: Vec<Score>,
}

impl PointingGame {
    /// A game over `classes` classes.
    pub fn new(methods: &[Method], classes: usize, tolerance: f64) -> Self {
        let mut scores = vec![Score::new("center", classes)];
        scores.extend(methods.iter().map(|m| Score::new(m.name(), classes)));
        Self {
            methods: methods.to_vec(),
            tolerance,
            scores,
        }
    }

    /// The score of a row by name (`center` or a method's name).
    pub fn score(&self, name: &str) -> Option<&Score> {
        self.scores.iter().find(|s| s.name == name)
    }

    /// Plays every trial of a batch: `trials[i]` lists the classes to point
    /// at in item `i` of `input` (N x 3 x H x W). One forward pass serves all
    /// methods; the classes of the items are explained together, round by round.
    pub fn play(
        &mut self,
        model: &Model<f32>,
        input: &Tensor<f32>,
        trials: &[Vec<Trial>],
    ) -> Result<()> {
        let n = input.shape().first().copied().unwrap_or(0);
        if trials.len() != n {
            return Err(DemoError::Invalid(format!(
                "{} trial lists for {n} images",
                trials.len()
            )));
        }
        for t in trials.iter().flatten() {
            if t.class >= self.scores[0].hits.len()
                || t.mask.data.len() != t.mask.width * t.mask.height
            {
                return Err(DemoError::Invalid(format!(
                    "bad trial for class {}",
                    t.class
                )));
            }
            let hit = t
                .mask
                .hit(center_point(t.mask.width, t.mask.height), self.tolerance);
            self.scores[0].record(t.class, hit);
        }
        if self.methods.is_empty() || trials.iter().all(Vec::is_empty) {
            return Ok(());
        }
        let explainer = Explainer::new(model, input)?;
        let rounds = trials.iter().map(Vec::len).max().unwrap_or(0);
        for round in 0..rounds {
            let picked: Vec<Option<&Trial>> = trials.iter().map(|t| t.get(round)).collect();
            let Some(first) = picked.iter().flatten().next() else {
                continue;
            };
            let (width, height) = (first.mask.width, first.mask.height);
            if picked
                .iter()
                .flatten()
                .any(|t| (t.mask.width, t.mask.height) != (width, height))
            {
                return Err(DemoError::Invalid(
                    "the masks of one batch must have one size".into(),
                ));
            }
            let classes: Vec<usize> = picked.iter().map(|t| t.map_or(0, |t| t.class)).collect();
            let opts = SaliencyOptions {
                resize: Resize::To { width, height },
                ..SaliencyOptions::default()
            };
            for (row, method) in self.methods.iter().enumerate() {
                let sal = explainer.saliency(method, &Target::PerItem(classes.clone()), &opts)?;
                for (i, t) in picked.iter().enumerate() {
                    let Some(t) = t else { continue };
                    let plane = &sal.map.data()[i * width * height..(i + 1) * width * height];
                    let hit = t.mask.hit(first_max(plane, width), self.tolerance);
                    self.scores[row + 1].record(t.class, hit);
                }
            }
        }
        Ok(())
    }

    /// The table: one row per method and the center baseline, accuracy in
    /// percent (`n/a` without trials).
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<34} {:>9} {:>15}\n",
            "method", "accuracy", "hits / trials"
        );
        for s in &self.scores {
            let (h, n) = s.totals();
            let acc = if n == 0 {
                "n/a".to_string()
            } else {
                format!("{:.1}%", 100.0 * s.accuracy())
            };
            out += &format!("{:<34} {acc:>9} {:>15}\n", s.name, format!("{h} / {n}"));
        }
        out
    }
}

/// The trial of a generated image: its class and mask.
pub fn sample_trial(s: &Sample) -> Trial {
    Trial {
        class: s.class,
        mask: Mask {
            width: s.size,
            height: s.size,
            data: s.mask.clone(),
        },
    }
}

/// Plays the pointing game on `count` generated images of set `seed`, `batch` at a time.
pub fn play_generated(
    model: &Model<f32>,
    methods: &[Method],
    seed: u64,
    count: usize,
    size: usize,
    tolerance: f64,
    batch: usize,
) -> Result<PointingGame> {
    let mut game = PointingGame::new(methods, model.num_classes(), tolerance);
    let batch = batch.max(1);
    let mut start = 0;
    while start < count {
        let samples = dataset::generate(seed, start as u64, batch.min(count - start), size);
        let trials: Vec<Vec<Trial>> = samples.iter().map(|s| vec![sample_trial(s)]).collect();
        game.play(model, &dataset::to_input(&samples), &trials)?;
        start += samples.len();
    }
    Ok(game)
}
