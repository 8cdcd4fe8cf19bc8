//! Batch norms folded into the convolutions before them: the same values
//! and the same excitation maps (to rounding) as the two
//! layers, the batch norm's output as the pair's layer output, and kept or
//! training tapes left unfolded.

use sightline_autograd::ops::conv::Conv2dOp;
use sightline_autograd::{OpKind, Retain, RuleSet, Tape, Var};
use sightline_layers::layers::{BatchNorm2d, Conv2d, Layer, ReLU, Sequential};
use sightline_layers::run_child;
use sightline_tensor::{Conv2dParams, Tensor};
use std::sync::Arc;

/// Deterministic values in `[lo, hi]`.
fn values(shape: &[usize], seed: u64, lo: f64, hi: f64) -> Arc<Tensor<f64>> {
    let n: usize = shape.iter().product();
    let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
    let data = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect();
    Arc::new(Tensor::from_vec(shape.to_vec(), data).unwrap())
}

fn batch_norm(c: usize, seed: u64) -> BatchNorm2d<f64> {
    BatchNorm2d::new(
        values(&[c], seed, -1.5, 1.5), // negative scales too
        values(&[c], seed + 1, -0.5, 0.5),
        values(&[c], seed + 2, -0.3, 0.3),
        values(&[c], seed + 3, 0.2, 1.2),
        1e-5,
    )
    .unwrap()
}

/// conv (bias) + bn, relu, conv (no bias, stride 2) + bn, relu.
fn net() -> Sequential<f64> {
    let conv = |cin, cout, bias: bool, stride, seed| {
        let b = bias.then(|| values(&[cout], seed + 1, -0.2, 0.2));
        let w = values(&[cout, cin, 3, 3], seed, -0.5, 0.5);
        Conv2d::new(w, b, Conv2dParams::new(stride, 1)).unwrap()
    };
    Sequential::new(vec![
        Layer::from(conv(3, 5, true, 1, 10)),
        batch_norm(5, 20).into(),
        ReLU.into(),
        conv(5, 4, false, 2, 30).into(),
        batch_norm(4, 40).into(),
        ReLU.into(),
    ])
}

fn record(tape: Tape<f64>, seq: &Sequential<f64>) -> (Tape<f64>, Var<f64>, Var<f64>) {
    let mut tape = tape;
    let x = tape.input(values(&[2, 3, 7, 6], 1, -1.0, 1.0).as_ref().clone());
    let y = run_child(&mut tape, "net", seq, &x).unwrap();
    (tape, x, y)
}

/// Equal to rounding, element by element.
fn assert_close(a: &Tensor<f64>, b: &Tensor<f64>) {
    assert_eq!(a.shape(), b.shape());
    for (u, v) in a.data().iter().zip(b.data()) {
        assert!((u - v).abs() <= 1e-12 * (1.0 + u.abs()), "{u} vs {v}");
    }
}

fn batch_norms(tape: &Tape<f64>) -> usize {
    tape.nodes()
        .iter()
        .filter(|n| n.op.kind() == OpKind::BATCH_NORM)
        .count()
}

#[test]
fn folded_pairs_compute_the_same_as_the_two_layers() {
    let seq = net();
    for retain in [Retain::Minimal, Retain::All] {
        let (plain, px, py) = record(Tape::new(retain), &seq);
        let (folded, fx, fy) = record(Tape::new(retain).folding_batch_norm(), &seq);
        assert_eq!(batch_norms(&plain), 2);
        assert_eq!(batch_norms(&folded), 0);
        let (a, b) = (py.value(), fy.value());
        assert_close(a, b);
        // The batch norm's path names the pair's output; the conv's own
        // output was never computed.
        for l in ["net.1", "net.4"] {
            assert!(folded.layer_output(l).is_some(), "{l}");
        }
        for l in ["net.0", "net.3"] {
            assert!(
                folded.layer_output(l).is_none() && folded.is_folded(l),
                "{l}"
            );
            assert!(
                plain.layer_output(l).is_some() && !plain.is_folded(l),
                "{l}"
            );
        }
        // Standard and guided rules: the folded kernel's input gradient
        // equals the batch norm's then the convolution's, to rounding.
        let seed = values(a.shape(), 5, -1.0, 1.0);
        for rules in [RuleSet::standard(), RuleSet::guided_backprop()] {
            let g = plain.backward(py.id(), &seed, &rules, &[px.id()]).unwrap();
            let h = folded.backward(fy.id(), &seed, &rules, &[fx.id()]).unwrap();
            assert!(g[0].data().iter().any(|v| *v != 0.0));
            assert_close(&g[0], &h[0]);
        }
    }
}

/// Excitation backprop treats batch norm as the identity and uses the
/// convolution's own kernel, folded or not: the same maps, up to the
/// rounding of the activations they weigh by.
#[test]
fn excitation_maps_are_the_same_folded_or_not() {
    // Two copies of the network, so that no kernel made by one pass is
    // reused by the other.
    let (plain, px, py) = record(Tape::new(Retain::All), &net());
    let (folded, fx, fy) = record(Tape::new(Retain::All).folding_batch_norm(), &net());
    let shape = py.shape().to_vec();
    let seed = values(&shape, 6, 0.0, 1.0);
    let rules = RuleSet::excitation_backprop();
    let g = plain.backward(py.id(), &seed, &rules, &[px.id()]).unwrap();
    let h = folded.backward(fy.id(), &seed, &rules, &[fx.id()]).unwrap();
    assert!(g[0].data().iter().any(|v| *v != 0.0));
    assert_close(&g[0], &h[0]);
}

/// A kept convolution keeps its own output (its pair is not folded); a
/// training tape folds nothing.
#[test]
fn kept_layers_and_training_tapes_are_not_folded() {
    let seq = net();
    let (tape, _, _) = record(
        Tape::with_kept_layers(Retain::Minimal, &["net.0"]).folding_batch_norm(),
        &seq,
    );
    assert_eq!(batch_norms(&tape), 1);
    assert!(tape.layer_output("net.0").unwrap().value.is_some());
    assert!(!tape.is_folded("net.0") && tape.is_folded("net.3"));

    let (train, _, _) = record(
        Tape::new(Retain::Minimal).training().folding_batch_norm(),
        &seq,
    );
    assert_eq!(batch_norms(&train), 2);
}

/// The folded node is a convolution under the convolution's path, holding
/// the folded kernel and the layer's own one (for excitation backprop).
#[test]
fn the_folded_node_is_a_convolution_with_both_kernels() {
    let seq = net();
    let (folded, _, _) = record(Tape::new(Retain::Minimal).folding_batch_norm(), &seq);
    let first = &folded.nodes()[0];
    assert_eq!(&*first.layer, "net.0");
    let Some(op) = first.op.downcast_ref::<Conv2dOp<f64>>() else {
        panic!("not a convolution: {:?}", first.op.kind());
    };
    let Layer::Conv2d(conv) = &seq.layers()[0] else {
        unreachable!()
    };
    assert!(Arc::ptr_eq(
        op.unfolded_weight.as_ref().unwrap(),
        conv.weight()
    ));
    assert_ne!(op.weight.data(), conv.weight().data());
}
