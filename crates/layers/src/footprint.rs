//! How much memory one pass of a model needs, estimated from its
//! architecture or its ONNX plan without running it: a conservative upper
//! bound, so that a program can refuse an input before allocating for it.
//!
//! The estimate of a forward pass recorded on a tape and its backward
//! passes ([`pass_footprint`]) adds:
//!
//! - **weights**: every parameter and buffer of the model, once;
//! - **activations**: the output of every layer (convolution, batch norm,
//!   ReLU, pool, linear, every ONNX value), all kept at once, as a tape
//!   that keeps everything would (the tape keeps less: a ReLU keeps two
//!   bits per element, folded batch norms keep nothing);
//! - **gradients**: as much again, as if every gradient of a backward pass
//!   were alive at once (a backward pass frees each gradient once the node
//!   below has read it);
//! - **scratch**: per thread, the whole unfolded input (im2col) of the
//!   convolution with the largest one, which bounds every convolution path
//!   (blocked im2col panels, Winograd tiles, the packed direct kernels all
//!   use less);
//! - the input itself.
//!
//! Sizes are products of `usize`s computed with saturating `u64`
//! arithmetic: an overflow gives `u64::MAX`, which no budget admits.
//!
//! Checked against the peak resident memory (`VmHWM`) of `sightline bench`
//! (`footprint_mib` and `peak_rss_mib` of `--json`; 2 threads, 224 x 224,
//! random weights, 2 iterations); the estimate is above the measurement in
//! every case, most where many activations are counted as kept:
//!
//! | model                               | job                 | estimate | measured peak RSS |
//! |-------------------------------------|---------------------|----------|-------------------|
//! | VGG16, batch 1                      | guided_backprop     | 968 MiB  | 635 MiB           |
//! | VGG16, batch 1 (+ one weights copy) | excitation_backprop | 1496 MiB | 743 MiB           |
//! | VGG16, batch 4                      | gradient            | 1629 MiB | 757 MiB           |
//! | ResNet-50, batch 1                  | grad_cam            | 399 MiB  | 344 MiB           |
//! | ResNet-50, batch 4                  | gradient            | 1263 MiB | 460 MiB           |
//! | MobileNetV2 (ONNX test fixture)     | gradient            | 58 MiB   | 21 MiB            |
//!
//! The measurement includes the process's fixed memory (the binary, the
//! thread pools, about 15 MiB), which a caller adds on its own
//! (`sightline::budget::FIXED_BYTES`); the excitation rules' second copy of
//! the weights is added by the caller too.

use super::{Architecture, BlockKind, LayerError, Model, VggItem};
use sightline_onnx::{NodeOp, Operand};
use sightline_tensor::Element;
use std::collections::HashSet;
use std::sync::Arc;

/// The memory one pass needs, in bytes, by kind (see the module's documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Parameters and buffers, once.
    pub weights: u64,
    /// The input and every layer output of the batch.
    pub activations: u64,
    /// The gradients of a backward pass, bounded by the activations.
    pub gradients: u64,
    /// Kernel scratch of all threads (unfolded convolution inputs).
    pub scratch: u64,
}

impl Footprint {
    /// The sum of the parts (saturating).
    pub fn total(&self) -> u64 {
        self.weights
            .saturating_add(self.activations)
            .saturating_add(self.gradients)
            .saturating_add(self.scratch)
    }
}

/// Saturating product of sizes, as bytes of `elem`-byte elements.
fn bytes(elem: u64, dims: &[usize]) -> u64 {
    dims.iter()
        .fold(elem, |acc, &d| acc.saturating_mul(d as u64))
}

/// Running totals while walking a network, in elements per batch item.
#[derive(Default)]
struct Walk {
    weights: u64,
    activations: u64,
    /// Largest unfolded convolution input of one item.
    unfold: u64,
}

impl Walk {
    fn add_weights(&mut self, n: u64) {
        self.weights = self.weights.saturating_add(n);
    }

    /// One layer output of `c x h x w` elements, `copies` times (conv, bn, relu...).
    fn add_output(&mut self, copies: u64, c: usize, h: usize, w: usize) {
        self.activations = self.activations.saturating_add(bytes(copies, &[c, h, w]));
    }

