//! Turning saliency maps into pictures people look at: colormaps, value
//! normalisation (per map, or one range shared by several maps so that they
//! can be compared), heatmaps, overlays blended over the image, grids of
//! pictures, and atomic file writes.
//!
//! ```
//! use sightline::render::{heatmap, overlay, Colormap, MapRef, ValueRange};
//! use image::RgbImage;
//!
//! let values = [0.0f32, 1.0, 2.0, 3.0];
//! let map = MapRef::new(&values, 2, 2).unwrap();
//! let range = ValueRange::of(map.values()).unwrap();
//! let heat = heatmap(&map, range, Colormap::Jet);
//! let image = RgbImage::new(2, 2);
//! let blended = overlay(&image, &heat, 0.5).unwrap();
//! assert_eq!(blended.dimensions(), (2, 2));
//! ```

use image::{ImageEncoder, Rgb, RgbImage};
use sightline_tensor::Tensor;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;

/// What went wrong while rendering or writing a picture.
#[derive(Debug, Error)]
pub enum RenderError {
    /// A map's values do not fill its width x height, or the map is empty.
    #[error("map of {len} values cannot be {width} x {height} (width x height, both positive)")]
    MapSize {
        /// Number of values given.
        len: usize,
        /// Width asked for.
        width: usize,
        /// Height asked for.
        height: usize,
    },
    /// A tensor that is not one map (`h x w`, `1 x h x w` or `1 x 1 x h x w`).
    #[error("tensor of shape {0:?} is not a single map (h x w, 1 x h x w or 1 x 1 x h x w)")]
    MapShape(Vec<usize>),
    /// Two pictures that must have the same size do not.
    #[error("{what}: sizes differ, {left:?} vs {right:?} (width, height)")]
    SizeMismatch {
        /// The operation.
        what: &'static str,
        /// Size of the first picture.
        left: (u32, u32),
        /// Size of the second picture.
        right: (u32, u32),
    },
    /// An option outside its domain.
    #[error("invalid value: {0}")]
    Invalid(String),
    /// A picture could not be encoded.
    #[error("cannot encode {path}: {message}")]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// The encoder's message.
        message: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {message}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The system's message.
        message: String,
    },
}

/// Result alias for rendering.
pub type Result<T> = std::result::Result<T, RenderError>;

/// A colormap: maps a value in `[0, 1]` to a colour.
///
/// Each map is sampled like matplotlib's 256-entry lookup tables: `t` is
/// quantised to `i = min(floor(256 t), 255)` and the colour is the map's
/// value at `i / 255`, rounded to 8 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Colormap {
    /// matplotlib's `jet` (dark blue, cyan, yellow, dark red), the classic
    /// saliency look of TorchRay's and Grad-CAM's figures.
    #[default]
    Jet,
    /// matplotlib's perceptually uniform `viridis` (dark purple to yellow),
    /// through the `colorous` crate.
    Viridis,
    /// Black to white.
    Gray,
    /// matplotlib's diverging `coolwarm` (Moreland 2009: blue, light grey,
    /// red), for signed maps (LRP relevance): its range is centred on zero
    /// ([`Colormap::centred`]), so 0 is grey, negative blue, positive red.
    Coolwarm,
}

impl Colormap {
    /// Every colormap.
    pub const ALL: [Colormap; 4] = [
        Colormap::Jet,
        Colormap::Viridis,
        Colormap::Gray,
        Colormap::Coolwarm,
    ];

    /// Whether the colormap is diverging (centred on zero).
    pub fn is_diverging(self) -> bool {
        self == Colormap::Coolwarm
    }

    /// The range a map is stretched from: `range` itself, or, for a
    /// diverging colormap, `[-m, m]` with `m` its largest magnitude, so that
    /// zero takes the middle colour.
    pub fn centred(self, range: ValueRange) -> ValueRange {
        if !self.is_diverging() {
            return range;
        }
        let m = range.min.abs().max(range.max.abs());
        ValueRange { min: -m, max: m }
    }

