//! The F(4x4, 3x3) data transforms (points 0, 1, -1, 2, -2, infinity):
//! `V = B^T d B` of the 6 x 6 input tiles (stride 4) and `Y = A^T M A`
//! (+ bias) of the products, 4 x 4 output tiles. Compiled for baseline
//! x86-64 and for AVX2 (same bits: plain adds, subtracts and multiplies by
//! constants on arrays, no fused operations) and chosen at run time by the
//! dispatch in `transforms.rs`; both also by hand for `f32` with AVX-512
//! ([`input_avx512`], [`output_avx512`], same bits again).
//!
//! ```text
//! B^T = [4  0 -5  0 1 0]      A^T = [1 1  1 1  1 0]
//!       [0 -4 -4  1 1 0]            [0 1 -1 2 -2 0]
//!       [0  4 -4 -1 1 0]            [0 1  1 4  4 0]
//!       [0 -2 -1  2 1 0]            [0 1 -1 8 -8 1]
//!       [0  2 -1 -2 1 0]
//!       [0  4  0 -5 0 1]
//! ```

#[cfg(target_arch = "x86_64")]
use super::transforms::{
    edge_mask, first_lanes, store_row, unstage, OutPlanes, OutputArgs, Segments, Stage, RUN_AVX512,
    WINDOW,
};
use super::Geometry;
use crate::element::Element;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Tiles handled per pass (stack buffers).
const CHUNK: usize = 32;
/// Column groups of 4 under a run of CHUNK tiles (tile j spans groups j and
/// j + 1).
const GROUPS: usize = CHUNK + 1;

/// `B^T d` for one column `d` of 6 values.
#[inline(always)]
fn bt<T: Element>(d: [T; 6], two: T, four: T, five: T) -> [T; 6] {
    let [d0, d1, d2, d3, d4, d5] = d;
    [
        four * d0 - five * d2 + d4,
        (d3 + d4) - four * (d1 + d2),
        (d4 - d3) + four * (d1 - d2),
        (d4 - d2) + two * (d3 - d1),
        (d4 - d2) - two * (d3 - d1),
        four * d1 - five * d3 + d5,
    ]
}

/// `A^T m` for one column `m` of 6 values.
#[inline(always)]
fn at<T: Element>(m: [T; 6], two: T, four: T, eight: T) -> [T; 4] {
    let [m0, m1, m2, m3, m4, m5] = m;
    let (a, b, c, d) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
    [m0 + a + c, b + two * d, a + four * c, b + eight * d + m5]
}

