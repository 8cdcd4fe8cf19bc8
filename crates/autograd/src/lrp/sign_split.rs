//! Rules that split the weights and inputs by sign: z+, alpha-beta, gamma.

use super::affine::{add, has_negative, has_positive, mul, negative, positive, AffineNode};
use super::stabilizer::{check_non_negative, scaled, DEFAULT_STABILIZER};
use crate::error::{AutogradError, Result};
use crate::rule::{Rule, RuleContext};
use sightline_tensor::{cst, Element, Tensor};
use std::borrow::Cow;

/// The positive-contribution part of a layer on `x`, given the weights
/// `wp` for the positive inputs (and bias `bp`) and `wn` for the negative
/// ones: `z = x+ wp + bp + x- wn`, with the parts that `x` has.
struct Split<'n, 'a, T: Element> {
    node: &'n AffineNode<'a, T>,
    xp: Option<Cow<'a, Tensor<T>>>,
    xn: Option<Cow<'a, Tensor<T>>>,
}

impl<'n, 'a, T: Element> Split<'n, 'a, T> {
    /// The parts of the node's input; a part that is the whole input (the
    /// positive part after a ReLU) is the input itself, not a copy.
    fn of(node: &'n AffineNode<'a, T>) -> Self {
        let x: &'a Tensor<T> = node.x;
        let (pos, neg) = (has_positive(x), has_negative(x));
        let part = |present: bool, other: bool, f: fn(&Tensor<T>) -> Tensor<T>| {
            present.then(|| {
                if other {
                    Cow::Owned(f(x))
                } else {
                    Cow::Borrowed(x)
                }
            })
        };
        Self {
            node,
            xp: part(pos, neg, positive),
            xn: part(neg, pos, negative),
        }
    }

    /// `x+ wp + bp + x- wn` (Zennit's sum of the two modified outputs; a
    /// part `x` does not have adds exact zeros and is left out, the bias
    /// stays).
    fn z(&self, wp: &Tensor<T>, bp: Option<&Tensor<T>>, wn: &Tensor<T>) -> Result<Tensor<T>> {
        let zero;
        let xp = match &self.xp {
            Some(xp) => xp,
            None => {
                zero = Tensor::zeros(self.node.input_shape().to_vec());
                &zero
            }
        };
        let mut z = self.node.forward(xp, wp, bp)?;
        if let Some(xn) = &self.xn {
            let zn = self.node.forward(xn, wn, None)?;
            z = self.node.kernel(add(&z, &zn))?;
        }
        Ok(z)
    }

    /// `x+ * wp^T s + x- * wn^T s` (Zennit's reducer, in its order).
    fn back(&self, s: &Tensor<T>, wp: &Tensor<T>, wn: &Tensor<T>) -> Result<Tensor<T>> {
        let mut r: Option<Tensor<T>> = None;
        for (x, w) in [(&self.xp, wp), (&self.xn, wn)] {
            if let Some(x) = x {
                let term = self.node.kernel(mul(x, &self.node.back(s, w)?))?;
                r = Some(match r {
                    Some(r) => self.node.kernel(add(&r, &term))?,
                    None => term,
                });
            }
        }
        Ok(r.unwrap_or_else(|| Tensor::zeros(self.node.input_shape().to_vec())))
    }
}

/// The z+ rule: `R_in = x+ W+^T s + x- W-^T s`, `s = R / stab(x+ W+ + b+ +
/// x- W-)`: only contributions that raise the output (Montavon et al. 2017;
/// Zennit's `ZPlus`, alpha-beta with alpha 1, beta 0, negative inputs
/// allowed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ZPlus {
    stabilizer: f64,
}

impl ZPlus {
    /// The rule with stabiliser `stabilizer` (finite, at least 0).
    pub fn new(stabilizer: f64) -> Result<Self> {
        check_non_negative("zplus", "stabilizer", stabilizer)?;
        Ok(Self { stabilizer })
    }
}

impl Default for ZPlus {
    fn default() -> Self {
        Self {
            stabilizer: DEFAULT_STABILIZER,
        }
    }
}

impl<T: Element> Rule<T> for ZPlus {
    fn name(&self) -> &str {
        "lrp_zplus"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, r: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let node = AffineNode::of(ctx, "lrp_zplus")?;
        let w = node.op.weight();
        let (wp, wn) = (positive(w), negative(w));
        let bp = node.op.bias().map(positive);
        let split = Split::of(&node);
        let z = split.z(&wp, bp.as_ref(), &wn)?;
        let s = node.kernel(scaled(r, &z, self.stabilizer))?;
        Ok(node.result(split.back(&s, &wp, &wn)?))
    }
}

/// The alpha-beta rule: `alpha` times the positive contributions' share
/// minus `beta` times the negative ones', each normalised by its own sum
/// (Bach et al. 2015; Zennit's `AlphaBeta`), with `alpha - beta = 1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlphaBeta {
    alpha: f64,
    beta: f64,
    stabilizer: f64,
}

impl AlphaBeta {
    /// The rule with `alpha` and `beta` (both at least 0, `alpha - beta =
    /// 1`, as Zennit requires) and the default stabiliser.
    pub fn new(alpha: f64, beta: f64) -> Result<Self> {
        Self::with_stabilizer(alpha, beta, DEFAULT_STABILIZER)
    }

