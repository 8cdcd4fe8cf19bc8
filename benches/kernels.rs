//! Criterion benches of the backward kernels that saliency runs, at VGG16's
//! layer shapes (batch 1, 224 x 224 input).
//!
//! `cargo bench --bench kernels` runs them; `cargo bench --no-run` builds them.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use sightline::autograd::ops::{pool, relu};
use sightline::autograd::{Retain, RuleSet, Tape};
use sightline::tensor::conv::conv2d_backward_input;
use sightline::tensor::{Conv2dParams, MaxPool2dParams, Tensor};

/// Distinct 3 x 3 convolutions of VGG16: (in channels, out channels, spatial size).
const VGG16_CONVS: [(usize, usize, usize); 9] = [
    (3, 64, 224),
    (64, 64, 224),
    (64, 128, 112),
    (128, 128, 112),
    (128, 256, 56),
    (256, 256, 56),
    (256, 512, 28),
    (512, 512, 28),
    (512, 512, 14),
];

fn filled(shape: &[usize], seed: u32) -> Tensor<f32> {
    let n: usize = shape.iter().product();
    let data = (0..n as u32)
        .map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    Tensor::from_vec(shape.to_vec(), data).expect("shape and data agree")
}

fn conv_backward_input(c: &mut Criterion) {
    let mut g = c.benchmark_group("conv2d_backward_input_vgg16");
    g.sample_size(10);
    for (cin, cout, hw) in VGG16_CONVS {
        let w = filled(&[cout, cin, 3, 3], 1);
        let gout = filled(&[1, cout, hw, hw], 2);
        let id = format!("{cin}x{cout}@{hw}");
        g.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| {
                conv2d_backward_input(black_box(&gout), &w, (hw, hw), Conv2dParams::new(1, 1))
                    .expect("valid shapes")
            })
        });
    }
    g.finish();
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

fn max_pool_backward(c: &mut Criterion) {
    let x = filled(&[1, 64, 224, 224], 5);
    let mut tape = Tape::new(Retain::Minimal);
    let xv = tape.input(x);
    let y = pool::max_pool2d(&mut tape, &xv, MaxPool2dParams::new(2, 2, 0)).expect("pool");
    let gout = filled(y.shape(), 6);
    c.bench_function("max_pool2d_backward_64x224x224", |b| {
        b.iter(|| {
            tape.backward(y.id(), black_box(&gout), &RuleSet::standard(), &[xv.id()])
                .expect("backward")
        })
    });
}

criterion_group!(benches, conv_backward_input, relu_rules, max_pool_backward);
criterion_main!(benches);
