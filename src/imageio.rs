//! Reading images and torchvision's ImageNet preprocessing.
//!
//! [`Preprocess::default`] is torchvision's evaluation transform for the
//! ImageNet classifiers:
//!
//! ```text
//! Resize(256)            the short side to 256, the long side to int(256 * long / short)
//! CenterCrop(224)        offsets int(round((size - 224) / 2)), zero padding if smaller
//! ToTensor()             channels first, values / 255
//! Normalize(mean, std)   (x - mean[c]) / std[c]
//! ```
//!
//! The resize uses the `image` crate's triangle (bilinear) filter, which, like
//! PIL's `BILINEAR` resize, widens its support when shrinking (it is
//! antialiased). PIL computes in fixed point and rounds to 8 bits between the
//! horizontal and the vertical pass, so a resized pixel can differ from
//! torchvision's by one level out of 255 (measured against Pillow's
//! `resize(..., BILINEAR)`: at most 1, on about 16% of the values of a noise
//! image and under 0.1% of a smooth one); crops, the conversion to `[0, 1]`
//! and the normalisation are exact.

use crate::budget::{product, BudgetError};
use crate::files::{read_regular, FileError, MAX_IMAGE_FILE_BYTES};
use image::{imageops, ImageFormat, ImageReader, Rgb, RgbImage};
use sightline_tensor::Tensor;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// torchvision's ImageNet channel means (R, G, B).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// torchvision's ImageNet channel standard deviations (R, G, B).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Largest magnitude of a normalised pixel value that [`Preprocess::validate`]
/// accepts (ImageNet's normalisation gives at most 2.7): values near
/// float32's largest (3.4e38) overflow in the first layers.
pub const MAX_NORMALISED: f32 = 1e12;
/// File extensions (lower case) that a folder is expanded to.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// What went wrong reading an image or preparing it, naming the file.
#[derive(Debug, Error)]
pub enum ImageError {
    /// The path does not exist.
    #[error("{}: no such file or folder", path.display())]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// The file or folder could not be read.
    #[error("cannot read {}: {message}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The system's message.
        message: String,
    },
    /// The file is not an image this build can decode (JPEG or PNG).
    #[error("cannot decode {} as an image: {message}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// A folder holds no `.jpg`, `.jpeg` or `.png` file.
    #[error("folder {} holds no .jpg, .jpeg or .png file", path.display())]
    EmptyFolder {
        /// The folder.
        path: PathBuf,
    },
    /// A preprocessing option is invalid.
    #[error("invalid preprocessing: {0}")]
    Invalid(String),
    /// The path is not a regular file, or too large a one.
    #[error(transparent)]
    File(#[from] FileError),
    /// The image would need more memory than the budget.
    #[error(transparent)]
    Budget(#[from] BudgetError),
}

/// Result alias for image reading.
pub type Result<T> = std::result::Result<T, ImageError>;

/// The preprocessing of an image into a model input.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// The short side is resized to this many pixels (keeping the aspect
    /// ratio); `None` keeps the image's size.
    pub resize: Option<u32>,
    /// A centred square crop of this side; `None` keeps the whole (resized) image.
    pub crop: Option<u32>,
    /// Channel means subtracted after scaling to `[0, 1]`.
    pub mean: [f32; 3],
    /// Channel standard deviations divided by after the mean.
    pub std: [f32; 3],
}

impl Default for Preprocess {
    /// torchvision's: `Resize(256)`, `CenterCrop(224)`, ImageNet mean and std.
    fn default() -> Self {
        Self {
            resize: Some(256),
            crop: Some(224),
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }
}

/// An image ready for a model: the picture the model sees and its tensor.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The file it was read from.
    pub path: PathBuf,
    /// Width and height of the file's image.
    pub original_size: (u32, u32),
    /// The resized and cropped picture, before normalisation: what saliency
    /// maps at the input's size line up with.
    pub image: RgbImage,
    /// The model input, 1 x 3 x H x W.
    pub tensor: Tensor<f32>,
}

