//! The backward walk: from a seed at one variable, in reverse recording order,
//! down to the variables whose gradients are wanted, and no further.

use crate::error::{AutogradError, Result};
use crate::rule::{RuleContext, RuleSet};
use crate::tape::{Tape, VarId};
use sightline_tensor::elementwise::add_assign;
use sightline_tensor::{Element, Tensor};

impl<T: Element> Tape<T> {
    /// Propagates `seed` (shaped like variable `from`) backward with `rules`
    /// and returns the (pseudo-)gradient of each variable in `wrt`, in order.
    ///
    /// Only ops on a path between `from` and a wanted variable run; nothing
    /// below the lowest wanted variable is visited. The tape is not consumed:
    /// it can be walked again with other seeds and rule sets.
    pub fn backward(
        &self,
        from: VarId,
        seed: &Tensor<T>,
        rules: &RuleSet<T>,
        wrt: &[VarId],
    ) -> Result<Vec<Tensor<T>>> {
        if !self.is_recording() {
            return Err(AutogradError::NotRecording);
        }
        let from_shape = self.var_shape(from)?;
        if seed.shape() != from_shape {
            return Err(AutogradError::SeedShape {
                expected: from_shape.to_vec(),
                found: seed.shape().to_vec(),
            });
        }
        for &w in wrt {
            self.var_shape(w)?;
        }
        let Some(&lowest) = wrt.iter().min() else {
            return Ok(Vec::new());
        };
        let nodes = self.nodes();
        // Nodes are in recording order, so their output ids increase.
        let start = nodes.partition_point(|n| n.output <= lowest);
        let end = nodes.partition_point(|n| n.output <= from);

        let mut reaches = vec![false; self.num_vars()];
        for &w in wrt {
            reaches[w] = true;
        }
        for node in &nodes[start..end] {
            if node.inputs.iter().any(|&i| reaches[i]) {
                reaches[node.output] = true;
            }
        }

        let mut grads: Vec<Option<Tensor<T>>> = (0..self.num_vars()).map(|_| None).collect();
        let mut found: Vec<Option<Tensor<T>>> = wrt.iter().map(|_| None).collect();
        grads[from] = Some(seed.clone());
        for node in nodes[start..end].iter().rev() {
            if !reaches[node.output] {
                continue;
            }
            let Some(g) = grads[node.output].take() else {
                continue;
            };
            for (k, &w) in wrt.iter().enumerate() {
                if w == node.output {
                    found[k] = Some(g.clone());
                }
            }
            let needs: Vec<bool> = node.inputs.iter().map(|&i| reaches[i]).collect();
            let ctx = RuleContext {
                node,
                needs: &needs,
            };
            let rule = rules.resolve(node);
            let gins = rule.backward(&ctx, &g)?;
            if gins.len() != node.inputs.len() {
                return Err(AutogradError::RuleOutput {
                    rule: rule.name().to_string(),
                    op: node.op.name(),
                    layer: node.layer.to_string(),
                    expected: vec![node.inputs.len()],
                    found: vec![gins.len()],
                });
            }
            for (k, gin) in gins.into_iter().enumerate() {
                let (Some(gin), true) = (gin, needs[k]) else {
                    continue;
                };
                if gin.shape() != node.input_shapes[k] {
                    return Err(AutogradError::RuleOutput {
                        rule: rule.name().to_string(),
                        op: node.op.name(),
                        layer: node.layer.to_string(),
                        expected: node.input_shapes[k].clone(),
                        found: gin.shape().to_vec(),
                    });
                }
                let slot = &mut grads[node.inputs[k]];
                match slot {
                    Some(acc) => add_assign(acc, &gin).map_err(|e| ctx.kernel(e))?,
                    None => *slot = Some(gin),
                }
            }
        }
        wrt.iter()
            .zip(found)
            .map(|(&w, f)| {
                let shape = self.var_shape(w)?.to_vec();
                Ok(f.or_else(|| grads[w].clone())
                    .unwrap_or_else(|| Tensor::zeros(shape)))
            })
            .collect()
    }
}
