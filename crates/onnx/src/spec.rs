//! [`OpSpec`]: a node's op type and attributes, parsed and checked at load
//! time (before any input shape is known). Ops outside the supported set
//! are refused here.

use crate::attributes::Attributes;
use crate::constant::Constant;
use crate::error::{OnnxError, Result};
use crate::proto::{data_type, NodeProto};
use crate::read::ExternalData;
use crate::shape::AutoPad;
use crate::tensor_data::decode_tensor;
use sightline_tensor::Element;

/// Elementwise ops of one operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unary {
    /// `max(x, 0)`.
    Relu,
    /// Logistic function.
    Sigmoid,
    /// Error function.
    Erf,
    /// `x * hardsigmoid(x)` with alpha 1/6, beta 1/2.
    HardSwish,
    /// Square root (constants only).
    Sqrt,
}

/// Elementwise ops of two broadcast operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// Sum.
    Add,
    /// Difference.
    Sub,
    /// Product.
    Mul,
    /// Quotient (integer division truncates).
    Div,
}

/// Window attributes shared by Conv and the pools (2-d).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// `kernel_shape`, when given.
    pub kernel: Option<[usize; 2]>,
    /// Strides.
    pub strides: [usize; 2],
    /// Explicit pads `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// Dilations.
    pub dilations: [usize; 2],
    /// The `auto_pad` mode.
    pub auto_pad: AutoPad,
}

/// A node's op and attributes, parsed.
#[derive(Debug, Clone)]
pub enum OpSpec<T> {
    /// Conv.
    Conv {
        /// Window attributes.
        window: Window,
        /// Groups.
        group: usize,
    },
    /// Gemm.
    Gemm {
        /// transA.
        trans_a: bool,
        /// transB.
        trans_b: bool,
        /// alpha.
        alpha: f64,
        /// beta.
        beta: f64,
    },
    /// MatMul.
    MatMul,
    /// Add, Sub, Mul, Div.
    Binary(Binary),
    /// Relu, Sigmoid, Erf, HardSwish, Sqrt.
    Unary(Unary),
    /// HardSigmoid.
    HardSigmoid {
        /// Slope.
        alpha: f64,
        /// Offset.
        beta: f64,
    },
    /// Clip (bounds from inputs, or the attributes of opset < 11).
    Clip {
        /// `min` attribute.
        min: Option<f64>,
        /// `max` attribute.
        max: Option<f64>,
    },
    /// Softmax.
    Softmax {
        /// Axis, not yet normalised.
        axis: i64,
    },
    /// LayerNormalization.
    LayerNormalization {
        /// Axis, not yet normalised.
        axis: i64,
        /// Epsilon.
        epsilon: f64,
    },
    /// BatchNormalization (inference).
    BatchNormalization {
        /// Epsilon.
        epsilon: f64,
    },
    /// MaxPool.
    MaxPool {
        /// Window attributes.
        window: Window,
        /// ceil_mode.
        ceil_mode: bool,
    },
    /// AveragePool.
    AveragePool {
        /// Window attributes (dilations 1).
        window: Window,
        /// ceil_mode.
        ceil_mode: bool,
        /// count_include_pad.
        count_include_pad: bool,
    },
    /// GlobalAveragePool.
    GlobalAveragePool,
    /// ReduceMean.
    ReduceMean {
        /// `axes` attribute (opset < 18).
        axes: Option<Vec<i64>>,
        /// keepdims.
        keepdims: bool,
        /// noop_with_empty_axes.
        noop_with_empty_axes: bool,
    },
    /// Concat.
    Concat {
        /// Axis, not yet normalised.
        axis: i64,
    },
    /// Split.
    Split {
        /// Axis, not yet normalised.
        axis: i64,
        /// `split` attribute (opset < 13).
        split: Option<Vec<i64>>,
        /// `num_outputs` attribute (opset 18).
        num_outputs: Option<usize>,
    },
    /// Slice (bounds from inputs).
    Slice,
    /// Reshape.
    Reshape {
        /// allowzero.
        allowzero: bool,
    },
    /// Flatten.
    Flatten {
        /// Axis, not yet normalised.
        axis: i64,
    },
    /// Squeeze.
    Squeeze {
        /// `axes` attribute (opset < 13).
        axes: Option<Vec<i64>>,
    },
    /// Unsqueeze.
    Unsqueeze {
        /// `axes` attribute (opset < 13).
        axes: Option<Vec<i64>>,
    },
    /// Transpose.
    Transpose {
        /// perm, when given.
        perm: Option<Vec<i64>>,
    },
    /// Gather.
    Gather {
        /// Axis, not yet normalised.
        axis: i64,
    },
    /// Expand.
    Expand,
    /// Identity and inference Dropout.
    Identity,
    /// Cast.
    Cast {
        /// Target data type code.
        to: i32,
    },
    /// Shape.
    Shape {
        /// First dimension taken.
        start: i64,
        /// One past the last, when given.
        end: Option<i64>,
    },
    /// ConstantOfShape.
    ConstantOfShape {
        /// The fill value (one element).
        value: Constant<T>,
    },
    /// Equal.
    Equal,
    /// Where.
    Where,
    /// Mod.
    Mod {
        /// C `fmod` semantics (sign of the dividend) instead of Python's.
        fmod: bool,
    },
    /// Range.
    Range,
    /// Constant.
    Constant(Constant<T>),
}

