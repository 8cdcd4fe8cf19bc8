//! Several backward passes in one walk give the bits of separate walks.

use crate::common;

use common::uniform;
use proptest::prelude::*;
use sightline_autograd::ops::{conv, linear, pool, relu, shape};
use sightline_autograd::{AutogradError, Branch, Pass, Retain, RuleSet, Tape, Var};
use sightline_tensor::linear::backward_input_streams;
use sightline_tensor::{Conv2dParams, MaxPool2dParams, Tensor};
use std::sync::Arc;

/// Input features and width of the wide linear layer: its input gradient
/// streams the weight, so passes sharing its standard rule are batched.
const FEATURES: usize = 8 * 4 * 4;
const WIDE: usize = 2100;

/// conv-relu-maxpool, a wide linear layer, relu, a small linear layer
/// (whose product is not streamed: one product per pass).
/// Returns the output and the max pool's output.
fn net(tape: &mut Tape<f32>, x: &Var<f32>, seed: u64) -> (Var<f32>, Var<f32>) {
    let mut w =
        |shape: &[usize], s: u64| tape.constant(Arc::new(uniform(shape, seed + s, -0.5, 0.5)));
    let (w1, b1, fc1, fb1, fc2) = (
        w(&[8, 3, 3, 3], 1),
        w(&[8], 2),
        w(&[WIDE, FEATURES], 3),
        w(&[WIDE], 4),
        w(&[10, WIDE], 5),
    );
    let h = conv::conv2d(tape, x, &w1, Some(&b1), Conv2dParams::new(1, 1)).unwrap();
    let h = relu::relu(tape, &h).unwrap();
    let h = pool::max_pool2d(tape, &h, MaxPool2dParams::new(2, 2, 0)).unwrap();
    let pooled = h.clone();
    let h = shape::flatten(tape, &h).unwrap();
    let h = linear::linear(tape, &h, &fc1, Some(&fb1)).unwrap();
    let h = relu::relu(tape, &h).unwrap();
    (linear::linear(tape, &h, &fc2, None).unwrap(), pooled)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, .. ProptestConfig::default() })]

    #[test]
    fn passes_walked_together_equal_separate_walks(seed in any::<u64>()) {
        let x: Tensor<f32> = uniform(&[1, 3, 8, 8], seed, 0.0, 1.0);
        let mut tape = Tape::new(Retain::All);
        let xv = tape.input(x);
        let (y, pooled) = net(&mut tape, &xv, seed);
        let seeds: Vec<Tensor<f32>> = (0..2).map(|k| uniform(&[1, 10], seed + 9 + k, -1.0, 1.0)).collect();
        let sets = [
            RuleSet::standard(),
            RuleSet::guided_backprop(),
            RuleSet::deconvnet(),
            RuleSet::excitation_backprop(),
            RuleSet::standard(),
            RuleSet::standard(),
        ];
        // The first four passes want the input; the fifth the max pool's
        // output (only a part of the walk), with another seed; the last the
        // wide layer's bias too (other inputs wanted: not batched with the
        // others there).
        let bias = tape.nodes().iter().find(|n| n.inputs.len() == 3 && n.input_shapes[1] == [WIDE, FEATURES]).unwrap().inputs[2];
        let wants: [Vec<usize>; 3] = [vec![xv.id()], vec![pooled.id()], vec![bias, xv.id()]];
        let passes: Vec<Pass<'_, f32>> = sets
            .iter()
            .enumerate()
            .map(|(k, rules)| Pass {
                seed: &seeds[usize::from(k >= 4)],
                rules,
                wrt: &wants[k.saturating_sub(3)],
                branch: None,
            })
            .collect();
        let together = tape.backward_passes(y.id(), &passes).unwrap();
        for (pass, got) in passes.iter().zip(&together) {
            let alone = tape.backward(y.id(), pass.seed, pass.rules, pass.wrt).unwrap();
            prop_assert_eq!(got.len(), alone.len());
            for (g, a) in got.iter().zip(&alone) {
                prop_assert_eq!(g.shape(), a.shape());
                let bits = |t: &Tensor<f32>| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                prop_assert_eq!(bits(g), bits(a));
            }
        }
    }
}

/// The wide layer's input gradients of the three passes that share its
/// standard rule are computed as one streamed product.
#[test]
fn the_wide_layer_is_batched() {
    let w: Tensor<f32> = uniform(&[WIDE, FEATURES], 1, -0.5, 0.5);
    assert!(backward_input_streams(1, &w) && backward_input_streams(3, &w));
    let small: Tensor<f32> = uniform(&[10, WIDE], 1, -0.5, 0.5);
    assert!(!backward_input_streams(1, &small));
}

