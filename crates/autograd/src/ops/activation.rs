//! The elementwise activations of the ONNX op set: clip (ReLU6), sigmoid,
//! SiLU, hard sigmoid, hard swish and erf; recording and standard backward.
//!
//! Each forward and backward is the tensor kernel's
//! ([`sightline_tensor::activation`]), which follows PyTorch's formulas and
//! boundary conventions, so gradients match PyTorch's at the kinks too.
//! Each op keeps what its backward reads: the sigmoid its own output
//! (shared with the output variable, not copied), the others a shared
//! handle to their input.
//!
//! SiLU is not an ONNX op: an exported `nn.SiLU` is `Mul(x, Sigmoid(x))`,
//! which the graph executor records as one [`silu`] (one sweep forward,
//! one backward, run inside the kernel of the convolution above it, the
//! input kept instead of the input and the sigmoid's output).

use crate::error::Result;
use crate::op::{Op, OpKind};
use crate::ops::one_input;
use crate::rule::Elementwise;
use crate::rule::RuleContext;
use crate::tape::{Tape, Var};
use sightline_tensor::activation::{
    erf as erf_kernel, erf_backward, hard_sigmoid as hard_sigmoid_kernel, hard_sigmoid_backward,
    hard_swish as hard_swish_kernel, hard_swish_backward, sigmoid as sigmoid_kernel,
    sigmoid_backward, silu as silu_kernel, silu_backward, silu_backward_at, silu_backward_in_place,
};
use sightline_tensor::elementwise::{clip_in_place, SignMask};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// A recorded clip `min(max(x, min), max)`: two bits per element, as a
/// ReLU keeps (whether its input was strictly inside the bounds, and
/// inside them inclusively), not the input.
#[derive(Debug)]
pub struct ClipOp<T> {
    /// Per element: `min < x < max` (positive bit) and `min <= x <= max`
    /// (non-negative bit).
    pub mask: SignMask,
    /// The lower bound, if any.
    pub min: Option<T>,
    /// The upper bound, if any.
    pub max: Option<T>,
}

/// Records `min(max(x, min), max)` (ONNX Clip; ReLU6 is `clip(x, 0, 6)`),
/// either bound optional.
///
/// The standard backward is PyTorch's `hardtanh_backward` (torchvision's
/// `ReLU6` is `hardtanh(0, 6)`, and an exported `ReLU6` is a Clip): the
/// gradient passes where `min < x < max` strictly and is 0 where
/// `x <= min` or `x >= max`; an absent bound stops nothing.
pub fn clip<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    min: Option<T>,
    max: Option<T>,
) -> Result<Var<T>> {
    let mut y = x.value().par_clone();
    let mask = clip_in_place(&mut y, min, max);
    Ok(tape.record(ClipOp { mask, min, max }, &[x], y))
}

/// [`clip`] taking `x` over: in place on its buffer when nothing else
/// holds it (the same values and mask), as [`crate::ops::relu::relu_owned`].
pub fn clip_owned<T: Element>(
    tape: &mut Tape<T>,
    x: Var<T>,
    min: Option<T>,
    max: Option<T>,
) -> Result<Var<T>> {
    let (id, value) = x.into_parts();
    match Arc::try_unwrap(value) {
        Ok(mut value) => {
            let mask = clip_in_place(&mut value, min, max);
            Ok(tape.record_ids(ClipOp { mask, min, max }, &[id], value))
        }
        Err(shared) => clip(tape, &Var::from_parts(id, shared), min, max),
    }
}

/// The standard element: `g` where the input was strictly inside the bounds.
fn clip_element<T: Element>(g: T, inside: bool, _: bool) -> T {
    if inside {
        g
    } else {
        T::zero()
    }
}

