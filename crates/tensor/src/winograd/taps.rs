//! Where the 3 x 3 taps of each kernel lie in a weight, and how a kernel
//! build gathers them: the taps of `L` output channels of one input
//! channel, side by side (`g[tap][lane]`), by scalar loads or by the
//! vector gathers of AVX-512 and AVX2.
//!
//! The scalar gather (nine loads and nine stores per lane, then the
//! transform's vector loads of what those stores wrote) was three quarters
//! of a kernel build's time; with the gathers a 512 x 512 F(2x2) kernel
//! builds in about half the time. A gather copies the values, so the
//! kernel's bits do not depend on which one ran.

use crate::element::Element;
use std::any::TypeId;

/// The taps of the kernels `(o, i)` of the convolution being transformed,
/// as a view of a weight's data: tap `t` (row-major) of kernel `(o, i)` at
/// `o * o_stride + i * i_stride + t`, or `+ 8 - t` when `flipped`.
#[derive(Clone, Copy)]
pub(super) struct Taps<'a, T> {
    w: &'a [T],
    o_stride: usize,
    i_stride: usize,
    flipped: bool,
}

impl<'a, T: Element> Taps<'a, T> {
    /// The kernels of a convolution with weight `w` (`cout x cin x 3 x 3`,
    /// `cin` input channels).
    pub(super) fn forward(w: &'a [T], cin: usize) -> Self {
        Taps {
            w,
            o_stride: cin * 9,
            i_stride: 9,
            flipped: false,
        }
    }

    /// The kernels of the input gradient of a convolution with weight `w`
    /// (`cout x cin x 3 x 3`): its output channels are the weight's `cin`
    /// input channels, its input channels the weight's output channels,
    /// and the taps are flipped.
    pub(super) fn backward_input(w: &'a [T], cin: usize) -> Self {
        Taps {
            w,
            o_stride: 9,
            i_stride: cin * 9,
            flipped: true,
        }
    }

    /// Whether `w` holds every tap of `cout x cin` kernels (none when
    /// either is 0).
    pub(super) fn covers(&self, cout: usize, cin: usize) -> bool {
        cout == 0
            || cin == 0
            || (cout - 1) * self.o_stride + (cin - 1) * self.i_stride + 8 < self.w.len()
    }

    #[inline(always)]
    fn at(&self, o: usize, i: usize, t: usize) -> usize {
        o * self.o_stride + i * self.i_stride + if self.flipped { 8 - t } else { t }
    }

    /// The nine taps of kernel `(o, i)`.
    #[inline(always)]
    pub(super) fn kernel(&self, o: usize, i: usize) -> [T; 9] {
        std::array::from_fn(|t| self.w[self.at(o, i, t)])
    }

    /// The taps of kernels `(o0 + l, i)` for the first `lanes` lanes `l`
    /// (at most `L`), zero in the other lanes, one load at a time.
    #[inline(always)]
    pub(super) fn gather_scalar<const L: usize>(
        &self,
        o0: usize,
        lanes: usize,
        i: usize,
    ) -> [[T; L]; 9] {
        let mut g = [[T::zero(); L]; 9];
        for l in 0..lanes.min(L) {
            for (gt, kt) in g.iter_mut().zip(self.kernel(o0 + l, i)) {
                gt[l] = kt;
            }
        }
        g
    }

    /// Whether the vector gathers can read these taps: `f32`, with the
    /// offsets between the lanes' kernels within `i32`.
    pub(super) fn vector_gathers<const L: usize>(&self) -> bool {
        TypeId::of::<T>() == TypeId::of::<f32>()
            && L <= 16
            && i32::try_from(L * self.o_stride).is_ok()
    }

    /// The taps of kernels `(o0 + l, i)` for the first `lanes` lanes, zero
    /// in the others, as nine vectors (one per tap) of nine masked AVX-512
    /// gathers.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; [`Taps::vector_gathers`] must hold, and
    /// the kernels `(o0 + l, i)` for `l < lanes` must lie in the weight
    /// ([`Taps::covers`]).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gathered_avx512<const L: usize>(
        &self,
        o0: usize,
        lanes: usize,
        i: usize,
    ) -> [std::arch::x86_64::__m512; 9] {
        use std::arch::x86_64::*;
        debug_assert!(self.vector_gathers::<L>());
        let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let offsets = _mm512_mullo_epi32(lane, _mm512_set1_epi32(self.o_stride as i32));
        let load: __mmask16 = ((1u32 << lanes.min(L).min(16)) - 1) as u16;
        let w = self.w.as_ptr().cast::<f32>();
        // SAFETY: lanes below `lanes` read kernels inside the weight (the
        // caller's contract); the others are masked off and read nothing.
        std::array::from_fn(|t| unsafe {
            _mm512_mask_i32gather_ps::<4>(
                _mm512_setzero_ps(),
                load,
                offsets,
                w.wrapping_add(self.at(o0, i, t)).cast(),
            )
        })
    }

    /// As [`Taps::gather_scalar`], by AVX2 gathers of eight lanes.
    ///
    /// # Safety
    /// As [`Taps::gathered_avx512`], with AVX2 instead of AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn gather_avx2<const L: usize>(
        &self,
        o0: usize,
        lanes: usize,
        i: usize,
    ) -> [[T; L]; 9] {
        use std::arch::x86_64::*;
        debug_assert!(self.vector_gathers::<L>());
        // Lanes past `lanes` keep the zeros they start with.
        let mut g = [[T::zero(); L]; 9];
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let offsets = _mm256_mullo_epi32(lane, _mm256_set1_epi32(self.o_stride as i32));
        let w = self.w.as_ptr().cast::<f32>();
        let lanes = lanes.min(L);
        for c0 in (0..lanes).step_by(8) {
            let n = (lanes - c0).min(8) as i32;
            let load = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
            for (t, gt) in g.iter_mut().enumerate() {
                // SAFETY: as in `gathered_avx512`: the lanes `load` keeps read
                // kernels inside the weight, the others nothing.
                let v = _mm256_mask_i32gather_ps::<4>(
                    _mm256_setzero_ps(),
                    w.wrapping_add(self.at(o0 + c0, i, t)),
                    offsets,
                    _mm256_castsi256_ps(load),
                );
                // SAFETY: `gt` holds `L` f32 from lane `c0` on, and `load`
                // keeps lanes below `lanes - c0 <= L - c0`.
                _mm256_maskstore_ps(gt.as_mut_ptr().cast::<f32>().add(c0), load, v);
            }
        }
        g
    }
}
