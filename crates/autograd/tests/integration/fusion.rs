//! An elementwise rule (the ReLU rules) run inside the kernel of the
//! convolution above it gives the bits of running it on its own, and runs
//! there exactly where nothing else needs the gradient before it.

use crate::common;

use common::uniform;
use proptest::prelude::*;
use sightline_autograd::ops::{arith, conv, relu};
use sightline_autograd::{
    OpKind, Pass, Result, Retain, Rule, RuleContext, RuleSet, Standard, Tape, Var, VarId,
};
use sightline_tensor::{Conv2dParams, Epilogue, Tensor};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The net's input, its ReLU outputs and its output.
struct Net {
    x: VarId,
    relus: Vec<VarId>,
    out: VarId,
}

/// conv 3x3 (3 -> 16), relu, conv 3x3 (Winograd input gradient), relu,
/// conv 1x1 (packed input gradient), relu, conv 3x3 stride 2 (col2im),
/// relu whose output feeds a conv and a residual sum, the sum, relu.
fn net(tape: &mut Tape<f32>, seed: u64) -> Net {
    let x = tape.input(uniform(&[1, 3, 16, 16], seed, -1.0, 1.0));
    let mut w =
        |shape: &[usize], s: u64| tape.constant(Arc::new(uniform(shape, seed + s, -0.4, 0.4)));
    let ws = [
        w(&[16, 3, 3, 3], 1),
        w(&[16, 16, 3, 3], 2),
        w(&[24, 16, 1, 1], 3),
        w(&[16, 24, 3, 3], 4),
        w(&[16, 16, 3, 3], 5),
    ];
    let p = |s, pad| Conv2dParams::new(s, pad);
    let mut relus = Vec::new();
    let mut step = |tape: &mut Tape<f32>, h: &Var<f32>, w: &Var<f32>, params| {
        let h = conv::conv2d(tape, h, w, None, params).unwrap();
        let h = relu::relu(tape, &h).unwrap();
        relus.push(h.id());
        h
    };
    let h = step(tape, &x, &ws[0], p(1, 1));
    let h = step(tape, &h, &ws[1], p(1, 1));
    let h = step(tape, &h, &ws[2], p(1, 0));
    let r4 = step(tape, &h, &ws[3], p(2, 1));
    let c5 = conv::conv2d(tape, &r4, &ws[4], None, p(1, 1)).unwrap();
    let sum = arith::residual_sum(tape, &r4, &c5).unwrap();
    let out = relu::relu(tape, &sum).unwrap();
    Net {
        x: x.id(),
        relus,
        out: out.id(),
    }
}

/// The standard rule, counting the gradients it was handed an elementwise
/// rule for; with `declines`, it does not say it fuses.
#[derive(Debug, Default)]
struct CountingConv {
    fused: AtomicUsize,
    declines: bool,
}

impl Rule<f32> for CountingConv {
    fn name(&self) -> &str {
        "counting_conv"
    }

    fn backward(
        &self,
        ctx: &RuleContext<'_, f32>,
        g: &Tensor<f32>,
    ) -> Result<Vec<Option<Tensor<f32>>>> {
        Standard.backward(ctx, g)
    }

    fn fuses_then(&self, ctx: &RuleContext<'_, f32>) -> bool {
        !self.declines && Rule::<f32>::fuses_then(&Standard, ctx)
    }

    fn backward_owned_then(
        &self,
        ctx: &RuleContext<'_, f32>,
        g: Tensor<f32>,
        then: Epilogue<'_, f32>,
    ) -> Result<Vec<Option<Tensor<f32>>>> {
        self.fused.fetch_add(1, Ordering::Relaxed);
        Standard.backward_owned_then(ctx, g, then)
    }
}

fn bits(t: &Tensor<f32>) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