impl<T: Element> Op<T> for ClipOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::CLIP
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        one_input(ctx, || {
            let out = self.mask.map(g.data(), clip_element)?;
            Tensor::from_vec(g.shape().to_vec(), out)
        })
    }

    fn backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        mut g: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        one_input(ctx, || {
            self.mask.apply(g.data_mut(), clip_element)?;
            Ok(g)
        })
    }

    fn backward_elementwise<'a>(&'a self, ctx: &RuleContext<'a, T>) -> Option<Elementwise<'a, T>> {
        if !ctx.needs(0) {
            return None;
        }
        let mask = &self.mask;
        Some(Box::new(move |g: &mut [T], offset: usize| {
            mask.apply_at(g, offset, clip_element)
        }))
    }
}

/// A recorded logistic sigmoid.
#[derive(Debug)]
pub struct SigmoidOp<T> {
    /// The sigmoid's output `y` (the buffer its output variable holds).
    pub output: Arc<Tensor<T>>,
}

/// Records the logistic sigmoid `1 / (1 + exp(-x))`. Its backward,
/// `g * (1 - y) * y`, reads the output, which the op shares with the
/// returned variable (no copy).
pub fn sigmoid<T: Element>(tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
    let y = sigmoid_kernel(x.value()).map_err(tape.kernel_err("sigmoid"))?;
    Ok(tape.record_keeping_output(|output| SigmoidOp { output }, &[x], y))
}

impl<T: Element> Op<T> for SigmoidOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::SIGMOID
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        one_input(ctx, || sigmoid_backward(g, &self.output))
    }
}

/// A recorded SiLU `x * sigmoid(x)` (kind [`OpKind::SILU`]: rules keyed to
/// the sigmoid or the product do not apply to it).
#[derive(Debug)]
pub struct SiluOp<T> {
    /// The input (shared with its variable).
    pub input: Arc<Tensor<T>>,
}

/// Records SiLU (swish) `x * sigmoid(x)` as one op of kind [`OpKind::SILU`]: the
/// values of `Mul(x, Sigmoid(x))`, in one sweep. Its backward is the
/// standard gradient, PyTorch's `silu_backward`, `g * s * (1 + x * (1 -
/// s))` with `s = sigmoid(x)` (recomputed from the kept input).
pub fn silu<T: Element>(tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
    let y = silu_kernel(x.value()).map_err(tape.kernel_err("silu"))?;
    let input = x.value_arc().clone();
    Ok(tape.record(SiluOp { input }, &[x], y))
}

impl<T: Element> Op<T> for SiluOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::SILU
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        one_input(ctx, || silu_backward(g, &self.input))
    }

    fn backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        mut g: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        one_input(ctx, || {
            silu_backward_in_place(&mut g, &self.input)?;
            Ok(g)
        })
    }

    fn backward_elementwise<'a>(&'a self, ctx: &RuleContext<'a, T>) -> Option<Elementwise<'a, T>> {
        if !ctx.needs(0) {
            return None;
        }
        let input = self.input.data();
        Some(Box::new(move |g: &mut [T], offset: usize| {
            silu_backward_at(g, input, offset)
        }))
    }
}

/// A recorded hard sigmoid `max(0, min(1, alpha x + beta))`.
#[derive(Debug)]
pub struct HardSigmoidOp<T> {
    /// The input (shared with its variable).
    pub input: Arc<Tensor<T>>,
    /// The slope.
    pub alpha: T,
    /// The offset.
    pub beta: T,
}

/// Records the hard sigmoid `max(0, min(1, alpha * x + beta))` (ONNX
/// HardSigmoid). PyTorch's `hardsigmoid` is `alpha = 1/6, beta = 1/2`, and
/// then forward and backward are PyTorch's (see
/// [`sightline_tensor::activation::is_pytorch_hardsigmoid`]).
///
/// The standard backward: `g * alpha` where `0 < alpha * x + beta < 1`
/// strictly (for PyTorch's parameters, where `-3 < x < 3`), 0 elsewhere.
pub fn hard_sigmoid<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    alpha: T,
    beta: T,
) -> Result<Var<T>> {
    let y = hard_sigmoid_kernel(x.value(), alpha.to_f64_lossless(), beta.to_f64_lossless());
    let input = x.value_arc().clone();
    Ok(tape.record(HardSigmoidOp { input, alpha, beta }, &[x], y))
}

