//! torchvision's model presets.

use super::{AlexNetConfig, Architecture, BlockKind, ResNetConfig, VggConfig, VggItem};

/// Every preset name, VGGs first.
pub const PRESET_NAMES: &[&str] = &[
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "alexnet",
];

/// torchvision's `cfgs`: "A" (VGG-11), "B" (13), "D" (16), "E" (19); 0 stands for "M".
fn vgg_cfg(depth: usize) -> Option<&'static [usize]> {
    Some(match depth {
        11 => &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0],
        13 => &[
            64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0,
        ],
        16 => &[
            64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
        ],
        19 => &[
            64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512,
            512, 0,
        ],
        _ => return None,
    })
}

fn vgg(depth: usize, batch_norm: bool) -> Option<Architecture> {
    let cfg = vgg_cfg(depth)?
        .iter()
        .map(|&c| {
            if c == 0 {
                VggItem::MaxPool
            } else {
                VggItem::Conv(c)
            }
        })
        .collect();
    Some(Architecture::Vgg(VggConfig {
        cfg,
        batch_norm,
        avgpool: [7, 7],
        hidden: 4096,
        num_classes: 1000,
    }))
}

fn resnet(depth: usize) -> Option<Architecture> {
    let (block, layers) = match depth {
        18 => (BlockKind::Basic, vec![2, 2, 2, 2]),
        34 => (BlockKind::Basic, vec![3, 4, 6, 3]),
        50 => (BlockKind::Bottleneck, vec![3, 4, 6, 3]),
        101 => (BlockKind::Bottleneck, vec![3, 4, 23, 3]),
        152 => (BlockKind::Bottleneck, vec![3, 8, 36, 3]),
        _ => return None,
    };
    Some(Architecture::ResNet(ResNetConfig {
        block,
        layers,
        widths: vec![64, 128, 256, 512],
        num_classes: 1000,
    }))
}

/// The preset `name`, if it exists.
pub(super) fn preset(name: &str) -> Option<Architecture> {
    if !PRESET_NAMES.contains(&name) {
        return None;
    }
    if name == "alexnet" {
        return Some(Architecture::AlexNet(AlexNetConfig { num_classes: 1000 }));
    }
    if let Some(depth) = name.strip_prefix("resnet") {
        return resnet(depth.parse().ok()?);
    }
    let rest = name.strip_prefix("vgg")?;
    let (depth, bn) = match rest.strip_suffix("_bn") {
        Some(d) => (d, true),
        None => (rest, false),
    };
    vgg(depth.parse().ok()?, bn)
}
