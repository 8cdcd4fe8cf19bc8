//! Pillow's antialiased bilinear resize, bit for bit: `Image.resize(size,
//! Image.BILINEAR)` on an 8-bit RGB image, which is what torchvision's
//! `Resize` does to a PIL image.
//!
//! This follows Pillow's `ImagingResample` (`src/libImaging/Resample.c`):
//!
//! - Per axis, `scale = in / out` and `filterscale = max(scale, 1)`; the
//!   triangle filter's support is `filterscale` (it widens when shrinking:
//!   antialiasing; it is 1 when enlarging). Output pixel `i` is centred at
//!   `(i + 0.5) * scale` and reads input pixels `xmin..xmin + n` with
//!   `xmin = max(int(center - support + 0.5), 0)` and the end
//!   `min(int(center + support + 0.5), in)`; the weight of input `x` is
//!   `triangle((x - center + 0.5) / filterscale)`, the weights divided by
//!   their sum, all in f64.
//! - Weights become fixed point with `PRECISION_BITS = 32 - 8 - 2 = 22`:
//!   `int(w * 2^22 + 0.5)` (`- 0.5` for negative weights); an output
//!   sample is `clip8((2^21 + sum(sample * weight)) >> 22)`.
//! - Two passes, the second on the 8-bit result of the first; a pass is
//!   skipped when its axis keeps its size. The horizontal pass comes first
//!   (on the rows the vertical pass reads only), unless the height shrinks
//!   by more than twice as many pixels as the width, `in_h - out_h > 0` and
//!   `in_h - out_h > 2 * (in_w - out_w)`: then the vertical pass comes
//!   first (Pillow 13's order, python-pillow/Pillow#9549; Pillow 12 and
//!   earlier always ran the horizontal pass first, which gives different
//!   bytes for portraits taller than 2:1).
//!
//! No maintained crate reproduces these bytes: `fast_image_resize` (6.1),
//! which follows Pillow-SIMD, keeps 16-bit weights with a precision chosen
//! per image and differs by one level on about 15% of the values of
//! torchvision's reference photos.

use super::{ImageError, Result};
use image::RgbImage;
use rayon::prelude::*;

/// Pillow's fixed-point precision of the weights.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Largest number of taps per output pixel: beyond it (a shrink by more
/// than 500,000 times) the i32 sums could overflow.
const MAX_TAPS: usize = 1 << 20;

/// The fixed-point weights of one axis: for output pixel `i`, the inputs
/// `first[i]..first[i] + count[i]` with weights `weights[i * taps..]`.
struct Weights {
    taps: usize,
    first: Vec<usize>,
    count: Vec<usize>,
    weights: Vec<i32>,
}

