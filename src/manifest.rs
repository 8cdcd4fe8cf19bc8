//! Reference manifests (the format of `tests/fixtures/README.md`): models,
//! their weights, inputs and expected outputs; and running their cases.

use crate::files::{check_regular, read_regular, read_regular_text, FileError, MAX_JSON_BYTES};
use serde::Deserialize;
use serde_json::Value;
use sightline_attribution::captum::{self, IgBaseline, IgParams, Integration};
use sightline_attribution::lrp::{Composite, LrpParams, ZennitComposite};
use sightline_attribution::perturbation::{
    extremal_perturbation, rise, ExtremalOptions, ExtremalVariant, MaskSource, RiseDraws,
    RiseOptions,
};
use sightline_attribution::{
    AttributionError, Explainer, Method, ModelForm, Resize, SaliencyOptions, Target,
};
use sightline_autograd::{lrp, OpKind, Retain, Rule};
use sightline_layers::{Architecture, Model};
use sightline_tensor::{KernelPolicy, ResizeMode, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// What went wrong reading a manifest or running a case.
#[derive(Debug, Error)]
pub enum ManifestError {
    /// A file could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's message.
        message: String,
    },
    /// The manifest is not valid JSON of the expected form.
    #[error("manifest {path}: {message}")]
    Format {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A cases file lacks a tensor or holds one of another type.
    #[error("cases file {path}: {message}")]
    Cases {
        /// The cases file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The model could not be built or loaded.
    #[error(transparent)]
    Layer(#[from] sightline_layers::LayerError),
    /// A case named a method this build does not know.
    #[error("unknown method `{0}`")]
    UnknownMethod(String),
    /// A case's parameters are invalid.
    #[error("case parameter `{name}`: {message}")]
    Param {
        /// The parameter.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The method failed.
    #[error(transparent)]
    Attribution(#[from] sightline_attribution::AttributionError),
    /// A kernel failed.
    #[error(transparent)]
    Tensor(#[from] sightline_tensor::TensorError),
    /// A file that is not a regular file, or too large.
    #[error(transparent)]
    File(#[from] FileError),
}

/// Largest cases file read (2 GiB).
pub const MAX_CASES_BYTES: u64 = 2 << 30;

/// Result alias for manifests.
pub type Result<T> = std::result::Result<T, ManifestError>;

/// A manifest: named models.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// The models, by name.
    pub models: BTreeMap<String, ModelEntry>,
    /// The folder that file names are relative to (the manifest's own).
    #[serde(skip)]
    pub root: PathBuf,
}

/// One model of a manifest: a preset architecture with its weights, or an
/// ONNX file.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelEntry {
    /// Weights file (safetensors), relative to the manifest, with `architecture`.
    #[serde(default)]
    pub weights: Option<String>,
    /// The architecture, with `weights`.
    #[serde(default)]
    pub architecture: Option<Architecture>,
    /// An ONNX file, relative to the manifest, in place of `weights` and
    /// `architecture`.
    #[serde(default)]
    pub onnx: Option<String>,
    /// Cases file (safetensors), relative to the manifest.
    pub cases_file: String,
    /// The cases.
    pub cases: Vec<Case>,
}

/// One case: a method, its parameters and the name of the expected tensor.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    /// The case's name.
    pub name: String,
    /// TorchRay function or Captum class (`captum.*`).
    pub method: String,
    /// Arguments beyond model, input and target.
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Name of the expected tensor in the cases file.
    pub output: String,
}

/// The inputs and expected outputs of one model's cases.
#[derive(Debug, Clone)]
pub struct CaseData {
    /// The input batch.
    pub input: Tensor<f32>,
    /// One class per batch item.
    pub targets: Vec<usize>,
    /// Expected tensors by name.
    pub expected: BTreeMap<String, Tensor<f32>>,
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// `max |got - expected| / max |expected|`, or the reason it could not be computed.
    pub outcome: std::result::Result<f64, String>,
}

/// The agreement asked for: every element within `1e-4 * max|expected|`.
pub const TOLERANCE: f64 = 1e-4;

impl CaseResult {
    /// Whether the case is within [`TOLERANCE`].
    pub fn passed(&self) -> bool {
        matches!(self.outcome, Ok(e) if e <= TOLERANCE)
    }
}

impl Manifest {
    /// Reads a manifest; file names in it are relative to its folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = read_regular_text(path, "manifest", MAX_JSON_BYTES)?;
        let mut m: Manifest = serde_json::from_str(&text).map_err(|e| ManifestError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        m.root = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(m)
    }
}

impl ModelEntry {
    /// Builds the model and loads its weights, or reads its ONNX file.
    pub fn model(&self, root: &Path) -> Result<Model<f32>> {
        match (&self.onnx, &self.architecture, &self.weights) {
            (Some(onnx), None, None) => Ok(Model::from_onnx(root.join(onnx))?),
            (None, Some(arch), Some(weights)) => {
                let path = root.join(weights);
                check_regular(&path, "weights", u64::MAX)?;
                Ok(Model::from_safetensors(arch, path)?)
            }
            _ => Err(ManifestError::Format {
                path: root.to_path_buf(),
                message: "a model entry has either `onnx`, or `weights` and `architecture`"
                    .to_string(),
            }),
        }
    }

    /// Reads the cases file.
    pub fn case_data(&self, root: &Path) -> Result<CaseData> {
        let path = root.join(&self.cases_file);
        let bytes = read_regular(&path, "cases file", MAX_CASES_BYTES)?;
        let err = |message: String| ManifestError::Cases {
            path: path.clone(),
            message,
        };
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
        let mut expected = BTreeMap::new();
        let mut input = None;
        let mut targets = None;
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            match view.dtype() {
                safetensors::Dtype::F32 => {
                    let data: Vec<f32> = view
                        .data()
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    let t = Tensor::from_vec(shape, data)?;
                    if name == "input" {
                        input = Some(t);
                    } else {
                        expected.insert(name, t);
                    }
                }
                safetensors::Dtype::I64 if name == "target" => {
                    let v: std::result::Result<Vec<usize>, _> = view
                        .data()
                        .chunks_exact(8)
                        .map(|b| {
                            let mut a = [0u8; 8];
                            a.copy_from_slice(b);
                            usize::try_from(i64::from_le_bytes(a))
                        })
                        .collect();
                    targets = Some(v.map_err(|_| err("negative target".into()))?);
                }
                safetensors::Dtype::I64 => {
                    // Integer draws (RISE's shifts), kept as float32: exact
                    // below 2^24, refused above.
                    let data: std::result::Result<Vec<f32>, _> = view
                        .data()
                        .chunks_exact(8)
                        .map(|b| {
                            let mut a = [0u8; 8];
                            a.copy_from_slice(b);
                            let v = i64::from_le_bytes(a);
                            if v.unsigned_abs() < 1 << 24 {
                                Ok(v as f32)
                            } else {
                                Err(err(format!("tensor `{name}`: integer {v} too large")))
                            }
                        })
                        .collect();
                    expected.insert(name, Tensor::from_vec(shape, data?)?);
                }
                other => {
                    return Err(err(format!(
                        "tensor `{name}` has unsupported type {other:?}"
                    )))
                }
            }
        }
        Ok(CaseData {
            input: input.ok_or_else(|| err("no `input` tensor".into()))?,
            targets: targets.ok_or_else(|| err("no `target` tensor".into()))?,
            expected,
        })
    }
}

/// How [`run_model_with`] records the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recording {
    /// As `sightline explain` does: each method on the form of the model it
    /// runs on ([`Method::model_form`]: batch norms merged for the
    /// gradient-style methods), the layers the cases probe kept.
    AsExplain,
    /// Every layer kept, and the gradient-style methods on the model as it
    /// is ([`Explainer::new`]; the LRP cases on Zennit's canonized model,
    /// which is what they are defined on).
    Plain,
}

/// Runs every case of one model, in manifest order, as `sightline explain`
/// records the forward pass ([`Recording::AsExplain`]), under `kernels`.
pub fn run_model(
    entry: &ModelEntry,
    root: &Path,
    kernels: KernelPolicy,
) -> Result<Vec<CaseResult>> {
    run_model_with(entry, root, Recording::AsExplain, kernels)
}

/// The form of the model a case runs on.
fn case_form(case: &Case, recording: Recording) -> ModelForm {
    if case.method.starts_with("zennit.") {
        return ModelForm::Zennit;
    }
    let form = match case.method.as_str() {
        "contrastive_excitation_backprop" => ModelForm::AsIs,
        other => match other.strip_prefix("captum.") {
            Some(name) => captum_method(case, name).map(|(m, _)| m.model_form()),
            None => other
                .parse::<Method>()
                .map(|m| m.model_form())
                .map_err(ManifestError::from),
        }
        .unwrap_or(ModelForm::AsIs),
    };
    match (recording, form) {
        (Recording::Plain, ModelForm::BatchNormsMerged) => ModelForm::AsIs,
        (_, form) => form,
    }
}

/// Runs every case of one model, in manifest order, with the forward pass
/// recorded as `recording` says (one per form of the model the cases need)
/// and the model computing under `kernels`.
pub fn run_model_with(
    entry: &ModelEntry,
    root: &Path,
    recording: Recording,
    kernels: KernelPolicy,
) -> Result<Vec<CaseResult>> {
    let model = entry.model(root)?.with_kernels(kernels);
    let data = entry.case_data(root)?;
    // Every layer a case names (unknown ones fail in their case).
    let layers: Vec<&str> = entry
        .cases
        .iter()
        .flat_map(|c| c.params.values())
        .filter_map(Value::as_str)
        .filter(|l| model.has_layer(l))
        .collect();
    let mut forms: Vec<ModelForm> = entry
        .cases
        .iter()
        .map(|c| case_form(c, recording))
        .collect();
    forms.sort();
    forms.dedup();
    let models = forms
        .iter()
        .map(|f| f.apply(&model, &layers))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let explainers = models
        .iter()
        .map(|m| match recording {
            Recording::Plain => Explainer::new(m, &data.input),
            Recording::AsExplain => Explainer::with_retention(m, &data.input, Retain::All, &layers),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(entry
        .cases
        .iter()
        .map(|case| {
            let form = case_form(case, recording);
            let k = forms.iter().position(|f| *f == form).unwrap_or(0);
            let outcome = run_case(&model, &explainers[k], &data, case)
                .map_err(|e| e.to_string())
                .and_then(|got| {
                    let want = data
                        .expected
                        .get(&case.output)
                        .ok_or_else(|| format!("no expected tensor `{}`", case.output))?;
                    relative_error(&got, want)
                });
            CaseResult {
                name: case.name.clone(),
                outcome,
            }
        })
        .collect())
}

/// `max |got - want| / max |want|`, or why the two cannot be compared.
pub fn relative_error(got: &Tensor<f32>, want: &Tensor<f32>) -> std::result::Result<f64, String> {
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {:?}, expected {:?}",
            got.shape(),
            want.shape()
        ));
    }
    if got.has_non_finite() {
        return Err("result holds NaN or infinity".into());
    }
    let scale = f64::from(want.max_abs()).max(f64::MIN_POSITIVE);
    let diff = got.max_abs_diff(want).map_err(|e| e.to_string())?;
    Ok(f64::from(diff) / scale)
}

fn param<'a>(case: &'a Case, name: &str) -> Option<&'a Value> {
    case.params.get(name)
}

