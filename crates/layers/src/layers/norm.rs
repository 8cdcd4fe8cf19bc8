//! `BatchNorm2d` in inference mode.

use crate::canonize::BatchNormMerge;
use crate::error::{LayerError, Result};
use crate::module::{join_path, Module, NamedTensor, TensorRole};
use crate::weights::{Init, WeightSource};
use sightline_autograd::ops::norm::batch_norm;
use sightline_autograd::{Tape, Var};
use sightline_tensor::norm::BatchNormAffine;
use sightline_tensor::{cst, Element, Tensor};
use std::sync::Arc;

/// PyTorch's default `eps` of batch norm.
pub const BATCH_NORM_EPS: f64 = 1e-5;

/// `torch.nn.BatchNorm2d` in inference mode:
/// `y = (x - running_mean) / sqrt(running_var + eps) * weight + bias`.
///
/// The four tensors are folded into a per-channel affine map once, when the
/// layer is built; the layer is frozen (nothing of it is trainable).
#[derive(Clone, Debug)]
pub struct BatchNorm2d<T> {
    weight: Arc<Tensor<T>>,
    bias: Arc<Tensor<T>>,
    running_mean: Arc<Tensor<T>>,
    running_var: Arc<Tensor<T>>,
    eps: f64,
    affine: Arc<BatchNormAffine<T>>,
    /// Whether a canonizer merged this batch norm into the convolution
    /// before it, and what is left of it ([`BatchNormMerge`]).
    merged: BatchNormMerge,
    /// What is left when merged as Zennit merges: `x / sqrt(1 + eps)`.
    leftover: Option<Arc<BatchNormAffine<T>>>,
}

impl<T: Element> BatchNorm2d<T> {
    /// A batch norm from its tensors (each of shape `C`) and `eps`; fails when
    /// the shapes differ or the folded scale and shift are not finite (a
    /// negative variance, say).
    pub fn new(
        weight: Arc<Tensor<T>>,
        bias: Arc<Tensor<T>>,
        running_mean: Arc<Tensor<T>>,
        running_var: Arc<Tensor<T>>,
        eps: f64,
    ) -> Result<Self> {
        let affine = BatchNormAffine::new(&running_mean, &running_var, &weight, &bias, cst(eps))
            .map_err(|e| {
                LayerError::arch(format!("batch norm tensors do not fit together: {e}"))
            })?;
        if affine
            .scale
            .iter()
            .chain(&affine.shift)
            .any(|v| !v.is_finite())
        {
            return Err(LayerError::NonFinite {
                what: "batch norm scale and shift (is a running_var below -eps?)".to_string(),
            });
        }
        Ok(Self {
            weight,
            bias,
            running_mean,
            running_var,
            eps,
            affine: Arc::new(affine),
            merged: BatchNormMerge::NotMerged,
            leftover: None,
        })
    }

    /// Builds the layer `path` with `channels` channels from a weight source.
    pub(crate) fn build(
        src: &mut dyn WeightSource<T>,
        path: &str,
        channels: usize,
    ) -> Result<Self> {
        let c = [channels];
        let weight = src.tensor(&join_path(path, "weight"), &c, Init::Ones)?;
        let bias = src.tensor(&join_path(path, "bias"), &c, Init::Zeros)?;
        let mean = src.tensor(&join_path(path, "running_mean"), &c, Init::Zeros)?;
        let var = src.tensor(&join_path(path, "running_var"), &c, Init::Ones)?;
        src.counter(&join_path(path, "num_batches_tracked"))?;
        Self::new(weight, bias, mean, var, BATCH_NORM_EPS).map_err(|e| match e {
            LayerError::NonFinite { what } => LayerError::NonFinite {
                what: format!("{what} of `{path}`"),
            },
            other => other,
        })
    }

    /// The folded per-channel scale and shift.
    pub fn affine(&self) -> &Arc<BatchNormAffine<T>> {
        &self.affine
    }

    /// The number of channels.
    pub fn channels(&self) -> usize {
        self.affine.channels()
    }

    /// The `eps` added to the variance.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// Whether a canonizer merged the layer into the convolution before it.
    pub fn merged(&self) -> BatchNormMerge {
        self.merged
    }

    /// Marks the layer merged into the convolution before it (or not), as
    /// [`crate::canonize::MergeBatchNorm`] does on a copy of the model.
    pub(crate) fn set_merged(&mut self, merged: BatchNormMerge) -> Result<()> {
        self.leftover = match merged {
            BatchNormMerge::ZennitIdentity => {
                let c = self.channels();
                let zeros = Tensor::zeros(vec![c]);
                let ones = Tensor::full(vec![c], T::one());
                let identity = BatchNormAffine::new(&zeros, &ones, &ones, &zeros, cst(self.eps))
                    .map_err(|e| LayerError::arch(format!("batch norm identity: {e}")))?;
                Some(Arc::new(identity))
            }
            _ => None,
        };
        self.merged = merged;
        Ok(())
    }

    /// What a Zennit-style merge leaves of the layer: the batch norm with
    /// identity statistics and parameters but its `eps`, `x / sqrt(1 + eps)`
    /// per channel; `None` unless merged so.
    pub(crate) fn leftover(&self) -> Option<&Arc<BatchNormAffine<T>>> {
        self.leftover.as_ref()
    }
}

impl<T: Element> Module<T> for BatchNorm2d<T> {
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        Ok(batch_norm(tape, x, &self.affine)?)
    }

    fn named_tensors<'a>(&'a self, prefix: &str, out: &mut Vec<NamedTensor<'a, T>>) {
        let items = [
            ("weight", &self.weight, TensorRole::Frozen),
            ("bias", &self.bias, TensorRole::Frozen),
            ("running_mean", &self.running_mean, TensorRole::Buffer),
            ("running_var", &self.running_var, TensorRole::Buffer),
        ];
        out.extend(items.into_iter().map(|(name, tensor, role)| NamedTensor {
            name: join_path(prefix, name),
            tensor,
            role,
        }));
    }
}
