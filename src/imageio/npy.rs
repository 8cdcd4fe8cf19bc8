//! Preprocessed model inputs as NumPy `.npy` files: read (float32 or
//! float64, `3 x H x W` or `1 x 3 x H x W`, C order) and written (float32,
//! `3 x H x W`), bit for bit.
//!
//! The `npyz` crate parses the header and reads the data. Before it runs,
//! the bytes are checked so that no input can make it allocate much or
//! overflow: the header's length is bounded (NumPy's own 10,000 bytes)
//! and within the file, its brackets nest at most 4 deep, and the shape is
//! read first with checked arithmetic; the data must then be exactly as
//! long as the shape and dtype say before anything its size is allocated.

use super::preprocess::MAX_NORMALISED;
use super::{ImageError, Result};
use crate::files::{read_regular, MAX_IMAGE_FILE_BYTES};
use npyz::{DType, NpyFile, Order, TypeChar, WriterBuilder};
use sightline_tensor::Tensor;
use std::path::Path;
use thiserror::Error;

/// Largest `.npy` header read: NumPy's default `max_header_size`.
pub const MAX_NPY_HEADER_BYTES: usize = 10_000;

/// Why a `.npy` file is not a preprocessed model input.
#[derive(Debug, Error, PartialEq)]
pub enum NpyError {
    /// The file does not start with `\x93NUMPY` and a version.
    #[error("not a .npy file (no \\x93NUMPY signature and version)")]
    NotNpy,
    /// The header cannot be read.
    #[error("unreadable .npy header: {0}")]
    Header(String),
    /// The values are not float32 or float64.
    #[error("dtype {0} is not float32 or float64 (<f4, >f4, <f8, >f8)")]
    DType(String),
    /// The data is in Fortran order.
    #[error("the data is in Fortran order; C order is read")]
    FortranOrder,
    /// The shape is not `3 x H x W` or `1 x 3 x H x W` with positive sides.
    #[error("shape {0:?} is not 3 x H x W or 1 x 3 x H x W (H, W positive)")]
    Shape(Vec<u64>),
    /// The file ends before the data the header declares.
    #[error("truncated: the header declares {expected} bytes of data, the file holds {found}")]
    Truncated {
        /// Bytes of data declared.
        expected: u64,
        /// Bytes of data present.
        found: u64,
    },
    /// The file holds more bytes than the header declares.
    #[error("{found} bytes of data where the header declares {expected}")]
    TrailingBytes {
        /// Bytes of data declared.
        expected: u64,
        /// Bytes of data present.
        found: u64,
    },
    /// A value is not finite, or too large for a model input.
    #[error("value {value} at flat index {index} is not finite or beyond +-{MAX_NORMALISED:e}")]
    Value {
        /// Its index in the data.
        index: usize,
        /// The value.
        value: f64,
    },
}

/// What a valid input header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NpyInputHeader {
    /// Width `W`.
    pub width: u32,
    /// Height `H`.
    pub height: u32,
    /// Bytes per value: 4 (float32) or 8 (float64).
    pub item_bytes: u8,
    /// Where the data starts.
    pub data_offset: usize,
}

/// The header text's place: (start, end) in the bytes.
fn header_text_range(bytes: &[u8]) -> std::result::Result<(usize, usize), NpyError> {
    if !bytes.starts_with(b"\x93NUMPY") || bytes.len() < 10 {
        return Err(NpyError::NotNpy);
    }
    let (start, len) = match bytes[6] {
        1 => (10, usize::from(u16::from_le_bytes([bytes[8], bytes[9]]))),
        2 | 3 => {
            let l = bytes.get(8..12).ok_or(NpyError::NotNpy)?;
            (12, u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)
        }
        v => return Err(NpyError::Header(format!("unknown format version {v}"))),
    };
    if len > MAX_NPY_HEADER_BYTES {
        return Err(NpyError::Header(format!(
            "{len} bytes of header, more than the {MAX_NPY_HEADER_BYTES} read"
        )));
    }
    let end = start + len;
    if end > bytes.len() {
        return Err(NpyError::Header(format!(
            "the header declares {len} bytes, the file ends before"
        )));
    }
    Ok((start, end))
}

/// The `shape` tuple of a header's text, read with checked arithmetic
/// before `npyz` multiplies it out; brackets deeper than 4 are refused.
fn shape_of_text(text: &str) -> std::result::Result<Vec<u64>, NpyError> {
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                if depth > 4 {
                    return Err(NpyError::Header("brackets nested too deep".into()));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let missing = || NpyError::Header("no 'shape' tuple".into());
    let after = text.find("'shape'").ok_or_else(missing)? + "'shape'".len();
    let rest = text[after..]
        .trim_start()
        .strip_prefix(':')
        .ok_or_else(missing)?;
    let rest = rest.trim_start();
    let close = match rest.chars().next() {
        Some('(') => ')',
        Some('[') => ']',
        _ => return Err(missing()),
    };
    let end = rest.find(close).ok_or_else(missing)?;
    let mut shape = Vec::new();
    for part in rest[1..end]
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let digits = part.strip_suffix('L').unwrap_or(part);
        let d: u64 = digits
            .parse()
            .map_err(|_| NpyError::Header(format!("shape entry `{part}` is not a size")))?;
        shape.push(d);
    }
    Ok(shape)
}

