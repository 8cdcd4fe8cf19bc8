//! The forward convolution: Winograd where it wins, im2col + GEMM
//! otherwise (and always for [`conv2d_im2col`], the reference), plus bias.

use super::dispatch::{
    cached_winograd_variant, keeps_kernel, use_winograd, WINOGRAD_MIN_TILES,
    WINOGRAD_MIN_TILES_CACHED,
};
use super::gemm_blocks::{
    conv2d_column_blocks, conv2d_shared_panel, CHANNEL_BLOCK, SHARED_PANEL_COLS,
};
use super::packed::{conv1x1, PackedWeight};
use super::panels::panel_product;
use super::{depthwise_conv2d, Conv2dParams, ConvGeometry};
use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::policy::SimdCap;
use crate::tensor::Tensor;
use crate::winograd::{self, Variant, WinogradKernel};
use rayon::prelude::*;
use std::fmt;
use std::mem::MaybeUninit;
use std::sync::{Arc, OnceLock};

/// Convolution forward: `input` N x Cin x H x W, `weight` Cout x Cin/groups x kh x kw,
/// optional `bias` of Cout; returns N x Cout x Ho x Wo.
///
/// A Winograd kernel (always F(2x2, 3x3), the cheaper to transform) is
/// transformed on every call; a caller that convolves with the same weight
/// again should keep a [`ForwardCache`] and call [`conv2d_cached`]. Which
/// path a call takes is decided by the shapes and `p.kernels` (see
/// [`crate::KernelPolicy`]).
///
/// The convolutions that do not go through Winograd run im2col +
/// `matrixmultiply` (or, depthwise ones, the direct depthwise kernels),
/// which the SIMD cap does not cover.
pub fn conv2d<T: Element>(
    input: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    p: Conv2dParams,
) -> Result<Tensor<T>> {
    let g = ConvGeometry::new(input.shape(), weight.shape(), p)?;
    check_bias(&g, bias)?;
    if g.is_depthwise() {
        return depthwise_conv2d(input, weight, bias, g.depthwise_params());
    }
    if use_winograd(&g, WINOGRAD_MIN_TILES) {
        let k = WinogradKernel::forward_capped(weight, Variant::F2x2, p.kernels.simd)?;
        return winograd::conv3x3(input, &k, p.padding, bias.map(|b| b.data()));
    }
    conv2d_im2col_checked(input, weight, bias, &g)
}

/// What a forward convolution derives from its weight, computed on first use
/// and kept (except the large F(2x2) kernels [`conv2d_cached`] makes per
/// call): the Winograd transform `U = G g G^T` of a 3 x 3 kernel (for
/// F(2x2, 3x3) or F(4x4, 3x3), whichever the shapes call for), or the weight
/// packed as a matrix for the micro-kernels ([`PackedWeight`]), in
/// micro-panels.
///
/// A cache belongs to one weight value and one set of parameters: pass the
/// same ones with it every time, and drop (or replace) the cache when the
/// weight changes. A cache used with a weight of another shape makes
/// [`conv2d_cached`] fail with a shape error where it holds a kernel; one
/// used with another weight of the same shape would silently compute with
/// the old kernel.
///
/// Each kernel kept is made for the micro-kernel (and transforms) of the
/// [`crate::SimdCap`] of the call that made it. A call under a cap whose
/// micro-kernel differs never reads it: it makes its own for that call
/// (the same bits as a fresh cache under its policy, at the cost of the
/// transform or packing on each such call). A [`crate::WinogradPolicy`]
/// that picks another variant, or no Winograd, uses and fills the cache's
/// other slots.
#[derive(Default)]
pub struct ForwardCache<T> {
    /// The F(2x2) kernel, shared with the input-gradient caches made by
    /// [`super::BackwardInputCache::sharing`] (which read it transposed).
    pub(super) winograd: Arc<OnceLock<WinogradKernel<T>>>,
    winograd_f4: OnceLock<WinogradKernel<T>>,
    packed: OnceLock<PackedWeight<T>>,
}

impl<T> ForwardCache<T> {
    /// An empty cache.
    pub fn new() -> Self {
        Self {
            winograd: Arc::new(OnceLock::new()),
            winograd_f4: OnceLock::new(),
            packed: OnceLock::new(),
        }
    }

    /// Whether a transformed or packed kernel has been computed and kept.
    pub fn is_built(&self) -> bool {
        self.winograd.get().is_some()
            || self.winograd_f4.get().is_some()
            || self.packed.get().is_some()
    }
}

