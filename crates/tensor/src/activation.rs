//! Elementwise activations of the ONNX op set and their backwards:
//! sigmoid, SiLU, hard sigmoid, hard swish, erf, clip.
//!
//! Each forward follows the operation order of PyTorch's CPU kernel where
//! it is known (so that `f32` results agree with PyTorch's up to its
//! vectorised transcendental functions), and each backward takes the
//! output gradient with what it needs: the input, or the output for the
//! sigmoid. Minimum and maximum follow `std::min`/`std::max` of C++ (a NaN
//! input comes out NaN), as PyTorch's kernels do.
//!
//! All run through [`Tensor::map`] / [`Tensor::zip_map`]: in parallel for
//! large tensors, each element computed alone, so the same bits whatever
//! the number of threads. The sigmoid and the SiLU take their `f32`
//! exponential as straight-line arithmetic (`exp`), which vectorizes, and
//! sweep at the CPU's widest vector width (`wide`), the same bits at each.

mod exp;
mod wide;

use crate::element::{cst, Element};
use crate::error::{Result, TensorError};
use crate::layout::try_write;
use crate::tensor::Tensor;
use std::any::TypeId;

/// `std::max(a, b)` of C++: `a` unless `a < b` (so a NaN `a` stays).
#[inline]
fn cmax<T: Element>(a: T, b: T) -> T {
    if a < b {
        b
    } else {
        a
    }
}

/// `std::min(a, b)` of C++: `a` unless `b < a` (so a NaN `a` stays).
#[inline]
fn cmin<T: Element>(a: T, b: T) -> T {
    if b < a {
        b
    } else {
        a
    }
}

/// The logistic sigmoid of one element, `1 / (1 + exp(-v))`.
#[inline(always)]
fn logistic<T: Element>(v: T) -> T {
    T::one() / (T::one() + exp::exp(-v))
}

/// `f(a[i], b[i])` for every element, a new tensor of `a`'s shape
/// (allocated fallibly), swept at the widest vector width; an error if
/// the shapes differ.
fn zip_wide<T: Element>(
    a: &Tensor<T>,
    b: &Tensor<T>,
    op: &'static str,
    f: impl Fn(T, T) -> T + Sync,
) -> Result<Tensor<T>> {
    a.expect_same_shape(b, op)?;
    let write = |out: &mut [std::mem::MaybeUninit<T>]| {
        wide::write_all(out, a.data(), b.data(), f);
        Ok(())
    };
    // SAFETY: `write_all` writes every element of `out`.
    unsafe { try_write(a.shape().to_vec(), op, write) }
}

/// The logistic sigmoid `1 / (1 + exp(-x))`; an error only if the result
/// cannot be allocated.
pub fn sigmoid<T: Element>(x: &Tensor<T>) -> Result<Tensor<T>> {
    zip_wide(x, x, "sigmoid", |v, _| logistic(v))
}

/// SiLU (swish), `x * sigmoid(x)`: what an exported `nn.SiLU` computes as
/// `Mul(x, Sigmoid(x))`, in that order, in one sweep; an error only if the
/// result cannot be allocated.
pub fn silu<T: Element>(x: &Tensor<T>) -> Result<Tensor<T>> {
    zip_wide(x, x, "silu", |v, _| v * logistic(v))
}

/// The derivative of SiLU times `g` at one element, PyTorch's
/// `silu_backward`: `g * s * (1 + x * (1 - s))` with `s = sigmoid(x)`.
#[inline(always)]
fn silu_grad<T: Element>(g: T, x: T) -> T {
    let s = logistic(x);
    g * s * (T::one() + x * (T::one() - s))
}

/// Backward of [`silu`] from its input (see [`silu_backward_at`]).
pub fn silu_backward<T: Element>(g: &Tensor<T>, x: &Tensor<T>) -> Result<Tensor<T>> {
    zip_wide(g, x, "silu_backward", silu_grad)
}

/// Backward of [`silu`] in place on the whole gradient (of the input's
/// shape): `g` becomes `g * s * (1 + x * (1 - s))`, on all threads when
/// large.
pub fn silu_backward_in_place<T: Element>(g: &mut Tensor<T>, x: &Tensor<T>) -> Result<()> {
    g.expect_same_shape(x, "silu_backward")?;
    wide::update_all(g.data_mut(), x.data(), silu_grad);
    Ok(())
}

