//! `sightline layers MODEL`: the layers of a model that can be probed
//! (`--layer`) or given their own rules, with the shape of their output.

use super::explain::load_model;
use super::CliError;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// Arguments of `layers`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model: an ONNX file, a preset name (vgg16, resnet50, ...) or an
    /// architecture JSON file.
    model: String,
    /// Input height and width [default: the ONNX graph's declared size, 224
    /// for presets].
    #[arg(long)]
    size: Option<usize>,
}

/// Prints one line per layer: its path and output shape.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let path = Path::new(&args.model);
    let is_onnx = args.model.ends_with(".onnx");
    let model = if is_onnx {
        load_model(Some(path), None, None, 0)?
    } else {
        load_model(None, Some(&args.model), None, 0)?
    };
    let shape = match (model.graph(), args.size) {
        (_, Some(0)) => return Err("--size must be positive".into()),
        (Some(g), size) => {
            let mut s = g.declared_shape().to_vec();
            if let Some(side) = size {
                s[2] = side;
                s[3] = side;
            }
            s
        }
        (None, size) => vec![
            1,
            model.channels(),
            size.unwrap_or(224),
            size.unwrap_or(224),
        ],
    };
    let layers = model.layer_shapes(&shape)?;
    let defaults = model.default_layers();
    let width = layers.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    // A closed stdout (`| head`) ends the listing quietly.
    if writeln!(
        out,
        "{} on {shape:?}: {} layers",
        model.describe(),
        layers.len()
    )
    .is_err()
    {
        return Ok(ExitCode::SUCCESS);
    }
    for (path, shape) in &layers {
        let mut notes = Vec::new();
        if *path == defaults.grad_cam {
            notes.push("grad_cam default");
        }
        if *path == defaults.excitation {
            notes.push("excitation default");
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("  ({})", notes.join(", "))
        };
        if writeln!(out, "{path:<width$}  {shape:?}{notes}").is_err() {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}
