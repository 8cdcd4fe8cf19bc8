//! Hostile inputs to the built `sightline` binary: sizes over the memory
//! budget, special files where files are expected, non-finite values,
//! negative numbers, truncated JPEGs and empty manifests. Each gets a
//! message that says what is wrong, the documented exit code, and never a
//! hang, a panic or an abort (see docs/reliability.md).

use image::{Rgb, RgbImage};
use serde_json::Value;
use sightline::layers::{Architecture, Model};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A VGG with two convolutions: 10 classes, 32 x 32 inputs.
const TINY_VGG: &str =
    r#"{"kind":"vgg","cfg":[4,"M",8,"M"],"avgpool":[2,2],"hidden":16,"num_classes":10}"#;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sightline"))
}

/// Runs `cmd`, killing it (and failing the test) when it takes longer than
/// `secs`: a hang is a finding.
fn run_within(mut cmd: Command, secs: u64) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(secs) {
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} still running after {secs} s; stderr: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 2 and one line `sightline: ...` containing every needle.
fn assert_one_line_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.starts_with("sightline: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in {err}");
    }
}

fn picture(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(x * 7) as u8, (y * 5) as u8, 90]))
}

fn jpeg_bytes(img: &RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(img)
        .unwrap();
    bytes
}

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<String> = rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
        Err(_) => Vec::new(),
    }
}

fn summary(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    arch: PathBuf,
    weights: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let arch = dir.path().join("tiny_vgg.json");
        std::fs::write(&arch, TINY_VGG).unwrap();
        let model = Model::<f32>::random(&Architecture::from_json(TINY_VGG).unwrap(), 3).unwrap();
        let weights = dir.path().join("tiny_vgg.safetensors");
        model.save_safetensors(&weights).unwrap();
        Self { dir, arch, weights }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `explain` with the tiny model and (unless `extra` sets them) 32 x 32 inputs.
    fn explain(&self, out: &Path, extra: &[&str]) -> Command {
        let mut cmd = bin();
        cmd.arg("explain")
            .arg("--arch")
            .arg(&self.arch)
            .arg("--weights")
            .arg(&self.weights)
            .args(["--method", "gradient"]);
        for flag in ["--resize", "--size"] {
            if !extra.contains(&flag) {
                cmd.args([flag, "32"]);
            }
        }
        cmd.arg("--out").arg(out).args(extra);
        cmd
    }
}

#[test]
fn an_image_over_the_budget_fails_alone_and_the_summary_lists_it() {
    let f = Fixture::new();
    let images = f.path("images");
    std::fs::create_dir(&images).unwrap();
    // 1 x 60000 pixels: a few hundred bytes of PNG, 11 GB once resized.
    RgbImage::new(1, 60_000)
        .save(images.join("a_wide.png"))
        .unwrap();
    picture(40, 30).save(images.join("b_fine.png")).unwrap();
    let out = f.path("out");
    let mut cmd = f.explain(
        &out,
        &["--max-memory", "2G", "--resize", "256", "--size", "224"],
    );
    cmd.arg(&images);
    let o = run_within(cmd, 60);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s = summary(&out);
    assert_eq!(s["images"].as_array().unwrap().len(), 1);
    assert!(s["images"][0]["image"]
        .as_str()
        .unwrap()
        .ends_with("b_fine.png"));
    let failed = s["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    let why = failed[0]["error"].as_str().unwrap();
    assert!(why.contains("a_wide.png (1 x 60000"), "{why}");
    assert!(why.contains("memory budget of 2.0 GiB"), "{why}");
    assert!(s["interrupted"].is_null());
}

#[test]
fn arguments_over_the_budget_exit_2_naming_them() {
    let f = Fixture::new();
    let png = f.path("a.png");
    picture(40, 30).save(&png).unwrap();
    let out = f.path("out");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--resize", "100000"], "--resize 100000"),
        (vec!["--resize", "64", "--size", "60000"], "--size 60000"),
    ];
    for (mut args, needle) in cases {
        args.extend(["--max-memory", "1G"]);
        let mut cmd = f.explain(&out, &args);
        cmd.arg(&png);
        let o = run_within(cmd, 60);
        assert_one_line_error(&o, &[needle, "memory budget"]);
        assert!(entries(&out).is_empty(), "{:?}", entries(&out));
    }
    // An architecture whose declared widths would not fit the budget (and
    // one past the architecture's own limits: refused as invalid).
    let huge = f.path("huge.json");
    std::fs::write(
        &huge,
        r#"{"kind":"vgg","cfg":[100000,100000],"num_classes":1000000000}"#,
    )
    .unwrap();
    let mut cmd = bin();
    cmd.args(["explain", "--method", "gradient", "--arch"])
        .arg(&huge)
        .arg("--out")
        .arg(&out)
        .arg(&png);
    let o = run_within(cmd, 60);
    assert_one_line_error(&o, &["invalid architecture", "too large"]);
    std::fs::write(
        &huge,
        r#"{"kind":"vgg","cfg":[40000,40000],"num_classes":1000}"#,
    )
    .unwrap();
    let mut cmd = bin();
    cmd.args([
        "explain",
        "--max-memory",
        "4G",
        "--method",
        "gradient",
        "--arch",
    ])
    .arg(&huge)
    .arg("--out")
    .arg(&out)
    .arg(&png);
    let o = run_within(cmd, 60);
    assert_one_line_error(&o, &["the weights of", "memory budget"]);
    // bench: every size argument, and iteration counts.
    let arch = f.arch.to_str().unwrap();
    let bench: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--gemm-size", "1000000"], "--gemm-size 1000000"),
        (vec!["--batch", "100000"], "--batch 100000"),
        (vec!["--size", "1000000"], "--size 1000000"),
        (vec!["--iters", "1000000000000"], "--iters"),
        (vec!["--batch", "-1"], "'-1'"),
    ];
    for (args, needle) in bench {
        let mut cmd = bin();
        cmd.args(["bench", "--arch", arch, "--max-memory", "1G"])
            .args(&args);
        let o = run_within(cmd, 60);
        assert_one_line_error(&o, &[needle]);
    }
    let mut cmd = bin();
    cmd.args(["layers", "vgg16", "--size", "1000000", "--max-memory", "4G"]);
    assert_one_line_error(&run_within(cmd, 60), &["--size", "memory budget"]);
    let mut cmd = bin();
    cmd.args(["explain", "--arch", "vgg11", "--method", "gradient"])
        .args(["--max-memory", "4X", "--out"])
        .arg(&out)
        .arg(&png);
    assert_one_line_error(&run_within(cmd, 60), &["--max-memory", "4X"]);
}