fn rule_sets() -> Vec<RuleSet<f32>> {
    vec![
        RuleSet::standard(),
        RuleSet::guided_backprop(),
        RuleSet::captum_guided_backprop(),
        RuleSet::deconvnet(),
        RuleSet::excitation_backprop(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, .. ProptestConfig::default() })]

    /// Fused walks (only the input wanted) give the bits of walks that
    /// cannot fuse (every ReLU output wanted too, so each rule runs on its
    /// own), for every built-in rule set, alone and walked together.
    #[test]
    fn fused_rules_give_the_bits_of_separate_rules(seed in any::<u64>()) {
        let mut tape = Tape::new(Retain::All);
        let n = net(&mut tape, seed);
        let shape = tape.var_shape(n.out).unwrap().to_vec();
        let g = uniform(&shape, seed + 7, -1.0, 1.0);
        let mut all = vec![n.x];
        all.extend(&n.relus);
        let sets = rule_sets();
        let mut fused = Vec::new();
        for rules in &sets {
            let got = tape.backward(n.out, &g, rules, &[n.x]).unwrap();
            let want = tape.backward(n.out, &g, rules, &all).unwrap();
            prop_assert_eq!(bits(&got[0]), bits(&want[0]), "{}", rules.name());
            fused.push(got.into_iter().next().unwrap());
        }
        let passes: Vec<Pass<'_, f32>> = sets
            .iter()
            .map(|rules| Pass { seed: &g, rules, wrt: std::slice::from_ref(&n.x), branch: None })
            .collect();
        let together = tape.backward_passes(n.out, &passes).unwrap();
        for (t, f) in together.iter().zip(&fused) {
            prop_assert_eq!(bits(&t[0]), bits(f));
        }
    }
}

/// The ReLU rule runs in the kernel above it under the three convolutions
/// whose input is a ReLU output used once and not wanted: not under the
/// first (its input is the net's), nor the last (its input also feeds the
/// residual sum), nor where that output is wanted.
#[test]
fn rules_fuse_exactly_where_nothing_else_needs_the_gradient() {
    let mut tape = Tape::new(Retain::All);
    let n = net(&mut tape, 3);
    let shape = tape.var_shape(n.out).unwrap().to_vec();
    let g = uniform(&shape, 9, -1.0, 1.0);
    for (wrt, expected) in [
        (vec![n.x], 3),
        (vec![n.x, n.relus[1]], 2),
        (vec![n.relus[1]], 1),
        (n.relus.clone(), 0),
    ] {
        let counting = Arc::new(CountingConv::default());
        let rules = RuleSet::guided_backprop().with(OpKind::CONV2D, counting.clone());
        tape.backward(n.out, &g, &rules, &wrt).unwrap();
        assert_eq!(counting.fused.load(Ordering::Relaxed), expected, "{wrt:?}");
    }
    // A rule that does not say it fuses is never handed one.
    let counting = Arc::new(CountingConv {
        declines: true,
        ..CountingConv::default()
    });
    let rules = RuleSet::standard().with(OpKind::CONV2D, counting.clone());
    tape.backward(n.out, &g, &rules, &[n.x]).unwrap();
    assert_eq!(counting.fused.load(Ordering::Relaxed), 0);
}

/// A user's rule that fuses through the default `backward_owned_then` (the
/// epilogue applied after its kernel) gives the same bits too.
#[test]
fn the_default_then_applies_the_rule_after_the_kernel() {
    #[derive(Debug)]
    struct Plain;
    impl Rule<f32> for Plain {
        fn name(&self) -> &str {
            "plain"
        }
        fn backward(
            &self,
            ctx: &RuleContext<'_, f32>,
            g: &Tensor<f32>,
        ) -> Result<Vec<Option<Tensor<f32>>>> {
            Standard.backward(ctx, g)
        }
        fn fuses_then(&self, _: &RuleContext<'_, f32>) -> bool {
            true
        }
    }
    let mut tape = Tape::new(Retain::All);
    let n = net(&mut tape, 5);
    let shape = tape.var_shape(n.out).unwrap().to_vec();
    let g = uniform(&shape, 11, -1.0, 1.0);
    let rules = RuleSet::guided_backprop().with(OpKind::CONV2D, Arc::new(Plain));
    let got = tape.backward(n.out, &g, &rules, &[n.x]).unwrap();
    let want = tape
        .backward(n.out, &g, &RuleSet::guided_backprop(), &[n.x])
        .unwrap();
    assert_eq!(bits(&got[0]), bits(&want[0]));
}
