//! Winograd F(2x2, 3x3) convolution (Lavin and Gray, 2016) for 3 x 3 kernels
//! with stride 1, dilation 1 and one group.
//!
//! Each 2 x 2 block of output pixels (a *tile*) is computed from the 4 x 4
//! input patch under it as `Y = A^T [ sum_ci (G g G^T) . (B^T d B) ] A`: 16
//! products per tile and input channel instead of 36, i.e. 2.25x fewer
//! multiplies. The sum over input channels is one matrix product per tile
//! element `xi` (16 of them): `M_xi (Cout x tiles) = U_xi (Cout x Cin) V_xi
//! (Cin x tiles)`.
//!
//! The data are laid out for that product: the transformed kernel `U` is
//! packed once per weight in micro-panels of a few output channels
//! ([`WinogradKernel`], cacheable), the input transform writes `V` straight
//! into micro-panels of [`NR`] tiles, so the product needs no packing step and
//! runs a register-blocked micro-kernel (AVX2 + FMA for `f32` where the CPU
//! has it, portable code otherwise).
//!
//! Work is split into tasks by shape only (blocks of tiles times blocks of
//! output channels); each output element is computed by exactly one task,
//! with the channel sum in a fixed order, so results do not depend on the
//! number of threads.

use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::scratch::with_scratch2;
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::any::TypeId;
use std::sync::OnceLock;

/// Output channels per micro-panel of the transformed kernel, for the
/// portable and AVX2 micro-kernels (the AVX-512 one takes [`MR_AVX512`]).
pub const MR: usize = 6;
/// Output channels per micro-panel for the AVX-512 micro-kernel.
pub const MR_AVX512: usize = 12;
/// Kernel lanes transformed at once when packing (divides every panel height).
const LANES: usize = 6;
/// Tiles per micro-panel of the transformed input.
pub const NR: usize = 16;
/// Elements of a transformed tile (4 x 4).
const XI: usize = 16;
/// Tiles handled per pass of the input transform (stack buffers).
const CHUNK: usize = 32;

/// A 3 x 3 kernel transformed for F(2x2, 3x3) (`U = G g G^T`) and packed in
/// micro-panels: `[panel][xi][cin][mr]`, output channels padded with zeros to
/// a multiple of `mr`, the panel height of the micro-kernel chosen for this
/// CPU and element type.
#[derive(Clone, Debug)]
pub struct WinogradKernel<T> {
    cout: usize,
    cin: usize,
    micro: Micro,
    mr: usize,
    panels: usize,
    data: Vec<T>,
}

impl<T: Element> WinogradKernel<T> {
    /// The transformed kernel of a forward convolution with `weight`
    /// (Cout x Cin x 3 x 3).
    pub fn forward(weight: &Tensor<T>) -> Result<Self> {
        let [cout, cin, kh, kw] = weight.dims4("winograd kernel")?;
        check_3x3(kh, kw)?;
        let w = weight.data();
        Ok(Self::build(cout, cin, |o, i| {
            let s = &w[(o * cin + i) * 9..(o * cin + i + 1) * 9];
            std::array::from_fn(|t| s[t])
        }))
    }

    /// The transformed kernel of the convolution that computes the input
    /// gradient of a stride-1 convolution with `weight` (Cout x Cin x 3 x 3):
    /// input and output channels swapped, taps flipped.
    pub fn backward_input(weight: &Tensor<T>) -> Result<Self> {
        let [cout, cin, kh, kw] = weight.dims4("winograd kernel")?;
        check_3x3(kh, kw)?;
        let w = weight.data();
        // The new convolution maps Cout channels to Cin channels.
        Ok(Self::build(cin, cout, |o, i| {
            let s = &w[(i * cin + o) * 9..(i * cin + o + 1) * 9];
            std::array::from_fn(|t| s[8 - t])
        }))
    }

    /// Output channels of the convolution.
    pub fn out_channels(&self) -> usize {
        self.cout
    }

    /// Input channels of the convolution.
    pub fn in_channels(&self) -> usize {
        self.cin
    }

