//! Turning saliency maps into pictures people look at: colormaps, value
//! normalisation (per map, or one range shared by several maps so that they
//! can be compared), heatmaps, overlays blended over the image, grids of
//! pictures (bare, or labelled with a header, row captions and colour bars,
//! in the bundled DejaVu Sans), and atomic file writes.
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

mod colorbar;
mod colormap;
mod grid;
mod labelled;
mod map;
mod scale;
mod text;
mod write;

pub use colorbar::{format_tick, BarScale, ColorBar};
pub use colormap::Colormap;
pub use grid::{grid, try_grid, GridStyle, MAX_PICTURE_PIXELS, MAX_PICTURE_SIDE};
pub use labelled::{labelled_grid, ColorBars, LabelStyle, LabelledRow};
pub use map::{check_alpha, heatmap, overlay, MapRef};
pub use scale::{Normalize, ValueRange};
pub use text::{Align, Area, FontSize, TextStyle, Typeface};
pub use write::{encode_npy, encode_png, write_atomic, write_npy_map, write_png};

use std::path::PathBuf;
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
    /// A picture would be larger than the renderer draws (checked before
    /// anything is allocated): see [`MAX_PICTURE_SIDE`] and
    /// [`MAX_PICTURE_PIXELS`].
    #[error(
        "{what} would be {width} x {height} pixels; at most {MAX_PICTURE_SIDE} a side and {MAX_PICTURE_PIXELS} in all"
    )]
    TooLarge {
        /// The picture.
        what: &'static str,
        /// Width it would have (`u64::MAX` when it does not even fit a `u64`).
        width: u64,
        /// Height it would have (`u64::MAX` when it does not even fit a `u64`).
        height: u64,
    },
    /// The bundled font could not be read.
    #[error("cannot read the bundled font: {0}")]
    Font(String),
}

/// Result alias for rendering.
pub type Result<T> = std::result::Result<T, RenderError>;