/// A FIFO (no writer: opening it blocks without O_NONBLOCK), a device, a
/// folder and a symbolic link loop.
fn special_files(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let fifo = dir.join("fifo.json");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (a, b) = (dir.join("loop_a.json"), dir.join("loop_b.json"));
    std::os::unix::fs::symlink(&a, &b).unwrap();
    std::os::unix::fs::symlink(&b, &a).unwrap();
    let folder = dir.join("folder.json");
    std::fs::create_dir(&folder).unwrap();
    vec![
        (fifo, "(it is a FIFO)"),
        (PathBuf::from("/dev/zero"), "(it is a character device)"),
        (folder, "(it is a directory)"),
        (a, "symbolic links"),
    ]
}

#[test]
fn special_files_are_refused_with_a_message_never_read() {
    let f = Fixture::new();
    let specials = special_files(&f.path(""));
    let png = f.path("a.png");
    picture(40, 30).save(&png).unwrap();
    let out = f.path("out");
    for (special, says) in &specials {
        // As weights, architecture, manifest and ONNX model: exit 2, one line.
        let mut cmd = bin();
        cmd.args(["explain", "--method", "gradient", "--arch"])
            .arg(&f.arch)
            .arg("--weights")
            .arg(special)
            .arg("--out")
            .arg(&out)
            .arg(&png);
        assert_one_line_error(&run_within(cmd, 20), &["weights file", says]);
        let mut cmd = bin();
        cmd.args(["explain", "--method", "gradient", "--arch"])
            .arg(special)
            .arg("--out")
            .arg(&out)
            .arg(&png);
        assert_one_line_error(&run_within(cmd, 20), &["architecture file", says]);
        let mut cmd = bin();
        cmd.args(["compare", "--manifest"]).arg(special);
        assert_one_line_error(&run_within(cmd, 20), &["manifest", says]);
        let mut cmd = bin();
        cmd.args(["explain", "--method", "gradient", "--model"])
            .arg(special)
            .arg("--out")
            .arg(&out)
            .arg(&png);
        let o = run_within(cmd, 20);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(entries(&out).is_empty());
        // As an image: that image fails (exit 1), the other is explained
        // (a folder is a folder of images, expanded).
        if says.contains("directory") {
            continue;
        }
        let mut cmd = f.explain(&out, &[]);
        cmd.arg(special).arg(&png);
        let o = run_within(cmd, 20);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let s = summary(&out);
        assert_eq!(s["images"].as_array().unwrap().len(), 1);
        let why = s["failed"][0]["error"].as_str().unwrap().to_lowercase();
        assert!(why.contains(&says.to_lowercase()), "{why}");
        std::fs::remove_dir_all(&out).unwrap();
    }
    // As a VOC annotation: the pointing game stops with one line.
    let voc = f.path("voc");
    std::fs::create_dir(&voc).unwrap();
    assert!(Command::new("mkfifo")
        .arg(voc.join("a.xml"))
        .status()
        .unwrap()
        .success());
    let mut cmd = bin();
    cmd.args(["pointing-game", "--voc"]).arg(&voc);
    assert_one_line_error(&run_within(cmd, 20), &["annotation", "(it is a FIFO)"]);
}

