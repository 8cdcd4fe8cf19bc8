//! Loading a model's tensors from a safetensors buffer.

use super::dtype::float_values;
use super::{Init, WeightSource};
use crate::error::{LayerError, Result};
use safetensors::{Dtype, SafeTensors};
use sightline_tensor::{Element, Tensor};
use std::collections::HashSet;
use std::sync::Arc;

/// Hands out the tensors of a parsed safetensors buffer by key, checking
/// shape, dtype and finiteness, and remembers which keys were used.
pub(crate) struct SafetensorsSource<'a> {
    file: SafeTensors<'a>,
    origin: String,
    used: HashSet<String>,
}

impl<'a> SafetensorsSource<'a> {
    /// Parses `bytes`; `origin` names them in errors.
    pub(crate) fn parse(bytes: &'a [u8], origin: &str) -> Result<Self> {
        let file = SafeTensors::deserialize(bytes).map_err(|e| LayerError::CorruptWeights {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        Ok(Self {
            file,
            origin: origin.to_string(),
            used: HashSet::new(),
        })
    }

    /// Fails on the first key (in sorted order) that the model did not ask for.
    pub(crate) fn finish(self) -> Result<()> {
        let mut extra: Vec<&String> = self
            .file
            .names()
            .into_iter()
            .filter(|k| !self.used.contains(k.as_str()))
            .collect();
        extra.sort();
        match extra.first() {
            Some(key) => Err(LayerError::UnexpectedWeight {
                key: key.to_string(),
            }),
            None => Ok(()),
        }
    }
}

impl<T: Element> WeightSource<T> for SafetensorsSource<'_> {
    fn tensor(&mut self, key: &str, shape: &[usize], _init: Init) -> Result<Arc<Tensor<T>>> {
        let view = self
            .file
            .tensor(key)
            .map_err(|_| LayerError::MissingWeight {
                key: key.to_string(),
                expected: shape.to_vec(),
            })?;
        if view.shape() != shape {
            return Err(LayerError::WeightShape {
                key: key.to_string(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let values = float_values::<T>(key, &view)?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(LayerError::NonFinite {
                what: format!("weight `{key}`"),
            });
        }
        let tensor =
            Tensor::from_vec(shape.to_vec(), values).map_err(|e| LayerError::CorruptWeights {
                path: self.origin.clone(),
                message: format!("tensor `{key}`: {e}"),
            })?;
        self.used.insert(key.to_string());
        Ok(Arc::new(tensor))
    }

    fn counter(&mut self, key: &str) -> Result<()> {
        let Ok(view) = self.file.tensor(key) else {
            return Ok(());
        };
        if view.dtype() != Dtype::I64 {
            return Err(LayerError::WeightDtype {
                key: key.to_string(),
                dtype: format!("{:?}", view.dtype()),
            });
        }
        if view.shape().iter().product::<usize>() != 1 {
            return Err(LayerError::WeightShape {
                key: key.to_string(),
                expected: Vec::new(),
                found: view.shape().to_vec(),
            });
        }
        self.used.insert(key.to_string());
        Ok(())
    }
}
