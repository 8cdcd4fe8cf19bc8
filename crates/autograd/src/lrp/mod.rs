//! Layer-wise relevance propagation: Zennit's rules as [`crate::Rule`]s.
//!
//! A rule maps the relevance at an op's output to the relevance at its
//! input, as Zennit's hooks do, with Zennit's stabiliser
//! ([`stabilize`]: `z + eps sign(z)`, `sign(0) = 1`). The maths of each rule
//! is in `docs/methods.md`.
//!
//! - On ops with a weight ([`Affine`]: convolution, fully connected, or any
//!   op that implements the trait): [`Epsilon`], [`ZPlus`], [`AlphaBeta`],
//!   [`Gamma`], [`ZBox`], [`WSquare`], [`Flat`]. Each runs the op again with
//!   modified weights and inputs, as Zennit's `BasicHook` does.
//! - On parameter-free linear ops ([`Homogeneous`]: average pools, sums):
//!   [`Norm`], which splits the relevance in proportion to the inputs.
//! - On elementwise ops (activations, batch norm): [`Pass`], which hands the
//!   relevance through unchanged.
//!
//! Ops without a rule keep their standard backward (a max pool routes the
//! relevance to its winner). Which rule runs where is a
//! [`crate::RuleSet`]: composites that build one live in the attribution
//! crate. A rule here knows nothing of composites or canonizers.

mod affine;
mod bounded;
mod epsilon;
mod input_free;
mod norm;
mod pass;
mod sign_split;
mod stabilizer;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use affine::Affine;
pub use bounded::ZBox;
pub use epsilon::Epsilon;
pub use input_free::{Flat, WSquare};
pub use norm::{Homogeneous, Norm};
pub use pass::Pass;
pub use sign_split::{AlphaBeta, Gamma, ZPlus};
pub use stabilizer::{stabilize, DEFAULT_STABILIZER};
