//! Reading the files a user names: regular files only, their size bounded
//! before reading.
//!
//! A FIFO, a device (`/dev/zero`), a socket or a directory given where a
//! file is expected is refused with a message that says what it is; a
//! symbolic link loop gets the system's message ("too many levels of
//! symbolic links"). Files are opened with `O_NONBLOCK`, so that opening a
//! FIFO with no writer returns at once, and the type is checked on the
//! opened file (`fstat`), so that nothing can swap the file between the
//! check and the read. A file larger than its limit is refused before a
//! byte is read, and the read itself stops at the limit (a file that grows
//! meanwhile is refused too).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Largest architecture JSON, reference manifest or model card read (16 MiB).
pub const MAX_JSON_BYTES: u64 = 16 << 20;
/// Largest Pascal VOC annotation read (16 MiB).
pub const MAX_XML_BYTES: u64 = 16 << 20;
/// Largest image file read (1 GiB; the decoded size is bounded separately
/// by the memory budget from the image's header).
pub const MAX_IMAGE_FILE_BYTES: u64 = 1 << 30;

/// Why a file could not be read.
#[derive(Debug, Error)]
pub enum FileError {
    /// The path names something other than a regular file.
    #[error("{what} {}: not a regular file (it is {kind})", path.display())]
    NotRegular {
        /// What the file was to be (`weights`, `image`, ...).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The file is larger than what is read of its kind.
    #[error("{what} {}: {size} bytes, more than the {limit} read at most", path.display())]
    TooLarge {
        /// What the file was to be.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Its size (or at least this many bytes, for a file that grew).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The system refused to open or read it (missing, permissions, a
    /// symbolic link loop).
    #[error("{what} {}: {message}", path.display())]
    Io {
        /// What the file was to be.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The system's message.
        message: String,
    },
    /// The file is not UTF-8 text.
    #[error("{what} {}: not UTF-8 text", path.display())]
    NotText {
        /// What the file was to be.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
}

pub use sightline_onnx::file_kind;

/// Opens `path` if it is a regular file (see the module's documentation);
/// returns the file and its size. `what` names the file in errors.
pub fn open_regular(path: &Path, what: &'static str) -> Result<(File, u64), FileError> {
    let io = |e: std::io::Error| FileError::Io {
        what,
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular {
            what,
            path: path.to_path_buf(),
            kind: file_kind(&meta.file_type()),
        });
    }
    Ok((file, meta.len()))
}

/// Checks that `path` is a regular file of at most `limit` bytes without
/// reading it; returns its size.
pub fn check_regular(path: &Path, what: &'static str, limit: u64) -> Result<u64, FileError> {
    let (_, size) = open_regular(path, what)?;
    if size > limit {
        return Err(FileError::TooLarge {
            what,
            path: path.to_path_buf(),
            size,
            limit,
        });
    }
    Ok(size)
}

/// Reads the regular file `path`, at most `limit` bytes.
pub fn read_regular(path: &Path, what: &'static str, limit: u64) -> Result<Vec<u8>, FileError> {
    let (file, size) = open_regular(path, what)?;
    let too_large = |size| FileError::TooLarge {
        what,
        path: path.to_path_buf(),
        size,
        limit,
    };
    if size > limit {
        return Err(too_large(size));
    }
    let mut bytes = Vec::new();
    // One byte past the limit tells a file that grew after the check.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| FileError::Io {
            what,
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Reads the regular file `path` as UTF-8 text, at most `limit` bytes.
pub fn read_regular_text(path: &Path, what: &'static str, limit: u64) -> Result<String, FileError> {
    String::from_utf8(read_regular(path, what, limit)?).map_err(|_| FileError::NotText {
        what,
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_within_their_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        std::fs::write(&p, "{\"a\": 1}").unwrap();
        assert_eq!(
            read_regular_text(&p, "manifest", 100).unwrap(),
            "{\"a\": 1}"
        );
        assert_eq!(check_regular(&p, "manifest", 8).unwrap(), 8);
        let e = read_regular(&p, "manifest", 7).unwrap_err();
        assert!(
            matches!(
                e,
                FileError::TooLarge {
                    size: 8,
                    limit: 7,
                    ..
                }
            ),
            "{e}"
        );
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        assert!(matches!(
            read_regular_text(&p, "manifest", 100),
            Err(FileError::NotText { .. })
        ));
    }

    #[test]
    fn special_files_are_named_and_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_regular(dir.path(), "weights", 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "weights {}: not a regular file (it is a directory)",
                dir.path().display()
            )
        );
        #[cfg(unix)]
        {
            let e = read_regular(Path::new("/dev/zero"), "image", 10).unwrap_err();
            assert!(e.to_string().contains("a character device"), "{e}");
            let fifo = dir.path().join("fifo");
            assert!(std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success());
            // Without O_NONBLOCK this open would wait for a writer forever.
            let e = read_regular(&fifo, "manifest", 10).unwrap_err();
            assert!(e.to_string().contains("(it is a FIFO)"), "{e}");
            let (a, b) = (dir.path().join("a"), dir.path().join("b"));
            std::os::unix::fs::symlink(&a, &b).unwrap();
            std::os::unix::fs::symlink(&b, &a).unwrap();
            let e = read_regular(&a, "architecture file", 10).unwrap_err();
            assert!(
                e.to_string().to_lowercase().contains("symbolic links"),
                "{e}"
            );
        }
        let e = read_regular(&dir.path().join("absent"), "weights", 10).unwrap_err();
        assert!(matches!(e, FileError::Io { .. }), "{e}");
    }
}
