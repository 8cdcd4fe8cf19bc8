//! Printing to standard output and standard error that a closed pipe ends
//! quietly (`sightline compare | head -1`): `println!` panics when a write
//! fails, these stop printing instead.
//!
//! The first failed write to a stream (a broken pipe, a closed descriptor,
//! a full disk) marks it closed; later writes to it are skipped. The run
//! goes on and ends with its own exit code: its files are still written.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

fn write_to(closed: &AtomicBool, mut out: impl Write, text: &str) -> bool {
    if closed.load(Ordering::Relaxed) {
        return false;
    }
    let ok = out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_ok();
    if !ok {
        closed.store(true, Ordering::Relaxed);
    }
    ok
}

/// Writes `text` to standard output; `false` once standard output is closed.
pub fn stdout_text(text: &str) -> bool {
    write_to(&STDOUT_CLOSED, std::io::stdout().lock(), text)
}

/// Writes `text` to standard error; `false` once standard error is closed.
pub fn stderr_text(text: &str) -> bool {
    write_to(&STDERR_CLOSED, std::io::stderr().lock(), text)
}

/// Whether a write to standard output has failed (the reader went away).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// `println!` that stops quietly on a closed standard output
/// ([`stdout_text`]); evaluates to whether the line was written.
#[macro_export]
macro_rules! outln {
    () => { $crate::output::stdout_text("\n") };
    ($($arg:tt)*) => { $crate::output::stdout_text(&format!("{}\n", format_args!($($arg)*))) };
}

/// `print!` that stops quietly on a closed standard output.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::stdout_text(&format!($($arg)*)) };
}

/// `eprintln!` that stops quietly on a closed standard error.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::output::stderr_text(&format!("{}\n", format_args!($($arg)*))) };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_broken_pipe_closes_the_stream_quietly() {
        let closed = AtomicBool::new(false);
        let mut buf = Vec::new();
        assert!(write_to(&closed, &mut buf, "a\n"));
        assert_eq!(buf, b"a\n");
        assert!(!write_to(&closed, Broken, "b\n"));
        assert!(closed.load(Ordering::Relaxed));
        // Later writes are skipped, even to a working writer.
        assert!(!write_to(&closed, &mut buf, "c\n"));
        assert_eq!(buf, b"a\n");
    }
}
