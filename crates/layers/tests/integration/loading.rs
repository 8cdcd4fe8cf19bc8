//! Loading weights: every kind of bad file fails with an error naming the key
//! and the shapes; dtype conversions give the same numbers; saving round-trips.

use half::{bf16, f16};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use sightline_layers::{Architecture, LayerError, Model};
use sightline_tensor::Tensor;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn arch(model: &str) -> Architecture {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest");
    let m: serde_json::Value = serde_json::from_str(&text).expect("json");
    Architecture::from_json_value(&m["models"][model]["architecture"]).expect("architecture")
}

/// A safetensors file held as editable entries.
#[derive(Clone)]
struct Entries(Vec<(String, Dtype, Vec<usize>, Vec<u8>)>);

impl Entries {
    fn read(file: &str) -> Self {
        let bytes = std::fs::read(fixtures().join(file)).expect("fixture");
        let st = SafeTensors::deserialize(&bytes).expect("parse");
        let mut v: Vec<_> = st
            .tensors()
            .into_iter()
            .map(|(k, t)| (k, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Self(v)
    }

    fn bytes(&self) -> Vec<u8> {
        let views = self.0.iter().map(|(k, d, s, b)| {
            let view = TensorView::new(*d, s.clone(), b).expect("view");
            (k.clone(), view)
        });
        safetensors::serialize(views, &None).expect("serialize")
    }

    fn remove(mut self, key: &str) -> Self {
        let before = self.0.len();
        self.0.retain(|e| e.0 != key);
        assert_eq!(self.0.len() + 1, before, "{key} not in file");
        self
    }

    fn insert(mut self, key: &str, dtype: Dtype, shape: &[usize], bytes: Vec<u8>) -> Self {
        self.0.push((key.to_string(), dtype, shape.to_vec(), bytes));
        self
    }

    /// Maps every F32 tensor through `f`, which returns the new dtype and bytes.
    fn map_f32(mut self, f: impl Fn(&[f32]) -> (Dtype, Vec<u8>)) -> Self {
        for e in &mut self.0 {
            if e.1 == Dtype::F32 {
                let vals: Vec<f32> =
                    e.3.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                let (d, b) = f(&vals);
                e.1 = d;
                e.3 = b;
            }
        }
        self
    }
}

fn f32_bytes(v: impl IntoIterator<Item = f32>) -> Vec<u8> {
    v.into_iter().flat_map(f32::to_le_bytes).collect()
}

fn load(model: &str, entries: &Entries) -> sightline_layers::Result<Model<f32>> {
    Model::from_safetensors_bytes(&arch(model), &entries.bytes())
}

fn cases_input(model: &str) -> Tensor<f32> {
    let bytes =
        std::fs::read(fixtures().join(format!("{model}.cases.safetensors"))).expect("cases");
    let st = SafeTensors::deserialize(&bytes).expect("parse");
    let v = st.tensor("input").expect("input");
    let data = v
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Tensor::from_vec(v.shape().to_vec(), data).expect("shape")
}

#[test]
fn the_fixture_files_load_as_they_are() {
    for m in ["tiny_vgg", "tiny_resnet"] {
        let e = Entries::read(&format!("{m}.safetensors"));
        assert!(load(m, &e).is_ok(), "{m}");
    }
}

#[test]
fn missing_key() {
    let e = Entries::read("tiny_vgg.safetensors").remove("features.3.bias");
    match load("tiny_vgg", &e) {
        Err(err @ LayerError::MissingWeight { .. }) => {
            let msg = err.to_string();
            assert!(
                msg.contains("features.3.bias") && msg.contains("[16]"),
                "{msg}"
            );
            assert_eq!(
                err,
                LayerError::MissingWeight {
                    key: "features.3.bias".into(),
                    expected: vec![16]
                }
            );
        }
        other => panic!("expected MissingWeight, got {other:?}"),
    }
    let e = Entries::read("tiny_resnet.safetensors").remove("layer3.0.downsample.1.running_var");
    assert_eq!(
        load("tiny_resnet", &e).err(),
        Some(LayerError::MissingWeight {
            key: "layer3.0.downsample.1.running_var".into(),
            expected: vec![32]
        })
    );
}

#[test]
fn unexpected_key() {
    let e = Entries::read("tiny_vgg.safetensors").insert(
        "features.1.weight",
        Dtype::F32,
        &[2],
        f32_bytes([1.0, 2.0]),
    );
    let err = load("tiny_vgg", &e).err();
    assert_eq!(
        err,
        Some(LayerError::UnexpectedWeight {
            key: "features.1.weight".into()
        })
    );
    assert!(err
        .map(|e| e.to_string())
        .unwrap_or_default()
        .contains("features.1.weight"));
    // An int64 tensor that is not a batch norm counter is unexpected too.
    let e = Entries::read("tiny_vgg.safetensors").insert(
        "features.0.num_batches_tracked",
        Dtype::I64,
        &[],
        7i64.to_le_bytes().to_vec(),
    );
    assert_eq!(
        load("tiny_vgg", &e).err(),
        Some(LayerError::UnexpectedWeight {
            key: "features.0.num_batches_tracked".into()
        })
    );
}

#[test]
fn wrong_shape() {
    let e = Entries::read("tiny_vgg.safetensors")
        .remove("classifier.6.weight")
        .insert(
            "classifier.6.weight",
            Dtype::F32,
            &[10, 31],
            f32_bytes(vec![0.5; 310]),
        );
    let err = load("tiny_vgg", &e).expect_err("wrong shape");
    assert_eq!(
        err,
        LayerError::WeightShape {
            key: "classifier.6.weight".into(),
            expected: vec![10, 32],
            found: vec![10, 31]
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("classifier.6.weight") && msg.contains("[10, 31]") && msg.contains("[10, 32]"),
        "{msg}"
    );
}

#[test]
fn weights_of_another_architecture() {
    let vgg = Entries::read("tiny_vgg.safetensors");
    assert_eq!(
        load("tiny_resnet", &vgg).err(),
        Some(LayerError::MissingWeight {
            key: "conv1.weight".into(),
            expected: vec![8, 3, 7, 7]
        })
    );
    let resnet = Entries::read("tiny_resnet.safetensors");
    assert_eq!(
        load("tiny_vgg", &resnet).err(),
        Some(LayerError::MissingWeight {
            key: "features.0.weight".into(),
            expected: vec![8, 3, 3, 3]
        })
    );
    // The same family with other widths: the first tensor that differs.
    let mut wider = arch("tiny_vgg");
    if let Architecture::Vgg(c) = &mut wider {
        c.hidden = 64;
    }
    assert_eq!(
        Model::<f32>::from_safetensors_bytes(&wider, &vgg.bytes()).err(),
        Some(LayerError::WeightShape {
            key: "classifier.0.weight".into(),
            expected: vec![64, 128],
            found: vec![32, 128]
        })
    );
    // A bottleneck ResNet needs conv3.
    let mut bottleneck = arch("tiny_resnet");
    if let Architecture::ResNet(c) = &mut bottleneck {
        c.block = sightline_layers::BlockKind::Bottleneck;
    }
    assert!(matches!(
        Model::<f32>::from_safetensors_bytes(&bottleneck, &resnet.bytes()),
        Err(LayerError::WeightShape { .. } | LayerError::MissingWeight { .. })
    ));
}

#[test]
fn corrupt_bytes_and_missing_files() {
    let a = arch("tiny_vgg");
    for bytes in [
        b"garbage bytes, not safetensors at all".to_vec(),
        Vec::new(),
        vec![0xff; 64],
    ] {
        match Model::<f32>::from_safetensors_bytes(&a, &bytes) {
            Err(LayerError::CorruptWeights { path, message }) => {
                assert_eq!(path, "<memory>");
                assert!(!message.is_empty());
            }
            other => panic!("expected CorruptWeights, got {other:?}"),
        }
    }
    let good = Entries::read("tiny_vgg.safetensors").bytes();
    let truncated = &good[..good.len() - 100];
    assert!(matches!(
        Model::<f32>::from_safetensors_bytes(&a, truncated),
        Err(LayerError::CorruptWeights { .. })
    ));
    let path = fixtures().join("no_such_file.safetensors");
    match Model::<f32>::from_safetensors(&a, &path) {
        Err(LayerError::Io { path: p, .. }) => assert!(p.contains("no_such_file")),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn wrong_dtypes() {
    let e = Entries::read("tiny_vgg.safetensors")
        .remove("features.0.bias")
        .insert("features.0.bias", Dtype::I32, &[8], vec![0; 32]);
    assert_eq!(
        load("tiny_vgg", &e).err(),
        Some(LayerError::WeightDtype {
            key: "features.0.bias".into(),
            dtype: "I32".into()
        })
    );
    let e = Entries::read("tiny_resnet.safetensors")
        .remove("bn1.num_batches_tracked")
        .insert("bn1.num_batches_tracked", Dtype::F32, &[], f32_bytes([7.0]));
    assert_eq!(
        load("tiny_resnet", &e).err(),
        Some(LayerError::WeightDtype {
            key: "bn1.num_batches_tracked".into(),
            dtype: "F32".into()
        })
    );
}

#[test]
fn non_finite_weights() {
    let e = Entries::read("tiny_vgg.safetensors").map_f32(|v| {
        let mut v = v.to_vec();
        v[0] = f32::NAN;
        (Dtype::F32, f32_bytes(v))
    });
    assert!(
        matches!(load("tiny_vgg", &e), Err(LayerError::NonFinite { what }) if what.contains("weight `"))
    );
    // A negative running variance makes the folded batch norm non-finite.
    let e = Entries::read("tiny_resnet.safetensors")
        .remove("bn1.running_var")
        .insert(
            "bn1.running_var",
            Dtype::F32,
            &[8],
            f32_bytes(vec![-1.0; 8]),
        );
    assert!(
        matches!(load("tiny_resnet", &e), Err(LayerError::NonFinite { what }) if what.contains("`bn1`"))
    );
}

#[test]
fn num_batches_tracked_is_optional() {
    let mut e = Entries::read("tiny_resnet.safetensors");
    let counters =
        e.0.iter()
            .filter(|x| x.0.ends_with("num_batches_tracked"))
            .count();
    assert_eq!(counters, 12);
    assert!(e
        .0
        .iter()
        .filter(|x| x.0.ends_with("num_batches_tracked"))
        .all(|x| x.1 == Dtype::I64));
    let x = cases_input("tiny_resnet");
    let with = load("tiny_resnet", &e)
        .expect("with counters")
        .logits(&x)
        .expect("forward");
    e.0.retain(|x| !x.0.ends_with("num_batches_tracked"));
    let without = load("tiny_resnet", &e)
        .expect("without counters")
        .logits(&x)
        .expect("forward");
    assert_eq!(with, without);
}

/// Rounds every F32 tensor to a narrower type; returns the narrow file and the
/// F32 file of the same (rounded) values.
fn rounded(model: &str, dtype: Dtype) -> (Entries, Entries) {
    let e = Entries::read(&format!("{model}.safetensors"));
    let narrow = e.clone().map_f32(|v| match dtype {
        Dtype::F16 => (
            dtype,
            v.iter()
                .flat_map(|&x| f16::from_f32(x).to_le_bytes())
                .collect(),
        ),
        Dtype::BF16 => (
            dtype,
            v.iter()
                .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
                .collect(),
        ),
        Dtype::F64 => (
            dtype,
            v.iter().flat_map(|&x| f64::from(x).to_le_bytes()).collect(),
        ),
        _ => unreachable!(),
    });
    let wide = e.map_f32(|v| {
        let back = v.iter().map(|&x| match dtype {
            Dtype::F16 => f16::from_f32(x).to_f32(),
            Dtype::BF16 => bf16::from_f32(x).to_f32(),
            _ => x,
        });
        (Dtype::F32, f32_bytes(back))
    });
    (narrow, wide)
}

#[test]
fn f16_bf16_f64_weights_convert() {
    for model in ["tiny_vgg", "tiny_resnet"] {
        let x = cases_input(model);
        let reference = load(model, &Entries::read(&format!("{model}.safetensors")))
            .expect("f32")
            .logits(&x)
            .expect("forward");
        for dtype in [Dtype::F16, Dtype::BF16, Dtype::F64] {
            let (narrow, wide) = rounded(model, dtype);
            let a = load(model, &narrow)
                .expect("narrow loads")
                .logits(&x)
                .expect("forward");
            let b = load(model, &wide)
                .expect("wide loads")
                .logits(&x)
                .expect("forward");
            // The conversion is exact: the same logits as the F32 file of the same values.
            let tol = 1e-4 * b.max_abs();
            assert!(
                a.max_abs_diff(&b).expect("shape") <= tol,
                "{model} {dtype:?}"
            );
            // And close to the full-precision logits (rounding only).
            let loose = match dtype {
                Dtype::F64 => 1e-4,
                Dtype::F16 => 1e-2,
                _ => 5e-2,
            } * reference.max_abs();
            let d = a.max_abs_diff(&reference).expect("shape");
            assert!(d <= loose, "{model} {dtype:?}: {d} > {loose}");
        }
    }
}

#[test]
fn save_round_trips() {
    let dir = std::env::temp_dir().join(format!("sightline-layers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for model in ["tiny_vgg", "tiny_resnet"] {
        let original = Model::<f32>::from_safetensors(
            &arch(model),
            fixtures().join(format!("{model}.safetensors")),
        )
        .expect("load");
        let path = dir.join(format!("{model}.safetensors"));
        original.save_safetensors(&path).expect("save");
        let reloaded = Model::<f32>::from_safetensors(&arch(model), &path).expect("reload");
        let x = cases_input(model);
        assert_eq!(
            original.logits(&x).expect("a"),
            reloaded.logits(&x).expect("b")
        );
        // Same keys as PyTorch's state_dict (counters included).
        let saved = std::fs::read(&path).expect("read");
        let st = SafeTensors::deserialize(&saved).expect("parse");
        let mut keys: Vec<String> = st.names().into_iter().cloned().collect();
        keys.sort();
        let mut want: Vec<String> = Entries::read(&format!("{model}.safetensors"))
            .0
            .into_iter()
            .map(|e| e.0)
            .collect();
        want.sort();
        assert_eq!(keys, want, "{model}");
    }
    // A random f64 model saves as f32 and loads back.
    let m = Model::<f64>::random(&arch("tiny_resnet"), 5).expect("random");
    let back = Model::<f64>::from_safetensors_bytes(
        &arch("tiny_resnet"),
        &m.to_safetensors_bytes().expect("bytes"),
    )
    .expect("reload");
    let x = cases_input("tiny_resnet").cast::<f64>();
    let (a, b) = (m.logits(&x).expect("a"), back.logits(&x).expect("b"));
    assert!(a.max_abs_diff(&b).expect("shape") <= 1e-5 * a.max_abs());
    let _ = std::fs::remove_dir_all(&dir);
    let err = original_unwritable();
    assert!(matches!(err, Err(LayerError::Io { .. })));
}

fn original_unwritable() -> sightline_layers::Result<()> {
    let m = Model::<f32>::random(&arch("tiny_vgg"), 1)?;
    m.save_safetensors("/nonexistent-dir/sub/x.safetensors")
}