fn str_param(case: &Case, name: &str) -> Result<Option<String>> {
    match param(case, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(bad(name, format!("expected a string, got {v}"))),
    }
}

fn f64_param(case: &Case, name: &str) -> Result<Option<f64>> {
    match param(case, name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| bad(name, format!("expected a number, got {v}"))),
    }
}

fn bool_param(case: &Case, name: &str) -> Result<Option<bool>> {
    match param(case, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(bad(name, format!("expected true or false, got {v}"))),
    }
}

fn bad(name: &str, message: String) -> ManifestError {
    ManifestError::Param {
        name: name.to_string(),
        message,
    }
}

fn resize_mode(case: &Case, name: &str, default: ResizeMode) -> Result<ResizeMode> {
    Ok(match str_param(case, name)?.as_deref() {
        None => default,
        Some("bilinear") => ResizeMode::Bilinear,
        Some("nearest") => ResizeMode::Nearest,
        Some(other) => return Err(bad(name, format!("unknown interpolation `{other}`"))),
    })
}

/// Computes one case's output.
pub fn run_case(
    model: &Model<f32>,
    explainer: &Explainer<'_, f32>,
    data: &CaseData,
    case: &Case,
) -> Result<Tensor<f32>> {
    let target = match param(case, "target_override") {
        Some(v) => Target::Class(v.as_u64().ok_or_else(|| {
            bad(
                "target_override",
                format!("expected a class index, got {v}"),
            )
        })? as usize),
        None => Target::PerItem(data.targets.clone()),
    };
    let x = &data.input;
    if let Some(name) = case.method.strip_prefix("captum.") {
        return run_captum(explainer, x, &target, case, name);
    }
    if case.method == "forward" {
        return Ok(explainer.logits().clone());
    }
    if case.method == "rise" {
        return run_rise(model, data, case);
    }
    if case.method == "extremal_perturbation" {
        return run_extremal(model, data, case);
    }
    if let Some(name) = case.method.strip_prefix("zennit.") {
        return run_zennit(explainer, data, case, name);
    }
    let method = match case.method.as_str() {
        "contrastive_excitation_backprop" => Method::ContrastiveExcitationBackprop {
            contrast_layer: str_param(case, "contrast_layer")?,
            classifier_layer: str_param(case, "classifier_layer")?,
        },
        other => other
            .parse::<Method>()
            .map_err(|_| ManifestError::UnknownMethod(other.to_string()))?,
    };
    let resize = match param(case, "resize") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Resize::Off,
        Some(Value::Bool(true)) => Resize::Input,
        Some(Value::Array(wh)) if wh.len() == 2 => Resize::To {
            width: wh[0]
                .as_u64()
                .ok_or_else(|| bad("resize", "width".into()))? as usize,
            height: wh[1]
                .as_u64()
                .ok_or_else(|| bad("resize", "height".into()))? as usize,
        },
        Some(v) => {
            return Err(bad(
                "resize",
                format!("expected true, false or [w, h], got {v}"),
            ))
        }
    };
    let opts = SaliencyOptions {
        layer: Some(str_param(case, "saliency_layer")?.unwrap_or_default()),
        resize,
        resize_mode: resize_mode(case, "resize_mode", ResizeMode::Bilinear)?,
        smooth: f64_param(case, "smooth")?.unwrap_or(0.0),
    };
    let s = explainer.saliency(&method, &target, &opts)?;
    match str_param(case, "reduction")?.as_deref() {
        None => Ok(s.map),
        Some("none") => Ok(s.gradient),
        Some(other) => Err(bad("reduction", format!("unknown reduction `{other}`"))),
    }
}

