//! The loaded graph: nodes parsed and checked (domain, op type,
//! attributes), every value produced once and before use, in topological
//! order (the file's order kept where it allows).

use crate::error::{OnnxError, Result};
use crate::proto::NodeProto;
use crate::read::ExternalData;
use crate::scope::{infer_missing, node_scope};
use crate::spec::{self, OpSpec};
use sightline_tensor::Element;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// A node of the loaded graph.
#[derive(Debug, Clone)]
pub struct GraphNode<T> {
    /// The ONNX name (may be empty).
    pub name: String,
    /// The name, or `#index` (its position in the file) when empty.
    pub label: String,
    /// The op type.
    pub op_type: String,
    /// The parsed op and attributes.
    pub spec: OpSpec<T>,
    /// Input value names (empty for a missing optional input).
    pub inputs: Vec<String>,
    /// Output value names (empty for an unused optional output).
    pub outputs: Vec<String>,
    /// PyTorch module paths, outermost first.
    pub scope: Vec<String>,
}

/// A node's label for messages: its name, or `#index` when it has none.
pub fn node_label(name: &str, index: usize) -> String {
    if name.is_empty() {
        format!("#{index}")
    } else {
        name.to_string()
    }
}

/// Parses and checks the nodes and returns them in topological order.
/// `known` are the values available before any node runs (the graph input
/// and the initializers).
pub fn build_graph<T: Element>(
    protos: &[NodeProto],
    known: &HashSet<&str>,
    opset: i64,
    external: &mut ExternalData,
) -> Result<Vec<GraphNode<T>>> {
    let mut nodes = Vec::with_capacity(protos.len());
    let mut scopes = Vec::with_capacity(protos.len());
    for (i, p) in protos.iter().enumerate() {
        let label = node_label(&p.name, i);
        if !(p.domain.is_empty() || p.domain == "ai.onnx") {
            return Err(OnnxError::Graph {
                node: label,
                message: format!(
                    "op {:?} of domain {:?} is not supported (only the default ONNX domain is)",
                    p.op_type, p.domain
                ),
            });
        }
        let spec = spec::parse::<T>(p, &label, opset, external)?;
        nodes.push(GraphNode {
            name: p.name.clone(),
            label,
            op_type: p.op_type.clone(),
            spec,
            inputs: p.input.clone(),
            outputs: p.output.clone(),
            scope: Vec::new(),
        });
        scopes.push(node_scope(p));
    }
    let order = topological_order(&nodes, known)?;
    let mut slots: Vec<Option<GraphNode<T>>> = nodes.into_iter().map(Some).collect();
    let mut sorted = Vec::with_capacity(order.len());
    let mut sorted_scopes = Vec::with_capacity(order.len());
    for i in order {
        if let Some(node) = slots.get_mut(i).and_then(Option::take) {
            sorted.push(node);
            sorted_scopes.push(scopes.get_mut(i).and_then(Option::take));
        }
    }
    let mut scopes = sorted_scopes;
    infer_missing(&mut scopes, &consumers_of(&sorted));
    for (node, scope) in sorted.iter_mut().zip(scopes) {
        node.scope = scope.unwrap_or_default();
    }
    Ok(sorted)
}

/// For each node, the nodes that read one of its outputs.
fn consumers_of<T>(nodes: &[GraphNode<T>]) -> Vec<Vec<usize>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for out in n.outputs.iter().filter(|o| !o.is_empty()) {
            producer.insert(out, i);
        }
    }
    let mut consumers = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        for input in &n.inputs {
            if let Some(&p) = producer.get(input.as_str()) {
                if !consumers[p].contains(&i) {
                    consumers[p].push(i);
                }
            }
        }
    }
    consumers
}