    /// A `k x k` convolution (stride, padding) from `c_in` to `c_out`
    /// channels on `h x w`: its weights, its unfolded input, its output
    /// size. Records nothing of its output (the caller does, with what follows).
    fn conv(
        &mut self,
        (c_in, c_out): (usize, usize),
        (k, stride, pad): (usize, usize, usize),
        bias: bool,
        (h, w): (usize, usize),
    ) -> (usize, usize) {
        let out = |n: usize| n.saturating_add(2 * pad).saturating_sub(k) / stride.max(1) + 1;
        let (ho, wo) = if h.saturating_add(2 * pad) < k || w.saturating_add(2 * pad) < k {
            (0, 0)
        } else {
            (out(h), out(w))
        };
        self.add_weights(bytes(1, &[c_out, c_in, k, k]));
        if bias {
            self.add_weights(c_out as u64);
        }
        self.unfold = self.unfold.max(bytes(1, &[c_in, k, k, ho, wo]));
        (ho, wo)
    }

    /// A `k x k` max pool with `stride` and `pad` on `h x w`.
    fn pool(k: usize, stride: usize, pad: usize, (h, w): (usize, usize)) -> (usize, usize) {
        let out = |n: usize| {
            let padded = n.saturating_add(2 * pad);
            if padded < k {
                0
            } else {
                (padded - k) / stride.max(1) + 1
            }
        };
        (out(h), out(w))
    }

    /// A linear layer `inp -> out` (with bias), its output recorded `copies` times.
    fn linear(&mut self, inp: usize, out: usize, copies: u64) {
        self.add_weights(bytes(1, &[inp, out]).saturating_add(out as u64));
        self.activations = self.activations.saturating_add(bytes(copies, &[out]));
    }
}

/// Walks a preset architecture for an `h x w` input, per batch item.
fn walk_preset(arch: &Architecture, (h, w): (usize, usize)) -> Walk {
    let mut walk = Walk::default();
    match arch {
        Architecture::Vgg(cfg) => {
            let (mut hw, mut c) = ((h, w), 3usize);
            // conv, (batch norm,) ReLU outputs.
            let per_conv = if cfg.batch_norm { 3 } else { 2 };
            for item in &cfg.cfg {
                match *item {
                    VggItem::Conv(out) => {
                        hw = walk.conv((c, out), (3, 1, 1), true, hw);
                        if cfg.batch_norm {
                            walk.add_weights(bytes(4, &[out]));
                        }
                        walk.add_output(per_conv, out, hw.0, hw.1);
                        c = out;
                    }
                    VggItem::MaxPool => {
                        hw = Walk::pool(2, 2, 0, hw);
                        walk.add_output(1, c, hw.0, hw.1);
                    }
                }
            }
            let [ph, pw] = cfg.avgpool;
            walk.add_output(2, c, ph, pw); // pool and flatten
            let flat = c.saturating_mul(ph).saturating_mul(pw);
            // Linear, ReLU, Dropout twice, then the classes.
            walk.linear(flat, cfg.hidden, 3);
            walk.linear(cfg.hidden, cfg.hidden, 3);
            walk.linear(cfg.hidden, cfg.num_classes, 1);
        }
        Architecture::ResNet(cfg) => {
            let stem = cfg.widths.first().copied().unwrap_or(0);
            let mut hw = walk.conv((3, stem), (7, 2, 3), false, (h, w));
            walk.add_weights(bytes(4, &[stem]));
            walk.add_output(3, stem, hw.0, hw.1);
            hw = Walk::pool(3, 2, 1, hw);
            walk.add_output(1, stem, hw.0, hw.1);
            let expansion = cfg.block.expansion();
            let mut inplanes = stem;
            for (stage, (&blocks, &planes)) in cfg.layers.iter().zip(&cfg.widths).enumerate() {
                let out_c = planes.saturating_mul(expansion);
                for b in 0..blocks {
                    let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                    let input = hw;
                    if stride != 1 || inplanes != out_c {
                        let d = walk.conv((inplanes, out_c), (1, stride, 0), false, input);
                        walk.add_weights(bytes(4, &[out_c]));
                        walk.add_output(2, out_c, d.0, d.1);
                    }
                    match cfg.block {
                        BlockKind::Basic => {
                            hw = walk.conv((inplanes, planes), (3, stride, 1), false, input);
                            walk.add_output(3, planes, hw.0, hw.1);
                            hw = walk.conv((planes, planes), (3, 1, 1), false, hw);
                            walk.add_output(2, planes, hw.0, hw.1);
                            walk.add_weights(bytes(8, &[planes]));
                        }
                        BlockKind::Bottleneck => {
                            hw = walk.conv((inplanes, planes), (1, 1, 0), false, input);
                            walk.add_output(3, planes, hw.0, hw.1);
                            hw = walk.conv((planes, planes), (3, stride, 1), false, hw);
                            walk.add_output(3, planes, hw.0, hw.1);
                            hw = walk.conv((planes, out_c), (1, 1, 0), false, hw);
                            walk.add_output(2, out_c, hw.0, hw.1);
                            walk.add_weights(
                                bytes(8, &[planes]).saturating_add(bytes(4, &[out_c])),
                            );
                        }
                    }
                    walk.add_output(2, out_c, hw.0, hw.1); // sum and ReLU
                    inplanes = out_c;
                }
            }
            walk.add_output(2, inplanes, 1, 1);
            walk.linear(inplanes, cfg.num_classes, 1);
        }
        Architecture::AlexNet(cfg) => {
            let mut hw = walk.conv((3, 64), (11, 4, 2), true, (h, w));
            walk.add_output(2, 64, hw.0, hw.1);
            hw = Walk::pool(3, 2, 0, hw);
            walk.add_output(1, 64, hw.0, hw.1);
            hw = walk.conv((64, 192), (5, 1, 2), true, hw);
            walk.add_output(2, 192, hw.0, hw.1);
            hw = Walk::pool(3, 2, 0, hw);
            walk.add_output(1, 192, hw.0, hw.1);
            let mut c = 192;
            for out in [384, 256, 256] {
                hw = walk.conv((c, out), (3, 1, 1), true, hw);
                walk.add_output(2, out, hw.0, hw.1);
                c = out;
            }
            hw = Walk::pool(3, 2, 0, hw);
            walk.add_output(1, c, hw.0, hw.1);
            walk.add_output(2, c, 6, 6);
            walk.linear(c * 36, 4096, 3);
            walk.linear(4096, 4096, 3);
            walk.linear(4096, cfg.num_classes, 1);
        }
    }
    walk
}

