//! Tests of max pooling: examples, and every build of the kernels against
//! a straightforward scalar reference of PyTorch's rule, bit for bit.

use super::*;
use crate::policy::SimdCap;
use crate::pool::pool_output_len;
use crate::testing::{dot, rnd, t};
use proptest::prelude::*;

#[test]
fn max_pool_takes_first_maximum() {
    let x = t(
        &[1, 1, 4, 4],
        &[
            1., 3., 3., 0., 3., 2., 5., 5., 0., 0., -1., -1., 0., 0., -1., -2.,
        ],
    );
    let (y, idx) = max_pool2d(&x, MaxPool2dParams::new(2, 2, 0)).unwrap();
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_eq!(y.data(), &[3., 5., 0., -1.]);
    assert_eq!(idx, vec![1, 6, 8, 10]);
}

#[test]
fn max_pool_padding_never_wins_and_nan_does() {
    let x = t(&[1, 1, 2, 2], &[-4., -3., -2., -1.]);
    let (y, idx) = max_pool2d(&x, MaxPool2dParams::new(3, 1, 1)).unwrap();
    assert_eq!(y.data(), &[-1.; 4]);
    assert_eq!(idx, vec![3; 4]);
    let x = t(&[1, 1, 2, 2], &[1., f64::NAN, 3., 2.]);
    let (y, idx) = max_pool2d(&x, MaxPool2dParams::new(2, 2, 0)).unwrap();
    assert!(y.data()[0].is_nan());
    assert_eq!(idx, vec![1]);
    let x = t(&[1, 1, 1, 2], &[f64::NEG_INFINITY; 2]);
    let (y, idx) = max_pool2d(&x, MaxPool2dParams::new(2, 1, 1)).unwrap();
    assert_eq!(y.data(), &[f64::NEG_INFINITY; 6]);
    assert_eq!(idx, vec![0, 0, 1, 0, 0, 1]);
}

#[test]
fn max_pool_2x2_rows_match_a_naive_pool() {
    // Ties, NaN, -inf and odd sizes (ceil mode leaves partial windows at
    // the edges, which the general loop takes).
    let vals = [
        0.0,
        1.0,
        1.0,
        f64::NAN,
        -1.0,
        f64::NEG_INFINITY,
        2.0,
        2.0,
        -0.0,
    ];
    for &(h, w, ceil) in &[(4, 6, false), (5, 7, false), (5, 7, true), (2, 3, true)] {
        let n = 2 * h * w;
        let x = t(
            &[1, 2, h, w],
            &(0..n).map(|i| vals[(i * 7) % 9]).collect::<Vec<_>>(),
        );
        let p = MaxPool2dParams {
            ceil_mode: ceil,
            ..MaxPool2dParams::new(2, 2, 0)
        };
        let (y, idx) = max_pool2d(&x, p).unwrap();
        let (ho, wo) = (y.shape()[2], y.shape()[3]);
        for c in 0..2 {
            for oy in 0..ho {
                for ox in 0..wo {
                    let (mut best, mut at) = (f64::NEG_INFINITY, (2 * oy) * w + 2 * ox);
                    for iy in 2 * oy..(2 * oy + 2).min(h) {
                        for ix in 2 * ox..(2 * ox + 2).min(w) {
                            let v = x.data()[c * h * w + iy * w + ix];
                            if v > best || v.is_nan() {
                                (best, at) = (v, iy * w + ix);
                            }
                        }
                    }
                    let o = c * ho * wo + oy * wo + ox;
                    assert_eq!(idx[o] as usize, at, "{h}x{w} c{c} ({oy}, {ox})");
                    assert_eq!(y.data()[o].to_bits(), best.to_bits());
                }
            }
        }
    }
}

#[test]
fn max_pool_dilation_and_ceil_mode() {
    let x = t(&[1, 1, 5, 5], &(0..25).map(f64::from).collect::<Vec<_>>());
    let p = MaxPool2dParams {
        dilation: (2, 2),
        ..MaxPool2dParams::new(2, 1, 0)
    };
    let (y, idx) = max_pool2d(&x, p).unwrap();
    assert_eq!(y.shape(), &[1, 1, 3, 3]);
    assert_eq!(y.data(), &[12., 13., 14., 17., 18., 19., 22., 23., 24.]);
    assert_eq!(idx, vec![12, 13, 14, 17, 18, 19, 22, 23, 24]);
    let p = MaxPool2dParams {
        ceil_mode: true,
        ..MaxPool2dParams::new(2, 2, 0)
    };
    let (y, idx) = max_pool2d(&x, p).unwrap();
    assert_eq!(y.data(), &[6., 8., 9., 16., 18., 19., 21., 23., 24.]);
    assert_eq!(idx, vec![6, 8, 9, 16, 18, 19, 21, 23, 24]);
}

