//! The executor on real exports: EfficientNet's SiLUs (`Mul(x,
//! Sigmoid(x))`) recorded as one op with the values and input gradient of
//! the pair; the canonizers' merged batch norms and explicit residual sums
//! on MobileNetV2.

use super::GraphNetwork;
use sightline_autograd::{OpKind, Retain, RuleSet, Tape};
use sightline_tensor::Tensor;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/onnx")
        .join(name)
}

/// Deterministic input values in `[-1, 1]`.
fn input(shape: &[usize]) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| ((i * 7919 % 1000) as f64) / 500.0 - 1.0)
        .collect();
    Tensor::from_vec(shape.to_vec(), data).unwrap()
}

/// Logits, input gradient of logit 1 summed over the batch, and the number
/// of nodes of each kind (SiLU, sigmoid, product, batch norm, residual sum).
fn run(net: &GraphNetwork<f64>, x: &Tensor<f64>) -> (Tensor<f64>, Tensor<f64>, [usize; 5]) {
    let mut tape = Tape::new(Retain::Minimal);
    let xv = tape.input(x.clone());
    let y = net.forward(&mut tape, &xv).unwrap();
    let (n, classes) = (y.shape()[0], y.shape()[1]);
    let seed = Tensor::from_vec(
        vec![n, classes],
        (0..n * classes)
            .map(|i| if i % classes == 1 { 1.0 } else { 0.0 })
            .collect(),
    )
    .unwrap();
    let count = |k: OpKind| tape.nodes().iter().filter(|nd| nd.op.kind() == k).count();
    let kinds = [
        count(OpKind::SILU),
        count(OpKind::SIGMOID),
        count(OpKind::MUL),
        count(OpKind::BATCH_NORM),
        count(OpKind::RESIDUAL_SUM),
    ];
    let gx = tape
        .backward(y.id(), &seed, &RuleSet::standard(), &[xv.id()])
        .unwrap()
        .remove(0);
    (y.value().clone(), gx, kinds)
}

fn assert_close(a: &Tensor<f64>, b: &Tensor<f64>, tol: f64) {
    assert_eq!(a.shape(), b.shape());
    let scale = b.data().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (p, q) in a.data().iter().zip(b.data()) {
        assert!((p - q).abs() <= tol * scale, "{p} vs {q} (scale {scale})");
    }
}

#[test]
fn efficientnet_silus_fuse_with_the_values_and_gradient_of_the_pair() {
    let net = GraphNetwork::<f64>::load(fixture("efficientnet_s.onnx")).unwrap();
    let x = input(net.declared_shape());
    let mut pair = net.copy();
    pair.options.unfused_silu = true;
    let (y0, g0, plain) = run(&pair, &x);
    let (y1, g1, fused) = run(&net, &x);
    // As it is: no SiLU op; every SiLU a sigmoid and a product, besides the
    // squeeze-and-excitation gates (a sigmoid times the feature map).
    assert_eq!(plain[0], 0);
    assert!(plain[1] > 0 && plain[2] >= plain[1]);
    // Fused: the SiLUs are one op each, the gates stay as they are.
    assert!(fused[0] > 0);
    assert_eq!(fused[1] + fused[0], plain[1]);
    assert_eq!(fused[2] + fused[0], plain[2]);
    assert!(fused[1] > 0, "the gates' sigmoids are not SiLUs");
    assert_close(&y1, &y0, 1e-12);
    assert_close(&g1, &g0, 1e-10);
}

/// MobileNetV2 (torchscript export, batch norms kept): the exact merge
/// removes every batch norm and keeps the logits; Zennit's leaves an
/// identity batch norm per merge; the ResNet canonizer makes the inverted
/// residuals' sums explicit; the original network is unchanged.
#[test]
fn canonizers_merge_batch_norms_and_make_sums_explicit() {
    use crate::canonize::BatchNormMerge;
    let net = GraphNetwork::<f64>::load(fixture("mobilenet_v2_s.onnx")).unwrap();
    let x = input(net.declared_shape());
    let (y0, g0, plain) = run(&net, &x);
    assert!(plain[3] > 0, "the export keeps its batch norms");
    assert_eq!(plain[4], 0);
    let exact = net
        .with_batch_norms_merged(BatchNormMerge::Removed, &[])
        .unwrap();
    let (y1, g1, merged) = run(&exact, &x);
    assert_eq!(merged[3], 0);
    assert_close(&y1, &y0, 1e-12);
    assert_close(&g1, &g0, 1e-10);
    let zennit = net
        .with_batch_norms_merged(BatchNormMerge::ZennitIdentity, &[])
        .unwrap()
        .with_residual_sums();
    let (y2, _, left) = run(&zennit, &x);
    assert_eq!(left[3], plain[3], "one identity batch norm per merge");
    assert!(left[4] > 0, "the inverted residuals' sums");
    assert_close(&y2, &y0, 1e-3);
    assert!(y2.max_abs_diff(&y0).unwrap() > 0.0);
    let (y3, _, again) = run(&net, &x);
    assert_eq!((y3, again), (y0, plain));
}
