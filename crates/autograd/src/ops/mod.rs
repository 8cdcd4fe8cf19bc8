//! One module per op family: the recording forward (calling the tensor
//! kernel), the standard backward, and the alternative rules side by side.

pub mod activation;
pub mod arith;
pub mod conv;
pub mod linear;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod relu;
pub mod resize;
pub mod shape;
pub mod softmax;

use crate::error::Result;
use crate::rule::RuleContext;
use sightline_tensor::{cst_eps, Element, Tensor};
use std::fmt;
use std::sync::OnceLock;

/// The one input gradient of a one-input op, computed by `f` when it is
/// wanted (`None` otherwise), a kernel error named after the node.
pub(crate) fn one_input<T: Element>(
    ctx: &RuleContext<'_, T>,
    f: impl FnOnce() -> sightline_tensor::Result<Tensor<T>>,
) -> Result<Vec<Option<Tensor<T>>>> {
    if !ctx.needs(0) {
        return Ok(vec![None]);
    }
    Ok(vec![Some(f().map_err(|e| ctx.kernel(e))?)])
}

/// Excitation backprop's normalise-propagate-multiply step shared by conv,
/// linear and the average pools: `a * VJP(g / (op_plus(a) + 1e-20))`.
pub(crate) fn excitation<T: Element>(
    ctx: &RuleContext<'_, T>,
    input: &Tensor<T>,
    grad: &Tensor<T>,
    op_plus: impl FnOnce(&Tensor<T>) -> sightline_tensor::Result<Tensor<T>>,
    vjp_plus: impl FnOnce(&Tensor<T>) -> sightline_tensor::Result<Tensor<T>>,
) -> Result<Tensor<T>> {
    let denominator = excitation_denominator(ctx, input, op_plus)?;
    excitation_with_denominator(ctx, input, grad, &denominator, vjp_plus)
}

/// The denominator of excitation backprop, `op_plus(a) + 1e-20`: it depends
/// on the op's input and positive weights only (not on the gradient), so
/// conv and linear compute it once per recorded node and sign and keep it
/// ([`ExcitationSlots`]).
pub(crate) fn excitation_denominator<T: Element>(
    ctx: &RuleContext<'_, T>,
    input: &Tensor<T>,
    op_plus: impl FnOnce(&Tensor<T>) -> sightline_tensor::Result<Tensor<T>>,
) -> Result<Tensor<T>> {
    let mut z = op_plus(input).map_err(|e| ctx.kernel(e))?;
    add_excitation_epsilon(&mut z);
    Ok(z)
}

/// `z + 1e-20`, in place: the excitation rule's denominator from
/// `op_plus(x)`.
pub(crate) fn add_excitation_epsilon<T: Element>(z: &mut Tensor<T>) {
    let eps = cst_eps::<T>();
    z.data_mut().iter_mut().for_each(|z| *z += eps);
}

/// [`excitation`] with the denominator `op_plus(a) + 1e-20` given: the same
/// operations in the same order, so bit-identical to it.
pub(crate) fn excitation_with_denominator<T: Element>(
    ctx: &RuleContext<'_, T>,
    input: &Tensor<T>,
    grad: &Tensor<T>,
    denominator: &Tensor<T>,
    vjp_plus: impl FnOnce(&Tensor<T>) -> sightline_tensor::Result<Tensor<T>>,
) -> Result<Tensor<T>> {
    let s = grad
        .zip_map(denominator, "excitation normalise", |g, d| g / d)
        .map_err(|e| ctx.kernel(e))?;
    let back = vjp_plus(&s).map_err(|e| ctx.kernel(e))?;
    back.zip_map(input, "excitation multiply", |b, a| b * a)
        .map_err(|e| ctx.kernel(e))
}

/// What the excitation rules derive per recorded node and per sign of the
/// weights (`index` 0: `max(W, 0)`, 1: `max(-W, 0)`), computed on the first
/// pass through the node and reused by the next ones on the same tape
/// (top-k explanations, contrastive passes): the denominator. (What depends
/// on the weight alone, a convolution's positive weights and their kernels,
/// is kept by the layer: see `conv.rs`.)
pub(crate) struct ExcitationSlots<T> {
    denominators: [OnceLock<Tensor<T>>; 2],
}

impl<T> ExcitationSlots<T> {
    /// Empty slots, boxed (they are large, and most nodes never fill them).
    pub(crate) fn new() -> Box<Self> {
        Box::new(Self {
            denominators: [OnceLock::new(), OnceLock::new()],
        })
    }

    /// Sets the sign's denominator, made ahead of the first excitation pass
    /// (no effect if it is already set).
    pub(crate) fn preset(&self, negate: bool, denominator: Tensor<T>) {
        let _ = self.denominators[usize::from(negate)].set(denominator);
    }

    /// The sign's denominator, made with `make` on first use.
    pub(crate) fn denominator<E>(
        &self,
        negate: bool,
        make: impl FnOnce() -> std::result::Result<Tensor<T>, E>,
    ) -> std::result::Result<&Tensor<T>, E> {
        let cell = &self.denominators[usize::from(negate)];
        if let Some(d) = cell.get() {
            return Ok(d);
        }
        let d = make()?;
        Ok(cell.get_or_init(|| d))
    }
}

impl<T> fmt::Debug for ExcitationSlots<T> {
    // Which caches are built, not their values (as large as the layer's
    // output, or its weight).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExcitationSlots")
            .field(
                "denominators",
                &self.denominators.each_ref().map(|c| c.get().is_some()),
            )
            .finish()
    }
}
