//! One module per op family: the recording forward (calling the tensor
//! kernel), the standard backward, and the alternative rules side by side.

pub mod arith;
pub mod conv;
pub mod linear;
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

/// Excitation backprop's normalise-propagate-multiply step shared by conv,
/// linear and the average pools: `a * VJP(g / (op_plus(a) + 1e-20))`.
pub(crate) fn excitation<T: Element>(
    ctx: &RuleContext<'_, T>,
    input: &Tensor<T>,
    grad: &Tensor<T>,
    op_plus: impl FnOnce(&Tensor<T>) -> sightline_tensor::Result<Tensor<T>>,
    vjp_plus: impl FnOnce(&Tensor<T>) -> sightline_tensor::Result<Tensor<T>>,
) -> Result<Tensor<T>> {
    let eps = cst_eps::<T>();
    let z = op_plus(input).map_err(|e| ctx.kernel(e))?;
    let s = grad
        .zip_map(&z, "excitation normalise", |g, z| g / (z + eps))
        .map_err(|e| ctx.kernel(e))?;
    let back = vjp_plus(&s).map_err(|e| ctx.kernel(e))?;
    back.zip_map(input, "excitation multiply", |b, a| b * a)
        .map_err(|e| ctx.kernel(e))
}
