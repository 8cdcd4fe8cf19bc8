//! Gradient of a convolution with respect to its input: `W^T gout` for
//! 1 x 1 convolutions, the transposed convolution (Winograd or im2col, its
//! kernel cached per weight, except large ones made per call) for
//! stride 1, GEMM + col2im otherwise.

use super::col2im::backward_input_col2im;
use super::dispatch::{input_gradient_winograd_variant, keeps_kernel, WINOGRAD_MIN_TILES_CACHED};
use super::forward::{
    cached_packed, cached_winograd, conv2d_im2col, conv2d_im2col_checked, conv2d_unfolded_packed,
    ForwardCache,
};
use super::gemm_blocks::column_blocks;
use super::packed::{conv1x1_then, PackedWeight};
use super::{depthwise_conv2d_backward_input_then, Conv2dParams, ConvGeometry};
use crate::element::Element;
use crate::epilogue::{apply_all, Epilogue};
use crate::error::{Result, TensorError};
use crate::gemm::MatRef;
use crate::tensor::Tensor;
use crate::winograd::{self, Variant, WinogradKernel};
use rayon::prelude::*;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// The kernel of the convolution that computes a stride-1 convolution's
/// input gradient: channels swapped within each group and taps flipped.
pub fn transpose_flip_kernel<T: Element>(weight: &Tensor<T>, groups: usize) -> Result<Tensor<T>> {
    let [cout, cig, kh, kw] = weight.dims4("transpose_flip_kernel")?;
    if groups == 0 || cout % groups != 0 {
        return Err(TensorError::InvalidParameter {
            op: "transpose_flip_kernel",
            message: format!("{cout} output channels do not split into {groups} groups"),
        });
    }
    let cog = cout / groups;
    let kk = kh * kw;
    let src = weight.data();
    let mut out = vec![T::zero(); src.len()];
    // One task per output row (group, input channel): sequential writes.
    out.par_chunks_mut(cog * kk)
        .enumerate()
        .for_each(|(row, dst)| {
            let (grp, ci) = (row / cig, row % cig);
            for (co, d) in dst.chunks_exact_mut(kk).enumerate() {
                let s = &src[((grp * cog + co) * cig + ci) * kk..][..kk];
                for (d, &v) in d.iter_mut().rev().zip(s) {
                    *d = v;
                }
            }
        });
    Tensor::from_vec([cig * groups, cog, kh, kw], out)
}

/// Kernels derived from one weight for its input-gradient pass, computed on
/// first use and kept (except the large kernels made per call, as in
/// [`super::conv2d_cached`]): for Winograd, the forward convolution's F(2x2, 3x3)
/// kernel (read transposed, see [`winograd::conv3x3_input_gradient`];
/// shared with the forward pass's [`ForwardCache`] when the cache is made
/// by [`BackwardInputCache::sharing`]) or the F(4x4, 3x3) transform of the
/// transposed, flipped kernel, whichever the shapes call for; otherwise the
/// transposed, flipped kernel itself, or packed weights.
///
/// A cache belongs to one weight value and one set of parameters: pass the
/// same ones with it every time, and drop (or replace) the cache when the
/// weight changes. A cache used with a weight of another shape makes
/// [`conv2d_backward_input_cached`] fail with a shape error where it holds a
/// kernel; one used with another weight of the same shape would silently
/// compute with the old kernel.
///
/// As with [`ForwardCache`], a call under another [`crate::SimdCap`] than
/// the one a kept kernel was made for makes its own kernel for that call
/// instead of reading it (the same bits as a fresh cache).
#[derive(Default)]
pub struct BackwardInputCache<T> {
    winograd: Arc<OnceLock<WinogradKernel<T>>>,
    winograd_f4: OnceLock<WinogradKernel<T>>,
    flipped: OnceLock<Tensor<T>>,
    packed: OnceLock<PackedWeight<T>>,
    packed_flipped: OnceLock<PackedWeight<T>>,
}

impl<T> BackwardInputCache<T> {
    /// An empty cache.
    pub fn new() -> Self {
        Self {
            winograd: Arc::new(OnceLock::new()),
            winograd_f4: OnceLock::new(),
            flipped: OnceLock::new(),
            packed: OnceLock::new(),
            packed_flipped: OnceLock::new(),
        }
    }

