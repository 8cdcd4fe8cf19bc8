//! [`GraphNetwork`]: a network read from an ONNX file, run on a tape node
//! by node.
//!
//! The file is read and checked once ([`sightline_onnx::OnnxModel`]); for
//! each input shape the graph is planned once (shapes inferred, shape
//! arithmetic folded, [`sightline_onnx::Plan`]) and what the ops derive
//! from constant weights (convolution kernels, transposed matrices, batch
//! norm affines) is made once per plan. A forward pass then records each
//! node's op under the node's PyTorch module path, and registers each
//! module's output (the output of the last node inside its scope), so
//! rules and probes address layers by the names TorchRay and Captum take.

mod defaults;
mod execute;

use crate::canonize::BatchNormMerge;
use crate::default_layers::DefaultLayers;
use crate::error::{LayerError, Result};
use execute::{Prepared, RunOptions};
use sightline_autograd::{Tape, Var};
use sightline_onnx::{Dim, OnnxModel, Plan};
use sightline_tensor::{Element, Tensor};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The input height and width assumed for a graph whose declared input
/// leaves them open (dynamic axes), to list its layers.
const DEFAULT_SIDE: usize = 224;

/// A planned graph for one input shape, with what its ops derive from
/// their constant weights.
struct Planned<T> {
    plan: Plan<T>,
    prepared: Vec<Prepared<T>>,
    /// For each value, the module paths whose output it is.
    outputs_of: Vec<Vec<String>>,
    /// How many times each value is read by a node (and once more for the
    /// graph output), to hand a value over at its last use.
    uses: Vec<u32>,
}

/// A plan made for one input shape.
type PlanEntry<T> = (Vec<usize>, Arc<Planned<T>>);

/// A classifier read from an ONNX file.
///
/// Copies made by the canonizers ([`GraphNetwork::with_batch_norms_merged`],
/// [`GraphNetwork::with_residual_sums`]) share the model and its plans.
pub struct GraphNetwork<T> {
    model: Arc<OnnxModel<T>>,
    origin: String,
    plans: Arc<Mutex<Vec<PlanEntry<T>>>>,
    options: RunOptions,
    layer_paths: Vec<String>,
    num_classes: usize,
    channels: usize,
    declared: Vec<usize>,
    defaults: DefaultLayers,
}

impl<T> fmt::Debug for GraphNetwork<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphNetwork")
            .field("origin", &self.origin)
            .field("num_classes", &self.num_classes)
            .field("layers", &self.layer_paths.len())
            .finish()
    }
}

