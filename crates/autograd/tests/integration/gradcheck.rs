//! Finite-difference gradient checks, in f64, of every op's standard backward.

use proptest::prelude::*;
use sightline_autograd::ops::{
    activation, arith, conv, linear, matmul, norm, pool, reduce, relu, resize, shape, softmax,
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
        let p = Conv2dParams { stride: (sh, sw), padding: (ph, pw), dilation: (dh, dw), groups: g, ..Conv2dParams::default() };
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
        let p = MaxPool2dParams { kernel: (k, k.max(2) - 1), stride: (s, s + 1), padding: (pad.min(k / 2), 0), dilation: (d, 1), ceil_mode: ceil, ..MaxPool2dParams::new(1, 1, 0) };
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
        let p = Conv2dParams::new(stride, k / 2);
        check(&[values(&[2, c, hw, hw + 1], seed + 6, 0.0)], &|t, v| {
            conv::conv2d_batch_norm_folded(t, &v[0], &folded, p)
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

/// `x` times `scale`, each element then moved at least `1e-3` away from
/// every point of `kinks` (so the finite difference does not cross a
/// kink of clip or the hard activations).
fn avoiding(x: T, scale: f64, kinks: &[f64]) -> T {
    x.map(|v| {
        let v = v * scale;
        kinks.iter().fold(v, |v, &k| {
            if (v - k).abs() < 1e-3 {
                k + 1e-3f64.copysign(v - k)
            } else {
                v
            }
        })
    })
}

/// Bounds of an ONNX Slice on an axis of length `len`, clamped as the
/// planner clamps them, from raw draws: a positive step takes
/// `0 <= start, end <= len`, a negative one `start < len`, `end >= -1`.
fn slice_bounds(len: usize, a: usize, b: usize, step: i64) -> (i64, i64) {
    let len = len as i64;
    if step > 0 {
        ((a as i64) % (len + 1), (b as i64) % (len + 1))
    } else {
        ((a as i64) % len, (b as i64) % (len + 1) - 1)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, .. ProptestConfig::default() })]

    #[test]
    fn clip(len in 1usize..30, lo in any::<bool>(), hi in any::<bool>(), seed in any::<u64>()) {
        let (lo, hi) = (lo.then_some(-2.0), hi.then_some(3.0));
        let x = avoiding(values(&[len], seed, 0.0), 5.0, &[-2.0, 3.0]);
        check(&[x], &|t, v| activation::clip(t, &v[0], lo, hi));
    }

    #[test]
    fn sigmoid_and_erf(len in 1usize..30, seed in any::<u64>()) {
        let x = [values(&[len], seed, 0.0).map(|v| 3.0 * v)];
        check(&x, &|t, v| activation::sigmoid(t, &v[0]));
        check(&x, &|t, v| activation::erf(t, &v[0]));
    }

    #[test]
    fn hard_sigmoid(len in 1usize..30, pytorch in any::<bool>(), seed in any::<u64>()) {
        let (alpha, beta) = if pytorch { (1.0 / 6.0, 0.5) } else { (0.2, 0.4) };
        let kinks = [-beta / alpha, (1.0 - beta) / alpha];
        let x = avoiding(values(&[len], seed, 0.0), 5.0, &kinks);
        check(&[x], &|t, v| activation::hard_sigmoid(t, &v[0], alpha, beta));
    }

    #[test]
    fn hard_swish(len in 1usize..30, seed in any::<u64>()) {
        let x = avoiding(values(&[len], seed, 0.0), 5.0, &[-3.0, 3.0]);
        check(&[x], &|t, v| activation::hard_swish(t, &v[0]));
    }

    /// Batched products with broadcast batches, and 1-d operands.
    #[test]
    fn matmul(m in 1usize..4, k in 1usize..4, n in 1usize..4, batch in 1usize..3,
              form in 0usize..5, seed in any::<u64>()) {
        let (sa, sb): (Vec<usize>, Vec<usize>) = match form {
            0 => (vec![m, k], vec![k, n]),
            1 => (vec![batch, m, k], vec![k, n]),
            2 => (vec![batch, 1, m, k], vec![2, k, n]),
            3 => (vec![k], vec![batch, k, n]),
            _ => (vec![batch, m, k], vec![k]),
        };
        let inputs = [values(&sa, seed, 0.0), values(&sb, seed + 1, 0.0)];
        check(&inputs, &|t, v| matmul::matmul(t, &v[0], &v[1]));
    }

    #[test]
    fn softmax_along_an_axis(a in 1usize..4, b in 1usize..4, c in 1usize..4, axis in 0usize..3, seed in any::<u64>()) {
        check(&[values(&[a, b, c], seed, 0.0)], &|t, v| softmax::softmax(t, &v[0], axis));
    }

    /// Gradients of the input, the scale and (when given) the bias.
    #[test]
    fn layer_norm(a in 1usize..3, b in 1usize..4, c in 2usize..4, axis in 1usize..3,
                  bias in any::<bool>(), seed in any::<u64>()) {
        let shape = [a, b, c];
        let mut inputs = vec![values(&shape, seed, 0.0), values(&shape[axis..], seed + 1, 0.1)];
        if bias { inputs.push(values(&shape[axis..], seed + 2, 0.0)); }
        check(&inputs, &|t, v| norm::layer_norm(t, &v[0], &v[1], v.get(2), axis, 1e-5));
    }

    #[test]
    fn transpose(a in 1usize..4, b in 1usize..4, c in 1usize..4,
                 perm in Just(vec![0usize, 1, 2]).prop_shuffle(), seed in any::<u64>()) {
        check(&[values(&[a, b, c], seed, 0.0)], &|t, v| shape::transpose(t, &v[0], &perm));
    }

    #[test]
    fn concat(sizes in prop::collection::vec(1usize..4, 1..4), axis in 0usize..3, seed in any::<u64>()) {
        let inputs: Vec<T> = sizes.iter().enumerate().map(|(i, &s)| {
            let mut shape = vec![2, 3, 2];
            shape[axis] = s;
            values(&shape, seed + i as u64, 0.0)
        }).collect();
        check(&inputs, &|t, v| {
            let vars: Vec<&Var<f64>> = v.iter().collect();
            shape::concat(t, &vars, axis)
        });
    }

    /// Positive and negative steps, bounds as the planner clamps them.
    #[test]
    fn slice(len in 1usize..7, axis in 0usize..2, a in 0usize..8, b in 0usize..8,
             step in prop_oneof![-3i64..0, 1i64..4], seed in any::<u64>()) {
        let mut shape = vec![2, 3];
        shape[axis] = len;
        let (start, end) = slice_bounds(len, a, b, step);
        check(&[values(&shape, seed, 0.0)], &|t, v| shape::slice(t, &v[0], axis, start, end, step));
    }

    /// Repeated indices add up.
    #[test]
    fn gather(len in 1usize..4, axis in 0usize..3, raw in prop::collection::vec(0usize..16, 1..7),
              two_d in any::<bool>(), seed in any::<u64>()) {
        let mut shape = vec![2, 2, 3];
        shape[axis] = len;
        let mut indices: Vec<usize> = raw.iter().map(|i| i % len).collect();
        let indices_shape = if two_d && indices.len() >= 2 {
            indices.truncate(indices.len() / 2 * 2);
            vec![2, indices.len() / 2]
        } else {
            vec![indices.len()]
        };
        check(&[values(&shape, seed, 0.0)], &|t, v| shape::gather(t, &v[0], axis, &indices, &indices_shape));
    }

    /// `[a, 1, c]` broadcast to `[b, a, d, c]` (or to `[1, 1, c]`, which
    /// keeps `a`).
    #[test]
    fn expand(a in 1usize..3, b in 1usize..3, c in 1usize..3, d in 1usize..4,
              lead in any::<bool>(), seed in any::<u64>()) {
        let target = if lead { vec![b, a, d, c] } else { vec![1, 1, c] };
        check(&[values(&[a, 1, c], seed, 0.0)], &|t, v| shape::expand(t, &v[0], &target));
    }

    #[test]
    fn pad(a in 1usize..3, b in 1usize..4, pads in prop::array::uniform4(0usize..3),
           value in -2.0f64..2.0, seed in any::<u64>()) {
        let (begin, end) = ([pads[0], pads[1]], [pads[2], pads[3]]);
        check(&[values(&[a, b], seed, 0.0)], &|t, v| shape::pad(t, &v[0], &begin, &end, value));
    }

    #[test]
    fn mean_axes(a in 1usize..4, b in 1usize..4, c in 1usize..4, mask in 0usize..8,
                 keepdims in any::<bool>(), seed in any::<u64>()) {
        let axes: Vec<usize> = (0..3).filter(|i| mask & (1 << i) != 0).collect();
        check(&[values(&[a, b, c], seed, 0.0)], &|t, v| reduce::mean_axes(t, &v[0], &axes, keepdims));
    }
}
