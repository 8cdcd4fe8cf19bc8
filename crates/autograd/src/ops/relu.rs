//! ReLU: recording (sign bits only), standard backward, guided and deconvnet rules.

use crate::error::Result;
use crate::op::{Op, OpKind};
use crate::rule::{Elementwise, Rule, RuleContext};
use crate::tape::{Tape, Var};
use sightline_tensor::elementwise::{relu as relu_kernel, relu_in_place, SignMask};
use sightline_tensor::{Element, Tensor};
use std::borrow::Cow;
use std::sync::Arc;

/// A recorded ReLU: the signs of its input, two bits per element.
#[derive(Debug)]
pub struct ReluOp {
    /// Signs of the input.
    pub mask: SignMask,
}

/// Records `max(x, 0)`.
pub fn relu<T: Element>(tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
    let (y, mask) = relu_kernel(x.value());
    Ok(tape.record(ReluOp { mask }, &[x], y))
}

/// [`relu`] taking `x` over: when nothing else holds its value (no other
/// handle to the variable, not kept as a layer output or by an op), the
/// ReLU runs in place on that buffer ([`relu_in_place`]) instead of
/// writing a new one; otherwise as [`relu`]. Same values and mask either
/// way. ReLU rules read only the mask, so no rule misses `x`'s value.
pub fn relu_owned<T: Element>(tape: &mut Tape<T>, x: Var<T>) -> Result<Var<T>> {
    let (id, value) = x.into_parts();
    match Arc::try_unwrap(value) {
        Ok(mut value) => {
            let mask = relu_in_place(&mut value);
            Ok(tape.record_ids(ReluOp { mask }, &[id], value))
        }
        Err(shared) => relu(tape, &Var::from_parts(id, shared)),
    }
}

/// Applies `f(g, x > 0, x >= 0)` to the gradient: a borrowed one in one
/// pass into a new buffer (`g` read once, the result written once), an
/// owned one in place.
fn masked<T: Element>(
    ctx: &RuleContext<'_, T>,
    name: &str,
    g: Cow<'_, Tensor<T>>,
    f: impl Fn(T, bool, bool) -> T + Sync + Send,
) -> Result<Vec<Option<Tensor<T>>>> {
    let op: &ReluOp = ctx.op(name)?;
    if !ctx.needs(0) {
        return Ok(vec![None]);
    }
    let out = match g {
        Cow::Borrowed(g) => {
            let out = op.mask.map(g.data(), f).map_err(|e| ctx.kernel(e))?;
            Tensor::from_vec(g.shape().to_vec(), out).map_err(|e| ctx.kernel(e))?
        }
        Cow::Owned(mut g) => {
            op.mask.apply(g.data_mut(), f).map_err(|e| ctx.kernel(e))?;
            g
        }
    };
    Ok(vec![Some(out)])
}

/// The standard rule's element: `g` where `x > 0`, 0 elsewhere.
fn standard_element<T: Element>(g: T, pos: bool, _: bool) -> T {
    if pos {
        g
    } else {
        T::zero()
    }
}

/// TorchRay's guided element: 0 where `x < 0`, else `max(g, 0)`.
fn guided_element<T: Element>(g: T, _: bool, non_neg: bool) -> T {
    if non_neg {
        g.max(T::zero())
    } else {
        T::zero()
    }
}

/// Captum's guided element: `max(g, 0)` where `x > 0`, else 0.
fn captum_guided_element<T: Element>(g: T, pos: bool, _: bool) -> T {
    if pos {
        g.max(T::zero())
    } else {
        T::zero()
    }
}

/// The deconvnet element: `max(g, 0)`.
fn deconvnet_element<T: Element>(g: T, _: bool, _: bool) -> T {
    g.max(T::zero())
}

/// A ReLU rule's element `f` as an [`Elementwise`] map over ranges of the
/// gradient (see [`SignMask::apply_at`]), for a ReLU whose input gradient is
/// wanted.
fn elementwise<'a, T: Element>(
    ctx: &RuleContext<'a, T>,
    f: impl Fn(T, bool, bool) -> T + Copy + Sync + 'a,
) -> Option<Elementwise<'a, T>> {
    let op = ctx.node.op.downcast_ref::<ReluOp>()?;
    if !ctx.needs(0) {
        return None;
    }
    let mask = &op.mask;
    Some(Box::new(move |g: &mut [T], offset: usize| {
        mask.apply_at(g, offset, f)
    }))
}

/// Standard: `g` where `x > 0`, 0 elsewhere (0 at `x == 0`, PyTorch's
/// convention); owning `g`, masked in place; also in elementwise form.
impl<T: Element> Op<T> for ReluOp {
    fn kind(&self) -> OpKind {
        OpKind::RELU
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        masked(ctx, "standard", Cow::Borrowed(g), standard_element)
    }

    fn backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        g: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        masked(ctx, "standard", Cow::Owned(g), standard_element)
    }

    fn backward_elementwise<'a>(&'a self, ctx: &RuleContext<'a, T>) -> Option<Elementwise<'a, T>> {
        elementwise(ctx, standard_element)
    }
}

/// Guided backprop (TorchRay): 0 where `x < 0` (strictly), then `max(., 0)`;
/// a positive gradient passes at `x == 0`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuidedRelu;

impl<T: Element> Rule<T> for GuidedRelu {
    fn name(&self) -> &str {
        "guided_relu"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        masked(ctx, Rule::<T>::name(self), Cow::Borrowed(g), guided_element)
    }

    fn backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        g: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        masked(ctx, Rule::<T>::name(self), Cow::Owned(g), guided_element)
    }

    fn elementwise<'a>(&'a self, ctx: &RuleContext<'a, T>) -> Option<Elementwise<'a, T>> {
        elementwise(ctx, guided_element)
    }
}

