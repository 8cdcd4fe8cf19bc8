//! Products `Y = W B` of a packed weight ([`PackedWeight`]) with a right-hand
//! side `B` (`K x cols` per image) that is packed, a block of columns at a
//! time, into contiguous micro-panels of [`PAIR`] columns (`[pair][K][PAIR]`,
//! 64-byte rows): the unfolded input of a convolution (im2col, written
//! straight into the panels, never as a whole column matrix:
//! [`panel_product`]), or a matrix read in place where its rows are whole
//! cache lines apart (an output gradient, for col2im:
//! [`with_matrix_block`], [`product_block`]).
//!
//! The input is first copied into zero-padded planes whose rows are split
//! by column phase for strides above 1 ([`PaddedPlanes`]), so that every
//! row of the unfolded matrix is, per output row, a contiguous run of a
//! plane: packing is plain copies, with no bounds tests per value.
//!
//! Reading `B` from contiguous panels instead of from rows `cols` apart
//! keeps the micro-kernel's loads aligned and spread over the L1 sets (rows
//! of a 112 x 112 or 56 x 56 image are a multiple of 4 KiB apart, so the
//! rows of a panel read in place fell into a few sets), and packing per task
//! keeps the unfolded block in L2 instead of a whole unfolded image
//! (7.4 MB for ResNet-50's stem) written to and read back from memory.
//!
//! Two ways to split the work, chosen from the shapes only:
//! * **per task** (many columns): each task packs its own block of columns
//!   (all `K` rows) and multiplies it with every row of the weight;
//! * **shared** (few columns, e.g. a 7 x 7 output): the whole `B` of an
//!   image is packed once (in parallel), then tasks split the rows of the
//!   weight (and the columns).
//!
//! Every output is one micro-kernel chain over `k = 0..K` in order (in
//! blocks of [`KC`] rows accumulated in place, the same chain; the last
//! few columns of a block by [`super::thin`], the same chain again), then
//! the bias: the results are bit-identical whatever the split, the number
//! of threads, or the packing of `B`, and to the earlier products that read
//! a whole unfolded matrix.

use super::col2im::valid_range;
use super::packed::PackedWeight;
use super::thin::{thin_available, thin_product, LANES, THIN_MAX, THIN_PANELS};
use super::ConvGeometry;
use crate::cblock::CBlock;
use crate::element::Element;
use crate::error::Result;
use crate::scratch::{scratch_len, with_scratch};
use crate::simd::has_avx2;
use crate::winograd::NR;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// Columns of a packed micro-panel of `B`: two of the micro-kernels'
/// [`NR`], for the wide kernel.
pub(super) const PAIR: usize = 2 * NR;

/// Rows of `B` (the sum) per block of the product: a block of a kernel
/// panel (`KC x mr`) stays in L1 and the task's block of `B` (`KC x` its
/// columns) in L2 while the panels stream by.
const KC: usize = 256;

/// Tasks wanted per call (per image or over the batch): enough for a few
/// threads to stay balanced with tasks of uneven cost.
const TASKS: usize = 16;

/// Elements of `B` a task packs at most (all `K` rows of its columns) when
/// tasks pack their own columns: 512 KiB of `f32`, well inside L2.
const TASK_B_ELEMS: usize = 1 << 17;

/// Columns per task at most: the task's `KC`-row block of `B` (512 KiB of
/// `f32` at 512 columns) stays in L2.
const MAX_TASK_COLS: usize = 512;

/// Rows of `B` per packing task in the shared mode.
const PACK_ROWS: usize = 256;

/// `B` of one image as a flat source: `B[r][(oy, ox)]` is
/// `data[base(r) + oy ystride + ox]`, with `wo` columns per output row (a
/// matrix is one output row of all its columns).
#[derive(Clone, Copy)]
struct Source<'a, T> {
    data: &'a [T],
    wo: usize,
    ystride: usize,
    rows: RowBase,
}

/// Where row `r` of `B` starts in a [`Source`].
#[derive(Clone, Copy)]
enum RowBase {
    /// Row `r` at `r * stride`.
    Matrix { stride: usize },
    /// Row `(c, ki, kj)` of an unfolded image read from its
    /// [`PaddedPlanes`]: at `c * plane + ki * dh * prow + phase(kj) * wq +
    /// shift(kj)`.
    Unfold {
        kh: usize,
        kw: usize,
        plane: usize,
        ki_step: usize,
        wq: usize,
        sw: usize,
        dw: usize,
    },
}

impl RowBase {
    #[inline]
    fn base(&self, r: usize) -> usize {
        match *self {
            RowBase::Matrix { stride } => r * stride,
            RowBase::Unfold {
                kh,
                kw,
                plane,
                ki_step,
                wq,
                sw,
                dw,
            } => {
                let kk = kh * kw;
                let (c, ki, kj) = (r / kk, (r % kk) / kw, r % kw);
                let x = kj * dw;
                c * plane + ki * ki_step + (x % sw) * wq + x / sw
            }
        }
    }
}