/// A Zennit case: the relevance at the input for the one-hot targets,
/// under one of Zennit's composites (`zennit.epsilon_plus`, ...) or one
/// rule on every convolution and linear layer (`zennit.rule_epsilon`,
/// `zennit.rule_zplus`, `zennit.rule_gamma`, `zennit.rule_alpha1_beta0`,
/// with pass on ReLUs and norm on average pools, as Zennit's
/// `LayerMapComposite`), optionally another on the first convolution
/// (`zennit.first_wsquare_then_epsilon`, `zennit.first_flat_then_zplus`).
fn run_zennit(
    explainer: &Explainer<'_, f32>,
    data: &CaseData,
    case: &Case,
    name: &str,
) -> Result<Tensor<f32>> {
    let params = LrpParams {
        epsilon: f64_param(case, "epsilon")?.unwrap_or(1e-6),
        gamma: f64_param(case, "gamma")?.unwrap_or(0.25),
        bounds: match (f64_param(case, "low")?, f64_param(case, "high")?) {
            (Some(l), Some(h)) => Some((l, h)),
            _ => None,
        },
        ..LrpParams::default()
    };
    let rule = |r: &str| -> Result<Arc<dyn Rule<f32>>> {
        Ok(match r {
            "epsilon" => {
                Arc::new(lrp::Epsilon::new(params.epsilon).map_err(AttributionError::from)?)
            }
            "zplus" => Arc::new(lrp::ZPlus::default()),
            "gamma" => Arc::new(lrp::Gamma::new(params.gamma).map_err(AttributionError::from)?),
            "alpha1_beta0" => {
                Arc::new(lrp::AlphaBeta::new(1.0, 0.0).map_err(AttributionError::from)?)
            }
            "wsquare" => Arc::new(lrp::WSquare::default()),
            "flat" => Arc::new(lrp::Flat::default()),
            other => {
                return Err(ManifestError::UnknownMethod(format!(
                    "zennit rule `{other}`"
                )))
            }
        })
    };
    let layer_map = |r: Arc<dyn Rule<f32>>| {
        Composite::new()
            .with_kinds(&[OpKind::RELU], Arc::new(lrp::Pass))
            .with_kinds(
                &[OpKind::AVG_POOL2D, OpKind::ADAPTIVE_AVG_POOL2D],
                Arc::new(lrp::Norm::default()),
            )
            .with_kinds(&[OpKind::CONV2D, OpKind::LINEAR], r)
    };
    let composite = if let Some(r) = name.strip_prefix("rule_") {
        layer_map(rule(r)?)
    } else if let Some((first, rest)) = name
        .strip_prefix("first_")
        .and_then(|n| n.split_once("_then_"))
    {
        layer_map(rule(rest)?).with_first(&[OpKind::CONV2D], rule(first)?)
    } else {
        name.parse::<ZennitComposite>()
            .map_err(|_| ManifestError::UnknownMethod(format!("zennit.{name}")))?
            .composite(&params)?
    };
    let rules = composite.rule_set(explainer.tape())?;
    let seed = Target::PerItem(data.targets.clone()).seed(explainer.logits().shape())?;
    Ok(explainer.gradient_at("", &seed, &rules)?)
}

