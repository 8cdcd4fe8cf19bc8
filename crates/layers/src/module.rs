//! The [`Module`] trait that every layer implements, and the helpers that run
//! a child module inside its own scope on the tape.

use crate::error::Result;
use crate::layers::BatchNorm2d;
use sightline_autograd::{Tape, Var};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// What a named tensor of a model is, in PyTorch's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorRole {
    /// A parameter that training can update (convolution and linear weights and biases).
    Trainable,
    /// A PyTorch parameter that sightline keeps frozen: the batch-norm weight
    /// and bias, folded with the running statistics into one affine map at
    /// load time.
    Frozen,
    /// A PyTorch buffer: batch-norm running mean and variance.
    Buffer,
}

/// A tensor of a model under its torchvision `state_dict` name.
#[derive(Clone, Debug)]
pub struct NamedTensor<'a, T> {
    /// The full name (`features.0.weight`, `layer1.0.bn1.running_var`).
    pub name: String,
    /// The tensor.
    pub tensor: &'a Arc<Tensor<T>>,
    /// Parameter or buffer.
    pub role: TensorRole,
}

/// A layer or a container of layers, as in `torch.nn.Module`.
///
/// A module does not know its own name: its parent runs it inside a scope named
/// after it (see [`run_child`]), so that the ops it records and the parameters
/// it registers carry torchvision's paths.
pub trait Module<T: Element> {
    /// Records the forward pass on `tape`, in the current scope.
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>>;

    /// [`Module::forward`] taking the input over: a module may then reuse
    /// its buffer when nothing else holds it (`ReLU` does, in place). The
    /// same result as `forward`, which it calls unless overridden.
    fn forward_owned(&self, tape: &mut Tape<T>, x: Var<T>) -> Result<Var<T>> {
        self.forward(tape, &x)
    }

    /// Appends the paths of the sub-modules (not of this module), in forward
    /// order, each container before its children, joined to `prefix`.
    fn submodule_paths(&self, _prefix: &str, _out: &mut Vec<String>) {}

    /// Appends every tensor (parameters and buffers) under its full name.
    fn named_tensors<'a>(&'a self, _prefix: &str, _out: &mut Vec<NamedTensor<'a, T>>) {}

    /// Appends the trainable parameters under their full names, mutably.
    fn trainable_mut<'a>(
        &'a mut self,
        _prefix: &str,
        _out: &mut Vec<(String, &'a mut Arc<Tensor<T>>)>,
    ) {
    }

    /// Appends each batch norm that directly follows a convolution, mutably,
    /// with the convolution's full path: where a canonizer may merge one into
    /// the other ([`crate::canonize::MergeBatchNorm`]).
    fn batch_norms_after_convs_mut<'a>(
        &'a mut self,
        _prefix: &str,
        _out: &mut Vec<(String, &'a mut BatchNorm2d<T>)>,
    ) {
    }
}

/// `prefix.name`, or `name` at the top level.
pub fn join_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Runs `module` as the child `name` of the current scope: enters the scope,
/// records its forward pass, registers its output as the layer output of the
/// child's path (the last call wins, as a PyTorch forward hook on a reused
/// module), and leaves the scope, also on error.
pub fn run_child<T: Element, M: Module<T> + ?Sized>(
    tape: &mut Tape<T>,
    name: &str,
    module: &M,
    x: &Var<T>,
) -> Result<Var<T>> {
    in_scope(tape, name, |tape| module.forward(tape, x))
}

/// [`run_child`] handing the input over ([`Module::forward_owned`]).
pub fn run_child_owned<T: Element, M: Module<T> + ?Sized>(
    tape: &mut Tape<T>,
    name: &str,
    module: &M,
    x: Var<T>,
) -> Result<Var<T>> {
    in_scope(tape, name, |tape| module.forward_owned(tape, x))
}

/// Runs `forward` inside the scope `name`, registering its output as the
/// scope's layer output (see [`run_child`]).
fn in_scope<T: Element>(
    tape: &mut Tape<T>,
    name: &str,
    forward: impl FnOnce(&mut Tape<T>) -> Result<Var<T>>,
) -> Result<Var<T>> {
    tape.push_scope(name);
    let out = forward(tape);
    if let Ok(y) = &out {
        tape.mark_layer_output(y);
    }
    tape.pop_scope();
    out
}

/// Appends the path of the child `name`, then its sub-modules' paths.
pub(crate) fn child_paths<T: Element, M: Module<T> + ?Sized>(
    prefix: &str,
    name: &str,
    module: &M,
    out: &mut Vec<String>,
) {
    let path = join_path(prefix, name);
    out.push(path.clone());
    module.submodule_paths(&path, out);
}
