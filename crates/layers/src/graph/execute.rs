//! Runs a plan's nodes on a tape: each ONNX op as the autograd ops that
//! compute it.
//!
//! Where an ONNX op is a layer sightline already knows, it runs as that
//! layer's op, so the layer's rules apply to it: a `Gemm` or a `MatMul` by
//! a constant matrix is a linear layer (the excitation rule treats it as
//! one), a `GlobalAveragePool` or a `ReduceMean` over height and width is an
//! adaptive average pool, a `BatchNormalization` is a batch norm.

use super::Planned;
use crate::canonize::BatchNormMerge;
use crate::error::{LayerError, Result};
use sightline_autograd::ops::conv::FoldedBatchNorm;
use sightline_autograd::ops::{
    activation, arith, conv, linear, matmul, norm, pool, reduce, relu, shape, softmax,
};
use sightline_autograd::{Tape, Var};
use sightline_onnx::{NodeOp, Operand, PlanNode, ValueId};
use sightline_tensor::norm::BatchNormAffine;
use sightline_tensor::shape_ops::transpose;
use sightline_tensor::{cst, AvgPool2dParams, Conv2dParams, Element, MaxPool2dParams, Tensor};
use std::sync::Arc;

/// The value an operand reads, if it is not a constant.
pub(super) fn value_id<T>(o: &Operand<T>) -> Option<ValueId> {
    match o {
        Operand::Value(v) => Some(*v),
        Operand::Const(_) => None,
    }
}

/// A convolution's following batch norm, folded in: what a canonizer's
/// merge runs instead of the pair.
pub(super) struct Fold<T> {
    /// The batch norm node's index.
    bn: usize,
    /// The kernel and bias with the batch norm folded in.
    folded: FoldedBatchNorm<T>,
    /// What Zennit's merge leaves of the batch norm: identity statistics,
    /// its `eps` (`x / sqrt(1 + eps)`).
    identity: Arc<BatchNormAffine<T>>,
}

/// How a run records the graph: what the model's canonizers changed.
#[derive(Clone, Debug, Default)]
pub(super) struct RunOptions {
    /// Batch norms after convolutions merged into them, and what is left.
    pub(super) merge: BatchNormMerge,
    /// Convolutions whose batch norm is not merged.
    pub(super) except: Vec<String>,
    /// Sums of two computed values of one shape recorded as residual sums
    /// (ResNet canonizer).
    pub(super) residual_sums: bool,
    /// Exported SiLUs left as a sigmoid and a product (tests compare the
    /// fused op with the pair).
    pub(super) unfused_silu: bool,
}

/// What a node derives from its constant operands, made once per plan.
pub(super) enum Prepared<T> {
    /// Nothing.
    None,
    /// A convolution's kernel cache (Winograd, packed, input-gradient and
    /// excitation kernels), kept across calls; and, for a convolution whose
    /// output only a batch norm node reads, that node and the convolution
    /// with the batch norm folded in (run as one op where the tape folds).
    Conv(Box<conv::Conv2dCache<T>>, Option<Box<Fold<T>>>),
    /// A linear layer's weight `[out, in]` (a `Gemm` with `transB = 0`, or
    /// a `MatMul` by a constant `[in, out]`, transposed once) and bias.
    Linear {
        weight: Arc<Tensor<T>>,
        bias: Option<Arc<Tensor<T>>>,
    },
    /// A batch norm's affine map.
    BatchNorm(Arc<BatchNormAffine<T>>),
    /// A `Sigmoid` whose output only a `Mul` by its own input reads: an
    /// exported SiLU, run as one op where the tape fuses (see
    /// [`prepare_silu`]); the index of that `Mul` node.
    Silu(usize),
}

