//! Text on pictures: one line at a time in the bundled DejaVu Sans,
//! rasterised by `ab_glyph` and blended onto the picture by glyph coverage
//! (anti-aliased), fitted to its box with an ellipsis, and clipped to the
//! box so that nothing is ever drawn outside it.
//!
//! Characters the font lacks (and control characters) are drawn as the
//! replacement character U+FFFD, a visible diamond with a question mark;
//! no string makes drawing or measuring fail.

use super::{RenderError, Result};
use ab_glyph::{point, Font, FontRef, GlyphId, PxScale, ScaleFont};
use image::{Rgb, RgbImage};
use std::borrow::Cow;

/// DejaVu Sans 2.35 (Bitstream Vera licence with the DejaVu changes in the
/// public domain: `assets/fonts/LICENSE-DejaVu.txt`).
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// What is drawn for a character the font has no glyph for.
const REPLACEMENT: char = '\u{FFFD}';

/// What ends a line cut to fit its box.
const ELLIPSIS: char = '\u{2026}';

/// A text size: the height in pixels of the font's ascent plus descent (a
/// line without its gap), between [`FontSize::MIN`] and [`FontSize::MAX`].
/// DejaVu Sans at 16 has capitals about 8.5 pixels high.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct FontSize(f32);

impl FontSize {
    /// The smallest size.
    pub const MIN: f32 = 4.0;
    /// The largest size.
    pub const MAX: f32 = 512.0;

    /// A size of `px` pixels; refused outside `[MIN, MAX]` (and NaN).
    pub fn new(px: f32) -> Result<Self> {
        if (Self::MIN..=Self::MAX).contains(&px) {
            Ok(Self(px))
        } else {
            Err(RenderError::Invalid(format!(
                "a font size must lie in [{}, {}] pixels, got {px}",
                Self::MIN,
                Self::MAX
            )))
        }
    }

    /// A size known to lie in range (the defaults of the styles).
    pub(super) const fn known(px: f32) -> Self {
        Self(px)
    }

    /// The size in pixels.
    pub fn px(self) -> f32 {
        self.0
    }
}

/// Where a line sits in its box, horizontally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Align {
    /// Against the left edge.
    #[default]
    Left,
    /// In the middle.
    Centre,
    /// Against the right edge.
    Right,
}

/// A rectangle of a picture, in pixels: `width` x `height` from the top
/// left corner (`x`, `y`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Area {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl Area {
    /// Whether the pixel (`x`, `y`) lies inside.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        let (x, y) = (u64::from(x), u64::from(y));
        let (left, top) = (u64::from(self.x), u64::from(self.y));
        x >= left
            && y >= top
            && x < left + u64::from(self.width)
            && y < top + u64::from(self.height)
    }
}

/// How a line is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TextStyle {
    /// The size.
    pub size: FontSize,
    /// The colour of the letters.
    pub colour: Rgb<u8>,
    /// Where the line sits in its box.
    pub align: Align,
}

/// The bundled typeface, DejaVu Sans, ready to measure and draw text.
///
/// Chosen font crate: `ab_glyph` (maintained; the rasteriser under
/// `glyph_brush` and `imageproc`'s text): it parses the TrueType file in
/// place (no copy), gives each glyph's anti-aliased coverage pixel by pixel
/// to a callback, so the blending and the clipping stay here, and it pulls
/// in only `ttf-parser` and its own small rasteriser.
#[derive(Clone, Debug)]
pub struct Typeface {
    font: FontRef<'static>,
}

impl Typeface {
    /// The bundled DejaVu Sans; fails only if the embedded file is
    /// unreadable.
    pub fn dejavu_sans() -> Result<Self> {
        let font =
            FontRef::try_from_slice(DEJAVU_SANS).map_err(|e| RenderError::Font(e.to_string()))?;
        Ok(Self { font })
    }

    /// The glyph drawn for `c`: its own, or the replacement character's
    /// for a character the font lacks or a control character (a tab is a
    /// space).
    fn glyph(&self, c: char) -> GlyphId {
        let c = match c {
            '\t' => ' ',
            c if c.is_control() => REPLACEMENT,
            c => c,
        };
        match self.font.glyph_id(c) {
            GlyphId(0) => self.font.glyph_id(REPLACEMENT),
            id => id,
        }
    }

    /// Lays `text` out from pen position 0: calls `visit` with each glyph
    /// and its pen position (kerned), and returns the line's advance. The
    /// pen never moves left, so a longer string is never narrower.
    fn layout(&self, text: &str, size: FontSize, mut visit: impl FnMut(GlyphId, f32)) -> f32 {
        let scaled = self.font.as_scaled(PxScale::from(size.px()));
        let mut caret = 0.0f32;
        let mut prev: Option<GlyphId> = None;
        for c in text.chars() {
            let id = self.glyph(c);
            let x = caret + prev.map_or(0.0, |p| scaled.kern(p, id));
            visit(id, x);
            caret = (x + scaled.h_advance(id)).max(caret);
            prev = Some(id);
        }
        caret
    }

