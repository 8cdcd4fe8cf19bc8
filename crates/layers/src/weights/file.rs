//! Opening a weights file: regular files only, memory-mapped, so that a
//! model's tensors are converted one by one from the file's pages instead of
//! from a copy of the whole file (peak memory: the weights plus one tensor).

use crate::error::{LayerError, Result};
use memmap2::Mmap;
use sightline_onnx::file_kind;
use std::fs::{File, OpenOptions};
use std::path::Path;

/// Opens `path` for reading without blocking: on Unix with `O_NONBLOCK`,
/// so that opening a FIFO with no writer returns at once (the flag changes
/// nothing for a regular file).
fn open_nonblocking(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK is 0o4000 on Linux and 0x4 on the BSDs and macOS; the
        // standard library exposes no constant, and this crate does not
        // depend on libc.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        options.custom_flags(0o4000);
        #[cfg(any(
            target_os = "macos",
            target_os = "ios",
            target_os = "freebsd",
            target_os = "netbsd",
            target_os = "openbsd"
        ))]
        options.custom_flags(0x4);
    }
    options.open(path)
}

/// Maps the regular file `path` read-only.
///
/// The file is opened without blocking and its type is checked on the
/// opened file (`fstat`), so a FIFO, a device (`/dev/zero`), a directory or
/// a socket is an error that says what it is, never a hang or an endless
/// read; a symbolic link loop is the system's error ("too many levels of
/// symbolic links"). An empty file gives an empty map.
pub fn map_regular_file(path: &Path) -> Result<Mmap> {
    let io = |message: String| LayerError::Io {
        path: path.display().to_string(),
        message,
    };
    let file = open_nonblocking(path).map_err(|e| io(e.to_string()))?;
    let meta = file.metadata().map_err(|e| io(e.to_string()))?;
    if !meta.file_type().is_file() {
        return Err(io(format!(
            "not a regular file (it is {})",
            file_kind(&meta.file_type())
        )));
    }
    // SAFETY: the map is read-only and private to this process. As with any
    // memory map, another process truncating the file while it is mapped
    // would fault; the loader takes that risk, as every mmap-based weights
    // loader does, to avoid a copy of the whole file.
    unsafe { Mmap::map(&file) }.map_err(|e| io(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "sightline-layers-file-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn regular_files_are_mapped() {
        let dir = temp_dir("regular");
        let path = dir.join("w.safetensors");
        std::fs::write(&path, [1u8, 2, 3, 250]).unwrap();
        assert_eq!(&map_regular_file(&path).unwrap()[..], &[1, 2, 3, 250]);
        let empty = dir.join("empty");
        std::fs::write(&empty, []).unwrap();
        assert!(map_regular_file(&empty).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn other_files_are_named_not_read() {
        let dir = temp_dir("special");
        let e = map_regular_file(&dir).unwrap_err().to_string();
        assert!(e.contains("not a regular file (it is a directory)"), "{e}");
        let e = map_regular_file(&dir.join("absent"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("absent"), "{e}");
        #[cfg(unix)]
        {
            let e = map_regular_file(Path::new("/dev/zero"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("a character device"), "{e}");
            let fifo = dir.join("fifo");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if made.is_ok_and(|s| s.success()) {
                // Would block forever without O_NONBLOCK (no writer).
                let e = map_regular_file(&fifo).unwrap_err().to_string();
                assert!(e.contains("a FIFO"), "{e}");
            }
            let (a, b) = (dir.join("loop_a"), dir.join("loop_b"));
            std::os::unix::fs::symlink(&a, &b).unwrap();
            std::os::unix::fs::symlink(&b, &a).unwrap();
            let e = map_regular_file(&a).unwrap_err().to_string();
            assert!(e.contains("loop_a"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
