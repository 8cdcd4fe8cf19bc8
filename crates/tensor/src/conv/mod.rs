//! 2-d convolution: forward, and backward for input, weight and bias.
//!
//! 3 x 3 convolutions with stride 1 (most of VGG's and ResNet's) go through
//! Winograd ([`crate::winograd`]) where it wins: F(4x4, 3x3) for large
//! outputs (56 x 56, or 28 x 28 with at most 128 channels) when the
//! transformed kernel is cached, F(2x2, 3x3) otherwise; the others are
//! im2col + GEMM, done in blocks of output columns so the unfolded panel stays
//! in cache and the blocks run in parallel (or, for small images, one panel
//! shared by blocks of output channels). The backward-input pass of a
//! stride-1 convolution is itself a convolution (of the output gradient with
//! the transposed, flipped kernel), so it reuses the forward kernels; other
//! strides, and convolutions back to few channels (the first layer), go
//! through GEMM + col2im.
//!
//! Which of those paths a call takes is a function of the shapes and of the
//! [`KernelPolicy`] in its parameters ([`Conv2dParams::kernels`]: Winograd
//! on or off, the variant, the highest SIMD level of the micro-kernels),
//! never of the environment or the number of threads.
//!
//! The parts: `forward.rs` (the entry points, with and without a cached
//! kernel, and the im2col reference),
//! `backward_input.rs` (the input gradient's paths and its kernel cache),
//! `backward_weight.rs` (weight and bias gradients), `packed.rs` (a weight
//! packed once for the Winograd micro-kernels, and 1 x 1 convolutions on
//! it), `panels.rs` (the cached im2col path: the unfolded input packed
//! block by block into the micro-kernels' panels, never whole; and the
//! products of col2im), `thin.rs` (the last few columns of those products
//! and of the 1 x 1 ones),
//! and what they share:
//! `dispatch.rs` (Winograd or not, which variant), `im2col.rs` (unfolding,
//! for `matrixmultiply`), `gemm_blocks.rs` (parallel GEMMs over unfolded
//! panels) and `col2im.rs` (in bands of output rows on a packed weight).

mod backward_input;
mod backward_weight;
mod col2im;
mod depthwise;
mod dispatch;
mod forward;
mod gemm_blocks;
mod im2col;
mod packed;
mod panels;
#[cfg(test)]
mod reference;
mod thin;

pub use backward_input::{
    backward_input_im2col, conv2d_backward_input, conv2d_backward_input_cached,
    conv2d_backward_input_then, transpose_flip_kernel, BackwardInputCache,
};
pub use backward_weight::{conv2d_backward_bias, conv2d_backward_weight};
pub use depthwise::{
    conv2d_padded, conv2d_padded_backward_input, depthwise_conv2d, depthwise_conv2d_backward_input,
    depthwise_conv2d_backward_input_then, depthwise_conv2d_backward_weight, DepthwiseParams,
    Pads2d,
};
pub use forward::{add_channel_bias, conv2d, conv2d_cached, conv2d_im2col, ForwardCache};
pub use packed::{conv1x1, PackedWeight};

use crate::error::{Result, TensorError};
use crate::policy::KernelPolicy;
use crate::tensor::{check_nonzero, checked_numel};

/// Geometry of a 2-d convolution (PyTorch's `Conv2d` arguments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Stride (vertical, horizontal).
    pub stride: (usize, usize),
    /// Zero padding (vertical, horizontal).
    pub padding: (usize, usize),
    /// Dilation (vertical, horizontal).
    pub dilation: (usize, usize),
    /// Number of channel groups.
    pub groups: usize,
    /// Which kernels compute it (Winograd or not, and which variant; the
    /// highest SIMD level): not part of the convolution's definition, the
    /// results agree to rounding under every policy.
    pub kernels: KernelPolicy,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Self {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
            kernels: KernelPolicy::default(),
        }
    }
}

impl Conv2dParams {
    /// Square stride and padding, no dilation, one group, the default
    /// kernel policy.
    pub fn new(stride: usize, padding: usize) -> Self {
        Self {
            stride: (stride, stride),
            padding: (padding, padding),
            ..Self::default()
        }
    }

    /// The same convolution computed under `kernels`.
    pub fn with_kernels(self, kernels: KernelPolicy) -> Self {
        Self { kernels, ..self }
    }
}