    /// The width of `text` drawn at `size`, in whole pixels (its advance,
    /// rounded up).
    pub fn width(&self, text: &str, size: FontSize) -> u32 {
        // A float-to-int `as` saturates: a huge advance is u32::MAX.
        self.layout(text, size, |_, _| {}).ceil() as u32
    }

    /// The height of a line at `size`: ascent plus descent, rounded up.
    pub fn line_height(&self, size: FontSize) -> u32 {
        let scaled = self.font.as_scaled(PxScale::from(size.px()));
        // Less a rounding error's worth: DejaVu's line at 13 is 13.000001.
        (scaled.ascent() - scaled.descent() - 1e-3).ceil() as u32
    }

    /// `text` itself if it is at most `max_width` pixels wide at `size`,
    /// else its longest beginning (trailing spaces removed) followed by an
    /// ellipsis that is, or an empty string when not even the ellipsis fits.
    pub fn fit<'a>(&self, text: &'a str, size: FontSize, max_width: u32) -> Cow<'a, str> {
        let max = max_width as f32;
        let full = self.layout(text, size, |_, _| {});
        if full <= max {
            return Cow::Borrowed(text);
        }
        let scaled = self.font.as_scaled(PxScale::from(size.px()));
        let ellipsis = self.glyph(ELLIPSIS);
        let ellipsis_advance = scaled.h_advance(ellipsis);
        let mut best = (ellipsis_advance <= max).then_some(0);
        let mut caret = 0.0f32;
        let mut prev: Option<GlyphId> = None;
        for (i, c) in text.char_indices() {
            let id = self.glyph(c);
            let x = caret + prev.map_or(0.0, |p| scaled.kern(p, id));
            caret = (x + scaled.h_advance(id)).max(caret);
            prev = Some(id);
            if caret > max {
                break;
            }
            let with_ellipsis = (caret + scaled.kern(id, ellipsis)).max(caret) + ellipsis_advance;
            if with_ellipsis <= max {
                best = Some(i + c.len_utf8());
            }
        }
        match best {
            None => Cow::Borrowed(""),
            Some(end) => Cow::Owned(format!("{}{ELLIPSIS}", text[..end].trim_end())),
        }
    }

    /// Draws `text` on one line inside `area`: fitted to its width
    /// ([`Typeface::fit`]), placed by `style.align`, centred vertically
    /// (from the top when the box is lower than a line), each glyph's
    /// coverage blended over the picture. Pixels outside `area` or outside
    /// the picture are never touched. Returns the drawn line's width.
    pub fn draw(&self, canvas: &mut RgbImage, text: &str, area: Area, style: TextStyle) -> u32 {
        let fitted = self.fit(text, style.size, area.width);
        let scale = PxScale::from(style.size.px());
        let scaled = self.font.as_scaled(scale);
        let advance = self.layout(&fitted, style.size, |_, _| {});
        let slack = (area.width as f32 - advance).max(0.0);
        let left = area.x as f32
            + match style.align {
                Align::Left => 0.0,
                Align::Centre => (slack / 2.0).floor(),
                Align::Right => slack.floor(),
            };
        let line = scaled.ascent() - scaled.descent();
        let top = area.y as f32 + ((area.height as f32 - line) / 2.0).max(0.0);
        let baseline = (top + scaled.ascent()).round();
        // The clip box: the area within the picture, as half-open i64 ranges.
        let x0 = i64::from(area.x);
        let y0 = i64::from(area.y);
        let x1 = (x0 + i64::from(area.width)).min(i64::from(canvas.width()));
        let y1 = (y0 + i64::from(area.height)).min(i64::from(canvas.height()));
        self.layout(&fitted, style.size, |id, x| {
            let glyph = id.with_scale_and_position(scale, point(left + x, baseline));
            let Some(outline) = scaled.outline_glyph(glyph) else {
                return; // A space: nothing to draw.
            };
            let bounds = outline.px_bounds();
            let (bx, by) = (bounds.min.x as i64, bounds.min.y as i64);
            outline.draw(|gx, gy, coverage| {
                let (px, py) = (bx + i64::from(gx), by + i64::from(gy));
                if px < x0 || px >= x1 || py < y0 || py >= y1 || coverage <= 0.0 {
                    return;
                }
                // In [0, canvas size) by the clip box above.
                let pixel = canvas.get_pixel_mut(px as u32, py as u32);
                blend(pixel, style.colour, coverage.min(1.0));
            });
        });
        advance.ceil() as u32
    }
}

