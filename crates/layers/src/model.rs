//! [`Model`]: a network with its architecture, built from random weights or a
//! safetensors file, run on a tape.

use crate::arch::Architecture;
use crate::default_layers::DefaultLayers;
use crate::error::{LayerError, Result};
use crate::models::Network;
use crate::module::{Module, NamedTensor, TensorRole};
use crate::weights::load::SafetensorsSource;
use crate::weights::random::RandomSource;
use crate::weights::save;
use sightline_autograd::{Retain, Tape, Var};
use sightline_tensor::{Element, Tensor};
use std::path::Path;
use std::sync::Arc;

/// A torchvision-style classifier (VGG, ResNet or AlexNet) whose forward pass
/// records on a [`Tape`] under torchvision's module paths.
#[derive(Clone, Debug)]
pub struct Model<T> {
    arch: Architecture,
    network: Network<T>,
    paths: Vec<String>,
}

impl<T: Element> Model<T> {
    fn new(arch: &Architecture, network: Network<T>) -> Self {
        let mut paths = Vec::new();
        network.submodule_paths("", &mut paths);
        Self {
            arch: arch.clone(),
            network,
            paths,
        }
    }

    /// A model with deterministic random weights: convolution weights normal
    /// with standard deviation `sqrt(2 / fan_out)` and linear weights
    /// `sqrt(2 / fan_in)` (Kaiming, as torchvision), zero biases, batch norms
    /// the identity (weight 1, bias 0, mean 0, variance 1). Each tensor comes
    /// from its own ChaCha8 stream seeded by `seed` and its name.
    pub fn random(arch: &Architecture, seed: u64) -> Result<Self> {
        arch.validate()?;
        let network = Network::build(arch, &mut RandomSource::new(seed))?;
        Ok(Self::new(arch, network))
    }

    /// Loads the weights of `arch` from a safetensors file with torchvision
    /// `state_dict` names (see [`Model::from_safetensors_bytes`]).
    pub fn from_safetensors(arch: &Architecture, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| LayerError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::load(arch, &bytes, &path.display().to_string())
    }

    /// Loads the weights of `arch` from safetensors bytes. Every tensor the
    /// architecture needs must be present with its shape, as F32, F64, F16 or
    /// BF16 (converted to `T`) and finite; batch norms' int64
    /// `num_batches_tracked` are accepted and ignored; any other tensor is an
    /// error ([`LayerError::UnexpectedWeight`]), as is a missing one, a wrong
    /// shape or dtype, or bytes that are not safetensors.
    pub fn from_safetensors_bytes(arch: &Architecture, bytes: &[u8]) -> Result<Self> {
        Self::load(arch, bytes, "<memory>")
    }

    fn load(arch: &Architecture, bytes: &[u8], origin: &str) -> Result<Self> {
        arch.validate()?;
        let mut src = SafetensorsSource::parse(bytes, origin)?;
        let network = Network::build(arch, &mut src)?;
        src.finish()?;
        Ok(Self::new(arch, network))
    }

    /// Every tensor (parameters and buffers) as float32 safetensors bytes, under
    /// torchvision's names, with a zero int64 `num_batches_tracked` per batch
    /// norm so that PyTorch's strict `load_state_dict` accepts them.
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>> {
        let tensors = self.named_tensors();
        let counters: Vec<String> = tensors
            .iter()
            .filter_map(|t| t.name.strip_suffix(".running_mean"))
            .map(|layer| format!("{layer}.num_batches_tracked"))
            .collect();
        save::to_bytes(&tensors, &counters)
    }

    /// Writes [`Model::to_safetensors_bytes`] to `path`.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_safetensors_bytes()?;
        std::fs::write(path, bytes).map_err(|e| LayerError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Records the forward pass of `x` (N x 3 x H x W, finite) on `tape` and
    /// returns the logits (N x classes). Each module records inside its own
    /// scope and registers its output under its torchvision path. An input too
    /// small for the architecture fails with [`LayerError::InputTooSmall`]
    /// naming the layer.
    pub fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        check_input(x.value())?;
        self.network.forward(tape, x)
    }

    /// The logits of `x`, from a forward pass on a [`Retain::Nothing`] tape
    /// that folds batch norms into the convolutions before them.
    pub fn logits(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        check_input(x)?;
        let mut tape = Tape::new(Retain::Nothing).folding_batch_norm();
        let input = tape.input(x.clone());
        let y = self.network.forward(&mut tape, &input)?;
        Ok(y.value().clone())
    }

    /// The architecture.
    pub fn architecture(&self) -> &Architecture {
        &self.arch
    }

    /// The network (the tree of layers).
    pub fn network(&self) -> &Network<T> {
        &self.network
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.arch.num_classes()
    }

    /// Every module path (as `named_modules()` lists them, without the root):
    /// in forward order, each container before its children, a reused module
    /// (a block's `relu`) once.
    pub fn layer_paths(&self) -> Vec<String> {
        self.paths.clone()
    }

