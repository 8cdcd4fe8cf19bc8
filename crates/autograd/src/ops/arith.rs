//! Elementwise sum and product: recording, standard backward, and the
//! excitation rule of the residual sum.

use crate::error::Result;
use crate::op::Op;
use crate::rule::{Rule, RuleContext};
use crate::tape::{Tape, Var};
use sightline_tensor::elementwise::{add as add_kernel, mul as mul_kernel};
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
    Ok(tape.record(Op::Add(AddOp { terms }), &[a, b], y))
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
        let Op::Add(op) = &ctx.node.op else {
            return Err(ctx.mismatch(Rule::<T>::name(self)));
        };
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
    Ok(tape.record(Op::Mul(MulOp { factors }), &[a, b], y))
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
