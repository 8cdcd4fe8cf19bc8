//! Canonizers: transforms of a model made before any rule runs (Zennit's
//! idea), so that a rule sees one canonical form of a layer and never has
//! to know whether the transform was applied.
//!
//! - [`MergeBatchNorm`]: each batch norm that directly follows a
//!   convolution is merged into it (`W' = W γ/σ`, `b' = (b - μ) γ/σ + β`).
//!   [`MergeBatchNorm::exact`] removes the batch norm (the same function,
//!   one op fewer: what a fast pass wants); [`MergeBatchNorm::zennit`]
//!   leaves what Zennit's canonizers leave, a batch norm with identity
//!   statistics that still divides by `sqrt(1 + eps)` (LRP parity with
//!   Zennit depends on it: 4.6e-5 of the maximum on the fixture ResNet
//!   without it).
//! - [`ResNetCanonizer`]: Zennit's for ResNets: the merge as Zennit makes
//!   it, and the skip connections' sums as explicit residual sums
//!   ([`sightline_autograd::OpKind::RESIDUAL_SUM`]; the presets record them
//!   so already), so the LRP norm rule applies to them.
//!
//! A canonizer returns a new model sharing the weights it leaves unchanged;
//! the original is untouched.

use crate::error::{LayerError, Result};
use crate::model::Model;
use sightline_tensor::Element;
use std::fmt::Debug;

/// A transform of a model before any rule runs.
pub trait Canonizer<T: Element>: Debug + Send + Sync {
    /// The canonizer's name, for messages.
    fn name(&self) -> &str;

    /// The canonized model (the weights it does not change are shared).
    fn apply(&self, model: &Model<T>) -> Result<Model<T>>;
}

/// Whether a batch norm was merged into the convolution before it, and
/// what is left of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BatchNormMerge {
    /// Not merged: the batch norm runs as its own op.
    #[default]
    NotMerged,
    /// Merged and removed.
    Removed,
    /// Merged as Zennit merges: the batch norm is left with identity
    /// statistics and parameters but its `eps`, computing
    /// `x / sqrt(1 + eps)`.
    ZennitIdentity,
}

/// Merges each batch norm that directly follows a convolution into it, in
/// the presets and in ONNX graphs, except after the convolutions named in
/// [`MergeBatchNorm::except`] (whose own output a method probes: a merged
/// convolution has no output of its own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeBatchNorm {
    leftover: BatchNormMerge,
    except: Vec<String>,
}

impl MergeBatchNorm {
    /// The merge that removes the batch norm: the model computes the same
    /// function to rounding, faster.
    pub fn exact() -> Self {
        Self {
            leftover: BatchNormMerge::Removed,
            except: Vec::new(),
        }
    }

    /// The merge as Zennit's `SequentialMergeBatchNorm` (its `VGGCanonizer`)
    /// makes it: the batch norm stays, with identity statistics and its
    /// `eps`, so it computes `x / sqrt(1 + eps)`.
    pub fn zennit() -> Self {
        Self {
            leftover: BatchNormMerge::ZennitIdentity,
            except: Vec::new(),
        }
    }

    /// Leaves the batch norms after the convolutions `conv_paths` as they
    /// are.
    pub fn except(mut self, conv_paths: &[&str]) -> Self {
        self.except.extend(conv_paths.iter().map(|p| p.to_string()));
        self
    }

    /// What is left of a merged batch norm.
    pub fn leftover(&self) -> BatchNormMerge {
        self.leftover
    }
}

impl<T: Element> Canonizer<T> for MergeBatchNorm {
    fn name(&self) -> &str {
        match self.leftover {
            BatchNormMerge::ZennitIdentity => "merge_batch_norm_zennit",
            _ => "merge_batch_norm",
        }
    }

    fn apply(&self, model: &Model<T>) -> Result<Model<T>> {
        for path in &self.except {
            if !model.has_layer(path) {
                return Err(LayerError::UnknownLayer {
                    path: path.clone(),
                    context: "canonizer exception".into(),
                });
            }
        }
        model.with_batch_norms_merged(self.leftover, &self.except)
    }
}

/// Zennit's `ResNetCanonizer`: batch norms merged as Zennit merges them
/// ([`MergeBatchNorm::zennit`]) and the skip connections summed by an
/// explicit residual sum (the presets record them so already; an ONNX
/// graph's `Add` of two computed values of one shape becomes one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResNetCanonizer {
    merge: Option<MergeBatchNorm>,
}

impl ResNetCanonizer {
    /// The canonizer, merging every batch norm after a convolution.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaves the batch norms after the convolutions `conv_paths` as they
    /// are ([`MergeBatchNorm::except`]).
    pub fn except(self, conv_paths: &[&str]) -> Self {
        let merge = self.merge.unwrap_or_else(MergeBatchNorm::zennit);
        Self {
            merge: Some(merge.except(conv_paths)),
        }
    }
}

impl<T: Element> Canonizer<T> for ResNetCanonizer {
    fn name(&self) -> &str {
        "resnet"
    }

    fn apply(&self, model: &Model<T>) -> Result<Model<T>> {
        let merge = self.merge.clone().unwrap_or_else(MergeBatchNorm::zennit);
        Canonizer::<T>::apply(&merge, model)?.with_explicit_residual_sums()
    }
}
