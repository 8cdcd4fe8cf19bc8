//! The register-blocked micro-kernels of the Winograd products
//! (`C = A B`, `A` a packed kernel micro-panel, `B` [`NR`] transformed tiles)
//! and their runtime dispatch: AVX-512 (12 x 16, and 12 x 32 for two tile
//! panels at once) or AVX2 + FMA (6 x 16) for `f32` where the CPU has it,
//! portable code otherwise.
//!
//! Each kernel also reads `A` *transposed* from a kernel packed for the
//! other direction ([`TransposedKernel`]): the input gradient of a
//! convolution runs on the forward pass's packed Winograd kernel, whose
//! micro-panels hold `Cin x mr` blocks; the `mr x mr` block of rows
//! `c .. c + mr` of panel `q` gives steps `q mr .. q mr + mr` of the
//! transposed product, row `r` of step `q mr + s` at `[r mr + s]`. A
//! broadcast costs the same from any address, so this reads as fast as the
//! packed order, and the products are the same chains of fused
//! multiply-adds in the same order.

use super::{MR, MR_AVX512, NR};
use crate::cblock::CBlock;
use crate::element::Element;
use crate::policy::SimdCap;
#[cfg(target_arch = "x86_64")]
use crate::simd::prefetch;
use crate::simd::{simd_level_capped, SimdLevel};
use std::any::TypeId;

