//! The tape: variables, the nodes that produced them, and layer scopes.

use crate::error::{AutogradError, Result};
use crate::op::Op;
use sightline_tensor::{Element, KernelPolicy, Tensor, TensorError};
use std::collections::HashMap;
use std::sync::Arc;

/// Identifier of a variable on a tape; ids grow in recording order.
pub type VarId = usize;

/// A value computed on a tape: its id and a shared handle to its tensor.
///
/// Cloning a `Var` is cheap. Dropping every handle to an intermediate value
/// frees it unless an op saved it for its backward rules.
#[derive(Clone, Debug)]
pub struct Var<T> {
    id: VarId,
    value: Arc<Tensor<T>>,
}

impl<T: Element> Var<T> {
    /// The variable's id on its tape.
    pub fn id(&self) -> VarId {
        self.id
    }

    /// The computed value.
    pub fn value(&self) -> &Tensor<T> {
        &self.value
    }

    /// A shared handle to the value.
    pub fn value_arc(&self) -> &Arc<Tensor<T>> {
        &self.value
    }

    /// The value's shape.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    /// The id and the value, for an op that may take the value over.
    pub(crate) fn into_parts(self) -> (VarId, Arc<Tensor<T>>) {
        (self.id, self.value)
    }

    /// A variable from its parts (the inverse of [`Var::into_parts`]).
    pub(crate) fn from_parts(id: VarId, value: Arc<Tensor<T>>) -> Self {
        Self { id, value }
    }
}

/// What the forward pass keeps for backward rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retain {
    /// Everything any built-in rule may need (inputs of conv, linear, pools and
    /// sums, for excitation backprop): one forward serves every method.
    All,
    /// Only what the standard, guided and deconvnet rules need (weights,
    /// ReLU sign bits, max-pool indices), plus the layer outputs named when
    /// recording: the least memory for gradient-based methods.
    Minimal,
    /// Record nothing: a plain inference forward pass.
    Nothing,
}

/// One recorded op: what it computed from which variables, under which layer.
#[derive(Debug)]
pub struct Node<T> {
    /// The op and what it saved (reach it by type with
    /// [`crate::RuleContext::op`] or `downcast_ref`).
    pub op: Box<dyn Op<T>>,
    /// Input variable ids, in the op's argument order.
    pub inputs: Vec<VarId>,
    /// Shapes of the inputs.
    pub input_shapes: Vec<Vec<usize>>,
    /// The output variable id.
    pub output: VarId,
    /// Torchvision-style path of the layer that recorded the op (`features.3`), empty at top level.
    pub layer: Arc<str>,
}

#[derive(Debug, Clone)]
struct VarInfo {
    shape: Vec<usize>,
    requires_grad: bool,
}

/// The output of a named layer, as registered by the model's forward pass.
#[derive(Debug, Clone)]
pub struct LayerOutput<T> {
    /// The variable.
    pub id: VarId,
    /// Its value, when the tape retained it.
    pub value: Option<Arc<Tensor<T>>>,
}

/// Records ops during a forward pass so that backward passes can walk them in reverse.
#[derive(Debug)]
pub struct Tape<T> {
    nodes: Vec<Node<T>>,
    vars: Vec<VarInfo>,
    scope: Vec<String>,
    layer_path: Arc<str>,
    layers: HashMap<String, LayerOutput<T>>,
    layer_order: Vec<String>,
    keep: Vec<String>,
    retain: Retain,
    train: bool,
    params: Vec<(String, VarId)>,
    kernels: KernelPolicy,
}

impl<T: Element> Tape<T> {
    /// A new, empty tape.
    pub fn new(retain: Retain) -> Self {
        Self {
            nodes: Vec::new(),
            vars: Vec::new(),
            scope: Vec::new(),
            layer_path: Arc::from(""),
            layers: HashMap::new(),
            layer_order: Vec::new(),
            keep: Vec::new(),
            retain,
            train: false,
            params: Vec::new(),
            kernels: KernelPolicy::default(),
        }
    }

    /// Records every convolution and max pool of this tape under `kernels`
    /// (Winograd or not, and which variant; the highest SIMD level), in the
    /// forward pass and in every backward pass through them: the recording
    /// functions put it in the parameters they compute and keep with the
    /// op. The default is [`KernelPolicy::default`].
    pub fn with_kernels(mut self, kernels: KernelPolicy) -> Self {
        self.kernels = kernels;
        self
    }

