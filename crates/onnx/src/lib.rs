//! # sightline-onnx
//!
//! Reads ONNX models, as PyTorch's two exporters write them, into a graph
//! of compute nodes for sightline: [`OnnxModel::load`] reads and validates
//! a file, [`OnnxModel::plan`] infers every shape and folds every constant
//! for one input shape and gives a [`Plan`], whose [`PlanNode`]s carry a
//! [`NodeOp`] with resolved attributes, their operands (runtime values or
//! float constants in the element type `T`) and the PyTorch module paths
//! they belong to.
//!
//! ## What is supported
//!
//! - **Files.** Protobuf `ModelProto`, IR any, default-domain opsets 11 to
//!   25; weights inline (`raw_data` or typed fields) or external
//!   (`data_location = EXTERNAL`: `location`, `offset`, `length`, read from a
//!   memory map of a file inside the model's folder). Element types float32,
//!   float16, bfloat16 and float64 (converted to `T`), the integer types and
//!   bool (index constants). One graph input (a float tensor) and one
//!   output. Nodes of other domains, functions and subgraphs are refused.
//! - **Compute ops** (become [`NodeOp`]s): Conv (2-d, auto_pad resolved),
//!   Gemm, MatMul, Add, Sub, Mul, Div, Relu, Clip, Sigmoid, HardSigmoid,
//!   HardSwish, Erf, Softmax, LayerNormalization, BatchNormalization
//!   (inference), MaxPool, AveragePool, GlobalAveragePool, ReduceMean,
//!   Concat, Split, Slice, Reshape / Flatten / Squeeze / Unsqueeze (all as
//!   [`NodeOp::Reshape`]), Transpose, Gather (constant indices), Expand.
//!   Identity, Dropout and float-to-float Cast vanish.
//! - **Constant folding.** A node whose inputs are all constants is
//!   evaluated at plan time, as is `Shape` of a runtime value (its inferred
//!   static shape): Constant, Shape, ConstantOfShape, Cast, Equal, Where,
//!   Mod, Range, Sqrt, the arithmetic and activation ops above, MatMul,
//!   Gemm and every data-movement op. Convolutions, pools, normalisations,
//!   Softmax and ReduceMean are not evaluated on constants (an error).
//! - **Shapes.** Every compute op has a shape function; a node that cannot
//!   take its input shapes is [`OnnxError::Shape`] naming it. Plans whose
//!   values hold more than 2^40 elements, and folded constants over 2^26
//!   elements (or constant products over 2^32 multiply-adds), are refused.
//! - **Layer scopes.** From the dynamo exporter's
//!   `pkg.torch.onnx.name_scopes` node metadata, or the torchscript
//!   exporter's node names (`/features/features.1/conv/conv.0/Conv` →
//!   `features.1.conv.0`): see [`Plan::layer_outputs`].
//!
//! Not supported: Pad, Resize, recurrent ops, control flow, quantized ops,
//! training-mode Dropout/BatchNormalization, Softmax of opset < 13 over more
//! than the last axis.
#![warn(missing_docs)]

mod args;
mod attributes;
mod constant;
pub mod error;
mod fold;
mod graph;
mod index;
mod lower;
mod model;
pub mod node_op;
pub mod plan;
mod planner;
mod proto;
mod read;
mod scope;
mod shape;
mod spec;
mod tensor_data;

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod test_models;

pub use error::{OnnxError, Result};
pub use model::{Dim, OnnxModel, MAX_OPSET, MIN_OPSET};
pub use node_op::NodeOp;
pub use plan::{Operand, Plan, PlanNode, ValueId, ValueInfo};
pub use planner::MAX_PLAN_ELEMENTS;
pub use read::{file_kind, MAX_MODEL_BYTES};
