//! Pictures laid out in rows and columns, and the size limits every
//! rendered picture is checked against before it is allocated.

use super::{RenderError, Result};
use image::{Rgb, RgbImage};

/// Largest width or height of a picture the renderer draws.
pub const MAX_PICTURE_SIDE: u64 = 65_535;

/// Largest number of pixels of a picture the renderer draws (2^27, about
/// 134 million: 384 MiB of RGB, an 11585 x 11585 square).
pub const MAX_PICTURE_PIXELS: u64 = 1 << 27;

/// Options of [`grid`] and [`try_grid`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridStyle {
    /// Pixels between cells and around the grid.
    pub gap: u32,
    /// Colour of the gaps and of empty cells.
    pub background: Rgb<u8>,
}

impl Default for GridStyle {
    /// A 4-pixel white gap.
    fn default() -> Self {
        Self {
            gap: 4,
            background: Rgb([255, 255, 255]),
        }
    }
}

/// Pictures laid out in rows (for example: one row per image, one column per
/// method). Every cell is as large as the largest picture; smaller pictures
/// are centred, short rows are padded with the background. An empty grid is
/// a `gap` x `gap` (at least 1 x 1) background picture. A grid larger than
/// [`MAX_PICTURE_SIDE`] a side or [`MAX_PICTURE_PIXELS`] in all is refused
/// ([`RenderError::TooLarge`]) before it is allocated.
pub fn try_grid(rows: &[Vec<RgbImage>], style: GridStyle) -> Result<RgbImage> {
    let cells = rows.iter().flatten();
    let cell_w = u64::from(cells.clone().map(|c| c.width()).max().unwrap_or(0));
    let cell_h = u64::from(cells.map(|c| c.height()).max().unwrap_or(0));
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0) as u64;
    let g = u64::from(style.gap);
    let width = span(cols, cell_w, g);
    let height = span(rows.len() as u64, cell_h, g);
    let mut out = canvas("grid", width, height, style.background)?;
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            // Inside the canvas, whose sides were checked: no overflow.
            let x = g + c as u64 * (cell_w + g);
            let y = g + r as u64 * (cell_h + g);
            place(&mut out, cell, (x, y), (cell_w, cell_h));
        }
    }
    Ok(out)
}

/// [`try_grid`] for the callers that predate it: a grid it refuses (over
/// [`MAX_PICTURE_SIDE`] a side or [`MAX_PICTURE_PIXELS`] in all) comes back
/// as a 1 x 1 background picture. New code calls [`try_grid`] or
/// [`labelled_grid`](super::labelled_grid).
pub fn grid(rows: &[Vec<RgbImage>], style: GridStyle) -> RgbImage {
    try_grid(rows, style).unwrap_or_else(|_| RgbImage::from_pixel(1, 1, style.background))
}

/// `gap + n * (cell + gap)`: the extent of `n` cells with gaps between and
/// around them, or `None` on overflow.
pub(super) fn span(n: u64, cell: u64, gap: u64) -> Option<u64> {
    n.checked_mul(cell.checked_add(gap)?)?.checked_add(gap)
}

/// A `width` x `height` picture (each at least 1) filled with `background`,
/// after checking the size against [`MAX_PICTURE_SIDE`] and
/// [`MAX_PICTURE_PIXELS`]; `None` stands for a size that overflowed.
pub(super) fn canvas(
    what: &'static str,
    width: Option<u64>,
    height: Option<u64>,
    background: Rgb<u8>,
) -> Result<RgbImage> {
    let too_large = RenderError::TooLarge {
        what,
        width: width.unwrap_or(u64::MAX),
        height: height.unwrap_or(u64::MAX),
    };
    let (Some(w), Some(h)) = (width, height) else {
        return Err(too_large);
    };
    let (w, h) = (w.max(1), h.max(1));
    let fits = w <= MAX_PICTURE_SIDE
        && h <= MAX_PICTURE_SIDE
        && w.checked_mul(h).is_some_and(|n| n <= MAX_PICTURE_PIXELS);
    match (fits, u32::try_from(w), u32::try_from(h)) {
        (true, Ok(w), Ok(h)) => Ok(RgbImage::from_pixel(w, h, background)),
        _ => Err(too_large),
    }
}