#[test]
fn max_pool_backward_sums_shared_indices() {
    let mut x = Tensor::<f64>::zeros([1, 1, 3, 3]);
    x.data_mut()[4] = 10.0;
    let (_, idx) = max_pool2d(&x, MaxPool2dParams::new(2, 1, 0)).unwrap();
    assert_eq!(idx, vec![4; 4]);
    let g = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
    let gin = max_pool2d_backward(&g, &idx, &[1, 1, 3, 3]).unwrap();
    assert_eq!(gin.data(), &[0., 0., 0., 0., 10., 0., 0., 0., 0.]);
    assert!(matches!(
        max_pool2d_backward(&g, &idx[..3], &[1, 1, 3, 3]),
        Err(TensorError::LengthMismatch { .. })
    ));
    assert!(matches!(
        max_pool2d_backward(&g, &[0, 1, 2, 9], &[1, 1, 3, 3]),
        Err(TensorError::InvalidParameter { .. })
    ));
    assert!(matches!(
        max_pool2d_backward(&g, &idx, &[1, 2, 3, 3]),
        Err(TensorError::ShapeMismatch { .. })
    ));
}

#[test]
fn max_pool_backward_is_adjoint_of_gather() {
    let x = rnd(&[2, 3, 7, 6], 1);
    let p = MaxPool2dParams {
        ceil_mode: true,
        ..MaxPool2dParams::new(3, 2, 1)
    };
    let (y, idx) = max_pool2d(&x, p).unwrap();
    let (hw, hwo) = (42, y.len() / 6);
    // The forward map for fixed indices, applied to another input.
    let x2 = rnd(x.shape(), 2);
    let gathered: Vec<f64> = idx
        .iter()
        .enumerate()
        .map(|(j, &i)| x2.data()[j / hwo * hw + i as usize])
        .collect();
    let gathered = Tensor::from_vec(y.shape().to_vec(), gathered).unwrap();
    let g = rnd(y.shape(), 3);
    let gin = max_pool2d_backward(&g, &idx, x.shape()).unwrap();
    let (lhs, rhs) = (dot(&gathered, &g), dot(&x2, &gin));
    assert!((lhs - rhs).abs() < 1e-12, "{lhs} vs {rhs}");
}

/// Max pooling written out from the parameters alone: every window scanned
/// in row-major order over its taps, padding skipped, an element taken when
/// it is greater than the maximum so far or NaN, the index starting at the
/// first in-bound tap. `None` where PyTorch refuses the parameters (padding
/// over half the kernel, no output, a window of padding only).
fn reference<T: Element>(x: &Tensor<T>, p: MaxPool2dParams) -> Option<(Tensor<T>, Vec<u32>)> {
    let &[n, c, h, w] = x.shape() else {
        return None;
    };
    let ((kh, kw), (sh, sw), (ph, pw), (dh, dw)) = (p.kernel, p.stride, p.padding, p.dilation);
    if ph > kh / 2 || pw > kw / 2 {
        return None;
    }
    let ho = pool_output_len(h, kh, sh, ph, dh, p.ceil_mode)?;
    let wo = pool_output_len(w, kw, sw, pw, dw, p.ceil_mode)?;
    let (mut out, mut idx) = (Vec::new(), Vec::new());
    for plane in x.data().chunks(h * w) {
        for oy in 0..ho {
            for ox in 0..wo {
                let (mut best, mut at) = (T::neg_infinity(), None);
                for ky in 0..kh {
                    for kx in 0..kw {
                        let iy = (oy * sh + ky * dh) as isize - ph as isize;
                        let ix = (ox * sw + kx * dw) as isize - pw as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let i = iy as usize * w + ix as usize;
                        at = at.or(Some(i));
                        let v = plane[i];
                        if v > best || v.is_nan() {
                            (best, at) = (v, Some(i));
                        }
                    }
                }
                out.push(best);
                idx.push(at? as u32);
            }
        }
    }
    Some((Tensor::from_vec([n, c, ho, wo], out).ok()?, idx))
}

