//! Elementwise sum, difference, product and quotient with numpy
//! broadcasting: recording, standard backward, and the excitation rule of
//! the residual sum.
//!
//! A sum is recorded as one of two kinds: a plain [`add`]
//! ([`OpKind::ADD`], what `x + y` is in PyTorch), or a [`residual_sum`]
//! ([`OpKind::RESIDUAL_SUM`], TorchRay's `eltwise_sum`, the skip connection
//! of a ResNet block as TorchRay's `update_resnet` makes it explicit). Only
//! the second takes excitation backprop's proportional rule; a plain sum
//! keeps the standard one, as it does in TorchRay.
//!
//! Two operands of one shape take the plain kernels (the residual sum of a
//! ResNet or MobileNet block); operands of broadcastable shapes (a bias
//! `[C, 1, 1]` added to `[N, C, H, W]`, a squeeze-and-excitation gate
//! `[N, C, 1, 1]` times its feature map) take the broadcasting ones, and
//! the gradient of a broadcast operand is summed back to its shape.

use crate::error::Result;
use crate::lrp::Homogeneous;
use crate::op::{Op, OpKind};
use crate::rule::{Rule, RuleContext};
use crate::tape::{Tape, Var};
use sightline_tensor::broadcast::{binary, reduce_to_shape, BinaryOp};
use sightline_tensor::elementwise::{add_assign, mul as mul_kernel};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// `op(a, b)` for tensors of any broadcastable shapes.
fn apply<T: Element>(
    a: &Tensor<T>,
    b: &Tensor<T>,
    op: BinaryOp,
) -> sightline_tensor::Result<Tensor<T>> {
    binary(a, b, op)
}

/// `g` summed back to `shape` where it was broadcast (as it is when the
/// shapes agree).
fn to_shape<T: Element>(
    ctx: &RuleContext<'_, T>,
    g: Tensor<T>,
    shape: &[usize],
) -> Result<Tensor<T>> {
    if g.shape() == shape {
        return Ok(g);
    }
    reduce_to_shape(&g, shape).map_err(|e| ctx.kernel(e))
}

/// The shape of input `i` of the node.
fn input_shape<'a, T>(ctx: &RuleContext<'a, T>, i: usize) -> &'a [usize] {
    ctx.node.input_shapes.get(i).map_or(&[], Vec::as_slice)
}

/// A recorded sum `a + b`.
#[derive(Debug)]
pub struct AddOp<T> {
    /// Both terms, kept for the excitation rule.
    pub terms: Option<[Arc<Tensor<T>>; 2]>,
    /// Whether it is a residual sum ([`OpKind::RESIDUAL_SUM`]) rather than
    /// a plain one ([`OpKind::ADD`]).
    pub residual: bool,
}

/// Records `a + b` (broadcasting).
pub fn add<T: Element>(tape: &mut Tape<T>, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
    record_sum(tape, a, b, false)
}

/// Records the residual sum `a + b` of a skip connection
/// ([`OpKind::RESIDUAL_SUM`]: excitation backprop splits it in proportion
/// to the terms).
pub fn residual_sum<T: Element>(tape: &mut Tape<T>, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
    record_sum(tape, a, b, true)
}

fn record_sum<T: Element>(
    tape: &mut Tape<T>,
    a: &Var<T>,
    b: &Var<T>,
    residual: bool,
) -> Result<Var<T>> {
    let y = apply(a.value(), b.value(), BinaryOp::Add).map_err(tape.kernel_err("add"))?;
    let terms =
        (residual && tape.keeps_all()).then(|| [a.value_arc().clone(), b.value_arc().clone()]);
    Ok(tape.record(AddOp { terms, residual }, &[a, b], y))
}

/// [`add`] taking `a` over: when `a` has the result's shape and nothing
/// else holds its value, `b` is added into `a`'s buffer in place (the same
/// sums); otherwise as [`add`].
pub fn add_owned<T: Element>(tape: &mut Tape<T>, a: Var<T>, b: &Var<T>) -> Result<Var<T>> {
    sum_owned(tape, a, b, false)
}