    /// The colormap's name, as [`FromStr`] parses it.
    pub fn name(self) -> &'static str {
        match self {
            Colormap::Jet => "jet",
            Colormap::Viridis => "viridis",
            Colormap::Gray => "gray",
            Colormap::Coolwarm => "coolwarm",
        }
    }

    /// The colour of `t` (clamped to `[0, 1]`; NaN is 0).
    pub fn rgb(self, t: f32) -> Rgb<u8> {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let index = ((t * 256.0) as usize).min(255);
        let x = index as f64 / 255.0;
        match self {
            Colormap::Jet => Rgb(jet(x)),
            Colormap::Viridis => {
                let c = colorous::VIRIDIS.eval_continuous(x);
                Rgb([c.r, c.g, c.b])
            }
            Colormap::Gray => Rgb([index as u8; 3]),
            Colormap::Coolwarm => Rgb([COOLWARM_RED, COOLWARM_GREEN, COOLWARM_BLUE]
                .map(|knots| (piecewise_linear(knots, x) * 255.0).round() as u8)),
        }
    }
}

/// matplotlib's `jet` segment data, (x, value) knots per channel.
const JET_RED: &[(f64, f64)] = &[
    (0.0, 0.0),
    (0.35, 0.0),
    (0.66, 1.0),
    (0.89, 1.0),
    (1.0, 0.5),
];
const JET_GREEN: &[(f64, f64)] = &[
    (0.0, 0.0),
    (0.125, 0.0),
    (0.375, 1.0),
    (0.64, 1.0),
    (0.91, 0.0),
    (1.0, 0.0),
];
const JET_BLUE: &[(f64, f64)] = &[
    (0.0, 0.5),
    (0.11, 1.0),
    (0.34, 1.0),
    (0.65, 0.0),
    (1.0, 0.0),
];

/// matplotlib's `coolwarm` segment data (Moreland's diverging map, made in
/// Msh space, at 33 control points), (x, value) knots per channel; linear
/// between, as matplotlib interpolates them.
const COOLWARM_RED: &[(f64, f64)] = &[
    (0.0, 0.2298057),
    (0.03125, 0.26623388),
    (0.0625, 0.30386891),
    (0.09375, 0.342804478),
    (0.125, 0.38301334),
    (0.15625, 0.424369608),
    (0.1875, 0.46666708),
    (0.21875, 0.509635204),
    (0.25, 0.552953156),
    (0.28125, 0.596262162),
    (0.3125, 0.639176211),
    (0.34375, 0.681291281),
    (0.375, 0.722193294),
    (0.40625, 0.761464949),
    (0.4375, 0.798691636),
    (0.46875, 0.833466556),
    (0.5, 0.865395197),
    (0.53125, 0.897787179),
    (0.5625, 0.924127593),
    (0.59375, 0.944468518),
    (0.625, 0.958852946),
    (0.65625, 0.96732803),
    (0.6875, 0.969954137),
    (0.71875, 0.966811177),
    (0.75, 0.958003065),
    (0.78125, 0.943660866),
    (0.8125, 0.923944917),
    (0.84375, 0.89904617),
    (0.875, 0.869186849),
    (0.90625, 0.834620542),
    (0.9375, 0.795631745),
    (0.96875, 0.752534934),
    (1.0, 0.705673158),
];
const COOLWARM_GREEN: &[(f64, f64)] = &[
    (0.0, 0.298717966),
    (0.03125, 0.353094838),
    (0.0625, 0.406535296),
    (0.09375, 0.458757618),
    (0.125, 0.50941904),
    (0.15625, 0.558148092),
    (0.1875, 0.604562568),
    (0.21875, 0.648280772),
    (0.25, 0.688929332),
    (0.28125, 0.726149107),
    (0.3125, 0.759599947),
    (0.34375, 0.788964712),
    (0.375, 0.813952739),
    (0.40625, 0.834302879),
    (0.4375, 0.849786142),
    (0.46875, 0.860207984),
    (0.5, 0.86541021),
    (0.53125, 0.848937047),
    (0.5625, 0.827384882),
    (0.59375, 0.800927443),
    (0.625, 0.769767752),
    (0.65625, 0.734132809),
    (0.6875, 0.694266682),
    (0.71875, 0.650421156),
    (0.75, 0.602842431),
    (0.78125, 0.551750968),
    (0.8125, 0.49730856),
    (0.84375, 0.439559467),
    (0.875, 0.378313092),
    (0.90625, 0.312874446),
    (0.9375, 0.24128379),
    (0.96875, 0.157246067),
    (1.0, 0.01555616),
];
const COOLWARM_BLUE: &[(f64, f64)] = &[
    (0.0, 0.753683153),
    (0.03125, 0.801466763),
    (0.0625, 0.84495867),
    (0.09375, 0.883725899),
    (0.125, 0.917387822),
    (0.15625, 0.945619588),
    (0.1875, 0.968154911),
    (0.21875, 0.98478814),
    (0.25, 0.995375608),
    (0.28125, 0.999836203),
    (0.3125, 0.998151185),
    (0.34375, 0.990363227),
    (0.375, 0.976574709),
    (0.40625, 0.956945269),
    (0.4375, 0.931688648),
    (0.46875, 0.901068838),
    (0.5, 0.865395561),
    (0.53125, 0.820880546),
    (0.5625, 0.774508472),
    (0.59375, 0.726736146),
    (0.625, 0.678007945),
    (0.65625, 0.628751763),
    (0.6875, 0.579375448),
    (0.71875, 0.530263762),
    (0.75, 0.481775914),
    (0.78125, 0.434243684),
    (0.8125, 0.387970225),
    (0.84375, 0.343229596),
    (0.875, 0.300267182),
    (0.90625, 0.259301199),
    (0.9375, 0.220525627),
    (0.96875, 0.184115123),
    (1.0, 0.150232812),
];

