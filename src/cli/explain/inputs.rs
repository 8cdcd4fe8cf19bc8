//! Loading and preprocessing one input of `explain`: read, check its
//! memory from its header, then decode, resize, crop and normalise an
//! image, or take a `.npy` tensor as it is (`Preprocess::prepare`). A
//! failure here is that input's own (it is reported, the others go on).

use super::plan::Plan;
use image::RgbImage;
use sightline::imageio::EncodedImage;
use sightline_tensor::Tensor;
use std::path::PathBuf;
use std::time::Instant;

/// One input ready for the model.
pub(super) struct Loaded {
    /// Its position among the run's inputs.
    pub(super) index: usize,
    /// The file it was read from.
    pub(super) path: PathBuf,
    /// The stem of its output files.
    pub(super) stem: String,
    /// Width and height of the file's image.
    pub(super) original_size: (u32, u32),
    /// The picture the model sees (after resize and crop), which the maps
    /// line up with.
    pub(super) picture: RgbImage,
    /// The model input, 1 x C x H x W.
    pub(super) tensor: Tensor<f32>,
    /// Milliseconds spent reading and preparing it.
    pub(super) load_ms: f64,
}

impl Loaded {
    /// Width and height of the model input.
    pub(super) fn input_size(&self) -> (u32, u32) {
        self.picture.dimensions()
    }
}

/// Milliseconds since `t`.
pub(super) fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Reads and prepares input `index` of the plan; an error is that input's
/// own, as one line naming it.
pub(super) fn load(plan: &Plan, index: usize) -> Result<Loaded, String> {
    let t = Instant::now();
    let item = &plan.inputs.items[index];
    let pre = &plan.inputs.preprocess;
    let encoded = EncodedImage::read(&item.path).map_err(|e| e.to_string())?;
    // Everything this input will allocate, from its header, before
    // decoding: its preprocessing and a pass of the model on it alone.
    let (w, h) = (encoded.width, encoded.height);
    let (iw, ih) = pre.input_size_of(&encoded);
    let needed = pre
        .memory_bytes_of(&encoded)
        .saturating_add(plan.pass_bytes(1, iw, ih));
    let what = format!(
        "{} ({w} x {h}, model input {iw} x {ih})",
        item.path.display()
    );
    plan.budget.check(what, needed).map_err(|e| e.to_string())?;
    let prepared = pre.prepare(&encoded).map_err(|e| e.to_string())?;
    Ok(Loaded {
        index,
        path: prepared.path,
        stem: item.stem.clone(),
        original_size: prepared.original_size,
        picture: prepared.image,
        tensor: prepared.tensor,
        load_ms: ms_since(t),
    })
}
