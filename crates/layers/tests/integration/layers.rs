//! Layers used on their own: hand-computed values, scopes, parameter names.

use sightline_autograd::{Retain, Tape};
use sightline_layers::layers::{
    AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Layer, Linear, MaxPool2d,
    ReLU, Sequential,
};
use sightline_layers::{run_child, Architecture, LayerError, Model, Module};
use sightline_tensor::{Conv2dParams, Tensor};
use std::sync::Arc;

fn t(shape: &[usize], data: &[f64]) -> Arc<Tensor<f64>> {
    Arc::new(Tensor::from_vec(shape.to_vec(), data.to_vec()).expect("shape"))
}

#[test]
fn a_small_sequential_computes_by_hand() {
    // 1 x 1 x 4 x 4 input 0..16, conv 1x1 (weight -1, bias 8): 8 - x.
    let conv = Conv2d::new(
        t(&[1, 1, 1, 1], &[-1.0]),
        Some(t(&[1], &[8.0])),
        Conv2dParams::new(1, 0),
    )
    .expect("conv");
    // Batch norm: (x - 1) / sqrt(3 + 1e-5) * 2 + 0.5.
    let bn = BatchNorm2d::new(
        t(&[1], &[2.0]),
        t(&[1], &[0.5]),
        t(&[1], &[1.0]),
        t(&[1], &[3.0]),
        1e-5,
    )
    .expect("bn");
    let lin = Linear::new(
        t(&[2, 4], &[1.0, 0.0, 0.0, 0.0, 0.25, 0.25, 0.25, 0.25]),
        Some(t(&[2], &[0.0, -1.0])),
    )
    .expect("linear");
    let seq = Sequential::new(vec![
        Layer::from(conv),
        bn.into(),
        ReLU.into(),
        MaxPool2d::new(2, 2, 0).into(),
        AdaptiveAvgPool2d::new(2, 2).into(),
        Dropout::default().into(),
        Flatten.into(),
        lin.into(),
    ]);
    let x = Tensor::from_vec(vec![1, 1, 4, 4], (0..16).map(f64::from).collect()).expect("input");
    let mut tape = Tape::new(Retain::All);
    let xv = tape.input(x);
    let y = run_child(&mut tape, "net", &seq, &xv).expect("forward");

    let s = 2.0 / (3.0f64 + 1e-5).sqrt();
    let f = |v: f64| ((8.0 - v - 1.0) * s + 0.5).max(0.0);
    // Max pool over 2x2 windows of the decreasing map takes the top-left element: 0, 2, 8, 10.
    let pooled = [f(0.0), f(2.0), f(8.0), f(10.0)];
    let mean = pooled.iter().sum::<f64>() / 4.0;
    let want = [pooled[0], mean - 1.0];
    for (a, b) in y.value().data().iter().zip(want) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    assert_eq!(y.shape(), [1, 2]);
    for p in [
        "net", "net.0", "net.1", "net.2", "net.3", "net.4", "net.5", "net.6", "net.7",
    ] {
        assert!(tape.layer_output(p).is_some(), "{p}");
    }
    let mut paths = Vec::new();
    seq.submodule_paths("net", &mut paths);
    assert_eq!(paths.len(), 8);
    assert_eq!(paths[7], "net.7");
}

#[test]
fn avg_pool_and_its_too_small_error() {
    let pool = AvgPool2d::new(3, 1, 0);
    let mut tape = Tape::<f64>::new(Retain::Nothing);
    let x = tape
        .input(Tensor::from_vec(vec![1, 1, 3, 3], (1..=9).map(f64::from).collect()).expect("x"));
    let y = run_child(&mut tape, "pool", &pool, &x).expect("fits");
    assert_eq!(y.value().data(), [5.0]);
    let small = tape.input(Tensor::zeros(vec![1, 1, 2, 3]));
    match run_child(&mut tape, "pool", &pool, &small) {
        Err(LayerError::InputTooSmall { layer, found, .. }) => {
            assert_eq!((layer.as_str(), found), ("pool", (2, 3)))
        }
        other => panic!("expected InputTooSmall, got {other:?}"),
    }
}

