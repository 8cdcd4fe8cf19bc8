//! A composite: rules by op kind, by layer name, and for the first layer.

use crate::error::{AttributionError, Result};
use sightline_autograd::{OpKind, Rule, RuleSet, Tape};
use sightline_tensor::Element;
use std::fmt;
use std::sync::Arc;

/// Which rule runs on which op, for LRP: by op kind (Zennit's layer map),
/// a special rule for the first op of some kinds in the forward pass (its
/// special first layer map, which wins over kinds), and by layer name (its
/// name map, which wins over both). Ops nothing matches keep their standard
/// backward.
///
/// A composite becomes a [`RuleSet`] for a recorded forward pass with
/// [`Composite::rule_set`], which finds the first layer on the tape.
#[derive(Clone)]
pub struct Composite<T: Element> {
    by_kind: Vec<(OpKind, SharedRule<T>)>,
    by_layer: Vec<LayerRule<T>>,
    first: Option<(Vec<OpKind>, SharedRule<T>)>,
}

/// A rule shared between composites and rule sets.
type SharedRule<T> = Arc<dyn Rule<T>>;

/// A rule for a named layer, for ops of one kind or all.
type LayerRule<T> = (String, Option<OpKind>, SharedRule<T>);

impl<T: Element> Composite<T> {
    /// A composite with no rules (every op standard: the gradient).
    pub fn new() -> Self {
        Self {
            by_kind: Vec::new(),
            by_layer: Vec::new(),
            first: None,
        }
    }

    /// Uses `rule` on every op of each of `kinds` (a later call for the
    /// same kind wins).
    pub fn with_kinds(mut self, kinds: &[OpKind], rule: Arc<dyn Rule<T>>) -> Self {
        for &k in kinds {
            self.by_kind.push((k, rule.clone()));
        }
        self
    }

    /// Uses `rule` on the ops recorded by layer `layer` (its exact path), of
    /// `kind` only or of every kind. The layer must exist on the tape the
    /// composite is applied to (the backward pass checks).
    pub fn with_layer(mut self, layer: &str, kind: Option<OpKind>, rule: Arc<dyn Rule<T>>) -> Self {
        self.by_layer.push((layer.to_string(), kind, rule));
        self
    }

    /// Uses `rule` on the first op, in the order of the forward pass, whose
    /// kind is one of `kinds` (Zennit's first convolution or linear layer).
    pub fn with_first(mut self, kinds: &[OpKind], rule: Arc<dyn Rule<T>>) -> Self {
        self.first = Some((kinds.to_vec(), rule));
        self
    }

    /// The rule set for one backward pass over `tape`: the kind rules, the
    /// first-layer rule over them, the layer rules over both. An error when
    /// the composite has a first-layer rule and no op of its kinds was
    /// recorded (a layer rule naming a layer the tape does not have is an
    /// error of the backward pass, [`RuleSet::check_layers`]).
    pub fn rule_set(&self, tape: &Tape<T>) -> Result<RuleSet<T>> {
        let mut set = RuleSet::standard().named("lrp");
        for (kind, rule) in &self.by_kind {
            set = set.with(*kind, rule.clone());
        }
        if let Some((kinds, rule)) = &self.first {
            let node =
                tape.nodes()
                    .iter()
                    .find(|n| kinds.contains(&n.op.kind()))
                    .ok_or_else(|| {
                        AttributionError::InvalidOption(format!(
                        "the composite has a first-layer rule for {} ops, and the model has none",
                        kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(" or ")
                    ))
                    })?;
            set = set.with_layer(&node.layer, Some(node.op.kind()), rule.clone());
        }
        for (layer, kind, rule) in &self.by_layer {
            set = set.with_layer(layer, *kind, rule.clone());
        }
        Ok(set)
    }
}

impl<T: Element> Default for Composite<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Element> fmt::Debug for Composite<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, r)| format!("{k}: {}", r.name()))
            .collect();
        let layers: Vec<String> = self
            .by_layer
            .iter()
            .map(|(l, k, r)| {
                format!(
                    "{l}{}: {}",
                    k.map(|k| format!(" ({k})")).unwrap_or_default(),
                    r.name()
                )
            })
            .collect();
        let first = self
            .first
            .as_ref()
            .map(|(k, r)| format!("{k:?}: {}", r.name()));
        f.debug_struct("Composite")
            .field("by_kind", &kinds)
            .field("by_layer", &layers)
            .field("first", &first)
            .finish()
    }
}
