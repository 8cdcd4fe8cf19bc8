//! Matrix product with batch broadcasting (ONNX MatMul, numpy `matmul`):
//! recording and standard backward.

use crate::error::Result;
use crate::op::{Op, OpKind};
use crate::rule::RuleContext;
use crate::tape::{Tape, Var};
use sightline_tensor::matmul::{matmul as matmul_kernel, matmul_backward};
use sightline_tensor::{Element, Tensor};
use std::sync::Arc;

/// A recorded matrix product `a @ b`.
#[derive(Debug)]
pub struct MatMulOp<T> {
    /// Both operands (shared with their variables): each one's gradient
    /// reads the other.
    pub operands: [Arc<Tensor<T>>; 2],
}

/// Records `a @ b` with numpy/ONNX MatMul semantics: the last two axes are
/// the matrices, the others batch axes that broadcast; a 1-d `a` is a row
/// and a 1-d `b` a column, the added axis removed from the result.
pub fn matmul<T: Element>(tape: &mut Tape<T>, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
    let y = matmul_kernel(a.value(), b.value()).map_err(tape.kernel_err("matmul"))?;
    let operands = [a.value_arc().clone(), b.value_arc().clone()];
    Ok(tape.record(MatMulOp { operands }, &[a, b], y))
}

impl<T: Element> Op<T> for MatMulOp<T> {
    fn kind(&self) -> OpKind {
        OpKind::MATMUL
    }

    /// `g @ b^T` to `a` and `a^T @ g` to `b`, each summed over the batches
    /// along which its operand was broadcast.
    fn backward(&self, ctx: &RuleContext<'_, T>, g: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let [a, b] = &self.operands;
        let (ga, gb) =
            matmul_backward(a, b, g, ctx.needs(0), ctx.needs(1)).map_err(|e| ctx.kernel(e))?;
        Ok(vec![ga, gb])
    }

    /// `M * K * N` per matrix of the result: each output element is an
    /// inner product of length `K` (the last axis of `a`).
    fn multiply_adds(&self, input_shapes: &[Vec<usize>], output_shape: &[usize]) -> u64 {
        let k = input_shapes
            .first()
            .and_then(|a| a.last())
            .copied()
            .unwrap_or(0);
        output_shape
            .iter()
            .try_fold(k as u64, |acc, &d| acc.checked_mul(d as u64))
            .unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Retain, RuleSet};

    /// A batch of two `[2, 3]` matrices times one `[3, 2]` matrix
    /// (broadcast): values, both gradients (the shared matrix's summed over
    /// the batch) and the multiply-adds, by hand.
    #[test]
    fn batched_product_and_gradients() {
        let mut tape = Tape::new(Retain::Minimal);
        let a = tape.input(Tensor::from_vec([2, 2, 3], (0..12).map(f64::from).collect()).unwrap());
        let b = tape.input(Tensor::from_vec([3, 2], vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]).unwrap());
        let y = matmul(&mut tape, &a, &b).unwrap();
        // Row [x0, x1, x2] @ b = [x0 + x2, x1 + x2].
        assert_eq!(y.shape(), [2, 2, 2]);
        assert_eq!(
            y.value().data(),
            [2.0, 3.0, 8.0, 9.0, 14.0, 15.0, 20.0, 21.0]
        );
        let seed = Tensor::full(vec![2, 2, 2], 1.0);
        let g = tape
            .backward(y.id(), &seed, &RuleSet::standard(), &[a.id(), b.id()])
            .unwrap();
        // d/da: ones @ b^T = row sums of b: [1, 1, 2] on every row.
        assert_eq!(g[0].shape(), [2, 2, 3]);
        assert!(g[0].data().chunks(3).all(|r| r == [1.0, 1.0, 2.0]));
        // d/db: sum over all rows of a^T @ ones: column j of b gets the sum
        // of column i of a: columns of a sum to 0+3+6+9 = 18, 22, 26.
        assert_eq!(g[1].shape(), [3, 2]);
        assert_eq!(g[1].data(), [18.0, 18.0, 22.0, 22.0, 26.0, 26.0]);
        let node = tape.nodes().last().unwrap();
        assert_eq!(node.op.kind(), OpKind::MATMUL);
        // 2 batches x 2 rows x 2 columns x 3 terms.
        assert_eq!(node.op.multiply_adds(&node.input_shapes, y.shape()), 24);
    }

    /// A vector times a matrix: `[K] @ [K, N]` gives `[N]`.
    #[test]
    fn vector_operand() {
        let mut tape = Tape::new(Retain::Minimal);
        let a = tape.input(Tensor::from_vec([2], vec![1.0, 2.0]).unwrap());
        let b = tape.input(Tensor::from_vec([2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap());
        let y = matmul(&mut tape, &a, &b).unwrap();
        assert_eq!(y.value().data(), [9.0, 12.0, 15.0]);
        let seed = Tensor::from_vec([3], vec![1.0, 0.0, -1.0]).unwrap();
        let g = tape
            .backward(y.id(), &seed, &RuleSet::standard(), &[a.id(), b.id()])
            .unwrap();
        assert_eq!(g[0].data(), [-2.0, -2.0]);
        assert_eq!(g[1].data(), [1.0, 0.0, -1.0, 2.0, 0.0, -2.0]);
        let node = tape.nodes().last().unwrap();
        assert_eq!(node.op.multiply_adds(&node.input_shapes, y.shape()), 6);
    }

    #[test]
    fn mismatched_inner_dimensions_are_an_error() {
        let mut tape = Tape::<f32>::new(Retain::Minimal);
        let a = tape.input(Tensor::zeros([2, 3]));
        let b = tape.input(Tensor::zeros([2, 3]));
        let err = matmul(&mut tape, &a, &b).unwrap_err();
        assert!(err.to_string().contains("matmul"), "{err}");
    }
}