    fn build(cout: usize, cin: usize, tap: impl Fn(usize, usize) -> [T; 9] + Sync) -> Self {
        let micro = micro_kind::<T>();
        let mr = micro.mr();
        debug_assert_eq!(mr % LANES, 0);
        let panels = cout.div_ceil(mr);
        let mut data = vec![T::zero(); panels * XI * cin * mr];
        data.par_chunks_mut(XI * cin * mr)
            .enumerate()
            .for_each(|(p, panel)| {
                // The taps of LANES output channels side by side.
                let mut g = [[T::zero(); LANES]; 9];
                for i in 0..cin {
                    for r0 in (0..mr).step_by(LANES) {
                        for l in 0..LANES {
                            let o = p * mr + r0 + l;
                            let k = if o < cout { tap(o, i) } else { [T::zero(); 9] };
                            for (gt, kt) in g.iter_mut().zip(k) {
                                gt[l] = kt;
                            }
                        }
                        let u = transform_kernel(&g);
                        for (xi, u) in u.iter().enumerate() {
                            let d: &mut [T; LANES] = (&mut panel[(xi * cin + i) * mr + r0..]
                                [..LANES])
                                .try_into()
                                .expect("LANES elements");
                            *d = *u;
                        }
                    }
                }
            });
        Self {
            cout,
            cin,
            micro,
            mr,
            panels,
            data,
        }
    }

    /// Packed micro-panel `p` of tile element `xi`: Cin x mr.
    fn panel(&self, p: usize, xi: usize) -> &[T] {
        let len = self.cin * self.mr;
        let start = (p * XI + xi) * len;
        &self.data[start..start + len]
    }
}

fn check_3x3(kh: usize, kw: usize) -> Result<()> {
    if (kh, kw) != (3, 3) {
        return Err(TensorError::InvalidParameter {
            op: "winograd",
            message: format!("F(2x2, 3x3) needs a 3 x 3 kernel, got {kh} x {kw}"),
        });
    }
    Ok(())
}

