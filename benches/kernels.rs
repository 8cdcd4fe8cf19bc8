//! Criterion benches of the kernels that saliency runs, at the layer shapes
//! of VGG16 and ResNet-50 (batch 1, 224 x 224 input).
//!
//! `cargo bench --bench kernels` runs them all; a filter picks some, e.g.
//! `cargo bench --bench kernels -- conv2d_backward_input_resnet50`;
//! `cargo bench --no-run` builds them. Each convolution is measured against
//! the im2col + `matrixmultiply` GEMM reference (`im2col`) in the same run:
//! the input gradient's `auto` and the forward's `cached` are what the
//! layers run (Winograd where it wins, other one-group convolutions on a
//! weight packed once for the same micro-kernels, the derived kernels cached
//! as the layers and tapes cache them); the forward's `auto` is `conv2d`
//! without a cache (the Winograd kernel transformed per call). Their ratio is
//! the gain of the dispatch on this machine. The input gradient is also
//! measured with the guided ReLU rule below it, applied by the kernel as it
//! writes (`auto_then_relu`, what a walk runs) against a sweep after it
//! (`auto_and_relu_sweep`). docs/performance.md records the numbers.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use sightline::autograd::ops::{linear, pool, relu};
use sightline::autograd::{Pass, Retain, RuleSet, Tape};
use sightline::tensor::conv::{
    backward_input_im2col, conv2d, conv2d_backward_input_cached, conv2d_backward_input_then,
    conv2d_cached, conv2d_im2col, BackwardInputCache, ForwardCache,
};
use sightline::tensor::elementwise::SignMask;
use sightline::tensor::{Conv2dParams, MaxPool2dParams, Tensor};
use std::time::Duration;

/// A convolution layer: input channels, output channels, input size, kernel,
/// stride, padding.
#[derive(Clone, Copy)]
struct Layer {
    cin: usize,
    cout: usize,
    hw: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

const fn l3(cin: usize, cout: usize, hw: usize) -> Layer {
    Layer {
        cin,
        cout,
        hw,
        k: 3,
        stride: 1,
        pad: 1,
    }
}

const fn l1(cin: usize, cout: usize, hw: usize, stride: usize) -> Layer {
    Layer {
        cin,
        cout,
        hw,
        k: 1,
        stride,
        pad: 0,
    }
}

/// Distinct 3 x 3 convolutions of VGG16 (input size before the layer).
const VGG16_CONVS: [Layer; 9] = [
    l3(3, 64, 224),
    l3(64, 64, 224),
    l3(64, 128, 112),
    l3(128, 128, 112),
    l3(128, 256, 56),
    l3(256, 256, 56),
    l3(256, 512, 28),
    l3(512, 512, 28),
    l3(512, 512, 14),
];

/// ResNet-50 (torchvision, stride in the 3 x 3 of a bottleneck): the stem,
/// then per stage the 1 x 1 reduce, the 3 x 3 and the 1 x 1 expand of a
/// repeated block, and for stages 2-4 the strided 3 x 3 and the strided
/// 1 x 1 downsample of the first block.
const RESNET50_CONVS: [Layer; 19] = [
    Layer {
        cin: 3,
        cout: 64,
        hw: 224,
        k: 7,
        stride: 2,
        pad: 3,
    },
    l1(256, 64, 56, 1),
    l3(64, 64, 56),
    l1(64, 256, 56, 1),
    l1(512, 128, 28, 1),
    l3(128, 128, 28),
    l1(128, 512, 28, 1),
    Layer {
        cin: 128,
        cout: 128,
        hw: 56,
        k: 3,
        stride: 2,
        pad: 1,
    },
    l1(256, 512, 56, 2),
    l1(1024, 256, 14, 1),
    l3(256, 256, 14),
    l1(256, 1024, 14, 1),
    Layer {
        cin: 256,
        cout: 256,
        hw: 28,
        k: 3,
        stride: 2,
        pad: 1,
    },
    l1(512, 1024, 28, 2),
    l1(2048, 512, 7, 1),
    l3(512, 512, 7),
    l1(512, 2048, 7, 1),
    Layer {
        cin: 512,
        cout: 512,
        hw: 14,
        k: 3,
        stride: 2,
        pad: 1,
    },
    l1(1024, 2048, 14, 2),
];

impl Layer {
    fn params(&self) -> Conv2dParams {
        Conv2dParams::new(self.stride, self.pad)
    }

    fn out_hw(&self) -> usize {
        (self.hw + 2 * self.pad - self.k) / self.stride + 1
    }

