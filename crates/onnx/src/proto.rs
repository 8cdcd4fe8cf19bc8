//! The ONNX protobuf messages this crate reads, written by hand with
//! `prost` derives (field numbers from `onnx.proto`, IR version 10).
//!
//! Only the fields the reader needs are declared; `prost` skips the others.
//! `raw_data` is a [`bytes::Bytes`], so decoding from a `Bytes` that owns a
//! memory map slices the weights out of the map instead of copying them.

/// `TensorProto.DataLocation.EXTERNAL`: the data is in another file.
pub const DATA_LOCATION_EXTERNAL: i32 = 1;

/// `TensorProto.DataType` codes.
pub mod data_type {
    /// 32-bit float.
    pub const FLOAT: i32 = 1;
    /// Unsigned 8-bit integer.
    pub const UINT8: i32 = 2;
    /// Signed 8-bit integer.
    pub const INT8: i32 = 3;
    /// Unsigned 16-bit integer.
    pub const UINT16: i32 = 4;
    /// Signed 16-bit integer.
    pub const INT16: i32 = 5;
    /// Signed 32-bit integer.
    pub const INT32: i32 = 6;
    /// Signed 64-bit integer.
    pub const INT64: i32 = 7;
    /// Boolean, one byte each.
    pub const BOOL: i32 = 9;
    /// IEEE half precision.
    pub const FLOAT16: i32 = 10;
    /// 64-bit float.
    pub const DOUBLE: i32 = 11;
    /// Unsigned 32-bit integer.
    pub const UINT32: i32 = 12;
    /// Unsigned 64-bit integer.
    pub const UINT64: i32 = 13;
    /// Brain float 16.
    pub const BFLOAT16: i32 = 16;

    /// Whether `code` is one of the floating-point types read as floats.
    pub fn is_float(code: i32) -> bool {
        matches!(code, FLOAT | FLOAT16 | DOUBLE | BFLOAT16)
    }

    /// Whether `code` is one of the integer types read as `i64`.
    pub fn is_integer(code: i32) -> bool {
        matches!(
            code,
            UINT8 | INT8 | UINT16 | INT16 | INT32 | INT64 | UINT32 | UINT64
        )
    }

    /// A short name for messages.
    pub fn name(code: i32) -> String {
        let known = match code {
            FLOAT => "float32",
            UINT8 => "uint8",
            INT8 => "int8",
            UINT16 => "uint16",
            INT16 => "int16",
            INT32 => "int32",
            INT64 => "int64",
            8 => "string",
            BOOL => "bool",
            FLOAT16 => "float16",
            DOUBLE => "float64",
            UINT32 => "uint32",
            UINT64 => "uint64",
            BFLOAT16 => "bfloat16",
            _ => return format!("data type {code}"),
        };
        known.to_string()
    }
}

/// `AttributeProto.AttributeType` codes.
pub mod attribute_type {
    /// One float (`f`).
    pub const FLOAT: i32 = 1;
    /// One integer (`i`).
    pub const INT: i32 = 2;
    /// One byte string (`s`).
    pub const STRING: i32 = 3;
    /// One tensor (`t`).
    pub const TENSOR: i32 = 4;
    /// Floats (`floats`).
    pub const FLOATS: i32 = 6;
    /// Integers (`ints`).
    pub const INTS: i32 = 7;
}

/// `ModelProto`: the top-level message of an `.onnx` file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// The IR version.
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// The tool that wrote the model.
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// Its version.
    #[prost(string, tag = "3")]
    pub producer_version: String,
    /// The graph.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    /// The opsets the graph uses, per domain.
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
}

/// `OperatorSetIdProto`: one (domain, version) pair.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    /// The domain; empty for the default `ai.onnx` domain.
    #[prost(string, tag = "1")]
    pub domain: String,
    /// The opset version.
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// `GraphProto`: nodes, initializers, inputs and outputs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    /// The nodes (meant to be in topological order).
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// The graph's name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Constant tensors (weights).
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    /// Declared inputs (before IR 4 they also list the initializers).
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    /// Declared outputs.
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