/// `G g G^T` with `G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]`,
/// for LANES kernels at once (`g[tap][lane]`, taps row-major).
fn transform_kernel<T: Element>(g: &[[T; LANES]; 9]) -> [[T; LANES]; 16] {
    let half = T::from_f64_lossy(0.5);
    let zero = [T::zero(); LANES];
    // G g: 4 x 3.
    let mut gg = [zero; 12];
    for c in 0..3 {
        for l in 0..LANES {
            let (g0, g1, g2) = (g[c][l], g[3 + c][l], g[6 + c][l]);
            gg[c][l] = g0;
            gg[3 + c][l] = (g0 + g1 + g2) * half;
            gg[6 + c][l] = (g0 - g1 + g2) * half;
            gg[9 + c][l] = g2;
        }
    }
    // (G g) G^T: 4 x 4.
    let mut u = [zero; 16];
    for r in 0..4 {
        for l in 0..LANES {
            let (a, b, c) = (gg[3 * r][l], gg[3 * r + 1][l], gg[3 * r + 2][l]);
            u[4 * r][l] = a;
            u[4 * r + 1][l] = (a + b + c) * half;
            u[4 * r + 2][l] = (a - b + c) * half;
            u[4 * r + 3][l] = c;
        }
    }
    u
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

fn blocking(n: usize, tiles: usize, cin: usize, panels: usize) -> Blocking {
    // Keep the transformed input of one task near 1-2 MiB (it is used one
    // tile element, 1/16th, at a time).
    let tb = (16384 / cin.max(1) / NR * NR).clamp(NR, 128);
    let tb = tb.min(tiles.div_ceil(NR) * NR);
    let tile_blocks = tiles.div_ceil(tb);
    // Split output channels only when tile blocks alone are too few, and keep
    // at least 8 micro-panels (48 channels) per block so the input transform,
    // redone per block, stays cheap.
    let want = MIN_TASKS.div_ceil(n * tile_blocks);
    let chan_blocks = want.min(panels / 8).max(1);
    let per = panels.div_ceil(chan_blocks);
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
    let [n, cin, h, w] = input.dims4("winograd conv3x3")?;
    if cin != kernel.cin || bias.is_some_and(|b| b.len() != kernel.cout) {
        return Err(TensorError::ShapeMismatch {
            op: "winograd conv3x3",
            left: input.shape().to_vec(),
            right: vec![kernel.cout, kernel.cin, 3, 3],
        });
    }
    let (ph, pw) = padding;
    if h + 2 * ph < 3 || w + 2 * pw < 3 || n == 0 || cin == 0 {
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
        cout: kernel.cout,
        ho: h + 2 * ph - 2,
        wo: w + 2 * pw - 2,
    };
    let tw = g.wo.div_ceil(2);
    let tiles = g.ho.div_ceil(2) * tw;
    let b = blocking(n, tiles, cin, kernel.panels);
    let mut out: Tensor<T> = Tensor::zeros([n, g.cout, g.ho, g.wo]);
    let out_ptr = SendPtr(out.data_mut().as_mut_ptr());
    let out_len = out.len();
    let micro = kernel.micro.function::<T>();
    let mr = kernel.mr;
    let tk = transforms_kind();
    let tasks = n * b.tile_blocks * b.chan_blocks;
    (0..tasks).into_par_iter().for_each(|task| {
        let img = task / (b.tile_blocks * b.chan_blocks);
        let tb = (task / b.chan_blocks) % b.tile_blocks;
        let cb = task % b.chan_blocks;
        let f0 = tb * b.tiles;
        let f1 = (f0 + b.tiles).min(tiles);
        let tpanels = (f1 - f0).div_ceil(NR);
        let ldm = tpanels * NR;
        let p0 = cb * b.panels;
        let p1 = (p0 + b.panels).min(kernel.panels);
        let rows = (p1 - p0) * mr;
        let x = &input.data()[img * cin * h * w..(img + 1) * cin * h * w];
        with_scratch2::<T, _>(XI * cin * ldm, XI * rows * ldm, |v, m| {
            input_transform(tk, x, &g, tw, (f0, f1), ldm, v);
            for xi in 0..XI {
                let vx = &v[xi * cin * ldm..(xi + 1) * cin * ldm];
                for p in p0..p1 {
                    let a = kernel.panel(p, xi);
                    for tp in 0..tpanels {
                        let c = &mut m[(xi * rows + (p - p0) * mr) * ldm + tp * NR..];
                        micro(cin, a, &vx[tp * NR..], ldm, c, ldm);
                    }
                }
            }
            let c0 = p0 * mr;
            let c1 = (p1 * mr).min(g.cout);
            let o = out_ptr;
            let base = img * g.cout * g.ho * g.wo;
            // SAFETY: this task alone writes the pixels of tiles f0..f1 of
            // channels c0..c1 of image img; the slice covers that image's
            // channels c0..c1, inside `out`, and other tasks write only other
            // tiles or channels (which this task leaves untouched).
            let dst = unsafe {
                std::slice::from_raw_parts_mut(
                    o.0.add(base + c0 * g.ho * g.wo),
                    (c1 - c0) * g.ho * g.wo,
                )
            };
            debug_assert!(base + c1 * g.ho * g.wo <= out_len);
            output_transform(tk, m, &g, tw, (f0, f1), ldm, rows, (c0, c1), bias, dst);
        });
    });
    Ok(out)
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

/// The transforms are plain adds and subtracts on arrays, which the compiler
/// vectorizes; with AVX2 enabled it uses registers twice as wide. The results
/// are the same bits either way (no fused operations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transforms {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

fn transforms_kind() -> Transforms {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            return Transforms::Avx2;
        }
    }
    Transforms::Baseline
}

