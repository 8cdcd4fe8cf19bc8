//! Winograd convolution (Lavin and Gray, 2016) for 3 x 3 kernels with
//! stride 1, dilation 1 and one group, in two variants ([`Variant`]):
//!
//! - F(2x2, 3x3): each 2 x 2 block of output pixels (a *tile*) is computed
//!   from the 4 x 4 input patch under it as
//!   `Y = A^T [ sum_ci (G g G^T) . (B^T d B) ] A`: 16 products per tile and
//!   input channel (4 per output) instead of 36, i.e. 2.25x fewer
//!   multiplies;
//! - F(4x4, 3x3) (points 0, 1, -1, 2, -2, infinity): 4 x 4 output tiles from
//!   6 x 6 input patches (stride 4), 36 products per tile and input channel
//!   (2.25 per output), another 1.78x fewer. Its transforms have larger
//!   coefficients, so its `f32` error is larger: about 1-2e-5 of the largest
//!   output on VGG16's layers, against about 1e-6 for F(2x2).
//!
//! The sum over input channels is one matrix product per tile element `xi`
//! (16 or 36 of them): `M_xi (Cout x tiles) = U_xi (Cout x Cin) V_xi
//! (Cin x tiles)`.
//!
//! The data are laid out for that product: the transformed kernel `U` is
//! packed once per weight in micro-panels of a few output channels
//! ([`WinogradKernel`], cacheable; it fixes the variant), the input
//! transform writes `V` straight into micro-panels of [`NR`] tiles, so the
//! product needs no packing step and runs a register-blocked micro-kernel
//! (AVX-512, or AVX2 + FMA, for `f32` where the CPU has it, portable code
//! otherwise), the same for both variants.
//!
//! Work is split into tasks by shape only (blocks of tiles times blocks of
//! output channels); each output element is computed by exactly one task,
//! with the channel sum in a fixed order, so results do not depend on the
//! number of threads.
//!
//! Which convolutions take which variant is decided in `conv/dispatch.rs`:
//! F(4x4) where the kernel is cached (`conv2d_cached`, the cached input
//! gradient, the latter only where its own kernel is at most 8 MiB, since
//! an F(2x2) input gradient needs no kernel of its own: see
//! [`conv3x3_input_gradient`]) and the output is at least 56 x 56, or 28 x 28
//! with at most 128 x 128 channels (where it measured 1.1x to 1.55x faster than F(2x2);
//! at 28 x 28 with 256 or more channels it is about even, at 14 x 14 and
//! below, where its tiles overhang the output, slower), F(2x2) otherwise
//! and in the uncached `conv2d`
//! (whose kernel transform is paid on every call). The convolution's
//! [`crate::WinogradPolicy`] (in its parameters' [`crate::KernelPolicy`])
//! can change that: `F2` forces F(2x2) only, `Off` turns Winograd off.
//!
//! A [`WinogradKernel`] is made for one micro-kernel (AVX-512, AVX2 or
//! portable: its panel height `mr` is part of its layout) and one level of
//! transforms, the best ones at or below the [`crate::SimdCap`] it is made
//! with; [`conv3x3`] runs those.
//!
//! The parts: the kernel transforms and their packing (`kernel.rs`), the
//! F(2x2) input and output transforms (`transforms.rs`), the F(4x4) ones
//! (`transforms_f4.rs`), the micro-kernels and their runtime dispatch
//! (`micro.rs`); this file holds the driver, [`conv3x3`].

mod kernel;
#[cfg(target_arch = "x86_64")]
mod kernel_avx512;
mod micro;
mod taps;
mod transforms;
mod transforms_f4;

pub use kernel::WinogradKernel;
pub(crate) use micro::{micro_kind, Micro};

use crate::cblock::CBlock;
use crate::element::Element;
use crate::epilogue::Epilogue;
use crate::error::{Result, TensorError};
use crate::scratch::{scratch_len, with_scratch2};
use crate::tensor::{checked_numel, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use transforms::{input_transform, output_transform, OutPlanes};

/// Output channels per micro-panel of the transformed kernel, for the
/// portable and AVX2 micro-kernels (the AVX-512 one takes [`MR_AVX512`]).
pub const MR: usize = 6;
/// Output channels per micro-panel for the AVX-512 micro-kernel.
pub const MR_AVX512: usize = 12;
/// Tiles per micro-panel of the transformed input.
pub const NR: usize = 16;
/// The Winograd variants: output tiles of 2 x 2 or 4 x 4 pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// F(2x2, 3x3): 4 x 4 input tiles, 16 products per 4 outputs.
    F2x2,
    /// F(4x4, 3x3) (points 0, 1, -1, 2, -2, infinity): 6 x 6 input tiles,
    /// 36 products per 16 outputs.
    F4x4,
}

