//! The constant evaluator: nodes whose inputs are all constants are run at
//! plan time. Shape arithmetic runs on `i64` and `bool` tensors; float
//! constants (weights and the like) are computed in `f64` and rounded once
//! to `T` (for `+ - * /` and `sqrt` that gives the correctly rounded `f32`
//! result, as computing in `f32` would); data movement keeps `T` values
//! as they are.

use crate::args::{arg, const_ints, const_scalar, Arg, NodeCtx};
use crate::constant::{Constant, Dense, MAX_CONSTANT_ELEMENTS, MAX_FOLD_WORK};
use crate::error::Result;
use crate::index;
use crate::proto::data_type;
use crate::shape::{self, numel};
use crate::spec::{Binary, OpSpec, Unary};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// Evaluates a node whose present inputs are all constants; returns its
/// outputs (as many as the op produces).
pub fn fold<T: Element>(
    ctx: &NodeCtx,
    spec: &OpSpec<T>,
    args: &[Arg<'_, T>],
    outputs: usize,
) -> Result<Vec<Constant<T>>> {
    let c = |i: usize| -> Result<&Constant<T>> {
        match arg(args, i) {
            Arg::Const(c) => Ok(c),
            Arg::Missing => Err(ctx.fold_err(format!("input {i} is missing"))),
            Arg::Value { .. } => Err(ctx.not_const(i)),
        }
    };
    let shape_err = |m: String| ctx.shape_err(m);
    let one = |r: Constant<T>| Ok(vec![r]);
    match spec {
        OpSpec::Constant(v) => one(v.clone()),
        OpSpec::Identity => one(c(0)?.clone()),
        OpSpec::Cast { to } => one(cast(ctx, c(0)?, *to)?),
        OpSpec::Shape { start, end } => {
            let dims = c(0)?.shape();
            one(shape_of(dims, *start, *end))
        }
        OpSpec::ConstantOfShape { value } => {
            let dims = c(0)?
                .ints()
                .ok_or_else(|| ctx.fold_err("the shape must be an integer tensor"))?;
            let dims = shape::dims_from_ints(dims).map_err(shape_err)?;
            check_size(ctx, &dims)?;
            let map = vec![0usize; numel(&dims).map_err(shape_err)?];
            one(value.take(dims, &map).map_err(|m| ctx.fold_err(m))?)
        }
        OpSpec::Binary(op) => one(binary(ctx, *op, c(0)?, c(1)?)?),
        OpSpec::Mod { fmod } => one(modulo(ctx, *fmod, c(0)?, c(1)?)?),
        OpSpec::Equal => one(equal(ctx, c(0)?, c(1)?)?),
        OpSpec::Where => one(select(ctx, c(0)?, c(1)?, c(2)?)?),
        OpSpec::Unary(op) => {
            let x = float_input(ctx, c(0)?)?;
            let f: fn(f64) -> f64 = match op {
                Unary::Relu => |v| if v > 0.0 { v } else { 0.0 },
                Unary::Sigmoid => |v| 1.0 / (1.0 + (-v).exp()),
                Unary::Erf => libm::erf,
                Unary::HardSwish => |v| v * (v / 6.0 + 0.5).clamp(0.0, 1.0),
                Unary::Sqrt => f64::sqrt,
            };
            one(float_result(ctx, c(0)?.shape(), x.iter().map(|&v| f(v)))?)
        }
        OpSpec::HardSigmoid { alpha, beta } => {
            let x = float_input(ctx, c(0)?)?;
            let r = x.iter().map(|&v| (alpha * v + beta).clamp(0.0, 1.0));
            one(float_result(ctx, c(0)?.shape(), r)?)
        }
        OpSpec::Clip { min, max } => {
            let lo = const_scalar(ctx, args, 1)?.or(*min);
            let hi = const_scalar(ctx, args, 2)?.or(*max);
            let x = c(0)?;
            match x {
                Constant::Int(d) => {
                    let data = d
                        .data
                        .iter()
                        .map(|&v| {
                            let v = lo.map_or(v, |l| v.max(l.ceil() as i64));
                            hi.map_or(v, |h| v.min(h.floor() as i64))
                        })
                        .collect();
                    one(Constant::int(d.shape.clone(), data))
                }
                _ => {
                    let v = float_input(ctx, x)?;
                    let r = v.iter().map(|&v| {
                        let v = lo.map_or(v, |l| v.max(l));
                        hi.map_or(v, |h| v.min(h))
                    });
                    one(float_result(ctx, x.shape(), r)?)
                }
            }
        }
        OpSpec::Range => one(range(ctx, c(0)?, c(1)?, c(2)?)?),
        OpSpec::Reshape { allowzero } => {
            let x = c(0)?;
            let target = const_ints(ctx, args, 1)?.unwrap_or_default();
            let out = shape::reshape_target(x.shape(), &target, *allowzero).map_err(shape_err)?;
            one(x.with_shape(out).map_err(|m| ctx.fold_err(m))?)
        }
        OpSpec::Flatten { axis } => {
            let x = c(0)?;
            let out = shape::flatten_output(x.shape(), *axis).map_err(shape_err)?;
            one(x.with_shape(out).map_err(|m| ctx.fold_err(m))?)
        }
        OpSpec::Squeeze { axes } => {
            let x = c(0)?;
            let axes = const_ints(ctx, args, 1)?.or_else(|| axes.clone());
            let out = shape::squeeze_output(x.shape(), axes.as_deref()).map_err(shape_err)?;
            one(x.with_shape(out).map_err(|m| ctx.fold_err(m))?)
        }
        OpSpec::Unsqueeze { axes } => {
            let x = c(0)?;
            let axes = const_ints(ctx, args, 1)?
                .or_else(|| axes.clone())
                .ok_or_else(|| ctx.fold_err("no axes"))?;
            let out = shape::unsqueeze_output(x.shape(), &axes).map_err(shape_err)?;
            one(x.with_shape(out).map_err(|m| ctx.fold_err(m))?)
        }
        OpSpec::Transpose { perm } => {
            let x = c(0)?;
            let perm =
                shape::transpose_perm(x.shape().len(), perm.as_deref()).map_err(shape_err)?;
            let out = shape::permute(x.shape(), &perm);
            let map = index::transpose_map(x.shape(), &perm);
            one(x.take(out, &map).map_err(|m| ctx.fold_err(m))?)
        }
        OpSpec::Concat { axis } => {
            let parts: Vec<&Constant<T>> = (0..args.len()).map(&c).collect::<Result<_>>()?;
            one(concat(ctx, &parts, *axis)?)
        }
        OpSpec::Gather { axis } => {
            let x = c(0)?;
            let idx = c(1)?;
            let raw = idx
                .ints()
                .ok_or_else(|| ctx.fold_err("indices must be integers"))?;
            let axis = shape::normalize_axis(*axis, x.shape().len()).map_err(shape_err)?;
            let indices = shape::resolve_indices(raw, x.shape()[axis]).map_err(shape_err)?;
            let out = shape::gather_output(x.shape(), axis, idx.shape());
            check_size(ctx, &out)?;
            let map = index::gather_map(x.shape(), axis, &indices);
            one(x.take(out, &map).map_err(|m| ctx.fold_err(m))?)
        }
        OpSpec::Slice => {
            let x = c(0)?;
            let starts = const_ints(ctx, args, 1)?.unwrap_or_default();
            let ends = const_ints(ctx, args, 2)?.unwrap_or_default();
            let axes = const_ints(ctx, args, 3)?;
            let steps = const_ints(ctx, args, 4)?;
            let sl =
                shape::slice_axes(x.shape(), &starts, &ends, axes.as_deref(), steps.as_deref())
                    .map_err(shape_err)?;
            let (out, map) = index::slice_map(x.shape(), &sl);
            one(x.take(out, &map).map_err(|m| ctx.fold_err(m))?)
        }
        OpSpec::Expand => {
            let x = c(0)?;
            let dims = const_ints(ctx, args, 1)?.unwrap_or_default();
            let dims = shape::dims_from_ints(&dims).map_err(shape_err)?;
            let out = shape::broadcast(x.shape(), &dims).map_err(shape_err)?;
            check_size(ctx, &out)?;
            let map = index::broadcast_map(x.shape(), &out);
            one(x.take(out, &map).map_err(|m| ctx.fold_err(m))?)
        }
        OpSpec::Split {
            axis,
            split,
            num_outputs,
        } => {
            let x = c(0)?;
            let axis = shape::normalize_axis(*axis, x.shape().len()).map_err(shape_err)?;
            let given = const_ints(ctx, args, 1)?.or_else(|| split.clone());
            let sizes =
                shape::split_sizes(x.shape()[axis], given.as_deref(), *num_outputs, outputs)
                    .map_err(shape_err)?;
            let mut start = 0usize;
            let mut parts = Vec::with_capacity(sizes.len());
            for s in sizes {
                let sl = shape::SliceAxis {
                    axis,
                    start: start as i64,
                    end: (start + s) as i64,
                    step: 1,
                    len: s,
                };
                let (out, map) = index::slice_map(x.shape(), &[sl]);
                parts.push(x.take(out, &map).map_err(|m| ctx.fold_err(m))?);
                start += s;
            }
            Ok(parts)
        }
        OpSpec::MatMul => one(matmul(ctx, c(0)?, c(1)?)?),
        OpSpec::Gemm {
            trans_a,
            trans_b,
            alpha,
            beta,
        } => {
            let (a, b) = (c(0)?, c(1)?);
            let cc = match arg(args, 2) {
                Arg::Const(c) => Some(c),
                _ => None,
            };
            let ta = if *trans_a {
                transpose2(ctx, a)?
            } else {
                a.clone()
            };
            let tb = if *trans_b {
                transpose2(ctx, b)?
            } else {
                b.clone()
            };
            shape::gemm_output(
                a.shape(),
                b.shape(),
                cc.map(|c| c.shape()),
                *trans_a,
                *trans_b,
            )
            .map_err(shape_err)?;
            let prod = matmul(ctx, &ta, &tb)?;
            let scaled = float_input(ctx, &prod)?
                .into_iter()
                .map(|v| alpha * v)
                .collect::<Vec<_>>();
            let mut out = float_result(ctx, prod.shape(), scaled.into_iter())?;
            if let Some(cc) = cc {
                let bias = float_input(ctx, cc)?;
                let beta_c = Constant::float_from_f64(
                    cc.shape().to_vec(),
                    &bias.iter().map(|v| beta * v).collect::<Vec<_>>(),
                )
                .map_err(|m| ctx.fold_err(m))?;
                out = binary(ctx, Binary::Add, &out, &beta_c)?;
            }
            one(out)
        }
        _ => Err(ctx.fold_err(format!("{} is not evaluated on constants", ctx.op_type))),
    }
}

/// Refuses a result larger than [`MAX_CONSTANT_ELEMENTS`].
fn check_size(ctx: &NodeCtx, shape: &[usize]) -> Result<()> {
    match numel(shape) {
        Ok(n) if n <= MAX_CONSTANT_ELEMENTS => Ok(()),
        _ => Err(ctx.fold_err(format!(
            "a constant of shape {shape:?} is over the limit of {MAX_CONSTANT_ELEMENTS} elements"
        ))),
    }
}

/// The values of a float constant as `f64`; other kinds are an error.
fn float_input<T: Element>(ctx: &NodeCtx, c: &Constant<T>) -> Result<Vec<f64>> {
    match c {
        Constant::Float(_) => Ok(c.to_f64()),
        _ => Err(ctx.fold_err(format!("expected a float constant, found {}", c.kind()))),
    }
}

/// A float constant of `shape` from `f64` values.
fn float_result<T: Element>(
    ctx: &NodeCtx,
    shape: &[usize],
    values: impl Iterator<Item = f64>,
) -> Result<Constant<T>> {
    let data: Vec<f64> = values.collect();
    Constant::float_from_f64(shape.to_vec(), &data).map_err(|m| ctx.fold_err(m))
}

/// `Shape` of a constant (or of a runtime value's static shape), with
/// opset 15's `start`/`end` (clamped).
pub fn shape_of<T: Element>(dims: &[usize], start: i64, end: Option<i64>) -> Constant<T> {
    let r = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v.saturating_add(r) } else { v }).clamp(0, r) as usize;
    let s = clamp(start);
    let e = end.map_or(dims.len(), clamp).max(s);
    let values: Vec<i64> = dims[s..e].iter().map(|&d| d as i64).collect();
    Constant::Int(Arc::new(Dense::vector(values)))
}

