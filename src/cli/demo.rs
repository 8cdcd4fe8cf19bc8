//! `sightline demo`: explains held-out generated images with every method
//! using the model shipped in the binary, writes heatmaps, overlays and a
//! comparison grid, and prints TorchRay's pointing game on held-out images.

use image::{Rgb, RgbImage};
use sightline::demo::dataset::{self, Sample};
use sightline::demo::embedded;
use sightline::demo::pointing::{first_max, play_generated, scaled_tolerance};
use sightline::demo::train::argmax;
use sightline::render::{
    heatmap, labelled_grid, overlay, write_atomic, write_png, BarScale, ColorBar, ColorBars,
    Colormap, LabelStyle, LabelledRow, MapRef, ValueRange,
};
use sightline_attribution::{Explainer, Method, Resize, SaliencyOptions, Target};
use sightline_tensor::resize::resize2d;
use sightline_tensor::{ResizeMode, Tensor};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Folder of the pictures (created if missing).
    #[arg(long, default_value = "demo-out")]
    out: PathBuf,
    /// Held-out images to explain and draw (the first six show each class once).
    #[arg(long, default_value_t = 6)]
    images: usize,
    /// Held-out images of the pointing game (0 skips it; at most 100000).
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Colormap of the heatmaps: jet, viridis or gray.
    #[arg(long, default_value = "jet")]
    colormap: Colormap,
    /// Magnification of the pictures (the images are 64 x 64 pixels).
    #[arg(long, default_value_t = 4)]
    scale: u32,
}

