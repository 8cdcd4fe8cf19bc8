//! # sightline-autograd
//!
//! A tape autograd whose backward rules are chosen at backward time.
//!
//! The forward pass records each op on a [`Tape`] with the path of the layer
//! that made it and only what its rules may need (a ReLU keeps two sign bits
//! per element, not its input). A backward pass takes a starting variable, a
//! seed, a [`RuleSet`] and the variables whose gradients are wanted; it walks
//! the tape in reverse and stops once those are reached. Because the rule set
//! is a value passed to [`Tape::backward`], one forward pass serves any number
//! of backward passes: standard gradients, guided backprop, deconvnet,
//! excitation backprop, the LRP rules of [`lrp`], or rules a user writes by
//! implementing [`Rule`].
#![warn(missing_docs)]

mod backward;
pub mod error;
pub mod lrp;
pub mod op;
pub mod ops;
pub mod rule;
pub mod tape;

pub use backward::{Branch, Pass};
pub use error::{AutogradError, Result};
pub use op::{Op, OpKind};
pub use rule::then_after;
pub use rule::{Elementwise, Rule, RuleContext, RuleSet, Standard};
pub use tape::{LayerOutput, Node, Retain, Tape, Var, VarId};