/// Elementwise over two broadcast operands.
fn zip2<A: Copy, B: Copy, R>(
    ctx: &NodeCtx,
    a: (&[usize], &[A]),
    b: (&[usize], &[B]),
    f: impl Fn(A, B) -> std::result::Result<R, String>,
) -> Result<(Vec<usize>, Vec<R>)> {
    let out = shape::broadcast(a.0, b.0).map_err(|m| ctx.shape_err(m))?;
    check_size(ctx, &out)?;
    let ia = index::broadcast_map(a.0, &out);
    let ib = index::broadcast_map(b.0, &out);
    let data = ia
        .iter()
        .zip(ib.iter())
        .map(|(&i, &j)| match (a.1.get(i), b.1.get(j)) {
            (Some(&x), Some(&y)) => f(x, y),
            _ => Err("index out of range".to_string()),
        })
        .collect::<std::result::Result<Vec<R>, String>>()
        .map_err(|m| ctx.fold_err(m))?;
    Ok((out, data))
}

/// Add, Sub, Mul, Div on two float or two integer constants.
fn binary<T: Element>(
    ctx: &NodeCtx,
    op: Binary,
    a: &Constant<T>,
    b: &Constant<T>,
) -> Result<Constant<T>> {
    match (a, b) {
        (Constant::Int(x), Constant::Int(y)) => {
            let f = |p: i64, q: i64| -> std::result::Result<i64, String> {
                let r = match op {
                    Binary::Add => p.checked_add(q),
                    Binary::Sub => p.checked_sub(q),
                    Binary::Mul => p.checked_mul(q),
                    Binary::Div if q == 0 => return Err("integer division by zero".into()),
                    Binary::Div => p.checked_div(q),
                };
                r.ok_or_else(|| format!("integer overflow in {p} {op:?} {q}"))
            };
            let (shape, data) = zip2(ctx, (&x.shape, &x.data), (&y.shape, &y.data), f)?;
            Ok(Constant::int(shape, data))
        }
        (Constant::Float(_), Constant::Float(_)) => {
            let (xa, xb) = (a.to_f64(), b.to_f64());
            let f = |p: f64, q: f64| -> std::result::Result<f64, String> {
                Ok(match op {
                    Binary::Add => p + q,
                    Binary::Sub => p - q,
                    Binary::Mul => p * q,
                    Binary::Div => p / q,
                })
            };
            let (shape, data) = zip2(ctx, (a.shape(), &xa), (b.shape(), &xb), f)?;
            Constant::float_from_f64(shape, &data).map_err(|m| ctx.fold_err(m))
        }
        _ => Err(ctx.fold_err(format!("operands are {} and {}", a.kind(), b.kind()))),
    }
}