impl<T> fmt::Debug for ForwardCache<T> {
    // Not the kernel's values: a transformed kernel holds 16/9 (F(2x2)) or
    // 4 (F(4x4)) times as many as the weight.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardCache")
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
            .field(
                "packed",
                &self
                    .packed
                    .get()
                    .map(|k| (k.out_channels(), k.in_channels())),
            )
            .finish()
    }
}

/// [`conv2d`] keeping what it derives from `weight` (the Winograd kernel, or
/// the packed 1 x 1 kernel) in `cache` for the next call with the same
/// weight and parameters.
///
/// The other one-group convolutions run on the weight packed once for the
/// Winograd micro-kernels: 1 x 1 stride-1 ones through [`conv1x1`] (the
/// input read in place), the rest on the unfolded input (im2col), where
/// [`conv2d`] uses `matrixmultiply`'s GEMM; the two agree to rounding
/// (another summation order).
///
/// Since the kernel transform is paid once, Winograd is chosen for smaller
/// outputs than in [`conv2d`] (the threshold of the cached input gradient,
/// 16 tiles instead of 100: 7 x 7 outputs qualify, 5 x 5 do not), and
/// F(4x4, 3x3) for outputs of 56 x 56 and more, or 28 x 28 and more with
/// at most 128 x 128 channels (F(2x2, 3x3) otherwise). Where
/// both take the same path (F(2x2) Winograd) the results are bit-identical
/// to [`conv2d`]'s (same kernel transform, same summation order).
///
/// One exception to the caching: a large F(2x2) kernel (8 MiB or more in
/// `f32`) over 49 tiles or more per image (VGG16's 512-channel layers at
/// 28 x 28 and 14 x 14) is transformed on every call and dropped after it,
/// in both directions: the transform costs little beside such a layer's
/// product, and the kernel 16/9 of its weight in memory. The results are
/// the same bits.
pub fn conv2d_cached<T: Element>(
    input: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    p: Conv2dParams,
    cache: &ForwardCache<T>,
) -> Result<Tensor<T>> {
    let g = ConvGeometry::new(input.shape(), weight.shape(), p)?;
    check_bias(&g, bias)?;
    if g.is_depthwise() {
        return depthwise_conv2d(input, weight, bias, g.depthwise_params());
    }
    let simd = p.kernels.simd;
    if let Some(variant) = cached_winograd_variant(&g, WINOGRAD_MIN_TILES_CACHED) {
        let slot = match variant {
            Variant::F2x2 => &*cache.winograd,
            Variant::F4x4 => &cache.winograd_f4,
        };
        let keep = keeps_kernel(&g, variant);
        let mut made = None;
        let k = cached_winograd(slot, keep, simd, &mut made, || {
            WinogradKernel::forward_capped(weight, variant, simd)
        })?;
        if (k.out_channels(), k.in_channels()) != (g.cout, g.cin) {
            return Err(TensorError::ShapeMismatch {
                op: "conv2d_cached (cache made for another weight)",
                left: weight.shape().to_vec(),
                right: vec![k.out_channels(), k.in_channels(), 3, 3],
            });
        }
        return winograd::conv3x3(input, k, p.padding, bias.map(|b| b.data()));
    }
    if g.p.groups == 1 {
        let mut made = None;
        let k = cached_packed(
            &cache.packed,
            &mut made,
            weight,
            (g.cout, g.unfolded_rows()),
            simd,
            PackedWeight::forward_capped,
        )?;
        let bias = bias.map(|b| b.data());
        if g.is_pointwise() {
            return conv1x1(input, k, bias);
        }
        return conv2d_unfolded_packed(input, k, bias, &g);
    }
    conv2d_im2col_checked(input, weight, bias, &g)
}

/// A one-group convolution as `W X` with `X` the unfolded input of each
/// image, packed into micro-panels block by block ([`panel_product`]).
pub(super) fn conv2d_unfolded_packed<T: Element>(
    input: &Tensor<T>,
    k: &PackedWeight<T>,
    bias: Option<&[T]>,
    g: &ConvGeometry,
) -> Result<Tensor<T>> {
    let write = |out: &mut [MaybeUninit<T>]| panel_product(k, input.data(), g, bias, out);
    // SAFETY: `panel_product` writes every element of the output when it
    // returns Ok (`write_whole` keeps the buffer only then).
    unsafe { Tensor::write_whole([g.n, g.cout, g.ho, g.wo], write) }
}

