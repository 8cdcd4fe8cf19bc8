//! Writing a model's tensors as a safetensors file (float32).

use crate::error::{LayerError, Result};
use crate::module::NamedTensor;
use safetensors::tensor::View;
use safetensors::Dtype;
use sightline_tensor::Element;
use std::borrow::Cow;

/// An owned tensor in safetensors layout.
struct OwnedView {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for OwnedView {
    fn dtype(&self) -> Dtype {
        self.dtype
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }

    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Every tensor as float32, plus a zero int64 `num_batches_tracked` for each
/// batch norm (named in `counters`), so that PyTorch's strict
/// `load_state_dict` accepts the file.
fn views<T: Element>(
    tensors: &[NamedTensor<'_, T>],
    counters: &[String],
) -> Vec<(String, OwnedView)> {
    let mut out: Vec<(String, OwnedView)> = tensors
        .iter()
        .map(|t| {
            let bytes = t
                .tensor
                .data()
                .iter()
                .flat_map(|v| (v.to_f64_lossless() as f32).to_le_bytes())
                .collect();
            let view = OwnedView {
                dtype: Dtype::F32,
                shape: t.tensor.shape().to_vec(),
                bytes,
            };
            (t.name.clone(), view)
        })
        .collect();
    out.extend(counters.iter().map(|name| {
        let view = OwnedView {
            dtype: Dtype::I64,
            shape: Vec::new(),
            bytes: 0i64.to_le_bytes().to_vec(),
        };
        (name.clone(), view)
    }));
    out
}

/// Serialises the tensors to safetensors bytes.
pub(crate) fn to_bytes<T: Element>(
    tensors: &[NamedTensor<'_, T>],
    counters: &[String],
) -> Result<Vec<u8>> {
    safetensors::serialize(views(tensors, counters), &None).map_err(|e| {
        LayerError::CorruptWeights {
            path: "<memory>".to_string(),
            message: e.to_string(),
        }
    })
}
