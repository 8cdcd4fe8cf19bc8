//! The register-blocked micro-kernels of the Winograd products
//! (`C = A B`, `A` a packed kernel micro-panel, `B` [`NR`] transformed tiles)
//! and their runtime dispatch: AVX-512 (12 x 16, and 12 x 32 for two tile
//! panels at once) or AVX2 + FMA (6 x 16) for `f32` where the CPU has it,
//! portable code otherwise.

use super::{MR, MR_AVX512, NR};
use crate::element::Element;
use std::any::TypeId;
use std::sync::OnceLock;

/// `C (mr x NR, row stride ldc) = A B`, or `C += A B` when `accumulate`,
/// with `A` packed `k x mr` and `B` `k x NR` with row stride `ldb`:
/// `(k, a, b, ldb, c, ldc, accumulate)`. Accumulating starts the sums from
/// `C` and then adds the products in `k` order (blocked products).
pub(crate) type MicroKernel<T> = fn(usize, &[T], &[T], usize, &mut [T], usize, bool);

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
            Micro::Generic => micro_generic::<T>,
            #[cfg(target_arch = "x86_64")]
            Micro::Avx2 => |k, a, b, ldb, c, ldc, acc| {
                call_f32(micro_f32_avx2, MR, NR, k, a, b, ldb, c, ldc, acc)
            },
            #[cfg(target_arch = "x86_64")]
            Micro::Avx512 => |k, a, b, ldb, c, ldc, acc| {
                call_f32(micro_f32_avx512, MR_AVX512, NR, k, a, b, ldb, c, ldc, acc)
            },
            #[cfg(not(target_arch = "x86_64"))]
            _ => micro_generic::<T>,
        }
    }

    /// A micro-kernel over two adjacent tile panels (`mr x 2 NR`, with the
    /// same `(k, a, b, ldb, c, ldc)` arguments and the same result as two
    /// calls of [`Micro::function`]), where one exists: it loads each
    /// kernel value once for twice the products, which keeps the AVX-512
    /// kernel from being bound by its loads.
    pub(crate) fn wide_function<T: Element>(self) -> Option<MicroKernel<T>> {
        match self {
            #[cfg(target_arch = "x86_64")]
            Micro::Avx512 => Some(|k, a, b, ldb, c, ldc, acc| {
                call_f32(
                    micro_f32_avx512_wide,
                    MR_AVX512,
                    2 * NR,
                    k,
                    a,
                    b,
                    ldb,
                    c,
                    ldc,
                    acc,
                )
            }),
            _ => None,
        }
    }
}

/// The best micro-kernel for `T` on this CPU. `SIGHTLINE_SIMD=avx2` or
/// `SIGHTLINE_SIMD=generic` caps it (to measure what a CPU without AVX-512
/// would run); read once.
pub(crate) fn micro_kind<T: 'static>() -> Micro {
    static F32: OnceLock<Micro> = OnceLock::new();
    if TypeId::of::<T>() != TypeId::of::<f32>() {
        return Micro::Generic;
    }
    *F32.get_or_init(|| {
        let cap = std::env::var("SIGHTLINE_SIMD").unwrap_or_default();
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected;
            if cap != "avx2" && cap != "generic" && is_x86_feature_detected!("avx512f") {
                return Micro::Avx512;
            }
            if cap != "generic"
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
            {
                return Micro::Avx2;
            }
        }
        let _ = cap;
        Micro::Generic
    })
}

