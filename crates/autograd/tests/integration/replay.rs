//! One tape, many backward passes; determinism across thread counts; errors.

use crate::common;

use common::uniform;
use proptest::prelude::*;
use sightline_autograd::ops::{arith, conv, linear, pool, relu, shape};
use sightline_autograd::{AutogradError, Retain, RuleSet, Tape, Var};
use sightline_tensor::{Conv2dParams, Element, MaxPool2dParams, Tensor};
use std::sync::Arc;

/// A small residual network: conv-relu-maxpool, a residual block, avgpool, linear.
fn net<T: Element>(tape: &mut Tape<T>, x: &Var<T>, width: usize, seed: u64) -> (Var<T>, Var<T>) {
    let cin = x.shape()[1];
    let mut w =
        |shape: &[usize], s: u64| tape.constant(Arc::new(uniform(shape, seed + s, -0.5, 0.5)));
    let (w1, w2, w3) = (
        w(&[width, cin, 3, 3], 1),
        w(&[width, width, 3, 3], 2),
        w(&[width, width, 3, 3], 3),
    );
    let fc = w(&[5, width * 4], 4);
    let b1 = w(&[width], 5);
    let h = conv::conv2d(tape, x, &w1, Some(&b1), Conv2dParams::new(1, 1)).unwrap();
    let h = relu::relu(tape, &h).unwrap();
    let h = pool::max_pool2d(tape, &h, MaxPool2dParams::new(2, 2, 0)).unwrap();
    let probe = h.clone();
    let r = conv::conv2d(tape, &h, &w2, None, Conv2dParams::new(1, 1)).unwrap();
    let r = relu::relu(tape, &r).unwrap();
    let r = conv::conv2d(tape, &r, &w3, None, Conv2dParams::new(1, 1)).unwrap();
    let h = arith::residual_sum(tape, &r, &h).unwrap();
    let h = relu::relu(tape, &h).unwrap();
    let h = pool::adaptive_avg_pool2d(tape, &h, (2, 2)).unwrap();
    let h = shape::flatten(tape, &h).unwrap();
    (linear::linear(tape, &h, &fc, None).unwrap(), probe)
}

fn rule_sets() -> Vec<RuleSet<f32>> {
    vec![
        RuleSet::standard(),
        RuleSet::guided_backprop(),
        RuleSet::deconvnet(),
        RuleSet::excitation_backprop(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, .. ProptestConfig::default() })]

    #[test]
    fn replaying_the_tape_equals_a_fresh_forward(seed in any::<u64>(), order in Just(vec![0usize, 1, 2, 3]).prop_shuffle()) {
        let x: Tensor<f32> = uniform(&[2, 3, 10, 12], seed, 0.0, 1.0);
        let seed_grad: Tensor<f32> = uniform(&[2, 5], seed + 9, -1.0, 1.0);
        let sets = rule_sets();
        let mut tape = Tape::new(Retain::All);
        let xv = tape.input(x.clone());
        let (y, probe) = net(&mut tape, &xv, 6, seed);
        for &k in &order {
            let replay = tape.backward(y.id(), &seed_grad, &sets[k], &[xv.id(), probe.id()]).unwrap();
            let mut fresh_tape = Tape::new(Retain::All);
            let fx = fresh_tape.input(x.clone());
            let (fy, fprobe) = net(&mut fresh_tape, &fx, 6, seed);
            let fresh = fresh_tape.backward(fy.id(), &seed_grad, &sets[k], &[fx.id(), fprobe.id()]).unwrap();
            // Bit for bit: the excitation rule of the residual sum divides
            // by the sum without an epsilon (as TorchRay), so where both
            // terms are 0 both sides hold the same NaN, which `==` rejects.
            prop_assert_eq!(bits(&replay), bits(&fresh));
        }
    }
}

