//! Naming the inputs: folders expanded to their input files, and the
//! `r,g,b` options of the preprocessing.

use super::{ImageError, Result};
use std::path::{Path, PathBuf};

/// File extensions (lower case) that a folder is expanded to: images and
/// preprocessed `.npy` tensors.
pub const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "npy"];

/// Expands the arguments to input files: a folder becomes its `.jpg`,
/// `.jpeg`, `.png` and `.npy` files (any case, not recursive) sorted by
/// name; a file is kept whatever its name. A path that does not exist, an
/// unreadable folder or a folder without inputs is an error.
pub fn expand_inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| ImageError::Read {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && has_image_extension(p))
                .collect();
            if files.is_empty() {
                return Err(ImageError::EmptyFolder { path: path.clone() });
            }
            files.sort();
            out.extend(files);
        } else if std::fs::symlink_metadata(path).is_ok() {
            // Whatever it is (a FIFO, a device, a dangling or looping
            // link), reading it tells, for this input alone.
            out.push(path.clone());
        } else {
            return Err(ImageError::NotFound { path: path.clone() });
        }
    }
    Ok(out)
}

/// Whether the file name ends in `.jpg`, `.jpeg`, `.png` or `.npy` (any
/// case).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

/// Parses `r,g,b` (three comma-separated numbers), as `--mean` and `--std` take.
pub fn parse_triple(s: &str) -> std::result::Result<[f32; 3], String> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.len() != 3 {
        return Err(format!(
            "expected three comma-separated numbers (r,g,b), got `{s}`"
        ));
    }
    let mut out = [0.0f32; 3];
    for (o, p) in out.iter_mut().zip(&parts) {
        *o = p
            .parse()
            .map_err(|_| format!("`{p}` is not a number (in `{s}`)"))?;
        if !o.is_finite() {
            return Err(format!("`{p}` is not finite (in `{s}`)"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triples_parse() {
        assert_eq!(parse_triple("0.5, 0.25,1").unwrap(), [0.5, 0.25, 1.0]);
        assert!(parse_triple("1,2").is_err());
        assert!(parse_triple("1,x,2").unwrap_err().contains("`x`"));
        assert!(parse_triple("1,inf,2").is_err());
    }

    #[test]
    fn folders_expand_to_inputs() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.png", "a.JPG", "c.npy", "d.jpeg", "notes.txt", "e.NPY"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.png")).unwrap();
        let files = expand_inputs(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.JPG", "b.png", "c.npy", "d.jpeg", "e.NPY"]);
        // A file is kept whatever its name.
        let txt = dir.path().join("notes.txt");
        assert_eq!(expand_inputs(std::slice::from_ref(&txt)).unwrap(), [txt]);
        let missing = dir.path().join("zz.png");
        assert!(matches!(
            expand_inputs(&[missing]),
            Err(ImageError::NotFound { .. })
        ));
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let e = expand_inputs(&[empty]).unwrap_err();
        assert!(matches!(e, ImageError::EmptyFolder { .. }));
        assert!(e.to_string().contains(".npy"), "{e}");
    }
}
