//! The matrix-vector paths of [`gemm`](crate::gemm::gemm): products with few
//! rows of `A` (a linear layer at a small batch), streamed once through `B`
//! in parallel over blocks of columns instead of packing `B` for a GEMM
//! kernel. At batch 1 these products are memory-bound (VGG16's `fc6` weight
//! is 411 MB), so what matters is reading `B` in long contiguous runs with
//! loops wide enough to keep up with memory.
//!
//! Each task's loop is compiled twice (baseline x86-64 and AVX2, same
//! operations in the same order, so the same bits) and chosen at run time.
//! The summation order of every output depends on the shapes only.

use crate::element::Element;
use crate::gemm::MatRef;
use crate::simd::{has_avx2, prefetch};
use rayon::prelude::*;

/// Rows of `A` up to which a product takes these paths in one sweep over `B`.
pub(crate) const GEMV_MAX_ROWS: usize = 4;

/// Rows of `A` up to which a product with `B = W` (a linear layer's input
/// gradient) still takes the row-update path, in groups of
/// [`GEMV_MAX_ROWS`] rows, one sweep over `B` per group, rather than
/// packing `B` for a GEMM kernel. On VGG16's 411 MB `fc6` weight with half
/// the gradient zero: 8 rows 24 ms against 50, 12 rows 35 against 47, 16
/// rows even (2 threads). Each row's result is then the bits it has at
/// batch 1. The dot-product path (`B = W^T`, the forward product) does not
/// split: its 8 rows in two sweeps took 54 ms against the GEMM's 39.
pub(crate) const GEMV_SPLIT_MAX_ROWS: usize = 12;

/// Work (multiply-adds) below which the ordinary GEMM path is as good.
const MIN_WORK: usize = 1 << 18;

/// Output columns per task of the dot-product path (`B = W^T`): each column
/// is a contiguous row of `W`, so this only sets the task count.
const DOT_COLS: usize = 256;

/// Output columns per task of the row-update path (`B = W`): each task reads
/// runs of this many contiguous entries from every row of `W`, long enough
/// for the hardware prefetcher (4 KiB of `f32`), and its accumulators (up to
/// [`GEMV_MAX_ROWS`] rows of it) stay in L1.
const AXPY_COLS: usize = 2048;

/// Accumulators per dot product (fixed, so the summation order is too).
const DOT_LANES: usize = 16;

/// Elements ahead (2 KB of `f32`) that the dot-product path prefetches each
/// of its two streams: VGG16's `fc6` forward product took 12-19% less time
/// (19-21 -> 16-17 ms, 2 threads, in-process alternation); 1 to 8 KB ahead
/// measured about the same. (The row-update path reads `W` at about the
/// same speed without prefetches; its loop, cut into lines to prefetch the
/// next rows, ran slower.)
const DOT_PREFETCH: usize = 512;