/// `C (mr x NR) = A B`, or `C += A B` when `accumulate`, with `A` packed
/// `k x mr` and `B` `k x NR` with row stride `ldb`: `(k, a, b, ldb, c,
/// accumulate)`. Accumulating starts the sums from `C` and then adds the
/// products in `k` order (blocked products). `C` is a [`CBlock`] (its own
/// row stride), so that a task can write its columns of a plane that other
/// tasks write too.
pub(crate) type MicroKernel<T> = fn(usize, &[T], &[T], usize, CBlock<'_, T>, bool);

/// [`MicroKernel`] with `A` read transposed: `(k, a, a_stride, b, ldb, c,
/// accumulate)`, steps in groups of `mr`, group `q` an `mr x mr` block at
/// `a[q * a_stride..]` holding row `r` of step `q * mr + s` at
/// `[r * mr + s]` (see the module documentation).
pub(crate) type TransposedKernel<T> = fn(usize, &[T], usize, &[T], usize, CBlock<'_, T>, bool);

/// The elements of `a` a transposed read of `k` steps touches.
fn transposed_len(k: usize, mr: usize, a_stride: usize) -> usize {
    match k {
        0 => 0,
        _ => (k.div_ceil(mr) - 1) * a_stride + mr * mr,
    }
}

/// The micro-kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Micro {
    /// Portable code, any element type.
    Generic,
    /// `f32`, AVX2 + FMA, 6 x 16.
    Avx2,
    /// `f32`, AVX-512, 12 x 16.
    Avx512,
}

impl Micro {
    pub(crate) fn mr(self) -> usize {
        match self {
            Micro::Generic | Micro::Avx2 => MR,
            Micro::Avx512 => MR_AVX512,
        }
    }

    pub(crate) fn function<T: Element>(self) -> MicroKernel<T> {
        match self {
            Micro::Generic => {
                |k, a, b, ldb, c, acc| micro_generic::<T, false>(k, a, 0, b, ldb, c, acc)
            }
            #[cfg(target_arch = "x86_64")]
            Micro::Avx2 => |k, a, b, ldb, c, acc| {
                let raw = micro_f32_avx2::<false>;
                call_f32(raw, MR, NR, k * MR, k, a, 0, b, ldb, c, acc)
            },
            #[cfg(target_arch = "x86_64")]
            Micro::Avx512 => |k, a, b, ldb, c, acc| {
                let raw = micro_f32_avx512::<false>;
                call_f32(raw, MR_AVX512, NR, k * MR_AVX512, k, a, 0, b, ldb, c, acc)
            },
            #[cfg(not(target_arch = "x86_64"))]
            _ => |k, a, b, ldb, c, acc| micro_generic::<T, false>(k, a, 0, b, ldb, c, acc),
        }
    }

    /// A micro-kernel over two adjacent tile panels (`mr x 2 NR`, with the
    /// same `(k, a, b, ldb, c)` arguments and the same result as two
    /// calls of [`Micro::function`]), where one exists: it loads each
    /// kernel value once for twice the products, which keeps the AVX-512
    /// kernel from being bound by its loads.
    pub(crate) fn wide_function<T: Element>(self) -> Option<MicroKernel<T>> {
        match self {
            #[cfg(target_arch = "x86_64")]
            Micro::Avx512 => Some(|k, a, b, ldb, c, acc| {
                let raw = micro_f32_avx512_wide::<false>;
                call_f32(
                    raw,
                    MR_AVX512,
                    2 * NR,
                    k * MR_AVX512,
                    k,
                    a,
                    0,
                    b,
                    ldb,
                    c,
                    acc,
                )
            }),
            _ => None,
        }
    }

    /// [`Micro::function`] reading `A` transposed.
    pub(crate) fn transposed_function<T: Element>(self) -> TransposedKernel<T> {
        match self {
            Micro::Generic => micro_generic::<T, true>,
            #[cfg(target_arch = "x86_64")]
            Micro::Avx2 => |k, a, s, b, ldb, c, acc| {
                let need = transposed_len(k, MR, s);
                call_f32(
                    micro_f32_avx2::<true>,
                    MR,
                    NR,
                    need,
                    k,
                    a,
                    s,
                    b,
                    ldb,
                    c,
                    acc,
                )
            },
            #[cfg(target_arch = "x86_64")]
            Micro::Avx512 => |k, a, s, b, ldb, c, acc| {
                let (raw, mr) = (micro_f32_avx512::<true>, MR_AVX512);
                let need = transposed_len(k, mr, s);
                call_f32(raw, mr, NR, need, k, a, s, b, ldb, c, acc)
            },
            #[cfg(not(target_arch = "x86_64"))]
            _ => micro_generic::<T, true>,
        }
    }

    /// [`Micro::wide_function`] reading `A` transposed.
    pub(crate) fn transposed_wide_function<T: Element>(self) -> Option<TransposedKernel<T>> {
        match self {
            #[cfg(target_arch = "x86_64")]
            Micro::Avx512 => Some(|k, a, s, b, ldb, c, acc| {
                let (raw, mr) = (micro_f32_avx512_wide::<true>, MR_AVX512);
                let need = transposed_len(k, mr, s);
                call_f32(raw, mr, 2 * NR, need, k, a, s, b, ldb, c, acc)
            }),
            _ => None,
        }
    }
}

/// The best micro-kernel for `T` on this CPU at or below `cap` (at the
/// [`simd_level_capped`]); the AVX2 one also needs FMA. Computed on each
/// call (the standard library caches the CPU's features), since the cap is
/// the caller's.
pub(crate) fn micro_kind<T: 'static>(cap: SimdCap) -> Micro {
    if TypeId::of::<T>() != TypeId::of::<f32>() {
        return Micro::Generic;
    }
    match simd_level_capped(cap) {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => Micro::Avx512,
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 if std::arch::is_x86_feature_detected!("fma") => Micro::Avx2,
        _ => Micro::Generic,
    }
}

/// The strides of `A` (in elements) for a kernel of `mr` rows: between
/// rows, between steps of a group, and between groups of `mr` steps. The
/// packed order is the transposed one's special case of `mr x mr` blocks
/// stored step-major, one after the other.
#[inline(always)]
fn a_strides<const TR: bool>(mr: usize, a_stride: usize) -> (usize, usize, usize) {
    if TR {
        (mr, 1, a_stride)
    } else {
        (1, mr, mr * mr)
    }
}

