//! [`Preprocess`]: from an input file to the model's input tensor, and
//! back to a picture.

use super::crop::center_crop;
use super::decode::{EncodedImage, InputFormat};
use super::npy::npy_input_from_bytes;
use super::resample::{resize_short_side, short_side_size};
use super::{ImageError, Result};
use crate::budget::product;
use image::{Rgb, RgbImage};
use sightline_tensor::Tensor;
use std::path::{Path, PathBuf};

/// torchvision's ImageNet channel means (R, G, B).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// torchvision's ImageNet channel standard deviations (R, G, B).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Largest magnitude of a normalised value that [`Preprocess::validate`]
/// and the `.npy` reader accept (ImageNet's normalisation gives at most
/// 2.7): values near float32's largest (3.4e38) overflow in the first
/// layers.
pub const MAX_NORMALISED: f32 = 1e12;

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
        Self::imagenet()
    }
}

/// An input ready for a model: the picture the model sees and its tensor.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The file it was read from.
    pub path: PathBuf,
    /// Width and height of the file's image (of the tensor, for a `.npy`
    /// input).
    pub original_size: (u32, u32),
    /// The resized and cropped picture, before normalisation: what saliency
    /// maps at the input's size line up with. For a `.npy` input, the
    /// tensor un-normalised ([`Preprocess::to_image`]).
    pub image: RgbImage,
    /// The model input, 1 x 3 x H x W.
    pub tensor: Tensor<f32>,
}

