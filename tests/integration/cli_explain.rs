//! Runs the built `sightline` binary (`explain` and `bench`) on generated
//! images with tiny models.

use image::{Rgb, RgbImage};
use serde_json::Value;
use sightline::attribution::{Explainer, Method, Resize, SaliencyOptions, Target};
use sightline::imageio::Preprocess;
use sightline::labels::Labels;
use sightline::layers::{Architecture, Model};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A VGG with two convolutions: 10 classes, 32 x 32 inputs.
const TINY_VGG: &str =
    r#"{"kind":"vgg","cfg":[4,"M",8,"M"],"avgpool":[2,2],"hidden":16,"num_classes":10}"#;
/// A ResNet whose weights do not fit `TINY_VGG`.
const TINY_RESNET: &str =
    r#"{"kind":"resnet","block":"basic","layers":[1,1,1,1],"widths":[4,4,4,4],"num_classes":10}"#;

struct Fixture {
    dir: tempfile::TempDir,
    arch: PathBuf,
    weights: PathBuf,
    images: PathBuf,
}

impl Fixture {
    /// A tiny model saved as safetensors, and a folder with a PNG and a JPEG.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // An architecture under "architecture", as the demo model's JSON holds it.
        let arch = dir.path().join("tiny_vgg.json");
        std::fs::write(
            &arch,
            format!(r#"{{"architecture": {TINY_VGG}, "note": "x"}}"#),
        )
        .unwrap();
        let model = Model::<f32>::random(&Architecture::from_json(TINY_VGG).unwrap(), 3).unwrap();
        let weights = dir.path().join("tiny_vgg.safetensors");
        model.save_safetensors(&weights).unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir(&images).unwrap();
        picture(40, 30).save(images.join("b_square.png")).unwrap();
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
            .encode_image(&picture(36, 48))
            .unwrap();
        std::fs::write(images.join("a_tall.jpg"), jpeg).unwrap();
        Self {
            dir,
            arch,
            weights,
            images,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `explain` on `image` with each of `refused`: exit 2, nothing written.
    fn assert_refused(&self, image: &Path, refused: &[Vec<&str>]) {
        for bad in refused {
            let out = self.path("refused");
            let mut args = bad.clone();
            args.push(image.to_str().unwrap());
            let o = self.explain(&out, &args);
            assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
            assert!(!out.exists(), "{bad:?}");
        }
    }

    fn model(&self) -> Model<f32> {
        Model::from_safetensors(&Architecture::from_json(TINY_VGG).unwrap(), &self.weights).unwrap()
    }

    /// `explain` with the tiny model, 32 x 32 inputs and the given extra arguments.
    fn explain(&self, out: &Path, extra: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sightline"));
        cmd.arg("explain")
            .arg("--arch")
            .arg(&self.arch)
            .arg("--weights")
            .arg(&self.weights)
            .args(["--resize", "32", "--size", "32", "--out"])
            .arg(out)
            .args(extra);
        cmd.output().unwrap()
    }
}

/// A gradient with a bright square.
fn picture(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        if (w / 4..w / 2).contains(&x) && (h / 4..h / 2).contains(&y) {
            Rgb([250, 240, 20])
        } else {
            Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 90])
        }
    })
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn read_npy(path: &Path) -> (Vec<u64>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<f32>().unwrap())
}

