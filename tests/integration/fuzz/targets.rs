//! The fuzz targets: each is a public parser entry point, its corpus (the
//! repository's fixtures and `tests/fuzz_corpus/<target>/`), a dictionary
//! and the structure its mutations know. A target's `run` returns the
//! parser's typed error as its message; a panic is the failure sought.

use super::mutate::{pick, Mutator};
use super::structured::{
    encode_message, fix_png_crcs, json_strings, mutate_json, mutate_message, mutate_png_chunks,
    parse_message, Field, Safetensors,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use sightline::demo::embedded::parse_card;
use sightline::demo::voc::{parse_annotation, Subset, VOC_CLASSES};
use sightline::imageio::{jpeg_is_complete, EncodedImage, Preprocess};
use sightline::layers::{Architecture, Model, PRESET_NAMES};
use sightline::manifest::Manifest;
use sightline_onnx::OnnxModel;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// The names of every target, in the order they are run.
pub const TARGETS: [&str; 7] = [
    "safetensors",
    "onnx",
    "architecture",
    "manifest",
    "card",
    "voc",
    "image",
];

/// How a target's inputs are structured (which structure-aware mutations apply).
enum Structure {
    /// Bytes or text: byte mutations only.
    Raw,
    /// A JSON document.
    Json {
        docs: Vec<Value>,
        strings: Vec<String>,
    },
    /// A safetensors file: its JSON header is mutated as JSON.
    Safetensors {
        files: Vec<Safetensors>,
        strings: Vec<String>,
    },
    /// A protobuf message (ONNX).
    Protobuf { messages: Vec<Vec<Field>> },
    /// PNG and JPEG files: PNG chunks and CRCs.
    Image,
}

type RunFn = Box<dyn Fn(&[u8]) -> Result<(), String>>;

/// One fuzz target.
pub struct Target {
    /// Its name (see [`TARGETS`]).
    pub name: &'static str,
    /// The corpus.
    pub seeds: Vec<Vec<u8>>,
    dictionary: Vec<Vec<u8>>,
    max_len: usize,
    structure: Structure,
    run: RunFn,
    /// Scratch folder of targets that read files (removed on drop).
    _scratch: Option<TempDir>,
}

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fuzz corpus folder of the repository (`tests/fuzz_corpus`).
pub fn corpus_dir() -> PathBuf {
    repo().join("tests/fuzz_corpus")
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    let path = path.as_ref();
    std::fs::read(path).unwrap_or_else(|e| panic!("corpus file {}: {e}", path.display()))
}

/// Every file of `tests/fuzz_corpus/<dir>`, sorted by name.
fn corpus_files(dir: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir().join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.retain(|p| p.is_file());
    paths.sort();
    paths.iter().map(read).collect()
}

fn words(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|w| w.as_bytes().to_vec()).collect()
}

/// The architectures of the fixture manifest (tiny VGG, tiny ResNet) and
/// of the demo model card.
fn fixture_architectures() -> Vec<Architecture> {
    let manifest: Value =
        serde_json::from_slice(&read(repo().join("tests/fixtures/manifest.json"))).unwrap();
    let mut out: Vec<Architecture> = ["tiny_vgg", "tiny_resnet"]
        .iter()
        .map(|m| Architecture::from_json_value(&manifest["models"][m]["architecture"]).unwrap())
        .collect();
    out.push(
        parse_card(sightline::demo::embedded::CARD)
            .unwrap()
            .architecture,
    );
    out
}

fn json_structure(seeds: &[Vec<u8>], extra: &[&str]) -> Structure {
    let docs: Vec<Value> = seeds
        .iter()
        .filter_map(|s| serde_json::from_slice(s).ok())
        .collect();
    let mut strings: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    docs.iter().for_each(|d| json_strings(d, &mut strings));
    strings.sort();
    strings.dedup();
    Structure::Json { docs, strings }
}

/// JSON tokens for byte-level mutation of JSON text.
const JSON_TOKENS: [&str; 14] = [
    "{", "}", "[", "]", ",", ":", "\"", "null", "true", "\\u0000", "\\ud800", "1e999", "-",
    "[[[[[[[[",
];