/// The backward pass written out: zeros, then each output gradient added
/// at its index, in output order.
fn reference_backward<T: Element>(g: &Tensor<T>, idx: &[u32], shape: &[usize]) -> Vec<T> {
    let plane = shape[2] * shape[3];
    let plane_out = g.shape()[2] * g.shape()[3];
    let mut gin = vec![T::zero(); shape.iter().product()];
    for (o, (&g, &i)) in g.data().iter().zip(idx).enumerate() {
        gin[o / plane_out * plane + i as usize] += g;
    }
    gin
}

/// Values with many ties, NaNs of several payloads and signs, infinities
/// and both zeros.
fn tricky(len: usize, seed: u64, f32_nan: bool) -> Vec<f64> {
    let nans = if f32_nan {
        // Exactly representable in `f32` (payload in its top 23 bits).
        [
            f64::from(f32::from_bits(0x7fc0_0001)),
            f64::from(f32::from_bits(0xffc0_0002)),
        ]
    } else {
        [
            f64::from_bits(0x7ff8_0000_0000_0001),
            f64::from_bits(0xfff8_0000_0000_0002),
        ]
    };
    let palette = [
        0.0,
        -0.0,
        1.0,
        1.0,
        -1.0,
        2.5,
        f64::NEG_INFINITY,
        f64::INFINITY,
        nans[0],
        nans[1],
        f64::NAN,
    ];
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let r = (s >> 33) as usize;
            match r % 8 {
                // Rare specials, so that many windows hold none.
                0 => palette[(r >> 3) % palette.len()],
                // Quarters in [-4, 4): plenty of ties.
                _ => ((r >> 3) % 32) as f64 / 4.0 - 4.0,
            }
        })
        .collect()
}

fn same_bits<T: Element>(a: &[T], b: &[T]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_f64_lossless().to_bits() == y.to_f64_lossless().to_bits())
}

/// Every build of the forward kernels against [`reference`] (values and
/// indices, bit for bit, or both refusing), and the backward pass against
/// [`reference_backward`], on `x`.
fn check_against_reference<T: Element>(x: &Tensor<T>, p: MaxPool2dParams) {
    let expected = reference(x, p);
    for level in Level::available() {
        let got = max_pool2d_with(level, x, p);
        match (&expected, got) {
            (None, Err(TensorError::InvalidParameter { .. })) => {}
            (Some((y, idx)), Ok((y2, idx2))) => {
                assert_eq!(y.shape(), y2.shape(), "{level:?} {:?} {p:?}", x.shape());
                assert_eq!(idx, &idx2, "{level:?} {:?} {p:?}", x.shape());
                assert!(
                    same_bits(y.data(), y2.data()),
                    "{level:?} {:?} {p:?}: {:?} vs {:?}",
                    x.shape(),
                    y.data(),
                    y2.data()
                );
            }
            (e, g) => panic!(
                "{level:?} {:?} {p:?}: {:?} vs {:?}",
                x.shape(),
                e.is_some(),
                g.err()
            ),
        }
    }
    if let Some((y, idx)) = expected {
        let g: Vec<T> = tricky(y.len(), y.len() as u64 + 7, true)
            .into_iter()
            .map(T::from_f64_lossy)
            .collect();
        let g = Tensor::from_vec(y.shape().to_vec(), g).unwrap();
        let gin = max_pool2d_backward(&g, &idx, x.shape()).unwrap();
        assert_eq!(gin.shape(), x.shape());
        let expected = reference_backward(&g, &idx, x.shape());
        assert!(same_bits(gin.data(), &expected), "{:?} {p:?}", x.shape());
    }
}

