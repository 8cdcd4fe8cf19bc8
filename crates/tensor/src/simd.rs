//! Runtime CPU feature checks: for the kernels compiled twice (baseline
//! x86-64 and AVX2), which run the same operations in the same order (no
//! fused multiply-adds are introduced), so they give the same bits, the AVX2
//! build only using registers twice as wide; and the level of the
//! hand-vectorized kernels ([`simd_level`]).

use std::sync::OnceLock;

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

    /// Every level this CPU runs, whatever `SIGHTLINE_SIMD` says: the tests
    /// compare the builds with each other.
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

/// The best level this CPU runs, capped by `SIGHTLINE_SIMD`: `avx2` (to
/// measure what a CPU without AVX-512 would run) or `generic`; read once.
pub(crate) fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = std::env::var("SIGHTLINE_SIMD").unwrap_or_default();
        #[cfg(target_arch = "x86_64")]
        {
            if cap != "avx2" && cap != "generic" && SimdLevel::Avx512.runs() {
                return SimdLevel::Avx512;
            }
            if cap != "generic" && SimdLevel::Avx2.runs() {
                return SimdLevel::Avx2;
            }
        }
        let _ = cap;
        SimdLevel::Baseline
    })
}
