//! A model's kernel policy (`Model::with_kernels`) reaches every
//! convolution and max pool of the tapes it makes, and changes results only
//! to rounding.

use sightline_autograd::ops::conv::Conv2dOp;
use sightline_autograd::ops::pool::MaxPoolOp;
use sightline_autograd::{Retain, RuleSet, Tape};
use sightline_layers::{Architecture, Model};
use sightline_tensor::{KernelPolicy, SimdCap, Tensor, WinogradPolicy};

/// A small VGG whose 3 x 3 layers with >= 16 channels go through Winograd
/// under the default policy: 16 -> 32 at 28 x 28 (F(4x4) with the layer's
/// cached kernel) and 32 -> 32 at 14 x 14 (F(2x2)).
fn arch() -> Architecture {
    Architecture::from_json(
        r#"{"kind":"vgg","cfg":[16,32,"M",32,32,"M"],"avgpool":[1,1],"hidden":8,"num_classes":5}"#,
    )
    .expect("arch")
}

fn input() -> Tensor<f32> {
    let n = 3 * 28 * 28;
    Tensor::from_vec(
        vec![1, 3, 28, 28],
        (0..n)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect(),
    )
    .expect("input")
}

fn max_relative_diff(a: &Tensor<f32>, b: &Tensor<f32>) -> f32 {
    let scale = b.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a
        .data()
        .iter()
        .zip(b.data())
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

fn same_bits(a: &Tensor<f32>, b: &Tensor<f32>) -> bool {
    a.shape() == b.shape()
        && a.data()
            .iter()
            .zip(b.data())
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The input gradient of class 2 on a tape under the model's policy.
fn gradient(model: &Model<f32>, x: &Tensor<f32>) -> Tensor<f32> {
    let mut tape = Tape::new(Retain::Minimal).with_kernels(model.kernels());
    let xv = tape.input(x.clone());
    let y = model.forward(&mut tape, &xv).expect("forward");
    let mut seed = Tensor::zeros(y.shape().to_vec());
    seed.data_mut()[2] = 1.0;
    tape.backward(y.id(), &seed, &RuleSet::standard(), &[xv.id()])
        .expect("backward")
        .remove(0)
}

#[test]
fn a_model_without_winograd_agrees_with_the_default_to_rounding() {
    let model = Model::<f32>::random(&arch(), 11).expect("build");
    assert_eq!(model.kernels(), KernelPolicy::default());
    let off_policy = KernelPolicy::new(WinogradPolicy::Off, SimdCap::Best);
    let off = model.clone().with_kernels(off_policy);
    assert_eq!(off.kernels(), off_policy);
    let x = input();

    let (want, got) = (
        model.logits(&x).expect("logits"),
        off.logits(&x).expect("logits"),
    );
    let err = max_relative_diff(&got, &want);
    assert!(err < 1e-5, "logits relative difference {err:e}");
    // The policy is used: Winograd and the packed products round apart.
    assert!(!same_bits(&got, &want), "`off` gave the default's bits");
    // And the default again gives the same bits.
    assert!(same_bits(&model.logits(&x).expect("logits"), &want));

    let (want, got) = (gradient(&model, &x), gradient(&off, &x));
    let err = max_relative_diff(&got, &want);
    assert!(err < 1e-5, "input gradient relative difference {err:e}");
    assert!(!same_bits(&got, &want));
}

/// Every convolution and max pool a model's forward pass records on a tape
/// made with its policy keeps that policy in its node (which the backward
/// rules compute under).
#[test]
fn the_recorded_ops_carry_the_model_policy() {
    let policy = KernelPolicy::new(WinogradPolicy::F2, SimdCap::Generic);
    let model = Model::<f32>::random(&arch(), 3)
        .expect("build")
        .with_kernels(policy);
    let mut tape = Tape::new(Retain::Minimal).with_kernels(model.kernels());
    let xv = tape.input(input());
    model.forward(&mut tape, &xv).expect("forward");
    let (mut convs, mut pools) = (0, 0);
    for node in tape.nodes() {
        if let Some(op) = node.op.downcast_ref::<Conv2dOp<f32>>() {
            assert_eq!(op.params.kernels, policy, "{}", node.layer);
            convs += 1;
        }
        if let Some(op) = node.op.downcast_ref::<MaxPoolOp>() {
            assert_eq!(op.params.simd, SimdCap::Generic, "{}", node.layer);
            pools += 1;
        }
    }
    assert_eq!((convs, pools), (4, 2));
}
