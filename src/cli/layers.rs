//! `sightline layers MODEL`: the layers of a model that can be probed
//! (`--layer`) or given their own rules, with the shape of their output.

use super::explain::load_model;
use super::CliError;
use sightline::budget::{model_pass_bytes, parse_size, MemoryBudget};
use sightline::outln;
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
    #[arg(long, allow_negative_numbers = true)]
    size: Option<usize>,
    /// Memory the command may plan to use (`4G`, `512M`, bytes) [default:
    /// 3/4 of the machine's available memory].
    #[arg(long, value_parser = parse_size)]
    max_memory: Option<u64>,
}

/// Prints one line per layer: its path and output shape.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let path = Path::new(&args.model);
    let is_onnx = args.model.ends_with(".onnx");
    let budget = MemoryBudget::from_option(args.max_memory);
    let model = if is_onnx {
        load_model(Some(path), None, None, 0, &budget)?
    } else {
        load_model(None, Some(&args.model), None, 0, &budget)?
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
    // A preset's shapes come from a forward pass on zeros.
    budget.check(
        format!("--size: a pass of {} on {shape:?}", model.describe()),
        model_pass_bytes(&model, &shape, false),
    )?;
    let layers = model.layer_shapes(&shape)?;
    let defaults = model.default_layers();
    let width = layers.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
    // A closed stdout (`| head`) ends the listing quietly.
    if !outln!("{} on {shape:?}: {} layers", model.describe(), layers.len()) {
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
        if !outln!("{path:<width$}  {shape:?}{notes}") {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}
