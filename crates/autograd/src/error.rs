//! The error type of recording and backward passes.

use sightline_tensor::TensorError;
use thiserror::Error;

/// What went wrong on the tape, naming the op, its layer and the shapes.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AutogradError {
    /// A kernel rejected its operands.
    #[error("{op} in layer `{layer}`: {source}")]
    Kernel {
        /// The op's name.
        op: &'static str,
        /// The layer path that recorded it (empty at top level).
        layer: String,
        /// The kernel's error.
        source: TensorError,
    },
    /// A variable that this tape did not record.
    #[error("variable {id} is not on this tape (it holds {len} variables)")]
    UnknownVar {
        /// The variable's id.
        id: usize,
        /// Variables on the tape.
        len: usize,
    },
    /// The seed of a backward pass does not have the shape of the variable it starts from.
    #[error(
        "backward seed has shape {found:?}, the variable it starts from has shape {expected:?}"
    )]
    SeedShape {
        /// Shape of the starting variable.
        expected: Vec<usize>,
        /// Shape of the seed.
        found: Vec<usize>,
    },
    /// A pass of a walk branches from a pass it cannot branch from.
    #[error("pass {pass} of the walk branches from pass {from}, which is not a pass of the walk that starts at the walk's variable")]
    InvalidBranch {
        /// The branching pass.
        pass: usize,
        /// The pass it names.
        from: usize,
    },
    /// A rule needs a value that the forward pass did not keep.
    #[error("rule `{rule}` for {op} in layer `{layer}` needs the {what}, which the tape did not retain (record with Retain::All)")]
    NotRetained {
        /// The rule's name.
        rule: String,
        /// The op's name.
        op: &'static str,
        /// The layer path.
        layer: String,
        /// What is missing.
        what: &'static str,
    },
    /// A rule was applied to an op it does not handle.
    #[error("rule `{rule}` cannot run on op {op} (layer `{layer}`)")]
    RuleMismatch {
        /// The rule's name.
        rule: String,
        /// The op's name.
        op: &'static str,
        /// The layer path.
        layer: String,
    },
    /// A rule returned the wrong number or shape of gradients.
    #[error("rule `{rule}` for {op} in layer `{layer}` returned a gradient of shape {found:?}, expected {expected:?}")]
    RuleOutput {
        /// The rule's name.
        rule: String,
        /// The op's name.
        op: &'static str,
        /// The layer path.
        layer: String,
        /// The expected shape.
        expected: Vec<usize>,
        /// The returned shape.
        found: Vec<usize>,
    },
    /// A rule set names a layer that recorded no op.
    #[error("rule set `{rule_set}` has a rule for layer `{layer}`, which is not a layer of this model (it recorded no op on this tape)")]
    UnknownRuleLayer {
        /// The rule set's name.
        rule_set: String,
        /// The layer path it names.
        layer: String,
    },
    /// A rule was given parameters it cannot run with.
    #[error("rule `{rule}`: {reason}")]
    InvalidRule {
        /// The rule's name.
        rule: &'static str,
        /// What is wrong with its parameters.
        reason: String,
    },
    /// The tape was recorded without gradient support and cannot be walked backward.
    #[error("this tape records no ops (Retain::Nothing): no backward pass is possible")]
    NotRecording,
}

/// Result alias for autograd.
pub type Result<T> = std::result::Result<T, AutogradError>;
