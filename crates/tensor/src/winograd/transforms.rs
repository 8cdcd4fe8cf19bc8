//! The F(2x2, 3x3) data transforms: `V = B^T d B` of the input tiles and
//! `Y = A^T M A` (+ bias) of the products; and the dispatch of both
//! variants' transforms (F(4x4) in `transforms_f4.rs`), compiled for
//! baseline x86-64 and for AVX2 (same bits) and chosen at run time, plus
//! hand-written AVX-512 transforms for `f32` (same bits again).

use super::{transforms_f4, Geometry, Variant};
use crate::element::Element;
use crate::simd::SimdLevel;
use std::any::TypeId;
use std::mem::MaybeUninit;

/// Tiles handled per pass of the input transform (stack buffers).
const CHUNK: usize = 32;

/// The transforms are plain adds and subtracts on arrays, which the compiler
/// vectorizes; with AVX2 enabled it uses registers twice as wide. The results
/// are the same bits either way (no fused operations).
///
/// The portable input transforms work on runs of tiles along one tile row,
/// which are short on small images (7 or 14 tiles at 14 x 14 and 28 x 28),
/// too short for the compiler to vectorize; `Avx512` takes hand-written
/// AVX-512 input transforms for `f32` instead, which compute a run of up to
/// 15 tiles in whole registers (masked at the edges), with the same
/// operations per element (the same bits). Its output transforms, also by
/// hand, compute chunks of 16 tiles (across tile rows) in whole registers
/// and interleave each tile's output columns by permutes.
/// `Avx512` has hand-written input and output transforms for `f32` only
/// (other types take the `Avx2` build).
pub(super) type Transforms = SimdLevel;

/// `x` as `f32`s, if `T` is `f32`.
fn as_f32<T: 'static>(x: &[T]) -> Option<&[f32]> {
    (TypeId::of::<T>() == TypeId::of::<f32>())
        // SAFETY: `T` is `f32`.
        .then(|| unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len()) })
}

/// `x` as mutable `f32`s, if `T` is `f32`.
fn as_f32_mut<T: 'static>(x: &mut [T]) -> Option<&mut [f32]> {
    (TypeId::of::<T>() == TypeId::of::<f32>())
        // SAFETY: `T` is `f32`.
        .then(|| unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<f32>(), x.len()) })
}

/// The planes an output transform writes: channels `c0..c1` of one image,
/// `len` elements from `ptr`. Tasks that write other tiles of the same
/// planes run at the same time, so a transform makes slices only of the
/// pixels it writes ([`OutPlanes::run`]), never of a whole plane.
#[derive(Clone, Copy)]
pub(super) struct OutPlanes<'a, T> {
    ptr: *mut T,
    len: usize,
    _planes: std::marker::PhantomData<&'a mut [T]>,
}

impl<'a, T> OutPlanes<'a, T> {
    /// All of `dst`, which the caller holds alone.
    #[cfg(test)]
    pub(super) fn new(dst: &'a mut [T]) -> Self {
        Self {
            ptr: dst.as_mut_ptr(),
            len: dst.len(),
            _planes: std::marker::PhantomData,
        }
    }

    /// The `len` elements from `ptr`.
    ///
    /// # Safety
    /// They are valid for writes for `'a`, and while the planes are used no
    /// one else reads or writes the pixels of the tiles and channels handed
    /// to the transform (other pixels may be written by other tasks).
    pub(super) unsafe fn from_raw(ptr: *mut T, len: usize) -> Self {
        Self {
            ptr,
            len,
            _planes: std::marker::PhantomData,
        }
    }

    /// Elements `at .. at + n`, to be written (they may not be initialised
    /// yet).
    ///
    /// # Safety
    /// They are pixels of the tiles and channels handed to the transform,
    /// and the slice is the only reference to them while it lives.
    pub(super) unsafe fn run(self, at: usize, n: usize) -> &'a mut [MaybeUninit<T>] {
        assert!(at + n <= self.len, "output run out of the planes");
        std::slice::from_raw_parts_mut(self.ptr.add(at).cast::<MaybeUninit<T>>(), n)
    }

    /// The first element, for the kernels that store through pointers.
    pub(super) fn ptr(self) -> *mut T {
        self.ptr
    }

    pub(super) fn len(self) -> usize {
        self.len
    }

    /// The same planes as `f32`, if `T` is `f32`.
    fn into_f32(self) -> Option<OutPlanes<'a, f32>>
    where
        T: 'static,
    {
        (TypeId::of::<T>() == TypeId::of::<f32>()).then(|| OutPlanes {
            ptr: self.ptr.cast::<f32>(),
            len: self.len,
            _planes: std::marker::PhantomData,
        })
    }
}

