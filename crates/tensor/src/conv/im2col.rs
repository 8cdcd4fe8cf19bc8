//! im2col: the input under each output position of a convolution unfolded
//! into a column (`cin_g * kh * kw` rows), zeros where the window reaches
//! into the padding.

use super::ConvGeometry;
use crate::element::Element;

/// Fills `cols` (rows x (j1 - j0), row-major) with the unfolded input of one
/// image and one group, for output columns `j0..j1`.
pub(super) fn im2col_block<T: Element>(
    img: &[T],
    g: &ConvGeometry,
    c0: usize,
    j0: usize,
    j1: usize,
    cols: &mut [T],
) {
    let (sh, sw) = g.p.stride;
    let (ph, pw) = g.p.padding;
    let (dh, dw) = g.p.dilation;
    let width = j1 - j0;
    let mut row = 0;
    for c in 0..g.cin_g() {
        let plane = &img[(c0 + c) * g.h * g.w..(c0 + c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let dst = &mut cols[row * width..(row + 1) * width];
                let (mut oy, mut ox) = (j0 / g.wo, j0 % g.wo);
                for d in dst.iter_mut() {
                    let iy = (oy * sh + ki * dh) as isize - ph as isize;
                    let ix = (ox * sw + kj * dw) as isize - pw as isize;
                    *d = if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w {
                        plane[iy as usize * g.w + ix as usize]
                    } else {
                        T::zero()
                    };
                    ox += 1;
                    if ox == g.wo {
                        ox = 0;
                        oy += 1;
                    }
                }
                row += 1;
            }
        }
    }
}

/// Row `r` of one group's unfolded input over all output columns.
pub(super) fn unfold_row<T: Element>(
    img: &[T],
    g: &ConvGeometry,
    c0: usize,
    r: usize,
    row: &mut [T],
) {
    let kk = g.kh * g.kw;
    let (c, ki, kj) = (r / kk, (r % kk) / g.kw, r % g.kw);
    let plane = &img[(c0 + c) * g.h * g.w..(c0 + c + 1) * g.h * g.w];
    for oy in 0..g.ho {
        let iy = (oy * g.p.stride.0 + ki * g.p.dilation.0) as isize - g.p.padding.0 as isize;
        for ox in 0..g.wo {
            let ix = (ox * g.p.stride.1 + kj * g.p.dilation.1) as isize - g.p.padding.1 as isize;
            row[oy * g.wo + ox] =
                if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w {
                    plane[iy as usize * g.w + ix as usize]
                } else {
                    T::zero()
                };
        }
    }
}
