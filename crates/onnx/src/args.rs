//! A node's inputs while planning ([`Arg`]) and the context that names the
//! node in errors ([`NodeCtx`]), shared by lowering and constant folding.

use crate::constant::Constant;
use crate::error::OnnxError;
use crate::plan::ValueId;

/// The node being planned, for error messages.
pub struct NodeCtx<'a> {
    /// The node's label (its name, or `#index`).
    pub label: &'a str,
    /// Its op type.
    pub op_type: &'a str,
    /// Its input value names.
    pub inputs: &'a [String],
    /// The model's default-domain opset.
    pub opset: i64,
}

impl NodeCtx<'_> {
    /// A shape error at this node.
    pub fn shape_err(&self, message: impl Into<String>) -> OnnxError {
        OnnxError::Shape {
            node: self.label.to_string(),
            op_type: self.op_type.to_string(),
            message: message.into(),
        }
    }

    /// A constant-folding error at this node.
    pub fn fold_err(&self, message: impl Into<String>) -> OnnxError {
        OnnxError::Fold {
            node: self.label.to_string(),
            op_type: self.op_type.to_string(),
            message: message.into(),
        }
    }

    /// Input `i` should have been a constant.
    pub fn not_const(&self, i: usize) -> OnnxError {
        OnnxError::NotConstant {
            node: self.label.to_string(),
            op_type: self.op_type.to_string(),
            input: self.inputs.get(i).cloned().unwrap_or_default(),
        }
    }
}

/// One input of a node.
pub enum Arg<'a, T> {
    /// An optional input left out (empty name, or past the end).
    Missing,
    /// A value computed from the graph input.
    Value {
        /// Its id in the plan.
        id: ValueId,
        /// Its static shape.
        shape: &'a [usize],
    },
    /// A constant.
    Const(&'a Constant<T>),
}

impl<T> Clone for Arg<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Arg<'_, T> {}

impl<'a, T: sightline_tensor::Element> Arg<'a, T> {
    /// The shape of a present input.
    pub fn shape(&self) -> Option<&'a [usize]> {
        match self {
            Self::Missing => None,
            Self::Value { shape, .. } => Some(shape),
            Self::Const(c) => Some(c.shape()),
        }
    }

    /// Whether the input is left out.
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Missing)
    }
}

/// Input `i`, [`Arg::Missing`] past the end.
pub fn arg<'a, T>(args: &[Arg<'a, T>], i: usize) -> Arg<'a, T> {
    args.get(i).copied().unwrap_or(Arg::Missing)
}

/// The shape of required input `i`.
pub fn shape_arg<'a, T: sightline_tensor::Element>(
    ctx: &NodeCtx,
    args: &[Arg<'a, T>],
    i: usize,
) -> Result<&'a [usize], OnnxError> {
    match arg(args, i) {
        Arg::Missing => Err(ctx.shape_err(format!("input {i} is missing"))),
        Arg::Value { shape, .. } => Ok(shape),
        Arg::Const(c) => Ok(c.shape()),
    }
}

/// Integer constant input `i` (axes, shapes, bounds, indices): `None` when
/// left out; an error when it depends on the graph input or is not an
/// integer tensor.
pub fn const_ints<T: sightline_tensor::Element>(
    ctx: &NodeCtx,
    args: &[Arg<'_, T>],
    i: usize,
) -> Result<Option<Vec<i64>>, OnnxError> {
    match arg(args, i) {
        Arg::Missing => Ok(None),
        Arg::Value { .. } => Err(ctx.not_const(i)),
        Arg::Const(c) => c.ints().map(|v| Some(v.to_vec())).ok_or_else(|| {
            ctx.shape_err(format!(
                "input {i} must be an integer tensor, found {}",
                c.kind()
            ))
        }),
    }
}

/// Scalar constant input `i` as `f64` (Clip's bounds): `None` when left out.
pub fn const_scalar<T: sightline_tensor::Element>(
    ctx: &NodeCtx,
    args: &[Arg<'_, T>],
    i: usize,
) -> Result<Option<f64>, OnnxError> {
    match arg(args, i) {
        Arg::Missing => Ok(None),
        Arg::Value { .. } => Err(ctx.not_const(i)),
        Arg::Const(c) => c
            .scalar_f64()
            .map(Some)
            .ok_or_else(|| ctx.shape_err(format!("input {i} must hold one value"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(inputs: &'a [String]) -> NodeCtx<'a> {
        NodeCtx {
            label: "n",
            op_type: "Reshape",
            inputs,
            opset: 17,
        }
    }

    #[test]
    fn constant_inputs() {
        let names = vec!["x".to_string(), "shape".to_string()];
        let c = Constant::<f32>::int(vec![2], vec![4, -1]);
        let f = Constant::<f32>::float_from_f64(vec![], &[6.0]).unwrap();
        let shape = [1usize, 4];
        let args = [
            Arg::Value {
                id: 0,
                shape: &shape,
            },
            Arg::Const(&c),
            Arg::Const(&f),
        ];
        let cx = ctx(&names);
        assert_eq!(const_ints(&cx, &args, 1).unwrap(), Some(vec![4, -1]));
        assert_eq!(const_ints(&cx, &args, 5).unwrap(), None);
        assert!(matches!(
            const_ints(&cx, &args, 0),
            Err(OnnxError::NotConstant { ref input, .. }) if input == "x"
        ));
        assert!(const_ints(&cx, &args, 2).is_err());
        assert_eq!(const_scalar(&cx, &args, 2).unwrap(), Some(6.0));
        assert!(const_scalar(&cx, &args, 1).is_err());
        assert_eq!(shape_arg(&cx, &args, 0).unwrap(), &[1, 4]);
        assert!(shape_arg(&cx, &args, 7).is_err());
        assert!(arg(&args, 9).is_missing());
    }
}