/// Mod: Python's sign rule (the divisor's) unless `fmod` (the dividend's).
fn modulo<T: Element>(
    ctx: &NodeCtx,
    fmod: bool,
    a: &Constant<T>,
    b: &Constant<T>,
) -> Result<Constant<T>> {
    match (a, b) {
        (Constant::Int(x), Constant::Int(y)) => {
            let f = |p: i64, q: i64| -> std::result::Result<i64, String> {
                let r = p
                    .checked_rem(q)
                    .ok_or_else(|| format!("{p} mod {q} is undefined"))?;
                Ok(if !fmod && r != 0 && ((r < 0) != (q < 0)) {
                    r + q
                } else {
                    r
                })
            };
            let (shape, data) = zip2(ctx, (&x.shape, &x.data), (&y.shape, &y.data), f)?;
            Ok(Constant::int(shape, data))
        }
        (Constant::Float(_), Constant::Float(_)) => {
            let (xa, xb) = (a.to_f64(), b.to_f64());
            let f = |p: f64, q: f64| -> std::result::Result<f64, String> {
                let r = p % q;
                Ok(if !fmod && r != 0.0 && ((r < 0.0) != (q < 0.0)) {
                    r + q
                } else {
                    r
                })
            };
            let (shape, data) = zip2(ctx, (a.shape(), &xa), (b.shape(), &xb), f)?;
            Constant::float_from_f64(shape, &data).map_err(|m| ctx.fold_err(m))
        }
        _ => Err(ctx.fold_err(format!("operands are {} and {}", a.kind(), b.kind()))),
    }
}