impl Variant {
    /// Output pixels per tile side (2 or 4).
    pub fn tile(self) -> usize {
        match self {
            Variant::F2x2 => 2,
            Variant::F4x4 => 4,
        }
    }

    /// Elements of a transformed tile (16 or 36).
    pub(crate) fn xi(self) -> usize {
        (self.tile() + 2) * (self.tile() + 2)
    }
}

/// Tiles per task and output channels per task, from the shapes only.
#[derive(Clone, Copy, Debug)]
struct Blocking {
    /// Tiles per block (a multiple of NR).
    tiles: usize,
    /// Tile blocks per image.
    tile_blocks: usize,
    /// Kernel micro-panels per output-channel block.
    panels: usize,
    /// Output-channel blocks.
    chan_blocks: usize,
}

/// Tasks wanted per call, so that a few threads stay balanced.
const MIN_TASKS: usize = 8;

fn blocking(n: usize, tiles: usize, cin: usize, panels: usize, variant: Variant) -> Blocking {
    // Keep the transformed input of one task near 1-2 MiB (it is used one
    // tile element, 1/16th or 1/36th, at a time). The same tile blocks for
    // both variants (larger ones for F(4x4) measured no faster).
    let tb = (16384 / cin.max(1) / NR * NR).clamp(NR, 128);
    let tb = tb.min(tiles.div_ceil(NR) * NR);
    let tile_blocks = tiles.div_ceil(tb);
    // Split output channels only when tile blocks alone are too few, and keep
    // at least 8 micro-panels (48 channels) per block so the input transform,
    // redone per block, stays cheap.
    let want = MIN_TASKS.div_ceil(n * tile_blocks);
    let chan_blocks = want.min(panels / 8).max(1);
    let per = panels.div_ceil(chan_blocks);
    let (tb, tile_blocks) = if variant == Variant::F4x4 && n * tile_blocks * chan_blocks < MIN_TASKS
    {
        // F(4x4) has 4x fewer tiles: on small outputs, smaller tile blocks
        // (down to one micro-panel) keep a few threads busy.
        let blocks = MIN_TASKS.div_ceil(n * chan_blocks);
        let tb = (tiles.div_ceil(blocks).div_ceil(NR) * NR).min(tb);
        (tb, tiles.div_ceil(tb))
    } else {
        (tb, tile_blocks)
    };
    Blocking {
        tiles: tb,
        tile_blocks,
        panels: per,
        chan_blocks: panels.div_ceil(per),
    }
}

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: only used to give rayon tasks disjoint regions of one buffer.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// Stride-1, dilation-1, one-group 3 x 3 convolution of `input`
/// (N x Cin x H x W) with a transformed kernel, zero padding `padding`
/// (vertical, horizontal), plus an optional per-channel `bias`.
pub fn conv3x3<T: Element>(
    input: &Tensor<T>,
    kernel: &WinogradKernel<T>,
    padding: (usize, usize),
    bias: Option<&[T]>,
) -> Result<Tensor<T>> {
    run(input, Read::Direct(kernel), padding, bias, None)
}

/// [`conv3x3`] handing each block of the output to `then` as soon as it is
/// final (see [`Epilogue`]).
pub(crate) fn conv3x3_then<T: Element>(
    input: &Tensor<T>,
    kernel: &WinogradKernel<T>,
    padding: (usize, usize),
    then: Option<Epilogue<'_, T>>,
) -> Result<Tensor<T>> {
    run(input, Read::Direct(kernel), padding, None, then)
}

