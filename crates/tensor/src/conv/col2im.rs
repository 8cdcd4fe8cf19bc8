//! Input gradient through GEMM + col2im: `W^T gout` gives the gradient of
//! the unfolded input, which col2im scatter-adds back into the image with a
//! fixed summation order.
//!
//! With a packed `W^T` (one group) the product runs on the micro-kernels
//! ([`super::panels`]), in bands of output rows and groups of input
//! channels: each task's block of the unfolded gradient stays in cache and
//! is scattered at once ([`banded_col2im`]). Otherwise (several groups) the
//! whole unfolded gradient is made first with `matrixmultiply`, then
//! scattered in parallel over bands of input rows.

use super::packed::PackedWeight;
use super::panels::{product_block, with_matrix_block};
use super::ConvGeometry;
use crate::cblock::CBlock;
use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::gemm::{gemm, MatRef};
use crate::scratch::{scratch_len, with_scratch};
use crate::simd::has_avx2;
use crate::tensor::Tensor;
use crate::winograd::NR;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Input rows per col2im task.
const COL2IM_BAND: usize = 16;

/// Output pixels per band of [`banded_col2im`] at least (whole rows).
const BAND_COLS: usize = 448;

/// The input gradient through col2im; the unfolded gradient `W^T gout` is
/// computed with `packed` (`W^T` packed for the micro-kernels, one group)
/// where given, with `matrixmultiply`'s GEMM otherwise.
pub(super) fn backward_input_col2im<T: Element>(
    gout: &Tensor<T>,
    weight: &Tensor<T>,
    g: &ConvGeometry,
    packed: Option<&PackedWeight<T>>,
) -> Result<Tensor<T>> {
    let hwo = g.ho * g.wo;
    let rows = g.k_rows();
    if let Some(k) = packed {
        let write = |gin: &mut [MaybeUninit<T>]| banded_col2im(gout.data(), k, g, gin);
        // SAFETY: `banded_col2im` writes every element when it returns Ok
        // (its even bands zero every input row first).
        return unsafe { Tensor::write_whole([g.n, g.cin, g.h, g.w], write) };
    }
    let mut gin = Tensor::try_full_for(
        vec![g.n, g.cin, g.h, g.w],
        T::zero(),
        "conv2d_backward_input",
    )?;
    let img_in = g.cin * g.h * g.w;
    let op = "conv2d_backward_input unfolded gradient";
    let len = scratch_len(op, &[&[g.p.groups, rows, hwo]])?;
    with_scratch(op, len, |cols: &mut [T]| {
        for n in 0..g.n {
            let go = &gout.data()[n * g.cout * hwo..(n + 1) * g.cout * hwo];
            for grp in 0..g.p.groups {
                let cog = g.cout_g();
                let wmat = MatRef::row_major(
                    &weight.data()[grp * cog * rows..(grp + 1) * cog * rows],
                    cog,
                    rows,
                );
                let gmat = MatRef::row_major(&go[grp * cog * hwo..(grp + 1) * cog * hwo], cog, hwo);
                gemm(
                    T::one(),
                    wmat.t(),
                    gmat,
                    T::zero(),
                    &mut cols[grp * rows * hwo..(grp + 1) * rows * hwo],
                )?;
            }
            let dst = &mut gin.data_mut()[n * img_in..(n + 1) * img_in];
            let bands = g.h.div_ceil(COL2IM_BAND);
            let cols = &*cols;
            dst.par_chunks_mut(g.h * g.w)
                .enumerate()
                .flat_map_iter(|(c, plane)| {
                    plane
                        .chunks_mut(COL2IM_BAND * g.w)
                        .enumerate()
                        .map(move |(b, band)| (c, b, band))
                })
                .for_each(|(c, b, band)| {
                    let y0 = b * COL2IM_BAND;
                    debug_assert!(b < bands);
                    col2im_band(cols, g, c, y0, band)
                });
        }
        Ok(gin)
    })?
}

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: only used to give rayon tasks disjoint regions of one buffer.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// Output rows per band of [`banded_col2im`]: enough for [`BAND_COLS`]
/// pixels, and enough that bands two apart reach disjoint input rows
/// (`(kh - 1) dh < (rows + 1) sh`).
fn band_rows(g: &ConvGeometry) -> usize {
    let reach = (g.kh - 1) * g.p.dilation.0;
    let min = (reach / g.p.stride.0).max(1);
    min.max(BAND_COLS.div_ceil(g.wo)).min(g.ho)
}

