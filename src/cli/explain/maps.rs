//! The maps of one image: one forward pass, then every method and class
//! (nothing is written here).

use super::setup::Setup;
use super::Args;
use crate::cli::CliError;
use image::RgbImage;
use sightline::render::{MapRef, ValueRange};
use sightline_attribution::{Explainer, Resize, SaliencyOptions, Target};
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
    // All methods and classes from the one forward pass; methods sharing a
    // rule set share their backward passes, so the time is shared too.
    let requests: Vec<_> = s
        .methods
        .iter()
        .zip(&s.layers)
        .map(|(method, layer)| {
            let opts = SaliencyOptions {
                layer: Some(layer.clone()),
                resize: Resize::Input,
                smooth: args.smooth,
                ..SaliencyOptions::default()
            };
            (method.clone(), opts)
        })
        .collect();
    let targets: Vec<Target<f32>> = classes.iter().map(|&(k, _)| Target::Class(k)).collect();
    let answers = explainer.saliency_requests(&requests, &targets)?;
    let ms_each = ms_since(t2) / (requests.len() * targets.len()).max(1) as f64;
    let mut maps = Vec::new();
    for (mi, per_class) in answers.into_iter().enumerate() {
        for (sal, &(class, _)) in per_class.into_iter().zip(&classes) {
            let map = MapRef::from_tensor(&sal.map)?;
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
