//! Tests across the depthwise kernels: against direct loops and the
//! grouped `conv2d` on many shapes, finite differences, thread counts and
//! SIMD levels, errors, and the asymmetric padding of ordinary
//! convolutions.

use super::backward_input::backward_input_at;
use super::backward_weight::backward_weight_at;
use super::forward::depthwise_conv2d_at;
use super::*;
use crate::conv::reference::{naive, naive_backward_input};
use crate::conv::{conv2d, conv2d_backward_input, conv2d_backward_weight, Conv2dParams};
use crate::error::TensorError;
use crate::simd::SimdLevel;
use crate::tensor::Tensor;
use crate::testing::{rnd, seq};
use crate::testing_grad::{assert_close, numeric_grad, on_threads};
use proptest::prelude::*;

/// Output, input gradient and weight gradient of a depthwise convolution
/// by direct loops over the definition (`gout` the output gradient).
fn by_definition(
    x: &Tensor<f64>,
    wt: &Tensor<f64>,
    gout: &Tensor<f64>,
    p: DepthwiseParams,
) -> (Tensor<f64>, Tensor<f64>, Tensor<f64>) {
    let [n, c, h, w] = x.dims4("t").unwrap();
    let [cout, _, kh, kw] = wt.dims4("t").unwrap();
    let [_, _, ho, wo] = gout.dims4("t").unwrap();
    let m = cout / c;
    let mut y = Tensor::zeros([n, cout, ho, wo]);
    let mut gin = Tensor::zeros(x.shape().to_vec());
    let mut gw = Tensor::zeros(wt.shape().to_vec());
    for b in 0..n {
        for o in 0..cout {
            for oy in 0..ho {
                for ox in 0..wo {
                    let yi = ((b * cout + o) * ho + oy) * wo + ox;
                    for ki in 0..kh {
                        for kj in 0..kw {
                            let iy = (oy * p.stride.0 + ki * p.dilation.0) as isize
                                - p.pads.top as isize;
                            let ix = (ox * p.stride.1 + kj * p.dilation.1) as isize
                                - p.pads.left as isize;
                            if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                continue;
                            }
                            let xi = ((b * c + o / m) * h + iy as usize) * w + ix as usize;
                            let wi = (o * kh + ki) * kw + kj;
                            y.data_mut()[yi] += wt.data()[wi] * x.data()[xi];
                            gin.data_mut()[xi] += wt.data()[wi] * gout.data()[yi];
                            gw.data_mut()[wi] += gout.data()[yi] * x.data()[xi];
                        }
                    }
                }
            }
        }
    }
    (y, gin, gw)
}

/// `x` with `pads` zeros around each plane, by hand.
fn padded_by_hand(x: &Tensor<f64>, pads: Pads2d) -> Tensor<f64> {
    let [n, c, h, w] = x.dims4("t").unwrap();
    let (hp, wp) = (h + pads.top + pads.bottom, w + pads.left + pads.right);
    let mut out = Tensor::zeros([n, c, hp, wp]);
    for plane in 0..n * c {
        for iy in 0..h {
            for ix in 0..w {
                out.data_mut()[(plane * hp + iy + pads.top) * wp + ix + pads.left] =
                    x.data()[(plane * h + iy) * w + ix];
            }
        }
    }
    out
}

/// Output size along one axis, `None` if the window does not fit.
fn out_len(len: usize, k: usize, s: usize, before: usize, after: usize, d: usize) -> Option<usize> {
    let span = (k - 1) * d + 1;
    let padded = len + before + after;
    (padded >= span).then(|| (padded - span) / s + 1)
}

