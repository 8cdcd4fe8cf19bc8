//! The fuzz loop: input `i` of a run is made from the corpus by an RNG
//! seeded with `(seed, i)`, passed to the target under `catch_unwind`, and
//! timed; a watchdog thread ends the process on an input that runs longer
//! than the hang limit (after saving it). A panicking input is saved,
//! minimized (chunks removed while it still panics at the same place) and
//! reported with the panic's message and location.

use super::targets::Target;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// How one run goes.
#[derive(Clone, Debug)]
pub struct Config {
    /// The run's seed: input `i` is a function of `(seed, i)` alone.
    pub seed: u64,
    /// Inputs to run.
    pub execs: u64,
    /// An input slower than this is listed as slow.
    pub slow: Duration,
    /// An input slower than this is a hang: it is saved and the process ends.
    pub hang: Duration,
    /// Where panicking and hanging inputs are written.
    pub out_dir: PathBuf,
    /// Print a progress line this often (`None`: quiet).
    pub progress: Option<Duration>,
}

/// A panic found.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The execution index that found it.
    pub exec: u64,
    /// `file:line:col` of the panic (or `?` when it panicked on another thread).
    pub location: String,
    /// The panic's message.
    pub message: String,
    /// The input, as found.
    pub input: PathBuf,
    /// The input, minimized.
    pub minimized: PathBuf,
    /// The minimized input's length.
    pub minimized_len: usize,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The target.
    pub target: String,
    /// Inputs run.
    pub execs: u64,
    /// Inputs the parser accepted.
    pub accepted: u64,
    /// Inputs refused with an error value.
    pub rejected: u64,
    /// Distinct error messages (their first 60 characters) and their counts.
    pub errors: BTreeMap<String, u64>,
    /// Panics, one per distinct location.
    pub panics: Vec<Finding>,
    /// Panicking inputs in all (including repeats of a known location).
    pub panicking_inputs: u64,
    /// Inputs over [`Config::slow`]: `(exec, time)`.
    pub slow: Vec<(u64, Duration)>,
    /// The slowest input.
    pub max_time: Duration,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Report {
    /// Executions per second.
    pub fn rate(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A summary line.
    pub fn summary(&self) -> String {
        format!(
            "{:<12} {:>9} execs in {:>7.1} s ({:>8.0} exec/s): {:>8} accepted, {:>9} errors ({} distinct), {} panics ({} inputs), {} slow, slowest {:.1} ms",
            self.target,
            self.execs,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.accepted,
            self.rejected,
            self.errors.len(),
            self.panics.len(),
            self.panicking_inputs,
            self.slow.len(),
            self.max_time.as_secs_f64() * 1e3
        )
    }
}

thread_local! {
    /// Set while this thread runs a target: its panics are recorded, not printed.
    static CAPTURE: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
    static FUZZING: RefCell<bool> = const { RefCell::new(false) };
}

/// Installs (once) a panic hook that records the location and message of
/// a panic on a fuzzing thread instead of printing it.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if FUZZING.with(|f| *f.borrow()) {
                let location = info
                    .location()
                    .map_or_else(|| "?".to_string(), |l| l.to_string());
                let message = payload_message(info.payload());
                CAPTURE.with(|c| *c.borrow_mut() = Some((location, message)));
            } else {
                previous(info);
            }
        }));
    });
}

fn payload_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".to_string())
}

/// The outcome of one input.
pub enum Outcome {
    /// Parsed.
    Accepted,
    /// Refused with this error message.
    Rejected(String),
    /// Panicked at `(location, message)`.
    Panicked(String, String),
}

/// Runs `input` through the target, catching a panic.
pub fn run_one(target: &Target, input: &[u8]) -> Outcome {
    install_hook();
    FUZZING.with(|f| *f.borrow_mut() = true);
    CAPTURE.with(|c| *c.borrow_mut() = None);
    let result = catch_unwind(AssertUnwindSafe(|| target.run(input)));
    FUZZING.with(|f| *f.borrow_mut() = false);
    match result {
        Ok(Ok(())) => Outcome::Accepted,
        Ok(Err(message)) => Outcome::Rejected(message),
        Err(payload) => {
            let (location, message) = CAPTURE
                .with(|c| c.borrow_mut().take())
                .unwrap_or_else(|| ("?".to_string(), payload_message(&*payload)));
            Outcome::Panicked(location, message)
        }
    }
}

