//! torchvision's ResNet (stem, `layer1` ... `layer4`, `avgpool`, `fc`), stage widths configurable.

use crate::arch::{BlockKind, ResNetConfig};
use crate::default_layers::DefaultLayers;
use crate::error::Result;
use crate::layers::{build_conv_then_batch_norm, conv_then_batch_norm};
use crate::layers::{
    AdaptiveAvgPool2d, BasicBlock, BatchNorm2d, Bottleneck, Conv2d, ConvSpec, Flatten, Linear,
    MaxPool2d, ReLU, Sequential,
};
use crate::module::{child_paths, join_path, run_child, run_child_owned, Module, NamedTensor};
use crate::weights::WeightSource;
use sightline_autograd::{Tape, Var};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// The names of the four stages.
const STAGES: [&str; 4] = ["layer1", "layer2", "layer3", "layer4"];

/// torchvision's `ResNet`.
#[derive(Clone, Debug)]
pub struct ResNet<T> {
    conv1: Conv2d<T>,
    bn1: BatchNorm2d<T>,
    relu: ReLU,
    maxpool: MaxPool2d,
    stages: [Sequential<T>; 4],
    avgpool: AdaptiveAvgPool2d,
    fc: Linear<T>,
}

/// torchvision's `_make_layer`: `blocks` blocks of `planes`, the first with
/// `stride` (and a downsample when the shape changes). Updates `inplanes`.
fn make_layer<T: Element>(
    src: &mut dyn WeightSource<T>,
    path: &str,
    kind: BlockKind,
    inplanes: &mut usize,
    planes: usize,
    blocks: usize,
    stride: usize,
) -> Result<Sequential<T>> {
    let mut stage = Sequential::default();
    for i in 0..blocks {
        let block_path = join_path(path, &i.to_string());
        let s = if i == 0 { stride } else { 1 };
        match kind {
            BlockKind::Basic => {
                stage.push(BasicBlock::build(src, &block_path, *inplanes, planes, s)?)
            }
            BlockKind::Bottleneck => {
                stage.push(Bottleneck::build(src, &block_path, *inplanes, planes, s)?)
            }
        }
        *inplanes = planes * kind.expansion();
    }
    Ok(stage)
}

impl<T: Element> ResNet<T> {
    /// Builds a (validated) ResNet configuration from a weight source.
    pub(crate) fn build(src: &mut dyn WeightSource<T>, cfg: &ResNetConfig) -> Result<Self> {
        let w = &cfg.widths;
        let mut inplanes = w[0];
        let (conv1, bn1) = build_conv_then_batch_norm(
            src,
            "conv1",
            ConvSpec::new(3, inplanes, 7).stride(2).padding(3).no_bias(),
            "bn1",
        )?;
        let mut stage = |i: usize, src: &mut dyn WeightSource<T>| {
            let stride = if i == 0 { 1 } else { 2 };
            make_layer(
                src,
                STAGES[i],
                cfg.block,
                &mut inplanes,
                w[i],
                cfg.layers[i],
                stride,
            )
        };
        let stages = [
            stage(0, src)?,
            stage(1, src)?,
            stage(2, src)?,
            stage(3, src)?,
        ];
        let features = w[3] * cfg.block.expansion();
        Ok(Self {
            conv1,
            bn1,
            relu: ReLU,
            maxpool: MaxPool2d::new(3, 2, 1),
            stages,
            avgpool: AdaptiveAvgPool2d::new(1, 1),
            fc: Linear::build(src, "fc", features, cfg.num_classes)?,
        })
    }

    /// The default probe layers.
    pub(crate) fn default_layers() -> DefaultLayers {
        DefaultLayers {
            grad_cam: "layer4".to_string(),
            excitation: "layer3".to_string(),
            contrast: "avgpool".to_string(),
            classifier: "fc".to_string(),
        }
    }
}

impl<T: Element> Module<T> for ResNet<T> {
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        let mut x = conv_then_batch_norm(tape, "conv1", &self.conv1, "bn1", &self.bn1, x)?;
        x = run_child_owned(tape, "relu", &self.relu, x)?;
        x = run_child(tape, "maxpool", &self.maxpool, &x)?;
        for (name, stage) in STAGES.iter().zip(&self.stages) {
            x = run_child(tape, name, stage, &x)?;
        }
        x = run_child(tape, "avgpool", &self.avgpool, &x)?;
        x = Module::<T>::forward(&Flatten, tape, &x)?;
        run_child(tape, "fc", &self.fc, &x)
    }

    fn submodule_paths(&self, prefix: &str, out: &mut Vec<String>) {
        child_paths(prefix, "conv1", &self.conv1, out);
        child_paths(prefix, "bn1", &self.bn1, out);
        child_paths::<T, _>(prefix, "relu", &self.relu, out);
        child_paths::<T, _>(prefix, "maxpool", &self.maxpool, out);
        for (name, stage) in STAGES.iter().zip(&self.stages) {
            child_paths(prefix, name, stage, out);
        }
        child_paths::<T, _>(prefix, "avgpool", &self.avgpool, out);
        child_paths(prefix, "fc", &self.fc, out);
    }

    fn named_tensors<'a>(&'a self, prefix: &str, out: &mut Vec<NamedTensor<'a, T>>) {
        self.conv1.named_tensors(&join_path(prefix, "conv1"), out);
        self.bn1.named_tensors(&join_path(prefix, "bn1"), out);
        for (name, stage) in STAGES.iter().zip(&self.stages) {
            stage.named_tensors(&join_path(prefix, name), out);
        }
        self.fc.named_tensors(&join_path(prefix, "fc"), out);
    }

    fn trainable_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut Arc<Tensor<T>>)>,
    ) {
        self.conv1.trainable_mut(&join_path(prefix, "conv1"), out);
        for (name, stage) in STAGES.iter().zip(&mut self.stages) {
            stage.trainable_mut(&join_path(prefix, name), out);
        }
        self.fc.trainable_mut(&join_path(prefix, "fc"), out);
    }

    fn batch_norms_after_convs_mut<'a>(
        &'a mut self,
        prefix: &str,
        out: &mut Vec<(String, &'a mut crate::layers::BatchNorm2d<T>)>,
    ) {
        out.push((join_path(prefix, "conv1"), &mut self.bn1));
        for (name, stage) in STAGES.iter().zip(&mut self.stages) {
            stage.batch_norms_after_convs_mut(&join_path(prefix, name), out);
        }
    }
}