/// Kernels, strides, dilations, multipliers and paddings (symmetric and
/// not) on odd sizes, narrow (8 lanes), medium (16) and wide (32) rows.
fn cases() -> Vec<([usize; 4], [usize; 4], DepthwiseParams)> {
    let mut v = Vec::new();
    for (kh, kw) in [(1, 1), (3, 3), (5, 5), (7, 7), (3, 5)] {
        for stride in [(1, 1), (2, 2), (2, 1)] {
            for dilation in [(1, 1), (2, 2)] {
                for m in [1, 2] {
                    let sym = Pads2d::symmetric(kh / 2 * dilation.0, kw / 2 * dilation.1);
                    for pads in [
                        sym,
                        Pads2d::from_onnx([0, 1, 2, 0]),
                        Pads2d::from_onnx([1, 0, 0, 2]),
                    ] {
                        for (h, w) in [(9, 11), (6, 21), (13, 45)] {
                            let p = DepthwiseParams {
                                stride,
                                pads,
                                dilation,
                            };
                            v.push(([2, 3, h, w], [3 * m, 1, kh, kw], p));
                        }
                    }
                }
            }
        }
    }
    v
}

#[test]
fn all_three_match_the_definition_on_many_shapes() {
    let mut checked = 0;
    for (xs, ws, p) in cases() {
        let ho = out_len(
            xs[2],
            ws[2],
            p.stride.0,
            p.pads.top,
            p.pads.bottom,
            p.dilation.0,
        );
        let wo = out_len(
            xs[3],
            ws[3],
            p.stride.1,
            p.pads.left,
            p.pads.right,
            p.dilation.1,
        );
        let x = rnd(&xs, 1);
        let wt = rnd(&ws, 2);
        let (Some(ho), Some(wo)) = (ho, wo) else {
            let e = depthwise_conv2d(&x, &wt, None, p).unwrap_err();
            assert!(
                matches!(e, TensorError::InvalidParameter { .. }),
                "{ws:?} {p:?}"
            );
            continue;
        };
        let b = rnd(&[ws[0]], 3);
        let gout = rnd(&[xs[0], ws[0], ho, wo], 4);
        let (want_y, want_gin, want_gw) = by_definition(&x, &wt, &gout, p);
        let y = depthwise_conv2d(&x, &wt, None, p).unwrap();
        assert!(
            y.max_abs_diff(&want_y).unwrap() < 1e-12,
            "{xs:?} {ws:?} {p:?}"
        );
        let yb = depthwise_conv2d(&x, &wt, Some(&b), p).unwrap();
        let shifted = want_y.zip_map(&y, "t", |a, _| a).unwrap();
        let per_channel = ho * wo;
        for (i, (&got, &want)) in yb.data().iter().zip(shifted.data()).enumerate() {
            let want = want + b.data()[(i / per_channel) % ws[0]];
            assert!((got - want).abs() < 1e-12, "bias, {xs:?} {ws:?} {p:?}");
        }
        let gin = depthwise_conv2d_backward_input(&gout, &wt, &xs, p).unwrap();
        assert!(
            gin.max_abs_diff(&want_gin).unwrap() < 1e-12,
            "{xs:?} {ws:?} {p:?}"
        );
        let gw = depthwise_conv2d_backward_weight(&gout, &x, &ws, p).unwrap();
        assert!(
            gw.max_abs_diff(&want_gw).unwrap() < 1e-11,
            "{xs:?} {ws:?} {p:?}"
        );
        checked += 1;
    }
    assert!(checked > 300, "{checked} shapes checked");
}