/// The input gradient of a stride-1 3 x 3 convolution, from its output
/// gradient `gout` (N x Cout x Ho x Wo) and the convolution's own F(2x2,
/// 3x3) kernel `forward` (as made by [`WinogradKernel::forward`]), read
/// transposed and flipped, so that no kernel of its own is kept: the
/// convolution of `gout` with the transposed, flipped weight, zero padding
/// `padding` (`2 - p` for a convolution padded by `p`). Agrees with
/// [`conv3x3`] on [`WinogradKernel::backward_input`]'s kernel to the
/// rounding of the kernel transform (same products, same order).
pub fn conv3x3_input_gradient<T: Element>(
    gout: &Tensor<T>,
    forward: &WinogradKernel<T>,
    padding: (usize, usize),
) -> Result<Tensor<T>> {
    conv3x3_input_gradient_then(gout, forward, padding, None)
}

/// [`conv3x3_input_gradient`] handing each block of the result to `then` as
/// soon as it is final (see [`Epilogue`]).
pub(crate) fn conv3x3_input_gradient_then<T: Element>(
    gout: &Tensor<T>,
    forward: &WinogradKernel<T>,
    padding: (usize, usize),
    then: Option<Epilogue<'_, T>>,
) -> Result<Tensor<T>> {
    if forward.variant != Variant::F2x2 {
        return Err(TensorError::InvalidParameter {
            op: "winograd conv3x3_input_gradient",
            message: "only an F(2x2, 3x3) kernel can be read transposed".into(),
        });
    }
    run(gout, Read::Flipped(forward), padding, None, then)
}

/// How the driver reads a transformed kernel.
#[derive(Clone, Copy)]
enum Read<'a, T> {
    /// As packed: the convolution it was made for.
    Direct(&'a WinogradKernel<T>),
    /// Transposed and flipped (F(2x2) only): that convolution's input
    /// gradient.
    Flipped(&'a WinogradKernel<T>),
}

impl<T: Element> Read<'_, T> {
    /// Output channels, input channels and micro-panels of the convolution
    /// read this way.
    fn dims(&self) -> (usize, usize, usize) {
        match *self {
            Read::Direct(k) => (k.cout, k.cin, k.panels),
            Read::Flipped(k) => (k.cin, k.cout, k.flipped_panels()),
        }
    }

    fn kernel(&self) -> &WinogradKernel<T> {
        match *self {
            Read::Direct(k) | Read::Flipped(k) => k,
        }
    }

    /// `C = A_{p, xi} B` over `tpanels` tile panels: `B` (`k x tpanels NR`,
    /// row stride `ld`) and `C` (`mr x tpanels NR`, row stride `ld`), with
    /// the wide micro-kernel on pairs of tile panels where there is one.
    #[allow(clippy::too_many_arguments)]
    fn product(
        &self,
        p: usize,
        xi: usize,
        k: usize,
        b: &[T],
        ld: usize,
        c: &mut [T],
        tpanels: usize,
    ) {
        let micro = self.kernel().micro;
        let mut tp = 0;
        match *self {
            Read::Direct(kernel) => {
                let a = kernel.panel(p, xi);
                if let Some(wide) = micro.wide_function::<T>() {
                    while tp + 2 <= tpanels {
                        let c = CBlock::of_slice(&mut c[tp * NR..], ld, micro.mr());
                        wide(k, a, &b[tp * NR..], ld, c, false);
                        tp += 2;
                    }
                }
                let narrow = micro.function::<T>();
                for tp in tp..tpanels {
                    let c = CBlock::of_slice(&mut c[tp * NR..], ld, micro.mr());
                    narrow(k, a, &b[tp * NR..], ld, c, false);
                }
            }
            Read::Flipped(kernel) => {
                let (a, s) = kernel.flipped_panel(p, xi);
                if let Some(wide) = micro.transposed_wide_function::<T>() {
                    while tp + 2 <= tpanels {
                        let c = CBlock::of_slice(&mut c[tp * NR..], ld, micro.mr());
                        wide(k, a, s, &b[tp * NR..], ld, c, false);
                        tp += 2;
                    }
                }
                let narrow = micro.transposed_function::<T>();
                for tp in tp..tpanels {
                    let c = CBlock::of_slice(&mut c[tp * NR..], ld, micro.mr());
                    narrow(k, a, s, &b[tp * NR..], ld, c, false);
                }
            }
        }
    }
}

