//! `TensorProto` to [`Constant`]: floats (float32, float16, bfloat16,
//! float64) converted to `T`, integers widened to `i64`, booleans.

use crate::constant::{Constant, Dense};
use crate::error::{OnnxError, Result};
use crate::proto::{data_type, TensorProto};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// The shape of a tensor proto, checked: no negative dimension, and an
/// element count that fits in `usize`.
pub fn proto_shape(t: &TensorProto) -> Result<(Vec<usize>, usize)> {
    let bad = |message: String| OnnxError::TensorData {
        tensor: t.name.clone(),
        message,
    };
    let mut shape = Vec::with_capacity(t.dims.len());
    let mut count = 1usize;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| bad(format!("negative dimension {d}")))?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| bad(format!("shape {:?} overflows", t.dims)))?;
        shape.push(d);
    }
    Ok((shape, count))
}

/// Bytes per element in `raw_data` for a supported type.
fn raw_size(code: i32) -> Option<usize> {
    use data_type::*;
    Some(match code {
        UINT8 | INT8 | BOOL => 1,
        UINT16 | INT16 | FLOAT16 | BFLOAT16 => 2,
        FLOAT | INT32 | UINT32 => 4,
        INT64 | DOUBLE | UINT64 => 8,
        _ => return None,
    })
}

/// Decodes one little-endian element of `code` from `b` (whose length is
/// the type's raw size) as `f64`, for float types.
fn raw_float(code: i32, b: &[u8]) -> f64 {
    match code {
        data_type::FLOAT => f32::from_le_bytes(array(b)).into(),
        data_type::DOUBLE => f64::from_le_bytes(array(b)),
        data_type::FLOAT16 => half::f16::from_le_bytes(array(b)).to_f64(),
        _ => half::bf16::from_le_bytes(array(b)).to_f64(),
    }
}

/// Decodes one little-endian element of integer type `code` from `b`; a
/// `uint64` above `i64::MAX` is `None`.
fn raw_int(code: i32, b: &[u8]) -> Option<i64> {
    Some(match code {
        data_type::UINT8 => i64::from(u8::from_le_bytes(array(b))),
        data_type::INT8 => i64::from(i8::from_le_bytes(array(b))),
        data_type::UINT16 => i64::from(u16::from_le_bytes(array(b))),
        data_type::INT16 => i64::from(i16::from_le_bytes(array(b))),
        data_type::INT32 => i64::from(i32::from_le_bytes(array(b))),
        data_type::UINT32 => i64::from(u32::from_le_bytes(array(b))),
        data_type::UINT64 => i64::try_from(u64::from_le_bytes(array(b))).ok()?,
        _ => i64::from_le_bytes(array(b)),
    })
}

/// The first `N` bytes of `b` as an array (zero-filled if `b` is shorter,
/// which the callers' `chunks_exact` never lets happen).
fn array<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    let n = b.len().min(N);
    a[..n].copy_from_slice(&b[..n]);
    a
}

