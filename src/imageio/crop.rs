//! torchvision's `CenterCrop` of a PIL image.

use image::{imageops, Rgb, RgbImage};

/// torchvision's `CenterCrop(size)`: a `size x size` crop at offsets
/// `int(round((W - size) / 2))`, `int(round((H - size) / 2))` (Python's
/// round, half to even); a side smaller than `size` is first padded with
/// black, `(size - W) // 2` on the left and the rest on the right (likewise
/// on the top and bottom), as torchvision's `center_crop` pads a PIL image.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, 77])
        })
    }

    #[test]
    fn offsets_round_half_even() {
        // 7 - 4 = 3 -> round(1.5) = 2; 9 - 4 = 5 -> round(2.5) = 2.
        assert_eq!(round_half_even_half(3), 2);
        assert_eq!(round_half_even_half(5), 2);
        assert_eq!(round_half_even_half(4), 2);
        assert_eq!(round_half_even_half(7), 4);
        let img = gradient(7, 9);
        let c = center_crop(&img, 4);
        assert_eq!(c.dimensions(), (4, 4));
        assert_eq!(c.get_pixel(0, 0), img.get_pixel(2, 2));
        assert_eq!(c.get_pixel(3, 3), img.get_pixel(5, 5));
        // torchvision on a 384 x 256 picture: left int(round(80.0)) = 80, top 16.
        let big = gradient(384, 256);
        assert_eq!(
            center_crop(&big, 224).get_pixel(0, 0),
            big.get_pixel(80, 16)
        );
    }

    #[test]
    fn small_images_are_padded() {
        let img = RgbImage::from_pixel(2, 3, Rgb([9, 9, 9]));
        let c = center_crop(&img, 5);
        assert_eq!(c.dimensions(), (5, 5));
        // Width: pad (5 - 2) // 2 = 1 left; height: pad 1 on top.
        assert_eq!(c.get_pixel(0, 0), &Rgb([0, 0, 0]));
        assert_eq!(c.get_pixel(1, 1), &Rgb([9, 9, 9]));
        assert_eq!(c.get_pixel(2, 3), &Rgb([9, 9, 9]));
        assert_eq!(c.get_pixel(3, 1), &Rgb([0, 0, 0]));
        assert_eq!(c.get_pixel(1, 4), &Rgb([0, 0, 0]));
        // Only the short side padded: 8 x 2 to 4 pads 1 on top, crops x at 2.
        let wide = gradient(8, 2);
        let c = center_crop(&wide, 4);
        assert_eq!(c.get_pixel(0, 0), &Rgb([0, 0, 0]));
        assert_eq!(c.get_pixel(0, 1), wide.get_pixel(2, 0));
        assert_eq!(c.get_pixel(3, 2), wide.get_pixel(5, 1));
        assert_eq!(c.get_pixel(3, 3), &Rgb([0, 0, 0]));
    }
}
