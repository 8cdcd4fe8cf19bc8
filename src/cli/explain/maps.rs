//! The maps of one image: one forward pass, then every method and class
//! (nothing is written here).

use super::model::kept_layers;
use super::setup::Setup;
use super::Args;
use crate::cli::CliError;
use image::RgbImage;
use sightline::budget::model_pass_bytes;
use sightline::imageio::EncodedImage;
use sightline::render::{MapRef, ValueRange};
use sightline_attribution::{Explainer, Method, Resize, Saliency, SaliencyOptions, Target};
use sightline_tensor::softmax::softmax;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One map of one image: a method and a class.
pub(super) struct MapResult {
    pub(super) method: usize,
    pub(super) class: usize,
    pub(super) layer: String,
    pub(super) width: usize,
    pub(super) height: usize,
    pub(super) values: Vec<f32>,
    pub(super) ms: f64,
    pub(super) files: BTreeMap<&'static str, String>,
    /// The map's own (min, max) of finite values.
    pub(super) range: Option<ValueRange>,
    /// The (min, max) stretched to the colormap.
    pub(super) scale: Option<ValueRange>,
}

/// One explained image.
pub(super) struct ImageResult {
    pub(super) stem: String,
    pub(super) path: PathBuf,
    pub(super) original_size: (u32, u32),
    /// The picture the model saw (emptied once no longer needed).
    pub(super) image: RgbImage,
    pub(super) input_size: (u32, u32),
    pub(super) classes: Vec<(usize, f32)>,
    pub(super) maps: Vec<MapResult>,
    pub(super) timings: BTreeMap<&'static str, f64>,
}

pub(super) fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The outcome of one image: explained, or failed on its own account.
pub(super) enum Outcome {
    Done(Box<ImageResult>),
    Failed(String),
}

/// Reads one image, runs one forward pass and computes every map (nothing is written).
pub(super) fn explain_image(
    s: &Setup,
    args: &Args,
    path: &Path,
    stem: &str,
) -> Result<Outcome, CliError> {
    let t0 = Instant::now();
    let encoded = match EncodedImage::read(path) {
        Ok(e) => e,
        Err(e) => return Ok(Outcome::Failed(e.to_string())),
    };
    // Everything this image will allocate, from its header, before decoding.
    let (w, h) = (encoded.width, encoded.height);
    let (iw, ih) = s.preprocess.input_size(w, h);
    let shape = [1, s.model.channels(), ih as usize, iw as usize];
    // RISE runs its masked copies a batch at a time.
    let batch = s
        .methods
        .iter()
        .map(Method::images_per_pass)
        .fold(1, usize::max);
    let pass_shape = [batch, shape[1], shape[2], shape[3]];
    let needed = s
        .preprocess
        .memory_bytes(w, h)
        .saturating_add(model_pass_bytes(&s.model, &shape, s.transformed_weights))
        .saturating_add(if batch > 1 {
            model_pass_bytes(&s.model, &pass_shape, s.transformed_weights)
        } else {
            0
        });
    let what = format!("{} ({w} x {h}, model input {iw} x {ih})", path.display());
    if let Err(e) = s.budget.check(what, needed) {
        return Ok(Outcome::Failed(e.to_string()));
    }
    let prepared = match s.preprocess.prepare(&encoded) {
        Ok(p) => p,
        Err(e) => return Ok(Outcome::Failed(e.to_string())),
    };
    drop(encoded);
    let mut timings = BTreeMap::new();
    timings.insert("load", ms_since(t0));
    // One forward pass per form of the model the methods run on (as it
    // is, batch norms merged, Zennit's canonized; see `ModelForm`), all
    // methods of a form and all classes from it. Every image reaches the
    // model with a short side of `--resize` (and the crop's size), so an
    // error here (an input too small for the model, a layer a method
    // cannot use) is an error of the options: fatal, and met on the first
    // image, before any file is written.
    let mut answers: Vec<Vec<Saliency<f32>>> = vec![Vec::new(); s.methods.len()];
    let mut classes: Vec<(usize, f32)> = Vec::new();
    let mut forward_ms = 0.0;
    let t2 = Instant::now();
    for (model, idx) in &s.forms {
        let tf = Instant::now();
        let keep = kept_layers(&s.layers, idx);
        let methods: Vec<_> = idx.iter().map(|&i| s.methods[i].clone()).collect();
        let explainer = Explainer::for_methods(model, &prepared.tensor, &methods, &keep)?;
        if let Some(k) = explainer
            .logits()
            .data()
            .iter()
            .position(|v| !v.is_finite())
        {
            return Ok(Outcome::Failed(format!(
                "{}: the model's logits are not finite (class {k} is {}): the weights or the input overflow float32",
                path.display(),
                explainer.logits().data()[k]
            )));
        }
        if classes.is_empty() {
            // The classes from the first form's logits (the forms compute
            // the same function, to rounding).
            let probs = softmax(explainer.logits())?;
            classes = s
                .target
                .classes(explainer.logits())?
                .into_iter()
                .map(|k| (k, probs.data()[k]))
                .collect();
        }
        forward_ms += ms_since(tf);
        // Methods sharing a rule set share their backward passes.
        let requests: Vec<_> = idx
            .iter()
            .map(|&i| {
                let opts = SaliencyOptions {
                    layer: Some(s.layers[i].clone()),
                    resize: Resize::Input,
                    smooth: args.smooth,
                    ..SaliencyOptions::default()
                };
                (s.methods[i].clone(), opts)
            })
            .collect();
        let targets: Vec<Target<f32>> = classes.iter().map(|&(k, _)| Target::Class(k)).collect();
        for (&i, got) in idx
            .iter()
            .zip(explainer.saliency_requests(&requests, &targets)?)
        {
            answers[i] = got;
        }
    }
    timings.insert("forward", forward_ms);
    let ms_each = (ms_since(t2) - forward_ms) / (s.methods.len() * classes.len()).max(1) as f64;
    let mut maps = Vec::new();
    for (mi, per_class) in answers.into_iter().enumerate() {
        for (sal, &(class, _)) in per_class.into_iter().zip(&classes) {
            let map = MapRef::from_tensor(&sal.map)?;
            if map.values().iter().any(|v| !v.is_finite()) {
                return Ok(Outcome::Failed(format!(
                    "{}: the {} map of class {class} holds NaN or infinite values (the gradients overflow float32)",
                    path.display(),
                    s.methods[mi].name()
                )));
            }
            maps.push(MapResult {
                method: mi,
                class,
                layer: sal.layer,
                width: map.width(),
                height: map.height(),
                values: map.values().to_vec(),
                ms: ms_each,
                files: BTreeMap::new(),
                range: ValueRange::of(map.values()),
                scale: None,
            });
        }
    }
    timings.insert("saliency", ms_since(t2) - forward_ms);
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
