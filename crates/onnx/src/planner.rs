//! Planning: walks the loaded graph in topological order for one input
//! shape, folding nodes whose inputs are all constants, lowering the others
//! to [`PlanNode`]s with inferred shapes, then keeping only the nodes the
//! output depends on.

use crate::args::{Arg, NodeCtx};
use crate::constant::Constant;
use crate::error::{OnnxError, Result};
use crate::fold::{fold, shape_of};
use crate::lower::{lower, Lowering};
use crate::model::OnnxModel;
use crate::plan::{Operand, Plan, PlanNode, ValueId, ValueInfo};
use crate::shape::numel;
use crate::spec::OpSpec;
use sightline_tensor::Element;
use std::collections::HashMap;

/// Largest total number of elements over all runtime values of a plan
/// (2^40): a plan is a promise to allocate them.
pub const MAX_PLAN_ELEMENTS: u64 = 1 << 40;

/// What a value name stands for while planning.
enum Val<T> {
    /// A runtime value.
    Runtime(ValueId),
    /// A constant.
    Const(Constant<T>),
    /// An optional output that is not computed (training statistics,
    /// indices), produced by the named node.
    Unavailable(String),
}

impl<T> Clone for Val<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Runtime(id) => Self::Runtime(*id),
            Self::Const(c) => Self::Const(c.clone()),
            Self::Unavailable(n) => Self::Unavailable(n.clone()),
        }
    }
}

/// What planning one node gives.
enum Outcome<T> {
    /// Constant outputs.
    Consts(Vec<Constant<T>>),
    /// Compute node(s) or an alias.
    Lowered(Lowering<T>),
}

/// The plan state: runtime values, compute nodes, the name table.
struct Planner<'m, T> {
    values: Vec<ValueInfo>,
    nodes: Vec<PlanNode<T>>,
    table: HashMap<&'m str, Val<T>>,
    total: u64,
}

impl<'m, T: Element> Planner<'m, T> {
    /// Adds a runtime value, counting its elements against the limit.
    fn add_value(&mut self, name: &str, shape: Vec<usize>) -> Result<ValueId> {
        let n = numel(&shape).map_err(|_| OnnxError::PlanTooLarge {
            limit: MAX_PLAN_ELEMENTS,
        })?;
        self.total = self
            .total
            .checked_add(n as u64)
            .filter(|&t| t <= MAX_PLAN_ELEMENTS)
            .ok_or(OnnxError::PlanTooLarge {
                limit: MAX_PLAN_ELEMENTS,
            })?;
        self.values.push(ValueInfo {
            name: name.to_string(),
            shape,
        });
        Ok(self.values.len() - 1)
    }
}