impl<T: Element> Prepared<T> {
    pub(super) fn new(node: &PlanNode<T>) -> Result<Self> {
        let konst = |i: usize| match node.inputs.get(i) {
            Some(Operand::Const(c)) => Some(c.clone()),
            _ => None,
        };
        Ok(match &node.op {
            NodeOp::Conv { .. } => Self::Conv(Box::new(conv::Conv2dCache::new()), None),
            NodeOp::Gemm {
                trans_a: false,
                trans_b,
                alpha,
                beta,
            } if *alpha == 1.0 => match (konst(1), konst(2)) {
                (Some(b), c) if b.shape().len() == 2 => {
                    let weight = if *trans_b {
                        b
                    } else {
                        Arc::new(transpose(&b, &[1, 0]).map_err(|e| node_error(node, e))?)
                    };
                    let bias = match c {
                        Some(c) if *beta == 1.0 && c.shape() == [weight.shape()[0]] => Some(c),
                        Some(c) if *beta == 1.0 && c.len() == weight.shape()[0] => Some(Arc::new(
                            (*c).clone()
                                .reshape(vec![weight.shape()[0]])
                                .map_err(|e| node_error(node, e))?,
                        )),
                        None if node.inputs.len() < 3 => None,
                        _ => return Ok(Self::None),
                    };
                    Self::Linear { weight, bias }
                }
                _ => Self::None,
            },
            NodeOp::MatMul => match konst(1) {
                Some(b) if b.shape().len() == 2 && value_id(&node.inputs[0]).is_some() => {
                    Self::Linear {
                        weight: Arc::new(transpose(&b, &[1, 0]).map_err(|e| node_error(node, e))?),
                        bias: None,
                    }
                }
                _ => Self::None,
            },
            NodeOp::BatchNormalization { epsilon } => {
                let (Some(scale), Some(b), Some(mean), Some(var)) =
                    (konst(1), konst(2), konst(3), konst(4))
                else {
                    return Err(unsupported(
                        node,
                        "batch norm statistics that are not constants",
                    ));
                };
                let eps = T::from_f64_lossy(*epsilon);
                let affine = BatchNormAffine::new(&mean, &var, &scale, &b, eps)
                    .map_err(|e| node_error(node, e))?;
                Self::BatchNorm(Arc::new(affine))
            }
            _ => Self::None,
        })
    }
}

/// Finds each convolution (constant weight and bias, symmetric padding)
/// whose output only a batch norm node reads, and folds that batch norm
/// into it: what `run` records as one convolution where a canonizer merged
/// batch norms ([`RunOptions::merge`]).
pub(super) fn prepare_folds<T: Element>(
    plan: &sightline_onnx::Plan<T>,
    uses: &[u32],
    prepared: &mut [Prepared<T>],
) -> Result<()> {
    let mut producer = vec![usize::MAX; plan.values.len()];
    for (i, node) in plan.nodes.iter().enumerate() {
        for &o in &node.outputs {
            producer[o] = i;
        }
    }
    for (j, node) in plan.nodes.iter().enumerate() {
        let Prepared::BatchNorm(affine) = &prepared[j] else {
            continue;
        };
        let Some(&Operand::Value(v)) = node.inputs.first() else {
            continue;
        };
        let i = producer[v];
        if i == usize::MAX || uses[v] != 1 {
            continue;
        }
        let conv = &plan.nodes[i];
        let NodeOp::Conv { pads, .. } = conv.op else {
            continue;
        };
        let symmetric = pads[0] == pads[2] && pads[1] == pads[3];
        let (Some(Operand::Const(w)), bias) = (conv.inputs.get(1), conv.inputs.get(2)) else {
            continue;
        };
        let bias = match bias {
            None => None,
            Some(Operand::Const(b)) => Some(b.clone()),
            Some(Operand::Value(_)) => continue,
        };
        if !symmetric || conv.outputs.len() != 1 {
            continue;
        }
        let folded =
            FoldedBatchNorm::new(w, bias.as_deref(), affine).map_err(|e| node_error(conv, e))?;
        let NodeOp::BatchNormalization { epsilon } = node.op else {
            continue;
        };
        let c = affine.channels();
        let (zeros, ones) = (Tensor::zeros(vec![c]), Tensor::full(vec![c], T::one()));
        let identity = BatchNormAffine::new(&zeros, &ones, &ones, &zeros, cst(epsilon))
            .map_err(|e| node_error(node, e))?;
        if let Prepared::Conv(_, fold) = &mut prepared[i] {
            *fold = Some(Box::new(Fold {
                bn: j,
                folded,
                identity: Arc::new(identity),
            }));
        }
    }
    Ok(())
}

