//! Architectures: the configuration of a torchvision-style VGG, ResNet or
//! AlexNet, as found in a fixture manifest, and the torchvision presets.

mod presets;
mod sizes;
mod vgg_item;

pub use presets::PRESET_NAMES;
pub use sizes::{MAX_BLOCKS, MAX_PARAMETERS};
pub use vgg_item::VggItem;

use crate::error::{LayerError, Result};
use serde::{Deserialize, Serialize};

/// A model architecture. Deserialises from the manifest's `architecture`
/// objects, tagged by `kind`:
///
/// - `{"kind":"vgg","cfg":[8,"M",16,"M"],"batch_norm":false,"avgpool":[2,2],"hidden":32,"num_classes":10}`
/// - `{"kind":"resnet","block":"basic","layers":[1,1,1,1],"widths":[8,16,32,64],"num_classes":10}`
/// - `{"kind":"alexnet","num_classes":1000}`
///
/// Fields left out take torchvision's values (`batch_norm` false, `avgpool`
/// 7x7, `hidden` 4096, `widths` 64, 128, 256, 512, `num_classes` 1000).
/// Deserialising does not validate; [`Architecture::from_json`] and every
/// model constructor do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Architecture {
    /// torchvision's VGG with configurable widths.
    Vgg(VggConfig),
    /// torchvision's ResNet with configurable stage widths.
    ResNet(ResNetConfig),
    /// torchvision's AlexNet.
    AlexNet(AlexNetConfig),
}

/// A VGG: `features` from `cfg`, `avgpool`, and a three-layer `classifier`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VggConfig {
    /// torchvision's `cfg` list: channel counts and `"M"` (max pool).
    pub cfg: Vec<VggItem>,
    /// Whether each convolution is followed by a batch norm.
    #[serde(default)]
    pub batch_norm: bool,
    /// Output height and width of the adaptive average pool.
    #[serde(default = "default_avgpool")]
    pub avgpool: [usize; 2],
    /// Width of the two hidden linear layers.
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    /// Number of classes.
    #[serde(default = "default_classes")]
    pub num_classes: usize,
}

/// The residual block of a ResNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockKind {
    /// Two 3x3 convolutions (ResNet-18, -34), expansion 1.
    Basic,
    /// 1x1, 3x3, 1x1 convolutions (ResNet-50 and deeper), expansion 4.
    Bottleneck,
}

impl BlockKind {
    /// Output channels per `planes`.
    pub fn expansion(self) -> usize {
        match self {
            Self::Basic => 1,
            Self::Bottleneck => 4,
        }
    }
}

/// A ResNet: torchvision's stem, four stages of blocks, `avgpool`, `fc`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// The block type.
    pub block: BlockKind,
    /// Number of blocks in each of the four stages.
    pub layers: Vec<usize>,
    /// `planes` of each of the four stages (the stem has `widths[0]` channels).
    #[serde(default = "default_widths")]
    pub widths: Vec<usize>,
    /// Number of classes.
    #[serde(default = "default_classes")]
    pub num_classes: usize,
}

/// torchvision's AlexNet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlexNetConfig {
    /// Number of classes.
    #[serde(default = "default_classes")]
    pub num_classes: usize,
}

fn default_avgpool() -> [usize; 2] {
    [7, 7]
}

fn default_hidden() -> usize {
    4096
}

fn default_widths() -> Vec<usize> {
    vec![64, 128, 256, 512]
}

fn default_classes() -> usize {
    1000
}

impl Architecture {
    /// Parses and validates an architecture from JSON text.
    pub fn from_json(text: &str) -> Result<Self> {
        let arch: Self = serde_json::from_str(text)
            .map_err(|e| LayerError::arch(format!("cannot parse architecture JSON: {e}")))?;
        arch.validate()?;
        Ok(arch)
    }

    /// Parses and validates an architecture from a JSON value (the manifest's `architecture` object).
    pub fn from_json_value(value: &serde_json::Value) -> Result<Self> {
        let arch = Self::deserialize(value)
            .map_err(|e| LayerError::arch(format!("cannot parse architecture JSON: {e}")))?;
        arch.validate()?;
        Ok(arch)
    }

