//! Converting the bytes of a safetensors tensor to the model's element type.

use crate::error::{LayerError, Result};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use sightline_tensor::Element;

/// Decodes little-endian elements of `N` bytes with `f`.
fn decode<T: Element, const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> f64) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            T::from_f64_lossy(f(b))
        })
        .collect()
}

/// The values of a floating-point tensor (F32, F64, F16 or BF16), converted to `T`.
pub(crate) fn float_values<T: Element>(key: &str, view: &TensorView<'_>) -> Result<Vec<T>> {
    let bytes = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => decode::<T, 4>(bytes, |b| f64::from(f32::from_le_bytes(b))),
        Dtype::F64 => decode::<T, 8>(bytes, f64::from_le_bytes),
        Dtype::F16 => decode::<T, 2>(bytes, |b| half::f16::from_le_bytes(b).to_f64()),
        Dtype::BF16 => decode::<T, 2>(bytes, |b| half::bf16::from_le_bytes(b).to_f64()),
        other => {
            return Err(LayerError::WeightDtype {
                key: key.to_string(),
                dtype: format!("{other:?}"),
            })
        }
    })
}
