//! The tiny fixture models reproduce PyTorch's logits, and expose the layer
//! paths the fixture cases probe.

use safetensors::{Dtype, SafeTensors};
use sightline_autograd::{Retain, Tape};
use sightline_layers::{Architecture, Canonizer, MergeBatchNorm, Model};
use sightline_tensor::Tensor;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest parses")
}

fn f32_tensor(file: &SafeTensors<'_>, key: &str) -> Tensor<f32> {
    let view = file.tensor(key).expect(key);
    assert_eq!(view.dtype(), Dtype::F32, "{key}");
    let data = view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Tensor::from_vec(view.shape().to_vec(), data).expect("shape")
}

/// (name, architecture, model, cases bytes) for each fixture model.
fn models() -> Vec<(String, Architecture, Model<f32>, Vec<u8>)> {
    let m = manifest();
    let entries = m["models"].as_object().expect("models");
    assert!(!entries.is_empty());
    entries
        .iter()
        .map(|(name, entry)| {
            let arch = Architecture::from_json_value(&entry["architecture"]).expect("architecture");
            let weights = fixtures().join(entry["weights"].as_str().expect("weights"));
            let model = Model::<f32>::from_safetensors(&arch, &weights).expect("weights load");
            let cases =
                std::fs::read(fixtures().join(entry["cases_file"].as_str().expect("cases")))
                    .expect("cases file");
            (name.clone(), arch, model, cases)
        })
        .collect()
}

fn assert_close(name: &str, found: &Tensor<f32>, expected: &Tensor<f32>) {
    assert_eq!(found.shape(), expected.shape(), "{name}: shape");
    let tol = 1e-4 * expected.max_abs();
    let diff = found.max_abs_diff(expected).expect("same shape");
    println!("{name}: max |diff| {diff:e}, tolerance {tol:e}");
    assert!(diff <= tol, "{name}: max |diff| {diff} > tolerance {tol}");
}

#[test]
fn logits_match_pytorch() {
    for (name, _, model, cases) in models() {
        let cases = SafeTensors::deserialize(&cases).expect("cases parse");
        let input = f32_tensor(&cases, "input");
        let expected = f32_tensor(&cases, "logits");
        assert!(expected.max_abs() > 0.0);

        let logits = model.logits(&input).expect("forward");
        assert_close(&name, &logits, &expected);

        // The same through a recording tape, with every layer output kept:
        // the same bits as `logits`; and with the batch norms merged into
        // the convolutions (a canonizer), within the bar.
        let merged = MergeBatchNorm::exact().apply(&model).expect("merge");
        for (m, same_bits) in [(&model, true), (&merged, false)] {
            let mut tape = Tape::new(Retain::All);
            let x = tape.input(input.clone());
            let y = m.forward(&mut tape, &x).expect("forward on tape");
            assert_close(&name, y.value(), &expected);
            if same_bits {
                assert_eq!(y.value(), &logits, "{name}: recording changes nothing");
            }
        }
    }
}

#[test]
fn logits_in_f64_match_too() {
    for (name, arch, _, cases) in models() {
        let m = manifest();
        let weights = fixtures().join(m["models"][&name]["weights"].as_str().expect("weights"));
        let model = Model::<f64>::from_safetensors(&arch, weights).expect("f64 load");
        let cases = SafeTensors::deserialize(&cases).expect("cases parse");
        let input = f32_tensor(&cases, "input").cast::<f64>();
        let expected = f32_tensor(&cases, "logits");
        let logits = model.logits(&input).expect("forward").cast::<f32>();
        assert_close(&name, &logits, &expected);
    }
}

#[test]
fn layer_paths_include_the_probed_layers() {
    let m = manifest();
    for (name, _, model, _) in models() {
        let paths = model.layer_paths();
        // Every layer a case of the manifest names.
        for case in m["models"][&name]["cases"].as_array().expect("cases") {
            for key in [
                "saliency_layer",
                "contrast_layer",
                "classifier_layer",
                "layer",
            ] {
                if let Some(layer) = case["params"][key].as_str() {
                    assert!(
                        model.has_layer(layer),
                        "{name}: {layer} missing from {paths:?}"
                    );
                }
            }
        }
        let wanted: &[&str] = match name.as_str() {
            "tiny_vgg" => &[
                "features.9",
                "features.5",
                "features.8",
                "classifier.4",
                "classifier.6",
                "avgpool",
            ],
            "tiny_resnet" => &[
                "layer4",
                "layer3",
                "layer2",
                "avgpool",
                "fc",
                "layer4.0.conv2",
                "layer1.0",
            ],
            other => panic!("unexpected fixture model {other}"),
        };
        for layer in wanted {
            assert!(paths.iter().any(|p| p == layer), "{name}: {layer} missing");
        }
        assert!(!model.has_layer("features.99"));
        assert!(!model.has_layer(""));
    }
}

#[test]
fn tape_registers_every_layer_output_with_its_shape() {
    for (name, _, model, cases) in models() {
        let cases = SafeTensors::deserialize(&cases).expect("cases parse");
        let input = f32_tensor(&cases, "input");
        let mut tape = Tape::new(Retain::All);
        let x = tape.input(input);
        model.forward(&mut tape, &x).expect("forward");
        for path in model.layer_paths() {
            assert!(
                tape.layer_output(&path).is_some(),
                "{name}: no output for {path}"
            );
        }
        let shape = |p: &str| {
            tape.var_shape(tape.layer_output(p).expect(p).id)
                .expect("shape")
                .to_vec()
        };
        match name.as_str() {
            "tiny_vgg" => {
                assert_eq!(shape("features.9"), [2, 32, 8, 8]);
                assert_eq!(shape("features.5"), [2, 16, 8, 8]);
                assert_eq!(shape("features"), [2, 32, 4, 4]);
                assert_eq!(shape("avgpool"), [2, 32, 2, 2]);
                assert_eq!(shape("classifier.4"), [2, 32]);
                assert_eq!(shape("classifier.6"), [2, 10]);
                // Dropout is the identity: its output is its input variable.
                let (a, b) = (
                    tape.layer_output("classifier.4"),
                    tape.layer_output("classifier.5"),
                );
                assert_eq!(a.map(|o| o.id), b.map(|o| o.id));
                let d = model.default_layers();
                assert_eq!(
                    (d.grad_cam.as_str(), d.excitation.as_str()),
                    ("features.9", "features.5")
                );
            }
            "tiny_resnet" => {
                assert_eq!(shape("conv1"), [1, 8, 48, 48]);
                assert_eq!(shape("maxpool"), [1, 8, 24, 24]);
                assert_eq!(shape("layer2"), [1, 16, 12, 12]);
                assert_eq!(shape("layer3"), [1, 32, 6, 6]);
                assert_eq!(shape("layer4"), [1, 64, 3, 3]);
                assert_eq!(shape("layer4.0.conv2"), [1, 64, 3, 3]);
                assert_eq!(shape("layer4.0.downsample.0"), [1, 64, 3, 3]);
                assert_eq!(shape("avgpool"), [1, 64, 1, 1]);
                assert_eq!(shape("fc"), [1, 10]);
                // The block's relu is reused: its registered output is the block's output.
                let block = tape.layer_output("layer4.0").map(|o| o.id);
                assert_eq!(tape.layer_output("layer4.0.relu").map(|o| o.id), block);
                assert_eq!(tape.layer_output("layer4").map(|o| o.id), block);
            }
            _ => {}
        }
    }
}
