//! [`OnnxModel`]: a loaded and validated model, ready to be planned for an
//! input shape.

use crate::constant::Constant;
use crate::error::{OnnxError, Result};
use crate::graph::{build_graph, GraphNode};
use crate::plan::Plan;
use crate::planner::build_plan;
use crate::proto::{data_type, ModelProto, ValueInfoProto, DATA_LOCATION_EXTERNAL};
use crate::read::{read_model_file, ExternalData};
use crate::tensor_data::decode_tensor;
use bytes::Bytes;
use prost::Message;
use sightline_tensor::Element;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Lowest default-domain opset read (Clip, Slice and friends take their
/// bounds as inputs from 11 on).
pub const MIN_OPSET: i64 = 11;
/// Highest default-domain opset read.
pub const MAX_OPSET: i64 = 25;

/// A dimension of the declared input shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A symbolic size (`"batch"`); empty when the file gives neither a
    /// size nor a name.
    Named(String),
}

/// A loaded ONNX model: initializers converted to `T`, nodes parsed,
/// checked and in topological order.
#[derive(Debug, Clone)]
pub struct OnnxModel<T> {
    pub(crate) producer: String,
    pub(crate) opset: i64,
    pub(crate) input_name: String,
    pub(crate) input_dims: Option<Vec<Dim>>,
    pub(crate) output_name: String,
    pub(crate) initializers: HashMap<String, Constant<T>>,
    pub(crate) nodes: Vec<GraphNode<T>>,
}

impl<T: Element> OnnxModel<T> {
    /// Loads a model file; external data is looked up in the file's folder.
    ///
    /// Only regular files are read (a directory, FIFO or device is
    /// [`OnnxError::NotAFile`]), at most 2 GiB; the file and its external
    /// data are memory-mapped while loading.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = read_model_file(path)?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Self::decode(bytes, &path.display().to_string(), Some(dir))
    }

    /// Loads a model from bytes; external data is looked up in `dir`
    /// (`None`: a tensor with external data is an error).
    pub fn from_bytes(bytes: &[u8], dir: Option<&Path>) -> Result<Self> {
        Self::decode(Bytes::copy_from_slice(bytes), "<bytes>", dir)
    }

    /// The declared input's dimensions (empty when the file declares no
    /// shape).
    pub fn input_shape(&self) -> &[Dim] {
        self.input_dims.as_deref().unwrap_or(&[])
    }

    /// The declared input shape when every dimension is fixed.
    pub fn fixed_input_shape(&self) -> Option<Vec<usize>> {
        self.input_dims
            .as_ref()?
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => Some(*n),
                Dim::Named(_) => None,
            })
            .collect()
    }

    /// The graph input's name.
    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    /// The graph output's name.
    pub fn output_name(&self) -> &str {
        &self.output_name
    }

    /// The default-domain opset version.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// The producer's name and version (`"pytorch 2.15.0"`), for messages.
    pub fn producer(&self) -> &str {
        &self.producer
    }

    /// Shape inference and constant folding for one concrete input shape
    /// (e.g. `[1, 3, 224, 224]`): the compute graph. An input size the
    /// graph cannot take is an [`OnnxError::Shape`] naming the node.
    pub fn plan(&self, input_shape: &[usize]) -> Result<Plan<T>> {
        build_plan(self, input_shape)
    }

    /// Decodes and validates a model held in `bytes`.
    fn decode(bytes: Bytes, source_name: &str, dir: Option<&Path>) -> Result<Self> {
        let decode_err = |message: String| OnnxError::Decode {
            source_name: source_name.to_string(),
            message,
        };
        let proto = ModelProto::decode(bytes).map_err(|e| decode_err(e.to_string()))?;
        // Any byte string that happens to parse as protobuf (an empty file,
        // a prefix cut at a field boundary) lacks one of these.
        if proto.graph.is_none() {
            return Err(decode_err("no graph".into()));
        }
        if proto.opset_import.is_empty() {
            return Err(decode_err("no opset import".into()));
        }
        Self::from_proto(&proto, dir)
    }

    /// Validates a decoded model and converts its constants to `T`.
    pub(crate) fn from_proto(proto: &ModelProto, dir: Option<&Path>) -> Result<Self> {
        let model_err = |message: String| OnnxError::Model { message };
        let opset = default_opset(proto)?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| model_err("the model has no graph".into()))?;
        let mut names: HashSet<&str> = HashSet::with_capacity(graph.initializer.len());
        for t in &graph.initializer {
            if t.name.is_empty() {
                return Err(model_err("an initializer has no name".into()));
            }
            if !names.insert(&t.name) {
                return Err(OnnxError::TensorData {
                    tensor: t.name.clone(),
                    message: "the initializer is given twice".into(),
                });
            }
        }
        // Before IR 4, graph inputs also list the initializers.
        let inputs: Vec<&ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !names.contains(i.name.as_str()))
            .collect();
        let [input] = inputs.as_slice() else {
            return Err(model_err(format!(
                "the graph has {} inputs besides its initializers; one is needed",
                inputs.len()
            )));
        };
        if input.name.is_empty() {
            return Err(model_err("the graph input has no name".into()));
        }
        let input_dims = input_type(input)?;
        let [output] = graph.output.as_slice() else {
            return Err(model_err(format!(
                "the graph has {} outputs; one is needed",
                graph.output.len()
            )));
        };
        // The graph is checked before the weights are converted, so that an
        // unsupported op is reported without that work.
        let mut known = names;
        known.insert(&input.name);
        let mut external = ExternalData::new(dir);
        let nodes = build_graph::<T>(&graph.node, &known, opset, &mut external)?;
        let produced = nodes
            .iter()
            .any(|n| n.outputs.iter().any(|o| o == &output.name));
        if !produced && !known.contains(output.name.as_str()) {
            return Err(model_err(format!(
                "the graph output {:?} is never produced",
                output.name
            )));
        }
        let mut initializers = HashMap::with_capacity(graph.initializer.len());
        for t in &graph.initializer {
            let value = if t.data_location == DATA_LOCATION_EXTERNAL {
                let bytes = external.tensor_bytes(t)?;
                decode_tensor::<T>(t, Some(&bytes))?
            } else {
                decode_tensor::<T>(t, None)?
            };
            initializers.insert(t.name.clone(), value);
        }
        let producer = format!("{} {}", proto.producer_name, proto.producer_version)
            .trim()
            .to_string();
        Ok(Self {
            producer,
            opset,
            input_name: input.name.clone(),
            input_dims,
            output_name: output.name.clone(),
            initializers,
            nodes,
        })
    }
}