/// The shapes and the bits of the values of `ts`.
fn bits(ts: &[Tensor<f32>]) -> Vec<(Vec<usize>, Vec<u32>)> {
    ts.iter()
        .map(|t| {
            (
                t.shape().to_vec(),
                t.data().iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect()
}

fn run_all(x: &Tensor<f32>) -> Vec<Tensor<f32>> {
    let mut tape = Tape::new(Retain::All);
    let xv = tape.input(x.clone());
    let (y, probe) = net(&mut tape, &xv, 32, 3);
    let g: Tensor<f32> = uniform(y.shape(), 11, -1.0, 1.0);
    let mut out = vec![y.value().clone()];
    for rules in rule_sets() {
        out.extend(
            tape.backward(y.id(), &g, &rules, &[xv.id(), probe.id()])
                .unwrap(),
        );
    }
    out
}

#[test]
fn one_and_two_threads_give_identical_bits() {
    let x: Tensor<f32> = uniform(&[2, 3, 64, 72], 5, -1.0, 1.0);
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let one = pool(1).install(|| run_all(&x));
    let two = pool(2).install(|| run_all(&x));
    assert_eq!(one.len(), two.len());
    for (a, b) in one.iter().zip(&two) {
        let bits = |t: &Tensor<f32>| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(a), bits(b));
    }
}

#[test]
fn backward_stops_at_the_probe() {
    let x: Tensor<f64> = uniform(&[1, 3, 8, 8], 1, 0.0, 1.0);
    let mut tape = Tape::new(Retain::Minimal);
    let xv = tape.input(x);
    let (y, probe) = net(&mut tape, &xv, 4, 1);
    let g = Tensor::ones(y.shape().to_vec());
    let at_probe = tape
        .backward(y.id(), &g, &RuleSet::standard(), &[probe.id()])
        .unwrap();
    assert_eq!(at_probe[0].shape(), probe.shape());
    // Chain rule through the probe: continuing from it gives the full gradient.
    let full = tape
        .backward(y.id(), &g, &RuleSet::standard(), &[xv.id()])
        .unwrap();
    let chained = tape
        .backward(probe.id(), &at_probe[0], &RuleSet::standard(), &[xv.id()])
        .unwrap();
    assert!(full[0].max_abs_diff(&chained[0]).unwrap() < 1e-12);
    // Minimal retention: excitation rules report what is missing instead of guessing.
    let e = tape
        .backward(y.id(), &g, &RuleSet::excitation_backprop(), &[xv.id()])
        .unwrap_err();
    assert!(matches!(e, AutogradError::NotRetained { .. }), "{e}");
}

#[test]
fn bad_requests_are_typed_errors() {
    let mut tape = Tape::<f32>::new(Retain::Minimal);
    let xv = tape.input(Tensor::zeros([1, 3, 8, 8]));
    let (y, _) = net(&mut tape, &xv, 4, 1);
    let wrong_seed = Tensor::zeros([1, 4]);
    assert!(matches!(
        tape.backward(y.id(), &wrong_seed, &RuleSet::standard(), &[xv.id()]),
        Err(AutogradError::SeedShape { .. })
    ));
    let g = Tensor::zeros([1, 5]);
    assert!(matches!(
        tape.backward(y.id(), &g, &RuleSet::standard(), &[10_000]),
        Err(AutogradError::UnknownVar { id: 10_000, .. })
    ));
    // A shape mismatch in a kernel names the op and the layer.
    tape.push_scope("features.0");
    let w = tape.constant(Arc::new(Tensor::zeros([4, 2, 3, 3])));
    let e = conv::conv2d(&mut tape, &xv, &w, None, Conv2dParams::new(1, 1))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("conv2d") && e.contains("features.0") && e.contains("[1, 3, 8, 8]"),
        "{e}"
    );
    // Kernel larger than the padded input.
    let w = tape.constant(Arc::new(Tensor::zeros([4, 3, 11, 11])));
    assert!(conv::conv2d(&mut tape, &xv, &w, None, Conv2dParams::new(1, 0)).is_err());
    // A no-grad tape cannot be walked backward.
    let mut nothing = Tape::<f32>::new(Retain::Nothing);
    let xv = nothing.input(Tensor::zeros([1, 3, 8, 8]));
    let (y, _) = net(&mut nothing, &xv, 4, 1);
    assert!(matches!(
        nothing.backward(y.id(), &g, &RuleSet::standard(), &[xv.id()]),
        Err(AutogradError::NotRecording)
    ));
}