/// Equal on two constants of the same kind.
fn equal<T: Element>(ctx: &NodeCtx, a: &Constant<T>, b: &Constant<T>) -> Result<Constant<T>> {
    let (shape, data) = match (a, b) {
        (Constant::Int(x), Constant::Int(y)) => {
            zip2(ctx, (&x.shape, &x.data), (&y.shape, &y.data), |p, q| {
                Ok(p == q)
            })?
        }
        (Constant::Bool(x), Constant::Bool(y)) => {
            zip2(ctx, (&x.shape, &x.data), (&y.shape, &y.data), |p, q| {
                Ok(p == q)
            })?
        }
        (Constant::Float(_), Constant::Float(_)) => {
            let (xa, xb) = (a.to_f64(), b.to_f64());
            zip2(ctx, (a.shape(), &xa), (b.shape(), &xb), |p, q| Ok(p == q))?
        }
        _ => return Err(ctx.fold_err(format!("operands are {} and {}", a.kind(), b.kind()))),
    };
    Ok(Constant::bool(shape, data))
}

/// Where: `cond ? x : y`, all three broadcast.
fn select<T: Element>(
    ctx: &NodeCtx,
    cond: &Constant<T>,
    x: &Constant<T>,
    y: &Constant<T>,
) -> Result<Constant<T>> {
    let Constant::Bool(cd) = cond else {
        return Err(ctx.fold_err(format!("the condition is {}, not bool", cond.kind())));
    };
    if x.kind() != y.kind() {
        return Err(ctx.fold_err(format!("operands are {} and {}", x.kind(), y.kind())));
    }
    let out = shape::broadcast(&cd.shape, x.shape())
        .and_then(|s| shape::broadcast(&s, y.shape()))
        .map_err(|m| ctx.shape_err(m))?;
    check_size(ctx, &out)?;
    let ic = index::broadcast_map(&cd.shape, &out);
    let ix = index::broadcast_map(x.shape(), &out);
    let iy = index::broadcast_map(y.shape(), &out);
    let xs = x.take(out.clone(), &ix).map_err(|m| ctx.fold_err(m))?;
    let ys = y.take(out.clone(), &iy).map_err(|m| ctx.fold_err(m))?;
    let pick: Vec<bool> = ic
        .iter()
        .map(|&i| cd.data.get(i).copied().unwrap_or(false))
        .collect();
    Ok(match (xs, ys) {
        (Constant::Int(a), Constant::Int(b)) => Constant::int(
            out,
            pick.iter()
                .zip(a.data.iter().zip(b.data.iter()))
                .map(|(&p, (&u, &v))| if p { u } else { v })
                .collect(),
        ),
        (Constant::Bool(a), Constant::Bool(b)) => Constant::bool(
            out,
            pick.iter()
                .zip(a.data.iter().zip(b.data.iter()))
                .map(|(&p, (&u, &v))| if p { u } else { v })
                .collect(),
        ),
        (Constant::Float(a), Constant::Float(b)) => {
            let data: Vec<T> = pick
                .iter()
                .zip(a.data().iter().zip(b.data().iter()))
                .map(|(&p, (&u, &v))| if p { u } else { v })
                .collect();
            Constant::Float(Arc::new(
                Tensor::from_vec(out, data).map_err(|e| ctx.fold_err(e.to_string()))?,
            ))
        }
        _ => return Err(ctx.fold_err("mismatched operand kinds")),
    })
}