/// `(H, W)` of an input shape: `[3, H, W]` or `[1, 3, H, W]`, sides
/// positive and within u32.
fn input_sides(shape: &[u64]) -> std::result::Result<(u32, u32), NpyError> {
    let bad = || NpyError::Shape(shape.to_vec());
    let (h, w) = match *shape {
        [3, h, w] | [1, 3, h, w] => (h, w),
        _ => return Err(bad()),
    };
    let h = u32::try_from(h).map_err(|_| bad())?;
    let w = u32::try_from(w).map_err(|_| bad())?;
    if h == 0 || w == 0 {
        return Err(bad());
    }
    Ok((h, w))
}

/// Parses and checks a `.npy` input's header (without reading the data):
/// the dtype, order and shape of a preprocessed input and a data length
/// that matches them exactly.
pub fn npy_input_header(bytes: &[u8]) -> std::result::Result<NpyInputHeader, NpyError> {
    let (start, end) = header_text_range(bytes)?;
    let text = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| NpyError::Header("the header is not text".into()))?;
    let shape = shape_of_text(text)?;
    let (h, w) = input_sides(&shape)?;
    // Now that the shape cannot overflow, npyz parses the whole header.
    let npy = NpyFile::new(bytes).map_err(|e| NpyError::Header(e.to_string()))?;
    if npy.shape() != shape.as_slice() {
        return Err(NpyError::Header(format!(
            "ambiguous shape: {:?} or {:?}",
            npy.shape(),
            shape
        )));
    }
    let item_bytes = match npy.dtype() {
        DType::Plain(t) if t.type_char() == TypeChar::Float && matches!(t.size_field(), 4 | 8) => {
            t.size_field() as u8
        }
        DType::Plain(t) => return Err(NpyError::DType(t.to_string())),
        other => return Err(NpyError::DType(other.descr())),
    };
    if npy.order() != Order::C {
        return Err(NpyError::FortranOrder);
    }
    // 3 * H * W * 8 < 2^67 does not fit u64 in general: use u128.
    let expected = 3 * u128::from(h) * u128::from(w) * u128::from(item_bytes);
    let found = (bytes.len() - end) as u128;
    let clamp = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
    if found < expected {
        return Err(NpyError::Truncated {
            expected: clamp(expected),
            found: clamp(found),
        });
    }
    if found > expected {
        return Err(NpyError::TrailingBytes {
            expected: clamp(expected),
            found: clamp(found),
        });
    }
    Ok(NpyInputHeader {
        width: w,
        height: h,
        item_bytes,
        data_offset: end,
    })
}

/// The model input (`1 x 3 x H x W`, float32) that `.npy` bytes hold:
/// float64 values are rounded to float32; every value must be finite and
/// within `+-MAX_NORMALISED`.
pub fn npy_input_from_bytes(bytes: &[u8]) -> std::result::Result<Tensor<f32>, NpyError> {
    let header = npy_input_header(bytes)?;
    let (h, w) = (header.height as usize, header.width as usize);
    let n = 3 * h * w;
    let npy = NpyFile::new(bytes).map_err(|e| NpyError::Header(e.to_string()))?;
    let mut data = Vec::with_capacity(n);
    let check = |index: usize, value: f64| {
        if value.is_finite() && value.abs() <= f64::from(MAX_NORMALISED) {
            Ok(())
        } else {
            Err(NpyError::Value { index, value })
        }
    };
    let io = |e: std::io::Error| NpyError::Header(e.to_string());
    let dtype = |e: npyz::DTypeError| NpyError::DType(e.to_string());
    if header.item_bytes == 4 {
        for (i, v) in npy.data::<f32>().map_err(dtype)?.enumerate() {
            let v = v.map_err(io)?;
            check(i, f64::from(v))?;
            data.push(v);
        }
    } else {
        for (i, v) in npy.data::<f64>().map_err(dtype)?.enumerate() {
            let v = v.map_err(io)?;
            check(i, v)?;
            data.push(v as f32);
        }
    }
    if data.len() != n {
        return Err(NpyError::Truncated {
            expected: n as u64,
            found: data.len() as u64,
        });
    }
    Tensor::from_vec([1, 3, h, w], data).map_err(|e| NpyError::Header(e.to_string()))
}

