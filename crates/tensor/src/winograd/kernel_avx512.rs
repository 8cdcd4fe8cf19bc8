//! `f32` kernel builds in AVX-512 registers: a micro-panel's taps gathered
//! ([`Taps::gathered_avx512`]), transformed for F(2x2) in `f32` or for
//! F(4x4) in `f64` (8 lanes per register, two registers per panel row),
//! and each transformed row stored straight into the panel. The operations
//! are those of `kernel::transform_kernel` and
//! `kernel::transform_kernel_f4`, in the same order and with no fused
//! multiply-adds, so the bits are the same as the generic build's.
//!
//! Measured (2 threads): a 512 x 512 F(2x2) kernel in 0.71-0.77 ms against
//! 1.5 with scalar gathers, a 256 x 256 F(4x4) kernel in 0.77 ms against
//! 1.23 with vector gathers and the generic transform (its `f64`
//! arithmetic is most of it).

use super::kernel::PanelShape;
use super::taps::Taps;
use super::Variant;
use crate::element::Element;
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Writes micro-panel `p` whole, as `kernel::build_panel` does, with the
/// transforms in registers.
///
/// # Safety
/// The CPU must have AVX-512F; `taps` must cover the shape's kernels, and
/// [`Taps::vector_gathers`] must hold (so `T` is `f32` and `L <= 16`).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn build_panel<T: Element, const L: usize>(
    shape: &PanelShape,
    p: usize,
    taps: &Taps<'_, T>,
    panel: &mut [MaybeUninit<T>],
) {
    match shape.variant {
        Variant::F2x2 => store_rows::<T, L, 16>(shape, p, panel, |o0, lanes, i| {
            // SAFETY: as this function's contract; `store_rows` asks for
            // kernels of the shape only.
            unsafe { transform_f2::<T, L>(taps, o0, lanes, i) }
        }),
        Variant::F4x4 => store_rows::<T, L, 36>(shape, p, panel, |o0, lanes, i| {
            // SAFETY: as above.
            unsafe { transform_f4::<T, L>(taps, o0, lanes, i) }
        }),
    }
}

/// Stores the `XI` rows `transform(p L, lanes, i)` of every input channel
/// `i` (zero rows for the padding channels) into micro-panel `p`.
///
/// # Safety
/// The CPU must have AVX-512F; `T` must be `f32` and `L <= 16`.
#[target_feature(enable = "avx512f")]
unsafe fn store_rows<T: Element, const L: usize, const XI: usize>(
    shape: &PanelShape,
    p: usize,
    panel: &mut [MaybeUninit<T>],
    transform: impl Fn(usize, usize, usize) -> [__m512; XI],
) {
    let &PanelShape {
        cout, cin, cin_pad, ..
    } = shape;
    assert!(L <= 16 && panel.len() >= XI * cin_pad * L);
    let row: __mmask16 = ((1u32 << L) - 1) as u16;
    let lanes = L.min(cout.saturating_sub(p * L));
    let out = panel.as_mut_ptr().cast::<f32>();
    for i in 0..cin_pad {
        let u = if i < cin {
            transform(p * L, lanes, i)
        } else {
            [_mm512_setzero_ps(); XI]
        };
        for (xi, v) in u.into_iter().enumerate() {
            // SAFETY: row `(xi, i)` of the panel, `L` elements, inside it
            // (asserted); `T` is `f32`.
            unsafe { _mm512_mask_storeu_ps(out.add((xi * cin_pad + i) * L), row, v) };
        }
    }
}

/// The F(2x2) transform `G g G^T` of the kernels `(o0 + l, i)` for the
/// first `lanes` lanes (zero in the others): the 16 elements of the
/// transformed tile, each a vector of the lanes.
///
/// # Safety
/// As [`Taps::gathered_avx512`].
#[target_feature(enable = "avx512f")]
unsafe fn transform_f2<T: Element, const L: usize>(
    taps: &Taps<'_, T>,
    o0: usize,
    lanes: usize,
    i: usize,
) -> [__m512; 16] {
    // SAFETY: this function's contract.
    let g = unsafe { taps.gathered_avx512::<L>(o0, lanes, i) };
    let half = _mm512_set1_ps(0.5);
    // G g: 4 x 3, then (G g) G^T: 4 x 4.
    let mut gg = [_mm512_setzero_ps(); 12];
    for c in 0..3 {
        let (g0, g1, g2) = (g[c], g[3 + c], g[6 + c]);
        gg[c] = g0;
        gg[3 + c] = _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(g0, g1), g2), half);
        gg[6 + c] = _mm512_mul_ps(_mm512_add_ps(_mm512_sub_ps(g0, g1), g2), half);
        gg[9 + c] = g2;
    }
    let mut u = [_mm512_setzero_ps(); 16];
    for r in 0..4 {
        let (a, b, c) = (gg[3 * r], gg[3 * r + 1], gg[3 * r + 2]);
        u[4 * r] = a;
        u[4 * r + 1] = _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(a, b), c), half);
        u[4 * r + 2] = _mm512_mul_ps(_mm512_add_ps(_mm512_sub_ps(a, b), c), half);
        u[4 * r + 3] = c;
    }
    u
}

/// The F(4x4) transform of the kernels `(o0 + l, i)` for the first `lanes`
/// lanes (zero in the others), computed in `f64` and rounded once to
/// `f32`: the 36 elements of the transformed tile, each a vector of the
/// lanes.
///
/// # Safety
/// As [`Taps::gathered_avx512`].
#[target_feature(enable = "avx512f")]
unsafe fn transform_f4<T: Element, const L: usize>(
    taps: &Taps<'_, T>,
    o0: usize,
    lanes: usize,
    i: usize,
) -> [__m512; 36] {
    use super::kernel::F4_G as G;
    // SAFETY: this function's contract.
    let g = unsafe { taps.gathered_avx512::<L>(o0, lanes, i) };
    // Lanes 0..8 (h = 0) and 8..16 (h = 1) of each tap, widened to f64.
    let halves: [[__m512d; 9]; 2] = [
        g.map(|v| _mm512_cvtps_pd(_mm512_castps512_ps256(v))),
        g.map(|v| {
            let hi = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v));
            _mm512_cvtps_pd(_mm256_castpd_ps(hi))
        }),
    ];
    let mul = |c: f64, v: __m512d| _mm512_mul_pd(_mm512_set1_pd(c), v);
    let mut u = [_mm512_setzero_ps(); 36];
    for (h, k) in halves.iter().enumerate() {
        // G g: 6 x 3.
        let gg: [[__m512d; 3]; 6] = std::array::from_fn(|r| {
            std::array::from_fn(|c| {
                let s = _mm512_add_pd(mul(G[r][0], k[c]), mul(G[r][1], k[3 + c]));
                _mm512_add_pd(s, mul(G[r][2], k[6 + c]))
            })
        });
        // (G g) G^T: 6 x 6, rounded to f32 into lanes 8 h ..
        for r in 0..6 {
            for (c, gc) in G.iter().enumerate() {
                let s = _mm512_add_pd(mul(gc[0], gg[r][0]), mul(gc[1], gg[r][1]));
                let v = _mm512_cvtpd_ps(_mm512_add_pd(s, mul(gc[2], gg[r][2])));
                let at = &mut u[6 * r + c];
                *at = if h == 0 {
                    _mm512_castps256_ps512(v)
                } else {
                    let both = _mm512_insertf64x4::<1>(_mm512_castps_pd(*at), _mm256_castps_pd(v));
                    _mm512_castpd_ps(both)
                };
            }
        }
    }
    u
}
