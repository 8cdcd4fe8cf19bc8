//! Every case of the reference fixtures (TorchRay and Captum on PyTorch),
//! run through the library, within `1e-4 * max|expected|`.

use sightline::manifest::{run_model_with, Manifest, Recording, TOLERANCE};
use std::path::Path;

fn manifest() -> Manifest {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifest.json");
    Manifest::load(&path).expect("fixture manifest")
}

fn check_model(name: &str, recording: Recording) {
    let m = manifest();
    let entry = &m.models[name];
    let results = run_model_with(entry, &m.root, recording).expect("model runs");
    assert_eq!(results.len(), entry.cases.len());
    let failures: Vec<String> = results
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{}: {:?}", r.name, r.outcome))
        .collect();
    assert!(
        failures.is_empty(),
        "{name} ({recording:?}) cases over {TOLERANCE}: {failures:#?}"
    );
}

#[test]
fn tiny_vgg_matches_torchray_and_captum() {
    check_model("tiny_vgg", Recording::Folded);
}

/// With batch norms folded into the convolutions (as `explain` and `bench`
/// record) and without: both within the bar.
#[test]
fn tiny_resnet_matches_torchray_and_captum() {
    check_model("tiny_resnet", Recording::Folded);
    check_model("tiny_resnet", Recording::Unfolded);
}

#[test]
fn every_fixture_case_is_run() {
    let m = manifest();
    let total: usize = m.models.values().map(|e| e.cases.len()).sum();
    assert_eq!(total, 41);
}

#[test]
fn compare_command_prints_the_total_and_fails_on_unknown_methods() {
    let bin = env!("CARGO_BIN_EXE_sightline");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let out = std::process::Command::new(bin)
        .args(["compare", "--manifest"])
        .arg(fixtures.join("manifest.json"))
        .output()
        .expect("run sightline");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.lines().any(|l| l == "41 passed, 0 failed"), "{text}");

    // A manifest naming an unknown method: reported as a failure, exit code non-zero.
    let dir = std::env::temp_dir().join(format!("sightline-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["tiny_vgg.safetensors", "tiny_vgg.cases.safetensors"] {
        std::fs::copy(fixtures.join(f), dir.join(f)).unwrap();
    }
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("manifest.json")).unwrap())
            .unwrap();
    let models = json["models"].as_object_mut().unwrap();
    models.remove("tiny_resnet");
    let cases = models["tiny_vgg"]["cases"].as_array_mut().unwrap();
    cases.truncate(2);
    cases[1]["method"] = "rise".into();
    std::fs::write(dir.join("manifest.json"), json.to_string()).unwrap();
    let out = std::process::Command::new(bin)
        .args(["compare", "--manifest"])
        .arg(dir.join("manifest.json"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.contains("FAIL unknown method `rise`"), "{text}");
    assert!(text.lines().any(|l| l == "1 passed, 1 failed"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}
