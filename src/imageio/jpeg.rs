//! JPEG decoding as Pillow does it: libjpeg-turbo's decoder (MozJPEG's,
//! the same code, built from the C sources the `mozjpeg-sys` crate
//! vendors, with a C compiler only) with Pillow's settings, the integer
//! slow IDCT (`JDCT_ISLOW`) and fancy upsampling, so the pixels are
//! Pillow's bit for bit.
//!
//! Pillow opens a JPEG of 1 component as `L`, of 3 as `RGB` (libjpeg
//! converting from YCbCr) and of 4 as `CMYK` (inverted, "Adobe
//! conventions", whatever the markers say; libjpeg converts YCCK to CMYK);
//! `convert("RGB")` then replicates grey and turns CMYK into RGB with
//! `nk = 255 - K; R = nk - nk * C / 255` in integers (see [`cmyk_to_rgb`]).
//! Other component counts and 12-bit JPEGs are errors, as in Pillow.
//!
//! libjpeg reports a fatal error through a callback that must not return;
//! the `mozjpeg` crate's callback unwinds (without the panic hook) and
//! this module catches the unwind, so a broken file is an error value,
//! never an abort or `exit()`. Warnings (corrupt data that libjpeg decodes
//! around) are ignored, as Pillow ignores them.

use image::RgbImage;
use mozjpeg::{ColorSpace, DctMethod, Decompress};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs libjpeg calls, turning a libjpeg error (an unwind out of its error
/// callback) or an I/O error into a message.
fn libjpeg<T>(f: impl FnOnce() -> std::io::Result<T>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("libjpeg: {e}")),
        Err(payload) => Err(payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "libjpeg failed".into())),
    }
}

/// How the decoded JPEG's pixels come out of libjpeg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    /// RGB (from YCbCr, RGB or grey, which libjpeg replicates).
    Rgb,
    /// CMYK as stored (Adobe's inverted convention), YCCK converted.
    Cmyk,
}

/// The output a header's component count and colour space call for.
fn output_for(components: usize, space: ColorSpace) -> Result<Output, String> {
    match (components, space) {
        (1, ColorSpace::JCS_GRAYSCALE) | (3, ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB) => {
            Ok(Output::Rgb)
        }
        (4, ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK) => Ok(Output::Cmyk),
        (n, s) => Err(format!(
            "a JPEG of {n} components in colour space {s:?} (Pillow reads grey, YCbCr/RGB and CMYK/YCCK)"
        )),
    }
}

/// Width and height from a JPEG's header, read by libjpeg (nothing the size
/// of the picture is allocated); an unsupported colour space is an error
/// here already.
pub fn jpeg_size(bytes: &[u8]) -> Result<(u32, u32), String> {
    let (w, h, components, space) = libjpeg(|| {
        let d = Decompress::new_mem(bytes)?;
        Ok((d.width(), d.height(), d.components().len(), d.color_space()))
    })?;
    output_for(components, space)?;
    let w = u32::try_from(w).map_err(|_| format!("width {w} is too large"))?;
    let h = u32::try_from(h).map_err(|_| format!("height {h} is too large"))?;
    Ok((w, h))
}

/// Decodes a JPEG to 8-bit RGB as `PIL.Image.open(f).convert("RGB")` does
/// (see the module's documentation). A file that ends before its
/// end-of-image marker is refused as truncated, as Pillow refuses it
/// (libjpeg alone would fill the rest with grey).
pub fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, String> {
    if !jpeg_is_complete(bytes) {
        return Err("the JPEG file is truncated (it ends before its end-of-image marker)".into());
    }
    let (w, h, output, pixels) = libjpeg(|| {
        let mut d = Decompress::new_mem(bytes)?;
        let output = match output_for(d.components().len(), d.color_space()) {
            Ok(o) => o,
            Err(e) => return Err(std::io::Error::other(e)),
        };
        d.dct_method(DctMethod::IntegerSlow);
        d.do_fancy_upsampling(true);
        let mut started = match output {
            Output::Rgb => d.rgb()?,
            Output::Cmyk => d.to_colorspace(ColorSpace::JCS_CMYK)?,
        };
        let (w, h) = (started.width(), started.height());
        let pixels: Vec<u8> = started.read_scanlines()?;
        started.finish()?;
        Ok((w, h, output, pixels))
    })?;
    let rgb = match output {
        Output::Rgb => pixels,
        Output::Cmyk => cmyk_to_rgb(&pixels),
    };
    let too_large = || format!("a {w} x {h} JPEG is too large");
    let width = u32::try_from(w).map_err(|_| too_large())?;
    let height = u32::try_from(h).map_err(|_| too_large())?;
    RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| format!("libjpeg returned too few pixels for {w} x {h}"))
}

