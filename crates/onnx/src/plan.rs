//! [`Plan`]: the compute graph of a model for one input shape, and its
//! queries by PyTorch module path.

use crate::node_op::NodeOp;
use sightline_tensor::Tensor;
use std::collections::HashMap;
use std::sync::Arc;

/// Index of a value in [`Plan::values`].
pub type ValueId = usize;

/// A runtime value of the plan: its ONNX name and static shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueInfo {
    /// The ONNX value name (for the graph input, the input's name).
    pub name: String,
    /// The static shape for the planned input shape.
    pub shape: Vec<usize>,
}

/// An operand of a compute node.
#[derive(Debug)]
pub enum Operand<T> {
    /// A runtime value (computed from the graph input).
    Value(ValueId),
    /// A float constant (a weight, a bias, a folded constant); shared
    /// between the plans of one model, so `Arc::ptr_eq` tells shared
    /// weights apart.
    Const(Arc<Tensor<T>>),
}

impl<T> Clone for Operand<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Value(id) => Self::Value(*id),
            Self::Const(t) => Self::Const(Arc::clone(t)),
        }
    }
}

/// One compute node of a plan.
#[derive(Debug, Clone)]
pub struct PlanNode<T> {
    /// The ONNX node name (may be empty).
    pub name: String,
    /// The ONNX op type (`Flatten` for a Flatten lowered to
    /// [`NodeOp::Reshape`]), for messages.
    pub op_type: String,
    /// The op, with attributes and index-like inputs resolved.
    pub op: NodeOp,
    /// The data operands, in ONNX input order.
    pub inputs: Vec<Operand<T>>,
    /// The output values.
    pub outputs: Vec<ValueId>,
    /// PyTorch module paths enclosing the node, outermost first
    /// (`["features", "features.18"]`); empty at top level.
    pub scope: Vec<String>,
}

/// The compute graph of a model for one input shape: shapes inferred,
/// constants folded, only nodes that depend on the input and lead to the
/// output, in topological order.
#[derive(Debug, Clone)]
pub struct Plan<T> {
    /// The graph input's value.
    pub input: ValueId,
    /// The graph output's value (the logits).
    pub output: ValueId,
    /// Every runtime value, indexed by [`ValueId`].
    pub values: Vec<ValueInfo>,
    /// The compute nodes, in topological order.
    pub nodes: Vec<PlanNode<T>>,
}

impl<T> Plan<T> {
    /// The shape of a value.
    pub fn shape(&self, id: ValueId) -> Option<&[usize]> {
        self.values.get(id).map(|v| v.shape.as_slice())
    }

    /// For every module path in any node's scope, the output value of the
    /// last node (in topological order) inside that scope, in the order the
    /// modules first appear. A node with several outputs (Split) stands for
    /// its first.
    pub fn layer_outputs(&self) -> Vec<(String, ValueId)> {
        let mut order: Vec<&str> = Vec::new();
        let mut last: HashMap<&str, ValueId> = HashMap::new();
        for node in &self.nodes {
            let Some(&out) = node.outputs.first() else {
                continue;
            };
            for path in &node.scope {
                if last.insert(path.as_str(), out).is_none() {
                    order.push(path.as_str());
                }
            }
        }
        order
            .into_iter()
            .filter_map(|p| last.get(p).map(|&v| (p.to_string(), v)))
            .collect()
    }

    /// The output value of module `name` (a PyTorch module path such as
    /// `"features.18"`): that of the last node inside its scope.
    pub fn layer_output(&self, name: &str) -> Option<ValueId> {
        self.nodes
            .iter()
            .rev()
            .find(|n| n.scope.iter().any(|s| s == name))
            .and_then(|n| n.outputs.first().copied())
    }

    /// The shape of module `name`'s output.
    pub fn layer_shape(&self, name: &str) -> Option<&[usize]> {
        self.layer_output(name).and_then(|id| self.shape(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(outputs: Vec<ValueId>, scope: &[&str]) -> PlanNode<f32> {
        PlanNode {
            name: String::new(),
            op_type: "Relu".into(),
            op: NodeOp::Relu,
            inputs: vec![Operand::Value(0)],
            outputs,
            scope: scope.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn layers_end_at_their_last_node() {
        let plan = Plan {
            input: 0,
            output: 4,
            values: (0..5)
                .map(|i| ValueInfo {
                    name: format!("v{i}"),
                    shape: vec![1, i + 1],
                })
                .collect(),
            nodes: vec![
                node(vec![1], &["features", "features.0"]),
                node(vec![2], &["features", "features.1"]),
                node(vec![3], &["features", "features.1"]),
                node(vec![4], &["classifier"]),
            ],
        };
        assert_eq!(
            plan.layer_outputs(),
            vec![
                ("features".to_string(), 3),
                ("features.0".to_string(), 1),
                ("features.1".to_string(), 3),
                ("classifier".to_string(), 4),
            ]
        );
        assert_eq!(plan.layer_output("features.1"), Some(3));
        assert_eq!(plan.layer_shape("features.0"), Some(&[1usize, 2][..]));
        assert_eq!(plan.layer_output("missing"), None);
        assert_eq!(plan.shape(9), None);
    }
}
