//! The layers probed by default in a graph read from ONNX.
//!
//! | method | layer |
//! |---|---|
//! | Grad-CAM | the last 4-d module output before the last global pooling (a `GlobalAveragePool`, or a `ReduceMean` over height and width: the classifier's, not a squeeze-and-excitation gate's) |
//! | excitation backprop | among the 4-d module outputs at a larger resolution than Grad-CAM's (one stride earlier), the last of the shallowest modules (`features.13` rather than `features.14.conv.0`) |
//! | contrastive: classifier | the innermost module of the last linear layer (`Gemm`, or `MatMul` by a constant) |
//! | contrastive: contrast | the last module output before that layer |
//!
//! Several module paths can name one value (a container and its last
//! child): the shallowest is taken (`layer4` rather than `layer4.2.relu`).

use crate::default_layers::DefaultLayers;
use sightline_onnx::{NodeOp, Operand, Plan, ValueId};

/// The default layers of a plan.
pub(super) fn default_layers<T>(plan: &Plan<T>) -> DefaultLayers {
    let outputs = plan.layer_outputs();
    // Where each value is produced (node position).
    let mut produced_at = vec![usize::MAX; plan.values.len()];
    for (i, node) in plan.nodes.iter().enumerate() {
        for &o in &node.outputs {
            if let Some(p) = produced_at.get_mut(o) {
                *p = i;
            }
        }
    }
    let at = |v: ValueId| produced_at.get(v).copied().unwrap_or(usize::MAX);
    let shape = |v: ValueId| plan.values.get(v).map_or(&[][..], |i| i.shape.as_slice());
    // The module paths naming each value, shallowest first.
    let name_of = |v: ValueId| -> Option<String> {
        outputs
            .iter()
            .filter(|(_, o)| *o == v)
            .min_by_key(|(p, _)| p.matches('.').count())
            .map(|(p, _)| p.clone())
    };
    let pool_at = plan
        .nodes
        .iter()
        .rposition(|n| match &n.op {
            NodeOp::GlobalAveragePool => true,
            NodeOp::ReduceMean { axes, .. } => axes.as_slice() == [2, 3],
            _ => false,
        })
        .unwrap_or(plan.nodes.len());
    let spatial: Vec<ValueId> = outputs
        .iter()
        .map(|&(_, v)| v)
        .filter(|&v| shape(v).len() == 4 && at(v) < pool_at)
        .collect();
    let grad_cam = spatial.iter().copied().max_by_key(|&v| at(v));
    let depth = |v: ValueId| name_of(v).map_or(usize::MAX, |p| p.matches('.').count());
    let excitation = grad_cam.and_then(|g| {
        let side = shape(g).get(2).copied().unwrap_or(0);
        let larger: Vec<ValueId> = spatial
            .iter()
            .copied()
            .filter(|&v| shape(v).get(2).copied().unwrap_or(0) > side)
            .collect();
        let shallowest = larger.iter().map(|&v| depth(v)).min()?;
        larger
            .into_iter()
            .filter(|&v| depth(v) == shallowest)
            .max_by_key(|&v| at(v))
    });
    let linear_at = plan.nodes.iter().rposition(|n| {
        matches!(n.op, NodeOp::Gemm { .. })
            || (matches!(n.op, NodeOp::MatMul)
                && matches!(n.inputs.get(1), Some(Operand::Const(_))))
    });
    // The innermost module of the linear node: the path its node records under.
    let classifier = linear_at
        .and_then(|i| plan.nodes[i].scope.last().cloned())
        .unwrap_or_default();
    let contrast = linear_at.and_then(|i| {
        outputs
            .iter()
            .map(|&(_, v)| v)
            .filter(|&v| at(v) < i)
            .max_by_key(|&v| at(v))
    });
    let name = |v: Option<ValueId>| v.and_then(name_of).unwrap_or_default();
    DefaultLayers {
        grad_cam: name(grad_cam),
        excitation: name(excitation.or(grad_cam)),
        contrast: name(contrast),
        classifier,
    }
}
