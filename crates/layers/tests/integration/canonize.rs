//! Canonizers as model transforms: merged batch norms compute the same
//! logits as the plain model (exactly to rounding, or with Zennit's
//! leftover `1 / sqrt(1 + eps)` per batch norm), leave the original model
//! alone, and keep the pairs they are told to keep.

use proptest::prelude::*;
use sightline_autograd::{OpKind, Retain, Tape};
use sightline_layers::{Architecture, Canonizer, MergeBatchNorm, Model, ResNetCanonizer};
use sightline_tensor::Tensor;
use std::path::PathBuf;

fn tiny_resnet() -> Model<f64> {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let text = std::fs::read_to_string(fixtures.join("manifest.json")).expect("manifest");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("json");
    let entry = &manifest["models"]["tiny_resnet"];
    let arch = Architecture::from_json_value(&entry["architecture"]).expect("architecture");
    let weights = fixtures.join(entry["weights"].as_str().expect("weights"));
    Model::from_safetensors(&arch, weights).expect("weights")
}

fn input(seed: u64, side: usize) -> Tensor<f64> {
    let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
    let data = (0..3 * side * side)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0
        })
        .collect();
    Tensor::from_vec(vec![1, 3, side, side], data).unwrap()
}

/// The logits and the tape of one recorded forward pass (nothing folded by
/// the tape).
fn record(model: &Model<f64>, x: &Tensor<f64>) -> (Tensor<f64>, Tape<f64>) {
    let mut tape = Tape::new(Retain::All);
    let xv = tape.input(x.clone());
    let y = model.forward(&mut tape, &xv).expect("forward");
    (y.value().clone(), tape)
}

fn count(tape: &Tape<f64>, kind: OpKind) -> usize {
    tape.nodes().iter().filter(|n| n.op.kind() == kind).count()
}

fn relative(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    a.max_abs_diff(b).unwrap() / b.max_abs()
}

#[test]
fn merging_keeps_the_logits_and_removes_or_leaves_the_batch_norms() {
    let plain = tiny_resnet();
    let x = input(1, 64);
    let (want, tape) = record(&plain, &x);
    let norms = count(&tape, OpKind::BATCH_NORM);
    assert_eq!(
        norms,
        1 + 4 * 2 + 3,
        "stem, two per block, three downsamples"
    );

    let exact = Canonizer::apply(&MergeBatchNorm::exact(), &plain).unwrap();
    let (got, tape) = record(&exact, &x);
    assert!(relative(&got, &want) < 1e-12, "{}", relative(&got, &want));
    assert_eq!(count(&tape, OpKind::BATCH_NORM), 0);
    assert_eq!(count(&tape, OpKind::CONV2D), 1 + 4 * 2 + 3);
    // A merged pair registers the batch norm's output, not the conv's.
    assert!(tape.layer_output("layer1.0.bn1").is_some());
    assert!(tape.layer_output("layer1.0.conv1").is_none());

    // Zennit's merge leaves x / sqrt(1 + 1e-5) per batch norm: the logits
    // move by about 5e-6 per batch norm on the path, no more.
    let zennit = Canonizer::apply(&ResNetCanonizer::new(), &plain).unwrap();
    let (got, tape) = record(&zennit, &x);
    let r = relative(&got, &want);
    assert!(r > 1e-9 && r < 1e-4, "{r}");
    assert_eq!(count(&tape, OpKind::BATCH_NORM), norms);

    // The original is untouched.
    let (again, tape) = record(&plain, &x);
    assert_eq!(again, want);
    assert_eq!(count(&tape, OpKind::BATCH_NORM), norms);
}

#[test]
fn exceptions_keep_their_pairs_and_must_name_layers() {
    let plain = tiny_resnet();
    let keep = MergeBatchNorm::exact().except(&["layer1.0.conv1", "conv1"]);
    let merged = Canonizer::apply(&keep, &plain).unwrap();
    let (_, tape) = record(&merged, &input(2, 48));
    assert_eq!(count(&tape, OpKind::BATCH_NORM), 2);
    assert!(tape.layer_output("layer1.0.conv1").is_some());
    assert!(tape.layer_output("conv1").is_some());
    assert!(tape.layer_output("layer2.0.conv1").is_none());

    let typo = MergeBatchNorm::exact().except(&["layer1.0.cnv1"]);
    let e = Canonizer::apply(&typo, &plain).unwrap_err().to_string();
    assert!(e.contains("layer1.0.cnv1"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// Canonized (exact merge) and plain models give the same logits on any
    /// input and size.
    #[test]
    fn canonized_and_plain_logits_agree(seed in 0u64..1000, side in 32usize..72) {
        let plain = tiny_resnet();
        let exact = Canonizer::apply(&MergeBatchNorm::exact(), &plain).unwrap();
        let x = input(seed, side);
        let (want, _) = record(&plain, &x);
        let (got, _) = record(&exact, &x);
        prop_assert!(relative(&got, &want) < 1e-11);
    }
}
