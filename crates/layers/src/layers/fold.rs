//! A convolution followed by a batch norm: folded into one convolution
//! when the weights are loaded, and run as that one convolution when a
//! canonizer merged the batch norm into it
//! ([`crate::canonize::MergeBatchNorm`]).

use super::{BatchNorm2d, Conv2d, ConvSpec};
use crate::canonize::BatchNormMerge;
use crate::error::Result;
use crate::module::run_child;
use crate::weights::WeightSource;
use sightline_autograd::ops::norm::batch_norm;
use sightline_autograd::{Tape, Var};
use sightline_tensor::Element;

/// Builds the convolution `conv_path` and the batch norm `bn_path` that
/// follows it, and folds the batch norm into the convolution's kernel and
/// bias now, when the weights are read, so that no forward pass pays for it.
pub(crate) fn build_conv_then_batch_norm<T: Element>(
    src: &mut dyn WeightSource<T>,
    conv_path: &str,
    spec: ConvSpec,
    bn_path: &str,
) -> Result<(Conv2d<T>, BatchNorm2d<T>)> {
    let conv = Conv2d::build(src, conv_path, spec)?;
    let bn = BatchNorm2d::build(src, bn_path, spec.out_channels)?;
    conv.fold_batch_norm(conv_path, &bn)?;
    Ok((conv, bn))
}

/// Runs the child `conv_name` (`conv`) then the child `bn_name` (`bn`).
///
/// When a canonizer merged the batch norm into the convolution
/// ([`BatchNorm2d::merged`]), this is one convolution with the batch norm
/// folded in, recorded under the convolution's path and registered as the
/// batch norm's output (after what the merge left of it); the
/// convolution's own output is not computed. Otherwise (or when their
/// channels differ, an error the batch norm then reports) it is the two
/// layers, one after the other.
pub(crate) fn conv_then_batch_norm<T: Element>(
    tape: &mut Tape<T>,
    conv_name: &str,
    conv: &Conv2d<T>,
    bn_name: &str,
    bn: &BatchNorm2d<T>,
    x: &Var<T>,
) -> Result<Var<T>> {
    if bn.merged() != BatchNormMerge::NotMerged && conv.out_channels() == bn.channels() {
        return merged_conv(tape, conv_name, conv, bn_name, bn, x);
    }
    let y = run_child(tape, conv_name, conv, x)?;
    run_child(tape, bn_name, bn, &y)
}

/// The pair merged by a canonizer: the convolution with the batch norm
/// folded in, recorded under the convolution's path, then what the merge
/// left of the batch norm (nothing, or Zennit's `x / sqrt(1 + eps)`),
/// registered as the batch norm's output. The convolution's own output is
/// not computed, so it is no layer output of the pass.
fn merged_conv<T: Element>(
    tape: &mut Tape<T>,
    conv_name: &str,
    conv: &Conv2d<T>,
    bn_name: &str,
    bn: &BatchNorm2d<T>,
    x: &Var<T>,
) -> Result<Var<T>> {
    tape.push_scope(conv_name);
    let y = conv.forward_folded(tape, x, bn);
    tape.pop_scope();
    let mut y = y?;
    tape.push_scope(bn_name);
    if let Some(identity) = bn.leftover() {
        match batch_norm(tape, &y, identity) {
            Ok(v) => y = v,
            Err(e) => {
                tape.pop_scope();
                return Err(e.into());
            }
        }
    }
    tape.mark_layer_output(&y);
    tape.pop_scope();
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::Module;
    use crate::weights::random::RandomSource;
    use sightline_autograd::ops::conv::Conv2dOp;
    use sightline_autograd::Retain;
    use sightline_tensor::Tensor;
    use std::sync::Arc;

    fn pair() -> (Conv2d<f64>, BatchNorm2d<f64>) {
        let spec = ConvSpec::new(3, 4, 3).padding(1).no_bias();
        build_conv_then_batch_norm(&mut RandomSource::new(7), "c", spec, "b").unwrap()
    }

    /// The folded kernel of the first node of a pass through the pair with
    /// the batch norm merged.
    fn folded_kernel(conv: &Conv2d<f64>, bn: &BatchNorm2d<f64>) -> Arc<Tensor<f64>> {
        let mut bn = bn.clone();
        bn.set_merged(BatchNormMerge::Removed).unwrap();
        let bn = &bn;
        let mut tape = Tape::new(Retain::Minimal);
        let x = tape.input(Tensor::full(vec![1, 3, 5, 5], 0.5));
        conv_then_batch_norm(&mut tape, "c", conv, "b", bn, &x).unwrap();
        let op = tape.nodes()[0]
            .op
            .downcast_ref::<Conv2dOp<f64>>()
            .expect("a convolution");
        Arc::clone(&op.weight)
    }

    /// The fold is made when the pair is built; forward passes use it as
    /// it is, and one that follows a change of the weight folds again.
    #[test]
    fn pairs_fold_when_built_and_again_after_a_change() {
        let (mut conv, bn) = pair();
        assert!(conv.is_batch_norm_folded());
        let made = Arc::clone(conv.fold_batch_norm("c", &bn).unwrap().weight());
        let first = folded_kernel(&conv, &bn);
        assert!(Arc::ptr_eq(&first, &made));
        assert!(Arc::ptr_eq(&folded_kernel(&conv, &bn), &made));

        let mut handed = Vec::new();
        conv.trainable_mut("c", &mut handed);
        for v in Arc::make_mut(handed[0].1).data_mut() {
            *v *= 2.0;
        }
        assert!(!conv.is_batch_norm_folded());
        let again = folded_kernel(&conv, &bn);
        assert!(conv.is_batch_norm_folded());
        for (a, b) in again.data().iter().zip(made.data()) {
            assert_eq!(*a, 2.0 * b);
        }
    }
}