/// Plans `model` for `input_shape`.
pub fn build_plan<T: Element>(model: &OnnxModel<T>, input_shape: &[usize]) -> Result<Plan<T>> {
    let input_err = |message: String| OnnxError::InputShape {
        shape: input_shape.to_vec(),
        message,
    };
    if let Some(dims) = &model.input_dims {
        if dims.len() != input_shape.len() {
            return Err(input_err(format!(
                "the model's input {:?} has {} dimensions",
                model.input_name,
                dims.len()
            )));
        }
    }
    if input_shape.contains(&0) {
        return Err(input_err("a dimension is zero".into()));
    }
    let mut p: Planner<T> = Planner {
        values: Vec::new(),
        nodes: Vec::new(),
        table: model
            .initializers
            .iter()
            .map(|(k, v)| (k.as_str(), Val::Const(v.clone())))
            .collect(),
        total: 0,
    };
    let input = p.add_value(&model.input_name, input_shape.to_vec())?;
    p.table.insert(&model.input_name, Val::Runtime(input));

    for gn in &model.nodes {
        let ctx = NodeCtx {
            label: &gn.label,
            op_type: &gn.op_type,
            inputs: &gn.inputs,
            opset: model.opset,
        };
        let outcome = {
            let args = gn
                .inputs
                .iter()
                .map(|name| {
                    if name.is_empty() {
                        return Ok(Arg::Missing);
                    }
                    match p.table.get(name.as_str()) {
                        Some(Val::Runtime(id)) => Ok(Arg::Value {
                            id: *id,
                            shape: p.values[*id].shape.as_slice(),
                        }),
                        Some(Val::Const(c)) => Ok(Arg::Const(c)),
                        Some(Val::Unavailable(by)) => Err(OnnxError::Graph {
                            node: gn.label.clone(),
                            message: format!(
                                "input {name:?} is an optional output of node {by:?} that is not computed"
                            ),
                        }),
                        None => Err(OnnxError::Graph {
                            node: gn.label.clone(),
                            message: format!("input {name:?} is never produced"),
                        }),
                    }
                })
                .collect::<Result<Vec<Arg<T>>>>()?;
            let has_runtime = args.iter().any(|a| matches!(a, Arg::Value { .. }));
            match (&gn.spec, args.first()) {
                (OpSpec::Shape { start, end }, Some(Arg::Value { shape, .. })) => {
                    Outcome::Consts(vec![shape_of(shape, *start, *end)])
                }
                _ if !has_runtime => {
                    Outcome::Consts(fold(&ctx, &gn.spec, &args, gn.outputs.len())?)
                }
                _ => Outcome::Lowered(lower(&ctx, &gn.spec, &args, gn.outputs.len())?),
            }
        };
        let produced = match outcome {
            Outcome::Consts(consts) => {
                let n = consts.len();
                for (name, c) in gn.outputs.iter().zip(consts) {
                    if !name.is_empty() {
                        p.table.insert(name, Val::Const(c));
                    }
                }
                n
            }
            Outcome::Lowered(Lowering::Alias) => {
                let source = gn
                    .inputs
                    .first()
                    .and_then(|i| p.table.get(i.as_str()))
                    .cloned()
                    .ok_or_else(|| ctx.shape_err("input 0 is missing"))?;
                if let Some(out) = gn.outputs.first() {
                    p.table.insert(out, source);
                }
                1
            }
            Outcome::Lowered(Lowering::Node {
                op,
                operands,
                shapes,
            }) => {
                let n = shapes.len();
                let mut outputs = Vec::with_capacity(n);
                for (i, shape) in shapes.into_iter().enumerate() {
                    let name = gn.outputs.get(i).map_or("", String::as_str);
                    let id = p.add_value(name, shape)?;
                    if !name.is_empty() {
                        p.table.insert(name, Val::Runtime(id));
                    }
                    outputs.push(id);
                }
                p.nodes.push(PlanNode {
                    name: gn.name.clone(),
                    op_type: gn.op_type.clone(),
                    op,
                    inputs: operands,
                    outputs,
                    scope: gn.scope.clone(),
                });
                n
            }
            Outcome::Lowered(Lowering::Chain(chain)) => {
                let first = gn.inputs.first().map_or("", String::as_str);
                let Some(Val::Runtime(mut prev)) = p.table.get(first).cloned() else {
                    return Err(ctx.shape_err("input 0 is not a runtime value"));
                };
                let out_name = gn.outputs.first().map_or("", String::as_str);
                let steps = chain.len();
                for (k, (op, shape)) in chain.into_iter().enumerate() {
                    let name = if k + 1 == steps {
                        out_name.to_string()
                    } else {
                        format!("{out_name}/{}{k}", op.name())
                    };
                    let id = p.add_value(&name, shape)?;
                    p.nodes.push(PlanNode {
                        name: gn.name.clone(),
                        op_type: gn.op_type.clone(),
                        op,
                        inputs: vec![Operand::Value(prev)],
                        outputs: vec![id],
                        scope: gn.scope.clone(),
                    });
                    prev = id;
                }
                if !out_name.is_empty() {
                    p.table.insert(out_name, Val::Runtime(prev));
                }
                1
            }
        };
        for name in gn.outputs.iter().skip(produced) {
            if !name.is_empty() {
                p.table.insert(name, Val::Unavailable(gn.label.clone()));
            }
        }
    }

    let output = match p.table.get(model.output_name.as_str()) {
        Some(Val::Runtime(id)) => *id,
        Some(Val::Const(_)) => {
            return Err(OnnxError::Model {
                message: format!(
                    "the graph output {:?} does not depend on the input",
                    model.output_name
                ),
            })
        }
        _ => {
            return Err(OnnxError::Model {
                message: format!("the graph output {:?} is not computed", model.output_name),
            })
        }
    };
    Ok(prune(p.values, p.nodes, input, output))
}