/// Against the existing grouped convolution (groups = C): with symmetric
/// padding directly, with asymmetric padding on an input padded by hand.
#[test]
fn forward_and_gradients_match_grouped_conv2d() {
    for (xs, ws, p) in cases() {
        let ho = out_len(
            xs[2],
            ws[2],
            p.stride.0,
            p.pads.top,
            p.pads.bottom,
            p.dilation.0,
        );
        let wo = out_len(
            xs[3],
            ws[3],
            p.stride.1,
            p.pads.left,
            p.pads.right,
            p.dilation.1,
        );
        let (Some(ho), Some(wo)) = (ho, wo) else {
            continue;
        };
        let x = seq(&xs, 7);
        let wt = seq(&ws, 5);
        let b = seq(&[ws[0]], 3);
        let gout = seq(&[xs[0], ws[0], ho, wo], 3);
        let cp = Conv2dParams {
            stride: p.stride,
            padding: (0, 0),
            dilation: p.dilation,
            groups: xs[1],
            ..Conv2dParams::default()
        };
        let xp = padded_by_hand(&x, p.pads);
        let want = conv2d(&xp, &wt, Some(&b), cp).unwrap();
        let got = depthwise_conv2d(&x, &wt, Some(&b), p).unwrap();
        assert!(
            got.max_abs_diff(&want).unwrap() < 1e-12,
            "{xs:?} {ws:?} {p:?}"
        );
        let want = conv2d_backward_weight(&xp, &gout, &ws, cp).unwrap();
        let got = depthwise_conv2d_backward_weight(&gout, &x, &ws, p).unwrap();
        assert!(
            got.max_abs_diff(&want).unwrap() < 1e-11,
            "{xs:?} {ws:?} {p:?}"
        );
        if p.pads.is_symmetric() {
            let cp = Conv2dParams {
                padding: (p.pads.top, p.pads.left),
                ..cp
            };
            let want = conv2d(&x, &wt, Some(&b), cp).unwrap();
            let got = depthwise_conv2d(&x, &wt, Some(&b), p).unwrap();
            assert!(
                got.max_abs_diff(&want).unwrap() < 1e-12,
                "{xs:?} {ws:?} {p:?}"
            );
            let want = conv2d_backward_input(&gout, &wt, (xs[2], xs[3]), cp).unwrap();
            let got = depthwise_conv2d_backward_input(&gout, &wt, &xs, p).unwrap();
            assert!(
                got.max_abs_diff(&want).unwrap() < 1e-12,
                "{xs:?} {ws:?} {p:?}"
            );
        }
    }
}

/// Planes larger than one band (of output rows forward, of input rows
/// backward), in both element types.
#[test]
fn planes_of_several_bands_match_the_definition() {
    for (xs, ws, p) in [
        ([1, 2, 90, 300], [2, 1, 3, 3], DepthwiseParams::new(1, 1)),
        ([1, 2, 91, 301], [4, 1, 5, 5], DepthwiseParams::new(2, 2)),
        (
            [2, 1, 70, 250],
            [1, 1, 3, 3],
            DepthwiseParams {
                stride: (3, 2),
                pads: Pads2d::from_onnx([0, 1, 2, 2]),
                dilation: (2, 3),
            },
        ),
    ] {
        let x = rnd(&xs, 5);
        let wt = rnd(&ws, 6);
        let y = depthwise_conv2d(&x, &wt, None, p).unwrap();
        let gout = rnd(y.shape(), 7);
        let (want_y, want_gin, want_gw) = by_definition(&x, &wt, &gout, p);
        assert!(y.max_abs_diff(&want_y).unwrap() < 1e-12);
        let gin = depthwise_conv2d_backward_input(&gout, &wt, &xs, p).unwrap();
        assert!(gin.max_abs_diff(&want_gin).unwrap() < 1e-12);
        let gw = depthwise_conv2d_backward_weight(&gout, &x, &ws, p).unwrap();
        assert!(gw.max_abs_diff(&want_gw).unwrap() < 1e-9);
        // f32: to rounding.
        let y32 = depthwise_conv2d(&x.cast::<f32>(), &wt.cast::<f32>(), None, p).unwrap();
        assert!(y32.cast::<f64>().max_abs_diff(&want_y).unwrap() < 1e-5);
        let gin32 = depthwise_conv2d_backward_input(&gout.cast::<f32>(), &wt.cast::<f32>(), &xs, p)
            .unwrap();
        assert!(gin32.cast::<f64>().max_abs_diff(&want_gin).unwrap() < 1e-5);
    }
}