/// Finds each exported SiLU, `Mul(x, Sigmoid(x))` (the operands in either
/// order) where the sigmoid's output is read by that product alone and ends
/// no module, and marks the sigmoid node with the product's index: `run`
/// records the pair as one [`activation::silu`] (its standard gradient is
/// the pair's; the LRP composites treat it as the activation it is, as
/// Zennit treats `nn.SiLU`).
pub(super) fn prepare_silu<T: Element>(
    plan: &sightline_onnx::Plan<T>,
    uses: &[u32],
    outputs_of: &[Vec<String>],
    prepared: &mut [Prepared<T>],
) {
    let mut reader = vec![usize::MAX; plan.values.len()];
    for (i, node) in plan.nodes.iter().enumerate() {
        for v in node.inputs.iter().filter_map(value_id) {
            reader[v] = i;
        }
    }
    for (k, node) in plan.nodes.iter().enumerate() {
        let (NodeOp::Sigmoid, [Operand::Value(x)], [s]) =
            (&node.op, node.inputs.as_slice(), node.outputs.as_slice())
        else {
            continue;
        };
        if uses.get(*s) != Some(&1) || outputs_of.get(*s).is_some_and(|o| !o.is_empty()) {
            continue;
        }
        let m = reader[*s];
        let Some(mul) = plan.nodes.get(m) else {
            continue;
        };
        let product_of_x_and_s = matches!(
            mul.inputs.as_slice(),
            [Operand::Value(a), Operand::Value(b)]
                if (a == x && b == s) || (a == s && b == x)
        );
        if matches!(mul.op, NodeOp::Mul) && product_of_x_and_s && mul.outputs.len() == 1 && m > k {
            prepared[k] = Prepared::Silu(m);
        }
    }
}

/// A kernel or shape error of a node, naming it.
fn node_error(node: &PlanNode<impl Sized>, e: impl std::fmt::Display) -> LayerError {
    LayerError::arch(format!("node `{}` ({}): {e}", node.name, node.op_type))
}

/// A node the executor cannot run, naming it.
fn unsupported(node: &PlanNode<impl Sized>, what: &str) -> LayerError {
    LayerError::arch(format!(
        "node `{}` ({}): {what} is not supported",
        node.name, node.op_type
    ))
}

/// The values of a forward pass, each handed over at its last read.
struct Values<T> {
    vars: Vec<Option<Var<T>>>,
    left: Vec<u32>,
}

impl<T: Element> Values<T> {
    /// Reads value `v`: by value at its last read (so an op may reuse its
    /// buffer), a shared handle otherwise.
    fn read(&mut self, v: ValueId) -> Option<(Var<T>, bool)> {
        let left = self.left.get_mut(v)?;
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.vars[v].take().map(|x| (x, true))
        } else {
            self.vars[v].clone().map(|x| (x, false))
        }
    }
}

/// Records the plan's nodes on `tape` from the input `x`. Each module's
/// output is registered on the tape, or, with `marks`, collected there
/// instead (for a caller that runs the plan on parts of a batch).
pub(super) fn run<T: Element>(
    planned: &Planned<T>,
    options: &RunOptions,
    tape: &mut Tape<T>,
    x: &Var<T>,
    mut marks: Option<&mut Vec<(String, Var<T>)>>,
) -> Result<Var<T>> {
    let plan = &planned.plan;
    let mut values = Values {
        vars: vec![None; plan.values.len()],
        left: planned.uses.clone(),
    };
    values.vars[plan.input] = Some(x.clone());
    // Batch norm nodes already run inside the convolution before them, and
    // SiLU products with their sigmoid.
    let mut folded_away = vec![false; plan.nodes.len()];
    for (k, (node, prepared)) in plan.nodes.iter().zip(&planned.prepared).enumerate() {
        if folded_away[k] {
            continue;
        }
        let path = node.scope.last().map_or("", String::as_str);
        tape.set_layer_path(path);
        if let Some((bn, y)) = run_folded(plan, node, prepared, options, tape, &mut values, path)? {
            folded_away[bn] = true;
            for &id in &plan.nodes[bn].outputs {
                store(
                    planned,
                    tape,
                    &mut values,
                    marks.as_deref_mut(),
                    id,
                    y.clone(),
                );
            }
            continue;
        }
        if let Some((mul, y)) = run_silu(plan, node, prepared, options, tape, &mut values)? {
            folded_away[mul] = true;
            store(
                planned,
                tape,
                &mut values,
                marks.as_deref_mut(),
                plan.nodes[mul].outputs[0],
                y,
            );
            continue;
        }
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for operand in &node.inputs {
            inputs.push(match operand {
                Operand::Value(v) => {
                    let (var, last) = values.read(*v).ok_or_else(|| {
                        LayerError::arch(format!(
                            "node `{}` ({}) reads a value before it is computed",
                            node.name, node.op_type
                        ))
                    })?;
                    Input { var, last }
                }
                Operand::Const(c) => Input {
                    var: tape.constant(c.clone()),
                    last: false,
                },
            });
        }
        let outs = run_node(node, prepared, options, tape, inputs)?;
        if outs.len() != node.outputs.len() {
            return Err(node_error(node, "wrong number of outputs"));
        }
        for (var, &id) in outs.into_iter().zip(&node.outputs) {
            store(planned, tape, &mut values, marks.as_deref_mut(), id, var);
        }
    }
    values
        .vars
        .get_mut(plan.output)
        .and_then(Option::take)
        .ok_or_else(|| LayerError::arch("the graph's output is never computed"))
}