/// The Winograd kernel in `slot` if it was made for `simd`'s micro-kernel
/// ([`WinogradKernel::built_for`]); otherwise one built by `build` (for
/// `simd`): kept in the slot if the slot is empty and `keep`, else held in
/// `made` for this call only (see [`super::dispatch::keeps_kernel`]; a
/// slot filled under another cap keeps its kernel).
pub(super) fn cached_winograd<'a, T: Element>(
    slot: &'a OnceLock<WinogradKernel<T>>,
    keep: bool,
    simd: SimdCap,
    made: &'a mut Option<WinogradKernel<T>>,
    build: impl FnOnce() -> Result<WinogradKernel<T>>,
) -> Result<&'a WinogradKernel<T>> {
    cached_or_made(slot, keep, |k| k.built_for(simd), made, build)
}

/// The packed weight in `slot` if it was packed for `simd`'s
/// micro-kernel, else packed from `weight` by `pack` (for `simd`): kept in
/// the slot if it is empty, held in `made` for this call otherwise; an
/// error if the kernel has other dimensions than `(out, in)` (a cache used
/// with another shape of weight).
pub(super) fn cached_packed<'a, T: Element>(
    slot: &'a OnceLock<PackedWeight<T>>,
    made: &'a mut Option<PackedWeight<T>>,
    weight: &Tensor<T>,
    (out, inp): (usize, usize),
    simd: SimdCap,
    pack: fn(&Tensor<T>, SimdCap) -> Result<PackedWeight<T>>,
) -> Result<&'a PackedWeight<T>> {
    let k = cached_or_made(
        slot,
        true,
        |k| k.built_for(simd),
        made,
        || pack(weight, simd),
    )?;
    if (k.out_channels(), k.in_channels()) != (out, inp) {
        return Err(TensorError::ShapeMismatch {
            op: "packed conv weight (cache made for another weight)",
            left: weight.shape().to_vec(),
            right: vec![k.out_channels(), k.in_channels(), 1, 1],
        });
    }
    Ok(k)
}

/// The kernel in `slot` if it `fits` this call; otherwise one made by
/// `build`, kept in the slot if the slot is empty and `keep`, else held in
/// `made` for this call only. A slot that holds a kernel that does not fit
/// (made under another SIMD cap) keeps it.
fn cached_or_made<'a, K>(
    slot: &'a OnceLock<K>,
    keep: bool,
    fits: impl Fn(&K) -> bool,
    made: &'a mut Option<K>,
    build: impl FnOnce() -> Result<K>,
) -> Result<&'a K> {
    if let Some(k) = slot.get() {
        if fits(k) {
            return Ok(k);
        }
        return Ok(made.insert(build()?));
    }
    let k = build()?;
    if !keep {
        return Ok(made.insert(k));
    }
    // `Some` when another call filled the slot since it was read.
    let rejected = slot.set(k).err();
    match (slot.get(), rejected) {
        (Some(k), _) if fits(k) => Ok(k),
        (_, Some(k)) => Ok(made.insert(k)),
        // The slot took this kernel, so it holds one that fits.
        (_, None) => Err(TensorError::InvalidParameter {
            op: "conv kernel cache",
            message: "a filled cache slot reads empty".into(),
        }),
    }
}

fn check_bias<T: Element>(g: &ConvGeometry, bias: Option<&Tensor<T>>) -> Result<()> {
    if let Some(b) = bias {
        if b.shape() != [g.cout] {
            return Err(TensorError::ShapeMismatch {
                op: "conv2d bias",
                left: vec![g.cout],
                right: b.shape().to_vec(),
            });
        }
    }
    Ok(())
}

/// [`conv2d`] always through im2col + GEMM (the reference for Winograd).
pub fn conv2d_im2col<T: Element>(
    input: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    p: Conv2dParams,
) -> Result<Tensor<T>> {
    let g = ConvGeometry::new(input.shape(), weight.shape(), p)?;
    check_bias(&g, bias)?;
    conv2d_im2col_checked(input, weight, bias, &g)
}