/// [`residual_sum`] taking `a` over, as [`add_owned`] does; unless the
/// tape keeps the terms (`Retain::All` does, for the excitation rule). For
/// a skip connection, whose branch output dies with it.
pub fn residual_sum_owned<T: Element>(tape: &mut Tape<T>, a: Var<T>, b: &Var<T>) -> Result<Var<T>> {
    sum_owned(tape, a, b, true)
}

fn sum_owned<T: Element>(
    tape: &mut Tape<T>,
    a: Var<T>,
    b: &Var<T>,
    residual: bool,
) -> Result<Var<T>> {
    if (residual && tape.keeps_all()) || a.shape() != b.shape() {
        return record_sum(tape, &a, b, residual);
    }
    let (id, value) = a.into_parts();
    match Arc::try_unwrap(value) {
        Ok(mut value) => {
            add_assign(&mut value, b.value()).map_err(tape.kernel_err("add"))?;
            let op = AddOp {
                terms: None,
                residual,
            };
            Ok(tape.record_ids(op, &[id, b.id()], value))
        }
        Err(shared) => record_sum(tape, &Var::from_parts(id, shared), b, residual),
    }
}

impl<T: Element> AddOp<T> {
    fn standard(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let mut out = vec![None, None];
        for (i, slot) in out.iter_mut().enumerate() {
            if ctx.needs(i) {
                *slot = Some(to_shape(ctx, g.par_clone(), input_shape(ctx, i))?);
            }
        }
        Ok(out)
    }

    /// [`AddOp::standard`] owning `g`: the first term wanted gets `g` itself.
    fn standard_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        g: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let (sa, sb) = (input_shape(ctx, 0), input_shape(ctx, 1));
        Ok(match (ctx.needs(0), ctx.needs(1)) {
            (true, true) => {
                let gb = to_shape(ctx, g.par_clone(), sb)?;
                vec![Some(to_shape(ctx, g, sa)?), Some(gb)]
            }
            (true, false) => vec![Some(to_shape(ctx, g, sa)?), None],
            (false, true) => vec![None, Some(to_shape(ctx, g, sb)?)],
            (false, false) => vec![None, None],
        })
    }
}

impl<T: Element> Op<T> for AddOp<T> {
    fn kind(&self) -> OpKind {
        if self.residual {
            OpKind::RESIDUAL_SUM
        } else {
            OpKind::ADD
        }
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        self.standard(ctx, g)
    }

    fn backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        g: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        self.standard_owned(ctx, g)
    }

    fn homogeneous(&self) -> Option<&dyn Homogeneous<T>> {
        Some(self)
    }
}

/// The sum as the LRP norm rule sees it: linear in both terms.
impl<T: Element> Homogeneous<T> for AddOp<T> {
    fn terms(&self) -> Option<Vec<&Tensor<T>>> {
        self.terms.as_ref().map(|[a, b]| vec![&**a, &**b])
    }

    fn output(&self, terms: &[&Tensor<T>]) -> sightline_tensor::Result<Tensor<T>> {
        apply(terms[0], terms[1], BinaryOp::Add)
    }
}

/// Excitation backprop through a residual sum (TorchRay's `EltwiseSum`): each term
/// gets the share of the gradient in proportion to its value,
/// `g * a / (a + b)` and `g * b / (a + b)` (summed back to its shape where
/// it was broadcast).
#[derive(Clone, Copy, Debug, Default)]
pub struct ExcitationSum;

impl<T: Element> Rule<T> for ExcitationSum {
    fn name(&self) -> &str {
        "excitation_sum"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let op: &AddOp<T> = ctx.op(Rule::<T>::name(self))?;
        let [a, b] = op
            .terms
            .as_ref()
            .ok_or_else(|| ctx.not_retained(Rule::<T>::name(self), "terms"))?;
        let y = apply(a, b, BinaryOp::Add).map_err(|e| ctx.kernel(e))?;
        let share = |t: &Tensor<T>| -> Result<Tensor<T>> {
            let r = apply(t, &y, BinaryOp::Div).map_err(|e| ctx.kernel(e))?;
            let r = r
                .zip_map(g, "excitation_sum", |r, g| r * g)
                .map_err(|e| ctx.kernel(e))?;
            to_shape(ctx, r, t.shape())
        };
        Ok(vec![
            if ctx.needs(0) { Some(share(a)?) } else { None },
            if ctx.needs(1) { Some(share(b)?) } else { None },
        ])
    }
}

