//! torchvision's residual blocks: `BasicBlock` and `Bottleneck`.

use super::fold::{build_conv_then_batch_norm, conv_then_batch_norm};
use super::{BatchNorm2d, Conv2d, ConvSpec, ReLU, Sequential};
use crate::error::Result;
use crate::module::{child_paths, join_path, run_child, run_child_owned, Module, NamedTensor};
use crate::weights::WeightSource;
use sightline_autograd::ops::arith::residual_sum_owned;
use sightline_autograd::{Tape, Var};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// The shortcut of a block whose shape changes: `downsample.0` (1x1 conv with
/// the block's stride, no bias) and `downsample.1` (batch norm); `None` when
/// the block keeps its input's shape.
fn build_downsample<T: Element>(
    src: &mut dyn WeightSource<T>,
    path: &str,
    inplanes: usize,
    outplanes: usize,
    stride: usize,
) -> Result<Option<Sequential<T>>> {
    if stride == 1 && inplanes == outplanes {
        return Ok(None);
    }
    let path = join_path(path, "downsample");
    let spec = ConvSpec::new(inplanes, outplanes, 1)
        .stride(stride)
        .no_bias();
    let (conv, bn) =
        build_conv_then_batch_norm(src, &join_path(&path, "0"), spec, &join_path(&path, "1"))?;
    Ok(Some(Sequential::new(vec![conv.into(), bn.into()])))
}

/// The block's `conv{n}` and `bn{n}`, built and folded together.
fn numbered_pair<T: Element>(
    src: &mut dyn WeightSource<T>,
    path: &str,
    n: usize,
    spec: ConvSpec,
) -> Result<(Conv2d<T>, BatchNorm2d<T>)> {
    let conv = join_path(path, &format!("conv{n}"));
    build_conv_then_batch_norm(src, &conv, spec, &join_path(path, &format!("bn{n}")))
}

/// The residual sum `out + identity`, recorded in the block's scope, then the block's shared ReLU.
fn residual<T: Element>(
    tape: &mut Tape<T>,
    relu: &ReLU,
    downsample: Option<&Sequential<T>>,
    x: &Var<T>,
    out: Var<T>,
) -> Result<Var<T>> {
    let identity = match downsample {
        Some(ds) => run_child(tape, "downsample", ds, x)?,
        None => x.clone(),
    };
    // The branch's output is summed into in place, then the ReLU runs in
    // place on it, when nothing else holds it.
    let sum = residual_sum_owned(tape, out, &identity)?;
    drop(identity);
    run_child_owned(tape, "relu", relu, sum)
}

/// torchvision's `BasicBlock` (expansion 1): `conv1` (3x3, stride), `bn1`,
/// `relu`, `conv2` (3x3), `bn2`, optional `downsample`, residual sum, `relu`.
#[derive(Clone, Debug)]
pub struct BasicBlock<T> {
    conv1: Conv2d<T>,
    bn1: BatchNorm2d<T>,
    relu: ReLU,
    conv2: Conv2d<T>,
    bn2: BatchNorm2d<T>,
    downsample: Option<Sequential<T>>,
}

impl<T: Element> BasicBlock<T> {
    /// Output channels per `planes`.
    pub const EXPANSION: usize = 1;

    /// Builds the block `path`: `inplanes -> planes`, stride on both the first conv and the shortcut.
    pub(crate) fn build(
        src: &mut dyn WeightSource<T>,
        path: &str,
        inplanes: usize,
        planes: usize,
        stride: usize,
    ) -> Result<Self> {
        let spec1 = ConvSpec::new(inplanes, planes, 3).stride(stride).padding(1);
        let (conv1, bn1) = numbered_pair(src, path, 1, spec1.no_bias())?;
        let spec2 = ConvSpec::new(planes, planes, 3).padding(1);
        let (conv2, bn2) = numbered_pair(src, path, 2, spec2.no_bias())?;
        Ok(Self {
            conv1,
            bn1,
            relu: ReLU,
            conv2,
            bn2,
            downsample: build_downsample(src, path, inplanes, planes * Self::EXPANSION, stride)?,
        })
    }

