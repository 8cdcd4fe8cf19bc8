//! Runtime CPU feature checks: for the kernels compiled twice (baseline
//! x86-64 and AVX2), which run the same operations in the same order (no
//! fused multiply-adds are introduced), so they give the same bits, the AVX2
//! build only using registers twice as wide; and the level of the
//! hand-vectorized kernels ([`simd_level_capped`], under a
//! [`SimdCap`]).

use crate::policy::SimdCap;

/// Whether this CPU runs AVX2 code (checked once; `false` off x86-64).
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Asks the CPU to bring the cache line holding `at` into L1 ahead of a
/// read (a hint: it reads nothing and cannot fault, wherever `at` points,
/// so `at` may be past the end of a slice); nothing off x86-64.
#[inline(always)]
pub(crate) fn prefetch<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86-64, and a prefetch never dereferences its
    // address in a way that can fault or be observed.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// The instruction sets the hand-vectorized kernels (Winograd transforms
/// and micro-kernels, max pooling) are built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SimdLevel {
    /// Baseline x86-64 (SSE2), or whatever the target has elsewhere.
    Baseline,
    /// AVX2.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 (foundation).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl SimdLevel {
    /// Whether this CPU runs the level.
    pub(crate) fn runs(self) -> bool {
        match self {
            SimdLevel::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
        }
    }

    /// Every level this CPU runs, lowest first: the tests compare the
    /// builds with each other.
    #[cfg(test)]
    pub(crate) fn available() -> Vec<SimdLevel> {
        let all = [
            SimdLevel::Baseline,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512,
        ];
        all.into_iter().filter(|l| l.runs()).collect()
    }
}

/// The best level this CPU runs, with no cap: for the kernels that do not
/// take a [`SimdCap`] yet (the depthwise convolutions, whose levels all give
/// the same bits).
pub(crate) fn simd_level() -> SimdLevel {
    simd_level_capped(SimdCap::Best)
}

/// The best level this CPU runs at or below `cap`. (The CPU's features are
/// detected once by the standard library; this only reads them.)
pub(crate) fn simd_level_capped(cap: SimdCap) -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if cap == SimdCap::Best && SimdLevel::Avx512.runs() {
            return SimdLevel::Avx512;
        }
        if cap != SimdCap::Generic && SimdLevel::Avx2.runs() {
            return SimdLevel::Avx2;
        }
    }
    let _ = cap;
    SimdLevel::Baseline
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_bounds_the_level() {
        assert_eq!(simd_level_capped(SimdCap::Generic), SimdLevel::Baseline);
        assert_eq!(simd_level_capped(SimdCap::Best), simd_level());
        let best = simd_level();
        assert!(best.runs());
        assert_eq!(SimdLevel::available().last(), Some(&best));
        let avx2 = simd_level_capped(SimdCap::Avx2);
        assert!(avx2.runs());
        #[cfg(target_arch = "x86_64")]
        {
            assert_ne!(avx2, SimdLevel::Avx512);
            let want = if SimdLevel::Avx2.runs() {
                SimdLevel::Avx2
            } else {
                SimdLevel::Baseline
            };
            assert_eq!(avx2, want);
        }
    }
}