impl<T: Element> Op<T> for HardSigmoidOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::HARD_SIGMOID
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        one_input(ctx, || {
            hard_sigmoid_backward(
                g,
                &self.input,
                self.alpha.to_f64_lossless(),
                self.beta.to_f64_lossless(),
            )
        })
    }
}

/// A recorded hard swish `x * hard_sigmoid(x)`.
#[derive(Debug)]
pub struct HardSwishOp<T> {
    /// The input (shared with its variable).
    pub input: Arc<Tensor<T>>,
}

/// Records the hard swish `x * min(max(x + 3, 0), 6) / 6` (ONNX HardSwish,
/// PyTorch's `hardswish`).
///
/// The standard backward is PyTorch's `hardswish_backward`: 0 where
/// `x < -3`, `g * (x / 3 + 0.5)` where `-3 <= x <= 3`, `g` where `x > 3`.
pub fn hard_swish<T: Element>(tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
    let y = hard_swish_kernel(x.value());
    let input = x.value_arc().clone();
    Ok(tape.record(HardSwishOp { input }, &[x], y))
}

impl<T: Element> Op<T> for HardSwishOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::HARD_SWISH
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        one_input(ctx, || hard_swish_backward(g, &self.input))
    }
}

/// A recorded error function.
#[derive(Debug)]
pub struct ErfOp<T> {
    /// The input (shared with its variable).
    pub input: Arc<Tensor<T>>,
}

/// Records the error function `erf(x)` (ONNX Erf, as in an exported GELU).
/// Its backward is `g * 2 / sqrt(pi) * exp(-x^2)`.
pub fn erf<T: Element>(tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
    let y = erf_kernel(x.value());
    let input = x.value_arc().clone();
    Ok(tape.record(ErfOp { input }, &[x], y))
}