/// A recorded difference `a - b`.
#[derive(Debug)]
pub struct SubOp;

/// Records `a - b` (broadcasting).
pub fn sub<T: Element>(tape: &mut Tape<T>, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
    let y = apply(a.value(), b.value(), BinaryOp::Sub).map_err(tape.kernel_err("sub"))?;
    Ok(tape.record(SubOp, &[a, b], y))
}

impl<T: Element> Op<T> for SubOp {
    fn kind(&self) -> OpKind {
        OpKind::SUB
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let ga = if ctx.needs(0) {
            Some(to_shape(ctx, g.par_clone(), input_shape(ctx, 0))?)
        } else {
            None
        };
        let gb = if ctx.needs(1) {
            Some(to_shape(ctx, g.map(|v| -v), input_shape(ctx, 1))?)
        } else {
            None
        };
        Ok(vec![ga, gb])
    }
}

/// A recorded product `a * b`.
#[derive(Debug)]
pub struct MulOp<T> {
    /// Both factors.
    pub factors: [Arc<Tensor<T>>; 2],
}

/// Records `a * b` (broadcasting).
pub fn mul<T: Element>(tape: &mut Tape<T>, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
    let y = if a.shape() == b.shape() {
        mul_kernel(a.value(), b.value())
    } else {
        apply(a.value(), b.value(), BinaryOp::Mul)
    }
    .map_err(tape.kernel_err("mul"))?;
    let factors = [a.value_arc().clone(), b.value_arc().clone()];
    Ok(tape.record(MulOp { factors }, &[a, b], y))
}

impl<T: Element> Op<T> for MulOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::MUL
    }

    /// The product rule: `g * b` to `a`, `g * a` to `b`, each summed back
    /// to its shape.
    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let [a, b] = &self.factors;
        let part = |other: &Tensor<T>, i: usize| -> Result<Option<Tensor<T>>> {
            if !ctx.needs(i) {
                return Ok(None);
            }
            let p = if other.shape() == g.shape() {
                mul_kernel(g, other)
            } else {
                apply(g, other, BinaryOp::Mul)
            }
            .map_err(|e| ctx.kernel(e))?;
            Ok(Some(to_shape(ctx, p, input_shape(ctx, i))?))
        };
        Ok(vec![part(b, 0)?, part(a, 1)?])
    }
}

/// A recorded quotient `a / b`.
#[derive(Debug)]
pub struct DivOp<T> {
    /// The divisor `b`.
    pub divisor: Arc<Tensor<T>>,
    /// The quotient `a / b` (the op's own output), for `b`'s gradient.
    pub quotient: Option<Arc<Tensor<T>>>,
}

/// Records `a / b` (broadcasting).
pub fn div<T: Element>(tape: &mut Tape<T>, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
    let y = apply(a.value(), b.value(), BinaryOp::Div).map_err(tape.kernel_err("div"))?;
    let divisor = b.value_arc().clone();
    let keep = tape.requires_grad(b.id());
    Ok(tape.record_keeping_output(
        |out| DivOp {
            divisor,
            quotient: keep.then_some(out),
        },
        &[a, b],
        y,
    ))
}

