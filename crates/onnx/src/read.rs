//! Files: the model file and the external data files beside it, memory
//! mapped and wrapped in [`Bytes`] so that decoding slices instead of
//! copying.

use crate::error::{OnnxError, Result};
use crate::proto::TensorProto;
use bytes::Bytes;
use std::collections::HashMap;
use std::fs::{File, FileType, Metadata};
use std::path::{Component, Path, PathBuf};

/// Largest model file read (2 GiB, the protobuf limit of one message).
pub const MAX_MODEL_BYTES: u64 = 1 << 31;

/// What a file that is not a regular file is (`a FIFO`, `a directory`,
/// ...), for messages; shared by every reader of the workspace.
pub fn file_kind(ft: &FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Checks that `meta` describes a regular file.
fn require_file(path: &Path, meta: &Metadata) -> Result<()> {
    if meta.file_type().is_file() {
        Ok(())
    } else {
        Err(OnnxError::NotAFile {
            path: path.to_path_buf(),
            kind: file_kind(&meta.file_type()),
        })
    }
}

/// Maps a regular file read-only into a [`Bytes`]. The type is checked with
/// `metadata` before opening (opening a FIFO would block), and again on the
/// opened file. A file larger than `limit` bytes is refused.
fn map_file(path: &Path, limit: Option<u64>) -> Result<Bytes> {
    let io = |source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    require_file(path, &meta)?;
    if let Some(limit) = limit {
        if meta.len() > limit {
            return Err(OnnxError::FileTooLarge {
                path: path.to_path_buf(),
                size: meta.len(),
                limit,
            });
        }
    }
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    require_file(path, &meta)?;
    if meta.len() == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: the map is read-only and private to this process. As with any
    // memory map, another process truncating the file while it is mapped
    // would fault; the reader takes that risk, as every mmap-based loader
    // does, to avoid copying the weights.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    Ok(Bytes::from_owner(map))
}

/// Reads a model file: regular files only, at most [`MAX_MODEL_BYTES`].
pub fn read_model_file(path: &Path) -> Result<Bytes> {
    map_file(path, Some(MAX_MODEL_BYTES))
}

/// Resolves the external data of tensors (`data_location = EXTERNAL`)
/// against the model's folder, mapping each data file once.
pub struct ExternalData {
    dir: Option<PathBuf>,
    canonical_dir: Option<PathBuf>,
    files: HashMap<PathBuf, Bytes>,
}

impl ExternalData {
    /// External data looked up in `dir`; `None` makes any external data an
    /// error.
    pub fn new(dir: Option<&Path>) -> Self {
        Self {
            dir: dir.map(Path::to_path_buf),
            canonical_dir: None,
            files: HashMap::new(),
        }
    }

    /// The bytes of `t`'s external data: the `location` file (relative,
    /// inside the model's folder), from `offset`, `length` bytes (or to the
    /// end of the file).
    pub fn tensor_bytes(&mut self, t: &TensorProto) -> Result<Bytes> {
        let mut location = None;
        let mut offset = None;
        let mut length = None;
        for entry in &t.external_data {
            match entry.key.as_str() {
                "location" => location = Some(entry.value.as_str()),
                "offset" => offset = Some(entry.value.as_str()),
                "length" => length = Some(entry.value.as_str()),
                _ => {}
            }
        }
        let location = location.unwrap_or("");
        let err = |message: String| OnnxError::ExternalData {
            tensor: t.name.clone(),
            location: location.to_string(),
            message,
        };
        if location.is_empty() {
            return Err(err("no location given".into()));
        }
        let number = |what: &str, v: Option<&str>| -> Result<Option<u64>> {
            v.map(|s| {
                s.trim()
                    .parse::<u64>()
                    .map_err(|_| err(format!("{what} {s:?} is not a non-negative integer")))
            })
            .transpose()
        };
        let offset = number("offset", offset)?.unwrap_or(0);
        let length = number("length", length)?;
        check_relative(location).map_err(err)?;
        let canonical_dir = self.canonical_dir().map_err(err)?;
        let joined = canonical_dir.join(location);
        let full = joined.canonicalize().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                err(format!("missing file {}", joined.display()))
            } else {
                err(format!("{}: {e}", joined.display()))
            }
        })?;
        if !full.starts_with(&canonical_dir) {
            return Err(err(format!(
                "resolves to {}, outside the model's folder",
                full.display()
            )));
        }
        let data = match self.files.get(&full) {
            Some(data) => data.clone(),
            None => {
                let data = map_file(&full, None).map_err(|e| err(e.to_string()))?;
                self.files.insert(full.clone(), data.clone());
                data
            }
        };
        let size = data.len() as u64;
        let end = match length {
            Some(length) => offset.checked_add(length),
            None => Some(size.max(offset)),
        };
        match end {
            Some(end) if offset <= size && end <= size => {
                // Both fit in the mapped length, hence in usize.
                let (start, end) = (offset as usize, end as usize);
                Ok(data.slice(start..end))
            }
            _ => Err(err(format!(
                "offset {offset} length {} is past the end of the {size}-byte file",
                length.map_or("(to end)".to_string(), |l| l.to_string())
            ))),
        }
    }

    /// The model's folder, canonicalized once.
    fn canonical_dir(&mut self) -> std::result::Result<PathBuf, String> {
        if let Some(dir) = &self.canonical_dir {
            return Ok(dir.clone());
        }
        let dir = self
            .dir
            .as_ref()
            .ok_or("the model was read from bytes without a folder for external data")?;
        let canonical = dir
            .canonicalize()
            .map_err(|e| format!("model folder {}: {e}", dir.display()))?;
        self.canonical_dir = Some(canonical.clone());
        Ok(canonical)
    }
}