    /// The rule with its stabiliser given.
    pub fn with_stabilizer(alpha: f64, beta: f64, stabilizer: f64) -> Result<Self> {
        check_non_negative("alpha_beta", "alpha", alpha)?;
        check_non_negative("alpha_beta", "beta", beta)?;
        check_non_negative("alpha_beta", "stabilizer", stabilizer)?;
        if alpha - beta != 1.0 {
            return Err(AutogradError::InvalidRule {
                rule: "alpha_beta",
                reason: format!("alpha - beta must be 1, got alpha {alpha}, beta {beta}"),
            });
        }
        Ok(Self {
            alpha,
            beta,
            stabilizer,
        })
    }
}

impl<T: Element> Rule<T> for AlphaBeta {
    fn name(&self) -> &str {
        "lrp_alpha_beta"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, r: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let node = AffineNode::of(ctx, "lrp_alpha_beta")?;
        let w = node.op.weight();
        let (wp, wn) = (positive(w), negative(w));
        let b = node.op.bias();
        let (bp, bn) = (b.map(positive), b.map(negative));
        let split = Split::of(&node);
        // Positive contributions: x+ W+ + b+ and x- W-; negative: x+ W- + b-
        // and x- W+.
        let zp = split.z(&wp, bp.as_ref(), &wn)?;
        let sp = node.kernel(scaled(r, &zp, self.stabilizer))?;
        let rp = split.back(&sp, &wp, &wn)?;
        let alpha = cst::<T>(self.alpha);
        let beta = cst::<T>(self.beta);
        let out = if self.beta == 0.0 {
            rp.map(|v| alpha * v)
        } else {
            let zn = split.z(&wn, bn.as_ref(), &wp)?;
            let sn = node.kernel(scaled(r, &zn, self.stabilizer))?;
            let rn = split.back(&sn, &wn, &wp)?;
            node.kernel(rp.zip_map(&rn, "lrp alpha-beta", |p, n| alpha * p - beta * n))?
        };
        Ok(node.result(out))
    }
}

/// The generalised gamma rule: the weights of the output's sign favoured by
/// `gamma` (`W + gamma W+` where the output is positive, `W + gamma W-`
/// where negative), each side normalised by its own sum (Montavon et al.
/// 2019, Andéol et al. 2021; Zennit's `Gamma`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gamma {
    gamma: f64,
    stabilizer: f64,
}

impl Gamma {
    /// The rule with `gamma` (finite, at least 0) and the default stabiliser.
    pub fn new(gamma: f64) -> Result<Self> {
        Self::with_stabilizer(gamma, DEFAULT_STABILIZER)
    }

    /// The rule with its stabiliser given.
    pub fn with_stabilizer(gamma: f64, stabilizer: f64) -> Result<Self> {
        check_non_negative("gamma", "gamma", gamma)?;
        check_non_negative("gamma", "stabilizer", stabilizer)?;
        Ok(Self { gamma, stabilizer })
    }
}

impl<T: Element> Rule<T> for Gamma {
    fn name(&self) -> &str {
        "lrp_gamma"
    }

    fn backward(&self, ctx: &RuleContext<'_, T>, r: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let node = AffineNode::of(ctx, "lrp_gamma")?;
        let gamma = cst::<T>(self.gamma);
        let w = node.op.weight();
        let b = node.op.bias();
        // W + gamma max(W, 0) and W + gamma min(W, 0), the same for the bias.
        let up = |t: &Tensor<T>| t.map(|v| v + gamma * v.max(T::zero()));
        let down = |t: &Tensor<T>| t.map(|v| v + gamma * v.min(T::zero()));
        let (wu, wd) = (up(w), down(w));
        let (bu, bd) = (b.map(up), b.map(down));
        let split = Split::of(&node);
        let y = node.forward(node.x, w, b)?;
        // Where the output is positive: x+ (W + g W+) + (b + g b+) and
        // x- (W + g W-); where negative: x+ (W + g W-) + (b + g b-) and
        // x- (W + g W+).
        let masked = |keep: fn(T) -> bool| {
            r.zip_map(
                &y,
                "lrp gamma mask",
                move |r, y| {
                    if keep(y) {
                        r
                    } else {
                        T::zero()
                    }
                },
            )
        };
        let rp = node.kernel(masked(|y| y > T::zero()))?;
        let rn = node.kernel(masked(|y| y < T::zero()))?;
        let zp = split.z(&wu, bu.as_ref(), &wd)?;
        let sp = node.kernel(scaled(&rp, &zp, self.stabilizer))?;
        let zn = split.z(&wd, bd.as_ref(), &wu)?;
        let sn = node.kernel(scaled(&rn, &zn, self.stabilizer))?;
        let out = add_terms(&node, &split, [(&sp, &wu, &wd), (&sn, &wd, &wu)])?;
        Ok(node.result(out))
    }
}

/// Zennit's gamma reducer: `x+ wp^T sp + x- wn^T sp + x+ wn^T sn + x- wp^T
/// sn`, summed in that order (terms `x` lacks add exact zeros and are left
/// out).
fn add_terms<T: Element>(
    node: &AffineNode<'_, T>,
    split: &Split<'_, '_, T>,
    sides: [(&Tensor<T>, &Tensor<T>, &Tensor<T>); 2],
) -> Result<Tensor<T>> {
    let mut r: Option<Tensor<T>> = None;
    for (s, w_pos_input, w_neg_input) in sides {
        for (x, w) in [(&split.xp, w_pos_input), (&split.xn, w_neg_input)] {
            if let Some(x) = x {
                let term = node.kernel(mul(x, &node.back(s, w)?))?;
                r = Some(match r {
                    Some(r) => node.kernel(add(&r, &term))?,
                    None => term,
                });
            }
        }
    }
    Ok(r.unwrap_or_else(|| Tensor::zeros(node.input_shape().to_vec())))
}