/// Pillow's `bilinear_filter`.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc` for resizing
/// `in_size` pixels to `out_size` (both positive).
fn weights(in_size: u32, out_size: u32) -> Result<Weights> {
    // Pillow's box is float: the input size passes through f32.
    let scale = f64::from(in_size as f32) / f64::from(out_size);
    let filterscale = scale.max(1.0);
    let support = filterscale;
    let taps = support.ceil() as usize * 2 + 1;
    if taps > MAX_TAPS {
        return Err(ImageError::Invalid(format!(
            "resizing {in_size} pixels to {out_size} takes {taps} taps per pixel, more than {MAX_TAPS}"
        )));
    }
    let out = out_size as usize;
    let len = out
        .checked_mul(taps)
        .ok_or_else(|| ImageError::Invalid(format!("{out} x {taps} resize weights")))?;
    let mut w = Weights {
        taps,
        first: Vec::with_capacity(out),
        count: Vec::with_capacity(out),
        weights: vec![0; len],
    };
    let ss = 1.0 / filterscale;
    let mut k = vec![0.0f64; taps];
    for (i, row) in w.weights.chunks_exact_mut(taps).enumerate() {
        let center = (i as f64 + 0.5) * scale;
        // C's (int) casts truncate toward zero, as `as` does.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size));
        let n = (xmax - xmin).clamp(0, taps as i64) as usize;
        let mut sum = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let v = triangle(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *kx = v;
            sum += v;
        }
        for (kx, wx) in k.iter().zip(row.iter_mut()).take(n) {
            let v = if sum != 0.0 { kx / sum } else { *kx };
            let fixed = v * f64::from(1u32 << PRECISION_BITS);
            *wx = if v < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        w.first.push(xmin as usize);
        w.count.push(n);
    }
    Ok(w)
}

/// Pillow's `clip8`: the sum shifted back to 8 bits, clamped.
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The horizontal pass: rows `rows` of `src` (`width` x 3 bytes each) to
/// rows of `w.first.len()` pixels.
fn horizontal(src: &[u8], width: usize, rows: std::ops::Range<usize>, w: &Weights) -> Vec<u8> {
    let out_w = w.first.len();
    let mut out = vec![0u8; out_w * 3 * rows.len()];
    out.par_chunks_mut(out_w * 3)
        .zip(rows.into_par_iter())
        .for_each(|(dst, y)| {
            let line = &src[y * width * 3..(y + 1) * width * 3];
            for (x, px) in dst.chunks_exact_mut(3).enumerate() {
                let k = &w.weights[x * w.taps..x * w.taps + w.count[x]];
                let taps = &line[w.first[x] * 3..(w.first[x] + w.count[x]) * 3];
                let mut s = [1i32 << (PRECISION_BITS - 1); 3];
                for (p, &kx) in taps.chunks_exact(3).zip(k) {
                    s[0] += i32::from(p[0]) * kx;
                    s[1] += i32::from(p[1]) * kx;
                    s[2] += i32::from(p[2]) * kx;
                }
                px.copy_from_slice(&[clip8(s[0]), clip8(s[1]), clip8(s[2])]);
            }
        });
    out
}

/// The vertical pass: `src` (`width` x 3 bytes per row, its row 0 being
/// input row `offset`) to `w.first.len()` rows.
fn vertical(src: &[u8], width: usize, offset: usize, w: &Weights) -> Vec<u8> {
    let stride = width * 3;
    let mut out = vec![0u8; stride * w.first.len()];
    out.par_chunks_mut(stride).enumerate().for_each(|(y, dst)| {
        let k = &w.weights[y * w.taps..y * w.taps + w.count[y]];
        let first = w.first[y] - offset;
        // Row by row, each sum still adds its taps in Pillow's order.
        let mut sums = vec![1i32 << (PRECISION_BITS - 1); stride];
        for (r, &ky) in k.iter().enumerate() {
            let line = &src[(first + r) * stride..(first + r + 1) * stride];
            for (s, &p) in sums.iter_mut().zip(line) {
                *s += i32::from(p) * ky;
            }
        }
        for (v, &s) in dst.iter_mut().zip(&sums) {
            *v = clip8(s);
        }
    });
    out
}

/// Resizes to `width x height` exactly as Pillow's
/// `Image.resize((width, height), Image.BILINEAR)` (see the module's
/// documentation); the same size is a copy. A zero size is an error, as in
/// Pillow.
pub fn resize_bilinear(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage> {
    let (in_w, in_h) = image.dimensions();
    if width == 0 || height == 0 {
        return Err(ImageError::Invalid(format!(
            "cannot resize to {width} x {height}: both sides must be positive"
        )));
    }
    if in_w == 0 || in_h == 0 {
        return Err(ImageError::Invalid(format!(
            "cannot resize an empty {in_w} x {in_h} image"
        )));
    }
    let need_h = width != in_w;
    let need_v = height != in_h;
    let shrink_h = i64::from(in_h) - i64::from(height);
    let shrink_w = i64::from(in_w) - i64::from(width);
    let vertical_first = shrink_h > 0 && shrink_h > 2 * shrink_w;
    let raw = image.as_raw();
    let (in_w, in_h) = (in_w as usize, in_h as usize);
    let out = match (need_h, need_v) {
        (false, false) => raw.clone(),
        (true, false) => horizontal(raw, in_w, 0..in_h, &weights(in_w as u32, width)?),
        (false, true) => vertical(raw, in_w, 0, &weights(in_h as u32, height)?),
        (true, true) if vertical_first => {
            let rows = vertical(raw, in_w, 0, &weights(in_h as u32, height)?);
            let horiz = weights(in_w as u32, width)?;
            horizontal(&rows, in_w, 0..height as usize, &horiz)
        }
        (true, true) => {
            let vert = weights(in_h as u32, height)?;
            // Only the rows the vertical pass reads (Pillow's ybox).
            let last = vert.first.len() - 1;
            let rows = vert.first[0]..vert.first[last] + vert.count[last];
            let offset = rows.start;
            let cols = horizontal(raw, in_w, rows, &weights(in_w as u32, width)?);
            vertical(&cols, width as usize, offset, &vert)
        }
    };
    RgbImage::from_raw(width, height, out)
        .ok_or_else(|| ImageError::Invalid(format!("resize to {width} x {height} lost pixels")))
}

/// The size torchvision's `Resize(size)` gives a `width x height` image: the
/// short side becomes `size`, the long side `int(size * long / short)`.
pub fn short_side_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    let (short, long) = (width.min(height), width.max(height));
    let new_long = u64::from(size) * u64::from(long) / u64::from(short.max(1));
    let new_long = u32::try_from(new_long).unwrap_or(u32::MAX).max(1);
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// torchvision's `Resize(size)` of a PIL image: the short side to `size`
/// (see [`short_side_size`]) with Pillow's antialiased bilinear filter
/// ([`resize_bilinear`]); an image already that size is copied.
pub fn resize_short_side(image: &RgbImage, size: u32) -> Result<RgbImage> {
    let (w, h) = short_side_size(image.width(), image.height(), size);
    resize_bilinear(image, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;
    use proptest::prelude::*;

    #[test]
    fn short_side_sizes_match_torchvision() {
        // torchvision: 500 x 375 (W x H) -> Resize(256) -> 341 x 256.
        assert_eq!(short_side_size(500, 375, 256), (341, 256));
        assert_eq!(short_side_size(375, 500, 256), (256, 341));
        assert_eq!(short_side_size(300, 300, 256), (256, 256));
        // Truncation, not rounding: 256 * 333 / 200 = 426.24.
        assert_eq!(short_side_size(333, 200, 256), (426, 256));
        // Upscaling: 300 x 134 -> int(256 * 300 / 134) = 573.
        assert_eq!(short_side_size(300, 134, 256), (573, 256));
    }

    #[test]
    fn weights_follow_pillow() {
        // Halving: support 2, 5 taps; output 0 centred at 1.0 reads inputs
        // 0..3 with triangle weights 0.75, 0.75, 0.25 / 1.75.
        let w = weights(8, 4).unwrap();
        assert_eq!(w.taps, 5);
        assert_eq!((w.first[0], w.count[0]), (0, 3));
        let one = f64::from(1u32 << 22);
        assert_eq!(w.weights[0], (0.5 + 0.75 / 1.75 * one) as i32);
        assert_eq!(w.weights[2], (0.5 + 0.25 / 1.75 * one) as i32);
        // Output 1 centred at 3.0 reads 1..6: 0.25, 0.75, 0.75, 0.25.
        assert_eq!((w.first[1], w.count[1]), (1, 4));
        assert_eq!(w.weights[5], 1 << 19);
        assert_eq!(w.weights[6], 3 << 19);
        // Enlarging keeps support 1: 3 taps, at most 2 nonzero.
        let w = weights(2, 5).unwrap();
        assert_eq!(w.taps, 3);
        assert_eq!((w.first[0], w.count[0]), (0, 1));
        assert_eq!(w.weights[0], 1 << 22);
    }

    #[test]
    fn passes_run_only_where_the_size_changes() {
        let img = RgbImage::from_fn(5, 4, |x, y| Rgb([x as u8 * 40, y as u8 * 60, 7]));
        assert_eq!(resize_bilinear(&img, 5, 4).unwrap(), img);
        // Width only: rows stay independent.
        let narrow = resize_bilinear(&img, 2, 4).unwrap();
        for y in 0..4 {
            assert_eq!(narrow.get_pixel(0, y)[1], y as u8 * 60);
        }
        // Height only: columns stay independent.
        let short = resize_bilinear(&img, 5, 1).unwrap();
        for x in 0..5 {
            assert_eq!(short.get_pixel(x, 0)[0], x as u8 * 40);
        }
        // 1 x 1 averages with the triangle weights: the mean of 0, 40,
        // ..., 160 weighted symmetrically is 80.
        assert_eq!(resize_bilinear(&img, 1, 1).unwrap().get_pixel(0, 0)[0], 80);
        assert!(resize_bilinear(&img, 0, 3).is_err());
        assert!(resize_bilinear(&RgbImage::new(0, 3), 2, 2).is_err());
    }

    proptest! {
        #[test]
        fn constant_images_stay_constant(
            w in 1u32..40, h in 1u32..40, ow in 1u32..60, oh in 1u32..60, v in 0u8..=255
        ) {
            let img = RgbImage::from_pixel(w, h, Rgb([v, v / 2, 255 - v]));
            let out = resize_bilinear(&img, ow, oh).unwrap();
            prop_assert_eq!(out.dimensions(), (ow, oh));
            prop_assert!(out.pixels().all(|p| *p == Rgb([v, v / 2, 255 - v])));
        }

        #[test]
        fn results_do_not_depend_on_the_thread_count(
            w in 1u32..50, h in 1u32..50, ow in 1u32..70, oh in 1u32..70, seed in 0u32..1000
        ) {
            let img = RgbImage::from_fn(w, h, |x, y| {
                let v = (x * 31 + y * 17 + seed) * 2654435761;
                Rgb([(v >> 24) as u8, (v >> 16) as u8, (v >> 8) as u8])
            });
            let many = resize_bilinear(&img, ow, oh).unwrap();
            let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap()
                .install(|| resize_bilinear(&img, ow, oh).unwrap());
            prop_assert_eq!(many, one);
        }
    }
}