/// A RISE case (TorchRay's `rise` on the stored draws): the masks are built
/// from the case's grids and shifts and must agree with TorchRay's stored
/// masks within [`TOLERANCE`] (the case fails naming them otherwise); the
/// saliency of every class is computed from them.
fn run_rise(model: &Model<f32>, data: &CaseData, case: &Case) -> Result<Tensor<f32>> {
    let stored = |key: &str| -> Result<&Tensor<f32>> {
        let name = str_param(case, key)?.ok_or_else(|| bad(key, "missing".into()))?;
        data.expected
            .get(&name)
            .ok_or_else(|| bad(key, format!("no tensor `{name}` in the cases file")))
    };
    let shift = stored("shift")?;
    if shift.shape().len() != 2 || shift.shape()[1] != 2 {
        return Err(bad(
            "shift",
            format!("expected M x 2, got {:?}", shift.shape()),
        ));
    }
    let shifts: Vec<(usize, usize)> = shift
        .data()
        .chunks_exact(2)
        .map(|p| {
            let at = |v: f32| {
                (v >= 0.0 && v.fract() == 0.0)
                    .then_some(v as usize)
                    .ok_or_else(|| bad("shift", format!("{v} is not a shift")))
            };
            Ok((at(p[0])?, at(p[1])?))
        })
        .collect::<Result<_>>()?;
    let draws = RiseDraws::new(stored("grid")?.clone(), shifts)?;
    if let Some(m) = f64_param(case, "num_masks")? {
        if m != draws.len() as f64 {
            return Err(bad(
                "num_masks",
                format!("{m}, but {} grids are stored", draws.len()),
            ));
        }
    }
    let [_, _, h, w] = data.input.dims4("rise")?;
    let built = draws.masks(0..draws.len(), (h, w))?;
    let masks_error = relative_error(&built, stored("masks")?).map_err(|e| bad("masks", e))?;
    if masks_error.is_nan() || masks_error > TOLERANCE {
        return Err(bad(
            "masks",
            format!("built from the grids and shifts, they differ from TorchRay's by {masks_error:.2e} of their maximum"),
        ));
    }
    let opts = RiseOptions {
        batch_size: f64_param(case, "batch_size")?.map_or(0, |b| b as usize),
        classes: Vec::new(),
    };
    Ok(rise(model, &data.input, MaskSource::Draws(&draws), &opts)?)
}