/// Converts a tensor proto to a constant. `external` is the tensor's data
/// when it lives in an external file (already range-checked by the reader);
/// otherwise the data comes from `raw_data` or the typed fields.
pub fn decode_tensor<T: Element>(t: &TensorProto, external: Option<&[u8]>) -> Result<Constant<T>> {
    let bad = |message: String| OnnxError::TensorData {
        tensor: t.name.clone(),
        message,
    };
    let (shape, count) = proto_shape(t)?;
    let code = t.data_type;
    let size = raw_size(code).ok_or_else(|| {
        bad(format!(
            "element type {} is not supported",
            data_type::name(code)
        ))
    })?;
    let raw: Option<&[u8]> = match external {
        Some(bytes) => Some(bytes),
        None if !t.raw_data.is_empty() => Some(&t.raw_data),
        None => None,
    };
    if let Some(raw) = raw {
        let want = count
            .checked_mul(size)
            .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
        if raw.len() != want {
            return Err(bad(format!(
                "{} data bytes for shape {shape:?} of {} (needs {want})",
                raw.len(),
                data_type::name(code)
            )));
        }
        let chunks = raw.chunks_exact(size);
        return if data_type::is_float(code) {
            let data: Vec<T> = chunks
                .map(|b| T::from_f64_lossy(raw_float(code, b)))
                .collect();
            float_constant(t, shape, data)
        } else if code == data_type::BOOL {
            let data = chunks.map(|b| b.first().is_some_and(|&v| v != 0)).collect();
            Ok(Constant::Bool(Arc::new(Dense::new(shape, data))))
        } else {
            let data = chunks
                .map(|b| raw_int(code, b))
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| bad("a uint64 value does not fit in int64".into()))?;
            Ok(Constant::Int(Arc::new(Dense::new(shape, data))))
        };
    }
    let typed_len = |len: usize| -> Result<()> {
        if len == count {
            Ok(())
        } else {
            Err(bad(format!(
                "{len} data values for shape {shape:?} ({count} elements) of {}",
                data_type::name(code)
            )))
        }
    };
    use data_type::*;
    match code {
        FLOAT => {
            typed_len(t.float_data.len())?;
            let data = t
                .float_data
                .iter()
                .map(|&v| T::from_f64_lossy(v.into()))
                .collect();
            float_constant(t, shape, data)
        }
        DOUBLE => {
            typed_len(t.double_data.len())?;
            let data = t
                .double_data
                .iter()
                .map(|&v| T::from_f64_lossy(v))
                .collect();
            float_constant(t, shape, data)
        }
        FLOAT16 | BFLOAT16 => {
            typed_len(t.int32_data.len())?;
            let data = t
                .int32_data
                .iter()
                .map(|&v| {
                    // The 16 bits are stored in the low half of each int32.
                    let bits = (v & 0xffff) as u16;
                    let f = if code == FLOAT16 {
                        half::f16::from_bits(bits).to_f64()
                    } else {
                        half::bf16::from_bits(bits).to_f64()
                    };
                    T::from_f64_lossy(f)
                })
                .collect();
            float_constant(t, shape, data)
        }
        INT64 => {
            typed_len(t.int64_data.len())?;
            Ok(Constant::Int(Arc::new(Dense::new(
                shape,
                t.int64_data.clone(),
            ))))
        }
        BOOL => {
            typed_len(t.int32_data.len())?;
            let data = t.int32_data.iter().map(|&v| v != 0).collect();
            Ok(Constant::Bool(Arc::new(Dense::new(shape, data))))
        }
        UINT32 | UINT64 => {
            typed_len(t.uint64_data.len())?;
            let data = t
                .uint64_data
                .iter()
                .map(|&v| i64::try_from(v).ok())
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| bad("a uint64 value does not fit in int64".into()))?;
            Ok(Constant::Int(Arc::new(Dense::new(shape, data))))
        }
        _ => {
            // INT32 and the smaller integer types.
            typed_len(t.int32_data.len())?;
            let data = t.int32_data.iter().map(|&v| i64::from(v)).collect();
            Ok(Constant::Int(Arc::new(Dense::new(shape, data))))
        }
    }
}

