//! Tests of F(4x4, 3x3) against the im2col reference, its `f32` error and
//! its determinism.

use super::transforms::Transforms;
use super::*;
use crate::conv::{backward_input_im2col, conv2d_im2col, Conv2dParams};
use crate::testing::seq;

/// Normal samples with standard deviation `sd` (xorshift + Box-Muller).
fn normal(shape: &[usize], sd: f64, seed: u64) -> Tensor<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            sd * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        })
        .collect();
    Tensor::from_vec(shape.to_vec(), data).unwrap()
}

fn f64s(t: &Tensor<f32>) -> Tensor<f64> {
    Tensor::from_vec(
        t.shape().to_vec(),
        t.data().iter().map(|&v| v as f64).collect(),
    )
    .unwrap()
}

#[test]
fn f4_matches_im2col_forward_and_backward_in_f64() {
    // Widths and heights with every remainder mod 4, padding 0, 1, 2,
    // few and many (> 16, > one micro-panel) channels, batch 2, a single
    // tile, and more tiles than one run of the transforms (> 32 per row).
    for &(n, cin, cout, h, w, p) in &[
        (1, 3, 5, 7, 9, 1),
        (2, 20, 13, 10, 5, 0),
        (1, 33, 40, 35, 67, 1),
        (1, 8, 70, 6, 6, 2),
        (1, 4, 4, 3, 3, 0),
        (2, 17, 26, 13, 14, 2),
        (1, 5, 3, 4, 11, 0),
        (1, 24, 30, 9, 150, 1),
        (2, 3, 2, 6, 6, 0),
    ] {
        let x = seq::<f64>(&[n, cin, h, w], 7);
        let wt = seq::<f64>(&[cout, cin, 3, 3], 5);
        let bias: Vec<f64> = (0..cout).map(|i| i as f64 * 0.25 - 1.0).collect();
        let params = Conv2dParams::new(1, p);
        let want = conv2d_im2col(
            &x,
            &wt,
            Some(&Tensor::from_vec([cout], bias.clone()).unwrap()),
            params,
        )
        .unwrap();
        let k = WinogradKernel::forward_with(&wt, Variant::F4x4).unwrap();
        assert_eq!(k.variant(), Variant::F4x4);
        let got = conv3x3(&x, &k, (p, p), Some(&bias)).unwrap();
        assert_eq!(got.shape(), want.shape());
        let d = got.max_abs_diff(&want).unwrap();
        assert!(d < 1e-10, "forward {n} {cin} {cout} {h} {w} {p}: {d}");

        let gout = seq::<f64>(want.shape(), 3);
        let want = backward_input_im2col(&gout, &wt, (h, w), params).unwrap();
        let k = WinogradKernel::backward_input_with(&wt, Variant::F4x4).unwrap();
        let got = conv3x3(&gout, &k, (2 - p, 2 - p), None).unwrap();
        assert_eq!(got.shape(), want.shape());
        let d = got.max_abs_diff(&want).unwrap();
        assert!(d < 1e-10, "backward {n} {cin} {cout} {h} {w} {p}: {d}");
    }
}

/// The largest error of `f32` Winograd (`variant`), forward and input
/// gradient, relative to the largest output, against the `f64` im2col
/// result on the same (`f32`-rounded) data: weights ~ N(0, 2 / (9 Cin)),
/// inputs and output gradients ~ N(0, 1).
fn f32_relative_errors(cin: usize, cout: usize, hw: usize, variant: Variant) -> (f64, f64) {
    let p = Conv2dParams::new(1, 1);
    let x = normal(&[1, cin, hw, hw], 1.0, 1).cast::<f32>();
    let wt = normal(&[cout, cin, 3, 3], (2.0 / (9 * cin) as f64).sqrt(), 2).cast::<f32>();
    let rel = |got: &Tensor<f32>, want: &Tensor<f64>| {
        let max = want.data().iter().fold(0f64, |m, v| m.max(v.abs()));
        f64s(got).max_abs_diff(want).unwrap() / max
    };
    let want = conv2d_im2col(&f64s(&x), &f64s(&wt), None, p).unwrap();
    let k = WinogradKernel::forward_with(&wt, variant).unwrap();
    let fwd = rel(&conv3x3(&x, &k, (1, 1), None).unwrap(), &want);
    let g = normal(want.shape(), 1.0, 3).cast::<f32>();
    let want = backward_input_im2col(&f64s(&g), &f64s(&wt), (hw, hw), p).unwrap();
    let k = WinogradKernel::backward_input_with(&wt, variant).unwrap();
    let bwd = rel(&conv3x3(&g, &k, (1, 1), None).unwrap(), &want);
    (fwd, bwd)
}

