//! The N-d tensor: a shape and a row-major buffer.

use crate::element::Element;
use crate::error::{Result, TensorError};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// A dense, row-major, N-dimensional array.
#[derive(Clone, PartialEq)]
pub struct Tensor<T> {
    shape: Vec<usize>,
    data: Vec<T>,
}

/// Elements from which [`Tensor::par_clone`], [`Tensor::map`] and
/// [`Tensor::zip_map`] sweep on all threads: a residual sum's gradient
/// copy (3.2 MB on ResNet-50's first stage, 22 MB a pass in all) took
/// about 2% of a guided-backprop call on one thread while the other
/// waited.
const PAR_MIN: usize = 1 << 16;
/// Elements per task of those sweeps.
const PAR_CHUNK: usize = 1 << 14;

/// `out[i] = f([src[i] for src in srcs])`: writes every element of `out`
/// from the same-indexed elements of `srcs`, on all threads when `out`
/// holds [`PAR_MIN`] elements or more. Each element depends on its own
/// inputs only, so the result is the same whatever the thread count.
fn sweep<T: Element, const K: usize>(
    out: &mut [MaybeUninit<T>],
    srcs: [&[T]; K],
    f: impl Fn([T; K]) -> T + Sync + Send,
) {
    let run = |o: &mut [MaybeUninit<T>], at: usize| {
        // Each source cut to this run first, so that the loop below has no
        // bounds to check and vectorizes.
        let src: [&[T]; K] = std::array::from_fn(|k| &srcs[k][at..at + o.len()]);
        for (i, o) in o.iter_mut().enumerate() {
            o.write(f(std::array::from_fn(|k| src[k][i])));
        }
    };
    if out.len() < PAR_MIN {
        run(out, 0);
    } else {
        out.par_chunks_mut(PAR_CHUNK)
            .enumerate()
            .for_each(|(c, o)| run(o, c * PAR_CHUNK));
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self.data.len().min(8);
        f.debug_struct("Tensor")
            .field("shape", &self.shape)
            .field("data[..8]", &&self.data[..shown])
            .finish()
    }
}

/// The widest [`Element`] in bytes (`f64`): [`checked_numel`] bounds a
/// buffer's size in bytes by it, so that one bound holds for every element
/// type.
pub const MAX_ELEMENT_BYTES: usize = 8;

/// The number of elements of `shape`, with checked arithmetic: a
/// [`TensorError::TooLarge`] naming `op` and the shape when the product of
/// its dimensions overflows `usize`, or when a buffer of as many elements
/// of the widest element type ([`MAX_ELEMENT_BYTES`]) would exceed
/// `isize::MAX` bytes (Rust's limit on one allocation).
///
/// A zero dimension makes the count 0, but the product of the other
/// dimensions is checked all the same: then every partial product of a
/// valid shape's dimensions (a stride, a plane, a row count) fits too, and
/// kernels may compute them unchecked.
pub fn checked_numel(shape: &[usize], op: &'static str) -> Result<usize> {
    let limit = isize::MAX as usize / MAX_ELEMENT_BYTES;
    let too_large = || TensorError::TooLarge {
        op,
        shape: shape.to_vec(),
    };
    let nonzero = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= limit)
        .ok_or_else(too_large)?;
    Ok(if shape.contains(&0) { 0 } else { nonzero })
}

impl<T: Element> Tensor<T> {
    /// Wraps a buffer; its length must be the product of `shape`
    /// ([`TensorError::LengthMismatch`] if not, [`TensorError::TooLarge`]
    /// if that product overflows: see [`checked_numel`]).
    pub fn from_vec(shape: impl Into<Vec<usize>>, data: Vec<T>) -> Result<Self> {
        let shape = shape.into();
        let expected = checked_numel(&shape, "Tensor::from_vec")?;
        if expected != data.len() {
            return Err(TensorError::LengthMismatch {
                op: "Tensor::from_vec",
                shape,
                expected,
                found: data.len(),
            });
        }
        Ok(Self { shape, data })
    }

