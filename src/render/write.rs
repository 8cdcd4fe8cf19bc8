//! Writing pictures and other outputs: PNG encoding, float32 `.npy`
//! arrays (maps and raw attributions), and atomic file writes.

use super::{MapRef, RenderError, Result};
use image::{ImageEncoder, RgbImage};
use npyz::WriterBuilder;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The PNG encoding of a picture.
pub fn encode_png(img: &RgbImage) -> std::result::Result<Vec<u8>, image::ImageError> {
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new(&mut bytes).write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(bytes)
}

/// Writes a picture as PNG to `path` atomically (see [`write_atomic`]).
pub fn write_png(img: &RgbImage, path: &Path) -> Result<()> {
    let bytes = encode_png(img).map_err(|e| RenderError::Encode {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

/// The `.npy` bytes of float32 `values` of `shape` in C order (row-major):
/// NumPy's format 1.0, dtype `<f4` (little-endian float32), what
/// `numpy.load` reads back as an array of that shape. `values` must hold
/// exactly the product of `shape` values (checked, without overflow,
/// before anything is allocated); NaN and infinities are written as they
/// are.
pub fn encode_npy(values: &[f32], shape: &[usize]) -> Result<Vec<u8>> {
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| RenderError::Invalid(format!("shape {shape:?} holds too many values")))?;
    if count != values.len() {
        return Err(RenderError::Invalid(format!(
            "{} values cannot have shape {shape:?} ({count} values)",
            values.len()
        )));
    }
    let invalid = |e: std::io::Error| RenderError::Invalid(format!("cannot encode .npy: {e}"));
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let capacity = values.len().saturating_mul(4).saturating_add(128);
    let mut bytes = Vec::with_capacity(capacity);
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&dims)
        .writer(&mut bytes)
        .begin_nd()
        .map_err(invalid)?;
    writer.extend(values.iter().copied()).map_err(invalid)?;
    writer.finish().map_err(invalid)?;
    Ok(bytes)
}

/// Writes a map as a `.npy` file of shape `height x width`, float32
/// ([`encode_npy`]), atomically ([`write_atomic`]): the raw values, before
/// any colormap, as `explain` writes `NAME.METHOD.CLASS.npy`.
pub fn write_npy_map(map: &MapRef<'_>, path: &Path) -> Result<()> {
    let bytes = encode_npy(map.values(), &[map.height(), map.width()])?;
    write_atomic(path, &bytes)
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Attempts at a fresh temporary name before giving up.
const TEMP_ATTEMPTS: u32 = 16;

/// Writes `bytes` to `path` so that `path` holds either its old content or
/// all of the new one, never a part: the bytes go to a hidden temporary file
/// in the same folder (`.NAME.PID.N.tmp`), are flushed to disk, and the file
/// is renamed over `path`. The temporary file is removed on failure.
///
/// The temporary file is created exclusively (`O_CREAT | O_EXCL`, which
/// never follows a symbolic link): a file or link planted under its name
/// is left alone and another name is tried. The rename replaces `path`
/// itself, so a symbolic link at `path` is replaced, not followed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |e: std::io::Error| RenderError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let name = path
        .file_name()
        .ok_or_else(|| RenderError::Invalid(format!("{} names no file", path.display())))?;
    let mut attempt = 0;
    let (temp, mut file) = loop {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp_name = format!(".{}.{}.{n}.tmp", name.to_string_lossy(), std::process::id());
        let temp = path.with_file_name(temp_name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
        {
            Ok(file) => break (temp, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < TEMP_ATTEMPTS => {
                attempt += 1;
            }
            Err(e) => return Err(err(e)),
        }
    };
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(err(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn atomic_writes_leave_only_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        let img = RgbImage::from_pixel(3, 2, Rgb([1, 2, 3]));
        write_png(&img, &path).unwrap();
        let back = image::open(&path).unwrap().to_rgb8();
        assert_eq!(back, img);
        write_atomic(&path, b"replaced").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"replaced");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.png")]);
        // A missing folder fails with the file's name and leaves nothing.
        let bad = dir.path().join("missing").join("b.png");
        let e = write_png(&img, &bad).unwrap_err().to_string();
        assert!(e.contains("b.png"), "{e}");
    }

    #[test]
    fn npy_arrays_read_back_with_their_shape_and_bits() {
        let values = [1.5f32, -2.0, 0.25, f32::MIN_POSITIVE, 0.0, -0.5];
        let bytes = encode_npy(&values, &[3, 1, 2]).unwrap();
        // NumPy's magic, format 1.0, and a header naming the dtype and shape.
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'descr': '<f4'"), "{header}");
        assert!(header.contains("'fortran_order': False"), "{header}");
        // npyz writes `(3, 1, 2, )`, which NumPy's `literal_eval` reads as (3, 1, 2).
        assert!(header.contains("'shape': (3, 1, 2"), "{header}");
        // The data: the values' little-endian bytes, in order, nothing after.
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(&bytes[10 + header_len..], &data[..]);
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(npy.shape(), &[3, 1, 2]);
        assert_eq!(npy.into_vec::<f32>().unwrap(), values);
        // A scalar shape holds one value.
        let one = encode_npy(&[7.0], &[]).unwrap();
        assert_eq!(npyz::NpyFile::new(&one[..]).unwrap().shape(), &[] as &[u64]);
    }

    #[test]
    fn npy_shapes_that_do_not_fit_the_values_are_refused() {
        let e = encode_npy(&[1.0, 2.0, 3.0], &[2, 2])
            .unwrap_err()
            .to_string();
        assert!(e.contains("3 values cannot have shape [2, 2]"), "{e}");
        let e = encode_npy(&[], &[usize::MAX, 2]).unwrap_err().to_string();
        assert!(e.contains("too many values"), "{e}");
        // A zero dimension holds no values, and says so.
        assert!(encode_npy(&[], &[0, 5]).is_ok());
        assert!(encode_npy(&[1.0], &[0, 5]).is_err());
    }

    #[test]
    fn maps_are_written_as_height_by_width_arrays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.npy");
        // Two rows of three.
        let values = [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0];
        let map = MapRef::new(&values, 3, 2).unwrap();
        write_npy_map(&map, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(npy.shape(), &[2, 3]);
        assert_eq!(npy.into_vec::<f32>().unwrap(), values);
        let bad = dir.path().join("missing").join("m.npy");
        let e = write_npy_map(&map, &bad).unwrap_err().to_string();
        assert!(e.contains("m.npy"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn planted_links_at_temporary_names_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, b"keep me").unwrap();
        // Plant a link at the next temporary names this process will use.
        let next = TEMP_COUNTER.load(Ordering::Relaxed);
        for n in next..next + 4 {
            let name = format!(".out.json.{}.{n}.tmp", std::process::id());
            std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
        }
        let out = dir.path().join("out.json");
        write_atomic(&out, b"new").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        // A link at the destination itself is replaced, not written through.
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_atomic(&link, b"other").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert!(!std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