/// The input of a convolution laid out so that every row of its unfolded
/// matrix is a run of contiguous values per output row: each channel's
/// plane zero-padded, and its padded rows split into `stride.1` phases
/// (columns `x` with `x % stride.1 == phase`), of which only the phases some
/// tap reads are kept. When the windows of consecutive output rows do not
/// overlap (`(kh - 1) dh < sh`, e.g. a 1 x 1 kernel at stride 2), only the
/// rows some tap reads are kept, in (output row, tap row) order. Stride-1
/// unpadded inputs are read as they are.
struct PaddedPlanes {
    /// Phases kept per padded row.
    nph: usize,
    /// Values per phase of a padded row.
    wq: usize,
    /// Rows kept.
    hp: usize,
    /// Whether the rows kept are those read, by (output row, tap row).
    gathered: bool,
}

impl PaddedPlanes {
    fn new(g: &ConvGeometry) -> Self {
        let (sw, dw) = (g.p.stride.1, g.p.dilation.1);
        let wp = g.w + 2 * g.p.padding.1;
        let gathered = (g.kh - 1) * g.p.dilation.0 < g.p.stride.0;
        Self {
            nph: sw.min((g.kw - 1) * dw + 1),
            wq: wp.div_ceil(sw),
            hp: if gathered {
                g.ho * g.kh
            } else {
                g.h + 2 * g.p.padding.0
            },
            gathered,
        }
    }

    /// The padded row that stored row `j` holds.
    fn padded_row(&self, g: &ConvGeometry, j: usize) -> usize {
        if self.gathered {
            (j / g.kh) * g.p.stride.0 + (j % g.kh) * g.p.dilation.0
        } else {
            j
        }
    }

    /// Whether the input can be read as it is.
    fn identity(g: &ConvGeometry) -> bool {
        g.p.padding == (0, 0) && g.p.stride.1 == 1
    }

    /// Values per channel.
    fn plane(&self) -> usize {
        self.hp * self.nph * self.wq
    }

    /// Fills `dst` (`n * cin` planes) from the `n` images of `img`.
    fn fill<T: Element>(&self, img: &[T], g: &ConvGeometry, dst: &mut [T]) {
        let (sw, (ph, pw)) = (g.p.stride.1, g.p.padding);
        let prow = self.nph * self.wq;
        dst.par_chunks_mut(self.plane())
            .zip(img.par_chunks(g.h * g.w))
            .for_each(|(planes, src)| {
                for (j, row) in planes.chunks_exact_mut(prow).enumerate() {
                    let iy = self.padded_row(g, j).wrapping_sub(ph);
                    if iy >= g.h {
                        row.fill(T::zero());
                        continue;
                    }
                    let srow = &src[iy * g.w..(iy + 1) * g.w];
                    for (phase, d) in row.chunks_exact_mut(self.wq).enumerate() {
                        let (lo, hi) = valid_range(self.wq, g.w, sw, phase, pw);
                        d[..lo].fill(T::zero());
                        d[hi..].fill(T::zero());
                        if lo < hi {
                            let x0 = lo * sw + phase - pw;
                            let s = &srow[x0..];
                            let d = &mut d[lo..hi];
                            match sw {
                                1 => d.copy_from_slice(&s[..d.len()]),
                                2 => {
                                    // Pairs, then the last value alone: a
                                    // loop the compiler vectorizes.
                                    let (last, body) = d.split_last_mut().expect("lo < hi");
                                    for (v, pair) in body.iter_mut().zip(s.chunks_exact(2)) {
                                        *v = pair[0];
                                    }
                                    *last = s[2 * body.len()];
                                }
                                _ => {
                                    for (i, v) in d.iter_mut().enumerate() {
                                        *v = s[i * sw];
                                    }
                                }
                            }
                        }
                    }
                }
            });
    }

    /// The [`Source`] of image `n`'s unfolded matrix in `planes` (all images'
    /// planes, or the input itself when [`PaddedPlanes::identity`]).
    fn source<'a, T>(&self, planes: &'a [T], g: &ConvGeometry, n: usize) -> Source<'a, T> {
        let plane = self.plane();
        let prow = self.nph * self.wq;
        let (ystride, ki_step) = if self.gathered {
            (g.kh * prow, prow)
        } else {
            (g.p.stride.0 * prow, g.p.dilation.0 * prow)
        };
        Source {
            data: &planes[n * g.cin * plane..(n + 1) * g.cin * plane],
            wo: g.wo,
            ystride,
            rows: RowBase::Unfold {
                kh: g.kh,
                kw: g.kw,
                plane,
                ki_step,
                wq: self.wq,
                sw: g.p.stride.1,
                dw: g.p.dilation.1,
            },
        }
    }
}

