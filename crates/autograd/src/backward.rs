//! The backward walk: from a seed at one variable, in reverse recording order,
//! down to the variables whose gradients are wanted, and no further; several
//! passes (rule sets, seeds) can walk the tape together.

use crate::error::{AutogradError, Result};
use crate::rule::{RuleContext, RuleSet};
use crate::tape::{Node, Tape, VarId};
use sightline_tensor::elementwise::add_assign;
use sightline_tensor::{Element, Tensor};

/// One backward pass of a walk ([`Tape::backward_passes`]): its seed (shaped
/// like the walk's start variable), its rules and the variables whose
/// (pseudo-)gradients it wants.
#[derive(Clone, Copy, Debug)]
pub struct Pass<'a, T> {
    /// The gradient at the start variable.
    pub seed: &'a Tensor<T>,
    /// The rules of the pass.
    pub rules: &'a RuleSet<T>,
    /// The variables whose gradients are returned, in order.
    pub wrt: &'a [VarId],
}

/// A pass's state during a walk.
struct Walk<T> {
    /// First node (position on the tape) the pass visits.
    start: usize,
    /// Whether each variable leads to a wanted one.
    reaches: Vec<bool>,
    /// Gradients accumulated so far, per variable.
    grads: Vec<Option<Tensor<T>>>,
    /// Gradients of the wanted variables that are node outputs, as they
    /// were when their node was reached.
    found: Vec<Option<Tensor<T>>>,
}

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
        let mut out = self.backward_passes(from, &[Pass { seed, rules, wrt }])?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Several backward passes from `from` in one walk down the tape: the
    /// same results, bit for bit, as [`Tape::backward`] per pass, one list
    /// per pass.
    ///
    /// The passes visit each op together, so where several of them leave an
    /// op to the standard rule with the same inputs wanted, the op can run
    /// them as one batch ([`crate::op::Op::standard_backward_many`]): a
    /// linear layer then reads its weight once for all of them (the
    /// gradient, deconvnet and guided-backprop passes of VGG16 differ only
    /// at the ReLUs, and share each read of its 411 MB `fc6` weight). The
    /// price is memory: the passes' gradients are alive at the same time.
    pub fn backward_passes(
        &self,
        from: VarId,
        passes: &[Pass<'_, T>],
    ) -> Result<Vec<Vec<Tensor<T>>>> {
        if !self.is_recording() {
            return Err(AutogradError::NotRecording);
        }
        let from_shape = self.var_shape(from)?;
        for pass in passes {
            if pass.seed.shape() != from_shape {
                return Err(AutogradError::SeedShape {
                    expected: from_shape.to_vec(),
                    found: pass.seed.shape().to_vec(),
                });
            }
            for &w in pass.wrt {
                self.var_shape(w)?;
            }
        }
        let nodes = self.nodes();
        // Nodes are in recording order, so their output ids increase.
        let end = nodes.partition_point(|n| n.output <= from);
        let mut walks: Vec<Walk<T>> = passes
            .iter()
            .map(|pass| self.start_walk(from, pass, end))
            .collect();
        let first = walks.iter().map(|w| w.start).min().unwrap_or(end);
        for (at, node) in nodes.iter().enumerate().take(end).skip(first).rev() {
            // The passes with a gradient at this node's output.
            let mut active: Vec<(usize, Tensor<T>)> = Vec::new();
            for (p, walk) in walks.iter_mut().enumerate() {
                if at < walk.start || !walk.reaches[node.output] {
                    continue;
                }
                let Some(g) = walk.grads[node.output].take() else {
                    continue;
                };
                for (k, &w) in passes[p].wrt.iter().enumerate() {
                    if w == node.output {
                        walk.found[k] = Some(g.clone());
                    }
                }
                active.push((p, g));
            }
            // Passes left to the standard rule with the same inputs wanted
            // run together; the others one by one.
            let mut groups: Vec<(Vec<bool>, Vec<usize>)> = Vec::new();
            for (i, &(p, _)) in active.iter().enumerate() {
                let needs: Vec<bool> = node.inputs.iter().map(|&v| walks[p].reaches[v]).collect();
                let standard = passes[p].rules.is_standard_at(node);
                match groups.iter_mut().find(|(n, members)| {
                    standard
                        && *n == needs
                        && passes[active[members[0]].0].rules.is_standard_at(node)
                }) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((needs, vec![i])),
                }
            }
            for (needs, members) in &groups {
                let ctx = RuleContext { node, needs };
                let results = if members.len() > 1 {
                    let gs: Vec<&Tensor<T>> = members.iter().map(|&i| &active[i].1).collect();
                    node.op.standard_backward_many(&ctx, &gs)?
                } else {
                    let (p, g) = &active[members[0]];
                    let rule = passes[*p].rules.resolve(node);
                    vec![rule.backward(&ctx, g)?]
                };
                for (&i, gins) in members.iter().zip(results) {
                    let p = active[i].0;
                    let rule = passes[p].rules.resolve(node).name().to_string();
                    accumulate(&mut walks[p], node, needs, gins, &rule, &ctx)?;
                }
            }
        }
        passes
            .iter()
            .zip(walks)
            .map(|(pass, walk)| {
                let Walk { grads, found, .. } = walk;
                pass.wrt
                    .iter()
                    .zip(found)
                    .map(|(&w, f)| {
                        let shape = self.var_shape(w)?.to_vec();
                        Ok(f.or_else(|| grads[w].clone())
                            .unwrap_or_else(|| Tensor::zeros(shape)))
                    })
                    .collect()
            })
            .collect()
    }

    /// A pass's walk before its first node: its seed at `from`, the nodes it
    /// visits (from its lowest wanted variable up to `end`) and the
    /// variables that lead to a wanted one.
    fn start_walk(&self, from: VarId, pass: &Pass<'_, T>, end: usize) -> Walk<T> {
        let nodes = self.nodes();
        let mut reaches = vec![false; self.num_vars()];
        let mut grads: Vec<Option<Tensor<T>>> = (0..self.num_vars()).map(|_| None).collect();
        let found = pass.wrt.iter().map(|_| None).collect();
        let Some(&lowest) = pass.wrt.iter().min() else {
            // Nothing wanted: the pass visits no node.
            return Walk {
                start: end,
                reaches,
                grads,
                found,
            };
        };
        let start = nodes.partition_point(|n| n.output <= lowest);
        for &w in pass.wrt {
            reaches[w] = true;
        }
        for node in &nodes[start..end.max(start)] {
            if node.inputs.iter().any(|&i| reaches[i]) {
                reaches[node.output] = true;
            }
        }
        grads[from] = Some(pass.seed.clone());
        Walk {
            start,
            reaches,
            grads,
            found,
        }
    }
}

/// Adds a rule's input gradients `gins` for `node` to the pass's
/// accumulated gradients, after checking their number and shapes.
fn accumulate<T: Element>(
    walk: &mut Walk<T>,
    node: &Node<T>,
    needs: &[bool],
    gins: Vec<Option<Tensor<T>>>,
    rule: &str,
    ctx: &RuleContext<'_, T>,
) -> Result<()> {
    if gins.len() != node.inputs.len() {
        return Err(AutogradError::RuleOutput {
            rule: rule.to_string(),
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
                rule: rule.to_string(),
                op: node.op.name(),
                layer: node.layer.to_string(),
                expected: node.input_shapes[k].clone(),
                found: gin.shape().to_vec(),
            });
        }
        let slot = &mut walk.grads[node.inputs[k]];
        match slot {
            Some(acc) => add_assign(acc, &gin).map_err(|e| ctx.kernel(e))?,
            None => *slot = Some(gin),
        }
    }
    Ok(())
}
