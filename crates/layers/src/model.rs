//! [`Model`]: a classifier run on a tape: a preset architecture built from
//! random weights or a safetensors file, a graph read from an ONNX file, or
//! a network of the user's own ([`Classifier`]).

use crate::arch::Architecture;
use crate::canonize::BatchNormMerge;
use crate::default_layers::DefaultLayers;
use crate::error::{LayerError, Result};
use crate::graph::GraphNetwork;
use crate::models::Network;
use crate::module::{Module, NamedTensor, TensorRole};
use crate::weights::load::SafetensorsSource;
use crate::weights::random::RandomSource;
use crate::weights::save;
use sightline_autograd::{Retain, Tape, Var};
use sightline_tensor::{Element, KernelPolicy, Tensor};
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

/// A classifier of the user's own, written in Rust: its forward pass
/// records ops (built-in ones or the user's own [`sightline_autograd::Op`]s)
/// on the tape, each under its layer path ([`crate::run_child`] enters and
/// leaves a module's scope and registers its output), so that every method
/// runs on it as on a preset ([`Model::from_classifier`]).
pub trait Classifier<T: Element>: Send + Sync + Debug {
    /// Records the forward pass of `x` (N x C x H x W) and returns the
    /// logits (N x classes).
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>>;

    /// Every layer path that can be probed, in forward order.
    fn layer_paths(&self) -> Vec<String>;

    /// Number of classes.
    fn num_classes(&self) -> usize;

    /// Input channels (3 for images).
    fn channels(&self) -> usize {
        3
    }

    /// The layers the methods probe by default.
    fn default_layers(&self) -> DefaultLayers;
}

/// What a model is made of.
#[derive(Clone, Debug)]
enum Body<T> {
    /// A preset architecture with its layers.
    Preset {
        arch: Architecture,
        network: Box<Network<T>>,
    },
    /// A graph read from an ONNX file.
    Graph(Arc<GraphNetwork<T>>),
    /// A network of the user's own.
    Custom(Arc<dyn Classifier<T>>),
}

/// A classifier whose forward pass records on a [`Tape`] under PyTorch's
/// module paths: a torchvision-style preset (VGG, ResNet or AlexNet), a
/// graph read from ONNX (any torchvision family), or a [`Classifier`] of
/// the user's own.
///
/// The model carries a [`KernelPolicy`] ([`Model::with_kernels`]; the
/// default unless set): the tapes it makes itself ([`Model::logits`],
/// [`Model::layer_shapes`]) and the explainers made on it record under it.
#[derive(Clone, Debug)]
pub struct Model<T> {
    body: Body<T>,
    paths: Vec<String>,
    kernels: KernelPolicy,
}

impl<T: Element> Model<T> {
    fn new(arch: &Architecture, network: Network<T>) -> Self {
        let mut paths = Vec::new();
        network.submodule_paths("", &mut paths);
        Self {
            body: Body::Preset {
                arch: arch.clone(),
                network: Box::new(network),
            },
            paths,
            kernels: KernelPolicy::default(),
        }
    }

    /// The same model computing under `kernels` (Winograd or not, and which
    /// variant; the highest SIMD level): every tape the model or an
    /// explainer on it makes records its convolutions and max pools under
    /// it. The results agree with the default's to rounding.
    pub fn with_kernels(mut self, kernels: KernelPolicy) -> Self {
        self.kernels = kernels;
        self
    }

    /// A copy of the model with each batch norm that directly follows a
    /// convolution (except after the convolutions `except`) merged into it,
    /// leaving `leftover` of it: what [`crate::canonize::MergeBatchNorm`]
    /// makes. The copy shares the weights; the merged kernels are those the
    /// layers made when their weights were read.
    pub(crate) fn with_batch_norms_merged(
        &self,
        leftover: BatchNormMerge,
        except: &[String],
    ) -> Result<Self> {
        let mut out = self.clone();
        match &mut out.body {
            Body::Preset { network, .. } => {
                let mut pairs = Vec::new();
                network.batch_norms_after_convs_mut("", &mut pairs);
                for (conv, bn) in pairs {
                    if !except.contains(&conv) {
                        bn.set_merged(leftover)?;
                    }
                }
            }
            Body::Graph(graph) => {
                *graph = Arc::new(graph.with_batch_norms_merged(leftover, except)?);
            }
            Body::Custom(_) => {
                return Err(LayerError::Unsupported {
                    what: "merging batch norms".into(),
                    model: "a classifier of the user's own (merge them in its own code)".into(),
                })
            }
        }
        Ok(out)
    }