/// Keeps the nodes the output depends on and renumbers the values: the
/// input first, then each kept node's outputs in order.
fn prune<T>(
    values: Vec<ValueInfo>,
    nodes: Vec<PlanNode<T>>,
    input: ValueId,
    output: ValueId,
) -> Plan<T> {
    let mut needed = vec![false; values.len()];
    needed[output] = true;
    let mut keep = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate().rev() {
        if n.outputs.iter().any(|&o| needed[o]) {
            keep[i] = true;
            for op in &n.inputs {
                if let Operand::Value(v) = op {
                    needed[*v] = true;
                }
            }
        }
    }
    let mut remap = vec![usize::MAX; values.len()];
    let mut new_values = Vec::with_capacity(values.len());
    remap[input] = 0;
    new_values.push(values[input].clone());
    let mut kept = Vec::with_capacity(nodes.len());
    for (n, k) in nodes.into_iter().zip(keep) {
        if !k {
            continue;
        }
        for &o in &n.outputs {
            remap[o] = new_values.len();
            new_values.push(values[o].clone());
        }
        kept.push(n);
    }
    for n in &mut kept {
        for op in &mut n.inputs {
            if let Operand::Value(v) = op {
                *v = remap[*v];
            }
        }
        for o in &mut n.outputs {
            *o = remap[*o];
        }
    }
    Plan {
        input: 0,
        output: remap[output],
        values: new_values,
        nodes: kept,
    }
}

#[cfg(test)]
mod tests {
    use crate::test_models::{attr_int, float_value, int64s, model, op, small_model, weight};
    use crate::{Dim, NodeOp, OnnxError, OnnxModel, Operand};

    fn load(bytes: &[u8]) -> OnnxModel<f32> {
        OnnxModel::from_bytes(bytes, None).unwrap()
    }

    #[test]
    fn shape_arithmetic_folds_for_any_batch() {
        let model = load(&small_model());
        assert_eq!(
            model.input_shape(),
            &[
                Dim::Named("batch".into()),
                Dim::Fixed(3),
                Dim::Fixed(4),
                Dim::Fixed(4)
            ]
        );
        assert_eq!(model.fixed_input_shape(), None);
        for batch in [1, 5] {
            let plan = model.plan(&[batch, 3, 4, 4]).unwrap();
            let ops: Vec<&str> = plan.nodes.iter().map(|n| n.op.name()).collect();
            assert_eq!(
                ops,
                ["Conv", "Relu", "MaxPool", "Reshape", "Gemm", "Softmax"]
            );
            assert_eq!(
                plan.nodes[3].op,
                NodeOp::Reshape {
                    shape: vec![batch, 8]
                }
            );
            assert_eq!(plan.nodes[5].op, NodeOp::Softmax { axis: 1 });
            assert_eq!(plan.shape(plan.output), Some(&[batch, 3][..]));
            assert_eq!(plan.layer_shape("pool"), Some(&[batch, 2, 2, 2][..]));
            assert_eq!(plan.layer_shape("fc"), Some(&[batch, 3][..]));
        }
    }

    #[test]
    fn dead_branches_are_pruned_and_ids_renumbered() {
        let nodes = vec![
            op("unused", "Sigmoid", &["x"], vec![]),
            op("dropout", "Dropout", &["x"], vec![]),
            op("identity", "Identity", &["dropout_out"], vec![]),
            op("relu", "Relu", &["identity_out"], vec![]),
        ];
        let plan = load(&model(
            17,
            nodes,
            vec![],
            float_value("x", &[Some(2)]),
            "relu_out",
        ))
        .plan(&[2])
        .unwrap();
        assert_eq!(plan.nodes.len(), 1);
        assert_eq!(plan.nodes[0].name, "relu");
        assert!(matches!(plan.nodes[0].inputs[..], [Operand::Value(0)]));
        assert_eq!(plan.nodes[0].outputs, vec![1]);
        assert_eq!((plan.input, plan.output), (0, 1));
        assert_eq!(plan.values.len(), 2);
        assert_eq!(plan.values[1].name, "relu_out");
    }

