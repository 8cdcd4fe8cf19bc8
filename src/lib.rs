//! # sightline
//!
//! Saliency maps for convolutional networks, on the CPU: a tensor and tape
//! autograd engine whose backward rules are chosen at backward time, the
//! torchvision model zoo loaded from safetensors, and the saliency methods of
//! TorchRay and Captum with their numbers.
//!
//! This crate is the facade: it re-exports the workspace's crates and holds
//! the `sightline` command's building blocks.
#![warn(missing_docs)]

pub use sightline_attribution as attribution;
pub use sightline_autograd as autograd;
pub use sightline_layers as layers;
pub use sightline_tensor as tensor;

pub mod allocator;
pub mod budget;
pub mod demo;
pub mod evaluation_report;
pub mod files;
pub mod imageio;
pub mod interrupt;
pub mod labels;
pub mod manifest;
pub mod output;
pub mod render;

pub use sightline_layers::footprint;

/// The README's library example (`sightline::...` paths, as a program
/// using the crate writes them) resolves here too.
#[cfg(test)]
extern crate self as sightline;

/// The README's library example, compiled and run on the tiny fixture
/// model; a test checks that the README shows exactly this code.
#[cfg(test)]
mod readme_example {
    // README example: begin
    use sightline::attribution::{Explainer, Method, Resize, SaliencyOptions, Target};
    use sightline::imageio::Preprocess;
    use sightline::layers::{Architecture, Model};
    use sightline::render::{
        heatmap, overlay, write_npy_map, write_png, Colormap, MapRef, ValueRange,
    };
    use std::path::Path;

    /// Explains the best class of `photo` with each of TorchRay's methods:
    /// `METHOD.npy` (the map) and `METHOD.png` (its overlay) in `out`.
    fn explain_photo(
        arch: &Architecture,
        weights: &Path,
        photo: &Path,
        out: &Path,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let model = Model::<f32>::from_safetensors(arch, weights)?;
        // torchvision's Resize(256), CenterCrop(224), ToTensor(), Normalize(ImageNet)
        let input = Preprocess::imagenet().load(photo)?;
        let x = &input.tensor; // 1 x 3 x 224 x 224, torchvision's bit for bit
        let ex = Explainer::new(&model, x)?; // one forward pass
        let best = Target::top_k(ex.logits(), 1)?[0][0];
        let opts = SaliencyOptions {
            resize: Resize::Input,
            ..Default::default()
        };
        for method in Method::all() {
            // every method from the same recorded pass; s.map: 1 x 1 x 224 x 224
            let s = ex.saliency(&method, &Target::Class(best), &opts)?;
            let map = MapRef::from_tensor(&s.map)?;
            write_npy_map(&map, &out.join(format!("{}.npy", method.name())))?;
            let range = ValueRange::of(map.values()).ok_or("no finite value")?;
            let heat = heatmap(&map, range, Colormap::Jet);
            let picture = overlay(&input.image, &heat, 0.5)?;
            write_png(&picture, &out.join(format!("{}.png", method.name())))?;
        }
        Ok(())
    }
    // README example: end

    use sightline::layers::Architecture as Arch;

    const BEGIN: &str = "README example: begin\n";
    const END: &str = "    // README example: end";

    /// The example's code as the README shows it: the lines between the
    /// markers, without this module's indentation.
    fn example_code() -> String {
        let source = include_str!("lib.rs");
        let start = source.find(BEGIN).map(|i| i + BEGIN.len()).unwrap();
        let end = source.find(END).unwrap();
        source[start..end]
            .lines()
            .map(|l| l.strip_prefix("    ").unwrap_or(l))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn the_readme_shows_this_example() {
        let readme = include_str!("../README.md");
        let block = format!("```rust\n{}```\n", example_code());
        assert!(
            readme.contains(&block),
            "README.md's library example differs from src/lib.rs's; it should read:\n{block}"
        );
    }

    #[test]
    fn the_example_writes_each_map_as_npy_and_png() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures.join("manifest.json")).unwrap())
                .unwrap();
        let arch = Arch::from_json_value(&manifest["models"]["tiny_vgg"]["architecture"]).unwrap();
        let weights = fixtures.join("tiny_vgg.safetensors");
        let photo = fixtures.join("preprocess/chelsea.jpg");
        let out = tempfile::tempdir().unwrap();
        explain_photo(&arch, &weights, &photo, out.path()).unwrap();

        // The same maps computed here, to compare with the files.
        let model = Model::<f32>::from_safetensors(&arch, &weights).unwrap();
        let input = Preprocess::imagenet().load(&photo).unwrap();
        let ex = Explainer::new(&model, &input.tensor).unwrap();
        let best = Target::top_k(ex.logits(), 1).unwrap()[0][0];
        let opts = SaliencyOptions {
            resize: Resize::Input,
            ..Default::default()
        };
        let mut varying = Vec::new();
        for method in Method::all() {
            let name = method.name();
            let want = ex.saliency(&method, &Target::Class(best), &opts).unwrap();
            let bytes = std::fs::read(out.path().join(format!("{name}.npy"))).unwrap();
            let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
            assert_eq!(npy.shape(), &[224, 224], "{name}");
            let got = npy.into_vec::<f32>().unwrap();
            let same_bits = got
                .iter()
                .zip(want.map.data())
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same_bits && got.len() == 224 * 224, "{name}");
            // The overlay at the map's first largest value: the colormap's
            // last colour (its first for a constant map) blended half and
            // half with the photo's pixel.
            let png = image::open(out.path().join(format!("{name}.png")))
                .unwrap()
                .to_rgb8();
            assert_eq!(png.dimensions(), (224, 224), "{name}");
            let range = ValueRange::of(&got).unwrap();
            let top = got.iter().position(|&v| v == range.max).unwrap();
            let colour = if range.max > range.min {
                varying.push(name);
                Colormap::Jet.rgb(1.0)
            } else {
                Colormap::Jet.rgb(0.0)
            };
            let (x, y) = ((top % 224) as u32, (top / 224) as u32);
            let photo_px = input.image.get_pixel(x, y).0;
            let blended: Vec<u8> = (0..3)
                .map(|c| {
                    (0.5 * f32::from(photo_px[c]) + 0.5 * f32::from(colour.0[c])).round() as u8
                })
                .collect();
            assert_eq!(
                png.get_pixel(x, y).0.to_vec(),
                blended,
                "{name} at ({x}, {y})"
            );
        }
        // The tiny model's Grad-CAM of this photo is 0 everywhere (its
        // weighted activations are all negative before the ReLU).
        assert_eq!(
            varying,
            [
                "gradient",
                "deconvnet",
                "guided_backprop",
                "linear_approx",
                "excitation_backprop",
                "contrastive_excitation_backprop"
            ],
            "the methods whose map is not constant"
        );
    }
}
