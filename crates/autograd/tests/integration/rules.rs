//! Defining properties of the alternative backward rules.

use crate::common;

use common::uniform;
use proptest::prelude::*;
use sightline_autograd::ops::relu::ReluOp;
use sightline_autograd::ops::{arith, conv, linear, pool, relu};
use sightline_autograd::{OpKind, Result, Retain, Rule, RuleContext, RuleSet, Tape, Var};
use sightline_tensor::{AvgPool2dParams, Conv2dParams, Tensor};
use std::sync::Arc;

type T = Tensor<f64>;

fn relu_grad(x: &T, g: &T, rules: &RuleSet<f64>) -> T {
    let mut tape = Tape::new(Retain::Minimal);
    let xv = tape.input(x.clone());
    let y = relu::relu(&mut tape, &xv).unwrap();
    tape.backward(y.id(), g, rules, &[xv.id()])
        .unwrap()
        .remove(0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn guided_relu(len in 1usize..200, seed in any::<u64>(), zeros in 0usize..10) {
        let mut x: T = uniform(&[len], seed, -1.0, 1.0);
        for i in (0..len).step_by(zeros + 1) { x.data_mut()[i] = 0.0; }
        let g: T = uniform(&[len], seed + 1, -1.0, 1.0);
        let out = relu_grad(&x, &g, &RuleSet::guided_backprop());
        for i in 0..len {
            let (xi, gi, oi) = (x.data()[i], g.data()[i], out.data()[i]);
            prop_assert!(oi >= 0.0);
            if xi < 0.0 { prop_assert_eq!(oi, 0.0); }
            else { prop_assert_eq!(oi, gi.max(0.0)); }
        }
        // Captum's variant blocks at x == 0, where TorchRay's passes.
        let captum = relu_grad(&x, &g, &RuleSet::captum_guided_backprop());
        for i in 0..len {
            let want = if x.data()[i] > 0.0 { g.data()[i].max(0.0) } else { 0.0 };
            prop_assert_eq!(captum.data()[i], want);
        }
    }

    #[test]
    fn deconvnet_relu_ignores_the_input(len in 1usize..200, seed in any::<u64>()) {
        let g: T = uniform(&[len], seed, -1.0, 1.0);
        let a = relu_grad(&uniform(&[len], seed + 1, -1.0, 1.0), &g, &RuleSet::deconvnet());
        let b = relu_grad(&uniform(&[len], seed + 2, -1.0, 1.0), &g, &RuleSet::deconvnet());
        prop_assert_eq!(&a, &b);
        for (o, gi) in a.data().iter().zip(g.data()) {
            prop_assert!(*o >= 0.0);
            prop_assert_eq!(*o, gi.max(0.0));
        }
    }

    #[test]
    fn excitation_conserves_relevance_through_conv(cin in 1usize..4, cout in 1usize..4, h in 2usize..8, w in 2usize..8,
                                                    k in 1usize..4, s in 1usize..3, pad in 0usize..3, seed in any::<u64>()) {
        let pad = pad.min(k - 1);
        prop_assume!(h + 2 * pad >= k && w + 2 * pad >= k);
        let x: T = uniform(&[1, cin, h, w], seed, 0.1, 1.0);
        let mut wt: T = uniform(&[cout, cin, k, k], seed + 1, -1.0, 1.0);
        // Channel 0 taps positive: every window that touches the image excites its output.
        for co in 0..cout { for t in 0..k * k { let i = co * cin * k * k + t; wt.data_mut()[i] = wt.data()[i].abs() + 0.1; } }
        conserved(x, |tape, xv| {
            let wv = tape.constant(Arc::new(wt.clone()));
            conv::conv2d(tape, xv, &wv, None, Conv2dParams::new(s, pad))
        })?;
    }

    #[test]
    fn excitation_conserves_relevance_through_linear(fin in 1usize..8, fout in 1usize..8, seed in any::<u64>()) {
        let x: T = uniform(&[2, fin], seed, 0.1, 1.0);
        let mut wt: T = uniform(&[fout, fin], seed + 1, -1.0, 1.0);
        for o in 0..fout { wt.data_mut()[o * fin] = 0.5; }
        conserved(x, |tape, xv| {
            let wv = tape.constant(Arc::new(wt.clone()));
            linear::linear(tape, xv, &wv, None)
        })?;
    }

    #[test]
    fn excitation_conserves_relevance_through_pools(h in 2usize..9, w in 2usize..9, k in 1usize..4, s in 1usize..3,
                                                    ceil in any::<bool>(), oh in 1usize..6, ow in 1usize..6, seed in any::<u64>()) {
        prop_assume!(h >= k && w >= k);
        let x: T = uniform(&[1, 2, h, w], seed, 0.1, 1.0);
        let p = AvgPool2dParams { ceil_mode: ceil, ..AvgPool2dParams::new(k, s, 0) };
        conserved(x.clone(), |tape, xv| pool::avg_pool2d(tape, xv, p))?;
        conserved(x, |tape, xv| pool::adaptive_avg_pool2d(tape, xv, (oh, ow)))?;
    }

    #[test]
    fn excitation_conserves_relevance_through_sum(len in 1usize..50, seed in any::<u64>()) {
        let a: T = uniform(&[len], seed, 0.1, 1.0);
        let b: T = uniform(&[len], seed + 1, 0.1, 1.0);
        let mut tape = Tape::new(Retain::All);
        let (av, bv) = (tape.input(a), tape.input(b));
        let y = arith::residual_sum(&mut tape, &av, &bv).unwrap();
        let g: T = uniform(&[len], seed + 2, 0.0, 1.0);
        let r = tape.backward(y.id(), &g, &RuleSet::excitation_backprop(), &[av.id(), bv.id()]).unwrap();
        for i in 0..len {
            prop_assert!((r[0].data()[i] + r[1].data()[i] - g.data()[i]).abs() < 1e-12);
        }
    }
}

/// Relevance `g >= 0` at the output sums to the relevance at the (non-negative) input.
fn conserved(
    x: T,
    op: impl Fn(&mut Tape<f64>, &Var<f64>) -> Result<Var<f64>>,
) -> std::result::Result<(), TestCaseError> {
    let mut tape = Tape::new(Retain::All);
    let xv = tape.input(x);
    let y = op(&mut tape, &xv).unwrap();
    let g: T = uniform(y.shape(), 7, 0.0, 1.0);
    let r = tape
        .backward(y.id(), &g, &RuleSet::excitation_backprop(), &[xv.id()])
        .unwrap()
        .remove(0);
    let (sin, sout) = (r.data().iter().sum::<f64>(), g.data().iter().sum::<f64>());
    prop_assert!(
        (sin - sout).abs() <= 1e-9 * sout.max(1.0),
        "in {sin} out {sout}"
    );
    prop_assert!(r.data().iter().all(|&v| v >= 0.0));
    Ok(())
}

/// A user-written rule: halves the gradient through every ReLU of one layer.
#[derive(Debug)]
struct HalfRelu;

impl Rule<f64> for HalfRelu {
    fn name(&self) -> &str {
        "half_relu"
    }

    fn backward(&self, ctx: &RuleContext<'_, f64>, g: &T) -> Result<Vec<Option<T>>> {
        let op: &ReluOp = ctx.op(self.name())?;
        let mut out = g.clone();
        op.mask
            .apply(out.data_mut(), |g, pos, _| if pos { g / 2.0 } else { 0.0 })
            .map_err(|e| ctx.kernel(e))?;
        Ok(vec![Some(out)])
    }
}

#[test]
fn layer_rules_override_kind_rules() {
    let x = Tensor::from_vec([4], vec![-1.0, 2.0, 3.0, -4.0]).unwrap();
    let g = Tensor::from_vec([4], vec![1.0, -1.0, 2.0, 2.0]).unwrap();
    let mut tape = Tape::new(Retain::Minimal);
    let xv = tape.input(x);
    tape.push_scope("first");
    let a = relu::relu(&mut tape, &xv).unwrap();
    tape.pop_scope();
    tape.push_scope("second");
    let b = relu::relu(&mut tape, &a).unwrap();
    tape.pop_scope();
    let rules =
        RuleSet::guided_backprop().with_layer("first", Some(OpKind::RELU), Arc::new(HalfRelu));
    let r = tape
        .backward(b.id(), &g, &rules, &[xv.id()])
        .unwrap()
        .remove(0);
    // second (guided): [0, 0, 2, 0]; first (half, standard mask): [0, 0, 1, 0]
    assert_eq!(r.data(), &[0.0, 0.0, 1.0, 0.0]);
    // A rule on the wrong op kind is an error naming both.
    let bad = RuleSet::standard().with(
        OpKind::RELU,
        Arc::new(sightline_autograd::ops::norm::ExcitationBatchNorm),
    );
    let e = tape
        .backward(b.id(), &g, &bad, &[xv.id()])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("excitation_batch_norm") && e.contains("relu") && e.contains("second"),
        "{e}"
    );
    // A layer rule naming a layer the tape does not have (a typo) is an
    // error, not the standard gradient.
    for kind in [Some(OpKind::RELU), None] {
        let typo = RuleSet::guided_backprop().with_layer("frist", kind, Arc::new(HalfRelu));
        let e = tape
            .backward(b.id(), &g, &typo, &[xv.id()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("frist") && e.contains("guided_backprop"), "{e}");
    }
}

#[test]
fn contrastive_pass_negates_classifier_weights() {
    // y = W x with W = [[1, -2]]: the negated pass uses max(-W, 0) = [0, 2].
    let mut tape = Tape::<f64>::new(Retain::All);
    let xv = tape.input(Tensor::from_vec([1, 2], vec![1.0, 3.0]).unwrap());
    tape.push_scope("fc");
    let wv = tape.constant(Arc::new(Tensor::from_vec([1, 2], vec![1.0, -2.0]).unwrap()));
    let y = linear::linear(&mut tape, &xv, &wv, None).unwrap();
    tape.pop_scope();
    let seed = Tensor::from_vec([1, 1], vec![1.0]).unwrap();
    let eb = RuleSet::excitation_backprop();
    let pos = tape
        .backward(y.id(), &seed, &eb, &[xv.id()])
        .unwrap()
        .remove(0);
    assert!((pos.data()[0] - 1.0).abs() < 1e-12 && pos.data()[1] == 0.0);
    let neg_rules = eb.with_layer(
        "fc",
        Some(OpKind::LINEAR),
        Arc::new(sightline_autograd::ops::linear::ExcitationLinear {
            negate_weights: true,
        }),
    );
    let neg = tape
        .backward(y.id(), &seed, &neg_rules, &[xv.id()])
        .unwrap()
        .remove(0);
    assert!(neg.data()[0] == 0.0 && (neg.data()[1] - 1.0).abs() < 1e-12);
}

/// Conv (3 x 3 on 24 x 24: Winograd) + ReLU + linear (9216 -> 32 at batch
/// 1: the matrix-vector paths), recorded on `tape`; the linear layer is in
/// scope "fc".
fn excitation_net(tape: &mut Tape<f32>, x: &Var<f32>) -> (Var<f32>, Var<f32>) {
    use sightline_autograd::ops::shape;
    let w1 = tape.constant(Arc::new(uniform(&[16, 16, 3, 3], 1, -0.5, 0.5)));
    let w2 = tape.constant(Arc::new(uniform(&[16, 16, 3, 3], 2, -0.5, 0.5)));
    let fc = tape.constant(Arc::new(uniform(&[32, 16 * 24 * 24], 3, -0.5, 0.5)));
    let h = conv::conv2d(tape, x, &w1, None, Conv2dParams::new(1, 1)).unwrap();
    let h = relu::relu(tape, &h).unwrap();
    let probe = h.clone();
    let h = conv::conv2d(tape, &h, &w2, None, Conv2dParams::new(1, 1)).unwrap();
    let h = relu::relu(tape, &h).unwrap();
    let h = shape::flatten(tape, &h).unwrap();
    tape.push_scope("fc");
    let y = linear::linear(tape, &h, &fc, None).unwrap();
    tape.pop_scope();
    (y, probe)
}

#[test]
fn replayed_excitation_passes_equal_the_first_and_a_fresh_tape() {
    // The excitation rules keep what they derive (denominators, positive
    // conv weights and kernels) on the tape: later passes, with other seeds
    // (a top-k explanation) and with the classifier negated (contrastive),
    // must give the bits a fresh tape gives.
    let x: Tensor<f32> = uniform(&[1, 16, 24, 24], 7, 0.0, 1.0);
    let eb = RuleSet::<f32>::excitation_backprop();
    let negated = eb
        .clone()
        .with_layer(
            "fc",
            Some(OpKind::LINEAR),
            Arc::new(linear::ExcitationLinear {
                negate_weights: true,
            }),
        )
        .with_layer(
            "fc",
            Some(OpKind::CONV2D),
            Arc::new(conv::ExcitationConv {
                negate_weights: true,
            }),
        );
    let seeds: Vec<Tensor<f32>> = (0..3)
        .map(|k| {
            let mut s = Tensor::zeros([1, 32]);
            s.data_mut()[5 * k + 1] = 1.0;
            s
        })
        .collect();
    let fresh = |seed: &Tensor<f32>, rules: &RuleSet<f32>| {
        let mut tape = Tape::new(Retain::All);
        let xv = tape.input(x.clone());
        let (y, probe) = excitation_net(&mut tape, &xv);
        tape.backward(y.id(), seed, rules, &[xv.id(), probe.id()])
            .unwrap()
    };
    let mut tape = Tape::new(Retain::All);
    let xv = tape.input(x.clone());
    let (y, probe) = excitation_net(&mut tape, &xv);
    let mut first = Vec::new();
    for round in 0..3 {
        for (k, seed) in seeds.iter().enumerate() {
            for (r, rules) in [&eb, &negated].into_iter().enumerate() {
                let got = tape
                    .backward(y.id(), seed, rules, &[xv.id(), probe.id()])
                    .unwrap();
                assert!(got[0].data().iter().any(|&v| v != 0.0));
                if round == 0 {
                    assert_eq!(got, fresh(seed, rules), "seed {k}, rules {r}");
                    first.push(got);
                } else {
                    assert_eq!(got, first[2 * k + r], "round {round}, seed {k}, rules {r}");
                }
            }
        }
    }
    // The negated classifier changes the result (the caches are per sign).
    assert_ne!(first[0], first[1]);
}

/// Through a linear layer large enough that its products stream the weight,
/// a forward pass that keeps everything makes the excitation denominator in
/// the same read as the forward product: the rule's result is still the
/// bits of `x * ((g / (x W+^T + 1e-20)) W+)` computed step by step.
#[test]
fn excitation_through_a_streamed_linear_layer_is_the_formula() {
    use sightline_tensor::linear::{linear_backward_input_map_weight, linear_map_weight};
    let (fin, fout) = (300, 1000);
    let x: Tensor<f32> = uniform(&[1, fin], 1, 0.0, 1.0);
    let w: Tensor<f32> = uniform(&[fout, fin], 2, -1.0, 1.0);
    let g: Tensor<f32> = uniform(&[1, fout], 3, -1.0, 1.0);
    let plus = |v: f32| v.max(0.0);
    let mut z = linear_map_weight(&x, &w, plus).unwrap();
    z.data_mut().iter_mut().for_each(|z| *z += 1e-20);
    let s = g.zip_map(&z, "test", |g, d| g / d).unwrap();
    let back = linear_backward_input_map_weight(&s, &w, plus).unwrap();
    let want = back.zip_map(&x, "test", |b, a| b * a).unwrap();

    let mut tape = Tape::new(Retain::All);
    let xv = tape.input(x);
    let wv = tape.constant(Arc::new(w));
    let y = linear::linear(&mut tape, &xv, &wv, None).unwrap();
    let got = tape
        .backward(y.id(), &g, &RuleSet::excitation_backprop(), &[xv.id()])
        .unwrap()
        .remove(0);
    let bits = |t: &Tensor<f32>| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&want));
}

#[test]
fn rule_sets_are_equal_by_what_they_do_not_by_name() {
    let a = RuleSet::<f64>::guided_backprop();
    let b = RuleSet::<f64>::standard().with(OpKind::RELU, Arc::new(relu::GuidedRelu));
    assert_eq!(a, b, "same rules, different names");
    assert_ne!(
        a,
        RuleSet::<f64>::guided_backprop()
            .named("standard")
            .with(OpKind::RELU, Arc::new(relu::DeconvnetRelu))
    );
    assert_ne!(RuleSet::<f64>::standard(), a.clone().named("standard"));
    let eb = RuleSet::<f64>::excitation_backprop();
    let negated = eb.clone().with_layer(
        "fc",
        Some(OpKind::LINEAR),
        Arc::new(linear::ExcitationLinear {
            negate_weights: true,
        }),
    );
    assert_ne!(eb, negated);
    assert_eq!(negated.clone(), negated);
}