/// `NodeProto`: one op application.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    /// Input value names; an empty name is a missing optional input.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output value names; an empty name is an unused optional output.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// The node's name.
    #[prost(string, tag = "3")]
    pub name: String,
    /// The op type.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// The attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    /// The op's domain; empty for `ai.onnx`.
    #[prost(string, tag = "7")]
    pub domain: String,
    /// Free-form key/value pairs (the dynamo exporter's name scopes).
    #[prost(message, repeated, tag = "9")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// `AttributeProto`: one named attribute of a node.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    /// The attribute's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// A float value.
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    /// An integer value.
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    /// A byte-string value.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    /// A tensor value.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// Float values.
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    /// Integer values.
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// Which field holds the value ([`attribute_type`]).
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

/// `TensorProto`: a tensor's type, shape and data (inline or external).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// The shape.
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// The element type ([`data_type`]).
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// Float data when not in `raw_data`.
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// Data of int32, smaller integers, bool, float16 and bfloat16 when not
    /// in `raw_data`.
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    /// Int64 data when not in `raw_data`.
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    /// The tensor's name.
    #[prost(string, tag = "8")]
    pub name: String,
    /// Little-endian packed data.
    #[prost(bytes = "bytes", tag = "9")]
    pub raw_data: bytes::Bytes,
    /// Double data when not in `raw_data`.
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    /// Uint32 and uint64 data when not in `raw_data`.
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
    /// `location`, `offset`, `length` of external data.
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// Whether the data is external ([`DATA_LOCATION_EXTERNAL`]).
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

/// `StringStringEntryProto`: a key/value pair.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    /// The key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// The value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `ValueInfoProto`: a named value and its type.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    /// The value's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its type.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// `TypeProto`: only the tensor case of its `oneof` is read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    /// A tensor type.
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

/// `TypeProto.Tensor`: element type and shape.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorTypeProto {
    /// The element type ([`data_type`]).
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    /// The shape, when declared.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// `TensorShapeProto`: a list of dimensions.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// The dimensions.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<DimensionProto>,
}

/// `TensorShapeProto.Dimension`: a size or a symbolic name (a `oneof` on
/// the wire, read as two optional fields).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DimensionProto {
    /// A fixed size.
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    /// A symbolic name.
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn raw_data_is_sliced_not_copied() {
        let model = ModelProto {
            ir_version: 8,
            graph: Some(GraphProto {
                initializer: vec![TensorProto {
                    name: "w".into(),
                    data_type: data_type::FLOAT,
                    dims: vec![2],
                    raw_data: bytes::Bytes::from_static(&[0, 0, 128, 63, 0, 0, 0, 64]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let encoded = bytes::Bytes::from(model.encode_to_vec());
        let decoded = ModelProto::decode(encoded.clone()).unwrap();
        assert_eq!(decoded, model);
        let raw = &decoded.graph.unwrap().initializer[0].raw_data;
        let range = encoded.as_ptr_range();
        assert!(range.contains(&raw.as_ptr()), "raw_data was copied");
    }

    #[test]
    fn dimension_oneof_reads_either_field() {
        let shape = TensorShapeProto {
            dim: vec![
                DimensionProto {
                    dim_value: Some(3),
                    dim_param: None,
                },
                DimensionProto {
                    dim_value: None,
                    dim_param: Some("batch".into()),
                },
            ],
        };
        let back = TensorShapeProto::decode(shape.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.dim[0].dim_value, Some(3));
        assert_eq!(back.dim[1].dim_param.as_deref(), Some("batch"));
    }

    #[test]
    fn type_names() {
        assert_eq!(data_type::name(data_type::BFLOAT16), "bfloat16");
        assert_eq!(data_type::name(99), "data type 99");
        assert!(data_type::is_float(data_type::FLOAT16));
        assert!(data_type::is_integer(data_type::UINT64));
        assert!(!data_type::is_integer(data_type::BOOL));
    }
}
