//! [`EncodedImage`]: an input file read and its header checked, before
//! anything the size of its picture is allocated.

use super::npy::npy_input_header;
use super::{jpeg, png, ImageError, Result};
use crate::files::{read_regular, MAX_IMAGE_FILE_BYTES};
use image::RgbImage;
use std::path::{Path, PathBuf};

/// What an input file holds, read from its first bytes (not its name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// A JPEG image (`FF D8 FF`).
    Jpeg,
    /// A PNG image.
    Png,
    /// A preprocessed tensor saved by NumPy (`\x93NUMPY`).
    Npy,
}

impl InputFormat {
    /// The format of a file that starts with `bytes`, if it is one of these.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.starts_with(b"\x93NUMPY") {
            Some(Self::Npy)
        } else {
            None
        }
    }
}

/// An input file read but not decoded: its bytes, format and the size its
/// header declares, so that the memory of decoding and preparing it can be
/// checked before any of it is allocated.
#[derive(Clone, Debug)]
pub struct EncodedImage {
    /// The file.
    pub path: PathBuf,
    /// Width declared by the header (`W` of a `.npy` tensor).
    pub width: u32,
    /// Height declared by the header (`H` of a `.npy` tensor).
    pub height: u32,
    format: InputFormat,
    bytes: Vec<u8>,
}

impl EncodedImage {
    /// Reads `path` (a regular file of at most [`MAX_IMAGE_FILE_BYTES`]) and
    /// its header: JPEG, PNG or `.npy`, told by the content, not the name.
    /// A JPEG's header is read by the decoder that will decode it; a
    /// `.npy` file's header is checked in full (dtype, shape, data length).
    pub fn read(path: &Path) -> Result<Self> {
        if std::fs::symlink_metadata(path).is_err() {
            return Err(ImageError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let bytes = read_regular(path, "image", MAX_IMAGE_FILE_BYTES)?;
        Self::from_bytes(path, bytes)
    }

    /// [`EncodedImage::read`] of bytes already read; `path` names them in
    /// errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let decode_err = |message: String| ImageError::Decode {
            path: path.to_path_buf(),
            message,
        };
        let format = InputFormat::sniff(&bytes).ok_or_else(|| {
            decode_err("not a JPEG, PNG or .npy file (judged by its first bytes)".into())
        })?;
        let (width, height) = match format {
            InputFormat::Jpeg => jpeg::jpeg_size(&bytes).map_err(decode_err)?,
            InputFormat::Png => png::png_size(&bytes).map_err(decode_err)?,
            InputFormat::Npy => {
                let header = npy_input_header(&bytes).map_err(|source| ImageError::Npy {
                    path: path.to_path_buf(),
                    source,
                })?;
                (header.width, header.height)
            }
        };
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

    /// What the file holds.
    pub fn format(&self) -> InputFormat {
        self.format
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Decodes an image to 8-bit RGB as `PIL.Image.open(f).convert("RGB")`
    /// does (see [`jpeg::decode_jpeg`] and [`png::decode_png`]). A JPEG
    /// that ends before its end-of-image marker is refused as truncated, as
    /// Pillow refuses it. A `.npy` input is a tensor, not a picture: it is
    /// an error here (see [`super::Preprocess::prepare`]).
    pub fn decode(&self) -> Result<RgbImage> {
        let decode_err = |message: String| ImageError::Decode {
            path: self.path.clone(),
            message,
        };
        let image = match self.format {
            InputFormat::Jpeg => jpeg::decode_jpeg(&self.bytes).map_err(decode_err)?,
            InputFormat::Png => png::decode_png(&self.bytes).map_err(decode_err)?,
            InputFormat::Npy => {
                return Err(decode_err(
                    "a .npy input is a preprocessed tensor, not a picture (prepare it instead)"
                        .into(),
                ))
            }
        };
        if image.dimensions() != (self.width, self.height) {
            return Err(decode_err(format!(
                "decoded {} x {} where the header declares {} x {}",
                image.width(),
                image.height(),
                self.width,
                self.height
            )));
        }
        Ok(image)
    }
}

/// Decodes a JPEG or PNG file (the format is read from its content, not its
/// name) to 8-bit RGB as `PIL.Image.open(f).convert("RGB")` does. Only
/// regular files are read; a truncated JPEG is an error.
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    EncodedImage::read(path)?.decode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, 77])
        })
    }

    #[test]
    fn formats_are_sniffed_from_content() {
        assert_eq!(
            InputFormat::sniff(b"\xff\xd8\xff\xe0"),
            Some(InputFormat::Jpeg)
        );
        assert_eq!(
            InputFormat::sniff(b"\x89PNG\r\n\x1a\n...."),
            Some(InputFormat::Png)
        );
        assert_eq!(
            InputFormat::sniff(b"\x93NUMPY\x01\x00"),
            Some(InputFormat::Npy)
        );
        assert_eq!(InputFormat::sniff(b"GIF89a"), None);
        assert_eq!(InputFormat::sniff(b""), None);
    }

    #[test]
    fn files_are_read_and_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("b.png");
        gradient(6, 4).save(&png).unwrap();
        // A JPEG under a misleading name is still read (format from content).
        let jpg = dir.path().join("a.PNG");
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95)
            .encode_image(&gradient(6, 4))
            .unwrap();
        std::fs::write(&jpg, &bytes).unwrap();
        let broken = dir.path().join("c.png");
        std::fs::write(&broken, b"not a png").unwrap();

        assert_eq!(read_rgb(&png).unwrap(), gradient(6, 4));
        let e = EncodedImage::read(&jpg).unwrap();
        assert_eq!((e.format(), e.width, e.height), (InputFormat::Jpeg, 6, 4));
        assert_eq!(e.decode().unwrap().dimensions(), (6, 4));
        let e = read_rgb(&broken).unwrap_err();
        assert!(matches!(e, ImageError::Decode { .. }));
        assert!(e.to_string().contains("c.png"), "{e}");
        let missing = dir.path().join("zz.png");
        let e = read_rgb(&missing).unwrap_err();
        assert!(matches!(e, ImageError::NotFound { .. }));
        assert!(e.to_string().contains("zz.png"));

        let prepared = super::super::Preprocess::default().load(&png).unwrap();
        assert_eq!(prepared.original_size, (6, 4));
        assert_eq!(prepared.tensor.shape(), &[1, 3, 224, 224]);
    }
}
