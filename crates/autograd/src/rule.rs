//! Backward rules and the rule sets that choose them at backward time.

use crate::error::{AutogradError, Result};
use crate::op::OpKind;
use crate::ops;
use crate::tape::Node;
use sightline_tensor::epilogue::apply_all;
use sightline_tensor::{Element, Epilogue, Tensor, TensorError};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

/// What a rule sees of the op it runs on.
#[derive(Debug)]
pub struct RuleContext<'a, T> {
    /// The recorded node: its op (with saved values), inputs and layer.
    pub node: &'a Node<T>,
    /// For each input, whether its gradient is wanted; a rule may skip the others (`None`).
    pub needs: &'a [bool],
}

impl<'a, T: Element> RuleContext<'a, T> {
    /// The node's op as its concrete type `O`, or the error for `rule` run
    /// on an op of another type: how a rule reaches what the op saved.
    pub fn op<O: crate::Op<T>>(&self, rule: &str) -> Result<&'a O> {
        self.node
            .op
            .downcast_ref::<O>()
            .ok_or_else(|| self.mismatch(rule))
    }

    /// Whether input `i`'s gradient is wanted.
    pub fn needs(&self, i: usize) -> bool {
        self.needs.get(i).copied().unwrap_or(false)
    }

    /// The error for a rule run on an op it does not handle.
    pub fn mismatch(&self, rule: &str) -> AutogradError {
        AutogradError::RuleMismatch {
            rule: rule.to_string(),
            op: self.node.op.name(),
            layer: self.node.layer.to_string(),
        }
    }

    /// The error for a value the tape did not retain.
    pub fn not_retained(&self, rule: &str, what: &'static str) -> AutogradError {
        AutogradError::NotRetained {
            rule: rule.to_string(),
            op: self.node.op.name(),
            layer: self.node.layer.to_string(),
            what,
        }
    }

    /// Wraps a kernel error with this node's op and layer.
    pub fn kernel(&self, source: TensorError) -> AutogradError {
        AutogradError::Kernel {
            op: self.node.op.name(),
            layer: self.node.layer.to_string(),
            source,
        }
    }
}

/// A rule in elementwise form ([`Rule::elementwise`]): called as
/// `f(values, offset)` on elements `offset .. offset + values.len()` of the
/// gradient at the op's output, it overwrites them with the gradient at the
/// op's input. It has the contract of an [`Epilogue`], so a kernel can run
/// it on each block of the gradient it computes.
pub type Elementwise<'a, T> =
    Box<dyn Fn(&mut [T], usize) -> sightline_tensor::Result<()> + Sync + 'a>;

/// A backward rule: maps the gradient at an op's output to (pseudo-)gradients at its inputs.
///
/// Return one entry per input of the node, `None` where `ctx.needs(i)` is false
/// (or where the input has no gradient). Each returned tensor must have the
/// input's shape.
pub trait Rule<T: Element>: Send + Sync + Debug {
    /// The rule's name, for messages.
    fn name(&self) -> &str;

    /// Computes the input gradients from the output gradient `grad`.
    fn backward(
        &self,
        ctx: &RuleContext<'_, T>,
        grad: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>>;

    /// [`Rule::backward`] for the output gradients of several passes that
    /// walk the tape together ([`crate::Tape::backward_passes`]) with this
    /// same rule: one result per gradient, each what `backward` returns for
    /// it. The default runs `backward` per gradient; a rule can override it
    /// to share work between the passes (read a weight once for all), as
    /// long as every result stays what `backward` would give.
    fn backward_many(
        &self,
        ctx: &RuleContext<'_, T>,
        grads: &[&Tensor<T>],
    ) -> Result<Vec<Vec<Option<Tensor<T>>>>> {
        grads.iter().map(|g| self.backward(ctx, g)).collect()
    }

    /// [`Rule::backward`] given the output gradient by value, by a walk
    /// that owns it and would drop it afterwards: a rule may reuse its
    /// buffer (an elementwise rule writes its result in place, the sum's
    /// standard rule hands it to one term) as long as the result is what
    /// `backward` would give. The default calls `backward`.
    fn backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        grad: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        self.backward(ctx, &grad)
    }

    /// This rule as an elementwise map ([`Elementwise`]), if it is one for
    /// this node: an op with one input, of its output's shape, where the
    /// gradient at each input element depends only on the output gradient
    /// at that element and what the op saved (the ReLU rules). The walk can
    /// then run it inside the kernel of the op above
    /// ([`Rule::backward_owned_then`]) instead of as its own sweep; the
    /// results must be what [`Rule::backward`] gives. `None` (the default):
    /// the rule always runs on its own.
    fn elementwise<'a>(&'a self, ctx: &RuleContext<'a, T>) -> Option<Elementwise<'a, T>> {
        let _ = ctx;
        None
    }