fn micro_generic<T: Element, const TR: bool>(
    k: usize,
    a: &[T],
    a_stride: usize,
    b: &[T],
    ldb: usize,
    mut c: CBlock<'_, T>,
    accumulate: bool,
) {
    let (rs, ks, gs) = a_strides::<TR>(MR, a_stride);
    let mut acc = [[T::zero(); NR]; MR];
    if accumulate {
        for (r, row) in acc.iter_mut().enumerate() {
            row.copy_from_slice(&c.row(r)[..NR]);
        }
    }
    for p in 0..k {
        let at = (p / MR) * gs + (p % MR) * ks;
        let bv = &b[p * ldb..p * ldb + NR];
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let av = a[at + r * rs];
            for (acc_rj, bj) in acc_r.iter_mut().zip(bv) {
                *acc_rj += av * *bj;
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        c.write(r, 0, row);
    }
}

/// A raw `f32` micro-kernel: `(k, a, a_stride, b, ldb, c, ldc, accumulate)`
/// on pointers (`a_stride` only read by the transposed ones), compiled for
/// a CPU feature.
#[cfg(target_arch = "x86_64")]
type RawKernel = unsafe fn(usize, *const f32, usize, *const f32, usize, *mut f32, usize, bool);

/// Calls the raw kernel `raw` (`mr` rows, `width` columns, reading
/// `a_len` elements of `a`) after checking the lengths of `a` and `b`, that
/// `c` holds `mr` rows of `width` elements ([`CBlock::holds`]), and that `T`
/// is `f32`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn call_f32<T: Element>(
    raw: RawKernel,
    mr: usize,
    width: usize,
    a_len: usize,
    k: usize,
    a: &[T],
    a_stride: usize,
    b: &[T],
    ldb: usize,
    mut c: CBlock<'_, T>,
    accumulate: bool,
) {
    assert!(a.len() >= a_len && b.len() + ldb >= k * ldb + width && c.holds(mr, width));
    assert_eq!(TypeId::of::<T>(), TypeId::of::<f32>());
    // SAFETY: T is f32 (asserted), so the pointer casts are identities; the
    // lengths were checked above (`a_len` is what the kernel reads of `a`
    // for `k` steps), and the kernel writes only the `mr` rows of `width`
    // elements that `c` holds; `c` does not alias `a` or `b` (distinct
    // borrows);
    // `raw` is only passed here by the `Micro` functions for the `Micro`
    // that `micro_kind` chose because the CPU has the kernel's features.
    unsafe {
        raw(
            k,
            a.as_ptr() as *const f32,
            a_stride,
            b.as_ptr() as *const f32,
            ldb,
            c.as_mut_ptr() as *mut f32,
            c.ldc(),
            accumulate,
        )
    }
}

/// The AVX2 + FMA micro-kernel: 6 x 16 accumulators in 12 registers. It
/// prefetches `A` as the AVX-512 kernels do, further ahead
/// ([`AVX2_PREFETCH_FACTOR`]), and not `B`: end to end under
/// the `avx2` SIMD cap (in-process alternation, 2 threads, 19 calls a
/// side), prefetching `A` made VGG16 guided backprop 13% and 4% faster
/// (median, fastest call) and ResNet-50 8% and 9%; prefetching `B` as
/// well measured -3% to +4%, within the host's noise.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `a` must hold what `k` steps read (see
/// [`transposed_len`], or `k * 6` packed) and `b` `(k - 1) * ldb + 16`
/// valid elements; the kernel writes 16 elements at `c + r * ldc` for each
/// row `r < 6`, which the caller alone may access.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_f32_avx2<const TR: bool>(
    k: usize,
    a: *const f32,
    a_stride: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    const M: usize = MR;
    let (rs, ks, gs) = a_strides::<TR>(M, a_stride);
    let mut acc = [[_mm256_setzero_ps(); 2]; M];
    if accumulate {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            acc_r[0] = _mm256_loadu_ps(c.add(r * ldc));
            acc_r[1] = _mm256_loadu_ps(c.add(r * ldc + 8));
        }
    }
    let (mut group, mut b) = (a, b);
    let mut p = 0;
    let ahead = AVX2_PREFETCH_FACTOR * prefetch_groups::<TR>() * gs;
    while p < k {
        let steps = (k - p).min(M);
        prefetch_block::<M>(group.wrapping_add(ahead));
        let mut a = group;
        for _ in 0..steps {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a.add(r * rs));
                acc_r[0] = _mm256_fmadd_ps(av, b0, acc_r[0]);
                acc_r[1] = _mm256_fmadd_ps(av, b1, acc_r[1]);
            }
            a = a.wrapping_add(ks);
            b = b.wrapping_add(ldb);
        }
        // After the last step these point past the end of `A` and `B`,
        // where `add` may not point: hence `wrapping_add`.
        group = group.wrapping_add(gs);
        p += steps;
    }
    for (r, acc_r) in acc.iter().enumerate() {
        _mm256_storeu_ps(c.add(r * ldc), acc_r[0]);
        _mm256_storeu_ps(c.add(r * ldc + 8), acc_r[1]);
    }
}