#[allow(clippy::too_many_arguments)]
fn input_transform<T: Element>(
    kind: Transforms,
    x: &[T],
    g: &Geometry,
    tw: usize,
    span: (usize, usize),
    ldv: usize,
    v: &mut [T],
) {
    match kind {
        Transforms::Baseline => input_transform_impl(x, g, tw, span, ldv, v),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2` is only chosen when the CPU has AVX2.
        Transforms::Avx2 => unsafe { input_transform_avx2(x, g, tw, span, ldv, v) },
    }
}

/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn input_transform_avx2<T: Element>(
    x: &[T],
    g: &Geometry,
    tw: usize,
    span: (usize, usize),
    ldv: usize,
    v: &mut [T],
) {
    input_transform_impl(x, g, tw, span, ldv, v)
}

#[allow(clippy::too_many_arguments)]
fn output_transform<T: Element>(
    kind: Transforms,
    m: &[T],
    g: &Geometry,
    tw: usize,
    span: (usize, usize),
    ldm: usize,
    rows: usize,
    chans: (usize, usize),
    bias: Option<&[T]>,
    dst: &mut [T],
) {
    match kind {
        Transforms::Baseline => output_transform_impl(m, g, tw, span, ldm, rows, chans, bias, dst),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2` is only chosen when the CPU has AVX2.
        Transforms::Avx2 => unsafe {
            output_transform_avx2(m, g, tw, span, ldm, rows, chans, bias, dst)
        },
    }
}

/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn output_transform_avx2<T: Element>(
    m: &[T],
    g: &Geometry,
    tw: usize,
    span: (usize, usize),
    ldm: usize,
    rows: usize,
    chans: (usize, usize),
    bias: Option<&[T]>,
    dst: &mut [T],
) {
    output_transform_impl(m, g, tw, span, ldm, rows, chans, bias, dst)
}

/// Writes `V = B^T d B` of tiles `f0..f1` (row-major over the tile grid,
/// `tw` tiles per row) and every input channel into `v`, laid out
/// `[xi][cin][ldv]` (tile `f` in column `f - f0`). Columns past `f1 - f0`
/// are left as they were: the product keeps columns independent and their
/// results are never read.
#[inline(always)]
fn input_transform_impl<T: Element>(
    x: &[T],
    g: &Geometry,
    tw: usize,
    (f0, f1): (usize, usize),
    ldv: usize,
    v: &mut [T],
) {
    let cin = g.cin;
    let zero = T::zero();
    // Even and odd input columns of the 4 rows under a run of tiles, then
    // (in place) B^T applied along the rows.
    let mut ev = [[zero; CHUNK + 1]; 4];
    let mut od = [[zero; CHUNK + 1]; 4];
    for ci in 0..cin {
        let plane = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        let mut f = f0;
        while f < f1 {
            let ty = f / tw;
            let tx0 = f % tw;
            let nt = (tw - tx0).min(CHUNK).min(f1 - f);
            // Tile tx0 + m starts at column 2 (tx0 + m) - pw.
            let xs = (2 * tx0) as isize - g.pw as isize;
            for r in 0..4 {
                let (e, o) = (&mut ev[r][..=nt], &mut od[r][..=nt]);
                let y = (2 * ty + r) as isize - g.ph as isize;
                if y < 0 || y as usize >= g.h {
                    e.fill(zero);
                    o.fill(zero);
                    continue;
                }
                let row = &plane[y as usize * g.w..(y as usize + 1) * g.w];
                // Columns xs + 2m and xs + 2m + 1 are both inside the row for
                // m in lo..hi; the (at most two) others go through checks.
                let w = g.w as isize;
                let lo = ((-xs).max(0) as usize).div_ceil(2).min(nt + 1);
                let hi = if w - 2 - xs >= 0 {
                    (((w - 2 - xs) / 2) as usize + 1).min(nt + 1)
                } else {
                    0
                }
                .max(lo);
                if hi > lo {
                    let x0 = (xs + 2 * lo as isize) as usize;
                    let src = &row[x0..x0 + 2 * (hi - lo)];
                    for ((e, o), p) in e[lo..hi]
                        .iter_mut()
                        .zip(o[lo..hi].iter_mut())
                        .zip(src.chunks_exact(2))
                    {
                        *e = p[0];
                        *o = p[1];
                    }
                }
                let at = |x: isize| {
                    if x >= 0 && x < w {
                        row[x as usize]
                    } else {
                        zero
                    }
                };
                for m in (0..lo).chain(hi..=nt) {
                    e[m] = at(xs + 2 * m as isize);
                    o[m] = at(xs + 2 * m as isize + 1);
                }
            }
            for d in [&mut ev, &mut od] {
                let [d0, d1, d2, d3] = d;
                for (((a, b), c), e) in d0[..=nt]
                    .iter_mut()
                    .zip(d1[..=nt].iter_mut())
                    .zip(d2[..=nt].iter_mut())
                    .zip(d3[..=nt].iter_mut())
                {
                    let (v0, v1, v2, v3) = (*a, *b, *c, *e);
                    *a = v0 - v2;
                    *b = v1 + v2;
                    *c = v2 - v1;
                    *e = v1 - v3;
                }
            }
            // B along the columns (tile j: columns e[j], o[j], e[j+1], o[j+1]).
            let l0 = f - f0;
            for i in 0..4 {
                let (e, o) = (&ev[i][..=nt], &od[i][..=nt]);
                let at = |xi: usize| (xi * cin + ci) * ldv + l0;
                let d = &mut v[at(4 * i)..][..nt];
                for ((d, a), b) in d.iter_mut().zip(e).zip(&e[1..]) {
                    *d = *a - *b;
                }
                let d = &mut v[at(4 * i + 1)..][..nt];
                for ((d, a), b) in d.iter_mut().zip(o).zip(&e[1..]) {
                    *d = *a + *b;
                }
                let d = &mut v[at(4 * i + 2)..][..nt];
                for ((d, a), b) in d.iter_mut().zip(&e[1..]).zip(o) {
                    *d = *a - *b;
                }
                let d = &mut v[at(4 * i + 3)..][..nt];
                for ((d, a), b) in d.iter_mut().zip(o).zip(&o[1..]) {
                    *d = *a - *b;
                }
            }
            f += nt;
        }
    }
}

