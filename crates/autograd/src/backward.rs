//! The backward walk: from a seed at one variable, in reverse recording order,
//! down to the variables whose gradients are wanted, and no further; several
//! passes (rule sets, seeds) can walk the tape together.

use crate::error::{AutogradError, Result};
use crate::rule::{Elementwise, RuleContext, RuleSet};
use crate::tape::{Node, Tape, VarId};
use sightline_tensor::elementwise::{add_assign, sub};
use sightline_tensor::{Element, Tensor};

/// One backward pass of a walk ([`Tape::backward_passes`]): its seed, its
/// rules and the variables whose (pseudo-)gradients it wants.
#[derive(Clone, Copy, Debug)]
pub struct Pass<'a, T> {
    /// The gradient at the walk's start variable; for a pass that
    /// branches, what is subtracted where it starts (see [`Branch`]).
    pub seed: &'a Tensor<T>,
    /// The rules of the pass.
    pub rules: &'a RuleSet<T>,
    /// The variables whose gradients are returned, in order.
    pub wrt: &'a [VarId],
    /// `None` for a pass from the walk's start variable.
    pub branch: Option<Branch>,
}

/// Where a pass branches off another one: it starts at variable `at`, when
/// the walk has computed pass `from`'s whole gradient there, with that
/// gradient minus the pass's `seed` (shaped like `at`), and goes on from
/// there. Contrastive excitation backprop is such a pass: the excitation
/// pass's gradient at the contrast layer, minus the contrast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Branch {
    /// The pass it branches off (one that starts at the walk's variable).
    pub from: usize,
    /// The variable where it starts.
    pub at: VarId,
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
    /// Variables whose gradient already went through their op's rule,
    /// inside the kernel of the op above (see [`Tape::fusable_below`]).
    fused: Vec<bool>,
}