impl<T: Element> GraphNetwork<T> {
    /// Reads and checks an ONNX file, and plans it for its declared input
    /// shape (open dimensions taken as batch 1 and 224 x 224).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let model = OnnxModel::load(path)?;
        Self::new(model, path.display().to_string())
    }

    /// [`GraphNetwork::load`] from bytes; `dir` is where external data is
    /// looked up (`None`: a model with external data is an error).
    pub fn from_bytes(bytes: &[u8], dir: Option<&Path>) -> Result<Self> {
        let model = OnnxModel::from_bytes(bytes, dir)?;
        Self::new(model, "<memory>".to_string())
    }

    fn new(model: OnnxModel<T>, origin: String) -> Result<Self> {
        let shape = declared_shape(model.input_shape())?;
        let mut net = Self {
            model: Arc::new(model),
            origin,
            plans: Arc::new(Mutex::new(Vec::new())),
            options: RunOptions::default(),
            layer_paths: Vec::new(),
            num_classes: 0,
            channels: shape[1],
            declared: shape.clone(),
            defaults: DefaultLayers {
                grad_cam: String::new(),
                excitation: String::new(),
                contrast: String::new(),
                classifier: String::new(),
            },
        };
        let planned = net.planned(&shape)?;
        let plan = &planned.plan;
        let out_shape = &plan.values[plan.output].shape;
        net.num_classes = match out_shape.as_slice() {
            [n, classes] if *n == shape[0] && *classes > 0 => *classes,
            _ => {
                return Err(LayerError::arch(format!(
                    "the graph's output has shape {out_shape:?}; a classifier gives N x classes"
                )))
            }
        };
        net.layer_paths = plan.layer_outputs().into_iter().map(|(p, _)| p).collect();
        net.defaults = defaults::default_layers(plan);
        Ok(net)
    }

    /// A copy that runs each convolution followed only by a batch norm as
    /// one convolution with the batch norm merged in (except the
    /// convolutions `except`), leaving `leftover` of it: the ONNX side of
    /// [`crate::canonize::MergeBatchNorm`].
    pub fn with_batch_norms_merged(
        &self,
        leftover: BatchNormMerge,
        except: &[String],
    ) -> Result<Self> {
        let mut out = self.copy();
        out.options.merge = leftover;
        out.options.except = except.to_vec();
        Ok(out)
    }

    /// A copy that records each `Add` of two computed values of one shape
    /// (a skip connection's sum) as an explicit residual sum
    /// ([`sightline_autograd::OpKind::RESIDUAL_SUM`]): the ONNX side of
    /// [`crate::canonize::ResNetCanonizer`].
    pub fn with_residual_sums(&self) -> Self {
        let mut out = self.copy();
        out.options.residual_sums = true;
        out
    }

    fn copy(&self) -> Self {
        Self {
            model: self.model.clone(),
            origin: self.origin.clone(),
            plans: self.plans.clone(),
            options: self.options.clone(),
            layer_paths: self.layer_paths.clone(),
            num_classes: self.num_classes,
            channels: self.channels,
            declared: self.declared.clone(),
            defaults: self.defaults.clone(),
        }
    }

    /// The declared input shape, open dimensions filled in (batch 1, 224 x 224).
    pub fn declared_shape(&self) -> &[usize] {
        &self.declared
    }

    /// Where the graph came from (its file), for messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The ONNX model.
    pub fn onnx(&self) -> &OnnxModel<T> {
        &self.model
    }

    /// Number of classes (the output's last dimension).
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Input channels the graph takes.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The module paths that can be probed, in the order the graph first
    /// reaches them.
    pub fn layer_paths(&self) -> &[String] {
        &self.layer_paths
    }

    /// The layers probed by default (see [`defaults`]).
    pub fn default_layers(&self) -> DefaultLayers {
        self.defaults.clone()
    }

    /// The module paths with the shape of their output for an input of
    /// `input_shape`.
    pub fn layer_shapes(&self, input_shape: &[usize]) -> Result<Vec<(String, Vec<usize>)>> {
        let planned = self.planned(input_shape)?;
        let plan = &planned.plan;
        Ok(plan
            .layer_outputs()
            .into_iter()
            .map(|(p, v)| (p, plan.values[v].shape.clone()))
            .collect())
    }

    /// The plan for `shape`, made on first use.
    fn planned(&self, shape: &[usize]) -> Result<Arc<Planned<T>>> {
        {
            let plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, p)) = plans.iter().find(|(s, _)| s == shape) {
                return Ok(p.clone());
            }
        }
        let plan = self.model.plan(shape)?;
        let mut prepared = plan
            .nodes
            .iter()
            .map(|n| Prepared::new(n))
            .collect::<Result<Vec<_>>>()?;
        let mut outputs_of = vec![Vec::new(); plan.values.len()];
        for (path, v) in plan.layer_outputs() {
            if let Some(o) = outputs_of.get_mut(v) {
                o.push(path);
            }
        }
        let mut uses = vec![0u32; plan.values.len()];
        for node in &plan.nodes {
            for v in node.inputs.iter().filter_map(execute::value_id) {
                uses[v] += 1;
            }
        }
        uses[plan.output] += 1;
        execute::prepare_folds(&plan, &uses, &mut prepared)?;
        execute::prepare_silu(&plan, &uses, &outputs_of, &mut prepared);
        let planned = Arc::new(Planned {
            plan,
            prepared,
            outputs_of,
            uses,
        });
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        plans.push((shape.to_vec(), planned.clone()));
        Ok(planned)
    }

    /// Records the forward pass of `x` on `tape` and returns the logits.
    ///
    /// A graph exported for a fixed batch (the exporters write the batch
    /// size into reshapes and constants) that cannot be planned for `x`'s
    /// batch runs on slices of `x` of the exported batch, when `x`'s batch
    /// is a multiple of it: the logits and every module output whose first
    /// dimension is the batch are the slices' results joined along it.
    pub fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        let out = match self.planned(x.shape()) {
            Ok(planned) => execute::run(&planned, &self.options, tape, x, None),
            Err(e) => match self.chunk_shape(x.shape()) {
                Some(shape) => self.forward_in_chunks(tape, x, &shape),
                None => Err(e),
            },
        };
        tape.set_layer_path("");
        out
    }

    /// The declared shape to run `shape` in parts of, if the graph fixes a
    /// batch that divides `shape`'s and plans for the rest of `shape`.
    fn chunk_shape(&self, shape: &[usize]) -> Option<Vec<usize>> {
        let Some(Dim::Fixed(n0)) = self.model.input_shape().first() else {
            return None;
        };
        let n = *shape.first()?;
        if *n0 == 0 || n == *n0 || n % n0 != 0 {
            return None;
        }
        let mut chunk = shape.to_vec();
        chunk[0] = *n0;
        self.planned(&chunk).ok().map(|_| chunk)
    }

    fn forward_in_chunks(&self, tape: &mut Tape<T>, x: &Var<T>, chunk: &[usize]) -> Result<Var<T>> {
        use sightline_autograd::ops::shape::{concat, slice};
        let planned = self.planned(chunk)?;
        let n0 = chunk[0];
        let parts = x.shape()[0] / n0;
        let mut outputs = Vec::with_capacity(parts);
        let mut marks: Vec<Vec<(String, Var<T>)>> = Vec::with_capacity(parts);
        for k in 0..parts {
            tape.set_layer_path("");
            let (start, end) = ((k * n0) as i64, ((k + 1) * n0) as i64);
            let xk = slice(tape, x, 0, start, end, 1)?;
            let mut m = Vec::new();
            outputs.push(execute::run(
                &planned,
                &self.options,
                tape,
                &xk,
                Some(&mut m),
            )?);
            marks.push(m);
        }
        tape.set_layer_path("");
        let first = marks.first().cloned().unwrap_or_default();
        for (i, (path, var)) in first.iter().enumerate() {
            if var.shape().first() != Some(&n0) {
                continue;
            }
            let vars: Vec<&Var<T>> = marks
                .iter()
                .filter_map(|m| m.get(i).map(|(_, v)| v))
                .collect();
            let joined = concat(tape, &vars, 0)?;
            tape.mark_output_of(path, &joined);
        }
        let refs: Vec<&Var<T>> = outputs.iter().collect();
        Ok(concat(tape, &refs, 0)?)
    }

    /// The logits of `x` without recording.
    pub fn logits(&self, x: &Tensor<T>) -> Result<Tensor<T>> {
        let mut tape = Tape::new(sightline_autograd::Retain::Nothing);
        let input = tape.input(x.clone());
        Ok(self.forward(&mut tape, &input)?.value().clone())
    }
}

/// The declared input shape with open dimensions filled in: batch 1, and
/// 224 for height and width.
fn declared_shape(dims: &[Dim]) -> Result<Vec<usize>> {
    if dims.len() != 4 {
        return Err(LayerError::arch(format!(
            "the graph's input has {} dimensions; sightline explains image classifiers (N x C x H x W)",
            dims.len()
        )));
    }
    let shape: Vec<usize> = dims
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Dim::Fixed(n) => *n,
            Dim::Named(_) if i == 0 => 1,
            Dim::Named(_) if i == 1 => 0,
            Dim::Named(_) => DEFAULT_SIDE,
        })
        .collect();
    if shape[1] == 0 {
        return Err(LayerError::arch(
            "the graph's input leaves its channels open; export it with a fixed channel count",
        ));
    }
    Ok(shape)
}

#[cfg(test)]
mod tests;
