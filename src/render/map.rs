//! Maps as pictures: a borrowed map, its heatmap, and overlays of a heatmap
//! on the image it explains.

use super::{Colormap, RenderError, Result, ValueRange};
use image::RgbImage;
use sightline_tensor::Tensor;

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

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

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
}