impl Preprocess {
    /// Checks that the sizes are positive and the means and standard deviations
    /// finite, with positive standard deviations.
    pub fn validate(&self) -> Result<()> {
        if self.resize == Some(0) {
            return Err(ImageError::Invalid(
                "the resize size must be positive".into(),
            ));
        }
        if self.crop == Some(0) {
            return Err(ImageError::Invalid("the crop size must be positive".into()));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(ImageError::Invalid(format!(
                "mean {:?} is not finite",
                self.mean
            )));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(ImageError::Invalid(format!(
                "std {:?} must be finite and positive",
                self.std
            )));
        }
        // The extreme pixel values 0 and 1 bound every normalised value: a
        // tiny std (2.9e-39) makes them so large that the first layers
        // overflow float32.
        for c in 0..3 {
            for v in [0.0f32, 1.0] {
                let x = (v - self.mean[c]) / self.std[c];
                if !(x.is_finite() && x.abs() <= MAX_NORMALISED) {
                    return Err(ImageError::Invalid(format!(
                        "mean {} and std {} of channel {c} normalise the pixel value {v} to {x}, beyond +-{MAX_NORMALISED:e} (the model would overflow float32)",
                        self.mean[c], self.std[c]
                    )));
                }
            }
        }
        Ok(())
    }

    /// Width and height of the model input for a `width x height` image:
    /// after the resize, and the crop when there is one.
    pub fn input_size(&self, width: u32, height: u32) -> (u32, u32) {
        let resized = match self.resize {
            Some(s) => short_side_size(width, height, s),
            None => (width, height),
        };
        match self.crop {
            Some(s) => (s, s),
            None => resized,
        }
    }

    /// An upper bound of the bytes that reading and preparing a
    /// `width x height` image takes at once: the decoded picture (up to 8
    /// bytes per pixel, 16-bit RGBA) and its RGB copy, the resize's
    /// intermediate (`width x new height`, 16 bytes per pixel) and result,
    /// the padded canvas and crop, and the f32 input tensor.
    pub fn memory_bytes(&self, width: u32, height: u32) -> u64 {
        let (w, h) = (u64::from(width), u64::from(height));
        let (rw, rh) = match self.resize {
            Some(s) => short_side_size(width, height, s),
            None => (width, height),
        };
        let (rw, rh) = (u64::from(rw), u64::from(rh));
        let (iw, ih) = self.input_size(width, height);
        let (iw, ih) = (u64::from(iw), u64::from(ih));
        let crop = self.crop.map_or(0, u64::from);
        [
            product(11, &[w, h]),
            product(16, &[w, rh]),
            product(3, &[rw, rh]),
            product(3, &[rw.max(crop), rh.max(crop)]),
            product(3, &[iw, ih]),
            product(12, &[iw, ih]),
        ]
        .iter()
        .fold(0u64, |a, &b| a.saturating_add(b))
    }

    /// Reads `path` and prepares it.
    pub fn load(&self, path: &Path) -> Result<Prepared> {
        self.prepare(&EncodedImage::read(path)?)
    }

    /// Decodes an image read with [`EncodedImage::read`] and prepares it
    /// (check [`Preprocess::memory_bytes`] of its size first).
    pub fn prepare(&self, encoded: &EncodedImage) -> Result<Prepared> {
        self.validate()?;
        let path = encoded.path.as_path();
        let original = encoded.decode()?;
        let image = self.transform(&original);
        let tensor = self.to_tensor(&image);
        Ok(Prepared {
            path: path.to_path_buf(),
            original_size: original.dimensions(),
            image,
            tensor,
        })
    }

    /// The resize then the centre crop (the geometric part of the transform).
    pub fn transform(&self, image: &RgbImage) -> RgbImage {
        let resized = match self.resize {
            Some(s) => resize_short_side(image, s),
            None => image.clone(),
        };
        match self.crop {
            Some(s) => center_crop(&resized, s),
            None => resized,
        }
    }

    /// `ToTensor` and `Normalize`: 1 x 3 x H x W, `(p / 255 - mean[c]) / std[c]` in f32.
    pub fn to_tensor(&self, image: &RgbImage) -> Tensor<f32> {
        let (w, h) = image.dimensions();
        let plane = (w * h) as usize;
        let mut data = vec![0.0f32; 3 * plane];
        for (i, px) in image.pixels().enumerate() {
            for c in 0..3 {
                let v = f32::from(px.0[c]) / 255.0;
                data[c * plane + i] = (v - self.mean[c]) / self.std[c];
            }
        }
        // The shape matches the data by construction.
        Tensor::from_vec([1, 3, h as usize, w as usize], data)
            .unwrap_or_else(|_| Tensor::zeros([1, 3, 0, 0]))
    }
}

