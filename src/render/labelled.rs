//! A grid that reads without a legend: a header naming each column, the
//! caption of each row written above it, and colour bars with their scale
//! under the grid.
//!
//! ```text
//!  input      gradient    lrp.epsilon_plus       <- header
//!  cat.jpg · 281 tabby cat · 0.87                 <- row caption (lines)
//! [image]    [overlay]   [overlay]
//!  dog.jpg · 207 golden retriever · 0.64
//! [image]    [overlay]   [overlay]
//!            [=======]   [=======]               <- a colour bar per column
//!            low  high   −max 0 +max                (or one under the grid)
//! ```

use super::colorbar::ColorBar;
use super::grid::{canvas, place, span};
use super::text::{Align, Area, FontSize, TextStyle, Typeface};
use super::{GridStyle, Result};
use image::{Rgb, RgbImage};

/// One row of a labelled grid.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelledRow {
    /// Caption lines written above the row, left-aligned across its whole
    /// width, each cut with an ellipsis if it does not fit (for example
    /// `"cat.jpg · 281 tabby cat · 0.87"`).
    pub lines: Vec<String>,
    /// The pictures, one per column; `None` leaves the cell empty (a
    /// method without a map for this row) so that the next ones stay
    /// under their headers.
    pub cells: Vec<Option<RgbImage>>,
}

impl LabelledRow {
    /// A row of `cells` (all present) captioned with `lines`.
    pub fn new(lines: Vec<String>, cells: Vec<RgbImage>) -> Self {
        Self {
            lines,
            cells: cells.into_iter().map(Some).collect(),
        }
    }
}

/// The colour bars under a labelled grid.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ColorBars {
    /// None.
    #[default]
    None,
    /// One bar under each column that has one (entry `c` for column `c`;
    /// `None` or a missing entry for a column without, such as the
    /// input's): for methods with different colormaps or ranges.
    PerColumn(Vec<Option<ColorBar>>),
    /// One bar across the whole width of the grid, for maps that share
    /// colormap and scale.
    Whole(ColorBar),
}

/// Options of [`labelled_grid`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LabelStyle {
    /// Gap between cells and around the grid, and the background.
    pub grid: GridStyle,
    /// Colour of the text and of the colour bars' outlines.
    pub text: Rgb<u8>,
    /// Size of the column names.
    pub header_size: FontSize,
    /// Size of the row captions.
    pub label_size: FontSize,
    /// Size of the colour bars' scale.
    pub tick_size: FontSize,
    /// Height of a colour bar's gradient, outline included.
    pub bar_height: u32,
}

impl Default for LabelStyle {
    /// Sized for 224-pixel cells: 6-pixel white gaps, near-black text,
    /// column names at 17 pixels, captions at 15, scales at 13, 14-pixel
    /// colour bars.
    fn default() -> Self {
        Self {
            grid: GridStyle {
                gap: 6,
                background: Rgb([255, 255, 255]),
            },
            text: Rgb([25, 25, 25]),
            header_size: FontSize::known(17.0),
            label_size: FontSize::known(15.0),
            tick_size: FontSize::known(13.0),
            bar_height: 14,
        }
    }
}

/// Space between the header band's text and its edges, and under a row's
/// caption lines, in pixels.
const PAD: u64 = 2;

/// Where everything goes, in pixels, checked against overflow.
struct Layout {
    gap: u64,
    cols: u64,
    cell: (u64, u64),
    /// Top of the header band and its height (0: no header).
    header: (u64, u64),
    /// Per row: the top of its first caption line and of its cells.
    rows: Vec<(u64, u64)>,
    /// Height of one caption line.
    line: u64,
    /// Top of the colour bars and their height (0: no bar).
    bars: (u64, u64),
    width: Option<u64>,
    height: Option<u64>,
}

