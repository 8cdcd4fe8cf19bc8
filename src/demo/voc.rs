//! Pascal VOC annotations for the pointing game: the XML files, the class
//! masks (union of the class's boxes, 1-based inclusive coordinates) and
//! which (image, class) pairs are played, with TorchRay's `difficult` rules.

use super::pointing::{Mask, Trial};
use super::{DemoError, Result};
use crate::budget::{model_pass_bytes, product, MemoryBudget};
use crate::files::{read_regular_text, MAX_XML_BYTES};
use crate::imageio::EncodedImage;
use std::path::{Path, PathBuf};

/// The 20 Pascal VOC classes, in TorchRay's (and torchvision's) order.
pub const VOC_CLASSES: [&str; 20] = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

/// One annotated object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VocObject {
    /// Class name.
    pub name: String,
    /// VOC's `difficult` flag.
    pub difficult: bool,
    /// `[xmin, ymin, xmax, ymax]`, 1-based, inclusive.
    pub bbox: [i64; 4],
}

/// One annotation file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VocAnnotation {
    /// The image's file name (`<filename>`).
    pub filename: String,
    /// Image width (`<size><width>`).
    pub width: usize,
    /// Image height (`<size><height>`).
    pub height: usize,
    /// The objects, in file order.
    pub objects: Vec<VocObject>,
}

/// Which (image, class) pairs the pointing game plays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Subset {
    /// Every class present in an image, except a class all of whose boxes
    /// there are `difficult` (TorchRay's rule).
    #[default]
    All,
    /// Only the classes that have a `difficult` box in the image (and, as
    /// always, not only difficult boxes).
    Difficult,
}

/// The first child element of `node` named `name`.
fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    node.children().find(|c| c.has_tag_name(name))
}

/// Parses VOC annotation XML; `origin` names it in errors.
pub fn parse_annotation(text: &str, origin: &str) -> Result<VocAnnotation> {
    let err = |message: String| DemoError::Annotation {
        path: origin.to_string(),
        message,
    };
    let doc = roxmltree::Document::parse(text).map_err(|e| err(format!("not XML: {e}")))?;
    let root = doc.root_element();
    if root.tag_name().name() != "annotation" {
        return Err(err(format!(
            "root element is <{}>, not <annotation>",
            root.tag_name().name()
        )));
    }
    let text_of = |node: roxmltree::Node, name: &str| -> Result<String> {
        child(node, name)
            .and_then(|c| c.text())
            .map(|t| t.trim().to_string())
            .ok_or_else(|| err(format!("<{}> has no <{name}>", node.tag_name().name())))
    };
    let number = |node: roxmltree::Node, name: &str| -> Result<i64> {
        let t = text_of(node, name)?;
        // VOC files sometimes write coordinates as "273.0".
        t.parse::<i64>()
            .ok()
            .or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .map(|v| v as i64)
            })
            .ok_or_else(|| err(format!("<{name}> is `{t}`, not a number")))
    };
    let filename = text_of(root, "filename")?;
    let size = child(root, "size").ok_or_else(|| err("no <size>".into()))?;
    let (width, height) = (number(size, "width")?, number(size, "height")?);
    if width <= 0 || height <= 0 {
        return Err(err(format!(
            "image size {width} x {height} is not positive"
        )));
    }
    let mut objects = Vec::new();
    for obj in root.children().filter(|c| c.has_tag_name("object")) {
        let name = text_of(obj, "name")?;
        let difficult = match child(obj, "difficult").and_then(|d| d.text()) {
            None => false,
            Some(t) => t.trim() != "0",
        };
        let b =
            child(obj, "bndbox").ok_or_else(|| err(format!("object `{name}` has no <bndbox>")))?;
        let bbox = [
            number(b, "xmin")?,
            number(b, "ymin")?,
            number(b, "xmax")?,
            number(b, "ymax")?,
        ];
        objects.push(VocObject {
            name,
            difficult,
            bbox,
        });
    }
    Ok(VocAnnotation {
        filename,
        width: width as usize,
        height: height as usize,
        objects,
    })
}

impl VocAnnotation {
    /// The mask of class `name`: the union of its boxes (difficult ones
    /// included), 1-based inclusive coordinates, clipped to the image.
    pub fn mask(&self, name: &str) -> Mask {
        let mut mask = Mask::new(self.width, self.height);
        for o in self.objects.iter().filter(|o| o.name == name) {
            let [x0, y0, x1, y1] = o.bbox;
            let clip = |v: i64, n: usize| (v - 1).clamp(0, n as i64) as usize;
            let (x0, x1) = (clip(x0, self.width), clip(x1 + 1, self.width));
            let (y0, y1) = (clip(y0, self.height), clip(y1 + 1, self.height));
            if x0 >= x1 {
                continue; // an empty or inverted box covers nothing
            }
            for y in y0..y1 {
                mask.data[y * self.width + x0..y * self.width + x1].fill(true);
            }
        }
        mask
    }

