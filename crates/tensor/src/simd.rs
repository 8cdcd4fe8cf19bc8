//! Runtime CPU feature checks for the kernels compiled twice (baseline
//! x86-64 and AVX2). The two builds of a kernel run the same operations in
//! the same order (no fused multiply-adds are introduced), so they give the
//! same bits; the AVX2 build only uses registers twice as wide.

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