/// Backward of [`silu`] in place on a run of the gradient: `g[i]` becomes
/// `g[i] * s * (1 + x * (1 - s))` with `x = input[offset + i]` and `s =
/// sigmoid(x)` (PyTorch's `silu_backward`). For a kernel that hands the
/// gradient over in pieces (one thread each); an error if the run reaches
/// past `input`.
pub fn silu_backward_at<T: Element>(g: &mut [T], input: &[T], offset: usize) -> Result<()> {
    let xs = offset
        .checked_add(g.len())
        .and_then(|end| input.get(offset..end))
        .ok_or_else(|| TensorError::InvalidParameter {
            op: "silu_backward",
            message: format!(
                "a gradient run of {} at offset {offset} reaches past the input's {} elements",
                g.len(),
                input.len()
            ),
        })?;
    wide::update_at(wide::Width::best(), g, xs, &silu_grad);
    Ok(())
}

/// Backward of [`sigmoid`] from its output `y`: `g * (1 - y) * y`
/// (PyTorch's `sigmoid_backward`, in its order).
pub fn sigmoid_backward<T: Element>(g: &Tensor<T>, y: &Tensor<T>) -> Result<Tensor<T>> {
    g.zip_map(y, "sigmoid_backward", move |g, y| g * (T::one() - y) * y)
}

/// Whether `(alpha, beta)` is PyTorch's `hardsigmoid`, `(1/6, 1/2)` (with
/// `alpha` as an exporter writes it, rounded to `f32`): then
/// [`hard_sigmoid`] and its backward take PyTorch's formulas.
pub fn is_pytorch_hardsigmoid(alpha: f64, beta: f64) -> bool {
    alpha as f32 == 1.0f32 / 6.0 && beta == 0.5
}

/// ONNX HardSigmoid: `max(0, min(1, alpha * x + beta))`.
///
/// For PyTorch's parameters (see [`is_pytorch_hardsigmoid`]) it is
/// PyTorch's `min(max(x + 3, 0), 6) / 6` instead, whose rounding differs.
pub fn hard_sigmoid<T: Element>(x: &Tensor<T>, alpha: f64, beta: f64) -> Tensor<T> {
    if is_pytorch_hardsigmoid(alpha, beta) {
        let (three, six) = (cst::<T>(3.0), cst::<T>(6.0));
        x.map(move |v| cmin(cmax(v + three, T::zero()), six) / six)
    } else {
        let (a, b) = (cst::<T>(alpha), cst::<T>(beta));
        x.map(move |v| cmax(cmin(a * v + b, T::one()), T::zero()))
    }
}

/// Backward of [`hard_sigmoid`] from its input: `g * alpha` where
/// `0 < alpha * x + beta < 1` strictly, 0 elsewhere. For PyTorch's
/// parameters, PyTorch's rule: `g / 6` (as `g * (1/6)`) where
/// `-3 < x < 3`, else 0.
pub fn hard_sigmoid_backward<T: Element>(
    g: &Tensor<T>,
    x: &Tensor<T>,
    alpha: f64,
    beta: f64,
) -> Result<Tensor<T>> {
    const OP: &str = "hard_sigmoid_backward";
    if is_pytorch_hardsigmoid(alpha, beta) {
        let (three, sixth) = (cst::<T>(3.0), cst::<T>(1.0 / 6.0));
        g.zip_map(x, OP, move |g, x| {
            if x > -three && x < three {
                g * sixth
            } else {
                T::zero()
            }
        })
    } else {
        let (a, b) = (cst::<T>(alpha), cst::<T>(beta));
        g.zip_map(x, OP, move |g, x| {
            let z = a * x + b;
            if z > T::zero() && z < T::one() {
                g * a
            } else {
                T::zero()
            }
        })
    }
}

/// ONNX HardSwish, `x * hardsigmoid(x)` with PyTorch's parameters, in
/// PyTorch's order: `x * min(max(x + 3, 0), 6) / 6`.
pub fn hard_swish<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    let (three, six) = (cst::<T>(3.0), cst::<T>(6.0));
    x.map(move |v| v * cmin(cmax(v + three, T::zero()), six) / six)
}

