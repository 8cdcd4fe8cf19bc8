//! Writing pictures and other outputs: PNG encoding and atomic file writes.

use super::{RenderError, Result};
use image::{ImageEncoder, RgbImage};
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
