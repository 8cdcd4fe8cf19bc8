//! Hand-computed values and defining properties of the LRP rules.

use super::testing::{dense_relevance, on_dense, sum_relevance, t2, DENSE, SUM2};
use super::*;
use crate::rule::RuleSet;
use proptest::prelude::*;
use sightline_tensor::Tensor;
use std::sync::Arc;

fn close(a: &Tensor<f64>, b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.data().iter().zip(b) {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{:?} vs {b:?}",
            a.data()
        );
    }
}

/// One output `y = 2 x1 - x2 + b` with `x = (1, 2)`: every rule by hand.
#[test]
fn one_output_by_hand() {
    let x = t2(&[&[1.0, 2.0]]);
    let w = t2(&[&[2.0, -1.0]]);
    let b = Tensor::from_vec(vec![1], vec![0.5]).unwrap();
    let r = t2(&[&[1.0]]);
    let rel = |rule: RuleSet<f64>| dense_relevance(&x, &w, Some(&b), &r, &rule).unwrap();
    // z = 2 - 2 + 0.5 = 0.5; epsilon 0.1 -> R = x w / 0.6.
    close(
        &rel(on_dense(Epsilon::new(0.1).unwrap())),
        &[2.0 / 0.6, -2.0 / 0.6],
        1e-12,
    );
    // z+ = x+ W+ + b+ = 2 + 0.5 (x has no negative part): R = (2, 0) / 2.5.
    close(&rel(on_dense(ZPlus::new(0.0).unwrap())), &[0.8, 0.0], 1e-12);
    // alpha 2 beta 1: positive (2, 0) / 2.5, negative (0, -2) / -2.
    let ab = AlphaBeta::with_stabilizer(2.0, 1.0, 0.0).unwrap();
    close(&rel(on_dense(ab)), &[2.0 * 0.8, -1.0], 1e-12);
    // gamma 0.5: y = 0.5 > 0: z = x+ (W + 0.5 W+) + (b + 0.5 b+) = 3 - 2 + 0.75.
    let g = Gamma::with_stabilizer(0.5, 0.0).unwrap();
    close(&rel(on_dense(g)), &[3.0 / 1.75, -2.0 / 1.75], 1e-12);
    // w-square: z = 4 + 1 + 0.25; R = (4, 1) / 5.25.
    close(
        &rel(on_dense(WSquare::new(0.0).unwrap())),
        &[4.0 / 5.25, 1.0 / 5.25],
        1e-12,
    );
    // flat: (1, 1) / 2.
    close(&rel(on_dense(Flat::new(0.0).unwrap())), &[0.5, 0.5], 1e-12);
    // z-box [-1, 3]: z = 0.5 - (L W+ + b+) - (H W- + b-) = 0.5 - (-2 + 0.5) - (-3) = 5;
    // R = (x W - L W+ - H W-) / 5 = (2 + 2, -2 + 3) / 5.
    close(
        &rel(on_dense(ZBox::with_stabilizer(-1.0, 3.0, 0.0).unwrap())),
        &[0.8, 0.2],
        1e-12,
    );
}

#[test]
fn stabilisers_follow_zennit() {
    // z = 0 exactly: the stabiliser counts as positive.
    let x = t2(&[&[1.0, 1.0]]);
    let w = t2(&[&[1.0, -1.0]]);
    let r = t2(&[&[1.0]]);
    let out = dense_relevance(&x, &w, None, &r, &on_dense(Epsilon::new(0.5).unwrap())).unwrap();
    close(&out, &[2.0, -2.0], 1e-12);
}

#[test]
fn norm_splits_a_sum_in_proportion() {
    let a = t2(&[&[1.0, -2.0]]);
    let b = t2(&[&[3.0, 1.0]]);
    let r = t2(&[&[2.0, 1.0]]);
    let rules = RuleSet::standard().with(SUM2, Arc::new(Norm::new(0.0).unwrap()));
    let (ra, rb) = sum_relevance(&a, &b, &r, &rules).unwrap();
    close(&ra, &[0.5, 2.0], 1e-12);
    close(&rb, &[1.5, -1.0], 1e-12);
}