    /// An empty cache that shares `forward`'s F(2x2, 3x3) Winograd kernel
    /// (`forward` must belong to the same weight and parameters): whichever
    /// pass needs it first makes it, and the weight's Winograd kernel is
    /// kept once instead of once per direction.
    pub fn sharing(forward: &ForwardCache<T>) -> Self {
        Self {
            winograd: forward.winograd.clone(),
            ..Self::new()
        }
    }
}

impl<T> fmt::Debug for BackwardInputCache<T> {
    // Not the kernels' values (as large as the weight, or 16/9 or 4 times
    // it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackwardInputCache")
            .field(
                "winograd",
                &self
                    .winograd
                    .get()
                    .map(|k| (k.out_channels(), k.in_channels())),
            )
            .field(
                "winograd_f4",
                &self
                    .winograd_f4
                    .get()
                    .map(|k| (k.out_channels(), k.in_channels())),
            )
            .field("flipped", &self.flipped.get().is_some())
            .field("packed", &self.packed.get().is_some())
            .finish()
    }
}

/// Input channels per group below which a stride-1 input gradient goes
/// through GEMM + col2im instead of the transposed convolution (whose GEMM
/// would have only that many rows).
const COL2IM_MAX_CHANNELS: usize = 16;

/// Gradient of the convolution with respect to its input, given the output
/// gradient `gout` (N x Cout x Ho x Wo) and the input's spatial size.
pub fn conv2d_backward_input<T: Element>(
    gout: &Tensor<T>,
    weight: &Tensor<T>,
    input_hw: (usize, usize),
    p: Conv2dParams,
) -> Result<Tensor<T>> {
    conv2d_backward_input_cached(gout, weight, input_hw, p, &BackwardInputCache::new())
}

/// [`conv2d_backward_input`] keeping what it derives from `weight` in `cache`
/// for the next call with the same weight and parameters.
pub fn conv2d_backward_input_cached<T: Element>(
    gout: &Tensor<T>,
    weight: &Tensor<T>,
    input_hw: (usize, usize),
    p: Conv2dParams,
    cache: &BackwardInputCache<T>,
) -> Result<Tensor<T>> {
    backward_input(gout, weight, input_hw, p, cache, None)
}

/// [`conv2d_backward_input_cached`] with `then` applied to every element of
/// the result, in place: the same values as applying it afterwards, but
/// where the kernel allows (Winograd, 1 x 1 convolutions) each block is
/// handed to `then` by the task that computed it, while it is in cache,
/// instead of in a second sweep over the whole gradient (see
/// [`Epilogue`]). A saliency walk passes the ReLU rule below the
/// convolution here.
pub fn conv2d_backward_input_then<T: Element>(
    gout: &Tensor<T>,
    weight: &Tensor<T>,
    input_hw: (usize, usize),
    p: Conv2dParams,
    cache: &BackwardInputCache<T>,
    then: Epilogue<'_, T>,
) -> Result<Tensor<T>> {
    backward_input(gout, weight, input_hw, p, cache, Some(then))
}

/// `out` with `then` applied to every element afterwards: the paths whose
/// kernel does not take an epilogue.
fn then_after<T: Element>(
    out: Result<Tensor<T>>,
    then: Option<Epilogue<'_, T>>,
) -> Result<Tensor<T>> {
    let mut out = out?;
    if let Some(then) = then {
        apply_all(out.data_mut(), then)?;
    }
    Ok(out)
}