/// Inputs (min, max) and outputs (min, max) of each op type; `None` for
/// an op type that is not supported.
fn arity(op_type: &str) -> Option<(usize, usize, usize, usize)> {
    const MANY: usize = usize::MAX;
    Some(match op_type {
        "Conv" => (2, 3, 1, 1),
        "Gemm" => (2, 3, 1, 1),
        "MatMul" | "Add" | "Sub" | "Mul" | "Div" | "Equal" | "Mod" | "Gather" | "Expand"
        | "Reshape" => (2, 2, 1, 1),
        "Relu" | "Sigmoid" | "Erf" | "HardSwish" | "Sqrt" | "HardSigmoid" | "Softmax"
        | "GlobalAveragePool" | "Flatten" | "Transpose" | "Identity" | "Cast" | "Shape"
        | "ConstantOfShape" | "AveragePool" => (1, 1, 1, 1),
        "Clip" => (1, 3, 1, 1),
        "LayerNormalization" => (2, 3, 1, 3),
        "BatchNormalization" => (5, 5, 1, 3),
        "MaxPool" => (1, 1, 1, 2),
        "ReduceMean" | "Squeeze" | "Unsqueeze" => (1, 2, 1, 1),
        "Concat" => (1, MANY, 1, 1),
        "Split" => (1, 2, 1, MANY),
        "Slice" => (3, 5, 1, 1),
        "Dropout" => (1, 3, 1, 2),
        "Where" | "Range" => (3, 3, 1, 1),
        "Constant" => (0, 0, 1, 1),
        _ => return None,
    })
}