/// Runs a convolution with the batch norm after it folded in, when it has
/// one and a canonizer merged it: the
/// batch norm node's index and the output (after what Zennit's merge
/// leaves of the batch norm, recorded under the batch norm's path). `None`:
/// run the convolution as it is.
fn run_folded<T: Element>(
    plan: &sightline_onnx::Plan<T>,
    node: &PlanNode<T>,
    prepared: &Prepared<T>,
    options: &RunOptions,
    tape: &mut Tape<T>,
    values: &mut Values<T>,
    path: &str,
) -> Result<Option<(usize, Var<T>)>> {
    let (
        NodeOp::Conv {
            strides,
            pads,
            dilations,
            group,
            ..
        },
        Prepared::Conv(_, Some(fold)),
        Some(Operand::Value(v)),
        Some(Operand::Const(_)),
    ) = (&node.op, prepared, node.inputs.first(), node.inputs.get(1))
    else {
        return Ok(None);
    };
    let merged =
        options.merge != BatchNormMerge::NotMerged && !options.except.iter().any(|e| e == path);
    if !merged {
        return Ok(None);
    }
    let (x, _) = values
        .read(*v)
        .ok_or_else(|| node_error(node, "reads a value before it is computed"))?;
    let params = Conv2dParams {
        stride: (strides[0], strides[1]),
        padding: (pads[0], pads[1]),
        dilation: (dilations[0], dilations[1]),
        groups: *group,
        ..Conv2dParams::default()
    };
    let mut y = conv::conv2d_batch_norm_folded(tape, &x, &fold.folded, params)?;
    if options.merge == BatchNormMerge::ZennitIdentity {
        let bn_path = plan.nodes[fold.bn].scope.last().map_or("", String::as_str);
        tape.set_layer_path(bn_path);
        y = norm::batch_norm(tape, &y, &fold.identity)?;
    }
    Ok(Some((fold.bn, y)))
}

/// Runs a sigmoid node marked as an exported SiLU ([`prepare_silu`]) with
/// its product, as one op: the product node's index and the output
/// (recorded under the product's path). `None`: not a SiLU's sigmoid.
fn run_silu<T: Element>(
    plan: &sightline_onnx::Plan<T>,
    node: &PlanNode<T>,
    prepared: &Prepared<T>,
    options: &RunOptions,
    tape: &mut Tape<T>,
    values: &mut Values<T>,
) -> Result<Option<(usize, Var<T>)>> {
    let (Prepared::Silu(m), Some(Operand::Value(v))) = (prepared, node.inputs.first()) else {
        return Ok(None);
    };
    if options.unfused_silu {
        return Ok(None);
    }
    let Some(mul) = plan.nodes.get(*m) else {
        return Ok(None);
    };
    let path = mul.scope.last().map_or("", String::as_str);
    tape.set_layer_path(path);
    // Both reads of `x`: the sigmoid's and the product's.
    let missing = || node_error(node, "reads a value before it is computed");
    values.read(*v).ok_or_else(missing)?;
    let (x, _) = values.read(*v).ok_or_else(missing)?;
    let y = activation::silu(tape, &x)?;
    Ok(Some((*m, y)))
}