/// The AVX-512 micro-kernel: 12 x 16 accumulators, one register per row.
///
/// # Safety
/// The CPU must have AVX-512F; `a` must hold what `k` steps read (see
/// [`transposed_len`], or `k * MR_AVX512` packed) and `b`
/// `(k - 1) * ldb + 16` valid elements; the kernel writes 16 elements at
/// `c + r * ldc` for each row `r < MR_AVX512`, which the caller alone may
/// access.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_f32_avx512<const TR: bool>(
    k: usize,
    a: *const f32,
    a_stride: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    const M: usize = MR_AVX512;
    let (rs, ks, gs) = a_strides::<TR>(M, a_stride);
    let mut acc = [_mm512_setzero_ps(); M];
    if accumulate {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            *acc_r = _mm512_loadu_ps(c.add(r * ldc));
        }
    }
    let (mut group, mut b) = (a, b);
    let mut p = 0;
    while p < k {
        let steps = (k - p).min(M);
        prefetch_block::<M>(group.wrapping_add(prefetch_groups::<TR>() * gs));
        let mut a = group;
        for _ in 0..steps {
            // A prefetch cannot fault, wherever `wrapping_add` points.
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(PFB_ROWS * ldb).cast::<i8>());
            let bv = _mm512_loadu_ps(b);
            for (r, acc_r) in acc.iter_mut().enumerate() {
                *acc_r = _mm512_fmadd_ps(_mm512_set1_ps(*a.add(r * rs)), bv, *acc_r);
            }
            a = a.wrapping_add(ks);
            b = b.wrapping_add(ldb);
        }
        // After the last step these point past the end of `A` and `B`,
        // where `add` may not point: hence `wrapping_add`.
        group = group.wrapping_add(gs);
        p += steps;
    }
    for (r, acc_r) in acc.iter().enumerate() {
        _mm512_storeu_ps(c.add(r * ldc), *acc_r);
    }
}

/// Groups of steps ahead whose block of `A` the transposed kernels
/// (AVX-512 and AVX2) prefetch. A transposed read takes one `mr x mr`
/// block (576 bytes for AVX-512) per group, and the blocks are a kernel
/// panel apart (about 400 KB for a 512-channel F(2x2) kernel): the
/// hardware prefetchers do not follow that, and each block came from
/// memory while the kernel waited. Prefetching two groups ahead made the
/// input gradients of VGG16's and ResNet-50's 512-channel layers 12-28%
/// faster (512 x 512 at 28, 14 and 7; in-process alternation, 2 threads,
/// AVX-512); 1 and 4 groups ahead measured about the same.
const PREFETCH_GROUPS: usize = 2;

/// Groups of steps ahead whose block of `A` the packed (not transposed)
/// kernels (AVX-512 and AVX2) prefetch: 4 x 576 bytes, 2.3 KB ahead of a
/// sequential read, for AVX-512 (AVX2: [`AVX2_PREFETCH_FACTOR`]). The
/// hardware prefetchers follow it, but not far enough when `A` comes from
/// memory: a 512-channel F(2x2) kernel (16
/// MB) is read once per block of tiles, and VGG16's 512 x 512 forward at
/// 28 x 28 took 10.3 ms without this against 8.5 with it. End to end
/// (in-process alternation, 2 threads, medians of 14 calls per side):
/// VGG16 guided backprop 3-9% faster, Grad-CAM 5%, ResNet-50 4-11% (its
/// 1 x 1 products read packed weights too). 1 group ahead bought less, 8
/// about the same. Near the end of a panel it prefetches whatever follows
/// it (a prefetch cannot fault), wasted where that is not read next.
const PACKED_PREFETCH_GROUPS: usize = 4;

/// Groups of steps ahead whose block of `A` a transposed (`TR`) or packed
/// read prefetches.
const fn prefetch_groups<const TR: bool>() -> usize {
    if TR {
        PREFETCH_GROUPS
    } else {
        PACKED_PREFETCH_GROUPS
    }
}