#[test]
fn bad_parameters_are_errors() {
    assert!(AlphaBeta::new(2.0, 0.5).is_err());
    assert!(AlphaBeta::new(-1.0, -2.0).is_err());
    assert!(ZBox::new(1.0, -1.0).is_err());
    assert!(ZBox::new(f64::NEG_INFINITY, 1.0).is_err());
    assert!(Gamma::new(f64::NAN).is_err());
    assert!(Epsilon::new(-0.1).is_err());
    assert!(Norm::new(f64::INFINITY).is_err());
}

#[test]
fn a_rule_on_an_op_it_cannot_handle_is_an_error() {
    let a = t2(&[&[1.0]]);
    let rules = RuleSet::standard().with(SUM2, Arc::new(ZPlus::default()));
    let e = sum_relevance(&a, &a, &a, &rules).unwrap_err();
    assert!(e.to_string().contains("lrp_zplus"), "{e}");
    let rules = on_dense(Norm::default());
    let e = dense_relevance(&a, &a, None, &a, &rules).unwrap_err();
    assert!(e.to_string().contains("lrp_norm"), "{e}");
}

fn layer(
    n_in: usize,
    n_out: usize,
) -> impl Strategy<Value = (Tensor<f64>, Tensor<f64>, Tensor<f64>)> {
    (
        prop::collection::vec(-2.0..2.0f64, n_in),
        prop::collection::vec(-1.0..1.0f64, n_in * n_out),
        prop::collection::vec(-1.0..1.0f64, n_out),
    )
        .prop_map(move |(x, w, r)| {
            (
                Tensor::from_vec(vec![1, n_in], x).unwrap(),
                Tensor::from_vec(vec![n_out, n_in], w).unwrap(),
                Tensor::from_vec(vec![1, n_out], r).unwrap(),
            )
        })
}

fn sum(t: &Tensor<f64>) -> f64 {
    t.data().iter().sum()
}