/// Input channels per task of [`banded_col2im`]: their rows of the unfolded
/// gradient (`kh kw` each) are whole micro-panels of `W^T` (`mr` rows).
fn channel_group(g: &ConvGeometry, mr: usize) -> usize {
    let kk = g.kh * g.kw;
    let (mut a, mut b) = (kk, mr);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    mr / a
}

/// The input rows `lo..hi` that output rows `oy0..oy1` reach.
fn reach(g: &ConvGeometry, oy0: usize, oy1: usize) -> (usize, usize) {
    let (sh, dh, ph) = (g.p.stride.0, g.p.dilation.0, g.p.padding.0);
    let lo = (oy0 * sh).saturating_sub(ph).min(g.h);
    let hi = ((oy1 - 1) * sh + (g.kh - 1) * dh + 1)
        .saturating_sub(ph)
        .min(g.h);
    (lo, hi.max(lo))
}

/// col2im of a packed product in bands of output rows and groups of input
/// channels: each task computes its block of the unfolded gradient
/// `W^T gout` (its channels' rows, its band's columns) into scratch and
/// scatter-adds it into the input rows the band reaches. Even bands go
/// first (in parallel: they reach disjoint rows), then odd ones. Each input
/// element sums the contributions of its first band in (ki, kj, oy, ox)
/// order, then those of the next: a fixed order, whatever the number of
/// threads.
///
/// `gin` may start uninitialised: before adding, each even band zeroes its
/// channels' input rows from the first row it reaches to the first row the
/// next even band reaches (from row 0 for the first, to the last row for
/// the last), ranges that cover every row once and that no other task of
/// the even pass touches. This zero-fill, on the task's own rows just
/// before it adds to them, replaced a serial fill of the whole gradient
/// (0.6% of a ResNet-50 call).
///
/// # Errors
/// [`TensorError::TooLarge`] if a task's scratch (its packed columns, its
/// block of the unfolded gradient) cannot be had; then `gin` is not all
/// written.
fn banded_col2im<T: Element>(
    gout: &[T],
    k: &PackedWeight<T>,
    g: &ConvGeometry,
    gin: &mut [MaybeUninit<T>],
) -> Result<()> {
    let hwo = g.ho * g.wo;
    let rows = band_rows(g);
    let bands = g.ho.div_ceil(rows);
    // Every row is zeroed by an even band, so there must be one.
    assert!(bands > 0, "banded_col2im: no output rows");
    // The rows even band `b` zeroes.
    let zeroed = |b: usize| {
        let first = |b: usize| reach(g, b * rows, ((b + 1) * rows).min(g.ho)).0;
        let lo = if b == 0 { 0 } else { first(b) };
        let hi = if b + 2 < bands { first(b + 2) } else { g.h };
        (lo, hi)
    };
    let kk = g.kh * g.kw;
    let mr = k.mr();
    let cg = channel_group(g, mr);
    let groups = g.cin.div_ceil(cg);
    let plane = g.h * g.w;
    let gin_ptr = SendPtr(gin.as_mut_ptr().cast::<T>());
    let gin_len = gin.len();
    for parity in 0..2 {
        let tasks: Vec<(usize, usize)> = (0..g.n)
            .flat_map(|n| (parity..bands).step_by(2).map(move |b| (n, b)))
            .collect();
        tasks.into_par_iter().try_for_each(|(n, b)| {
            let op = "col2im band";
            let (oy0, oy1) = (b * rows, ((b + 1) * rows).min(g.ho));
            let width = (oy1 - oy0) * g.wo;
            let too_large = || TensorError::TooLarge {
                op,
                shape: vec![oy1 - oy0, g.wo],
            };
            let ldacc = width.checked_next_multiple_of(NR).ok_or_else(too_large)?;
            let go = &gout[n * g.cout * hwo..(n + 1) * g.cout * hwo];
            let (lo, hi) = reach(g, oy0, oy1);
            with_matrix_block(go, g.cout, hwo, oy0 * g.wo, width, |bv| {
                (0..groups).into_par_iter().try_for_each(|grp| {
                    let (c0, c1) = (grp * cg, ((grp + 1) * cg).min(g.cin));
                    let (r0, r1) = (c0 * kk, c1 * kk);
                    let panels = r0 / mr..r1.div_ceil(mr);
                    let len = scratch_len(op, &[&[r1 - r0, ldacc]])?;
                    with_scratch::<T, _>(op, len, |acc| {
                        let c = CBlock::of_slice(acc, ldacc, r1 - r0);
                        product_block(k, bv, width, panels, r1 - r0, c, None);
                        for c in c0..c1 {
                            let p = gin_ptr;
                            if parity == 0 {
                                let (z0, z1) = zeroed(b);
                                let start = (n * g.cin + c) * plane + z0 * g.w;
                                assert!(z0 <= lo && hi <= z1 && start + (z1 - z0) * g.w <= gin_len);
                                // SAFETY: input rows z0..z1 of channel c of
                                // image n, inside `gin` (asserted), which no
                                // other task of the even pass touches (see
                                // above); taken as uninitialised and only
                                // written.
                                let owned = unsafe {
                                    std::slice::from_raw_parts_mut(
                                        p.0.add(start).cast::<MaybeUninit<T>>(),
                                        (z1 - z0) * g.w,
                                    )
                                };
                                owned.fill(MaybeUninit::new(T::zero()));
                            }
                            let start = (n * g.cin + c) * plane + lo * g.w;
                            let len = (hi - lo) * g.w;
                            assert!(start + len <= gin_len);
                            // SAFETY: input rows lo..hi of channel c of image
                            // n, inside `gin` (asserted), and initialised:
                            // zeroed above in the even pass, by an even band
                            // before this odd one. Tasks of one parity have
                            // distinct channels or bands two or more apart,
                            // which reach disjoint rows (`band_rows`), and
                            // the parities run one after the other, so no
                            // other task touches these elements now.
                            let dst =
                                unsafe { std::slice::from_raw_parts_mut(p.0.add(start), len) };
                            let acc = &acc[(c - c0) * kk * ldacc..];
                            scatter_band(acc, ldacc, g, (oy0, oy1), lo, dst);
                        }
                    })
                })
            })
        })?;
    }
    Ok(())
}