/// The planes of every image of a product, and how they are laid out.
struct Planes<'a, T> {
    layout: PaddedPlanes,
    data: &'a [T],
    g: &'a ConvGeometry,
}

impl<'a, T> Planes<'a, T> {
    fn image(&self, n: usize) -> Source<'a, T> {
        self.layout.source(self.data, self.g, n)
    }
}

/// The runs of one pair of columns (`j0 .. j0 + width` of an image) in a
/// [`Source`]: `(first column in the pair, length, offset from the row
/// base)`, appended to `segs`.
fn pair_runs<T>(
    src: &Source<'_, T>,
    j0: usize,
    width: usize,
    segs: &mut Vec<(usize, usize, usize)>,
) {
    let (mut oy, mut ox) = (j0 / src.wo, j0 % src.wo);
    let mut t = 0;
    while t < width {
        let len = (src.wo - ox).min(width - t);
        segs.push((t, len, oy * src.ystride + ox));
        t += len;
        ox = 0;
        oy += 1;
    }
}

/// Packs rows `rows` of `B` (columns `j0 .. j0 + width` of its image) into
/// `dst`: pair `q` of the block at `q * pair_stride`, row `r` at
/// `+ (r - rows.start) * PAIR`, columns past `width` of the last pair zero.
fn pack<T: Element>(
    src: &Source<'_, T>,
    pair_stride: usize,
    rows: Range<usize>,
    j0: usize,
    width: usize,
    dst: &mut [T],
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 (checked).
        unsafe { pack_avx2(src, pair_stride, rows, j0, width, dst) };
        return;
    }
    pack_impl(src, pair_stride, rows, j0, width, dst)
}

/// [`pack`] compiled for AVX2 (the same copies in wider registers).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn pack_avx2<T: Element>(
    src: &Source<'_, T>,
    pair_stride: usize,
    rows: Range<usize>,
    j0: usize,
    width: usize,
    dst: &mut [T],
) {
    pack_impl(src, pair_stride, rows, j0, width, dst)
}

#[inline(always)]
fn pack_impl<T: Element>(
    src: &Source<'_, T>,
    pair_stride: usize,
    rows: Range<usize>,
    j0: usize,
    width: usize,
    dst: &mut [T],
) {
    let r0 = rows.start;
    let pairs = width.div_ceil(PAIR);
    let mut segs = Vec::with_capacity(pairs * 2);
    let mut starts = Vec::with_capacity(pairs + 1);
    for q in 0..pairs {
        starts.push(segs.len());
        pair_runs(src, j0 + q * PAIR, (width - q * PAIR).min(PAIR), &mut segs);
    }
    starts.push(segs.len());
    let tail = width - (pairs - 1) * PAIR;
    for r in rows {
        let base = src.rows.base(r);
        let row = &src.data[base..];
        for q in 0..pairs {
            let at = q * pair_stride + (r - r0) * PAIR;
            let d: &mut [T; PAIR] = (&mut dst[at..at + PAIR]).try_into().expect("PAIR values");
            match segs[starts[q]..starts[q + 1]] {
                [(0, PAIR, off)] => {
                    *d = *row[off..].first_chunk::<PAIR>().expect("inside the source");
                }
                ref runs => {
                    for &(t, len, off) in runs {
                        d[t..t + len].copy_from_slice(&row[off..off + len]);
                    }
                    if q + 1 == pairs {
                        d[tail..].fill(T::zero());
                    }
                }
            }
        }
    }
}

/// A block of `B` as the micro-kernels read it: pair `q` (of [`PAIR`]
/// columns) at `data[q * pair_stride..]` with rows `ldb` apart for the first
/// `full` pairs, the others packed in `tail` (`[pair - full][k][PAIR]`).
pub(super) struct BView<'a, T> {
    data: &'a [T],
    pair_stride: usize,
    ldb: usize,
    full: usize,
    tail: &'a [T],
}

impl<'a, T> BView<'a, T> {
    /// A block packed by [`pack`] (`k` rows).
    fn packed(b: &'a [T], k: usize) -> Self {
        Self {
            data: b,
            pair_stride: k * PAIR,
            ldb: PAIR,
            full: usize::MAX,
            tail: &[],
        }
    }

    /// Pair `q` from row `k0` (of `k`), and its row stride.
    #[inline]
    fn pair(&self, q: usize, k0: usize, k: usize) -> (&'a [T], usize) {
        if q < self.full {
            (&self.data[q * self.pair_stride + k0 * self.ldb..], self.ldb)
        } else {
            (&self.tail[((q - self.full) * k + k0) * PAIR..], PAIR)
        }
    }
}