/// How many times as many groups ahead the AVX2 kernel prefetches `A` as
/// the AVX-512 ones ([`prefetch_groups`]): its groups are 6 steps of 12
/// multiply-adds, against 12 of 12 or 24, so the same number of groups
/// ahead would leave a quarter of the time for the block to arrive; 4x
/// puts a packed read 2.3 KB ahead, as for AVX-512. End to end under
/// the `avx2` SIMD cap (in-process alternation, 2 threads, 19 calls a
/// side), 4x against 1x: VGG16 guided backprop -2.9% and -4.3% (median),
/// ResNet-50 -1.2% and -3.4%; 8x against 4x: 0 to +9%.
const AVX2_PREFETCH_FACTOR: usize = 4;

/// Steps ahead whose row of `B` the AVX-512 kernels prefetch. `B` is read
/// one row per step, and its rows are often far apart: an image read in
/// place by the 1 x 1 products (12.5 KB at 56 x 56), transformed tiles
/// (3 KB at 56 x 56), beyond the 2 KB stride the L1 prefetcher follows.
/// End to end (in-process alternation, 2 threads, medians of 20 calls per
/// side): ResNet-50 guided backprop 4-9% faster, VGG16 0-7%; Winograd
/// layers alone 3.5-4.7%. 4 and 16 rows ahead measured about the same.
const PFB_ROWS: usize = 8;

/// Prefetches the `M x M` block of `A` at `a` (a group of a transposed or
/// packed read, `M` the kernel's rows) into L1, line by line. A prefetch
/// cannot fault, so `a` may lie past the end of the kernel (the last
/// groups).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_block<const M: usize>(a: *const f32) {
    const LINE: usize = 16;
    for i in (0..M * M + LINE).step_by(LINE) {
        prefetch(a.wrapping_add(i));
    }
}