/// Kahn's algorithm, taking the ready node that comes first in the file:
/// a file already in order keeps its order. Checks that each value is
/// produced once, that every input is produced, and that there is no cycle.
fn topological_order<T>(nodes: &[GraphNode<T>], known: &HashSet<&str>) -> Result<Vec<usize>> {
    let err = |i: usize, message: String| OnnxError::Graph {
        node: nodes[i].label.clone(),
        message,
    };
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for out in n.outputs.iter().filter(|o| !o.is_empty()) {
            if known.contains(out.as_str()) {
                return Err(err(
                    i,
                    format!("output {out:?} is already the graph input or an initializer"),
                ));
            }
            if let Some(&j) = producer.get(out.as_str()) {
                return Err(err(
                    i,
                    format!(
                        "output {out:?} is already produced by node {:?}",
                        nodes[j].label
                    ),
                ));
            }
            producer.insert(out, i);
        }
    }
    // Producers each node waits for (distinct), and its consumers.
    let mut waits: Vec<usize> = vec![0; nodes.len()];
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        let mut seen = HashSet::new();
        for input in n.inputs.iter().filter(|s| !s.is_empty()) {
            match producer.get(input.as_str()) {
                Some(&j) => {
                    if seen.insert(j) {
                        waits[i] += 1;
                        consumers[j].push(i);
                    }
                }
                None if known.contains(input.as_str()) => {}
                None => {
                    return Err(err(
                        i,
                        format!(
                        "input {input:?} is never produced (no node, initializer or graph input)"
                    ),
                    ))
                }
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..nodes.len())
        .filter(|&i| waits[i] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &c in &consumers[i] {
            waits[c] -= 1;
            if waits[c] == 0 {
                ready.push(Reverse(c));
            }
        }
    }
    if order.len() < nodes.len() {
        // Walk back through unfinished producers until a node repeats: that
        // node is on a cycle.
        let mut at = (0..nodes.len()).find(|&i| waits[i] > 0).unwrap_or(0);
        let mut visited = HashSet::new();
        while visited.insert(at) {
            let next = nodes[at]
                .inputs
                .iter()
                .filter_map(|s| producer.get(s.as_str()).copied())
                .find(|&j| waits[j] > 0);
            match next {
                Some(j) => at = j,
                None => break,
            }
        }
        return Err(err(at, "is part of a cycle".into()));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relu(name: &str, input: &str, output: &str) -> NodeProto {
        NodeProto {
            name: name.into(),
            op_type: "Relu".into(),
            input: vec![input.into()],
            output: vec![output.into()],
            ..Default::default()
        }
    }

    fn build(nodes: &[NodeProto]) -> Result<Vec<GraphNode<f32>>> {
        let known: HashSet<&str> = ["x"].into_iter().collect();
        build_graph::<f32>(nodes, &known, 17, &mut ExternalData::new(None))
    }

    #[test]
    fn out_of_order_files_are_sorted_stably() {
        let nodes = [
            relu("b", "a_out", "b_out"),
            relu("a", "x", "a_out"),
            relu("c", "x", "c_out"),
        ];
        let g = build(&nodes).unwrap();
        let names: Vec<&str> = g.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, vec!["a", "b", "c"]);
    }

    #[test]
    fn cycles_name_a_node_on_the_cycle() {
        let nodes = [
            relu("entry", "x", "e"),
            relu("after", "p", "q"),
            relu("p_node", "r", "p"),
            relu("r_node", "p", "r"),
        ];
        match build(&nodes) {
            Err(OnnxError::Graph { node, message }) => {
                assert!(node == "p_node" || node == "r_node", "{node}");
                assert!(message.contains("cycle"));
            }
            other => panic!("{other:?}"),
        }
        let selfloop = [relu("s", "s_out", "s_out")];
        assert!(matches!(build(&selfloop), Err(OnnxError::Graph { node, .. }) if node == "s"));
    }

    #[test]
    fn values_must_be_produced_once() {
        let missing = [relu("m", "nowhere", "y")];
        let e = build(&missing).unwrap_err().to_string();
        assert!(e.contains("\"nowhere\" is never produced"), "{e}");
        let twice = [relu("a", "x", "y"), relu("b", "x", "y")];
        assert!(build(&twice).is_err());
        let over_input = [relu("a", "x", "x")];
        assert!(build(&over_input).is_err());
    }

    #[test]
    fn foreign_domains_and_unknown_ops() {
        let mut n = relu("d", "x", "y");
        n.domain = "com.microsoft".into();
        let e = build(&[n]).unwrap_err();
        assert!(
            matches!(e, OnnxError::Graph { ref node, .. } if node == "d"),
            "{e}"
        );
        let mut n = relu("", "x", "y");
        n.op_type = "Upsample".into();
        assert!(matches!(
            build(&[n]),
            Err(OnnxError::UnsupportedOp { node, .. }) if node == "#0"
        ));
    }
}
