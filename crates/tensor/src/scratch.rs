//! Per-thread scratch buffers reused across kernel calls.
//!
//! Convolution kernels need large temporary buffers (im2col panels, Winograd
//! tiles). Allocating and zero-filling them per block per call costs page
//! faults and memory bandwidth; instead each thread keeps a small pool of
//! vectors, one per element type in use, that only grow. In steady state no
//! kernel allocates.
//!
//! A buffer handed out may hold stale values from an earlier call: callers
//! must write every element they read. Buffers never influence results, so
//! the pool does not affect determinism.
//!
//! Growing a buffer is fallible: a length that cannot be allocated gives
//! [`TensorError::TooLarge`] naming the caller's operation, never an abort,
//! and the pool keeps its buffers. Callers compute lengths with
//! [`scratch_len`] (checked arithmetic).

use crate::error::{Result, TensorError};
use crate::tensor::checked_numel;
use std::any::Any;
use std::cell::RefCell;

thread_local! {
    static POOL: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers of more than this many bytes are not kept in the pool after use:
/// they go back to the allocator, where the next tensors can reuse them,
/// instead of staying resident for a rare call. Every Winograd and packed
/// product's buffers fit (at most ~2.7 MB per thread on VGG16); the
/// unfolded images of the few-channel first layers (5.4 MB on VGG16, 7.4 MB
/// for ResNet-50's stem) do not, and are allocated per call (3-6 MiB less
/// peak memory on VGG16 guided backprop; their zero-fill is ~0.5 ms).
const KEEP_BYTES: usize = 4 << 20;

/// At most this many buffers are kept per thread.
const KEEP_COUNT: usize = 8;

/// Runs `f` with a buffer of at least `len` elements of this thread's pool
/// (contents unspecified), and returns the buffer to the pool afterwards.
///
/// Nested calls get distinct buffers.
///
/// # Errors
/// [`TensorError::TooLarge`] naming `op` (the calling operation) and
/// `shape: vec![len]` if the buffer cannot be grown to `len` elements (the
/// byte count overflows, or the allocator refuses); `f` is not run and the
/// pool keeps the buffer it had.
pub fn with_scratch<T, R>(op: &'static str, len: usize, f: impl FnOnce(&mut [T]) -> R) -> Result<R>
where
    T: Copy + Default + 'static,
{
    let mut buf = take::<T>(op, len)?;
    let out = f(&mut buf[..len]);
    give(buf);
    Ok(out)
}

/// Like [`with_scratch`] with two buffers at once.
///
/// # Errors
/// As [`with_scratch`], for whichever buffer cannot be grown (`len_a` is
/// tried first); `f` is not run and both buffers stay in the pool.
pub fn with_scratch2<T, R>(
    op: &'static str,
    len_a: usize,
    len_b: usize,
    f: impl FnOnce(&mut [T], &mut [T]) -> R,
) -> Result<R>
where
    T: Copy + Default + 'static,
{
    let mut a = take::<T>(op, len_a)?;
    let mut b = match take::<T>(op, len_b) {
        Ok(b) => b,
        Err(e) => {
            give(a);
            return Err(e);
        }
    };
    let out = f(&mut a[..len_a], &mut b[..len_b]);
    give(b);
    give(a);
    Ok(out)
}

/// The length of a scratch buffer made of `parts`, each part the product of
/// its factors: the sum of those products, in checked arithmetic (and
/// without allocating).
///
/// # Errors
/// [`TensorError::TooLarge`] naming `op`, with the factors of the part
/// whose product overflows (see [`checked_numel`]), or, if the sum does,
/// with the sum of the parts before and the length of the part that
/// overflows it.
pub(crate) fn scratch_len(op: &'static str, parts: &[&[usize]]) -> Result<usize> {
    let mut sum = 0usize;
    for part in parts {
        let len = checked_numel(part, op)?;
        sum = sum.checked_add(len).ok_or_else(|| TensorError::TooLarge {
            op,
            shape: vec![sum, len],
        })?;
    }
    Ok(sum)
}

/// Takes the largest pooled vector of element type `T` (or a new one) and
/// grows it to at least `len` elements; if that fails, the vector goes back
/// to the pool and the error names `op` and `len`.
fn take<T: Copy + Default + 'static>(op: &'static str, len: usize) -> Result<Vec<T>> {
    let found = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let mut best: Option<(usize, usize)> = None;
        for (i, b) in p.iter().enumerate() {
            if let Some(v) = b.downcast_ref::<Vec<T>>() {
                if best.is_none_or(|(_, cap)| v.capacity() > cap) {
                    best = Some((i, v.capacity()));
                }
            }
        }
        best.map(|(i, _)| p.swap_remove(i))
    });
    let mut v = match found.map(|b| b.downcast::<Vec<T>>()) {
        Some(Ok(v)) => *v,
        _ => Vec::new(),
    };
    if v.len() < len {
        // The same (amortized) growth `resize` would make, but fallible;
        // `resize` then only fills the new elements, without reallocating.
        if v.try_reserve(len - v.len()).is_err() {
            give(v);
            return Err(TensorError::TooLarge {
                op,
                shape: vec![len],
            });
        }
        v.resize(len, T::default());
    }
    Ok(v)
}