pub(super) fn conv2d_im2col_checked<T: Element>(
    input: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    g: &ConvGeometry,
) -> Result<Tensor<T>> {
    let hwo = g.ho * g.wo;
    let mut out: Tensor<T> =
        Tensor::try_full_for(vec![g.n, g.cout, g.ho, g.wo], T::zero(), "conv2d")?;
    if !g.is_pointwise() && hwo <= SHARED_PANEL_COLS && g.cout_g() > CHANNEL_BLOCK {
        conv2d_shared_panel(input, weight, g, &mut out)?;
    } else {
        conv2d_column_blocks(input, weight, g, &mut out)?;
    }
    if let Some(b) = bias {
        add_channel_bias(&mut out, b.data());
    }
    Ok(out)
}

/// Adds `bias[c]` to every element of channel `c` of an N x C x ... tensor.
pub fn add_channel_bias<T: Element>(out: &mut Tensor<T>, bias: &[T]) {
    let c = bias.len();
    let inner = out.len() / (out.shape()[0] * c).max(1);
    out.data_mut()
        .par_chunks_mut(inner.max(1))
        .enumerate()
        .for_each(|(i, plane)| {
            let b = bias[i % c];
            plane.iter_mut().for_each(|v| *v += b);
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::reference::{naive, seq};

    #[test]
    fn forward_matches_direct_convolution() {
        let cases = [
            (
                [2, 4, 9, 7],
                [6, 2, 3, 2],
                Conv2dParams {
                    stride: (2, 1),
                    padding: (1, 2),
                    dilation: (1, 2),
                    groups: 2,
                    ..Conv2dParams::default()
                },
            ),
            ([1, 3, 5, 5], [4, 3, 1, 1], Conv2dParams::default()),
            ([1, 2, 40, 40], [3, 2, 3, 3], Conv2dParams::new(1, 1)),
        ];
        for (xs, ws, p) in cases {
            let x = seq(&xs, 7);
            let w = seq(&ws, 5);
            let got = conv2d(&x, &w, None, p).unwrap();
            let want = naive(&x, &w, p);
            assert!(got.max_abs_diff(&want).unwrap() < 1e-12, "{p:?}");
        }
    }

    #[test]
    fn every_path_matches_direct_convolution() {
        // (input, weight, params): shared panel (small image, many output
        // channels), pointwise split by channels, strided, Winograd, grouped.
        let cases = [
            ([1, 3, 9, 8], [70, 3, 3, 3], Conv2dParams::new(2, 1)),
            ([2, 40, 5, 6], [80, 40, 1, 1], Conv2dParams::default()),
            ([1, 20, 21, 23], [18, 20, 3, 3], Conv2dParams::new(1, 1)),
            ([1, 17, 12, 13], [16, 17, 3, 3], Conv2dParams::new(1, 0)),
            ([1, 4, 7, 7], [6, 2, 3, 3], {
                let mut p = Conv2dParams::new(1, 2);
                p.groups = 2;
                p
            }),
        ];
        for (xs, ws, p) in cases {
            let x = seq(&xs, 7);
            let w = seq(&ws, 5);
            let got = conv2d(&x, &w, None, p).unwrap();
            let want = naive(&x, &w, p);
            assert!(
                got.max_abs_diff(&want).unwrap() < 1e-10,
                "{xs:?} {ws:?} {p:?}"
            );
        }
    }

    #[test]
    fn cached_forward_is_bit_identical_to_the_uncached_winograd_path() {
        // 20 x 20 output: 100 tiles, Winograd with and without a cache.
        let x = seq(&[2, 16, 20, 20], 7).cast::<f32>();
        let w = seq(&[24, 16, 3, 3], 5).cast::<f32>();
        let b = seq(&[24], 3).cast::<f32>();
        let p = Conv2dParams::new(1, 1);
        let want = conv2d(&x, &w, Some(&b), p).unwrap();
        let cache = ForwardCache::new();
        assert!(!cache.is_built());
        for _ in 0..2 {
            let got = conv2d_cached(&x, &w, Some(&b), p, &cache).unwrap();
            assert_eq!(got.data(), want.data());
            assert!(cache.is_built());
        }
    }

    #[test]
    fn cached_forward_takes_winograd_from_16_tiles() {
        // 7 x 7 output (16 tiles): im2col without a cache, Winograd with.
        let p = Conv2dParams::new(1, 1);
        let (x, w) = (seq(&[1, 16, 7, 7], 7), seq(&[20, 16, 3, 3], 5));
        let cache = ForwardCache::new();
        let got = conv2d_cached(&x, &w, None, p, &cache).unwrap();
        assert!(cache.is_built());
        assert!(got.max_abs_diff(&naive(&x, &w, p)).unwrap() < 1e-10);
        let (x, w) = (x.cast::<f32>(), w.cast::<f32>());
        let k = WinogradKernel::forward(&w).unwrap();
        let want = winograd::conv3x3(&x, &k, p.padding, None).unwrap();
        let got = conv2d_cached(&x, &w, None, p, &ForwardCache::new()).unwrap();
        assert_eq!(got.data(), want.data());
        // 5 x 5 (9 tiles): no Winograd; the cached call unfolds the input
        // and runs the packed weight (kept), the uncached one matrixmultiply.
        let x = seq(&[1, 16, 5, 5], 7);
        let w = seq(&[20, 16, 3, 3], 5);
        let cache = ForwardCache::new();
        let got = conv2d_cached(&x, &w, None, p, &cache).unwrap();
        assert!(cache.is_built());
        assert!(got.max_abs_diff(&naive(&x, &w, p)).unwrap() < 1e-10);
        let (x, w) = (x.cast::<f32>(), w.cast::<f32>());
        let got = conv2d_cached(&x, &w, None, p, &ForwardCache::new()).unwrap();
        let want = conv2d(&x, &w, None, p).unwrap();
        let max = want.max_abs();
        assert!(got.max_abs_diff(&want).unwrap() < 1e-6 * max);
    }

    #[test]
    fn cached_forward_takes_f4_on_large_outputs() {
        // 28 x 29 output: F(4x4) (its own cache slot), exact in f64, and the
        // same bits as the F(4x4) kernel run directly in f32.
        let p = Conv2dParams::new(1, 1);
        let (x, w) = (seq(&[2, 16, 28, 29], 7), seq(&[20, 16, 3, 3], 5));
        let b = seq(&[20], 3);
        let cache = ForwardCache::new();
        let got = conv2d_cached(&x, &w, Some(&b), p, &cache).unwrap();
        assert!(cache.winograd_f4.get().is_some() && cache.winograd.get().is_none());
        let want = conv2d_im2col(&x, &w, Some(&b), p).unwrap();
        assert!(got.max_abs_diff(&want).unwrap() < 1e-10);
        let (x, w) = (x.cast::<f32>(), w.cast::<f32>());
        let k = WinogradKernel::forward_with(&w, Variant::F4x4).unwrap();
        let want = winograd::conv3x3(&x, &k, p.padding, None).unwrap();
        let got = conv2d_cached(&x, &w, None, p, &ForwardCache::new()).unwrap();
        assert_eq!(got.data(), want.data());
        // 27 x 27, and 28 x 28 with 130 x 128 channels: F(2x2).
        for (c, hw) in [(16, 27), (130, 28)] {
            let (x, w) = (seq(&[1, c, hw, hw], 7), seq(&[128, c, 3, 3], 5));
            let cache = ForwardCache::new();
            conv2d_cached(&x, &w, None, p, &cache).unwrap();
            assert!(cache.winograd.get().is_some() && cache.winograd_f4.get().is_none());
        }
    }

    /// A large F(2x2) kernel over many tiles is made per call and not
    /// kept, in both directions; the results are the bits of the kernel
    /// made once.
    #[test]
    fn a_large_f2_kernel_is_made_per_call_with_the_same_bits() {
        // 256 -> 512 channels, output 14 x 14: 49 tiles, 2 Mi kernel
        // elements. With padding 2 the input is 12 x 12 (36 tiles): the
        // input gradient decides by the forward pass's tiles, not its own.
        let w = seq(&[512, 256, 3, 3], 5).cast::<f32>();
        let k = WinogradKernel::forward(&w).unwrap();
        for (pad, side) in [(1, 14), (2, 12)] {
            let p = Conv2dParams::new(1, pad);
            let x = seq(&[1, 256, side, side], 7).cast::<f32>();
            let cache = ForwardCache::new();
            let got = conv2d_cached(&x, &w, None, p, &cache).unwrap();
            assert!(!cache.is_built());
            let want = winograd::conv3x3(&x, &k, p.padding, None).unwrap();
            assert_eq!(got.data(), want.data());
            let gout = seq(&[1, 512, 14, 14], 3).cast::<f32>();
            let backward = super::super::BackwardInputCache::sharing(&cache);
            let got =
                super::super::conv2d_backward_input_cached(&gout, &w, (side, side), p, &backward)
                    .unwrap();
            assert!(!cache.is_built(), "padding {pad}");
            let want = winograd::conv3x3_input_gradient(&gout, &k, (2 - pad, 2 - pad)).unwrap();
            assert_eq!(got.data(), want.data());
        }
    }

    #[test]
    fn cached_forward_is_bit_identical_across_thread_counts() {
        // F(2x2) and F(4x4).
        for hw in [15, 30] {
            let x = seq(&[1, 24, hw, hw - 2], 7).cast::<f32>();
            let w = seq(&[30, 24, 3, 3], 5).cast::<f32>();
            let p = Conv2dParams::new(1, 1);
            let run = |threads| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| conv2d_cached(&x, &w, None, p, &ForwardCache::new()).unwrap())
            };
            assert_eq!(run(1).data(), run(3).data());
        }
    }

    #[test]
    fn a_cache_used_with_a_weight_of_another_shape_is_an_error() {
        let p = Conv2dParams::new(1, 1);
        let x = seq(&[1, 16, 14, 14], 7);
        let cache = ForwardCache::new();
        conv2d_cached(&x, &seq(&[20, 16, 3, 3], 5), None, p, &cache).unwrap();
        let e = conv2d_cached(&x, &seq(&[24, 16, 3, 3], 5), None, p, &cache).unwrap_err();
        assert!(matches!(e, TensorError::ShapeMismatch { .. }));
    }

    /// A cache filled under one SIMD cap and then used under another cap
    /// or Winograd policy gives, on every path (F(2x2), F(4x4), 1 x 1
    /// packed, unfolded packed), the bits of a fresh cache under that
    /// policy, and keeps the kernels it holds.
    #[test]
    fn a_cache_filled_under_one_policy_gives_the_bits_of_another() {
        use crate::policy::{KernelPolicy, SimdCap, WinogradPolicy};
        let cases = [
            ([2, 16, 20, 20], [24, 16, 3, 3], Conv2dParams::new(1, 1)),
            ([2, 16, 28, 29], [20, 16, 3, 3], Conv2dParams::new(1, 1)),
            ([1, 40, 9, 7], [24, 40, 1, 1], Conv2dParams::default()),
            ([1, 17, 12, 13], [20, 17, 3, 3], Conv2dParams::new(2, 1)),
        ];
        for (xs, ws, p) in cases {
            let x = seq(&xs, 7).cast::<f32>();
            let w = seq(&ws, 5).cast::<f32>();
            let b = seq(&[ws[0]], 3).cast::<f32>();
            for fill in SimdCap::ALL {
                let cache = ForwardCache::new();
                let filled = p.with_kernels(KernelPolicy::new(WinogradPolicy::Auto, fill));
                let first = conv2d_cached(&x, &w, Some(&b), filled, &cache).unwrap();
                assert!(cache.is_built());
                // Which slots hold a kernel made under `fill`.
                let slots = |c: &ForwardCache<f32>| {
                    [
                        c.winograd.get().map(|k| k.built_for(fill)),
                        c.winograd_f4.get().map(|k| k.built_for(fill)),
                        c.packed.get().map(|k| k.built_for(fill)),
                    ]
                };
                let before = slots(&cache);
                assert!(before.contains(&Some(true)));
                for policy in KernelPolicy::all() {
                    let q = p.with_kernels(policy);
                    let got = conv2d_cached(&x, &w, Some(&b), q, &cache).unwrap();
                    let want = conv2d_cached(&x, &w, Some(&b), q, &ForwardCache::new()).unwrap();
                    assert_eq!(
                        got.data(),
                        want.data(),
                        "{xs:?} filled {fill}, run {policy}"
                    );
                }
                // What was kept stays; empty slots may have been filled.
                for (b, a) in before.iter().zip(slots(&cache)) {
                    assert!(b.is_none() || *b == a, "{xs:?} filled {fill}");
                }
                let again = conv2d_cached(&x, &w, Some(&b), filled, &cache).unwrap();
                assert_eq!(again.data(), first.data());
            }
        }
    }

    #[test]
    fn bias_adds_per_channel() {
        let x = Tensor::<f32>::zeros([2, 1, 3, 3]);
        let w = Tensor::<f32>::zeros([2, 1, 3, 3]);
        let b = Tensor::from_vec([2], vec![1.5, -2.0]).unwrap();
        let y = conv2d(&x, &w, Some(&b), Conv2dParams::new(1, 1)).unwrap();
        assert_eq!(y.data()[0], 1.5);
        assert_eq!(y.data()[9], -2.0);
        assert_eq!(y.data()[18], 1.5);
    }
}
