//! The demo's procedural images: one object of a known class and mask on a
//! textured, cluttered background, deterministic by seed.
//!
//! Each image shows one of six shapes ([`CLASSES`]) of a random colour, size
//! and position over a background of random colour with sinusoidal texture,
//! pixel noise and small distractors (dots and 1-pixel lines, which are no
//! class). Colours are drawn the same way for every class, so only the shape
//! tells the class. Item `i` of seed `s` comes from its own ChaCha8 stream
//! (`seed_from_u64(s)`, stream `i`): it does not depend on how many items are
//! generated, and items can be generated in parallel. The class of item `i`
//! is `i % 6`, so any six consecutive items show every class once.

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use sightline_tensor::Tensor;

/// The class names, in logit order.
pub const CLASSES: [&str; 6] = ["disc", "square", "triangle", "cross", "ring", "bar"];

/// Side of the demo's square images, in pixels.
pub const IMAGE_SIZE: usize = 64;

/// Per-channel mean subtracted from pixel values (in `[0, 1]`) before the model.
pub const MEAN: f32 = 0.5;

/// Per-channel standard deviation dividing pixel values before the model.
pub const STD: f32 = 0.25;

/// Seed of the training images.
pub const TRAIN_SEED: u64 = 1;

/// Seed of the validation images watched during training.
pub const VALIDATION_SEED: u64 = 2;

/// Seed of the held-out images of the demo and the pointing game (never trained on).
pub const TEST_SEED: u64 = 3;

/// Supersampling of shape edges: `SUB x SUB` samples per pixel.
const SUB: usize = 4;

/// One generated image with its class and object mask.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Class index into [`CLASSES`].
    pub class: usize,
    /// Side of the square image, in pixels.
    pub size: usize,
    /// Pixel values in `[0, 1]`, 3 x size x size (channel-major, RGB).
    pub pixels: Vec<f32>,
    /// The object's mask, size x size, row-major: pixels at least half covered.
    pub mask: Vec<bool>,
}

impl Sample {
    /// The image as 8-bit RGB.
    pub fn to_rgb8(&self) -> image::RgbImage {
        let n = self.size * self.size;
        image::RgbImage::from_fn(self.size as u32, self.size as u32, |x, y| {
            let i = y as usize * self.size + x as usize;
            let px = |c: usize| (self.pixels[c * n + i] * 255.0).round().clamp(0.0, 255.0) as u8;
            image::Rgb([px(0), px(1), px(2)])
        })
    }

    /// The mask's bounding box `[x0, y0, x1, y1]`, inclusive.
    pub fn bbox(&self) -> Option<[usize; 4]> {
        let mut b: Option<[usize; 4]> = None;
        for (i, _) in self.mask.iter().enumerate().filter(|(_, &m)| m) {
            let (x, y) = (i % self.size, i / self.size);
            b = Some(match b {
                None => [x, y, x, y],
                Some([x0, y0, x1, y1]) => [x0.min(x), y0.min(y), x1.max(x), y1.max(y)],
            });
        }
        b
    }
}