/// The default-domain opset, checked to be supported.
fn default_opset(proto: &ModelProto) -> Result<i64> {
    let versions: Vec<i64> = proto
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .collect();
    let [version] = versions.as_slice() else {
        return Err(OnnxError::Model {
            message: format!(
                "{} imports of the default ONNX opset; one is needed",
                versions.len()
            ),
        });
    };
    if !(MIN_OPSET..=MAX_OPSET).contains(version) {
        return Err(OnnxError::Model {
            message: format!(
                "opset {version} is not supported (opsets {MIN_OPSET} to {MAX_OPSET} are)"
            ),
        });
    }
    Ok(*version)
}

/// The declared input's dimensions (`None` when no shape is declared),
/// checking it is a float tensor.
fn input_type(input: &ValueInfoProto) -> Result<Option<Vec<Dim>>> {
    let err = |message: String| OnnxError::Model {
        message: format!("graph input {:?}: {message}", input.name),
    };
    let tensor = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or_else(|| err("not a tensor".into()))?;
    if !data_type::is_float(tensor.elem_type) {
        return Err(err(format!(
            "element type {} is not a float type",
            data_type::name(tensor.elem_type)
        )));
    }
    let Some(shape) = &tensor.shape else {
        return Ok(None);
    };
    shape
        .dim
        .iter()
        .map(|d| match (d.dim_value, &d.dim_param) {
            (Some(v), _) => usize::try_from(v)
                .map(Dim::Fixed)
                .map_err(|_| err(format!("negative dimension {v}"))),
            (None, Some(p)) => Ok(Dim::Named(p.clone())),
            (None, None) => Ok(Dim::Named(String::new())),
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_models::small_model;
    use proptest::prelude::*;

    #[test]
    fn opsets_and_inputs_are_checked() {
        let mut proto = ModelProto::decode(small_model().as_slice()).unwrap();
        proto.opset_import[0].version = 9;
        let e = OnnxModel::<f32>::from_bytes(&proto.encode_to_vec(), None).unwrap_err();
        assert!(e.to_string().contains("opset 9 is not supported"), "{e}");

        let mut proto = ModelProto::decode(small_model().as_slice()).unwrap();
        let graph = proto.graph.as_mut().unwrap();
        let extra = graph.input[0].clone();
        graph.input.push(ValueInfoProto {
            name: "y".into(),
            ..extra
        });
        let e = OnnxModel::<f32>::from_bytes(&proto.encode_to_vec(), None).unwrap_err();
        assert!(e.to_string().contains("2 inputs"), "{e}");

        let mut proto = ModelProto::decode(small_model().as_slice()).unwrap();
        let input = &mut proto.graph.as_mut().unwrap().input[0];
        input
            .r#type
            .as_mut()
            .unwrap()
            .tensor_type
            .as_mut()
            .unwrap()
            .elem_type = data_type::INT64;
        let e = OnnxModel::<f32>::from_bytes(&proto.encode_to_vec(), None).unwrap_err();
        assert!(e.to_string().contains("not a float type"), "{e}");
    }

    #[test]
    fn accessors() {
        let m = OnnxModel::<f64>::from_bytes(&small_model(), None).unwrap();
        assert_eq!(m.opset(), 17);
        assert_eq!(m.producer(), "test 1");
        assert_eq!(m.input_name(), "x");
        assert_eq!(m.output_name(), "/Softmax_out");
        let empty = OnnxModel::<f32>::from_bytes(&[], None).unwrap_err();
        assert!(matches!(empty, OnnxError::Decode { .. }), "{empty}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

        /// Byte edits of a small model (mostly structure, little weight data)
        /// never panic: it loads and plans, or it is an error.
        #[test]
        fn mutated_small_models_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
            truncate: bool,
        ) {
            let mut bytes = small_model();
            for (at, value) in &edits {
                let i = at.index(bytes.len());
                bytes[i] = *value;
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len()));
            }
            if let Ok(model) = OnnxModel::<f32>::from_bytes(&bytes, None) {
                let _ = model.plan(&[2, 3, 4, 4]);
            }
        }
    }
}
