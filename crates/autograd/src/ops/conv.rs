//! Convolution: recording, standard backward, excitation rule.

use crate::error::Result;
use crate::lrp::Affine;
use crate::op::{Op, OpKind};
use crate::ops::{excitation_denominator, excitation_with_denominator, ExcitationSlots};
use crate::rule::{Rule, RuleContext};
use crate::tape::{Tape, Var};
use sightline_tensor::conv::{
    conv2d as conv_kernel, conv2d_backward_bias, conv2d_backward_input,
    conv2d_backward_input_cached, conv2d_backward_input_then, conv2d_backward_weight,
    conv2d_cached, BackwardInputCache, ForwardCache,
};
use sightline_tensor::norm::{fold_batch_norm, BatchNormAffine};
use sightline_tensor::{Conv2dParams, Element, Epilogue, Tensor, TensorError};
use std::fmt;
use std::sync::{Arc, OnceLock};

/// A recorded convolution.
#[derive(Debug)]
pub struct Conv2dOp<T> {
    /// Stride, padding, dilation, groups, and the tape's kernel policy
    /// (which the backward rules compute under too).
    pub params: Conv2dParams,
    /// The kernel convolved (shared with the layer, not copied): with a batch
    /// norm folded in ([`conv2d_batch_norm_folded`]), the folded kernel.
    pub weight: Arc<Tensor<T>>,
    /// The input, kept when a rule or a weight gradient may need it.
    pub input: Option<Arc<Tensor<T>>>,
    /// Whether a bias was added (a third input).
    pub has_bias: bool,
    /// The bias added (with a batch norm folded in, the folded bias), kept
    /// when the input is: the LRP rules run the convolution again with it
    /// ([`crate::lrp::Affine`]).
    pub bias: Option<Arc<Tensor<T>>>,
    /// The transposed, flipped (or Winograd-transformed) kernel of the
    /// standard input gradient, made on the first backward pass and reused
    /// by the next ones: shared with the layer's [`Conv2dCache`] when the
    /// convolution was recorded with [`conv2d_with_cache`] (then it outlives
    /// the tape), otherwise this node's own.
    backward_kernel: Arc<BackwardInputCache<T>>,
    /// The excitation rule's denominator, per sign, made on the first
    /// excitation pass through this node and dropped with the tape.
    excitation: Box<ExcitationSlots<T>>,
    /// The excitation rule's positive weights and the kernels derived from
    /// them, per sign: shared with the layer's [`Conv2dCache`] when there is
    /// one (then made once per layer), otherwise this node's own.
    positive: Arc<PositiveSlots<T>>,
}

/// A convolution's positive weights `max(±W, 0)`, per sign, each with the
/// kernels derived from it (forward and input gradient), made on first use.
struct PositiveSlots<T>([OnceLock<PositiveConv<T>>; 2]);

impl<T> Default for PositiveSlots<T> {
    fn default() -> Self {
        Self([OnceLock::new(), OnceLock::new()])
    }
}

/// The positive weights of one sign and their kernels.
struct PositiveConv<T> {
    weight: Tensor<T>,
    forward: ForwardCache<T>,
    backward_kernel: BackwardInputCache<T>,
}

impl<T> fmt::Debug for PositiveSlots<T> {
    // Which signs are built, not their values (as large as the weight).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PositiveSlots")
            .field(&self.0.each_ref().map(|c| c.get().is_some()))
            .finish()
    }
}

/// The kernels a convolution derives from its weight, kept across calls by
/// the owner of the weight (a layer) and passed to [`conv2d_with_cache`]:
/// the forward pass's Winograd or packed kernel, the input gradient's
/// transformed kernel, and the excitation rule's positive weights with their
/// kernels (the last two shared with the tape nodes recorded with it). All
/// are computed on first use.
///
/// A cache belongs to one weight value and one set of parameters. Whoever
/// can change the weight must drop the cache (or replace it with a new one)
/// when it does: tapes recorded before keep the old weight together with the
/// old cache, so they stay consistent.
pub struct Conv2dCache<T> {
    forward: ForwardCache<T>,
    backward_input: Arc<BackwardInputCache<T>>,
    positive: Arc<PositiveSlots<T>>,
}