    /// The class names played in this image under `subset`, in order of first appearance.
    pub fn played_classes(&self, subset: Subset) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for o in &self.objects {
            if !names.contains(&o.name) {
                names.push(o.name.clone());
            }
        }
        names.retain(|n| {
            let boxes: Vec<&VocObject> = self.objects.iter().filter(|o| &o.name == n).collect();
            let all_difficult = boxes.iter().all(|o| o.difficult);
            let any_difficult = boxes.iter().any(|o| o.difficult);
            !all_difficult && (subset == Subset::All || any_difficult)
        });
        names
    }

    /// The trials of this image for a model with class names `classes`;
    /// objects of other classes are not played. Also returns how many played
    /// class names the model does not know.
    pub fn trials(&self, classes: &[String], subset: Subset) -> (Vec<Trial>, usize) {
        let mut unknown = 0;
        let mut trials = Vec::new();
        for name in self.played_classes(subset) {
            match classes.iter().position(|c| *c == name) {
                Some(class) => trials.push(Trial {
                    class,
                    mask: self.mask(&name),
                }),
                None => unknown += 1,
            }
        }
        (trials, unknown)
    }
}

/// An annotation and its image file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VocEntry {
    /// The XML file.
    pub xml: PathBuf,
    /// The image file.
    pub image: PathBuf,
    /// The parsed annotation.
    pub annotation: VocAnnotation,
}