/// A geometry small enough for finite differences: input and weight
/// shapes and parameters, the window fitting.
fn small_geometry() -> impl Strategy<Value = ([usize; 4], [usize; 4], DepthwiseParams)> {
    (
        (1usize..3, 1usize..4, 1usize..3),
        (1usize..10, 1usize..10),
        (1usize..5, 1usize..5),
        (1usize..4, 1usize..4, 1usize..3, 1usize..3),
        prop::array::uniform4(0usize..3),
    )
        .prop_filter_map(
            "window larger than the padded input",
            |((n, c, m), (h, w), (kh, kw), (sh, sw, dh, dw), pads)| {
                let pads = Pads2d::from_onnx(pads);
                out_len(h, kh, sh, pads.top, pads.bottom, dh)?;
                out_len(w, kw, sw, pads.left, pads.right, dw)?;
                let p = DepthwiseParams {
                    stride: (sh, sw),
                    pads,
                    dilation: (dh, dw),
                };
                Some(([n, c, h, w], [c * m, 1, kh, kw], p))
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The output and both gradients against the definition, and the
    /// gradients against central differences of `<conv(x, w) + b, g>`.
    #[test]
    fn gradients_match_finite_differences(
        (xs, ws, p) in small_geometry(),
        seed in 0u64..1000,
    ) {
        let x = rnd(&xs, seed);
        let wt = rnd(&ws, seed + 1);
        let b = rnd(&[ws[0]], seed + 2);
        let y = depthwise_conv2d(&x, &wt, Some(&b), p).unwrap();
        let gout = rnd(y.shape(), seed + 3);
        let (want_y, want_gin, want_gw) = by_definition(&x, &wt, &gout, p);
        let unbiased = depthwise_conv2d(&x, &wt, None, p).unwrap();
        assert_close(&unbiased, &want_y, 1e-12);
        let gin = depthwise_conv2d_backward_input(&gout, &wt, &xs, p).unwrap();
        assert_close(&gin, &want_gin, 1e-12);
        let want = numeric_grad(|x| depthwise_conv2d(x, &wt, Some(&b), p).unwrap(), &x, &gout);
        assert_close(&gin, &want, 1e-7);
        let gw = depthwise_conv2d_backward_weight(&gout, &x, &ws, p).unwrap();
        assert_close(&gw, &want_gw, 1e-12);
        let want = numeric_grad(|w| depthwise_conv2d(&x, w, Some(&b), p).unwrap(), &wt, &gout);
        assert_close(&gw, &want, 1e-7);
    }
}

/// f32 runs of the three kernels on a few shapes (several bands, stride 2,
/// a multiplier, asymmetric padding).
fn f32_runs(level: SimdLevel) -> Vec<Vec<u32>> {
    let bits = |t: Tensor<f32>| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let mut out = Vec::new();
    for (xs, ws, p) in [
        ([2, 8, 57, 131], [16, 1, 3, 3], DepthwiseParams::new(2, 1)),
        ([1, 6, 150, 260], [6, 1, 5, 5], DepthwiseParams::new(1, 2)),
        (
            [3, 5, 14, 14],
            [5, 1, 7, 7],
            DepthwiseParams {
                pads: Pads2d::from_onnx([2, 3, 4, 3]),
                ..DepthwiseParams::default()
            },
        ),
    ] {
        let x = crate::testing::seq::<f32>(&xs, 7);
        let wt = crate::testing::seq::<f32>(&ws, 5);
        let b = crate::testing::seq::<f32>(&[ws[0]], 3);
        let y = depthwise_conv2d_at(level, &x, &wt, Some(&b), p).unwrap();
        let gout = crate::testing::seq::<f32>(y.shape(), 11);
        let gin = backward_input_at(level, &gout, &wt, &xs, p, None).unwrap();
        let gw = backward_weight_at(level, &gout, &x, &ws, p).unwrap();
        out.extend([bits(y), bits(gin), bits(gw)]);
    }
    out
}

#[test]
fn bit_identical_for_one_and_four_threads() {
    let level = crate::simd::simd_level();
    let one = on_threads(1, || f32_runs(level));
    let four = on_threads(4, || f32_runs(level));
    assert!(one == four, "results differ between 1 and 4 threads");
}

#[test]
fn bit_identical_at_every_simd_level() {
    let want = f32_runs(SimdLevel::Baseline);
    for level in SimdLevel::available() {
        assert!(
            f32_runs(level) == want,
            "{level:?} differs from the baseline"
        );
    }
}

/// With an epilogue, the same bits as the input gradient with the epilogue
/// applied afterwards (each element once, with its own index), over
/// several bands; an error of the epilogue is the call's error.
#[test]
fn an_epilogue_is_applied_once_per_element() {
    let then = |v: &mut [f32], offset: usize| {
        for (i, x) in v.iter_mut().enumerate() {
            *x = *x * 3.0 + ((offset + i) % 7) as f32;
        }
        Ok(())
    };
    for (xs, ws, p) in [
        ([2, 3, 11, 9], [6, 1, 3, 3], DepthwiseParams::new(2, 1)),
        ([1, 2, 200, 300], [2, 1, 3, 3], DepthwiseParams::new(1, 1)),
    ] {
        let wt = crate::testing::seq::<f32>(&ws, 5);
        let y = depthwise_conv2d(&crate::testing::seq::<f32>(&xs, 3), &wt, None, p).unwrap();
        let gout = crate::testing::seq::<f32>(y.shape(), 3);
        let mut want = depthwise_conv2d_backward_input(&gout, &wt, &xs, p).unwrap();
        then(want.data_mut(), 0).unwrap();
        let got = depthwise_conv2d_backward_input_then(&gout, &wt, &xs, p, Some(&then)).unwrap();
        assert_eq!(got.data(), want.data(), "{xs:?}");
    }
    let fail = |_: &mut [f32], offset: usize| {
        if offset == 0 {
            return Ok(());
        }
        Err(TensorError::InvalidParameter {
            op: "test epilogue",
            message: "refused".into(),
        })
    };
    let wt = crate::testing::seq::<f32>(&[4, 1, 3, 3], 5);
    let gout = crate::testing::seq::<f32>(&[1, 4, 8, 8], 3);
    let p = DepthwiseParams::new(1, 1);
    let e = depthwise_conv2d_backward_input_then(&gout, &wt, &[1, 4, 8, 8], p, Some(&fail));
    assert!(matches!(
        e,
        Err(TensorError::InvalidParameter {
            op: "test epilogue",
            ..
        })
    ));
}

#[test]
fn bad_inputs_are_errors() {
    let p = DepthwiseParams::new(1, 1);
    let x = Tensor::<f32>::zeros([1, 4, 6, 6]);
    let w = Tensor::<f32>::zeros([4, 1, 3, 3]);
    let g = Tensor::<f32>::zeros([1, 4, 6, 6]);
    // Weight not [C M, 1, KH, KW].
    for ws in [vec![4, 2, 3, 3], vec![6, 1, 3, 3], vec![4, 3, 3]] {
        let bad = Tensor::<f32>::zeros(ws.clone());
        assert!(depthwise_conv2d(&x, &bad, None, p).is_err(), "{ws:?}");
        assert!(depthwise_conv2d_backward_input(&g, &bad, &[1, 4, 6, 6], p).is_err());
        assert!(depthwise_conv2d_backward_weight(&g, &x, &ws, p).is_err());
    }
    // Bias of the wrong length.
    let b = Tensor::<f32>::zeros([3]);
    assert!(matches!(
        depthwise_conv2d(&x, &w, Some(&b), p),
        Err(TensorError::ShapeMismatch { .. })
    ));
    // Window larger than the padded input; zero stride.
    let big = Tensor::<f32>::zeros([4, 1, 9, 9]);
    assert!(matches!(
        depthwise_conv2d(&x, &big, None, p),
        Err(TensorError::InvalidParameter { .. })
    ));
    let zero = DepthwiseParams {
        stride: (1, 0),
        ..p
    };
    assert!(matches!(
        depthwise_conv2d(&x, &w, None, zero),
        Err(TensorError::InvalidParameter { .. })
    ));
    // Output gradient of the wrong shape; input shape of the wrong rank or
    // too large to address.
    let g5 = Tensor::<f32>::zeros([1, 4, 5, 6]);
    assert!(matches!(
        depthwise_conv2d_backward_input(&g5, &w, &[1, 4, 6, 6], p),
        Err(TensorError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        depthwise_conv2d_backward_weight(&g5, &x, &[4, 1, 3, 3], p),
        Err(TensorError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        depthwise_conv2d_backward_input(&g, &w, &[4, 6, 6], p),
        Err(TensorError::Rank { .. })
    ));
    for shape in [[usize::MAX, 4, 6, 6], [1, 4, usize::MAX, 6]] {
        assert!(matches!(
            depthwise_conv2d_backward_input(&g, &w, &shape, p),
            Err(TensorError::TooLarge { .. })
        ));
    }
    let huge_stride = DepthwiseParams {
        stride: (usize::MAX, usize::MAX),
        ..p
    };
    // A stride larger than the input is no error: one output element.
    let y = depthwise_conv2d(&x, &w, None, huge_stride).unwrap();
    assert_eq!(y.shape(), &[1, 4, 1, 1]);
}

/// Geometries where some input element is reached by no output (strides
/// wider than the window, padding only read by the window): its gradient
/// is zero.
#[test]
fn inputs_no_output_reaches() {
    for (xs, ws, p) in [
        (
            [1, 1, 1, 1],
            [1, 1, 1, 1],
            DepthwiseParams {
                stride: (2, 1),
                pads: Pads2d::from_onnx([1, 0, 0, 0]),
                dilation: (1, 1),
            },
        ),
        (
            [1, 1, 1, 1],
            [1, 1, 1, 2],
            DepthwiseParams {
                stride: (1, 3),
                pads: Pads2d::from_onnx([0, 0, 0, 2]),
                dilation: (1, 2),
            },
        ),
        ([2, 2, 7, 7], [2, 1, 1, 1], DepthwiseParams::new(3, 0)),
    ] {
        let x = rnd(&xs, 1);
        let wt = rnd(&ws, 2);
        let y = depthwise_conv2d(&x, &wt, None, p).unwrap();
        let gout = rnd(y.shape(), 3);
        let (want_y, want_gin, want_gw) = by_definition(&x, &wt, &gout, p);
        assert!(
            y.max_abs_diff(&want_y).unwrap() < 1e-12,
            "{xs:?} {ws:?} {p:?}"
        );
        let gin = depthwise_conv2d_backward_input(&gout, &wt, &xs, p).unwrap();
        assert!(
            gin.max_abs_diff(&want_gin).unwrap() < 1e-12,
            "{xs:?} {ws:?} {p:?}"
        );
        let gw = depthwise_conv2d_backward_weight(&gout, &x, &ws, p).unwrap();
        assert!(
            gw.max_abs_diff(&want_gw).unwrap() < 1e-12,
            "{xs:?} {ws:?} {p:?}"
        );
    }
}

#[test]
fn known_values() {
    // One 3 x 3 plane 1..=9, kernel [[0, 1], [2, 3]] and bias 10, stride 2,
    // padding 1 on the top and left only: outputs (0, 0) = 3 * 1 + 10,
    // (0, 1) = 2 * 2 + 3 * 3 + 10, (1, 0) = 1 * 4 + 3 * 7 + 10,
    // (1, 1) = 0 * 5 + 1 * 6 + 2 * 8 + 3 * 9 + 10.
    let x = Tensor::from_vec([1, 1, 3, 3], (1..=9).map(f64::from).collect()).unwrap();
    let w = Tensor::from_vec([1, 1, 2, 2], vec![0.0, 1.0, 2.0, 3.0]).unwrap();
    let b = Tensor::from_vec([1], vec![10.0]).unwrap();
    let p = DepthwiseParams {
        stride: (2, 2),
        pads: Pads2d::from_onnx([1, 1, 0, 0]),
        dilation: (1, 1),
    };
    let y = depthwise_conv2d(&x, &w, Some(&b), p).unwrap();
    assert_eq!(y.data(), &[13.0, 23.0, 35.0, 59.0]);
    // The input gradient of a unit output gradient at (1, 1): the kernel
    // on input rows 1..3, columns 1..3.
    let g = Tensor::from_vec([1, 1, 2, 2], vec![0.0, 0.0, 0.0, 1.0]).unwrap();
    let gin = depthwise_conv2d_backward_input(&g, &w, &[1, 1, 3, 3], p).unwrap();
    assert_eq!(gin.data(), &[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 2.0, 3.0]);
    let gw = depthwise_conv2d_backward_weight(&g, &x, &[1, 1, 2, 2], p).unwrap();
    assert_eq!(gw.data(), &[5.0, 6.0, 8.0, 9.0]);
}

#[test]
fn padded_conv2d_is_conv2d_when_symmetric_and_pads_explicitly_otherwise() {
    let x = seq(&[2, 4, 9, 8], 7);
    let w = seq(&[6, 2, 3, 2], 5);
    let b = seq(&[6], 3);
    let (stride, dilation, groups) = ((2, 1), (1, 2), 2);
    let sym = Pads2d::symmetric(1, 2);
    let p = Conv2dParams {
        stride,
        padding: (1, 2),
        dilation,
        groups,
        ..Conv2dParams::default()
    };
    let got = conv2d_padded(&x, &w, Some(&b), stride, sym, dilation, groups).unwrap();
    assert_eq!(got, conv2d(&x, &w, Some(&b), p).unwrap());
    let gout = seq(got.shape(), 3);
    let gin = conv2d_padded_backward_input(&gout, &w, (9, 8), stride, sym, dilation, groups);
    assert_eq!(
        gin.unwrap(),
        conv2d_backward_input(&gout, &w, (9, 8), p).unwrap()
    );
    for pads in [
        Pads2d::from_onnx([0, 0, 1, 1]),
        Pads2d::from_onnx([2, 1, 0, 3]),
    ] {
        let xp = padded_by_hand(&x, pads);
        let cp = Conv2dParams {
            padding: (0, 0),
            ..p
        };
        let want = naive(&xp, &w, cp);
        let got = conv2d_padded(&x, &w, None, stride, pads, dilation, groups).unwrap();
        assert!(got.max_abs_diff(&want).unwrap() < 1e-12, "{pads:?}");
        // The input gradient: the padded input's, cropped.
        let gout = seq(got.shape(), 3);
        let [_, _, hp, wp] = xp.dims4("t").unwrap();
        let full = naive_backward_input(&gout, &w, (hp, wp), cp);
        let want = Tensor::from_vec(
            [2, 4, 9, 8],
            (0..2 * 4 * 9 * 8)
                .map(|i| {
                    let (plane, iy, ix) = (i / 72, i / 8 % 9, i % 8);
                    full.data()[(plane * hp + iy + pads.top) * wp + ix + pads.left]
                })
                .collect(),
        )
        .unwrap();
        let got = conv2d_padded_backward_input(&gout, &w, (9, 8), stride, pads, dilation, groups)
            .unwrap();
        assert!(got.max_abs_diff(&want).unwrap() < 1e-12, "{pads:?}");
    }
    let huge = Pads2d::from_onnx([usize::MAX, 0, 0, 0]);
    assert!(matches!(
        conv2d_padded(&x, &w, None, stride, huge, dilation, groups),
        Err(TensorError::TooLarge { .. })
    ));
}

#[test]
fn pads_split_into_a_symmetric_part_and_the_rest() {
    let pads = Pads2d::from_onnx([1, 3, 2, 0]);
    assert_eq!(
        pads,
        Pads2d {
            top: 1,
            left: 3,
            bottom: 2,
            right: 0
        }
    );
    assert!(!pads.is_symmetric());
    let (sym, rest) = pads.split_symmetric();
    assert_eq!(sym, (1, 0));
    assert_eq!(rest, Pads2d::from_onnx([0, 3, 1, 0]));
    assert!(Pads2d::symmetric(2, 1).is_symmetric());
    assert!(Pads2d::symmetric(2, 1).split_symmetric().1.is_zero());
}
