//! Constant values while planning: float tensors in the element type `T`,
//! and the integer and boolean tensors of shape arithmetic.

use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// Largest number of elements a folded constant may hold (2^26, 64 Mi):
/// the evaluator allocates its results (and a gather map as large), and
/// ops such as `Expand`, `ConstantOfShape` or `Range` can ask for much more
/// than their inputs hold.
pub const MAX_CONSTANT_ELEMENTS: usize = 1 << 26;

/// Largest number of multiply-adds a folded MatMul or Gemm may take (2^32).
pub const MAX_FOLD_WORK: usize = 1 << 32;

/// A dense row-major array of integers or booleans.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense<E> {
    /// The shape.
    pub shape: Vec<usize>,
    /// The elements, row-major; `data.len()` is the product of `shape`.
    pub data: Vec<E>,
}

impl<E> Dense<E> {
    /// Wraps `data` (the caller guarantees its length fits `shape`).
    pub fn new(shape: Vec<usize>, data: Vec<E>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    /// A 1-d array.
    pub fn vector(data: Vec<E>) -> Self {
        Self {
            shape: vec![data.len()],
            data,
        }
    }
}

/// A constant value: an initializer, a `Constant` node, or a folded result.
#[derive(Debug)]
pub enum Constant<T> {
    /// Floating-point data, converted to `T`.
    Float(Arc<Tensor<T>>),
    /// Integer data (every ONNX integer type, widened to `i64`).
    Int(Arc<Dense<i64>>),
    /// Boolean data.
    Bool(Arc<Dense<bool>>),
}

impl<T> Clone for Constant<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Float(t) => Self::Float(Arc::clone(t)),
            Self::Int(d) => Self::Int(Arc::clone(d)),
            Self::Bool(d) => Self::Bool(Arc::clone(d)),
        }
    }
}

impl<T: Element> Constant<T> {
    /// An integer constant.
    pub fn int(shape: Vec<usize>, data: Vec<i64>) -> Self {
        Self::Int(Arc::new(Dense::new(shape, data)))
    }

    /// A boolean constant.
    pub fn bool(shape: Vec<usize>, data: Vec<bool>) -> Self {
        Self::Bool(Arc::new(Dense::new(shape, data)))
    }

    /// A float constant from `f64` values, rounded to `T`.
    pub fn float_from_f64(shape: Vec<usize>, data: &[f64]) -> Result<Self, String> {
        let values: Vec<T> = data.iter().map(|&v| T::from_f64_lossy(v)).collect();
        Tensor::from_vec(shape, values)
            .map(|t| Self::Float(Arc::new(t)))
            .map_err(|e| e.to_string())
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Self::Float(t) => t.shape(),
            Self::Int(d) => &d.shape,
            Self::Bool(d) => &d.shape,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::Float(t) => t.len(),
            Self::Int(d) => d.data.len(),
            Self::Bool(d) => d.data.len(),
        }
    }

    /// A name of the element kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Float(_) => "float",
            Self::Int(_) => "integer",
            Self::Bool(_) => "bool",
        }
    }

    /// The integer elements, when this is an integer constant.
    pub fn ints(&self) -> Option<&[i64]> {
        match self {
            Self::Int(d) => Some(&d.data),
            _ => None,
        }
    }

    /// Every element as `f64` (booleans as 0 and 1).
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            Self::Float(t) => t.data().iter().map(|v| v.to_f64_lossless()).collect(),
            Self::Int(d) => d.data.iter().map(|&v| v as f64).collect(),
            Self::Bool(d) => d.data.iter().map(|&v| f64::from(u8::from(v))).collect(),
        }
    }

    /// The single element of a one-element constant, as `f64`.
    pub fn scalar_f64(&self) -> Option<f64> {
        if self.len() != 1 {
            return None;
        }
        self.to_f64().first().copied()
    }

    /// The single element of a one-element integer constant.
    pub fn scalar_int(&self) -> Option<i64> {
        match self.ints() {
            Some([v]) => Some(*v),
            _ => None,
        }
    }

    /// The same elements under another shape of the same element count.
    pub fn with_shape(&self, shape: Vec<usize>) -> Result<Self, String> {
        let want: Option<usize> = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if want != Some(self.len()) {
            return Err(format!(
                "cannot view {} elements as shape {shape:?}",
                self.len()
            ));
        }
        Ok(match self {
            Self::Float(t) => {
                let t = Tensor::clone(t).reshape(shape).map_err(|e| e.to_string())?;
                Self::Float(Arc::new(t))
            }
            Self::Int(d) => Self::int(shape, d.data.clone()),
            Self::Bool(d) => Self::bool(shape, d.data.clone()),
        })
    }

    /// The elements at `index` (a gather map into this constant's data),
    /// under `shape`.
    pub fn take(&self, shape: Vec<usize>, index: &[usize]) -> Result<Self, String> {
        fn pick<E: Copy>(data: &[E], index: &[usize]) -> Result<Vec<E>, String> {
            index
                .iter()
                .map(|&i| {
                    data.get(i)
                        .copied()
                        .ok_or_else(|| format!("index {i} out of range"))
                })
                .collect()
        }
        Ok(match self {
            Self::Float(t) => {
                let data = pick(t.data(), index)?;
                Self::Float(Arc::new(
                    Tensor::from_vec(shape, data).map_err(|e| e.to_string())?,
                ))
            }
            Self::Int(d) => Self::int(shape, pick(&d.data, index)?),
            Self::Bool(d) => Self::bool(shape, pick(&d.data, index)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors() {
        let c = Constant::<f32>::int(vec![2], vec![3, -4]);
        assert_eq!(c.shape(), &[2]);
        assert_eq!(c.ints(), Some(&[3i64, -4][..]));
        assert_eq!(c.to_f64(), vec![3.0, -4.0]);
        assert_eq!(c.scalar_int(), None);
        let s = Constant::<f64>::float_from_f64(vec![], &[2.5]).unwrap();
        assert_eq!(s.scalar_f64(), Some(2.5));
        assert_eq!(s.kind(), "float");
        let b = Constant::<f32>::bool(vec![1], vec![true]);
        assert_eq!(b.to_f64(), vec![1.0]);
    }

    #[test]
    fn take_and_reshape() {
        let c = Constant::<f32>::float_from_f64(vec![2, 2], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let t = c.take(vec![2, 2], &[0, 2, 1, 3]).unwrap();
        assert_eq!(t.to_f64(), vec![1.0, 3.0, 2.0, 4.0]);
        let r = c.with_shape(vec![4]).unwrap();
        assert_eq!(r.shape(), &[4]);
        assert!(c.with_shape(vec![3]).is_err());
        assert!(c.take(vec![1], &[9]).is_err());
    }
}