fn micro_generic<T: Element>(
    k: usize,
    a: &[T],
    b: &[T],
    ldb: usize,
    c: &mut [T],
    ldc: usize,
    accumulate: bool,
) {
    let mut acc = [[T::zero(); NR]; MR];
    if accumulate {
        for (r, row) in acc.iter_mut().enumerate() {
            row.copy_from_slice(&c[r * ldc..r * ldc + NR]);
        }
    }
    for (p, av) in a[..k * MR].chunks_exact(MR).enumerate() {
        let bv = &b[p * ldb..p * ldb + NR];
        for r in 0..MR {
            for j in 0..NR {
                acc[r][j] += av[r] * bv[j];
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        c[r * ldc..r * ldc + NR].copy_from_slice(row);
    }
}

/// A raw `f32` micro-kernel: `(k, a, b, ldb, c, ldc, accumulate)` on
/// pointers, compiled for a CPU feature.
#[cfg(target_arch = "x86_64")]
type RawKernel = unsafe fn(usize, *const f32, *const f32, usize, *mut f32, usize, bool);

/// Calls the raw kernel `raw` (`mr` rows, `width` columns) on slices, after
/// checking their lengths and that `T` is `f32`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn call_f32<T: Element>(
    raw: RawKernel,
    mr: usize,
    width: usize,
    k: usize,
    a: &[T],
    b: &[T],
    ldb: usize,
    c: &mut [T],
    ldc: usize,
    accumulate: bool,
) {
    assert!(
        a.len() >= k * mr && b.len() + ldb >= k * ldb + width && c.len() >= (mr - 1) * ldc + width
    );
    assert_eq!(TypeId::of::<T>(), TypeId::of::<f32>());
    // SAFETY: T is f32 (asserted), so the pointer casts are identities; the
    // lengths were checked above; `c` does not alias `a` or `b` (distinct
    // borrows); `raw` is only passed here by `Micro::function` and
    // `Micro::wide_function` for the `Micro` that `micro_kind` chose because
    // the CPU has the kernel's features.
    unsafe {
        raw(
            k,
            a.as_ptr() as *const f32,
            b.as_ptr() as *const f32,
            ldb,
            c.as_mut_ptr() as *mut f32,
            ldc,
            accumulate,
        )
    }
}

/// The AVX2 + FMA micro-kernel: 6 x 16 accumulators in 12 registers.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `a` must hold `k * 6`, `b`
/// `(k - 1) * ldb + 16` and `c` `5 * ldc + 16` valid elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_f32_avx2(
    k: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    if accumulate {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            acc_r[0] = _mm256_loadu_ps(c.add(r * ldc));
            acc_r[1] = _mm256_loadu_ps(c.add(r * ldc + 8));
        }
    }
    let (mut a, mut b) = (a, b);
    for _ in 0..k {
        let b0 = _mm256_loadu_ps(b);
        let b1 = _mm256_loadu_ps(b.add(8));
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*a.add(r));
            acc_r[0] = _mm256_fmadd_ps(av, b0, acc_r[0]);
            acc_r[1] = _mm256_fmadd_ps(av, b1, acc_r[1]);
        }
        a = a.add(MR);
        b = b.add(ldb);
    }
    for (r, acc_r) in acc.iter().enumerate() {
        _mm256_storeu_ps(c.add(r * ldc), acc_r[0]);
        _mm256_storeu_ps(c.add(r * ldc + 8), acc_r[1]);
    }
}

/// The AVX-512 micro-kernel: 12 x 16 accumulators, one register per row.
///
/// # Safety
/// The CPU must have AVX-512F; `a` must hold `k * MR_AVX512`, `b`
/// `(k - 1) * ldb + 16` and `c` `(MR_AVX512 - 1) * ldc + 16` valid elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_f32_avx512(
    k: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    const M: usize = MR_AVX512;
    let mut acc = [_mm512_setzero_ps(); M];
    if accumulate {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            *acc_r = _mm512_loadu_ps(c.add(r * ldc));
        }
    }
    let (mut a, mut b) = (a, b);
    for _ in 0..k {
        let bv = _mm512_loadu_ps(b);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            *acc_r = _mm512_fmadd_ps(_mm512_set1_ps(*a.add(r)), bv, *acc_r);
        }
        a = a.add(M);
        b = b.add(ldb);
    }
    for (r, acc_r) in acc.iter().enumerate() {
        _mm512_storeu_ps(c.add(r * ldc), *acc_r);
    }
}

/// The AVX-512 micro-kernel over two tile panels: 12 x 32 accumulators in 24
/// registers. Each output is the same chain of fused multiply-adds, in the
/// same order, as in [`micro_f32_avx512`], so the bits are the same.
///
/// # Safety
/// The CPU must have AVX-512F; `a` must hold `k * MR_AVX512`, `b`
/// `(k - 1) * ldb + 32` and `c` `(MR_AVX512 - 1) * ldc + 32` valid elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_f32_avx512_wide(
    k: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    const M: usize = MR_AVX512;
    let mut acc = [[_mm512_setzero_ps(); 2]; M];
    if accumulate {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            acc_r[0] = _mm512_loadu_ps(c.add(r * ldc));
            acc_r[1] = _mm512_loadu_ps(c.add(r * ldc + NR));
        }
    }
    let (mut a, mut b) = (a, b);
    for _ in 0..k {
        let b0 = _mm512_loadu_ps(b);
        let b1 = _mm512_loadu_ps(b.add(NR));
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let av = _mm512_set1_ps(*a.add(r));
            acc_r[0] = _mm512_fmadd_ps(av, b0, acc_r[0]);
            acc_r[1] = _mm512_fmadd_ps(av, b1, acc_r[1]);
        }
        a = a.add(M);
        b = b.add(ldb);
    }
    for (r, acc_r) in acc.iter().enumerate() {
        _mm512_storeu_ps(c.add(r * ldc), acc_r[0]);
        _mm512_storeu_ps(c.add(r * ldc + NR), acc_r[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wide kernel gives exactly the bits of two calls of its narrow
    /// sibling, and the right products.
    #[test]
    fn wide_kernel_equals_two_narrow_calls() {
        let micro = micro_kind::<f32>();
        let Some(wide) = micro.wide_function::<f32>() else {
            return; // no wide kernel on this CPU: nothing to compare
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
        wide(k, &a, &b, ldb, &mut c1, ldc, false);
        narrow(k, &a, &b, ldb, &mut c2, ldc, false);
        narrow(k, &a, &b[NR..], ldb, &mut c2[NR..], ldc, false);
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
}