fn jet(x: f64) -> [u8; 3] {
    [JET_RED, JET_GREEN, JET_BLUE].map(|knots| (piecewise_linear(knots, x) * 255.0).round() as u8)
}

/// Linear interpolation between sorted knots (x, y), clamped at both ends.
fn piecewise_linear(knots: &[(f64, f64)], x: f64) -> f64 {
    let mut prev = knots[0];
    for &(kx, ky) in knots {
        if x <= kx {
            if kx == prev.0 {
                return ky;
            }
            return prev.1 + (ky - prev.1) * (x - prev.0) / (kx - prev.0);
        }
        prev = (kx, ky);
    }
    prev.1
}

impl fmt::Display for Colormap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Colormap {
    type Err = RenderError;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        let s = if s == "grey" { "gray".to_string() } else { s };
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                RenderError::Invalid(format!(
                    "unknown colormap `{s}`; known: jet, viridis, gray, coolwarm"
                ))
            })
    }
}

/// How maps are stretched to the colormap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Normalize {
    /// Each map to its own (min, max): shows the shape of every map, but
    /// hides how strong one is compared with another.
    #[default]
    PerMap,
    /// One (min, max) per method, shared by its maps over the whole run:
    /// a method's maps compare across images and classes.
    Shared,
    /// One (min, max) shared by every map of the run, across methods too
    /// (Captum issue 1103): equal values get equal colours everywhere.
    SharedAll,
}

impl Normalize {
    /// The name, as [`FromStr`] parses it.
    pub fn name(self) -> &'static str {
        match self {
            Normalize::PerMap => "per-map",
            Normalize::Shared => "shared",
            Normalize::SharedAll => "shared-all",
        }
    }
}

impl fmt::Display for Normalize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Normalize {
    type Err = RenderError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "per-map" | "per_map" | "permap" => Ok(Normalize::PerMap),
            "shared" => Ok(Normalize::Shared),
            "shared-all" | "shared_all" => Ok(Normalize::SharedAll),
            other => Err(RenderError::Invalid(format!(
                "unknown normalisation `{other}`; known: per-map, shared, shared-all"
            ))),
        }
    }
}