impl<T> Conv2dCache<T> {
    /// An empty cache.
    pub fn new() -> Self {
        let forward = ForwardCache::new();
        Self {
            // The input gradient reads the forward pass's F(2x2) Winograd
            // kernel transposed: one kernel per weight, not two.
            backward_input: Arc::new(BackwardInputCache::sharing(&forward)),
            forward,
            positive: Arc::new(PositiveSlots::default()),
        }
    }

    /// Whether the forward Winograd kernel has been computed and kept (only
    /// convolutions that go through Winograd compute one, and the large
    /// F(2x2) ones make theirs per call without keeping it).
    pub fn forward_is_built(&self) -> bool {
        self.forward.is_built()
    }
}

impl<T> Default for Conv2dCache<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Conv2dCache<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conv2dCache")
            .field("forward", &self.forward)
            .field("backward_input", &self.backward_input)
            .field("positive", &self.positive)
            .finish()
    }
}

/// Records `conv2d(x, weight, bias)`.
///
/// What it derives from the weight (a Winograd kernel) is computed for this
/// call and this tape only; a caller that runs the same weight again should
/// keep a [`Conv2dCache`] and use [`conv2d_with_cache`].
///
/// The convolution runs under the tape's kernel policy ([`Tape::kernels`]),
/// which replaces `params.kernels`; the node keeps it, so the backward rules
/// run under it too.
pub fn conv2d<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    weight: &Var<T>,
    bias: Option<&Var<T>>,
    params: Conv2dParams,
) -> Result<Var<T>> {
    record(tape, x, weight, bias, params, None)
}

/// [`conv2d`] with the kernels derived from `weight` taken from (and, on
/// first use, stored in) `cache`: the forward Winograd kernel is not
/// transformed again, and the recorded node shares the cache's
/// input-gradient kernel, so it is made once per cache rather than once per
/// tape.
///
/// `cache` must belong to `weight`'s value and `params` (see
/// [`Conv2dCache`]). With a cache, Winograd is also chosen for smaller
/// outputs (14 x 14) than without, so the forward values can differ from
/// [`conv2d`]'s in the last bits on such layers; where both take the same
/// path they are identical.
pub fn conv2d_with_cache<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    weight: &Var<T>,
    bias: Option<&Var<T>>,
    params: Conv2dParams,
    cache: &Conv2dCache<T>,
) -> Result<Var<T>> {
    record(tape, x, weight, bias, params, Some(cache))
}

fn record<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    weight: &Var<T>,
    bias: Option<&Var<T>>,
    params: Conv2dParams,
    cache: Option<&Conv2dCache<T>>,
) -> Result<Var<T>> {
    let params = params.with_kernels(tape.kernels());
    let (xv, wv, bv) = (x.value(), weight.value(), bias.map(|b| b.value()));
    let y = match cache {
        Some(c) => conv2d_cached(xv, wv, bv, params, &c.forward),
        None => conv_kernel(xv, wv, bv, params),
    }
    .map_err(tape.kernel_err("conv2d"))?;
    let keep_input = tape.keeps_all() || tape.requires_grad(weight.id());
    let (backward_kernel, positive) = match cache {
        Some(c) => (c.backward_input.clone(), c.positive.clone()),
        None => (
            Arc::new(BackwardInputCache::new()),
            Arc::new(PositiveSlots::default()),
        ),
    };
    let op = Conv2dOp {
        params,
        weight: weight.value_arc().clone(),
        input: keep_input.then(|| x.value_arc().clone()),
        has_bias: bias.is_some(),
        bias: bias.filter(|_| keep_input).map(|b| b.value_arc().clone()),
        backward_kernel,
        excitation: ExcitationSlots::new(),
        positive,
    };
    let mut inputs = vec![x, weight];
    inputs.extend(bias);
    Ok(tape.record(op, &inputs, y))
}