/// The input gradient by whichever path the shapes call for, with `then`
/// fused where the path has it and applied afterwards otherwise.
fn backward_input<T: Element>(
    gout: &Tensor<T>,
    weight: &Tensor<T>,
    input_hw: (usize, usize),
    p: Conv2dParams,
    cache: &BackwardInputCache<T>,
    then: Option<Epilogue<'_, T>>,
) -> Result<Tensor<T>> {
    let g = backward_geometry(gout, weight, input_hw, p)?;
    let simd = p.kernels.simd;
    if g.is_depthwise() {
        let shape = [g.n, g.cin, g.h, g.w];
        return depthwise_conv2d_backward_input_then(
            gout,
            weight,
            &shape,
            g.depthwise_params(),
            then,
        );
    }
    if g.is_packed_pointwise() {
        let mut made = None;
        let k = cached_packed(
            &cache.packed,
            &mut made,
            weight,
            (g.cin, g.cout),
            simd,
            PackedWeight::transposed_capped,
        )?;
        return conv1x1_then(gout, k, None, then);
    }
    if g.is_pointwise() {
        return then_after(pointwise_backward_input(gout, weight, &g), then);
    }
    let (kh, kw) = (g.kh, g.kw);
    let (dh, dw) = p.dilation;
    let (ph, pw) = p.padding;
    if p.stride == (1, 1)
        && ph <= dh * (kh - 1)
        && pw <= dw * (kw - 1)
        && g.cin_g() >= COL2IM_MAX_CHANNELS
    {
        let tp = Conv2dParams {
            stride: (1, 1),
            padding: (dh * (kh - 1) - ph, dw * (kw - 1) - pw),
            dilation: p.dilation,
            groups: p.groups,
            kernels: p.kernels,
        };
        // The geometry of the transposed convolution (under the same
        // policy).
        let tg = ConvGeometry::new(gout.shape(), &[g.cin, g.cout_g(), kh, kw], tp)?;
        if let Some(variant) = input_gradient_winograd_variant(&tg, WINOGRAD_MIN_TILES_CACHED) {
            if variant == Variant::F2x2 {
                // The forward kernel, read transposed: made for this call
                // only where the forward pass (geometry `g`, not `tg`)
                // makes it per call too.
                let mut made = None;
                let k = cached_winograd(
                    &cache.winograd,
                    keeps_kernel(&g, variant),
                    simd,
                    &mut made,
                    || WinogradKernel::forward_capped(weight, variant, simd),
                )?;
                if (k.out_channels(), k.in_channels()) != (g.cout, g.cin) {
                    return Err(stale_cache(
                        weight,
                        &[k.out_channels(), k.in_channels(), 3, 3],
                    ));
                }
                return winograd::conv3x3_input_gradient_then(gout, k, tp.padding, then);
            }
            // Its own kernel (F(4x4), always kept: `keeps_kernel`).
            let mut made = None;
            let k = cached_winograd(
                &cache.winograd_f4,
                keeps_kernel(&g, variant),
                simd,
                &mut made,
                || WinogradKernel::backward_input_capped(weight, variant, simd),
            )?;
            if (k.out_channels(), k.in_channels()) != (g.cin, g.cout) {
                return Err(stale_cache(
                    weight,
                    &[k.in_channels(), k.out_channels(), 3, 3],
                ));
            }
            return winograd::conv3x3_then(gout, k, tp.padding, then);
        }
        let wt = match cache.flipped.get() {
            Some(w) => w,
            None => {
                let w = transpose_flip_kernel(weight, p.groups)?;
                cache.flipped.get_or_init(|| w)
            }
        };
        if wt.shape() != [g.cin, g.cout_g(), kh, kw] {
            return Err(stale_cache(weight, wt.shape()));
        }
        if p.groups == 1 {
            let mut made = None;
            let k = cached_packed(
                &cache.packed_flipped,
                &mut made,
                wt,
                (g.cin, tg.unfolded_rows()),
                simd,
                PackedWeight::forward_capped,
            )?;
            return then_after(conv2d_unfolded_packed(gout, k, None, &tg), then);
        }
        return then_after(conv2d_im2col_checked(gout, wt, None, &tg), then);
    }
    let mut made = None;
    let packed = if g.p.groups == 1 {
        Some(cached_packed(
            &cache.packed,
            &mut made,
            weight,
            (g.unfolded_rows(), g.cout),
            simd,
            PackedWeight::transposed_capped,
        )?)
    } else {
        None
    };
    then_after(backward_input_col2im(gout, weight, &g, packed), then)
}

/// The error of a cache used with a weight of another shape than the one it
/// was made for (`made_for`, in the forward weight's layout for Winograd).
fn stale_cache<T: Element>(weight: &Tensor<T>, made_for: &[usize]) -> TensorError {
    TensorError::ShapeMismatch {
        op: "conv2d_backward_input_cached (cache made for another weight)",
        left: weight.shape().to_vec(),
        right: made_for.to_vec(),
    }
}