    /// The architecture as JSON text (the manifest's form).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A torchvision preset by name (see [`PRESET_NAMES`]): `vgg11` ... `vgg19`,
    /// `vgg11_bn` ... `vgg19_bn`, `resnet18` ... `resnet152`, `alexnet`.
    pub fn preset(name: &str) -> Result<Self> {
        presets::preset(name).ok_or_else(|| LayerError::UnknownPreset {
            name: name.to_string(),
            known: PRESET_NAMES.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// The names [`Architecture::preset`] knows.
    pub fn preset_names() -> &'static [&'static str] {
        PRESET_NAMES
    }

    /// The family: `"vgg"`, `"resnet"` or `"alexnet"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Vgg(_) => "vgg",
            Self::ResNet(_) => "resnet",
            Self::AlexNet(_) => "alexnet",
        }
    }

    /// Number of classes (outputs of the last layer).
    pub fn num_classes(&self) -> usize {
        match self {
            Self::Vgg(c) => c.num_classes,
            Self::ResNet(c) => c.num_classes,
            Self::AlexNet(c) => c.num_classes,
        }
    }

    /// Checks the configuration: a non-empty VGG `cfg` with at least one
    /// convolution and no zero width, four ResNet stages with at least one
    /// block (at most [`MAX_BLOCKS`]) and a positive width each, positive
    /// pool sizes, hidden widths and class counts; and sizes, with checked
    /// arithmetic: every weight's shape, a VGG's flattened features
    /// (channels x avgpool) and the total parameter count (at most
    /// [`MAX_PARAMETERS`]), so that no size a model computes from the
    /// configuration can overflow.
    pub fn validate(&self) -> Result<()> {
        if self.num_classes() == 0 {
            return Err(LayerError::arch("num_classes must be positive"));
        }
        match self {
            Self::Vgg(c) => c.validate()?,
            Self::ResNet(c) => c.validate()?,
            Self::AlexNet(_) => {}
        }
        self.parameter_count().map(|_| ())
    }

    /// The number of parameters (weights, biases, batch-norm scales and
    /// shifts; not the running statistics), as torchvision counts them, or
    /// the error naming the first weight whose size overflows or takes the
    /// total beyond [`MAX_PARAMETERS`].
    pub fn parameter_count(&self) -> Result<usize> {
        sizes::parameter_count(self)
    }
}

impl VggConfig {
    fn validate(&self) -> Result<()> {
        if self.cfg.is_empty() {
            return Err(LayerError::arch("VGG cfg is empty"));
        }
        if !self.cfg.iter().any(|i| matches!(i, VggItem::Conv(_))) {
            return Err(LayerError::arch("VGG cfg has no convolution (only \"M\")"));
        }
        if let Some(i) = self.cfg.iter().position(|i| *i == VggItem::Conv(0)) {
            return Err(LayerError::arch(format!(
                "VGG cfg entry {i} has 0 channels"
            )));
        }
        if self.avgpool.contains(&0) {
            return Err(LayerError::arch(format!(
                "VGG avgpool must be positive, got {:?}",
                self.avgpool
            )));
        }
        if self.hidden == 0 {
            return Err(LayerError::arch("VGG hidden width must be positive"));
        }
        Ok(())
    }

    /// Output channels of the last convolution.
    pub(crate) fn last_channels(&self) -> usize {
        self.cfg
            .iter()
            .rev()
            .find_map(|i| match i {
                VggItem::Conv(c) => Some(*c),
                VggItem::MaxPool => None,
            })
            .unwrap_or(0)
    }
}