/// Parses a node's op type and attributes. `label` names the node in
/// errors; `opset` is the model's default-domain opset.
pub fn parse<T: Element>(
    node: &NodeProto,
    label: &str,
    opset: i64,
    external: &mut ExternalData,
) -> Result<OpSpec<T>> {
    let op = node.op_type.as_str();
    let (min_in, max_in, min_out, max_out) = arity(op).ok_or_else(|| OnnxError::UnsupportedOp {
        op_type: op.to_string(),
        node: label.to_string(),
        opset,
    })?;
    let graph_err = |message: String| OnnxError::Graph {
        node: label.to_string(),
        message,
    };
    let (n_in, n_out) = (node.input.len(), node.output.len());
    if n_in < min_in || n_in > max_in {
        return Err(graph_err(format!(
            "{op} takes {min_in} to {} inputs, found {n_in}",
            if max_in == usize::MAX {
                "any number of".to_string()
            } else {
                max_in.to_string()
            }
        )));
    }
    if n_out < min_out || n_out > max_out {
        return Err(graph_err(format!(
            "{op} has {min_out} to {} outputs, found {n_out}",
            if max_out == usize::MAX {
                "any number of".to_string()
            } else {
                max_out.to_string()
            }
        )));
    }
    if let Some(i) = node.input[..min_in].iter().position(String::is_empty) {
        return Err(graph_err(format!("required input {i} of {op} is empty")));
    }
    if node.output.first().is_some_and(String::is_empty) {
        return Err(graph_err(format!("the first output of {op} is empty")));
    }
    let a = Attributes::new(label, op, &node.attribute)?;
    Ok(match op {
        "Conv" => OpSpec::Conv {
            window: window(&a, true)?,
            group: positive(&a, "group", 1)?,
        },
        "Gemm" => OpSpec::Gemm {
            trans_a: a.flag("transA", false)?,
            trans_b: a.flag("transB", false)?,
            alpha: a.float_or("alpha", 1.0)?,
            beta: a.float_or("beta", 1.0)?,
        },
        "MatMul" => OpSpec::MatMul,
        "Add" => OpSpec::Binary(Binary::Add),
        "Sub" => OpSpec::Binary(Binary::Sub),
        "Mul" => OpSpec::Binary(Binary::Mul),
        "Div" => OpSpec::Binary(Binary::Div),
        "Relu" => OpSpec::Unary(Unary::Relu),
        "Sigmoid" => OpSpec::Unary(Unary::Sigmoid),
        "Erf" => OpSpec::Unary(Unary::Erf),
        "HardSwish" => OpSpec::Unary(Unary::HardSwish),
        "Sqrt" => OpSpec::Unary(Unary::Sqrt),
        "HardSigmoid" => OpSpec::HardSigmoid {
            alpha: a.float_or("alpha", 0.2)?,
            beta: a.float_or("beta", 0.5)?,
        },
        "Clip" => OpSpec::Clip {
            min: a.float("min")?,
            max: a.float("max")?,
        },
        "Softmax" => OpSpec::Softmax {
            axis: a.int_or("axis", if opset < 13 { 1 } else { -1 })?,
        },
        "LayerNormalization" => OpSpec::LayerNormalization {
            axis: a.int_or("axis", -1)?,
            epsilon: a.float_or("epsilon", 1e-5)?,
        },
        "BatchNormalization" => {
            if a.flag("training_mode", false)? {
                return Err(a.error("training_mode", "training mode is not supported"));
            }
            OpSpec::BatchNormalization {
                epsilon: a.float_or("epsilon", 1e-5)?,
            }
        }
        "MaxPool" => {
            if a.int_or("storage_order", 0)? != 0 {
                return Err(a.error("storage_order", "only row-major storage is supported"));
            }
            OpSpec::MaxPool {
                window: window(&a, false)?,
                ceil_mode: a.flag("ceil_mode", false)?,
            }
        }
        "AveragePool" => {
            let w = window(&a, false)?;
            if w.dilations != [1, 1] {
                return Err(a.error("dilations", "dilated average pooling is not supported"));
            }
            OpSpec::AveragePool {
                window: w,
                ceil_mode: a.flag("ceil_mode", false)?,
                count_include_pad: a.flag("count_include_pad", false)?,
            }
        }
        "GlobalAveragePool" => OpSpec::GlobalAveragePool,
        "ReduceMean" => OpSpec::ReduceMean {
            axes: a.ints("axes")?,
            keepdims: a.flag("keepdims", true)?,
            noop_with_empty_axes: a.flag("noop_with_empty_axes", false)?,
        },
        "Concat" => OpSpec::Concat {
            axis: a.int("axis")?.ok_or_else(|| a.error("axis", "required"))?,
        },
        "Split" => OpSpec::Split {
            axis: a.int_or("axis", 0)?,
            split: a.ints("split")?,
            num_outputs: match a.int("num_outputs")? {
                None => None,
                Some(n) if n >= 1 && n as u64 == n_out as u64 => Some(n as usize),
                Some(n) => {
                    return Err(a.error(
                        "num_outputs",
                        format!("{n} does not match the node's {n_out} outputs"),
                    ))
                }
            },
        },
        "Slice" => OpSpec::Slice,
        "Reshape" => OpSpec::Reshape {
            allowzero: a.flag("allowzero", false)?,
        },
        "Flatten" => OpSpec::Flatten {
            axis: a.int_or("axis", 1)?,
        },
        "Squeeze" => OpSpec::Squeeze {
            axes: a.ints("axes")?,
        },
        "Unsqueeze" => OpSpec::Unsqueeze {
            axes: a.ints("axes")?,
        },
        "Transpose" => OpSpec::Transpose {
            perm: a.ints("perm")?,
        },
        "Gather" => OpSpec::Gather {
            axis: a.int_or("axis", 0)?,
        },
        "Expand" => OpSpec::Expand,
        "Identity" | "Dropout" => OpSpec::Identity,
        "Cast" => {
            let to = a.int("to")?.ok_or_else(|| a.error("to", "required"))?;
            let to = i32::try_from(to)
                .ok()
                .filter(|&t| {
                    data_type::is_float(t) || data_type::is_integer(t) || t == data_type::BOOL
                })
                .ok_or_else(|| {
                    a.error(
                        "to",
                        format!("cannot cast to {}", data_type::name(to as i32)),
                    )
                })?;
            OpSpec::Cast { to }
        }
        "Shape" => OpSpec::Shape {
            start: a.int_or("start", 0)?,
            end: a.int("end")?,
        },
        "ConstantOfShape" => {
            let value = match a.tensor("value")? {
                None => {
                    Constant::float_from_f64(vec![1], &[0.0]).map_err(|m| a.error("value", m))?
                }
                Some(t) => {
                    let c = decode_attribute_tensor::<T>(t, external)?;
                    if c.len() != 1 {
                        return Err(a.error("value", "must hold one element"));
                    }
                    c
                }
            };
            OpSpec::ConstantOfShape { value }
        }
        "Equal" => OpSpec::Equal,
        "Where" => OpSpec::Where,
        "Mod" => OpSpec::Mod {
            fmod: a.flag("fmod", false)?,
        },
        "Range" => OpSpec::Range,
        "Constant" => OpSpec::Constant(constant_value(&a, external)?),
        _ => {
            return Err(OnnxError::UnsupportedOp {
                op_type: op.to_string(),
                node: label.to_string(),
                opset,
            })
        }
    })
}

