//! The demo: the generated images, training, the pointing game, the VOC
//! reader, the committed model and the `demo`, `pointing-game` and
//! `train-demo` commands.

use sightline::demo::dataset::{self, Sample, CLASSES, IMAGE_SIZE, TEST_SEED};
use sightline::demo::embedded;
use sightline::demo::pointing::{
    center_point, first_max, play_generated, scaled_tolerance, Mask, PointingGame, Score,
};
use sightline::demo::train::{
    self, accuracy, loss_and_gradients, sharded_loss_and_gradients, Adam, TrainOptions,
};
use sightline::demo::voc::{self, parse_annotation, play_folder, Subset};
use sightline_attribution::Method;
use sightline_layers::Model;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sightline"))
}

/// Object pixels whose eight neighbours are object pixels too (fully covered).
fn interior(s: &Sample) -> Vec<usize> {
    let n = s.size;
    (0..n * n)
        .filter(|&i| {
            let (x, y) = (i % n, i / n);
            x > 0
                && y > 0
                && x + 1 < n
                && y + 1 < n
                && (0..9).all(|k| s.mask[(y + k / 3 - 1) * n + x + k % 3 - 1])
        })
        .collect()
}

#[test]
fn dataset_is_deterministic_and_masks_fit_the_shapes() {
    let a = dataset::generate(7, 0, 36, IMAGE_SIZE);
    assert_eq!(a, dataset::generate(7, 0, 36, IMAGE_SIZE));
    // Item i does not depend on the range it is generated in.
    assert_eq!(a[20], dataset::sample(7, 20, IMAGE_SIZE));
    assert_eq!(&a[30..], &dataset::generate(7, 30, 6, IMAGE_SIZE)[..]);
    assert_ne!(a[0].pixels, dataset::sample(8, 0, IMAGE_SIZE).pixels);

    for (i, s) in a.iter().enumerate() {
        assert_eq!(s.class, i % CLASSES.len());
        assert_eq!(s.pixels.len(), 3 * 64 * 64);
        assert!(s.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
        // The object is inside the image, between 25% and 40% of its side.
        let [x0, y0, x1, y1] = s.bbox().expect("an object");
        let (w, h) = (x1 - x0 + 1, y1 - y0 + 1);
        assert!(w.max(h) >= 14 && w.max(h) <= 27, "item {i}: {w} x {h}");
        // The mask is exactly the object: its inside has one colour (up to the
        // +-0.04 pixel noise), whatever distractors lie under it.
        let inner = interior(s);
        assert!(!inner.is_empty(), "item {i}");
        for c in 0..3 {
            let vals: Vec<f32> = inner.iter().map(|&p| s.pixels[c * 4096 + p]).collect();
            let spread = vals.iter().cloned().fold(f32::MIN, f32::max)
                - vals.iter().cloned().fold(f32::MAX, f32::min);
            assert!(spread <= 0.081, "item {i} channel {c}: spread {spread}");
        }
        // The mask has the class's shape.
        let area = s.mask.iter().filter(|&&m| m).count() as f64;
        let fill = area / (w * h) as f64;
        let centre = s.mask[(y0 + y1) / 2 * 64 + (x0 + x1) / 2];
        let corner = s.mask[y0 * 64 + x0];
        let aspect = w.max(h) as f64 / w.min(h) as f64;
        match CLASSES[s.class] {
            "disc" => assert!(
                (0.70..0.86).contains(&fill) && centre && !corner,
                "disc {i}: {fill}"
            ),
            "square" => assert!(fill > 0.9 && aspect < 1.15, "square {i}: {fill} {aspect}"),
            "triangle" => assert!((0.40..0.62).contains(&fill), "triangle {i}: {fill}"),
            "cross" => assert!(
                (0.45..0.65).contains(&fill) && centre && !corner,
                "cross {i}: {fill}"
            ),
            "ring" => assert!(!centre && !corner && fill > 0.45, "ring {i}: {fill}"),
            "bar" => assert!(fill > 0.9 && aspect > 2.5, "bar {i}: {fill} {aspect}"),
            other => panic!("unknown class {other}"),
        }
    }
}

#[test]
fn colour_does_not_tell_the_class() {
    // The mean object colour of every class is near mid-grey: only the shape
    // separates the classes.
    let samples = dataset::generate(11, 0, 360, IMAGE_SIZE);
    for (class, name) in CLASSES.iter().enumerate() {
        let mut sum = [0.0f64; 3];
        let mut n = 0.0;
        for s in samples.iter().filter(|s| s.class == class) {
            let inner = interior(s);
            for (c, acc) in sum.iter_mut().enumerate() {
                *acc += inner
                    .iter()
                    .map(|&p| s.pixels[c * 4096 + p] as f64)
                    .sum::<f64>()
                    / inner.len() as f64;
            }
            n += 1.0;
        }
        for (c, acc) in sum.iter().enumerate() {
            let mean = acc / n;
            assert!(
                (0.38..0.62).contains(&mean),
                "class {name} channel {c}: {mean}"
            );
        }
    }
}

#[test]
fn first_adam_step_moves_each_weight_by_the_learning_rate() {
    let mut model = Model::<f32>::random(&train::demo_architecture(), 3).unwrap();
    let before: HashMap<String, Vec<f32>> = model
        .parameters_mut()
        .into_iter()
        .map(|(n, t)| (n, t.data().to_vec()))
        .collect();
    let samples = dataset::generate(1, 0, 4, 32);
    let targets: Vec<usize> = samples.iter().map(|s| s.class).collect();
    let (_, grads) = loss_and_gradients(&model, &dataset::to_input(&samples), &targets).unwrap();
    assert_eq!(grads.len(), 14, "7 weights and 7 biases");
    Adam::new(0.0).step(&mut model, &grads, 0.01).unwrap();
    // Step 1 of Adam: m / (1 - b1) = g, v / (1 - b2) = g^2, update lr g / (|g| + eps).
    for (name, p) in model.parameters_mut() {
        let g = &grads[&name];
        for ((new, old), g) in p.data().iter().zip(&before[&name]).zip(g.data()) {
            let expect = old - 0.01 * g / (g.abs() + 1e-8);
            assert!((new - expect).abs() <= 1e-6, "{name}: {new} vs {expect}");
        }
    }
    // A missing gradient is an error, not a panic.
    assert!(Adam::new(0.0)
        .step(&mut model, &HashMap::new(), 0.01)
        .is_err());
}

#[test]
fn sharded_gradients_equal_whole_batch_gradients() {
    let model = Model::<f32>::random(&train::demo_architecture(), 5).unwrap();
    let samples = dataset::generate(1, 0, 6, 32);
    let targets: Vec<usize> = samples.iter().map(|s| s.class).collect();
    let (loss, whole) = loss_and_gradients(&model, &dataset::to_input(&samples), &targets).unwrap();
    let (sloss, sharded) = sharded_loss_and_gradients(&model, &samples, 2).unwrap();
    assert!((loss - sloss).abs() < 1e-5, "{loss} vs {sloss}");
    for (name, g) in &whole {
        let diff = g.max_abs_diff(&sharded[name]).unwrap();
        assert!(diff <= 1e-5 * (1.0 + g.max_abs()), "{name}: {diff}");
    }
}

#[test]
fn training_reduces_the_loss() {
    let opts = TrainOptions {
        seed: 4,
        epochs: 30,
        train_size: 48,
        val_size: 12,
        batch_size: 16,
        lr: 3e-3,
        size: 32,
        ..TrainOptions::default()
    };
    let samples = dataset::generate(opts.data_seed, 0, 48, 32);
    let targets: Vec<usize> = samples.iter().map(|s| s.class).collect();
    let start = Model::<f32>::random(&train::demo_architecture(), opts.seed).unwrap();
    let (before, _) = loss_and_gradients(&start, &dataset::to_input(&samples), &targets).unwrap();
    let mut steps = 0;
    let trained = train::train(&opts, &mut |p| {
        steps += 1;
        assert_eq!(p.step, steps);
        assert_eq!(p.total_steps, 90);
    })
    .unwrap();
    assert_eq!(steps, 90);
    assert_eq!(trained.epochs.len(), 30);
    let (after, _) =
        loss_and_gradients(&trained.model, &dataset::to_input(&samples), &targets).unwrap();
    assert!(
        (1.6..2.0).contains(&before),
        "random weights: loss {before} (ln 6 = 1.79)"
    );
    assert!(after < 0.5 * before, "loss {before} -> {after}");
    assert!(trained.epochs.last().unwrap().mean_loss < trained.epochs[0].mean_loss);
    // Options that cannot train are errors.
    assert!(train::train(
        &TrainOptions {
            batch_size: 0,
            ..opts
        },
        &mut |_| {}
    )
    .is_err());
}

#[test]
fn pointing_hits_are_strictly_within_the_tolerance() {
    let mut mask = Mask::new(10, 8);
    mask.data[5 * 10 + 5] = true; // the pixel (x 5, y 5)
    assert!(mask.hit((5, 5), 1.0));
    assert!(mask.hit((6, 6), 1.5)); // sqrt(2) < 1.5
    assert!(!mask.hit((7, 5), 2.0)); // distance 2 is not below 2
    assert!(mask.hit((7, 5), 2.001));
    assert!(!mask.hit((8, 8), 4.0)); // distance sqrt(18) = 4.24
    assert!(!Mask::new(10, 8).hit((5, 5), 100.0));
    assert!((scaled_tolerance(224) - 15.0).abs() < 1e-12);
    assert!((scaled_tolerance(64) - 15.0 * 64.0 / 224.0).abs() < 1e-12);
    assert_eq!(center_point(64, 64), (32, 32));
    assert_eq!(center_point(5, 4), (2, 2));

    // The first maximum in row-major order; NaNs are never a maximum.
    let map = [0.0, 1.0, 3.0, 2.0, 3.0, 3.0];
    assert_eq!(first_max(&map, 3), (2, 0));
    assert_eq!(first_max(&[f32::NAN, 0.5, 0.5, f32::NAN], 2), (1, 0));
    assert_eq!(first_max(&[-1.0, -1.0, -0.5, -2.0], 2), (0, 1));
    assert_eq!(first_max(&[0.0; 4], 2), (0, 0));

    // Accuracy is the mean of per-class accuracies, not hits over trials.
    let mut s = Score::new("m", 3);
    s.record(0, true);
    s.record(0, false);
    s.record(1, true);
    assert_eq!(s.class_accuracy(0), Some(0.5));
    assert_eq!(s.class_accuracy(2), None);
    assert!((s.accuracy() - 0.75).abs() < 1e-12);
    assert_eq!(s.totals(), (2, 3));
}

#[test]
fn the_committed_model_is_accurate_and_points_at_the_objects() {
    let bytes =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo_model.safetensors"))
            .unwrap();
    assert_eq!(
        bytes,
        embedded::WEIGHTS,
        "the binary embeds the committed weights"
    );
    assert!(bytes.len() < 2 << 20, "{} bytes", bytes.len());
    let (model, card) = embedded::model().unwrap();
    assert_eq!(card.classes, CLASSES);
    assert_eq!(card.architecture, train::demo_architecture());
    assert_eq!(card.image_size, IMAGE_SIZE);

    let held_out = dataset::generate(TEST_SEED, 0, 600, IMAGE_SIZE);
    let acc = accuracy(&model, &held_out).unwrap();
    assert!(acc >= 0.95, "held-out accuracy {acc}");

    let methods = [Method::Gradient, Method::GuidedBackprop, Method::GradCam];
    let game = play_generated(
        &model,
        &methods,
        TEST_SEED,
        60,
        IMAGE_SIZE,
        scaled_tolerance(64),
        30,
    )
    .unwrap();
    let center = game.score("center").unwrap().accuracy();
    for m in &methods {
        let a = game.score(m.name()).unwrap().accuracy();
        assert!(a > center + 0.3, "{m}: {a} vs center {center}");
    }
    assert_eq!(game.score("center").unwrap().totals().1, 60);
}

/// A VOC annotation of generated image `s` with extra objects.
fn xml(filename: &str, size: usize, objects: &[(&str, bool, [usize; 4])]) -> String {
    let mut out = format!(
        "<annotation>\n  <folder>VOC2007</folder>\n  <filename>{filename}</filename>\n  <size><width>{size}</width><height>{size}</height><depth>3</depth></size>\n"
    );
    for (name, difficult, [x0, y0, x1, y1]) in objects {
        out += &format!(
            "  <object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{}</difficult>\n    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>\n",
            u8::from(*difficult)
        );
    }
    out + "</annotation>\n"
}

/// Writes a VOC-style folder of three generated images; returns their samples.
fn voc_folder(dir: &Path) -> Vec<Sample> {
    std::fs::create_dir_all(dir.join("Annotations")).unwrap();
    std::fs::create_dir_all(dir.join("JPEGImages")).unwrap();
    let samples = dataset::generate(TEST_SEED, 100, 3, IMAGE_SIZE);
    for (i, s) in samples.iter().enumerate() {
        let name = format!("img{i}.png");
        s.to_rgb8()
            .save(dir.join("JPEGImages").join(&name))
            .unwrap();
        let [x0, y0, x1, y1] = s.bbox().unwrap();
        let bbox = [x0 + 1, y0 + 1, x1 + 1, y1 + 1]; // 1-based
        let class = CLASSES[s.class];
        let objects: Vec<(&str, bool, [usize; 4])> = match i {
            // The object, and a class the model does not know.
            0 => vec![(class, false, bbox), ("person", false, [1, 1, 5, 5])],
            // Only a difficult box: never played.
            1 => vec![(class, true, bbox)],
            // A difficult and a plain box of the same class: played in both subsets.
            _ => vec![(class, false, bbox), (class, true, [1, 1, 2, 2])],
        };
        std::fs::write(
            dir.join("Annotations").join(format!("img{i}.xml")),
            xml(&name, 64, &objects),
        )
        .unwrap();
    }
    samples
}

#[test]
fn voc_annotations_masks_and_difficult_subsets() {
    let text = xml(
        "a.jpg",
        64,
        &[
            ("dog", false, [3, 4, 10, 6]),
            ("dog", true, [20, 20, 20, 21]),
            ("cat", true, [1, 1, 64, 64]),
        ],
    );
    let ann = parse_annotation(&text, "a.xml").unwrap();
    assert_eq!(
        (ann.filename.as_str(), ann.width, ann.height),
        ("a.jpg", 64, 64)
    );
    assert_eq!(ann.objects.len(), 3);
    assert_eq!(ann.objects[0].bbox, [3, 4, 10, 6]);
    assert!(ann.objects[1].difficult && !ann.objects[0].difficult);
    // 1-based inclusive boxes, difficult boxes included in the union.
    let m = ann.mask("dog");
    let at = |x: usize, y: usize| m.data[y * 64 + x];
    assert!(at(2, 3) && at(9, 5) && !at(10, 5) && !at(2, 6) && !at(1, 3));
    assert!(at(19, 19) && at(19, 20) && !at(20, 19));
    assert_eq!(m.data.iter().filter(|&&v| v).count(), 8 * 3 + 2);
    assert_eq!(ann.mask("cat").data.iter().filter(|&&v| v).count(), 64 * 64);
    // `cat` has only difficult boxes: skipped; `dog` has a difficult box.
    assert_eq!(ann.played_classes(Subset::All), vec!["dog"]);
    assert_eq!(ann.played_classes(Subset::Difficult), vec!["dog"]);
    let plain =
        parse_annotation(&xml("b.jpg", 64, &[("dog", false, [1, 1, 2, 2])]), "b.xml").unwrap();
    assert_eq!(plain.played_classes(Subset::All), vec!["dog"]);
    assert!(plain.played_classes(Subset::Difficult).is_empty());
    // Coordinates written as decimals are accepted; broken files are errors.
    let decimal = xml("c.jpg", 64, &[("dog", false, [1, 1, 2, 2])])
        .replace("<xmax>2</xmax>", "<xmax>2.0</xmax>");
    assert_eq!(
        parse_annotation(&decimal, "c.xml").unwrap().objects[0].bbox,
        [1, 1, 2, 2]
    );
    let inverted = xml(
        "d.jpg",
        8,
        &[("dog", false, [6, 1, 3, 2]), ("cat", false, [0, 0, 99, 1])],
    );
    let inverted = parse_annotation(&inverted, "d.xml").unwrap();
    assert!(inverted.mask("dog").data.iter().all(|&v| !v));
    // Boxes are clipped to the image.
    assert_eq!(inverted.mask("cat").data.iter().filter(|&&v| v).count(), 8);
    for bad in [
        "<annotation>",
        "<other/>",
        "<annotation><filename>x</filename></annotation>",
    ] {
        let e = parse_annotation(bad, "bad.xml").unwrap_err().to_string();
        assert!(e.contains("bad.xml"), "{e}");
    }
    let no_box = text
        .replace("<bndbox>", "<box>")
        .replace("</bndbox>", "</box>");
    assert!(parse_annotation(&no_box, "n.xml")
        .unwrap_err()
        .to_string()
        .contains("bndbox"));

    // A generated VOC folder played with the demo model.
    let dir = tempfile::tempdir().unwrap();
    let samples = voc_folder(dir.path());
    let entries = voc::scan_folder(dir.path()).unwrap();
    assert_eq!(entries.len(), 3);
    assert!(entries[1].image.ends_with("JPEGImages/img1.png"));
    let (model, card) = embedded::model().unwrap();
    let methods = [Method::GuidedBackprop, Method::GradCam];
    let norm = (card.mean, card.std);
    let mut all = PointingGame::new(&methods, 6, 4.3);
    let stats = play_folder(
        &mut all,
        &model,
        dir.path(),
        &card.classes,
        Subset::All,
        norm,
        None,
    )
    .unwrap();
    assert_eq!(
        (stats.images, stats.played_images, stats.unknown_classes),
        (3, 2, 1)
    );
    assert_eq!(all.score("center").unwrap().totals().1, 2);
    let gb = all.score("guided_backprop").unwrap();
    assert_eq!(
        gb.totals(),
        (2, 2),
        "guided backprop points at both objects"
    );
    assert_eq!(gb.hits[samples[0].class] + gb.hits[samples[2].class], 2);
    let mut hard = PointingGame::new(&methods, 6, 4.3);
    let stats = play_folder(
        &mut hard,
        &model,
        dir.path(),
        &card.classes,
        Subset::Difficult,
        norm,
        None,
    )
    .unwrap();
    assert_eq!(stats.played_images, 1);
    assert_eq!(hard.score("grad_cam").unwrap().totals().1, 1);

    // An unreadable image is an error naming it.
    std::fs::write(dir.path().join("JPEGImages/img2.png"), b"not a png").unwrap();
    let e = play_folder(
        &mut hard,
        &model,
        dir.path(),
        &card.classes,
        Subset::All,
        norm,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("img2.png"), "{e}");
}

#[test]
fn pointing_game_command_on_a_voc_folder_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    voc_folder(dir.path());
    let out = bin()
        .args(["pointing-game", "--voc"])
        .arg(dir.path())
        .args(["--tolerance", "4.3", "--methods", "gradient,grad_cam"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("3 annotated images, 2 played (2 class instances)"),
        "{stdout}"
    );
    assert!(stdout.contains("skipped 1 class instances"), "{stdout}");
    for row in ["center", "gradient", "grad_cam"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(row) && l.contains("/ 2")),
            "{row}: {stdout}"
        );
    }

    for args in [
        vec!["pointing-game", "--methods", "gradient,nope"],
        vec!["pointing-game", "--voc", "/no/such/folder"],
        vec!["pointing-game", "--tolerance=-1"],
        vec![
            "pointing-game",
            "--arch",
            "vgg11",
            "--weights",
            "/no/such.safetensors",
        ],
        vec!["demo", "--images", "0"],
    ] {
        let out = bin().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("sightline: "), "{stderr}");
    }
}