    /// Whether [`Rule::backward_owned_then`] applies its epilogue inside its
    /// kernel for this node (then the walk hands it the elementwise rule of
    /// the op below, see [`Rule::elementwise`]). A rule that says so must
    /// give, one gradient at a time, what [`Rule::backward_many`] gives for
    /// several. The default: `false`.
    fn fuses_then(&self, ctx: &RuleContext<'_, T>) -> bool {
        let _ = ctx;
        false
    }

    /// [`Rule::backward_owned`], with `then` applied to the gradient of
    /// input 0 (the values it would have, then `then` on each element).
    /// The default applies it after the fact; a rule for which
    /// [`Rule::fuses_then`] is true passes it to its kernel.
    fn backward_owned_then(
        &self,
        ctx: &RuleContext<'_, T>,
        grad: Tensor<T>,
        then: Epilogue<'_, T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        then_after(ctx, self.backward_owned(ctx, grad)?, then)
    }
}

/// `then` applied to the gradient of input 0 among a rule's results `out`,
/// after the rule's kernel: for a rule or op that does not fuse it.
pub fn then_after<T: Element>(
    ctx: &RuleContext<'_, T>,
    mut out: Vec<Option<Tensor<T>>>,
    then: Epilogue<'_, T>,
) -> Result<Vec<Option<Tensor<T>>>> {
    if let Some(Some(g)) = out.first_mut() {
        apply_all(g.data_mut(), then).map_err(|e| ctx.kernel(e))?;
    }
    Ok(out)
}

/// The exact gradient of every op.
#[derive(Clone, Copy, Debug, Default)]
pub struct Standard;

impl<T: Element> Rule<T> for Standard {
    fn name(&self) -> &str {
        "standard"
    }

    fn backward(
        &self,
        ctx: &RuleContext<'_, T>,
        grad: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        ctx.node.op.backward(ctx, grad)
    }

    fn backward_many(
        &self,
        ctx: &RuleContext<'_, T>,
        grads: &[&Tensor<T>],
    ) -> Result<Vec<Vec<Option<Tensor<T>>>>> {
        ctx.node.op.backward_many(ctx, grads)
    }

    fn backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        grad: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        ctx.node.op.backward_owned(ctx, grad)
    }

    fn elementwise<'a>(&'a self, ctx: &RuleContext<'a, T>) -> Option<Elementwise<'a, T>> {
        ctx.node.op.backward_elementwise(ctx)
    }

    fn fuses_then(&self, ctx: &RuleContext<'_, T>) -> bool {
        ctx.node.op.fuses_then(ctx)
    }

    fn backward_owned_then(
        &self,
        ctx: &RuleContext<'_, T>,
        grad: Tensor<T>,
        then: Epilogue<'_, T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        ctx.node.op.backward_owned_then(ctx, grad, then)
    }
}

/// Rule sets are equal when they run the same rules on the same ops
/// ([`RuleSet::description`]); their names do not count.
impl<T: Element> PartialEq for RuleSet<T> {
    fn eq(&self, other: &Self) -> bool {
        self.description() == other.description()
    }
}

#[derive(Clone, Debug)]
struct LayerRule<T> {
    layer: String,
    kind: Option<OpKind>,
    rule: Arc<dyn Rule<T>>,
}

/// Which rule runs for each op: by op kind, overridden for named layers.
///
/// Chosen at backward time, so one recorded forward pass serves every method.
#[derive(Clone, Debug)]
pub struct RuleSet<T> {
    name: String,
    by_kind: HashMap<OpKind, Arc<dyn Rule<T>>>,
    by_layer: Vec<LayerRule<T>>,
}

impl<T: Element> RuleSet<T> {
    /// Standard rules for every op.
    pub fn standard() -> Self {
        Self {
            name: "standard".into(),
            by_kind: HashMap::new(),
            by_layer: Vec::new(),
        }
    }

    /// Guided backprop, TorchRay's ReLU: zero where `x < 0`, then `max(., 0)`.
    pub fn guided_backprop() -> Self {
        Self::standard()
            .named("guided_backprop")
            .with(OpKind::RELU, Arc::new(ops::relu::GuidedRelu))
    }

    /// Guided backprop, Captum's ReLU: `max(g, 0)` where `x > 0`, else 0.
    pub fn captum_guided_backprop() -> Self {
        Self::standard()
            .named("captum_guided_backprop")
            .with(OpKind::RELU, Arc::new(ops::relu::CaptumGuidedRelu))
    }