/// Writes `V = B^T d B` of tiles `f0..f1` (row-major over the tile grid,
/// `tw` tiles per row) and every input channel into `v`, laid out
/// `[xi][cin][ldv]` (36 elements `xi`, tile `f` in column `f - f0`).
/// Columns past `f1 - f0` are left as they were: the product keeps columns
/// independent and their results are never read.
#[inline(always)]
pub(super) fn input_transform_impl<T: Element>(
    x: &[T],
    g: &Geometry,
    tw: usize,
    (f0, f1): (usize, usize),
    ldv: usize,
    v: &mut [T],
) {
    let cin = g.cin;
    let zero = T::zero();
    let (two, four, five) = (
        T::from_f64_lossy(2.0),
        T::from_f64_lossy(4.0),
        T::from_f64_lossy(5.0),
    );
    // d[q][r][m]: input row r (of the 6 under a run of tiles) at column
    // xs + 4 m + q; then (in e) B^T applied along the rows.
    let mut d = [[[zero; GROUPS]; 6]; 4];
    let mut e = [[[zero; GROUPS]; 6]; 4];
    let stride = cin * ldv;
    for ci in 0..cin {
        let plane = &x[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        let mut f = f0;
        while f < f1 {
            let ty = f / tw;
            let tx0 = f % tw;
            let nt = (tw - tx0).min(CHUNK).min(f1 - f);
            let np = nt + 1;
            // Tile tx0 + j starts at column 4 (tx0 + j) - pw.
            let xs = (4 * tx0) as isize - g.pw as isize;
            let w = g.w as isize;
            // Groups m in lo..hi have their 4 columns inside the row; the
            // others go through checks.
            let lo = ((-xs).max(0) as usize).div_ceil(4).min(np);
            let hi = if w - 4 - xs >= 0 {
                (((w - 4 - xs) / 4) as usize + 1).min(np)
            } else {
                0
            }
            .max(lo);
            for r in 0..6 {
                let y = (4 * ty + r) as isize - g.ph as isize;
                if y < 0 || y as usize >= g.h {
                    for dq in d.iter_mut() {
                        dq[r][..np].fill(zero);
                    }
                    continue;
                }
                let row = &plane[y as usize * g.w..(y as usize + 1) * g.w];
                if hi > lo {
                    let x0 = (xs + 4 * lo as isize) as usize;
                    let src = &row[x0..x0 + 4 * (hi - lo)];
                    let [q0, q1, q2, q3] = &mut d;
                    for ((((a, b), c), e), p) in q0[r][lo..hi]
                        .iter_mut()
                        .zip(q1[r][lo..hi].iter_mut())
                        .zip(q2[r][lo..hi].iter_mut())
                        .zip(q3[r][lo..hi].iter_mut())
                        .zip(src.chunks_exact(4))
                    {
                        *a = p[0];
                        *b = p[1];
                        *c = p[2];
                        *e = p[3];
                    }
                }
                let at = |x: isize| {
                    if x >= 0 && x < w {
                        row[x as usize]
                    } else {
                        zero
                    }
                };
                for m in (0..lo).chain(hi..np) {
                    for (q, dq) in d.iter_mut().enumerate() {
                        dq[r][m] = at(xs + (4 * m + q) as isize);
                    }
                }
            }
            // B^T along the rows, every column group.
            for (dq, eq) in d.iter().zip(e.iter_mut()) {
                let [d0, d1, d2, d3, d4, d5] = dq;
                let (d0, d1, d2) = (&d0[..np], &d1[..np], &d2[..np]);
                let (d3, d4, d5) = (&d3[..np], &d4[..np], &d5[..np]);
                let [e0, e1, e2, e3, e4, e5] = eq;
                let (e0, e1, e2) = (&mut e0[..np], &mut e1[..np], &mut e2[..np]);
                let (e3, e4, e5) = (&mut e3[..np], &mut e4[..np], &mut e5[..np]);
                for k in 0..np {
                    let t = bt([d0[k], d1[k], d2[k], d3[k], d4[k], d5[k]], two, four, five);
                    e0[k] = t[0];
                    e1[k] = t[1];
                    e2[k] = t[2];
                    e3[k] = t[3];
                    e4[k] = t[4];
                    e5[k] = t[5];
                }
            }
            // B along the columns (tile j: columns of groups j and j + 1).
            let l0 = f - f0;
            for i in 0..6 {
                let [q0, q1, q2, q3] = &e;
                let (c0, c1, c2) = (&q0[i][..nt], &q1[i][..nt], &q2[i][..nt]);
                let (c3, c4, c5) = (&q3[i][..nt], &q0[i][1..np], &q1[i][1..np]);
                let base = (6 * i * cin + ci) * ldv + l0;
                let blk = &mut v[base..base + 5 * stride + nt];
                let (o0, r) = blk.split_at_mut(stride);
                let (o1, r) = r.split_at_mut(stride);
                let (o2, r) = r.split_at_mut(stride);
                let (o3, r) = r.split_at_mut(stride);
                let (o4, o5) = r.split_at_mut(stride);
                let (o0, o1, o2) = (&mut o0[..nt], &mut o1[..nt], &mut o2[..nt]);
                let (o3, o4, o5) = (&mut o3[..nt], &mut o4[..nt], &mut o5[..nt]);
                for j in 0..nt {
                    let t = bt([c0[j], c1[j], c2[j], c3[j], c4[j], c5[j]], two, four, five);
                    o0[j] = t[0];
                    o1[j] = t[1];
                    o2[j] = t[2];
                    o3[j] = t[3];
                    o4[j] = t[4];
                    o5[j] = t[5];
                }
            }
            f += nt;
        }
    }
}

/// `B^T d` for one column of 6 registers, as [`bt`] (same operations in the
/// same order).
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn bt_avx512(d: [__m512; 6]) -> [__m512; 6] {
    let (add, sub, mul) = (_mm512_add_ps, _mm512_sub_ps, _mm512_mul_ps);
    let (two, four, five) = (
        _mm512_set1_ps(2.0),
        _mm512_set1_ps(4.0),
        _mm512_set1_ps(5.0),
    );
    let [d0, d1, d2, d3, d4, d5] = d;
    [
        add(sub(mul(four, d0), mul(five, d2)), d4),
        sub(add(d3, d4), mul(four, add(d1, d2))),
        add(sub(d4, d3), mul(four, sub(d1, d2))),
        add(sub(d4, d2), mul(two, sub(d3, d1))),
        sub(sub(d4, d2), mul(two, sub(d3, d1))),
        add(sub(mul(four, d1), mul(five, d3)), d5),
    ]
}

/// The F(4x4) input transform (as [`input_transform_impl`], same bits) for
/// `f32` with AVX-512: per channel and run of up to [`RUN_AVX512`] tiles
/// along a tile row, each of the 6 input rows under the run is loaded in 4
/// registers (64 columns, zero-masked outside the image) and split by
/// permutes into its columns 4j + q (q = 0..3; tile j in lane j); `B^T` is
/// applied along the rows, then `B` along the columns (columns 4j + 4 and
/// 4j + 5 are those of q = 0 and 1 shifted by one lane), and the 36 results
/// are staged, then copied to `v` a window at a time.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline(never)]
pub(super) unsafe fn input_avx512(
    x: &[f32],
    g: &Geometry,
    tw: usize,
    (f0, f1): (usize, usize),
    ldv: usize,
    v: &mut [f32],
) {
    let (cin, h, w) = (g.cin, g.h, g.w);
    // Every load is inside plane ci (or masked off), every store inside
    // row `xi * cin + ci` of `v`, columns `0..f1 - f0`.
    assert!(x.len() >= cin * h * w && f1 - f0 <= ldv && v.len() >= 36 * cin * ldv);
    // Lanes 0..8 pick columns q, q + 4, .., q + 28 of the first two
    // registers, lanes 8..16 the same of the last two.
    let by4 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
    let idx = [0, 1, 2, 3].map(|q| _mm512_add_epi32(by4, _mm512_set1_epi32(q)));
    let zero = _mm512_setzero_ps();
    let mut stage: Stage<36> = [[0.0; WINDOW + 16]; 36];
    for ci in 0..cin {
        let plane = x.as_ptr().add(ci * h * w);
        for w0 in (f0..f1).step_by(WINDOW) {
            let w1 = (w0 + WINDOW).min(f1);
            let mut f = w0;
            while f < w1 {
                let ty = f / tw;
                let tx0 = f % tw;
                let nt = (tw - tx0).min(RUN_AVX512).min(w1 - f);
                // Tile tx0 + j starts at column xs + 4 j.
                let xs = (4 * tx0) as isize - g.pw as isize;
                let mut masks = [0u16; 4];
                for (b, m) in masks.iter_mut().enumerate() {
                    *m = edge_mask(xs + 16 * b as isize, w as isize);
                }
                // d[q][r]: input row r at columns xs + 4 j + q.
                let mut d = [[zero; 6]; 4];
                for r in 0..6 {
                    let y = (4 * ty + r) as isize - g.ph as isize;
                    if y < 0 || y as usize >= h {
                        continue;
                    }
                    let p = plane.add(y as usize * w).wrapping_offset(xs);
                    let mut c = [zero; 4];
                    for (k, ck) in c.iter_mut().enumerate() {
                        *ck = _mm512_maskz_loadu_ps(masks[k], p.wrapping_add(16 * k));
                    }
                    for (dq, iq) in d.iter_mut().zip(idx) {
                        let lo = _mm512_permutex2var_ps(c[0], iq, c[1]);
                        let hi = _mm512_permutex2var_ps(c[2], iq, c[3]);
                        dq[r] = _mm512_mask_blend_ps(0xFF00, lo, hi);
                    }
                }
                // B^T along the rows: t[q][i].
                let mut t = [[zero; 6]; 4];
                for (tq, dq) in t.iter_mut().zip(d) {
                    *tq = bt_avx512(dq);
                }
                // B along the columns (tile j: columns 4j .. 4j + 5).
                let keep = first_lanes(nt);
                for i in 0..6 {
                    let [a, b] = [t[0][i], t[1][i]].map(|a| _mm512_castps_si512(a));
                    let a4 = _mm512_castsi512_ps(_mm512_alignr_epi32(a, a, 1));
                    let b4 = _mm512_castsi512_ps(_mm512_alignr_epi32(b, b, 1));
                    let c = [t[0][i], t[1][i], t[2][i], t[3][i], a4, b4];
                    for (k, y) in bt_avx512(c).into_iter().enumerate() {
                        let at = stage[6 * i + k].as_mut_ptr().add(f - w0);
                        _mm512_mask_storeu_ps(at, keep, y);
                    }
                }
                f += nt;
            }
            unstage(&stage, w1 - w0, v.as_mut_ptr(), (ci, cin), (w0 - f0, ldv));
        }
    }
}

/// `Y = A^T M A` for tiles `f0..f1` and channels `c0..c1`, plus bias, into
/// `dst` (channels c0..c1 of one image); output tiles cut at the right and
/// bottom edges.
///
/// # Safety
/// As [`super::transforms::output_transform`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn output_transform_impl<T: Element>(
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
    let (two, four, eight) = (
        T::from_f64_lossy(2.0),
        T::from_f64_lossy(4.0),
        T::from_f64_lossy(8.0),
    );
    // s[a][jj]: A^T applied along the rows, for each of the 6 columns jj.
    let mut s = [[[T::zero(); CHUNK]; 6]; 4];
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
            for jj in 0..6 {
                let mr = |r: usize| &row_of(6 * r + jj)[l0..l0 + nt];
                let (m0, m1, m2, m3, m4, m5) = (mr(0), mr(1), mr(2), mr(3), mr(4), mr(5));
                let [s0, s1, s2, s3] = &mut s;
                let (s0, s1) = (&mut s0[jj][..nt], &mut s1[jj][..nt]);
                let (s2, s3) = (&mut s2[jj][..nt], &mut s3[jj][..nt]);
                for t in 0..nt {
                    let y = at([m0[t], m1[t], m2[t], m3[t], m4[t], m5[t]], two, four, eight);
                    s0[t] = y[0];
                    s1[t] = y[1];
                    s2[t] = y[2];
                    s3[t] = y[3];
                }
            }
            for (a, sa) in s.iter().enumerate() {
                let y = 4 * ty + a;
                if y >= g.ho {
                    break;
                }
                let x0 = 4 * tx0;
                // SAFETY: row y of tiles tx0 .. tx0 + nt, cut at the
                // right edge: this call's own pixels.
                let orow = dst.run(plane + y * g.wo + x0, (4 * nt).min(g.wo - x0));
                let full = nt.min((g.wo - x0) / 4);
                let [q0, q1, q2, q3, q4, q5] = sa;
                let col =
                    |t: usize| at([q0[t], q1[t], q2[t], q3[t], q4[t], q5[t]], two, four, eight);
                for (t, o) in orow[..4 * full].chunks_exact_mut(4).enumerate() {
                    let y = col(t);
                    o[0].write(y[0] + bv);
                    o[1].write(y[1] + bv);
                    o[2].write(y[2] + bv);
                    o[3].write(y[3] + bv);
                }
                if full < nt {
                    // The last tile is cut by the right edge.
                    let y = col(full);
                    let rest = &mut orow[4 * full..];
                    for (o, y) in rest.iter_mut().zip(y) {
                        o.write(y + bv);
                    }
                }
            }
            f += nt;
        }
    }
}