    /// The kernel policy the ops of this tape are recorded under.
    pub fn kernels(&self) -> KernelPolicy {
        self.kernels
    }

    /// Makes the parameters registered through [`Tape::param`] trainable leaves,
    /// so their gradients can be asked for (training).
    pub fn training(mut self) -> Self {
        self.train = true;
        self
    }

    /// Whether parameters are trainable on this tape.
    pub fn trains_params(&self) -> bool {
        self.train
    }

    /// A parameter of the current layer, named `name` (full name: `layer.name`,
    /// e.g. `features.0.weight`): a trainable leaf on a training tape, a frozen
    /// constant otherwise.
    pub fn param(&mut self, name: &str, value: &Arc<Tensor<T>>) -> Var<T> {
        if !self.train {
            return self.constant(value.clone());
        }
        let full = if self.layer_path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.layer_path)
        };
        let v = self.parameter(value.clone());
        self.params.push((full, v.id));
        v
    }

    /// The trainable parameters registered on this tape, by full name.
    pub fn params(&self) -> &[(String, VarId)] {
        &self.params
    }

    /// A tape that also keeps the outputs of the named layers (for probes under [`Retain::Minimal`]).
    pub fn with_kept_layers(retain: Retain, layers: &[&str]) -> Self {
        let mut t = Self::new(retain);
        t.keep = layers.iter().map(|s| s.to_string()).collect();
        t
    }

    /// The retention policy.
    pub fn retain(&self) -> Retain {
        self.retain
    }

    /// Whether ops are recorded.
    pub fn is_recording(&self) -> bool {
        self.retain != Retain::Nothing
    }

    /// Whether ops must keep the inputs that excitation-style rules need.
    pub fn keeps_all(&self) -> bool {
        self.retain == Retain::All
    }

    /// The recorded nodes, in order.
    pub fn nodes(&self) -> &[Node<T>] {
        &self.nodes
    }

    /// Number of variables created so far.
    pub fn num_vars(&self) -> usize {
        self.vars.len()
    }

    /// Shape of a variable.
    pub fn var_shape(&self, id: VarId) -> Result<&[usize]> {
        self.vars
            .get(id)
            .map(|v| v.shape.as_slice())
            .ok_or(AutogradError::UnknownVar {
                id,
                len: self.vars.len(),
            })
    }

    /// Whether a variable depends on a leaf that requires a gradient.
    pub fn requires_grad(&self, id: VarId) -> bool {
        self.vars.get(id).is_some_and(|v| v.requires_grad)
    }

    fn new_var(&mut self, value: Tensor<T>, requires_grad: bool) -> Var<T> {
        let id = self.vars.len();
        self.vars.push(VarInfo {
            shape: value.shape().to_vec(),
            requires_grad,
        });
        Var {
            id,
            value: Arc::new(value),
        }
    }

    /// A leaf whose gradient may be asked for (the model input).
    pub fn input(&mut self, value: Tensor<T>) -> Var<T> {
        self.new_var(value, true)
    }

    /// A trainable parameter leaf (shared, not copied).
    pub fn parameter(&mut self, value: Arc<Tensor<T>>) -> Var<T> {
        self.leaf_arc(value, true)
    }

    /// A frozen leaf: no gradient is ever computed for it.
    pub fn constant(&mut self, value: Arc<Tensor<T>>) -> Var<T> {
        self.leaf_arc(value, false)
    }

    fn leaf_arc(&mut self, value: Arc<Tensor<T>>, requires_grad: bool) -> Var<T> {
        let id = self.vars.len();
        self.vars.push(VarInfo {
            shape: value.shape().to_vec(),
            requires_grad,
        });
        Var { id, value }
    }

    /// Records `op`, computed from `inputs` (variables of this tape, in the
    /// op's argument order), and returns its output variable holding
    /// `value`. The node carries the current layer path. A tape that
    /// records nothing ([`Retain::Nothing`]) drops the op and only makes the
    /// variable.
    ///
    /// This is how an op defined outside the crate joins the tape: compute
    /// the forward value, build the op with what its backward needs, record.
    pub fn record<O: Op<T>>(&mut self, op: O, inputs: &[&Var<T>], value: Tensor<T>) -> Var<T> {
        let ids: Vec<VarId> = inputs.iter().map(|v| v.id).collect();
        self.record_ids(op, &ids, value)
    }

    /// [`Tape::record`] for an op that keeps its own output (a sigmoid's
    /// backward reads `y`): `make` gets the output's shared buffer, the same
    /// one the returned variable holds, so nothing is copied. On a tape that
    /// records nothing `make` is not called.
    pub fn record_keeping_output<O: Op<T>>(
        &mut self,
        make: impl FnOnce(Arc<Tensor<T>>) -> O,
        inputs: &[&Var<T>],
        value: Tensor<T>,
    ) -> Var<T> {
        let ids: Vec<VarId> = inputs.iter().map(|v| v.id).collect();
        let requires_grad = ids.iter().any(|&v| self.requires_grad(v));
        let out = self.new_var(value, requires_grad);
        if self.is_recording() {
            let op = make(out.value.clone());
            self.push_node(Box::new(op), &ids, out.id);
        }
        out
    }

    /// [`Tape::record`] given the inputs' ids (variables of this tape), for
    /// an op that consumed an input's value.
    pub(crate) fn record_ids<O: Op<T>>(
        &mut self,
        op: O,
        inputs: &[VarId],
        value: Tensor<T>,
    ) -> Var<T> {
        let requires_grad = inputs.iter().any(|&v| self.requires_grad(v));
        let out = self.new_var(value, requires_grad);
        if self.is_recording() {
            self.push_node(Box::new(op), inputs, out.id);
        }
        out
    }

    fn push_node(&mut self, op: Box<dyn Op<T>>, inputs: &[VarId], output: VarId) {
        let input_shapes = inputs
            .iter()
            .map(|&v| {
                self.vars
                    .get(v)
                    .map(|i| i.shape.clone())
                    .unwrap_or_default()
            })
            .collect();
        self.nodes.push(Node {
            op,
            inputs: inputs.to_vec(),
            input_shapes,
            output,
            layer: self.layer_path.clone(),
        });
    }

    /// Wraps a kernel error with the op and the current layer: for an op's
    /// forward, `kernel(..).map_err(tape.kernel_err("softplus"))`.
    pub fn kernel_err(&self, op: &'static str) -> impl Fn(TensorError) -> AutogradError + '_ {
        move |source| AutogradError::Kernel {
            op,
            layer: self.layer_path.to_string(),
            source,
        }
    }

    /// The current layer path.
    pub fn layer_path(&self) -> &str {
        &self.layer_path
    }

    /// Enters a child module named `name` (paths join with `.`).
    pub fn push_scope(&mut self, name: &str) {
        self.scope.push(name.to_string());
        self.layer_path = Arc::from(self.scope.join("."));
    }

    /// Leaves the current child module.
    pub fn pop_scope(&mut self) {
        self.scope.pop();
        self.layer_path = Arc::from(self.scope.join("."));
    }

    /// Sets the current layer path directly (`features.18`), leaving the
    /// scope stack as it is: for a graph whose nodes carry their module
    /// paths whole (ONNX), instead of entering and leaving scopes.
    /// [`Tape::pop_scope`] and [`Tape::push_scope`] set it again from the
    /// stack.
    pub fn set_layer_path(&mut self, path: &str) {
        if *self.layer_path != *path {
            self.layer_path = Arc::from(path);
        }
    }

    /// Registers `var` as the output of the current layer path.
    pub fn mark_layer_output(&mut self, var: &Var<T>) {
        let path = self.layer_path.to_string();
        self.mark_output_of(&path, var);
    }

    /// Registers `var` as the output of the layer `path` (the last call for
    /// a path wins, as a forward hook on a reused module sees its last call).
    pub fn mark_output_of(&mut self, path: &str, var: &Var<T>) {
        let keep = self.retain == Retain::All || self.keep.iter().any(|k| k == path);
        if !self.layers.contains_key(path) {
            self.layer_order.push(path.to_string());
        }
        self.layers.insert(
            path.to_string(),
            LayerOutput {
                id: var.id,
                value: keep.then(|| var.value.clone()),
            },
        );
    }

    /// The output of a named layer, if the forward pass went through it.
    pub fn layer_output(&self, path: &str) -> Option<&LayerOutput<T>> {
        self.layers.get(path)
    }

    /// Layer paths in the order their outputs were registered.
    pub fn layer_names(&self) -> &[String] {
        &self.layer_order
    }
}