/// Range(start, limit, delta) on integer or float scalars.
fn range<T: Element>(
    ctx: &NodeCtx,
    start: &Constant<T>,
    limit: &Constant<T>,
    delta: &Constant<T>,
) -> Result<Constant<T>> {
    if let (Some(s), Some(l), Some(d)) =
        (start.scalar_int(), limit.scalar_int(), delta.scalar_int())
    {
        if d == 0 {
            return Err(ctx.fold_err("a delta of 0"));
        }
        let (s, l, d) = (s as i128, l as i128, d as i128);
        let n = ((l - s) + d - d.signum()) / d;
        let n = n.max(0) as u128;
        if n > MAX_CONSTANT_ELEMENTS as u128 {
            return Err(ctx.fold_err(format!("a range of {n} elements is over the limit")));
        }
        let data = (0..n as i128).map(|i| (s + i * d) as i64).collect();
        return Ok(Constant::Int(Arc::new(Dense::vector(data))));
    }
    let all_float = [start, limit, delta]
        .iter()
        .all(|c| matches!(c, Constant::Float(_)) && c.len() == 1);
    if !all_float {
        return Err(ctx.fold_err("start, limit and delta must be scalars of one kind"));
    }
    let (s, l, d) = (
        start.scalar_f64().unwrap_or(0.0),
        limit.scalar_f64().unwrap_or(0.0),
        delta.scalar_f64().unwrap_or(0.0),
    );
    let n = ((l - s) / d).ceil().max(0.0);
    if d == 0.0 || !n.is_finite() || n > MAX_CONSTANT_ELEMENTS as f64 {
        return Err(ctx.fold_err(format!("range({s}, {l}, {d}) is not a usable size")));
    }
    let n = n as usize;
    let data: Vec<f64> = (0..n).map(|i| s + i as f64 * d).collect();
    Constant::float_from_f64(vec![n], &data).map_err(|m| ctx.fold_err(m))
}

/// Cast to the ONNX type `to` (floats, integers wrapped to the target's
/// width, bool).
fn cast<T: Element>(ctx: &NodeCtx, x: &Constant<T>, to: i32) -> Result<Constant<T>> {
    let shape = x.shape().to_vec();
    if data_type::is_float(to) {
        return match x {
            Constant::Float(_) => Ok(x.clone()),
            _ => Constant::float_from_f64(shape, &x.to_f64()).map_err(|m| ctx.fold_err(m)),
        };
    }
    if to == data_type::BOOL {
        let data = x.to_f64().iter().map(|&v| v != 0.0).collect();
        return Ok(Constant::bool(shape, data));
    }
    let ints: Vec<i64> = match x {
        Constant::Int(d) => d.data.clone(),
        Constant::Bool(d) => d.data.iter().map(|&b| i64::from(b)).collect(),
        Constant::Float(_) => x
            .to_f64()
            .iter()
            .map(|&v| {
                let t = v.trunc();
                if t.is_finite() && t >= i64::MIN as f64 && t < i64::MAX as f64 {
                    Ok(t as i64)
                } else {
                    Err(ctx.fold_err(format!("{v} does not fit an integer")))
                }
            })
            .collect::<Result<_>>()?,
    };
    let wrap = |v: i64| -> i64 {
        match to {
            data_type::UINT8 => i64::from(v as u8),
            data_type::INT8 => i64::from(v as i8),
            data_type::UINT16 => i64::from(v as u16),
            data_type::INT16 => i64::from(v as i16),
            data_type::INT32 => i64::from(v as i32),
            data_type::UINT32 => i64::from(v as u32),
            _ => v,
        }
    };
    Ok(Constant::int(shape, ints.into_iter().map(wrap).collect()))
}