/// The range of values stretched to `[0, 1]`: `min` takes the colormap's
/// first colour, `max` its last.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValueRange {
    /// The value shown with the first colour.
    pub min: f32,
    /// The value shown with the last colour.
    pub max: f32,
}

impl ValueRange {
    /// The (min, max) of the finite values, or `None` when there is none.
    pub fn of(values: &[f32]) -> Option<Self> {
        Self::shared([values])
    }

    /// One (min, max) over the finite values of several maps, or `None`
    /// when none has a finite value.
    pub fn shared<'a>(maps: impl IntoIterator<Item = &'a [f32]>) -> Option<Self> {
        let mut range: Option<Self> = None;
        for &v in maps.into_iter().flatten() {
            if !v.is_finite() {
                continue;
            }
            range = Some(match range {
                None => Self { min: v, max: v },
                Some(r) => Self {
                    min: r.min.min(v),
                    max: r.max.max(v),
                },
            });
        }
        range
    }

    /// The union of two ranges.
    pub fn union(self, other: Self) -> Self {
        Self {
            min: self.min.min(other.min),
            max: self.max.max(other.max),
        }
    }

    /// `v` scaled to `[0, 1]` (clamped); 0 when the range is a single value
    /// or `v` is not finite.
    pub fn scale(self, v: f32) -> f32 {
        let span = self.max - self.min;
        if !v.is_finite() || span <= 0.0 || !span.is_finite() {
            return 0.0;
        }
        ((v - self.min) / span).clamp(0.0, 1.0)
    }
}

/// A borrowed map: `height` rows of `width` values, row-major.
#[derive(Clone, Copy, Debug)]
pub struct MapRef<'a> {
    values: &'a [f32],
    width: usize,
    height: usize,
}

impl<'a> MapRef<'a> {
    /// A map over `values`, which must hold exactly `width * height > 0` values.
    pub fn new(values: &'a [f32], width: usize, height: usize) -> Result<Self> {
        if width == 0 || height == 0 || values.len() != width * height {
            return Err(RenderError::MapSize {
                len: values.len(),
                width,
                height,
            });
        }
        Ok(Self {
            values,
            width,
            height,
        })
    }

    /// The map held by a tensor of shape `h x w`, `1 x h x w` or `1 x 1 x h x w`
    /// (one item of a saliency answer).
    pub fn from_tensor(t: &'a Tensor<f32>) -> Result<Self> {
        let (h, w) = match *t.shape() {
            [h, w] | [1, h, w] | [1, 1, h, w] => (h, w),
            _ => return Err(RenderError::MapShape(t.shape().to_vec())),
        };
        Self::new(t.data(), w, h)
    }

    /// The values, row-major.
    pub fn values(&self) -> &'a [f32] {
        self.values
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }
}

/// The map coloured with `cmap` after stretching `range` to `[0, 1]`.
pub fn heatmap(map: &MapRef<'_>, range: ValueRange, cmap: Colormap) -> RgbImage {
    let range = cmap.centred(range);
    let mut img = RgbImage::new(map.width as u32, map.height as u32);
    for (px, &v) in img.pixels_mut().zip(map.values) {
        *px = cmap.rgb(range.scale(v));
    }
    img
}