fn run<T: Element>(
    input: &Tensor<T>,
    read: Read<'_, T>,
    padding: (usize, usize),
    bias: Option<&[T]>,
    then: Option<Epilogue<'_, T>>,
) -> Result<Tensor<T>> {
    let [n, cin, h, w] = input.dims4("winograd conv3x3")?;
    let (cout, kcin, panels) = read.dims();
    if cin != kcin || bias.is_some_and(|b| b.len() != cout) {
        return Err(TensorError::ShapeMismatch {
            op: "winograd conv3x3",
            left: input.shape().to_vec(),
            right: vec![cout, kcin, 3, 3],
        });
    }
    let (ph, pw) = padding;
    // The padded sizes with checked arithmetic, at most `isize::MAX` (the
    // transforms index padded positions as `isize`).
    let padded = |len: usize, pad: usize| {
        pad.checked_mul(2)
            .and_then(|p| p.checked_add(len))
            .filter(|&v| v <= isize::MAX as usize)
    };
    let (Some(hp), Some(wp)) = (padded(h, ph), padded(w, pw)) else {
        return Err(TensorError::InvalidParameter {
            op: "winograd conv3x3",
            message: format!("input {h}x{w} with padding {padding:?}: padded size too large"),
        });
    };
    if hp < 3 || wp < 3 || n == 0 || cin == 0 {
        return Err(TensorError::InvalidParameter {
            op: "winograd conv3x3",
            message: format!("input {h}x{w} with padding {padding:?} is smaller than the kernel"),
        });
    }
    let g = Geometry {
        cin,
        h,
        w,
        ph,
        pw,
        cout,
        ho: hp - 2,
        wo: wp - 2,
    };
    checked_numel(&[n, g.cout, g.ho, g.wo], "winograd conv3x3")?;
    let kernel = read.kernel();
    let variant = kernel.variant;
    let xis = variant.xi();
    let tw = g.wo.div_ceil(variant.tile());
    let tiles = g.ho.div_ceil(variant.tile()) * tw;
    let b = blocking(n, tiles, cin, panels, variant);
    let out_len = n * g.cout * g.ho * g.wo;
    let mr = kernel.mr;
    // The transforms of the level the kernel was made for (its SIMD cap).
    let tk = kernel.level;
    let tasks = n * b.tile_blocks * b.chan_blocks;
    let write = |out: &mut [MaybeUninit<T>]| -> Result<()> {
        let out_ptr = SendPtr(out.as_mut_ptr().cast::<T>());
        (0..tasks).into_par_iter().try_for_each(|task| {
            let img = task / (b.tile_blocks * b.chan_blocks);
            let tb = (task / b.chan_blocks) % b.tile_blocks;
            let cb = task % b.chan_blocks;
            let f0 = tb * b.tiles;
            let f1 = (f0 + b.tiles).min(tiles);
            let tpanels = (f1 - f0).div_ceil(NR);
            let ldm = tpanels * NR;
            let p0 = cb * b.panels;
            let p1 = (p0 + b.panels).min(panels);
            let rows = (p1 - p0) * mr;
            let x = &input.data()[img * cin * h * w..(img + 1) * cin * h * w];
            let v_len = scratch_len("winograd input tiles", &[&[xis, cin, ldm]])?;
            let m_len = scratch_len("winograd product tiles", &[&[xis, rows, ldm]])?;
            with_scratch2::<T, _>("winograd tiles", v_len, m_len, |v, m| {
                input_transform(tk, variant, x, &g, tw, (f0, f1), ldm, v);
                for xi in 0..xis {
                    let vx = &v[xi * cin * ldm..(xi + 1) * cin * ldm];
                    for p in p0..p1 {
                        let row = (xi * rows + (p - p0) * mr) * ldm;
                        read.product(p, xi, cin, vx, ldm, &mut m[row..], tpanels);
                    }
                }
                let c0 = p0 * mr;
                let c1 = (p1 * mr).min(g.cout);
                let o = out_ptr;
                let base = img * g.cout * g.ho * g.wo;
                debug_assert!(base + c1 * g.ho * g.wo <= out_len);
                let span = (f0, f1);
                // SAFETY: the planes of channels c0..c1 of image img lie inside
                // `out`; this task alone writes the pixels of tiles f0..f1 in
                // them, and the transform makes references only to those (other
                // tasks write other tiles of the same planes meanwhile).
                unsafe {
                    let dst = OutPlanes::from_raw(
                        o.0.add(base + c0 * g.ho * g.wo),
                        (c1 - c0) * g.ho * g.wo,
                    );
                    output_transform(tk, variant, m, &g, tw, span, ldm, rows, (c0, c1), bias, dst);
                }
                match then {
                    // SAFETY: as above: the runs are pixels of tiles f0..f1 of
                    // channels c0..c1 of image img, inside `out`, written by
                    // this task alone and no longer written.
                    Some(then) => unsafe {
                        tiles_epilogue(
                            o,
                            base + c0 * g.ho * g.wo,
                            c1 - c0,
                            &g,
                            variant,
                            tw,
                            span,
                            then,
                        )
                    },
                    None => Ok(()),
                }
            })?
        })
    };
    // SAFETY: the tasks cover every tile of every channel of every image,
    // and the output transforms write all the tile's pixels (through
    // `OutPlanes` runs and masked stores; nothing reads them before).
    unsafe { Tensor::write_whole([n, g.cout, g.ho, g.wo], write) }
}