#[test]
fn f4_f32_error_is_small_relative_to_the_output() {
    for (cin, cout, hw) in [(64, 64, 30), (256, 48, 14)] {
        let (f2f, f2b) = f32_relative_errors(cin, cout, hw, Variant::F2x2);
        let (f4f, f4b) = f32_relative_errors(cin, cout, hw, Variant::F4x4);
        assert!(f2f < 1e-5 && f2b < 1e-5, "F(2x2): {f2f:e} {f2b:e}");
        assert!(f4f < 3e-5 && f4b < 3e-5, "F(4x4): {f4f:e} {f4b:e}");
    }
}

/// The `f32` errors on VGG16's 3 x 3 layers, bounded (and printed with
/// `cargo test --release -p sightline-tensor f32_error_on_vgg16 -- --nocapture`).
/// Each layer is also convolved in f64: a few seconds in a release build.
#[test]
fn f32_error_on_vgg16_layers() {
    for (cin, cout, hw) in [
        (64, 64, 224),
        (64, 128, 112),
        (128, 128, 112),
        (128, 256, 56),
        (256, 256, 56),
        (256, 512, 28),
        (512, 512, 28),
        (512, 512, 14),
    ] {
        let (f2f, f2b) = f32_relative_errors(cin, cout, hw, Variant::F2x2);
        let (f4f, f4b) = f32_relative_errors(cin, cout, hw, Variant::F4x4);
        println!(
            "{cin}x{cout}@{hw}: F(2x2) fwd {f2f:.2e} bwd {f2b:.2e}; F(4x4) fwd {f4f:.2e} bwd {f4b:.2e}"
        );
        assert!(f2f.max(f2b) < 3e-6 && f4f.max(f4b) < 3e-5);
    }
}

#[test]
fn f4_bit_identical_across_thread_counts() {
    let x = seq::<f32>(&[2, 24, 13, 11], 7);
    let wt = seq::<f32>(&[30, 24, 3, 3], 5);
    for k in [
        WinogradKernel::forward_with(&wt, Variant::F4x4).unwrap(),
        WinogradKernel::backward_input_with(&wt, Variant::F4x4).unwrap(),
    ] {
        let x = if k.in_channels() == 24 {
            x.clone()
        } else {
            seq::<f32>(&[2, 30, 13, 11], 7)
        };
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| conv3x3(&x, &k, (1, 1), None).unwrap())
        };
        assert_eq!(run(1).data(), run(3).data());
    }
}

#[test]
fn f4_baseline_and_avx2_transforms_give_the_same_bits() {
    // Both builds of the transforms, on a shape with partial tiles and
    // padding, through the whole convolution.
    let x = normal(&[1, 20, 17, 22], 1.0, 5).cast::<f32>();
    let g = Geometry {
        cin: 20,
        h: 17,
        w: 22,
        ph: 1,
        pw: 2,
        cout: 24,
        ho: 17,
        wo: 24,
    };
    let (tw, tiles): (usize, usize) = (6, 5 * 6);
    let ldm = tiles.div_ceil(NR) * NR;
    let kinds = [Transforms::Baseline, crate::simd::simd_level()];
    let outs: Vec<Vec<f32>> = kinds
        .iter()
        .map(|&tk| {
            let mut v = vec![0f32; 36 * 20 * ldm];
            transforms::input_transform(
                tk,
                Variant::F4x4,
                x.data(),
                &g,
                tw,
                (0, tiles),
                ldm,
                &mut v,
            );
            // Use the transformed input as a stand-in for the products.
            let mut dst = vec![0f32; 20 * g.ho * g.wo];
            let b: Vec<f32> = (0..20).map(|i| i as f32).collect();
            let m = &v[..];
            let planes = transforms::OutPlanes::new(&mut dst);
            // SAFETY: `dst` is this call's alone.
            unsafe {
                transforms::output_transform(
                    tk,
                    Variant::F4x4,
                    m,
                    &g,
                    tw,
                    (0, tiles),
                    ldm,
                    20,
                    (0, 20),
                    Some(&b),
                    planes,
                )
            };
            v.extend(dst);
            v
        })
        .collect();
    assert_eq!(outs[0], outs[1]);
}