impl Target {
    /// Builds a target by name (one of [`TARGETS`]).
    pub fn new(name: &str) -> Target {
        match name {
            "safetensors" => Self::safetensors(),
            "onnx" => Self::onnx(),
            "architecture" => Self::architecture(),
            "manifest" => Self::manifest(),
            "card" => Self::card(),
            "voc" => Self::voc(),
            "image" => Self::image(),
            other => panic!("no fuzz target `{other}` (targets: {TARGETS:?})"),
        }
    }

    /// `Model::from_safetensors_bytes` with the fixture architectures (tiny
    /// VGG, tiny ResNet with batch norms, the demo model).
    fn safetensors() -> Target {
        let mut seeds = vec![
            read(repo().join("tests/fixtures/tiny_vgg.safetensors")),
            read(repo().join("tests/fixtures/tiny_resnet.safetensors")),
            sightline::demo::embedded::WEIGHTS.to_vec(),
        ];
        seeds.extend(corpus_files("safetensors"));
        let files: Vec<Safetensors> = seeds.iter().filter_map(|s| Safetensors::split(s)).collect();
        let mut strings: Vec<String> = [
            "F32",
            "F64",
            "F16",
            "BF16",
            "I64",
            "I32",
            "U8",
            "BOOL",
            "F8_E4M3",
            "dtype",
            "shape",
            "data_offsets",
            "__metadata__",
            "num_batches_tracked",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        files
            .iter()
            .for_each(|f| json_strings(&f.header, &mut strings));
        strings.sort();
        strings.dedup();
        let mut dictionary = words(&JSON_TOKENS);
        dictionary.extend(strings.iter().map(|s| format!("\"{s}\"").into_bytes()));
        let archs = fixture_architectures();
        Target {
            name: "safetensors",
            seeds,
            dictionary,
            max_len: 1 << 20,
            structure: Structure::Safetensors { files, strings },
            run: Box::new(move |b| {
                // Accepted when one of the architectures takes the weights.
                let results: Vec<_> = archs
                    .iter()
                    .map(|arch| Model::<f32>::from_safetensors_bytes(arch, b).map(|_| ()))
                    .collect();
                match results.iter().find_map(|r| r.as_ref().err()) {
                    Some(e) if results.iter().all(Result::is_err) => Err(e.to_string()),
                    _ => Ok(()),
                }
            }),
            _scratch: None,
        }
    }

    /// `Model::from_onnx_bytes` (float32, planned for the declared input)
    /// and the crate's reader `OnnxModel::<f64>::from_bytes`, planned for
    /// another input size; external data read from the fixtures' folder.
    fn onnx() -> Target {
        let dir = repo().join("tests/fixtures/onnx");
        let mut seeds: Vec<Vec<u8>> = ["ops_s", "densenet_s", "vit_s", "shufflenet_s"]
            .iter()
            .map(|m| read(dir.join(format!("{m}.onnx"))))
            .collect();
        seeds.extend(corpus_files("onnx"));
        let messages: Vec<Vec<Field>> = seeds.iter().filter_map(|s| parse_message(s, 24)).collect();
        // Short strings of the seeds (op types, value and attribute names,
        // file names) and the op and attribute names the reader knows.
        let mut dictionary = words(&[
            "Conv",
            "Gemm",
            "MatMul",
            "Add",
            "Sub",
            "Mul",
            "Div",
            "Relu",
            "Clip",
            "Sigmoid",
            "HardSigmoid",
            "HardSwish",
            "Erf",
            "Softmax",
            "LayerNormalization",
            "BatchNormalization",
            "MaxPool",
            "AveragePool",
            "GlobalAveragePool",
            "ReduceMean",
            "Concat",
            "Split",
            "Slice",
            "Reshape",
            "Flatten",
            "Squeeze",
            "Unsqueeze",
            "Transpose",
            "Gather",
            "Expand",
            "Identity",
            "Dropout",
            "Cast",
            "Constant",
            "Shape",
            "ConstantOfShape",
            "Equal",
            "Where",
            "Mod",
            "Range",
            "Sqrt",
            "Pad",
            "Resize",
            "Loop",
            "kernel_shape",
            "pads",
            "strides",
            "dilations",
            "group",
            "auto_pad",
            "SAME_UPPER",
            "SAME_LOWER",
            "VALID",
            "axis",
            "axes",
            "perm",
            "transA",
            "transB",
            "alpha",
            "beta",
            "epsilon",
            "keepdims",
            "ceil_mode",
            "count_include_pad",
            "value",
            "to",
            "allowzero",
            "split",
            "location",
            "offset",
            "length",
            "../manifest.json",
            "/etc/hostname",
            "",
            ".",
            "vit_s.onnx.data",
            "com.microsoft",
        ]);
        fn short_strings(msg: &[Field], out: &mut Vec<Vec<u8>>) {
            for f in msg {
                match f {
                    Field::Bytes(_, b) if b.len() < 48 && out.len() < 2000 => out.push(b.clone()),
                    Field::Message(_, m) => short_strings(m, out),
                    _ => {}
                }
            }
        }
        messages
            .iter()
            .for_each(|m| short_strings(m, &mut dictionary));
        dictionary.sort();
        dictionary.dedup();
        Target {
            name: "onnx",
            seeds,
            dictionary,
            max_len: 4 << 20,
            structure: Structure::Protobuf { messages },
            run: Box::new(move |b| {
                let model = Model::<f32>::from_onnx_bytes(b, Some(&dir)).map(|_| ());
                let reader = OnnxModel::<f64>::from_bytes(b, Some(&dir))
                    .and_then(|m| {
                        let shape = match m.fixed_input_shape().as_deref() {
                            Some(&[n, c, h, w]) => {
                                vec![
                                    n.saturating_add(1),
                                    c,
                                    h.saturating_add(3),
                                    w.saturating_add(5),
                                ]
                            }
                            _ => vec![1, 3, 19, 23],
                        };
                        m.plan(&shape)
                    })
                    .map(|_| ());
                // The other input size may be refused (fixed shapes in the
                // graph): only a panic there counts.
                let _ = reader;
                model.map_err(|e| e.to_string())
            }),
            _scratch: None,
        }
    }

    /// `Architecture::from_json` and `from_json_value`; an accepted
    /// architecture must come back from its `to_json` unchanged.
    fn architecture() -> Target {
        let mut seeds = corpus_files("architecture");
        seeds.extend(
            fixture_architectures()
                .iter()
                .map(|a| a.to_json().into_bytes()),
        );
        seeds.extend(
            PRESET_NAMES
                .iter()
                .map(|p| Architecture::preset(p).unwrap().to_json().into_bytes()),
        );
        let structure = json_structure(
            &seeds,
            &[
                "vgg",
                "resnet",
                "alexnet",
                "basic",
                "bottleneck",
                "M",
                "kind",
                "cfg",
                "layers",
                "widths",
                "block",
                "num_classes",
                "hidden",
                "avgpool",
                "batch_norm",
            ],
        );
        Target {
            name: "architecture",
            seeds,
            dictionary: words(&JSON_TOKENS),
            max_len: 64 << 10,
            structure,
            run: Box::new(|b| {
                let text = String::from_utf8_lossy(b);
                let parsed = Architecture::from_json(&text);
                // Both forms of one accepted document are one architecture
                // (one may refuse what the other takes: duplicate keys).
                if let (Ok(a), Some(Ok(v))) = (
                    &parsed,
                    serde_json::from_slice::<Value>(b)
                        .ok()
                        .map(|v| Architecture::from_json_value(&v)),
                ) {
                    assert_eq!(a, &v, "from_json and from_json_value disagree");
                }
                let arch = parsed.map_err(|e| e.to_string())?;
                let again = Architecture::from_json(&arch.to_json()).unwrap_or_else(|e| {
                    panic!("to_json of an accepted architecture is refused: {e}")
                });
                assert_eq!(again, arch, "to_json does not round-trip");
                assert!(arch.num_classes() > 0);
                Ok(())
            }),
            _scratch: None,
        }
    }

    /// `Manifest::load` of a file in a scratch folder that holds the tiny
    /// VGG's weights and cases and the op-graph ONNX file, then each
    /// model's `model` and `case_data` (at most four models).
    fn manifest() -> Target {
        let mut seeds = vec![
            read(repo().join("tests/fixtures/manifest.json")),
            read(repo().join("tests/fixtures/lrp/manifest.json")),
            read(repo().join("tests/fixtures/onnx/manifest.json")),
        ];
        seeds.extend(corpus_files("manifest"));
        let structure = json_structure(
            &seeds,
            &[
                "models",
                "weights",
                "architecture",
                "onnx",
                "cases_file",
                "cases",
                "name",
                "method",
                "params",
                "output",
                "ops_s.onnx",
            ],
        );
        let scratch = tempfile::tempdir().expect("scratch folder");
        for (from, to) in [
            (
                "tests/fixtures/tiny_vgg.safetensors",
                "tiny_vgg.safetensors",
            ),
            (
                "tests/fixtures/tiny_vgg.cases.safetensors",
                "tiny_vgg.cases.safetensors",
            ),
            ("tests/fixtures/onnx/ops_s.onnx", "ops_s.onnx"),
            (
                "tests/fixtures/onnx/ops_s.expected.safetensors",
                "ops_s.cases.safetensors",
            ),
        ] {
            std::fs::copy(repo().join(from), scratch.path().join(to)).expect("scratch copy");
        }
        let file = scratch.path().join("manifest.json");
        Target {
            name: "manifest",
            seeds,
            dictionary: words(&JSON_TOKENS),
            max_len: 256 << 10,
            structure,
            run: Box::new(move |b| {
                std::fs::write(&file, b).map_err(|e| format!("harness: {e}"))?;
                let m = Manifest::load(&file).map_err(|e| e.to_string())?;
                // Accepted when it loads and one of its models (or none is
                // named) has its model and cases read.
                let mut first = None;
                for entry in m.models.values().take(4) {
                    match entry.model(&m.root).and_then(|_| entry.case_data(&m.root)) {
                        Ok(_) => return Ok(()),
                        Err(e) => first = first.or(Some(e.to_string())),
                    }
                }
                first.map_or(Ok(()), Err)
            }),
            _scratch: Some(scratch),
        }
    }

    /// The demo model card parser, `demo::embedded::parse_card`.
    fn card() -> Target {
        let mut seeds = vec![sightline::demo::embedded::CARD.as_bytes().to_vec()];
        seeds.extend(corpus_files("card"));
        let structure = json_structure(
            &seeds,
            &["architecture", "classes", "image_size", "mean", "std"],
        );
        Target {
            name: "card",
            seeds,
            dictionary: words(&JSON_TOKENS),
            max_len: 64 << 10,
            structure,
            run: Box::new(|b| {
                parse_card(&String::from_utf8_lossy(b))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }),
            _scratch: None,
        }
    }

    /// `demo::voc::parse_annotation`, then the played classes of both
    /// subsets and (for annotations up to 2^20 pixels) their masks.
    fn voc() -> Target {
        let seeds = corpus_files("voc");
        Target {
            name: "voc",
            seeds,
            dictionary: words(&[
                "<annotation>",
                "</annotation>",
                "<object>",
                "</object>",
                "<bndbox>",
                "</bndbox>",
                "<size>",
                "<width>",
                "</width>",
                "<height>",
                "</height>",
                "<name>",
                "</name>",
                "<difficult>",
                "</difficult>",
                "<xmin>",
                "<ymax>",
                "<filename>",
                "&amp;",
                "&#0;",
                "&#x10FFFF;",
                "&undefined;",
                "<![CDATA[",
                "]]>",
                "<!--",
                "-->",
                "<?xml version=\"1.0\"?>",
                "<!DOCTYPE a [<!ENTITY e \"x\">]>",
                "&e;",
                "xmlns:a=\"u\"",
                "<a:b/>",
                "/>",
                "=\"",
                "\u{feff}",
                "\u{0}",
                "cat",
                "person",
            ]),
            max_len: 64 << 10,
            structure: Structure::Raw,
            run: Box::new(|b| {
                let text = String::from_utf8_lossy(b);
                let a = parse_annotation(&text, "fuzz.xml").map_err(|e| e.to_string())?;
                let classes: Vec<String> = VOC_CLASSES.iter().map(|c| c.to_string()).collect();
                for subset in [Subset::All, Subset::Difficult] {
                    let played = a.played_classes(subset);
                    assert!(played
                        .iter()
                        .all(|p| a.objects.iter().any(|o| &o.name == p)));
                    if a.width.saturating_mul(a.height) <= 1 << 20 {
                        let (trials, unknown) = a.trials(&classes, subset);
                        assert_eq!(trials.len() + unknown, played.len());
                    }
                }
                Ok(())
            }),
            _scratch: None,
        }
    }

    /// `EncodedImage::read` of a file, then (when `Preprocess::memory_bytes`
    /// of its declared size is within 256 MiB, as the command checks its
    /// budget) `Preprocess::prepare`: decode, resize, crop, tensor.
    fn image() -> Target {
        let seeds = corpus_files("image");
        let scratch = tempfile::tempdir().expect("scratch folder");
        let file = scratch.path().join("input");
        let pre = Preprocess::default();
        Target {
            name: "image",
            seeds,
            dictionary: [
                &b"IHDR"[..],
                b"IDAT",
                b"IEND",
                b"PLTE",
                b"tRNS",
                b"gAMA",
                b"iCCP",
                b"acTL",
                b"fcTL",
                b"fdAT",
                b"\xff\xd8",
                b"\xff\xd9",
                b"\xff\xda",
                b"\xff\xc0",
                b"\xff\xc2",
                b"\xff\xc4",
                b"\xff\xdb",
                b"\xff\xdd",
                b"\xff\xe0",
                b"\xff\xee",
            ]
            .iter()
            .map(|w| w.to_vec())
            .collect(),
            max_len: 256 << 10,
            structure: Structure::Image,
            run: Box::new(move |b| {
                // A pure function of the bytes: never panics.
                let _ = jpeg_is_complete(b);
                std::fs::write(&file, b).map_err(|e| format!("harness: {e}"))?;
                let encoded = EncodedImage::read(&file).map_err(|e| e.to_string())?;
                let need = pre.memory_bytes(encoded.width, encoded.height);
                if need > 256 << 20 {
                    return Err(format!("over the 256 MiB budget: {need} bytes"));
                }
                let p = pre.prepare(&encoded).map_err(|e| e.to_string())?;
                assert_eq!(p.tensor.shape(), &[1, 3, 224, 224]);
                Ok(())
            }),
            _scratch: Some(scratch),
        }
    }

    /// Runs the parser on `input`.
    pub fn run(&self, input: &[u8]) -> Result<(), String> {
        (self.run)(input)
    }

    /// Makes an input into `out`: a mutant of a corpus entry.
    pub fn generate(&self, rng: &mut ChaCha8Rng, out: &mut Vec<u8>) {
        out.clear();
        let bytes = Mutator {
            seeds: &self.seeds,
            dictionary: &self.dictionary,
            max_len: self.max_len,
        };
        let structured = rng.gen_ratio(2, 3);
        match &self.structure {
            Structure::Json { docs, strings } if structured && !docs.is_empty() => {
                let mut doc = docs[rng.gen_range(0..docs.len())].clone();
                for _ in 0..rng.gen_range(1..=4) {
                    mutate_json(rng, &mut doc, docs, strings);
                }
                let text = if rng.gen() {
                    serde_json::to_vec(&doc)
                } else {
                    serde_json::to_vec_pretty(&doc)
                };
                out.extend(text.unwrap_or_default());
                if rng.gen_ratio(1, 4) {
                    bytes.mutate(rng, out);
                }
            }
            Structure::Safetensors { files, strings } if structured && !files.is_empty() => {
                let file = &files[rng.gen_range(0..files.len())];
                let mut header = file.header.clone();
                let donors = [file.header.clone()];
                for _ in 0..rng.gen_range(1..=3) {
                    mutate_json(rng, &mut header, &donors, strings);
                }
                out.extend(Safetensors::join(rng, &header, &file.data));
                if rng.gen_ratio(1, 4) {
                    bytes.mutate(rng, out);
                }
            }
            Structure::Protobuf { messages } if structured && !messages.is_empty() => {
                let mut msg = messages[rng.gen_range(0..messages.len())].clone();
                for _ in 0..1usize << rng.gen_range(0..3) {
                    mutate_message(rng, &mut msg, messages, &bytes);
                }
                encode_message(&msg, out);
                out.truncate(self.max_len);
            }
            Structure::Image => {
                out.extend_from_slice(pick(rng, &self.seeds).map_or(&[][..], |s| &s[..]));
                let png = out.starts_with(b"\x89PNG");
                if png && rng.gen_ratio(1, 3) {
                    mutate_png_chunks(rng, out);
                } else {
                    bytes.mutate(rng, out);
                }
                if png && rng.gen_ratio(3, 4) {
                    fix_png_crcs(out);
                }
            }
            _ => {
                out.extend_from_slice(pick(rng, &self.seeds).map_or(&[][..], |s| &s[..]));
                bytes.mutate(rng, out);
            }
        }
    }
}