/// Reads a preprocessed model input from a `.npy` file (float32 or
/// float64, `3 x H x W` or `1 x 3 x H x W`, C order, as written by
/// [`write_npy_input`] or NumPy): `1 x 3 x H x W` float32. The file is a
/// regular file of at most [`MAX_IMAGE_FILE_BYTES`]; its header is checked
/// before the tensor is allocated.
pub fn read_npy_input(path: &Path) -> Result<Tensor<f32>> {
    if std::fs::symlink_metadata(path).is_err() {
        return Err(ImageError::NotFound {
            path: path.to_path_buf(),
        });
    }
    let bytes = read_regular(path, "input tensor", MAX_IMAGE_FILE_BYTES)?;
    npy_input_from_bytes(&bytes).map_err(|source| ImageError::Npy {
        path: path.to_path_buf(),
        source,
    })
}

/// The `.npy` bytes of a model input (`1 x 3 x H x W` or `3 x H x W`):
/// float32 little-endian, shape `3 x H x W`, C order. Non-finite values
/// are refused (they could not be read back).
pub fn encode_npy_input(tensor: &Tensor<f32>) -> Result<Vec<u8>> {
    let (h, w) = match *tensor.shape() {
        [1, 3, h, w] | [3, h, w] => (h, w),
        ref s => {
            return Err(ImageError::Invalid(format!(
                "a model input is 3 x H x W or 1 x 3 x H x W, not {s:?}"
            )))
        }
    };
    if let Some((i, v)) = tensor
        .data()
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && v.abs() <= MAX_NORMALISED))
    {
        return Err(ImageError::Invalid(format!(
            "value {v} at flat index {i} is not finite or beyond +-{MAX_NORMALISED:e}"
        )));
    }
    let invalid = |e: std::io::Error| ImageError::Invalid(format!("cannot encode .npy: {e}"));
    let dtype = DType::Plain(
        "<f4"
            .parse()
            .map_err(|e| ImageError::Invalid(format!("{e}")))?,
    );
    let mut bytes = Vec::with_capacity(tensor.data().len() * 4 + 128);
    let mut writer = npyz::WriteOptions::new()
        .dtype(dtype)
        .shape(&[3, h as u64, w as u64])
        .writer(&mut bytes)
        .begin_nd()
        .map_err(invalid)?;
    writer
        .extend(tensor.data().iter().copied())
        .map_err(invalid)?;
    writer.finish().map_err(invalid)?;
    Ok(bytes)
}