/// An extremal perturbation case: TorchRay's `extremal_perturbation` on
/// each image in turn (blur perturbation, simple reward), its masks
/// concatenated over the images (N * areas x 1 x H x W).
fn run_extremal(model: &Model<f32>, data: &CaseData, case: &Case) -> Result<Tensor<f32>> {
    for (name, want) in [("perturbation", "blur"), ("reward", "simple_reward")] {
        if let Some(v) = str_param(case, name)? {
            if v != want {
                return Err(bad(name, format!("only `{want}` is supported, got `{v}`")));
            }
        }
    }
    let areas = match param(case, "areas") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| bad("areas", format!("{v} is not a number")))
            })
            .collect::<Result<Vec<f64>>>()?,
        other => {
            return Err(bad(
                "areas",
                format!("expected a list of fractions, got {other:?}"),
            ))
        }
    };
    let defaults = ExtremalOptions::default();
    let count = |name: &str, default: usize| -> Result<usize> {
        Ok(f64_param(case, name)?.map_or(default, |v| v as usize))
    };
    let opts = ExtremalOptions {
        areas,
        max_iter: count("max_iter", defaults.max_iter)?,
        num_levels: count("num_levels", defaults.num_levels)?,
        step: count("step", defaults.step)?,
        sigma: f64_param(case, "sigma")?.unwrap_or(defaults.sigma),
        jitter: bool_param(case, "jitter")?.unwrap_or(defaults.jitter),
        variant: str_param(case, "variant")?
            .map(|v| v.parse::<ExtremalVariant>())
            .transpose()?
            .unwrap_or(defaults.variant),
    };
    let mut masks = Vec::with_capacity(data.targets.len());
    for (i, &target) in data.targets.iter().enumerate() {
        let x = data.input.select0(i)?;
        let [c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2]];
        let x = Tensor::from_vec([1, c, h, w], x.data().to_vec())?;
        masks.push(extremal_perturbation(model, &x, target, &opts)?);
    }
    Ok(Tensor::concat0(&masks)?)
}

