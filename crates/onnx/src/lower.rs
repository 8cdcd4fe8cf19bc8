//! Lowering: a node with at least one runtime input becomes a [`NodeOp`]
//! with its index-like inputs resolved, its operands and its output
//! shapes (or vanishes into an alias of its input).

use crate::args::{arg, const_ints, const_scalar, shape_arg, Arg, NodeCtx};
use crate::constant::Constant;
use crate::error::Result;
use crate::node_op::NodeOp;
use crate::plan::Operand;
use crate::proto::data_type;
use crate::shape::{self, AutoPad};
use crate::spec::{Binary, OpSpec, Unary, Window};
use sightline_tensor::Element;

/// What a node becomes in the plan.
pub enum Lowering<T> {
    /// The output is input 0 itself (Identity, Dropout, a float Cast, a
    /// Slice or ReduceMean that changes nothing).
    Alias,
    /// One compute node.
    Node {
        /// The op.
        op: NodeOp,
        /// Its operands (data inputs only).
        operands: Vec<Operand<T>>,
        /// The shape of each output.
        shapes: Vec<Vec<usize>>,
    },
    /// A chain of one-operand nodes applied to input 0 (a Slice over several
    /// axes becomes one Slice per axis); each with its output shape.
    Chain(Vec<(NodeOp, Vec<usize>)>),
}

/// The operand for input `i`: a runtime value or a float constant.
fn operand<T: Element>(ctx: &NodeCtx, args: &[Arg<'_, T>], i: usize) -> Result<Operand<T>> {
    match arg(args, i) {
        Arg::Value { id, .. } => Ok(Operand::Value(id)),
        Arg::Const(Constant::Float(t)) => Ok(Operand::Const(t.clone())),
        Arg::Const(c) => Err(ctx.shape_err(format!(
            "input {i} is a {} constant where a float tensor is needed",
            c.kind()
        ))),
        Arg::Missing => Err(ctx.shape_err(format!("input {i} is missing"))),
    }
}

/// Operands for the present inputs among `0..n`.
fn operands<T: Element>(ctx: &NodeCtx, args: &[Arg<'_, T>], n: usize) -> Result<Vec<Operand<T>>> {
    (0..n)
        .filter(|&i| !arg(args, i).is_missing())
        .map(|i| operand(ctx, args, i))
        .collect()
}

/// Input 0 must be the runtime value (the op's other inputs being
/// index-like constants); a constant there means an index input was not.
fn runtime_input<'a, T: Element>(ctx: &NodeCtx, args: &[Arg<'a, T>]) -> Result<&'a [usize]> {
    match arg(args, 0) {
        Arg::Value { shape, .. } => Ok(shape),
        _ => {
            let i = (1..args.len())
                .find(|&i| matches!(args[i], Arg::Value { .. }))
                .unwrap_or(0);
            Err(ctx.not_const(i))
        }
    }
}

/// One compute node with a single output.
fn node<T>(op: NodeOp, operands: Vec<Operand<T>>, shape: Vec<usize>) -> Lowering<T> {
    Lowering::Node {
        op,
        operands,
        shapes: vec![shape],
    }
}