    /// A tensor filled with `value`, for shapes already known to be valid
    /// (derived from existing tensors or from checked geometry). A shape
    /// that comes from input goes through [`Tensor::try_full`].
    ///
    /// # Panics
    /// If the shape's element count overflows ([`checked_numel`]): it never
    /// makes a tensor of the wrong length.
    pub fn full(shape: impl Into<Vec<usize>>, value: T) -> Self {
        let shape = shape.into();
        match checked_numel(&shape, "Tensor::full") {
            Ok(n) => Self {
                shape,
                data: vec![value; n],
            },
            Err(e) => panic!("{e}"),
        }
    }

    /// A tensor filled with `value`, or [`TensorError::TooLarge`] naming
    /// the shape when its element count overflows ([`checked_numel`]) or
    /// the buffer cannot be allocated.
    pub fn try_full(shape: impl Into<Vec<usize>>, value: T) -> Result<Self> {
        Self::try_full_for(shape.into(), value, "Tensor::try_full")
    }

    /// A tensor of zeros, or [`TensorError::TooLarge`] as
    /// [`Tensor::try_full`].
    pub fn try_zeros(shape: impl Into<Vec<usize>>) -> Result<Self> {
        Self::try_full_for(shape.into(), T::zero(), "Tensor::try_zeros")
    }

    /// A tensor of ones, or [`TensorError::TooLarge`] as
    /// [`Tensor::try_full`].
    pub fn try_ones(shape: impl Into<Vec<usize>>) -> Result<Self> {
        Self::try_full_for(shape.into(), T::one(), "Tensor::try_ones")
    }

    /// [`Tensor::try_full`] with the error naming `op`: for kernels whose
    /// output shape comes from their arguments.
    pub fn try_full_for(shape: Vec<usize>, value: T, op: &'static str) -> Result<Self> {
        let len = checked_numel(&shape, op)?;
        let mut data: Vec<T> = Vec::new();
        data.try_reserve_exact(len)
            .map_err(|_| TensorError::TooLarge {
                op,
                shape: shape.clone(),
            })?;
        data.resize(len, value);
        Ok(Self { shape, data })
    }

    /// A tensor of `shape` whose elements `write` writes, every one, into
    /// uninitialised memory: for kernels that write their whole output, so
    /// that it is not zero-filled first (a second sweep over memory that
    /// cost 3-10% of a convolution). An error of `write` is returned, and
    /// the buffer dropped unread.
    ///
    /// In this crate's unit tests the buffer starts as NaN instead, so that
    /// an element a kernel fails to write shows in the results.
    ///
    /// A shape whose element count overflows, or a buffer that cannot be
    /// allocated, is [`TensorError::TooLarge`] (named `write_whole`; the
    /// kernels check their output shapes under their own names first),
    /// before `write` runs.
    ///
    /// # Safety
    /// When `write` returns `Ok`, it has written every element.
    pub(crate) unsafe fn write_whole(
        shape: impl Into<Vec<usize>>,
        write: impl FnOnce(&mut [MaybeUninit<T>]) -> Result<()>,
    ) -> Result<Self> {
        let shape = shape.into();
        let op = "write_whole";
        let len = checked_numel(&shape, op)?;
        let mut data: Vec<T> = Vec::new();
        data.try_reserve_exact(len)
            .map_err(|_| TensorError::TooLarge {
                op,
                shape: shape.clone(),
            })?;
        let spare = &mut data.spare_capacity_mut()[..len];
        #[cfg(test)]
        spare.fill(MaybeUninit::new(T::nan()));
        write(spare)?;
        // SAFETY: `write` returned Ok, so it wrote all `len` elements (the
        // caller's contract).
        unsafe { data.set_len(len) };
        Ok(Self { shape, data })
    }

    /// A copy, as [`Clone::clone`], made on all threads when the tensor is
    /// large: for copies on the hot path (a residual sum's gradient goes
    /// to both its terms).
    pub fn par_clone(&self) -> Self {
        self.map(|v| v)
    }

    /// A tensor of zeros.
    pub fn zeros(shape: impl Into<Vec<usize>>) -> Self {
        Self::full(shape, T::zero())
    }

    /// A tensor of ones.
    pub fn ones(shape: impl Into<Vec<usize>>) -> Self {
        Self::full(shape, T::one())
    }

