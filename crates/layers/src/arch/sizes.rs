//! The parameter count of an architecture, with checked arithmetic: every
//! weight's shape, the flattened features a VGG's classifier reads, and
//! the total, so that a configuration with an absurd width, pool size,
//! class or block count is an error at validation, never a size that wraps
//! (a VGG whose `avgpool` product wrapped would build a classifier on no
//! features and return empty logits).

use super::{AlexNetConfig, Architecture, BlockKind, ResNetConfig, VggConfig, VggItem};
use crate::error::{LayerError, Result};
use sightline_tensor::tensor::checked_numel;

/// Most parameters an architecture may have: 2^36 (256 GiB of `f32`),
/// hundreds of times the largest torchvision model, so that validation
/// rejects configurations no machine could build rather than letting their
/// construction exhaust memory.
pub const MAX_PARAMETERS: usize = 1 << 36;

/// Most blocks a ResNet stage may have: 2^12, dozens of times the deepest
/// published ResNet's (ResNet-1001: 111), so that a block count no machine
/// could build (each block is several layers) is an error at validation.
pub const MAX_BLOCKS: usize = 1 << 12;

/// A running total of parameters, each weight's shape checked on the way.
struct Count {
    total: usize,
}

impl Count {
    /// Adds `times` weights of `shape` (named `what` in the error).
    fn add(&mut self, what: &str, shape: &[usize], times: usize) -> Result<()> {
        let too_large = || {
            LayerError::arch(format!(
                "{what}: weight of shape {shape:?}{} is too large (more than {MAX_PARAMETERS} \
                 parameters in all)",
                if times == 1 {
                    String::new()
                } else {
                    format!(" x {times}")
                }
            ))
        };
        let n = checked_numel(shape, "architecture").map_err(|_| too_large())?;
        self.total = n
            .checked_mul(times)
            .and_then(|n| n.checked_add(self.total))
            .filter(|&t| t <= MAX_PARAMETERS)
            .ok_or_else(too_large)?;
        Ok(())
    }
}

/// The product of `factors`, or an architecture error naming `what`.
fn product(what: &str, factors: &[usize]) -> Result<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .filter(|&n| n <= MAX_PARAMETERS)
        .ok_or_else(|| {
            LayerError::arch(format!("{what}: {factors:?} multiply to too large a size"))
        })
}

/// The number of parameters (weights, biases, batch-norm affines) of
/// `arch`, or the error naming the first weight whose size overflows or
/// takes the total beyond [`MAX_PARAMETERS`].
pub fn parameter_count(arch: &Architecture) -> Result<usize> {
    let mut count = Count { total: 0 };
    match arch {
        Architecture::Vgg(c) => vgg(c, &mut count)?,
        Architecture::ResNet(c) => resnet(c, &mut count)?,
        Architecture::AlexNet(c) => alexnet(c, &mut count)?,
    }
    Ok(count.total)
}

fn vgg(c: &VggConfig, count: &mut Count) -> Result<()> {
    let mut channels = 3;
    for (i, item) in c.cfg.iter().enumerate() {
        if let VggItem::Conv(out) = *item {
            let what = format!("VGG cfg entry {i}");
            count.add(&what, &[out, channels, 3, 3], 1)?;
            // The bias, and the batch norm's scale and shift.
            count.add(&what, &[out], if c.batch_norm { 3 } else { 1 })?;
            channels = out;
        }
    }
    let [ph, pw] = c.avgpool;
    let flat = product(
        "VGG flattened features (channels x avgpool)",
        &[channels, ph, pw],
    )?;
    count.add("VGG classifier.0", &[c.hidden, flat], 1)?;
    count.add("VGG classifier.3", &[c.hidden, c.hidden], 1)?;
    count.add("VGG classifier.6", &[c.num_classes, c.hidden], 1)?;
    count.add("VGG classifier biases", &[c.hidden], 2)?;
    count.add("VGG classifier biases", &[c.num_classes], 1)
}

fn resnet(c: &ResNetConfig, count: &mut Count) -> Result<()> {
    let stem = c.widths.first().copied().unwrap_or(0);
    count.add("ResNet stem", &[stem, 3, 7, 7], 1)?;
    count.add("ResNet stem batch norm", &[stem], 2)?;
    let expansion = c.block.expansion();
    let mut inplanes = stem;
    for (stage, (&blocks, &planes)) in c.layers.iter().zip(&c.widths).enumerate() {
        let what = format!("ResNet stage layer{}", stage + 1);
        if blocks > MAX_BLOCKS {
            return Err(LayerError::arch(format!(
                "{what} has {blocks} blocks, more than {MAX_BLOCKS}"
            )));
        }
        let out = product(&what, &[planes, expansion])?;
        // The first block: a downsampling 1x1 convolution where the shape
        // changes, and the block's convolutions from `inplanes`.
        if stage > 0 || inplanes != out {
            count.add(&what, &[out, inplanes, 1, 1], 1)?;
            count.add(&what, &[2, out], 1)?;
        }
        // conv1 (3x3 in a basic block, 1x1 in a bottleneck) reads
        // `inplanes` channels in the first block, `out` in the others.
        let k1 = match c.block {
            BlockKind::Basic => 3,
            BlockKind::Bottleneck => 1,
        };
        count.add(&what, &[planes, inplanes, k1, k1], 1)?;
        count.add(&what, &[planes, out, k1, k1], blocks.saturating_sub(1))?;
        count.add(&what, &[planes, planes, 3, 3], blocks)?;
        // Two batch norms of `planes` (scale and shift each).
        count.add(&what, &[4, planes], blocks)?;
        if c.block == BlockKind::Bottleneck {
            count.add(&what, &[out, planes, 1, 1], blocks)?;
            count.add(&what, &[2, out], blocks)?;
        }
        inplanes = out;
    }
    count.add("ResNet fc", &[c.num_classes, inplanes], 1)?;
    count.add("ResNet fc bias", &[c.num_classes], 1)
}

fn alexnet(c: &AlexNetConfig, count: &mut Count) -> Result<()> {
    // The fixed layers, then the classes.
    count.add(
        "AlexNet features and hidden layers",
        &[61_100_840 - 4097 * 1000],
        1,
    )?;
    // classifier.6: a 4096-wide weight and a bias per class.
    count.add("AlexNet classifier.6", &[c.num_classes, 4097], 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(name: &str) -> usize {
        parameter_count(&Architecture::preset(name).unwrap()).unwrap()
    }

    /// The totals torchvision reports (`sum(p.numel() for p in
    /// model.parameters())`).
    #[test]
    fn presets_count_as_torchvision() {
        assert_eq!(count("vgg16"), 138_357_544);
        assert_eq!(count("vgg11_bn"), 132_868_840);
        assert_eq!(count("resnet18"), 11_689_512);
        assert_eq!(count("resnet50"), 25_557_032);
        assert_eq!(count("alexnet"), 61_100_840);
    }
}
