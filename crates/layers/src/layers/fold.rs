//! A convolution followed by a batch norm, folded into one convolution when
//! the tape allows it ([`Tape::folding_batch_norm`]).

use super::{BatchNorm2d, Conv2d};
use crate::error::Result;
use crate::module::{join_path, run_child};
use sightline_autograd::{Tape, Var};
use sightline_tensor::Element;

/// Runs the child `conv_name` (`conv`) then the child `bn_name` (`bn`).
///
/// When the tape folds batch norms and does not keep the convolution's
/// output, this is one convolution with the batch norm folded in, recorded
/// under the convolution's path and registered as the batch norm's output;
/// the convolution's own output is not computed (the tape notes it as
/// folded). Otherwise (or when their channels differ, an error the batch
/// norm then reports) it is the two layers, one after the other.
pub(crate) fn conv_then_batch_norm<T: Element>(
    tape: &mut Tape<T>,
    conv_name: &str,
    conv: &Conv2d<T>,
    bn_name: &str,
    bn: &BatchNorm2d<T>,
    x: &Var<T>,
) -> Result<Var<T>> {
    let conv_path = join_path(tape.layer_path(), conv_name);
    if !tape.folds_batch_norm_after(&conv_path) || conv.out_channels() != bn.channels() {
        let y = run_child(tape, conv_name, conv, x)?;
        return run_child(tape, bn_name, bn, &y);
    }
    tape.push_scope(conv_name);
    let y = conv.forward_folded(tape, x, bn);
    tape.pop_scope();
    let y = y?;
    tape.mark_folded(&conv_path);
    tape.push_scope(bn_name);
    tape.mark_layer_output(&y);
    tape.pop_scope();
    Ok(y)
}