/// Backward of [`hard_swish`] from its input, PyTorch's rule: 0 where
/// `x < -3`, `g * (x / 3 + 0.5)` where `x <= 3`, `g` above.
pub fn hard_swish_backward<T: Element>(g: &Tensor<T>, x: &Tensor<T>) -> Result<Tensor<T>> {
    let (three, half) = (cst::<T>(3.0), cst::<T>(0.5));
    g.zip_map(x, "hard_swish_backward", move |g, x| {
        if x < -three {
            T::zero()
        } else if x <= three {
            g * (x / three + half)
        } else {
            g
        }
    })
}

/// The error function of one element, by `libm` in the element's own
/// precision (`erff` for `f32`, `erf` for `f64`).
#[inline]
fn erf_one<T: Element>(v: T) -> T {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // f32 -> f64 -> f32 conversions are exact.
        T::from_f64_lossy(f64::from(libm::erff(v.to_f64_lossless() as f32)))
    } else {
        T::from_f64_lossy(libm::erf(v.to_f64_lossless()))
    }
}

/// The error function (ONNX Erf), elementwise.
pub fn erf<T: Element>(x: &Tensor<T>) -> Tensor<T> {
    x.map(erf_one)
}

/// Backward of [`erf`] from its input: `2 / sqrt(pi) * exp(-x^2) * g`
/// (PyTorch's formula, in its order).
pub fn erf_backward<T: Element>(g: &Tensor<T>, x: &Tensor<T>) -> Result<Tensor<T>> {
    let c = cst::<T>(std::f64::consts::FRAC_2_SQRT_PI);
    g.zip_map(x, "erf_backward", move |g, x| c * (-(x * x)).exp() * g)
}

/// ONNX Clip: `min(max(x, lo), hi)`, either bound optional; a NaN stays
/// NaN (PyTorch's `clamp`).
pub fn clip<T: Element>(x: &Tensor<T>, lo: Option<T>, hi: Option<T>) -> Tensor<T> {
    // Comparisons with a NaN are false, so a NaN passes both selects.
    let (has_lo, lo) = (lo.is_some(), lo.unwrap_or_else(T::zero));
    let (has_hi, hi) = (hi.is_some(), hi.unwrap_or_else(T::zero));
    x.map(move |v| {
        let v = if has_lo && v < lo { lo } else { v };
        if has_hi && hi < v {
            hi
        } else {
            v
        }
    })
}