/// `(1 - alpha) * image + alpha * heat`, pixel by pixel, rounded; both
/// pictures must have the same size and `alpha` lie in `[0, 1]`.
pub fn overlay(image: &RgbImage, heat: &RgbImage, alpha: f32) -> Result<RgbImage> {
    check_alpha(alpha)?;
    if image.dimensions() != heat.dimensions() {
        return Err(RenderError::SizeMismatch {
            what: "overlay",
            left: image.dimensions(),
            right: heat.dimensions(),
        });
    }
    let mut out = image.clone();
    for (o, h) in out.pixels_mut().zip(heat.pixels()) {
        for c in 0..3 {
            let v = (1.0 - alpha) * f32::from(o.0[c]) + alpha * f32::from(h.0[c]);
            o.0[c] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(out)
}

/// Checks that an overlay's `alpha` lies in `[0, 1]`.
pub fn check_alpha(alpha: f32) -> Result<()> {
    if (0.0..=1.0).contains(&alpha) {
        Ok(())
    } else {
        Err(RenderError::Invalid(format!(
            "alpha must lie in [0, 1], got {alpha}"
        )))
    }
}

/// Options of [`grid`].
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
/// a `gap` x `gap` (at least 1 x 1) background picture.
pub fn grid(rows: &[Vec<RgbImage>], style: GridStyle) -> RgbImage {
    let cells = rows.iter().flatten();
    let cell_w = cells.clone().map(|c| c.width()).max().unwrap_or(0);
    let cell_h = cells.map(|c| c.height()).max().unwrap_or(0);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let g = style.gap;
    let width = (cols * (cell_w + g) + g).max(1);
    let height = (rows.len() as u32 * (cell_h + g) + g).max(1);
    let mut out = RgbImage::from_pixel(width, height, style.background);
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let x = g + c as u32 * (cell_w + g) + (cell_w - cell.width()) / 2;
            let y = g + r as u32 * (cell_h + g) + (cell_h - cell.height()) / 2;
            image::imageops::replace(&mut out, cell, i64::from(x), i64::from(y));
        }
    }
    out
}

/// The PNG encoding of a picture.
pub fn encode_png(img: &RgbImage) -> std::result::Result<Vec<u8>, image::ImageError> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes).write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(bytes)
}