/// `Y = A^T M A` (`A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]`) for tiles `f0..f1`
/// and channels `c0..c1`, plus bias, into `dst` (channels c0..c1 of one image).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn output_transform_impl<T: Element>(
    m: &[T],
    g: &Geometry,
    tw: usize,
    (f0, f1): (usize, usize),
    ldm: usize,
    rows: usize,
    (c0, c1): (usize, usize),
    bias: Option<&[T]>,
    dst: &mut [T],
) {
    let hw = g.ho * g.wo;
    // s[a][jj]: A^T applied along the rows, for each of the 4 columns jj.
    let mut s = [[[T::zero(); CHUNK]; 4]; 2];
    for c in c0..c1 {
        let bv = bias.map_or(T::zero(), |b| b[c]);
        let plane = &mut dst[(c - c0) * hw..(c - c0 + 1) * hw];
        let row_of = |xi: usize| &m[(xi * rows + (c - c0)) * ldm..][..ldm];
        let mut f = f0;
        while f < f1 {
            let ty = f / tw;
            let tx0 = f % tw;
            let nt = (tw - tx0).min(CHUNK).min(f1 - f);
            let l0 = f - f0;
            for jj in 0..4 {
                let m0 = &row_of(jj)[l0..l0 + nt];
                let m1 = &row_of(4 + jj)[l0..l0 + nt];
                let m2 = &row_of(8 + jj)[l0..l0 + nt];
                let m3 = &row_of(12 + jj)[l0..l0 + nt];
                let [s0, s1] = &mut s;
                for (((((d0, d1), a), b), c), e) in s0[jj][..nt]
                    .iter_mut()
                    .zip(s1[jj][..nt].iter_mut())
                    .zip(m0)
                    .zip(m1)
                    .zip(m2)
                    .zip(m3)
                {
                    *d0 = *a + *b + *c;
                    *d1 = *b - *c - *e;
                }
            }
            for (a, sa) in s.iter().enumerate() {
                let y = 2 * ty + a;
                if y >= g.ho {
                    break;
                }
                let orow = &mut plane[y * g.wo..(y + 1) * g.wo];
                let x0 = 2 * tx0;
                let pairs = nt.min((g.wo - x0) / 2);
                let [q0, q1, q2, q3] = sa;
                for ((((o, a), b), c), d) in orow[x0..x0 + 2 * pairs]
                    .chunks_exact_mut(2)
                    .zip(&q0[..pairs])
                    .zip(&q1[..pairs])
                    .zip(&q2[..pairs])
                    .zip(&q3[..pairs])
                {
                    o[0] = *a + *b + *c + bv;
                    o[1] = *b - *c - *d + bv;
                }
                if pairs < nt {
                    // Odd width: the last tile has one column.
                    orow[x0 + 2 * pairs] = q0[pairs] + q1[pairs] + q2[pairs] + bv;
                }
            }
            f += nt;
        }
    }
}