/// A tensor attribute's value (inline or external data).
fn decode_attribute_tensor<T: Element>(
    t: &crate::proto::TensorProto,
    external: &mut ExternalData,
) -> Result<Constant<T>> {
    if t.data_location == crate::proto::DATA_LOCATION_EXTERNAL {
        let bytes = external.tensor_bytes(t)?;
        decode_tensor(t, Some(&bytes))
    } else {
        decode_tensor(t, None)
    }
}

/// The value of a Constant node, from whichever attribute holds it.
fn constant_value<T: Element>(a: &Attributes, external: &mut ExternalData) -> Result<Constant<T>> {
    let mut found: Option<Constant<T>> = None;
    let mut set = |name: &str, c: Constant<T>| -> Result<()> {
        if found.replace(c).is_some() {
            return Err(a.error(name, "a Constant node has more than one value attribute"));
        }
        Ok(())
    };
    if let Some(t) = a.tensor("value")? {
        set("value", decode_attribute_tensor(t, external)?)?;
    }
    if let Some(v) = a.float("value_float")? {
        set(
            "value_float",
            Constant::float_from_f64(vec![], &[v]).map_err(|m| a.error("value_float", m))?,
        )?;
    }
    if let Some(v) = a.floats("value_floats")? {
        set(
            "value_floats",
            Constant::float_from_f64(vec![v.len()], &v).map_err(|m| a.error("value_floats", m))?,
        )?;
    }
    if let Some(v) = a.int("value_int")? {
        set("value_int", Constant::int(vec![], vec![v]))?;
    }
    if let Some(v) = a.ints("value_ints")? {
        set("value_ints", Constant::int(vec![v.len()], v))?;
    }
    for name in ["sparse_value", "value_string", "value_strings"] {
        if a.has(name) {
            return Err(a.error(name, "not supported"));
        }
    }
    found.ok_or_else(|| {
        a.error(
            "value",
            format!("no value attribute (found {:?})", a.names()),
        )
    })
}

/// A positive integer attribute with a default.
fn positive(a: &Attributes, name: &str, default: usize) -> Result<usize> {
    let v = a.count_or(name, default)?;
    if v == 0 {
        return Err(a.error(name, "must be positive"));
    }
    Ok(v)
}

/// Exactly two positive integers.
fn pair(a: &Attributes, name: &str) -> Result<Option<[usize; 2]>> {
    match a.ints(name)? {
        None => Ok(None),
        Some(v) => match v.as_slice() {
            &[x, y] if x >= 1 && y >= 1 => Ok(Some([x as usize, y as usize])),
            _ => Err(a.error(
                name,
                format!("expected two positive values (2-d only), found {v:?}"),
            )),
        },
    }
}

