//! Parity with torchvision and Pillow on stored references
//! (`tests/fixtures/preprocess/`): torchvision's input tensors of three
//! photos (JPEG and PNG), and Pillow's decoded pixels, resizes and
//! transforms of small files covering the other decoder paths
//! (`make_pillow_cases.py`).

use super::*;
use image::RgbImage;
use safetensors::{Dtype, SafeTensors};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/preprocess/"
    ))
    .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Pillow's picture under `key` (uint8, H x W x 3).
fn pillow_picture(st: &SafeTensors, key: &str) -> RgbImage {
    let t = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    assert_eq!(t.dtype(), Dtype::U8, "{key}");
    let shape = t.shape();
    assert_eq!(shape.len(), 3, "{key}");
    assert_eq!(shape[2], 3, "{key}");
    RgbImage::from_raw(shape[1] as u32, shape[0] as u32, t.data().to_vec()).unwrap()
}

/// How many samples differ, and by how much at most.
fn differences(got: &RgbImage, want: &RgbImage) -> (usize, i32) {
    assert_eq!(got.dimensions(), want.dimensions());
    got.as_raw()
        .iter()
        .zip(want.as_raw())
        .filter(|(a, b)| a != b)
        .fold((0, 0), |(n, m), (&a, &b)| {
            (n + 1, m.max((i32::from(a) - i32::from(b)).abs()))
        })
}

#[test]
fn tensors_equal_torchvision_bit_for_bit() {
    let bytes = read("preprocess.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    assert_eq!(names.len(), 6);
    let pre = Preprocess::imagenet();
    for name in names {
        let want = st.tensor(name).unwrap();
        assert_eq!(want.dtype(), Dtype::F32);
        assert_eq!(want.shape(), &[3, 224, 224]);
        let want: Vec<u32> = want
            .data()
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let got = pre.load(&fixture(name)).unwrap();
        assert_eq!(got.tensor.shape(), &[1, 3, 224, 224], "{name}");
        let differing = got
            .tensor
            .data()
            .iter()
            .zip(&want)
            .filter(|(g, &w)| g.to_bits() != w)
            .count();
        assert_eq!(differing, 0, "{name}: {differing} values differ");
    }
}

#[test]
fn decoded_pictures_equal_pillow() {
    let bytes = read("pillow_cases.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut files: Vec<&str> = st
        .names()
        .into_iter()
        .map(String::as_str)
        .filter(|n| !n.contains('/'))
        .collect();
    files.sort();
    // Every JPEG and PNG variant the generator writes.
    assert_eq!(files.len(), 22, "{files:?}");
    for file in files {
        let want = pillow_picture(&st, file);
        let got = read_rgb(&fixture(&format!("pillow_cases/{file}")))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let (n, max) = differences(&got, &want);
        assert_eq!(
            n, 0,
            "{file}: {n} samples differ from Pillow's, by up to {max}"
        );
    }
}

#[test]
fn resizes_equal_pillow() {
    let bytes = read("pillow_cases.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let src = read_rgb(&fixture("pillow_cases/noise.png")).unwrap();
    let mut keys: Vec<&str> = st
        .names()
        .into_iter()
        .map(String::as_str)
        .filter(|n| n.starts_with("resize/"))
        .collect();
    keys.sort();
    assert_eq!(keys.len(), 11);
    for key in keys {
        let want = pillow_picture(&st, key);
        let got = resize_bilinear(&src, want.width(), want.height()).unwrap();
        let (n, max) = differences(&got, &want);
        assert_eq!(
            n, 0,
            "{key}: {n} samples differ from Pillow's, by up to {max}"
        );
    }
}

#[test]
fn upscaling_transforms_equal_pillow() {
    let bytes = read("pillow_cases.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for file in ["tiny.png", "j420.jpg"] {
        let want = pillow_picture(&st, &format!("transform/{file}"));
        let original = read_rgb(&fixture(&format!("pillow_cases/{file}"))).unwrap();
        assert!(original.width().min(original.height()) < 256);
        let got = Preprocess::imagenet().transform(&original).unwrap();
        let (n, max) = differences(&got, &want);
        assert_eq!(
            n, 0,
            "{file}: {n} samples differ from Pillow's, by up to {max}"
        );
    }
}

#[test]
fn npy_inputs_prepare_as_they_were_saved() {
    let dir = tempfile::tempdir().unwrap();
    let pre = Preprocess::imagenet();
    let photo = pre.load(&fixture("chelsea.jpg")).unwrap();
    let path = dir.path().join("chelsea.input.npy");
    write_npy_input(&path, &photo.tensor).unwrap();
    let encoded = EncodedImage::read(&path).unwrap();
    assert_eq!(encoded.format(), InputFormat::Npy);
    assert_eq!((encoded.width, encoded.height), (224, 224));
    assert_eq!(pre.input_size_of(&encoded), (224, 224));
    assert_eq!(pre.memory_bytes_of(&encoded), 15 * 224 * 224);
    assert!(matches!(encoded.decode(), Err(ImageError::Decode { .. })));
    // Used as it is, even with options that would resize an image.
    let other = Preprocess {
        resize: Some(100),
        crop: Some(50),
        ..pre.clone()
    };
    let again = other.prepare(&encoded).unwrap();
    let bits = |t: &sightline_tensor::Tensor<f32>| -> Vec<u32> {
        t.data().iter().map(|v| v.to_bits()).collect()
    };
    assert_eq!(again.tensor.shape(), &[1, 3, 224, 224]);
    assert_eq!(bits(&again.tensor), bits(&photo.tensor));
    // Its picture is the picture the tensor was made of.
    assert_eq!(again.original_size, (224, 224));
    assert_eq!(pre.load(&path).unwrap().image, photo.image);
}