/// Copies `cell` centred into the `size` (width, height) box whose top
/// left corner is `at`; the box lies inside `out`.
pub(super) fn place(out: &mut RgbImage, cell: &RgbImage, at: (u64, u64), size: (u64, u64)) {
    let x = at.0 + size.0.saturating_sub(u64::from(cell.width())) / 2;
    let y = at.1 + size.1.saturating_sub(u64::from(cell.height())) / 2;
    let (Ok(x), Ok(y)) = (i64::try_from(x), i64::try_from(y)) else {
        return;
    };
    image::imageops::replace(out, cell, x, y);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_cells_with_gaps() {
        let red = RgbImage::from_pixel(2, 2, Rgb([255, 0, 0]));
        let blue = RgbImage::from_pixel(2, 2, Rgb([0, 0, 255]));
        let tiny = RgbImage::from_pixel(1, 1, Rgb([0, 255, 0]));
        let style = GridStyle {
            gap: 1,
            background: Rgb([9, 9, 9]),
        };
        let g = grid(&[vec![red.clone(), blue.clone()], vec![tiny]], style);
        // 2 columns x 2 rows of 2x2 cells with 1-pixel gaps.
        assert_eq!(g.dimensions(), (7, 7));
        assert_eq!(g.get_pixel(0, 0), &Rgb([9; 3]));
        assert_eq!(g.get_pixel(1, 1), &Rgb([255, 0, 0]));
        assert_eq!(g.get_pixel(3, 1), &Rgb([9; 3]));
        assert_eq!(g.get_pixel(4, 2), &Rgb([0, 0, 255]));
        // The 1x1 cell is centred (offset 0 in a 2x2 cell) and the missing cell is background.
        assert_eq!(g.get_pixel(1, 4), &Rgb([0, 255, 0]));
        assert_eq!(g.get_pixel(2, 5), &Rgb([9; 3]));
        assert_eq!(g.get_pixel(5, 5), &Rgb([9; 3]));
        assert_eq!(grid(&[], GridStyle::default()).dimensions(), (4, 4));
    }

    /// A grid over the limits is refused before anything is allocated, and
    /// the old entry point answers it with a 1 x 1 background picture.
    #[test]
    fn oversized_grids_are_refused() {
        let dot = RgbImage::from_pixel(1, 1, Rgb([0, 0, 0]));
        // 20000 rows of 1-pixel cells with 4-pixel gaps: 100004 pixels high.
        let rows = vec![vec![dot.clone()]; 20_000];
        match try_grid(&rows, GridStyle::default()) {
            Err(e @ RenderError::TooLarge { width, height, .. }) => {
                assert_eq!((width, height), (9, 100_004));
                assert_eq!(
                    e.to_string(),
                    "grid would be 9 x 100004 pixels; at most 65535 a side and 134217728 in all"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(grid(&rows, GridStyle::default()).dimensions(), (1, 1));
        // Within the side limit but over the pixel limit.
        assert!(matches!(
            canvas("test", Some(60_000), Some(60_000), Rgb([0; 3])),
            Err(RenderError::TooLarge { .. })
        ));
        assert!(matches!(
            canvas("test", None, Some(1), Rgb([0; 3])),
            Err(RenderError::TooLarge {
                width: u64::MAX,
                ..
            })
        ));
        assert_eq!(span(u64::MAX, 1, 1), None);
        assert_eq!(span(3, 10, 2), Some(38));
        let ok = canvas("test", Some(0), Some(3), Rgb([7; 3])).unwrap();
        assert_eq!(ok.dimensions(), (1, 3));
    }
}