/// Input gradient of a 1 x 1, stride-1, unpadded convolution: per group,
/// `W^T gout`, with `W^T` a strided view of the weight (no copy).
fn pointwise_backward_input<T: Element>(
    gout: &Tensor<T>,
    weight: &Tensor<T>,
    g: &ConvGeometry,
) -> Result<Tensor<T>> {
    // The transposed convolution: gout's channels in, the input's out.
    let tg = ConvGeometry::new(
        gout.shape(),
        &[g.cin, g.cout_g(), 1, 1],
        Conv2dParams {
            groups: g.p.groups,
            ..Conv2dParams::default()
        },
    )?;
    let (cog, cig) = (g.cout_g(), g.cin_g());
    let w = weight.data();
    let mut gin = Tensor::try_full_for(
        vec![g.n, g.cin, g.h, g.w],
        T::zero(),
        "conv2d_backward_input",
    )?;
    column_blocks(gout, &tg, &mut gin, &|grp, r0, r1| MatRef {
        data: &w[grp * cog * cig + r0..(grp + 1) * cog * cig],
        rows: r1 - r0,
        cols: cog,
        rs: 1,
        cs: cig,
    })?;
    Ok(gin)
}

/// [`conv2d_backward_input`] without Winograd (the reference for it).
pub fn backward_input_im2col<T: Element>(
    gout: &Tensor<T>,
    weight: &Tensor<T>,
    input_hw: (usize, usize),
    p: Conv2dParams,
) -> Result<Tensor<T>> {
    let g = backward_geometry(gout, weight, input_hw, p)?;
    let (dh, dw) = p.dilation;
    let (ph, pw) = p.padding;
    if p.stride == (1, 1) && ph <= dh * (g.kh - 1) && pw <= dw * (g.kw - 1) {
        let wt = transpose_flip_kernel(weight, p.groups)?;
        let tp = Conv2dParams {
            stride: (1, 1),
            padding: (dh * (g.kh - 1) - ph, dw * (g.kw - 1) - pw),
            dilation: p.dilation,
            groups: p.groups,
            kernels: p.kernels,
        };
        return conv2d_im2col(gout, &wt, None, tp);
    }
    backward_input_col2im(gout, weight, &g, None)
}