/// Lowers a node that has at least one runtime input.
pub fn lower<T: Element>(
    ctx: &NodeCtx,
    spec: &OpSpec<T>,
    args: &[Arg<'_, T>],
    outputs: usize,
) -> Result<Lowering<T>> {
    let se = |m: String| ctx.shape_err(m);
    match spec {
        OpSpec::Conv { window, group } => {
            let x = shape_arg(ctx, args, 0)?;
            let w = shape_arg(ctx, args, 1)?;
            let kernel = match (window.kernel, w) {
                (Some(k), _) => k,
                (None, &[_, _, kh, kw]) => [kh, kw],
                (None, _) => return Err(se(format!("weight shape {w:?} is not 4-d"))),
            };
            let pads = resolve_pads(ctx, window, x, kernel)?;
            let b = arg(args, 2).shape();
            let out = shape::conv_output(
                x,
                w,
                b,
                kernel,
                window.strides,
                pads,
                window.dilations,
                *group,
            )
            .map_err(se)?;
            let op = NodeOp::Conv {
                kernel,
                strides: window.strides,
                pads,
                dilations: window.dilations,
                group: *group,
            };
            Ok(node(op, operands(ctx, args, 3)?, out))
        }
        OpSpec::Gemm {
            trans_a,
            trans_b,
            alpha,
            beta,
        } => {
            let out = shape::gemm_output(
                shape_arg(ctx, args, 0)?,
                shape_arg(ctx, args, 1)?,
                arg(args, 2).shape(),
                *trans_a,
                *trans_b,
            )
            .map_err(se)?;
            let op = NodeOp::Gemm {
                trans_a: *trans_a,
                trans_b: *trans_b,
                alpha: *alpha,
                beta: *beta,
            };
            Ok(node(op, operands(ctx, args, 3)?, out))
        }
        OpSpec::MatMul => {
            let out = shape::matmul_output(shape_arg(ctx, args, 0)?, shape_arg(ctx, args, 1)?)
                .map_err(se)?;
            Ok(node(NodeOp::MatMul, operands(ctx, args, 2)?, out))
        }
        OpSpec::Binary(b) => {
            let out =
                shape::broadcast(shape_arg(ctx, args, 0)?, shape_arg(ctx, args, 1)?).map_err(se)?;
            let op = match b {
                Binary::Add => NodeOp::Add,
                Binary::Sub => NodeOp::Sub,
                Binary::Mul => NodeOp::Mul,
                Binary::Div => NodeOp::Div,
            };
            Ok(node(op, operands(ctx, args, 2)?, out))
        }
        OpSpec::Unary(u) => {
            let x = runtime_input(ctx, args)?.to_vec();
            let op = match u {
                Unary::Relu => NodeOp::Relu,
                Unary::Sigmoid => NodeOp::Sigmoid,
                Unary::Erf => NodeOp::Erf,
                Unary::HardSwish => NodeOp::HardSwish,
                Unary::Sqrt => return Err(ctx.not_const(0)),
            };
            Ok(node(op, operands(ctx, args, 1)?, x))
        }
        OpSpec::HardSigmoid { alpha, beta } => {
            let x = runtime_input(ctx, args)?.to_vec();
            let op = NodeOp::HardSigmoid {
                alpha: *alpha,
                beta: *beta,
            };
            Ok(node(op, operands(ctx, args, 1)?, x))
        }
        OpSpec::Clip { min, max } => {
            let x = runtime_input(ctx, args)?.to_vec();
            let op = NodeOp::Clip {
                min: const_scalar(ctx, args, 1)?.or(*min),
                max: const_scalar(ctx, args, 2)?.or(*max),
            };
            Ok(node(op, operands(ctx, args, 1)?, x))
        }
        OpSpec::Softmax { axis } => {
            let x = runtime_input(ctx, args)?;
            let a = shape::normalize_axis(*axis, x.len()).map_err(se)?;
            // Before opset 13 Softmax flattened the axes from `axis` on.
            if ctx.opset < 13 && x[a + 1..].iter().any(|&d| d != 1) {
                return Err(se(format!(
                    "opset {} Softmax over the trailing axes from {a} of {x:?} is not supported",
                    ctx.opset
                )));
            }
            Ok(node(
                NodeOp::Softmax { axis: a },
                operands(ctx, args, 1)?,
                x.to_vec(),
            ))
        }
        OpSpec::LayerNormalization { axis, epsilon } => {
            let x = runtime_input(ctx, args)?;
            let a = shape::normalize_axis(*axis, x.len()).map_err(se)?;
            for i in 1..3 {
                if let Some(p) = arg(args, i).shape() {
                    if !shape::broadcasts_to(p, &x[a..]) {
                        return Err(se(format!(
                            "input {i} of shape {p:?} does not broadcast to the normalised {:?}",
                            &x[a..]
                        )));
                    }
                }
            }
            let op = NodeOp::LayerNormalization {
                axis: a,
                epsilon: *epsilon,
            };
            Ok(node(op, operands(ctx, args, 3)?, x.to_vec()))
        }
        OpSpec::BatchNormalization { epsilon } => {
            let x = runtime_input(ctx, args)?;
            let c = *x
                .get(1)
                .ok_or_else(|| se(format!("input shape {x:?} has no channel axis")))?;
            for i in 1..5 {
                let p = shape_arg(ctx, args, i)?;
                if p != [c] {
                    return Err(se(format!(
                        "input {i} has shape {p:?}, not [{c}] for {x:?}"
                    )));
                }
            }
            let op = NodeOp::BatchNormalization { epsilon: *epsilon };
            Ok(node(op, operands(ctx, args, 5)?, x.to_vec()))
        }
        OpSpec::MaxPool { window, ceil_mode } => {
            let x = runtime_input(ctx, args)?;
            let kernel = window.kernel.ok_or_else(|| se("no kernel_shape".into()))?;
            let pads = resolve_pads(ctx, window, x, kernel)?;
            let out = shape::pool_output(
                x,
                kernel,
                window.strides,
                pads,
                window.dilations,
                *ceil_mode,
            )
            .map_err(se)?;
            let op = NodeOp::MaxPool {
                kernel,
                strides: window.strides,
                pads,
                dilations: window.dilations,
                ceil_mode: *ceil_mode,
            };
            Ok(node(op, operands(ctx, args, 1)?, out))
        }
        OpSpec::AveragePool {
            window,
            ceil_mode,
            count_include_pad,
        } => {
            let x = runtime_input(ctx, args)?;
            let kernel = window.kernel.ok_or_else(|| se("no kernel_shape".into()))?;
            let pads = resolve_pads(ctx, window, x, kernel)?;
            let out = shape::pool_output(x, kernel, window.strides, pads, [1, 1], *ceil_mode)
                .map_err(se)?;
            let op = NodeOp::AveragePool {
                kernel,
                strides: window.strides,
                pads,
                ceil_mode: *ceil_mode,
                count_include_pad: *count_include_pad,
            };
            Ok(node(op, operands(ctx, args, 1)?, out))
        }
        OpSpec::GlobalAveragePool => {
            let [n, c, _, _] = shape::rank4(runtime_input(ctx, args)?, "input").map_err(se)?;
            Ok(node(
                NodeOp::GlobalAveragePool,
                operands(ctx, args, 1)?,
                vec![n, c, 1, 1],
            ))
        }
        OpSpec::ReduceMean {
            axes,
            keepdims,
            noop_with_empty_axes,
        } => {
            let x = runtime_input(ctx, args)?;
            let given = const_ints(ctx, args, 1)?
                .or_else(|| axes.clone())
                .unwrap_or_default();
            if given.is_empty() && *noop_with_empty_axes {
                return Ok(Lowering::Alias);
            }
            let axes = if given.is_empty() {
                (0..x.len()).collect()
            } else {
                shape::normalize_axes(&given, x.len()).map_err(se)?
            };
            if axes.is_empty() {
                return Ok(Lowering::Alias);
            }
            let out = shape::reduce_output(x, &axes, *keepdims);
            let op = NodeOp::ReduceMean {
                axes,
                keepdims: *keepdims,
            };
            Ok(node(op, operands(ctx, args, 1)?, out))
        }
        OpSpec::Concat { axis } => {
            let shapes = (0..args.len())
                .map(|i| shape_arg(ctx, args, i))
                .collect::<Result<Vec<_>>>()?;
            let rank = shapes.first().map_or(0, |s| s.len());
            let a = shape::normalize_axis(*axis, rank).map_err(se)?;
            let out = shape::concat_output(&shapes, a).map_err(se)?;
            Ok(node(
                NodeOp::Concat { axis: a },
                operands(ctx, args, args.len())?,
                out,
            ))
        }
        OpSpec::Split {
            axis,
            split,
            num_outputs,
        } => {
            let x = runtime_input(ctx, args)?;
            let a = shape::normalize_axis(*axis, x.len()).map_err(se)?;
            let given = const_ints(ctx, args, 1)?.or_else(|| split.clone());
            let sizes =
                shape::split_sizes(x[a], given.as_deref(), *num_outputs, outputs).map_err(se)?;
            let shapes = sizes
                .iter()
                .map(|&s| {
                    let mut o = x.to_vec();
                    o[a] = s;
                    o
                })
                .collect();
            Ok(Lowering::Node {
                op: NodeOp::Split { axis: a, sizes },
                operands: operands(ctx, args, 1)?,
                shapes,
            })
        }
        OpSpec::Slice => {
            let x = runtime_input(ctx, args)?;
            let starts = const_ints(ctx, args, 1)?.unwrap_or_default();
            let ends = const_ints(ctx, args, 2)?.unwrap_or_default();
            let axes = const_ints(ctx, args, 3)?;
            let steps = const_ints(ctx, args, 4)?;
            let sliced = shape::slice_axes(x, &starts, &ends, axes.as_deref(), steps.as_deref())
                .map_err(se)?;
            let mut shape_now = x.to_vec();
            let mut chain = Vec::new();
            for s in sliced {
                if s.is_whole(shape_now[s.axis]) {
                    continue;
                }
                shape_now[s.axis] = s.len;
                let op = NodeOp::Slice {
                    axis: s.axis,
                    start: s.start,
                    end: s.end,
                    step: s.step,
                };
                chain.push((op, shape_now.clone()));
            }
            Ok(match chain.len() {
                0 => Lowering::Alias,
                1 => {
                    let (op, shape) = chain.remove(0);
                    node(op, operands(ctx, args, 1)?, shape)
                }
                _ => Lowering::Chain(chain),
            })
        }
        OpSpec::Reshape { allowzero } => {
            let x = runtime_input(ctx, args)?;
            let target = const_ints(ctx, args, 1)?.unwrap_or_default();
            let out = shape::reshape_target(x, &target, *allowzero).map_err(se)?;
            reshape(ctx, args, out)
        }
        OpSpec::Flatten { axis } => {
            let out = shape::flatten_output(runtime_input(ctx, args)?, *axis).map_err(se)?;
            reshape(ctx, args, out)
        }
        OpSpec::Squeeze { axes } => {
            let x = runtime_input(ctx, args)?;
            let given = const_ints(ctx, args, 1)?.or_else(|| axes.clone());
            let out = shape::squeeze_output(x, given.as_deref()).map_err(se)?;
            reshape(ctx, args, out)
        }
        OpSpec::Unsqueeze { axes } => {
            let x = runtime_input(ctx, args)?;
            let given = const_ints(ctx, args, 1)?
                .or_else(|| axes.clone())
                .ok_or_else(|| se("no axes given".into()))?;
            let out = shape::unsqueeze_output(x, &given).map_err(se)?;
            reshape(ctx, args, out)
        }
        OpSpec::Transpose { perm } => {
            let x = runtime_input(ctx, args)?;
            let perm = shape::transpose_perm(x.len(), perm.as_deref()).map_err(se)?;
            let out = shape::permute(x, &perm);
            Ok(node(
                NodeOp::Transpose { perm },
                operands(ctx, args, 1)?,
                out,
            ))
        }
        OpSpec::Gather { axis } => {
            let x = runtime_input(ctx, args)?;
            let a = shape::normalize_axis(*axis, x.len()).map_err(se)?;
            let raw = const_ints(ctx, args, 1)?.unwrap_or_default();
            let indices_shape = shape_arg(ctx, args, 1)?.to_vec();
            let indices = shape::resolve_indices(&raw, x[a]).map_err(se)?;
            let out = shape::gather_output(x, a, &indices_shape);
            let op = NodeOp::Gather {
                axis: a,
                indices,
                indices_shape,
            };
            Ok(node(op, operands(ctx, args, 1)?, out))
        }
        OpSpec::Expand => {
            let x = runtime_input(ctx, args)?;
            let dims = const_ints(ctx, args, 1)?.unwrap_or_default();
            let dims = shape::dims_from_ints(&dims).map_err(se)?;
            let out = shape::broadcast(x, &dims).map_err(se)?;
            Ok(node(
                NodeOp::Expand { shape: out.clone() },
                operands(ctx, args, 1)?,
                out,
            ))
        }
        OpSpec::Identity => {
            runtime_input(ctx, args)?;
            Ok(Lowering::Alias)
        }
        OpSpec::Cast { to } if data_type::is_float(*to) => {
            runtime_input(ctx, args)?;
            Ok(Lowering::Alias)
        }
        // Ops that only constant folding supports.
        OpSpec::Cast { .. }
        | OpSpec::Shape { .. }
        | OpSpec::ConstantOfShape { .. }
        | OpSpec::Equal
        | OpSpec::Where
        | OpSpec::Mod { .. }
        | OpSpec::Range
        | OpSpec::Constant(_) => {
            let i = (0..args.len())
                .find(|&i| matches!(args[i], Arg::Value { .. }))
                .unwrap_or(0);
            Err(ctx.not_const(i))
        }
    }
}

/// A Reshape node to `out` of the runtime input 0.
fn reshape<T: Element>(ctx: &NodeCtx, args: &[Arg<'_, T>], out: Vec<usize>) -> Result<Lowering<T>> {
    Ok(node(
        NodeOp::Reshape { shape: out.clone() },
        operands(ctx, args, 1)?,
        out,
    ))
}

/// Explicit pads, or those `auto_pad` asks for on input `x` (`[N, C, H, W]`).
fn resolve_pads(ctx: &NodeCtx, w: &Window, x: &[usize], kernel: [usize; 2]) -> Result<[usize; 4]> {
    if w.auto_pad == AutoPad::NotSet {
        return Ok(w.pads);
    }
    let [_, _, h, wd] = shape::rank4(x, "input").map_err(|m| ctx.shape_err(m))?;
    let mut pads = [0usize; 4];
    for (axis, size) in [h, wd].into_iter().enumerate() {
        let (b, e) = shape::auto_pads(
            w.auto_pad,
            size,
            kernel[axis],
            w.strides[axis],
            w.dilations[axis],
        )
        .map_err(|m| ctx.shape_err(m))?
        .unwrap_or((0, 0));
        pads[axis] = b;
        pads[axis + 2] = e;
    }
    Ok(pads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::OnnxError;
    use std::sync::Arc;

    fn ctx<'a>(op: &'a str, inputs: &'a [String]) -> NodeCtx<'a> {
        NodeCtx {
            label: "n",
            op_type: op,
            inputs,
            opset: 18,
        }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("in{i}")).collect()
    }

    fn single(l: Lowering<f32>) -> (NodeOp, Vec<Operand<f32>>, Vec<usize>) {
        match l {
            Lowering::Node {
                op,
                operands,
                mut shapes,
            } => (op, operands, shapes.remove(0)),
            _ => panic!("expected one node"),
        }
    }

    #[test]
    fn conv_with_same_padding_and_bias() {
        let n = names(3);
        let w = Constant::<f32>::float_from_f64(vec![4, 2, 3, 3], &[0.0; 72]).unwrap();
        let b = Constant::<f32>::float_from_f64(vec![4], &[0.0; 4]).unwrap();
        let x = [1usize, 2, 7, 7];
        let args = [
            Arg::Value { id: 0, shape: &x },
            Arg::Const(&w),
            Arg::Const(&b),
        ];
        let spec = OpSpec::Conv {
            window: Window {
                kernel: None,
                strides: [2, 2],
                pads: [0; 4],
                dilations: [1, 1],
                auto_pad: AutoPad::SameUpper,
            },
            group: 1,
        };
        let (op, ops, shape) = single(lower(&ctx("Conv", &n), &spec, &args, 1).unwrap());
        assert_eq!(shape, vec![1, 4, 4, 4]);
        assert_eq!(
            op,
            NodeOp::Conv {
                kernel: [3, 3],
                strides: [2, 2],
                pads: [1, 1, 1, 1],
                dilations: [1, 1],
                group: 1
            }
        );
        assert_eq!(ops.len(), 3);
        assert!(matches!(ops[0], Operand::Value(0)));
        assert!(
            matches!(&ops[1], Operand::Const(t) if Arc::ptr_eq(t, match &w { Constant::Float(t) => t, _ => unreachable!() }))
        );
    }

    #[test]
    fn index_inputs_become_attributes() {
        let n = names(2);
        let x = [2usize, 17, 16];
        let idx = Constant::<f32>::int(vec![], vec![-17]);
        let args = [Arg::Value { id: 3, shape: &x }, Arg::Const(&idx)];
        let (op, ops, shape) =
            single(lower(&ctx("Gather", &n), &OpSpec::Gather { axis: 1 }, &args, 1).unwrap());
        assert_eq!(
            op,
            NodeOp::Gather {
                axis: 1,
                indices: vec![0],
                indices_shape: vec![]
            }
        );
        assert_eq!(ops.len(), 1);
        assert_eq!(shape, vec![2, 16]);

        let target = Constant::<f32>::int(vec![3], vec![2, 16, -1]);
        let x = [2usize, 16, 4, 4];
        let args = [Arg::Value { id: 0, shape: &x }, Arg::Const(&target)];
        let (op, _, shape) = single(
            lower(
                &ctx("Reshape", &n),
                &OpSpec::Reshape { allowzero: true },
                &args,
                1,
            )
            .unwrap(),
        );
        assert_eq!(
            op,
            NodeOp::Reshape {
                shape: vec![2, 16, 16]
            }
        );
        assert_eq!(shape, vec![2, 16, 16]);
        // The same graph at batch 1 cannot take the baked shape.
        let x1 = [1usize, 16, 4, 4];
        let fixed = Constant::<f32>::int(vec![3], vec![2, 16, 16]);
        let args = [Arg::Value { id: 0, shape: &x1 }, Arg::Const(&fixed)];
        let e = lower(
            &ctx("Reshape", &n),
            &OpSpec::Reshape { allowzero: true },
            &args,
            1,
        )
        .err()
        .unwrap();
        assert!(matches!(e, OnnxError::Shape { .. }), "{e}");
    }

    #[test]
    fn runtime_index_inputs_are_refused() {
        let n = names(2);
        let x = [2usize, 4];
        let args: [Arg<f32>; 2] = [
            Arg::Value { id: 0, shape: &x },
            Arg::Value { id: 1, shape: &[2] },
        ];
        let e = lower(
            &ctx("Reshape", &n),
            &OpSpec::Reshape { allowzero: false },
            &args,
            1,
        )
        .err()
        .unwrap();
        assert!(
            matches!(e, OnnxError::NotConstant { ref input, .. } if input == "in1"),
            "{e}"
        );
        let e = lower(&ctx("Where", &n), &OpSpec::Where, &args, 1)
            .err()
            .unwrap();
        assert!(matches!(e, OnnxError::NotConstant { .. }));
    }

    #[test]
    fn slices_chain_per_axis_and_trivial_ones_vanish() {
        let n = names(5);
        let x = [4usize, 6];
        let starts = Constant::<f32>::int(vec![2], vec![1, 0]);
        let ends = Constant::<f32>::int(vec![2], vec![3, i64::MAX]);
        let axes = Constant::<f32>::int(vec![2], vec![0, 1]);
        let steps = Constant::<f32>::int(vec![2], vec![1, 2]);
        let args = [
            Arg::Value { id: 0, shape: &x },
            Arg::Const(&starts),
            Arg::Const(&ends),
            Arg::Const(&axes),
            Arg::Const(&steps),
        ];
        match lower(&ctx("Slice", &n), &OpSpec::Slice, &args, 1).unwrap() {
            Lowering::Chain(c) => {
                assert_eq!(c.len(), 2);
                assert_eq!(c[0].1, vec![2, 6]);
                assert_eq!(c[1].1, vec![2, 3]);
            }
            _ => panic!("expected a chain"),
        }
        let all = Constant::<f32>::int(vec![1], vec![0]);
        let big = Constant::<f32>::int(vec![1], vec![100]);
        let args = [
            Arg::Value { id: 0, shape: &x },
            Arg::Const(&all),
            Arg::Const(&big),
        ];
        assert!(matches!(
            lower(&ctx("Slice", &n), &OpSpec::Slice, &args, 1).unwrap(),
            Lowering::Alias
        ));
    }

    #[test]
    fn channel_and_window_checks() {
        let n = names(5);
        let x = [1usize, 3, 4, 4];
        let p = Constant::<f32>::float_from_f64(vec![4], &[1.0; 4]).unwrap();
        let args = [
            Arg::Value { id: 0, shape: &x },
            Arg::Const(&p),
            Arg::Const(&p),
            Arg::Const(&p),
            Arg::Const(&p),
        ];
        let e = lower(
            &ctx("BatchNormalization", &n),
            &OpSpec::BatchNormalization { epsilon: 1e-5 },
            &args,
            1,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("not [3]"), "{e}");
        let pool = OpSpec::MaxPool {
            window: Window {
                kernel: Some([5, 5]),
                strides: [1, 1],
                pads: [0; 4],
                dilations: [1, 1],
                auto_pad: AutoPad::NotSet,
            },
            ceil_mode: false,
        };
        let e = lower(&ctx("MaxPool", &n), &pool, &args[..1], 1)
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("larger than the padded input"),
            "{e}"
        );
    }
}