    /// Whether `path` names a module of this model.
    pub fn has_layer(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p == path)
    }

    /// The layers saliency methods probe by default (see [`DefaultLayers`]).
    pub fn default_layers(&self) -> DefaultLayers {
        self.network.default_layers()
    }

    /// Every tensor (parameters and buffers) under its `state_dict` name, in forward order.
    pub fn named_tensors(&self) -> Vec<NamedTensor<'_, T>> {
        let mut out = Vec::new();
        self.network.named_tensors("", &mut out);
        out
    }

    /// PyTorch's `named_parameters()`: convolution and linear weights and
    /// biases, and batch-norm weights and biases (not the running statistics).
    /// Batch norms are frozen in sightline, so [`Model::parameters_mut`] lists
    /// fewer.
    pub fn parameters(&self) -> Vec<(String, &Arc<Tensor<T>>)> {
        self.named_tensors()
            .into_iter()
            .filter(|t| t.role != TensorRole::Buffer)
            .map(|t| (t.name, t.tensor))
            .collect()
    }

    /// The trainable parameters (convolution and linear weights and biases):
    /// the names a training tape's `params()` reports after a forward pass.
    /// Batch norms are frozen: their weight, bias and statistics are folded
    /// into a fixed affine map when the model is built.
    pub fn parameters_mut(&mut self) -> Vec<(String, &mut Arc<Tensor<T>>)> {
        let mut out = Vec::new();
        self.network.trainable_mut("", &mut out);
        out
    }

    /// The number of scalars in [`Model::parameters`] (PyTorch's parameter count).
    pub fn num_parameters(&self) -> usize {
        self.parameters().iter().map(|(_, t)| t.len()).sum()
    }
}

/// Checks that a model input is N x 3 x H x W with no zero dimension and finite values.
fn check_input<T: Element>(x: &Tensor<T>) -> Result<()> {
    let ok = matches!(*x.shape(), [n, 3, h, w] if n > 0 && h > 0 && w > 0);
    if !ok {
        return Err(LayerError::InputShape {
            expected: "N x 3 x H x W with N, H, W >= 1".to_string(),
            found: x.shape().to_vec(),
        });
    }
    if x.has_non_finite() {
        return Err(LayerError::NonFinite {
            what: "input".to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::ZeroSource;

    fn zeros(name: &str) -> Model<f32> {
        let arch = Architecture::preset(name).unwrap();
        let network = Network::build(&arch, &mut ZeroSource).unwrap();
        Model::new(&arch, network)
    }

    #[test]
    fn parameter_counts_match_torchvision() {
        for (name, count) in [
            ("vgg16", 138_357_544),
            ("vgg16_bn", 138_365_992),
            ("vgg11", 132_863_336),
            ("vgg19", 143_667_240),
            ("resnet18", 11_689_512),
            ("resnet34", 21_797_672),
            ("resnet50", 25_557_032),
            ("resnet101", 44_549_160),
            ("resnet152", 60_192_808),
            ("alexnet", 61_100_840),
        ] {
            assert_eq!(zeros(name).num_parameters(), count, "{name}");
        }
    }

    #[test]
    fn trainable_parameters_leave_batch_norm_out() {
        let mut m = zeros("resnet18");
        let all: Vec<String> = m.parameters().into_iter().map(|(n, _)| n).collect();
        assert_eq!(all.len(), 62);
        assert_eq!(all[..3], ["conv1.weight", "bn1.weight", "bn1.bias"]);
        assert_eq!(all.last().map(String::as_str), Some("fc.bias"));
        let trainable: Vec<String> = m.parameters_mut().into_iter().map(|(n, _)| n).collect();
        assert_eq!(trainable.len(), 22); // 20 convolutions (3 downsamples) + fc weight and bias
        assert!(trainable
            .iter()
            .all(|n| !n.contains("bn") && !n.ends_with("downsample.1.weight")));
        assert!(trainable.contains(&"layer2.0.downsample.0.weight".to_string()));
        let buffers = m
            .named_tensors()
            .iter()
            .filter(|t| t.role == TensorRole::Buffer)
            .count();
        assert_eq!(buffers, 2 * 20);
    }

    #[test]
    fn layer_paths_follow_torchvision() {
        let m = zeros("vgg16");
        let p = m.layer_paths();
        assert_eq!(p[..3], ["features", "features.0", "features.1"]);
        assert_eq!(p.len(), 1 + 31 + 1 + 1 + 7);
        assert!(m.has_layer("features.30") && !m.has_layer("features.31"));
        assert_eq!(p[32..34], ["avgpool", "classifier"]);

        let r = zeros("resnet50");
        let p = r.layer_paths();
        assert_eq!(
            p[..6],
            ["conv1", "bn1", "relu", "maxpool", "layer1", "layer1.0"]
        );
        let block: Vec<&str> = p
            .iter()
            .filter_map(|s| s.strip_prefix("layer1.0."))
            .collect();
        assert_eq!(
            block,
            [
                "conv1",
                "bn1",
                "relu",
                "conv2",
                "bn2",
                "conv3",
                "bn3",
                "downsample",
                "downsample.0",
                "downsample.1"
            ]
        );
        assert!(
            r.has_layer("layer4.2.conv3") && r.has_layer("layer3.5") && !r.has_layer("layer3.6")
        );
        assert_eq!(p[p.len() - 2..], ["avgpool", "fc"]);
        // No block of resnet18's layer1 needs a downsample.
        let r18 = zeros("resnet18");
        assert!(!r18.has_layer("layer1.0.downsample") && r18.has_layer("layer2.0.downsample.1"));
    }

    #[test]
    fn state_dict_names_match_torchvision() {
        let m = zeros("vgg16_bn");
        let names: Vec<String> = m.named_tensors().into_iter().map(|t| t.name).collect();
        assert_eq!(
            names[..6],
            [
                "features.0.weight",
                "features.0.bias",
                "features.1.weight",
                "features.1.bias",
                "features.1.running_mean",
                "features.1.running_var"
            ]
        );
        assert!(names.contains(&"features.41.running_var".to_string()));
        assert!(names.contains(&"classifier.6.bias".to_string()));
    }
}