/// Window attributes of Conv (`conv`: kernel_shape optional) or a pool
/// (kernel_shape required).
fn window(a: &Attributes, conv: bool) -> Result<Window> {
    let kernel = pair(a, "kernel_shape")?;
    if kernel.is_none() && !conv {
        return Err(a.error("kernel_shape", "required"));
    }
    let pads = match a.ints("pads")? {
        None => [0; 4],
        Some(v) => match v.as_slice() {
            &[t, l, b, r] if [t, l, b, r].iter().all(|&p| p >= 0) => {
                [t as usize, l as usize, b as usize, r as usize]
            }
            _ => {
                return Err(a.error(
                    "pads",
                    format!("expected four non-negative values (2-d only), found {v:?}"),
                ))
            }
        },
    };
    let auto_pad = match a.string("auto_pad")?.as_deref() {
        None | Some("NOTSET") | Some("") => AutoPad::NotSet,
        Some("VALID") => AutoPad::Valid,
        Some("SAME_UPPER") => AutoPad::SameUpper,
        Some("SAME_LOWER") => AutoPad::SameLower,
        Some(other) => return Err(a.error("auto_pad", format!("unknown mode {other:?}"))),
    };
    Ok(Window {
        kernel,
        strides: pair(a, "strides")?.unwrap_or([1, 1]),
        pads,
        dilations: pair(a, "dilations")?.unwrap_or([1, 1]),
        auto_pad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{attribute_type, AttributeProto};

    fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: "n".into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs,
            ..Default::default()
        }
    }

    fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            ints: v.to_vec(),
            r#type: attribute_type::INTS,
            ..Default::default()
        }
    }

    fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            i: Some(v),
            r#type: attribute_type::INT,
            ..Default::default()
        }
    }

    fn parse_f32(n: &NodeProto) -> Result<OpSpec<f32>> {
        parse::<f32>(n, "n", 17, &mut ExternalData::new(None))
    }

    #[test]
    fn conv_attributes() {
        let n = node(
            "Conv",
            &["x", "w"],
            &["y"],
            vec![
                ints("kernel_shape", &[3, 3]),
                ints("pads", &[1, 2, 1, 2]),
                ints("strides", &[2, 2]),
                int("group", 4),
            ],
        );
        match parse_f32(&n).unwrap() {
            OpSpec::Conv { window, group } => {
                assert_eq!(window.kernel, Some([3, 3]));
                assert_eq!(window.pads, [1, 2, 1, 2]);
                assert_eq!(window.strides, [2, 2]);
                assert_eq!(window.dilations, [1, 1]);
                assert_eq!(group, 4);
            }
            other => panic!("{other:?}"),
        }
        let bad = node(
            "Conv",
            &["x", "w"],
            &["y"],
            vec![ints("kernel_shape", &[3, 3, 3])],
        );
        assert!(matches!(parse_f32(&bad), Err(OnnxError::Attribute { .. })));
        let bad = node("Conv", &["x", "w"], &["y"], vec![int("group", 0)]);
        assert!(parse_f32(&bad).is_err());
    }

    #[test]
    fn unsupported_ops_and_arity() {
        let n = node("LSTM", &["x"], &["y"], vec![]);
        match parse_f32(&n) {
            Err(OnnxError::UnsupportedOp { op_type, opset, .. }) => {
                assert_eq!(op_type, "LSTM");
                assert_eq!(opset, 17);
            }
            other => panic!("{other:?}"),
        }
        let n = node("Relu", &["x", "y"], &["z"], vec![]);
        assert!(matches!(parse_f32(&n), Err(OnnxError::Graph { .. })));
        let n = node("Conv", &["x", ""], &["z"], vec![]);
        assert!(matches!(parse_f32(&n), Err(OnnxError::Graph { .. })));
        let n = node("Split", &["x"], &["a", "b"], vec![int("num_outputs", 3)]);
        assert!(matches!(parse_f32(&n), Err(OnnxError::Attribute { .. })));
    }

    #[test]
    fn constants_and_defaults() {
        let n = node("Constant", &[], &["c"], vec![ints("value_ints", &[1, -1])]);
        match parse_f32(&n).unwrap() {
            OpSpec::Constant(c) => assert_eq!(c.ints(), Some(&[1, -1][..])),
            other => panic!("{other:?}"),
        }
        let n = node("Constant", &[], &["c"], vec![]);
        assert!(parse_f32(&n).is_err());
        let n = node("HardSigmoid", &["x"], &["y"], vec![]);
        assert!(matches!(
            parse_f32(&n).unwrap(),
            OpSpec::HardSigmoid { alpha, beta } if alpha == 0.2 && beta == 0.5
        ));
        let n = node("Softmax", &["x"], &["y"], vec![]);
        assert!(matches!(
            parse_f32(&n).unwrap(),
            OpSpec::Softmax { axis: -1 }
        ));
        let n = node(
            "BatchNormalization",
            &["x", "s", "b", "m", "v"],
            &["y"],
            vec![int("training_mode", 1)],
        );
        assert!(parse_f32(&n).is_err());
        let n = node("Cast", &["x"], &["y"], vec![int("to", 8)]);
        assert!(parse_f32(&n).is_err());
        let n = node("MaxPool", &["x"], &["y"], vec![]);
        assert!(parse_f32(&n).is_err(), "kernel_shape is required");
    }
}
