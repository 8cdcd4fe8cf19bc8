//! The interior kernels of max pooling for `f32` with x86 intrinsics, AVX-512
//! and AVX2 (see [`Interior`]).
//!
//! Each takes a row's outputs a vector at a time (16 or 8 lanes, the last
//! vector masked, so that narrow rows run vectorized too) and keeps the
//! vector's maxima and indices in registers over all the taps. A stride-2
//! tap row is read as two vectors whose even elements are then gathered by
//! shuffles. The rule is two compares, `v > best` (ordered: false if either
//! is NaN) and `v` unordered with itself (`v` is NaN), and two selects that
//! copy bits: the results are those of the portable kernel.
//!
//! Both check up front that every element they read and every output they
//! write is in bounds ([`Interior::in_bounds`]); if not (which the geometry
//! rules out), they leave the work to the portable kernel.

use super::{interior, Interior};
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// The interior of a band of output rows, 16 outputs at a time, with
/// AVX-512 intrinsics.
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn interior_f32_avx512<const S: usize>(
    plane: &[f32],
    b: Interior<'_>,
    out: &mut [MaybeUninit<f32>],
    idx: &mut [MaybeUninit<u32>],
) {
    let Some((&first, rest)) = b.taps.split_first() else {
        return;
    };
    if !((S == 1 || S == 2) && b.in_bounds(S, plane.len(), out.len().min(idx.len()))) {
        return interior::<f32, S>(plane, b, out, idx);
    }
    let (c0, c1) = b.cols;
    // The lanes below `k`.
    let mask = |k: usize| -> __mmask16 { ((1u32 << k.min(16)) - 1) as __mmask16 };
    let lanes = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(S as i32),
    );
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let p = plane.as_ptr();
    for r in 0..b.rows {
        for j in (0..c1 - c0).step_by(16) {
            let m = (c1 - c0 - j).min(16);
            // The elements of a tap row that the vector reads: `S (m - 1) + 1`.
            let count = S * (m - 1) + 1;
            let (lo, hi) = (mask(count), mask(count.saturating_sub(16)));
            let base = r * b.row_step + S * j;
            let load = |tap: u32| -> __m512 {
                let q = p.wrapping_add(tap as usize + base);
                // SAFETY: the lanes loaded are the elements `tap + base + e`
                // for `e < count`: in the plane (`in_bounds`).
                unsafe {
                    let v = _mm512_maskz_loadu_ps(lo, q);
                    if S == 1 {
                        v
                    } else {
                        let w = _mm512_maskz_loadu_ps(hi, q.wrapping_add(16));
                        _mm512_permutex2var_ps(v, even, w)
                    }
                }
            };
            // Wrapping to `i32` is harmless: the offsets are below 2^32.
            let index =
                |tap: u32| _mm512_add_epi32(_mm512_set1_epi32((tap as usize + base) as i32), lanes);
            let mut best = load(first);
            let mut at = index(first);
            for &tap in rest {
                let v = load(tap);
                let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best)
                    | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                best = _mm512_mask_mov_ps(best, take, v);
                at = _mm512_mask_mov_epi32(at, take, index(tap));
            }
            let o = r * b.wo + c0 + j;
            // SAFETY: the lanes stored are the outputs `o..o + m`: in `out`
            // and `idx` (`in_bounds`).
            unsafe {
                _mm512_mask_storeu_ps(out.as_mut_ptr().add(o).cast(), mask(m), best);
                _mm512_mask_storeu_epi32(idx.as_mut_ptr().add(o).cast(), mask(m), at);
            }
        }
    }
}

/// The interior of a band of output rows, 8 outputs at a time, with AVX2
/// intrinsics (masked loads and stores for the last vector of a row).
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn interior_f32_avx2<const S: usize>(
    plane: &[f32],
    b: Interior<'_>,
    out: &mut [MaybeUninit<f32>],
    idx: &mut [MaybeUninit<u32>],
) {
    let Some((&first, rest)) = b.taps.split_first() else {
        return;
    };
    if !((S == 1 || S == 2) && b.in_bounds(S, plane.len(), out.len().min(idx.len()))) {
        return interior::<f32, S>(plane, b, out, idx);
    }
    let (c0, c1) = b.cols;
    let iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    // The lanes below `k` (all bits set in each).
    let mask = |k: usize| _mm256_cmpgt_epi32(_mm256_set1_epi32(k.min(8) as i32), iota);
    let lanes = _mm256_mullo_epi32(iota, _mm256_set1_epi32(S as i32));
    let p = plane.as_ptr();
    for r in 0..b.rows {
        for j in (0..c1 - c0).step_by(8) {
            let m = (c1 - c0 - j).min(8);
            // The elements of a tap row that the vector reads: `S (m - 1) + 1`.
            let count = S * (m - 1) + 1;
            let (lo, hi) = (mask(count), mask(count.saturating_sub(8)));
            let base = r * b.row_step + S * j;
            let load = |tap: u32| -> __m256 {
                let q = p.wrapping_add(tap as usize + base);
                // SAFETY: the lanes loaded are the elements `tap + base + e`
                // for `e < count`: in the plane (`in_bounds`).
                unsafe {
                    let v = _mm256_maskload_ps(q, lo);
                    if S == 1 {
                        v
                    } else {
                        let w = _mm256_maskload_ps(q.wrapping_add(8), hi);
                        // v0 v2 w0 w2 | v4 v6 w4 w6, then the middle pairs swapped.
                        let pairs = _mm256_castps_pd(_mm256_shuffle_ps::<0b10_00_10_00>(v, w));
                        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(pairs))
                    }
                }
            };
            // Wrapping to `i32` is harmless: the offsets are below 2^32.
            let index = |tap: u32| {
                let i = _mm256_set1_epi32((tap as usize + base) as i32);
                _mm256_castsi256_ps(_mm256_add_epi32(i, lanes))
            };
            let mut best = load(first);
            // The indices ride in float registers; the blends copy their bits.
            let mut at = index(first);
            for &tap in rest {
                let v = load(tap);
                let take = _mm256_or_ps(
                    _mm256_cmp_ps::<_CMP_GT_OQ>(v, best),
                    _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v),
                );
                best = _mm256_blendv_ps(best, v, take);
                at = _mm256_blendv_ps(at, index(tap), take);
            }
            let o = r * b.wo + c0 + j;
            // SAFETY: the lanes stored are the outputs `o..o + m`: in `out`
            // and `idx` (`in_bounds`).
            unsafe {
                _mm256_maskstore_ps(out.as_mut_ptr().add(o).cast(), mask(m), best);
                let at = _mm256_castps_si256(at);
                _mm256_maskstore_epi32(idx.as_mut_ptr().add(o).cast(), mask(m), at);
            }
        }
    }
}