    /// A copy of the model whose skip connections are summed by explicit
    /// residual sums ([`sightline_autograd::OpKind::RESIDUAL_SUM`]), what
    /// [`crate::canonize::ResNetCanonizer`] makes: the presets sum them so
    /// already; an ONNX graph records each `Add` of two computed values of
    /// one shape so.
    pub(crate) fn with_explicit_residual_sums(&self) -> Result<Self> {
        let mut out = self.clone();
        match &mut out.body {
            Body::Preset { .. } => {}
            Body::Graph(graph) => *graph = Arc::new(graph.with_residual_sums()),
            Body::Custom(_) => {
                return Err(LayerError::Unsupported {
                    what: "making residual sums explicit".into(),
                    model: "a classifier of the user's own (record them with residual_sum)".into(),
                })
            }
        }
        Ok(out)
    }

    /// The kernel policy of the tapes this model makes (see
    /// [`Model::with_kernels`]).
    pub fn kernels(&self) -> KernelPolicy {
        self.kernels
    }

    /// Reads a model from an ONNX file (either PyTorch exporter; external
    /// weights `MODEL.onnx.data` beside it): see `docs/models.md` for the
    /// supported ops. Layer paths are the PyTorch module paths the exporter
    /// recorded.
    pub fn from_onnx(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::from_graph(GraphNetwork::load(path)?))
    }

    /// [`Model::from_onnx`] from the file's bytes; `dir` is the folder
    /// external data is read from (`None`: external data is an error).
    pub fn from_onnx_bytes(bytes: &[u8], dir: Option<&Path>) -> Result<Self> {
        Ok(Self::from_graph(GraphNetwork::from_bytes(bytes, dir)?))
    }

    fn from_graph(graph: GraphNetwork<T>) -> Self {
        let paths = graph.layer_paths().to_vec();
        Self {
            body: Body::Graph(Arc::new(graph)),
            paths,
            kernels: KernelPolicy::default(),
        }
    }

    /// A model of the user's own network.
    pub fn from_classifier(classifier: Arc<dyn Classifier<T>>) -> Self {
        let paths = classifier.layer_paths();
        Self {
            body: Body::Custom(classifier),
            paths,
            kernels: KernelPolicy::default(),
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
        // Mapped, not read: the weights are converted tensor by tensor from
        // the file's pages, each tensor's pages released once converted, so
        // the peak is the weights plus one tensor.
        let map = crate::weights::file::map_regular_file(path)?;
        arch.validate()?;
        Self::load(
            arch,
            SafetensorsSource::parse_mapped(&map, &path.display().to_string())?,
        )
    }

    /// Loads the weights of `arch` from safetensors bytes. Every tensor the
    /// architecture needs must be present with its shape, as F32, F64, F16 or
    /// BF16 (converted to `T`) and finite; batch norms' int64
    /// `num_batches_tracked` are accepted and ignored; any other tensor is an
    /// error ([`LayerError::UnexpectedWeight`]), as is a missing one, a wrong
    /// shape or dtype, or bytes that are not safetensors.
    pub fn from_safetensors_bytes(arch: &Architecture, bytes: &[u8]) -> Result<Self> {
        arch.validate()?;
        Self::load(arch, SafetensorsSource::parse(bytes, "<memory>")?)
    }

    /// Builds the network of a validated `arch` from `src`.
    fn load(arch: &Architecture, mut src: SafetensorsSource) -> Result<Self> {
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
    ///
    /// The ops run under the tape's kernel policy ([`Tape::kernels`]), not
    /// the model's: make the tape `with_kernels(model.kernels())` for the
    /// model's.
    pub fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        check_input(x.value(), self.channels())?;
        match &self.body {
            Body::Preset { network, .. } => network.forward(tape, x),
            Body::Graph(g) => g.forward(tape, x),
            Body::Custom(c) => c.forward(tape, x),
        }
    }

    /// The logits of `x`, from a forward pass on a [`Retain::Nothing`] tape
    /// under the model's kernel policy (merge the batch norms first,
    /// [`crate::canonize::MergeBatchNorm::exact`], for the fastest pass).
    pub fn logits(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        let mut tape = Tape::new(Retain::Nothing).with_kernels(self.kernels);
        let input = tape.input(x.clone());
        let y = self.forward(&mut tape, &input)?;
        Ok(y.value().clone())
    }

    /// The preset architecture, for a preset model.
    pub fn architecture(&self) -> Option<&Architecture> {
        match &self.body {
            Body::Preset { arch, .. } => Some(arch),
            _ => None,
        }
    }

    /// The network (the tree of layers), for a preset model.
    pub fn network(&self) -> Option<&Network<T>> {
        match &self.body {
            Body::Preset { network, .. } => Some(network),
            _ => None,
        }
    }

    /// The graph, for a model read from ONNX.
    pub fn graph(&self) -> Option<&GraphNetwork<T>> {
        match &self.body {
            Body::Graph(g) => Some(g),
            _ => None,
        }
    }

    /// What the model is, for messages: the preset's name, the ONNX file,
    /// or the user's network.
    pub fn describe(&self) -> String {
        match &self.body {
            Body::Preset { arch, .. } => arch.kind().to_string(),
            Body::Graph(g) => g.origin().to_string(),
            Body::Custom(_) => "custom".to_string(),
        }
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        match &self.body {
            Body::Preset { arch, .. } => arch.num_classes(),
            Body::Graph(g) => g.num_classes(),
            Body::Custom(c) => c.num_classes(),
        }
    }

    /// Input channels the model takes (3 for the presets).
    pub fn channels(&self) -> usize {
        match &self.body {
            Body::Preset { .. } => 3,
            Body::Graph(g) => g.channels(),
            Body::Custom(c) => c.channels(),
        }
    }

    /// Every module path (as `named_modules()` lists them, without the root):
    /// in forward order, each container before its children, a reused module
    /// (a block's `relu`) once.
    pub fn layer_paths(&self) -> Vec<String> {
        self.paths.clone()
    }

    /// Every probeable layer path with the shape of its output for an input
    /// of `input_shape`: planned without computing for a graph, from a
    /// forward pass on zeros otherwise.
    pub fn layer_shapes(&self, input_shape: &[usize]) -> Result<Vec<(String, Vec<usize>)>> {
        if let Body::Graph(g) = &self.body {
            return g.layer_shapes(input_shape);
        }
        let mut tape = Tape::new(Retain::Nothing).with_kernels(self.kernels);
        let x = tape.input(Tensor::zeros(input_shape.to_vec()));
        self.forward(&mut tape, &x)?;
        let mut out = Vec::new();
        for path in tape.layer_names() {
            if let Some(o) = tape.layer_output(path) {
                out.push((path.clone(), tape.var_shape(o.id)?.to_vec()));
            }
        }
        Ok(out)
    }

    /// Whether `path` names a module of this model.
    pub fn has_layer(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p == path)
    }

    /// The layers saliency methods probe by default (see [`DefaultLayers`]).
    pub fn default_layers(&self) -> DefaultLayers {
        match &self.body {
            Body::Preset { network, .. } => network.default_layers(),
            Body::Graph(g) => g.default_layers(),
            Body::Custom(c) => c.default_layers(),
        }
    }

    /// Every tensor (parameters and buffers) under its `state_dict` name, in forward order.
    /// (For a graph or a custom network: none; their weights are their own.)
    pub fn named_tensors(&self) -> Vec<NamedTensor<'_, T>> {
        let mut out = Vec::new();
        if let Body::Preset { network, .. } = &self.body {
            network.named_tensors("", &mut out);
        }
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
    /// (For a graph or a custom network: none.)
    pub fn parameters_mut(&mut self) -> Vec<(String, &mut Arc<Tensor<T>>)> {
        let mut out = Vec::new();
        if let Body::Preset { network, .. } = &mut self.body {
            network.trainable_mut("", &mut out);
        }
        out
    }

    /// The number of scalars in [`Model::parameters`] (PyTorch's parameter count).
    pub fn num_parameters(&self) -> usize {
        self.parameters().iter().map(|(_, t)| t.len()).sum()
    }
}

/// Checks that a model input is N x C x H x W with no zero dimension and finite values.
fn check_input<T: Element>(x: &Tensor<T>, channels: usize) -> Result<()> {
    let ok = matches!(*x.shape(), [n, c, h, w] if n > 0 && c == channels && h > 0 && w > 0);
    if !ok {
        return Err(LayerError::InputShape {
            expected: format!("N x {channels} x H x W with N, H, W >= 1"),
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