    /// A zero-dimensional tensor holding one value.
    pub fn scalar(value: T) -> Self {
        Self {
            shape: vec![],
            data: vec![value],
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The row-major buffer.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The row-major buffer, mutable.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Takes the buffer out.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }

    /// The same elements under another shape with as many elements
    /// ([`TensorError::TooLarge`] if the new shape's count overflows).
    pub fn reshape(mut self, shape: impl Into<Vec<usize>>) -> Result<Self> {
        let shape = shape.into();
        if checked_numel(&shape, "reshape")? != self.data.len() {
            return Err(TensorError::ShapeMismatch {
                op: "reshape",
                left: self.shape,
                right: shape,
            });
        }
        self.shape = shape;
        Ok(self)
    }

    /// The four dimensions of an N x C x H x W tensor.
    pub fn dims4(&self, op: &'static str) -> Result<[usize; 4]> {
        match self.shape[..] {
            [n, c, h, w] => Ok([n, c, h, w]),
            _ => Err(TensorError::Rank {
                op,
                expected: 4,
                shape: self.shape.clone(),
            }),
        }
    }

    /// The two dimensions of a matrix.
    pub fn dims2(&self, op: &'static str) -> Result<[usize; 2]> {
        match self.shape[..] {
            [r, c] => Ok([r, c]),
            _ => Err(TensorError::Rank {
                op,
                expected: 2,
                shape: self.shape.clone(),
            }),
        }
    }

    /// Applies `f` to every element.
    pub fn map(&self, f: impl Fn(T) -> T + Sync + Send) -> Self {
        let write = |out: &mut [MaybeUninit<T>]| {
            sweep(out, [&self.data], |[v]| f(v));
            Ok(())
        };
        // SAFETY: `sweep` writes every element of `out`.
        let mapped = unsafe { Self::write_whole(self.shape.clone(), write) };
        mapped.expect("a map does not fail")
    }

    /// Combines two tensors of the same shape element by element.
    pub fn zip_map(
        &self,
        other: &Self,
        op: &'static str,
        f: impl Fn(T, T) -> T + Sync + Send,
    ) -> Result<Self> {
        self.expect_same_shape(other, op)?;
        let write = |out: &mut [MaybeUninit<T>]| {
            sweep(out, [&self.data, &other.data], |[a, b]| f(a, b));
            Ok(())
        };
        // SAFETY: `sweep` writes every element of `out` (both inputs have
        // its length: one shape).
        unsafe { Self::write_whole(self.shape.clone(), write) }
    }

    /// An error unless `other` has the same shape.
    pub fn expect_same_shape(&self, other: &Self, op: &'static str) -> Result<()> {
        if self.shape != other.shape {
            return Err(TensorError::ShapeMismatch {
                op,
                left: self.shape.clone(),
                right: other.shape.clone(),
            });
        }
        Ok(())
    }

    /// Converts every element to another element type.
    pub fn cast<U: Element>(&self) -> Tensor<U> {
        Tensor {
            shape: self.shape.clone(),
            data: self
                .data
                .iter()
                .map(|&v| U::from_f64_lossy(v.to_f64_lossless()))
                .collect(),
        }
    }

    /// The largest absolute value (0 for an empty tensor; NaN if any value
    /// is NaN).
    pub fn max_abs(&self) -> T {
        self.data
            .iter()
            .fold(T::zero(), |m, &v| max_or_nan(m, v.abs()))
    }

    /// The largest absolute difference to another tensor of the same shape
    /// (NaN if any difference is NaN, so that a comparison against a
    /// tolerance fails).
    pub fn max_abs_diff(&self, other: &Self) -> Result<T> {
        self.expect_same_shape(other, "max_abs_diff")?;
        Ok(self
            .data
            .iter()
            .zip(&other.data)
            .fold(T::zero(), |m, (&a, &b)| max_or_nan(m, (a - b).abs())))
    }

    /// Whether any element is NaN or infinite.
    pub fn has_non_finite(&self) -> bool {
        self.data.iter().any(|v| !v.is_finite())
    }

    /// Item `i` along the first axis, as a tensor of the remaining dimensions.
    pub fn select0(&self, i: usize) -> Result<Self> {
        let (&first, rest) = self.shape.split_first().ok_or(TensorError::Rank {
            op: "select0",
            expected: 1,
            shape: self.shape.clone(),
        })?;
        if i >= first {
            return Err(TensorError::Axis {
                op: "select0",
                axis: i,
                shape: self.shape.clone(),
            });
        }
        // A part of a valid shape: its product fits (`checked_numel`).
        let inner: usize = rest.iter().product();
        Ok(Self {
            shape: rest.to_vec(),
            data: self.data[i * inner..(i + 1) * inner].to_vec(),
        })
    }

    /// Stacks tensors of one shape along a new first axis.
    pub fn stack(items: &[Self]) -> Result<Self> {
        let first = items.first().ok_or(TensorError::InvalidParameter {
            op: "stack",
            message: "no tensor to stack".into(),
        })?;
        let mut shape = vec![items.len()];
        shape.extend_from_slice(&first.shape);
        let len = checked_numel(&shape, "stack")?;
        let mut data = Vec::new();
        data.try_reserve_exact(len)
            .map_err(|_| TensorError::TooLarge {
                op: "stack",
                shape: shape.clone(),
            })?;
        for t in items {
            first.expect_same_shape(t, "stack")?;
            data.extend_from_slice(&t.data);
        }
        Ok(Self { shape, data })
    }

    /// Concatenates tensors along the first axis (the other dimensions must agree).
    pub fn concat0(items: &[Self]) -> Result<Self> {
        let first = items.first().ok_or(TensorError::InvalidParameter {
            op: "concat0",
            message: "no tensor to concatenate".into(),
        })?;
        let op = "concat0";
        let mut rows = 0usize;
        for t in items {
            if t.shape.is_empty() || t.shape[1..] != first.shape[1..] {
                return Err(TensorError::ShapeMismatch {
                    op,
                    left: first.shape.clone(),
                    right: t.shape.clone(),
                });
            }
            rows = rows
                .checked_add(t.shape[0])
                .ok_or_else(|| TensorError::TooLarge {
                    op,
                    shape: t.shape.clone(),
                })?;
        }
        let mut shape = first.shape.clone();
        shape[0] = rows;
        let len = checked_numel(&shape, op)?;
        let mut data = Vec::new();
        data.try_reserve_exact(len)
            .map_err(|_| TensorError::TooLarge {
                op,
                shape: shape.clone(),
            })?;
        for t in items {
            data.extend_from_slice(&t.data);
        }
        Ok(Self { shape, data })
    }
}

/// An error if any dimension of `shape` is zero.
pub fn check_nonzero(op: &'static str, shape: &[usize]) -> Result<()> {
    if shape.contains(&0) {
        return Err(TensorError::ZeroSized {
            op,
            shape: shape.to_vec(),
        });
    }
    Ok(())
}

/// `max(m, v)`, NaN when either is NaN (`Float::max` returns the other).
fn max_or_nan<T: Element>(m: T, v: T) -> T {
    if m.is_nan() || v.is_nan() {
        T::nan()
    } else {
        m.max(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The largest element count a shape may have: `isize::MAX` bytes of
    /// the widest element.
    const LIMIT: u128 = (isize::MAX as u128) / MAX_ELEMENT_BYTES as u128;

    /// The product of the non-zero dimensions, exactly.
    fn exact_nonzero_product(shape: &[usize]) -> u128 {
        shape
            .iter()
            .filter(|&&d| d != 0)
            .fold(1u128, |acc, &d| acc.saturating_mul(d as u128))
    }

    /// A dimension: mostly small, sometimes huge.
    fn dim() -> impl Strategy<Value = usize> {
        prop_oneof![
            4 => 0usize..5,
            1 => Just(1usize << 20),
            1 => Just(1usize << 31),
            1 => Just(1usize << 32),
            1 => Just(usize::MAX / 2),
            1 => Just(usize::MAX),
        ]
    }

    #[test]
    fn checked_numel_counts_and_names_the_overflow() {
        assert_eq!(checked_numel(&[2, 3, 4], "t"), Ok(24));
        assert_eq!(checked_numel(&[], "t"), Ok(1));
        assert_eq!(checked_numel(&[5, 0], "t"), Ok(0));
        let limit = isize::MAX as usize / MAX_ELEMENT_BYTES;
        assert_eq!(checked_numel(&[limit], "t"), Ok(limit));
        let e = checked_numel(&[limit + 1], "op").unwrap_err();
        assert_eq!(
            e,
            TensorError::TooLarge {
                op: "op",
                shape: vec![limit + 1]
            }
        );
        // 2^64 wraps to 0 in unchecked arithmetic.
        assert!(checked_numel(&[1 << 32, 1 << 32], "t").is_err());
        // No element, but dimensions whose strides overflow.
        assert!(checked_numel(&[0, 1 << 32, 1 << 32], "t").is_err());
    }

    #[test]
    fn try_constructors_return_the_error_naming_the_shape() {
        let e = Tensor::<f32>::try_zeros([1 << 32, 1 << 32]).unwrap_err();
        assert_eq!(
            e,
            TensorError::TooLarge {
                op: "Tensor::try_zeros",
                shape: vec![1 << 32, 1 << 32]
            }
        );
        assert!(e.to_string().contains("[4294967296, 4294967296]"));
        assert!(Tensor::<f64>::try_ones([usize::MAX, 2]).is_err());
        // Below the count limit but beyond any allocation: an error, not an abort.
        assert!(Tensor::<f64>::try_full([1 << 30, 1 << 29], 1.0).is_err());
        let t = Tensor::<f64>::try_full([2, 3], 1.5).unwrap();
        assert_eq!((t.shape(), t.data()), (&[2, 3][..], &[1.5; 6][..]));
        assert_eq!(Tensor::<f32>::try_zeros([3]).unwrap().data(), &[0.0; 3]);
        assert_eq!(Tensor::<f32>::try_ones([0, 4]).unwrap().len(), 0);
    }

    #[test]
    #[should_panic(expected = "too large")]
    fn infallible_constructors_panic_rather_than_wrap() {
        let _ = Tensor::<f32>::zeros([1 << 32, 1 << 32]);
    }

    #[test]
    fn from_vec_and_reshape_reject_overflowing_shapes() {
        // The wrapped product, 0, would match the empty buffer.
        let e = Tensor::<f32>::from_vec([1 << 32, 1 << 32], vec![]).unwrap_err();
        assert!(matches!(
            e,
            TensorError::TooLarge {
                op: "Tensor::from_vec",
                ..
            }
        ));
        // The wrapped product, 2, would match this one.
        let e = Tensor::<f32>::from_vec([usize::MAX / 2 + 2, 2], vec![0.0; 2]).unwrap_err();
        assert!(matches!(e, TensorError::TooLarge { .. }));
        let t = Tensor::<f32>::from_vec([2], vec![1.0, 2.0]).unwrap();
        let e = t.clone().reshape([usize::MAX / 2 + 2, 2]).unwrap_err();
        assert!(matches!(e, TensorError::TooLarge { op: "reshape", .. }));
        let e = Tensor::<f32>::zeros([0]).reshape([0, 1 << 32, 1 << 32]);
        assert!(matches!(e, Err(TensorError::TooLarge { .. })));
        assert_eq!(t.reshape([1, 2, 1]).unwrap().shape(), &[1, 2, 1]);
    }

    #[test]
    fn concat0_counts_rows_with_checked_arithmetic() {
        // 3 x 2^59 rows: more than the 2^60 - 1 a shape may count.
        let a = Tensor::<f32>::zeros([1 << 59, 0]);
        let e = Tensor::concat0(&[a.clone(), a.clone(), a]);
        assert!(matches!(
            e,
            Err(TensorError::TooLarge { op: "concat0", .. })
        ));
        let b = Tensor::<f32>::zeros([1 << 31, 0]);
        let e = Tensor::stack(&[b.clone(), b.clone(), b.clone(), b]);
        // 4 x 2^31 rows of nothing: fine; as many again would not be.
        assert_eq!(e.unwrap().shape(), &[4, 1 << 31, 0]);
    }

    proptest! {
        /// Any shape, however large: the fallible constructors, `from_vec`
        /// and `reshape` either succeed with the product of the shape as
        /// length or return `TooLarge`, exactly when that product (or the
        /// product of the non-zero dimensions) exceeds the limit. Successes
        /// are kept small by the dimensions drawn (huge ones overflow).
        #[test]
        fn shapes_either_fit_or_are_errors(shape in prop::collection::vec(dim(), 0..5)) {
            let fits = exact_nonzero_product(&shape) <= LIMIT;
            let small = fits && exact_nonzero_product(&shape) <= 1 << 20;
            let want = shape.iter().map(|&d| d as u128).product::<u128>();
            match checked_numel(&shape, "t") {
                Ok(n) => prop_assert!(fits && n as u128 == want),
                Err(e) => prop_assert!(!fits && matches!(e, TensorError::TooLarge { .. }), "{}", e),
            }
            if small || !fits {
                match Tensor::<f32>::try_zeros(shape.clone()) {
                    Ok(t) => prop_assert!(fits && t.len() as u128 == want && t.shape() == &shape[..]),
                    Err(e) => prop_assert!(!fits && matches!(e, TensorError::TooLarge { .. }), "{}", e),
                }
            }
            let empty = Tensor::<f32>::from_vec(shape.clone(), vec![]);
            prop_assert_eq!(empty.is_ok(), fits && want == 0);
            let one = Tensor::<f32>::scalar(1.0).reshape(shape.clone());
            prop_assert_eq!(one.is_ok(), fits && want == 1);
        }
    }

    /// Above and below the size from which they run on all threads (with a
    /// partial last chunk), `par_clone`, `map` and `zip_map` give every
    /// element (the buffers start as NaN in these tests).
    #[test]
    fn parallel_sweeps_write_every_element() {
        for len in [5, PAR_MIN + PAR_CHUNK / 2 + 3] {
            let a = Tensor::from_vec([len], (0..len).map(|i| i as f64).collect()).unwrap();
            let b = a.map(|v| 2.0 * v + 1.0);
            assert_eq!(a.par_clone(), a);
            assert!(b
                .data()
                .iter()
                .enumerate()
                .all(|(i, &v)| v == 2.0 * i as f64 + 1.0));
            let d = b.zip_map(&a, "test", |x, y| x - y).unwrap();
            assert!(d
                .data()
                .iter()
                .enumerate()
                .all(|(i, &v)| v == i as f64 + 1.0));
        }
        let short = Tensor::<f64>::zeros([3]);
        assert!(short
            .zip_map(&Tensor::zeros([4]), "test", |x, _| x)
            .is_err());
    }

    #[test]
    fn maxima_report_nan() {
        let a = Tensor::from_vec([3], vec![1.0f32, f32::NAN, -4.0]).unwrap();
        let b = Tensor::from_vec([3], vec![1.0f32, 2.0, -1.0]).unwrap();
        assert!(a.max_abs().is_nan() && a.max_abs_diff(&b).unwrap().is_nan());
        assert!(b.max_abs_diff(&a).unwrap().is_nan());
        assert_eq!(b.max_abs(), 2.0);
        let c = Tensor::from_vec([3], vec![1.5f32, 2.0, -3.0]).unwrap();
        assert_eq!(b.max_abs_diff(&c).unwrap(), 2.0);
    }

    #[test]
    fn from_vec_checks_length() {
        assert!(Tensor::<f32>::from_vec([2, 3], vec![0.0; 5]).is_err());
        let t = Tensor::<f32>::from_vec([2, 3], (0..6).map(|v| v as f32).collect()).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.select0(1).unwrap().data(), &[3.0, 4.0, 5.0]);
        assert!(t.select0(2).is_err());
    }

    #[test]
    fn reshape_keeps_elements() {
        let t = Tensor::<f64>::ones([2, 6]).reshape([3, 4]).unwrap();
        assert_eq!(t.shape(), &[3, 4]);
        assert!(Tensor::<f64>::ones([2, 6]).reshape([5]).is_err());
    }

    #[test]
    fn stack_and_concat() {
        let a = Tensor::<f32>::from_vec([1, 2], vec![1.0, 2.0]).unwrap();
        let b = Tensor::<f32>::from_vec([1, 2], vec![3.0, 4.0]).unwrap();
        let c = Tensor::concat0(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(c.shape(), &[2, 2]);
        assert_eq!(c.data(), &[1.0, 2.0, 3.0, 4.0]);
        let s = Tensor::stack(&[a, b]).unwrap();
        assert_eq!(s.shape(), &[2, 1, 2]);
    }
}