/// Scatter-adds the unfolded gradient of output rows `oy0..oy1` of one input
/// channel (`acc`, row `(ki, kj)` at `acc[row * ldacc..]`, column
/// `(oy - oy0) * wo + ox`) into its rows `lo..` (`dst`), in (ki, kj, oy, ox)
/// order.
fn scatter_band<T: Element>(
    acc: &[T],
    ldacc: usize,
    g: &ConvGeometry,
    oys: (usize, usize),
    lo: usize,
    dst: &mut [T],
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 (checked).
        unsafe { scatter_band_avx2(acc, ldacc, g, oys, lo, dst) };
        return;
    }
    scatter_band_impl(acc, ldacc, g, oys, lo, dst)
}

/// [`scatter_band`] compiled for AVX2 (the same additions in the same
/// order, in wider registers).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn scatter_band_avx2<T: Element>(
    acc: &[T],
    ldacc: usize,
    g: &ConvGeometry,
    oys: (usize, usize),
    lo: usize,
    dst: &mut [T],
) {
    scatter_band_impl(acc, ldacc, g, oys, lo, dst)
}

#[inline(always)]
fn scatter_band_impl<T: Element>(
    acc: &[T],
    ldacc: usize,
    g: &ConvGeometry,
    (oy0, oy1): (usize, usize),
    lo: usize,
    dst: &mut [T],
) {
    let (sh, sw) = g.p.stride;
    let (ph, pw) = g.p.padding;
    let (dh, dw) = g.p.dilation;
    let hi = lo + dst.len() / g.w;
    for ki in 0..g.kh {
        let mut kj = 0;
        while kj < g.kw {
            let row = ki * g.kw + kj;
            let (ox0, ox1) = valid_range(g.wo, g.w, sw, kj * dw, pw);
            // Stride 2, taps kj and kj + 1 one column apart: they write
            // alternate columns, so both go in one interleaved pass (each
            // element still gets one of them, in kj order).
            let paired = sw == 2 && dw == 1 && kj + 1 < g.kw;
            let (px0, px1) = if paired {
                valid_range(g.wo, g.w, sw, kj + 1, pw)
            } else {
                (0, 0)
            };
            for oy in oy0..oy1 {
                let iy = (oy * sh + ki * dh).wrapping_sub(ph);
                if iy < lo || iy >= hi {
                    continue;
                }
                let prow = &mut dst[(iy - lo) * g.w..(iy - lo + 1) * g.w];
                let s = (oy - oy0) * g.wo;
                let a = &acc[row * ldacc + s..row * ldacc + s + g.wo];
                if !paired {
                    if ox0 < ox1 {
                        let ix0 = ox0 * sw + kj * dw - pw;
                        add_strided(&mut prow[ix0..], sw, &a[ox0..ox1]);
                    }
                    continue;
                }
                let b = &acc[(row + 1) * ldacc + s..(row + 1) * ldacc + s + g.wo];
                add_pair(prow, (kj, pw), a, (ox0, ox1), b, (px0, px1));
            }
            kj += if paired { 2 } else { 1 };
        }
    }
}