/// `C (mr x NR, row stride ldc) = A B` with `A` packed `k x mr` and `B`
/// `k x NR` with row stride `ldb`: `(k, a, b, ldb, c, ldc)`.
type MicroKernel<T> = fn(usize, &[T], &[T], usize, &mut [T], usize);

/// The micro-kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Micro {
    /// Portable code, any element type.
    Generic,
    /// `f32`, AVX2 + FMA, 6 x 16.
    Avx2,
    /// `f32`, AVX-512, 12 x 16.
    Avx512,
}

impl Micro {
    fn mr(self) -> usize {
        match self {
            Micro::Generic | Micro::Avx2 => MR,
            Micro::Avx512 => MR_AVX512,
        }
    }

    fn function<T: Element>(self) -> MicroKernel<T> {
        match self {
            Micro::Generic => micro_generic::<T>,
            #[cfg(target_arch = "x86_64")]
            Micro::Avx2 => micro_f32_avx2_checked::<T>,
            #[cfg(target_arch = "x86_64")]
            Micro::Avx512 => micro_f32_avx512_checked::<T>,
            #[cfg(not(target_arch = "x86_64"))]
            _ => micro_generic::<T>,
        }
    }
}

/// The best micro-kernel for `T` on this CPU. `SIGHTLINE_SIMD=avx2` or
/// `SIGHTLINE_SIMD=generic` caps it (to measure what a CPU without AVX-512
/// would run); read once.
fn micro_kind<T: 'static>() -> Micro {
    static F32: OnceLock<Micro> = OnceLock::new();
    if TypeId::of::<T>() != TypeId::of::<f32>() {
        return Micro::Generic;
    }
    *F32.get_or_init(|| {
        let cap = std::env::var("SIGHTLINE_SIMD").unwrap_or_default();
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected;
            if cap != "avx2" && cap != "generic" && is_x86_feature_detected!("avx512f") {
                return Micro::Avx512;
            }
            if cap != "generic"
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
            {
                return Micro::Avx2;
            }
        }
        let _ = cap;
        Micro::Generic
    })
}

fn micro_generic<T: Element>(k: usize, a: &[T], b: &[T], ldb: usize, c: &mut [T], ldc: usize) {
    let mut acc = [[T::zero(); NR]; MR];
    for (p, av) in a[..k * MR].chunks_exact(MR).enumerate() {
        let bv = &b[p * ldb..p * ldb + NR];
        for r in 0..MR {
            for j in 0..NR {
                acc[r][j] += av[r] * bv[j];
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        c[r * ldc..r * ldc + NR].copy_from_slice(row);
    }
}

#[cfg(target_arch = "x86_64")]
fn micro_f32_avx2_checked<T: Element>(
    k: usize,
    a: &[T],
    b: &[T],
    ldb: usize,
    c: &mut [T],
    ldc: usize,
) {
    assert!(a.len() >= k * MR && b.len() + ldb >= k * ldb + NR && c.len() >= (MR - 1) * ldc + NR);
    assert_eq!(TypeId::of::<T>(), TypeId::of::<f32>());
    // SAFETY: T is f32 (asserted), so the pointer casts are identities; the
    // lengths were checked above; `c` does not alias `a` or `b` (distinct
    // borrows); this kernel is only selected when the CPU has AVX2 and FMA.
    unsafe {
        micro_f32_avx2(
            k,
            a.as_ptr() as *const f32,
            b.as_ptr() as *const f32,
            ldb,
            c.as_mut_ptr() as *mut f32,
            ldc,
        )
    }
}

/// The AVX2 + FMA micro-kernel: 6 x 16 accumulators in 12 registers.
///
/// # Safety
/// The CPU must have AVX2 and FMA; `a` must hold `k * 6`, `b`
/// `(k - 1) * ldb + 16` and `c` `5 * ldc + 16` valid elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_f32_avx2(
    k: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..k {
        let b0 = _mm256_loadu_ps(b);
        let b1 = _mm256_loadu_ps(b.add(8));
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*a.add(r));
            acc_r[0] = _mm256_fmadd_ps(av, b0, acc_r[0]);
            acc_r[1] = _mm256_fmadd_ps(av, b1, acc_r[1]);
        }
        a = a.add(MR);
        b = b.add(ldb);
    }
    for (r, acc_r) in acc.iter().enumerate() {
        _mm256_storeu_ps(c.add(r * ldc), acc_r[0]);
        _mm256_storeu_ps(c.add(r * ldc + 8), acc_r[1]);
    }
}