/// Concat of constants of one kind.
fn concat<T: Element>(ctx: &NodeCtx, parts: &[&Constant<T>], axis: i64) -> Result<Constant<T>> {
    let Some(first) = parts.first() else {
        return Err(ctx.fold_err("no inputs"));
    };
    let axis = shape::normalize_axis(axis, first.shape().len()).map_err(|m| ctx.shape_err(m))?;
    let shapes: Vec<&[usize]> = parts.iter().map(|p| p.shape()).collect();
    let out = shape::concat_output(&shapes, axis).map_err(|m| ctx.shape_err(m))?;
    check_size(ctx, &out)?;
    macro_rules! join {
        ($variant:ident, $d:ident => $get:expr) => {{
            let mut pieces = Vec::with_capacity(parts.len());
            for p in parts {
                match p {
                    Constant::$variant($d) => pieces.push((p.shape(), $get)),
                    other => {
                        return Err(ctx.fold_err(format!(
                            "inputs are {} and {}",
                            first.kind(),
                            other.kind()
                        )))
                    }
                }
            }
            index::concat(&pieces, axis)
        }};
    }
    Ok(match first {
        Constant::Int(_) => Constant::int(out, join!(Int, d => &d.data[..])),
        Constant::Bool(_) => Constant::bool(out, join!(Bool, d => &d.data[..])),
        Constant::Float(_) => {
            let data = join!(Float, t => t.data());
            Constant::Float(Arc::new(
                Tensor::from_vec(out, data).map_err(|e| ctx.fold_err(e.to_string()))?,
            ))
        }
    })
}

/// Transpose of a 2-d constant.
fn transpose2<T: Element>(ctx: &NodeCtx, x: &Constant<T>) -> Result<Constant<T>> {
    if x.shape().len() != 2 {
        return Err(ctx.shape_err(format!("Gemm operand {:?} is not 2-d", x.shape())));
    }
    let out = vec![x.shape()[1], x.shape()[0]];
    let map = index::transpose_map(x.shape(), &[1, 0]);
    x.take(out, &map).map_err(|m| ctx.fold_err(m))
}

