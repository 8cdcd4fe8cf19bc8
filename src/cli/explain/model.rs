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

/// The layer `--layer` names for each method (`None`: the method's
/// default): `L` for every method that probes a layer, or
/// `METHOD=L,METHOD=L` for each method named. A layer given to no method
/// that probes one, a method named there but not asked for, one that
/// probes no layer, or named twice, is an error naming it.
fn layer_choices(spec: &str, methods: &[Method]) -> Result<Vec<Option<String>>, CliError> {
    let mut out: Vec<Option<String>> = vec![None; methods.len()];
    if !spec.contains('=') {
        if !methods.iter().any(Method::takes_layer) {
            let names: Vec<&str> = methods.iter().map(Method::name).collect();
            return Err(format!(
                "--layer {spec}: no method asked for probes a layer ({} explain the input)",
                names.join(", ")
            )
            .into());
        }
        for (o, m) in out.iter_mut().zip(methods) {
            if m.takes_layer() {
                *o = Some(spec.trim().to_string());
            }
        }
        return Ok(out);
    }
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, layer)) = pair.split_once('=') else {
            return Err(format!(
                "--layer {spec}: `{pair}` is not METHOD=LAYER (give one layer for every method that probes one, or METHOD=LAYER pairs)"
            )
            .into());
        };
        let name = name.trim();
        let method: Method = name
            .parse()
            .map_err(|e| CliError::from(format!("--layer {pair}: {e}")))?;
        let Some(i) = methods.iter().position(|m| m.name() == method.name()) else {
            return Err(format!("--layer {pair}: {name} is not asked for (--method)").into());
        };
        if !methods[i].takes_layer() {
            return Err(
                format!("--layer {pair}: {name} probes no layer (it explains the input)").into(),
            );
        }
        if out[i].is_some() {
            return Err(format!("--layer {spec}: {name} is given two layers").into());
        }
        out[i] = Some(layer.trim().to_string());
    }
    Ok(out)
}

/// The layer each method probes: `--layer` (one layer for every method
/// that probes one, or `METHOD=LAYER` pairs) for the methods that take
/// one, else the method's default (`""` is the input). Every layer named
/// must be one of the model's.
pub fn method_layers(
    model: &Model<f32>,
    methods: &[Method],
    layer: Option<&str>,
) -> Result<Vec<String>, CliError> {
    let chosen = match layer {
        Some(spec) => layer_choices(spec, methods)?,
        None => vec![None; methods.len()],
    };
    for l in chosen.iter().flatten() {
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
        .zip(chosen)
        .map(|(m, l)| l.unwrap_or_else(|| m.default_layer(&defaults)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_layers::Architecture;

    fn model() -> Model<f32> {
        let arch = Architecture::from_json(
            r#"{"kind":"vgg","cfg":[4,"M",8,"M"],"avgpool":[2,2],"hidden":16,"num_classes":10}"#,
        )
        .unwrap();
        Model::random(&arch, 1).unwrap()
    }

    fn methods(names: &str) -> Vec<Method> {
        names.split(',').map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn one_layer_goes_to_every_method_that_probes_one() {
        let m = model();
        let got = method_layers(
            &m,
            &methods("gradient,grad_cam,layer_grad_cam,excitation_backprop"),
            Some("features.3"),
        )
        .unwrap();
        assert_eq!(got, ["", "features.3", "features.3", "features.3"]);
        // Defaults: Grad-CAM's layer for the Captum forms, the input else.
        let got = method_layers(&m, &methods("saliency,guided_grad_cam,grad_cam"), None).unwrap();
        assert_eq!(got, ["", "features.4", "features.4"]);
        let e = method_layers(&m, &methods("gradient,saliency"), Some("features.3"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no method asked for probes a layer"), "{e}");
        let e = method_layers(&m, &methods("grad_cam"), Some("features.9"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown layer `features.9`"), "{e}");
    }

    #[test]
    fn per_method_layers_go_to_their_method_and_refuse_the_others() {
        let m = model();
        let asked = methods("gradient,grad_cam,excitation_backprop,layer_grad_cam");
        let got = method_layers(
            &m,
            &asked,
            Some("grad_cam=features.1, excitation_backprop=features.2"),
        )
        .unwrap();
        assert_eq!(got, ["", "features.1", "features.2", "features.4"]);
        for (spec, says) in [
            (
                "guided_grad_cam=features.1",
                "guided_grad_cam is not asked for",
            ),
            ("gradient=features.1", "gradient probes no layer"),
            ("gradcam=features.1", "unknown method `gradcam`"),
            (
                "grad_cam=features.1,grad_cam=features.2",
                "grad_cam is given two layers",
            ),
            (
                "grad_cam=features.1,features.2",
                "`features.2` is not METHOD=LAYER",
            ),
            ("grad_cam=features.7", "unknown layer `features.7`"),
        ] {
            let e = method_layers(&m, &asked, Some(spec))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{spec}: {e}");
        }
    }
}