#[test]
fn non_finite_values_are_found_where_they_arise() {
    let f = Fixture::new();
    let png = f.path("a.png");
    picture(40, 30).save(&png).unwrap();
    // Weights x 1e30: finite weights, logits that overflow float32.
    let mut model = Model::<f32>::random(&Architecture::from_json(TINY_VGG).unwrap(), 3).unwrap();
    for (_, t) in model.parameters_mut() {
        let scaled = t.map(|v| v * 1e30);
        *t = std::sync::Arc::new(scaled);
    }
    let huge = f.path("huge.safetensors");
    model.save_safetensors(&huge).unwrap();
    let out = f.path("out");
    let mut cmd = bin();
    cmd.args([
        "explain", "--method", "gradient", "--resize", "32", "--size", "32",
    ])
    .arg("--arch")
    .arg(&f.arch)
    .arg("--weights")
    .arg(&huge)
    .arg("--out")
    .arg(&out)
    .arg(&png);
    let o = run_within(cmd, 60);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("NaN"));
    let s = summary(&out);
    assert!(s["images"].as_array().unwrap().is_empty());
    let why = s["failed"][0]["error"].as_str().unwrap();
    assert!(why.contains("logits are not finite"), "{why}");
    // A normalisation that overflows the inputs: refused, nothing written.
    let out = f.path("out_std");
    let mut cmd = f.explain(&out, &["--std", "2.9e-39,1,1"]);
    cmd.arg(&png);
    assert_one_line_error(&run_within(cmd, 60), &["std", "overflow float32"]);
    assert!(entries(&out).is_empty());
}

#[test]
fn negative_numbers_get_the_one_line_error() {
    let f = Fixture::new();
    let png = f.path("a.png");
    picture(40, 30).save(&png).unwrap();
    let out = f.path("out");
    for (args, needle) in [
        (vec!["--target", "-1"], "target `-1`"),
        (vec!["--resize", "-1"], "'-1' for '--resize"),
        (vec!["--size", "-5"], "'-5' for '--size"),
        (vec!["--grid-rows", "-2"], "'-2' for '--grid-rows"),
        (vec!["--alpha", "-0.5"], "alpha"),
    ] {
        let mut cmd = f.explain(&out, &args);
        cmd.arg(&png);
        assert_one_line_error(&run_within(cmd, 30), &[needle]);
        assert!(entries(&out).is_empty());
    }
}

#[test]
fn a_truncated_jpeg_fails_that_image_only() {
    let f = Fixture::new();
    let images = f.path("images");
    std::fs::create_dir(&images).unwrap();
    let full = jpeg_bytes(&picture(64, 48));
    std::fs::write(images.join("a_whole.jpg"), &full).unwrap();
    std::fs::write(images.join("b_cut.jpg"), &full[..full.len() / 2]).unwrap();
    let out = f.path("out");
    let mut cmd = f.explain(&out, &[]);
    cmd.arg(&images);
    let o = run_within(cmd, 60);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s = summary(&out);
    assert_eq!(s["images"].as_array().unwrap().len(), 1);
    let why = s["failed"][0]["error"].as_str().unwrap();
    assert!(
        why.contains("b_cut.jpg") && why.contains("truncated"),
        "{why}"
    );
}

#[test]
fn jpeg_completeness_follows_the_markers() {
    use sightline::imageio::jpeg_is_complete;
    let full = jpeg_bytes(&picture(16, 16));
    assert!(jpeg_is_complete(&full));
    // Trailing bytes after the end marker are allowed, as by Pillow.
    let mut padded = full.clone();
    padded.extend_from_slice(b"trailing");
    assert!(jpeg_is_complete(&padded));
    for cut in [2, 20, full.len() / 2, full.len() - 2, full.len() - 1] {
        assert!(!jpeg_is_complete(&full[..cut]), "cut at {cut}");
    }
    // Not a JPEG: not judged here.
    assert!(jpeg_is_complete(b"\x89PNG"));
}

#[test]
fn compare_refuses_a_manifest_without_cases() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("none.json", r#"{"models": {}}"#),
        (
            "empty.json",
            r#"{"models": {"m": {"onnx": "x.onnx", "cases_file": "c.safetensors", "cases": []}}}"#,
        ),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let mut cmd = bin();
        cmd.args(["compare", "--manifest"]).arg(&p);
        assert_one_line_error(&run_within(cmd, 20), &["no case to compare", name]);
    }
}
