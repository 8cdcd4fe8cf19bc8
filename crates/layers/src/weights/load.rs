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
    /// The file's map, when the buffer is one: each tensor's pages are
    /// handed back to the system once converted, so that the file's pages
    /// and the converted weights are never resident together.
    map: Option<&'a memmap2::Mmap>,
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
            map: None,
        })
    }

    /// Parses the mapped file `map`, releasing each tensor's pages once it
    /// is converted.
    pub(crate) fn parse_mapped(map: &'a memmap2::Mmap, origin: &str) -> Result<Self> {
        let mut source = Self::parse(map, origin)?;
        source.map = Some(map);
        Ok(source)
    }

    /// Drops the resident pages of `bytes`, a slice of the map, from this
    /// process. Advisory: a failure only leaves the pages resident.
    fn release(&self, bytes: &[u8]) {
        let Some(map) = self.map else { return };
        let Some(offset) = (bytes.as_ptr() as usize).checked_sub(map.as_ptr() as usize) else {
            return;
        };
        if offset.saturating_add(bytes.len()) > map.len() {
            return;
        }
        #[cfg(unix)]
        // SAFETY: the map is a read-only, private map of a file that is not
        // written while it is mapped (the loader's premise, see
        // `file::map_regular_file`); dropping its pages only makes the next
        // access read them from the file again, with the same bytes, so the
        // slices borrowed from it keep their values.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, bytes.len())
        };
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
        let values = float_values::<T>(key, &view, &|chunk| self.release(chunk))?;
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
