//! Colour bars: a colormap drawn as a horizontal gradient, outlined, with
//! its scale written underneath, in words when every map is stretched to
//! its own range, in numbers when the maps share one.

use super::text::{Align, Area, FontSize, TextStyle, Typeface};
use super::{Colormap, Normalize, ValueRange};
use image::{Rgb, RgbImage};

/// What a colour bar's scale says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BarScale {
    /// Each map stretched to its own range ([`Normalize::PerMap`]): the
    /// bar reads "low" .. "high", or "−max" "0" "+max" for a diverging
    /// colormap (each map's own largest magnitude).
    Relative,
    /// The maps share this range ([`Normalize::Shared`],
    /// [`Normalize::SharedAll`]): the bar shows its numbers, min .. max, or
    /// −m 0 +m for a diverging colormap (the range centred on zero as the
    /// heatmaps are, [`Colormap::centred`]).
    Values(ValueRange),
}

impl BarScale {
    /// The scale of maps drawn with `normalize` whose shared range (for
    /// the shared modes) is `shared`; a shared mode without a range (no
    /// finite value) falls back to [`BarScale::Relative`].
    pub fn for_normalize(normalize: Normalize, shared: Option<ValueRange>) -> Self {
        match (normalize, shared) {
            (Normalize::PerMap, _) | (_, None) => BarScale::Relative,
            (Normalize::Shared | Normalize::SharedAll, Some(range)) => BarScale::Values(range),
        }
    }
}

/// A colour bar: the colormap of some maps and how their values were
/// stretched to it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColorBar {
    /// The colormap.
    pub colormap: Colormap,
    /// The scale written under the gradient.
    pub scale: BarScale,
}

impl ColorBar {
    /// A bar of `colormap` with `scale`.
    pub fn new(colormap: Colormap, scale: BarScale) -> Self {
        Self { colormap, scale }
    }

    /// The words written under the bar, left to right: two (at its ends)
    /// or three (ends and middle, for a diverging colormap).
    pub fn labels(&self) -> Vec<String> {
        let diverging = self.colormap.is_diverging();
        match (self.scale, diverging) {
            (BarScale::Relative, false) => vec!["low".into(), "high".into()],
            (BarScale::Relative, true) => vec!["\u{2212}max".into(), "0".into(), "+max".into()],
            (BarScale::Values(range), false) => {
                vec![format_tick(range.min), format_tick(range.max)]
            }
            (BarScale::Values(range), true) => {
                let m = self.colormap.centred(range).max;
                let plus = if m > 0.0 { "+" } else { "" };
                vec![
                    format_tick(-m),
                    "0".into(),
                    format!("{plus}{}", format_tick(m)),
                ]
            }
        }
    }

    /// Draws the bar inside `area`: the gradient `bar_height` pixels high
    /// at the top, inside a 1-pixel outline of `style.colour`, then the
    /// labels on one line underneath (left, centred, right aligned). The
    /// gradient's first column has the colour of 0, its last of 1, column
    /// `i` of `i / (n - 1)`. Nothing is drawn outside `area`.
    pub(super) fn draw(
        &self,
        face: &Typeface,
        canvas: &mut RgbImage,
        area: Area,
        bar_height: u32,
        style: TextStyle,
    ) {
        let outline = bar_height.min(area.height);
        fill(
            canvas,
            Area {
                height: outline,
                ..area
            },
            style.colour,
        );
        let inner = Area {
            x: area.x.saturating_add(1),
            y: area.y.saturating_add(1),
            width: area.width.saturating_sub(2),
            height: outline.saturating_sub(2),
        };
        let span = inner.width.saturating_sub(1).max(1) as f32;
        for i in 0..inner.width {
            let colour = self.colormap.rgb(i as f32 / span);
            let column = Area {
                x: inner.x.saturating_add(i),
                width: 1,
                ..inner
            };
            fill(canvas, column, colour);
        }
        let labels = self.labels();
        let n = labels.len() as u32;
        let gap = 2;
        let text_top = area.y.saturating_add(outline).saturating_add(gap);
        let text_height = area.height.saturating_sub(outline.saturating_add(gap));
        let part = area.width / n;
        for (k, label) in (0..n).zip(&labels) {
            let align = match (k, n) {
                (0, _) => Align::Left,
                (k, n) if k + 1 == n => Align::Right,
                _ => Align::Centre,
            };
            let x = area.x.saturating_add(k * part);
            // The last part takes the rounding's leftover pixels.
            let width = if k + 1 == n {
                area.width - k * part
            } else {
                part
            };
            let label_area = Area {
                x,
                y: text_top,
                width,
                height: text_height,
            };
            face.draw(canvas, label, label_area, TextStyle { align, ..style });
        }
    }

    /// Height of a bar drawn by [`ColorBar::draw`] with a `bar_height`
    /// gradient and labels at `size`, or `None` on overflow.
    pub(super) fn height(face: &Typeface, bar_height: u32, size: FontSize) -> Option<u32> {
        bar_height
            .checked_add(2)?
            .checked_add(face.line_height(size))
    }
}

/// Paints `area` (clipped to the picture) with `colour`.
fn fill(canvas: &mut RgbImage, area: Area, colour: Rgb<u8>) {
    let x1 = area.x.saturating_add(area.width).min(canvas.width());
    let y1 = area.y.saturating_add(area.height).min(canvas.height());
    for y in area.y..y1 {
        for x in area.x..x1 {
            canvas.put_pixel(x, y, colour);
        }
    }
}