/// Runs `f` on columns `j0 .. j0 + width` of the row-major `k x cols`
/// matrix `m` as a [`BView`]: read in place when its rows are whole 64-byte
/// lines apart (`cols` a multiple of [`NR`]), but for a last, partial pair,
/// packed; all packed otherwise. Returns what `f` returns.
///
/// # Errors
/// [`crate::TensorError::TooLarge`] if the scratch for the packed pairs
/// cannot be had (then `f` is not run), or the error of `f`.
pub(super) fn with_matrix_block<T: Element, R>(
    m: &[T],
    k: usize,
    cols: usize,
    j0: usize,
    width: usize,
    f: impl FnOnce(&BView<'_, T>) -> Result<R>,
) -> Result<R> {
    let src = Source {
        data: &m[..k * cols],
        wo: cols,
        ystride: 0,
        rows: RowBase::Matrix { stride: cols },
    };
    let pairs = width.div_ceil(PAIR);
    let full = if cols.is_multiple_of(NR) {
        width / PAIR
    } else {
        0
    };
    let op = "packed matrix block";
    let len = scratch_len(op, &[&[pairs - full, k, PAIR]])?;
    with_scratch::<T, _>(op, len, |tail| {
        if full < pairs {
            let j = j0 + full * PAIR;
            pack(&src, k * PAIR, 0..k, j, j0 + width - j, tail);
        }
        let view = BView {
            data: &m[j0..k * cols],
            pair_stride: PAIR,
            ldb: cols,
            full,
            tail,
        };
        f(&view)
    })?
}

/// `out = W[panels] B (+ bias)` for a packed block `b` (`[pair][k][PAIR]`,
/// `width` valid columns): row `(p - panels.start) * mr + r` of the
/// product (while below `rows`), column `j`, at row `row`, column `j` of
/// the block `out`;
/// `bias` (if any) indexed by the same row. Each entry is the micro-kernel
/// chain over `k` in order (blocks of [`KC`] steps accumulated in place),
/// then the bias added: the same bits whatever the blocking.
///
/// Whole micro-tiles are written in place; a tile with rows or columns past
/// the end goes through a scratch tile, of which only the valid part is
/// copied (and read back, to accumulate the next block of `k`). The first
/// block of `k` writes every element of the block before anything reads
/// it, so `out` may start uninitialised.
pub(super) fn product_block<T: Element>(
    kernel: &PackedWeight<T>,
    b: &BView<'_, T>,
    width: usize,
    panels: Range<usize>,
    rows: usize,
    mut out: CBlock<'_, T>,
    bias: Option<&[T]>,
) {
    let (k, mr) = (kernel.in_channels(), kernel.mr());
    let micro = kernel.micro().function::<T>();
    let wide = kernel.micro().wide_function::<T>();
    // The last `thin` columns (fewer than NR) by the thin kernel, where
    // there is one.
    let rem = width % NR;
    let thin = if (1..=THIN_MAX).contains(&rem) && thin_available::<T>(kernel.micro()) {
        rem
    } else {
        0
    };
    let width_main = width - thin;
    let halves = width_main.div_ceil(NR);
    let p0 = panels.start;
    let mut tile = [T::zero(); 16 * PAIR];
    // Every panel has a row below `rows`, and `out` holds them all.
    // At least one block of `k`, which writes all of `out` (it may start
    // uninitialised) before anything reads it.
    assert!(!panels.is_empty() && mr <= 16 && k > 0);
    assert!((panels.len() - 1) * mr < rows && rows <= panels.len() * mr);
    assert!(out.holds(rows, width));
    for k0 in (0..k).step_by(KC) {
        let kl = KC.min(k - k0);
        let more = k0 > 0;
        for p in panels.clone() {
            let a = &kernel.panel(p)[k0 * mr..];
            let r0 = (p - p0) * mr;
            let prows = (rows - r0).min(mr);
            for q in 0..halves.div_ceil(2) {
                let (bq, ldb) = b.pair(q, k0, k);
                let cols = (width_main - q * PAIR).min(PAIR);
                let span = cols.next_multiple_of(NR);
                let (j, direct) = (q * PAIR, prows == mr && cols == span);
                if !direct && more {
                    for r in 0..prows {
                        tile[r * PAIR..r * PAIR + cols]
                            .copy_from_slice(&out.row(r0 + r)[j..j + cols]);
                    }
                }
                {
                    let mut c = if direct {
                        out.sub(r0, j)
                    } else {
                        CBlock::of_slice(&mut tile[..], PAIR, mr)
                    };
                    match wide {
                        Some(wide) if span == PAIR => wide(kl, a, bq, ldb, c, more),
                        _ => {
                            micro(kl, a, bq, ldb, c.sub(0, 0), more);
                            if span == PAIR {
                                micro(kl, a, &bq[NR..], ldb, c.sub(0, NR), more);
                            }
                        }
                    }
                }
                if !direct {
                    for r in 0..prows {
                        out.write(r0 + r, j, &tile[r * PAIR..r * PAIR + cols]);
                    }
                }
            }
        }
        if thin > 0 {
            let (bq, ldb) = b.pair(width_main / PAIR, k0, k);
            let bt = &bq[width_main % PAIR..];
            for first in panels.clone().step_by(THIN_PANELS) {
                let np = THIN_PANELS.min(panels.end - first);
                let mut accv = [[T::zero(); LANES]; THIN_PANELS * THIN_MAX];
                let a: [&[T]; THIN_PANELS] =
                    std::array::from_fn(|i| &kernel.panel(first + i.min(np - 1))[k0 * mr..]);
                let valid = |i: usize| (rows - (first + i - p0) * mr).min(mr);
                let row = |i: usize, r: usize| (first + i - p0) * mr + r;
                if more {
                    for i in 0..np {
                        for r in 0..valid(i) {
                            let o = &out.row(row(i, r))[width_main..width_main + thin];
                            for (acc, &v) in accv[i * THIN_MAX..].iter_mut().zip(o) {
                                acc[r] = v;
                            }
                        }
                    }
                }
                thin_product(kernel.micro(), kl, mr, &a[..np], bt, ldb, thin, &mut accv);
                for i in 0..np {
                    // Row r of the panel: lane r of each of its `thin` columns.
                    let cols = &accv[i * THIN_MAX..i * THIN_MAX + thin];
                    for r in 0..valid(i) {
                        let mut vals = [T::zero(); THIN_MAX];
                        for (v, col) in vals.iter_mut().zip(cols) {
                            *v = col[r];
                        }
                        out.write(row(i, r), width_main, &vals[..thin]);
                    }
                }
            }
        }
    }
    if let Some(bias) = bias {
        for (r, &bv) in bias[..rows].iter().enumerate() {
            out.row(r)[..width].iter_mut().for_each(|v| *v += bv);
        }
    }
}

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: only used to give rayon tasks disjoint regions of one buffer.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// How a product is split: blocks of columns (of `block` columns, a
/// multiple of [`PAIR`]) and of kernel panels; whether each task packs its
/// own columns.
#[derive(Clone, Copy, Debug)]
struct Split {
    per_task: bool,
    block: usize,
    col_blocks: usize,
    chan_blocks: usize,
}

impl Split {
    fn new(n: usize, k: usize, cols: usize, panels: usize) -> Self {
        let pairs = cols.div_ceil(PAIR);
        // Tasks that pack their own columns: as wide as L2 allows, but
        // narrow enough to make TASKS tasks over the batch.
        let widest = (TASK_B_ELEMS / (k * PAIR).max(1)).clamp(1, MAX_TASK_COLS / PAIR);
        let want = TASKS.div_ceil(n);
        let per = widest.min(pairs / want).max(1);
        if pairs.div_ceil(per) >= want {
            return Self::even(pairs, per, 1, true);
        }
        // Few columns: B packed once per image, tasks split the kernel
        // panels (and the columns beyond MAX_TASK_COLS).
        let per = pairs.min(MAX_TASK_COLS / PAIR);
        let col_blocks = pairs.div_ceil(per);
        let chan_blocks = want.div_ceil(col_blocks).min(panels).max(1);
        Self::even(pairs, per, chan_blocks, false)
    }

    /// Blocks of about `per` pairs, evened out.
    fn even(pairs: usize, per: usize, chan_blocks: usize, per_task: bool) -> Self {
        let col_blocks = pairs.div_ceil(per);
        let per = pairs.div_ceil(col_blocks);
        Self {
            per_task,
            block: per * PAIR,
            col_blocks: pairs.div_ceil(per),
            chan_blocks,
        }
    }
}

/// Panels `p0..p1` of chan block `cb` of `chan_blocks` over `panels`: as even
/// as whole panels allow.
fn chan_range(panels: usize, chan_blocks: usize, cb: usize) -> Range<usize> {
    let (q, r) = (panels / chan_blocks, panels % chan_blocks);
    let start = cb * q + cb.min(r);
    start..start + q + usize::from(cb < r)
}

/// `out = W X (+ bias)` for each image of a one-group convolution `g`, `X`
/// its unfolded input (`K = Cin kh kw` rows, `Ho Wo` columns), `W =
/// kernel` (`Cout x K`): `img` holds the input batch, `out` the output
/// batch (N x Cout x Ho x Wo).
///
/// # Errors
/// [`crate::TensorError::TooLarge`] if a scratch buffer (the padded planes,
/// a block of packed columns) cannot be had; then `out` is not all written.
///
/// # Panics
/// If `img`, `out`, `bias` or `kernel` do not match `g` (the callers in this
/// crate build them from checked geometries).
pub(super) fn panel_product<T: Element>(
    kernel: &PackedWeight<T>,
    img: &[T],
    g: &ConvGeometry,
    bias: Option<&[T]>,
    out: &mut [MaybeUninit<T>],
) -> Result<()> {
    let (m, k) = (kernel.out_channels(), kernel.in_channels());
    let (n, cols) = (g.n, g.ho * g.wo);
    assert!(
        g.p.groups == 1 && g.k_rows() == k && g.cout == m && img.len() == n * g.cin * g.h * g.w,
        "panel_product: unfolded geometry"
    );
    assert_eq!(out.len(), n * m * cols, "panel_product: output length");
    assert!(
        bias.is_none_or(|b| b.len() == m),
        "panel_product: bias length"
    );
    if n == 0 || cols == 0 || m == 0 {
        return Ok(());
    }
    let panels = kernel.panels();
    let s = Split::new(n, k, cols, panels);
    // Written through this pointer only, every element (`product_block`).
    let out_ptr = SendPtr(out.as_mut_ptr().cast::<T>());
    let out_len = out.len();
    // One task: image `img`, column block `cb`, kernel panels `chans`, B
    // packed in `b` (the block's pairs).
    let task = |img: usize, cb: usize, chans: Range<usize>, b: &BView<'_, T>| {
        let j0 = cb * s.block;
        let width = s.block.min(cols - j0);
        let c0 = chans.start * kernel.mr();
        let rows = (chans.len() * kernel.mr()).min(m - c0);
        let start = (img * m + c0) * cols + j0;
        assert!(start + (rows - 1) * cols + width <= out_len);
        let o = out_ptr;
        // SAFETY: columns j0 .. j0 + width of channels c0 .. c0 + rows of
        // image `img`: inside `out` (asserted), and this task's alone (tasks
        // own disjoint images, column blocks and kernel panels). The block
        // claims only those elements of each row, not the other tasks'
        // columns between them.
        let dst = unsafe { CBlock::from_raw(o.0.add(start), cols, rows, width) };
        let bias = bias.map(|bias| &bias[c0..c0 + rows]);
        product_block(kernel, b, width, chans, rows, dst, bias);
    };
    // The source of B: the padded, phase-split planes of the images, or the
    // input itself.
    let identity = PaddedPlanes::identity(g);
    let op = "conv2d padded planes";
    let len = if identity {
        0
    } else {
        let l = PaddedPlanes::new(g);
        scratch_len(op, &[&[l.hp, l.nph, l.wq, g.cin, n]])?
    };
    with_scratch::<T, _>(op, len, |buf| {
        let planes = if identity {
            let layout = PaddedPlanes {
                nph: 1,
                wq: g.w,
                hp: g.h,
                gathered: false,
            };
            Planes {
                layout,
                data: img,
                g,
            }
        } else {
            let layout = PaddedPlanes::new(g);
            layout.fill(img, g, buf);
            Planes {
                layout,
                data: &*buf,
                g,
            }
        };
        run(kernel, &planes, n, cols, &s, &task)
    })?
}