    fn id(&self) -> String {
        let mut id = format!("{}x{}@{}", self.cin, self.cout, self.hw);
        if self.k != 3 || self.stride != 1 {
            id += &format!("_k{}s{}", self.k, self.stride);
        }
        id
    }
}

fn filled(shape: &[usize], seed: u32) -> Tensor<f32> {
    let n: usize = shape.iter().product();
    let data = (0..n as u32)
        .map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    Tensor::from_vec(shape.to_vec(), data).expect("shape and data agree")
}

fn conv_group(c: &mut Criterion, name: &str, layers: &[Layer], forward: bool) {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for l in layers {
        let w = filled(&[l.cout, l.cin, l.k, l.k], 1);
        let p = l.params();
        let hw = (l.hw, l.hw);
        if forward {
            let x = filled(&[1, l.cin, l.hw, l.hw], 2);
            let cache = ForwardCache::new();
            g.bench_function(BenchmarkId::new("cached", l.id()), |b| {
                b.iter(|| conv2d_cached(black_box(&x), &w, None, p, &cache).expect("valid shapes"))
            });
            g.bench_function(BenchmarkId::new("auto", l.id()), |b| {
                b.iter(|| conv2d(black_box(&x), &w, None, p).expect("valid shapes"))
            });
            g.bench_function(BenchmarkId::new("im2col", l.id()), |b| {
                b.iter(|| conv2d_im2col(black_box(&x), &w, None, p).expect("valid shapes"))
            });
        } else {
            let gout = filled(&[1, l.cout, l.out_hw(), l.out_hw()], 2);
            // As on a tape: the first backward pass fills the cache, the
            // next ones reuse it.
            let cache = BackwardInputCache::new();
            g.bench_function(BenchmarkId::new("auto", l.id()), |b| {
                b.iter(|| {
                    conv2d_backward_input_cached(black_box(&gout), &w, hw, p, &cache)
                        .expect("valid shapes")
                })
            });
            g.bench_function(BenchmarkId::new("im2col", l.id()), |b| {
                b.iter(|| backward_input_im2col(black_box(&gout), &w, hw, p).expect("valid shapes"))
            });
            let mask = SignMask::of(filled(&[1, l.cin, l.hw, l.hw], 3).data());
            let guided = |g: f32, _: bool, nn: bool| if nn { g.max(0.0) } else { 0.0 };
            let then = |v: &mut [f32], at: usize| mask.apply_at(v, at, guided);
            g.bench_function(BenchmarkId::new("auto_then_relu", l.id()), |b| {
                b.iter(|| {
                    conv2d_backward_input_then(black_box(&gout), &w, hw, p, &cache, &then)
                        .expect("valid shapes")
                })
            });
            g.bench_function(BenchmarkId::new("auto_and_relu_sweep", l.id()), |b| {
                b.iter(|| {
                    let mut gin = conv2d_backward_input_cached(black_box(&gout), &w, hw, p, &cache)
                        .expect("valid shapes");
                    mask.apply(gin.data_mut(), guided).expect("same length");
                    gin
                })
            });
        }
    }
    g.finish();
}

fn conv_backward_input(c: &mut Criterion) {
    conv_group(c, "conv2d_backward_input_vgg16", &VGG16_CONVS, false);
    conv_group(c, "conv2d_backward_input_resnet50", &RESNET50_CONVS, false);
}

fn conv_forward(c: &mut Criterion) {
    conv_group(c, "conv2d_forward_vgg16", &VGG16_CONVS, true);
    conv_group(c, "conv2d_forward_resnet50", &RESNET50_CONVS, true);
}

fn relu_rules(c: &mut Criterion) {
    let x = filled(&[1, 64, 224, 224], 3);
    let gout = filled(&[1, 64, 224, 224], 4);
    let mut tape = Tape::new(Retain::Minimal);
    let xv = tape.input(x);
    let y = relu::relu(&mut tape, &xv).expect("relu");
    let mut g = c.benchmark_group("relu_backward_64x224x224");
    for (name, rules) in [
        ("standard", RuleSet::standard()),
        ("guided", RuleSet::guided_backprop()),
        ("deconvnet", RuleSet::deconvnet()),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                tape.backward(y.id(), black_box(&gout), &rules, &[xv.id()])
                    .expect("backward")
            })
        });
    }
    g.finish();
}

/// The forward kernels that the ReLU and max-pool rules read from: the
/// fused ReLU (output and sign bits in one pass) and the max pool (output
/// and argmax indices).
fn relu_and_pool_forward(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward_64x224x224");
    let x = filled(&[1, 64, 224, 224], 3);
    g.bench_function("relu_with_sign_mask", |b| {
        b.iter(|| sightline::tensor::elementwise::relu(black_box(&x)))
    });
    g.bench_function("max_pool2d_k2s2", |b| {
        b.iter(|| {
            sightline::tensor::pool::max_pool2d(black_box(&x), MaxPool2dParams::new(2, 2, 0))
                .expect("valid shapes")
        })
    });
    g.finish();
}

