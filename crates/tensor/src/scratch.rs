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
pub fn with_scratch<T, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R
where
    T: Copy + Default + 'static,
{
    let mut buf = take::<T>(len);
    let out = f(&mut buf[..len]);
    give(buf);
    out
}

/// Like [`with_scratch`] with two buffers at once.
pub fn with_scratch2<T, R>(len_a: usize, len_b: usize, f: impl FnOnce(&mut [T], &mut [T]) -> R) -> R
where
    T: Copy + Default + 'static,
{
    let mut a = take::<T>(len_a);
    let mut b = take::<T>(len_b);
    let out = f(&mut a[..len_a], &mut b[..len_b]);
    give(b);
    give(a);
    out
}

/// Takes the largest pooled vector of element type `T` (or a new one) and
/// grows it to at least `len` elements.
fn take<T: Copy + Default + 'static>(len: usize) -> Vec<T> {
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
        v.resize(len, T::default());
    }
    v
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
        let p1 = with_scratch::<f32, _>(1000, |b| {
            b.fill(1.0);
            b.as_ptr() as usize
        });
        let p2 = with_scratch::<f32, _>(500, |b| {
            assert_eq!(b.len(), 500);
            b.as_ptr() as usize
        });
        assert_eq!(p1, p2);
        with_scratch2::<f64, _>(10, 20, |a, b| {
            assert_eq!((a.len(), b.len()), (10, 20));
            assert_ne!(a.as_ptr(), b.as_ptr());
        });
    }
}
