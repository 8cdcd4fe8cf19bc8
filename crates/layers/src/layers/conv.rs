//! `Conv2d`: a 2-d convolution with an optional bias.

use super::BatchNorm2d;
use crate::error::{LayerError, Result};
use crate::module::{join_path, Module, NamedTensor, TensorRole};
use crate::weights::{Init, WeightSource};
use sightline_autograd::ops::conv::{
    conv2d_batch_norm_folded, conv2d_with_cache, Conv2dCache, FoldedBatchNorm,
};
use sightline_autograd::{Tape, Var};
use sightline_tensor::conv::window_output_len;
use sightline_tensor::{Conv2dParams, Element, Tensor};
use std::sync::{Arc, OnceLock};

/// Shape of a convolution layer, for building it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvSpec {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Square kernel size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding.
    pub padding: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
}

impl ConvSpec {
    /// A convolution `in_channels -> out_channels` with a square `kernel`, stride 1, no padding, with bias.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            padding: 0,
            bias: true,
        }
    }

    /// The same with another stride.
    pub fn stride(self, stride: usize) -> Self {
        Self { stride, ..self }
    }

    /// The same with another padding.
    pub fn padding(self, padding: usize) -> Self {
        Self { padding, ..self }
    }

    /// The same without bias.
    pub fn no_bias(self) -> Self {
        Self {
            bias: false,
            ..self
        }
    }
}

/// `torch.nn.Conv2d`: weight `Cout x Cin x kh x kw` and optional bias `Cout`.
///
/// The layer keeps the kernels it derives from its weight (the forward
/// Winograd kernel and the input gradient's transformed kernel, each made on
/// first use; large F(2x2) kernels over many tiles are made per call
/// instead, see `sightline_tensor::conv::conv2d_cached`) for as long as the
/// weight does not change: handing out mutable access to the weight
/// ([`Module::trainable_mut`], hence
/// `Model::parameters_mut`) drops them. A clone shares them with the
/// original until either is changed.
#[derive(Clone, Debug)]
pub struct Conv2d<T> {
    weight: Arc<Tensor<T>>,
    bias: Option<Arc<Tensor<T>>>,
    params: Conv2dParams,
    /// Kernels derived from `weight`; replaced by an empty one whenever
    /// `weight` may change. Tapes recorded before keep the old cache together
    /// with the old weight's `Arc`.
    cache: Arc<Conv2dCache<T>>,
    /// The kernel and bias with the following batch norm folded in, made
    /// when the pair is built ([`Conv2d::fold_batch_norm`]), replaced like
    /// `cache` and then made again by the next pass that folds.
    folded: Arc<OnceLock<FoldedBatchNorm<T>>>,
}

impl<T: Element> Conv2d<T> {
    /// A convolution from its tensors; the weight must be 4-d and the bias hold one value per output channel.
    pub fn new(
        weight: Arc<Tensor<T>>,
        bias: Option<Arc<Tensor<T>>>,
        params: Conv2dParams,
    ) -> Result<Self> {
        let &[cout, _, _, _] = weight.shape() else {
            return Err(LayerError::arch(format!(
                "conv2d weight must be 4-d, got shape {:?}",
                weight.shape()
            )));
        };
        if weight.shape().contains(&0) {
            return Err(LayerError::arch(format!(
                "conv2d weight has a zero dimension: {:?}",
                weight.shape()
            )));
        }
        let p = params;
        if p.groups == 0 || [p.stride.0, p.stride.1, p.dilation.0, p.dilation.1].contains(&0) {
            return Err(LayerError::arch(format!(
                "conv2d stride, dilation and groups must be positive, got {p:?}"
            )));
        }
        if let Some(b) = &bias {
            if b.shape() != [cout] {
                return Err(LayerError::arch(format!(
                    "conv2d bias must have shape [{cout}], got {:?}",
                    b.shape()
                )));
            }
        }
        Ok(Self {
            weight,
            bias,
            params,
            cache: Arc::new(Conv2dCache::new()),
            folded: Arc::new(OnceLock::new()),
        })
    }

    /// Builds the layer `path` from a weight source.
    pub(crate) fn build(src: &mut dyn WeightSource<T>, path: &str, spec: ConvSpec) -> Result<Self> {
        let k = spec.kernel;
        let shape = [spec.out_channels, spec.in_channels, k, k];
        let fan_out = spec.out_channels * k * k;
        let weight = src.tensor(
            &join_path(path, "weight"),
            &shape,
            Init::Kaiming { fan: fan_out },
        )?;
        let bias = if spec.bias {
            Some(src.tensor(&join_path(path, "bias"), &[spec.out_channels], Init::Zeros)?)
        } else {
            None
        };
        Self::new(weight, bias, Conv2dParams::new(spec.stride, spec.padding))
    }