/// Computes `C = alpha A B + beta C` through a matrix-vector path, reading
/// every entry `w` of `B` as `map(w)`, when the shapes suit one (few rows of
/// `A`, enough work, `B` with contiguous rows or columns); returns whether it
/// did. The caller has checked the shapes, and `m`, `n` > 0.
pub(crate) fn gemv<T: Element, F: Fn(T) -> T + Sync>(
    alpha: T,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    c: &mut [T],
    map: &F,
) -> bool {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m > GEMV_MAX_ROWS {
        // The row-update path only (`B = W`, a layer's input gradient):
        // every group, down to one row, must take it.
        if m > GEMV_SPLIT_MAX_ROWS || !takes_gemv(1, k, n) || b.rs == 1 || b.cs != 1 {
            return false;
        }
        for r0 in (0..m).step_by(GEMV_MAX_ROWS) {
            let r1 = (r0 + GEMV_MAX_ROWS).min(m);
            let group = MatRef {
                data: &a.data[r0 * a.rs..],
                rows: r1 - r0,
                ..a
            };
            let done = gemv(alpha, group, b, beta, &mut c[r0 * n..r1 * n], map);
            assert!(done, "gemv: a group of {} rows did not stream", r1 - r0);
        }
        return true;
    }
    if !takes_gemv(m, k, n) {
        return false;
    }
    let job = Job {
        alpha,
        beta,
        a,
        b,
        c: SendPtr(c.as_mut_ptr()),
        map,
    };
    if b.rs == 1 {
        let rows = contiguous_rows(a);
        let avx2 = has_avx2();
        (0..n.div_ceil(DOT_COLS)).into_par_iter().for_each(|blk| {
            let cols = (blk * DOT_COLS, ((blk + 1) * DOT_COLS).min(n));
            // SAFETY: AVX2 is used only where the CPU has it; the task writes
            // only columns `cols` of C (see `dots_task`).
            unsafe { dispatch_dots(avx2, &job, &rows, cols) }
        });
        return true;
    }
    if b.cs == 1 {
        let avx2 = has_avx2();
        let live = live_rows(a);
        (0..n.div_ceil(AXPY_COLS)).into_par_iter().for_each(|blk| {
            let cols = (blk * AXPY_COLS, ((blk + 1) * AXPY_COLS).min(n));
            // SAFETY: as above (see `axpys_task`).
            unsafe { dispatch_axpys(avx2, &job, &live, cols) }
        });
        return true;
    }
    false
}

/// `C = A B + beta C` and `D = A map(B)` in one sweep over `B`, for `B`
/// with contiguous columns (`B = W^T` of a linear layer's forward pass),
/// when the shapes take the dot-product path; returns whether they did.
/// Each output is the same bits as [`gemv`] gives for its product alone
/// (the same lanes and order), but the weight is read once for both.
pub(crate) fn gemv_and_mapped<T: Element, F: Fn(T) -> T + Sync>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    beta: T,
    c: &mut [T],
    d: &mut [T],
    map: &F,
) -> bool {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if !takes_gemv(m, k, n) || b.rs != 1 || c.len() != m * n || d.len() != m * n {
        return false;
    }
    let identity = |w: T| w;
    let plain = Job {
        alpha: T::one(),
        beta,
        a,
        b,
        c: SendPtr(c.as_mut_ptr()),
        map: &identity,
    };
    let mapped = Job {
        alpha: T::one(),
        beta: T::zero(),
        a,
        b,
        c: SendPtr(d.as_mut_ptr()),
        map,
    };
    let rows = contiguous_rows(a);
    let avx2 = has_avx2();
    (0..n.div_ceil(DOT_COLS)).into_par_iter().for_each(|blk| {
        let cols = (blk * DOT_COLS, ((blk + 1) * DOT_COLS).min(n));
        // SAFETY: AVX2 is used only where the CPU has it; the task writes
        // only columns `cols` of C and D.
        unsafe { dispatch_dots_pair(avx2, (&plain, &mapped), &rows, cols) }
    });
    true
}

/// Whether an `m x k` by `k x n` product with a suitable `B` takes these
/// paths in one sweep over `B` (each row of `C` is then computed on its
/// own, in an order set by `k` and `n` only). Up to
/// [`GEMV_SPLIT_MAX_ROWS`] rows with `B = W` take them too, in groups.
pub(crate) fn takes_gemv(m: usize, k: usize, n: usize) -> bool {
    m <= GEMV_MAX_ROWS && k > 0 && m * n * k >= MIN_WORK
}

/// The indices `p` (ascending) of the rows of `B` that the row-update path
/// reads: those where some row of `A` has a non-zero entry in column `p`.
///
/// A row whose scales are all zero adds `0 * w`, a signed zero, to each
/// accumulator, and that changes no sum: an accumulator starts at `+0` and
/// can only become `-0` by adding `-0` to `-0`, so adding a zero leaves its
/// bits as they are. Skipping those rows is exact for finite `map(w)`; an
/// infinite or NaN weight, which would have made such a term NaN, is
/// skipped with it (a zero gradient contributes nothing whatever the
/// weight; the layers refuse non-finite weights when they load them).
///
/// It is where the saliency case saves memory traffic: a gradient that came
/// back through a ReLU is zero wherever the unit was off (half of VGG16's
/// `fc6` outputs; three quarters under the guided rule), so half or more of
/// the 411 MB weight is never read.
fn live_rows<T: Element>(a: MatRef<'_, T>) -> Vec<usize> {
    (0..a.cols)
        .filter(|&p| (0..a.rows).any(|i| a.data[i * a.rs + p * a.cs] != T::zero()))
        .collect()
}