fn float_constant<T: Element>(
    t: &TensorProto,
    shape: Vec<usize>,
    data: Vec<T>,
) -> Result<Constant<T>> {
    Tensor::from_vec(shape, data)
        .map(|x| Constant::Float(Arc::new(x)))
        .map_err(|e| OnnxError::TensorData {
            tensor: t.name.clone(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(code: i32, dims: &[i64]) -> TensorProto {
        TensorProto {
            name: "t".into(),
            data_type: code,
            dims: dims.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn raw_float32_little_endian() {
        let mut t = proto(data_type::FLOAT, &[2]);
        let mut raw = 1.5f32.to_le_bytes().to_vec();
        raw.extend((-2.0f32).to_le_bytes());
        t.raw_data = raw.into();
        match decode_tensor::<f64>(&t, None).unwrap() {
            Constant::Float(x) => {
                assert_eq!(x.shape(), &[2]);
                assert_eq!(x.data(), &[1.5, -2.0]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn typed_fields_and_half_types() {
        let mut t = proto(data_type::FLOAT16, &[2]);
        t.int32_data = vec![
            i32::from(half::f16::from_f32(0.5).to_bits()),
            i32::from(half::f16::from_f32(-3.0).to_bits()),
        ];
        assert_eq!(
            decode_tensor::<f32>(&t, None).unwrap().to_f64(),
            vec![0.5, -3.0]
        );

        let mut t = proto(data_type::BFLOAT16, &[1]);
        t.raw_data = half::bf16::from_f32(2.0).to_le_bytes().to_vec().into();
        assert_eq!(decode_tensor::<f32>(&t, None).unwrap().to_f64(), vec![2.0]);

        let mut t = proto(data_type::DOUBLE, &[]);
        t.double_data = vec![0.1];
        // Rounded to f32 when T is f32.
        assert_eq!(
            decode_tensor::<f32>(&t, None).unwrap().to_f64(),
            vec![f64::from(0.1f32)]
        );
    }

    #[test]
    fn integers_and_bools() {
        let mut t = proto(data_type::INT64, &[3]);
        t.int64_data = vec![1, -1, i64::MAX];
        let c = decode_tensor::<f32>(&t, None).unwrap();
        assert_eq!(c.ints(), Some(&[1, -1, i64::MAX][..]));

        let mut t = proto(data_type::INT32, &[2]);
        t.raw_data = [(-7i32).to_le_bytes(), 9i32.to_le_bytes()].concat().into();
        assert_eq!(
            decode_tensor::<f32>(&t, None).unwrap().ints(),
            Some(&[-7, 9][..])
        );

        let mut t = proto(data_type::BOOL, &[3]);
        t.raw_data = vec![0u8, 1, 2].into();
        match decode_tensor::<f32>(&t, None).unwrap() {
            Constant::Bool(b) => assert_eq!(b.data, vec![false, true, true]),
            other => panic!("{other:?}"),
        }

        let mut t = proto(data_type::UINT64, &[1]);
        t.uint64_data = vec![u64::MAX];
        assert!(decode_tensor::<f32>(&t, None).is_err());
    }

    #[test]
    fn external_bytes_take_precedence() {
        let t = proto(data_type::FLOAT, &[1]);
        let ext = 4.0f32.to_le_bytes();
        assert_eq!(
            decode_tensor::<f32>(&t, Some(&ext)).unwrap().to_f64(),
            vec![4.0]
        );
    }

    #[test]
    fn length_and_shape_errors() {
        let mut t = proto(data_type::FLOAT, &[3]);
        t.raw_data = vec![0u8; 8].into();
        let e = decode_tensor::<f32>(&t, None).unwrap_err().to_string();
        assert!(e.contains("8 data bytes"), "{e}");

        let mut t = proto(data_type::FLOAT, &[2]);
        t.float_data = vec![1.0];
        assert!(decode_tensor::<f32>(&t, None).is_err());

        let t = proto(data_type::FLOAT, &[-1]);
        assert!(decode_tensor::<f32>(&t, None).is_err());

        let t = proto(data_type::FLOAT, &[i64::MAX, i64::MAX]);
        assert!(decode_tensor::<f32>(&t, None).is_err());

        let t = proto(8, &[1]); // string
        let e = decode_tensor::<f32>(&t, None).unwrap_err().to_string();
        assert!(e.contains("string"), "{e}");

        // An empty tensor needs no data.
        let t = proto(data_type::FLOAT, &[0, 5]);
        assert_eq!(decode_tensor::<f32>(&t, None).unwrap().shape(), &[0, 5]);
    }
}