    /// Deconvnet: the ReLU passes `max(g, 0)` whatever its input.
    pub fn deconvnet() -> Self {
        Self::standard()
            .named("deconvnet")
            .with(OpKind::RELU, Arc::new(ops::relu::DeconvnetRelu))
    }

    /// Excitation backprop (Zhang et al. 2016, TorchRay's variant): conv, linear,
    /// average pools, batch norm and the residual sum change; ReLU and max pool keep
    /// their standard rules.
    pub fn excitation_backprop() -> Self {
        Self::standard()
            .named("excitation_backprop")
            .with(
                OpKind::CONV2D,
                Arc::new(ops::conv::ExcitationConv::default()),
            )
            .with(
                OpKind::LINEAR,
                Arc::new(ops::linear::ExcitationLinear::default()),
            )
            .with(OpKind::AVG_POOL2D, Arc::new(ops::pool::ExcitationAvgPool))
            .with(
                OpKind::ADAPTIVE_AVG_POOL2D,
                Arc::new(ops::pool::ExcitationAdaptiveAvgPool),
            )
            .with(OpKind::BATCH_NORM, Arc::new(ops::norm::ExcitationBatchNorm))
            .with(OpKind::RESIDUAL_SUM, Arc::new(ops::arith::ExcitationSum))
    }

    /// Renames the set (for messages).
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    /// The set's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Uses `rule` for every op of `kind`.
    pub fn with(mut self, kind: OpKind, rule: Arc<dyn Rule<T>>) -> Self {
        self.by_kind.insert(kind, rule);
        self
    }

    /// Uses `rule` for the ops recorded by layer `layer` (its exact path), of
    /// `kind` only, or of every kind when `kind` is `None`. Layer rules win over kind rules.
    pub fn with_layer(mut self, layer: &str, kind: Option<OpKind>, rule: Arc<dyn Rule<T>>) -> Self {
        self.by_layer.push(LayerRule {
            layer: layer.to_string(),
            kind,
            rule,
        });
        self
    }

    /// What the set does, as a value: each kind's rule and each layer rule
    /// (layer, kind, rule), rules by their `Debug` form (their type and
    /// parameters), in a canonical order. Two sets with the same
    /// description run the same rules everywhere, whatever their names:
    /// this is the set's identity ([`PartialEq`]).
    pub fn description(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, r)| format!("{k}: {r:?}"))
            .collect();
        kinds.sort();
        // Layer rules keep their order: the last match wins.
        kinds.extend(self.by_layer.iter().map(|l| {
            let kind = l.kind.map(|k| k.name()).unwrap_or("*");
            format!("layer {} ({kind}): {:?}", l.layer, l.rule)
        }));
        kinds
    }

    /// An error naming the first layer rule whose layer recorded no op in
    /// `nodes` (a layer the model does not have): a typo in a layer name
    /// would otherwise leave the standard rule in place without a word. A
    /// rule for one kind of op in a layer that has only others is allowed
    /// (a set can say what to do with a classifier whether it is a
    /// convolution or a linear layer).
    pub fn check_layers(&self, nodes: &[Node<T>]) -> Result<()> {
        for r in &self.by_layer {
            if !nodes.iter().any(|n| *n.layer == *r.layer) {
                return Err(AutogradError::UnknownRuleLayer {
                    rule_set: self.name.clone(),
                    layer: r.layer.clone(),
                });
            }
        }
        Ok(())
    }

    /// The rule for a node: the last matching layer rule, else its kind's rule, else [`Standard`].
    pub fn resolve<'a>(&'a self, node: &Node<T>) -> &'a dyn Rule<T> {
        match self.chosen(node) {
            Some(r) => r.as_ref(),
            None => &Standard,
        }
    }

    /// Which rule runs `node`, as an identity: passes whose sets give the
    /// same identity run the same rule object (the built-in [`Standard`],
    /// `None`, or one shared rule), and can run as one batch
    /// ([`crate::Tape::backward_passes`]).
    pub(crate) fn rule_identity(&self, node: &Node<T>) -> Option<*const ()> {
        self.chosen(node).map(|r| Arc::as_ptr(r) as *const ())
    }

    /// The layer or kind rule that matches `node`, if any.
    fn chosen(&self, node: &Node<T>) -> Option<&Arc<dyn Rule<T>>> {
        let kind = node.op.kind();
        self.by_layer
            .iter()
            .rev()
            .find(|r| *r.layer == *node.layer && r.kind.is_none_or(|k| k == kind))
            .map(|r| &r.rule)
            .or_else(|| self.by_kind.get(&kind))
    }
}