/// An image file read but not decoded: its bytes, format and the size its
/// header declares, so that the memory of decoding and preparing it can be
/// checked before any of it is allocated.
#[derive(Clone, Debug)]
pub struct EncodedImage {
    /// The file.
    pub path: PathBuf,
    /// Width declared by the header.
    pub width: u32,
    /// Height declared by the header.
    pub height: u32,
    format: ImageFormat,
    bytes: Vec<u8>,
}

impl EncodedImage {
    /// Reads `path` (a regular file of at most [`MAX_IMAGE_FILE_BYTES`]) and
    /// its header: the format is read from the content, not the name.
    pub fn read(path: &Path) -> Result<Self> {
        if std::fs::symlink_metadata(path).is_err() {
            return Err(ImageError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let bytes = read_regular(path, "image", MAX_IMAGE_FILE_BYTES)?;
        let decode_err = |message: String| ImageError::Decode {
            path: path.to_path_buf(),
            message,
        };
        let reader = ImageReader::new(Cursor::new(&bytes[..]))
            .with_guessed_format()
            .map_err(|e| decode_err(e.to_string()))?;
        let format = reader
            .format()
            .ok_or_else(|| decode_err("The image format could not be determined".into()))?;
        let (width, height) = reader
            .into_dimensions()
            .map_err(|e| decode_err(e.to_string()))?;
        if width == 0 || height == 0 {
            return Err(decode_err("the image is empty".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            width,
            height,
            format,
            bytes,
        })
    }

    /// Decodes to 8-bit RGB (see [`read_rgb`]). A JPEG that ends before its
    /// end-of-image marker is refused as truncated, as Pillow refuses it.
    pub fn decode(&self) -> Result<RgbImage> {
        let decode_err = |message: String| ImageError::Decode {
            path: self.path.clone(),
            message,
        };
        if self.format == ImageFormat::Jpeg && !jpeg_is_complete(&self.bytes) {
            return Err(decode_err(
                "the JPEG file is truncated (it ends before its end-of-image marker)".into(),
            ));
        }
        let mut reader = ImageReader::new(Cursor::new(&self.bytes[..]));
        reader.set_format(self.format);
        let image = reader.decode().map_err(|e| decode_err(e.to_string()))?;
        if image.width() == 0 || image.height() == 0 {
            return Err(decode_err("the image is empty".into()));
        }
        Ok(image.to_rgb8())
    }
}

/// Whether a JPEG stream reaches its end-of-image marker (`FF D9`): the
/// segments are walked by their lengths and the entropy-coded data of each
/// scan to its next marker, so an `FF D9` inside an embedded thumbnail does
/// not count. Bytes that do not start with `FF D8` are not judged (`true`).
pub fn jpeg_is_complete(b: &[u8]) -> bool {
    if b.len() < 2 || b[0] != 0xFF || b[1] != 0xD8 {
        return true;
    }
    let mut i = 2;
    loop {
        // Skip anything up to a marker, then the fill bytes.
        while i < b.len() && b[i] != 0xFF {
            i += 1;
        }
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = b.get(i) else {
            return false;
        };
        i += 1;
        match marker {
            0xD9 => return true,
            0x00 | 0x01 | 0xD0..=0xD8 => continue,
            _ => {
                let Some(len) = b
                    .get(i..i + 2)
                    .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
                else {
                    return false;
                };
                if len < 2 || i + len > b.len() {
                    return false;
                }
                i += len;
                if marker == 0xDA {
                    // Entropy-coded data: FF is followed by 00 (a stuffed
                    // byte), a restart marker D0-D7 or a fill FF; anything
                    // else is the next marker.
                    loop {
                        match (b.get(i), b.get(i + 1)) {
                            (Some(0xFF), Some(&n))
                                if n != 0x00 && n != 0xFF && !(0xD0..=0xD7).contains(&n) =>
                            {
                                break
                            }
                            (Some(_), Some(_)) => i += 1,
                            _ => return false,
                        }
                    }
                }
            }
        }
    }
}

/// Decodes a JPEG or PNG file (the format is read from its content, not its
/// name) to 8-bit RGB; grey and alpha images are converted as PIL's
/// `convert("RGB")` does (the alpha channel is dropped). Only regular files
/// are read; a truncated JPEG is an error.
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    EncodedImage::read(path)?.decode()
}

/// The size torchvision's `Resize(size)` gives a `width x height` image: the
/// short side becomes `size`, the long side `int(size * long / short)`.
pub fn short_side_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    let (short, long) = (width.min(height), width.max(height));
    let new_long = (u64::from(size) * u64::from(long) / u64::from(short.max(1))) as u32;
    if width <= height {
        (size, new_long.max(1))
    } else {
        (new_long.max(1), size)
    }
}

/// Resizes so that the short side is `size` (see [`short_side_size`]), with
/// the antialiased bilinear filter; an image already that size is copied.
pub fn resize_short_side(image: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = short_side_size(image.width(), image.height(), size);
    if (w, h) == image.dimensions() {
        return image.clone();
    }
    imageops::resize(image, w, h, imageops::FilterType::Triangle)
}

/// torchvision's `CenterCrop(size)`: a `size x size` crop at offsets
/// `int(round((W - size) / 2))`, `int(round((H - size) / 2))` (Python's
/// round, half to even); an image smaller than `size` is first padded with
/// black, `(size - W) // 2` on the left and the rest on the right (same for
/// the height).
pub fn center_crop(image: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let (pad_left, pad_top) = (size.saturating_sub(w) / 2, size.saturating_sub(h) / 2);
    let (pw, ph) = (w.max(size), h.max(size));
    let padded;
    let source = if (pw, ph) != (w, h) {
        let mut canvas = RgbImage::from_pixel(pw, ph, Rgb([0, 0, 0]));
        imageops::replace(&mut canvas, image, i64::from(pad_left), i64::from(pad_top));
        padded = canvas;
        &padded
    } else {
        image
    };
    let left = round_half_even_half(pw - size);
    let top = round_half_even_half(ph - size);
    imageops::crop_imm(source, left, top, size, size).to_image()
}

/// `int(round(n / 2))` with Python's round (half to even).
fn round_half_even_half(n: u32) -> u32 {
    let half = n / 2;
    if n % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// Expands the arguments to image files: a folder becomes its `.jpg`,
/// `.jpeg` and `.png` files (any case, not recursive) sorted by name; a file
/// is kept whatever its name. A path that does not exist, an unreadable
/// folder or a folder without images is an error.
pub fn expand_inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| ImageError::Read {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && has_image_extension(p))
                .collect();
            if files.is_empty() {
                return Err(ImageError::EmptyFolder { path: path.clone() });
            }
            files.sort();
            out.extend(files);
        } else if std::fs::symlink_metadata(path).is_ok() {
            // Whatever it is (a FIFO, a device, a dangling or looping
            // link), reading it tells, for this image alone.
            out.push(path.clone());
        } else {
            return Err(ImageError::NotFound { path: path.clone() });
        }
    }
    Ok(out)
}