/// Writes a model input as `.npy` ([`encode_npy_input`]), atomically (a
/// temporary file renamed): [`read_npy_input`] gives its bits back.
pub fn write_npy_input(path: &Path, tensor: &Tensor<f32>) -> Result<()> {
    let bytes = encode_npy_input(tensor)?;
    crate::render::write_atomic(path, &bytes).map_err(|e| ImageError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `.npy` bytes with a hand-written header (as NumPy pads it) and data.
    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h.as_bytes());
        out.extend(data);
        out
    }

    fn values(n: usize) -> Vec<f32> {
        (0..n).map(|i| (i as f32 - 7.5) / 3.0).collect()
    }

    #[test]
    fn written_inputs_read_back_bit_for_bit() {
        let t = Tensor::from_vec([1, 3, 2, 5], values(30)).unwrap();
        let bytes = encode_npy_input(&t).unwrap();
        let header = npy_input_header(&bytes).unwrap();
        assert_eq!((header.width, header.height, header.item_bytes), (5, 2, 4));
        let text = std::str::from_utf8(&bytes[10..header.data_offset]).unwrap();
        assert!(text.contains("'descr': '<f4'"), "{text}");
        assert_eq!(shape_of_text(text).unwrap(), [3, 2, 5]);
        assert_eq!(header.data_offset % 64, 0, "{text}");
        let back = npy_input_from_bytes(&bytes).unwrap();
        assert_eq!(back.shape(), &[1, 3, 2, 5]);
        let bits = |t: &Tensor<f32>| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&t));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.input.npy");
        write_npy_input(&path, &t.clone().reshape([3, 2, 5]).unwrap()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(bits(&read_npy_input(&path).unwrap()), bits(&t));
    }

    #[test]
    fn numpy_layouts_are_read() {
        // float64, big-endian float32, 3 x H x W.
        let v: Vec<f64> = (0..12).map(|i| f64::from(i) * 0.1 - 0.3).collect();
        let data: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let bytes = npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 3, 2, 2), }",
            &data,
        );
        let t = npy_input_from_bytes(&bytes).unwrap();
        assert_eq!(t.shape(), &[1, 3, 2, 2]);
        let expect: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        assert_eq!(t.data(), expect.as_slice());

        let f: Vec<f32> = values(12);
        let data: Vec<u8> = f.iter().flat_map(|x| x.to_be_bytes()).collect();
        let bytes = npy(
            "{'descr': '>f4', 'fortran_order': False, 'shape': (3, 1, 4), }",
            &data,
        );
        assert_eq!(npy_input_from_bytes(&bytes).unwrap().data(), f.as_slice());
    }

    #[test]
    fn bad_files_are_typed_errors() {
        let f32s = |n: usize| vec![0u8; 4 * n];
        let head = |descr: &str, order: &str, shape: &str| {
            format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}")
        };
        let case = |h: String, data: Vec<u8>| npy_input_from_bytes(&npy(&h, &data)).unwrap_err();
        assert_eq!(
            case(head("<i4", "False", "(3, 2, 2)"), f32s(12)),
            NpyError::DType("<i4".into())
        );
        assert_eq!(
            case(head("<f4", "True", "(3, 2, 2)"), f32s(12)),
            NpyError::FortranOrder
        );
        assert_eq!(
            case(head("<f4", "False", "(2, 2, 2)"), f32s(8)),
            NpyError::Shape(vec![2, 2, 2])
        );
        assert_eq!(
            case(head("<f4", "False", "(3, 0, 2)"), vec![]),
            NpyError::Shape(vec![3, 0, 2])
        );
        assert_eq!(
            case(head("<f4", "False", "(2, 3, 2, 2)"), f32s(24)),
            NpyError::Shape(vec![2, 3, 2, 2])
        );
        assert_eq!(
            case(head("<f4", "False", "(3, 2, 2)"), f32s(11)),
            NpyError::Truncated {
                expected: 48,
                found: 44
            }
        );
        assert_eq!(
            case(head("<f4", "False", "(3, 2, 2)"), f32s(13)),
            NpyError::TrailingBytes {
                expected: 48,
                found: 52
            }
        );
        // A shape whose product overflows u64 is refused before npyz
        // multiplies it out; a huge one is a truncation, never an allocation.
        let e = case(
            head("<f4", "False", "(3, 4294967296, 4294967296, 7)"),
            f32s(1),
        );
        assert!(matches!(e, NpyError::Shape(_)), "{e}");
        assert_eq!(
            case(head("<f8", "False", "(3, 4294967295, 4294967295)"), f32s(1)),
            NpyError::Truncated {
                expected: u64::MAX,
                found: 4
            }
        );
        let mut nan = f32s(12);
        nan[20..24].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(matches!(
            case(head("<f4", "False", "(3, 2, 2)"), nan),
            NpyError::Value { index: 5, .. }
        ));
        assert_eq!(npy_input_from_bytes(b"\x93NUMP"), Err(NpyError::NotNpy));
        assert_eq!(npy_input_from_bytes(b"PK\x03\x04"), Err(NpyError::NotNpy));
        // A header longer than the file, or than NumPy reads.
        let mut long = b"\x93NUMPY\x02\x00".to_vec();
        long.extend(4_000_000_000u32.to_le_bytes());
        assert!(matches!(
            npy_input_from_bytes(&long),
            Err(NpyError::Header(_))
        ));
        let mut short = npy(&head("<f4", "False", "(3, 2, 2)"), &f32s(12));
        short.truncate(40);
        assert!(matches!(
            npy_input_from_bytes(&short),
            Err(NpyError::Header(_))
        ));
        // Deep nesting and garbage.
        let deep = case(
            "{'shape': ((((((3,),),),),),), 'descr': '<f4'}".to_string(),
            vec![],
        );
        assert!(matches!(deep, NpyError::Header(_)), "{deep}");
        let junk = case(
            "{'descr': '<f4', 'shape': (3, 1, 1), 'fortran_order': Nope}".into(),
            f32s(3),
        );
        assert!(matches!(junk, NpyError::Header(_)), "{junk}");
    }

    #[test]
    fn wrong_tensors_are_not_written() {
        let t = Tensor::from_vec([2, 3, 1, 1], values(6)).unwrap();
        assert!(matches!(encode_npy_input(&t), Err(ImageError::Invalid(_))));
        let mut v = values(3);
        v[1] = f32::INFINITY;
        let t = Tensor::from_vec([3, 1, 1], v).unwrap();
        assert!(matches!(encode_npy_input(&t), Err(ImageError::Invalid(_))));
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/folder/x.npy");
        let t = Tensor::from_vec([3, 1, 1], values(3)).unwrap();
        assert!(matches!(
            write_npy_input(&missing, &t),
            Err(ImageError::Write { .. })
        ));
        assert!(matches!(
            read_npy_input(&dir.path().join("none.npy")),
            Err(ImageError::NotFound { .. })
        ));
    }
}