#[test]
fn train_demo_command_writes_a_loadable_model() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("tiny.safetensors");
    let out = bin()
        .args(["train-demo", "--out"])
        .arg(&out_path)
        .args([
            "--train-size",
            "32",
            "--epochs",
            "1",
            "--val-size",
            "6",
            "--test-size",
            "6",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("held-out accuracy"), "{stdout}");
    let card =
        embedded::parse_card(&std::fs::read_to_string(dir.path().join("tiny.json")).unwrap())
            .unwrap();
    assert_eq!(card.classes, CLASSES);
    Model::<f32>::from_safetensors(&card.architecture, &out_path).unwrap();
    // Only the two files: no temporary left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    // The trained model plays the pointing game through --arch (its card) and --weights.
    let out = bin()
        .args([
            "pointing-game",
            "--count",
            "12",
            "--methods",
            "gradient",
            "--arch",
        ])
        .arg(dir.path().join("tiny.json"))
        .arg("--weights")
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("/ 12"));
    // A missing output folder fails before training.
    let out = bin()
        .args(["train-demo", "--out"])
        .arg(dir.path().join("missing/m.safetensors"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Existing weights are not replaced without --overwrite: refused before
    // training, the file untouched.
    let before = std::fs::read(&out_path).unwrap();
    let out = bin()
        .args(["train-demo", "--train-size", "8", "--epochs", "1", "--out"])
        .arg(&out_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--overwrite"), "{stderr}");
    assert_eq!(std::fs::read(&out_path).unwrap(), before);
    // Without --out nothing runs (the shipped weights are never a default).
    let out = bin().args(["train-demo"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn demo_command_writes_pictures_and_the_pointing_table() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("demo-out");
    let out = bin()
        .arg("demo")
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&out_dir.join("grid.png").display().to_string()),
        "{stdout}"
    );

    // 6 images x (1 + 7 methods x 2) + the grid.
    let pngs = std::fs::read_dir(&out_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "png")
        })
        .count();
    assert_eq!(pngs, 6 * 15 + 1);
    let grid = image::open(out_dir.join("grid.png")).unwrap().to_rgb8();
    // 8 columns (image + 7 methods) of 256-pixel cells with 6-pixel gaps;
    // below the header, 6 captioned rows and a colour bar.
    assert_eq!(grid.width(), 6 + 8 * (256 + 6));
    assert!(
        grid.height() > 6 + 6 * (256 + 6) + 3 * 15,
        "{}",
        grid.height()
    );
    // The header names the columns: ink above the first row of cells.
    let ink = |x0: u32, x1: u32, y0: u32, y1: u32| {
        (y0..y1).any(|y| (x0..x1).any(|x| grid.get_pixel(x, y).0.iter().any(|&c| c < 128)))
    };
    for column in 0..8 {
        let x0 = 6 + column * 262;
        assert!(
            ink(x0, x0 + 256, 0, 24),
            "no header text over column {column}"
        );
    }
    let overlay = image::open(out_dir.join("000_disc_grad_cam_overlay.png")).unwrap();
    assert_eq!((overlay.width(), overlay.height()), (256, 256));

    // The table: one row per method and the center baseline.
    let accuracy = |name: &str| -> f64 {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name}: {stdout}"));
        let pct = line.split_whitespace().nth(1).unwrap();
        pct.trim_end_matches('%').parse().unwrap()
    };
    let center = accuracy("center");
    assert!(center > 0.0 && center < 60.0, "{center}");
    for m in Method::all() {
        accuracy(m.name());
    }
    for m in ["gradient", "guided_backprop", "grad_cam"] {
        assert!(accuracy(m) > center + 30.0, "{m}: {stdout}");
    }
    assert!(stdout.contains("/ 200"), "{stdout}");
    let table = std::fs::read_to_string(out_dir.join("pointing_game.txt")).unwrap();
    assert!(
        table.lines().count() == 9 && table.contains("guided_backprop"),
        "{table}"
    );
}