/// One task of [`panel_product`]: image, column block, kernel panels, and
/// the block of `B`.
type Task<'t, T> = dyn Fn(usize, usize, Range<usize>, &BView<'_, T>) + Sync + 't;

/// Runs the tasks of [`panel_product`] as `s` splits them, packing `B` of
/// image `img` from `planes.image(img)`; fails as [`panel_product`] does.
fn run<T: Element>(
    kernel: &PackedWeight<T>,
    planes: &Planes<'_, T>,
    n: usize,
    cols: usize,
    s: &Split,
    task: &Task<'_, T>,
) -> Result<()> {
    let (k, panels) = (kernel.in_channels(), kernel.panels());
    if s.per_task {
        let op = "conv2d im2col panel";
        let tasks = n * s.col_blocks;
        return (0..tasks).into_par_iter().try_for_each(|t| {
            let (img, cb) = (t / s.col_blocks, t % s.col_blocks);
            let j0 = cb * s.block;
            let width = s.block.min(cols - j0);
            let len = scratch_len(op, &[&[width.div_ceil(PAIR), k, PAIR]])?;
            with_scratch::<T, _>(op, len, |b| {
                pack(&planes.image(img), k * PAIR, 0..k, j0, width, b);
                task(img, cb, 0..panels, &BView::packed(b, k));
            })
        });
    }
    let op = "conv2d shared im2col panel";
    let len = scratch_len(op, &[&[cols.div_ceil(PAIR), k, PAIR]])?;
    with_scratch::<T, _>(op, len, |b| {
        for img in 0..n {
            let src = planes.image(img);
            // Pack: one task per (pair, block of rows).
            let jobs: Vec<(usize, usize, &mut [T])> = b
                .chunks_mut(k * PAIR)
                .enumerate()
                .flat_map(|(q, pair)| {
                    pair.chunks_mut(PACK_ROWS * PAIR)
                        .enumerate()
                        .map(move |(rb, rows)| (q, rb, rows))
                })
                .collect();
            jobs.into_par_iter().for_each(|(q, rb, rows)| {
                let j0 = q * PAIR;
                let r0 = rb * PACK_ROWS;
                let r1 = (r0 + PACK_ROWS).min(k);
                pack(&src, 0, r0..r1, j0, PAIR.min(cols - j0), rows);
            });
            let b = &*b;
            let tasks = s.col_blocks * s.chan_blocks;
            (0..tasks).into_par_iter().for_each(|t| {
                let (cb, kb) = (t / s.chan_blocks, t % s.chan_blocks);
                let first_pair = cb * s.block / PAIR;
                let bv = BView::packed(&b[first_pair * k * PAIR..], k);
                task(img, cb, chan_range(panels, s.chan_blocks, kb), &bv);
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::reference::{naive, seq};
    use crate::conv::{
        backward_input_im2col, conv2d_backward_input_cached, conv2d_cached, BackwardInputCache,
        Conv2dParams, ForwardCache,
    };
    use crate::tensor::Tensor;

    fn params(stride: (usize, usize), padding: (usize, usize), dilation: usize) -> Conv2dParams {
        Conv2dParams {
            stride,
            padding,
            dilation: (dilation, dilation),
            groups: 1,
            ..Conv2dParams::default()
        }
    }

    /// The input gradient by scattering every product once (the adjoint of
    /// the direct convolution, in f64).
    fn direct_backward_input(
        gout: &Tensor<f64>,
        w: &Tensor<f64>,
        hw: (usize, usize),
        p: Conv2dParams,
    ) -> Tensor<f64> {
        let [n, cout, ho, wo] = gout.dims4("t").unwrap();
        let [_, cin, kh, kw] = w.dims4("t").unwrap();
        let mut gin = Tensor::zeros([n, cin, hw.0, hw.1]);
        for b in 0..n {
            for co in 0..cout {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let gv = gout.data()[((b * cout + co) * ho + oy) * wo + ox];
                        for c in 0..cin {
                            for ki in 0..kh {
                                for kj in 0..kw {
                                    let iy = (oy * p.stride.0 + ki * p.dilation.0)
                                        .wrapping_sub(p.padding.0);
                                    let ix = (ox * p.stride.1 + kj * p.dilation.1)
                                        .wrapping_sub(p.padding.1);
                                    if iy < hw.0 && ix < hw.1 {
                                        let wv = w.data()[((co * cin + c) * kh + ki) * kw + kj];
                                        gin.data_mut()[((b * cin + c) * hw.0 + iy) * hw.1 + ix] +=
                                            gv * wv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        gin
    }

    /// (input, weight, params) of one-group convolutions off Winograd: the
    /// stem's 7 x 7 / 2 on 3 channels, thin outputs (7 x 7, one column past
    /// a micro-panel; dilated, so not Winograd), more than KC rows of the
    /// sum, partial panels of rows, padding, dilation, strides 2 and 3,
    /// asymmetric kernels, batches.
    fn cases() -> Vec<([usize; 4], [usize; 4], Conv2dParams)> {
        vec![
            ([1, 3, 40, 38], [70, 3, 7, 7], params((2, 2), (3, 3), 1)),
            ([2, 3, 23, 30], [13, 3, 7, 7], params((2, 2), (3, 3), 1)),
            ([2, 20, 15, 13], [30, 20, 3, 3], params((2, 2), (1, 1), 1)),
            ([1, 300, 7, 7], [40, 300, 3, 3], params((1, 1), (2, 2), 2)),
            ([1, 3, 70, 70], [16, 3, 3, 3], params((1, 1), (1, 1), 1)),
            ([1, 40, 40, 40], [13, 40, 3, 3], params((1, 1), (1, 1), 1)),
            ([1, 6, 30, 30], [10, 6, 3, 3], params((1, 1), (2, 2), 2)),
            ([2, 18, 29, 31], [25, 18, 1, 1], params((2, 2), (0, 0), 1)),
            ([1, 5, 26, 27], [7, 5, 5, 5], params((3, 3), (1, 2), 1)),
            ([1, 4, 21, 22], [9, 4, 3, 2], params((2, 1), (0, 1), 1)),
            ([1, 5, 24, 25], [6, 5, 3, 3], params((2, 2), (2, 2), 2)),
            ([2, 6, 17, 19], [5, 6, 2, 2], params((3, 2), (1, 0), 1)),
        ]
    }

    #[test]
    fn forward_matches_the_direct_convolution_in_f64() {
        for (xs, ws, p) in cases() {
            let x = seq(&xs, 7);
            let w = seq(&ws, 5);
            let bias = seq(&[ws[0]], 3);
            let mut want = naive(&x, &w, p);
            let plane = want.len() / (xs[0] * ws[0]);
            for (i, v) in want.data_mut().iter_mut().enumerate() {
                *v += bias.data()[(i / plane) % ws[0]];
            }
            let cache = ForwardCache::new();
            for _ in 0..2 {
                let got = conv2d_cached(&x, &w, Some(&bias), p, &cache).unwrap();
                assert!(cache.is_built());
                let err = got.max_abs_diff(&want).unwrap();
                assert!(err < 1e-10, "{xs:?} {ws:?} {p:?}: {err}");
            }
        }
    }

    #[test]
    fn input_gradient_matches_the_adjoint_in_f64() {
        // Besides the cases above, outputs of 2048 pixels and more (col2im
        // in bands of output rows): few input channels at stride 1 and 2,
        // 7 x 7 / 2 (taps paired in the scatter), dilation with stride 2,
        // stride 3, batches.
        let mut cases = cases();
        cases.extend([
            ([1, 3, 50, 50], [24, 3, 3, 3], params((1, 1), (1, 1), 1)),
            ([1, 3, 100, 98], [20, 3, 7, 7], params((2, 2), (3, 3), 1)),
            ([2, 3, 92, 95], [8, 3, 7, 7], params((2, 2), (3, 3), 1)),
            ([1, 5, 100, 100], [6, 5, 3, 3], params((2, 2), (2, 2), 2)),
            ([1, 4, 150, 150], [5, 4, 5, 5], params((3, 3), (1, 1), 1)),
            ([1, 20, 96, 90], [7, 20, 2, 3], params((2, 2), (0, 1), 1)),
        ]);
        for (xs, ws, p) in cases {
            let w = seq(&ws, 5);
            let hw = (xs[2], xs[3]);
            let g = ConvGeometry::new(&xs, &ws, p).unwrap();
            let gout = seq(&[xs[0], ws[0], g.ho, g.wo], 3);
            let want = direct_backward_input(&gout, &w, hw, p);
            let reference = backward_input_im2col(&gout, &w, hw, p).unwrap();
            assert!(reference.max_abs_diff(&want).unwrap() < 1e-10);
            let cache = BackwardInputCache::new();
            for _ in 0..2 {
                let got = conv2d_backward_input_cached(&gout, &w, hw, p, &cache).unwrap();
                let err = got.max_abs_diff(&want).unwrap();
                assert!(err < 1e-10, "{xs:?} {ws:?} {p:?}: {err}");
            }
        }
    }

    #[test]
    fn f32_is_close_and_identical_across_thread_counts() {
        let mut cases = cases();
        cases.extend([
            ([1, 3, 100, 98], [20, 3, 7, 7], params((2, 2), (3, 3), 1)),
            ([1, 3, 50, 50], [24, 3, 3, 3], params((1, 1), (1, 1), 1)),
            ([1, 64, 14, 14], [300, 64, 3, 3], params((2, 2), (1, 1), 1)),
        ]);
        for (xs, ws, p) in cases {
            let (x, w) = (seq(&xs, 7), seq(&ws, 5));
            let g = ConvGeometry::new(&xs, &ws, p).unwrap();
            let gout = seq(&[xs[0], ws[0], g.ho, g.wo], 3);
            let hw = (xs[2], xs[3]);
            let (xf, wf, gf) = (x.cast::<f32>(), w.cast::<f32>(), gout.cast::<f32>());
            let run = |threads| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap()
                    .install(|| {
                        let y = conv2d_cached(&xf, &wf, None, p, &ForwardCache::new()).unwrap();
                        let gin = conv2d_backward_input_cached(
                            &gf,
                            &wf,
                            hw,
                            p,
                            &BackwardInputCache::new(),
                        )
                        .unwrap();
                        (y, gin)
                    })
            };
            let (y1, g1) = run(1);
            let (y3, g3) = run(3);
            assert_eq!(y1.data(), y3.data(), "{xs:?} {ws:?}");
            assert_eq!(g1.data(), g3.data(), "{xs:?} {ws:?}");
            let y = naive(&x, &w, p);
            let gin = direct_backward_input(&gout, &w, hw, p);
            for (got, want) in [(y1, y), (g1, gin)] {
                let err = got.cast::<f64>().max_abs_diff(&want).unwrap() / want.max_abs();
                assert!(err < 1e-5, "{xs:?} {ws:?} {p:?}: {err:e}");
            }
        }
    }

    #[test]
    fn splits_cover_the_columns_and_panels() {
        for (n, k, cols, panels) in [
            (1, 147, 12544, 6),
            (1, 4608, 49, 43),
            (2, 27, 50, 3),
            (1, 1152, 784, 11),
            (3, 10, 1, 1),
        ] {
            let s = Split::new(n, k, cols, panels);
            assert_eq!(s.block % PAIR, 0);
            assert!(s.col_blocks * s.block >= cols && (s.col_blocks - 1) * s.block < cols);
            let covered: usize = (0..s.chan_blocks)
                .map(|b| chan_range(panels, s.chan_blocks, b).len())
                .sum();
            assert_eq!(covered, panels);
            assert!(s.per_task || s.col_blocks * s.chan_blocks >= TASKS.div_ceil(n).min(panels));
        }
    }
}