/// The input transform of `variant` (see the two `input_transform_impl`s),
/// in the build chosen by `kind`.
#[allow(clippy::too_many_arguments)]
pub(super) fn input_transform<T: Element>(
    kind: Transforms,
    variant: Variant,
    x: &[T],
    g: &Geometry,
    tw: usize,
    span: (usize, usize),
    ldv: usize,
    v: &mut [T],
) {
    match kind {
        Transforms::Baseline => input_variant(variant, x, g, tw, span, ldv, v),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2` is only chosen when the CPU has AVX2.
        Transforms::Avx2 => unsafe { input_transform_avx2(variant, x, g, tw, span, ldv, v) },
        #[cfg(target_arch = "x86_64")]
        Transforms::Avx512 => match (as_f32(x), as_f32_mut(v)) {
            // SAFETY: `Avx512` is only chosen when the CPU has AVX-512F.
            (Some(x), Some(v)) => unsafe {
                match variant {
                    Variant::F2x2 => input_f2_avx512(x, g, tw, span, ldv, v),
                    Variant::F4x4 => transforms_f4::input_avx512(x, g, tw, span, ldv, v),
                }
            },
            // SAFETY: a CPU with AVX-512F has AVX2.
            _ => unsafe { input_transform_avx2(variant, x, g, tw, span, ldv, v) },
        },
    }
}

/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn input_transform_avx2<T: Element>(
    variant: Variant,
    x: &[T],
    g: &Geometry,
    tw: usize,
    span: (usize, usize),
    ldv: usize,
    v: &mut [T],
) {
    input_variant(variant, x, g, tw, span, ldv, v)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn input_variant<T: Element>(
    variant: Variant,
    x: &[T],
    g: &Geometry,
    tw: usize,
    span: (usize, usize),
    ldv: usize,
    v: &mut [T],
) {
    match variant {
        Variant::F2x2 => input_transform_impl(x, g, tw, span, ldv, v),
        Variant::F4x4 => transforms_f4::input_transform_impl(x, g, tw, span, ldv, v),
    }
}

/// The output transform of `variant` (+ bias), in the build chosen by
/// `kind`.
///
/// # Safety
/// As [`OutPlanes::from_raw`]: no one else touches the pixels of tiles
/// `span` of channels `chans` in `dst` while it runs.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn output_transform<T: Element>(
    kind: Transforms,
    variant: Variant,
    m: &[T],
    g: &Geometry,
    tw: usize,
    span: (usize, usize),
    ldm: usize,
    rows: usize,
    chans: (usize, usize),
    bias: Option<&[T]>,
    dst: OutPlanes<'_, T>,
) {
    let o = OutputArgs {
        tw,
        span,
        ldm,
        rows,
        chans,
        bias,
    };
    match kind {
        Transforms::Baseline => output_variant(variant, m, g, &o, dst),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Avx2` is only chosen when the CPU has AVX2.
        Transforms::Avx2 => unsafe { output_transform_avx2(variant, m, g, &o, dst) },
        #[cfg(target_arch = "x86_64")]
        Transforms::Avx512 => match (as_f32(m), dst.into_f32()) {
            // SAFETY: `Avx512` is only chosen when the CPU has AVX-512F.
            (Some(m), Some(dst)) => unsafe {
                let bias = bias.and_then(as_f32);
                let o = OutputArgs {
                    tw,
                    span,
                    ldm,
                    rows,
                    chans,
                    bias,
                };
                match variant {
                    Variant::F2x2 => output_f2_avx512(m, g, &o, dst),
                    Variant::F4x4 => transforms_f4::output_avx512(m, g, &o, dst),
                }
            },
            // SAFETY: a CPU with AVX-512F has AVX2.
            _ => unsafe { output_transform_avx2(variant, m, g, &o, dst) },
        },
    }
}

