//! The element types a tensor can hold.

use num_traits::{Float, FromPrimitive, NumAssign};
use std::fmt::Debug;
use std::iter::Sum;

/// A floating-point element: `f32` for work, `f64` for gradient checks.
///
/// Besides the arithmetic of [`num_traits::Float`], an element knows which
/// `matrixmultiply` GEMM kernel serves it.
pub trait Element:
    Float + FromPrimitive + NumAssign + Sum + Default + Debug + Send + Sync + 'static
{
    /// General matrix multiply `C = alpha * A * B + beta * C` with arbitrary strides.
    ///
    /// # Safety
    /// The pointers and strides must describe valid matrices of the given sizes,
    /// and `c` must not alias `a` or `b` (the contract of `matrixmultiply`).
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );

    /// Converts from `f64` (rounding to the nearest value for `f32`).
    fn from_f64_lossy(v: f64) -> Self;

    /// Converts to `f64` exactly.
    fn to_f64_lossless(self) -> f64;
}

impl Element for f32 {
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
    }

    fn from_f64_lossy(v: f64) -> Self {
        v as f32
    }

    fn to_f64_lossless(self) -> f64 {
        self as f64
    }
}

impl Element for f64 {
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
    }

    fn from_f64_lossy(v: f64) -> Self {
        v
    }

    fn to_f64_lossless(self) -> f64 {
        self
    }
}

/// Shorthand for a constant in the element type.
#[inline]
pub fn cst<T: Element>(v: f64) -> T {
    T::from_f64_lossy(v)
}

/// The `1e-20` that excitation backprop adds to its normaliser (TorchRay's value).
#[inline]
pub fn cst_eps<T: Element>() -> T {
    T::from_f64_lossy(1e-20)
}