/// A number as a colour bar writes it: "0", three significant digits in
/// `[0.01, 10000)` ("0.0123", "12.3", "1234"), scientific notation beyond
/// ("1.23e-4", "4.56e7"); a minus sign is U+2212.
pub fn format_tick(v: f32) -> String {
    let a = v.abs();
    let text = if v == 0.0 {
        return "0".into();
    } else if !v.is_finite() {
        format!("{a}")
    } else if (0.01..10_000.0).contains(&a) {
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        format!("{a:.decimals$}")
    } else {
        format!("{a:.2e}")
    };
    if v < 0.0 {
        format!("\u{2212}{text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short_numbers() {
        assert_eq!(format_tick(0.0), "0");
        assert_eq!(format_tick(-0.0), "0");
        assert_eq!(format_tick(0.012345), "0.0123");
        assert_eq!(format_tick(12.345), "12.3");
        assert_eq!(format_tick(1234.4), "1234");
        assert_eq!(format_tick(0.5), "0.500");
        assert_eq!(format_tick(-2.5), "\u{2212}2.50");
        assert_eq!(format_tick(0.000123), "1.23e-4");
        assert_eq!(format_tick(45_600_000.0), "4.56e7");
        assert_eq!(format_tick(f32::NAN), "NaN");
        assert_eq!(format_tick(f32::NEG_INFINITY), "\u{2212}inf");
    }

    #[test]
    fn labels_follow_scale_and_colormap() {
        let rel = ColorBar::new(Colormap::Jet, BarScale::Relative);
        assert_eq!(rel.labels(), ["low", "high"]);
        let rel = ColorBar::new(Colormap::Coolwarm, BarScale::Relative);
        assert_eq!(rel.labels(), ["\u{2212}max", "0", "+max"]);
        let range = ValueRange {
            min: -0.5,
            max: 2.0,
        };
        let shared = ColorBar::new(Colormap::Viridis, BarScale::Values(range));
        assert_eq!(shared.labels(), ["\u{2212}0.500", "2.00"]);
        // Diverging: the range centred on zero, as the heatmaps are.
        let shared = ColorBar::new(Colormap::Coolwarm, BarScale::Values(range));
        assert_eq!(shared.labels(), ["\u{2212}2.00", "0", "+2.00"]);
        assert_eq!(
            BarScale::for_normalize(Normalize::PerMap, Some(range)),
            BarScale::Relative
        );
        assert_eq!(
            BarScale::for_normalize(Normalize::SharedAll, Some(range)),
            BarScale::Values(range)
        );
        assert_eq!(
            BarScale::for_normalize(Normalize::Shared, None),
            BarScale::Relative
        );
    }

    /// The gradient's end columns are the colormap's colours of 0 and 1,
    /// its middle (of an even width of 224, column 112 at t = 0.502, LUT
    /// index 128) the diverging map's centre colour; the outline surrounds
    /// it; the labels are written under it.
    #[test]
    fn gradient_ends_and_centre() {
        let face = Typeface::dejavu_sans().unwrap();
        let white = Rgb([255, 255, 255]);
        let style = TextStyle {
            size: FontSize::new(13.0).unwrap(),
            colour: Rgb([20, 20, 20]),
            align: Align::Left,
        };
        for cmap in Colormap::ALL {
            let bar = ColorBar::new(cmap, BarScale::Relative);
            let mut img = RgbImage::from_pixel(240, 40, white);
            let area = Area {
                x: 6,
                y: 2,
                width: 226,
                height: 34,
            };
            bar.draw(&face, &mut img, area, 14, style);
            // Gradient: x in 7..=230 (224 columns), y in 3..=14.
            for y in 3..15 {
                assert_eq!(*img.get_pixel(7, y), cmap.rgb(0.0), "{cmap}");
                assert_eq!(*img.get_pixel(230, y), cmap.rgb(1.0), "{cmap}");
            }
            if cmap.is_diverging() {
                assert_eq!(*img.get_pixel(7 + 112, 8), cmap.rgb(0.5));
            }
            assert_eq!(*img.get_pixel(6, 8), style.colour);
            assert_eq!(*img.get_pixel(231, 8), style.colour);
            assert_eq!(*img.get_pixel(100, 2), style.colour);
            assert_eq!(*img.get_pixel(100, 15), style.colour);
            // Outside the area: untouched.
            assert_eq!(*img.get_pixel(5, 8), white);
            assert_eq!(*img.get_pixel(232, 8), white);
            assert!((0..240).all(|x| *img.get_pixel(x, 1) == white));
            assert!((0..240).all(|x| *img.get_pixel(x, 36) == white));
            // Labels under the bar, at both ends.
            let ink = |x0: u32, x1: u32| {
                (x0..x1).any(|x| (18..36).any(|y| *img.get_pixel(x, y) != white))
            };
            assert!(ink(6, 60) && ink(180, 232), "{cmap}");
            assert_eq!(ink(105, 135), cmap.is_diverging(), "{cmap}");
        }
        assert_eq!(ColorBar::height(&face, 14, style.size), Some(29));
    }

    #[test]
    fn tiny_and_empty_areas_do_not_panic() {
        let face = Typeface::dejavu_sans().unwrap();
        let style = TextStyle {
            size: FontSize::new(13.0).unwrap(),
            colour: Rgb([0, 0, 0]),
            align: Align::Left,
        };
        let bar = ColorBar::new(Colormap::Coolwarm, BarScale::Relative);
        for (w, h) in [(0, 0), (1, 1), (2, 30), (5, 2)] {
            let mut img = RgbImage::from_pixel(4, 4, Rgb([255; 3]));
            let area = Area {
                x: 1,
                y: 1,
                width: w,
                height: h,
            };
            bar.draw(&face, &mut img, area, 14, style);
            assert_eq!(*img.get_pixel(0, 0), Rgb([255; 3]));
        }
    }
}
