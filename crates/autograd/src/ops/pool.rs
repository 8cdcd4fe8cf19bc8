//! Pooling: max (first maximum), average and adaptive average, with their
//! standard backward and the excitation rules of the average pools.

use crate::error::Result;
use crate::lrp::Homogeneous;
use crate::op::{Op, OpKind};
use crate::rule::{Rule, RuleContext};
use crate::tape::{Tape, Var};
use sightline_tensor::pool::{
    adaptive_avg_pool2d as adaptive_kernel, adaptive_avg_pool2d_backward, avg_pool2d as avg_kernel,
    avg_pool2d_backward, max_pool2d as max_kernel, max_pool2d_backward,
};
use sightline_tensor::{AvgPool2dParams, Element, MaxPool2dParams, Tensor};
use std::sync::Arc;

/// A recorded max pool: for each output, the index in its input plane of the first maximum.
#[derive(Debug)]
pub struct MaxPoolOp {
    /// The pooling geometry, with the SIMD cap of the tape's kernel policy.
    pub params: MaxPool2dParams,
    /// Flat index within the input plane of each output's first maximal element.
    pub indices: Vec<u32>,
}

/// Records a max pool, run with the SIMD cap of the tape's kernel policy
/// ([`Tape::kernels`]), which replaces `params.simd`.
pub fn max_pool2d<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    params: MaxPool2dParams,
) -> Result<Var<T>> {
    let params = params.with_simd(tape.kernels().simd);
    let (y, indices) = max_kernel(x.value(), params).map_err(tape.kernel_err("max_pool2d"))?;
    Ok(tape.record(MaxPoolOp { params, indices }, &[x], y))
}

impl MaxPoolOp {
    /// Standard: each output gradient goes to its first maximal input element.
    pub(crate) fn standard<T: Element>(
        &self,
        ctx: &RuleContext<'_, T>,
        g: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        if !ctx.needs(0) {
            return Ok(vec![None]);
        }
        let gx = max_pool2d_backward(g, &self.indices, &ctx.node.input_shapes[0])
            .map_err(|e| ctx.kernel(e))?;
        Ok(vec![Some(gx)])
    }
}

/// A recorded average pool.
#[derive(Debug)]
pub struct AvgPoolOp<T> {
    /// The pooling geometry.
    pub params: AvgPool2dParams,
    /// The input, kept for the excitation rule.
    pub input: Option<Arc<Tensor<T>>>,
}

/// Records an average pool.
pub fn avg_pool2d<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    params: AvgPool2dParams,
) -> Result<Var<T>> {
    let y = avg_kernel(x.value(), params).map_err(tape.kernel_err("avg_pool2d"))?;
    let input = tape.keeps_all().then(|| x.value_arc().clone());
    Ok(tape.record(AvgPoolOp { params, input }, &[x], y))
}

impl<T: Element> AvgPoolOp<T> {
    pub(crate) fn standard(
        &self,
        ctx: &RuleContext<'_, T>,
        g: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        if !ctx.needs(0) {
            return Ok(vec![None]);
        }
        let gx = avg_pool2d_backward(g, &ctx.node.input_shapes[0], self.params)
            .map_err(|e| ctx.kernel(e))?;
        Ok(vec![Some(gx)])
    }
}

/// A recorded adaptive average pool.
#[derive(Debug)]
pub struct AdaptiveAvgPoolOp<T> {
    /// Output height and width.
    pub output_hw: (usize, usize),
    /// The input, kept for the excitation rule.
    pub input: Option<Arc<Tensor<T>>>,
}

/// Records an adaptive average pool to `output_hw`.
pub fn adaptive_avg_pool2d<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    output_hw: (usize, usize),
) -> Result<Var<T>> {
    let y =
        adaptive_kernel(x.value(), output_hw).map_err(tape.kernel_err("adaptive_avg_pool2d"))?;
    let input = tape.keeps_all().then(|| x.value_arc().clone());
    Ok(tape.record(AdaptiveAvgPoolOp { output_hw, input }, &[x], y))
}

impl<T: Element> AdaptiveAvgPoolOp<T> {
    pub(crate) fn standard(
        &self,
        ctx: &RuleContext<'_, T>,
        g: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        if !ctx.needs(0) {
            return Ok(vec![None]);
        }
        let gx = adaptive_avg_pool2d_backward(g, &ctx.node.input_shapes[0])
            .map_err(|e| ctx.kernel(e))?;
        Ok(vec![Some(gx)])
    }
}

/// Excitation backprop through an average pool: `x * VJP(g / (avgpool(x) + 1e-20))`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExcitationAvgPool;

impl<T: Element> Rule<T> for ExcitationAvgPool {
    fn name(&self) -> &str {
        "excitation_avg_pool"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let op: &AvgPoolOp<T> = ctx.op(Rule::<T>::name(self))?;
        let shape = &ctx.node.input_shapes[0];
        pool_excitation(
            ctx,
            Rule::<T>::name(self),
            op.input.as_deref(),
            g,
            |a| avg_kernel(a, op.params),
            |s| avg_pool2d_backward(s, shape, op.params),
        )
    }
}