fn give<T: 'static>(v: Vec<T>) {
    if v.capacity() * std::mem::size_of::<T>() > KEEP_BYTES {
        return;
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < KEEP_COUNT {
            p.push(Box::new(v));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_nested_calls_get_distinct_ones() {
        let p1 = with_scratch::<f32, _>("t", 1000, |b| {
            b.fill(1.0);
            b.as_ptr() as usize
        })
        .unwrap();
        let p2 = with_scratch::<f32, _>("t", 500, |b| {
            assert_eq!(b.len(), 500);
            b.as_ptr() as usize
        })
        .unwrap();
        assert_eq!(p1, p2);
        with_scratch2::<f64, _>("t", 10, 20, |a, b| {
            assert_eq!((a.len(), b.len()), (10, 20));
            assert_ne!(a.as_ptr(), b.as_ptr());
        })
        .unwrap();
        // Nested: the inner call gets another buffer than the outer one.
        let (outer, inner) = with_scratch::<f32, _>("t", 100, |a| {
            let inner = with_scratch::<f32, _>("t", 100, |b| b.as_ptr() as usize).unwrap();
            (a.as_ptr() as usize, inner)
        })
        .unwrap();
        assert_ne!(outer, inner);
    }

    /// Lengths that cannot be allocated: `usize::MAX / 2` elements (bytes
    /// past `isize::MAX`: a capacity overflow) and 2^60 (4 EiB of `f32`,
    /// which the allocator refuses; past `isize::MAX` bytes for `f64`).
    const ABSURD: [usize; 2] = [usize::MAX / 2, 1 << 60];

    #[test]
    fn an_absurd_length_is_an_error_and_the_pool_still_works() {
        let p1 = with_scratch::<f32, _>("t", 1000, |b| {
            b.fill(2.0);
            b.as_ptr() as usize
        })
        .unwrap();
        for len in ABSURD {
            let mut ran = false;
            let e = with_scratch::<f32, _>("winograd tiles", len, |_| ran = true).unwrap_err();
            assert!(!ran);
            assert_eq!(
                e,
                TensorError::TooLarge {
                    op: "winograd tiles",
                    shape: vec![len]
                }
            );
            assert!(e.to_string().starts_with("winograd tiles: "));
        }
        // The buffer taken for the failed calls went back to the pool: the
        // next call reuses it, contents kept.
        let (p2, first) =
            with_scratch::<f32, _>("t", 800, |b| (b.as_ptr() as usize, b[0])).unwrap();
        assert_eq!((p2, first), (p1, 2.0));
    }

    #[test]
    fn a_failed_second_buffer_returns_the_first_to_the_pool() {
        let (pa, pb) = with_scratch2::<f64, _>("t", 300, 200, |a, b| {
            (a.as_ptr() as usize, b.as_ptr() as usize)
        })
        .unwrap();
        for (la, lb) in [(300, ABSURD[0]), (ABSURD[1], 200)] {
            let e = with_scratch2::<f64, _>("col2im", la, lb, |_, _| ()).unwrap_err();
            assert_eq!(
                e,
                TensorError::TooLarge {
                    op: "col2im",
                    shape: vec![la.max(lb)]
                }
            );
        }
        // Both buffers are still pooled: the same two come back.
        let (qa, qb) = with_scratch2::<f64, _>("t", 300, 200, |a, b| {
            (a.as_ptr() as usize, b.as_ptr() as usize)
        })
        .unwrap();
        let mut got = [qa, qb];
        let mut want = [pa, pb];
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn scratch_len_sums_checked_products() {
        assert_eq!(scratch_len("t", &[&[3, 4], &[5]]), Ok(17));
        assert_eq!(scratch_len("t", &[&[7, 0]]), Ok(0));
        assert_eq!(
            scratch_len("t", &[&[2, usize::MAX / 2 + 1]]),
            Err(TensorError::TooLarge {
                op: "t",
                shape: vec![2, usize::MAX / 2 + 1]
            })
        );
    }
}