/// Runs the demo: pictures first, then the pointing game table.
pub fn run(args: Args) -> Result<ExitCode, super::CliError> {
    if !(1..=60).contains(&args.images) {
        return Err(format!("--images must be between 1 and 60, got {}", args.images).into());
    }
    if args.count > 100_000 {
        return Err(format!("--count must be at most 100000, got {}", args.count).into());
    }
    if !(1..=16).contains(&args.scale) {
        return Err(format!("--scale must be between 1 and 16, got {}", args.scale).into());
    }
    let started = Instant::now();
    let (model, card) = embedded::model()?;
    let size = card.image_size;
    let methods = Method::all();
    sightline::outln!(
        "sightline demo: a small VGG trained by `sightline train-demo` to tell {} apart in {size} x {size} images",
        card.classes.join(", ")
    );

    let layers = model.default_layers();
    sightline::outln!(
        "methods probe the input, except grad_cam (layer {}) and the excitation methods (layer {}, contrast at {})",
        layers.grad_cam, layers.excitation, layers.contrast
    );

    // Explain the true class of each image with every method.
    let samples = dataset::generate(dataset::TEST_SEED, 0, args.images, size);
    let input = dataset::to_input(&samples);
    let explainer = Explainer::new(&model, &input)?;
    let k = card.classes.len();
    let predicted: Vec<usize> = explainer.logits().data().chunks(k).map(argmax).collect();
    let target = Target::PerItem(samples.iter().map(|s| s.class).collect());
    let opts = SaliencyOptions {
        resize: Resize::Input,
        ..SaliencyOptions::default()
    };
    let maps: Vec<Tensor<f32>> = methods
        .iter()
        .map(|m| explainer.saliency(m, &target, &opts).map(|s| s.map))
        .collect::<Result<_, _>>()?;

    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create `{}`: {e}", args.out.display()))?;
    let mut rows = Vec::new();
    let mut written = 0usize;
    for (i, sample) in samples.iter().enumerate() {
        let stem = format!("{i:03}_{}", card.classes[sample.class]);
        let picture = magnify(&sample.to_rgb8(), args.scale);
        write_png(&picture, &args.out.join(format!("{stem}.png")))?;
        written += 1;
        let mut row = vec![picture.clone()];
        for (method, map) in methods.iter().zip(&maps) {
            let plane = &map.data()[i * size * size..(i + 1) * size * size];
            let (heat, blended) = draw_map(plane, size, &picture, args.scale, args.colormap)?;
            write_png(
                &heat,
                &args
                    .out
                    .join(format!("{stem}_{}_heatmap.png", method.name())),
            )?;
            write_png(
                &blended,
                &args
                    .out
                    .join(format!("{stem}_{}_overlay.png", method.name())),
            )?;
            written += 2;
            row.push(blended);
        }
        let verdict = if predicted[i] == sample.class {
            "right"
        } else {
            "WRONG"
        };
        sightline::outln!(
            "  image {i}: a {} at {}; the model says {} ({verdict})",
            card.classes[sample.class],
            describe_place(sample),
            card.classes[predicted[i]]
        );
        let caption = format!(
            "{stem}: a {}; the model says {} ({verdict})",
            card.classes[sample.class], card.classes[predicted[i]]
        );
        rows.push(LabelledRow::new(vec![caption], row));
    }
    let grid_path = args.out.join("grid.png");
    // Each map is scaled to its own range: one bar reads "low ... high".
    let header: Vec<&str> = std::iter::once("image")
        .chain(methods.iter().map(Method::name))
        .collect();
    let bar = ColorBars::Whole(ColorBar::new(args.colormap, BarScale::Relative));
    let picture = labelled_grid(&header, &rows, &bar, &LabelStyle::default())?;
    write_png(&picture, &grid_path)?;
    written += 1;
    sightline::outln!(
        "wrote {written} PNG files to {}: per image `NNN_class.png`, and per method `_heatmap.png` and `_overlay.png` (+ marks the map's maximum)",
        args.out.display()
    );
    sightline::outln!(
        "comparison grid: {} (rows: images; columns: image, {})",
        grid_path.display(),
        methods
            .iter()
            .map(Method::name)
            .collect::<Vec<_>>()
            .join(", ")
    );

    if args.count > 0 {
        let tolerance = scaled_tolerance(size);
        let game = play_generated(
            &model,
            &methods,
            dataset::TEST_SEED,
            args.count,
            size,
            tolerance,
            50,
        )?;
        let table = game.table();
        sightline::outln!();
        sightline::outln!(
            "pointing game (TorchRay's protocol) on {} held-out images (seed {}), tolerance {tolerance:.2} px (15 px at 224 px):",
            args.count,
            dataset::TEST_SEED
        );
        sightline::out!("{table}");
        write_atomic(&args.out.join("pointing_game.txt"), table.as_bytes())?;
    }
    sightline::outln!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// "the upper left", "the centre", ...: where the object's mask lies.
fn describe_place(s: &Sample) -> String {
    let Some([x0, y0, x1, y1]) = s.bbox() else {
        return "nowhere".into();
    };
    let third = |c: usize| (3 * c / s.size).min(2);
    let (col, row) = (third((x0 + x1) / 2), third((y0 + y1) / 2));
    let v = ["top", "middle", "bottom"][row];
    let h = ["left", "centre", "right"][col];
    match (row, col) {
        (1, 1) => "the centre".into(),
        (1, _) => format!("the {h}"),
        (_, 1) => format!("the {v}"),
        _ => format!("the {v} {h}"),
    }
}

/// The picture magnified `scale` times, pixels kept square.
fn magnify(img: &RgbImage, scale: u32) -> RgbImage {
    image::imageops::resize(
        img,
        img.width() * scale,
        img.height() * scale,
        image::imageops::FilterType::Nearest,
    )
}

/// The heatmap of a `size x size` map (upsampled bilinearly to the picture)
/// and its overlay on `picture`, with a cross at the map's first maximum.
fn draw_map(
    plane: &[f32],
    size: usize,
    picture: &RgbImage,
    scale: u32,
    colormap: Colormap,
) -> Result<(RgbImage, RgbImage), super::CliError> {
    let big = size * scale as usize;
    let t = Tensor::from_vec([1, 1, size, size], plane.to_vec())?;
    let up = resize2d(&t, (big, big), ResizeMode::Bilinear)?;
    let map = MapRef::new(up.data(), big, big)?;
    let range = ValueRange::of(up.data()).unwrap_or(ValueRange { min: 0.0, max: 1.0 });
    let heat = heatmap(&map, range, colormap);
    let mut blended = overlay(picture, &heat, 0.5)?;
    let (x, y) = first_max(plane, size);
    let (cx, cy) = (
        (x as u32 * scale + scale / 2) as i64,
        (y as u32 * scale + scale / 2) as i64,
    );
    let arm = 2 * scale as i64;
    for d in -arm..=arm {
        for (px, py) in [(cx + d, cy), (cx, cy + d)] {
            if (0..big as i64).contains(&px) && (0..big as i64).contains(&py) {
                let c = if d.abs() <= 1 {
                    Rgb([0, 0, 0])
                } else {
                    Rgb([255, 255, 255])
                };
                blended.put_pixel(px as u32, py as u32, c);
            }
        }
    }
    Ok((heat, blended))
}