/// Item `index` of the set `seed` at `size` x `size` pixels (`size >= 16`).
pub fn sample(seed: u64, index: u64, size: usize) -> Sample {
    let size = size.max(16);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    let class = (index % CLASSES.len() as u64) as usize;
    let s = size as f32;

    // Background: a base colour, three sinusoidal gratings with random
    // per-channel weights.
    let base: [f32; 3] = [
        rng.gen_range(0.2..0.8),
        rng.gen_range(0.2..0.8),
        rng.gen_range(0.2..0.8),
    ];
    let gratings: Vec<([f32; 3], f32, f32, f32)> = (0..3)
        .map(|_| {
            let amp = rng.gen_range(0.03..0.08);
            let w = [
                rng.gen_range(-1.0..1.0),
                rng.gen_range(-1.0..1.0),
                rng.gen_range(-1.0..1.0),
            ];
            let freq = std::f32::consts::TAU / rng.gen_range(4.0..16.0f32);
            let angle = rng.gen_range(0.0..std::f32::consts::PI);
            let phase = rng.gen_range(0.0..std::f32::consts::TAU);
            (
                [w[0] * amp, w[1] * amp, w[2] * amp],
                freq * angle.cos(),
                freq * angle.sin(),
                phase,
            )
        })
        .collect();
    let n = size * size;
    let mut pixels = vec![0f32; 3 * n];
    for y in 0..size {
        for x in 0..size {
            for c in 0..3 {
                let t: f32 = gratings
                    .iter()
                    .map(|(w, fx, fy, ph)| w[c] * (fx * x as f32 + fy * y as f32 + ph).sin())
                    .sum();
                pixels[c * n + y * size + x] = base[c] + t;
            }
        }
    }

    // Distractors: dots and thin lines of any colour, no class's shape.
    for _ in 0..rng.gen_range(3..=7) {
        let colour = random_colour(&mut rng);
        let shape = if rng.gen_bool(0.5) {
            Primitive::Dot {
                cx: rng.gen_range(0.0..s),
                cy: rng.gen_range(0.0..s),
                r: rng.gen_range(1.0..2.2) * s / 64.0,
            }
        } else {
            let (x0, y0) = (rng.gen_range(0.0..s), rng.gen_range(0.0..s));
            let len = rng.gen_range(0.15..0.35) * s;
            let a = rng.gen_range(0.0..std::f32::consts::TAU);
            Primitive::Line {
                x0,
                y0,
                x1: x0 + len * a.cos(),
                y1: y0 + len * a.sin(),
            }
        };
        draw(&mut pixels, size, &shape, colour, None);
    }

    // The object: a colour far enough from the background's.
    let extent = rng.gen_range(0.25..0.40) * s;
    let half = extent / 2.0;
    let cx = rng.gen_range(half + 1.0..s - half - 1.0);
    let cy = rng.gen_range(half + 1.0..s - half - 1.0);
    let mut colour = random_colour(&mut rng);
    for _ in 0..100 {
        if dist(colour, base) >= 0.5 {
            break;
        }
        colour = random_colour(&mut rng);
    }
    let object = Primitive::Object {
        class,
        cx,
        cy,
        half,
        orientation: rng.gen_range(0..4),
    };
    let mut mask = vec![false; n];
    draw(&mut pixels, size, &object, colour, Some(&mut mask));

    // Pixel noise over everything.
    for v in pixels.iter_mut() {
        *v = (*v + rng.gen_range(-0.04..0.04f32)).clamp(0.0, 1.0);
    }
    Sample {
        class,
        size,
        pixels,
        mask,
    }
}

/// Items `start .. start + count` of the set `seed`, generated in parallel.
pub fn generate(seed: u64, start: u64, count: usize, size: usize) -> Vec<Sample> {
    (start..start + count as u64)
        .into_par_iter()
        .map(|i| sample(seed, i, size))
        .collect()
}

/// The model input of `samples` (all of one size): N x 3 x size x size, `(v - MEAN) / STD`.
pub fn to_input<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Tensor<f32> {
    let mut data = Vec::new();
    let mut count = 0;
    let mut size = 0;
    for s in samples {
        data.extend(s.pixels.iter().map(|v| (v - MEAN) / STD));
        count += 1;
        size = s.size;
    }
    Tensor::from_vec([count, 3, size, size], data).unwrap_or_else(|_| Tensor::zeros([0, 3, 0, 0]))
}

fn random_colour(rng: &mut ChaCha8Rng) -> [f32; 3] {
    [
        rng.gen_range(0.0..1.0),
        rng.gen_range(0.0..1.0),
        rng.gen_range(0.0..1.0),
    ]
}