/// Walks the ONNX plan of a graph for `input_shape` (the whole batch).
fn walk_graph<T: Element>(
    graph: &super::graph::GraphNetwork<T>,
    input_shape: &[usize],
) -> Result<Walk, LayerError> {
    let plan = graph.onnx().plan(input_shape)?;
    let mut walk = Walk::default();
    for v in &plan.values {
        walk.activations = walk.activations.saturating_add(bytes(1, &v.shape));
    }
    let mut seen: HashSet<*const sightline_tensor::Tensor<T>> = HashSet::new();
    for node in &plan.nodes {
        for input in &node.inputs {
            if let Operand::Const(t) = input {
                if seen.insert(Arc::as_ptr(t)) {
                    walk.add_weights(t.len() as u64);
                }
            }
        }
        if let NodeOp::Conv { kernel, group, .. } = &node.op {
            let x = node.inputs.first().and_then(|o| match o {
                Operand::Value(id) => plan.shape(*id),
                Operand::Const(t) => Some(t.shape()),
            });
            let y = node.outputs.first().and_then(|&id| plan.shape(id));
            if let (Some([_, c, ..]), Some([_, _, ho, wo])) = (x, y) {
                let per_group = c / (*group).max(1);
                walk.unfold = walk
                    .unfold
                    .max(bytes(1, &[per_group, kernel[0], kernel[1], *ho, *wo]));
            }
        }
    }
    Ok(walk)
}

/// `N x C x H x W`, or an error naming the shape.
fn dims4(input_shape: &[usize]) -> Result<[usize; 4], LayerError> {
    match *input_shape {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(LayerError::InputShape {
            expected: "N x C x H x W".into(),
            found: input_shape.to_vec(),
        }),
    }
}