/// The annotated images of a folder, sorted by XML file name: a VOC layout
/// (`DIR/Annotations/*.xml`, images in `DIR/JPEGImages/`) or a flat folder
/// (XML files beside their images). The image is the annotation's
/// `<filename>`, else the XML file's stem with `.jpg`, `.jpeg` or `.png`.
pub fn scan_folder(dir: &Path) -> Result<Vec<VocEntry>> {
    if !dir.is_dir() {
        return Err(DemoError::io(dir, "not a folder"));
    }
    let ann_dir = if dir.join("Annotations").is_dir() {
        dir.join("Annotations")
    } else {
        dir.to_path_buf()
    };
    let img_dir = if dir.join("JPEGImages").is_dir() {
        dir.join("JPEGImages")
    } else {
        ann_dir.clone()
    };
    let mut xmls: Vec<PathBuf> = std::fs::read_dir(&ann_dir)
        .map_err(|e| DemoError::io(&ann_dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml")))
        .collect();
    xmls.sort();
    if xmls.is_empty() {
        return Err(DemoError::io(&ann_dir, "no .xml annotation files"));
    }
    let mut entries = Vec::new();
    for xml in xmls {
        let text = read_regular_text(&xml, "annotation", MAX_XML_BYTES)
            .map_err(|e| DemoError::Invalid(e.to_string()))?;
        let annotation = parse_annotation(&text, &xml.display().to_string())?;
        let stem = xml
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let candidates = std::iter::once(img_dir.join(&annotation.filename)).chain(
            ["jpg", "jpeg", "png"]
                .iter()
                .map(|e| img_dir.join(format!("{stem}.{e}"))),
        );
        let image = candidates
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| {
                DemoError::io(
                    &img_dir.join(&annotation.filename),
                    "image of the annotation not found",
                )
            })?;
        entries.push(VocEntry {
            xml,
            image,
            annotation,
        });
    }
    Ok(entries)
}

/// Reads an image as a 1 x 3 x H x W model input, `(v / 255 - mean) / std`
/// per channel, resized (bilinear) to `resize` x `resize` when given.
/// Only regular files are read; a truncated JPEG is an error.
pub fn load_image(
    path: &Path,
    mean: [f32; 3],
    std: [f32; 3],
    resize: Option<usize>,
) -> Result<sightline_tensor::Tensor<f32>> {
    let encoded = EncodedImage::read(path).map_err(|e| image_error(path, e))?;
    encoded_input(&encoded, mean, std, resize)
}

fn image_error(path: &Path, e: impl std::fmt::Display) -> DemoError {
    DemoError::Image {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// [`load_image`] of an image already read.
fn encoded_input(
    encoded: &EncodedImage,
    mean: [f32; 3],
    std: [f32; 3],
    resize: Option<usize>,
) -> Result<sightline_tensor::Tensor<f32>> {
    let path = encoded.path.as_path();
    let mut rgb = encoded.decode().map_err(|e| image_error(path, e))?;
    if let Some(s) = resize {
        let s = u32::try_from(s)
            .map_err(|_| DemoError::Invalid(format!("input size {s} is too large")))?;
        rgb = image::imageops::resize(&rgb, s, s, image::imageops::FilterType::Triangle);
    }
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let mut data = vec![0f32; 3 * w * h];
    for (i, p) in rgb.pixels().enumerate() {
        for c in 0..3 {
            data[c * w * h + i] = (p[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    Ok(sightline_tensor::Tensor::from_vec([1, 3, h, w], data)?)
}

/// Upper bound of the bytes of one VOC image's step: its decoded picture
/// and resize, the masks of its `played` classes at the annotation's size,
/// and one pass of the model on its input.
fn image_step_bytes(
    model: &sightline_layers::Model<f32>,
    encoded: &EncodedImage,
    annotation: &VocAnnotation,
    played: usize,
    resize: Option<usize>,
) -> u64 {
    let (w, h) = (u64::from(encoded.width), u64::from(encoded.height));
    let (iw, ih) = match resize {
        Some(s) => (s, s),
        None => (encoded.width as usize, encoded.height as usize),
    };
    let masks = product(
        played as u64,
        &[annotation.width as u64, annotation.height as u64],
    );
    // Decoded (up to 8 bytes per pixel) and RGB copies, the resize's f32
    // intermediate, the resized picture and the f32 input.
    let picture = product(11, &[w, h])
        .saturating_add(product(16, &[w, ih as u64]))
        .saturating_add(product(15, &[iw as u64, ih as u64]));
    masks
        .saturating_add(picture)
        .saturating_add(model_pass_bytes(model, &[1, 3, ih, iw], false))
}

/// Counts of a VOC pointing game.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VocStats {
    /// Annotation files read.
    pub images: usize,
    /// Images with at least one played class.
    pub played_images: usize,
    /// Played (image, class) pairs whose class the model does not know (skipped).
    pub unknown_classes: usize,
}

/// Plays the pointing game on the annotated images of `dir` (see
/// [`scan_folder`]): each played class of each image is explained at the
/// image's input size and its map resized to the annotation's size.
pub fn play_folder(
    game: &mut super::pointing::PointingGame,
    model: &sightline_layers::Model<f32>,
    dir: &Path,
    classes: &[String],
    subset: Subset,
    normalize: ([f32; 3], [f32; 3]),
    resize: Option<usize>,
) -> Result<VocStats> {
    let budget = MemoryBudget::from_machine();
    play_folder_within(
        game,
        model,
        dir,
        (classes, subset),
        normalize,
        resize,
        &budget,
    )
}

/// [`play_folder`] within a memory budget: an image whose step (see the
/// module's documentation) would need more is an error naming it, before
/// anything of it is allocated.
pub fn play_folder_within(
    game: &mut super::pointing::PointingGame,
    model: &sightline_layers::Model<f32>,
    dir: &Path,
    (classes, subset): (&[String], Subset),
    normalize: ([f32; 3], [f32; 3]),
    resize: Option<usize>,
    budget: &MemoryBudget,
) -> Result<VocStats> {
    let entries = scan_folder(dir)?;
    let mut stats = VocStats {
        images: entries.len(),
        ..VocStats::default()
    };
    for e in &entries {
        let names = e.annotation.played_classes(subset);
        let played = names.iter().filter(|n| classes.contains(n)).count();
        if played == 0 {
            stats.unknown_classes += names.len();
            continue;
        }
        let encoded = EncodedImage::read(&e.image).map_err(|err| image_error(&e.image, err))?;
        let needed = image_step_bytes(model, &encoded, &e.annotation, played, resize);
        budget
            .check(
                format!(
                    "{} ({} x {} annotated, {} x {} image, {played} classes)",
                    e.xml.display(),
                    e.annotation.width,
                    e.annotation.height,
                    encoded.width,
                    encoded.height
                ),
                needed,
            )
            .map_err(|err| DemoError::Invalid(err.to_string()))?;
        let (trials, unknown) = e.annotation.trials(classes, subset);
        stats.unknown_classes += unknown;
        stats.played_images += 1;
        let input = encoded_input(&encoded, normalize.0, normalize.1, resize)?;
        drop(encoded);
        // One item whose classes are explained from one forward pass.
        game.play(model, &input, &[trials])?;
    }
    Ok(stats)
}