impl Layout {
    fn new<S: AsRef<str>>(
        face: &Typeface,
        header: &[S],
        rows: &[LabelledRow],
        bars: &ColorBars,
        style: &LabelStyle,
    ) -> Self {
        let cells = rows.iter().flat_map(|r| r.cells.iter().flatten());
        let cell_w = u64::from(cells.clone().map(|c| c.width()).max().unwrap_or(0));
        let cell_h = u64::from(cells.map(|c| c.height()).max().unwrap_or(0));
        let bar_cols = match bars {
            ColorBars::PerColumn(b) => b.len(),
            _ => 0,
        };
        let cols = rows
            .iter()
            .map(|r| r.cells.len())
            .chain([header.len(), bar_cols])
            .max()
            .unwrap_or(0) as u64;
        let gap = u64::from(style.grid.gap);
        let header_h = if header.iter().any(|h| !h.as_ref().is_empty()) {
            u64::from(face.line_height(style.header_size)) + 2 * PAD
        } else {
            0
        };
        let line = u64::from(face.line_height(style.label_size));
        let has_bars = match bars {
            ColorBars::None => false,
            ColorBars::PerColumn(b) => b.iter().any(Option::is_some),
            ColorBars::Whole(_) => true,
        };
        let bars_h = if has_bars {
            ColorBar::height(face, style.bar_height, style.tick_size).map(u64::from)
        } else {
            Some(0)
        };
        // The header band is followed by a gap, like every row.
        let header_block = if header_h > 0 { header_h + gap } else { 0 };
        let mut y = gap.checked_add(header_block);
        let mut tops = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(top) = y else { break };
            let caption = (row.lines.len() as u64)
                .checked_mul(line)
                .and_then(|h| h.checked_add(if row.lines.is_empty() { 0 } else { PAD }));
            let cells_top = caption.and_then(|c| top.checked_add(c));
            if let Some(cells_top) = cells_top {
                tops.push((top, cells_top));
            }
            y = cells_top.and_then(|t| t.checked_add(cell_h)?.checked_add(gap));
        }
        let bars_top = y;
        let height = match (y, bars_h) {
            (Some(y), Some(0)) => Some(y),
            (Some(y), Some(b)) => y.checked_add(b).and_then(|h| h.checked_add(gap)),
            _ => None,
        };
        Self {
            gap,
            cols,
            cell: (cell_w, cell_h),
            header: (gap, header_h),
            rows: tops,
            line,
            bars: (bars_top.unwrap_or(0), bars_h.unwrap_or(0)),
            width: span(cols, cell_w, gap),
            height,
        }
    }

    /// Left edge of column `c` (inside the checked canvas).
    fn column_x(&self, c: u64) -> u64 {
        self.gap + c * (self.cell.0 + self.gap)
    }

    /// Width of all the columns and the gaps between them.
    fn content_width(&self) -> u64 {
        (self.cols * (self.cell.0 + self.gap)).saturating_sub(self.gap)
    }
}

