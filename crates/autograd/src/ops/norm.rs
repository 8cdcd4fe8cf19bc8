//! Batch norm in inference (recording, standard backward, excitation rule:
//! identity) and layer norm (recording, standard backward).

use crate::error::Result;
use crate::op::{Op, OpKind};
use crate::rule::{Rule, RuleContext};
use crate::tape::{Tape, Var};
use sightline_tensor::layer_norm::{
    layer_norm as ln_kernel, layer_norm_backward, LayerNormGrads, LayerNormStats,
};
use sightline_tensor::norm::{batch_norm as bn_kernel, batch_norm_backward_input, BatchNormAffine};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// A recorded batch norm: its per-channel affine form.
#[derive(Debug)]
pub struct BatchNormOp<T> {
    /// Scale and shift per channel (shared with the layer).
    pub affine: Arc<BatchNormAffine<T>>,
}

/// Records an inference batch norm.
pub fn batch_norm<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    affine: &Arc<BatchNormAffine<T>>,
) -> Result<Var<T>> {
    let y = bn_kernel(x.value(), affine).map_err(tape.kernel_err("batch_norm"))?;
    let affine = affine.clone();
    Ok(tape.record(BatchNormOp { affine }, &[x], y))
}

impl<T: Element> BatchNormOp<T> {
    pub(crate) fn standard(
        &self,
        ctx: &RuleContext<'_, T>,
        g: &Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        if !ctx.needs(0) {
            return Ok(vec![None]);
        }
        Ok(vec![Some(
            batch_norm_backward_input(g, &self.affine).map_err(|e| ctx.kernel(e))?,
        )])
    }
}

impl<T: Element> Op<T> for BatchNormOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::BATCH_NORM
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        self.standard(ctx, g)
    }
}

/// Excitation backprop through batch norm: the gradient passes unchanged (TorchRay).
#[derive(Clone, Copy, Debug, Default)]
pub struct ExcitationBatchNorm;

impl<T: Element> Rule<T> for ExcitationBatchNorm {
    fn name(&self) -> &str {
        "excitation_batch_norm"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        ctx.op::<BatchNormOp<T>>(Rule::<T>::name(self))?;
        Ok(vec![ctx.needs(0).then(|| g.clone())])
    }

    fn backward_owned(
        &self,
        ctx: &RuleContext<'_, T>,
        g: Tensor<T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        ctx.op::<BatchNormOp<T>>(Rule::<T>::name(self))?;
        Ok(vec![ctx.needs(0).then_some(g)])
    }
}

/// A recorded layer norm: what its backward reads.
#[derive(Debug)]
pub struct LayerNormOp<T> {
    /// The input (shared with its variable).
    pub input: Arc<Tensor<T>>,
    /// The scale (shared with its variable).
    pub scale: Arc<Tensor<T>>,
    /// Each row's mean and inverse standard deviation, and the first
    /// normalised axis.
    pub stats: LayerNormStats<T>,
}

/// Records a layer norm of `x` over the axes from `axis` on (ONNX
/// LayerNormalization, PyTorch `layer_norm`): each row normalised by its
/// mean and biased variance plus `eps`, times `scale`, plus `bias` if
/// given, both of the normalised shape `x.shape[axis..]`. The backward
/// gives the gradients of `x`, `scale` and `bias`, each only where it is
/// wanted (a model's scale and bias are usually constants). An error for
/// an axis out of range or a scale or bias of another shape.
pub fn layer_norm<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    scale: &Var<T>,
    bias: Option<&Var<T>>,
    axis: usize,
    eps: T,
) -> Result<Var<T>> {
    let (y, stats) = ln_kernel(
        x.value(),
        scale.value(),
        bias.map(Var::value),
        axis,
        eps.to_f64_lossless(),
    )
    .map_err(tape.kernel_err("layer_norm"))?;
    let op = LayerNormOp {
        input: x.value_arc().clone(),
        scale: scale.value_arc().clone(),
        stats,
    };
    let mut inputs = vec![x, scale];
    inputs.extend(bias);
    Ok(tape.record(op, &inputs, y))
}