/// Guided backprop (Captum): `max(g, 0)` where `x > 0`, 0 elsewhere (also at `x == 0`).
#[derive(Clone, Copy, Debug, Default)]
pub struct CaptumGuidedRelu;

impl<T: Element> Rule<T> for CaptumGuidedRelu {
    fn name(&self) -> &str {
        "captum_guided_relu"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        masked(
            ctx,
            Rule::<T>::name(self),
            Cow::Borrowed(g),
            captum_guided_element,
        )
    }

    fn backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        g: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        masked(
            ctx,
            Rule::<T>::name(self),
            Cow::Owned(g),
            captum_guided_element,
        )
    }

    fn elementwise<'a>(&'a self, ctx: &RuleContext<'a, T>) -> Option<Elementwise<'a, T>> {
        elementwise(ctx, captum_guided_element)
    }
}

/// Deconvnet: `max(g, 0)`, whatever the input.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeconvnetRelu;

impl<T: Element> Rule<T> for DeconvnetRelu {
    fn name(&self) -> &str {
        "deconvnet_relu"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        masked(
            ctx,
            Rule::<T>::name(self),
            Cow::Borrowed(g),
            deconvnet_element,
        )
    }

    fn backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        g: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        masked(ctx, Rule::<T>::name(self), Cow::Owned(g), deconvnet_element)
    }

    fn elementwise<'a>(&'a self, ctx: &RuleContext<'a, T>) -> Option<Elementwise<'a, T>> {
        elementwise(ctx, deconvnet_element)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Retain, RuleSet};

    /// Values with `0.0`, `-0.0`, NaN, negatives and positives.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        let specials = [0.0, -0.0, f32::NAN, -1.5, 2.5, -f32::NAN, 1e-40, -1e-40];
        (0..len as u32)
            .map(|i| {
                let h = (i ^ seed).wrapping_mul(0x9e37_79b9).rotate_left(7);
                if h.is_multiple_of(4) {
                    specials[(h >> 8) as usize % specials.len()]
                } else {
                    (h >> 8) as f32 / (1 << 23) as f32 - 1.0
                }
            })
            .collect()
    }

    /// Every ReLU rule through the tape against its scalar formula, bit for
    /// bit, on lengths that are not multiples of a mask word.
    #[test]
    fn rules_match_their_scalar_formulas() {
        type Formula = fn(f32, f32) -> f32;
        let cases: [(RuleSet<f32>, Formula); 4] = [
            (RuleSet::standard(), |x, g| if x > 0.0 { g } else { 0.0 }),
            (RuleSet::guided_backprop(), |x, g| {
                if x >= 0.0 {
                    g.max(0.0)
                } else {
                    0.0
                }
            }),
            (RuleSet::captum_guided_backprop(), |x, g| {
                if x > 0.0 {
                    g.max(0.0)
                } else {
                    0.0
                }
            }),
            (RuleSet::deconvnet(), |_, g| g.max(0.0)),
        ];
        for len in [1, 63, 65, 1000, 64 * 256 + 7] {
            let (x, g) = (values(len, 1), values(len, 2));
            for (rules, formula) in &cases {
                let mut tape = Tape::new(Retain::Minimal);
                let xv = tape.input(Tensor::from_vec([len], x.clone()).unwrap());
                let y = relu(&mut tape, &xv).unwrap();
                let seed = Tensor::from_vec([len], g.clone()).unwrap();
                let gx = tape
                    .backward(y.id(), &seed, rules, &[xv.id()])
                    .unwrap()
                    .remove(0);
                assert_eq!(gx.shape(), [len]);
                for (i, (&o, (&x, &g))) in gx.data().iter().zip(x.iter().zip(&g)).enumerate() {
                    let want = formula(x, g);
                    assert_eq!(
                        o.to_bits(),
                        want.to_bits(),
                        "{}: len {len}, {i}",
                        rules.name()
                    );
                }
            }
        }
    }

    /// `relu_owned` runs in place when it holds the only handle to the
    /// value (the output reuses the input's buffer) and copies when another
    /// handle exists; either way the values, the recorded op and the
    /// gradient (guided rule) are those of `relu`.
    #[test]
    fn relu_owned_reuses_an_unshared_buffer_with_the_same_results() {
        let len = 64 * 300 + 5;
        let (x, g) = (values(len, 3), values(len, 4));
        let seed = Tensor::from_vec([len], g).unwrap();
        let run = |mode: u8| {
            let mut tape = Tape::new(Retain::Minimal);
            let xv = tape.input(Tensor::from_vec([len], x.clone()).unwrap());
            let xid = xv.id();
            let before = xv.value().data().as_ptr();
            let (y, in_place) = match mode {
                0 => (relu(&mut tape, &xv).unwrap(), false),
                1 => {
                    let y = relu_owned(&mut tape, xv).unwrap();
                    let same = y.value().data().as_ptr() == before;
                    (y, same)
                }
                _ => {
                    let other = xv.clone();
                    let y = relu_owned(&mut tape, xv).unwrap();
                    let same = y.value().data().as_ptr() == before;
                    drop(other);
                    (y, same)
                }
            };
            let rules = RuleSet::guided_backprop();
            let gx = tape
                .backward(y.id(), &seed, &rules, &[xid])
                .unwrap()
                .remove(0);
            let bits = |t: &Tensor<f32>| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            (bits(y.value()), bits(&gx), in_place)
        };
        let (y0, g0, _) = run(0);
        let (y1, g1, in_place) = run(1);
        let (y2, g2, shared_in_place) = run(2);
        assert!(in_place && !shared_in_place);
        assert_eq!((&y1, &g1), (&y0, &g0));
        assert_eq!((&y2, &g2), (&y0, &g0));
    }
}
