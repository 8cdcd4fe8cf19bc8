//! The last few columns of a product (`cols % NR` of them, at most
//! [`THIN_MAX`]) on the AVX-512 micro-kernels' packed weight, vectorized
//! over the rows of four kernel panels at once instead of over columns.
//!
//! A 7 x 7 output has 49 columns: three micro-panels of 16 and one column
//! left, which the 12 x 16 micro-kernel would compute as a whole panel of 16
//! (a quarter of the layer's time for one forty-ninth of its outputs).
//! Here that column costs one multiply-add per `k` per 12 rows, with 4 x `R`
//! independent chains to hide the latency. Each output is the same chain of
//! fused multiply-adds over `k` in order as in the micro-kernels
//! (`acc = fma(a, b, acc)` from zero, or from the given values when
//! accumulating), so the bits are the same.

use crate::element::Element;
use crate::winograd::Micro;
use std::any::TypeId;

/// Columns at most that the thin kernel takes.
pub(super) const THIN_MAX: usize = 4;

/// Kernel panels per call.
pub(super) const THIN_PANELS: usize = 4;

/// Lanes of an accumulator (rows of a panel, padded).
pub(super) const LANES: usize = 16;

/// Whether [`thin_product`] runs for this element type and micro-kernel.
pub(super) fn thin_available<T: 'static>(micro: Micro) -> bool {
    micro == Micro::Avx512 && TypeId::of::<T>() == TypeId::of::<f32>()
}

/// `acc[i * THIN_MAX + t][row] (+)= sum_k a_i[k * mr + row] * b[k * ldb + t]`
/// for panels `a[i]` (`k x mr`, `mr` at most [`LANES`]), columns `t <
/// cols`, in `k` order from the values in `acc` (zero them for a plain
/// product). Panels past `a.len()` and columns past `cols` are left alone.
///
/// # Panics
/// If [`thin_available`] is false for `T` and `micro`, or the slices are too
/// short for `k`, `mr`, `cols` and `ldb`.
#[allow(clippy::too_many_arguments)]
pub(super) fn thin_product<T: Element>(
    micro: Micro,
    k: usize,
    mr: usize,
    a: &[&[T]],
    b: &[T],
    ldb: usize,
    cols: usize,
    acc: &mut [[T; LANES]; THIN_PANELS * THIN_MAX],
) {
    assert!(thin_available::<T>(micro));
    assert!(mr <= LANES && (1..=THIN_PANELS).contains(&a.len()) && (1..=THIN_MAX).contains(&cols));
    assert!(a.iter().all(|p| p.len() >= k * mr));
    assert!(k == 0 || b.len() >= (k - 1) * ldb + cols);
    if k == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // Missing panels repeat the first (computed, not returned).
        let pa: [*const f32; THIN_PANELS] =
            std::array::from_fn(|i| a.get(i).unwrap_or(&a[0]).as_ptr() as *const f32);
        let bp = b.as_ptr() as *const f32;
        let accp = acc.as_mut_ptr() as *mut f32;
        // SAFETY: `T` is `f32` (asserted by `thin_available`), so the casts
        // are identities; `thin_available` also holds only for the AVX-512
        // micro-kernel, which `micro_kind` picks only when the CPU has
        // AVX-512F. The lengths were checked above: each panel holds `k * mr`
        // values (the kernel reads `mr` of them per step, masked), `b` holds
        // `cols` values at each of the `k` rows, `acc` 4 x THIN_MAX vectors
        // of 16.
        unsafe {
            match cols {
                1 => thin_avx512::<1>(k, mr, pa, bp, ldb, accp, a.len()),
                2 => thin_avx512::<2>(k, mr, pa, bp, ldb, accp, a.len()),
                3 => thin_avx512::<3>(k, mr, pa, bp, ldb, accp, a.len()),
                _ => thin_avx512::<4>(k, mr, pa, bp, ldb, accp, a.len()),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (k, mr, a, b, ldb, cols, acc);
        unreachable!("no AVX-512 micro-kernel on this architecture");
    }
}

/// The AVX-512 thin kernel: `R` columns, four panels, accumulators in
/// `acc` (vector `i * THIN_MAX + t` for panel `i`, column `t`).
///
/// # Safety
/// The CPU must have AVX-512F; each `a[i]` must hold `k * mr` values
/// (`mr <= 16`), `b` `R` values at each of `k` rows `ldb` apart, `acc`
/// `THIN_PANELS * THIN_MAX * 16` values. Only the first `panels`
/// accumulators of each column are stored back.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn thin_avx512<const R: usize>(
    k: usize,
    mr: usize,
    a: [*const f32; THIN_PANELS],
    b: *const f32,
    ldb: usize,
    acc: *mut f32,
    panels: usize,
) {
    use std::arch::x86_64::*;
    let mask: __mmask16 = ((1u32 << mr) - 1) as __mmask16;
    let mut v = [[_mm512_setzero_ps(); R]; THIN_PANELS];
    for (i, vi) in v.iter_mut().enumerate() {
        for (t, vt) in vi.iter_mut().enumerate() {
            *vt = _mm512_loadu_ps(acc.add((i * THIN_MAX + t) * LANES));
        }
    }
    let mut bk = b;
    for s in 0..k {
        let av: [__m512; THIN_PANELS] =
            std::array::from_fn(|i| _mm512_maskz_loadu_ps(mask, a[i].add(s * mr)));
        let bv: [__m512; R] = std::array::from_fn(|t| _mm512_set1_ps(*bk.add(t)));
        for (vi, &ai) in v.iter_mut().zip(&av) {
            for (vt, &bt) in vi.iter_mut().zip(&bv) {
                *vt = _mm512_fmadd_ps(ai, bt, *vt);
            }
        }
        bk = bk.add(ldb);
    }
    for (i, vi) in v.iter().enumerate().take(panels) {
        for (t, vt) in vi.iter().enumerate() {
            _mm512_storeu_ps(acc.add((i * THIN_MAX + t) * LANES), *vt);
        }
    }
}
