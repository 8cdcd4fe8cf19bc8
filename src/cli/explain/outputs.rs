//! The files of `explain`: input pictures, raw `.npy` maps, heatmaps,
//! overlays and the rows of `grid.png`.

use super::maps::ImageResult;
use super::setup::Setup;
use super::Args;
use crate::cli::CliError;
use image::RgbImage;
use sightline::render::{heatmap, overlay, write_atomic, write_png, MapRef, ValueRange};
use std::path::Path;

/// The `.npy` bytes of a map: f32, shape `h x w`, C order.
pub fn npy_bytes(values: &[f32], height: usize, width: usize) -> std::io::Result<Vec<u8>> {
    use npyz::WriterBuilder;
    let mut bytes = Vec::new();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[height as u64, width as u64])
        .writer(&mut bytes)
        .begin_nd()?;
    writer.extend(values.iter().copied())?;
    writer.finish()?;
    Ok(bytes)
}

/// Creates the output folder the first time a file is written.
pub(super) fn ensure_out(out: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()).into())
}

/// Writes the input picture and the raw maps of one image.
pub(super) fn write_raw(out: &Path, s: &Setup, r: &mut ImageResult) -> Result<(), CliError> {
    ensure_out(out)?;
    let input = format!("{}.input.png", r.stem);
    write_png(&r.image, &out.join(&input))?;
    for m in &mut r.maps {
        let name = format!("{}.{}.{}.npy", r.stem, s.methods[m.method].name(), m.class);
        write_atomic(&out.join(&name), &npy_bytes(&m.values, m.height, m.width)?)?;
        m.files.insert("npy", name);
        m.files.insert("input", input.clone());
    }
    Ok(())
}

/// Writes the heatmap and overlay of every map of one image, each with `range`
/// of its method (or its own range); returns the overlays, one per map.
pub(super) fn write_pictures(
    out: &Path,
    s: &Setup,
    args: &Args,
    r: &mut ImageResult,
    shared: Option<&[Option<ValueRange>]>,
) -> Result<Vec<RgbImage>, CliError> {
    let mut overlays = Vec::new();
    for m in &mut r.maps {
        let range = match shared {
            Some(ranges) => ranges[m.method],
            None => m.range,
        }
        .unwrap_or(ValueRange { min: 0.0, max: 0.0 });
        let map = MapRef::new(&m.values, m.width, m.height)?;
        let heat = heatmap(&map, range, args.colormap);
        let blend = overlay(&r.image, &heat, args.alpha)?;
        let base = format!("{}.{}.{}", r.stem, s.methods[m.method].name(), m.class);
        let (heat_name, overlay_name) =
            (format!("{base}.heatmap.png"), format!("{base}.overlay.png"));
        write_png(&heat, &out.join(&heat_name))?;
        write_png(&blend, &out.join(&overlay_name))?;
        m.files.insert("heatmap", heat_name);
        m.files.insert("overlay", overlay_name);
        m.scale = Some(range);
        overlays.push(blend);
    }
    Ok(overlays)
}

/// Grid rows of one image: per class, the input then one overlay per method.
pub(super) fn grid_rows(s: &Setup, r: &ImageResult, overlays: &[RgbImage]) -> Vec<Vec<RgbImage>> {
    r.classes
        .iter()
        .map(|&(class, _)| {
            let mut row = vec![r.image.clone()];
            for mi in 0..s.methods.len() {
                if let Some(i) = r
                    .maps
                    .iter()
                    .position(|m| m.method == mi && m.class == class)
                {
                    row.push(overlays[i].clone());
                }
            }
            row
        })
        .collect()
}
