//! `sightline evaluate`: scores that are the library's, shards that merge
//! into one run's report, reruns that keep what was scored.

use image::{Rgb, RgbImage};
use serde_json::Value;
use sightline::attribution::evaluation::{causal_metric, CausalMode, CausalOptions};
use sightline::attribution::{Explainer, Method, Resize, SaliencyOptions, Target};
use sightline::imageio::Preprocess;
use sightline::layers::{Architecture, Canonizer, MergeBatchNorm, Model};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TINY_VGG: &str =
    r#"{"kind":"vgg","cfg":[4,"M",8,"M"],"avgpool":[2,2],"hidden":16,"num_classes":10}"#;

struct Fixture {
    dir: tempfile::TempDir,
    arch: PathBuf,
    weights: PathBuf,
    images: PathBuf,
}

impl Fixture {
    /// A tiny model and five pictures.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let arch = dir.path().join("tiny_vgg.json");
        std::fs::write(&arch, TINY_VGG).unwrap();
        let model = Model::<f32>::random(&Architecture::from_json(TINY_VGG).unwrap(), 3).unwrap();
        let weights = dir.path().join("tiny_vgg.safetensors");
        model.save_safetensors(&weights).unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir(&images).unwrap();
        for k in 0..5u32 {
            RgbImage::from_fn(36 + 2 * k, 32, |x, y| {
                Rgb([
                    (x * 7 + k * 40) as u8,
                    (y * 5 + k * 9) as u8,
                    ((x + y) * 3) as u8,
                ])
            })
            .save(images.join(format!("img{k}.png")))
            .unwrap();
        }
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

    fn evaluate(&self, out: &Path, extra: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_sightline"))
            .arg("evaluate")
            .arg("--arch")
            .arg(&self.arch)
            .arg("--weights")
            .arg(&self.weights)
            .args(["--resize", "32", "--size", "32", "--step", "64"])
            .args(["--method", "gradient,grad_cam", "--out"])
            .arg(out)
            .args(extra)
            .arg(&self.images)
            .output()
            .unwrap()
    }
}

fn report(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command's AUCs are the library's games on the same input and map;
/// the sanity check randomises every layer from the top.
#[test]
fn evaluate_scores_are_the_library_s() {
    let f = Fixture::new();
    let out = f.path("all");
    let o = f.evaluate(&out, &["--metrics", "deletion,insertion,sanity"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&out);
    assert_eq!(r["images"].as_array().unwrap().len(), 5);
    let img = &r["images"][2];
    assert_eq!(img["stem"], "img2");
    let class = img["class"].as_u64().unwrap() as usize;
    let model =
        Model::<f32>::from_safetensors(&Architecture::from_json(TINY_VGG).unwrap(), &f.weights)
            .unwrap();
    let pre = Preprocess {
        resize: Some(32),
        crop: Some(32),
        ..Preprocess::default()
    };
    let x = pre.load(&f.images.join("img2.png")).unwrap().tensor;
    let merged = MergeBatchNorm::exact().apply(&model).unwrap();
    let ex = Explainer::new(&merged, &x).unwrap();
    let opts = SaliencyOptions {
        resize: Resize::Input,
        ..SaliencyOptions::default()
    };
    let map = ex
        .saliency(&Method::Gradient, &Target::Class(class), &opts)
        .unwrap()
        .map;
    let games = CausalOptions {
        step: 64,
        ..CausalOptions::default()
    };
    for (mode, key) in [
        (CausalMode::Deletion, "deletion_auc"),
        (CausalMode::Insertion, "insertion_auc"),
    ] {
        let want = causal_metric(&model, &x, &map, Some(class), mode, &games)
            .unwrap()
            .auc;
        let got = img["methods"]["gradient"][key].as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "{key}: {got} vs {want}");
    }
    let sanity = img["methods"]["grad_cam"]["sanity"].as_array().unwrap();
    let layers: Vec<&str> = sanity
        .iter()
        .map(|s| s["layer"].as_str().unwrap())
        .collect();
    assert_eq!(
        layers,
        [
            "classifier.6",
            "classifier.3",
            "classifier.0",
            "features.3",
            "features.0"
        ]
    );
    assert_eq!(r["summary"]["gradient"]["images"], 5);
}

/// Two shards merged give the report of one run; a rerun keeps the images
/// already scored.
#[test]
fn shards_merge_into_one_run_and_reruns_resume() {
    let f = Fixture::new();
    let one = f.path("one");
    assert!(f.evaluate(&one, &[]).status.success());
    let (a, b) = (f.path("shard0"), f.path("shard1"));
    let oa = f.evaluate(&a, &["--shard", "0/2"]);
    assert!(oa.status.success(), "{}", stderr(&oa));
    assert!(f.evaluate(&b, &["--shard", "1/2"]).status.success());
    assert_eq!(report(&a)["images"].as_array().unwrap().len(), 3);
    assert_eq!(report(&b)["images"].as_array().unwrap().len(), 2);
    let merged = f.path("merged");
    let o = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["evaluate", "--merge", "--out"])
        .arg(&merged)
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(report(&merged), report(&one));
    // A rerun of shard 0 scores nothing again: an image's file is kept as
    // it is (here, edited) and the report is made from it.
    let file = a.join("images/img0.json");
    let mut scores: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    scores["methods"]["gradient"]["deletion_auc"] = Value::from(0.125);
    std::fs::write(&file, serde_json::to_string(&scores).unwrap()).unwrap();
    let o = f.evaluate(&a, &["--shard", "0/2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("3 image(s) already scored"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        report(&a)["images"][0]["methods"]["gradient"]["deletion_auc"],
        0.125
    );
}

/// Bad options exit 2 before anything is written.
#[test]
fn bad_evaluate_options_are_refused() {
    let f = Fixture::new();
    for bad in [
        vec!["--shard", "2/2"],
        vec!["--metrics", "pointing"],
        vec!["--target", "top3"],
        vec!["--eval-batch", "0"],
    ] {
        let out = f.path("refused");
        let o = f.evaluate(&out, &bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{bad:?}: {}", stderr(&o));
        assert!(!out.exists(), "{bad:?}");
    }
}