#[test]
fn an_empty_walk_and_bad_seeds() {
    let mut tape = Tape::new(Retain::Minimal);
    let xv = tape.input(uniform(&[1, 3, 8, 8], 3, 0.0, 1.0));
    let (y, _) = net(&mut tape, &xv, 3);
    assert!(tape.backward_passes(y.id(), &[]).unwrap().is_empty());
    let rules = RuleSet::standard();
    let bad = Tensor::zeros([1, 9]);
    let pass = Pass {
        seed: &bad,
        rules: &rules,
        wrt: &[xv.id()],
        branch: None,
    };
    assert!(tape.backward_passes(y.id(), &[pass]).is_err());
    let good = Tensor::ones([1, 10]);
    let nothing = Pass {
        seed: &good,
        rules: &rules,
        wrt: &[],
        branch: None,
    };
    let out = tape
        .backward_passes(
            y.id(),
            &[
                nothing,
                Pass {
                    wrt: &[xv.id()],
                    ..nothing
                },
            ],
        )
        .unwrap();
    assert!(out[0].is_empty());
    assert_eq!(out[1][0].shape(), &[1, 3, 8, 8]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, .. ProptestConfig::default() })]

    /// A pass that branches off another at a layer equals walking to the
    /// layer, subtracting, and walking on from there, bit for bit; the
    /// excitation passes run their rules together (the wide layer's weight
    /// read once for both).
    #[test]
    fn a_branch_equals_walking_on_from_the_layer(seed in any::<u64>()) {
        let x: Tensor<f32> = uniform(&[1, 3, 8, 8], seed, 0.0, 1.0);
        let mut tape = Tape::new(Retain::All);
        let xv = tape.input(x);
        let (y, pooled) = net(&mut tape, &xv, seed);
        let g: Tensor<f32> = uniform(&[1, 10], seed + 9, -1.0, 1.0);
        // Branch at the wide layer's output (after its ReLU's input).
        let at = tape.nodes().iter().find(|n| n.input_shapes.get(1) == Some(&vec![WIDE, FEATURES])).unwrap().output;
        let minus: Tensor<f32> = uniform(&[1, WIDE], seed + 7, 0.0, 0.1);
        let eb = RuleSet::excitation_backprop();
        let (main_wrt, branch_wrt) = ([pooled.id(), at], [pooled.id()]);
        let passes = [
            Pass { seed: &g, rules: &eb, wrt: &main_wrt, branch: None },
            Pass { seed: &minus, rules: &eb, wrt: &branch_wrt, branch: Some(Branch { from: 0, at }) },
        ];
        let together = tape.backward_passes(y.id(), &passes).unwrap();
        let alone = tape.backward(y.id(), &g, &eb, &main_wrt).unwrap();
        let diff = sightline_tensor::elementwise::sub(&alone[1], &minus).unwrap();
        let branch = tape.backward(at, &diff, &eb, &branch_wrt).unwrap();
        let bits = |t: &Tensor<f32>| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&together[0][0]), bits(&alone[0]));
        prop_assert_eq!(bits(&together[1][0]), bits(&branch[0]));
    }
}

#[test]
fn branches_must_name_a_pass_from_the_start() {
    let mut tape = Tape::new(Retain::All);
    let xv = tape.input(uniform(&[1, 3, 8, 8], 3, 0.0, 1.0));
    let (y, pooled) = net(&mut tape, &xv, 3);
    let rules = RuleSet::standard();
    let g = Tensor::ones([1, 10]);
    let minus = Tensor::zeros(pooled.shape().to_vec());
    let wrt = [xv.id()];
    let main = Pass {
        seed: &g,
        rules: &rules,
        wrt: &wrt,
        branch: None,
    };
    let branch = |from| Pass {
        seed: &minus,
        rules: &rules,
        wrt: &wrt,
        branch: Some(Branch {
            from,
            at: pooled.id(),
        }),
    };
    for from in [1, 5] {
        let err = tape
            .backward_passes(y.id(), &[main, branch(from)])
            .unwrap_err();
        assert!(
            matches!(err, AutogradError::InvalidBranch { pass: 1, .. }),
            "{err}"
        );
    }
    // A seed not shaped like the branch's variable.
    let bad = Pass {
        seed: &g,
        ..branch(0)
    };
    assert!(tape.backward_passes(y.id(), &[main, bad]).is_err());
    let out = tape.backward_passes(y.id(), &[main, branch(0)]).unwrap();
    assert_eq!(out[1][0].shape(), &[1, 3, 8, 8]);
}
