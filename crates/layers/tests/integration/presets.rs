//! Every preset builds and runs at 224 x 224; inputs of other sizes and shapes
//! behave as torchvision's models do.

use sightline_autograd::{Retain, Tape};
use sightline_layers::{Architecture, LayerError, Model, PRESET_NAMES};
use sightline_tensor::Tensor;

/// A deterministic input with values in [-1, 1).
fn input(shape: [usize; 4]) -> Tensor<f32> {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| ((i * 7919 + 13) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    Tensor::from_vec(shape.to_vec(), data).expect("shape")
}

fn check_preset(name: &str) {
    let arch = Architecture::preset(name).expect("preset");
    let model = Model::<f32>::random(&arch, 7).expect("random weights");
    assert_eq!(model.num_classes(), 1000);
    let x = input([1, 3, 224, 224]);
    let mut tape = Tape::new(Retain::Nothing);
    let xv = tape.input(x);
    let y = model.forward(&mut tape, &xv).expect("forward");
    assert_eq!(y.shape(), [1, 1000], "{name}");
    assert!(!y.value().has_non_finite(), "{name}: non-finite logits");
    assert!(y.value().max_abs() > 0.0, "{name}: all-zero logits");
    let d = model.default_layers();
    for layer in [&d.grad_cam, &d.excitation, &d.contrast, &d.classifier] {
        assert!(
            model.has_layer(layer),
            "{name}: default layer {layer} missing"
        );
    }
}

#[test]
fn vgg_presets_run_at_224() {
    for name in PRESET_NAMES
        .iter()
        .filter(|n| n.starts_with("vgg") && !n.ends_with("_bn"))
    {
        check_preset(name);
    }
}

#[test]
fn vgg_bn_presets_run_at_224() {
    for name in PRESET_NAMES
        .iter()
        .filter(|n| n.starts_with("vgg") && n.ends_with("_bn"))
    {
        check_preset(name);
    }
}

#[test]
fn resnet_and_alexnet_presets_run_at_224() {
    for name in PRESET_NAMES.iter().filter(|n| !n.starts_with("vgg")) {
        check_preset(name);
    }
}

#[test]
fn preset_list_and_unknown_names() {
    assert_eq!(PRESET_NAMES.len(), 14);
    assert_eq!(Architecture::preset_names(), PRESET_NAMES);
    match Architecture::preset("vgg17") {
        Err(LayerError::UnknownPreset { name, known }) => {
            assert_eq!(name, "vgg17");
            assert!(known.iter().any(|k| k == "vgg16_bn"));
        }
        other => panic!("expected UnknownPreset, got {other:?}"),
    }
    assert!(Architecture::preset("resnet018").is_err());
}

#[test]
fn default_layers_of_the_presets() {
    let d = |name: &str| {
        let arch = Architecture::preset(name).expect("preset");
        let m = Model::<f32>::random(&tiny_classes(arch), 1).expect("build");
        let d = m.default_layers();
        [d.grad_cam, d.excitation, d.contrast, d.classifier]
    };
    assert_eq!(
        d("vgg16"),
        ["features.29", "features.23", "classifier.4", "classifier.6"]
    );
    assert_eq!(
        d("vgg16_bn"),
        ["features.42", "features.33", "classifier.4", "classifier.6"]
    );
    assert_eq!(
        d("vgg11"),
        ["features.19", "features.15", "classifier.4", "classifier.6"]
    );
    assert_eq!(d("resnet50"), ["layer4", "layer3", "avgpool", "fc"]);
    assert_eq!(
        d("alexnet"),
        ["features.11", "features.5", "classifier.5", "classifier.6"]
    );
}

/// The preset with fewer classes (a smaller model to build in tests).
fn tiny_classes(arch: Architecture) -> Architecture {
    match arch {
        Architecture::Vgg(mut c) => {
            c.hidden = 8;
            c.num_classes = 3;
            Architecture::Vgg(c)
        }
        Architecture::ResNet(mut c) => {
            c.num_classes = 3;
            Architecture::ResNet(c)
        }
        Architecture::AlexNet(mut c) => {
            c.num_classes = 3;
            Architecture::AlexNet(c)
        }
    }
}

#[test]
fn resnet_accepts_non_square_odd_inputs() {
    let arch = Architecture::preset("resnet18").expect("preset");
    let model = Model::<f32>::random(&arch, 3).expect("build");
    let mut tape = Tape::new(Retain::All);
    let x = tape.input(input([1, 3, 97, 131]));
    let y = model.forward(&mut tape, &x).expect("forward");
    assert_eq!(y.shape(), [1, 1000]);
    assert!(!y.value().has_non_finite());
    let shape = |p: &str| {
        tape.var_shape(tape.layer_output(p).expect(p).id)
            .expect("shape")
            .to_vec()
    };
    assert_eq!(shape("conv1"), [1, 64, 49, 66]);
    assert_eq!(shape("maxpool"), [1, 64, 25, 33]);
    assert_eq!(shape("layer2"), [1, 128, 13, 17]);
    assert_eq!(shape("layer3"), [1, 256, 7, 9]);
    assert_eq!(shape("layer4"), [1, 512, 4, 5]);
    assert_eq!(shape("avgpool"), [1, 512, 1, 1]);
    // Even a 1 x 1 image fits a ResNet (every window is padded enough).
    assert_eq!(
        model.logits(&input([2, 3, 1, 1])).expect("1x1").shape(),
        [2, 1000]
    );
}

#[test]
fn vgg16_at_16x16_is_too_small_at_the_fifth_pool() {
    let arch = tiny_classes(Architecture::preset("vgg16").expect("preset"));
    let model = Model::<f32>::random(&arch, 3).expect("build");
    match model.logits(&input([1, 3, 16, 16])) {
        Err(LayerError::InputTooSmall {
            layer,
            found,
            message,
        }) => {
            assert_eq!(layer, "features.30");
            assert_eq!(found, (1, 1));
            assert!(message.contains("2x2"), "{message}");
        }
        other => panic!("expected InputTooSmall, got {other:?}"),
    }
    // 32 x 32 goes through (1 x 1 after the fifth pool, then adaptive pooling to 7 x 7).
    assert_eq!(
        model.logits(&input([1, 3, 32, 32])).expect("32x32").shape(),
        [1, 3]
    );
    // A tape stays usable after the error: the scopes were left.
    let mut tape = Tape::new(Retain::Minimal);
    let x = tape.input(input([1, 3, 16, 16]));
    assert!(model.forward(&mut tape, &x).is_err());
    assert_eq!(tape.layer_path(), "");
}

#[test]
fn alexnet_too_small_names_its_layer() {
    let arch = tiny_classes(Architecture::preset("alexnet").expect("preset"));
    let model = Model::<f32>::random(&arch, 3).expect("build");
    // 8 x 8 fits the padded 11 x 11 kernel once, then the 3 x 3 pool has a 1 x 1 input.
    let cases = [
        ([1, 3, 8, 8], "features.2", (1, 1)),
        ([1, 3, 3, 5], "features.0", (3, 5)),
    ];
    for (shape, want_layer, want_found) in cases {
        match model.logits(&input(shape)) {
            Err(LayerError::InputTooSmall { layer, found, .. }) => {
                assert_eq!(layer, want_layer);
                assert_eq!(found, want_found);
            }
            other => panic!("{shape:?}: expected InputTooSmall, got {other:?}"),
        }
    }
    // 63 x 63 is the smallest square AlexNet input.
    assert!(model.logits(&input([1, 3, 63, 63])).is_ok());
    assert!(matches!(
        model.logits(&input([1, 3, 62, 62])),
        Err(LayerError::InputTooSmall { .. })
    ));
}

#[test]
fn bad_inputs_are_rejected() {
    let arch = tiny_classes(Architecture::preset("resnet18").expect("preset"));
    let model = Model::<f32>::random(&arch, 3).expect("build");
    for shape in [
        vec![1, 1, 32, 32],
        vec![3, 32, 32],
        vec![0, 3, 8, 8],
        vec![1, 3, 0, 8],
    ] {
        let x = Tensor::zeros(shape.clone());
        match model.logits(&x) {
            Err(LayerError::InputShape { found, expected }) => {
                assert_eq!(found, shape);
                assert!(expected.contains("3"));
            }
            other => panic!("{shape:?}: expected InputShape, got {other:?}"),
        }
    }
    let mut x = input([1, 3, 8, 8]);
    x.data_mut()[5] = f32::NAN;
    assert!(matches!(model.logits(&x), Err(LayerError::NonFinite { what }) if what == "input"));
}

#[test]
fn random_models_are_deterministic() {
    let arch = tiny_classes(Architecture::preset("resnet18").expect("preset"));
    let a = Model::<f32>::random(&arch, 11).expect("build");
    let b = Model::<f32>::random(&arch, 11).expect("build");
    let c = Model::<f32>::random(&arch, 12).expect("build");
    let x = input([1, 3, 40, 40]);
    let (ya, yb, yc) = (
        a.logits(&x).unwrap(),
        b.logits(&x).unwrap(),
        c.logits(&x).unwrap(),
    );
    assert_eq!(ya, yb);
    assert_ne!(ya, yc);
}