/// Pillow's `CMYK -> RGB` of libjpeg's CMYK samples (Adobe's inverted
/// values, which Pillow's `CMYK;I` unpacker inverts back): with Pillow's
/// C, M, Y, K (`255 - sample`), `nk = 255 - K` and `R = nk - C * nk / 255`
/// (`MULDIV255`: `t = a * b + 128; ((t >> 8) + t) >> 8`), likewise G and B.
pub fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    fn muldiv255(a: u32, b: u32) -> u32 {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    }
    let mut out = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        let nk = u32::from(px[3]);
        for &s in &px[..3] {
            let c = 255 - u32::from(s);
            // muldiv255(c, nk) <= nk: no clipping needed.
            out.push((nk - muldiv255(c, nk)) as u8);
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg_of(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 9 % 256) as u8,
                (y * 13 % 256) as u8,
                ((x + y) * 5 % 256) as u8,
            ])
        });
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode_image(&img)
            .unwrap();
        bytes
    }

    #[test]
    fn header_and_pixels_agree() {
        let bytes = jpeg_of(37, 21);
        assert_eq!(jpeg_size(&bytes).unwrap(), (37, 21));
        let img = decode_jpeg(&bytes).unwrap();
        assert_eq!(img.dimensions(), (37, 21));
        // Lossy, but close to the original.
        assert!((i32::from(img.get_pixel(10, 3)[0]) - 90).abs() < 12);
    }

    #[test]
    fn truncated_files_are_errors_at_every_cut() {
        let bytes = jpeg_of(24, 16);
        for cut in (0..bytes.len())
            .step_by(7)
            .chain([bytes.len() - 2, bytes.len() - 1])
        {
            let b = &bytes[..cut];
            let decoded = decode_jpeg(b);
            assert!(decoded.is_err(), "cut at {cut}");
            // The header reader never panics either: it fails, or (cut
            // after the frame header) reads the size.
            if let Ok(size) = jpeg_size(b) {
                assert_eq!(size, (24, 16), "cut at {cut}");
            }
        }
        let e = decode_jpeg(&bytes[..bytes.len() / 2]).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn garbage_and_corrupt_files_are_errors_not_aborts() {
        // Garbage after a JPEG signature: libjpeg's fatal error unwinds
        // into an error value.
        let mut garbage = vec![0xFF, 0xD8, 0xFF];
        garbage.extend((0..500u32).map(|i| (i * 7919 % 251) as u8));
        garbage.extend([0xFF, 0xD9]);
        let e = jpeg_size(&garbage).unwrap_err();
        assert!(e.contains("libjpeg"), "{e}");
        assert!(decode_jpeg(&garbage).is_err());
        // A frame header that declares 0 x 0.
        let mut bytes = jpeg_of(8, 8);
        let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        bytes[sof + 5..sof + 9].copy_from_slice(&[0, 0, 0, 0]);
        assert!(jpeg_size(&bytes).is_err());
        assert!(decode_jpeg(&bytes).is_err());
        // Huffman tables replaced by garbage.
        let mut bytes = jpeg_of(16, 16);
        let dht = bytes.windows(2).position(|w| w == [0xFF, 0xC4]).unwrap();
        for b in &mut bytes[dht + 5..dht + 21] {
            *b = 0xFF;
        }
        assert!(decode_jpeg(&bytes).is_err());
    }

    #[test]
    fn cmyk_follows_pillow() {
        // libjpeg samples are inverted: (255, 255, 255, 255) is no ink, white.
        assert_eq!(cmyk_to_rgb(&[255, 255, 255, 255]), [255, 255, 255]);
        assert_eq!(cmyk_to_rgb(&[0, 0, 0, 0]), [0, 0, 0]);
        // Pillow: C = 255 - 155 = 100, K = 255 - 200 = 55, nk = 200,
        // MULDIV255(100, 200): t = 20128, ((t >> 8) + t) >> 8 = 78; 200 - 78.
        assert_eq!(cmyk_to_rgb(&[155, 255, 0, 200]), [122, 200, 0]);
    }

    #[test]
    fn completeness_walks_segments() {
        let full = jpeg_of(8, 8);
        assert!(jpeg_is_complete(&full));
        for cut in [full.len() - 1, full.len() / 2, 3] {
            assert!(!jpeg_is_complete(&full[..cut]), "cut at {cut}");
        }
        assert!(jpeg_is_complete(b"\x89PNG"));
    }
}