/// The scalar arguments of an output transform.
pub(super) struct OutputArgs<'a, T> {
    pub(super) tw: usize,
    pub(super) span: (usize, usize),
    pub(super) ldm: usize,
    pub(super) rows: usize,
    pub(super) chans: (usize, usize),
    pub(super) bias: Option<&'a [T]>,
}

/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn output_transform_avx2<T: Element>(
    variant: Variant,
    m: &[T],
    g: &Geometry,
    o: &OutputArgs<'_, T>,
    dst: OutPlanes<'_, T>,
) {
    output_variant(variant, m, g, o, dst)
}

/// # Safety
/// As [`output_transform`].
#[inline(always)]
unsafe fn output_variant<T: Element>(
    variant: Variant,
    m: &[T],
    g: &Geometry,
    o: &OutputArgs<'_, T>,
    dst: OutPlanes<'_, T>,
) {
    let (tw, span, ldm, rows, chans, bias) = (o.tw, o.span, o.ldm, o.rows, o.chans, o.bias);
    match variant {
        Variant::F2x2 => output_transform_impl(m, g, tw, span, ldm, rows, chans, bias, dst),
        Variant::F4x4 => {
            transforms_f4::output_transform_impl(m, g, tw, span, ldm, rows, chans, bias, dst)
        }
    }
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
///
/// # Safety
/// As [`output_transform`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn output_transform_impl<T: Element>(
    m: &[T],
    g: &Geometry,
    tw: usize,
    (f0, f1): (usize, usize),
    ldm: usize,
    rows: usize,
    (c0, c1): (usize, usize),
    bias: Option<&[T]>,
    dst: OutPlanes<'_, T>,
) {
    let hw = g.ho * g.wo;
    // s[a][jj]: A^T applied along the rows, for each of the 4 columns jj.
    let mut s = [[[T::zero(); CHUNK]; 4]; 2];
    for c in c0..c1 {
        let bv = bias.map_or(T::zero(), |b| b[c]);
        let plane = (c - c0) * hw;
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
                let x0 = 2 * tx0;
                // SAFETY: row y of tiles tx0 .. tx0 + nt, cut at the
                // right edge: this call's own pixels.
                let orow = dst.run(plane + y * g.wo + x0, (2 * nt).min(g.wo - x0));
                let pairs = nt.min((g.wo - x0) / 2);
                let [q0, q1, q2, q3] = sa;
                for ((((o, a), b), c), d) in orow[..2 * pairs]
                    .chunks_exact_mut(2)
                    .zip(&q0[..pairs])
                    .zip(&q1[..pairs])
                    .zip(&q2[..pairs])
                    .zip(&q3[..pairs])
                {
                    o[0].write(*a + *b + *c + bv);
                    o[1].write(*b - *c - *d + bv);
                }
                if pairs < nt {
                    // Odd width: the last tile has one column.
                    orow[2 * pairs].write(q0[pairs] + q1[pairs] + q2[pairs] + bv);
                }
            }
            f += nt;
        }
    }
}

/// Tiles per run of the AVX-512 input transforms: a run and the tile after
/// it fit one 16-lane register.
#[cfg(target_arch = "x86_64")]
pub(super) const RUN_AVX512: usize = 15;

/// Tiles per window of the AVX-512 input transforms: the results of one
/// channel and window are staged in a [`Stage`], then copied to `v`.
#[cfg(target_arch = "x86_64")]
pub(super) const WINDOW: usize = 64;

/// The results of the AVX-512 input transforms for one channel and window
/// of tiles, one row per tile element (a register's room past the window
/// for the masked stores of a run).
#[cfg(target_arch = "x86_64")]
pub(super) type Stage<const XI: usize> = [[f32; WINDOW + 16]; XI];

/// The lanes `k` of a 16-lane load at column `c` of a row of `w` columns
/// that are inside the row (`0 <= c + k < w`); the others are padding.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn edge_mask(c: isize, w: isize) -> u16 {
    let lo = (-c).clamp(0, 16);
    let hi = (w - c).clamp(0, 16);
    if hi <= lo {
        0
    } else {
        (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
    }
}

/// The first `n` lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn first_lanes(n: usize) -> u16 {
    ((1u32 << n.min(16)) - 1) as u16
}

