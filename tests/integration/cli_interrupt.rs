//! Runs that end early end cleanly: SIGINT or SIGTERM during `explain`
//! finishes the image under way and writes `summary.json` listing the rest
//! as interrupted; a closed standard output or error (`| head -1`) ends the
//! printing quietly, with no panic.

use image::{Rgb, RgbImage};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sightline"))
}

/// A folder of `n` images.
fn images(dir: &Path, n: usize) -> std::path::PathBuf {
    let images = dir.join("images");
    std::fs::create_dir(&images).unwrap();
    let img = RgbImage::from_fn(64, 48, |x, y| Rgb([(x * 3) as u8, (y * 5) as u8, 60]));
    for i in 0..n {
        img.save(images.join(format!("img{i:03}.png"))).unwrap();
    }
    images
}

/// Starts `explain` on `n` images with VGG-11 (a few tenths of a second
/// per image here), sends `signal` once the first image is printed, and
/// returns the exit code and the summary.
fn interrupted_run(signal: libc::c_int) -> (Option<i32>, Value, usize) {
    let dir = tempfile::tempdir().unwrap();
    let n = 30;
    let images = images(dir.path(), n);
    let out = dir.path().join("out");
    let mut child = bin()
        .args([
            "explain", "--arch", "vgg11", "--method", "gradient", "--out",
        ])
        .arg(&out)
        .arg(&images)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("img000.png"), "{first}");
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill only sends a signal to the child started above.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let printed = 1 + lines.count();
    let status = child.wait().unwrap();
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(printed < n, "the run went to the end ({printed} images)");
    (status.code(), summary, printed)
}

#[test]
fn sigint_finishes_the_image_and_writes_the_summary() {
    let (code, s, printed) = interrupted_run(libc::SIGINT);
    assert_eq!(code, Some(130));
    assert_eq!(s["interrupted"], "SIGINT");
    let done = s["images"].as_array().unwrap().len();
    assert_eq!(done, printed);
    let failed = s["failed"].as_array().unwrap();
    assert_eq!(done + failed.len(), 30);
    assert!(failed.iter().all(|f| f["error"]
        .as_str()
        .unwrap()
        .contains("interrupted (SIGINT)")));
}

#[test]
fn sigterm_is_recorded_too() {
    let (code, s, _) = interrupted_run(libc::SIGTERM);
    assert_eq!(code, Some(143));
    assert_eq!(s["interrupted"], "SIGTERM");
    assert!(!s["failed"].as_array().unwrap().is_empty());
}

/// Runs `cmd` with its standard output closed right away (as `| head -1`
/// closes it after a line): exit code, standard error.
fn with_closed_stdout(mut cmd: Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_every_subcommand_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let images = images(dir.path(), 3);
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/manifest.json");
    let mut compare = bin();
    compare.args(["compare", "--manifest", manifest]);
    let mut layers = bin();
    layers.args(["layers", "resnet18"]);
    let mut explain = bin();
    explain
        .args(["explain", "--arch", "resnet18", "--method", "gradient"])
        .args(["--resize", "64", "--size", "64", "--out"])
        .arg(dir.path().join("out"))
        .arg(&images);
    let mut bench = bin();
    bench.args([
        "bench", "--arch", "resnet18", "--size", "64", "--iters", "1",
    ]);
    bench.args(["--gemm-size", "64"]);
    for cmd in [compare, layers, explain, bench] {
        let name = format!("{cmd:?}");
        let (code, err) = with_closed_stdout(cmd);
        assert!(matches!(code, Some(0 | 1)), "{name}: {code:?} {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    assert!(dir.path().join("out").join("summary.json").is_file());
}

#[test]
fn a_closed_stderr_ends_quietly_too() {
    let dir = tempfile::tempdir().unwrap();
    let images = images(dir.path(), 1);
    std::fs::write(images.join("broken.png"), b"not a png").unwrap();
    let out = dir.path().join("out");
    let mut child = bin()
        .args(["explain", "--arch", "resnet18", "--method", "gradient"])
        .args(["--resize", "64", "--size", "64", "--out"])
        .arg(&out)
        .arg(&images)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    // The broken image is reported (exit 1) without a panic (exit 101).
    assert_eq!(status.code(), Some(1));
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["failed"].as_array().unwrap().len(), 1);
}
