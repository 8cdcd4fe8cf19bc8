//! The maps of a batch of images of one model-input size: one forward pass
//! per form of the model, then every method and class on the batch
//! (nothing is written here). Each image's maps are the same bits as when
//! it is explained alone.

use super::inputs::{ms_since, Loaded};
use super::model::kept_layers;
use super::plan::Plan;
use crate::cli::CliError;
use image::RgbImage;
use sightline::render::ValueRange;
use sightline_attribution::{Explainer, Resize, Saliency, SaliencyOptions, Target};
use sightline_tensor::softmax::softmax;
use sightline_tensor::Tensor;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// One map of one image: a method and a class.
pub(super) struct MapResult {
    /// Index of the method in the plan.
    pub(super) method: usize,
    pub(super) class: usize,
    pub(super) layer: String,
    /// The 2-D map drawn in the pictures: `height` rows of `width`.
    pub(super) width: usize,
    pub(super) height: usize,
    pub(super) values: Vec<f32>,
    /// Captum's raw attribution, written as the `.npy` (the map is for
    /// the other methods); dropped once written.
    pub(super) raw: Option<Vec<f32>>,
    /// The shape of the `.npy`: the raw attribution's (without the batch
    /// axis), or `h x w`.
    pub(super) npy_shape: Vec<usize>,
    pub(super) ms: f64,
    pub(super) files: BTreeMap<&'static str, String>,
    /// The map's own (min, max) of finite values.
    pub(super) range: Option<ValueRange>,
    /// The (min, max) stretched to the colormap.
    pub(super) scale: Option<ValueRange>,
}

/// One explained image.
pub(super) struct ImageResult {
    /// Its position among the run's inputs.
    pub(super) index: usize,
    pub(super) stem: String,
    pub(super) path: PathBuf,
    pub(super) original_size: (u32, u32),
    /// The picture the model saw (emptied once no longer needed).
    pub(super) image: RgbImage,
    /// The model input, kept until written when `--save-input`.
    pub(super) input: Option<Tensor<f32>>,
    pub(super) input_size: (u32, u32),
    /// Images in the forward pass it was part of.
    pub(super) batch: usize,
    pub(super) classes: Vec<(usize, f32)>,
    pub(super) maps: Vec<MapResult>,
    pub(super) timings: BTreeMap<&'static str, f64>,
}

/// The outcome of one image: explained, or failed on its own account.
pub(super) enum Outcome {
    Done(Box<ImageResult>),
    Failed {
        index: usize,
        path: PathBuf,
        message: String,
    },
}

/// Every method's answers for every class of a batch.
struct BatchAnswers {
    /// Per item, its classes with their softmax scores, best first.
    classes: Vec<Vec<(usize, f32)>>,
    /// `answers[method][t]`: the method's answer for each item's `t`-th class.
    answers: Vec<Vec<Saliency<f32>>>,
    forward_ms: f64,
    saliency_ms: f64,
}

/// What a pass over a batch gives: its answers, or the rows whose logits
/// are not finite (with the class and value that are not).
enum Pass {
    Answers(BatchAnswers),
    NonFinite(Vec<(usize, usize, f32)>),
}

/// Runs the forward passes and every method on the batch `x` (B x C x H x W).
fn run_batch(plan: &Plan, x: &Tensor<f32>) -> Result<Pass, CliError> {
    let mut answers: Vec<Vec<Saliency<f32>>> = vec![Vec::new(); plan.methods.len()];
    let mut classes: Vec<Vec<(usize, f32)>> = Vec::new();
    let (mut forward_ms, mut saliency_ms) = (0.0, 0.0);
    // One forward pass per form of the model the methods run on (as it
    // is, batch norms merged, Zennit's canonized; see `ModelForm`), all
    // methods of a form and all classes from it.
    for (model, idx) in &plan.model.forms {
        let t = Instant::now();
        let layers: Vec<String> = plan.methods.iter().map(|m| m.layer.clone()).collect();
        let keep = kept_layers(&layers, idx);
        let methods: Vec<_> = idx
            .iter()
            .map(|&i| plan.methods[i].method.clone())
            .collect();
        let explainer = Explainer::for_methods(model, x, &methods, &keep)?;
        let logits = explainer.logits();
        let [_, k] = logits.dims2("logits")?;
        let bad: Vec<(usize, usize, f32)> = logits
            .data()
            .chunks(k)
            .enumerate()
            .filter_map(|(row, l)| {
                l.iter()
                    .position(|v| !v.is_finite())
                    .map(|c| (row, c, l[c]))
            })
            .collect();
        if !bad.is_empty() {
            return Ok(Pass::NonFinite(bad));
        }
        if classes.is_empty() {
            // The classes from the first form's logits (the forms compute
            // the same function, to rounding).
            let probs = softmax(logits)?;
            classes = plan
                .target
                .classes_per_item(logits)?
                .into_iter()
                .enumerate()
                .map(|(row, ks)| {
                    ks.into_iter()
                        .map(|c| (c, probs.data()[row * k + c]))
                        .collect()
                })
                .collect();
        }
        forward_ms += ms_since(t);
        let t = Instant::now();
        // Methods sharing a rule set share their backward passes.
        let requests: Vec<_> = idx
            .iter()
            .map(|&i| {
                let m = &plan.methods[i];
                let opts = SaliencyOptions {
                    layer: Some(m.layer.clone()),
                    resize: Resize::Input,
                    smooth: m.smooth,
                    ..SaliencyOptions::default()
                };
                (m.method.clone(), opts)
            })
            .collect();
        let targets: Vec<Target<f32>> = (0..plan.target.per_image())
            .map(|t| Target::PerItem(classes.iter().map(|c| c[t].0).collect()))
            .collect();
        for (&i, got) in idx
            .iter()
            .zip(explainer.saliency_requests(&requests, &targets)?)
        {
            answers[i] = got;
        }
        saliency_ms += ms_since(t);
    }
    Ok(Pass::Answers(BatchAnswers {
        classes,
        answers,
        forward_ms,
        saliency_ms,
    }))
}