/// A convolution's kernel and bias with the batch norm after it folded in
/// ([`fold_batch_norm`]), and the kernels derived from them: made once by
/// the layer that owns the convolution and the batch norm, and passed to
/// [`conv2d_batch_norm_folded`].
#[derive(Debug)]
pub struct FoldedBatchNorm<T> {
    weight: Arc<Tensor<T>>,
    bias: Arc<Tensor<T>>,
    cache: Conv2dCache<T>,
}

impl<T: Element> FoldedBatchNorm<T> {
    /// Folds `bn` into the convolution `weight` (and `bias`): fails when
    /// their channels differ.
    pub fn new(
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
        bn: &BatchNormAffine<T>,
    ) -> std::result::Result<Self, TensorError> {
        let (weight, bias) = fold_batch_norm(weight, bias, bn)?;
        Ok(Self {
            weight: Arc::new(weight),
            bias: Arc::new(bias),
            cache: Conv2dCache::new(),
        })
    }

    /// The folded kernel.
    pub fn weight(&self) -> &Arc<Tensor<T>> {
        &self.weight
    }

    /// The folded bias.
    pub fn bias(&self) -> &Arc<Tensor<T>> {
        &self.bias
    }
}

/// Records `bn(conv2d(x, weight, bias))` as one convolution with the batch
/// norm merged in (`folded`, made from the weight, the bias and the batch
/// norm): no batch-norm pass forward or backward, and one activation fewer.
/// What a canonizer's merge runs ([`FoldedBatchNorm`]).
///
/// The node is a [`Conv2dOp`] of the merged kernel and bias, as a
/// convolution with those weights would be: every rule sees one
/// convolution (the excitation rule's positive weights are the merged
/// kernel's, kept with it). The weights are constants. As in [`conv2d`],
/// the tape's kernel policy replaces `params.kernels`.
pub fn conv2d_batch_norm_folded<T: Element>(
    tape: &mut Tape<T>,
    x: &Var<T>,
    folded: &FoldedBatchNorm<T>,
    params: Conv2dParams,
) -> Result<Var<T>> {
    let params = params.with_kernels(tape.kernels());
    let y = conv2d_cached(
        x.value(),
        &folded.weight,
        Some(&folded.bias),
        params,
        &folded.cache.forward,
    )
    .map_err(tape.kernel_err("conv2d"))?;
    let w = tape.constant(folded.weight.clone());
    let op = Conv2dOp {
        params,
        weight: folded.weight.clone(),
        input: tape.keeps_all().then(|| x.value_arc().clone()),
        has_bias: false,
        bias: tape.keeps_all().then(|| folded.bias.clone()),
        backward_kernel: folded.cache.backward_input.clone(),
        excitation: ExcitationSlots::new(),
        positive: folded.cache.positive.clone(),
    };
    Ok(tape.record(op, &[x, &w], y))
}

impl<T: Element> Conv2dOp<T> {
    fn input_hw(ctx: &RuleContext<'_, T>) -> (usize, usize) {
        let s = &ctx.node.input_shapes[0];
        (s[2], s[3])
    }

    /// The standard rule, with `then` (if any) applied to the input
    /// gradient inside the kernel (see
    /// [`conv2d_backward_input_then`]).
    fn standard_then(
        &self,
        ctx: &RuleContext<'_, T>,
        g: &Tensor<T>,
        then: Option<Epilogue<'_, T>>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        let mut out = vec![None, None];
        if ctx.needs(0) {
            let (hw, p, cache) = (Self::input_hw(ctx), self.params, &self.backward_kernel);
            let gin = match then {
                Some(then) => conv2d_backward_input_then(g, &self.weight, hw, p, cache, then),
                None => conv2d_backward_input_cached(g, &self.weight, hw, p, cache),
            };
            out[0] = Some(gin.map_err(|e| ctx.kernel(e))?);
        }
        if ctx.needs(1) {
            let x = self
                .input
                .as_ref()
                .ok_or_else(|| ctx.not_retained("standard", "input"))?;
            out[1] = Some(
                conv2d_backward_weight(x, g, self.weight.shape(), self.params)
                    .map_err(|e| ctx.kernel(e))?,
            );
        }
        if self.has_bias {
            out.push(if ctx.needs(2) {
                Some(conv2d_backward_bias(g).map_err(|e| ctx.kernel(e))?)
            } else {
                None
            });
        }
        Ok(out)
    }
}