/// Copies columns `0..n` of each row `xi` of `stage` to `v` at row
/// `xi * cin + ci`, column `l0` (rows of `ldv`): in whole registers, which
/// the staging makes possible where runs of tiles are short (runs of 7
/// tiles stored straight into `v` measured slower).
///
/// # Safety
/// The CPU must have AVX-512F; `v` must hold `stage.len() * cin * ldv`
/// elements, `ci < cin` and `l0 + n <= ldv`, `n <= WINDOW`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn unstage<const XI: usize>(
    stage: &Stage<XI>,
    n: usize,
    v: *mut f32,
    (ci, cin): (usize, usize),
    (l0, ldv): (usize, usize),
) {
    use std::arch::x86_64::*;
    for (xi, row) in stage.iter().enumerate() {
        let d = v.add((xi * cin + ci) * ldv + l0);
        let mut j = 0;
        while j + 16 <= n {
            _mm512_storeu_ps(d.add(j), _mm512_loadu_ps(row.as_ptr().add(j)));
            j += 16;
        }
        if j < n {
            let y = _mm512_loadu_ps(row.as_ptr().add(j));
            _mm512_mask_storeu_ps(d.add(j), first_lanes(n - j), y);
        }
    }
}

/// The F(2x2) input transform (as [`input_transform_impl`], same bits) for
/// `f32` with AVX-512: per channel and run of up to [`RUN_AVX512`] tiles
/// along a tile row, the 4 input rows under the run are loaded in two
/// registers each (32 columns, zero-masked outside the image), `B^T` is
/// applied along the rows in registers, each transformed row is split by
/// permutes into its columns 2j, 2j + 1, 2j + 2 and 2j + 3 (tile j in lane
/// j), and the 16 results are staged, then copied to `v` a window at a time.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn input_f2_avx512(
    x: &[f32],
    g: &Geometry,
    tw: usize,
    (f0, f1): (usize, usize),
    ldv: usize,
    v: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (cin, h, w) = (g.cin, g.h, g.w);
    // Every load is inside plane ci (or masked off), every store inside
    // row `xi * cin + ci` of `v`, columns `0..f1 - f0`.
    assert!(x.len() >= cin * h * w && f1 - f0 <= ldv && v.len() >= 16 * cin * ldv);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    let even2 = _mm512_add_epi32(even, _mm512_set1_epi32(2));
    let odd2 = _mm512_add_epi32(even, _mm512_set1_epi32(3));
    let zero = _mm512_setzero_ps();
    let mut stage: Stage<16> = [[0.0; WINDOW + 16]; 16];
    for ci in 0..cin {
        let plane = x.as_ptr().add(ci * h * w);
        for w0 in (f0..f1).step_by(WINDOW) {
            let w1 = (w0 + WINDOW).min(f1);
            let mut f = w0;
            while f < w1 {
                let ty = f / tw;
                let tx0 = f % tw;
                let nt = (tw - tx0).min(RUN_AVX512).min(w1 - f);
                // Tile tx0 + j starts at column xs + 2 j.
                let xs = (2 * tx0) as isize - g.pw as isize;
                let masks = [edge_mask(xs, w as isize), edge_mask(xs + 16, w as isize)];
                let mut d = [[zero; 2]; 4];
                for (r, dr) in d.iter_mut().enumerate() {
                    let y = (2 * ty + r) as isize - g.ph as isize;
                    if y >= 0 && (y as usize) < h {
                        let p = plane.add(y as usize * w).wrapping_offset(xs);
                        dr[0] = _mm512_maskz_loadu_ps(masks[0], p);
                        dr[1] = _mm512_maskz_loadu_ps(masks[1], p.wrapping_add(16));
                    }
                }
                // B^T along the rows: t[b][i] is transformed row i, columns
                // 16 b .. 16 b + 16 of the run.
                let mut t = [[zero; 4]; 2];
                for (b, tb) in t.iter_mut().enumerate() {
                    let [d0, d1, d2, d3] = [d[0][b], d[1][b], d[2][b], d[3][b]];
                    *tb = [
                        _mm512_sub_ps(d0, d2),
                        _mm512_add_ps(d1, d2),
                        _mm512_sub_ps(d2, d1),
                        _mm512_sub_ps(d1, d3),
                    ];
                }
                // B along the columns (tile j: columns 2j .. 2j + 3).
                let keep = first_lanes(nt);
                for i in 0..4 {
                    let (lo, hi) = (t[0][i], t[1][i]);
                    let e = _mm512_permutex2var_ps(lo, even, hi);
                    let o = _mm512_permutex2var_ps(lo, odd, hi);
                    let e2 = _mm512_permutex2var_ps(lo, even2, hi);
                    let o2 = _mm512_permutex2var_ps(lo, odd2, hi);
                    let out = [
                        _mm512_sub_ps(e, e2),
                        _mm512_add_ps(o, e2),
                        _mm512_sub_ps(e2, o),
                        _mm512_sub_ps(o, o2),
                    ];
                    for (k, y) in out.into_iter().enumerate() {
                        let at = stage[4 * i + k].as_mut_ptr().add(f - w0);
                        _mm512_mask_storeu_ps(at, keep, y);
                    }
                }
                f += nt;
            }
            unstage(&stage, w1 - w0, v.as_mut_ptr(), (ci, cin), (w0 - f0, ldv));
        }
    }
}

