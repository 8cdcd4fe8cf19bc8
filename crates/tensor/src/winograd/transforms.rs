//! The F(2x2, 3x3) data transforms: `V = B^T d B` of the input tiles and
//! `Y = A^T M A` (+ bias) of the products; and the dispatch of both
//! variants' transforms (F(4x4) in `transforms_f4.rs`), compiled for
//! baseline x86-64 and for AVX2 (same bits) and chosen at run time.

use super::{transforms_f4, Geometry, Variant};
use crate::element::Element;

/// Tiles handled per pass of the input transform (stack buffers).
const CHUNK: usize = 32;

/// The transforms are plain adds and subtracts on arrays, which the compiler
/// vectorizes; with AVX2 enabled it uses registers twice as wide. The results
/// are the same bits either way (no fused operations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Transforms {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

pub(super) fn transforms_kind() -> Transforms {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            return Transforms::Avx2;
        }
    }
    Transforms::Baseline
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
#[allow(clippy::too_many_arguments)]
pub(super) fn output_transform<T: Element>(
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
    dst: &mut [T],
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
    }
}

/// The scalar arguments of an output transform.
struct OutputArgs<'a, T> {
    tw: usize,
    span: (usize, usize),
    ldm: usize,
    rows: usize,
    chans: (usize, usize),
    bias: Option<&'a [T]>,
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
    dst: &mut [T],
) {
    output_variant(variant, m, g, o, dst)
}

#[inline(always)]
fn output_variant<T: Element>(
    variant: Variant,
    m: &[T],
    g: &Geometry,
    o: &OutputArgs<'_, T>,
    dst: &mut [T],
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
