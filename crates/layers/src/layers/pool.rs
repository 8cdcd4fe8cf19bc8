//! Pooling layers: `MaxPool2d`, `AvgPool2d`, `AdaptiveAvgPool2d`.

use crate::error::{LayerError, Result};
use crate::module::Module;
use sightline_autograd::ops::pool::{adaptive_avg_pool2d, avg_pool2d, max_pool2d};
use sightline_autograd::{Tape, Var};
use sightline_tensor::pool::pool_output_len;
use sightline_tensor::{AvgPool2dParams, Element, MaxPool2dParams};

/// Fails with [`LayerError::InputTooSmall`] when a pooling window yields no output.
fn check_window<T: Element>(
    tape: &Tape<T>,
    shape: &[usize],
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
    ceil_mode: bool,
) -> Result<()> {
    if [
        kernel.0, kernel.1, stride.0, stride.1, dilation.0, dilation.1,
    ]
    .contains(&0)
    {
        return Err(LayerError::arch(format!(
            "pooling kernel, stride and dilation must be positive, got kernel {kernel:?}, stride {stride:?}, dilation {dilation:?}"
        )));
    }
    let &[_, _, h, w] = shape else {
        return Ok(()); // the kernel reports rank errors
    };
    let fits = pool_output_len(h, kernel.0, stride.0, padding.0, dilation.0, ceil_mode).is_some()
        && pool_output_len(w, kernel.1, stride.1, padding.1, dilation.1, ceil_mode).is_some();
    if fits {
        return Ok(());
    }
    Err(LayerError::InputTooSmall {
        layer: tape.layer_path().to_string(),
        found: (h, w),
        message: format!(
            "pooling window {}x{} (stride {stride:?}, padding {padding:?}) gives an empty output",
            kernel.0, kernel.1
        ),
    })
}

/// `torch.nn.MaxPool2d`; the backward pass sends each gradient to the first maximum of its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Kernel, stride, padding, dilation, ceil mode.
    pub params: MaxPool2dParams,
}

impl MaxPool2d {
    /// Square `kernel`, `stride` and `padding`, floor mode.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        Self {
            params: MaxPool2dParams::new(kernel, stride, padding),
        }
    }
}

impl<T: Element> Module<T> for MaxPool2d {
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        let p = self.params;
        check_window(
            tape,
            x.shape(),
            p.kernel,
            p.stride,
            p.padding,
            p.dilation,
            p.ceil_mode,
        )?;
        Ok(max_pool2d(tape, x, p)?)
    }
}

/// `torch.nn.AvgPool2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPool2d {
    /// Kernel, stride, padding, ceil mode, `count_include_pad`.
    pub params: AvgPool2dParams,
}

impl AvgPool2d {
    /// Square `kernel`, `stride` and `padding`, floor mode, padding counted in the divisor.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        Self {
            params: AvgPool2dParams::new(kernel, stride, padding),
        }
    }
}

impl<T: Element> Module<T> for AvgPool2d {
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        let p = self.params;
        check_window(
            tape,
            x.shape(),
            p.kernel,
            p.stride,
            p.padding,
            (1, 1),
            p.ceil_mode,
        )?;
        Ok(avg_pool2d(tape, x, p)?)
    }
}

/// `torch.nn.AdaptiveAvgPool2d`: averages over PyTorch's bins to a fixed output size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveAvgPool2d {
    /// Output height and width.
    pub output_hw: (usize, usize),
}

impl AdaptiveAvgPool2d {
    /// Pools to `height x width`.
    pub fn new(height: usize, width: usize) -> Self {
        Self {
            output_hw: (height, width),
        }
    }
}

impl<T: Element> Module<T> for AdaptiveAvgPool2d {
    fn forward(&self, tape: &mut Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        Ok(adaptive_avg_pool2d(tape, x, self.output_hw)?)
    }
}