/// The input being run, for the watchdog.
struct Current {
    exec: u64,
    input: Arc<Vec<u8>>,
    started: Instant,
}

/// Fuzzes `target` as `config` says.
pub fn run(target: &Target, config: &Config) -> Report {
    let mut report = Report {
        target: target.name.to_string(),
        ..Report::default()
    };
    let current: Arc<Mutex<Option<Current>>> = Arc::new(Mutex::new(None));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (current, done) = (Arc::clone(&current), Arc::clone(&done));
        let (hang, dir, name) = (config.hang, config.out_dir.clone(), target.name);
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let guard = current.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(c) = guard.as_ref() {
                    if c.started.elapsed() > hang {
                        let path = save(&dir, name, "hang", c.exec, &c.input);
                        eprintln!(
                            "fuzz {name}: input {} has run for over {:?} (a hang); saved to {}",
                            c.exec,
                            hang,
                            path.display()
                        );
                        std::process::exit(3);
                    }
                }
            }
        })
    };
    let start = Instant::now();
    let mut last_progress = start;
    let mut input = Vec::new();
    for exec in 0..config.execs {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        rng.set_stream(exec);
        target.generate(&mut rng, &mut input);
        let shared = Arc::new(std::mem::take(&mut input));
        let started = Instant::now();
        *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(Current {
            exec,
            input: Arc::clone(&shared),
            started,
        });
        let outcome = run_one(target, &shared);
        let took = started.elapsed();
        *current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        report.execs += 1;
        report.max_time = report.max_time.max(took);
        if took > config.slow && report.slow.len() < 100 {
            report.slow.push((exec, took));
            save(&config.out_dir, target.name, "slow", exec, &shared);
        }
        match outcome {
            Outcome::Accepted => report.accepted += 1,
            Outcome::Rejected(message) => {
                report.rejected += 1;
                assert!(
                    !message.trim().is_empty(),
                    "{}: input {exec} was refused with an empty message",
                    target.name
                );
                let key: String = message.chars().take(60).collect();
                if report.errors.len() < 10_000 || report.errors.contains_key(&key) {
                    *report.errors.entry(key).or_default() += 1;
                }
            }
            Outcome::Panicked(location, message) => {
                report.panicking_inputs += 1;
                if !report.panics.iter().any(|p| p.location == location) {
                    let path = save(&config.out_dir, target.name, "panic", exec, &shared);
                    let min = minimize(target, &shared, &location);
                    let minimized = save(&config.out_dir, target.name, "panic-min", exec, &min);
                    eprintln!(
                        "fuzz {}: input {exec} panicked at {location}: {message} (saved to {}, minimized to {} bytes in {})",
                        target.name,
                        path.display(),
                        min.len(),
                        minimized.display()
                    );
                    report.panics.push(Finding {
                        exec,
                        location,
                        message,
                        input: path,
                        minimized,
                        minimized_len: min.len(),
                    });
                }
            }
        }
        input = Arc::try_unwrap(shared).unwrap_or_default();
        if let Some(every) = config.progress {
            if last_progress.elapsed() >= every {
                last_progress = Instant::now();
                report.elapsed = start.elapsed();
                eprintln!("{}", report.summary());
            }
        }
    }
    report.elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    report
}

/// Shrinks a panicking input: removes chunks (halving their size) while it
/// still panics at `location`; at most 4,000 tries.
pub fn minimize(target: &Target, input: &[u8], location: &str) -> Vec<u8> {
    let still = |b: &[u8]| matches!(run_one(target, b), Outcome::Panicked(l, _) if l == location);
    let mut best = input.to_vec();
    let mut tries = 0;
    let mut size = best.len().div_ceil(2).max(1);
    loop {
        let mut i = 0;
        while i < best.len() && tries < 4000 {
            let mut candidate = best.clone();
            candidate.drain(i..(i + size).min(best.len()));
            tries += 1;
            if still(&candidate) {
                best = candidate;
            } else {
                i += size;
            }
        }
        if size == 1 || tries >= 4000 {
            return best;
        }
        size /= 2;
    }
}

/// Writes an input to `dir/target/kind-exec.bin`.
fn save(dir: &Path, target: &str, kind: &str, exec: u64, bytes: &[u8]) -> PathBuf {
    let dir = dir.join(target);
    let path = dir.join(format!("{kind}-{exec}.bin"));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, bytes)) {
        eprintln!("fuzz {target}: cannot save {}: {e}", path.display());
    }
    path
}
