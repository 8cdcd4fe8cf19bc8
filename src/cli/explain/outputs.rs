//! The files of `explain`: the input picture (and tensor), the `.npy` of
//! every map, the rendered heatmaps and overlays, the rows of `grid.png`.
//! Every file is written atomically.

use super::maps::ImageResult;
use super::plan::Plan;
use crate::cli::CliError;
use image::RgbImage;
use sightline::render::{
    heatmap, overlay, write_atomic, write_png, BarScale, ColorBar, ColorBars, LabelledRow, MapRef,
    ValueRange,
};
use std::path::Path;

/// The `.npy` bytes of float32 `values` of `shape`, C order.
pub fn npy_bytes(values: &[f32], shape: &[usize]) -> std::io::Result<Vec<u8>> {
    use npyz::WriterBuilder;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut bytes = Vec::new();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
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

/// The base of a map's file names: `STEM.METHOD.CLASS`.
fn map_base(plan: &Plan, r: &ImageResult, method: usize, class: usize) -> String {
    format!("{}.{}.{class}", r.stem, plan.methods[method].method.name())
}

/// Writes the input picture (and, with `--save-input`, the input tensor)
/// and the `.npy` of every map of one image: Captum's raw attribution in
/// its own shape, the map (`h x w`) for the other methods.
pub(super) fn write_raw(plan: &Plan, r: &mut ImageResult) -> Result<(), CliError> {
    let out = plan.outputs.folder.as_path();
    ensure_out(out)?;
    let input = format!("{}.input.png", r.stem);
    write_png(&r.image, &out.join(&input))?;
    let input_npy = match r.input.take() {
        Some(t) => {
            let name = format!("{}.input.npy", r.stem);
            // C x H x W: the tensor the model saw, without the batch axis.
            let shape = t.shape().get(1..).unwrap_or_default().to_vec();
            write_atomic(&out.join(&name), &npy_bytes(t.data(), &shape)?)?;
            Some(name)
        }
        None => None,
    };
    for i in 0..r.maps.len() {
        let name = format!(
            "{}.npy",
            map_base(plan, r, r.maps[i].method, r.maps[i].class)
        );
        let m = &mut r.maps[i];
        let values = m.raw.as_ref().unwrap_or(&m.values);
        write_atomic(&out.join(&name), &npy_bytes(values, &m.npy_shape)?)?;
        m.files.insert("npy", name);
        m.files.insert("input", input.clone());
        if let Some(n) = &input_npy {
            m.files.insert("input_npy", n.clone());
        }
    }
    Ok(())
}

/// Renders and writes the heatmap and overlay of every map of one image,
/// each stretched over `shared`'s range for its method (or its own range),
/// in its method's colormap; returns the overlays, one per map.
pub(super) fn write_pictures(
    plan: &Plan,
    r: &mut ImageResult,
    shared: Option<&[Option<ValueRange>]>,
) -> Result<Vec<RgbImage>, CliError> {
    let out = plan.outputs.folder.as_path();
    let mut overlays = Vec::new();
    for i in 0..r.maps.len() {
        let base = map_base(plan, r, r.maps[i].method, r.maps[i].class);
        let m = &mut r.maps[i];
        let range = match shared {
            Some(ranges) => ranges[m.method],
            None => m.range,
        }
        .unwrap_or(ValueRange { min: 0.0, max: 0.0 });
        let map = MapRef::new(&m.values, m.width, m.height)?;
        let heat = heatmap(&map, range, plan.methods[m.method].colormap);
        let blend = overlay(&r.image, &heat, plan.outputs.alpha)?;
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

/// Grid rows of one image: per class, a caption (the file, the class's
/// name and score) over the input and one overlay per method (an empty cell
/// for a method without a map of that class).
pub(super) fn grid_rows(plan: &Plan, r: &ImageResult, overlays: &[RgbImage]) -> Vec<LabelledRow> {
    let file = r
        .path
        .file_name()
        .map_or_else(|| r.stem.clone(), |n| n.to_string_lossy().into_owned());
    r.classes
        .iter()
        .map(|&(class, score)| {
            let mut cells = vec![Some(r.image.clone())];
            cells.extend((0..plan.methods.len()).map(|mi| {
                r.maps
                    .iter()
                    .position(|m| m.method == mi && m.class == class)
                    .map(|i| overlays[i].clone())
            }));
            LabelledRow {
                lines: vec![format!("{file} · {}", plan.labels.describe(class, score))],
                cells,
            }
        })
        .collect()
}

/// The header of `grid.png`: "input", then each method (with the layer it
/// probes, if not the input).
pub(super) fn grid_header(plan: &Plan) -> Vec<String> {
    std::iter::once("input".to_string())
        .chain(plan.methods.iter().map(|m| {
            if m.layer.is_empty() {
                m.method.name().to_string()
            } else {
                format!("{} @ {}", m.method.name(), m.layer)
            }
        }))
        .collect()
}

/// The colour bar of each column of `grid.png`: none for the input, then
/// each method's colormap with its scale (relative for per-map
/// normalisation, the numbers of `shared` otherwise).
pub(super) fn grid_bars(plan: &Plan, shared: &[Option<ValueRange>]) -> ColorBars {
    let normalize = plan.outputs.normalize;
    ColorBars::PerColumn(
        std::iter::once(None)
            .chain(plan.methods.iter().enumerate().map(|(i, m)| {
                let range = shared.get(i).copied().flatten();
                Some(ColorBar::new(
                    m.colormap,
                    BarScale::for_normalize(normalize, range),
                ))
            }))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_files_keep_shape_and_values() {
        let values = [1.5f32, -2.0, 0.25, 8.0, 0.0, -0.5];
        let bytes = npy_bytes(&values, &[3, 1, 2]).unwrap();
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(npy.shape(), &[3, 1, 2]);
        assert_eq!(npy.into_vec::<f32>().unwrap(), values);
    }
}