fn input<T: Element>(shape: [usize; 4], seed: u64) -> Tensor<T> {
    let f32_nan = std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>();
    let data = tricky(shape.iter().product(), seed, f32_nan);
    Tensor::from_vec(shape, data.into_iter().map(T::from_f64_lossy).collect()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    /// Odd and even sizes, rows up to 40 wide (vector blocks and their
    /// masked or scalar tails), kernels 1..4, strides 1..3, padding up to
    /// half the kernel, dilation 1..2, both rounding modes, `f32` and `f64`.
    #[test]
    fn max_pool_matches_the_reference(
        n in 1usize..3, c in 1usize..4, h in 1usize..13, w in 1usize..41,
        kh in 1usize..5, kw in 1usize..5, sh in 1usize..4, sw in 1usize..4,
        ph in 0usize..3, pw in 0usize..3, dh in 1usize..3, dw in 1usize..3,
        ceil_mode in any::<bool>(), seed in any::<u64>(),
    ) {
        let p = MaxPool2dParams {
            kernel: (kh, kw),
            stride: (sh, sw),
            padding: (ph.min(kh / 2), pw.min(kw / 2)),
            dilation: (dh, dw),
            ceil_mode,
            simd: SimdCap::Best,
        };
        check_against_reference(&input::<f32>([n, c, h, w], seed), p);
        check_against_reference(&input::<f64>([n, c, h, w], seed), p);
    }
}

#[test]
fn max_pool_matches_the_reference_on_network_shapes() {
    // VGG16's pools (channels cut), ResNet-50's stem pool, odd sizes and
    // both rounding modes, padding beyond what the proptest draws.
    let cases = [
        ([1, 3, 224, 224], MaxPool2dParams::new(2, 2, 0)),
        ([1, 5, 14, 14], MaxPool2dParams::new(2, 2, 0)),
        ([2, 3, 28, 28], MaxPool2dParams::new(2, 2, 0)),
        ([1, 3, 112, 112], MaxPool2dParams::new(3, 2, 1)),
        ([1, 2, 113, 57], MaxPool2dParams::new(3, 2, 1)),
        ([1, 2, 33, 70], MaxPool2dParams::new(5, 1, 2)),
        ([1, 2, 31, 45], MaxPool2dParams::new(7, 3, 3)),
    ];
    for (shape, p) in cases {
        for ceil_mode in [false, true] {
            let p = MaxPool2dParams { ceil_mode, ..p };
            check_against_reference(&input::<f32>(shape, 11), p);
            check_against_reference(&input::<f64>(shape, 12), p);
        }
    }
}

#[test]
fn max_pool_matches_the_reference_on_constant_planes() {
    // All ties (the first tap wins), all -inf (so does padding never), and
    // all NaN (the last tap wins), over rows wide enough for the vectors.
    let nan = f64::from(f32::from_bits(0x7fc0_0003));
    for value in [1.5, -0.0, f64::NEG_INFINITY, nan] {
        for (k, s, pad) in [(2, 2, 0), (3, 2, 1), (3, 1, 1), (2, 1, 0), (4, 2, 2)] {
            let p = MaxPool2dParams::new(k, s, pad);
            let x = Tensor::<f64>::full([1, 2, 9, 45], value);
            check_against_reference(&x, p);
            let x = Tensor::<f32>::full([1, 2, 9, 45], value as f32);
            check_against_reference(&x, p);
        }
    }
}

#[test]
fn max_pool_is_the_same_on_any_number_of_threads() {
    let x = input::<f32>([2, 9, 29, 37], 5);
    let p = MaxPool2dParams::new(3, 2, 1);
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (y, idx) = max_pool2d(&x, p).unwrap();
            let g = Tensor::from_vec(y.shape().to_vec(), vec![0.5f32; y.len()]).unwrap();
            let gin = max_pool2d_backward(&g, &idx, x.shape()).unwrap();
            (
                y.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                idx,
                gin,
            )
        })
    };
    let one = run(1);
    for threads in [2, 3, 5] {
        assert_eq!(one, run(threads), "{threads} threads");
    }
}

/// [`max_pool2d`] under every SIMD cap (the interior kernels of the level
/// each picks) gives the reference's bits and indices.
#[test]
fn max_pool_gives_the_same_bits_under_every_cap() {
    let x = input::<f32>([2, 3, 15, 14], 5);
    for p in [MaxPool2dParams::new(2, 2, 0), MaxPool2dParams::new(3, 1, 1)] {
        let Some((want, want_idx)) = reference(&x, p) else {
            panic!("{p:?} is a valid pooling");
        };
        for simd in SimdCap::ALL {
            let q = p.with_simd(simd);
            assert_eq!(q.simd, simd);
            let (y, idx) = max_pool2d(&x, q).unwrap();
            assert_eq!(idx, want_idx, "{simd}");
            assert!(same_bits(y.data(), want.data()), "{simd} {p:?}");
        }
    }
}
