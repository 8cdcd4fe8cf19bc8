//! Builders of small ONNX models in bytes, for tests.

use crate::proto::{
    attribute_type, data_type, AttributeProto, DimensionProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto,
    TypeProto, ValueInfoProto, DATA_LOCATION_EXTERNAL,
};
use prost::Message;

/// A float tensor initializer with raw data `scale * (i - n / 2)`.
pub fn weight(name: &str, dims: &[i64], scale: f32) -> TensorProto {
    let n: i64 = dims.iter().product();
    let raw: Vec<u8> = (0..n)
        .flat_map(|i| (scale * (i as f32 - n as f32 / 2.0)).to_le_bytes())
        .collect();
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        raw_data: raw.into(),
        ..Default::default()
    }
}

/// An int64 initializer.
pub fn int64s(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::INT64,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

/// An integer attribute.
pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i: Some(v),
        r#type: attribute_type::INT,
        ..Default::default()
    }
}

/// A list-of-integers attribute.
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: v.to_vec(),
        r#type: attribute_type::INTS,
        ..Default::default()
    }
}

/// A tensor attribute.
pub fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        t: Some(t),
        r#type: attribute_type::TENSOR,
        ..Default::default()
    }
}

/// A node `name` of `op_type` with one output named `{name}_out`.
pub fn op(name: &str, op_type: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: op_type.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![format!("{name}_out")],
        attribute: attrs,
        ..Default::default()
    }
}

/// A float tensor value; `None` dimensions are named `batch`.
pub fn float_value(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| DimensionProto {
            dim_value: *d,
            dim_param: d.is_none().then(|| "batch".to_string()),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

/// A model of opset `opset` with one input and one output.
pub fn model(
    opset: i64,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    input: ValueInfoProto,
    output: &str,
) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        producer_name: "test".into(),
        producer_version: "1".into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        graph: Some(GraphProto {
            name: "g".into(),
            node: nodes,
            initializer: initializers,
            input: vec![input],
            output: vec![float_value(output, &[])],
        }),
    }
    .encode_to_vec()
}

/// A small torchscript-style classifier whose flatten goes through shape
/// arithmetic (`Shape -> Gather -> Unsqueeze -> Concat -> Reshape`), with a
/// symbolic batch: `[batch, 3, 4, 4]` to `[batch, 3]` probabilities.
pub fn small_model() -> Vec<u8> {
    let minus_one = op(
        "/Constant",
        "Constant",
        &[],
        vec![attr_tensor("value", int64s("", &[1], &[-1]))],
    );
    let nodes = vec![
        op(
            "/conv/Conv",
            "Conv",
            &["x", "w", "b"],
            vec![attr_ints("pads", &[1, 1, 1, 1])],
        ),
        op("/relu/Relu", "Relu", &["/conv/Conv_out"], vec![]),
        op(
            "/pool/MaxPool",
            "MaxPool",
            &["/relu/Relu_out"],
            vec![
                attr_ints("kernel_shape", &[2, 2]),
                attr_ints("strides", &[2, 2]),
            ],
        ),
        op("/Shape", "Shape", &["/pool/MaxPool_out"], vec![]),
        op("/Gather", "Gather", &["/Shape_out", "zero"], vec![]),
        op(
            "/Unsqueeze",
            "Unsqueeze",
            &["/Gather_out", "zero_axes"],
            vec![],
        ),
        minus_one,
        op(
            "/Concat",
            "Concat",
            &["/Unsqueeze_out", "/Constant_out"],
            vec![attr_int("axis", 0)],
        ),
        op(
            "/Reshape",
            "Reshape",
            &["/pool/MaxPool_out", "/Concat_out"],
            vec![],
        ),
        op(
            "/fc/Gemm",
            "Gemm",
            &["/Reshape_out", "w2", "b2"],
            vec![attr_int("transB", 1)],
        ),
        op("/Softmax", "Softmax", &["/fc/Gemm_out"], vec![]),
    ];
    let initializers = vec![
        weight("w", &[2, 3, 3, 3], 0.01),
        weight("b", &[2], 0.1),
        weight("w2", &[3, 8], 0.05),
        weight("b2", &[3], 0.1),
        int64s("zero", &[], &[0]),
        int64s("zero_axes", &[1], &[0]),
    ];
    let input = float_value("x", &[None, Some(3), Some(4), Some(4)]);
    model(17, nodes, initializers, input, "/Softmax_out")
}

/// A model `y = Relu(x + w)` whose `w` (two floats) lives in external data
/// at `location`.
pub fn tiny_external_model(location: &str) -> Vec<u8> {
    let entry = |k: &str, v: &str| StringStringEntryProto {
        key: k.into(),
        value: v.into(),
    };
    let w = TensorProto {
        name: "w".into(),
        dims: vec![2],
        data_type: data_type::FLOAT,
        data_location: DATA_LOCATION_EXTERNAL,
        external_data: vec![
            entry("location", location),
            entry("offset", "0"),
            entry("length", "8"),
        ],
        ..Default::default()
    };
    let nodes = vec![
        op("add", "Add", &["x", "w"], vec![]),
        op("relu", "Relu", &["add_out"], vec![]),
    ];
    model(18, nodes, vec![w], float_value("x", &[Some(2)]), "relu_out")
}