impl<T: Element> Op<T> for ErfOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::ERF
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        one_input(ctx, || erf_backward(g, &self.input))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Retain, RuleSet};

    /// The forward values and the input gradient of `op` on `x` (1-d),
    /// seeded with `g`.
    fn run(
        x: &[f64],
        g: &[f64],
        op: impl Fn(&mut Tape<f64>, &Var<f64>) -> Result<Var<f64>>,
    ) -> (Vec<f64>, Vec<f64>) {
        let mut tape = Tape::new(Retain::Minimal);
        let xv = tape.input(Tensor::from_vec([x.len()], x.to_vec()).unwrap());
        let y = op(&mut tape, &xv).unwrap();
        let seed = Tensor::from_vec([g.len()], g.to_vec()).unwrap();
        let gx = tape
            .backward(y.id(), &seed, &RuleSet::standard(), &[xv.id()])
            .unwrap()
            .remove(0);
        (y.value().data().to_vec(), gx.data().to_vec())
    }

    fn close(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!((a - b).abs() <= 1e-12, "element {i}: {a} vs {b} ({got:?})");
        }
    }

    /// ReLU6 as Clip(0, 6): the gradient is 0 at exactly 0 and 6 (hardtanh's
    /// strict inequalities) and passes strictly inside.
    #[test]
    fn clip_passes_strictly_inside_its_bounds() {
        let x = [-1.0, 0.0, 0.5, 3.0, 6.0, 7.0];
        let g = [2.0; 6];
        let (y, gx) = run(&x, &g, |t, v| clip(t, v, Some(0.0), Some(6.0)));
        assert_eq!(y, [0.0, 0.0, 0.5, 3.0, 6.0, 6.0]);
        assert_eq!(gx, [0.0, 0.0, 2.0, 2.0, 0.0, 0.0]);
        // One bound: the absent one stops nothing.
        let (y, gx) = run(&x, &g, |t, v| clip(t, v, None, Some(3.0)));
        assert_eq!(y, [-1.0, 0.0, 0.5, 3.0, 3.0, 3.0]);
        assert_eq!(gx, [2.0, 2.0, 2.0, 0.0, 0.0, 0.0]);
        let (_, gx) = run(&x, &g, |t, v| clip(t, v, None, None));
        assert_eq!(gx, g);
    }

    #[test]
    fn sigmoid_values_and_gradient() {
        let x = [0.0, 2.0, -1.0];
        let (y, gx) = run(&x, &[1.0, 3.0, -2.0], sigmoid);
        let s = |v: f64| 1.0 / (1.0 + (-v).exp());
        close(&y, &[0.5, s(2.0), s(-1.0)]);
        close(
            &gx,
            &[0.25, 3.0 * s(2.0) * (1.0 - s(2.0)), -2.0 * s(-1.0) * s(1.0)],
        );
    }

    /// SiLU: `Mul(x, Sigmoid(x))`'s values, PyTorch's gradient, by every
    /// path the walk may take (owned, in pieces inside a kernel above).
    #[test]
    fn silu_values_and_gradient_by_every_path() {
        let x = [0.0, 2.0, -1.0, -30.0];
        let g = [1.0, 3.0, -2.0, 5.0];
        let (y, gx) = run(&x, &g, silu);
        let s = |v: f64| 1.0 / (1.0 + (-v).exp());
        close(&y, &x.map(|v| v * s(v)));
        let want: Vec<f64> = x
            .iter()
            .zip(&g)
            .map(|(&v, &g)| g * s(v) * (1.0 + v * (1.0 - s(v))))
            .collect();
        close(&gx, &want);
        // The same as the product of the two ops it stands for.
        let (_, gx2) = run(&x, &g, |t, v| {
            let sv = sigmoid(t, v)?;
            crate::ops::arith::mul(t, v, &sv)
        });
        close(&gx, &gx2);
        // backward_owned and the elementwise form, on pieces at offsets.
        let mut tape = Tape::new(Retain::Minimal);
        let xv = tape.input(Tensor::from_vec([4], x.to_vec()).unwrap());
        silu(&mut tape, &xv).unwrap();
        let node = tape.nodes().last().unwrap();
        assert_eq!(node.op.kind(), OpKind::SILU);
        let ctx = RuleContext {
            node,
            needs: &[true],
        };
        let seed = Tensor::from_vec([4], g.to_vec()).unwrap();
        let owned = node.op.backward_owned(&ctx, seed.clone()).unwrap();
        assert_eq!(owned[0].as_ref().unwrap().data(), gx.as_slice());
        let f = node.op.backward_elementwise(&ctx).unwrap();
        let mut pieces = g.to_vec();
        let (a, b) = pieces.split_at_mut(1);
        f(a, 0).unwrap();
        f(b, 1).unwrap();
        assert_eq!(pieces, gx);
        assert!(f(&mut [1.0; 2], 3).is_err());
        let short = Tensor::from_vec([2], vec![1.0, 1.0]).unwrap();
        assert!(node.op.backward_owned(&ctx, short).is_err());
    }

    /// The sigmoid's op keeps the very buffer its output variable holds.
    #[test]
    fn sigmoid_keeps_its_output_without_a_copy() {
        let mut tape = Tape::new(Retain::Minimal);
        let x = tape.input(Tensor::from_vec([3], vec![1.0f32, -2.0, 0.5]).unwrap());
        let y = sigmoid(&mut tape, &x).unwrap();
        let node = tape.nodes().last().unwrap();
        let op = node.op.downcast_ref::<SigmoidOp<f32>>().unwrap();
        assert!(Arc::ptr_eq(&op.output, y.value_arc()));
        assert_eq!(node.op.kind(), OpKind::SIGMOID);
    }

    /// PyTorch's hardsigmoid: `g / 6` where `-3 < x < 3`, 0 at exactly
    /// -3 and 3 and beyond.
    #[test]
    fn hard_sigmoid_pytorch_parameters_and_boundaries() {
        let x = [-4.0, -3.0, -1.5, 0.0, 3.0, 4.0];
        let (y, gx) = run(&x, &[6.0; 6], |t, v| hard_sigmoid(t, v, 1.0 / 6.0, 0.5));
        close(&y, &[0.0, 0.0, 0.25, 0.5, 1.0, 1.0]);
        close(&gx, &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    }

    /// Other parameters (alpha 0.25, beta 0.5): `g * 0.25` where
    /// `0 < 0.25 x + 0.5 < 1` strictly, i.e. `-2 < x < 2`; 0 at exactly
    /// -2 and 2.
    #[test]
    fn hard_sigmoid_general_parameters() {
        let x = [-3.0, -2.0, -1.0, 1.0, 2.0, 3.0];
        let (y, gx) = run(&x, &[1.0; 6], |t, v| hard_sigmoid(t, v, 0.25, 0.5));
        close(&y, &[0.0, 0.0, 0.25, 0.75, 1.0, 1.0]);
        close(&gx, &[0.0, 0.0, 0.25, 0.25, 0.0, 0.0]);
    }

    /// PyTorch's hardswish_backward: 0 below -3, `g (x / 3 + 0.5)` on
    /// `[-3, 3]` (so -0.5 g at -3 and 1.5 g at 3), `g` above.
    #[test]
    fn hard_swish_values_and_boundaries() {
        let x = [-4.0, -3.0, 0.0, 1.5, 3.0, 4.0];
        let (y, gx) = run(&x, &[2.0; 6], hard_swish);
        close(&y, &[0.0, 0.0, 0.0, 1.5 * 4.5 / 6.0, 3.0, 4.0]);
        close(&gx, &[0.0, -1.0, 1.0, 2.0, 3.0, 2.0]);
    }

    #[test]
    fn erf_values_and_gradient() {
        let x = [0.0, 1.0, -0.5];
        let (y, gx) = run(&x, &[1.0, 2.0, 1.0], erf);
        close(
            &y,
            &[0.0, 0.842_700_792_949_714_9, -0.520_499_877_813_046_5],
        );
        let c = 2.0 / std::f64::consts::PI.sqrt();
        close(&gx, &[c, 2.0 * c * (-1.0f64).exp(), c * (-0.25f64).exp()]);
    }

    /// Every op answers with its kind, and computes nothing for an input
    /// whose gradient is not wanted.
    #[test]
    fn kinds_and_unwanted_inputs() {
        let mut tape = Tape::<f64>::new(Retain::Minimal);
        let x = tape.input(Tensor::from_vec([2], vec![0.5, -0.5]).unwrap());
        let ys = [
            (
                clip(&mut tape, &x, Some(0.0), Some(6.0)).unwrap(),
                OpKind::CLIP,
            ),
            (sigmoid(&mut tape, &x).unwrap(), OpKind::SIGMOID),
            (
                hard_sigmoid(&mut tape, &x, 0.2, 0.5).unwrap(),
                OpKind::HARD_SIGMOID,
            ),
            (hard_swish(&mut tape, &x).unwrap(), OpKind::HARD_SWISH),
            (erf(&mut tape, &x).unwrap(), OpKind::ERF),
            (silu(&mut tape, &x).unwrap(), OpKind::SILU),
        ];
        let g = Tensor::from_vec([2], vec![1.0, 1.0]).unwrap();
        for (node, (y, kind)) in tape.nodes().iter().zip(&ys) {
            assert_eq!(node.op.kind(), *kind);
            assert_eq!(node.output, y.id());
            let ctx = RuleContext {
                node,
                needs: &[false],
            };
            assert_eq!(node.op.backward(&ctx, &g).unwrap(), vec![None]);
        }
    }
}
