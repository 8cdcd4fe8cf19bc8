//! Finite-difference gradient checks, in f64, of every op's standard backward.

use proptest::prelude::*;
use sightline_autograd::ops::{
    arith, conv, linear, norm, pool, reduce, relu, resize, shape, softmax,
};
use sightline_autograd::{Result, Retain, RuleSet, Tape, Var};
use sightline_tensor::norm::BatchNormAffine;
use sightline_tensor::{AvgPool2dParams, Conv2dParams, MaxPool2dParams, ResizeMode, Tensor};
use std::sync::Arc;

type T = Tensor<f64>;

/// Deterministic pseudo-random values in [-1, 1], kept away from 0 by `gap`
/// (so ReLU kinks and max-pool ties are not crossed by the finite difference).
fn values(shape: &[usize], seed: u64, gap: f64) -> T {
    let n: usize = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = ((s >> 11) as f64) / ((1u64 << 53) as f64);
            let v = 2.0 * u - 1.0;
            v.signum() * (gap + (1.0 - gap) * v.abs())
        })
        .collect();
    Tensor::from_vec(shape.to_vec(), data).unwrap()
}

/// Checks d<f(inputs), r>/d inputs against central differences.
///
/// `f` records the op on a tape from leaves holding `inputs`.
/// Records an op from leaf variables.
type Build<'a> = &'a dyn Fn(&mut Tape<f64>, &[Var<f64>]) -> Result<Var<f64>>;

