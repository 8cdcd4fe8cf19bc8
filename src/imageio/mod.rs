//! Reading model inputs: images preprocessed as torchvision does, and
//! preprocessed tensors saved as `.npy`.
//!
//! [`Preprocess::default`] is torchvision's evaluation transform for the
//! ImageNet classifiers, on a picture opened as
//! `PIL.Image.open(f).convert("RGB")`:
//!
//! ```text
//! Resize(256)            the short side to 256, the long side to int(256 * long / short)
//! CenterCrop(224)        offsets int(round((size - 224) / 2)), zero padding if smaller
//! ToTensor()             channels first, uint8 -> float32 / 255
//! Normalize(mean, std)   (x - mean[c]) / std[c] in float32
//! ```
//!
//! and the tensor it makes is torchvision's, bit for bit (tested on
//! torchvision's own tensors of three photos, as JPEG and PNG):
//!
//! - JPEG is decoded by libjpeg-turbo's code (MozJPEG's decoder, built from
//!   the C sources it vendors) with Pillow's settings: the integer slow
//!   IDCT and fancy upsampling. Grey JPEGs become RGB by replication, CMYK
//!   and YCCK ones through Pillow's `CMYK -> RGB` formula (see [`jpeg`]).
//! - PNG is decoded by the `image` crate and converted as Pillow's
//!   `convert("RGB")` does: alpha dropped, grey replicated, palettes looked
//!   up, 16-bit colour to its high byte, 16-bit grey clipped to 255 (see
//!   [`png`]).
//! - The resize is Pillow's antialiased bilinear `ImagingResample` in fixed
//!   point (see [`resample`]); the crop is torchvision's (see [`crop`]).
//!
//! One call goes from a path to the model input:
//! `Preprocess::default().load(path)?.tensor`. A command that bounds its
//! memory reads the file first ([`EncodedImage::read`], which checks the
//! header), checks [`Preprocess::memory_bytes_of`] against its budget and
//! then calls [`Preprocess::prepare`].
//!
//! A `.npy` file given as an input is a tensor already preprocessed
//! (float32 or float64, `3 x H x W` or `1 x 3 x H x W`): it is used as it
//! is, without resize or crop (see [`npy`]); [`write_npy_input`] saves a
//! preprocessed tensor that way and [`Preprocess::to_image`] makes a picture
//! of one.

pub mod crop;
pub mod decode;
pub mod inputs;
pub mod jpeg;
pub mod npy;
pub mod png;
pub mod preprocess;
pub mod resample;

pub use crop::center_crop;
pub use decode::{read_rgb, EncodedImage, InputFormat};
pub use inputs::{expand_inputs, has_image_extension, parse_triple, IMAGE_EXTENSIONS};
pub use jpeg::jpeg_is_complete;
pub use npy::{encode_npy_input, read_npy_input, write_npy_input, NpyError};
pub use preprocess::{Prepared, Preprocess, IMAGENET_MEAN, IMAGENET_STD, MAX_NORMALISED};
pub use resample::{resize_bilinear, resize_short_side, short_side_size};

use crate::budget::BudgetError;
use crate::files::FileError;
use std::path::PathBuf;
use thiserror::Error;

/// What went wrong reading an input or preparing it, naming the file.
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
    /// The file could not be written.
    #[error("cannot write {}: {message}", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// The system's message.
        message: String,
    },
    /// The file is not an image this build can decode (JPEG or PNG), or a
    /// broken one.
    #[error("cannot decode {} as an image: {message}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// A `.npy` input that is not a preprocessed tensor.
    #[error("{}: {source}", path.display())]
    Npy {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: NpyError,
    },
    /// A folder holds no input file.
    #[error("folder {} holds no .jpg, .jpeg, .png or .npy file", path.display())]
    EmptyFolder {
        /// The folder.
        path: PathBuf,
    },
    /// A preprocessing option is invalid, or a tensor is not a model input.
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

#[cfg(test)]
mod parity_tests;