proptest! {
    /// Epsilon to 0 on a linear layer is gradient times input: with the
    /// output relevance `R = y * c` (the output's share of `c . y`), LRP-0
    /// gives `x * d(c . y)/dx = x * W^T c`.
    #[test]
    fn epsilon_to_zero_is_gradient_times_input((x, w, c) in layer(5, 3)) {
        let dense = super::testing::Dense { x: x.clone(), w: w.clone(), b: None };
        let y = Affine::forward_with(&dense, &x, &w, None).unwrap();
        prop_assume!(y.data().iter().all(|z| z.abs() > 1e-3));
        let r = y.zip_map(&c, "r", |y, c| y * c).unwrap();
        let lrp = dense_relevance(&x, &w, None, &r, &on_dense(Epsilon::new(1e-12).unwrap())).unwrap();
        let gradient = Affine::input_gradient_with(&dense, &c, &w, x.shape()).unwrap();
        let want = gradient.zip_map(&x, "m", |g, x| g * x).unwrap();
        for (a, b) in lrp.data().iter().zip(want.data()) {
            prop_assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // and it conserves: without a bias, sum R_in = sum R_out.
        prop_assert!((sum(&lrp) - sum(&r)).abs() <= 1e-6 * (1.0 + sum(&r).abs()));
    }

    /// Epsilon absorbs: each output keeps z / (z + eps sign z) of its relevance.
    #[test]
    fn epsilon_absorbs((x, w, r) in layer(4, 3), eps in 0.01..1.0f64) {
        let y = super::testing::Dense { x: x.clone(), w: w.clone(), b: None };
        let z = Affine::forward_with(&y, &x, &w, None).unwrap();
        let lrp = dense_relevance(&x, &w, None, &r, &on_dense(Epsilon::new(eps).unwrap())).unwrap();
        let kept: f64 = r.data().iter().zip(z.data()).map(|(r, z)| r * z / stabilize(*z, eps)).sum();
        prop_assert!((sum(&lrp) - kept).abs() <= 1e-9 * (1.0 + kept.abs()));
        // and never more than the relevance it was given, output by output.
        for (r, z) in r.data().iter().zip(z.data()) {
            prop_assert!((r * z / stabilize(*z, eps)).abs() <= r.abs());
        }
    }

    /// z+, alpha-beta, gamma, flat, w-square and z-box conserve relevance
    /// through a bias-free layer (each output's relevance is split exactly
    /// among the inputs, up to the stabiliser).
    #[test]
    fn bias_free_rules_conserve((x, w, r) in layer(5, 4)) {
        let rules: Vec<RuleSet<f64>> = vec![
            on_dense(ZPlus::new(0.0).unwrap()),
            on_dense(AlphaBeta::with_stabilizer(2.0, 1.0, 0.0).unwrap()),
            on_dense(AlphaBeta::with_stabilizer(1.0, 0.0, 0.0).unwrap()),
            on_dense(Gamma::with_stabilizer(0.25, 0.0).unwrap()),
            on_dense(Flat::new(0.0).unwrap()),
            on_dense(WSquare::new(0.0).unwrap()),
            on_dense(ZBox::with_stabilizer(-2.0, 2.0, 0.0).unwrap()),
        ];
        for (i, rule) in rules.iter().enumerate() {
            let lrp = dense_relevance(&x, &w, None, &r, rule).unwrap();
            prop_assume!(lrp.data().iter().all(|v| v.is_finite() && v.abs() < 1e6));
            prop_assert!((sum(&lrp) - sum(&r)).abs() <= 1e-6 * (1.0 + sum(&r.map(f64::abs))), "rule {i}: {} vs {}", sum(&lrp), sum(&r));
        }
    }

    /// z+ on positive relevance and non-negative inputs gives non-negative
    /// relevance (only positive contributions count).
    #[test]
    fn zplus_keeps_positive_relevance_positive((x, w, r) in layer(5, 3)) {
        let x = x.map(f64::abs);
        let r = r.map(f64::abs);
        let lrp = dense_relevance(&x, &w, None, &r, &on_dense(ZPlus::default())).unwrap();
        prop_assert!(lrp.data().iter().all(|v| *v >= 0.0));
    }

    /// Pass hands relevance through unchanged; norm on a sum conserves it.
    #[test]
    fn norm_conserves_through_a_sum((a, b, r) in layer(3, 1)) {
        let a2 = a.clone();
        let b2 = b.reshape(vec![1, 3]).unwrap();
        let r2 = r.map(|v| v * 2.0);
        let r2 = Tensor::from_vec(vec![1, 3], vec![r2.data()[0]; 3]).unwrap();
        let s = a2.zip_map(&b2, "s", |a, b| a + b).unwrap();
        prop_assume!(s.data().iter().all(|v| v.abs() > 1e-3));
        let rules = RuleSet::standard().with(SUM2, Arc::new(Norm::new(0.0).unwrap()));
        let (ra, rb) = sum_relevance(&a2, &b2, &r2, &rules).unwrap();
        for i in 0..3 {
            prop_assert!((ra.data()[i] + rb.data()[i] - r2.data()[i]).abs() <= 1e-9 * (1.0 + r2.data()[i].abs()));
        }
    }
}

#[test]
fn pass_hands_relevance_through() {
    // A dense layer under Pass would change shape: refused, not silently wrong.
    let x = t2(&[&[1.0, 2.0]]);
    let w = t2(&[&[1.0, 1.0]]);
    let r = t2(&[&[1.0]]);
    let e = dense_relevance(
        &x,
        &w,
        None,
        &r,
        &RuleSet::standard().with(DENSE, Arc::new(Pass)),
    )
    .unwrap_err();
    assert!(e.to_string().contains("lrp_pass"), "{e}");
    // On a square dense layer, it is the identity.
    let w = t2(&[&[1.0, 3.0], &[2.0, 1.0]]);
    let r = t2(&[&[0.25, -4.0]]);
    let out = dense_relevance(
        &x,
        &w,
        None,
        &r,
        &RuleSet::standard().with(DENSE, Arc::new(Pass)),
    )
    .unwrap();
    close(&out, &[0.25, -4.0], 0.0);
}