    /// The shortcut, when the block changes shape.
    pub fn downsample(&self) -> Option<&Sequential<T>> {
        self.downsample.as_ref()
    }
}

impl<T: Element> Module<T> for BasicBlock<T> {
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        let out = conv_then_batch_norm(tape, "conv1", &self.conv1, "bn1", &self.bn1, x)?;
        let out = run_child_owned(tape, "relu", &self.relu, out)?;
        let out = conv_then_batch_norm(tape, "conv2", &self.conv2, "bn2", &self.bn2, &out)?;
        residual(tape, &self.relu, self.downsample.as_ref(), x, out)
    }

    fn submodule_paths(&self, prefix: &str, out: &mut Vec<String>) {
        child_paths::<T, _>(prefix, "conv1", &self.conv1, out);
        child_paths::<T, _>(prefix, "bn1", &self.bn1, out);
        child_paths::<T, _>(prefix, "relu", &self.relu, out);
        child_paths::<T, _>(prefix, "conv2", &self.conv2, out);
        child_paths::<T, _>(prefix, "bn2", &self.bn2, out);
        if let Some(ds) = &self.downsample {
            child_paths::<T, _>(prefix, "downsample", ds, out);
        }
    }

    fn named_tensors<'a>(&'a self, prefix: &str, out: &mut Vec<NamedTensor<'a, T>>) {
        self.conv1.named_tensors(&join_path(prefix, "conv1"), out);
        self.bn1.named_tensors(&join_path(prefix, "bn1"), out);
        self.conv2.named_tensors(&join_path(prefix, "conv2"), out);
        self.bn2.named_tensors(&join_path(prefix, "bn2"), out);
        if let Some(ds) = &self.downsample {
            ds.named_tensors(&join_path(prefix, "downsample"), out);
        }
    }

    fn trainable_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut Arc<Tensor<T>>)>,
    ) {
        self.conv1.trainable_mut(&join_path(prefix, "conv1"), out);
        self.conv2.trainable_mut(&join_path(prefix, "conv2"), out);
        if let Some(ds) = &mut self.downsample {
            ds.trainable_mut(&join_path(prefix, "downsample"), out);
        }
    }
    fn batch_norms_after_convs_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut BatchNorm2d<T>)>,
    ) {
        out.push((join_path(prefix, "conv1"), &mut self.bn1));
        out.push((join_path(prefix, "conv2"), &mut self.bn2));
        if let Some(ds) = &mut self.downsample {
            ds.batch_norms_after_convs_mut(&join_path(prefix, "downsample"), out);
        }
    }
}

/// torchvision's `Bottleneck` (expansion 4, stride on the 3x3 conv): `conv1`
/// (1x1), `bn1`, `relu`, `conv2` (3x3, stride), `bn2`, `relu`, `conv3` (1x1),
/// `bn3`, optional `downsample`, residual sum, `relu`.
#[derive(Clone, Debug)]
pub struct Bottleneck<T> {
    conv1: Conv2d<T>,
    bn1: BatchNorm2d<T>,
    conv2: Conv2d<T>,
    bn2: BatchNorm2d<T>,
    conv3: Conv2d<T>,
    bn3: BatchNorm2d<T>,
    relu: ReLU,
    downsample: Option<Sequential<T>>,
}

impl<T: Element> Bottleneck<T> {
    /// Output channels per `planes`.
    pub const EXPANSION: usize = 4;