/// The standard rule; an elementwise rule below runs inside the input
/// gradient's kernel.
impl<T: Element> Op<T> for Conv2dOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::CONV2D
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        self.standard_then(ctx, g, None)
    }

    fn multiply_adds(&self, _: &[Vec<usize>], output_shape: &[usize]) -> u64 {
        let per_output =
            self.weight.len() / self.weight.shape().first().copied().unwrap_or(1).max(1);
        (output_shape.iter().product::<usize>() as u64).saturating_mul(per_output as u64)
    }

    fn fuses_then(&self, _: &RuleContext<'_, T>) -> bool {
        true
    }

    fn backward_owned_then(
        &self,
        ctx: &RuleContext<'_, T>,
        g: Tensor<T>,
        then: Epilogue<'_, T>,
    ) -> Result<Vec<Option<Tensor<T>>>> {
        self.standard_then(ctx, &g, Some(then))
    }

    fn affine(&self) -> Option<&dyn Affine<T>> {
        Some(self)
    }
}

/// The convolution as the LRP rules run it: the same geometry and kernel
/// policy with other weights (a batch norm folded in counts as part of the
/// convolution, as after Zennit's canonizers).
impl<T: Element> Affine<T> for Conv2dOp<T> {
    fn input(&self) -> Option<&Tensor<T>> {
        self.input.as_deref()
    }

    fn weight(&self) -> &Tensor<T> {
        &self.weight
    }

    fn bias(&self) -> Option<&Tensor<T>> {
        self.bias.as_deref()
    }

    fn forward_with(
        &self,
        x: &Tensor<T>,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
    ) -> sightline_tensor::Result<Tensor<T>> {
        conv_kernel(x, weight, bias, self.params)
    }

    fn input_gradient_with(
        &self,
        grad: &Tensor<T>,
        weight: &Tensor<T>,
        input_shape: &[usize],
    ) -> sightline_tensor::Result<Tensor<T>> {
        let hw = (
            input_shape.get(2).copied().unwrap_or(0),
            input_shape.get(3).copied().unwrap_or(0),
        );
        conv2d_backward_input(grad, weight, hw, self.params)
    }
}

/// Excitation backprop through a convolution:
/// `x * VJP_{W+}(g / (conv(x, W+) + 1e-20))`, `W+ = max(W, 0)`, no bias.
///
/// With `negate_weights`, `W+ = max(-W, 0)`: the contrastive pass of
/// contrastive excitation backprop, applied to the classifier layer.
///
/// `W+`, its input-gradient kernel and the denominator are made on the
/// first pass through a recorded node and kept on it (per sign) for the
/// next passes on the same tape.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExcitationConv {
    /// Use the negated weights (contrastive pass).
    pub negate_weights: bool,
}