fn check(inputs: &[T], f: Build<'_>) {
    let run = |xs: &[T]| -> (Tape<f64>, Vec<Var<f64>>, Var<f64>) {
        let mut tape = Tape::new(Retain::All).training();
        let vars: Vec<_> = xs
            .iter()
            .map(|x| tape.parameter(Arc::new(x.clone())))
            .collect();
        let y = f(&mut tape, &vars).unwrap();
        (tape, vars, y)
    };
    let (tape, vars, y) = run(inputs);
    let r = values(y.shape(), 99, 0.0);
    let ids: Vec<_> = vars.iter().map(|v| v.id()).collect();
    let grads = tape
        .backward(y.id(), &r, &RuleSet::standard(), &ids)
        .unwrap();
    let loss = |xs: &[T]| -> f64 {
        let (_, _, y) = run(xs);
        y.value()
            .data()
            .iter()
            .zip(r.data())
            .map(|(a, b)| a * b)
            .sum()
    };
    let h = 1e-6;
    for (k, x) in inputs.iter().enumerate() {
        assert_eq!(grads[k].shape(), x.shape());
        for i in 0..x.len() {
            let mut plus = inputs.to_vec();
            plus[k].data_mut()[i] += h;
            let mut minus = inputs.to_vec();
            minus[k].data_mut()[i] -= h;
            let numeric = (loss(&plus) - loss(&minus)) / (2.0 * h);
            let analytic = grads[k].data()[i];
            assert!(
                (numeric - analytic).abs() <= 1e-6 * (1.0 + numeric.abs()),
                "input {k} element {i}: numeric {numeric} analytic {analytic}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn conv2d(n in 1usize..3, g in 1usize..3, cig in 1usize..3, cog in 1usize..3,
              h in 3usize..8, w in 3usize..8, kh in 1usize..4, kw in 1usize..4,
              sh in 1usize..3, sw in 1usize..3, ph in 0usize..3, pw in 0usize..3,
              dh in 1usize..3, dw in 1usize..3, bias in any::<bool>(), seed in any::<u64>()) {
        let p = Conv2dParams { stride: (sh, sw), padding: (ph, pw), dilation: (dh, dw), groups: g };
        prop_assume!(h + 2 * ph > dh * (kh - 1) && w + 2 * pw > dw * (kw - 1));
        let mut inputs = vec![values(&[n, g * cig, h, w], seed, 0.0), values(&[g * cog, cig, kh, kw], seed + 1, 0.0)];
        if bias { inputs.push(values(&[g * cog], seed + 2, 0.0)); }
        check(&inputs, &|t, v| conv::conv2d(t, &v[0], &v[1], v.get(2), p));
    }

    #[test]
    fn linear(n in 1usize..4, fin in 1usize..6, fout in 1usize..6, bias in any::<bool>(), seed in any::<u64>()) {
        let mut inputs = vec![values(&[n, fin], seed, 0.0), values(&[fout, fin], seed + 1, 0.0)];
        if bias { inputs.push(values(&[fout], seed + 2, 0.0)); }
        check(&inputs, &|t, v| linear::linear(t, &v[0], &v[1], v.get(2)));
    }

    #[test]
    fn relu(len in 1usize..40, seed in any::<u64>()) {
        check(&[values(&[len], seed, 1e-3)], &|t, v| relu::relu(t, &v[0]));
    }

    #[test]
    fn max_pool2d(c in 1usize..3, h in 2usize..9, w in 2usize..9, k in 1usize..4, s in 1usize..4,
                  d in 1usize..3, ceil in any::<bool>(), pad in 0usize..2, seed in any::<u64>()) {
        let p = MaxPool2dParams { kernel: (k, k.max(2) - 1), stride: (s, s + 1), padding: (pad.min(k / 2), 0), dilation: (d, 1), ceil_mode: ceil };
        prop_assume!(h + 2 * p.padding.0 > d * (k - 1) && w >= p.kernel.1);
        check(&[values(&[1, c, h, w], seed, 1e-3)], &|t, v| pool::max_pool2d(t, &v[0], p));
    }

    #[test]
    fn avg_pool2d(c in 1usize..3, h in 2usize..9, w in 2usize..9, k in 1usize..4, s in 1usize..4,
                  ceil in any::<bool>(), include in any::<bool>(), pad in 0usize..2, seed in any::<u64>()) {
        let p = AvgPool2dParams { kernel: (k, k), stride: (s, s), padding: (pad.min(k / 2), pad.min(k / 2)), ceil_mode: ceil, count_include_pad: include };
        prop_assume!(h + 2 * p.padding.0 >= k && w + 2 * p.padding.1 >= k);
        check(&[values(&[2, c, h, w], seed, 0.0)], &|t, v| pool::avg_pool2d(t, &v[0], p));
    }

    #[test]
    fn adaptive_avg_pool2d(h in 1usize..9, w in 1usize..9, oh in 1usize..9, ow in 1usize..9, seed in any::<u64>()) {
        check(&[values(&[1, 2, h, w], seed, 0.0)], &|t, v| pool::adaptive_avg_pool2d(t, &v[0], (oh, ow)));
    }

    #[test]
    fn batch_norm(c in 1usize..4, hw in 1usize..5, seed in any::<u64>()) {
        let stat = |s: u64| values(&[c], s, 0.1);
        let affine = Arc::new(BatchNormAffine::new(&stat(seed), &stat(seed + 1).map(f64::abs), &stat(seed + 2), &stat(seed + 3), 1e-5).unwrap());
        check(&[values(&[2, c, hw, hw + 1], seed + 4, 0.0)], &|t, v| norm::batch_norm(t, &v[0], &affine));
    }

    #[test]
    fn conv2d_batch_norm_folded(c in 1usize..4, cout in 1usize..4, hw in 3usize..7, k in 1usize..4,
                                stride in 1usize..3, bias in any::<bool>(), seed in any::<u64>()) {
        let stat = |s: u64| values(&[cout], s, 0.1);
        let affine = BatchNormAffine::new(&stat(seed), &stat(seed + 1).map(f64::abs), &stat(seed + 2), &stat(seed + 3), 1e-5).unwrap();
        let weight = Arc::new(values(&[cout, c, k, k], seed + 4, 0.0));
        let b = values(&[cout], seed + 5, 0.0);
        let folded = conv::FoldedBatchNorm::new(&weight, bias.then_some(&b), &affine).unwrap();
        let cache = conv::Conv2dCache::new();
        let p = Conv2dParams::new(stride, k / 2);
        check(&[values(&[2, c, hw, hw + 1], seed + 6, 0.0)], &|t, v| {
            conv::conv2d_batch_norm_folded(t, &v[0], &weight, &folded, p, &cache)
        });
    }

    #[test]
    fn add_mul_reshape(len in 1usize..12, seed in any::<u64>()) {
        let inputs = [values(&[2, len], seed, 0.0), values(&[2, len], seed + 1, 0.0)];
        check(&inputs, &|t, v| arith::add(t, &v[0], &v[1]));
        check(&inputs, &|t, v| arith::mul(t, &v[0], &v[1]));
        check(&inputs[..1], &|t, v| shape::reshape(t, &v[0], &[len, 2]));
    }

    #[test]
    fn reductions(a in 1usize..4, b in 1usize..4, c in 1usize..4, axis in 0usize..3, seed in any::<u64>()) {
        let x = [values(&[a, b, c], seed, 0.0)];
        check(&x, &|t, v| reduce::sum_axis(t, &v[0], axis));
        check(&x, &|t, v| reduce::mean_axis(t, &v[0], axis));
        check(&x, &|t, v| softmax::log_softmax(t, &v[0]));
    }

    #[test]
    fn resize2d(h in 1usize..6, w in 1usize..6, oh in 1usize..9, ow in 1usize..9, bilinear in any::<bool>(), seed in any::<u64>()) {
        let mode = if bilinear { ResizeMode::Bilinear } else { ResizeMode::Nearest };
        check(&[values(&[1, 2, h, w], seed, 0.0)], &|t, v| resize::resize(t, &v[0], (oh, ow), mode));
    }
}

#[test]
fn flatten_keeps_batch() {
    let x = values(&[2, 3, 2, 2], 1, 0.0);
    check(&[x], &|t, v| shape::flatten(t, &v[0]));
}