/// Backward of [`clip`] from its input. Where the gradient passes depends
/// on the PyTorch op the clip stands for:
///
/// - `inclusive = true`: `torch.clamp`'s rule, the gradient passes where
///   `lo <= x <= hi` (a NaN input passes nothing);
/// - `inclusive = false`: `hardtanh`'s rule (torchvision's `ReLU6` is
///   `hardtanh(0, 6)`, exported as Clip(0, 6)), the gradient is 0 where
///   `x <= lo` or `x >= hi` and passes elsewhere (a NaN input passes it).
///
/// An absent bound never stops the gradient.
pub fn clip_backward<T: Element>(
    g: &Tensor<T>,
    x: &Tensor<T>,
    lo: Option<T>,
    hi: Option<T>,
    inclusive: bool,
) -> Result<Tensor<T>> {
    const OP: &str = "clip_backward";
    let (has_lo, lo) = (lo.is_some(), lo.unwrap_or_else(T::zero));
    let (has_hi, hi) = (hi.is_some(), hi.unwrap_or_else(T::zero));
    if inclusive {
        g.zip_map(x, OP, move |g, x| {
            let inside = (!has_lo || x >= lo) && (!has_hi || x <= hi);
            if inside {
                g
            } else {
                T::zero()
            }
        })
    } else {
        g.zip_map(x, OP, move |g, x| {
            let outside = (has_lo && x <= lo) || (has_hi && x >= hi);
            if outside {
                T::zero()
            } else {
                g
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{rnd, t};
    use crate::testing_grad::{arb_tensor, assert_close, bits, numeric_grad, on_threads};
    use proptest::prelude::*;

    const SIXTH_F32: f64 = (1.0f32 / 6.0) as f64;

    #[test]
    fn sigmoid_values_and_backward() {
        let x = t(&[3], &[0.0, 3f64.ln(), -3f64.ln()]);
        let y = sigmoid(&x).unwrap();
        assert_eq!(y.data()[0], 0.5);
        assert!((y.data()[1] - 0.75).abs() < 1e-15 && (y.data()[2] - 0.25).abs() < 1e-15);
        let g = t(&[3], &[1.0, 2.0, 4.0]);
        let gx = sigmoid_backward(&g, &y).unwrap();
        assert_eq!(gx.data()[0], 0.25);
        assert!((gx.data()[1] - 2.0 * 0.1875).abs() < 1e-15);
        assert!(sigmoid_backward(&g, &t(&[2], &[0., 0.])).is_err());
    }

    #[test]
    fn silu_values_and_backward() {
        let x = t(&[4], &[0.0, 3f64.ln(), -3f64.ln(), -800.0]);
        let y = silu(&x).unwrap();
        assert_eq!(y.data()[0], 0.0);
        assert!((y.data()[1] - 0.75 * 3f64.ln()).abs() < 1e-15);
        assert!((y.data()[2] + 0.25 * 3f64.ln()).abs() < 1e-15);
        assert_eq!(y.data()[3], 0.0);
        let g = t(&[4], &[1.0, 2.0, 4.0, 1.0]);
        let gx = silu_backward(&g, &x).unwrap();
        // s (1 + x (1 - s)): 0.5 at 0; 0.75 (1 + ln3 / 4) at ln 3.
        assert_eq!(gx.data()[0], 0.5);
        assert!((gx.data()[1] - 2.0 * 0.75 * (1.0 + 3f64.ln() / 4.0)).abs() < 1e-15);
        assert!((gx.data()[2] - 4.0 * 0.25 * (1.0 - 3f64.ln() * 0.75)).abs() < 1e-15);
        assert_eq!(gx.data()[3], 0.0);
        // In place on a run, at an offset: the same values.
        let mut run = g.data()[1..3].to_vec();
        silu_backward_at(&mut run, x.data(), 1).unwrap();
        assert_eq!(run, gx.data()[1..3]);
        assert!(silu_backward_at(&mut run, x.data(), 3).is_err());
        assert!(silu_backward_at(&mut run, x.data(), usize::MAX).is_err());
        assert!(silu_backward(&g, &t(&[2], &[0., 0.])).is_err());
        // f32 through the vectorizable exponential, NaN kept.
        let x32 = t(&[3], &[1.5, -2.0, f64::NAN]).cast::<f32>();
        let y32 = silu(&x32).unwrap();
        assert!((y32.data()[0] as f64 - 1.5 / (1.0 + (-1.5f64).exp())).abs() < 1e-6);
        assert!((y32.data()[1] as f64 + 2.0 / (1.0 + 2f64.exp())).abs() < 1e-6);
        assert!(y32.data()[2].is_nan());
    }

    /// The sigmoid and SiLU sweeps give the same bits at every vector width.
    #[test]
    fn every_vector_width_gives_the_same_bits() {
        use std::mem::MaybeUninit;
        let x: Vec<f32> = (0..4099).map(|i| (i as f32 - 2049.0) * 0.05).collect();
        let g: Vec<f32> = (0..4099)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.1)
            .collect();
        let run = |width: wide::Width| {
            let mut y = vec![MaybeUninit::new(0.0f32); x.len()];
            wide::write_at(width, &mut y, &x, &x, &|v, _| v * logistic(v));
            let mut s = vec![MaybeUninit::new(0.0f32); x.len()];
            wide::write_at(width, &mut s, &x, &x, &|v, _| logistic(v));
            let mut gx = g.clone();
            wide::update_at(width, &mut gx, &x, &silu_grad);
            // SAFETY: write_at wrote every element (all initialised anyway).
            let bits = |v: &[MaybeUninit<f32>]| -> Vec<u32> {
                v.iter()
                    .map(|e| unsafe { e.assume_init() }.to_bits())
                    .collect()
            };
            (
                bits(&y),
                bits(&s),
                gx.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            )
        };
        let base = run(wide::Width::Base);
        for width in [wide::Width::Avx2, wide::Width::Avx512] {
            if width.available() {
                assert_eq!(run(width), base, "{width:?}");
            }
        }
        // And the sweep agrees with f64 to f32 accuracy.
        let (y, _, _) = &base;
        for (i, &v) in x.iter().enumerate().step_by(97) {
            let want = v as f64 / (1.0 + (-(v as f64)).exp());
            let got = f32::from_bits(y[i]) as f64;
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{v}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn hard_sigmoid_pytorch_and_onnx_parameters() {
        assert!(is_pytorch_hardsigmoid(1.0 / 6.0, 0.5));
        assert!(is_pytorch_hardsigmoid(SIXTH_F32, 0.5));
        assert!(!is_pytorch_hardsigmoid(0.2, 0.5));
        let x = t(&[7], &[-4., -3., 0., 1.5, 3., 4., f64::NAN]);
        let y = hard_sigmoid(&x, SIXTH_F32, 0.5);
        assert_eq!(&y.data()[..6], &[0., 0., 0.5, 0.75, 1., 1.]);
        assert!(y.data()[6].is_nan());
        let gx = hard_sigmoid_backward(&Tensor::ones([7]), &x, SIXTH_F32, 0.5).unwrap();
        assert_eq!(gx.data(), &[0., 0., 1. / 6., 1. / 6., 0., 0., 0.]);
        // ONNX's default parameters: the kinks are where 0.2 x + 0.5 is 0 or 1.
        let x = t(&[5], &[-3., -2.5, 0., 2.5, 3.]);
        let y = hard_sigmoid(&x, 0.2, 0.5);
        assert_eq!(y.data(), &[0., 0., 0.5, 1., 1.]);
        let gx = hard_sigmoid_backward(&Tensor::ones([5]), &x, 0.2, 0.5).unwrap();
        assert_eq!(gx.data(), &[0., 0., 0.2, 0., 0.]);
        // f32: PyTorch's formula, (x + 3) / 6, not x / 6 + 1 / 2.
        let x = Tensor::from_vec([1], vec![0.1f32]).unwrap();
        let y = hard_sigmoid(&x, SIXTH_F32, 0.5);
        assert_eq!(y.data()[0], (0.1f32 + 3.0) / 6.0);
    }

    #[test]
    fn hard_swish_values_and_pytorch_boundaries() {
        let x = t(&[7], &[-4., -3., -1., 0., 1., 3., 4.]);
        let y = hard_swish(&x);
        assert_eq!(y.data(), &[-0., -0., -2. / 6., 0., 4. / 6., 3., 4.]);
        let gx = hard_swish_backward(&Tensor::ones([7]), &x).unwrap();
        let want = [0., -0.5, -1. / 3. + 0.5, 0.5, 1. / 3. + 0.5, 1.5, 1.];
        assert_eq!(gx.data(), &want);
    }

    #[test]
    fn erf_values_and_backward() {
        let x = t(&[3], &[0., 1., -0.5]);
        let y = erf(&x);
        assert_eq!(y.data()[0], 0.0);
        assert!((y.data()[1] - 0.842_700_792_949_714_9).abs() < 1e-15);
        assert!((y.data()[2] + 0.520_499_877_813_046_5).abs() < 1e-15);
        let yf = erf(&x.cast::<f32>());
        assert!((yf.data()[1] - 0.842_700_8).abs() < 1e-7);
        let gx = erf_backward(&Tensor::ones([3]), &x).unwrap();
        assert_eq!(gx.data()[0], std::f64::consts::FRAC_2_SQRT_PI);
        assert!((gx.data()[1] - 0.415_107_497_420_594_7).abs() < 1e-15);
    }

    #[test]
    fn clip_forward_and_both_backward_rules() {
        let x = t(&[6], &[0., 3., 6., 7., -1., f64::NAN]);
        let y = clip(&x, Some(0.), Some(6.));
        assert_eq!(&y.data()[..5], &[0., 3., 6., 6., 0.]);
        assert!(y.data()[5].is_nan());
        assert_eq!(clip(&x, None, Some(1.)).data()[..5], [0., 1., 1., 1., -1.]);
        let g = Tensor::ones([6]);
        let inc = clip_backward(&g, &x, Some(0.), Some(6.), true).unwrap();
        assert_eq!(inc.data(), &[1., 1., 1., 0., 0., 0.]);
        let exc = clip_backward(&g, &x, Some(0.), Some(6.), false).unwrap();
        assert_eq!(exc.data(), &[0., 1., 0., 0., 0., 1.]);
        let open = clip_backward(&g, &x, None, None, false).unwrap();
        assert_eq!(open.data(), &[1.; 6]);
    }

    /// `x` with every element at least `gap` away from each kink.
    fn away_from(x: &Tensor<f64>, kinks: &[f64], gap: f64) -> Tensor<f64> {
        x.map(|v| {
            let mut v = v;
            for &k in kinks {
                if (v - k).abs() < gap {
                    v = k + gap.copysign(v - k);
                }
            }
            v
        })
    }

    proptest! {
        #[test]
        fn backwards_by_finite_differences(x in arb_tensor(vec![3, 5]).prop_map(|x| x.map(|v| 2.5 * v))) {
            let g = rnd(&[3, 5], 11);
            let tol = 1e-6;
            let y = sigmoid(&x).unwrap();
            assert_close(&sigmoid_backward(&g, &y).unwrap(), &numeric_grad(|x: &Tensor<f64>| sigmoid(x).unwrap(), &x, &g), tol);
            assert_close(&erf_backward(&g, &x).unwrap(), &numeric_grad(erf, &x, &g), tol);
            assert_close(&silu_backward(&g, &x).unwrap(), &numeric_grad(|x: &Tensor<f64>| silu(x).unwrap(), &x, &g), tol);
            let xs = away_from(&x, &[-3.0, 3.0], 1e-3);
            assert_close(&hard_swish_backward(&g, &xs).unwrap(), &numeric_grad(hard_swish, &xs, &g), tol);
            let f = |x: &Tensor<f64>| hard_sigmoid(x, SIXTH_F32, 0.5);
            assert_close(&hard_sigmoid_backward(&g, &xs, SIXTH_F32, 0.5).unwrap(), &numeric_grad(f, &xs, &g), tol);
            let xo = away_from(&x, &[-2.5, 2.5], 1e-3);
            let f = |x: &Tensor<f64>| hard_sigmoid(x, 0.2, 0.5);
            assert_close(&hard_sigmoid_backward(&g, &xo, 0.2, 0.5).unwrap(), &numeric_grad(f, &xo, &g), tol);
            let xc = away_from(&x, &[-1.0, 1.5], 1e-3);
            let f = |x: &Tensor<f64>| clip(x, Some(-1.0), Some(1.5));
            for inclusive in [true, false] {
                let got = clip_backward(&g, &xc, Some(-1.0), Some(1.5), inclusive).unwrap();
                assert_close(&got, &numeric_grad(f, &xc, &g), tol);
            }
        }
    }

    #[test]
    fn large_activations_are_bit_identical_across_thread_counts() {
        let x = rnd(&[3, 70_000], 1).map(|v| 5.0 * v).cast::<f32>();
        let g = rnd(&[3, 70_000], 2).cast::<f32>();
        let run = |threads| {
            on_threads(threads, || {
                let y = sigmoid(&x).unwrap();
                vec![
                    sigmoid_backward(&g, &y).unwrap(),
                    y,
                    hard_swish(&x),
                    hard_swish_backward(&g, &x).unwrap(),
                    hard_sigmoid(&x, SIXTH_F32, 0.5),
                    erf(&x),
                    erf_backward(&g, &x).unwrap(),
                    clip_backward(&g, &x, Some(0.0), Some(6.0), false).unwrap(),
                    silu(&x).unwrap(),
                    silu_backward(&g, &x).unwrap(),
                ]
            })
        };
        let (one, four) = (run(1), run(4));
        for (p, q) in one.iter().zip(&four) {
            assert_eq!(bits(p.data()), bits(q.data()));
        }
        assert_eq!(one[2].data()[7], {
            let v = x.data()[7];
            v * (v + 3.0).clamp(0.0, 6.0) / 6.0
        });
    }
}