    /// The kernel, `Cout x Cin x kh x kw`.
    pub fn weight(&self) -> &Arc<Tensor<T>> {
        &self.weight
    }

    /// The bias, if any.
    pub fn bias(&self) -> Option<&Arc<Tensor<T>>> {
        self.bias.as_ref()
    }

    /// Stride, padding, dilation and groups.
    pub fn params(&self) -> Conv2dParams {
        self.params
    }

    /// The kernel and bias with `bn` folded in, made on the first call and
    /// kept until the weight may change: `bn` must be the batch norm that
    /// always follows this layer (its parent pairs them once, when it is
    /// built, and folds them then: [`build_conv_then_batch_norm`]). `path`
    /// names the layer in the error when they do not fit.
    ///
    /// [`build_conv_then_batch_norm`]: super::fold::build_conv_then_batch_norm
    pub(crate) fn fold_batch_norm(
        &self,
        path: &str,
        bn: &BatchNorm2d<T>,
    ) -> Result<&FoldedBatchNorm<T>> {
        if let Some(f) = self.folded.get() {
            return Ok(f);
        }
        let f =
            FoldedBatchNorm::new(&self.weight, self.bias.as_deref(), bn.affine()).map_err(|e| {
                LayerError::arch(format!("batch norm does not fit convolution `{path}`: {e}"))
            })?;
        Ok(self.folded.get_or_init(|| f))
    }

    /// Whether the fold with the following batch norm is made (at build
    /// time, or again on the first folding pass after the weight was handed
    /// out for change).
    pub fn is_batch_norm_folded(&self) -> bool {
        self.folded.get().is_some()
    }

    /// `bn(conv(x))` recorded as one convolution with `bn` folded into the
    /// kernel and bias ([`conv2d_batch_norm_folded`]), using the fold made
    /// at build time ([`Conv2d::fold_batch_norm`]), or making it now for a
    /// layer made with [`Conv2d::new`] or whose weight was handed out for
    /// change.
    pub(crate) fn forward_folded(
        &self,
        tape: &mut Tape<T>,
        x: &Var<T>,
        bn: &BatchNorm2d<T>,
    ) -> Result<Var<T>> {
        self.check_fits(tape, x.shape())?;
        let folded = self.fold_batch_norm(tape.layer_path(), bn)?;
        Ok(conv2d_batch_norm_folded(tape, x, folded, self.params)?)
    }

    /// The number of output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Fails with [`LayerError::InputTooSmall`] when the kernel does not fit the padded input.
    fn check_fits(&self, tape: &Tape<T>, shape: &[usize]) -> Result<()> {
        let (&[_, _, kh, kw], &[_, _, h, w]) = (self.weight.shape(), shape) else {
            return Ok(()); // the kernel reports rank errors
        };
        let p = self.params;
        let fits = window_output_len(h, kh, p.stride.0, p.padding.0, p.dilation.0).is_some()
            && window_output_len(w, kw, p.stride.1, p.padding.1, p.dilation.1).is_some();
        if fits {
            return Ok(());
        }
        Err(LayerError::InputTooSmall {
            layer: tape.layer_path().to_string(),
            found: (h, w),
            message: format!(
                "convolution kernel {kh}x{kw} with padding {:?} needs at least {}x{}",
                p.padding,
                (p.dilation.0 * (kh - 1) + 1)
                    .saturating_sub(2 * p.padding.0)
                    .max(1),
                (p.dilation.1 * (kw - 1) + 1)
                    .saturating_sub(2 * p.padding.1)
                    .max(1),
            ),
        })
    }
}

impl<T: Element> Module<T> for Conv2d<T> {
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        self.check_fits(tape, x.shape())?;
        let w = tape.param("weight", &self.weight);
        let b = self.bias.as_ref().map(|b| tape.param("bias", b));
        Ok(conv2d_with_cache(
            tape,
            x,
            &w,
            b.as_ref(),
            self.params,
            &self.cache,
        )?)
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
        // The caller may change the weight (in place through `Arc::make_mut`
        // or by replacing it): never keep kernels derived from the old one.
        self.cache = Arc::new(Conv2dCache::new());
        self.folded = Arc::new(OnceLock::new());
        out.push((join_path(prefix, "weight"), &mut self.weight));
        if let Some(b) = &mut self.bias {
            out.push((join_path(prefix, "bias"), b));
        }
    }
}
