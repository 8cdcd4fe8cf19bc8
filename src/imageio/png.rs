//! PNG decoding as `PIL.Image.open(f).convert("RGB")` does it.
//!
//! The `image` crate decodes (palettes expanded, grey of 1, 2 or 4 bits
//! scaled to 8 as Pillow scales it, transparency chunks turned into alpha);
//! the conversion to RGB then follows Pillow's modes:
//!
//! | PNG                       | Pillow opens | `convert("RGB")`              |
//! |---------------------------|--------------|-------------------------------|
//! | RGB, RGBA, palette (8-bit)| RGB, RGBA, P | alpha dropped, no compositing |
//! | grey, grey + alpha (8-bit)| L, LA        | grey replicated, alpha dropped|
//! | RGB, RGBA (16-bit)        | RGB, RGBA    | the high byte of each sample  |
//! | grey + alpha (16-bit)     | RGBA (L;16B) | the high byte, replicated     |
//! | grey (16-bit)             | I;16         | `min(value, 255)`, replicated |
//!
//! The last row is Pillow's own (its `I;16 -> RGB` conversion clips), so a
//! 16-bit grey photo comes out nearly white, as it does in torchvision.

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use std::io::Cursor;

/// The colour type and bit depth of a PNG's `IHDR` (the first chunk, at a
/// fixed place), before the decoder's expansions.
fn ihdr_colour(bytes: &[u8]) -> Option<(u8, u8)> {
    if bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    Some((*bytes.get(25)?, *bytes.get(24)?))
}

/// Width and height from a PNG's header (nothing the size of the picture is
/// allocated).
pub fn png_size(bytes: &[u8]) -> Result<(u32, u32), String> {
    let decoder =
        image::codecs::png::PngDecoder::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    Ok(decoder.dimensions())
}

/// Decodes a PNG to 8-bit RGB as Pillow opens and converts it (see the
/// module's documentation).
pub fn decode_png(bytes: &[u8]) -> Result<RgbImage, String> {
    let (colour_type, depth) =
        ihdr_colour(bytes).ok_or("the PNG does not start with its IHDR chunk")?;
    let image = ImageReader::with_format(Cursor::new(bytes), ImageFormat::Png)
        .decode()
        .map_err(|e| e.to_string())?;
    let (w, h) = (image.width(), image.height());
    let grey16 = colour_type == 0 && depth == 16;
    let rgb = match image {
        DynamicImage::ImageRgb8(img) => img,
        DynamicImage::ImageRgba8(img) => rgb_of(w, h, img.as_raw(), 4, 3, |v| v),
        DynamicImage::ImageLuma8(img) => rgb_of(w, h, img.as_raw(), 1, 1, |v| v),
        DynamicImage::ImageLumaA8(img) => rgb_of(w, h, img.as_raw(), 2, 1, |v| v),
        DynamicImage::ImageRgb16(img) => rgb_of(w, h, img.as_raw(), 3, 3, high_byte),
        DynamicImage::ImageRgba16(img) => rgb_of(w, h, img.as_raw(), 4, 3, high_byte),
        DynamicImage::ImageLuma16(img) if grey16 => rgb_of(w, h, img.as_raw(), 1, 1, clip),
        DynamicImage::ImageLumaA16(img) if grey16 => rgb_of(w, h, img.as_raw(), 2, 1, clip),
        DynamicImage::ImageLumaA16(img) => rgb_of(w, h, img.as_raw(), 2, 1, high_byte),
        other => return Err(format!("unexpected PNG pixel type {:?}", other.color())),
    };
    Ok(rgb)
}

/// A 16-bit sample's high byte (Pillow's `;16B` unpackers).
fn high_byte(v: u16) -> u8 {
    (v >> 8) as u8
}

/// Pillow's `I;16 -> RGB`: the value clipped to 255.
fn clip(v: u16) -> u8 {
    v.min(255) as u8
}

/// RGB from `channels` samples per pixel: the first three mapped by `f`
/// when `colours` is 3, the first replicated when it is 1.
fn rgb_of<T: Copy>(
    w: u32,
    h: u32,
    samples: &[T],
    channels: usize,
    colours: usize,
    f: impl Fn(T) -> u8,
) -> RgbImage {
    let mut out = Vec::with_capacity(samples.len() / channels * 3);
    for px in samples.chunks_exact(channels) {
        if colours == 3 {
            out.extend([f(px[0]), f(px[1]), f(px[2])]);
        } else {
            let v = f(px[0]);
            out.extend([v, v, v]);
        }
    }
    // `image` sizes its buffers as w x h x channels.
    RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, LumaA, Rgba};

    fn encode(img: &DynamicImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        img.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        bytes
    }

    #[test]
    fn modes_convert_as_pillow() {
        let rgba = ImageBuffer::from_fn(3, 2, |x, y| Rgba([x as u8 * 50, y as u8 * 70, 9, 0]));
        let out = decode_png(&encode(&DynamicImage::ImageRgba8(rgba))).unwrap();
        // Alpha 0 is dropped, not composited onto black or white.
        assert_eq!(out.get_pixel(2, 1).0, [100, 70, 9]);

        let la = ImageBuffer::from_fn(2, 2, |x, _| LumaA([x as u8 * 200 + 3, 17]));
        let out = decode_png(&encode(&DynamicImage::ImageLumaA8(la))).unwrap();
        assert_eq!(out.get_pixel(1, 0).0, [203, 203, 203]);

        let rgb16 = ImageBuffer::from_fn(2, 1, |x, _| {
            image::Rgb([0x12FF_u16, 0x00FF, 0xFFFF - x as u16 * 0x100])
        });
        let out = decode_png(&encode(&DynamicImage::ImageRgb16(rgb16))).unwrap();
        // The high byte, not the rounded 0x12FF * 255 / 65535 = 0x13.
        assert_eq!(out.get_pixel(0, 0).0, [0x12, 0x00, 0xFF]);
        assert_eq!(out.get_pixel(1, 0).0, [0x12, 0x00, 0xFE]);

        let grey16 = ImageBuffer::from_fn(3, 1, |x, _| Luma([[7u16, 255, 256][x as usize]]));
        let out = decode_png(&encode(&DynamicImage::ImageLuma16(grey16))).unwrap();
        assert_eq!(out.get_pixel(0, 0).0, [7, 7, 7]);
        assert_eq!(out.get_pixel(1, 0).0, [255, 255, 255]);
        assert_eq!(out.get_pixel(2, 0).0, [255, 255, 255]);

        let la16 = ImageBuffer::from_fn(1, 1, |_, _| LumaA([0xAB01_u16, 0]));
        let out = decode_png(&encode(&DynamicImage::ImageLumaA16(la16))).unwrap();
        assert_eq!(out.get_pixel(0, 0).0, [0xAB, 0xAB, 0xAB]);
    }

    #[test]
    fn broken_files_are_errors() {
        let good = encode(&DynamicImage::ImageRgb8(RgbImage::new(4, 4)));
        assert_eq!(png_size(&good).unwrap(), (4, 4));
        for cut in [8, 20, 30, 40, good.len() - 20] {
            assert!(decode_png(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_png(b"\x89PNG\r\n\x1a\n").is_err());
        assert!(png_size(b"\x89PNG\r\n\x1a\nxxxxxxxxxxxxxxxx").is_err());
    }
}