fn summary(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

/// Names of the entries of a folder, sorted; empty when it does not exist.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

#[test]
fn explains_a_folder_of_png_and_jpeg() {
    let f = Fixture::new();
    let out = f.path("out");
    let o = f.explain(
        &out,
        &[
            "--method",
            "gradient,grad_cam,excitation_backprop",
            "--target",
            "top2",
            f.images.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&out);
    assert_eq!(
        s["methods"],
        serde_json::json!(["gradient", "grad_cam", "excitation_backprop"])
    );
    assert_eq!(s["layers"]["grad_cam"], "features.4");
    assert_eq!(s["layers"]["excitation_backprop"], "features.2");
    assert_eq!(s["layers"]["gradient"], "");
    let images = s["images"].as_array().unwrap();
    // Sorted by name: the JPEG first.
    assert_eq!(images.len(), 2);
    assert!(images[0]["image"].as_str().unwrap().ends_with("a_tall.jpg"));
    assert!(images[1]["image"]
        .as_str()
        .unwrap()
        .ends_with("b_square.png"));

    // Classes and scores are the model's softmax top 2 on the same preprocessing.
    let model = f.model();
    let pre = Preprocess {
        resize: Some(32),
        crop: Some(32),
        ..Preprocess::default()
    };
    let png = pre.load(&f.images.join("b_square.png")).unwrap();
    let logits = model.logits(&png.tensor).unwrap();
    let probs = sightline::tensor::softmax::softmax(&logits).unwrap();
    let top = Target::top_k(&logits, 2).unwrap()[0].clone();
    let classes = images[1]["classes"].as_array().unwrap();
    for (c, &k) in classes.iter().zip(&top) {
        assert_eq!(c["class"].as_u64().unwrap() as usize, k);
        assert_eq!(c["label"], format!("class {k}"));
        let score = c["score"].as_f64().unwrap();
        assert!((score - f64::from(probs.data()[k])).abs() < 1e-7, "{score}");
    }
    let line = format!(
        "b_square.png: {}",
        Labels::Numbered.describe(top[0], probs.data()[top[0]])
    );
    assert!(stdout(&o).contains(&line), "{}", stdout(&o));

    // The .npy maps are the library's maps, bit for bit.
    let ex = Explainer::new(&model, &png.tensor).unwrap();
    for (method, name) in [
        (Method::GradCam, "grad_cam"),
        (Method::Gradient, "gradient"),
    ] {
        let opts = SaliencyOptions {
            resize: Resize::Input,
            ..SaliencyOptions::default()
        };
        let want = ex
            .saliency(&method, &Target::Class(top[1]), &opts)
            .unwrap()
            .map;
        let (shape, got) = read_npy(&out.join(format!("b_square.{name}.{}.npy", top[1])));
        assert_eq!(shape, vec![32, 32]);
        assert_eq!(got, want.data());
    }

    // Every image x method x class has a heatmap, an overlay and a map; nothing else is left.
    let mut expected = vec!["grid.png".to_string(), "summary.json".to_string()];
    for img in images {
        let stem = img["stem"].as_str().unwrap();
        expected.push(format!("{stem}.input.png"));
        assert_eq!(img["maps"].as_array().unwrap().len(), 6);
        for m in img["maps"].as_array().unwrap() {
            let base = format!("{stem}.{}.{}", m["method"].as_str().unwrap(), m["class"]);
            for ext in ["heatmap.png", "overlay.png", "npy"] {
                expected.push(format!("{base}.{ext}"));
            }
            assert_eq!(m["files"]["overlay"], format!("{base}.overlay.png"));
            assert!(m["ms"].as_f64().unwrap() >= 0.0);
            let (lo, hi) = (m["min"].as_f64().unwrap(), m["max"].as_f64().unwrap());
            assert_eq!(m["scale"], serde_json::json!([lo, hi]));
        }
        for key in ["load", "forward", "saliency", "write"] {
            assert!(img["timings_ms"][key].as_f64().unwrap() >= 0.0, "{key}");
        }
    }
    expected.sort();
    assert_eq!(entries(&out), expected);
    let heat = image::open(out.join(format!("b_square.grad_cam.{}.heatmap.png", top[0]))).unwrap();
    assert_eq!((heat.width(), heat.height()), (32, 32));
    // Grid: 2 images x 2 classes rows; the input and 3 methods; 32-pixel
    // cells, 6-pixel gaps; a header, a caption over each row and the
    // colour bars add to the height.
    let grid = image::open(out.join("grid.png")).unwrap().to_rgb8();
    assert_eq!(grid.width(), 6 + 4 * (32 + 6));
    assert!(
        grid.height() > 6 + 4 * (32 + 6) + 4 * 12,
        "{}",
        grid.height()
    );
    // The header and the first caption are written (dark pixels in the top band).
    let dark = (0..24u32)
        .flat_map(|y| (0..grid.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| grid.get_pixel(x, y).0.iter().all(|&c| c < 100))
        .count();
    assert!(dark > 10, "{dark}");
    assert_eq!(s["grid_rows"], 4);
}

#[test]
fn shared_normalisation_uses_one_range_per_method() {
    let f = Fixture::new();
    let out = f.path("out");
    let o = f.explain(
        &out,
        &[
            "--method",
            "guided_backprop,linear_approx",
            "--target",
            "top3",
            "--normalize",
            "shared",
            "--colormap",
            "viridis",
            "--alpha",
            "0.3",
            f.images.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&out);
    assert_eq!(s["normalize"], "shared");
    for method in ["guided_backprop", "linear_approx"] {
        let maps: Vec<&Value> = s["images"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|i| i["maps"].as_array().unwrap())
            .filter(|m| m["method"] == method)
            .collect();
        assert_eq!(maps.len(), 6);
        let lo = maps
            .iter()
            .map(|m| m["min"].as_f64().unwrap())
            .fold(f64::INFINITY, f64::min);
        let hi = maps
            .iter()
            .map(|m| m["max"].as_f64().unwrap())
            .fold(f64::NEG_INFINITY, f64::max);
        for m in &maps {
            assert_eq!(m["scale"], serde_json::json!([lo, hi]), "{method}");
        }
    }
}

#[test]
fn shared_all_normalisation_uses_one_range_for_every_map() {
    let f = Fixture::new();
    let out = f.path("out");
    let o = f.explain(
        &out,
        &[
            "--method",
            "guided_backprop,linear_approx",
            "--normalize",
            "shared-all",
            f.images.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&out);
    assert_eq!(s["normalize"], "shared-all");
    let maps: Vec<&Value> = s["images"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["maps"].as_array().unwrap())
        .collect();
    assert_eq!(maps.len(), 4);
    let lo = maps
        .iter()
        .map(|m| m["min"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    let hi = maps
        .iter()
        .map(|m| m["max"].as_f64().unwrap())
        .fold(f64::NEG_INFINITY, f64::max);
    for m in &maps {
        assert_eq!(m["scale"], serde_json::json!([lo, hi]));
    }
}

#[test]
fn imagenet_models_print_class_names() {
    // A 1000-class model with random weights (no --weights) and a fixed class.
    let f = Fixture::new();
    let arch = f.path("imagenet_tiny.json");
    // A bare architecture object.
    std::fs::write(
        &arch,
        r#"{"kind":"vgg","cfg":[4,"M"],"avgpool":[1,1],"hidden":8,"num_classes":1000}"#,
    )
    .unwrap();
    let out = f.path("out");
    let o = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args([
            "explain",
            "--arch",
            arch.to_str().unwrap(),
            "--method",
            "gradient",
        ])
        .args(["--target", "281", "--resize", "20", "--size", "16", "--out"])
        .arg(&out)
        .arg(f.images.join("b_square.png"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("random weights"), "{}", stderr(&o));
    let s = summary(&out);
    let score = s["images"][0]["classes"][0]["score"].as_f64().unwrap() as f32;
    assert!(score > 0.0 && score < 1.0);
    let line = format!("b_square.png: {}", Labels::ImageNet.describe(281, score));
    assert!(line.starts_with("b_square.png: tabby (281) "));
    assert!(stdout(&o).contains(&line), "{}", stdout(&o));
    assert_eq!(s["images"][0]["classes"][0]["label"], "tabby");
    assert_eq!(s["images"][0]["input_size"], serde_json::json!([16, 16]));
    let (shape, _) = read_npy(&out.join("b_square.gradient.281.npy"));
    assert_eq!(shape, vec![16, 16]);
}

#[test]
fn bad_arguments_exit_2_and_write_nothing() {
    let f = Fixture::new();
    let resnet = Model::<f32>::random(&Architecture::from_json(TINY_RESNET).unwrap(), 1).unwrap();
    let resnet_weights = f.path("tiny_resnet.safetensors");
    resnet.save_safetensors(&resnet_weights).unwrap();
    let bad_arch = f.path("bad_arch.json");
    std::fs::write(&bad_arch, r#"{"kind":"vgg","cfg":["M"]}"#).unwrap();
    let png = f.images.join("b_square.png");
    let png = png.to_str().unwrap();
    let arch = f.arch.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--arch",
                arch,
                "--weights",
                "nope.safetensors",
                "--method",
                "gradient",
                png,
            ],
            "nope.safetensors",
        ),
        (
            vec![
                "--arch",
                arch,
                "--weights",
                resnet_weights.to_str().unwrap(),
                "--method",
                "gradient",
                png,
            ],
            "another architecture",
        ),
        (
            vec!["--arch", "vgg17", "--method", "gradient", png],
            "vgg17",
        ),
        (
            vec![
                "--arch",
                bad_arch.to_str().unwrap(),
                "--method",
                "gradient",
                png,
            ],
            "bad_arch.json",
        ),
        (
            vec!["--arch", "missing_arch.json", "--method", "gradient", png],
            "missing_arch.json",
        ),
        (
            vec!["--arch", arch, "--method", "gradient,gradcam", png],
            "gradcam",
        ),
        (
            vec![
                "--arch",
                arch,
                "--method",
                "grad_cam",
                "--layer",
                "features.9",
                png,
            ],
            "features.9",
        ),
        (
            vec![
                "--arch", arch, "--method", "grad_cam", "--target", "10", png,
            ],
            "10",
        ),
        (
            vec![
                "--arch", arch, "--method", "grad_cam", "--target", "top0", png,
            ],
            "top0",
        ),
        (
            vec!["--arch", arch, "--method", "grad_cam", "--alpha", "2", png],
            "alpha",
        ),
        (
            vec!["--arch", arch, "--method", "gradient", "missing.png"],
            "missing.png",
        ),
        // A layer that exists but is not spatial fails on the first image, before any file.
        (
            vec![
                "--arch",
                arch,
                "--method",
                "grad_cam",
                "--layer",
                "classifier.0",
                png,
            ],
            "classifier.0",
        ),
    ];
    for (i, (args, needle)) in cases.iter().enumerate() {
        let out = f.path(&format!("out{i}"));
        let o = Command::new(env!("CARGO_BIN_EXE_sightline"))
            .arg("explain")
            .args(["--resize", "32", "--size", "32", "--out"])
            .arg(&out)
            .args(args)
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "case {i}: {err}");
        assert!(err.starts_with("sightline: "), "case {i}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "case {i}: {err}");
        assert!(err.contains(needle), "case {i}: `{needle}` not in {err}");
        assert!(entries(&out).is_empty(), "case {i}: {:?}", entries(&out));
    }
    // A crop too small for the model's two pools is a bad --size, not a bad image.
    let out = f.path("out_small");
    let o = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args([
            "explain", "--arch", arch, "--method", "gradient", "--size", "3", "--out",
        ])
        .arg(&out)
        .arg(&f.images)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("input too small"), "{}", stderr(&o));
    assert!(entries(&out).is_empty());
}

#[test]
fn an_unreadable_image_is_reported_and_the_others_explained() {
    let f = Fixture::new();
    std::fs::write(f.images.join("c_broken.png"), b"this is not a png").unwrap();
    let out = f.path("out");
    let o = f.explain(&out, &["--method", "grad_cam", f.images.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("c_broken.png"), "{err}");
    assert!(err.contains("1 of 3 images"), "{err}");
    let s = summary(&out);
    assert_eq!(s["images"].as_array().unwrap().len(), 2);
    assert!(s["failed"][0]["image"]
        .as_str()
        .unwrap()
        .ends_with("c_broken.png"));
    assert!(s["failed"][0]["error"].as_str().unwrap().contains("decode"));
    let names = entries(&out);
    assert!(names
        .iter()
        .any(|n| n.starts_with("a_tall.grad_cam.") && n.ends_with(".npy")));
    assert!(names
        .iter()
        .any(|n| n.starts_with("b_square.grad_cam.") && n.ends_with(".overlay.png")));
    assert!(!names
        .iter()
        .any(|n| n.starts_with("c_broken") || n.starts_with('.')));
}

#[test]
fn maps_are_identical_with_one_or_two_threads() {
    let f = Fixture::new();
    let run = |threads: &str| {
        let out = f.path(&format!("out{threads}"));
        let o = Command::new(env!("CARGO_BIN_EXE_sightline"))
            .env("RAYON_NUM_THREADS", threads)
            .args(["explain", "--arch", f.arch.to_str().unwrap(), "--weights"])
            .arg(&f.weights)
            // 64 x 64 inputs: the convolutions' GEMMs are large enough to be split over threads.
            .args([
                "--resize", "64", "--size", "64", "--target", "top2", "--out",
            ])
            .arg(&out)
            .args([
                "--method",
                "guided_backprop,grad_cam,contrastive_excitation_backprop",
            ])
            .arg(&f.images)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(summary(&out)["threads"], threads.parse::<u64>().unwrap());
        out
    };
    let (one, two) = (run("1"), run("2"));
    let npys: Vec<String> = entries(&one)
        .into_iter()
        .filter(|n| n.ends_with(".npy"))
        .collect();
    assert_eq!(npys.len(), 2 * 3 * 2);
    for n in &npys {
        let a = std::fs::read(one.join(n)).unwrap();
        let b = std::fs::read(two.join(n)).unwrap();
        assert!(a == b, "{n} differs between 1 and 2 threads");
    }
}

#[test]
fn bench_prints_json_with_exact_flops() {
    let f = Fixture::new();
    for method in ["forward", "guided_backprop,grad_cam"] {
        let o = Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["bench", "--arch", f.arch.to_str().unwrap(), "--weights"])
            .arg(&f.weights)
            .args([
                "--method", method, "--size", "32", "--batch", "2", "--iters", "3",
            ])
            .args(["--gemm-size", "128", "--json"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        for key in [
            "ms_median",
            "ms_min",
            "images_per_s",
            "gflops",
            "peak_rss_mib",
            "sgemm_gflops",
            "conv_gflops",
        ] {
            assert!(v[key].as_f64().unwrap() > 0.0, "{method}: {key} in {v}");
        }
        assert!(v["ms_min"].as_f64() <= v["ms_median"].as_f64());
        // CPU time per call: measured on Linux (any amount, however small
        // the job), null where the platform has no getrusage.
        let cpu = &v["cpu_ms_median"];
        assert!(
            cpu.as_f64().is_some_and(|c| c >= 0.0) || (cpu.is_null() && !cfg!(unix)),
            "{method}: cpu_ms_median in {v}"
        );
        // Multiply-adds at 32 x 32: conv 4 x 3 x 3 x 3 on 32 x 32, conv 8 x 4 x 3 x 3 on
        // 16 x 16, then linear 32 -> 16 -> 16 -> 10.
        let macs = 32 * 32 * 4 * 27 + 16 * 16 * 8 * 36 + 32 * 16 + 16 * 16 + 16 * 10;
        let gflops = v["gflops"].as_f64().unwrap();
        assert!(
            (gflops - 2.0 * f64::from(macs) / 1e9).abs() < 1e-15,
            "{gflops}"
        );
    }
    let o = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args([
            "bench",
            "--arch",
            f.arch.to_str().unwrap(),
            "--method",
            "forward,gradient",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

/// `bench --stepped`: a ready line after the warm-up, one timed call per
/// line of input, each answered with its time, then the report of exactly
/// those calls; no input at all is an error, not an empty report.
#[test]
fn bench_stepped_times_one_call_per_input_line() {
    let f = Fixture::new();
    // `--iters` is ignored when stepped (0 would be refused otherwise).
    let spawn = |iters: &str| {
        Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["bench", "--arch", f.arch.to_str().unwrap(), "--weights"])
            .arg(&f.weights)
            .args(["--method", "gradient", "--size", "32", "--iters", iters])
            .args(["--gemm-size", "64", "--json", "--stepped"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let run = |input: &str| {
        let mut child = spawn("9");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let o = run("go\ngo\ngo\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0], serde_json::json!({ "ready": true }));
    let calls: Vec<f64> = lines[1..4]
        .iter()
        .map(|c| c["ms"].as_f64().unwrap())
        .collect();
    assert!(calls.iter().all(|&ms| ms > 0.0), "{calls:?}");
    let report = &lines[4];
    assert_eq!(report["iters"], 3, "three lines, three calls, not --iters");
    let min = calls.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(report["ms_min"].as_f64().unwrap(), min);

    // In lock-step, as compare.py drives it: each answer comes before the
    // next line is sent.
    let mut child = spawn("0");
    let mut stdin = child.stdin.take().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut next = || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap()
    };
    assert_eq!(next()["ready"], true);
    for _ in 0..2 {
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
        assert!(next()["ms"].as_f64().unwrap() > 0.0);
    }
    drop(stdin);
    assert_eq!(next()["iters"], 2);
    assert!(child.wait().unwrap().success());

    let o = run("");
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("before the first call"),
        "{}",
        stderr(&o)
    );
}

/// `explain --model FILE.onnx` explains with a graph read from ONNX (the
/// SqueezeNet fixture, a dynamo export with external data, batch 1), and
/// `layers` lists its layers; bad ONNX files (truncated, not ONNX, an
/// unknown op, missing or escaping external data, a FIFO) exit 2 with one
/// line naming the problem, and write nothing.
#[test]
fn onnx_models_are_explained_and_bad_ones_exit_2_writing_nothing() {
    let f = Fixture::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    let model = fixtures.join("squeezenet_s.onnx");
    let out = f.path("onnx_out");
    let o = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["explain", "--model"])
        .arg(&model)
        .args([
            "--method",
            "guided_backprop,grad_cam",
            "--resize",
            "64",
            "--size",
            "64",
        ])
        .arg("--out")
        .arg(&out)
        .arg(&f.images)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&out);
    // SqueezeNet's last 4-d output before its global pooling: the class
    // score maps of its classifier (the convolution's ReLU).
    assert_eq!(s["layers"]["grad_cam"], "classifier.2", "{s}");
    assert_eq!(s["model"], model.display().to_string());
    let npy = entries(&out)
        .into_iter()
        .find(|e| e.starts_with("a_tall.grad_cam.") && e.ends_with(".npy"))
        .unwrap();
    let (shape, map) = read_npy(&out.join(npy));
    assert_eq!(shape, [64, 64]);
    assert!(map.iter().all(|v| v.is_finite()) && map.iter().any(|&v| v > 0.0));
    let o = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .arg("layers")
        .arg(&model)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.lines()
            .any(|l| l.starts_with("features.12 ") && l.contains("[1, 512, 3, 3]")),
        "{text}"
    );

    let bad = f.path("bad");
    std::fs::create_dir(&bad).unwrap();
    let bytes = std::fs::read(fixtures.join("densenet_s.onnx")).unwrap();
    std::fs::write(bad.join("truncated.onnx"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(bad.join("text.onnx"), b"not a model\n").unwrap();
    let mut unknown = bytes.clone();
    let at = unknown
        .windows(19)
        .position(|w| w == b"\x22\x11GlobalAveragePool")
        .unwrap();
    unknown[at + 18] = b'x';
    std::fs::write(bad.join("unknown.onnx"), unknown).unwrap();
    std::fs::copy(fixtures.join("vit_s.onnx"), bad.join("vit_s.onnx")).unwrap();
    let fifo = bad.join("fifo.onnx");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for (file, says) in [
        ("truncated.onnx", "not a valid ONNX model"),
        ("text.onnx", "not a valid ONNX model"),
        (
            "unknown.onnx",
            "op \"GlobalAveragePoox\" (opset 17) is not supported",
        ),
        ("vit_s.onnx", "missing file"),
        ("fifo.onnx", "not a regular file"),
    ] {
        let out = f.path(&format!("out_{file}"));
        let o = Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["explain", "--method", "gradient", "--model"])
            .arg(bad.join(file))
            .arg("--out")
            .arg(&out)
            .arg(&f.images)
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{file}: {err}");
        assert_eq!(err.lines().count(), 1, "{file}: {err}");
        assert!(err.contains(says), "{file}: {err}");
        assert!(!out.exists(), "{file}: wrote {:?}", entries(&out));
    }
}

/// LRP composites run next to a gradient method, on Zennit's canonized
/// model (their own forward pass), with the command's parameters: their
/// maps are the library's, bit for bit, signed (relevance), drawn with the
/// diverging colormap; a composite missing a parameter, or a parameter no
/// method takes, is an error before anything is written.
#[test]
fn lrp_methods_run_on_zennit_s_canonized_model() {
    use sightline::attribution::lrp::{LrpParams, ZennitComposite};
    use sightline::layers::{Canonizer, ResNetCanonizer};
    let f = Fixture::new();
    let out = f.path("out");
    let png = f.images.join("b_square.png");
    let o = f.explain(
        &out,
        &[
            "--method",
            "gradient,lrp.epsilon_plus_flat,lrp.epsilon_gamma_box",
            "--lrp-epsilon",
            "0.1",
            "--lrp-bounds",
            "-3,3",
            "--colormap",
            "coolwarm",
            "--target",
            "3",
            png.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&out)["colormap"], "coolwarm");
    let pre = Preprocess {
        resize: Some(32),
        crop: Some(32),
        ..Preprocess::default()
    };
    let x = pre.load(&png).unwrap().tensor;
    let canonized = ResNetCanonizer::new().apply(&f.model()).unwrap();
    let ex = Explainer::new(&canonized, &x).unwrap();
    let opts = SaliencyOptions {
        resize: Resize::Input,
        ..SaliencyOptions::default()
    };
    for composite in [
        ZennitComposite::EpsilonPlusFlat,
        ZennitComposite::EpsilonGammaBox,
    ] {
        let params = LrpParams {
            epsilon: 0.1,
            bounds: Some((-3.0, 3.0)),
            ..LrpParams::default()
        };
        let method = Method::Lrp { composite, params };
        let want = ex.saliency(&method, &Target::Class(3), &opts).unwrap().map;
        let name = composite.method_name();
        let (shape, got) = read_npy(&out.join(format!("b_square.{name}.3.npy")));
        assert_eq!(shape, vec![32, 32]);
        assert_eq!(got, want.data(), "{name}");
        assert!(
            got.iter().any(|v| *v < 0.0) && got.iter().any(|v| *v > 0.0),
            "{name}: signed"
        );
    }
    f.assert_refused(
        &png,
        &[
            vec!["--method", "lrp.epsilon_gamma_box"],
            vec!["--method", "lrp.epsilon_plus", "--lrp-gamma", "0.5"],
            vec!["--method", "lrp.epsilon_plus", "--lrp-epsilon", "-1"],
        ],
    );
}

/// `--method rise` next to a gradient method: its maps are the library's
/// RISE (`perturbation::rise` on the batch-norm-merged model, masks from
/// the seed), bit for bit, at the input's size; its options are refused
/// when out of range or when no method takes them, before anything is
/// written.
#[test]
fn rise_runs_from_the_command_with_its_options() {
    use sightline::attribution::perturbation::{rise, MaskSource, RiseDraws, RiseOptions};
    use sightline::layers::{Canonizer, MergeBatchNorm};
    let f = Fixture::new();
    let out = f.path("out");
    let png = f.images.join("b_square.png");
    let o = f.explain(
        &out,
        &[
            "--method",
            "gradient,rise",
            "--rise-masks",
            "40",
            "--rise-cells",
            "4",
            "--rise-batch",
            "16",
            "--rise-seed",
            "5",
            "--target",
            "3",
            png.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let pre = Preprocess {
        resize: Some(32),
        crop: Some(32),
        ..Preprocess::default()
    };
    let x = pre.load(&png).unwrap().tensor;
    let merged = MergeBatchNorm::exact().apply(&f.model()).unwrap();
    let draws = RiseDraws::seeded(40, 4, 0.5, (32, 32), 5).unwrap();
    let opts = RiseOptions {
        batch_size: 16,
        classes: vec![3],
    };
    let want = rise(&merged, &x, MaskSource::Draws(&draws), &opts).unwrap();
    let (shape, got) = read_npy(&out.join("b_square.rise.3.npy"));
    assert_eq!(shape, vec![32, 32]);
    assert_eq!(got, want.data());
    assert!(
        got.iter().all(|v| (0.0..=1.0).contains(v)),
        "RISE maps are means of masks"
    );
    f.assert_refused(
        &png,
        &[
            vec!["--method", "rise", "--rise-cells", "1"],
            vec!["--method", "rise", "--rise-p", "1.5"],
            vec!["--method", "rise", "--rise-masks", "0"],
            vec!["--method", "gradient", "--rise-masks", "10"],
        ],
    );
}

/// `--method extremal_perturbation`: its map is the library's mask (on the
/// batch-norm-merged model, the command's parameters), bit for bit; its
/// options are refused when out of range or when no method takes them.
#[test]
fn extremal_perturbation_runs_from_the_command_with_its_options() {
    use sightline::attribution::perturbation::{
        extremal_perturbation, ExtremalOptions, ExtremalVariant,
    };
    use sightline::layers::{Canonizer, MergeBatchNorm};
    let f = Fixture::new();
    let out = f.path("out");
    let png = f.images.join("b_square.png");
    let o = f.explain(
        &out,
        &[
            "--method",
            "extremal_perturbation",
            "--ep-area",
            "0.3",
            "--ep-iters",
            "6",
            "--ep-step",
            "2",
            "--ep-sigma",
            "3",
            "--ep-variant",
            "delete",
            "--ep-jitter",
            "false",
            "--target",
            "3",
            png.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let pre = Preprocess {
        resize: Some(32),
        crop: Some(32),
        ..Preprocess::default()
    };
    let x = pre.load(&png).unwrap().tensor;
    let merged = MergeBatchNorm::exact().apply(&f.model()).unwrap();
    let opts = ExtremalOptions {
        areas: vec![0.3],
        max_iter: 6,
        step: 2,
        sigma: 3.0,
        variant: ExtremalVariant::Delete,
        jitter: false,
        ..ExtremalOptions::default()
    };
    let want = extremal_perturbation(&merged, &x, 3, &opts).unwrap();
    let (shape, got) = read_npy(&out.join("b_square.extremal_perturbation.3.npy"));
    assert_eq!(shape, vec![32, 32]);
    assert_eq!(got, want.data());
    f.assert_refused(
        &png,
        &[
            vec!["--method", "extremal_perturbation", "--ep-area", "1.5"],
            vec!["--method", "extremal_perturbation", "--ep-iters", "0"],
            vec!["--method", "extremal_perturbation", "--ep-variant", "keep"],
            vec!["--method", "gradient", "--ep-area", "0.2"],
        ],
    );
}

/// `b_square.png` preprocessed as the tiny model's runs take it (32 x 32).
fn tiny_input(f: &Fixture) -> sightline::tensor::Tensor<f32> {
    let pre = Preprocess {
        resize: Some(32),
        crop: Some(32),
        ..Preprocess::default()
    };
    pre.load(&f.images.join("b_square.png")).unwrap().tensor
}

/// Captum's six methods from the command: each `.npy` is Captum's raw
/// attribution in its own shape and equals the library's answer bit for
/// bit (saliency `|g|`, input x gradient `x * g` with `g` the plain input
/// gradient); the pictures show its sum over channels, in the diverging
/// colormap when it is signed.
#[test]
fn captum_methods_run_from_the_command() {
    use sightline::attribution::captum::{
        self, Baseline, IgOptions, Integration, NoiseKind, NoiseTunnelOptions,
    };
    use sightline::tensor::ResizeMode;
    let f = Fixture::new();
    let out = f.path("out");
    let png = f.images.join("b_square.png");
    let o = f.explain(
        &out,
        &[
            "--method",
            "saliency,input_x_gradient,integrated_gradients,noise_tunnel,guided_grad_cam,layer_grad_cam",
            "--ig-steps",
            "6",
            "--ig-method",
            "riemann_trapezoid",
            "--baseline",
            "black",
            "--nt-type",
            "smoothgrad_sq",
            "--nt-samples",
            "3",
            "--nt-stdev",
            "0.2",
            "--nt-seed",
            "4",
            "--target",
            "3",
            png.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let model = f.model();
    let x = tiny_input(&f);
    let t = Target::Class(3);
    let npy = |name: &str| read_npy(&out.join(format!("b_square.{name}.3.npy")));
    let assert_npy = |name: &str, want: &sightline::tensor::Tensor<f32>| {
        let (shape, got) = npy(name);
        let want_shape: Vec<u64> = want.shape()[1..].iter().map(|&d| d as u64).collect();
        assert_eq!(shape, want_shape, "{name}");
        assert_eq!(got, want.data(), "{name}");
    };
    // Saliency: |g|; input x gradient: x * g, from the plain gradient.
    let g = captum::saliency(&model, &x, &t, false).unwrap();
    let (shape, sal) = npy("saliency");
    assert_eq!(shape, vec![3, 32, 32]);
    let abs: Vec<f32> = g.data().iter().map(|v| v.abs()).collect();
    assert_eq!(sal, abs);
    let (_, ixg) = npy("input_x_gradient");
    let product: Vec<f32> = x.data().iter().zip(g.data()).map(|(x, g)| x * g).collect();
    assert_eq!(ixg, product);
    assert!(ixg.iter().any(|v| *v < 0.0) && ixg.iter().any(|v| *v > 0.0));
    // Integrated gradients from the normalised black image: ImageNet's
    // normalisation of a 0 pixel, (0 - mean) / std per channel.
    let black_pixel = Preprocess::default().to_tensor(&RgbImage::new(1, 1));
    for c in 0..3 {
        let want = -IMAGENET_MEAN[c] / IMAGENET_STD[c];
        assert!((black_pixel.data()[c] - want).abs() <= 1e-6, "{c}");
    }
    let black: Vec<f32> = black_pixel
        .data()
        .iter()
        .flat_map(|&v| std::iter::repeat_n(v, 32 * 32))
        .collect();
    let ig_opts = IgOptions {
        baseline: Baseline::Tensor(
            sightline::tensor::Tensor::from_vec([1, 3, 32, 32], black).unwrap(),
        ),
        n_steps: 6,
        method: Integration::RiemannTrapezoid,
        ..IgOptions::default()
    };
    assert_npy(
        "integrated_gradients",
        &captum::integrated_gradients(&model, &x, &t, &ig_opts).unwrap(),
    );
    let nt_opts = NoiseTunnelOptions {
        kind: NoiseKind::SmoothGradSq,
        samples: 3,
        stdev: 0.2,
        seed: 4,
        ..NoiseTunnelOptions::default()
    };
    let nt = captum::noise_tunnel(&x, &t, &nt_opts, |b, bt| {
        captum::saliency(&model, b, bt, true)
    })
    .unwrap();
    assert_npy("noise_tunnel", &nt);
    assert_npy(
        "guided_grad_cam",
        &captum::guided_grad_cam(&model, &x, &t, "features.4", ResizeMode::Nearest).unwrap(),
    );
    // Layer Grad-CAM at its layer's 16 x 16, unclamped.
    let cam = captum::layer_grad_cam(&model, &x, &t, "features.4", false).unwrap();
    assert_eq!(cam.shape(), &[1, 1, 16, 16]);
    assert_npy("layer_grad_cam", &cam);
    let s = summary(&out);
    assert_eq!(s["layers"]["layer_grad_cam"], "features.4");
    assert_eq!(s["layers"]["guided_grad_cam"], "features.4");
    assert_eq!(s["layers"]["saliency"], "");
    assert!(s["colormap"].is_null());
    for (method, cmap) in [
        ("saliency", "jet"),
        ("input_x_gradient", "coolwarm"),
        ("integrated_gradients", "coolwarm"),
        ("noise_tunnel", "jet"),
        ("guided_grad_cam", "coolwarm"),
        ("layer_grad_cam", "coolwarm"),
    ] {
        assert_eq!(s["colormaps"][method], cmap, "{method}");
    }
    // The pictures show the channel sum, at the input's size: its range
    // is the summary's.
    for m in s["images"][0]["maps"].as_array().unwrap() {
        let name = m["method"].as_str().unwrap();
        assert_eq!(
            (m["width"].as_u64(), m["height"].as_u64()),
            (Some(32), Some(32)),
            "{name}"
        );
        let (shape, values) = npy(name);
        assert_eq!(
            m["shape"],
            serde_json::json!(shape),
            "{name}: the .npy's shape"
        );
        if shape[0] == 3 {
            let plane = 32 * 32;
            let sum: Vec<f32> = (0..plane)
                .map(|i| values[i] + values[plane + i] + values[2 * plane + i])
                .collect();
            let lo = sum.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = sum.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(m["min"].as_f64().unwrap() as f32, lo, "{name}");
            assert_eq!(m["max"].as_f64().unwrap() as f32, hi, "{name}");
        }
        let heat = image::open(out.join(m["files"]["heatmap"].as_str().unwrap())).unwrap();
        assert_eq!((heat.width(), heat.height()), (32, 32), "{name}");
    }
    // Options no requested method takes, and values a method refuses.
    let bad_baseline = f.path("b16.npy");
    std::fs::write(
        &bad_baseline,
        sightline_npy(&vec![0.0; 3 * 16 * 16], &[3, 16, 16]),
    )
    .unwrap();
    f.assert_refused(
        &png,
        &[
            vec!["--method", "gradient", "--ig-steps", "5"],
            vec!["--method", "noise_tunnel", "--ig-steps", "5"],
            vec!["--method", "integrated_gradients", "--nt-seed", "1"],
            vec!["--method", "saliency", "--smooth", "0.1"],
            vec!["--method", "integrated_gradients", "--ig-method", "simpson"],
            vec!["--method", "integrated_gradients", "--ig-steps", "0"],
            vec!["--method", "integrated_gradients", "--baseline", "white"],
            vec![
                "--method",
                "integrated_gradients",
                "--baseline",
                bad_baseline.to_str().unwrap(),
            ],
            vec!["--method", "noise_tunnel", "--nt-type", "smooth"],
            vec!["--method", "noise_tunnel", "--nt-samples", "0"],
            vec!["--method", "noise_tunnel", "--nt-method", "gradient"],
        ],
    );
}

/// ImageNet's normalisation (torchvision's).
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `.npy` bytes of float32 `values` of `shape`.
fn sightline_npy(values: &[f32], shape: &[u64]) -> Vec<u8> {
    use npyz::WriterBuilder;
    let mut bytes = Vec::new();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut bytes)
        .begin_nd()
        .unwrap();
    w.extend(values.iter().copied()).unwrap();
    w.finish().unwrap();
    bytes
}

/// `--layer METHOD=LAYER`: each method probes its own layer (the others
/// their default), and its map is the library's at that layer; a method
/// named there but not asked for, or one that probes no layer, is refused
/// with nothing written.
#[test]
fn layers_are_given_per_method() {
    let f = Fixture::new();
    let out = f.path("out");
    let png = f.images.join("b_square.png");
    let o = f.explain(
        &out,
        &[
            "--method",
            "gradient,grad_cam,excitation_backprop,layer_grad_cam",
            "--layer",
            "grad_cam=features.1,layer_grad_cam=features.3",
            "--target",
            "5",
            png.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&out);
    assert_eq!(s["layers"]["gradient"], "");
    assert_eq!(s["layers"]["grad_cam"], "features.1");
    assert_eq!(s["layers"]["excitation_backprop"], "features.2");
    assert_eq!(s["layers"]["layer_grad_cam"], "features.3");
    let model = f.model();
    let x = tiny_input(&f);
    let ex = Explainer::new(&model, &x).unwrap();
    let opts = SaliencyOptions {
        layer: Some("features.1".into()),
        resize: Resize::Input,
        ..SaliencyOptions::default()
    };
    let want = ex
        .saliency(&Method::GradCam, &Target::Class(5), &opts)
        .unwrap();
    let (shape, got) = read_npy(&out.join("b_square.grad_cam.5.npy"));
    assert_eq!(shape, vec![32, 32]);
    assert_eq!(got, want.map.data());
    // features.3 is the second convolution: 8 channels at 16 x 16.
    let cam = sightline::attribution::captum::layer_grad_cam(
        &model,
        &x,
        &Target::Class(5),
        "features.3",
        false,
    )
    .unwrap();
    let (shape, got) = read_npy(&out.join("b_square.layer_grad_cam.5.npy"));
    assert_eq!(shape, vec![1, 16, 16]);
    assert_eq!(got, cam.data());
    f.assert_refused(
        &png,
        &[
            vec![
                "--method",
                "grad_cam",
                "--layer",
                "layer_grad_cam=features.1",
            ],
            vec![
                "--method",
                "gradient,grad_cam",
                "--layer",
                "gradient=features.1",
            ],
            vec!["--method", "gradient", "--layer", "features.1"],
            vec!["--method", "grad_cam", "--layer", "grad_cam=features.9"],
            vec![
                "--method",
                "grad_cam",
                "--layer",
                "grad_cam=features.1,grad_cam=features.3",
            ],
        ],
    );
}

/// `--batch N`: the images go through one forward pass and the methods'
/// passes together, and every `.npy` is the same bytes as one image at a
/// time (TorchRay's, Captum's, an LRP composite and RISE; two classes per
/// image); with `--no-crop`, images of another model-input size go in
/// their own batch. The summary gives each image's batch and the images
/// per second; `--save-input` writes the tensor the model saw.
#[test]
fn batches_give_the_same_maps_as_one_image_at_a_time() {
    let f = Fixture::new();
    picture(50, 30).save(f.images.join("c_wide.png")).unwrap();
    // The size of b_square.png (40 x 30), another picture, next in order.
    let mut other = picture(40, 30);
    image::imageops::flip_horizontal_in_place(&mut other);
    other.save(f.images.join("b_square2.png")).unwrap();
    let methods = "gradient,guided_backprop,grad_cam,contrastive_excitation_backprop,\
                   lrp.epsilon_plus_flat,integrated_gradients,saliency,guided_grad_cam,\
                   noise_tunnel,rise";
    let run = |batch: &str, no_crop: bool| {
        let out = f.path(&format!("out_{batch}_{no_crop}"));
        let mut args = vec![
            "--method",
            methods,
            "--ig-steps",
            "5",
            "--nt-samples",
            "2",
            "--rise-masks",
            "12",
            "--rise-batch",
            "5",
            "--target",
            "top2",
            "--batch",
            batch,
            "--save-input",
        ];
        if no_crop {
            args.push("--no-crop");
        }
        args.push(f.images.to_str().unwrap());
        let o = f.explain(&out, &args);
        assert!(o.status.success(), "--batch {batch}: {}", stderr(&o));
        out
    };
    let npys = |dir: &Path| -> Vec<String> {
        entries(dir)
            .into_iter()
            .filter(|n| n.ends_with(".npy"))
            .collect()
    };
    for no_crop in [false, true] {
        let one = run("1", no_crop);
        let names = npys(&one);
        // 4 images x (10 methods x 2 classes + the input).
        assert_eq!(names.len(), 4 * (10 * 2 + 1), "{names:?}");
        for batch in ["2", "3"] {
            let many = run(batch, no_crop);
            assert_eq!(npys(&many), names, "--batch {batch}");
            for n in &names {
                let a = std::fs::read(one.join(n)).unwrap();
                let b = std::fs::read(many.join(n)).unwrap();
                assert!(
                    a == b,
                    "{n} differs between --batch 1 and --batch {batch} (no crop: {no_crop})"
                );
            }
            let s = summary(&many);
            assert_eq!(s["batch"], batch.parse::<u64>().unwrap());
            assert!(s["images_per_s"].as_f64().unwrap() > 0.0);
            let batches: Vec<u64> = s["images"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["batch"].as_u64().unwrap())
                .collect();
            // In input order a_tall, b_square, b_square2, c_wide; without
            // the crop their model inputs are 32 x 42, 42 x 32 (twice) and
            // 53 x 32.
            let want: Vec<u64> = match (no_crop, batch) {
                (false, "2") => vec![2, 2, 2, 2],
                (false, _) => vec![3, 3, 3, 1],
                (true, "2") => vec![1, 1, 1, 1],
                (true, _) => vec![1, 2, 2, 1],
            };
            assert_eq!(batches, want, "--batch {batch} (no crop: {no_crop})");
        }
    }
    // The saved input is the tensor the model saw.
    let one = f.path("out_1_false");
    let (shape, got) = read_npy(&one.join("b_square.input.npy"));
    assert_eq!(shape, vec![3, 32, 32]);
    assert_eq!(got, tiny_input(&f).data());
}