impl<T: Element> Rule<T> for ExcitationConv {
    fn name(&self) -> &str {
        "excitation_conv"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let op: &Conv2dOp<T> = ctx.op(Rule::<T>::name(self))?;
        let mut out: Vec<Option<Tensor<T>>> = (0..ctx.node.inputs.len()).map(|_| None).collect();
        if !ctx.needs(0) {
            return Ok(out);
        }
        let x = op
            .input
            .as_ref()
            .ok_or_else(|| ctx.not_retained(Rule::<T>::name(self), "input"))?;
        let sign = if self.negate_weights {
            -T::one()
        } else {
            T::one()
        };
        let negate = self.negate_weights;
        let plus = op.positive.0[usize::from(negate)].get_or_init(|| {
            let forward = ForwardCache::new();
            PositiveConv {
                weight: op.weight.map(|w| (w * sign).max(T::zero())),
                backward_kernel: BackwardInputCache::sharing(&forward),
                forward,
            }
        });
        // The denominator is made once per tape, with the positive weights'
        // kernels (made once per layer when the layer keeps a cache).
        let denominator = op.excitation.denominator(negate, || {
            excitation_denominator(ctx, x, |a| {
                conv2d_cached(a, &plus.weight, None, op.params, &plus.forward)
            })
        })?;
        let hw = Conv2dOp::input_hw(ctx);
        out[0] = Some(excitation_with_denominator(ctx, x, g, denominator, |s| {
            conv2d_backward_input_cached(s, &plus.weight, hw, op.params, &plus.backward_kernel)
        })?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::RuleSet;
    use crate::tape::Retain;
    use sightline_tensor::{KernelPolicy, SimdCap, WinogradPolicy};

    fn values(shape: &[usize], mul: usize) -> Tensor<f32> {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|i| ((i * mul) % 23) as f32 / 11.0 - 1.0)
            .collect();
        Tensor::from_vec(shape.to_vec(), data).unwrap()
    }

    fn same_bits(a: &Tensor<f32>, b: &Tensor<f32>) -> bool {
        a.shape() == b.shape()
            && a.data()
                .iter()
                .zip(b.data())
                .all(|(x, y)| x.to_bits() == y.to_bits())
    }

    /// A convolution recorded on a tape with a kernel policy (with a layer
    /// cache and without) keeps the policy in its node, replacing the one
    /// in the parameters given, and computes forward and input gradient
    /// with the bits of the kernels run directly under it; on a layer
    /// where the default takes Winograd, `Off` gives other bits.
    #[test]
    fn a_convolution_runs_both_ways_under_the_tape_policy() {
        // 16 -> 24 channels at 20 x 20: Winograd F(2x2) under `Auto`.
        let (x, w) = (values(&[1, 16, 20, 20], 7), values(&[24, 16, 3, 3], 5));
        let seed = values(&[1, 24, 20, 20], 3);
        // The parameters the caller passes say `All` and `Avx2`: the tape's
        // policy wins.
        let given = Conv2dParams::new(1, 1)
            .with_kernels(KernelPolicy::new(WinogradPolicy::All, SimdCap::Avx2));
        let mut results = Vec::new();
        for policy in [
            KernelPolicy::default(),
            KernelPolicy::new(WinogradPolicy::Off, SimdCap::Best),
            KernelPolicy::new(WinogradPolicy::F4, SimdCap::Generic),
        ] {
            let p = given.with_kernels(policy);
            let want_y = conv2d_cached(&x, &w, None, p, &ForwardCache::new()).unwrap();
            let want_g =
                conv2d_backward_input_cached(&seed, &w, (20, 20), p, &BackwardInputCache::new())
                    .unwrap();
            for cached in [false, true] {
                let mut tape = Tape::new(Retain::Minimal).with_kernels(policy);
                assert_eq!(tape.kernels(), policy);
                let xv = tape.input(x.clone());
                let wv = tape.constant(Arc::new(w.clone()));
                let cache = Conv2dCache::new();
                let y = if cached {
                    conv2d_with_cache(&mut tape, &xv, &wv, None, given, &cache).unwrap()
                } else {
                    conv2d(&mut tape, &xv, &wv, None, given).unwrap()
                };
                let op = tape.nodes()[0].op.downcast_ref::<Conv2dOp<f32>>().unwrap();
                assert_eq!(op.params, p);
                let g = tape
                    .backward(y.id(), &seed, &RuleSet::standard(), &[xv.id()])
                    .unwrap()
                    .remove(0);
                if cached {
                    assert!(same_bits(y.value(), &want_y), "{policy} forward");
                } else {
                    // Uncached: F(2x2) with its kernel made per call (the
                    // same bits as cached F(2x2)), im2col where the cached
                    // form would take F(4x4) or the packed weight.
                    let direct = sightline_tensor::conv::conv2d(&x, &w, None, p).unwrap();
                    assert!(same_bits(y.value(), &direct), "{policy} uncached forward");
                }
                assert!(
                    same_bits(&g, &want_g),
                    "{policy} input gradient, cached {cached}"
                );
                results.push((y.value().clone(), g));
            }
        }
        // Default and `Off`, with a cache: Winograd against the packed
        // weight.
        assert!(!same_bits(&results[1].0, &results[3].0));
        assert!(!same_bits(&results[1].1, &results[3].1));
    }
}