impl Preprocess {
    /// torchvision's ImageNet evaluation transform: `Resize(256)`,
    /// `CenterCrop(224)`, [`IMAGENET_MEAN`] and [`IMAGENET_STD`].
    pub fn imagenet() -> Self {
        Self {
            resize: Some(256),
            crop: Some(224),
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

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

    /// Width and height of the model input that [`Preprocess::prepare`]
    /// makes of `encoded`: [`Preprocess::input_size`] of an image, the
    /// tensor's own of a `.npy` input (used as it is).
    pub fn input_size_of(&self, encoded: &EncodedImage) -> (u32, u32) {
        match encoded.format() {
            InputFormat::Npy => (encoded.width, encoded.height),
            InputFormat::Jpeg | InputFormat::Png => self.input_size(encoded.width, encoded.height),
        }
    }

    /// An upper bound of the bytes that reading and preparing a
    /// `width x height` image (JPEG or PNG) takes at once: the decoded
    /// picture (a 16-bit RGBA PNG: 8 bytes per pixel; a progressive CMYK
    /// JPEG: libjpeg's coefficients, 2 bytes per sample and component
    /// padded to whole blocks, and its 4-byte pixels) and its RGB copy, the
    /// resize's coefficients, intermediate and result, the padded canvas
    /// and crop, and the f32 input tensor.
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
        let png = product(11, &[w, h]);
        let jpeg = product(8, &[w.saturating_add(40), h.saturating_add(40)])
            .saturating_add(product(7, &[w, h]));
        [
            png.max(jpeg),
            // Coefficients: at most 2 * in + 3 * out taps per axis, as f64.
            product(8, &[2, w.saturating_add(h)]).saturating_add(product(24, &[rw + rh])),
            // The first pass's result: new width x old height, or old
            // width x new height when the vertical pass comes first.
            product(3, &[rw, h]).max(product(3, &[w, rh])),
            product(3, &[rw, rh]),
            product(3, &[rw.max(crop), rh.max(crop)]),
            product(3, &[iw, ih]),
            product(12, &[iw, ih]),
        ]
        .iter()
        .fold(0u64, |a, &b| a.saturating_add(b))
    }

    /// An upper bound of the bytes that [`Preprocess::prepare`] takes for
    /// `encoded` beyond its file's bytes: [`Preprocess::memory_bytes`] of
    /// an image; for a `.npy` input, its f32 tensor and picture.
    pub fn memory_bytes_of(&self, encoded: &EncodedImage) -> u64 {
        match encoded.format() {
            InputFormat::Npy => product(15, &[u64::from(encoded.width), u64::from(encoded.height)]),
            InputFormat::Jpeg | InputFormat::Png => {
                self.memory_bytes(encoded.width, encoded.height)
            }
        }
    }

    /// Reads `path` (JPEG, PNG or a preprocessed `.npy` tensor) and
    /// prepares it: `Preprocess::default().load(path)?.tensor` is the
    /// input torchvision's ImageNet transform makes of the file. Memory is
    /// not checked against a budget: see [`Preprocess::prepare`].
    pub fn load(&self, path: &Path) -> Result<Prepared> {
        self.prepare(&EncodedImage::read(path)?)
    }

    /// Prepares an input read with [`EncodedImage::read`] (check
    /// [`Preprocess::memory_bytes_of`] it first): an image is decoded,
    /// resized, cropped and normalised; a `.npy` tensor is taken as it is
    /// (no resize, crop or normalisation), with its picture made by
    /// [`Preprocess::to_image`].
    pub fn prepare(&self, encoded: &EncodedImage) -> Result<Prepared> {
        self.validate()?;
        let path = encoded.path.clone();
        if encoded.format() == InputFormat::Npy {
            let tensor =
                npy_input_from_bytes(encoded.bytes()).map_err(|source| ImageError::Npy {
                    path: path.clone(),
                    source,
                })?;
            let image = self.to_image(&tensor)?;
            return Ok(Prepared {
                path,
                original_size: image.dimensions(),
                image,
                tensor,
            });
        }
        let original = encoded.decode()?;
        let image = self.transform(&original)?;
        let tensor = self.to_tensor(&image);
        Ok(Prepared {
            path,
            original_size: original.dimensions(),
            image,
            tensor,
        })
    }

    /// The resize then the centre crop (the geometric part of the
    /// transform), as torchvision computes them on a PIL image.
    pub fn transform(&self, image: &RgbImage) -> Result<RgbImage> {
        let resized = match self.resize {
            Some(s) => resize_short_side(image, s)?,
            None => image.clone(),
        };
        Ok(match self.crop {
            Some(s) => center_crop(&resized, s),
            None => resized,
        })
    }

    /// `ToTensor` and `Normalize`: 1 x 3 x H x W, `(p / 255 - mean[c]) /
    /// std[c]`, each step in f32 as torchvision computes it.
    pub fn to_tensor(&self, image: &RgbImage) -> Tensor<f32> {
        let (w, h) = image.dimensions();
        let plane = w as usize * h as usize;
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

    /// The picture of a model input (`1 x 3 x H x W` or `3 x H x W`), the
    /// inverse of [`Preprocess::to_tensor`]: `round((x * std[c] + mean[c]) *
    /// 255)` clamped to `[0, 255]` (a tensor made by `to_tensor` gives its
    /// picture back exactly). Any other shape is an error.
    pub fn to_image(&self, tensor: &Tensor<f32>) -> Result<RgbImage> {
        let (h, w) = match *tensor.shape() {
            [1, 3, h, w] | [3, h, w] => (h, w),
            ref s => {
                return Err(ImageError::Invalid(format!(
                    "a picture is made of a 3 x H x W or 1 x 3 x H x W tensor, not {s:?}"
                )))
            }
        };
        let too_large = || ImageError::Invalid(format!("a {w} x {h} picture is too large"));
        let width = u32::try_from(w).map_err(|_| too_large())?;
        let height = u32::try_from(h).map_err(|_| too_large())?;
        let plane = w * h;
        let data = tensor.data();
        let level = |c: usize, x: f32| {
            let v = (f64::from(x) * f64::from(self.std[c]) + f64::from(self.mean[c])) * 255.0;
            // `as` saturates (and maps NaN to 0).
            v.round().clamp(0.0, 255.0) as u8
        };
        Ok(RgbImage::from_fn(width, height, |x, y| {
            let i = y as usize * w + x as usize;
            Rgb([
                level(0, data[i]),
                level(1, data[plane + i]),
                level(2, data[2 * plane + i]),
            ])
        }))
    }
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
        assert_eq!(d[5], (102.0 / 255.0 - 0.406) / 0.225);
    }

    #[test]
    fn to_image_inverts_to_tensor_for_every_level() {
        let all = RgbImage::from_fn(256, 3, |x, y| {
            let v = x as u8;
            match y {
                0 => Rgb([v, 255 - v, v / 2]),
                1 => Rgb([v / 3, v, 255 - v]),
                _ => Rgb([255 - v, v / 5, v]),
            }
        });
        for p in [
            Preprocess::default(),
            Preprocess {
                mean: [0.5, 0.5, 0.5],
                std: [0.5, 0.5, 0.5],
                ..Preprocess::default()
            },
            Preprocess {
                mean: [0.0; 3],
                std: [1.0; 3],
                ..Preprocess::default()
            },
        ] {
            let t = p.to_tensor(&all);
            assert_eq!(p.to_image(&t).unwrap(), all);
            let chw = t.reshape([3, 3, 256]).unwrap();
            assert_eq!(p.to_image(&chw).unwrap(), all);
        }
    }

    #[test]
    fn to_image_rounds_and_clamps() {
        let p = Preprocess {
            mean: [0.0; 3],
            std: [1.0; 3],
            ..Preprocess::default()
        };
        // 0.5 / 255 rounds half away from zero to 1; -3 and 7 clamp.
        let t = Tensor::from_vec(
            [3, 1, 2],
            vec![0.5 / 255.0, -3.0, 7.0, 10.4 / 255.0, f32::NAN, 1.0],
        )
        .unwrap();
        let img = p.to_image(&t).unwrap();
        assert_eq!(img.get_pixel(0, 0), &Rgb([1, 255, 0]));
        assert_eq!(img.get_pixel(1, 0), &Rgb([0, 10, 255]));
        let bad = Tensor::<f32>::zeros([2, 3, 4, 4]);
        assert!(matches!(p.to_image(&bad), Err(ImageError::Invalid(_))));
    }

    #[test]
    fn transform_resizes_then_crops() {
        let p = Preprocess {
            resize: Some(16),
            crop: Some(12),
            ..Preprocess::default()
        };
        let out = p.transform(&gradient(40, 20)).unwrap();
        assert_eq!(out.dimensions(), (12, 12));
        let no_crop = Preprocess {
            crop: None,
            ..p.clone()
        };
        assert_eq!(
            no_crop.transform(&gradient(40, 20)).unwrap().dimensions(),
            (32, 16)
        );
        // A constant image stays constant through the filter.
        let flat = RgbImage::from_pixel(50, 30, Rgb([10, 20, 30]));
        assert!(p
            .transform(&flat)
            .unwrap()
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
        let bad = Preprocess {
            std: [1e-30, 1.0, 1.0],
            ..Preprocess::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("overflow"));
        assert_eq!(Preprocess::imagenet(), Preprocess::default());
    }

    #[test]
    fn sizes_and_memory_bounds() {
        let p = Preprocess::default();
        assert_eq!(p.input_size(500, 375), (224, 224));
        let no_crop = Preprocess {
            crop: None,
            ..p.clone()
        };
        assert_eq!(no_crop.input_size(500, 375), (341, 256));
        // 1000 x 1000: the JPEG bound (8 * 1040^2 + 7e6) beats the PNG one
        // (11e6); then coefficients, intermediate 256 x 1000, resized,
        // padded, crop and tensor.
        let expected = 8 * 1040 * 1040
            + 7_000_000
            + (16 * 2000 + 24 * 512)
            + 3 * 256 * 1000
            + 3 * 256 * 256
            + 3 * 256 * 256
            + 3 * 224 * 224
            + 12 * 224 * 224;
        assert_eq!(p.memory_bytes(1000, 1000), expected);
        // Saturates instead of overflowing.
        assert_eq!(p.memory_bytes(u32::MAX, u32::MAX), u64::MAX);
    }
}
