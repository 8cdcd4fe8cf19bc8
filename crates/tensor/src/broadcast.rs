//! Numpy/ONNX multidirectional broadcasting: the broadcast shape of two
//! shapes, elementwise arithmetic on operands of broadcastable shapes,
//! [`expand`], and its adjoint [`reduce_to_shape`] (the backward of
//! broadcasting: a sum over the broadcast axes).
//!
//! Shapes are aligned at their last dimension; two dimensions fit when they
//! are equal or one of them is 1. The kernels view both operands through
//! strides (0 along a broadcast dimension), merge the dimensions that step
//! alike, and run along the last merged dimension with one of four inner
//! loops (both operands contiguous, or one or both fixed along the row), so
//! that a per-channel `[C, 1, 1]` against `[N, C, H, W]` is a scalar against
//! each contiguous `H * W` row.

use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::layout::{
    checked_numel, contiguous_strides, for_each_piece, for_each_segment, merge_dims, strided_copy,
    try_full, try_write, Walker,
};
use crate::reduce_axes::sum_lanes;
use crate::tensor::Tensor;
use std::mem::MaybeUninit;

/// An elementwise arithmetic operation on two broadcast operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b` (IEEE division: a zero divisor gives an infinity or NaN).
    Div,
}

impl BinaryOp {
    /// The operation's name, as errors give it.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }
}

/// The shape two shapes broadcast to (numpy/ONNX rules): aligned at the last
/// dimension, each pair equal or one of them 1 (a 1 against 0 gives 0).
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    broadcast_shape_for(a, b, "broadcast_shape")
}

/// [`broadcast_shape`] with errors naming `op`.
pub(crate) fn broadcast_shape_for(
    a: &[usize],
    b: &[usize],
    op: &'static str,
) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| (i + s.len()).checked_sub(rank).map_or(1, |at| s[at]);
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(TensorError::ShapeMismatch {
                op,
                left: a.to_vec(),
                right: b.to_vec(),
            }),
        })
        .collect()
}

/// The strides of a tensor of `shape` viewed as broadcast to `out` (a
/// shape it broadcasts to): 0 along the dimensions it lacks or has as 1.
pub(crate) fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let own = contiguous_strides(shape);
    let lead = out.len() - shape.len();
    (0..out.len())
        .map(|i| match i.checked_sub(lead) {
            Some(at) if shape[at] != 1 => own[at],
            _ => 0,
        })
        .collect()
}

/// `a op b` elementwise, the operands broadcast to their common shape.
pub fn binary<T: Element>(a: &Tensor<T>, b: &Tensor<T>, op: BinaryOp) -> Result<Tensor<T>> {
    match op {
        BinaryOp::Add => binary_with(a, b, op.name(), |x, y| x + y),
        BinaryOp::Sub => binary_with(a, b, op.name(), |x, y| x - y),
        BinaryOp::Mul => binary_with(a, b, op.name(), |x, y| x * y),
        BinaryOp::Div => binary_with(a, b, op.name(), |x, y| x / y),
    }
}

fn binary_with<T: Element>(
    a: &Tensor<T>,
    b: &Tensor<T>,
    op: &'static str,
    f: impl Fn(T, T) -> T + Copy + Sync + Send,
) -> Result<Tensor<T>> {
    let shape = broadcast_shape_for(a.shape(), b.shape(), op)?;
    let len = checked_numel(&shape, op)?;
    let (sa, sb) = (
        broadcast_strides(a.shape(), &shape),
        broadcast_strides(b.shape(), &shape),
    );
    let (dims, [sa, sb]) = merge_dims(&shape, [&sa, &sb]);
    let m = dims.len() - 1;
    let row_len = dims[m];
    let (ia, ib) = (sa[m], sb[m]);
    let (ad, bd) = (a.data(), b.data());
    let write = |out: &mut [MaybeUninit<T>]| {
        if len == 0 {
            return Ok(());
        }
        for_each_piece(out, row_len, 1, |row, col, piece| {
            let mut walk = Walker::new(&dims[..m], [&sa[..m], &sb[..m]], row);
            for_each_segment(&mut walk, row_len, col, piece, |walk, col, seg| {
                let (oa, ob) = (walk.off[0] + col * ia, walk.off[1] + col * ib);
                let n = seg.len();
                match (ia, ib) {
                    (0, 0) => {
                        let v = f(ad[oa], bd[ob]);
                        seg.iter_mut().for_each(|o| {
                            o.write(v);
                        });
                    }
                    (0, _) => {
                        let x = ad[oa];
                        for (o, &y) in seg.iter_mut().zip(&bd[ob..ob + n]) {
                            o.write(f(x, y));
                        }
                    }
                    (_, 0) => {
                        let y = bd[ob];
                        for (o, &x) in seg.iter_mut().zip(&ad[oa..oa + n]) {
                            o.write(f(x, y));
                        }
                    }
                    _ => {
                        for ((o, &x), &y) in
                            seg.iter_mut().zip(&ad[oa..oa + n]).zip(&bd[ob..ob + n])
                        {
                            o.write(f(x, y));
                        }
                    }
                }
            });
        });
        Ok(())
    };
    // SAFETY: the pieces cover the output, and every segment writes each
    // of its elements.
    unsafe { try_write(shape, op, write) }
}