fn dist(a: [f32; 3], b: [f32; 3]) -> f32 {
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// Something drawn on an image.
enum Primitive {
    Dot {
        cx: f32,
        cy: f32,
        r: f32,
    },
    Line {
        x0: f32,
        y0: f32,
        x1: f32,
        y1: f32,
    },
    Object {
        class: usize,
        cx: f32,
        cy: f32,
        half: f32,
        orientation: u8,
    },
}

impl Primitive {
    /// The bounding box `[x0, y0, x1, y1]` in continuous coordinates.
    fn bounds(&self) -> [f32; 4] {
        match *self {
            Primitive::Dot { cx, cy, r } => [cx - r, cy - r, cx + r, cy + r],
            Primitive::Line { x0, y0, x1, y1 } => [
                x0.min(x1) - 1.0,
                y0.min(y1) - 1.0,
                x0.max(x1) + 1.0,
                y0.max(y1) + 1.0,
            ],
            Primitive::Object { cx, cy, half, .. } => [cx - half, cy - half, cx + half, cy + half],
        }
    }

    /// Whether the continuous point `(x, y)` is inside.
    fn contains(&self, x: f32, y: f32) -> bool {
        match *self {
            Primitive::Dot { cx, cy, r } => (x - cx).powi(2) + (y - cy).powi(2) <= r * r,
            Primitive::Line { x0, y0, x1, y1 } => {
                let (dx, dy) = (x1 - x0, y1 - y0);
                let t = (((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy).max(1e-6))
                    .clamp(0.0, 1.0);
                (x - x0 - t * dx).powi(2) + (y - y0 - t * dy).powi(2) <= 0.25
            }
            Primitive::Object {
                class,
                cx,
                cy,
                half,
                orientation,
            } => {
                // Local coordinates in units of `half`, rotated by quarter turns.
                let (u, v) = ((x - cx) / half, (y - cy) / half);
                let (u, v) = match orientation {
                    0 => (u, v),
                    1 => (-v, u),
                    2 => (-u, -v),
                    _ => (v, -u),
                };
                shape_contains(class, u, v)
            }
        }
    }
}

/// Whether `(u, v)` (in `[-1, 1]^2`, units of the half extent) is inside the shape of `class`.
fn shape_contains(class: usize, u: f32, v: f32) -> bool {
    let r2 = u * u + v * v;
    match class {
        0 => r2 <= 1.0,                                    // disc
        1 => u.abs() <= 0.85 && v.abs() <= 0.85,           // square
        2 => v.abs() <= 0.9 && u.abs() <= (v + 0.9) / 1.8, // triangle, apex up
        3 => (u.abs() <= 0.34 && v.abs() <= 1.0) || (v.abs() <= 0.34 && u.abs() <= 1.0), // cross
        4 => (0.25..=1.0).contains(&r2),                   // ring, inner radius 0.5
        _ => u.abs() <= 1.0 && v.abs() <= 0.3,             // bar
    }
}

/// Composites `shape` in `colour` over `pixels` with supersampled coverage;
/// marks the pixels at least half covered in `mask`.
fn draw(
    pixels: &mut [f32],
    size: usize,
    shape: &Primitive,
    colour: [f32; 3],
    mut mask: Option<&mut Vec<bool>>,
) {
    let n = size * size;
    let [bx0, by0, bx1, by1] = shape.bounds();
    let lo = |v: f32| (v.floor().max(0.0) as usize).min(size);
    let hi = |v: f32| ((v.ceil() + 1.0).max(0.0) as usize).min(size);
    for y in lo(by0)..hi(by1) {
        for x in lo(bx0)..hi(bx1) {
            let mut hits = 0;
            for sy in 0..SUB {
                for sx in 0..SUB {
                    let px = x as f32 + (sx as f32 + 0.5) / SUB as f32;
                    let py = y as f32 + (sy as f32 + 0.5) / SUB as f32;
                    hits += usize::from(shape.contains(px, py));
                }
            }
            if hits == 0 {
                continue;
            }
            let a = hits as f32 / (SUB * SUB) as f32;
            for (c, &col) in colour.iter().enumerate() {
                let p = &mut pixels[c * n + y * size + x];
                *p = *p * (1.0 - a) + col * a;
            }
            if let Some(m) = mask.as_deref_mut() {
                m[y * size + x] = 2 * hits >= SUB * SUB;
            }
        }
    }
}
