//! Tests against the exported torchvision fixtures in
//! `tests/fixtures/onnx/` (both PyTorch exporters), and against damaged
//! copies of them.

use crate::plan::{Operand, Plan};
use crate::proto::ModelProto;
use crate::test_models::tiny_external_model;
use crate::{NodeOp, OnnxError, OnnxModel};
use proptest::prelude::*;
use prost::Message;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(fixture_dir().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// (name, manifest entry) of every fixture model.
fn models() -> Vec<(String, Value)> {
    let m = manifest();
    let models = m["models"].as_object().unwrap();
    assert_eq!(models.len(), 8, "eight fixture families");
    models.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn input_shape(entry: &Value) -> Vec<usize> {
    entry["input_shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect()
}

fn load(entry: &Value) -> OnnxModel<f32> {
    let file = fixture_dir().join(entry["onnx"].as_str().unwrap());
    OnnxModel::load(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn plan(entry: &Value) -> Plan<f32> {
    load(entry).plan(&input_shape(entry)).unwrap()
}

/// Layer names the manifest's cases use.
fn layer_names(entry: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for case in entry["cases"].as_array().unwrap() {
        for key in [
            "saliency_layer",
            "contrast_layer",
            "classifier_layer",
            "layer",
        ] {
            if let Some(name) = case["params"][key].as_str() {
                out.insert(name.to_string());
            }
        }
    }
    out
}

fn read_proto(name: &str) -> ModelProto {
    let bytes = std::fs::read(fixture_dir().join(name)).unwrap();
    ModelProto::decode(bytes.as_slice()).unwrap()
}

#[test]
fn every_fixture_loads_and_plans_to_logits() {
    for (name, entry) in models() {
        let model = load(&entry);
        let shape = input_shape(&entry);
        let exporter = entry["exporter"].as_str().unwrap();
        assert_eq!(
            model.opset(),
            if exporter == "dynamo" { 18 } else { 17 },
            "{name}"
        );
        assert!(
            model.producer().starts_with("pytorch 2.15"),
            "{name}: {}",
            model.producer()
        );
        assert_eq!(model.fixed_input_shape(), Some(shape.clone()), "{name}");
        let plan = model.plan(&shape).unwrap_or_else(|e| panic!("{name}: {e}"));
        let classes = entry["num_classes"].as_u64().unwrap() as usize;
        assert_eq!(
            plan.shape(plan.output),
            Some(&[shape[0], classes][..]),
            "{name}"
        );
        assert_eq!(plan.input, 0);
        assert_eq!(plan.values[0].shape, shape);
        // Topological, every value defined once before use, output last.
        let mut defined = vec![false; plan.values.len()];
        defined[plan.input] = true;
        for node in &plan.nodes {
            for op in &node.inputs {
                if let Operand::Value(v) = op {
                    assert!(
                        defined[*v],
                        "{name}: {} uses {v} before it is made",
                        node.name
                    );
                }
            }
            for &o in &node.outputs {
                assert!(
                    !std::mem::replace(&mut defined[o], true),
                    "{name}: {o} made twice"
                );
            }
        }
        assert!(defined.iter().all(|&d| d), "{name}: every value is made");
        assert_eq!(
            plan.nodes.last().unwrap().outputs,
            vec![plan.output],
            "{name}"
        );
    }
}

#[test]
fn planned_op_types_are_the_manifest_ops_less_the_vanishing_ones() {
    for (name, entry) in models() {
        let plan = plan(&entry);
        let expected: BTreeSet<String> = entry["onnx_ops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .filter(|op| !matches!(op.as_str(), "Constant" | "Identity" | "Dropout"))
            .collect();
        let found: BTreeSet<String> = plan.nodes.iter().map(|n| n.op_type.clone()).collect();
        assert_eq!(found, expected, "{name}");
        for node in &plan.nodes {
            match node.op_type.as_str() {
                "Flatten" | "Squeeze" | "Unsqueeze" => {
                    assert!(
                        matches!(node.op, NodeOp::Reshape { .. }),
                        "{name}: {}",
                        node.name
                    )
                }
                other => assert_eq!(node.op.name(), other, "{name}: {}", node.name),
            }
        }
    }
}

#[test]
fn manifest_layer_names_resolve_with_plausible_shapes() {
    for (name, entry) in models() {
        let plan = plan(&entry);
        let batch = input_shape(&entry)[0];
        let layers = plan.layer_outputs();
        for layer in layer_names(&entry) {
            let shape = plan
                .layer_shape(&layer)
                .unwrap_or_else(|| panic!("{name}: layer {layer} not found"));
            assert_eq!(shape[0], batch, "{name}: {layer} {shape:?}");
            assert!(matches!(shape.len(), 2 | 4), "{name}: {layer} {shape:?}");
            assert!(shape.iter().all(|&d| d > 0));
            let id = plan.layer_output(&layer).unwrap();
            assert!(layers.contains(&(layer.clone(), id)), "{name}: {layer}");
        }
    }
    // Values worked out from the architectures.
    let all: Vec<(String, Value)> = models();
    let get = |m: &str| {
        all.iter()
            .find(|(n, _)| n == m)
            .map(|(_, e)| plan(e))
            .unwrap()
    };
    let p = get("mobilenet_v2_s");
    assert_eq!(p.layer_shape("features.18"), Some(&[2, 1280, 2, 2][..]));
    assert_eq!(p.layer_shape("features.7"), Some(&[2, 16, 3, 4][..]));
    let p = get("densenet_s");
    assert_eq!(p.layer_shape("classifier"), Some(&[1, 10][..]));
    let p = get("vit_s");
    assert_eq!(p.layer_shape("conv_proj"), Some(&[2, 16, 4, 4][..]));
    let p = get("shufflenet_s");
    assert_eq!(
        p.layer_shape("conv5").map(|s| s[2..].to_vec()),
        Some(vec![2, 2])
    );
    let p = get("mobilenet_v3_s");
    assert_eq!(p.layer_shape("classifier.1").map(|s| s.len()), Some(2));
}

#[test]
fn layer_outputs_end_at_the_module_output() {
    let all = models();
    let entry = &all.iter().find(|(n, _)| n == "mobilenet_v2_s").unwrap().1;
    let plan = plan(entry);
    // features.1 is an inverted residual without a skip; features.3 ends in
    // its residual Add.
    let id = plan.layer_output("features.3").unwrap();
    let node = plan.nodes.iter().find(|n| n.outputs.contains(&id)).unwrap();
    assert_eq!(node.name, "/features/features.3/Add");
    let layers = plan.layer_outputs();
    let names: Vec<&str> = layers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(&names[..3], &["features", "features.0", "features.0.0"]);
    assert!(names.contains(&"features.1.conv.0.0"));
    assert!(names.contains(&"classifier.1"));
}

#[test]
fn torchscript_scopes_match_the_weight_names() {
    // A Conv, Gemm or BatchNormalization node whose weight initializer is
    // `M.weight` lies in module M. The dynamo fixtures fold batch norm into
    // convolutions (the node takes the norm's scope), except SqueezeNet.
    for name in [
        "mobilenet_v2_s",
        "densenet_s",
        "mobilenet_v3_s",
        "convnext_s",
        "squeezenet_s",
    ] {
        let model: OnnxModel<f32> =
            OnnxModel::load(fixture_dir().join(format!("{name}.onnx"))).unwrap();
        let mut checked = 0;
        for node in &model.nodes {
            if !matches!(
                node.op_type.as_str(),
                "Conv" | "Gemm" | "BatchNormalization"
            ) {
                continue;
            }
            let Some(weight) = node.inputs.get(1).filter(|w| w.ends_with(".weight")) else {
                continue;
            };
            let module = node
                .scope
                .last()
                .unwrap_or_else(|| panic!("{name}: {}", node.name));
            assert_eq!(&format!("{module}.weight"), weight, "{name}: {}", node.name);
            // Each scope is a chain of prefixes.
            for pair in node.scope.windows(2) {
                assert!(
                    pair[1].starts_with(&format!("{}.", pair[0])),
                    "{:?}",
                    node.scope
                );
            }
            checked += 1;
        }
        assert!(checked >= 7, "{name}: only {checked} nodes checked");
    }
}

#[test]
fn dynamo_scopes_come_from_metadata() {
    let model: OnnxModel<f32> = OnnxModel::load(fixture_dir().join("vit_s.onnx")).unwrap();
    let ln = model
        .nodes
        .iter()
        .find(|n| n.name == "node_layer_norm")
        .unwrap();
    assert_eq!(
        ln.scope,
        vec![
            "encoder",
            "encoder.layers",
            "encoder.layers.encoder_layer_0",
            "encoder.layers.encoder_layer_0.ln_1"
        ]
    );
    let view = model.nodes.iter().find(|n| n.name == "node_view").unwrap();
    assert!(view.scope.is_empty());
    // ShuffleNet's chunk Splits carry no metadata: they take the scope of
    // the block that consumes them.
    let model: OnnxModel<f32> = OnnxModel::load(fixture_dir().join("shufflenet_s.onnx")).unwrap();
    let split = model
        .nodes
        .iter()
        .find(|n| n.name == "node_Split_393")
        .unwrap();
    assert_eq!(split.scope, vec!["stage2", "stage2.1"]);
}

#[test]
fn float64_models_and_shared_weights() {
    let all = models();
    let entry = &all.iter().find(|(n, _)| n == "convnext_s").unwrap().1;
    let file = fixture_dir().join("convnext_s.onnx");
    let m32: OnnxModel<f32> = OnnxModel::load(&file).unwrap();
    let m64: OnnxModel<f64> = OnnxModel::load(&file).unwrap();
    let shape = input_shape(entry);
    let (p32, p64) = (m32.plan(&shape).unwrap(), m64.plan(&shape).unwrap());
    assert_eq!(p32.nodes.len(), p64.nodes.len());
    let first_weight = |p: &Plan<f32>| match &p.nodes[0].inputs[1] {
        Operand::Const(t) => t.clone(),
        _ => panic!("the first Conv's weight is a constant"),
    };
    let w32 = first_weight(&p32);
    match &p64.nodes[0].inputs[1] {
        Operand::Const(t) => {
            assert_eq!(t.shape(), w32.shape());
            let back: Vec<f64> = w32.data().iter().map(|&v| f64::from(v)).collect();
            assert_eq!(t.data(), back.as_slice());
        }
        _ => panic!(),
    }
    // A second plan shares the weights of the first.
    let again = m32.plan(&shape).unwrap();
    assert!(Arc::ptr_eq(&w32, &first_weight(&again)));
    // ConvNeXt's Linear weights arrive transposed by a folded Transpose.
    let matmul = p32.nodes.iter().find(|n| n.op_type == "MatMul").unwrap();
    match &matmul.inputs[1] {
        Operand::Const(t) => assert_eq!(t.shape(), &[16, 64]),
        _ => panic!("the MatMul weight is folded to a constant"),
    }
}

#[test]
fn input_sizes_the_graph_cannot_take() {
    let dir = fixture_dir();
    let vit: OnnxModel<f32> = OnnxModel::load(dir.join("vit_s.onnx")).unwrap();
    // The dynamo export bakes the batch of 2 into its Reshape shapes.
    match vit.plan(&[1, 3, 32, 32]) {
        Err(OnnxError::Shape {
            node,
            op_type,
            message,
        }) => {
            assert_eq!(node, "node_view");
            assert_eq!(op_type, "Reshape");
            assert!(message.contains("cannot reshape"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let densenet: OnnxModel<f32> = OnnxModel::load(dir.join("densenet_s.onnx")).unwrap();
    let e = densenet.plan(&[1, 3, 8, 8]).unwrap_err();
    assert!(matches!(e, OnnxError::Shape { .. }), "{e}");
    assert!(
        e.to_string().contains("larger than the padded input"),
        "{e}"
    );
    assert!(matches!(
        densenet.plan(&[1, 3, 64]),
        Err(OnnxError::InputShape { .. })
    ));
    assert!(matches!(
        densenet.plan(&[1, 3, 0, 64]),
        Err(OnnxError::InputShape { .. })
    ));
    assert!(matches!(
        densenet.plan(&[1, 4, 64, 64]),
        Err(OnnxError::Shape { .. })
    ));
    // The torchscript export takes other batch sizes and image sizes.
    let plan = densenet.plan(&[3, 3, 96, 80]).unwrap();
    assert_eq!(plan.shape(plan.output), Some(&[3, 10][..]));
    // An absurd size is refused before anything is allocated for it.
    let e = densenet.plan(&[1 << 40, 3, 64, 64]).unwrap_err();
    assert!(matches!(e, OnnxError::PlanTooLarge { .. }), "{e}");
}

#[test]
fn unknown_ops_are_refused_at_load() {
    let mut proto = read_proto("mobilenet_v2_s.onnx");
    let node = &mut proto.graph.as_mut().unwrap().node[3];
    node.op_type = "FancyOp".into();
    let name = node.name.clone();
    let bytes = proto.encode_to_vec();
    match OnnxModel::<f32>::from_bytes(&bytes, None) {
        Err(OnnxError::UnsupportedOp {
            op_type,
            node,
            opset,
        }) => {
            assert_eq!((op_type.as_str(), node, opset), ("FancyOp", name, 17));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn cycles_are_refused_at_load() {
    let mut proto = read_proto("densenet_s.onnx");
    let graph = proto.graph.as_mut().unwrap();
    // The first node (a Conv of the input) now reads the output of the
    // ReLU after it: Conv -> BN -> ReLU -> Conv.
    let relu_out = graph.node[2].output[0].clone();
    graph.node[0].input[0] = relu_out;
    let names: Vec<String> = graph.node[..3].iter().map(|n| n.name.clone()).collect();
    let e = OnnxModel::<f32>::from_bytes(&proto.encode_to_vec(), None).unwrap_err();
    match &e {
        OnnxError::Graph { node, message } => {
            assert!(message.contains("cycle"), "{e}");
            assert!(names.contains(node), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn dynamo_models_need_their_external_data() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixture_dir().join("squeezenet_s.onnx");
    let copy = tmp.path().join("squeezenet_s.onnx");
    std::fs::copy(&src, &copy).unwrap();
    match OnnxModel::<f32>::load(&copy) {
        Err(OnnxError::ExternalData {
            location, message, ..
        }) => {
            assert_eq!(location, "squeezenet_s.onnx.data");
            assert!(message.contains("missing file"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A truncated data file: the ranges no longer fit.
    let data = std::fs::read(fixture_dir().join("squeezenet_s.onnx.data")).unwrap();
    std::fs::write(
        tmp.path().join("squeezenet_s.onnx.data"),
        &data[..data.len() / 2],
    )
    .unwrap();
    match OnnxModel::<f32>::load(&copy) {
        Err(OnnxError::ExternalData { message, .. }) => {
            assert!(message.contains("past the end"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // The whole data file: it loads, from a folder of its own.
    std::fs::write(tmp.path().join("squeezenet_s.onnx.data"), &data).unwrap();
    assert!(OnnxModel::<f32>::load(&copy).is_ok());
    // From bytes, external data needs a folder.
    let bytes = std::fs::read(&src).unwrap();
    assert!(matches!(
        OnnxModel::<f32>::from_bytes(&bytes, None),
        Err(OnnxError::ExternalData { .. })
    ));
    assert!(OnnxModel::<f32>::from_bytes(&bytes, Some(&fixture_dir())).is_ok());
}

#[test]
fn external_locations_outside_the_folder_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    let weights: Vec<u8> = [1.5f32, -2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(root.path().join("x"), &weights).unwrap();
    std::fs::write(dir.join("w.bin"), &weights).unwrap();
    for location in ["../x", "/tmp/../x", "sub/../../x"] {
        let bytes = tiny_external_model(location);
        match OnnxModel::<f32>::from_bytes(&bytes, Some(&dir)) {
            Err(OnnxError::ExternalData {
                location: l,
                tensor,
                ..
            }) => {
                assert_eq!((l.as_str(), tensor.as_str()), (location, "w"));
            }
            other => panic!("{location}: {other:?}"),
        }
    }
    // Inside the folder it loads and plans.
    let model = OnnxModel::<f32>::from_bytes(&tiny_external_model("w.bin"), Some(&dir)).unwrap();
    let plan = model.plan(&[2]).unwrap();
    assert_eq!(plan.nodes.len(), 2);
    match &plan.nodes[0].inputs[1] {
        Operand::Const(t) => assert_eq!(t.data(), &[1.5, -2.0]),
        _ => panic!(),
    }
    // Written next to the model file, `load` finds it too.
    let file = dir.join("tiny.onnx");
    std::fs::write(&file, tiny_external_model("w.bin")).unwrap();
    assert!(OnnxModel::<f32>::load(&file).is_ok());
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = std::fs::read(fixture_dir().join("densenet_s.onnx")).unwrap();
    let mut len = 0;
    while len < bytes.len() {
        match OnnxModel::<f32>::from_bytes(&bytes[..len], None) {
            Err(OnnxError::Decode { source_name, .. }) => assert_eq!(source_name, "<bytes>"),
            other => panic!("a prefix of {len} of {} bytes: {other:?}", bytes.len()),
        }
        len += 61;
    }
    // The dynamo layout (graph before opset imports, external data) too.
    let bytes = std::fs::read(fixture_dir().join("vit_s.onnx")).unwrap();
    let dir = fixture_dir();
    for len in (0..bytes.len()).step_by(509) {
        assert!(
            OnnxModel::<f32>::from_bytes(&bytes[..len], Some(&dir)).is_err(),
            "{len}"
        );
    }
    assert!(OnnxModel::<f32>::from_bytes(&bytes, Some(&dir)).is_ok());
}

#[test]
fn non_onnx_bytes_are_decode_errors() {
    let e = OnnxModel::<f32>::from_bytes(b"\xff\xff\xff\xff not a model", None).unwrap_err();
    assert!(matches!(e, OnnxError::Decode { .. }), "{e}");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("notes.onnx");
    std::fs::write(&file, "# a text file\n").unwrap();
    let e = OnnxModel::<f32>::load(&file).unwrap_err();
    assert!(e.to_string().contains("notes.onnx"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Flipping bytes of a model never panics: it loads and plans, or it
    /// is an error.
    #[test]
    fn mutated_models_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
    ) {
        static BYTES: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
        let (densenet, shufflenet) = BYTES.get_or_init(|| {
            (
                std::fs::read(fixture_dir().join("densenet_s.onnx")).unwrap(),
                std::fs::read(fixture_dir().join("shufflenet_s.onnx")).unwrap(),
            )
        });
        let dir = fixture_dir();
        for (bytes, shape) in [(densenet, [1usize, 3, 64, 64]), (shufflenet, [2, 3, 64, 64])] {
            let mut bytes = bytes.clone();
            for (at, value) in &edits {
                let i = at.index(bytes.len());
                bytes[i] = *value;
            }
            if let Ok(model) = OnnxModel::<f32>::from_bytes(&bytes, Some(&dir)) {
                let _ = model.plan(&shape);
            }
        }
    }
}