/// `A^T m` for one column of 6 registers, as [`at`] (same operations in the
/// same order).
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn at_avx512(m: [__m512; 6]) -> [__m512; 4] {
    let (add, sub, mul) = (_mm512_add_ps, _mm512_sub_ps, _mm512_mul_ps);
    let (two, four, eight) = (
        _mm512_set1_ps(2.0),
        _mm512_set1_ps(4.0),
        _mm512_set1_ps(8.0),
    );
    let [m0, m1, m2, m3, m4, m5] = m;
    let (a, b, c, d) = (add(m1, m2), sub(m1, m2), add(m3, m4), sub(m3, m4));
    [
        add(add(m0, a), c),
        add(b, mul(two, d)),
        add(a, mul(four, c)),
        add(add(b, mul(eight, d)), m5),
    ]
}

/// The F(4x4) output transform (as [`output_transform_impl`], same bits)
/// for `f32` with AVX-512: per window of tiles, channel and chunk of 16
/// tiles (tile j in lane j, across tile rows), the 36 rows of `M` are
/// loaded in one register each, `A^T` is applied along the rows and the
/// columns in registers (plus bias), each output row's four columns per
/// tile are interleaved by permutes into four registers, and those are
/// stored (masked) into each tile row the chunk touches.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline(never)]
pub(super) unsafe fn output_avx512(
    m: &[f32],
    g: &Geometry,
    o: &OutputArgs<'_, f32>,
    dst: OutPlanes<'_, f32>,
) {
    let (tw, (f0, f1), ldm, rows, (c0, c1)) = (o.tw, o.span, o.ldm, o.rows, o.chans);
    let hw = g.ho * g.wo;
    // Every load is inside row `xi * rows + c - c0` of `m`, columns
    // `0..f1 - f0`; every store inside plane `c - c0` of `dst` (masked to
    // the output).
    assert!(f1 - f0 <= ldm && c1 - c0 <= rows && m.len() >= 36 * rows * ldm);
    assert!(dst.len() >= (c1 - c0) * hw && o.bias.is_none_or(|b| b.len() >= c1));
    let add = _mm512_add_ps;
    // Pairs (columns 0 and 1, or 2 and 3) of tiles 0..8, then of 8..16.
    let pairs = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let pairs = [pairs, _mm512_add_epi32(pairs, _mm512_set1_epi32(8))];
    // Tiles 0..4 (then 4..8) from the pairs of columns 0, 1 and 2, 3.
    let quads = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    let quads = [quads, _mm512_add_epi32(quads, _mm512_set1_epi32(8))];
    for w0 in (f0..f1).step_by(WINDOW) {
        let w1 = (w0 + WINDOW).min(f1);
        let segs = Segments::new(4, (w0, w1), tw, (g.ho, g.wo));
        for c in c0..c1 {
            let bv = _mm512_set1_ps(o.bias.map_or(0.0, |b| b[c]));
            let plane = dst.ptr().add((c - c0) * hw);
            let base = m.as_ptr().add((c - c0) * ldm);
            for (k, f) in (w0..w1).step_by(16).enumerate() {
                let keep = first_lanes(w1 - f);
                let col = base.add(f - f0);
                let ld = |xi: usize| _mm512_maskz_loadu_ps(keep, col.add(xi * rows * ldm));
                // s[a][jj]: A^T along the rows, column jj.
                let mut s = [[_mm512_setzero_ps(); 6]; 4];
                for jj in 0..6 {
                    let y = at_avx512([0, 1, 2, 3, 4, 5].map(|r| ld(6 * r + jj)));
                    for (sa, y) in s.iter_mut().zip(y) {
                        sa[jj] = y;
                    }
                }
                for (a, &sa) in s.iter().enumerate() {
                    let [y0, y1, y2, y3] = at_avx512(sa).map(|y| add(y, bv));
                    let p = pairs.map(|i| _mm512_permutex2var_ps(y0, i, y1));
                    let q = pairs.map(|i| _mm512_permutex2var_ps(y2, i, y3));
                    let out = [
                        _mm512_permutex2var_ps(p[0], quads[0], q[0]),
                        _mm512_permutex2var_ps(p[0], quads[1], q[0]),
                        _mm512_permutex2var_ps(p[1], quads[0], q[1]),
                        _mm512_permutex2var_ps(p[1], quads[1], q[1]),
                    ];
                    store_row(plane, segs.chunk(k), a, g.wo, out);
                }
            }
        }
    }
}