/// Excitation backprop through an adaptive average pool: `x * VJP(g / (pool(x) + 1e-20))`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExcitationAdaptiveAvgPool;

impl<T: Element> Rule<T> for ExcitationAdaptiveAvgPool {
    fn name(&self) -> &str {
        "excitation_adaptive_avg_pool"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let op: &AdaptiveAvgPoolOp<T> = ctx.op(Rule::<T>::name(self))?;
        let shape = &ctx.node.input_shapes[0];
        pool_excitation(
            ctx,
            Rule::<T>::name(self),
            op.input.as_deref(),
            g,
            |a| adaptive_kernel(a, op.output_hw),
            |s| adaptive_avg_pool2d_backward(s, shape),
        )
    }
}

/// The excitation step of an average pool given its forward `pool` and its adjoint.
fn pool_excitation<T: Element>(
    ctx: &RuleContext<'_, T>,
    rule: &str,
    input: Option<&Tensor<T>>,
    g: &Tensor<T>,
    pool: impl FnOnce(&Tensor<T>) -> sightline_tensor::Result<Tensor<T>>,
    adjoint: impl FnOnce(&Tensor<T>) -> sightline_tensor::Result<Tensor<T>>,
) -> Result<Vec<Option<Tensor<T>>>> {
    if !ctx.needs(0) {
        return Ok(vec![None]);
    }
    let x = input.ok_or_else(|| ctx.not_retained(rule, "input"))?;
    Ok(vec![Some(crate::ops::excitation(
        ctx, x, g, pool, adjoint,
    )?)])
}

impl<T: Element> Op<T> for MaxPoolOp {
    fn kind(&self) -> OpKind {
        OpKind::MAX_POOL2D
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        self.standard(ctx, g)
    }
}

impl<T: Element> Op<T> for AvgPoolOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::AVG_POOL2D
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        self.standard(ctx, g)
    }

    fn homogeneous(&self) -> Option<&dyn Homogeneous<T>> {
        Some(self)
    }
}

/// The pool as the LRP norm rule sees it: linear in its input.
impl<T: Element> Homogeneous<T> for AvgPoolOp<T> {
    fn terms(&self) -> Option<Vec<&Tensor<T>>> {
        self.input.as_deref().map(|x| vec![x])
    }

    fn output(&self, terms: &[&Tensor<T>]) -> sightline_tensor::Result<Tensor<T>> {
        avg_kernel(terms[0], self.params)
    }
}

impl<T: Element> Op<T> for AdaptiveAvgPoolOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::ADAPTIVE_AVG_POOL2D
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        self.standard(ctx, g)
    }

    fn homogeneous(&self) -> Option<&dyn Homogeneous<T>> {
        Some(self)
    }
}

/// The pool as the LRP norm rule sees it: linear in its input.
impl<T: Element> Homogeneous<T> for AdaptiveAvgPoolOp<T> {
    fn terms(&self) -> Option<Vec<&Tensor<T>>> {
        self.input.as_deref().map(|x| vec![x])
    }

    fn output(&self, terms: &[&Tensor<T>]) -> sightline_tensor::Result<Tensor<T>> {
        adaptive_kernel(terms[0], self.output_hw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::RuleSet;
    use crate::tape::Retain;
    use sightline_tensor::{KernelPolicy, SimdCap, WinogradPolicy};

    /// A max pool recorded on a tape with a SIMD cap keeps the cap in its
    /// node (replacing the one given) and gives the kernel's values and
    /// gradient.
    #[test]
    fn a_max_pool_runs_under_the_tape_cap() {
        let x: Tensor<f32> = Tensor::from_vec(
            vec![1, 2, 9, 8],
            (0..144).map(|i| ((i * 37) % 29) as f32 - 14.0).collect(),
        )
        .unwrap();
        let given = MaxPool2dParams::new(2, 2, 0).with_simd(SimdCap::Avx2);
        for simd in SimdCap::ALL {
            let policy = KernelPolicy::new(WinogradPolicy::Off, simd);
            let mut tape = Tape::new(Retain::Minimal).with_kernels(policy);
            let xv = tape.input(x.clone());
            let y = max_pool2d(&mut tape, &xv, given).unwrap();
            let op = tape.nodes()[0].op.downcast_ref::<MaxPoolOp>().unwrap();
            assert_eq!(op.params, given.with_simd(simd));
            let (want, indices) = max_kernel(&x, given.with_simd(simd)).unwrap();
            assert_eq!(y.value(), &want);
            assert_eq!(op.indices, indices);
            let seed = Tensor::full(want.shape().to_vec(), 1.0);
            let g = tape
                .backward(y.id(), &seed, &RuleSet::standard(), &[xv.id()])
                .unwrap()
                .remove(0);
            assert_eq!(g.data().iter().sum::<f32>(), want.len() as f32);
        }
    }
}