/// Records value `id` as `var`: registers it as the output of the modules
/// it ends (on the tape, or in `marks`), and keeps it if a node reads it.
fn store<T: Element>(
    planned: &Planned<T>,
    tape: &mut Tape<T>,
    values: &mut Values<T>,
    marks: Option<&mut Vec<(String, Var<T>)>>,
    id: ValueId,
    var: Var<T>,
) {
    if let Some(paths) = planned.outputs_of.get(id) {
        match marks {
            Some(m) => m.extend(paths.iter().map(|p| (p.clone(), var.clone()))),
            None => paths.iter().for_each(|p| tape.mark_output_of(p, &var)),
        }
    }
    if values.left.get(id).copied().unwrap_or(0) > 0 {
        values.vars[id] = Some(var);
    }
}

/// A node's input: its variable, and whether this is the value's last read.
struct Input<T> {
    var: Var<T>,
    last: bool,
}

/// Runs one node: its outputs, in order.
fn run_node<T: Element>(
    node: &PlanNode<T>,
    prepared: &Prepared<T>,
    options: &RunOptions,
    tape: &mut Tape<T>,
    mut inputs: Vec<Input<T>>,
) -> Result<Vec<Var<T>>> {
    let arity = |n: usize| -> Result<()> {
        if inputs.len() < n {
            return Err(node_error(
                node,
                format!("expects {n} inputs, has {}", inputs.len()),
            ));
        }
        Ok(())
    };
    let one = |v: Var<T>| Ok(vec![v]);
    match (&node.op, prepared) {
        (
            NodeOp::Conv {
                strides,
                pads,
                dilations,
                group,
                ..
            },
            Prepared::Conv(cache, _),
        ) => {
            arity(2)?;
            let [top, left, bottom, right] = *pads;
            let mut x = inputs[0].var.clone();
            let padding = if top == bottom && left == right {
                (top, left)
            } else {
                x = shape::pad(
                    tape,
                    &x,
                    &[0, 0, top, left],
                    &[0, 0, bottom, right],
                    T::zero(),
                )?;
                (0, 0)
            };
            let params = Conv2dParams {
                stride: (strides[0], strides[1]),
                padding,
                dilation: (dilations[0], dilations[1]),
                groups: *group,
                ..Conv2dParams::default()
            };
            let bias = inputs.get(2).map(|i| i.var.clone());
            let w = &inputs[1].var;
            one(if tape.trains_params() || !is_const(node, 1) {
                conv::conv2d(tape, &x, w, bias.as_ref(), params)?
            } else {
                conv::conv2d_with_cache(tape, &x, w, bias.as_ref(), params, cache)?
            })
        }
        (NodeOp::Gemm { .. }, Prepared::Linear { weight, bias }) => {
            arity(1)?;
            let w = tape.constant(weight.clone());
            let b = bias.as_ref().map(|b| tape.constant(b.clone()));
            one(linear::linear(tape, &inputs[0].var, &w, b.as_ref())?)
        }
        (
            NodeOp::Gemm {
                trans_a,
                trans_b,
                alpha,
                beta,
            },
            Prepared::None,
        ) => {
            arity(2)?;
            let a = if *trans_a {
                shape::transpose(tape, &inputs[0].var, &[1, 0])?
            } else {
                inputs[0].var.clone()
            };
            let b = if *trans_b {
                shape::transpose(tape, &inputs[1].var, &[1, 0])?
            } else {
                inputs[1].var.clone()
            };
            let mut y = matmul::matmul(tape, &a, &b)?;
            if *alpha != 1.0 {
                let s = tape.constant(Arc::new(Tensor::scalar(T::from_f64_lossy(*alpha))));
                y = arith::mul(tape, &y, &s)?;
            }
            if let Some(c) = inputs.get(2) {
                let mut c = c.var.clone();
                if *beta != 1.0 {
                    let s = tape.constant(Arc::new(Tensor::scalar(T::from_f64_lossy(*beta))));
                    c = arith::mul(tape, &c, &s)?;
                }
                y = arith::add(tape, &y, &c)?;
            }
            one(y)
        }
        (NodeOp::MatMul, Prepared::Linear { weight, .. }) => {
            arity(1)?;
            // x [..., K] by a constant [K, M]: a linear layer over the rows.
            let x = &inputs[0].var;
            let xs = x.shape().to_vec();
            let k = *xs.last().ok_or_else(|| node_error(node, "a 0-d input"))?;
            let rows = x.value().len() / k.max(1);
            let flat = if xs.len() == 2 {
                x.clone()
            } else {
                shape::reshape(tape, x, &[rows, k])?
            };
            let w = tape.constant(weight.clone());
            let y = linear::linear(tape, &flat, &w, None)?;
            one(if xs.len() == 2 {
                y
            } else {
                let mut out = xs.clone();
                if let Some(last) = out.last_mut() {
                    *last = weight.shape()[0];
                }
                shape::reshape(tape, &y, &out)?
            })
        }
        (NodeOp::MatMul, _) => {
            arity(2)?;
            one(matmul::matmul(tape, &inputs[0].var, &inputs[1].var)?)
        }
        (NodeOp::Add, _) => {
            arity(2)?;
            let b = inputs.pop().map(|i| i.var);
            let a = inputs.pop();
            let residual = options.residual_sums
                && node.inputs.iter().all(|o| value_id(o).is_some())
                && matches!((&a, &b), (Some(a), Some(b)) if a.var.shape() == b.shape());
            match (a, b) {
                (Some(a), Some(b)) if residual => one(arith::residual_sum_owned(tape, a.var, &b)?),
                (Some(a), Some(b)) if a.last => one(arith::add_owned(tape, a.var, &b)?),
                (Some(a), Some(b)) => one(arith::add(tape, &a.var, &b)?),
                _ => Err(node_error(node, "missing operand")),
            }
        }
        (NodeOp::Sub, _) => {
            arity(2)?;
            one(arith::sub(tape, &inputs[0].var, &inputs[1].var)?)
        }
        (NodeOp::Mul, _) => {
            arity(2)?;
            one(arith::mul(tape, &inputs[0].var, &inputs[1].var)?)
        }
        (NodeOp::Div, _) => {
            arity(2)?;
            one(arith::div(tape, &inputs[0].var, &inputs[1].var)?)
        }
        (NodeOp::Relu, _) => {
            arity(1)?;
            let x = inputs.swap_remove(0);
            one(if x.last {
                relu::relu_owned(tape, x.var)?
            } else {
                relu::relu(tape, &x.var)?
            })
        }
        (NodeOp::Clip { min, max }, _) => {
            arity(1)?;
            let (lo, hi) = (min.map(T::from_f64_lossy), max.map(T::from_f64_lossy));
            let x = inputs.swap_remove(0);
            one(if x.last {
                activation::clip_owned(tape, x.var, lo, hi)?
            } else {
                activation::clip(tape, &x.var, lo, hi)?
            })
        }
        (NodeOp::Sigmoid, _) => {
            arity(1)?;
            one(activation::sigmoid(tape, &inputs[0].var)?)
        }
        (NodeOp::HardSigmoid { alpha, beta }, _) => {
            arity(1)?;
            let (a, b) = (T::from_f64_lossy(*alpha), T::from_f64_lossy(*beta));
            one(activation::hard_sigmoid(tape, &inputs[0].var, a, b)?)
        }
        (NodeOp::HardSwish, _) => {
            arity(1)?;
            one(activation::hard_swish(tape, &inputs[0].var)?)
        }
        (NodeOp::Erf, _) => {
            arity(1)?;
            one(activation::erf(tape, &inputs[0].var)?)
        }
        (NodeOp::Softmax { axis }, _) => {
            arity(1)?;
            one(softmax::softmax(tape, &inputs[0].var, *axis)?)
        }
        (NodeOp::LayerNormalization { axis, epsilon }, _) => {
            arity(2)?;
            let bias = inputs.get(2).map(|i| i.var.clone());
            let eps = T::from_f64_lossy(*epsilon);
            one(norm::layer_norm(
                tape,
                &inputs[0].var,
                &inputs[1].var,
                bias.as_ref(),
                *axis,
                eps,
            )?)
        }
        (NodeOp::BatchNormalization { .. }, Prepared::BatchNorm(affine)) => {
            arity(1)?;
            one(norm::batch_norm(tape, &inputs[0].var, affine)?)
        }
        (
            NodeOp::MaxPool {
                kernel,
                strides,
                pads,
                dilations,
                ceil_mode,
            },
            _,
        ) => {
            arity(1)?;
            let padding = symmetric(node, pads)?;
            let params = MaxPool2dParams {
                kernel: (kernel[0], kernel[1]),
                stride: (strides[0], strides[1]),
                padding,
                dilation: (dilations[0], dilations[1]),
                ceil_mode: *ceil_mode,
                ..MaxPool2dParams::new(1, 1, 0)
            };
            one(pool::max_pool2d(tape, &inputs[0].var, params)?)
        }
        (
            NodeOp::AveragePool {
                kernel,
                strides,
                pads,
                ceil_mode,
                count_include_pad,
            },
            _,
        ) => {
            arity(1)?;
            let padding = symmetric(node, pads)?;
            let params = AvgPool2dParams {
                kernel: (kernel[0], kernel[1]),
                stride: (strides[0], strides[1]),
                padding,
                ceil_mode: *ceil_mode,
                count_include_pad: *count_include_pad,
            };
            one(pool::avg_pool2d(tape, &inputs[0].var, params)?)
        }
        (NodeOp::GlobalAveragePool, _) => {
            arity(1)?;
            one(pool::adaptive_avg_pool2d(tape, &inputs[0].var, (1, 1))?)
        }
        (NodeOp::ReduceMean { axes, keepdims }, _) => {
            arity(1)?;
            let x = &inputs[0].var;
            if x.shape().len() == 4 && axes.as_slice() == [2, 3] {
                // A global average pool: the pools' rules apply.
                let y = pool::adaptive_avg_pool2d(tape, x, (1, 1))?;
                one(if *keepdims {
                    y
                } else {
                    let s = [x.shape()[0], x.shape()[1]];
                    shape::reshape(tape, &y, &s)?
                })
            } else {
                one(reduce::mean_axes(tape, x, axes, *keepdims)?)
            }
        }
        (NodeOp::Concat { axis }, _) => {
            let vars: Vec<&Var<T>> = inputs.iter().map(|i| &i.var).collect();
            one(shape::concat(tape, &vars, *axis)?)
        }
        (NodeOp::Split { axis, sizes }, _) => {
            arity(1)?;
            let mut start = 0usize;
            let mut outs = Vec::with_capacity(sizes.len());
            for &size in sizes {
                let end = start
                    .checked_add(size)
                    .ok_or_else(|| node_error(node, "split sizes overflow"))?;
                outs.push(shape::slice(
                    tape,
                    &inputs[0].var,
                    *axis,
                    start as i64,
                    end as i64,
                    1,
                )?);
                start = end;
            }
            Ok(outs)
        }
        (
            NodeOp::Slice {
                axis,
                start,
                end,
                step,
            },
            _,
        ) => {
            arity(1)?;
            one(shape::slice(
                tape,
                &inputs[0].var,
                *axis,
                *start,
                *end,
                *step,
            )?)
        }
        (NodeOp::Reshape { shape: s }, _) => {
            arity(1)?;
            one(shape::reshape(tape, &inputs[0].var, s)?)
        }
        (NodeOp::Transpose { perm }, _) => {
            arity(1)?;
            one(shape::transpose(tape, &inputs[0].var, perm)?)
        }
        (
            NodeOp::Gather {
                axis,
                indices,
                indices_shape,
            },
            _,
        ) => {
            arity(1)?;
            one(shape::gather(
                tape,
                &inputs[0].var,
                *axis,
                indices,
                indices_shape,
            )?)
        }
        (NodeOp::Expand { shape: s }, _) => {
            arity(1)?;
            one(shape::expand(tape, &inputs[0].var, s)?)
        }
        _ => Err(unsupported(node, "this form of the op")),
    }
}

/// Whether input `i` of the node is a constant.
fn is_const<T>(node: &PlanNode<T>, i: usize) -> bool {
    matches!(node.inputs.get(i), Some(Operand::Const(_)))
}

/// A pool's padding, which must be the same on both sides of each axis.
fn symmetric<T>(node: &PlanNode<T>, pads: &[usize; 4]) -> Result<(usize, usize)> {
    let [top, left, bottom, right] = *pads;
    if top != bottom || left != right {
        return Err(unsupported(node, "a pool with asymmetric padding"));
    }
    Ok((top, left))
}