/// The method a Captum case (`captum.NAME`) names, as the explainer's
/// [`Method`] value with the case's parameters, and the layer it probes
/// (`""`: the input).
fn captum_method(case: &Case, name: &str) -> Result<(Method, String)> {
    let layer = || -> Result<String> {
        str_param(case, "layer")?.ok_or_else(|| bad("layer", "missing".into()))
    };
    Ok(match name {
        "Saliency" => (Method::Saliency, String::new()),
        "InputXGradient" => (Method::InputXGradient, String::new()),
        "IntegratedGradients" => {
            let defaults = IgParams::default();
            let steps = match f64_param(case, "n_steps")? {
                None => defaults.n_steps,
                Some(n) if n >= 1.0 && n.fract() == 0.0 && n <= usize::MAX as f64 => n as usize,
                Some(n) => return Err(bad("n_steps", format!("{n} is not a step count"))),
            };
            let params = IgParams {
                n_steps: steps,
                integration: str_param(case, "integration")?
                    .map(|s| s.parse::<Integration>())
                    .transpose()?
                    .unwrap_or(defaults.integration),
                baseline: IgBaseline::Scalar(f64_param(case, "baseline")?.unwrap_or(0.0)),
                ..defaults
            };
            (Method::IntegratedGradients(params), String::new())
        }
        "LayerGradCam" => (Method::LayerGradCam, layer()?),
        "GuidedGradCam" => (Method::GuidedGradCam, layer()?),
        _ => return Err(ManifestError::UnknownMethod(case.method.clone())),
    })
}

/// A Captum case: the explainer's answer for the case's [`Method`] (the
/// path `sightline explain` takes), its raw attribution; Captum's options
/// other than its defaults are applied to it (`Saliency(abs=False)`: the
/// plain gradient; `LayerGradCam(relu_attributions=True)`: clamped), or
/// computed by the library's function (`GuidedGradCam` with another
/// interpolation than nearest).
fn run_captum(
    explainer: &Explainer<'_, f32>,
    x: &Tensor<f32>,
    target: &Target<f32>,
    case: &Case,
    name: &str,
) -> Result<Tensor<f32>> {
    let (method, layer) = captum_method(case, name)?;
    if method == Method::GuidedGradCam {
        let mode = resize_mode(case, "interpolate_mode", ResizeMode::Nearest)?;
        if mode != ResizeMode::Nearest {
            return Ok(captum::guided_grad_cam(
                explainer.model(),
                x,
                target,
                &layer,
                mode,
            )?);
        }
    }
    let opts = SaliencyOptions {
        layer: Some(layer),
        ..SaliencyOptions::default()
    };
    let s = explainer.saliency(&method, target, &opts)?;
    let attribution = s.attribution.ok_or_else(|| {
        ManifestError::UnknownMethod(format!("{} gave no attribution", case.method))
    })?;
    Ok(match method {
        Method::Saliency if !bool_param(case, "abs")?.unwrap_or(true) => s.gradient,
        Method::LayerGradCam if bool_param(case, "relu_attributions")?.unwrap_or(false) => {
            attribution.map(|v| v.max(0.0))
        }
        _ => attribution,
    })
}
