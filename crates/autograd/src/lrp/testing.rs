//! Small ops for the LRP rules' tests: a dense layer (affine) and a sum of
//! two terms (homogeneous), with their standard backward.

use super::{Affine, Homogeneous};
use crate::error::Result;
use crate::op::{Op, OpKind};
use crate::rule::{RuleContext, RuleSet};
use crate::tape::{Retain, Tape};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// The kind of [`Dense`].
pub(crate) const DENSE: OpKind = OpKind::new("test_dense");
/// The kind of [`Sum2`].
pub(crate) const SUM2: OpKind = OpKind::new("test_sum2");

/// `y = x W^T + b`, x: N x In, W: Out x In.
#[derive(Debug)]
pub(crate) struct Dense<T> {
    pub(crate) x: Tensor<T>,
    pub(crate) w: Tensor<T>,
    pub(crate) b: Option<Tensor<T>>,
}

fn dense<T: Element>(x: &Tensor<T>, w: &Tensor<T>, b: Option<&Tensor<T>>) -> Tensor<T> {
    let (n, i) = (x.shape()[0], x.shape()[1]);
    let o = w.shape()[0];
    let mut y = vec![T::zero(); n * o];
    for r in 0..n {
        for c in 0..o {
            let mut acc = b.map_or(T::zero(), |b| b.data()[c]);
            for k in 0..i {
                acc += x.data()[r * i + k] * w.data()[c * i + k];
            }
            y[r * o + c] = acc;
        }
    }
    Tensor::from_vec(vec![n, o], y).expect("dense shape")
}

fn dense_back<T: Element>(g: &Tensor<T>, w: &Tensor<T>) -> Tensor<T> {
    let (n, o) = (g.shape()[0], g.shape()[1]);
    let i = w.shape()[1];
    let mut x = vec![T::zero(); n * i];
    for r in 0..n {
        for k in 0..i {
            let mut acc = T::zero();
            for c in 0..o {
                acc += g.data()[r * o + c] * w.data()[c * i + k];
            }
            x[r * i + k] = acc;
        }
    }
    Tensor::from_vec(vec![n, i], x).expect("dense shape")
}

impl<T: Element> Op<T> for Dense<T> {
    fn kind(&self) -> OpKind {
        DENSE
    }

    fn backward(&self, _: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        Ok(vec![Some(dense_back(g, &self.w))])
    }

    fn affine(&self) -> Option<&dyn Affine<T>> {
        Some(self)
    }
}

impl<T: Element> Affine<T> for Dense<T> {
    fn input(&self) -> Option<&Tensor<T>> {
        Some(&self.x)
    }

    fn weight(&self) -> &Tensor<T> {
        &self.w
    }

    fn bias(&self) -> Option<&Tensor<T>> {
        self.b.as_ref()
    }

    fn forward_with(
        &self,
        x: &Tensor<T>,
        w: &Tensor<T>,
        b: Option<&Tensor<T>>,
    ) -> sightline_tensor::Result<Tensor<T>> {
        Ok(dense(x, w, b))
    }

    fn input_gradient_with(
        &self,
        g: &Tensor<T>,
        w: &Tensor<T>,
        _: &[usize],
    ) -> sightline_tensor::Result<Tensor<T>> {
        Ok(dense_back(g, w))
    }
}

/// `y = a + b`.
#[derive(Debug)]
pub(crate) struct Sum2<T> {
    pub(crate) a: Tensor<T>,
    pub(crate) b: Tensor<T>,
}

impl<T: Element> Op<T> for Sum2<T> {
    fn kind(&self) -> OpKind {
        SUM2
    }

    fn backward(&self, _: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        Ok(vec![Some(g.clone()), Some(g.clone())])
    }

    fn homogeneous(&self) -> Option<&dyn Homogeneous<T>> {
        Some(self)
    }
}

impl<T: Element> Homogeneous<T> for Sum2<T> {
    fn terms(&self) -> Option<Vec<&Tensor<T>>> {
        Some(vec![&self.a, &self.b])
    }

    fn output(&self, t: &[&Tensor<T>]) -> sightline_tensor::Result<Tensor<T>> {
        t[0].zip_map(t[1], "sum", |a, b| a + b)
    }
}

/// Relevance at the input of one dense layer `y = x W^T + b` under `rules`,
/// from relevance `r` at its output.
pub(crate) fn dense_relevance(
    x: &Tensor<f64>,
    w: &Tensor<f64>,
    b: Option<&Tensor<f64>>,
    r: &Tensor<f64>,
    rules: &RuleSet<f64>,
) -> Result<Tensor<f64>> {
    let mut tape = Tape::new(Retain::All);
    let xv = tape.input(x.clone());
    let y = dense(x, w, b);
    let op = Dense {
        x: x.clone(),
        w: w.clone(),
        b: b.cloned(),
    };
    let yv = tape.record(op, &[&xv], y);
    let mut g = tape.backward(yv.id(), r, rules, &[xv.id()])?;
    Ok(g.remove(0))
}

/// Relevance at the two terms of `a + b` under `rules`.
pub(crate) fn sum_relevance(
    a: &Tensor<f64>,
    b: &Tensor<f64>,
    r: &Tensor<f64>,
    rules: &RuleSet<f64>,
) -> Result<(Tensor<f64>, Tensor<f64>)> {
    let mut tape = Tape::new(Retain::All);
    let av = tape.input(a.clone());
    let bv = tape.input(b.clone());
    let y = a.zip_map(b, "sum", |a, b| a + b).expect("same shapes");
    let op = Sum2 {
        a: a.clone(),
        b: b.clone(),
    };
    let yv = tape.record(op, &[&av, &bv], y);
    let mut g = tape.backward(yv.id(), r, rules, &[av.id(), bv.id()])?;
    let gb = g.remove(1);
    Ok((g.remove(0), gb))
}

/// A rule set with `rule` on [`DENSE`].
pub(crate) fn on_dense(rule: impl crate::Rule<f64> + 'static) -> RuleSet<f64> {
    RuleSet::standard().with(DENSE, Arc::new(rule))
}

/// A tensor from rows.
pub(crate) fn t2(rows: &[&[f64]]) -> Tensor<f64> {
    let cols = rows[0].len();
    Tensor::from_vec(vec![rows.len(), cols], rows.concat()).expect("rows")
}