/// The AVX-512 micro-kernel over two tile panels: 12 x 32 accumulators in 24
/// registers. Each output is the same chain of fused multiply-adds, in the
/// same order, as in [`micro_f32_avx512`], so the bits are the same.
///
/// # Safety
/// As [`micro_f32_avx512`], with `b` holding `(k - 1) * ldb + 32` valid
/// elements and 32 elements written per row of `c`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_f32_avx512_wide<const TR: bool>(
    k: usize,
    a: *const f32,
    a_stride: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    const M: usize = MR_AVX512;
    let (rs, ks, gs) = a_strides::<TR>(M, a_stride);
    let mut acc = [[_mm512_setzero_ps(); 2]; M];
    if accumulate {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            acc_r[0] = _mm512_loadu_ps(c.add(r * ldc));
            acc_r[1] = _mm512_loadu_ps(c.add(r * ldc + NR));
        }
    }
    let (mut group, mut b) = (a, b);
    let mut p = 0;
    while p < k {
        let steps = (k - p).min(M);
        prefetch_block::<M>(group.wrapping_add(prefetch_groups::<TR>() * gs));
        let mut a = group;
        for _ in 0..steps {
            // A prefetch cannot fault, wherever `wrapping_add` points
            // (past the last row, near the end).
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(PFB_ROWS * ldb).cast::<i8>());
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(PFB_ROWS * ldb + NR).cast::<i8>());
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(NR));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(r * rs));
                acc_r[0] = _mm512_fmadd_ps(av, b0, acc_r[0]);
                acc_r[1] = _mm512_fmadd_ps(av, b1, acc_r[1]);
            }
            a = a.wrapping_add(ks);
            b = b.wrapping_add(ldb);
        }
        // After the last step these point past the end of `A` and `B`,
        // where `add` may not point: hence `wrapping_add`.
        group = group.wrapping_add(gs);
        p += steps;
    }
    for (r, acc_r) in acc.iter().enumerate() {
        _mm512_storeu_ps(c.add(r * ldc), acc_r[0]);
        _mm512_storeu_ps(c.add(r * ldc + NR), acc_r[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cap bounds the micro-kernel; other element types than `f32`
    /// always take the portable one.
    #[test]
    fn the_cap_bounds_the_micro_kernel() {
        assert_eq!(micro_kind::<f32>(SimdCap::Generic), Micro::Generic);
        assert_eq!(micro_kind::<f64>(SimdCap::Best), Micro::Generic);
        assert_ne!(micro_kind::<f32>(SimdCap::Avx2), Micro::Avx512);
        assert_eq!(micro_kind::<f32>(SimdCap::Avx2).mr(), MR);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            micro_kind::<f32>(SimdCap::Best) == Micro::Avx512,
            SimdLevel::Avx512.runs()
        );
    }

    /// The wide kernel gives exactly the bits of two calls of its narrow
    /// sibling, and the right products.
    #[test]
    fn wide_kernel_equals_two_narrow_calls() {
        for micro in SimdCap::ALL.map(micro_kind::<f32>) {
            wide_equals_narrow(micro);
        }
    }

    fn wide_equals_narrow(micro: Micro) {
        let Some(wide) = micro.wide_function::<f32>() else {
            return; // no wide kernel at this level: nothing to compare
        };
        let narrow = micro.function::<f32>();
        let (k, mr, ldb, ldc) = (37, micro.mr(), 2 * NR + 5, 2 * NR + 3);
        let a: Vec<f32> = (0..k * mr)
            .map(|i| ((i * 7) % 19) as f32 / 7.0 - 1.3)
            .collect();
        let b: Vec<f32> = (0..k * ldb)
            .map(|i| ((i * 5) % 23) as f32 / 9.0 - 1.1)
            .collect();
        let mut c1 = vec![0f32; mr * ldc];
        let mut c2 = vec![0f32; mr * ldc];
        wide(k, &a, &b, ldb, CBlock::of_slice(&mut c1, ldc, mr), false);
        narrow(k, &a, &b, ldb, CBlock::of_slice(&mut c2, ldc, mr), false);
        narrow(
            k,
            &a,
            &b[NR..],
            ldb,
            CBlock::of_slice(&mut c2[NR..], ldc, mr),
            false,
        );
        assert_eq!(c1, c2);
        // And the products are right.
        for r in 0..mr {
            for j in 0..2 * NR {
                let want: f64 = (0..k)
                    .map(|p| a[p * mr + r] as f64 * b[p * ldb + j] as f64)
                    .sum();
                assert!((c1[r * ldc + j] as f64 - want).abs() < 1e-4 * want.abs().max(1.0));
            }
        }
    }

    /// Reading `A` transposed gives exactly the bits of reading the same
    /// values packed, for every kernel of this CPU and the portable one, with
    /// a partial last group of steps.
    #[test]
    fn transposed_read_equals_packed_read() {
        for micro in SimdCap::ALL.map(micro_kind::<f32>) {
            let mr = micro.mr();
            let (k, ldb, ldc) = (3 * mr + 5, 2 * NR + 5, 2 * NR + 3);
            let groups = k.div_ceil(mr);
            // Transposed storage: group q an mr x mr block at q * stride.
            let stride = mr * mr + 7;
            let at: Vec<f32> = (0..groups * stride)
                .map(|i| ((i * 11) % 17) as f32 / 5.0 - 1.7)
                .collect();
            // The same values packed: step p, row r at p * mr + r.
            let mut a = vec![0f32; k * mr];
            for p in 0..k {
                for r in 0..mr {
                    a[p * mr + r] = at[(p / mr) * stride + r * mr + p % mr];
                }
            }
            let b: Vec<f32> = (0..k * ldb)
                .map(|i| ((i * 5) % 23) as f32 / 9.0 - 1.1)
                .collect();
            let mut want = vec![0f32; mr * ldc];
            let mut got = vec![0f32; mr * ldc];
            micro.function::<f32>()(k, &a, &b, ldb, CBlock::of_slice(&mut want, ldc, mr), false);
            micro.transposed_function::<f32>()(
                k,
                &at,
                stride,
                &b,
                ldb,
                CBlock::of_slice(&mut got, ldc, mr),
                false,
            );
            assert_eq!(got[..NR], want[..NR]);
            assert_eq!(got, want);
            if let (Some(w), Some(wt)) = (
                micro.wide_function::<f32>(),
                micro.transposed_wide_function::<f32>(),
            ) {
                // Accumulating onto what is there, over two tile panels.
                w(k, &a, &b, ldb, CBlock::of_slice(&mut want, ldc, mr), true);
                wt(
                    k,
                    &at,
                    stride,
                    &b,
                    ldb,
                    CBlock::of_slice(&mut got, ldc, mr),
                    true,
                );
                assert_eq!(got, want);
            }
        }
    }
}