#[test]
fn constructors_check_shapes() {
    assert!(matches!(
        Conv2d::new(t(&[1, 1, 1], &[1.0]), None, Conv2dParams::new(1, 0)),
        Err(LayerError::Architecture { .. })
    ));
    assert!(matches!(
        Conv2d::new(
            t(&[2, 1, 1, 1], &[1.0, 2.0]),
            Some(t(&[3], &[0.0; 3])),
            Conv2dParams::new(1, 0)
        ),
        Err(LayerError::Architecture { .. })
    ));
    assert!(matches!(
        Linear::new(t(&[2], &[1.0, 2.0]), None),
        Err(LayerError::Architecture { .. })
    ));
    assert!(matches!(
        Linear::new(t(&[1, 2], &[1.0, 2.0]), Some(t(&[2], &[0.0, 0.0]))),
        Err(LayerError::Architecture { .. })
    ));
    assert!(matches!(
        BatchNorm2d::new(
            t(&[2], &[1.0; 2]),
            t(&[2], &[0.0; 2]),
            t(&[1], &[0.0]),
            t(&[2], &[1.0; 2]),
            1e-5
        ),
        Err(LayerError::Architecture { .. })
    ));
}

#[test]
fn a_training_tape_registers_the_trainable_parameters_by_name() {
    let arch = Architecture::from_json(
        r#"{"kind":"resnet","block":"bottleneck","layers":[1,2,1,1],"widths":[4,8,8,16],"num_classes":11}"#,
    )
    .expect("arch");
    let mut model = Model::<f32>::random(&arch, 9).expect("build");
    let mut tape = Tape::new(Retain::Minimal).training();
    let x = tape.input(Tensor::full(vec![1, 3, 61, 53], 0.5));
    let y = model.forward(&mut tape, &x).expect("forward");
    assert_eq!(y.shape(), [1, 11]);
    let registered: Vec<String> = tape.params().iter().map(|(n, _)| n.clone()).collect();
    let trainable: Vec<String> = model.parameters_mut().into_iter().map(|(n, _)| n).collect();
    assert_eq!(registered, trainable);
    assert!(registered.contains(&"layer2.1.conv3.weight".to_string()));
    assert!(registered.contains(&"layer3.0.downsample.0.weight".to_string()));
    // Paths of the hidden bottleneck fixture's probes exist.
    for layer in [
        "layer4",
        "layer3.0",
        "layer2",
        "avgpool",
        "fc",
        "layer4.0.conv3",
    ] {
        assert!(model.has_layer(layer), "{layer}");
    }
}

#[test]
fn replacing_a_parameter_changes_the_output() {
    let arch = Architecture::from_json(
        r#"{"kind":"vgg","cfg":[4,"M"],"avgpool":[1,1],"hidden":4,"num_classes":3}"#,
    )
    .expect("arch");
    let mut model = Model::<f64>::random(&arch, 2).expect("build");
    let x = Tensor::full(vec![1, 3, 6, 6], 1.0);
    let before = model.logits(&x).expect("forward");
    for (name, p) in model.parameters_mut() {
        if name == "classifier.6.bias" {
            *p = Arc::new(Tensor::from_vec(vec![3], vec![1.0, 2.0, 3.0]).expect("bias"));
        }
    }
    let after = model.logits(&x).expect("forward");
    let d: Vec<f64> = after
        .data()
        .iter()
        .zip(before.data())
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(d, [1.0, 2.0, 3.0]);
}

/// A ReLU takes its input's buffer over only when nothing else holds it: a
/// convolution's output kept as a layer output keeps its negative values,
/// and the ReLU's output is the same whether it ran in place or not.
#[test]
fn a_kept_layer_output_is_not_overwritten_by_the_relu_after_it() {
    let conv = Conv2d::new(
        t(&[1, 1, 1, 1], &[-1.0]),
        Some(t(&[1], &[8.0])),
        Conv2dParams::new(1, 0),
    )
    .expect("conv");
    let seq = Sequential::new(vec![Layer::from(conv), ReLU.into()]);
    let x = Tensor::from_vec(vec![1, 1, 4, 4], (0..16).map(f64::from).collect()).expect("input");
    let before: Vec<f64> = (0..16).map(|v| 8.0 - f64::from(v)).collect();
    let after: Vec<f64> = before.iter().map(|v| v.max(0.0)).collect();
    for kept in [&["net.0"][..], &[]] {
        let mut tape = Tape::with_kept_layers(Retain::Minimal, kept);
        let xv = tape.input(x.clone());
        let y = run_child(&mut tape, "net", &seq, &xv).expect("forward");
        assert_eq!(y.value().data(), after);
        let conv_out = tape.layer_output("net.0").expect("net.0");
        match conv_out.value.as_ref() {
            Some(v) => assert_eq!(v.data(), before),
            None => assert!(kept.is_empty()),
        }
    }
}
