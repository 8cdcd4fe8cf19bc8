//! `Sequential`: children named `0`, `1`, ... run in order.

use super::fold::conv_then_batch_norm;
use super::{BatchNorm2d, Layer};
use crate::error::Result;
use crate::module::{child_paths, join_path, run_child_owned, Module, NamedTensor};
use sightline_autograd::{Tape, Var};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// `torch.nn.Sequential`: child `i` is named `"i"`.
#[derive(Clone, Debug)]
pub struct Sequential<T> {
    layers: Vec<Layer<T>>,
}

impl<T: Element> Default for Sequential<T> {
    fn default() -> Self {
        Self { layers: Vec::new() }
    }
}

impl<T: Element> Sequential<T> {
    /// A container of `layers`, in order.
    pub fn new(layers: Vec<Layer<T>>) -> Self {
        Self { layers }
    }

    /// Appends a layer (it is named after its index).
    pub fn push(&mut self, layer: impl Into<Layer<T>>) {
        self.layers.push(layer.into());
    }

    /// The children.
    pub fn layers(&self) -> &[Layer<T>] {
        &self.layers
    }

    /// The number of children.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no children.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl<T: Element> Module<T> for Sequential<T> {
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        let mut h = x.clone();
        let mut i = 0;
        while i < self.layers.len() {
            // A convolution followed by a batch norm may run as one.
            if let (Layer::Conv2d(conv), Some(Layer::BatchNorm2d(bn))) =
                (&self.layers[i], self.layers.get(i + 1))
            {
                let (c, b) = (i.to_string(), (i + 1).to_string());
                h = conv_then_batch_norm(tape, &c, conv, &b, bn, &h)?;
                i += 2;
                continue;
            }
            // The running value is handed over: a ReLU reuses its buffer.
            h = run_child_owned(tape, &i.to_string(), &self.layers[i], h)?;
            i += 1;
        }
        Ok(h)
    }

    fn submodule_paths(&self, prefix: &str, out: &mut Vec<String>) {
        for (i, layer) in self.layers.iter().enumerate() {
            child_paths(prefix, &i.to_string(), layer, out);
        }
    }

    fn named_tensors<'a>(&'a self, prefix: &str, out: &mut Vec<NamedTensor<'a, T>>) {
        for (i, layer) in self.layers.iter().enumerate() {
            layer.named_tensors(&join_path(prefix, &i.to_string()), out);
        }
    }

    fn trainable_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut Arc<Tensor<T>>)>,
    ) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.trainable_mut(&join_path(prefix, &i.to_string()), out);
        }
    }

    /// The batch norm of each (convolution, batch norm) pair of children,
    /// as [`Module::forward`] pairs them, and those of the children's own.
    fn batch_norms_after_convs_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut BatchNorm2d<T>)>,
    ) {
        let mut after_conv = false;
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let follows_conv = after_conv;
            after_conv = matches!(layer, Layer::Conv2d(_));
            if let Layer::BatchNorm2d(bn) = layer {
                if follows_conv {
                    out.push((join_path(prefix, &(i - 1).to_string()), bn));
                }
            } else {
                layer.batch_norms_after_convs_mut(&join_path(prefix, &i.to_string()), out);
            }
        }
    }
}