impl<T: Element> Op<T> for LayerNormOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::LAYER_NORM
    }

    /// Inputs: `x`, `scale`, and `bias` when it was given.
    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let has_bias = ctx.node.inputs.len() > 2;
        let LayerNormGrads { x, scale, bias } = layer_norm_backward(
            g,
            &self.input,
            &self.scale,
            &self.stats,
            ctx.needs(0),
            ctx.needs(1),
            has_bias && ctx.needs(2),
        )
        .map_err(|e| ctx.kernel(e))?;
        let mut out = vec![x, scale];
        if has_bias {
            out.push(bias);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Retain, RuleSet};

    /// A `[2, 2]` layer norm over the last axis, by hand: each row
    /// `[m - d, m + d]` normalises to `[-1, 1]` (eps 0), then scale and
    /// bias; the gradients of x, scale and bias.
    #[test]
    fn layer_norm_values_and_gradients() {
        let mut tape = Tape::new(Retain::Minimal).training();
        let x = tape.input(Tensor::from_vec([2, 2], vec![1.0, 3.0, -2.0, 2.0]).unwrap());
        let scale = tape.parameter(Arc::new(Tensor::from_vec([2], vec![2.0, 3.0]).unwrap()));
        let bias = tape.parameter(Arc::new(Tensor::from_vec([2], vec![0.5, -0.5]).unwrap()));
        let y = layer_norm(&mut tape, &x, &scale, Some(&bias), 1, 0.0).unwrap();
        assert_eq!(y.value().data(), [-1.5, 2.5, -1.5, 2.5]);
        let seed = Tensor::from_vec([2, 2], vec![1.0, 0.0, 0.0, 2.0]).unwrap();
        let ids = [x.id(), scale.id(), bias.id()];
        let g = tape
            .backward(y.id(), &seed, &RuleSet::standard(), &ids)
            .unwrap();
        // Row [a, b], n = 2: xhat = [-1, 1] and d xhat_0 / d a = 0 (a row of
        // two normalised values is always [-1, 1] or [1, -1]): the input's
        // gradient is 0.
        assert!(
            g[0].data().iter().all(|v: &f64| v.abs() < 1e-15),
            "{:?}",
            g[0]
        );
        // Scale: sum over rows of g * xhat = [1 * -1 + 0, 0 + 2 * 1].
        assert_eq!(g[1].data(), [-1.0, 2.0]);
        // Bias: column sums of g.
        assert_eq!(g[2].data(), [1.0, 2.0]);
        assert_eq!(tape.nodes().last().unwrap().op.kind(), OpKind::LAYER_NORM);
    }

    /// Three elements per row, eps 0, scale 1: the input's gradient is
    /// `rstd * (g - mean(g) - xhat * mean(g * xhat))`, by hand; scale and
    /// bias are constants (no gradient asked, none computed).
    #[test]
    fn layer_norm_input_gradient() {
        let mut tape = Tape::new(Retain::Minimal);
        let x = tape.input(Tensor::from_vec([1, 3], vec![-1.0, 0.0, 1.0]).unwrap());
        let scale = tape.constant(Arc::new(Tensor::from_vec([3], vec![1.0; 3]).unwrap()));
        let y = layer_norm(&mut tape, &x, &scale, None, 1, 0.0).unwrap();
        // var = 2/3, rstd = sqrt(3/2), xhat = [-1, 0, 1] * rstd.
        let r = 1.5f64.sqrt();
        for (a, b) in y.value().data().iter().zip([-r, 0.0, r]) {
            assert!((a - b).abs() < 1e-15);
        }
        let seed = Tensor::from_vec([1, 3], vec![1.0, 0.0, 0.0]).unwrap();
        let g = tape
            .backward(y.id(), &seed, &RuleSet::standard(), &[x.id()])
            .unwrap()
            .remove(0);
        // mean(g) = 1/3, mean(g xhat) = -r/3: rstd (g - 1/3 + xhat r / 3)
        // = r ([2/3, -1/3, -1/3] + [-1/2, 0, 1/2]) = r [1/6, -1/3, 1/6].
        for (a, b) in g.data().iter().zip([r / 6.0, -r / 3.0, r / 6.0]) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }

    #[test]
    fn layer_norm_scale_of_another_shape_is_an_error() {
        let mut tape = Tape::<f32>::new(Retain::Minimal);
        let x = tape.input(Tensor::zeros([2, 3]));
        let scale = tape.constant(Arc::new(Tensor::zeros([2])));
        assert!(layer_norm(&mut tape, &x, &scale, None, 1, 1e-5).is_err());
        assert!(layer_norm(&mut tape, &x, &scale, None, 2, 1e-5).is_err());
    }
}
