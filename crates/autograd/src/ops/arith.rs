//! Elementwise sum and product: recording, standard backward, and the
//! excitation rule of the residual sum.

use crate::error::Result;
use crate::op::{Op, OpKind};
use crate::rule::{Rule, RuleContext};
use crate::tape::{Tape, Var};
use sightline_tensor::elementwise::{add as add_kernel, add_assign, mul as mul_kernel};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// A recorded sum `a + b`.
#[derive(Debug)]
pub struct AddOp<T> {
    /// Both terms, kept for the excitation rule.
    pub terms: Option<[Arc<Tensor<T>>; 2]>,
}

/// Records `a + b` (same shapes).
pub fn add<T: Element>(tape: &mut Tape<T>, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
    let y = add_kernel(a.value(), b.value()).map_err(tape.kernel_err("add"))?;
    let terms = tape
        .keeps_all()
        .then(|| [a.value_arc().clone(), b.value_arc().clone()]);
    Ok(tape.record(AddOp { terms }, &[a, b], y))
}

/// [`add`] taking `a` over: when nothing else holds its value and the tape
/// does not keep the terms (`Retain::All` does, for the excitation rule),
/// `b` is added into `a`'s buffer in place (the same sums); otherwise as
/// [`add`]. For a residual sum, whose branch output dies with it.
pub fn add_owned<T: Element>(tape: &mut Tape<T>, a: Var<T>, b: &Var<T>) -> Result<Var<T>> {
    if tape.keeps_all() {
        return add(tape, &a, b);
    }
    let (id, value) = a.into_parts();
    match Arc::try_unwrap(value) {
        Ok(mut value) => {
            add_assign(&mut value, b.value()).map_err(tape.kernel_err("add"))?;
            let op = AddOp { terms: None };
            Ok(tape.record_ids(op, &[id, b.id()], value))
        }
        Err(shared) => add(tape, &Var::from_parts(id, shared), b),
    }
}

impl<T: Element> AddOp<T> {
    pub(crate) fn standard(
        &self,
        ctx: &RuleContext<'_, T>,
        g: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        Ok(vec![
            ctx.needs(0).then(|| g.par_clone()),
            ctx.needs(1).then(|| g.par_clone()),
        ])
    }

    /// [`AddOp::standard`] owning `g`: the first term wanted gets `g` itself.
    pub(crate) fn standard_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        g: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        Ok(match (ctx.needs(0), ctx.needs(1)) {
            (true, true) => vec![Some(g.par_clone()), Some(g)],
            (true, false) => vec![Some(g), None],
            (false, true) => vec![None, Some(g)],
            (false, false) => vec![None, None],
        })
    }
}

/// Excitation backprop through a sum `y = a1 + a2`: term `k` gets `a_k / y * g`
/// (no epsilon, as TorchRay's `EltwiseSum`).
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
        let y = add_kernel(a, b).map_err(|e| ctx.kernel(e))?;
        let share = |t: &Tensor<T>| -> Result<Tensor<T>> {
            let r = t
                .zip_map(&y, "excitation_sum", |t, y| t / y)
                .map_err(|e| ctx.kernel(e))?;
            r.zip_map(g, "excitation_sum", |r, g| r * g)
                .map_err(|e| ctx.kernel(e))
        };
        Ok(vec![
            if ctx.needs(0) { Some(share(a)?) } else { None },
            if ctx.needs(1) { Some(share(b)?) } else { None },
        ])
    }
}

/// A recorded product `a * b`.
#[derive(Debug)]
pub struct MulOp<T> {
    /// Both factors.
    pub factors: [Arc<Tensor<T>>; 2],
}

/// Records `a * b` elementwise (same shapes).
pub fn mul<T: Element>(tape: &mut Tape<T>, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
    let y = mul_kernel(a.value(), b.value()).map_err(tape.kernel_err("mul"))?;
    let factors = [a.value_arc().clone(), b.value_arc().clone()];
    Ok(tape.record(MulOp { factors }, &[a, b], y))
}

impl<T: Element> MulOp<T> {
    pub(crate) fn standard(
        &self,
        ctx: &RuleContext<'_, T>,
        g: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let [a, b] = &self.factors;
        let ga = if ctx.needs(0) {
            Some(mul_kernel(g, b).map_err(|e| ctx.kernel(e))?)
        } else {
            None
        };
        let gb = if ctx.needs(1) {
            Some(mul_kernel(g, a).map_err(|e| ctx.kernel(e))?)
        } else {
            None
        };
        Ok(vec![ga, gb])
    }
}

impl<T: Element> Op<T> for AddOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::ADD
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
}

impl<T: Element> Op<T> for MulOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::MUL
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        self.standard(ctx, g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Retain, RuleSet};

    /// `add_owned` sums into `a`'s buffer when it holds the only handle and
    /// the tape keeps no terms; with another handle, or under
    /// `Retain::All` (which keeps both terms for the excitation rule), it
    /// writes a new buffer. The sum and both terms' gradients are those of
    /// `add` every time.
    #[test]
    fn add_owned_sums_in_place_only_when_it_may() {
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
                add_owned(&mut tape, av, &bv).unwrap()
            } else {
                add(&mut tape, &av, &bv).unwrap()
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
        assert!(add_owned(&mut tape, av, &bv).is_err());
    }
}