/// The rows of `A`, each made contiguous (the dot-product path reads them
/// once per column of `B`).
fn contiguous_rows<T: Element>(a: MatRef<'_, T>) -> Vec<Vec<T>> {
    (0..a.rows)
        .map(|i| (0..a.cols).map(|p| a.data[i * a.rs + p * a.cs]).collect())
        .collect()
}

/// One product, shared by its tasks.
struct Job<'a, 'f, T, F> {
    alpha: T,
    beta: T,
    a: MatRef<'a, T>,
    b: MatRef<'a, T>,
    /// `C`, row-major `a.rows x b.cols`.
    c: SendPtr<T>,
    map: &'f F,
}

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: used only to hand disjoint columns of one buffer to rayon tasks.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// Writes `alpha sum + beta c` into element `(i, j)` of `C`.
///
/// # Safety
/// `i < rows` and `j < cols` of `C`, and no other task writes `(i, j)`.
#[inline(always)]
unsafe fn finish<T: Element, F>(job: &Job<'_, '_, T, F>, i: usize, j: usize, sum: T) {
    let c = &mut *job.c.0.add(i * job.b.cols + j);
    *c = if job.beta == T::zero() {
        job.alpha * sum
    } else {
        job.alpha * sum + job.beta * *c
    };
}

/// # Safety
/// `avx2` only if the CPU has AVX2; `cols` is this task's own column range.
unsafe fn dispatch_dots<T: Element, F: Fn(T) -> T>(
    avx2: bool,
    job: &Job<'_, '_, T, F>,
    rows: &[Vec<T>],
    cols: (usize, usize),
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        return dots_task_avx2(job, rows, cols);
    }
    let _ = avx2;
    dots_task(job, rows, cols)
}

/// # Safety
/// The CPU must have AVX2; as [`dots_task`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn dots_task_avx2<T: Element, F: Fn(T) -> T>(
    job: &Job<'_, '_, T, F>,
    rows: &[Vec<T>],
    cols: (usize, usize),
) {
    dots_task(job, rows, cols)
}

/// Columns `j0..j1` of `C` when `B`'s columns are contiguous (`B = W^T` of a
/// linear layer's forward pass): one dot product per output, over `k` in a
/// fixed order.
///
/// # Safety
/// No other task writes columns `j0..j1` of `C`.
#[inline(always)]
unsafe fn dots_task<T: Element, F: Fn(T) -> T>(
    job: &Job<'_, '_, T, F>,
    rows: &[Vec<T>],
    (j0, j1): (usize, usize),
) {
    let (b, k) = (job.b, job.a.cols);
    let col = |j: usize| &b.data[j * b.cs..j * b.cs + k];
    // Two columns at a time: two read streams per thread keep more memory
    // requests in flight; each dot product keeps its own lanes and order.
    let mut j = j0;
    while j + 2 <= j1 {
        for (i, row) in rows.iter().enumerate() {
            let (d0, d1) = dot2(row, col(j), col(j + 1), job.map);
            finish(job, i, j, d0);
            finish(job, i, j + 1, d1);
        }
        j += 2;
    }
    for j in j..j1 {
        for (i, row) in rows.iter().enumerate() {
            finish(job, i, j, dot(row, col(j), job.map));
        }
    }
}

