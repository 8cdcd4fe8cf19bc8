//! Fuzzing of every parser on stable Rust (issue 22, item 8): seeded
//! mutation (byte-level and structure-aware) over a corpus kept in the
//! repository, each input run under `catch_unwind` and a hang watchdog.
//!
//! - `cargo test --release --test integration fuzz::`: a short deterministic run of each
//!   target (fixed seed, a few seconds each) and a replay of
//!   `tests/fuzz_corpus/regressions/`.
//! - `cargo test --release --test integration -- --ignored fuzz_long --nocapture`:
//!   the long run; `FUZZ_TARGETS=onnx,voc` (default: all), `FUZZ_EXECS`
//!   (default 1,000,000 per target), `FUZZ_SEED` (default 1), `FUZZ_OUT`
//!   (where panicking, slow and hanging inputs go; default
//!   `target/fuzz-findings`). It prints executions, exec/s, accepted and
//!   refused inputs and panics per target, and fails on any panic.
//!
//! Targets: see [`targets::TARGETS`].

mod engine;
mod mutate;
mod structured;
mod targets;

use engine::{run, run_one, Config, Outcome, Report};
use std::path::PathBuf;
use std::time::Duration;
use targets::{corpus_dir, Target, TARGETS};

/// The seed of the short runs.
const SHORT_SEED: u64 = 0x5EED_2208;

fn out_dir() -> PathBuf {
    std::env::var_os("FUZZ_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../fuzz-findings"))
}

fn config(seed: u64, execs: u64, progress: Option<Duration>) -> Config {
    Config {
        seed,
        execs,
        slow: Duration::from_secs(1),
        hang: Duration::from_secs(30),
        out_dir: out_dir(),
        progress,
    }
}

/// Fails with every panic of a report.
fn assert_no_panics(report: &Report) {
    let panics: Vec<String> = report
        .panics
        .iter()
        .map(|p| {
            format!(
                "input {} panicked at {}: {} (input {}, minimized {} bytes: {})",
                p.exec,
                p.location,
                p.message,
                p.input.display(),
                p.minimized_len,
                p.minimized.display()
            )
        })
        .collect();
    assert!(
        panics.is_empty(),
        "{}:\n{}",
        report.target,
        panics.join("\n")
    );
}

/// A short run: fixed seed, `execs` inputs; the corpus must parse and the
/// mutants must reach both outcomes.
fn short(name: &str, execs: u64) {
    let target = Target::new(name);
    // The corpus is valid input (the manifests name files the scratch
    // folder lacks, and the decoder may refuse a CMYK JPEG: those are
    // refused, not accepted).
    let mut accepted = 0;
    for (i, seed) in target.seeds.iter().enumerate() {
        match run_one(&target, seed) {
            Outcome::Accepted => accepted += 1,
            Outcome::Rejected(e) => eprintln!("{name}: corpus entry {i} is refused: {e}"),
            Outcome::Panicked(l, m) => panic!("{name}: corpus entry {i} panics at {l}: {m}"),
        }
    }
    assert!(
        accepted >= 1 && (name == "manifest" || accepted * 2 >= target.seeds.len()),
        "{name}: only {accepted} of {} corpus entries are accepted",
        target.seeds.len()
    );
    let report = run(&target, &config(SHORT_SEED, execs, None));
    eprintln!("{}", report.summary());
    assert_no_panics(&report);
    assert_eq!(report.execs, execs);
    assert!(
        report.rejected > 0 && report.accepted > 0,
        "{name}: the mutants should be both accepted and refused: {}",
        report.summary()
    );
    assert!(report.errors.len() > 1, "{name}: one kind of error only");
}

#[test]
fn fuzz_short_safetensors() {
    short("safetensors", 10_000);
}

#[test]
fn fuzz_short_onnx() {
    short("onnx", 2_000);
}

#[test]
fn fuzz_short_architecture() {
    short("architecture", 200_000);
}

#[test]
fn fuzz_short_manifest() {
    short("manifest", 8_000);
}

#[test]
fn fuzz_short_card() {
    short("card", 200_000);
}

#[test]
fn fuzz_short_voc() {
    short("voc", 200_000);
}

#[test]
fn fuzz_short_image() {
    short("image", 4000);
}

#[test]
fn the_short_runs_are_deterministic() {
    let target = Target::new("voc");
    let inputs = |seed: u64| {
        (0..50u64)
            .map(|i| {
                let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
                rng.set_stream(i);
                let mut out = Vec::new();
                target.generate(&mut rng, &mut out);
                out
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(inputs(SHORT_SEED), inputs(SHORT_SEED));
    assert_ne!(inputs(SHORT_SEED), inputs(SHORT_SEED + 1));
    let a = run(&target, &config(SHORT_SEED, 300, None));
    let b = run(&target, &config(SHORT_SEED, 300, None));
    assert_eq!(
        (a.accepted, a.rejected, &a.errors),
        (b.accepted, b.rejected, &b.errors)
    );
}

/// Every input of `tests/fuzz_corpus/regressions/<target>/` (inputs that
/// once panicked) runs without a panic.
#[test]
fn fuzz_regressions() {
    let dir = corpus_dir().join("regressions");
    let mut failures = Vec::new();
    let mut count = 0;
    for name in TARGETS {
        let Ok(entries) = std::fs::read_dir(dir.join(name)) else {
            continue;
        };
        let target = Target::new(name);
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths.iter().filter(|p| p.is_file()) {
            count += 1;
            let bytes = std::fs::read(path).unwrap();
            if let Outcome::Panicked(l, m) = run_one(&target, &bytes) {
                failures.push(format!("{}: panics at {l}: {m}", path.display()));
            }
        }
    }
    eprintln!("{count} regression inputs replayed");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The long run (see the module's documentation).
#[test]
#[ignore = "long: run with --ignored fuzz_long"]
fn fuzz_long() {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let names: Vec<String> = var("FUZZ_TARGETS").map_or_else(
        || TARGETS.iter().map(|t| t.to_string()).collect(),
        |v| v.split(',').map(|s| s.trim().to_string()).collect(),
    );
    let execs = var("FUZZ_EXECS").map_or(1_000_000, |v| v.parse().expect("FUZZ_EXECS"));
    let seed = var("FUZZ_SEED").map_or(1, |v| v.parse().expect("FUZZ_SEED"));
    let mut reports = Vec::new();
    for name in &names {
        let target = Target::new(name);
        let report = run(&target, &config(seed, execs, Some(Duration::from_secs(60))));
        println!("{}", report.summary());
        let mut common: Vec<_> = report.errors.iter().collect();
        common.sort_by(|a, b| b.1.cmp(a.1));
        for (message, n) in common.iter().take(8) {
            println!("    {n:>9}  {message}");
        }
        for (exec, took) in report.slow.iter().take(5) {
            println!("    slow: input {exec} took {took:?}");
        }
        reports.push(report);
    }
    println!("seed {seed}:");
    for r in &reports {
        println!("{}", r.summary());
    }
    reports.iter().for_each(assert_no_panics);
}