    /// Builds the block `path`: `inplanes -> planes * 4`, stride on the 3x3 conv and the shortcut.
    pub(crate) fn build(
        src: &mut dyn WeightSource<T>,
        path: &str,
        inplanes: usize,
        planes: usize,
        stride: usize,
    ) -> Result<Self> {
        let out = planes * Self::EXPANSION;
        let spec1 = ConvSpec::new(inplanes, planes, 1);
        let (conv1, bn1) = numbered_pair(src, path, 1, spec1.no_bias())?;
        let spec2 = ConvSpec::new(planes, planes, 3).stride(stride).padding(1);
        let (conv2, bn2) = numbered_pair(src, path, 2, spec2.no_bias())?;
        let spec3 = ConvSpec::new(planes, out, 1);
        let (conv3, bn3) = numbered_pair(src, path, 3, spec3.no_bias())?;
        Ok(Self {
            conv1,
            bn1,
            conv2,
            bn2,
            conv3,
            bn3,
            relu: ReLU,
            downsample: build_downsample(src, path, inplanes, out, stride)?,
        })
    }

    /// The shortcut, when the block changes shape.
    pub fn downsample(&self) -> Option<&Sequential<T>> {
        self.downsample.as_ref()
    }
}

impl<T: Element> Module<T> for Bottleneck<T> {
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        let out = conv_then_batch_norm(tape, "conv1", &self.conv1, "bn1", &self.bn1, x)?;
        let out = run_child_owned(tape, "relu", &self.relu, out)?;
        let out = conv_then_batch_norm(tape, "conv2", &self.conv2, "bn2", &self.bn2, &out)?;
        let out = run_child_owned(tape, "relu", &self.relu, out)?;
        let out = conv_then_batch_norm(tape, "conv3", &self.conv3, "bn3", &self.bn3, &out)?;
        residual(tape, &self.relu, self.downsample.as_ref(), x, out)
    }

    fn submodule_paths(&self, prefix: &str, out: &mut Vec<String>) {
        child_paths::<T, _>(prefix, "conv1", &self.conv1, out);
        child_paths::<T, _>(prefix, "bn1", &self.bn1, out);
        child_paths::<T, _>(prefix, "relu", &self.relu, out);
        child_paths::<T, _>(prefix, "conv2", &self.conv2, out);
        child_paths::<T, _>(prefix, "bn2", &self.bn2, out);
        child_paths::<T, _>(prefix, "conv3", &self.conv3, out);
        child_paths::<T, _>(prefix, "bn3", &self.bn3, out);
        if let Some(ds) = &self.downsample {
            child_paths::<T, _>(prefix, "downsample", ds, out);
        }
    }

    fn named_tensors<'a>(&'a self, prefix: &str, out: &mut Vec<NamedTensor<'a, T>>) {
        self.conv1.named_tensors(&join_path(prefix, "conv1"), out);
        self.bn1.named_tensors(&join_path(prefix, "bn1"), out);
        self.conv2.named_tensors(&join_path(prefix, "conv2"), out);
        self.bn2.named_tensors(&join_path(prefix, "bn2"), out);
        self.conv3.named_tensors(&join_path(prefix, "conv3"), out);
        self.bn3.named_tensors(&join_path(prefix, "bn3"), out);
        if let Some(ds) = &self.downsample {
            ds.named_tensors(&join_path(prefix, "downsample"), out);
        }
    }

    fn trainable_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut Arc<Tensor<T>>)>,
    ) {
        self.conv1.trainable_mut(&join_path(prefix, "conv1"), out);
        self.conv2.trainable_mut(&join_path(prefix, "conv2"), out);
        self.conv3.trainable_mut(&join_path(prefix, "conv3"), out);
        if let Some(ds) = &mut self.downsample {
            ds.trainable_mut(&join_path(prefix, "downsample"), out);
        }
    }
    fn batch_norms_after_convs_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut BatchNorm2d<T>)>,
    ) {
        out.push((join_path(prefix, "conv1"), &mut self.bn1));
        out.push((join_path(prefix, "conv2"), &mut self.bn2));
        out.push((join_path(prefix, "conv3"), &mut self.bn3));
        if let Some(ds) = &mut self.downsample {
            ds.batch_norms_after_convs_mut(&join_path(prefix, "downsample"), out);
        }
    }
}