/// Assembles the parts from a walk in elements (`per_item`: a preset's walk
/// counts one batch item, a plan's the whole batch).
fn assemble<T: Element>(
    walk: &Walk,
    input_shape: [usize; 4],
    per_item: bool,
    threads: usize,
) -> Footprint {
    let elem = std::mem::size_of::<T>() as u64;
    let mut activations = walk.activations.saturating_mul(elem);
    if per_item {
        activations = activations.saturating_mul(input_shape[0] as u64);
    }
    let activations = activations.saturating_add(bytes(elem, &input_shape));
    Footprint {
        weights: walk.weights.saturating_mul(elem),
        activations,
        gradients: activations,
        scratch: walk
            .unfold
            .saturating_mul(elem)
            .saturating_mul(threads.max(1) as u64),
    }
}

/// The memory of one pass of a preset architecture (before building it:
/// its [`Footprint::weights`] is what building the model allocates) on an
/// input of `input_shape` (`N x 3 x H x W`) with `threads` kernel threads.
pub fn architecture_footprint<T: Element>(
    arch: &Architecture,
    input_shape: &[usize],
    threads: usize,
) -> Result<Footprint, LayerError> {
    let shape = dims4(input_shape)?;
    let walk = walk_preset(arch, (shape[2], shape[3]));
    Ok(assemble::<T>(&walk, shape, true, threads))
}

/// The memory of one pass of `model` on an input of `input_shape`
/// (`N x C x H x W`) with backward passes, with `threads` kernel threads:
/// see the module's documentation. A preset is walked from its
/// architecture, a graph from its ONNX plan (shapes only; nothing is
/// computed). A network of the user's own cannot be estimated
/// ([`LayerError::Architecture`]), nor can an input that is not 4-d.
pub fn pass_footprint<T: Element>(
    model: &Model<T>,
    input_shape: &[usize],
    threads: usize,
) -> Result<Footprint, LayerError> {
    let shape = dims4(input_shape)?;
    if let Some(arch) = model.architecture() {
        return architecture_footprint::<T>(arch, input_shape, threads);
    }
    let Some(graph) = model.graph() else {
        return Err(LayerError::Architecture {
            message: "the memory of a network of the user's own cannot be estimated".into(),
        });
    };
    let walk = walk_graph(graph, input_shape)?;
    Ok(assemble::<T>(&walk, shape, false, threads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vgg16_weights_and_activations_are_counted() {
        let arch = Architecture::preset("vgg16").unwrap();
        let walk = walk_preset(&arch, (224, 224));
        // torchvision's VGG16 has 138,357,544 parameters.
        assert_eq!(walk.weights, 138_357_544);
        // The largest unfold: 64 channels x 3 x 3 over 224 x 224.
        assert_eq!(walk.unfold, 64 * 9 * 224 * 224);
        // Conv + ReLU outputs of the first block alone: 2 x 2 x 64 x 224^2.
        assert!(walk.activations > 4 * 64 * 224 * 224);
    }

    #[test]
    fn resnet_and_alexnet_parameter_counts_match_torchvision() {
        // Batch-norm running statistics count as weights here (4 per
        // channel: weight, bias, mean, variance), so subtract them.
        let r50 = walk_preset(&Architecture::preset("resnet50").unwrap(), (224, 224));
        assert!(r50.weights > 25_557_032 && r50.weights < 25_557_032 + 60_000 * 2);
        let r18 = walk_preset(&Architecture::preset("resnet18").unwrap(), (224, 224));
        assert!(r18.weights > 11_689_512 && r18.weights < 11_689_512 + 20_000);
        let alex = walk_preset(&Architecture::preset("alexnet").unwrap(), (224, 224));
        assert_eq!(alex.weights, 61_100_840);
    }

    #[test]
    fn footprint_scales_with_batch_and_threads_and_saturates() {
        let arch = Architecture::preset("resnet18").unwrap();
        let model = Model::<f32>::random(&arch, 0).unwrap();
        let one = pass_footprint(&model, &[1, 3, 64, 64], 1).unwrap();
        let four = pass_footprint(&model, &[4, 3, 64, 64], 2).unwrap();
        assert_eq!(four.weights, one.weights);
        assert_eq!(four.activations, 4 * one.activations);
        assert_eq!(four.scratch, 2 * one.scratch);
        assert_eq!(one.total(), one.weights + 2 * one.activations + one.scratch);
        let huge = pass_footprint(&model, &[usize::MAX, 3, usize::MAX, usize::MAX], 2).unwrap();
        assert_eq!(huge.total(), u64::MAX);
        assert!(pass_footprint(&model, &[1, 3, 64], 1).is_err());
    }
}