/// # Safety
/// As [`dispatch_dots`], for both jobs.
unsafe fn dispatch_dots_pair<T: Element, F: Fn(T) -> T, G: Fn(T) -> T>(
    avx2: bool,
    jobs: (&Job<'_, '_, T, F>, &Job<'_, '_, T, G>),
    rows: &[Vec<T>],
    cols: (usize, usize),
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        return dots_pair_task_avx2(jobs, rows, cols);
    }
    let _ = avx2;
    dots_pair_task(jobs, rows, cols)
}

/// # Safety
/// The CPU must have AVX2; as [`dots_pair_task`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn dots_pair_task_avx2<T: Element, F: Fn(T) -> T, G: Fn(T) -> T>(
    jobs: (&Job<'_, '_, T, F>, &Job<'_, '_, T, G>),
    rows: &[Vec<T>],
    cols: (usize, usize),
) {
    dots_pair_task(jobs, rows, cols)
}

/// [`dots_task`] for two jobs on the same `A` and `B` with different maps:
/// each column of `B` is read once for both, each output summed as in
/// [`dot`].
///
/// # Safety
/// No other task writes columns `j0..j1` of either job's `C`.
#[inline(always)]
unsafe fn dots_pair_task<T: Element, F: Fn(T) -> T, G: Fn(T) -> T>(
    (p, q): (&Job<'_, '_, T, F>, &Job<'_, '_, T, G>),
    rows: &[Vec<T>],
    (j0, j1): (usize, usize),
) {
    let (b, k) = (p.b, p.a.cols);
    for j in j0..j1 {
        let w = &b.data[j * b.cs..j * b.cs + k];
        for (i, row) in rows.iter().enumerate() {
            let (s, t) = dot_two_maps(row, w, p.map, q.map);
            finish(p, i, j, s);
            finish(q, i, j, t);
        }
    }
}

/// [`dot`] of `x` with `f(w)` and with `g(w)` in one sweep: the same two
/// results, bit for bit.
#[inline(always)]
fn dot_two_maps<T: Element, F: Fn(T) -> T, G: Fn(T) -> T>(
    x: &[T],
    w: &[T],
    f: &F,
    g: &G,
) -> (T, T) {
    let mut a0 = [T::zero(); DOT_LANES];
    let mut a1 = [T::zero(); DOT_LANES];
    let mut xs = x.chunks_exact(DOT_LANES);
    let mut ws = w.chunks_exact(DOT_LANES);
    for (x, w) in (&mut xs).zip(&mut ws) {
        for l in 0..DOT_LANES {
            a0[l] += x[l] * f(w[l]);
            a1[l] += x[l] * g(w[l]);
        }
    }
    for (l, (x, w)) in xs.remainder().iter().zip(ws.remainder()).enumerate() {
        a0[l] += *x * f(*w);
        a1[l] += *x * g(*w);
    }
    let sum = |a: [T; DOT_LANES]| a.iter().fold(T::zero(), |s, &v| s + v);
    (sum(a0), sum(a1))
}

/// [`dot`] of `x` with `w0` and with `w1` in one sweep: the same two
/// results, bit for bit.
#[inline(always)]
fn dot2<T: Element, F: Fn(T) -> T>(x: &[T], w0: &[T], w1: &[T], map: &F) -> (T, T) {
    let mut a0 = [T::zero(); DOT_LANES];
    let mut a1 = [T::zero(); DOT_LANES];
    let mut xs = x.chunks_exact(DOT_LANES);
    let mut ws0 = w0.chunks_exact(DOT_LANES);
    let mut ws1 = w1.chunks_exact(DOT_LANES);
    for ((x, u), v) in (&mut xs).zip(&mut ws0).zip(&mut ws1) {
        prefetch(u.as_ptr().wrapping_add(DOT_PREFETCH));
        prefetch(v.as_ptr().wrapping_add(DOT_PREFETCH));
        for l in 0..DOT_LANES {
            a0[l] += x[l] * map(u[l]);
            a1[l] += x[l] * map(v[l]);
        }
    }
    let tail = xs
        .remainder()
        .iter()
        .zip(ws0.remainder())
        .zip(ws1.remainder());
    for (l, ((x, u), v)) in tail.enumerate() {
        a0[l] += *x * map(*u);
        a1[l] += *x * map(*v);
    }
    let sum = |a: [T; DOT_LANES]| a.iter().fold(T::zero(), |s, &v| s + v);
    (sum(a0), sum(a1))
}

