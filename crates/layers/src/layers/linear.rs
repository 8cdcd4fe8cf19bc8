//! `Linear`: a fully connected layer.

use crate::error::{LayerError, Result};
use crate::module::{join_path, Module, NamedTensor, TensorRole};
use crate::weights::{Init, WeightSource};
use sightline_autograd::ops::linear::linear;
use sightline_autograd::{Tape, Var};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// `torch.nn.Linear`: `y = x W^T + b`, weight `Out x In`, bias `Out`.
#[derive(Clone, Debug)]
pub struct Linear<T> {
    weight: Arc<Tensor<T>>,
    bias: Option<Arc<Tensor<T>>>,
}

impl<T: Element> Linear<T> {
    /// A linear layer from its tensors; the weight must be 2-d and the bias hold one value per output.
    pub fn new(weight: Arc<Tensor<T>>, bias: Option<Arc<Tensor<T>>>) -> Result<Self> {
        let &[out, _] = weight.shape() else {
            return Err(LayerError::arch(format!(
                "linear weight must be 2-d, got shape {:?}",
                weight.shape()
            )));
        };
        if let Some(b) = &bias {
            if b.shape() != [out] {
                return Err(LayerError::arch(format!(
                    "linear bias must have shape [{out}], got {:?}",
                    b.shape()
                )));
            }
        }
        Ok(Self { weight, bias })
    }

    /// Builds the layer `path` (`in_features -> out_features`, with bias) from a weight source.
    pub(crate) fn build(
        src: &mut dyn WeightSource<T>,
        path: &str,
        in_features: usize,
        out_features: usize,
    ) -> Result<Self> {
        let weight = src.tensor(
            &join_path(path, "weight"),
            &[out_features, in_features],
            Init::Kaiming { fan: in_features },
        )?;
        let bias = src.tensor(&join_path(path, "bias"), &[out_features], Init::Zeros)?;
        Self::new(weight, Some(bias))
    }

    /// The weight, `Out x In`.
    pub fn weight(&self) -> &Arc<Tensor<T>> {
        &self.weight
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Arc<Tensor<T>>> {
        self.bias.as_ref()
    }
}

impl<T: Element> Module<T> for Linear<T> {
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        let w = tape.param("weight", &self.weight);
        let b = self.bias.as_ref().map(|b| tape.param("bias", b));
        Ok(linear(tape, x, &w, b.as_ref())?)
    }

    fn named_tensors<'a>(&'a self, prefix: &str, out: &mut Vec<NamedTensor<'a, T>>) {
        out.push(NamedTensor {
            name: join_path(prefix, "weight"),
            tensor: &self.weight,
            role: TensorRole::Trainable,
        });
        if let Some(b) = &self.bias {
            out.push(NamedTensor {
                name: join_path(prefix, "bias"),
                tensor: b,
                role: TensorRole::Trainable,
            });
        }
    }

    fn trainable_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut Arc<Tensor<T>>)>,
    ) {
        out.push((join_path(prefix, "weight"), &mut self.weight));
        if let Some(b) = &mut self.bias {
            out.push((join_path(prefix, "bias"), b));
        }
    }
}