#[cfg(target_arch = "x86_64")]
fn micro_f32_avx512_checked<T: Element>(
    k: usize,
    a: &[T],
    b: &[T],
    ldb: usize,
    c: &mut [T],
    ldc: usize,
) {
    const M: usize = MR_AVX512;
    assert!(a.len() >= k * M && b.len() + ldb >= k * ldb + NR && c.len() >= (M - 1) * ldc + NR);
    assert_eq!(TypeId::of::<T>(), TypeId::of::<f32>());
    // SAFETY: T is f32 (asserted), so the pointer casts are identities; the
    // lengths were checked above; `c` does not alias `a` or `b` (distinct
    // borrows); this kernel is only selected when the CPU has AVX-512F.
    unsafe {
        micro_f32_avx512(
            k,
            a.as_ptr() as *const f32,
            b.as_ptr() as *const f32,
            ldb,
            c.as_mut_ptr() as *mut f32,
            ldc,
        )
    }
}

/// The AVX-512 micro-kernel: 12 x 16 accumulators, one register per row.
///
/// # Safety
/// The CPU must have AVX-512F; `a` must hold `k * MR_AVX512`, `b`
/// `(k - 1) * ldb + 16` and `c` `(MR_AVX512 - 1) * ldc + 16` valid elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_f32_avx512(
    k: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) {
    use std::arch::x86_64::*;
    const M: usize = MR_AVX512;
    let mut acc = [_mm512_setzero_ps(); M];
    let (mut a, mut b) = (a, b);
    for _ in 0..k {
        let bv = _mm512_loadu_ps(b);
        for (r, acc_r) in acc.iter_mut().enumerate() {
            *acc_r = _mm512_fmadd_ps(_mm512_set1_ps(*a.add(r)), bv, *acc_r);
        }
        a = a.add(M);
        b = b.add(ldb);
    }
    for (r, acc_r) in acc.iter().enumerate() {
        _mm512_storeu_ps(c.add(r * ldc), *acc_r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{conv2d, conv2d_backward_input, Conv2dParams};

    fn seq<T: Element>(shape: &[usize], mul: usize) -> Tensor<T> {
        let n: usize = shape.iter().product();
        Tensor::from_vec(
            shape.to_vec(),
            (0..n)
                .map(|i| T::from_f64_lossy(((i * mul) % 23) as f64 / 11.0 - 1.0))
                .collect(),
        )
        .unwrap()
    }

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
        let max = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(got.max_abs_diff(&want).unwrap() < 1e-6 * max);
        let g = seq::<f32>(want.shape(), 3);
        let want = crate::conv::backward_input_im2col(&g, &wt, (hw, hw), p).unwrap();
        let got = conv2d_backward_input(&g, &wt, (hw, hw), p).unwrap();
        let max = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(got.max_abs_diff(&want).unwrap() < 1e-6 * max);
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

    #[test]
    fn kernel_must_be_3x3() {
        let w = Tensor::<f32>::zeros([2, 2, 5, 5]);
        assert!(WinogradKernel::forward(&w).is_err());
    }
}