impl<T: Element> Op<T> for DivOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::DIV
    }

    /// `g / b` to `a`; `-g * (a / b) / b` to `b`, each summed back to its
    /// shape.
    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let ga = if ctx.needs(0) {
            let q = apply(g, &self.divisor, BinaryOp::Div).map_err(|e| ctx.kernel(e))?;
            Some(to_shape(ctx, q, input_shape(ctx, 0))?)
        } else {
            None
        };
        let gb = if ctx.needs(1) {
            let y = self
                .quotient
                .as_ref()
                .ok_or_else(|| ctx.not_retained("standard", "quotient"))?;
            let gy = g
                .zip_map(y, "div backward", |g, y| -(g * y))
                .map_err(|e| ctx.kernel(e))?;
            let q = apply(&gy, &self.divisor, BinaryOp::Div).map_err(|e| ctx.kernel(e))?;
            Some(to_shape(ctx, q, input_shape(ctx, 1))?)
        } else {
            None
        };
        Ok(vec![ga, gb])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Retain, RuleSet};

    #[test]
    fn residual_sum_owned_sums_in_place_only_when_it_may() {
        let len = 70_000;
        let a: Vec<f64> = (0..len).map(|i| (i % 17) as f64 * 0.25 - 2.0).collect();
        let b: Vec<f64> = (0..len).map(|i| (i % 5) as f64 - 1.5).collect();
        let seed = Tensor::from_vec([len], (0..len).map(|i| (i % 3) as f64).collect()).unwrap();
        let run = |retain: Retain, owned: bool, shared: bool| {
            let mut tape = Tape::new(retain);
            let av = tape.input(Tensor::from_vec([len], a.clone()).unwrap());
            let bv = tape.input(Tensor::from_vec([len], b.clone()).unwrap());
            let ids = [av.id(), bv.id()];
            let before = av.value().data().as_ptr();
            let other = shared.then(|| av.clone());
            let y = if owned {
                residual_sum_owned(&mut tape, av, &bv).unwrap()
            } else {
                residual_sum(&mut tape, &av, &bv).unwrap()
            };
            drop(other);
            let in_place = y.value().data().as_ptr() == before;
            let grads = tape
                .backward(y.id(), &seed, &RuleSet::standard(), &ids)
                .unwrap();
            (y.value().clone(), grads, in_place)
        };
        let (want, want_grads, _) = run(Retain::Minimal, false, false);
        for (retain, shared, in_place) in [
            (Retain::Minimal, false, true),
            (Retain::Minimal, true, false),
            (Retain::All, false, false),
        ] {
            let (y, grads, got_in_place) = run(retain, true, shared);
            assert_eq!(got_in_place, in_place, "{retain:?}, shared {shared}");
            assert_eq!((&y, &grads), (&want, &want_grads));
        }
        let mut tape = Tape::new(Retain::Minimal);
        let av = tape.input(Tensor::<f64>::zeros([3]));
        let bv = tape.input(Tensor::zeros([4]));
        assert!(residual_sum_owned(&mut tape, av, &bv).is_err());
    }

    /// A per-channel bias broadcast over a batch: its gradient is the sum
    /// of the output gradient over the broadcast axes.
    #[test]
    fn broadcast_gradients_sum_back_to_the_operand_shape() {
        let mut tape = Tape::new(Retain::Minimal);
        let x = tape.input(Tensor::from_vec([2, 3, 2], (0..12).map(f64::from).collect()).unwrap());
        let b = tape.input(Tensor::from_vec([3, 1], vec![1.0, 2.0, 4.0]).unwrap());
        for (name, y) in [
            ("add", add(&mut tape, &x, &b).unwrap()),
            ("sub", sub(&mut tape, &x, &b).unwrap()),
            ("mul", mul(&mut tape, &x, &b).unwrap()),
            ("div", div(&mut tape, &x, &b).unwrap()),
        ] {
            let seed = Tensor::full(vec![2, 3, 2], 1.0);
            let g = tape
                .backward(y.id(), &seed, &RuleSet::standard(), &[x.id(), b.id()])
                .unwrap();
            assert_eq!(g[1].shape(), [3, 1], "{name}");
            // x[n, c, w] = 6 n + 2 c + w; sums over n and w of x: c = 0: 0+1+6+7 = 14.
            let want: [f64; 3] = match name {
                "add" => [4.0; 3],
                "sub" => [-4.0; 3],
                "mul" => [14.0, 22.0, 30.0],
                _ => [-14.0, -22.0 / 4.0, -30.0 / 16.0],
            };
            for (got, want) in g[1].data().iter().zip(want) {
                assert!((got - want).abs() < 1e-12, "{name}: {got} vs {want}");
            }
            let want_x: [f64; 3] = match name {
                "add" => [1.0; 3],
                "sub" => [1.0; 3],
                "mul" => [1.0, 2.0, 4.0],
                _ => [1.0, 0.5, 0.25],
            };
            assert_eq!(g[0].data()[2..4], [want_x[1], want_x[1]], "{name}");
        }
    }
}