/// The lanes `lo..hi` (clamped to `0..16`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lanes(lo: isize, hi: isize) -> u16 {
    edge_mask(-lo, hi - lo)
}

/// Where the AVX-512 output transforms store the part of a chunk of up to
/// 16 tiles (tile j of the chunk in lane j of the transform's registers)
/// that lies in one tile row: a row of output tile `t x t` is `t`
/// registers (tile j at lanes `t j .. t j + t` of the chunk's `16 t`
/// lanes), stored at `at` (an offset in the channel's output plane, of
/// lane 0 of the first register, output row 0 of the tile row; it may lie
/// outside the row or plane) plus `16 b` for register `b`, under
/// `masks[b]`: the lanes of this tile row's tiles that are inside the
/// output. Output rows `0..rows` of the tile row are inside it.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Default)]
pub(super) struct Segment {
    at: isize,
    rows: usize,
    masks: [u16; 4],
}

/// A window of up to [`WINDOW`] tiles, cut into chunks of 16 (lane j of a
/// chunk's registers holding tile `16 k + j` of the window) and the chunks
/// into [`Segment`]s, one per tile row a chunk touches.
#[cfg(target_arch = "x86_64")]
pub(super) struct Segments {
    segs: [[Segment; 16]; WINDOW / 16],
    counts: [usize; WINDOW / 16],
}

#[cfg(target_arch = "x86_64")]
impl Segments {
    /// The segments of tiles `w0..w1` (`w1 - w0 <= WINDOW`) of `t x t`
    /// output tiles (`t` 2 or 4), `tw` tiles per tile row, in an output of
    /// `ho x wo`.
    pub(super) fn new(
        t: usize,
        (w0, w1): (usize, usize),
        tw: usize,
        (ho, wo): (usize, usize),
    ) -> Self {
        debug_assert!(w1 - w0 <= WINDOW && (t == 2 || t == 4));
        let mut s = Segments {
            segs: [[Segment::default(); 16]; WINDOW / 16],
            counts: [0; WINDOW / 16],
        };
        let (ti, wi) = (t as isize, wo as isize);
        let mut ty = w0 / tw;
        let mut tx = w0 % tw;
        for (k, f) in (w0..w1).step_by(16).enumerate() {
            let n = (w1 - f).min(16);
            let mut j0 = 0;
            while j0 < n {
                let j1 = (j0 + tw - tx).min(n);
                // Lane 0 of register 0 is at column x.
                let x = ti * (tx as isize - j0 as isize);
                let mut masks = [0u16; 4];
                for (b, mb) in masks.iter_mut().enumerate().take(t) {
                    let o = 16 * b as isize;
                    *mb = lanes(ti * j0 as isize - o, (ti * j1 as isize - o).min(wi - x - o));
                }
                s.segs[k][s.counts[k]] = Segment {
                    at: (t * ty * wo) as isize + x,
                    rows: ho.saturating_sub(t * ty).min(t),
                    masks,
                };
                s.counts[k] += 1;
                tx += j1 - j0;
                if tx == tw {
                    tx = 0;
                    ty += 1;
                }
                j0 = j1;
            }
        }
        s
    }

    /// The segments of chunk `k`.
    #[inline(always)]
    pub(super) fn chunk(&self, k: usize) -> &[Segment] {
        &self.segs[k][..self.counts[k]]
    }
}