/// Checks the shapes of an input-gradient call; the geometry of the forward
/// convolution.
fn backward_geometry<T: Element>(
    gout: &Tensor<T>,
    weight: &Tensor<T>,
    input_hw: (usize, usize),
    p: Conv2dParams,
) -> Result<ConvGeometry> {
    let [n, cout, ho, wo] = gout.dims4("conv2d_backward_input")?;
    let [wc, cig, _, _] = weight.dims4("conv2d_backward_input")?;
    let cin = cig
        .checked_mul(p.groups.max(1))
        .ok_or_else(|| TensorError::InvalidParameter {
            op: "conv2d_backward_input",
            message: format!("{} groups of {cig} input channels overflow", p.groups),
        })?;
    let g = ConvGeometry::new(&[n, cin, input_hw.0, input_hw.1], weight.shape(), p)?;
    if wc != cout || g.ho != ho || g.wo != wo {
        return Err(TensorError::ShapeMismatch {
            op: "conv2d_backward_input",
            left: gout.shape().to_vec(),
            right: vec![n, wc, g.ho, g.wo],
        });
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::reference::{naive_backward_input, seq};
    use crate::conv::window_output_len;

    #[test]
    fn backward_input_matches_the_adjoint_on_every_path() {
        // col2im (few input channels, stride 1 and 2), transposed conv,
        // Winograd (cached and not), 1 x 1.
        let cases = [
            ([3, 3, 3], [64, 3, 3, 3], Conv2dParams::new(1, 1)),
            ([5, 7, 2], [6, 2, 3, 3], Conv2dParams::new(2, 1)),
            ([6, 6, 1], [5, 20, 2, 2], Conv2dParams::new(1, 1)),
            ([9, 8, 0], [16, 18, 3, 3], Conv2dParams::new(1, 1)),
            ([4, 4, 0], [20, 16, 1, 1], Conv2dParams::new(2, 0)),
            ([5, 4, 0], [24, 20, 1, 1], Conv2dParams::default()),
            (
                [3, 5, 0],
                [24, 10, 1, 1],
                Conv2dParams {
                    groups: 2,
                    ..Conv2dParams::default()
                },
            ),
        ];
        for ([h, w, _], ws, p) in cases {
            let wt = seq(&ws, 5);
            let ho = window_output_len(h, ws[2], p.stride.0, p.padding.0, 1).unwrap();
            let wo = window_output_len(w, ws[3], p.stride.1, p.padding.1, 1).unwrap();
            let g = seq(&[1, ws[0], ho, wo], 3);
            let want = naive_backward_input(&g, &wt, (h, w), p);
            let cache = BackwardInputCache::new();
            for _ in 0..2 {
                let got = conv2d_backward_input_cached(&g, &wt, (h, w), p, &cache).unwrap();
                assert!(got.max_abs_diff(&want).unwrap() < 1e-10, "{ws:?} {p:?}");
            }
            let got = backward_input_im2col(&g, &wt, (h, w), p).unwrap();
            assert!(got.max_abs_diff(&want).unwrap() < 1e-10, "{ws:?} {p:?}");
        }
    }

    #[test]
    fn cached_winograd_input_gradient_matches_im2col() {
        // 14 x 12 output: 42 tiles, enough for Winograd with a cached kernel.
        let p = Conv2dParams::new(1, 1);
        let wt = seq(&[16, 18, 3, 3], 5);
        let g = seq(&[2, 16, 14, 12], 3);
        let want = backward_input_im2col(&g, &wt, (14, 12), p).unwrap();
        let cache = BackwardInputCache::new();
        for _ in 0..2 {
            let got = conv2d_backward_input_cached(&g, &wt, (14, 12), p, &cache).unwrap();
            assert!(got.max_abs_diff(&want).unwrap() < 1e-10);
        }
        assert!(cache.winograd.get().is_some());
    }

    #[test]
    fn cached_f4_input_gradient_matches_im2col() {
        // 30 x 28 input gradient (the transposed convolution's output):
        // F(4x4), with padding 0, 1 and 2.
        let wt = seq(&[16, 18, 3, 3], 5);
        for pad in 0..3 {
            let p = Conv2dParams::new(1, pad);
            let (h, w) = (30, 28);
            let g = seq(&[2, 16, h + 2 * pad - 2, w + 2 * pad - 2], 3);
            let want = backward_input_im2col(&g, &wt, (h, w), p).unwrap();
            let cache = BackwardInputCache::new();
            for _ in 0..2 {
                let got = conv2d_backward_input_cached(&g, &wt, (h, w), p, &cache).unwrap();
                assert!(got.max_abs_diff(&want).unwrap() < 1e-10);
            }
            assert!(cache.winograd_f4.get().is_some() && cache.winograd.get().is_none());
        }
    }

    /// With an epilogue, every path gives the bits of the plain input
    /// gradient with the epilogue applied afterwards: each element exactly
    /// once (the epilogue here is not idempotent), with its own index, after
    /// its last write. The paths: Winograd F(2x2) on the forward kernel
    /// read transposed and F(4x4) on its own kernel, with tile blocks that
    /// split rows of tiles; 1 x 1 packed, with a partial column panel, with
    /// whole rows per task and with blocks of columns, and with more input
    /// channels than one block of steps; and the unfused
    /// ones (col2im, the flipped kernel, grouped 1 x 1).
    #[test]
    fn an_epilogue_is_applied_once_per_element_on_every_path() {
        let then = |v: &mut [f32], offset: usize| {
            for (i, x) in v.iter_mut().enumerate() {
                *x = *x * 3.0 + ((offset + i) % 7) as f32;
            }
            Ok(())
        };
        let cases = [
            ([14, 12], [16, 18, 3, 3], Conv2dParams::new(1, 1)),
            ([30, 28], [16, 18, 3, 3], Conv2dParams::new(1, 1)),
            ([61, 37], [20, 17, 3, 3], Conv2dParams::new(1, 0)),
            ([9, 7], [40, 24, 1, 1], Conv2dParams::default()),
            ([20, 20], [24, 40, 1, 1], Conv2dParams::default()),
            ([6, 6], [24, 300, 1, 1], Conv2dParams::default()),
            ([5, 7], [6, 2, 3, 3], Conv2dParams::new(2, 1)),
            ([6, 6], [5, 20, 2, 2], Conv2dParams::new(1, 1)),
            (
                [3, 5],
                [24, 10, 1, 1],
                Conv2dParams {
                    groups: 2,
                    ..Conv2dParams::default()
                },
            ),
        ];
        for ([h, w], ws, p) in cases {
            let wt = crate::testing::seq::<f32>(&ws, 5);
            let ho = window_output_len(h, ws[2], p.stride.0, p.padding.0, 1).unwrap();
            let wo = window_output_len(w, ws[3], p.stride.1, p.padding.1, 1).unwrap();
            let g = crate::testing::seq::<f32>(&[2, ws[0], ho, wo], 3);
            let cache = BackwardInputCache::new();
            let mut want = conv2d_backward_input_cached(&g, &wt, (h, w), p, &cache).unwrap();
            then(want.data_mut(), 0).unwrap();
            let got = conv2d_backward_input_then(&g, &wt, (h, w), p, &cache, &then).unwrap();
            assert_eq!(got.shape(), want.shape());
            let differ = got
                .data()
                .iter()
                .zip(want.data())
                .position(|(a, b)| a.to_bits() != b.to_bits());
            assert_eq!(differ, None, "{ws:?} {p:?}: first differing element");
        }
        // An error of the epilogue is the call's error.
        let fail = |_: &mut [f32], _: usize| {
            Err(TensorError::InvalidParameter {
                op: "test epilogue",
                message: "refused".into(),
            })
        };
        let (wt, p) = (
            crate::testing::seq::<f32>(&[16, 18, 3, 3], 5),
            Conv2dParams::new(1, 1),
        );
        let g = crate::testing::seq::<f32>(&[1, 16, 14, 12], 3);
        let cache = BackwardInputCache::new();
        let e = conv2d_backward_input_then(&g, &wt, (14, 12), p, &cache, &fail).unwrap_err();
        assert!(matches!(e, TensorError::InvalidParameter { .. }));
    }

    /// An input-gradient cache (sharing a forward cache) filled under one
    /// SIMD cap and then used under another cap or Winograd policy gives,
    /// on every path (F(2x2) on the forward kernel, F(4x4), 1 x 1 packed,
    /// col2im on the packed transpose, the flipped kernel packed), the
    /// bits of a fresh cache under that policy.
    #[test]
    fn a_cache_filled_under_one_policy_gives_the_bits_of_another() {
        use crate::policy::{KernelPolicy, SimdCap, WinogradPolicy};
        let cases = [
            ([14, 12], [16, 18, 3, 3], Conv2dParams::new(1, 1)),
            ([30, 28], [16, 18, 3, 3], Conv2dParams::new(1, 1)),
            ([9, 7], [40, 24, 1, 1], Conv2dParams::default()),
            ([11, 9], [7, 5, 3, 3], Conv2dParams::new(2, 1)),
            ([5, 5], [30, 20, 3, 3], Conv2dParams::new(1, 1)),
        ];
        for ([h, w], ws, p) in cases {
            let wt = seq(&ws, 5).cast::<f32>();
            let ho = window_output_len(h, ws[2], p.stride.0, p.padding.0, 1).unwrap();
            let wo = window_output_len(w, ws[3], p.stride.1, p.padding.1, 1).unwrap();
            let g = seq(&[2, ws[0], ho, wo], 3).cast::<f32>();
            for fill in SimdCap::ALL {
                let forward = ForwardCache::new();
                let cache = BackwardInputCache::sharing(&forward);
                let filled = p.with_kernels(KernelPolicy::new(WinogradPolicy::Auto, fill));
                let first = conv2d_backward_input_cached(&g, &wt, (h, w), filled, &cache).unwrap();
                for policy in KernelPolicy::all() {
                    let q = p.with_kernels(policy);
                    let got = conv2d_backward_input_cached(&g, &wt, (h, w), q, &cache).unwrap();
                    let fresh = BackwardInputCache::new();
                    let want = conv2d_backward_input_cached(&g, &wt, (h, w), q, &fresh).unwrap();
                    assert_eq!(
                        got.data(),
                        want.data(),
                        "{ws:?} filled {fill}, run {policy}"
                    );
                }
                let again = conv2d_backward_input_cached(&g, &wt, (h, w), filled, &cache).unwrap();
                assert_eq!(again.data(), first.data());
            }
        }
    }

    #[test]
    fn a_cache_used_with_a_weight_of_another_shape_is_an_error() {
        let p = Conv2dParams::new(1, 1);
        for hw in [(14, 12), (5, 4), (28, 28)] {
            // Winograd (42 tiles), the flipped kernel (6 tiles), F(4x4).
            let g = seq(&[1, 16, hw.0, hw.1], 3);
            let cache = BackwardInputCache::new();
            conv2d_backward_input_cached(&g, &seq(&[16, 18, 3, 3], 5), hw, p, &cache).unwrap();
            let e = conv2d_backward_input_cached(&g, &seq(&[16, 20, 3, 3], 5), hw, p, &cache)
                .unwrap_err();
            assert!(matches!(e, TensorError::ShapeMismatch { .. }), "{hw:?}");
        }
    }
}