/// Output length of a sliding window along one axis, or `None` when the
/// (dilated) window does not fit in the padded input, when `kernel`,
/// `stride` or `dilation` is zero, or when the padded input or the dilated
/// window overflows `usize` (all with checked arithmetic: never a wrap).
pub fn window_output_len(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Option<usize> {
    let span = window_span(kernel, dilation)?;
    let padded = padded_len(input, padding)?;
    (stride > 0 && padded >= span).then(|| (padded - span) / stride + 1)
}

/// The extent of a dilated window, `dilation (kernel - 1) + 1`, or `None`
/// if `kernel` or `dilation` is zero or the extent overflows.
fn window_span(kernel: usize, dilation: usize) -> Option<usize> {
    if dilation == 0 {
        return None;
    }
    kernel.checked_sub(1)?.checked_mul(dilation)?.checked_add(1)
}

/// `input + 2 padding`, or `None` if that overflows.
fn padded_len(input: usize, padding: usize) -> Option<usize> {
    padding.checked_mul(2)?.checked_add(input)
}

/// The output length along one axis of a convolution, or the error that
/// says why there is none: a padded input or a dilated kernel beyond
/// `isize::MAX` (the kernels index padded positions as `isize`), or a
/// kernel that does not fit.
fn conv_axis_len(
    op: &'static str,
    axis: &'static str,
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Result<usize> {
    let limit = isize::MAX as usize;
    let padded = padded_len(input, padding).filter(|&v| v <= limit);
    let span = window_span(kernel, dilation).filter(|&v| v <= limit);
    let (Some(padded), Some(span)) = (padded, span) else {
        return Err(TensorError::InvalidParameter {
            op,
            message: format!(
                "{axis}: input {input} with padding {padding}, kernel {kernel} with dilation \
                 {dilation}: the padded input or the dilated kernel is too large"
            ),
        });
    };
    if padded < span {
        return Err(TensorError::InvalidParameter {
            op,
            message: format!(
                "{axis}: kernel {kernel} (dilation {dilation}, extent {span}) larger than the \
                 padded input {padded} (input {input}, padding {padding})"
            ),
        });
    }
    Ok((padded - span) / stride + 1)
}

/// Checked geometry of one convolution call.
#[derive(Clone, Copy, Debug)]
pub struct ConvGeometry {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub cout: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Output height.
    pub ho: usize,
    /// Output width.
    pub wo: usize,
    /// The parameters.
    pub p: Conv2dParams,
}

impl ConvGeometry {
    /// Checks the shapes of input, weight and parameters and derives the output size.
    pub fn new(input: &[usize], weight: &[usize], p: Conv2dParams) -> Result<Self> {
        let op = "conv2d";
        let [n, cin, h, w] = *input else {
            return Err(TensorError::Rank {
                op,
                expected: 4,
                shape: input.to_vec(),
            });
        };
        let [cout, cig, kh, kw] = *weight else {
            return Err(TensorError::Rank {
                op,
                expected: 4,
                shape: weight.to_vec(),
            });
        };
        check_nonzero(op, input)?;
        check_nonzero(op, weight)?;
        if p.groups == 0
            || p.stride.0 == 0
            || p.stride.1 == 0
            || p.dilation.0 == 0
            || p.dilation.1 == 0
        {
            return Err(TensorError::InvalidParameter {
                op,
                message: format!("stride, dilation and groups must be positive, got {p:?}"),
            });
        }
        if cin % p.groups != 0 || cout % p.groups != 0 || cig.checked_mul(p.groups) != Some(cin) {
            return Err(TensorError::ShapeMismatch {
                op,
                left: input.to_vec(),
                right: weight.to_vec(),
            });
        }
        let ho = conv_axis_len(op, "height", h, kh, p.stride.0, p.padding.0, p.dilation.0)?;
        let wo = conv_axis_len(op, "width", w, kw, p.stride.1, p.padding.1, p.dilation.1)?;
        // The sizes the kernels allocate and index with, checked once here
        // (the input and weight shapes may come from arguments, as in the
        // backward passes): the input, the weight, the output, and one
        // image's unfolded input, all groups (`cin kh kw` x `ho wo`).
        checked_numel(input, op)?;
        checked_numel(weight, op)?;
        checked_numel(&[n, cout, ho, wo], op)?;
        checked_numel(&[cin, kh, kw, ho, wo], op)?;
        Ok(Self {
            n,
            cin,
            h,
            w,
            cout,
            kh,
            kw,
            ho,
            wo,
            p,
        })
    }

    /// Input channels per group.
    pub fn cin_g(&self) -> usize {
        self.cin / self.p.groups
    }

    /// Output channels per group.
    pub fn cout_g(&self) -> usize {
        self.cout / self.p.groups
    }

    /// Rows of one group's unfolded input: `cin_g * kh * kw`.
    pub fn k_rows(&self) -> usize {
        self.cin_g() * self.kh * self.kw
    }

    /// Whether this is a depthwise convolution (one group per input
    /// channel, `groups > 1`): the direct kernels of `depthwise` serve it
    /// in every direction.
    pub fn is_depthwise(&self) -> bool {
        self.p.groups > 1 && self.p.groups == self.cin
    }

    /// The depthwise kernels' parameters for this geometry.
    pub(crate) fn depthwise_params(&self) -> DepthwiseParams {
        DepthwiseParams {
            stride: self.p.stride,
            pads: Pads2d::symmetric(self.p.padding.0, self.p.padding.1),
            dilation: self.p.dilation,
        }
    }

    /// Multiply-adds of the forward pass (saturating at `usize::MAX`).
    pub fn macs(&self) -> usize {
        (self.n * self.cout * self.ho * self.wo).saturating_mul(self.k_rows())
    }

    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.p.stride == (1, 1) && self.p.padding == (0, 0)
    }

    /// A pointwise convolution with one group: a plain product per image,
    /// which [`conv1x1`] runs on a packed weight.
    fn is_packed_pointwise(&self) -> bool {
        self.is_pointwise() && self.p.groups == 1
    }

    /// Rows of the unfolded input of one group: `Cin/groups kh kw`.
    fn unfolded_rows(&self) -> usize {
        self.cin_g() * self.kh * self.kw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::Element;
    use crate::policy::{SimdCap, WinogradPolicy};
    use crate::tensor::Tensor;
    use crate::testing::rnd;

    #[test]
    fn kernel_larger_than_padded_input_is_an_error() {
        let x = Tensor::<f32>::zeros([1, 1, 2, 2]);
        let w = Tensor::<f32>::zeros([1, 1, 5, 5]);
        let e = conv2d(&x, &w, None, Conv2dParams::new(1, 1)).unwrap_err();
        assert!(matches!(
            e,
            TensorError::InvalidParameter { op: "conv2d", .. }
        ));
        let w = Tensor::<f32>::zeros([1, 2, 1, 1]);
        assert!(matches!(
            conv2d(&x, &w, None, Conv2dParams::default()),
            Err(TensorError::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn window_output_len_never_wraps() {
        assert_eq!(window_output_len(5, 3, 1, 1, 1), Some(5));
        assert_eq!(window_output_len(5, 3, 2, 0, 2), Some(1));
        assert_eq!(window_output_len(1, 2, 1, 0, usize::MAX), None);
        assert_eq!(window_output_len(1, usize::MAX, 1, 0, 2), None);
        assert_eq!(window_output_len(1, 1, 1, usize::MAX / 2 + 1, 1), None);
        assert_eq!(window_output_len(4, 0, 1, 0, 1), None);
        assert_eq!(window_output_len(4, 1, 0, 0, 1), None);
        // A huge padding that fits, with a huge stride: one window.
        assert_eq!(
            window_output_len(2, 1, usize::MAX, usize::MAX / 4, 1),
            Some(1)
        );
    }

    #[test]
    fn huge_paddings_kernels_and_dilations_are_errors() {
        let x = Tensor::<f32>::zeros([1, 1, 2, 2]);
        let w = Tensor::<f32>::zeros([1, 1, 1, 1]);
        let huge = |padding, dilation, stride| Conv2dParams {
            stride: (stride, 1),
            padding: (padding, 0),
            dilation: (dilation, 1),
            ..Conv2dParams::default()
        };
        for p in [
            huge(usize::MAX, 1, 1),
            huge(usize::MAX / 2, 1, 1),
            huge(isize::MAX as usize / 2 + 1, 1, usize::MAX),
            // The output (2^40 rows, 2^40 columns... of padding) overflows.
            Conv2dParams::new(1, 1 << 40),
        ] {
            let e = conv2d(&x, &w, None, p).unwrap_err();
            assert!(
                matches!(
                    e,
                    TensorError::InvalidParameter { op: "conv2d", .. }
                        | TensorError::TooLarge { op: "conv2d", .. }
                ),
                "{p:?}: {e}"
            );
        }
        let w2 = Tensor::<f32>::zeros([1, 1, 2, 1]);
        assert!(conv2d(&x, &w2, None, huge(0, usize::MAX, 1)).is_err());
        // Kernels near usize::MAX, through the shapes the backward passes
        // take as arguments.
        let g = Tensor::<f32>::zeros([1, 1, 2, 2]);
        for ws in [[1, 1, usize::MAX, 1], [1, 1, 1 << 40, 1 << 40]] {
            let e = conv2d_backward_weight(&x, &g, &ws, Conv2dParams::default()).unwrap_err();
            assert!(matches!(
                e,
                TensorError::InvalidParameter { .. } | TensorError::TooLarge { .. }
            ));
            assert!(ConvGeometry::new(&[1, 1, 2, 2], &ws, Conv2dParams::default()).is_err());
        }
        let e = conv2d_backward_input(&g, &w, (1 << 40, 1 << 40), Conv2dParams::default());
        assert!(e.is_err());
        let groups = Conv2dParams {
            groups: usize::MAX,
            ..Conv2dParams::default()
        };
        assert!(conv2d_backward_input(&g, &w, (2, 2), groups).is_err());
        // 2^32 images of 2^32 output channels: the output count wraps to 0.
        let e = ConvGeometry::new(
            &[1 << 32, 1, 1, 1],
            &[1 << 32, 1, 1, 1],
            Conv2dParams::default(),
        );
        assert!(matches!(e, Err(TensorError::TooLarge { .. })));
    }

    /// A padding far larger than the input, with a stride that leaves one
    /// window: every tap reads padding, the output is the bias.
    #[test]
    fn a_huge_padding_that_fits_reads_only_zeros() {
        let x = Tensor::<f64>::full([1, 1, 2, 2], 3.0);
        let w = Tensor::<f64>::full([2, 1, 1, 1], 1.0);
        let b = Tensor::from_vec([2], vec![0.5, -1.0]).unwrap();
        let p = Conv2dParams {
            stride: (1 << 42, 1 << 42),
            padding: (1 << 40, 1 << 40),
            ..Conv2dParams::default()
        };
        let y = conv2d(&x, &w, Some(&b), p).unwrap();
        assert_eq!((y.shape(), y.data()), (&[1, 2, 1, 1][..], &[0.5, -1.0][..]));
    }

    /// A small linear conv net whose layers take every path under the
    /// default policy: the stem (3 input channels: packed, unfolded),
    /// F(4x4) forward and backward (16 -> 32 at 30 x 30), a stride-2 layer
    /// (packed, unfolded; col2im backward), F(2x2) (32 -> 24 at 15 x 15), a
    /// 1 x 1 layer (packed) and a grouped one (im2col). Weights at He scale.
    fn net() -> (Tensor<f64>, Vec<(Tensor<f64>, Conv2dParams)>) {
        let grouped = Conv2dParams {
            groups: 2,
            ..Conv2dParams::new(1, 1)
        };
        let layers = [
            ([16, 3, 3, 3], Conv2dParams::new(1, 1)),
            ([32, 16, 3, 3], Conv2dParams::new(1, 1)),
            ([32, 32, 3, 3], Conv2dParams::new(2, 1)),
            ([24, 32, 3, 3], Conv2dParams::new(1, 1)),
            ([40, 24, 1, 1], Conv2dParams::default()),
            ([40, 20, 3, 3], grouped),
        ];
        let layers = layers
            .into_iter()
            .enumerate()
            .map(|(i, (shape, p))| {
                let fan_in = (shape[1] * shape[2] * shape[3]) as f64;
                let scale = (6.0 / fan_in).sqrt();
                (rnd(&shape, 10 + i as u64).map(|v| v * scale), p)
            })
            .collect();
        (rnd(&[2, 3, 30, 30], 3), layers)
    }

    /// The net's output, and the input gradient of `<output, seed>`
    /// (`seed` drawn from `rnd`), with the cached kernels (`cached`) or
    /// without, every layer's parameters under `policy`.
    fn run_net<T: Element>(
        x: &Tensor<T>,
        layers: &[(Tensor<T>, Conv2dParams)],
        policy: KernelPolicy,
        cached: Option<&[(ForwardCache<T>, BackwardInputCache<T>)]>,
    ) -> [Tensor<T>; 2] {
        let mut h = x.clone();
        let mut sides = Vec::new();
        for (i, (w, p)) in layers.iter().enumerate() {
            let p = p.with_kernels(policy);
            sides.push((h.shape()[2], h.shape()[3]));
            h = match cached {
                Some(c) => conv2d_cached(&h, w, None, p, &c[i].0),
                None => conv2d(&h, w, None, p),
            }
            .unwrap();
        }
        let mut g = rnd(h.shape(), 99).cast::<T>();
        for (i, (w, p)) in layers.iter().enumerate().rev() {
            let p = p.with_kernels(policy);
            g = match cached {
                Some(c) => conv2d_backward_input_cached(&g, w, sides[i], p, &c[i].1),
                None => conv2d_backward_input(&g, w, sides[i], p),
            }
            .unwrap();
        }
        [h, g]
    }

    fn caches(n: usize) -> Vec<(ForwardCache<f32>, BackwardInputCache<f32>)> {
        (0..n)
            .map(|_| {
                let f = ForwardCache::new();
                let b = BackwardInputCache::sharing(&f);
                (f, b)
            })
            .collect()
    }

    /// Forward and input gradient of the net under every Winograd policy
    /// and SIMD cap, with and without cached kernels, agree with the f64
    /// im2col reference; the default policy gives the same bits on every
    /// run, with fresh or warm caches; and the policies are honoured: `Off`
    /// and (where the CPU has a better micro-kernel) `Generic` give other
    /// bits than the default.
    #[test]
    fn every_policy_agrees_with_the_reference_and_the_default_is_reproducible() {
        let (x, layers) = net();
        let want = run_net(
            &x,
            &layers,
            KernelPolicy::new(WinogradPolicy::Off, SimdCap::Best),
            None,
        );
        // The f64 reference through im2col, as `conv2d_im2col` and
        // `backward_input_im2col` compute it.
        let mut h = x.clone();
        let mut sides = Vec::new();
        for (w, p) in &layers {
            sides.push((h.shape()[2], h.shape()[3]));
            h = conv2d_im2col(&h, w, None, *p).unwrap();
        }
        let mut g = rnd(h.shape(), 99);
        for (i, (w, p)) in layers.iter().enumerate().rev() {
            g = backward_input_im2col(&g, w, sides[i], *p).unwrap();
        }
        let reference = [h, g];
        for (a, b) in want.iter().zip(&reference) {
            assert!(a.max_abs_diff(b).unwrap() < 1e-10 * b.max_abs());
        }

        let x32 = x.cast::<f32>();
        let layers32: Vec<(Tensor<f32>, Conv2dParams)> =
            layers.iter().map(|(w, p)| (w.cast::<f32>(), *p)).collect();
        let mut worst = 0f64;
        for policy in KernelPolicy::all() {
            for cached in [true, false] {
                let c = caches(layers.len());
                let got = run_net(&x32, &layers32, policy, cached.then_some(&c[..]));
                for (what, (a, b)) in ["forward", "input gradient"]
                    .iter()
                    .zip(got.iter().zip(&reference))
                {
                    let err = a.cast::<f64>().max_abs_diff(b).unwrap() / b.max_abs();
                    worst = worst.max(err);
                    // Measured: at most 2.1e-6 (AVX-512 CPU).
                    assert!(
                        err < 2e-5,
                        "{policy}, cached {cached}: {what} relative error {err:e}"
                    );
                }
            }
        }
        assert!(worst > 0.0);

        let default = KernelPolicy::default();
        let c = caches(layers.len());
        let first = run_net(&x32, &layers32, default, Some(&c));
        let warm = run_net(&x32, &layers32, default, Some(&c));
        let fresh = run_net(&x32, &layers32, default, Some(&caches(layers.len())));
        for (run, what) in [(&warm, "warm caches"), (&fresh, "fresh caches")] {
            for (a, b) in run.iter().zip(&first) {
                assert!(same_bits(a, b), "default policy, {what}");
            }
        }
        let off = KernelPolicy::new(WinogradPolicy::Off, SimdCap::Best);
        let off = run_net(&x32, &layers32, off, Some(&caches(layers.len())));
        assert!(!same_bits(&off[0], &first[0]) && !same_bits(&off[1], &first[1]));
        if crate::winograd::micro_kind::<f32>(SimdCap::Best) != crate::winograd::Micro::Generic {
            let generic = KernelPolicy::new(WinogradPolicy::Auto, SimdCap::Generic);
            let generic = run_net(&x32, &layers32, generic, Some(&caches(layers.len())));
            assert!(!same_bits(&generic[0], &first[0]));
        }
    }

    fn same_bits(a: &Tensor<f32>, b: &Tensor<f32>) -> bool {
        a.shape() == b.shape()
            && a.data()
                .iter()
                .zip(b.data())
                .all(|(x, y)| x.to_bits() == y.to_bits())
    }
}