/// What the walk knows of the tape to fuse an elementwise rule into the
/// kernel of the op above it.
struct Fusion {
    /// How many times each variable is an input of a node.
    uses: Vec<u32>,
    /// The variables where a pass branches off.
    branch_points: Vec<VarId>,
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
        let pass = Pass {
            seed,
            rules,
            wrt,
            branch: None,
        };
        let mut out = self.backward_passes(from, &[pass])?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Several backward passes from `from` in one walk down the tape: the
    /// same results, bit for bit, as [`Tape::backward`] per pass, one list
    /// per pass.
    ///
    /// The passes visit each op together, so where several of them run the
    /// same rule object with the same inputs wanted, the rule runs them as
    /// one batch ([`crate::Rule::backward_many`]): the standard rule of a
    /// linear layer, and its excitation rule, then read the weight once for
    /// all of them (the gradient, deconvnet and guided-backprop passes of
    /// VGG16 differ only at the ReLUs, and share each read of its 411 MB
    /// `fc6` weight). A pass can also branch off another one mid-way
    /// ([`Branch`]). The price is memory: the passes' gradients are alive
    /// at the same time.
    pub fn backward_passes(
        &self,
        from: VarId,
        passes: &[Pass<'_, T>],
    ) -> Result<Vec<Vec<Tensor<T>>>> {
        if !self.is_recording() {
            return Err(AutogradError::NotRecording);
        }
        for (p, pass) in passes.iter().enumerate() {
            let start = match pass.branch {
                None => from,
                Some(b) => {
                    let source = passes
                        .get(b.from)
                        .filter(|q| b.from != p && q.branch.is_none());
                    if source.is_none() || b.at > from {
                        return Err(AutogradError::InvalidBranch {
                            pass: p,
                            from: b.from,
                        });
                    }
                    b.at
                }
            };
            let shape = self.var_shape(start)?;
            if pass.seed.shape() != shape {
                return Err(AutogradError::SeedShape {
                    expected: shape.to_vec(),
                    found: pass.seed.shape().to_vec(),
                });
            }
            for &w in pass.wrt {
                self.var_shape(w)?;
            }
            pass.rules.check_layers(self.nodes())?;
        }
        let nodes = self.nodes();
        // Nodes are in recording order, so their output ids increase.
        let end = nodes.partition_point(|n| n.output <= from);
        let mut walks: Vec<Walk<T>> = passes
            .iter()
            .map(|pass| {
                let start = pass.branch.map_or(from, |b| b.at);
                let end = nodes.partition_point(|n| n.output <= start);
                self.start_walk(start, pass, end)
            })
            .collect();
        // Branching passes wait for their variable.
        let mut waiting: Vec<usize> = (0..passes.len())
            .filter(|&p| passes[p].branch.is_some())
            .collect();
        let mut uses = vec![0u32; self.num_vars()];
        for node in nodes {
            for &v in &node.inputs {
                uses[v] += 1;
            }
        }
        let fusion = Fusion {
            uses,
            branch_points: passes
                .iter()
                .filter_map(|p| p.branch.map(|b| b.at))
                .collect(),
        };
        let first = walks.iter().map(|w| w.start).min().unwrap_or(end);
        for (at, node) in nodes.iter().enumerate().take(end).skip(first).rev() {
            // A branch starts once every node above its variable has run.
            self.start_branches(&mut waiting, &mut walks, passes, node.output)?;
            // The passes with a gradient at this node's output.
            let mut active: Vec<(usize, Option<Tensor<T>>)> = Vec::new();
            for (p, walk) in walks.iter_mut().enumerate() {
                if at < walk.start || !walk.reaches[node.output] {
                    continue;
                }
                let Some(g) = walk.grads[node.output].take() else {
                    continue;
                };
                if walk.fused[node.output] {
                    // The op's rule already ran inside the kernel above:
                    // the gradient passes on as it is.
                    let ctx = RuleContext {
                        node,
                        needs: &[true],
                    };
                    accumulate(walk, node, &[true], vec![Some(g)], "fused", &ctx)?;
                    continue;
                }
                for (k, &w) in passes[p].wrt.iter().enumerate() {
                    if w == node.output {
                        walk.found[k] = Some(g.clone());
                    }
                }
                active.push((p, Some(g)));
            }
            // Passes that run the same rule object with the same inputs
            // wanted run together.
            let mut groups: Vec<(Option<*const ()>, Vec<bool>, Vec<usize>)> = Vec::new();
            for (i, &(p, _)) in active.iter().enumerate() {
                let needs: Vec<bool> = node.inputs.iter().map(|&v| walks[p].reaches[v]).collect();
                let rule = passes[p].rules.rule_identity(node);
                match groups
                    .iter_mut()
                    .find(|(r, n, _)| *r == rule && *n == needs)
                {
                    Some((_, _, members)) => members.push(i),
                    None => groups.push((rule, needs, vec![i])),
                }
            }
            for (_, needs, members) in &groups {
                let ctx = RuleContext { node, needs };
                let rule = passes[active[members[0]].0].rules.resolve(node);
                if rule.fuses_then(&ctx) {
                    // One member at a time, each with the elementwise rule
                    // below this op in its kernel where there is one.
                    for &i in members {
                        let p = active[i].0;
                        let Some(g) = active[i].1.take() else {
                            continue;
                        };
                        let below = self.fusable_below(node, &walks[p], &passes[p], &fusion, needs);
                        let gins = match below {
                            Some((below, f)) => {
                                let gins = rule.backward_owned_then(&ctx, g, &*f)?;
                                walks[p].fused[below] = true;
                                gins
                            }
                            None => rule.backward_owned(&ctx, g)?,
                        };
                        accumulate(&mut walks[p], node, needs, gins, rule.name(), &ctx)?;
                    }
                    continue;
                }
                let results = if members.len() > 1 {
                    let gs: Vec<&Tensor<T>> = members
                        .iter()
                        .filter_map(|&i| active[i].1.as_ref())
                        .collect();
                    rule.backward_many(&ctx, &gs)?
                } else {
                    // The walk drops the gradient after this: the rule may
                    // reuse its buffer.
                    match active[members[0]].1.take() {
                        Some(g) => vec![rule.backward_owned(&ctx, g)?],
                        None => Vec::new(),
                    }
                };
                if results.len() != members.len() {
                    return Err(AutogradError::RuleOutput {
                        rule: rule.name().to_string(),
                        op: node.op.name(),
                        layer: node.layer.to_string(),
                        expected: vec![members.len()],
                        found: vec![results.len()],
                    });
                }
                for (&i, gins) in members.iter().zip(results) {
                    accumulate(
                        &mut walks[active[i].0],
                        node,
                        needs,
                        gins,
                        rule.name(),
                        &ctx,
                    )?;
                }
            }
        }
        // Branches whose variable lies below every node walked.
        self.start_branches(&mut waiting, &mut walks, passes, 0)?;
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

    /// Starts the waiting branches whose variable is at or above `output`
    /// (every node above it has run, so the pass they branch off has its
    /// whole gradient there): seed = that gradient (zeros if it has none)
    /// minus the branch's own seed.
    fn start_branches(
        &self,
        waiting: &mut Vec<usize>,
        walks: &mut [Walk<T>],
        passes: &[Pass<'_, T>],
        output: VarId,
    ) -> Result<()> {
        let (ready, still): (Vec<usize>, Vec<usize>) = waiting
            .iter()
            .partition(|&&p| passes[p].branch.is_some_and(|b| b.at >= output));
        *waiting = still;
        for p in ready {
            let Some(b) = passes[p].branch else { continue };
            let seed = match &walks[b.from].grads[b.at] {
                Some(g) => sub(g, passes[p].seed),
                None => sub(
                    &Tensor::zeros(self.var_shape(b.at)?.to_vec()),
                    passes[p].seed,
                ),
            }
            .map_err(|source| AutogradError::Kernel {
                op: "branch",
                layer: String::new(),
                source,
            })?;
            walks[p].grads[b.at] = Some(seed);
        }
        Ok(())
    }

    /// A pass's walk before its first node: its seed at `from` (for a
    /// branch, set when it starts), the nodes it visits (from its lowest
    /// wanted variable up to `end`) and the variables that lead to a wanted
    /// one.
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
                fused: Vec::new(),
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
        if pass.branch.is_none() {
            grads[from] = Some(pass.seed.clone());
        }
        Walk {
            start,
            reaches,
            grads,
            found,
            fused: vec![false; self.num_vars()],
        }
    }

    /// Where the rule of the op that produced `node`'s first input can run
    /// inside `node`'s kernel for this pass: that variable and the rule's
    /// elementwise form. Only where nothing else needs the gradient there
    /// before that rule: the variable feeds `node` alone, once; it is not
    /// wanted (its gradient would be returned), nor where a pass branches;
    /// its op, on one input, is on the pass's way and has an elementwise
    /// rule in the pass's set (the ReLU rules).
    fn fusable_below<'a>(
        &'a self,
        node: &Node<T>,
        walk: &Walk<T>,
        pass: &Pass<'a, T>,
        fusion: &Fusion,
        needs: &[bool],
    ) -> Option<(VarId, Elementwise<'a, T>)> {
        let x = *node.inputs.first()?;
        if !needs.first().copied().unwrap_or(false)
            || fusion.uses[x] != 1
            || pass.wrt.contains(&x)
            || fusion.branch_points.contains(&x)
        {
            return None;
        }
        let nodes = self.nodes();
        let at = nodes.binary_search_by_key(&x, |n| n.output).ok()?;
        let below = &nodes[at];
        if at < walk.start || below.inputs.len() != 1 || !walk.reaches[below.inputs[0]] {
            return None;
        }
        let ctx = RuleContext {
            node: below,
            needs: &[true],
        };
        let f = pass.rules.resolve(below).elementwise(&ctx)?;
        Some((x, f))
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