/// Hands the pixels of tiles `f0..f1` (row-major, `tw` per row of tiles)
/// of `chans` channels, whose whole `ho x wo` planes start at flat offset
/// `origin` of the output at `out`, to `then`: rows of pixels within those
/// tiles, with the whole rows of tiles in between as one run. Each run's
/// slice is made from the pointer alone, so this task holds no reference to
/// pixels that other tasks write.
///
/// # Safety
/// Those pixels lie inside the output, and no other task reads or writes
/// them while this runs.
#[allow(clippy::too_many_arguments)]
unsafe fn tiles_epilogue<T>(
    out: SendPtr<T>,
    origin: usize,
    chans: usize,
    g: &Geometry,
    variant: Variant,
    tw: usize,
    (f0, f1): (usize, usize),
    then: Epilogue<'_, T>,
) -> Result<()> {
    let (plane, tile) = (g.ho * g.wo, variant.tile());
    // The runs of one plane (start, length), the same for every channel.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut push = |at: usize, len: usize| match runs.last_mut() {
        Some((start, n)) if *start + *n == at => *n += len,
        _ => runs.push((at, len)),
    };
    for ty in f0 / tw..f1.div_ceil(tw) {
        let tx0 = f0.max(ty * tw) - ty * tw;
        let tx1 = f1.min((ty + 1) * tw) - ty * tw;
        let r0 = ty * tile;
        let (c0, c1) = (tx0 * tile, (tx1 * tile).min(g.wo));
        for r in r0..(r0 + tile).min(g.ho) {
            push(r * g.wo + c0, c1 - c0);
        }
    }
    for c in 0..chans {
        for &(at, len) in &runs {
            let at = origin + c * plane + at;
            then(std::slice::from_raw_parts_mut(out.0.add(at), len), at)?;
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug)]
struct Geometry {
    cin: usize,
    h: usize,
    w: usize,
    ph: usize,
    pw: usize,
    cout: usize,
    ho: usize,
    wo: usize,
}