/// Writes a picture as PNG to `path` atomically (see [`write_atomic`]).
pub fn write_png(img: &RgbImage, path: &Path) -> Result<()> {
    let bytes = encode_png(img).map_err(|e| RenderError::Encode {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Attempts at a fresh temporary name before giving up.
const TEMP_ATTEMPTS: u32 = 16;

/// Writes `bytes` to `path` so that `path` holds either its old content or
/// all of the new one, never a part: the bytes go to a hidden temporary file
/// in the same folder (`.NAME.PID.N.tmp`), are flushed to disk, and the file
/// is renamed over `path`. The temporary file is removed on failure.
///
/// The temporary file is created exclusively (`O_CREAT | O_EXCL`, which
/// never follows a symbolic link): a file or link planted under its name
/// is left alone and another name is tried. The rename replaces `path`
/// itself, so a symbolic link at `path` is replaced, not followed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |e: std::io::Error| RenderError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let name = path
        .file_name()
        .ok_or_else(|| RenderError::Invalid(format!("{} names no file", path.display())))?;
    let mut attempt = 0;
    let (temp, mut file) = loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp_name = format!(".{}.{}.{n}.tmp", name.to_string_lossy(), std::process::id());
        let temp = path.with_file_name(temp_name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
        {
            Ok(file) => break (temp, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < TEMP_ATTEMPTS => {
                attempt += 1;
            }
            Err(e) => return Err(err(e)),
        }
    };
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(err(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colormaps_end_points() {
        // matplotlib: jet(0) = (0, 0, 0.5), jet(1) = (0.5, 0, 0).
        assert_eq!(Colormap::Jet.rgb(0.0), Rgb([0, 0, 128]));
        assert_eq!(Colormap::Jet.rgb(1.0), Rgb([128, 0, 0]));
        // jet(0.5) at LUT index 128 (x = 128/255): green full, red and blue partial.
        let Rgb([r, g, b]) = Colormap::Jet.rgb(0.5);
        assert_eq!(g, 255);
        assert!(r > 100 && r < 140 && b > 110 && b < 150, "{r} {b}");
        // viridis: #440154 at 0, #fde725 at 1.
        assert_eq!(Colormap::Viridis.rgb(0.0), Rgb([0x44, 0x01, 0x54]));
        assert_eq!(Colormap::Viridis.rgb(1.0), Rgb([0xfd, 0xe7, 0x25]));
        assert_eq!(Colormap::Gray.rgb(0.0), Rgb([0, 0, 0]));
        assert_eq!(Colormap::Gray.rgb(1.0), Rgb([255, 255, 255]));
        assert_eq!(Colormap::Gray.rgb(0.5), Rgb([128, 128, 128]));
        // Clamped and NaN-safe.
        assert_eq!(Colormap::Gray.rgb(-3.0), Colormap::Gray.rgb(0.0));
        assert_eq!(Colormap::Gray.rgb(7.0), Colormap::Gray.rgb(1.0));
        assert_eq!(Colormap::Jet.rgb(f32::NAN), Colormap::Jet.rgb(0.0));
    }

    #[test]
    fn colormaps_match_matplotlib_luts() {
        // matplotlib's `colormaps[name](i)[:3] * 255`, rounded, at LUT indices 64, 128, 200.
        let expected = [
            (
                Colormap::Jet,
                [[0, 128, 255], [125, 255, 122], [255, 119, 0]],
            ),
            (
                Colormap::Viridis,
                [[59, 82, 139], [33, 145, 140], [112, 207, 87]],
            ),
            (Colormap::Gray, [[64; 3], [128; 3], [200; 3]]),
            (
                Colormap::Coolwarm,
                [[141, 176, 254], [221, 220, 220], [240, 139, 110]],
            ),
        ];
        for (cmap, colours) in expected {
            for (i, want) in [64, 128, 200].into_iter().zip(colours) {
                let Rgb(got) = cmap.rgb((i as f32 + 0.5) / 256.0);
                let close = got
                    .iter()
                    .zip(want)
                    .all(|(&g, w)| (i32::from(g) - w).abs() <= 1);
                assert!(close, "{cmap} at {i}: {got:?} vs {want:?}");
            }
        }
    }

    /// A diverging colormap stretches `[-m, m]`: zero is its middle colour
    /// whatever the map's own range; the others keep the range.
    #[test]
    fn diverging_maps_centre_on_zero() {
        let r = ValueRange {
            min: -1.0,
            max: 3.0,
        };
        assert_eq!(
            Colormap::Coolwarm.centred(r),
            ValueRange {
                min: -3.0,
                max: 3.0
            }
        );
        assert_eq!(Colormap::Jet.centred(r), r);
        let values = [-1.0, 0.0, 3.0];
        let map = MapRef::new(&values, 3, 1).unwrap();
        let img = heatmap(&map, r, Colormap::Coolwarm);
        assert_eq!(*img.get_pixel(1, 0), Colormap::Coolwarm.rgb(0.5));
        assert_eq!(*img.get_pixel(2, 0), Colormap::Coolwarm.rgb(1.0));
    }

    #[test]
    fn names_parse() {
        for c in Colormap::ALL {
            assert_eq!(c.name().parse::<Colormap>().unwrap(), c);
        }
        assert_eq!("GREY".parse::<Colormap>().unwrap(), Colormap::Gray);
        assert!("hot"
            .parse::<Colormap>()
            .unwrap_err()
            .to_string()
            .contains("hot"));
        assert_eq!("shared".parse::<Normalize>().unwrap(), Normalize::Shared);
        assert_eq!("per-map".parse::<Normalize>().unwrap(), Normalize::PerMap);
        assert!("global".parse::<Normalize>().is_err());
    }

    #[test]
    fn ranges_skip_non_finite_and_share() {
        let a = [1.0, f32::NAN, 3.0];
        let b = [-2.0, f32::INFINITY, 0.5];
        assert_eq!(ValueRange::of(&a), Some(ValueRange { min: 1.0, max: 3.0 }));
        let shared = ValueRange::shared([&a[..], &b[..]]).unwrap();
        assert_eq!(
            shared,
            ValueRange {
                min: -2.0,
                max: 3.0
            }
        );
        assert_eq!(ValueRange::of(&[f32::NAN]), None);
        assert_eq!(shared.scale(-2.0), 0.0);
        assert_eq!(shared.scale(3.0), 1.0);
        assert_eq!(shared.scale(0.5), 0.5);
        assert_eq!(shared.scale(9.0), 1.0);
        // A constant map is drawn with the first colour, not divided by zero.
        assert_eq!(ValueRange { min: 2.0, max: 2.0 }.scale(2.0), 0.0);
    }

    #[test]
    fn shared_range_makes_maps_comparable() {
        let weak = [0.0, 1.0];
        let strong = [0.0, 4.0];
        let per_map = heatmap(
            &MapRef::new(&weak, 2, 1).unwrap(),
            ValueRange::of(&weak).unwrap(),
            Colormap::Gray,
        );
        assert_eq!(per_map.get_pixel(1, 0), &Rgb([255; 3]));
        let range = ValueRange::shared([&weak[..], &strong[..]]).unwrap();
        let shared = heatmap(&MapRef::new(&weak, 2, 1).unwrap(), range, Colormap::Gray);
        // 1 of 4: LUT index floor(0.25 * 256) = 64.
        assert_eq!(shared.get_pixel(1, 0), &Rgb([64; 3]));
    }

    #[test]
    fn map_shapes() {
        assert!(MapRef::new(&[1.0; 6], 3, 2).is_ok());
        assert!(matches!(
            MapRef::new(&[1.0; 5], 3, 2),
            Err(RenderError::MapSize { .. })
        ));
        assert!(MapRef::new(&[], 0, 0).is_err());
        let t = Tensor::from_vec([1, 1, 2, 3], vec![0.0f32; 6]).unwrap();
        let m = MapRef::from_tensor(&t).unwrap();
        assert_eq!((m.width(), m.height()), (3, 2));
        let t = Tensor::from_vec([2, 1, 1, 3], vec![0.0f32; 6]).unwrap();
        assert!(matches!(
            MapRef::from_tensor(&t),
            Err(RenderError::MapShape(_))
        ));
    }

    #[test]
    fn heatmap_layout_is_row_major() {
        let values = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let map = MapRef::new(&values, 3, 2).unwrap();
        let img = heatmap(&map, ValueRange::of(&values).unwrap(), Colormap::Gray);
        assert_eq!(img.dimensions(), (3, 2));
        assert_eq!(img.get_pixel(0, 0), &Rgb([0; 3]));
        assert_eq!(img.get_pixel(2, 1), &Rgb([255; 3]));
        // value 2 of 5 -> t = 0.4 -> index 102.
        assert_eq!(img.get_pixel(2, 0), &Rgb([102; 3]));
    }

    #[test]
    fn overlay_blends() {
        let image = RgbImage::from_pixel(2, 1, Rgb([100, 0, 200]));
        let heat = RgbImage::from_pixel(2, 1, Rgb([200, 255, 0]));
        let o = overlay(&image, &heat, 0.25).unwrap();
        assert_eq!(o.get_pixel(0, 0), &Rgb([125, 64, 150]));
        assert_eq!(overlay(&image, &heat, 0.0).unwrap(), image);
        assert_eq!(overlay(&image, &heat, 1.0).unwrap(), heat);
        assert!(overlay(&image, &heat, 1.5).is_err());
        let small = RgbImage::new(1, 1);
        assert!(matches!(
            overlay(&image, &small, 0.5),
            Err(RenderError::SizeMismatch { .. })
        ));
    }

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

    #[test]
    fn atomic_writes_leave_only_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        let img = RgbImage::from_pixel(3, 2, Rgb([1, 2, 3]));
        write_png(&img, &path).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        assert_eq!(back, img);
        write_atomic(&path, b"replaced").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"replaced");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.png")]);
        // A missing folder fails with the file's name and leaves nothing.
        let bad = dir.path().join("missing").join("b.png");
        let e = write_png(&img, &bad).unwrap_err().to_string();
        assert!(e.contains("b.png"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn planted_links_at_temporary_names_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, b"keep me").unwrap();
        // Plant a link at the next temporary names this process will use.
        let next = TEMP_COUNTER.load(Ordering::Relaxed);
        for n in next..next + 4 {
            let name = format!(".out.json.{}.{n}.tmp", std::process::id());
            std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
        }
        let out = dir.path().join("out.json");
        write_atomic(&out, b"new").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        // A link at the destination itself is replaced, not written through.
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_atomic(&link, b"other").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert!(!std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