    #[test]
    fn uncomputed_optional_outputs_cannot_be_used() {
        let mut pool = op(
            "pool",
            "MaxPool",
            &["x"],
            vec![crate::test_models::attr_ints("kernel_shape", &[1, 1])],
        );
        pool.output.push("indices".into());
        let nodes = vec![pool, op("relu", "Relu", &["indices"], vec![])];
        let x = float_value("x", &[Some(1), Some(1), Some(2), Some(2)]);
        let e = load(&model(17, nodes, vec![], x, "relu_out"))
            .plan(&[1, 1, 2, 2])
            .unwrap_err();
        match e {
            OnnxError::Graph { node, message } => {
                assert_eq!(node, "relu");
                assert!(message.contains("not computed"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn constant_outputs_and_bad_input_shapes() {
        let nodes = vec![op("c", "Relu", &["w"], vec![])];
        let m = load(&model(
            17,
            nodes,
            vec![weight("w", &[2], 1.0)],
            float_value("x", &[Some(2)]),
            "c_out",
        ));
        assert!(matches!(m.plan(&[2]), Err(OnnxError::Model { .. })));
        let plan_err = load(&small_model()).plan(&[2, 3, 4]).unwrap_err();
        assert!(matches!(plan_err, OnnxError::InputShape { .. }));
    }

    #[test]
    fn slices_over_two_axes_chain() {
        let nodes = vec![op(
            "slice",
            "Slice",
            &["x", "starts", "ends", "axes", "steps"],
            vec![],
        )];
        let inits = vec![
            int64s("starts", &[2], &[1, -1]),
            int64s("ends", &[2], &[3, i64::MIN]),
            int64s("axes", &[2], &[0, 1]),
            int64s("steps", &[2], &[1, -2]),
        ];
        let plan = load(&model(
            17,
            nodes,
            inits,
            float_value("x", &[Some(4), Some(5)]),
            "slice_out",
        ))
        .plan(&[4, 5])
        .unwrap();
        assert_eq!(plan.nodes.len(), 2);
        assert_eq!(
            plan.nodes[0].op,
            NodeOp::Slice {
                axis: 0,
                start: 1,
                end: 3,
                step: 1
            }
        );
        assert_eq!(
            plan.nodes[1].op,
            NodeOp::Slice {
                axis: 1,
                start: 4,
                end: -1,
                step: -2
            }
        );
        assert_eq!(plan.shape(plan.output), Some(&[2, 3][..]));
        assert_eq!(plan.values[plan.output].name, "slice_out");
        assert!(matches!(plan.nodes[1].inputs[..], [Operand::Value(1)]));
    }

    #[test]
    fn float_constants_fold_in_the_element_type() {
        // y = x * sqrt(w) with w = [4, 9]: the Sqrt folds, the Mul stays.
        let mut w = weight("w", &[2], 0.0);
        w.raw_data = [4.0f32, 9.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
            .into();
        let nodes = vec![
            op("sqrt", "Sqrt", &["w"], vec![]),
            op("mul", "Mul", &["x", "sqrt_out"], vec![]),
            op("sm", "Softmax", &["mul_out"], vec![attr_int("axis", 0)]),
        ];
        let plan = load(&model(
            17,
            nodes,
            vec![w],
            float_value("x", &[Some(2)]),
            "sm_out",
        ))
        .plan(&[2])
        .unwrap();
        assert_eq!(plan.nodes.len(), 2);
        match &plan.nodes[0].inputs[1] {
            Operand::Const(t) => assert_eq!(t.data(), &[2.0, 3.0]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn runtime_shape_inputs_are_refused() {
        // Reshape's shape computed from the input's values, not its shape.
        let nodes = vec![
            op("cast", "Cast", &["x"], vec![attr_int("to", 7)]),
            op("reshape", "Reshape", &["x", "cast_out"], vec![]),
        ];
        let e = load(&model(
            17,
            nodes,
            vec![],
            float_value("x", &[Some(2)]),
            "reshape_out",
        ))
        .plan(&[2])
        .unwrap_err();
        assert!(
            matches!(e, OnnxError::NotConstant { ref node, ref input, .. } if node == "cast" && input == "x"),
            "{e}"
        );
    }
}