/// `pixel` moved toward `colour` by `coverage` in `[0, 1]`, rounded.
fn blend(pixel: &mut Rgb<u8>, colour: Rgb<u8>, coverage: f32) {
    for (p, c) in pixel.0.iter_mut().zip(colour.0) {
        let (p0, c) = (f32::from(*p), f32::from(c));
        *p = (p0 + (c - p0) * coverage).round().clamp(0.0, 255.0) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
    const BLACK: Rgb<u8> = Rgb([0, 0, 0]);

    fn face() -> Typeface {
        Typeface::dejavu_sans().unwrap()
    }

    fn size(px: f32) -> FontSize {
        FontSize::new(px).unwrap()
    }

    fn style(px: f32, align: Align) -> TextStyle {
        TextStyle {
            size: size(px),
            colour: BLACK,
            align,
        }
    }

    /// Pixels that differ from `bg`, as (x, y).
    fn inked(img: &RgbImage, bg: Rgb<u8>) -> Vec<(u32, u32)> {
        img.enumerate_pixels()
            .filter(|(_, _, p)| **p != bg)
            .map(|(x, y, _)| (x, y))
            .collect()
    }

    #[test]
    fn sizes_are_checked() {
        assert!(FontSize::new(3.9).is_err());
        assert!(FontSize::new(f32::NAN).is_err());
        assert!(FontSize::new(600.0).is_err());
        assert_eq!(FontSize::new(16.0).unwrap().px(), 16.0);
    }

    /// DejaVu Sans's metrics: ascent 1901 and descent 483 font units of
    /// 2048 to the em, so a 16-pixel line is 16 high; "H" advances 1540
    /// units, i.e. 1540 / 2384 * 16 = 10.34 pixels at size 16.
    #[test]
    fn metrics_match_the_font() {
        let f = face();
        assert_eq!(f.line_height(size(16.0)), 16);
        assert_eq!(f.width("H", size(16.0)), 11);
        assert_eq!(f.width("HH", size(16.0)), 21);
        assert_eq!(f.width("", size(16.0)), 0);
        // Twice the size, twice the width (up to rounding).
        let (a, b) = (
            f.width("saliency", size(12.0)),
            f.width("saliency", size(24.0)),
        );
        assert!((i64::from(b) - 2 * i64::from(a)).abs() <= 2, "{a} {b}");
    }

    #[test]
    fn width_grows_with_the_string() {
        let f = face();
        let text = "cat.jpg \u{b7} 281 tabby cat \u{b7} 0.87 AVAWAY To crème brûlée";
        let mut last = 0;
        for (i, _) in text.char_indices().skip(1) {
            let w = f.width(&text[..i], size(14.0));
            assert!(w >= last, "{:?}: {w} < {last}", &text[..i]);
            last = w;
        }
        assert!(f.width(text, size(14.0)) >= last);
        assert!(last > 200, "{last}");
    }

    proptest! {
        #[test]
        fn width_is_monotone_for_any_string(s in "\\PC{0,24}", c in any::<char>()) {
            let f = face();
            let longer = format!("{s}{c}");
            prop_assert!(f.width(&longer, size(13.0)) >= f.width(&s, size(13.0)));
        }

        #[test]
        fn fitted_text_fits(s in ".{0,60}", max in 0u32..300) {
            let f = face();
            let fitted = f.fit(&s, size(15.0), max);
            prop_assert!(f.width(&fitted, size(15.0)) <= max);
            if f.width(&s, size(15.0)) <= max {
                prop_assert_eq!(fitted.as_ref(), s.as_str());
            } else if !fitted.is_empty() {
                prop_assert!(fitted.ends_with(ELLIPSIS));
            }
        }
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        let f = face();
        let text = "a very long label that cannot possibly fit in sixty pixels";
        let fitted = f.fit(text, size(14.0), 60);
        assert!(fitted.ends_with('\u{2026}'), "{fitted}");
        assert!(text.starts_with(fitted.trim_end_matches('\u{2026}')));
        assert!(f.width(&fitted, size(14.0)) <= 60);
        assert!(fitted.chars().count() > 3, "{fitted}");
        // Too narrow for anything: nothing.
        assert_eq!(f.fit(text, size(14.0), 3), "");
        // Fits: unchanged and borrowed.
        assert!(matches!(f.fit("cat", size(14.0), 60), Cow::Borrowed("cat")));
    }

    #[test]
    fn drawn_text_is_anti_aliased_and_inside_its_box() {
        let f = face();
        let mut img = RgbImage::from_pixel(200, 40, WHITE);
        let area = Area {
            x: 20,
            y: 10,
            width: 50,
            height: 18,
        };
        let long = "tabby cat, tabby cat, tabby cat, tabby cat";
        let w = f.draw(&mut img, long, area, style(16.0, Align::Left));
        assert!(w <= 50, "{w}");
        let ink = inked(&img, WHITE);
        assert!(ink.len() > 60, "{}", ink.len());
        assert!(ink.iter().all(|&(x, y)| area.contains(x, y)), "{ink:?}");
        // Anti-aliased: grey levels besides black and white.
        let greys = ink
            .iter()
            .filter(|&&(x, y)| {
                let v = img.get_pixel(x, y).0[0];
                v > 30 && v < 225
            })
            .count();
        assert!(greys > 10, "{greys}");
        // Black letters on white stay grey: the three channels move together.
        assert!(ink.iter().all(|&(x, y)| {
            let [r, g, b] = img.get_pixel(x, y).0;
            r == g && g == b
        }));
    }

    #[test]
    fn alignment_moves_the_line() {
        let f = face();
        let area = Area {
            x: 0,
            y: 0,
            width: 120,
            height: 20,
        };
        let span = |align| {
            let mut img = RgbImage::from_pixel(120, 20, WHITE);
            f.draw(&mut img, "input", area, style(16.0, align));
            let ink = inked(&img, WHITE);
            let min = ink.iter().map(|p| p.0).min().unwrap();
            let max = ink.iter().map(|p| p.0).max().unwrap();
            (min, max)
        };
        let (l, c, r) = (span(Align::Left), span(Align::Centre), span(Align::Right));
        assert!(l.0 <= 2, "{l:?}");
        assert!(r.1 >= 116, "{r:?}");
        // Centred: the margins differ by at most a few pixels.
        let (left_margin, right_margin) = (c.0 as i64, 119 - c.1 as i64);
        assert!((left_margin - right_margin).abs() <= 3, "{c:?}");
    }

    #[test]
    fn boxes_beyond_the_picture_are_clipped() {
        let f = face();
        let mut img = RgbImage::from_pixel(30, 10, WHITE);
        let area = Area {
            x: 20,
            y: 4,
            width: u32::MAX,
            height: 16,
        };
        f.draw(&mut img, "WWWWWWWW", area, style(16.0, Align::Left));
        let ink = inked(&img, WHITE);
        assert!(!ink.is_empty());
        assert!(ink.iter().all(|&(x, y)| x >= 20 && y >= 4));
        // A box entirely outside: nothing drawn, no panic.
        let mut img = RgbImage::from_pixel(30, 10, WHITE);
        let outside = Area {
            x: u32::MAX - 5,
            y: u32::MAX - 5,
            width: u32::MAX,
            height: 40,
        };
        f.draw(&mut img, "W", outside, style(16.0, Align::Right));
        assert!(inked(&img, WHITE).is_empty());
    }

    /// Accented Latin has its own glyphs; characters the font lacks and
    /// control characters come out as the (visible) replacement glyph;
    /// nothing panics.
    #[test]
    fn unusual_strings_draw_or_fall_back() {
        let f = face();
        let s = size(16.0);
        assert_eq!(f.glyph('\u{4e2d}'), f.glyph(REPLACEMENT));
        assert_eq!(f.glyph('\u{7}'), f.glyph(REPLACEMENT));
        assert_ne!(f.glyph('\u{e8}'), f.glyph(REPLACEMENT));
        assert_eq!(f.glyph('\t'), f.glyph(' '));
        let area = Area {
            x: 0,
            y: 0,
            width: 400,
            height: 24,
        };
        let strings = [
            "",
            "crème brûlée, Ångström, façade",
            "\u{4e2d}\u{6587}",
            "\u{1f408}\u{200d}\u{2b1b}",
            "e\u{301}\u{301}\u{301}",
            "\u{0}\n\r\t\u{7f}",
            "\u{feff}\u{200b}\u{202e}abc",
            "\u{e000}\u{10ffff}\u{fffd}",
            "\u{645}\u{631}\u{62d}\u{628}\u{627}",
            &"\u{fdfd}".repeat(500),
        ];
        for text in strings {
            let mut img = RgbImage::from_pixel(400, 24, WHITE);
            let w = f.draw(&mut img, text, area, style(16.0, Align::Centre));
            assert!(w <= 400, "{text:?}: {w}");
            assert!(f.width(&f.fit(text, s, 400), s) <= 400);
            let ink = inked(&img, WHITE).len();
            if text.is_empty() {
                assert_eq!(ink, 0);
            } else {
                assert!(ink > 0, "{text:?} drew nothing");
            }
        }
        // A missing character is as wide as the replacement glyph.
        assert_eq!(f.width("\u{4e2d}", s), f.width("\u{fffd}", s));
        assert!(f.width("\u{4e2d}", s) > 5);
    }
}
