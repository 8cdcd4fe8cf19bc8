//! `summary.json`: the plan, every image's classes and maps with their
//! files and ranges, the failures, the timings and the throughput of an
//! `explain` run.

use super::inputs::ms_since;
use super::maps::ImageResult;
use super::plan::Plan;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// The JSON record of one image, with its maps' data dropped.
fn image_json(plan: &Plan, r: &ImageResult) -> Value {
    let classes: Vec<Value> = r
        .classes
        .iter()
        .map(|&(k, p)| json!({ "class": k, "label": plan.labels.name(k), "score": p }))
        .collect();
    let maps: Vec<Value> = r
        .maps
        .iter()
        .map(|m| {
            json!({
                "method": plan.methods[m.method].method.name(),
                "class": m.class,
                "layer": m.layer,
                "width": m.width,
                "height": m.height,
                "shape": m.npy_shape,
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
        "batch": r.batch,
        "classes": classes,
        "maps": maps,
        "timings_ms": r.timings,
    })
}

/// How the run went, beside the plan: what was explained and what was
/// not, the grid, the signal that stopped it, and its timings.
pub(super) struct RunRecord<'a> {
    /// The images explained, in input order.
    pub(super) done: &'a [ImageResult],
    /// Every image not explained, with why (an image interrupted by a
    /// signal says so).
    pub(super) failed: &'a [(PathBuf, String)],
    /// The grid's file, if written, and its rows.
    pub(super) grid: (Option<&'a str>, usize),
    /// The signal that stopped the run (`None`: it ran to the end).
    pub(super) interrupted: Option<&'a str>,
    /// When the run started (before planning).
    pub(super) start: Instant,
    /// Milliseconds from the first image's load to the last image's files.
    pub(super) images_ms: f64,
}

/// The JSON summary of the run.
pub(super) fn summary_json(plan: &Plan, run: &RunRecord<'_>) -> Value {
    let m = &plan.model;
    let images_per_s = if run.images_ms > 0.0 {
        Some(run.done.len() as f64 / (run.images_ms / 1e3))
    } else {
        None
    };
    json!({
        "arch": m.arch,
        "model": m.onnx.as_ref().map(|p| p.display().to_string()),
        "weights": m.weights.as_ref().map(|w| w.display().to_string()),
        "methods": plan.methods.iter().map(|p| p.method.name()).collect::<Vec<_>>(),
        "layers": plan.methods.iter().map(|p| (p.method.name(), p.layer.clone())).collect::<BTreeMap<_, _>>(),
        "target": plan.target_text,
        "preprocess": {
            "resize": plan.inputs.preprocess.resize,
            "crop": plan.inputs.preprocess.crop,
            "mean": plan.inputs.preprocess.mean,
            "std": plan.inputs.preprocess.std,
        },
        "colormap": plan.outputs.colormap.map(|c| c.name()),
        "colormaps": plan.methods.iter().map(|p| (p.method.name(), p.colormap.name())).collect::<BTreeMap<_, _>>(),
        "normalize": plan.outputs.normalize.name(),
        "alpha": plan.outputs.alpha,
        "smooth": plan.methods.iter().map(|p| p.smooth).fold(0.0, f64::max),
        "batch": plan.batch,
        "images": run.done.iter().map(|r| image_json(plan, r)).collect::<Vec<_>>(),
        "failed": run.failed.iter().map(|(p, e)| json!({ "image": p.display().to_string(), "error": e })).collect::<Vec<_>>(),
        "interrupted": run.interrupted,
        "grid": run.grid.0,
        "grid_rows": run.grid.1,
        "threads": rayon::current_num_threads(),
        "images_per_s": images_per_s,
        "timings_ms": { "total": ms_since(run.start), "images": run.images_ms },
    })
}