/// Whether the file name ends in `.jpg`, `.jpeg` or `.png` (any case).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// Parses `r,g,b` (three comma-separated numbers), as `--mean` and `--std` take.
pub fn parse_triple(s: &str) -> std::result::Result<[f32; 3], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.len() != 3 {
        return Err(format!(
            "expected three comma-separated numbers (r,g,b), got `{s}`"
        ));
    }
    let mut out = [0.0f32; 3];
    for (o, p) in out.iter_mut().zip(&parts) {
        *o = p
            .parse()
            .map_err(|_| format!("`{p}` is not a number (in `{s}`)"))?;
        if !o.is_finite() {
            return Err(format!("`{p}` is not finite (in `{s}`)"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, 77])
        })
    }

    #[test]
    fn short_side_sizes_match_torchvision() {
        // torchvision: 500 x 375 (W x H) -> Resize(256) -> 341 x 256.
        assert_eq!(short_side_size(500, 375, 256), (341, 256));
        assert_eq!(short_side_size(375, 500, 256), (256, 341));
        assert_eq!(short_side_size(300, 300, 256), (256, 256));
        // Truncation, not rounding: 256 * 333 / 200 = 426.24.
        assert_eq!(short_side_size(333, 200, 256), (426, 256));
    }

    #[test]
    fn center_crop_offsets_round_half_even() {
        // 7 - 4 = 3 -> round(1.5) = 2; 9 - 4 = 5 -> round(2.5) = 2.
        assert_eq!(round_half_even_half(3), 2);
        assert_eq!(round_half_even_half(5), 2);
        assert_eq!(round_half_even_half(4), 2);
        let img = gradient(7, 9);
        let c = center_crop(&img, 4);
        assert_eq!(c.dimensions(), (4, 4));
        assert_eq!(c.get_pixel(0, 0), img.get_pixel(2, 2));
        assert_eq!(c.get_pixel(3, 3), img.get_pixel(5, 5));
    }

    #[test]
    fn center_crop_pads_small_images() {
        let img = RgbImage::from_pixel(2, 3, Rgb([9, 9, 9]));
        let c = center_crop(&img, 5);
        assert_eq!(c.dimensions(), (5, 5));
        // Width: pad (5 - 2) // 2 = 1 left; height: pad 1 on top.
        assert_eq!(c.get_pixel(0, 0), &Rgb([0, 0, 0]));
        assert_eq!(c.get_pixel(1, 1), &Rgb([9, 9, 9]));
        assert_eq!(c.get_pixel(2, 3), &Rgb([9, 9, 9]));
        assert_eq!(c.get_pixel(3, 1), &Rgb([0, 0, 0]));
        assert_eq!(c.get_pixel(1, 4), &Rgb([0, 0, 0]));
    }

    #[test]
    fn tensor_is_chw_normalised() {
        let img = RgbImage::from_fn(2, 1, |x, _| {
            if x == 0 {
                Rgb([255, 0, 51])
            } else {
                Rgb([0, 255, 102])
            }
        });
        let p = Preprocess::default();
        let t = p.to_tensor(&img);
        assert_eq!(t.shape(), &[1, 3, 1, 2]);
        let d = t.data();
        assert_eq!(d[0], (1.0 - 0.485) / 0.229);
        assert_eq!(d[1], (0.0 - 0.485) / 0.229);
        assert_eq!(d[2], (0.0 - 0.456) / 0.224);
        assert_eq!(d[3], (1.0 - 0.456) / 0.224);
        assert_eq!(d[4], (51.0 / 255.0 - 0.406) / 0.225);
    }

    #[test]
    fn transform_resizes_then_crops() {
        let p = Preprocess {
            resize: Some(16),
            crop: Some(12),
            ..Preprocess::default()
        };
        let out = p.transform(&gradient(40, 20));
        assert_eq!(out.dimensions(), (12, 12));
        let no_crop = Preprocess {
            crop: None,
            ..p.clone()
        };
        assert_eq!(no_crop.transform(&gradient(40, 20)).dimensions(), (32, 16));
        // A constant image stays constant through the filter.
        let flat = RgbImage::from_pixel(50, 30, Rgb([10, 20, 30]));
        assert!(p
            .transform(&flat)
            .pixels()
            .all(|px| *px == Rgb([10, 20, 30])));
    }

    #[test]
    fn invalid_options_are_rejected() {
        let bad = Preprocess {
            std: [0.2, 0.0, 0.2],
            ..Preprocess::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("std"));
        let bad = Preprocess {
            crop: Some(0),
            ..Preprocess::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn triples_parse() {
        assert_eq!(parse_triple("0.5, 0.25,1").unwrap(), [0.5, 0.25, 1.0]);
        assert!(parse_triple("1,2").is_err());
        assert!(parse_triple("1,x,2").unwrap_err().contains("`x`"));
        assert!(parse_triple("1,inf,2").is_err());
    }

    #[test]
    fn files_are_read_and_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("b.png");
        gradient(6, 4).save(&png).unwrap();
        // A JPEG under a misleading name is still read (format from content).
        let jpg = dir.path().join("a.JPG");
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95)
            .encode_image(&gradient(6, 4))
            .unwrap();
        std::fs::write(&jpg, bytes).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let broken = dir.path().join("c.png");
        std::fs::write(&broken, b"not a png").unwrap();

        let files = expand_inputs(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(files, vec![jpg.clone(), png.clone(), broken.clone()]);
        assert_eq!(read_rgb(&png).unwrap(), gradient(6, 4));
        assert_eq!(read_rgb(&jpg).unwrap().dimensions(), (6, 4));
        let e = read_rgb(&broken).unwrap_err();
        assert!(matches!(e, ImageError::Decode { .. }));
        assert!(e.to_string().contains("c.png"), "{e}");
        let missing = dir.path().join("zz.png");
        assert!(matches!(
            expand_inputs(std::slice::from_ref(&missing)),
            Err(ImageError::NotFound { .. })
        ));
        assert!(read_rgb(&missing)
            .unwrap_err()
            .to_string()
            .contains("zz.png"));
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(matches!(
            expand_inputs(&[empty]),
            Err(ImageError::EmptyFolder { .. })
        ));

        let prepared = Preprocess::default().load(&png).unwrap();
        assert_eq!(prepared.original_size, (6, 4));
        assert_eq!(prepared.tensor.shape(), &[1, 3, 224, 224]);
    }
}