/// A coordinate inside a checked canvas (at most
/// [`MAX_PICTURE_SIDE`](super::MAX_PICTURE_SIDE)) as a `u32`.
fn px(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// A grid of pictures that explains itself: `header` names the columns
/// (the first is usually `"input"`), each row's caption lines are written
/// above it, and `bars` adds colour bars with their scale under the grid.
///
/// Cells are as large as the largest picture, smaller ones centred; text
/// that does not fit its box is cut with an ellipsis and never drawn
/// outside it. The picture is `gap + cols * (cell_w + gap)` wide, `cols`
/// the most of header entries, cells in a row and per-column bars; it is
/// `gap + header + Σ (captions + cell_h + gap) + (bars + gap)` high, with
/// `header` = header line + 4 + gap when any column has a name, `captions` =
/// lines x caption line (+ 2 when there is any), `bars` the bar with its
/// scale line + 2 when there is any. A picture over
/// [`MAX_PICTURE_SIDE`](super::MAX_PICTURE_SIDE) a side or
/// [`MAX_PICTURE_PIXELS`](super::MAX_PICTURE_PIXELS) in all is refused
/// ([`RenderError::TooLarge`](super::RenderError::TooLarge)) before it is
/// allocated.
pub fn labelled_grid<S: AsRef<str>>(
    header: &[S],
    rows: &[LabelledRow],
    bars: &ColorBars,
    style: &LabelStyle,
) -> Result<RgbImage> {
    let face = Typeface::dejavu_sans()?;
    let layout = Layout::new(&face, header, rows, bars, style);
    let mut out = canvas(
        "labelled grid",
        layout.width,
        layout.height,
        style.grid.background,
    )?;
    // The canvas was allocated: every position below fits it.
    let (cell_w, cell_h) = layout.cell;
    let text = |size: FontSize, align: Align| TextStyle {
        size,
        colour: style.text,
        align,
    };
    let (header_top, header_h) = layout.header;
    if header_h > 0 {
        for (c, name) in (0u64..).zip(header) {
            let area = Area {
                x: px(layout.column_x(c)),
                y: px(header_top),
                width: px(cell_w),
                height: px(header_h),
            };
            face.draw(
                &mut out,
                name.as_ref(),
                area,
                text(style.header_size, Align::Centre),
            );
        }
    }
    for (row, &(caption_top, cells_top)) in rows.iter().zip(&layout.rows) {
        for (i, line) in (0u64..).zip(&row.lines) {
            let area = Area {
                x: px(layout.gap),
                y: px(caption_top + i * layout.line),
                width: px(layout.content_width()),
                height: px(layout.line),
            };
            face.draw(&mut out, line, area, text(style.label_size, Align::Left));
        }
        for (c, cell) in (0u64..).zip(&row.cells) {
            if let Some(cell) = cell {
                place(
                    &mut out,
                    cell,
                    (layout.column_x(c), cells_top),
                    (cell_w, cell_h),
                );
            }
        }
    }
    let (bars_top, bars_h) = layout.bars;
    let tick = text(style.tick_size, Align::Left);
    let bar_area = |x: u64, width: u64| Area {
        x: px(x),
        y: px(bars_top),
        width: px(width),
        height: px(bars_h),
    };
    match bars {
        ColorBars::None => {}
        ColorBars::PerColumn(per_column) => {
            for (c, bar) in (0u64..).zip(per_column) {
                if let Some(bar) = bar {
                    let area = bar_area(layout.column_x(c), cell_w);
                    bar.draw(&face, &mut out, area, style.bar_height, tick);
                }
            }
        }
        ColorBars::Whole(bar) => {
            let area = bar_area(layout.gap, layout.content_width());
            bar.draw(&face, &mut out, area, style.bar_height, tick);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{
        heatmap, overlay, write_png, BarScale, Colormap, MapRef, RenderError, ValueRange,
    };

    const WHITE: Rgb<u8> = Rgb([255, 255, 255]);

    fn cell(w: u32, h: u32, v: u8) -> RgbImage {
        RgbImage::from_pixel(w, h, Rgb([v, 0, 255 - v]))
    }

    fn style() -> LabelStyle {
        LabelStyle::default()
    }

    /// Line heights of the default style: 17, 15 and 13 pixels (DejaVu
    /// Sans's ascent + descent is its size).
    #[test]
    fn canvas_size_for_rows_and_columns() {
        let face = Typeface::dejavu_sans().unwrap();
        let s = style();
        assert_eq!(face.line_height(s.header_size), 17);
        assert_eq!(face.line_height(s.label_size), 15);
        assert_eq!(face.line_height(s.tick_size), 13);
        let rows = vec![
            LabelledRow::new(vec!["a".into()], vec![cell(30, 20, 0); 3]),
            LabelledRow::new(vec!["b".into(), "c".into()], vec![cell(30, 20, 9); 2]),
            LabelledRow::new(vec![], vec![cell(10, 10, 0)]),
        ];
        let header = ["input", "x", "y"];
        let g = labelled_grid(&header, &rows, &ColorBars::None, &s).unwrap();
        // 3 columns of 30 with 6-pixel gaps.
        let width = 6 + 3 * (30 + 6);
        // gap, header 17 + 4 + gap, rows: (15 + 2) + 20 + 6, (30 + 2) + 20 + 6, 0 + 20 + 6.
        let height = 6 + 27 + (17 + 26) + (32 + 26) + 26;
        assert_eq!(g.dimensions(), (width, height));
        // A bar adds the gradient (14), 2, the scale line (13) and a gap.
        let bars = ColorBars::Whole(ColorBar::new(Colormap::Jet, BarScale::Relative));
        let g = labelled_grid(&header, &rows, &bars, &s).unwrap();
        assert_eq!(g.dimensions(), (width, height + 29 + 6));
        // No names, no header band; more header entries than cells widen the grid.
        let g = labelled_grid(&["", "", "", ""], &rows, &ColorBars::None, &s).unwrap();
        assert_eq!(g.dimensions(), (6 + 4 * 36, height - 27));
        // Nothing at all: a gap-sized picture.
        let none: [&str; 0] = [];
        let g = labelled_grid(&none, &[], &ColorBars::None, &s).unwrap();
        assert_eq!(g.dimensions(), (6, 6));
    }

    /// The names are written inside their columns' part of the header band;
    /// the gaps between columns stay background, and so does an unnamed
    /// column's part.
    #[test]
    fn header_is_drawn_in_its_band_only() {
        let s = style();
        let rows = vec![LabelledRow::new(vec![], vec![cell(60, 40, 0); 3])];
        let g = labelled_grid(&["input", "", "grad_cam"], &rows, &ColorBars::None, &s).unwrap();
        let band = 6..6 + 21;
        let ink_in = |x0: u32, x1: u32| {
            (x0..x1)
                .flat_map(|x| band.clone().map(move |y| (x, y)))
                .filter(|&(x, y)| *g.get_pixel(x, y) != WHITE)
                .count()
        };
        // Columns at x = 6..66, 72..132, 138..198.
        assert!(ink_in(6, 66) > 30);
        assert_eq!(ink_in(72, 132), 0);
        assert!(ink_in(138, 198) > 30);
        for gap in [0..6, 66..72, 132..138, 198..204] {
            assert_eq!(ink_in(gap.start, gap.end), 0);
        }
        // Above the band (the top gap) and between the band and the cells: background.
        assert!((0..204).all(|x| (0..6).all(|y| *g.get_pixel(x, y) == WHITE)));
        assert!((0..204).all(|x| (27..33).all(|y| *g.get_pixel(x, y) == WHITE)));
        // Dark letters: the darkest pixel of the band is near the text colour.
        let darkest = (6..66)
            .flat_map(|x| band.clone().map(move |y| (x, y)))
            .map(|(x, y)| g.get_pixel(x, y).0[0])
            .min()
            .unwrap();
        assert!(darkest < 100, "{darkest}");
        // The cells start a gap under the band.
        assert_eq!(*g.get_pixel(6, 33), Rgb([0, 0, 255]));
        assert_eq!(*g.get_pixel(6, 32), WHITE);
    }

    /// A caption longer than the grid is cut: no ink right of the content
    /// width, in the gap, or in the cells' band; an empty or odd string
    /// neither panics nor spills.
    #[test]
    fn captions_stay_in_their_box() {
        let s = style();
        let long = "cat.jpg \u{b7} 281 tabby cat \u{b7} 0.87 ".repeat(20);
        let rows = vec![
            LabelledRow::new(vec![long, String::new()], vec![cell(50, 30, 0); 2]),
            LabelledRow::new(
                vec!["cr\u{e8}me \u{4e2d}\u{1f408}\u{0}\u{202e}".into()],
                vec![cell(50, 30, 0); 2],
            ),
        ];
        let g = labelled_grid(&["input", "m"], &rows, &ColorBars::None, &s).unwrap();
        assert_eq!(g.width(), 6 + 2 * 56);
        // Row 0's captions: y in 33..65 (two 15-pixel lines + 2), x in 6..112.
        let ink: Vec<(u32, u32)> = (0..g.width())
            .flat_map(|x| (33..65).map(move |y| (x, y)))
            .filter(|&(x, y)| *g.get_pixel(x, y) != WHITE)
            .collect();
        assert!(ink.len() > 100);
        assert!(ink
            .iter()
            .all(|&(x, y)| (6..112).contains(&x) && y < 33 + 15));
        // The cut line reaches the right end of its box.
        assert!(ink.iter().any(|&(x, _)| x > 100));
        // Row 1's caption is drawn too (the fallback glyphs are ink).
        let y1 = 65 + 30 + 6;
        let ink1 = (6..112)
            .flat_map(|x| (y1..y1 + 15).map(move |y| (x, y)))
            .filter(|&(x, y)| *g.get_pixel(x, y) != WHITE)
            .count();
        assert!(ink1 > 50, "{ink1}");
    }

    /// A colour bar per column sits under its column; the gradient's ends
    /// are the colormap's colours of 0 and 1, a diverging bar's middle its
    /// centre colour.
    #[test]
    fn bars_per_column() {
        let s = style();
        let rows = vec![LabelledRow::new(vec![], vec![cell(224, 16, 0); 3])];
        let bars = ColorBars::PerColumn(vec![
            None,
            Some(ColorBar::new(Colormap::Viridis, BarScale::Relative)),
            Some(ColorBar::new(
                Colormap::Coolwarm,
                BarScale::Values(ValueRange {
                    min: -0.2,
                    max: 0.1,
                }),
            )),
        ]);
        let g = labelled_grid(&["input", "a", "b"], &rows, &bars, &s).unwrap();
        // Bars start after gap + header + gap + row + gap = 6 + 21 + 6 + 16 + 6 = 55.
        let top = 55;
        assert_eq!(g.height(), top + 29 + 6);
        let y = top + 7;
        // Column 0: no bar.
        assert!((6..230).all(|x| *g.get_pixel(x, y) == WHITE));
        // Column 1 at x = 236: outline, then 222 gradient columns.
        assert_eq!(*g.get_pixel(236, y), s.text);
        assert_eq!(*g.get_pixel(237, y), Colormap::Viridis.rgb(0.0));
        assert_eq!(*g.get_pixel(458, y), Colormap::Viridis.rgb(1.0));
        // Column 2 at x = 466.
        assert_eq!(*g.get_pixel(467, y), Colormap::Coolwarm.rgb(0.0));
        assert_eq!(*g.get_pixel(688, y), Colormap::Coolwarm.rgb(1.0));
        assert_eq!(*g.get_pixel(467 + 111, y), Colormap::Coolwarm.rgb(0.5));
        // The gaps between the bars stay background.
        assert!((230..236).all(|x| *g.get_pixel(x, y) == WHITE));
    }

    #[test]
    fn oversized_grids_are_refused_before_allocation() {
        let s = style();
        let rows = vec![LabelledRow::new(vec![String::new(); 10_000], vec![])];
        match labelled_grid(&["x"], &rows, &ColorBars::None, &s) {
            Err(RenderError::TooLarge { height, .. }) => assert!(height > 100_000),
            other => panic!("{other:?}"),
        }
        let header = vec!["m"; 20_000];
        let rows = vec![LabelledRow::new(vec![], vec![cell(4, 4, 0)])];
        assert!(matches!(
            labelled_grid(&header, &rows, &ColorBars::None, &s),
            Err(RenderError::TooLarge { .. })
        ));
        let huge_gap = LabelStyle {
            grid: GridStyle {
                gap: u32::MAX,
                background: WHITE,
            },
            bar_height: u32::MAX,
            ..s
        };
        let bars = ColorBars::Whole(ColorBar::new(Colormap::Jet, BarScale::Relative));
        assert!(matches!(
            labelled_grid(&["x"], &rows, &bars, &huge_gap),
            Err(RenderError::TooLarge { .. })
        ));
    }

    /// A picture of the real thing: a synthetic "photo", a sequential and a
    /// signed (diverging, shared-range) map, overlays, captions with
    /// accents, a bar per method column. Written to a temporary folder and
    /// read back equal.
    #[test]
    fn example_picture() {
        let size = 224u32;
        let photo = RgbImage::from_fn(size, size, |x, y| {
            let (fx, fy) = (x as f32 / size as f32, y as f32 / size as f32);
            let d = ((fx - 0.55).powi(2) + (fy - 0.45).powi(2)).sqrt();
            if d < 0.22 {
                Rgb([200, 140, 60])
            } else {
                Rgb([(90.0 + 80.0 * fy) as u8, (150.0 - 40.0 * fx) as u8, 90])
            }
        });
        let n = (size * size) as usize;
        let blob: Vec<f32> = (0..n)
            .map(|i| {
                let (x, y) = ((i as u32 % size) as f32, (i as u32 / size) as f32);
                (-((x - 123.0).powi(2) + (y - 100.0).powi(2)) / 1800.0).exp()
            })
            .collect();
        let signed: Vec<f32> = (0..n)
            .map(|i| {
                let (x, y) = ((i as u32 % size) as f32, (i as u32 / size) as f32);
                0.8 * (x / 30.0).sin() * (y / 40.0).cos() * 1e-3
            })
            .collect();
        let blob_map = MapRef::new(&blob, size as usize, size as usize).unwrap();
        let signed_map = MapRef::new(&signed, size as usize, size as usize).unwrap();
        let signed_range = ValueRange::of(&signed).unwrap();
        let jet = heatmap(&blob_map, ValueRange::of(&blob).unwrap(), Colormap::Jet);
        let cool = heatmap(&signed_map, signed_range, Colormap::Coolwarm);
        let rows = vec![
            LabelledRow::new(
                vec!["cat.jpg \u{b7} 281 tabby cat \u{b7} 0.87".into()],
                vec![
                    photo.clone(),
                    overlay(&photo, &jet, 0.5).unwrap(),
                    overlay(&photo, &cool, 0.6).unwrap(),
                ],
            ),
            LabelledRow {
                lines: vec![
                    "cr\u{e8}me_br\u{fb}l\u{e9}e.jpg \u{b7} 927 trifle \u{b7} 0.41 (a very long caption that has to be cut at the end of the row, as it goes on and on)".into(),
                    "second line: 6.2e-3 \u{2212}1.0 \u{4e2d}".into(),
                ],
                cells: vec![Some(photo.clone()), None, Some(overlay(&photo, &cool, 0.6).unwrap())],
            },
        ];
        let bars = ColorBars::PerColumn(vec![
            None,
            Some(ColorBar::new(Colormap::Jet, BarScale::Relative)),
            Some(ColorBar::new(
                Colormap::Coolwarm,
                BarScale::Values(signed_range),
            )),
        ]);
        let header = ["input", "grad_cam", "lrp.epsilon_plus_flat (signed)"];
        let g = labelled_grid(&header, &rows, &bars, &style()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.png");
        write_png(&g, &path).unwrap();
        assert_eq!(image::open(&path).unwrap().to_rgb8(), g);
    }
}