/// One image's part of a batch answer: its map (`h x w`) and, for
/// Captum's methods, its raw attribution (shape without the batch axis).
struct ItemMap {
    height: usize,
    width: usize,
    values: Vec<f32>,
    raw: Option<Tensor<f32>>,
}

impl ItemMap {
    /// Item `i` of a batch answer.
    fn of(s: &Saliency<f32>, i: usize) -> Result<Self, CliError> {
        let [_, _, height, width] = s.map.dims4("map")?;
        Ok(ItemMap {
            height,
            width,
            values: s.map.select0(i)?.data().to_vec(),
            raw: s.attribution.as_ref().map(|a| a.select0(i)).transpose()?,
        })
    }

    /// Whether every value is finite.
    fn is_finite(&self) -> bool {
        self.values.iter().all(|v| v.is_finite())
            && !self.raw.as_ref().is_some_and(Tensor::has_non_finite)
    }
}

/// Explains a batch of images of one model-input size: every method and
/// class of each (nothing is written). An image whose logits or maps are
/// not finite fails alone; an error of the batch (a kernel, a layer) is
/// returned.
pub(super) fn explain_batch(plan: &Plan, batch: Vec<Loaded>) -> Result<Vec<Outcome>, CliError> {
    let mut items = batch;
    let mut out = Vec::new();
    let found = loop {
        if items.is_empty() {
            return Ok(out);
        }
        let tensors: Vec<Tensor<f32>> = items.iter().map(|l| l.tensor.clone()).collect();
        let x = Tensor::concat0(&tensors)?;
        drop(tensors);
        match run_batch(plan, &x)? {
            Pass::Answers(a) => break a,
            // Those images fail; the others run again without them.
            Pass::NonFinite(rows) => {
                for &(row, class, value) in rows.iter().rev() {
                    let l = items.remove(row);
                    out.push(Outcome::Failed {
                        index: l.index,
                        message: format!(
                            "{}: the model's logits are not finite (class {class} is {value}): the weights or the input overflow float32",
                            l.path.display()
                        ),
                        path: l.path,
                    });
                }
            }
        }
    };
    let n = items.len();
    let per_image = plan.target.per_image();
    let map_ms = found.saliency_ms / (plan.methods.len() * per_image * n).max(1) as f64;
    'items: for (i, (l, classes)) in items.into_iter().zip(found.classes).enumerate() {
        let mut maps = Vec::new();
        for (mi, per_class) in found.answers.iter().enumerate() {
            for (s, &(class, _)) in per_class.iter().zip(&classes) {
                let item = ItemMap::of(s, i)?;
                if !item.is_finite() {
                    out.push(Outcome::Failed {
                        index: l.index,
                        message: format!(
                            "{}: the {} map of class {class} holds NaN or infinite values (the gradients overflow float32)",
                            l.path.display(),
                            plan.methods[mi].method.name()
                        ),
                        path: l.path,
                    });
                    continue 'items;
                }
                let npy_shape = match &item.raw {
                    Some(r) => r.shape().to_vec(),
                    None => vec![item.height, item.width],
                };
                maps.push(MapResult {
                    method: mi,
                    class,
                    layer: s.layer.clone(),
                    width: item.width,
                    height: item.height,
                    range: ValueRange::of(&item.values),
                    values: item.values,
                    raw: item.raw.map(|r| r.data().to_vec()),
                    npy_shape,
                    ms: map_ms,
                    files: BTreeMap::new(),
                    scale: None,
                });
            }
        }
        let mut timings = BTreeMap::new();
        timings.insert("load", l.load_ms);
        timings.insert("forward", found.forward_ms / n as f64);
        timings.insert("saliency", found.saliency_ms / n as f64);
        out.push(Outcome::Done(Box::new(ImageResult {
            index: l.index,
            input_size: l.input_size(),
            stem: l.stem,
            path: l.path,
            original_size: l.original_size,
            image: l.picture,
            input: plan.outputs.save_input.then_some(l.tensor),
            batch: n,
            classes,
            maps,
            timings,
        })));
    }
    Ok(out)
}