#[cfg(test)]
mod tests_f4;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{conv2d, Conv2dParams};
    use crate::testing::seq;

    #[test]
    fn matches_im2col_forward_and_backward_in_f64() {
        for &(n, cin, cout, h, w, p) in &[
            (1, 3, 5, 7, 9, 1),
            (2, 20, 13, 10, 5, 0),
            (1, 33, 40, 35, 67, 1),
            (1, 8, 70, 6, 6, 2),
            (1, 4, 4, 3, 3, 0),
        ] {
            let x = seq::<f64>(&[n, cin, h, w], 7);
            let wt = seq::<f64>(&[cout, cin, 3, 3], 5);
            let bias: Vec<f64> = (0..cout).map(|i| i as f64 * 0.25 - 1.0).collect();
            let params = Conv2dParams::new(1, p);
            let want = crate::conv::conv2d_im2col(
                &x,
                &wt,
                Some(&Tensor::from_vec([cout], bias.clone()).unwrap()),
                params,
            )
            .unwrap();
            let k = WinogradKernel::forward(&wt).unwrap();
            let got = conv3x3(&x, &k, (p, p), Some(&bias)).unwrap();
            assert_eq!(got.shape(), want.shape());
            assert!(got.max_abs_diff(&want).unwrap() < 1e-10);

            let gout = seq::<f64>(want.shape(), 3);
            let want = crate::conv::backward_input_im2col(&gout, &wt, (h, w), params).unwrap();
            let k = WinogradKernel::backward_input(&wt).unwrap();
            let got = conv3x3(&gout, &k, (2 - p, 2 - p), None).unwrap();
            assert_eq!(got.shape(), want.shape());
            assert!(got.max_abs_diff(&want).unwrap() < 1e-10);
        }
    }

    #[test]
    fn f32_error_is_small_relative_to_the_output() {
        let (cin, cout, hw) = (64, 48, 30);
        let x = seq::<f32>(&[1, cin, hw, hw], 7);
        let wt = seq::<f32>(&[cout, cin, 3, 3], 5);
        let p = Conv2dParams::new(1, 1);
        let want = crate::conv::conv2d_im2col(&x, &wt, None, p).unwrap();
        let got = conv2d(&x, &wt, None, p).unwrap();
        let max = want.max_abs();
        assert!(got.max_abs_diff(&want).unwrap() < 1e-6 * max);
        let g = seq::<f32>(want.shape(), 3);
        let want = crate::conv::backward_input_im2col(&g, &wt, (hw, hw), p).unwrap();
        // The F(2x2) kernel (the public function takes F(4x4) at 30 x 30;
        // its error is checked in `tests_f4`).
        let k = WinogradKernel::backward_input(&wt).unwrap();
        let got = conv3x3(&g, &k, (1, 1), None).unwrap();
        let max = want.max_abs();
        assert!(got.max_abs_diff(&want).unwrap() < 1e-6 * max);
    }

    /// The input gradient on the forward kernel read transposed agrees with
    /// the reference in f64 and with the flipped kernel's own transform in
    /// f32, across channel counts that do not fill the micro-panels, one
    /// and several tile panels, and batch 2.
    #[test]
    fn input_gradient_reads_the_forward_kernel() {
        for &(n, cin, cout, h, w, p) in &[
            (1, 5, 7, 6, 9, 1),
            (2, 13, 20, 10, 5, 0),
            (1, 70, 50, 17, 19, 1),
            (1, 3, 30, 67, 35, 2),
        ] {
            let wt = seq::<f64>(&[cout, cin, 3, 3], 5);
            let params = Conv2dParams::new(1, p);
            let (ho, wo) = (h + 2 * p - 2, w + 2 * p - 2);
            let gout = seq::<f64>(&[n, cout, ho, wo], 3);
            let want = crate::conv::backward_input_im2col(&gout, &wt, (h, w), params).unwrap();
            let k = WinogradKernel::forward(&wt).unwrap();
            let got = conv3x3_input_gradient(&gout, &k, (2 - p, 2 - p)).unwrap();
            assert_eq!(got.shape(), want.shape());
            assert!(got.max_abs_diff(&want).unwrap() < 1e-10);

            let (wt, gout) = (wt.cast::<f32>(), gout.cast::<f32>());
            let own = WinogradKernel::backward_input(&wt).unwrap();
            let want = conv3x3(&gout, &own, (2 - p, 2 - p), None).unwrap();
            let k = WinogradKernel::forward(&wt).unwrap();
            let got = conv3x3_input_gradient(&gout, &k, (2 - p, 2 - p)).unwrap();
            assert!(got.max_abs_diff(&want).unwrap() <= 1e-6 * want.max_abs());
        }
        let wt = seq::<f32>(&[4, 4, 3, 3], 5);
        let f4 = WinogradKernel::forward_with(&wt, Variant::F4x4).unwrap();
        let gout = seq::<f32>(&[1, 4, 6, 6], 3);
        assert!(conv3x3_input_gradient(&gout, &f4, (1, 1)).is_err());
        // Channels of the gradient must be the kernel's output channels.
        let k = WinogradKernel::forward(&seq::<f32>(&[5, 4, 3, 3], 5)).unwrap();
        assert!(conv3x3_input_gradient(&gout, &k, (1, 1)).is_err());
    }

    #[test]
    fn bit_identical_across_thread_counts() {
        let x = seq::<f32>(&[2, 24, 13, 11], 7);
        let wt = seq::<f32>(&[30, 24, 3, 3], 5);
        let k = WinogradKernel::forward(&wt).unwrap();
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| conv3x3(&x, &k, (1, 1), None).unwrap())
        };
        assert_eq!(run(1).data(), run(3).data());
    }
}