/// The max pools of VGG16 (2 x 2, stride 2, the five of them) and
/// ResNet-50's stem pool (3 x 3, stride 2, padding 1), batch 1: name, input
/// shape and parameters.
fn max_pools() -> [(&'static str, [usize; 4], MaxPool2dParams); 6] {
    let vgg = MaxPool2dParams::new(2, 2, 0);
    [
        ("vgg16_64x224x224_k2s2", [1, 64, 224, 224], vgg),
        ("vgg16_128x112x112_k2s2", [1, 128, 112, 112], vgg),
        ("vgg16_256x56x56_k2s2", [1, 256, 56, 56], vgg),
        ("vgg16_512x28x28_k2s2", [1, 512, 28, 28], vgg),
        ("vgg16_512x14x14_k2s2", [1, 512, 14, 14], vgg),
        (
            "resnet50_64x112x112_k3s2",
            [1, 64, 112, 112],
            MaxPool2dParams::new(3, 2, 1),
        ),
    ]
}

/// The max-pool kernel (output and argmax indices) at the networks' shapes.
fn max_pool_forward(c: &mut Criterion) {
    let mut g = c.benchmark_group("max_pool2d");
    for (id, shape, p) in max_pools() {
        let x = filled(&shape, 4);
        g.bench_function(id, |b| {
            b.iter(|| sightline::tensor::pool::max_pool2d(black_box(&x), p).expect("valid shapes"))
        });
    }
    g.finish();
}

/// The standard backward rule of the max pool (the gradient to each
/// window's first maximum) at the networks' shapes, through the tape.
fn max_pool_backward(c: &mut Criterion) {
    let mut g = c.benchmark_group("max_pool2d_backward");
    for (id, shape, p) in max_pools() {
        let mut tape = Tape::new(Retain::Minimal);
        let xv = tape.input(filled(&shape, 5));
        let y = pool::max_pool2d(&mut tape, &xv, p).expect("pool");
        let gout = filled(y.shape(), 6);
        g.bench_function(id, |b| {
            b.iter(|| {
                tape.backward(y.id(), black_box(&gout), &RuleSet::standard(), &[xv.id()])
                    .expect("backward")
            })
        });
    }
    g.finish();
}

fn linear_backward(c: &mut Criterion) {
    let mut g = c.benchmark_group("linear_backward_input");
    g.sample_size(10);
    // VGG16's classifier: fc6 (25088 -> 4096) and fc7 (4096 -> 4096).
    for (fin, fout) in [(25088, 4096), (4096, 4096)] {
        let mut tape = Tape::new(Retain::Minimal);
        let xv = tape.input(filled(&[1, fin], 7));
        let wv = tape.input(filled(&[fout, fin], 8));
        let y = linear::linear(&mut tape, &xv, &wv, None).expect("linear");
        let gout = filled(&[1, fout], 9);
        g.bench_function(format!("{fin}to{fout}"), |b| {
            b.iter(|| {
                tape.backward(y.id(), black_box(&gout), &RuleSet::standard(), &[xv.id()])
                    .expect("backward")
            })
        });
        // A gradient that came back through a ReLU: zero where the unit was
        // off (here about half of the units), so about half of the rows of the
        // weight are never read.
        let after_relu = gout.map(|v| v.max(0.0));
        g.bench_function(format!("{fin}to{fout}_after_relu"), |b| {
            b.iter(|| {
                tape.backward(
                    y.id(),
                    black_box(&after_relu),
                    &RuleSet::standard(),
                    &[xv.id()],
                )
                .expect("backward")
            })
        });
        // The gradient, deconvnet and guided-backprop passes walked
        // together: one streamed product for the three (against three
        // times the line above when walked one by one).
        let sets = [
            RuleSet::standard(),
            RuleSet::deconvnet(),
            RuleSet::guided_backprop(),
        ];
        let wrt = [xv.id()];
        let passes: Vec<Pass<'_, f32>> = sets
            .iter()
            .map(|rules| Pass {
                seed: &gout,
                rules,
                wrt: &wrt,
                branch: None,
            })
            .collect();
        g.bench_function(format!("{fin}to{fout}_three_passes"), |b| {
            b.iter(|| {
                tape.backward_passes(y.id(), black_box(&passes))
                    .expect("backward")
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    conv_backward_input,
    conv_forward,
    relu_rules,
    relu_and_pool_forward,
    max_pool_forward,
    max_pool_backward,
    linear_backward
);
criterion_main!(benches);
