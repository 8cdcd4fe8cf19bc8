//! SIGINT and SIGTERM during `explain`: the current image is finished, the
//! rest are recorded as not explained (`interrupted`), and `summary.json` is
//! written; a second signal ends the process at once (exit code 130).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Whether, and by which signal, the run was asked to stop.
#[derive(Clone, Debug, Default)]
pub struct Interrupt {
    asked: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Interrupt {
    /// A flag that nothing sets (for tests and callers without signals).
    pub fn none() -> Self {
        Self::default()
    }

    /// Installs the handlers of SIGINT and SIGTERM (through `signal-hook`):
    /// the first signal sets the flag, a second one exits with status 130.
    pub fn install() -> std::io::Result<Self> {
        let me = Self::default();
        #[cfg(unix)]
        {
            use signal_hook::consts::{SIGINT, SIGTERM};
            use signal_hook::flag;
            for sig in [SIGINT, SIGTERM] {
                // Registered first, so it sees the flag as the earlier signal left it.
                flag::register_conditional_shutdown(sig, 130, Arc::clone(&me.asked))?;
                flag::register_usize(sig, Arc::clone(&me.signal), sig as usize)?;
                flag::register(sig, Arc::clone(&me.asked))?;
            }
        }
        Ok(me)
    }

    /// Asks the run to stop, as a signal does.
    pub fn ask(&self, signal: usize) {
        self.signal.store(signal, Ordering::SeqCst);
        self.asked.store(true, Ordering::SeqCst);
    }

    /// Whether a signal arrived.
    pub fn asked(&self) -> bool {
        self.asked.load(Ordering::SeqCst)
    }

    /// The signal's name, once one arrived.
    pub fn signal_name(&self) -> Option<&'static str> {
        if !self.asked() {
            return None;
        }
        Some(match self.signal.load(Ordering::SeqCst) {
            15 => "SIGTERM",
            _ => "SIGINT",
        })
    }

    /// The exit status of an interrupted run: 128 + the signal (130 for
    /// SIGINT, 143 for SIGTERM).
    pub fn exit_status(&self) -> u8 {
        match self.signal.load(Ordering::SeqCst) {
            15 => 143,
            _ => 130,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asking_sets_the_flag_and_status() {
        let i = Interrupt::none();
        assert!(!i.asked());
        assert_eq!(i.signal_name(), None);
        i.ask(15);
        assert!(i.asked());
        assert_eq!(i.signal_name(), Some("SIGTERM"));
        assert_eq!(i.exit_status(), 143);
        let j = Interrupt::none();
        j.ask(2);
        assert_eq!((j.signal_name(), j.exit_status()), (Some("SIGINT"), 130));
    }
}