/// numpy matmul of two float constants, accumulated in `f64`.
fn matmul<T: Element>(ctx: &NodeCtx, a: &Constant<T>, b: &Constant<T>) -> Result<Constant<T>> {
    let out = shape::matmul_output(a.shape(), b.shape()).map_err(|m| ctx.shape_err(m))?;
    check_size(ctx, &out)?;
    let (xa, xb) = (float_input(ctx, a)?, float_input(ctx, b)?);
    let sa: Vec<usize> = if a.shape().len() == 1 {
        vec![1, a.shape()[0]]
    } else {
        a.shape().to_vec()
    };
    let sb: Vec<usize> = if b.shape().len() == 1 {
        vec![b.shape()[0], 1]
    } else {
        b.shape().to_vec()
    };
    let (ra, rb) = (sa.len(), sb.len());
    let (m, k, n) = (sa[ra - 2], sa[ra - 1], sb[rb - 1]);
    let work = numel(&out).ok().and_then(|o| o.checked_mul(k.max(1)));
    if work.is_none_or(|w| w > MAX_FOLD_WORK) {
        return Err(ctx.fold_err(format!(
            "a constant product of {:?} and {:?} is over the limit of {MAX_FOLD_WORK} multiply-adds",
            a.shape(),
            b.shape()
        )));
    }
    let batch = shape::broadcast(&sa[..ra - 2], &sb[..rb - 2]).map_err(|e| ctx.shape_err(e))?;
    let ba = index::broadcast_map(&sa[..ra - 2], &batch);
    let bb = index::broadcast_map(&sb[..rb - 2], &batch);
    let mut data = Vec::with_capacity(ba.len() * m * n);
    for (&pa, &pb) in ba.iter().zip(bb.iter()) {
        let (oa, ob) = (pa * m * k, pb * k * n);
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0;
                for p in 0..k {
                    acc += xa[oa + i * k + p] * xb[ob + p * n + j];
                }
                data.push(acc);
            }
        }
    }
    Constant::float_from_f64(out, &data).map_err(|m| ctx.fold_err(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::OnnxError;

    fn ctx<'a>(op: &'a str, inputs: &'a [String]) -> NodeCtx<'a> {
        NodeCtx {
            label: "n",
            op_type: op,
            inputs,
            opset: 17,
        }
    }

    fn ints(shape: &[usize], v: &[i64]) -> Constant<f32> {
        Constant::int(shape.to_vec(), v.to_vec())
    }

    fn floats(shape: &[usize], v: &[f64]) -> Constant<f32> {
        Constant::float_from_f64(shape.to_vec(), v).unwrap()
    }

    fn run(spec: OpSpec<f32>, inputs: &[&Constant<f32>]) -> Result<Vec<Constant<f32>>> {
        run_n(spec, inputs, 1)
    }

    fn run_n(
        spec: OpSpec<f32>,
        inputs: &[&Constant<f32>],
        outputs: usize,
    ) -> Result<Vec<Constant<f32>>> {
        let names: Vec<String> = (0..inputs.len()).map(|i| format!("in{i}")).collect();
        let args: Vec<Arg<f32>> = inputs.iter().map(|c| Arg::Const(*c)).collect();
        fold(&ctx("Op", &names), &spec, &args, outputs)
    }

    fn single(spec: OpSpec<f32>, inputs: &[&Constant<f32>]) -> Constant<f32> {
        run(spec, inputs).unwrap().remove(0)
    }

    #[test]
    fn shape_gather_concat_chain() {
        // Shape -> Gather(0) -> Unsqueeze -> Concat with [-1]: a flatten target.
        let x = floats(&[2, 3, 4], &[0.0; 24]);
        let s = single(
            OpSpec::Shape {
                start: 0,
                end: None,
            },
            &[&x],
        );
        assert_eq!(s.ints(), Some(&[2, 3, 4][..]));
        let g = single(OpSpec::Gather { axis: 0 }, &[&s, &ints(&[], &[0])]);
        assert_eq!(g.shape(), &[] as &[usize]);
        assert_eq!(g.ints(), Some(&[2][..]));
        let u = single(OpSpec::Unsqueeze { axes: None }, &[&g, &ints(&[1], &[0])]);
        assert_eq!(u.shape(), &[1]);
        let cat = single(OpSpec::Concat { axis: 0 }, &[&u, &ints(&[1], &[-1])]);
        assert_eq!(cat.ints(), Some(&[2, -1][..]));
        let tail = single(
            OpSpec::Shape {
                start: -2,
                end: Some(100),
            },
            &[&x],
        );
        assert_eq!(tail.ints(), Some(&[3, 4][..]));
    }

    #[test]
    fn arithmetic() {
        let a = ints(&[3], &[7, -7, 8]);
        let b = ints(&[], &[3]);
        let sum = single(OpSpec::Binary(Binary::Add), &[&a, &b]);
        assert_eq!(sum.ints(), Some(&[10, -4, 11][..]));
        let q = single(OpSpec::Binary(Binary::Div), &[&a, &b]);
        assert_eq!(q.ints(), Some(&[2, -2, 2][..]));
        let m = single(OpSpec::Mod { fmod: false }, &[&a, &b]);
        assert_eq!(m.ints(), Some(&[1, 2, 2][..]));
        let m = single(OpSpec::Mod { fmod: true }, &[&a, &b]);
        assert_eq!(m.ints(), Some(&[1, -1, 2][..]));
        assert!(run(OpSpec::Binary(Binary::Div), &[&a, &ints(&[], &[0])]).is_err());
        assert!(run(
            OpSpec::Binary(Binary::Mul),
            &[&ints(&[], &[i64::MAX]), &ints(&[], &[2])]
        )
        .is_err());
        assert!(run(OpSpec::Binary(Binary::Add), &[&a, &floats(&[], &[1.0])]).is_err());
        let f = single(
            OpSpec::Binary(Binary::Mul),
            &[
                &floats(&[2, 1], &[1.0, 2.0]),
                &floats(&[3], &[1.0, 10.0, 100.0]),
            ],
        );
        assert_eq!(f.shape(), &[2, 3]);
        assert_eq!(f.to_f64(), vec![1.0, 10.0, 100.0, 2.0, 20.0, 200.0]);
        let r = single(OpSpec::Unary(Unary::Sqrt), &[&floats(&[2], &[4.0, 2.0])]);
        assert_eq!(r.to_f64(), vec![2.0, f64::from(2f32.sqrt())]);
        let e = single(OpSpec::Unary(Unary::Erf), &[&floats(&[1], &[0.5])]);
        assert!((e.to_f64()[0] - 0.520_499_877_813_046_5).abs() < 1e-7);
    }

    #[test]
    fn where_equal_and_constant_of_shape() {
        let shape = ints(&[2], &[2, 3]);
        let ones = single(
            OpSpec::ConstantOfShape {
                value: ints(&[1], &[1]),
            },
            &[&shape],
        );
        assert_eq!(ones.shape(), &[2, 3]);
        assert_eq!(ones.ints(), Some(&[1; 6][..]));
        let eq = single(
            OpSpec::Equal,
            &[&ints(&[3], &[-1, 4, -1]), &ints(&[], &[-1])],
        );
        match &eq {
            Constant::Bool(b) => assert_eq!(b.data, vec![true, false, true]),
            other => panic!("{other:?}"),
        }
        let w = single(
            OpSpec::Where,
            &[&eq, &ints(&[], &[1]), &ints(&[3], &[5, 6, 7])],
        );
        assert_eq!(w.ints(), Some(&[1, 6, 1][..]));
        assert!(run(OpSpec::Where, &[&shape, &shape, &shape]).is_err());
        let huge = ints(&[2], &[1 << 14, 1 << 14]);
        assert!(run(
            OpSpec::ConstantOfShape {
                value: ints(&[1], &[0])
            },
            &[&huge]
        )
        .is_err());
    }

    #[test]
    fn range_and_cast() {
        let r = single(
            OpSpec::Range,
            &[&ints(&[], &[0]), &ints(&[], &[7]), &ints(&[], &[3])],
        );
        assert_eq!(r.ints(), Some(&[0, 3, 6][..]));
        let r = single(
            OpSpec::Range,
            &[&ints(&[], &[5]), &ints(&[], &[0]), &ints(&[], &[-2])],
        );
        assert_eq!(r.ints(), Some(&[5, 3, 1][..]));
        let r = single(
            OpSpec::Range,
            &[&ints(&[], &[5]), &ints(&[], &[0]), &ints(&[], &[1])],
        );
        assert_eq!(r.len(), 0);
        assert!(run(
            OpSpec::Range,
            &[&ints(&[], &[0]), &ints(&[], &[1]), &ints(&[], &[0])]
        )
        .is_err());
        assert!(run(
            OpSpec::Range,
            &[&ints(&[], &[0]), &ints(&[], &[i64::MAX]), &ints(&[], &[1])]
        )
        .is_err());
        let r = single(
            OpSpec::Range,
            &[
                &floats(&[], &[0.0]),
                &floats(&[], &[1.0]),
                &floats(&[], &[0.25]),
            ],
        );
        assert_eq!(r.to_f64(), vec![0.0, 0.25, 0.5, 0.75]);
        let c = single(
            OpSpec::Cast {
                to: data_type::INT64,
            },
            &[&floats(&[2], &[2.7, -2.7])],
        );
        assert_eq!(c.ints(), Some(&[2, -2][..]));
        let c = single(
            OpSpec::Cast {
                to: data_type::UINT8,
            },
            &[&ints(&[1], &[257])],
        );
        assert_eq!(c.ints(), Some(&[1][..]));
        let c = single(
            OpSpec::Cast {
                to: data_type::FLOAT,
            },
            &[&ints(&[1], &[3])],
        );
        assert_eq!(c.to_f64(), vec![3.0]);
        let c = single(
            OpSpec::Cast {
                to: data_type::BOOL,
            },
            &[&ints(&[2], &[0, 3])],
        );
        assert!(matches!(c, Constant::Bool(ref b) if b.data == vec![false, true]));
        assert!(run(
            OpSpec::Cast {
                to: data_type::INT64
            },
            &[&floats(&[1], &[f64::NAN])]
        )
        .is_err());
    }

    #[test]
    fn data_movement_on_floats() {
        let w = floats(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let t = single(
            OpSpec::Transpose {
                perm: Some(vec![1, 0]),
            },
            &[&w],
        );
        assert_eq!(t.shape(), &[3, 2]);
        assert_eq!(t.to_f64(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let s = single(
            OpSpec::Slice,
            &[
                &w,
                &ints(&[1], &[-1]),
                &ints(&[1], &[i64::MIN]),
                &ints(&[1], &[1]),
                &ints(&[1], &[-2]),
            ],
        );
        assert_eq!(s.to_f64(), vec![3.0, 1.0, 6.0, 4.0]);
        let e = single(
            OpSpec::Expand,
            &[&floats(&[1, 3], &[1.0, 2.0, 3.0]), &ints(&[2], &[2, 1])],
        );
        assert_eq!(e.shape(), &[2, 3]);
        let parts = run_n(
            OpSpec::Split {
                axis: 1,
                split: None,
                num_outputs: None,
            },
            &[&w, &ints(&[2], &[1, 2])],
            2,
        )
        .unwrap();
        assert_eq!(parts[0].to_f64(), vec![1.0, 4.0]);
        assert_eq!(parts[1].to_f64(), vec![2.0, 3.0, 5.0, 6.0]);
        let r = single(
            OpSpec::Reshape { allowzero: false },
            &[&w, &ints(&[2], &[0, -1])],
        );
        assert_eq!(r.shape(), &[2, 3]);
        let f = single(OpSpec::Flatten { axis: 0 }, &[&w]);
        assert_eq!(f.shape(), &[1, 6]);
        assert!(run(
            OpSpec::Reshape { allowzero: false },
            &[&w, &ints(&[1], &[5])]
        )
        .is_err());
    }

    #[test]
    fn matmul_and_gemm() {
        let a = floats(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let b = floats(&[2], &[1.0, 1.0]);
        let p = single(OpSpec::MatMul, &[&a, &b]);
        assert_eq!(p.shape(), &[2]);
        assert_eq!(p.to_f64(), vec![3.0, 7.0]);
        let g = single(
            OpSpec::Gemm {
                trans_a: false,
                trans_b: true,
                alpha: 2.0,
                beta: 0.5,
            },
            &[&a, &a, &floats(&[2], &[2.0, 4.0])],
        );
        // a * a^T = [[5, 11], [11, 25]]
        assert_eq!(g.to_f64(), vec![11.0, 24.0, 23.0, 52.0]);
    }

    #[test]
    fn unfoldable_ops_are_errors() {
        let x = floats(&[1, 1, 2, 2], &[1.0; 4]);
        let e = run(OpSpec::GlobalAveragePool, &[&x]).unwrap_err();
        assert!(matches!(e, OnnxError::Fold { .. }), "{e}");
        assert!(e.to_string().contains("not evaluated on constants"));
    }
}
