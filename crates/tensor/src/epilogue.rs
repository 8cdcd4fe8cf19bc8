//! Elementwise work a kernel applies to its own output while it is still in
//! cache: an [`Epilogue`].
//!
//! A saliency backward pass runs a ReLU rule right after each convolution's
//! input gradient: a mask over a tensor that the convolution has just
//! written, and that no longer fits in cache by the time a separate sweep
//! reads it back (12.8 MB at VGG16's first layers). A kernel that takes an
//! epilogue instead hands each block of its output to it as soon as that
//! block is final, from the task that computed it.

use crate::element::Element;
use crate::error::Result;
use rayon::prelude::*;

/// An elementwise operation on a kernel's output, in place: called as
/// `then(values, offset)` with `values` the output elements
/// `offset .. offset + values.len()` (flat, row-major), each element exactly
/// once, after its final value is written. Calls may run concurrently on
/// disjoint ranges, in any order, so the operation must depend on each
/// element's value and index only: the result is then the same bits as
/// applying it to the whole finished output, whatever the kernel's blocking
/// or the thread count. An error stops the kernel, which returns it.
pub type Epilogue<'a, T> = &'a (dyn Fn(&mut [T], usize) -> Result<()> + Sync);

/// Elements per task of [`apply_all`].
const CHUNK: usize = 1 << 14;

/// Applies `then` to all of `out` (for a kernel path that does not fuse it):
/// in parallel chunks, the same values as a fused path gives.
pub fn apply_all<T: Element>(out: &mut [T], then: Epilogue<'_, T>) -> Result<()> {
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .try_for_each(|(i, chunk)| then(chunk, i * CHUNK))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TensorError;

    #[test]
    fn apply_all_visits_every_element_once_with_its_index() {
        let mut v = vec![0.0f64; 3 * CHUNK + 17];
        let then = |s: &mut [f64], off: usize| {
            for (i, x) in s.iter_mut().enumerate() {
                *x += (off + i) as f64;
            }
            Ok(())
        };
        apply_all(&mut v, &then).unwrap();
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as f64));
    }

    #[test]
    fn an_error_of_the_epilogue_is_returned() {
        let mut m = vec![0.0f32; 3 * CHUNK];
        let fail = |_: &mut [f32], off: usize| {
            if off < CHUNK {
                return Ok(());
            }
            Err(TensorError::InvalidParameter {
                op: "test",
                message: "no".into(),
            })
        };
        assert!(apply_all(&mut m, &fail).is_err());
    }
}