/// Stores output row `a` of the tiles of a chunk (the `B` registers `out`,
/// as described at [`Segment`]) into `plane` (`wo` columns), in each of
/// the chunk's tile rows `segs` that has that row.
///
/// # Safety
/// The CPU must have AVX-512F; `plane` must be the output plane the
/// segments were made for.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn store_row<const B: usize>(
    plane: *mut f32,
    segs: &[Segment],
    a: usize,
    wo: usize,
    out: [std::arch::x86_64::__m512; B],
) {
    use std::arch::x86_64::*;
    for s in segs {
        if a < s.rows {
            let p = plane.wrapping_offset(s.at + (a * wo) as isize);
            for (b, y) in out.into_iter().enumerate() {
                if s.masks[b] != 0 {
                    _mm512_mask_storeu_ps(p.wrapping_add(16 * b), s.masks[b], y);
                }
            }
        }
    }
}

/// The F(2x2) output transform (as [`output_transform_impl`], same bits)
/// for `f32` with AVX-512: per window of tiles, channel and chunk of 16
/// tiles (tile j in lane j, across tile rows), the 16 rows of `M` are
/// loaded in one register each, `A^T` is applied along the rows and the
/// columns in registers (plus bias), each output row's two columns per
/// tile are interleaved by permutes into two registers, and those are
/// stored (masked) into each tile row the chunk touches.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn output_f2_avx512(
    m: &[f32],
    g: &Geometry,
    o: &OutputArgs<'_, f32>,
    dst: OutPlanes<'_, f32>,
) {
    use std::arch::x86_64::*;
    let (tw, (f0, f1), ldm, rows, (c0, c1)) = (o.tw, o.span, o.ldm, o.rows, o.chans);
    let hw = g.ho * g.wo;
    // Every load is inside row `xi * rows + c - c0` of `m`, columns
    // `0..f1 - f0`; every store inside plane `c - c0` of `dst` (masked to
    // the output).
    assert!(f1 - f0 <= ldm && c1 - c0 <= rows && m.len() >= 16 * rows * ldm);
    assert!(dst.len() >= (c1 - c0) * hw && o.bias.is_none_or(|b| b.len() >= c1));
    let (add, sub) = (_mm512_add_ps, _mm512_sub_ps);
    let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
    for w0 in (f0..f1).step_by(WINDOW) {
        let w1 = (w0 + WINDOW).min(f1);
        let segs = Segments::new(2, (w0, w1), tw, (g.ho, g.wo));
        for c in c0..c1 {
            let bv = _mm512_set1_ps(o.bias.map_or(0.0, |b| b[c]));
            let plane = dst.ptr().add((c - c0) * hw);
            let base = m.as_ptr().add((c - c0) * ldm);
            for (k, f) in (w0..w1).step_by(16).enumerate() {
                let keep = first_lanes(w1 - f);
                let col = base.add(f - f0);
                let ld = |xi: usize| _mm512_maskz_loadu_ps(keep, col.add(xi * rows * ldm));
                // s[a][jj]: A^T along the rows, column jj.
                let mut s = [[_mm512_setzero_ps(); 4]; 2];
                let [s0, s1] = &mut s;
                for (jj, (s0, s1)) in s0.iter_mut().zip(s1.iter_mut()).enumerate() {
                    let [m0, m1, m2, m3] = [ld(jj), ld(4 + jj), ld(8 + jj), ld(12 + jj)];
                    *s0 = add(add(m0, m1), m2);
                    *s1 = sub(sub(m1, m2), m3);
                }
                for (a, &[q0, q1, q2, q3]) in s.iter().enumerate() {
                    let y0 = add(add(add(q0, q1), q2), bv);
                    let y1 = add(sub(sub(q1, q2), q3), bv);
                    let out = [
                        _mm512_permutex2var_ps(y0, lo, y1),
                        _mm512_permutex2var_ps(y0, hi, y1),
                    ];
                    store_row(plane, segs.chunk(k), a, g.wo, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random `f32`s, with some zeros of both signs.
    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                match s % 16 {
                    0 => 0.0,
                    1 => -0.0,
                    _ => (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0,
                }
            })
            .collect()
    }

    /// The input transform of every build available on this CPU gives the
    /// bits of the baseline one, for both variants, on images with every
    /// width remainder, padding 0 to 2, tile rows longer than a run, and
    /// spans starting and ending inside tile rows.
    #[test]
    fn input_transforms_give_the_same_bits_in_every_build() {
        let kinds = Transforms::available();
        for variant in [Variant::F2x2, Variant::F4x4] {
            for &(cin, h, w, p) in &[
                (3, 7, 9, 1),
                (2, 10, 5, 0),
                (2, 4, 3, 2),
                (3, 14, 14, 1),
                (2, 28, 28, 1),
                (1, 35, 67, 1),
                (2, 9, 150, 2),
                (1, 6, 17, 0),
                (2, 13, 30, 2),
                (1, 3, 3, 0),
            ] {
                let g = Geometry {
                    cin,
                    h,
                    w,
                    ph: p,
                    pw: p,
                    cout: 1,
                    ho: h + 2 * p - 2,
                    wo: w + 2 * p - 2,
                };
                let t = variant.tile();
                let tw = g.wo.div_ceil(t);
                let tiles = g.ho.div_ceil(t) * tw;
                let x = data(cin * h * w, (h * w + p) as u64);
                for block in [16usize, 37, 128] {
                    let ldv = block.div_ceil(16) * 16;
                    for f0 in (0..tiles).step_by(block) {
                        let span = (f0, (f0 + block).min(tiles));
                        let run = |kind| {
                            let mut v = data(variant.xi() * cin * ldv, 3);
                            input_transform(kind, variant, &x, &g, tw, span, ldv, &mut v);
                            v.into_iter().map(f32::to_bits).collect::<Vec<_>>()
                        };
                        let want = run(Transforms::Baseline);
                        for &kind in &kinds {
                            assert!(
                                run(kind) == want,
                                "{kind:?} {variant:?} {cin} {h} {w} {p} {span:?}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The output transform of every build available on this CPU gives the
    /// bits of the baseline one, for both variants, on outputs with odd and
    /// even widths and heights (tiles cut at the right and bottom edges),
    /// tile rows of 1 to 38 tiles, spans starting and ending inside tile
    /// rows and longer than a window, channel ranges not starting at 0, with
    /// and without bias; pixels outside the span's tiles and channels are
    /// left as they were.
    #[test]
    fn output_transforms_give_the_same_bits_in_every_build() {
        let kinds = Transforms::available();
        for variant in [Variant::F2x2, Variant::F4x4] {
            for &(ho, wo) in &[
                (1, 1),
                (2, 3),
                (7, 9),
                (8, 5),
                (14, 14),
                (28, 28),
                (13, 30),
                (5, 150),
                (33, 67),
                (6, 17),
                (56, 56),
            ] {
                let g = Geometry {
                    cin: 1,
                    h: ho,
                    w: wo,
                    ph: 1,
                    pw: 1,
                    cout: 40,
                    ho,
                    wo,
                };
                let t = variant.tile();
                let tw = wo.div_ceil(t);
                let tiles = ho.div_ceil(t) * tw;
                for (block, chans, rows) in [
                    (16usize, (0, 40), 40),
                    (37, (5, 17), 13),
                    (150, (24, 39), 16),
                ] {
                    let ldm = block.div_ceil(16) * 16;
                    let m = data(variant.xi() * rows * ldm, (ho * wo + block) as u64);
                    let b = data(40, 7);
                    for f0 in (0..tiles).step_by(block) {
                        let span = (f0, (f0 + block).min(tiles));
                        for bias in [None, Some(&b[..])] {
                            let run = |kind| {
                                let mut dst = data((chans.1 - chans.0) * ho * wo, 5);
                                let planes = OutPlanes::new(&mut dst);
                                // SAFETY: `dst` is this call's alone.
                                unsafe {
                                    output_transform(
                                        kind, variant, &m, &g, tw, span, ldm, rows, chans, bias,
                                        planes,
                                    )
                                };
                                dst.into_iter().map(f32::to_bits).collect::<Vec<_>>()
                            };
                            let want = run(Transforms::Baseline);
                            for &kind in &kinds {
                                assert!(
                                    run(kind) == want,
                                    "{kind:?} {variant:?} {ho} {wo} {span:?} {chans:?} {}",
                                    bias.is_some()
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
