//! `Conv2d` keeps the kernels it derives from its weight (forward Winograd
//! kernel, input-gradient kernel) across forward passes and tapes; changing
//! a weight through `parameters_mut` must never leave a stale one behind.

use sightline_autograd::{Retain, RuleSet, Tape};
use sightline_layers::{Architecture, Model};
use sightline_tensor::Tensor;
use std::sync::Arc;

/// A small VGG whose 3 x 3 layers with >= 16 channels go through Winograd
/// in both directions: 16 -> 32 at 28 x 28 (196 tiles) and 32 -> 32 at
/// 14 x 14 (49 tiles: Winograd only with a cached kernel).
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

/// Logits, then the input gradients of class 2 under the standard and the
/// guided-backprop rules (two backward passes on one tape).
fn run(model: &Model<f32>, x: &Tensor<f32>) -> Vec<Vec<f32>> {
    let mut tape = Tape::new(Retain::Minimal);
    let xv = tape.input(x.clone());
    let y = model.forward(&mut tape, &xv).expect("forward");
    let mut seed = Tensor::zeros(y.shape().to_vec());
    seed.data_mut()[2] = 1.0;
    let mut out = vec![y.value().data().to_vec()];
    for rules in [RuleSet::standard(), RuleSet::guided_backprop()] {
        let g = tape
            .backward(y.id(), &seed, &rules, &[xv.id()])
            .expect("backward");
        out.push(g[0].data().to_vec());
    }
    out
}

/// The same model built afresh (no cached kernels) from its weights.
fn fresh(model: &Model<f32>) -> Model<f32> {
    let bytes = model.to_safetensors_bytes().expect("save");
    Model::from_safetensors_bytes(model.architecture().expect("a preset"), &bytes).expect("load")
}

fn assert_bitwise_eq(got: &[Vec<f32>], want: &[Vec<f32>], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let same = g.len() == w.len() && g.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "{what}: output {i} differs from a freshly built model"
        );
    }
}

#[test]
fn changing_weights_through_parameters_mut_resets_the_cached_kernels() {
    let mut model = Model::<f32>::random(&arch(), 11).expect("build");
    let x = input();
    // Fill the caches, and check that a warm cache changes nothing.
    let first = run(&model, &x);
    let warm = run(&model, &x);
    assert_bitwise_eq(&warm, &first, "warm caches");
    assert_bitwise_eq(&run(&fresh(&model), &x), &first, "before training");

    // A tape recorded before the update keeps the old weights and kernels.
    let mut old_tape = Tape::new(Retain::Minimal);
    let old_x = old_tape.input(x.clone());
    let old_y = model.forward(&mut old_tape, &old_x).expect("forward");

    // An optimizer-like step in place (`Arc::make_mut`): the tape above
    // shares the weights, so these are copies; the next step below mutates
    // the model's only reference in place.
    let step = |model: &mut Model<f32>, scale: f32| {
        for (i, (_, p)) in model.parameters_mut().into_iter().enumerate() {
            for (j, v) in Arc::make_mut(p).data_mut().iter_mut().enumerate() {
                *v = *v * scale + ((i * 7 + j) % 13) as f32 * 1e-3;
            }
        }
    };
    step(&mut model, 0.5);
    let after = run(&model, &x);
    assert_ne!(after[0], first[0], "the update must change the logits");
    assert_bitwise_eq(&after, &run(&fresh(&model), &x), "after a copying update");

    let mut seed = Tensor::zeros(old_y.shape().to_vec());
    seed.data_mut()[2] = 1.0;
    let g = old_tape
        .backward(old_y.id(), &seed, &RuleSet::standard(), &[old_x.id()])
        .expect("backward");
    assert_eq!(old_y.value().data(), first[0].as_slice());
    assert_eq!(g[0].data(), first[1].as_slice());
    drop(old_tape);

    // In place: the weights' storage (and addresses) stay the same.
    let ptr = Arc::as_ptr(model.parameters()[2].1);
    step(&mut model, -1.5);
    assert_eq!(Arc::as_ptr(model.parameters()[2].1), ptr);
    let after = run(&model, &x);
    assert_bitwise_eq(&after, &run(&fresh(&model), &x), "after an in-place update");

    // Replacing a weight (the 32 -> 32 layer at 14 x 14).
    for (name, p) in model.parameters_mut() {
        if name == "features.7.weight" {
            let w: Vec<f32> = p.data().iter().map(|v| -v).collect();
            *p = Arc::new(Tensor::from_vec(p.shape().to_vec(), w).expect("weight"));
        }
    }
    let replaced = run(&model, &x);
    assert_ne!(
        replaced[0], after[0],
        "the replacement must change the logits"
    );
    assert_bitwise_eq(&replaced, &run(&fresh(&model), &x), "after a replacement");
}

#[test]
fn clones_share_kernels_until_one_is_changed() {
    let model = Model::<f32>::random(&arch(), 5).expect("build");
    let x = input();
    let want = run(&model, &x);
    let mut changed = model.clone();
    for (_, p) in changed.parameters_mut() {
        for v in Arc::make_mut(p).data_mut() {
            *v *= 0.25;
        }
    }
    assert_bitwise_eq(&run(&model, &x), &want, "the original");
    assert_bitwise_eq(
        &run(&changed, &x),
        &run(&fresh(&changed), &x),
        "the changed clone",
    );
}