/// Stride 2: `d[2 ox + kj - pw] += a[ox]` for `ox` in `ra`, and
/// `d[2 ox + kj + 1 - pw] += b[ox]` for `ox` in `rb`; the two write
/// alternate elements, and the common range goes in one interleaved loop.
#[inline(always)]
fn add_pair<T: Element>(
    d: &mut [T],
    (kj, pw): (usize, usize),
    a: &[T],
    (a0, a1): (usize, usize),
    b: &[T],
    (b0, b1): (usize, usize),
) {
    let (c0, c1) = (a0.max(b0), a1.min(b1));
    let at = |ox: usize, t: usize| 2 * ox + kj + t - pw;
    if c0 < c1 {
        let x0 = at(c0, 0);
        let dd = &mut d[x0..x0 + 2 * (c1 - c0)];
        for (d2, (&x, &y)) in dd.chunks_exact_mut(2).zip(a[c0..c1].iter().zip(&b[c0..c1])) {
            d2[0] += x;
            d2[1] += y;
        }
    }
    let c1 = c1.max(c0);
    for (lo, hi, t, v) in [(a0, a1, 0, a), (b0, b1, 1, b)] {
        for ox in (lo..hi.min(c0)).chain(lo.max(c1)..hi) {
            d[at(ox, t)] += v[ox];
        }
    }
}

/// `d[i * stride] += s[i]`.
#[inline(always)]
fn add_strided<T: Element>(d: &mut [T], stride: usize, s: &[T]) {
    if stride == 1 {
        for (d, &v) in d[..s.len()].iter_mut().zip(s) {
            *d += v;
        }
    } else {
        for (d, &v) in d.iter_mut().step_by(stride).zip(s) {
            *d += v;
        }
    }
}

/// Output positions `o` along one axis with `o * stride + offset - pad` in
/// `0..len`: the range of `o` in `0..out_len`, and the first input index.
pub(super) fn valid_range(
    out_len: usize,
    len: usize,
    stride: usize,
    offset: usize,
    pad: usize,
) -> (usize, usize) {
    // o * stride + offset >= pad  and  o * stride + offset < len + pad.
    let lo = pad.saturating_sub(offset).div_ceil(stride);
    let hi = if len + pad > offset {
        (len + pad - offset).div_ceil(stride).min(out_len)
    } else {
        0
    };
    (lo, hi.max(lo))
}

/// Scatter-adds the unfolded rows of input channel `c` into input rows
/// `y0..` (`band` holds whole rows of that channel's plane). Each element sums
/// its contributions in (ki, kj, oy, ox) order, whatever the banding.
fn col2im_band<T: Element>(cols: &[T], g: &ConvGeometry, c: usize, y0: usize, band: &mut [T]) {
    let hwo = g.ho * g.wo;
    let (sh, sw) = g.p.stride;
    let (ph, pw) = g.p.padding;
    let (dh, dw) = g.p.dilation;
    let y1 = y0 + band.len() / g.w;
    let grp = c / g.cin_g();
    let cl = c % g.cin_g();
    let base = grp * g.k_rows() * hwo;
    for ki in 0..g.kh {
        let (oy0, oy1) = valid_range(g.ho, g.h, sh, ki * dh, ph);
        for kj in 0..g.kw {
            let row = (cl * g.kh + ki) * g.kw + kj;
            let src = &cols[base + row * hwo..base + (row + 1) * hwo];
            let (ox0, ox1) = valid_range(g.wo, g.w, sw, kj * dw, pw);
            if ox0 >= ox1 {
                continue;
            }
            let ix0 = ox0 * sw + kj * dw - pw;
            for oy in oy0..oy1 {
                let iy = oy * sh + ki * dh - ph;
                if iy < y0 || iy >= y1 {
                    continue;
                }
                let prow = &mut band[(iy - y0) * g.w..(iy - y0 + 1) * g.w];
                add_strided(&mut prow[ix0..], sw, &src[oy * g.wo + ox0..oy * g.wo + ox1]);
            }
        }
    }
}