impl ResNetConfig {
    fn validate(&self) -> Result<()> {
        if self.layers.len() != 4 {
            return Err(LayerError::arch(format!(
                "ResNet layers must list 4 stages, got {} ({:?})",
                self.layers.len(),
                self.layers
            )));
        }
        if self.widths.len() != 4 {
            return Err(LayerError::arch(format!(
                "ResNet widths must list 4 stages, got {} ({:?})",
                self.widths.len(),
                self.widths
            )));
        }
        if let Some(i) = self.layers.iter().position(|&n| n == 0) {
            return Err(LayerError::arch(format!(
                "ResNet stage layer{} has 0 blocks",
                i + 1
            )));
        }
        if let Some(i) = self.widths.iter().position(|&n| n == 0) {
            return Err(LayerError::arch(format!(
                "ResNet stage layer{} has width 0",
                i + 1
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_manifest_forms() {
        let vgg = Architecture::from_json(
            r#"{"kind":"vgg","cfg":[8,"M",16,"M",32,32,"M"],"batch_norm":false,"avgpool":[2,2],"hidden":32,"num_classes":10}"#,
        )
        .unwrap();
        let Architecture::Vgg(c) = &vgg else {
            panic!("{vgg:?}")
        };
        assert_eq!(
            c.cfg[..3],
            [VggItem::Conv(8), VggItem::MaxPool, VggItem::Conv(16)]
        );
        assert_eq!(
            (c.avgpool, c.hidden, c.num_classes, c.batch_norm),
            ([2, 2], 32, 10, false)
        );
        assert_eq!(c.last_channels(), 32);

        let resnet = Architecture::from_json(
            r#"{"kind":"resnet","block":"bottleneck","layers":[1,2,1,1],"widths":[4,8,8,16],"num_classes":11}"#,
        )
        .unwrap();
        assert_eq!(
            resnet,
            Architecture::ResNet(ResNetConfig {
                block: BlockKind::Bottleneck,
                layers: vec![1, 2, 1, 1],
                widths: vec![4, 8, 8, 16],
                num_classes: 11
            })
        );
        assert_eq!(resnet.kind(), "resnet");
        assert_eq!(resnet.num_classes(), 11);

        let alex = Architecture::from_json(r#"{"kind":"alexnet","num_classes":1000}"#).unwrap();
        assert_eq!(alex, Architecture::preset("alexnet").unwrap());
        // Defaults are torchvision's.
        assert_eq!(
            Architecture::from_json(r#"{"kind":"alexnet"}"#).unwrap(),
            alex
        );
        let r50 =
            Architecture::from_json(r#"{"kind":"resnet","block":"bottleneck","layers":[3,4,6,3]}"#)
                .unwrap();
        assert_eq!(r50, Architecture::preset("resnet50").unwrap());
    }

    #[test]
    fn round_trips_through_json() {
        for name in PRESET_NAMES {
            let a = Architecture::preset(name).unwrap();
            assert_eq!(Architecture::from_json(&a.to_json()).unwrap(), a, "{name}");
        }
        let v = serde_json::json!({"kind":"vgg","cfg":[8,"M"],"batch_norm":true,"avgpool":[1,1],"hidden":4,"num_classes":2});
        let a = Architecture::from_json_value(&v).unwrap();
        assert_eq!(serde_json::to_value(&a).unwrap(), v);
    }

    fn arch_err(json: &str) -> String {
        match Architecture::from_json(json) {
            Err(LayerError::Architecture { message }) => message,
            other => panic!("{json}: expected an Architecture error, got {other:?}"),
        }
    }

    #[test]
    fn rejects_invalid_configurations() {
        assert!(arch_err(r#"{"kind":"vgg","cfg":[]}"#).contains("empty"));
        assert!(arch_err(r#"{"kind":"vgg","cfg":["M","M"]}"#).contains("no convolution"));
        assert!(arch_err(r#"{"kind":"vgg","cfg":[8,0,"M"]}"#).contains("entry 1 has 0 channels"));
        assert!(arch_err(r#"{"kind":"vgg","cfg":[8,"X"]}"#).contains("\"X\""));
        assert!(arch_err(r#"{"kind":"vgg","cfg":[8,-3]}"#).contains("negative"));
        assert!(arch_err(r#"{"kind":"vgg","cfg":[8],"avgpool":[0,2]}"#).contains("avgpool"));
        assert!(arch_err(r#"{"kind":"vgg","cfg":[8],"hidden":0}"#).contains("hidden"));
        assert!(arch_err(r#"{"kind":"vgg","cfg":[8],"num_classes":0}"#).contains("num_classes"));
        assert!(arch_err(r#"{"kind":"vgg","cfg":[8],"batchnorm":true}"#).contains("batchnorm"));
        assert!(
            arch_err(r#"{"kind":"resnet","block":"basic","layers":[1,1,1]}"#)
                .contains("4 stages, got 3")
        );
        assert!(arch_err(
            r#"{"kind":"resnet","block":"basic","layers":[1,1,1,1],"widths":[8,16,32]}"#
        )
        .contains("widths"));
        assert!(
            arch_err(r#"{"kind":"resnet","block":"basic","layers":[1,0,1,1]}"#)
                .contains("layer2 has 0 blocks")
        );
        assert!(arch_err(
            r#"{"kind":"resnet","block":"basic","layers":[1,1,1,1],"widths":[8,16,0,64]}"#
        )
        .contains("layer3 has width 0"));
        assert!(
            arch_err(r#"{"kind":"resnet","block":"wide","layers":[1,1,1,1]}"#).contains("wide")
        );
        assert!(arch_err(r#"{"kind":"densenet"}"#).contains("densenet"));
        assert!(
            arch_err(r#"{"kind":"vgg","cfg":[1,2,3],"num_classes":18446744073709551615}"#)
                .contains("classifier.6")
        );
        assert!(arch_err(
            r#"{"kind":"resnet","block":"basic","layers":[1,1,100000,1],"widths":[1,1,1,1]}"#
        )
        .contains("layer3 has 100000 blocks"));
        assert!(arch_err(
            r#"{"kind":"resnet","block":"bottleneck","layers":[1,1,1,1],"widths":[8,16,4611686018427387904,64]}"#
        )
        .contains("layer3"));
        assert!(arch_err(r#"{"kind":"alexnet","num_classes":4294967296}"#).contains("AlexNet"));
        assert!(arch_err("not json").contains("cannot parse"));
    }

    /// A VGG whose avgpool or width would make the classifier's input
    /// overflow (2^64 features wrap to 0: empty logits) or exceed any
    /// memory: an error at validation.
    #[test]
    fn absurd_vgg_sizes_are_errors() {
        for json in [
            r#"{"kind":"vgg","cfg":[8],"avgpool":[4294967296,4294967296]}"#,
            r#"{"kind":"vgg","cfg":[8],"avgpool":[65536,65536],"hidden":4096}"#,
            r#"{"kind":"vgg","cfg":[4294967296,4294967296]}"#,
            r#"{"kind":"vgg","cfg":[8],"hidden":4294967296}"#,
            r#"{"kind":"vgg","cfg":[18446744073709551615],"avgpool":[1,1]}"#,
        ] {
            let message = arch_err(json);
            assert!(message.contains("too large"), "{json}: {message}");
        }
        let e = arch_err(r#"{"kind":"vgg","cfg":[8],"avgpool":[4294967296,4294967296]}"#);
        assert!(e.contains("flattened features"), "{e}");
        let ok = Architecture::from_json(r#"{"kind":"vgg","cfg":[2],"avgpool":[3,4],"hidden":5}"#)
            .unwrap();
        // conv 2x3x3x3 + 2, fc 5x24 + 5, 5x5 + 5, 1000x5 + 1000.
        assert_eq!(ok.parameter_count().unwrap(), 56 + 125 + 30 + 6000);
    }

    #[test]
    fn presets_match_torchvision() {
        let Architecture::Vgg(v) = Architecture::preset("vgg16_bn").unwrap() else {
            panic!()
        };
        assert!(v.batch_norm);
        assert_eq!(v.cfg.iter().filter(|i| **i == VggItem::MaxPool).count(), 5);
        assert_eq!(v.cfg.len() - 5, 13);
        let Architecture::ResNet(r) = Architecture::preset("resnet152").unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.block, r.layers),
            (BlockKind::Bottleneck, vec![3, 8, 36, 3])
        );
        for name in PRESET_NAMES {
            assert!(Architecture::preset(name).unwrap().validate().is_ok());
        }
    }
}
