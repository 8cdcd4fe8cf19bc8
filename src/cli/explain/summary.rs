//! `summary.json`: the options, every image's classes and maps with their
//! files and ranges, the failures and the timings of an `explain` run.

use super::maps::{ms_since, ImageResult};
use super::setup::Setup;
use super::Args;
use serde_json::{json, Value};
use sightline_attribution::Method;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

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

/// The JSON summary of the run: `failed` lists every image not explained
/// with why (an image interrupted by a signal says so), `interrupted` names
/// the signal that stopped the run (null when it ran to the end).
pub(super) fn summary_json(
    args: &Args,
    s: &Setup,
    done: &[ImageResult],
    failed: &[(PathBuf, String)],
    (grid_file, grid_rows): (Option<&str>, usize),
    interrupted: Option<&str>,
    start: Instant,
) -> Value {
    json!({
        "arch": args.arch,
        "model": args.model.as_ref().map(|m| m.display().to_string()),
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
        "interrupted": interrupted,
        "grid": grid_file,
        "grid_rows": grid_rows,
        "threads": rayon::current_num_threads(),
        "timings_ms": { "total": ms_since(start) },
    })
}
