//! The model and what it is asked: architecture specs, model loading, and the
//! methods and layers of `--method` and `--layer` (shared with `bench`).

use crate::cli::CliError;
use serde_json::Value;
use sightline::budget::MemoryBudget;
use sightline::files::{check_regular, read_regular_text, MAX_JSON_BYTES};
use sightline::footprint::architecture_footprint;
use sightline_attribution::{group_by_form, Method};
use sightline_layers::{Architecture, Model};
use std::path::Path;

/// The architecture named by `spec`: a preset name, or a JSON file when
/// `spec` is an existing file or ends in `.json`. The file holds an
/// architecture object, or an object with one under `"architecture"` (as
/// `assets/demo_model.json` and reference manifests' model entries do).
pub fn architecture(spec: &str) -> Result<Architecture, CliError> {
    let path = Path::new(spec);
    // Anything on disk by that name (a FIFO, a folder, a link loop) is read
    // as a file, so that the message says what it is.
    if std::fs::symlink_metadata(path).is_err() && !spec.ends_with(".json") {
        return Ok(Architecture::preset(spec)?);
    }
    let err =
        |e: &dyn std::fmt::Display| -> CliError { format!("architecture file {spec}: {e}").into() };
    let text = read_regular_text(path, "architecture file", MAX_JSON_BYTES)?;
    let value: Value = serde_json::from_str(&text).map_err(|e| err(&e))?;
    let value = value.get("architecture").unwrap_or(&value);
    Architecture::from_json_value(value).map_err(|e| err(&e))
}

/// The model: the ONNX file `onnx`, or `arch` with the weights of
/// `weights`, or with random weights from `seed`. The weights an
/// architecture declares (widths, class counts) must fit `budget` before
/// they are allocated.
pub fn load_model(
    onnx: Option<&Path>,
    arch_spec: Option<&str>,
    weights: Option<&Path>,
    seed: u64,
    budget: &MemoryBudget,
) -> Result<Model<f32>, CliError> {
    let arch_spec = match (onnx, arch_spec) {
        (Some(path), None) if weights.is_none() => {
            // The graph's weights are converted from the file: about its size.
            if let Some(meta) = std::fs::metadata(path).ok().filter(|m| m.is_file()) {
                budget.check(format!("the model {}", path.display()), meta.len())?;
            }
            return Model::from_onnx(path)
                .map_err(|e| format!("model {}: {e}", path.display()).into());
        }
        (None, Some(spec)) => spec,
        _ => return Err("give either --model FILE.onnx, or --arch (with --weights)".into()),
    };
    let arch = architecture(arch_spec)?;
    // The smallest input (1 x 3 x 1 x 1) leaves the weights alone.
    let declared = architecture_footprint::<f32>(&arch, &[1, 3, 1, 1], 1)?.weights;
    budget.check(format!("the weights of `{arch_spec}`"), declared)?;
    match weights {
        Some(path) => {
            let size = check_regular(path, "weights file", u64::MAX)?;
            // Read whole, then converted: the file and the weights at once.
            budget.check(
                format!("loading the weights {}", path.display()),
                size.saturating_add(declared),
            )?;
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

/// The layers a forward pass for the methods `idx` must keep: their probes
/// other than the input.
pub fn kept_layers<'a>(layers: &'a [String], idx: &[usize]) -> Vec<&'a str> {
    idx.iter()
        .map(|&i| layers[i].as_str())
        .filter(|l| !l.is_empty())
        .collect()
}

/// A form of the model and the indices of the methods that run on it.
pub type ModelFormGroup = (Model<f32>, Vec<usize>);

/// The model in each form the methods run on (`ModelForm`), keeping the
/// layers they probe, with the indices of its methods: one forward pass
/// each.
pub fn model_forms(
    model: &Model<f32>,
    methods: &[Method],
    layers: &[String],
) -> Result<Vec<ModelFormGroup>, CliError> {
    group_by_form(methods)
        .into_iter()
        .map(|(form, idx)| Ok((form.apply(model, &kept_layers(layers, &idx))?, idx)))
        .collect()
}