/// Refuses an absolute location or one with `..` (or any root or prefix)
/// component.
fn check_relative(location: &str) -> std::result::Result<(), String> {
    let path = Path::new(location);
    if path.is_absolute() || path.has_root() {
        return Err("an absolute location is refused".into());
    }
    for c in path.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err("a location with '..' is refused".into()),
            Component::RootDir | Component::Prefix(_) => {
                return Err("an absolute location is refused".into())
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{StringStringEntryProto, DATA_LOCATION_EXTERNAL};

    fn external(location: &str, offset: Option<&str>, length: Option<&str>) -> TensorProto {
        let mut entries = vec![StringStringEntryProto {
            key: "location".into(),
            value: location.into(),
        }];
        if let Some(o) = offset {
            entries.push(StringStringEntryProto {
                key: "offset".into(),
                value: o.into(),
            });
        }
        if let Some(l) = length {
            entries.push(StringStringEntryProto {
                key: "length".into(),
                value: l.into(),
            });
        }
        TensorProto {
            name: "w".into(),
            data_location: DATA_LOCATION_EXTERNAL,
            external_data: entries,
            ..Default::default()
        }
    }

    #[test]
    fn relative_locations_only() {
        assert!(check_relative("w.data").is_ok());
        assert!(check_relative("./sub/w.data").is_ok());
        assert!(check_relative("../w.data").is_err());
        assert!(check_relative("sub/../../w.data").is_err());
        assert!(check_relative("/etc/passwd").is_err());
    }

    #[test]
    fn ranges_are_checked_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w.data"), [1u8, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        let mut ext = ExternalData::new(Some(dir.path()));
        let b = ext
            .tensor_bytes(&external("w.data", Some("2"), Some("4")))
            .unwrap();
        assert_eq!(&b[..], &[3, 4, 5, 6]);
        let b = ext
            .tensor_bytes(&external("w.data", Some("6"), None))
            .unwrap();
        assert_eq!(&b[..], &[7, 8]);
        for (o, l) in [("6", "4"), ("9", "0"), ("18446744073709551615", "2")] {
            let e = ext
                .tensor_bytes(&external("w.data", Some(o), Some(l)))
                .unwrap_err();
            assert!(e.to_string().contains("past the end"), "{e}");
        }
        let e = ext
            .tensor_bytes(&external("w.data", Some("-1"), None))
            .unwrap_err();
        assert!(e.to_string().contains("not a non-negative integer"), "{e}");
    }

    #[test]
    fn escapes_and_missing_files_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let model_dir = root.path().join("model");
        std::fs::create_dir(&model_dir).unwrap();
        std::fs::write(root.path().join("secret"), [0u8; 4]).unwrap();
        let mut ext = ExternalData::new(Some(&model_dir));
        for loc in ["../secret", "/etc/hostname", ""] {
            assert!(matches!(
                ext.tensor_bytes(&external(loc, None, None)),
                Err(OnnxError::ExternalData { .. })
            ));
        }
        let e = ext
            .tensor_bytes(&external("nothere.data", None, None))
            .unwrap_err();
        assert!(e.to_string().contains("missing file"), "{e}");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root.path().join("secret"), model_dir.join("link")).unwrap();
            let e = ext.tensor_bytes(&external("link", None, None)).unwrap_err();
            assert!(e.to_string().contains("outside the model's folder"), "{e}");
        }
        let mut none = ExternalData::new(None);
        assert!(none.tensor_bytes(&external("w.data", None, None)).is_err());
    }

    #[test]
    fn non_files_are_refused_before_opening() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_model_file(dir.path()),
            Err(OnnxError::NotAFile {
                kind: "a directory",
                ..
            })
        ));
        #[cfg(unix)]
        assert!(matches!(
            read_model_file(Path::new("/dev/null")),
            Err(OnnxError::NotAFile { .. })
        ));
        #[cfg(unix)]
        {
            let fifo = dir.path().join("fifo");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if made.is_ok_and(|s| s.success()) {
                assert!(matches!(
                    read_model_file(&fifo),
                    Err(OnnxError::NotAFile { kind: "a FIFO", .. })
                ));
            }
        }
        assert!(matches!(
            read_model_file(&dir.path().join("absent.onnx")),
            Err(OnnxError::Io { .. })
        ));
        let empty = dir.path().join("empty.onnx");
        std::fs::write(&empty, []).unwrap();
        assert!(read_model_file(&empty).unwrap().is_empty());
    }
}
