//! Converting the bytes of a safetensors tensor to the model's element type.

use crate::error::{LayerError, Result};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use sightline_tensor::Element;

/// Bytes decoded between two calls of the `done` callback of [`float_values`].
const CHUNK_BYTES: usize = 1 << 22;

/// Decodes little-endian elements of `N` bytes with `f`, a chunk of
/// [`CHUNK_BYTES`] at a time, handing each decoded chunk to `done`.
fn decode<T: Element, const N: usize>(
    bytes: &[u8],
    f: impl Fn([u8; N]) -> f64,
    done: &dyn Fn(&[u8]),
) -> Vec<T> {
    let mut values = Vec::with_capacity(bytes.len() / N);
    for chunk in bytes.chunks(CHUNK_BYTES - CHUNK_BYTES % N) {
        values.extend(chunk.chunks_exact(N).map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            T::from_f64_lossy(f(b))
        }));
        done(chunk);
    }
    values
}

/// The values of a floating-point tensor (F32, F64, F16 or BF16), converted
/// to `T`. The bytes are read once, in order, a chunk at a time, and each
/// chunk is handed to `done` once decoded (the loader drops a mapped file's
/// pages there, so that a tensor of most of the file never has its bytes and
/// its values resident together).
pub(crate) fn float_values<T: Element>(
    key: &str,
    view: &TensorView<'_>,
    done: &dyn Fn(&[u8]),
) -> Result<Vec<T>> {
    let bytes = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => decode::<T, 4>(bytes, |b| f64::from(f32::from_le_bytes(b)), done),
        Dtype::F64 => decode::<T, 8>(bytes, f64::from_le_bytes, done),
        Dtype::F16 => decode::<T, 2>(bytes, |b| half::f16::from_le_bytes(b).to_f64(), done),
        Dtype::BF16 => decode::<T, 2>(bytes, |b| half::bf16::from_le_bytes(b).to_f64(), done),
        other => {
            return Err(LayerError::WeightDtype {
                key: key.to_string(),
                dtype: format!("{other:?}"),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn a_tensor_of_several_chunks_is_decoded_whole_and_handed_back_in_order() {
        // 1.5 chunks of float32 values 0, 1, 2, ...
        let n = CHUNK_BYTES / 4 * 3 / 2;
        let bytes: Vec<u8> = (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F32, vec![n], &bytes).unwrap();
        let seen = RefCell::new(Vec::new());
        let values = float_values::<f64>("w", &view, &|chunk| {
            let offset = chunk.as_ptr() as usize - bytes.as_ptr() as usize;
            seen.borrow_mut().push((offset, chunk.len()));
        })
        .unwrap();
        assert_eq!(values.len(), n);
        assert!(values.iter().enumerate().all(|(i, &v)| v == i as f64));
        assert_eq!(
            seen.into_inner(),
            vec![(0, CHUNK_BYTES), (CHUNK_BYTES, n * 4 - CHUNK_BYTES)]
        );
    }

    #[test]
    fn half_precision_is_widened_and_integers_are_refused() {
        let bytes: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        let view = TensorView::new(Dtype::BF16, vec![2], &bytes).unwrap();
        assert_eq!(
            float_values::<f32>("w", &view, &|_| {}).unwrap(),
            [1.5, -2.0]
        );
        let ints = [0u8; 8];
        let view = TensorView::new(Dtype::I64, vec![1], &ints).unwrap();
        let e = float_values::<f32>("w", &view, &|_| {}).unwrap_err();
        assert!(e.to_string().contains('w'), "{e}");
    }
}