/// Dot product of `x` and `map(w)` with [`DOT_LANES`] partial sums (a fixed
/// order for a given length).
#[inline(always)]
fn dot<T: Element, F: Fn(T) -> T>(x: &[T], w: &[T], map: &F) -> T {
    let mut acc = [T::zero(); DOT_LANES];
    let mut xs = x.chunks_exact(DOT_LANES);
    let mut ws = w.chunks_exact(DOT_LANES);
    for (x, w) in (&mut xs).zip(&mut ws) {
        for l in 0..DOT_LANES {
            acc[l] += x[l] * map(w[l]);
        }
    }
    for (l, (x, w)) in xs.remainder().iter().zip(ws.remainder()).enumerate() {
        acc[l] += *x * map(*w);
    }
    acc.iter().fold(T::zero(), |s, &v| s + v)
}

/// # Safety
/// `avx2` only if the CPU has AVX2; `cols` is this task's own column range.
unsafe fn dispatch_axpys<T: Element, F: Fn(T) -> T>(
    avx2: bool,
    job: &Job<'_, '_, T, F>,
    live: &[usize],
    cols: (usize, usize),
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        return axpys_task_avx2(job, live, cols);
    }
    let _ = avx2;
    axpys_task(job, live, cols)
}

/// # Safety
/// The CPU must have AVX2; as [`axpys_task`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn axpys_task_avx2<T: Element, F: Fn(T) -> T>(
    job: &Job<'_, '_, T, F>,
    live: &[usize],
    cols: (usize, usize),
) {
    axpys_task(job, live, cols)
}

/// Columns `j0..j1` of `C` when `B`'s rows are contiguous (`B = W` of a
/// linear layer's input gradient): the `live` rows of `B` (see
/// [`live_rows`]) scaled and added in `k` order.
///
/// # Safety
/// No other task writes columns `j0..j1` of `C`.
#[inline(always)]
unsafe fn axpys_task<T: Element, F: Fn(T) -> T>(
    job: &Job<'_, '_, T, F>,
    live: &[usize],
    (j0, j1): (usize, usize),
) {
    let (a, b, m) = (job.a, job.b, job.a.rows);
    let width = j1 - j0;
    let mut acc = vec![T::zero(); m * width];
    let row = |p: usize| &b.data[p * b.rs + j0..p * b.rs + j1];
    let map = job.map;
    // Four rows of B per sweep over the accumulators (four read streams, a
    // quarter of the accumulator traffic); each accumulator still adds its
    // terms one at a time in `k` order, so the sums are the same bits.
    let mut quads = live.chunks_exact(4);
    for q in &mut quads {
        let (b0, b1, b2, b3) = (row(q[0]), row(q[1]), row(q[2]), row(q[3]));
        for (i, acc) in acc.chunks_exact_mut(width).enumerate() {
            let s = |p: usize| a.data[i * a.rs + p * a.cs];
            let (s0, s1, s2, s3) = (s(q[0]), s(q[1]), s(q[2]), s(q[3]));
            for (j, d) in acc.iter_mut().enumerate() {
                let mut v = *d;
                v += s0 * map(b0[j]);
                v += s1 * map(b1[j]);
                v += s2 * map(b2[j]);
                v += s3 * map(b3[j]);
                *d = v;
            }
        }
    }
    for &p in quads.remainder() {
        let brow = row(p);
        for (i, acc) in acc.chunks_exact_mut(width).enumerate() {
            let s = a.data[i * a.rs + p * a.cs];
            for (d, &w) in acc.iter_mut().zip(brow) {
                *d += s * map(w);
            }
        }
    }
    for (i, acc) in acc.chunks_exact(width).enumerate() {
        for (jj, &sum) in acc.iter().enumerate() {
            finish(job, i, j0 + jj, sum);
        }
    }
}