/// `x` broadcast to `shape` (ONNX Expand: the result has the broadcast of
/// `x`'s shape and `shape`, so `shape` may also hold 1 where `x` does not).
pub fn expand<T: Element>(x: &Tensor<T>, shape: &[usize]) -> Result<Tensor<T>> {
    const OP: &str = "expand";
    let out = broadcast_shape_for(x.shape(), shape, OP)?;
    let strides = broadcast_strides(x.shape(), &out);
    let write = |buf: &mut [MaybeUninit<T>]| {
        strided_copy(x.data(), 0, &out, &strides, buf);
        Ok(())
    };
    // SAFETY: `strided_copy` writes every element of the view.
    unsafe { try_write(out.clone(), OP, write) }
}

/// The sum of `grad` over the axes along which a tensor of `shape` was
/// broadcast to `grad`'s shape: the backward of broadcasting, and the
/// adjoint of [`expand`]. An error unless `shape` broadcasts to exactly
/// `grad`'s shape.
///
/// Each result is summed by one task in a fixed order (contiguous runs in
/// eight lanes, then run after run), whatever the number of threads.
pub fn reduce_to_shape<T: Element>(grad: &Tensor<T>, shape: &[usize]) -> Result<Tensor<T>> {
    const OP: &str = "reduce_to_shape";
    let mismatch = || TensorError::ShapeMismatch {
        op: OP,
        left: grad.shape().to_vec(),
        right: shape.to_vec(),
    };
    if broadcast_shape_for(shape, grad.shape(), OP).map_err(|_| mismatch())? != grad.shape() {
        return Err(mismatch());
    }
    if shape == grad.shape() {
        return Ok(grad.par_clone());
    }
    if grad.is_empty() {
        return try_full(shape.to_vec(), T::zero(), OP);
    }
    let gs = contiguous_strides(grad.shape());
    let ts = broadcast_strides(shape, grad.shape());
    let (dims, [gs, ts]) = merge_dims(grad.shape(), [&gs, &ts]);
    let m = dims.len() - 1;
    let pick = |keep: bool, upto: usize| -> (Vec<usize>, Vec<usize>) {
        (0..upto)
            .filter(|&d| (ts[d] != 0) == keep)
            .map(|d| (dims[d], gs[d]))
            .unzip()
    };
    let gd = grad.data();
    let write = |out: &mut [MaybeUninit<T>]| {
        if ts[m] == 0 {
            // The last axis is summed: every result adds contiguous runs.
            let run = dims[m];
            let (keep_dims, keep_strides) = pick(true, m);
            let (red_dims, red_strides) = pick(false, m);
            let runs: usize = red_dims.iter().product();
            for_each_piece(out, 1, runs * run, |first, _, piece| {
                let mut walk = Walker::new(&keep_dims, [&keep_strides], first);
                for o in piece.iter_mut() {
                    let base = walk.off[0];
                    let mut red = Walker::new(&red_dims, [&red_strides], 0);
                    let mut acc = T::zero();
                    for _ in 0..runs {
                        let at = base + red.off[0];
                        acc += sum_lanes(&gd[at..at + run]);
                        red.step();
                    }
                    o.write(acc);
                    walk.step();
                }
            });
        } else {
            // The last axis is kept: every result row adds whole rows.
            let row_len = dims[m];
            let (keep_dims, keep_strides) = pick(true, m);
            let (red_dims, red_strides) = pick(false, m);
            let rows: usize = red_dims.iter().product();
            for_each_piece(out, row_len, rows, |row, col, piece| {
                let mut walk = Walker::new(&keep_dims, [&keep_strides], row);
                for_each_segment(&mut walk, row_len, col, piece, |walk, col, seg| {
                    let base = walk.off[0] + col;
                    let n = seg.len();
                    let mut red = Walker::new(&red_dims, [&red_strides], 0);
                    let first = &gd[base + red.off[0]..][..n];
                    for (o, &v) in seg.iter_mut().zip(first) {
                        o.write(v);
                    }
                    // SAFETY: every element of `seg` was written just above.
                    let seg: &mut [T] = unsafe { &mut *(seg as *mut [MaybeUninit<T>] as *mut [T]) };
                    for _ in 1..rows {
                        red.step();
                        let src = &gd[base + red.off[0]..][..n];
                        seg.iter_mut().zip(src).for_each(|(o, &v)| *o += v);
                    }
                });
            });
        }
        Ok(())
    };
    // SAFETY: the pieces cover the output and each writes all its elements.
    unsafe { try_write(shape.to_vec(), OP, write) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{dot, rnd, t};
    use crate::testing_grad::{
        all_indices, arb_tensor, assert_close, bits, broadcast_offset, numeric_grad, on_threads,
    };
    use proptest::prelude::*;

    fn naive_binary(a: &Tensor<f64>, b: &Tensor<f64>, f: fn(f64, f64) -> f64) -> Tensor<f64> {
        let shape = broadcast_shape(a.shape(), b.shape()).unwrap();
        let data = all_indices(&shape)
            .iter()
            .map(|i| {
                f(
                    a.data()[broadcast_offset(a.shape(), i)],
                    b.data()[broadcast_offset(b.shape(), i)],
                )
            })
            .collect();
        Tensor::from_vec(shape, data).unwrap()
    }

    #[test]
    fn shapes_broadcast_by_numpy_rules() {
        assert_eq!(broadcast_shape(&[2, 3, 4], &[3, 1]).unwrap(), vec![2, 3, 4]);
        assert_eq!(broadcast_shape(&[], &[5]).unwrap(), vec![5]);
        assert_eq!(broadcast_shape(&[1, 0], &[3, 1]).unwrap(), vec![3, 0]);
        assert_eq!(
            broadcast_shape(&[4, 1, 2], &[1, 3, 1]).unwrap(),
            vec![4, 3, 2]
        );
        assert!(matches!(
            broadcast_shape(&[2, 3], &[4]),
            Err(TensorError::ShapeMismatch {
                op: "broadcast_shape",
                ..
            })
        ));
    }

    #[test]
    fn binary_hand_computed_cases() {
        let a = t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let col = t(&[2, 1], &[10., 20.]);
        let row = t(&[3], &[1., 2., 4.]);
        let add = binary(&a, &col, BinaryOp::Add).unwrap();
        assert_eq!(add.data(), &[11., 12., 13., 24., 25., 26.]);
        let sub = binary(&col, &a, BinaryOp::Sub).unwrap();
        assert_eq!(sub.data(), &[9., 8., 7., 16., 15., 14.]);
        let mul = binary(&a, &row, BinaryOp::Mul).unwrap();
        assert_eq!(mul.data(), &[1., 4., 12., 4., 10., 24.]);
        let div = binary(&a, &Tensor::scalar(2.0), BinaryOp::Div).unwrap();
        assert_eq!(div.data(), &[0.5, 1., 1.5, 2., 2.5, 3.]);
        // Both broadcast: an outer product.
        let outer = binary(&col, &row, BinaryOp::Mul).unwrap();
        assert_eq!(outer.shape(), &[2, 3]);
        assert_eq!(outer.data(), &[10., 20., 40., 20., 40., 80.]);
        // Scalars and empties.
        let s = binary(&Tensor::scalar(3.0), &Tensor::scalar(4.0), BinaryOp::Sub).unwrap();
        assert_eq!((s.shape(), s.data()), (&[][..], &[-1.][..]));
        let e = binary(&Tensor::<f64>::zeros([0, 3]), &row, BinaryOp::Add).unwrap();
        assert_eq!(e.shape(), &[0, 3]);
        let err = binary(&a, &t(&[2], &[1., 2.]), BinaryOp::Div).unwrap_err();
        assert!(matches!(err, TensorError::ShapeMismatch { op: "div", .. }));
    }

    /// An operation with its plain definition.
    type NamedOp = (BinaryOp, fn(f64, f64) -> f64);

    #[test]
    fn per_channel_and_bias_layouts_match_the_naive_rule() {
        let ops: [NamedOp; 4] = [
            (BinaryOp::Add, |x, y| x + y),
            (BinaryOp::Sub, |x, y| x - y),
            (BinaryOp::Mul, |x, y| x * y),
            (BinaryOp::Div, |x, y| x / y),
        ];
        let cases: [(&[usize], &[usize]); 7] = [
            (&[2, 3, 4, 5], &[3, 1, 1]),
            (&[2, 3, 4, 5], &[1, 3, 1, 1]),
            (&[2, 7, 6], &[6]),
            (&[2, 1, 4], &[3, 1]),
            (&[5], &[2, 3, 5]),
            (&[2, 3, 4, 5], &[2, 3, 4, 5]),
            (&[1, 3, 1, 5], &[2, 1, 4, 1]),
        ];
        for (sa, sb) in cases {
            let a = rnd(sa, 1);
            let b = rnd(sb, 2).map(|v| v + 3.0);
            for (op, f) in ops {
                let got = binary(&a, &b, op).unwrap();
                assert_eq!(got, naive_binary(&a, &b, f), "{sa:?} {op:?} {sb:?}");
                let got = binary(&b, &a, op).unwrap();
                assert_eq!(got, naive_binary(&b, &a, f), "{sb:?} {op:?} {sa:?}");
            }
        }
    }

    #[test]
    fn expand_and_its_adjoint_hand_computed() {
        let x = t(&[2, 1], &[1., 2.]);
        let e = expand(&x, &[2, 3]).unwrap();
        assert_eq!(e.data(), &[1., 1., 1., 2., 2., 2.]);
        // ONNX Expand broadcasts both ways: [2, 1] with [1, 1, 2].
        let e = expand(&x, &[1, 1, 2]).unwrap();
        assert_eq!(e.shape(), &[1, 2, 2]);
        assert_eq!(e.data(), &[1., 1., 2., 2.]);
        assert!(expand(&x, &[3, 3]).is_err());
        let g = t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        assert_eq!(reduce_to_shape(&g, &[2, 1]).unwrap().data(), &[6., 15.]);
        assert_eq!(reduce_to_shape(&g, &[3]).unwrap().data(), &[5., 7., 9.]);
        assert_eq!(reduce_to_shape(&g, &[1, 3]).unwrap().shape(), &[1, 3]);
        let all = reduce_to_shape(&g, &[]).unwrap();
        assert_eq!((all.shape(), all.data()), (&[][..], &[21.][..]));
        // Per channel: [2, 2, 2] summed to [2, 1].
        let g = t(&[2, 2, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        assert_eq!(reduce_to_shape(&g, &[2, 1]).unwrap().data(), &[14., 22.]);
        assert_eq!(reduce_to_shape(&g, &[2, 1, 1]).unwrap().data(), &[10., 26.]);
        assert_eq!(
            reduce_to_shape(&Tensor::<f64>::zeros([0, 3]), &[1, 3])
                .unwrap()
                .data(),
            &[0.; 3]
        );
        for bad in [&[4][..], &[2, 2, 2, 2], &[3, 1]] {
            assert!(matches!(
                reduce_to_shape(&g, bad),
                Err(TensorError::ShapeMismatch {
                    op: "reduce_to_shape",
                    ..
                })
            ));
        }
    }

    #[test]
    fn huge_broadcast_is_an_error_not_an_abort() {
        let a = Tensor::<f32>::zeros([1 << 20, 1]);
        let b = Tensor::<f32>::zeros([1 << 20]);
        assert!(matches!(
            binary(&a, &b, BinaryOp::Add),
            Err(TensorError::TooLarge { .. })
        ));
        assert!(expand(&Tensor::<f32>::zeros([1]), &[1 << 40, 1 << 30]).is_err());
    }

    fn arb_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        // A full shape and, for the other operand, each dimension kept or
        // set to 1, with leading dimensions possibly dropped.
        prop::collection::vec(1usize..4, 0..5).prop_flat_map(|full| {
            let r = full.len();
            (Just(full), prop::collection::vec(any::<bool>(), r), 0..=r).prop_map(
                |(full, ones, drop)| {
                    let small = full
                        .iter()
                        .zip(&ones)
                        .map(|(&d, &one)| if one { 1 } else { d })
                        .skip(drop)
                        .collect();
                    (full, small)
                },
            )
        })
    }

    proptest! {
        #[test]
        fn binary_matches_the_naive_rule((full, small) in arb_pair(), seed in 0u64..1000) {
            let a = rnd(&full, seed);
            let b = rnd(&small, seed + 1).map(|v| v + 3.0);
            prop_assert_eq!(binary(&a, &b, BinaryOp::Mul).unwrap(), naive_binary(&a, &b, |x, y| x * y));
            prop_assert_eq!(binary(&b, &a, BinaryOp::Div).unwrap(), naive_binary(&b, &a, |x, y| x / y));
        }

        #[test]
        fn reduce_to_shape_is_the_adjoint_of_expand((full, small) in arb_pair(), seed in 0u64..1000) {
            let x = rnd(&small, seed);
            let y = rnd(&full, seed + 7);
            let ex = expand(&x, &full).unwrap();
            prop_assert_eq!(ex.shape(), &full[..]);
            let ry = reduce_to_shape(&y, &small).unwrap();
            prop_assert_eq!(ry.shape(), &small[..]);
            let (l, r) = (dot(&ex, &y), dot(&x, &ry));
            prop_assert!((l - r).abs() <= 1e-12 * (1.0 + l.abs()), "{} vs {}", l, r);
        }

        #[test]
        fn binary_backward_by_finite_differences(
            (full, small) in arb_pair(),
            seed in 0u64..1000,
        ) {
            // d(a * b)/db summed to b's shape: reduce_to_shape(g * a).
            let a = rnd(&full, seed);
            let b = rnd(&small, seed + 1);
            let g = rnd(&full, seed + 2);
            let f = |b: &Tensor<f64>| binary(&a, b, BinaryOp::Mul).unwrap();
            let got = reduce_to_shape(&binary(&g, &a, BinaryOp::Mul).unwrap(), &small).unwrap();
            assert_close(&got, &numeric_grad(f, &b, &g), 1e-6);
        }

        #[test]
        fn division_backward_by_finite_differences(x in arb_tensor(vec![2, 3])) {
            // d(a / b)/db = -g * a / b^2, b broadcast as [3].
            let b = x.select0(0).unwrap().map(|v| v.abs() + 1.0);
            let a = x;
            let g = rnd(&[2, 3], 3);
            let f = |b: &Tensor<f64>| binary(&a, b, BinaryOp::Div).unwrap();
            let local = binary(&binary(&g, &a, BinaryOp::Mul).unwrap(), &b, BinaryOp::Div).unwrap();
            let local = binary(&binary(&local, &b, BinaryOp::Div).unwrap(), &Tensor::scalar(-1.0), BinaryOp::Mul).unwrap();
            let got = reduce_to_shape(&local, &[3]).unwrap();
            assert_close(&got, &numeric_grad(f, &b, &g), 1e-6);
        }
    }

    #[test]
    fn large_kernels_are_bit_identical_across_thread_counts() {
        // [N, C, H, W] against a per-channel [C, 1, 1], a bias along the
        // last axis, and the sums back, above the parallel threshold (rows
        // longer than a task and shorter).
        let x = rnd(&[2, 16, 48, 48], 1).cast::<f32>();
        let c = rnd(&[16, 1, 1], 2).cast::<f32>();
        let bias = rnd(&[48], 3).cast::<f32>();
        let long = rnd(&[3, 40000], 4).cast::<f32>();
        let run = |threads| {
            on_threads(threads, || {
                let y = binary(&x, &c, BinaryOp::Mul).unwrap();
                let z = binary(&y, &bias, BinaryOp::Add).unwrap();
                let sc = reduce_to_shape(&z, &[16, 1, 1]).unwrap();
                let sb = reduce_to_shape(&z, &[48]).unwrap();
                let sl = reduce_to_shape(&long, &[40000]).unwrap();
                let e = expand(&c, &[2, 16, 48, 48]).unwrap();
                let same = binary(&x, &x, BinaryOp::Sub).unwrap();
                [y, z, sc, sb, sl, e, same]
            })
        };
        let (one, four) = (run(1), run(4));
        for (p, q) in one.iter().zip(&four) {
            assert_eq!(bits(p.data()), bits(q.data()));
        }
        // And the values are right.
        let [y, z, sc, sb, sl, e, same] = &one;
        for (i, &v) in x.data().iter().enumerate() {
            let ch = (i / (48 * 48)) % 16;
            assert_eq!(y.data()[i], v * c.data()[ch]);
            assert_eq!(z.data()[i], y.data()[i] + bias.data()[i % 48]);
            assert_eq!(e.data()[i], c.data()[ch]);
            assert_eq!(same.data()[i], 0.0);
        }
        let close = |got: &Tensor<f32>, want: Tensor<f64>| {
            let d = got.cast::<f64>().max_abs_diff(&want).unwrap();
            // Sums of up to 4608 f32 terms of magnitude up to 2.
            assert!(d < 5e-3, "{d}");
        };
        close(sc, reduce_to_shape(&z.cast::<f64>(), &[16, 1, 1]).unwrap());
        close(sb, reduce_to_shape(&z.cast::<f64>(), &[48]).unwrap());
        close(sl, reduce_to_shape(&long.cast::<f64>(), &[40000]).unwrap());
    }
}
