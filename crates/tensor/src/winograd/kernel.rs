//! The transformed kernel `U = G g G^T` of F(2x2, 3x3) or F(4x4, 3x3),
//! packed once per weight in micro-panels of output channels for the
//! micro-kernel.

use super::micro::{micro_kind, Micro};
use super::Variant;
use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Kernel lanes transformed at once when packing (divides every panel height).
const LANES: usize = 6;

/// A 3 x 3 kernel transformed for F(2x2, 3x3) or F(4x4, 3x3)
/// (`U = G g G^T`) and packed in micro-panels: `[panel][xi][cin][mr]`
/// (`xi` over the 16 or 36 elements of a transformed tile), output and input
/// channels padded with zeros to a multiple of `mr`, the panel height of the
/// micro-kernel chosen for this CPU and element type.
///
/// An F(2x2, 3x3) kernel also serves the input gradient of its
/// convolution, read transposed (see [`super::conv3x3_input_gradient`]):
/// the input channels' padding makes its `mr x mr` blocks whole.
#[derive(Clone, Debug)]
pub struct WinogradKernel<T> {
    pub(super) variant: Variant,
    pub(super) cout: usize,
    pub(super) cin: usize,
    pub(super) micro: Micro,
    pub(super) mr: usize,
    pub(super) panels: usize,
    /// Input channels padded to a multiple of `mr`.
    cin_pad: usize,
    data: Vec<T>,
}

impl<T> WinogradKernel<T> {
    /// Output channels of the convolution.
    pub fn out_channels(&self) -> usize {
        self.cout
    }

    /// Input channels of the convolution.
    pub fn in_channels(&self) -> usize {
        self.cin
    }

    /// The Winograd variant the kernel was transformed for.
    pub fn variant(&self) -> Variant {
        self.variant
    }
}

impl<T: Element> WinogradKernel<T> {
    /// The F(2x2, 3x3) kernel of a forward convolution with `weight`
    /// (Cout x Cin x 3 x 3).
    pub fn forward(weight: &Tensor<T>) -> Result<Self> {
        Self::forward_with(weight, Variant::F2x2)
    }

    /// The F(2x2, 3x3) kernel of the convolution that computes the input
    /// gradient of a stride-1 convolution with `weight`; see
    /// [`WinogradKernel::backward_input_with`].
    pub fn backward_input(weight: &Tensor<T>) -> Result<Self> {
        Self::backward_input_with(weight, Variant::F2x2)
    }

    /// The transformed kernel of a forward convolution with `weight`
    /// (Cout x Cin x 3 x 3), for `variant`.
    pub fn forward_with(weight: &Tensor<T>, variant: Variant) -> Result<Self> {
        let [cout, cin, kh, kw] = weight.dims4("winograd kernel")?;
        check_3x3(kh, kw)?;
        let w = weight.data();
        Ok(Self::build(variant, cout, cin, |o, i| {
            let s = &w[(o * cin + i) * 9..(o * cin + i + 1) * 9];
            std::array::from_fn(|t| s[t])
        }))
    }

    /// The transformed kernel (for `variant`) of the convolution that
    /// computes the input gradient of a stride-1 convolution with `weight`
    /// (Cout x Cin x 3 x 3): input and output channels swapped, taps flipped.
    pub fn backward_input_with(weight: &Tensor<T>, variant: Variant) -> Result<Self> {
        let [cout, cin, kh, kw] = weight.dims4("winograd kernel")?;
        check_3x3(kh, kw)?;
        let w = weight.data();
        // The new convolution maps Cout channels to Cin channels.
        Ok(Self::build(variant, cin, cout, |o, i| {
            let s = &w[(i * cin + o) * 9..(i * cin + o + 1) * 9];
            std::array::from_fn(|t| s[8 - t])
        }))
    }

    fn build(
        variant: Variant,
        cout: usize,
        cin: usize,
        tap: impl Fn(usize, usize) -> [T; 9] + Sync,
    ) -> Self {
        let micro = micro_kind::<T>();
        let mr = micro.mr();
        debug_assert_eq!(mr % LANES, 0);
        let panels = cout.div_ceil(mr);
        let xis = variant.xi();
        let cin_pad = cin.div_ceil(mr) * mr;
        let mut data = vec![T::zero(); panels * xis * cin_pad * mr];
        data.par_chunks_mut(xis * cin_pad * mr)
            .enumerate()
            .for_each(|(p, panel)| {
                // The taps of LANES output channels side by side.
                let mut g = [[T::zero(); LANES]; 9];
                for i in 0..cin {
                    for r0 in (0..mr).step_by(LANES) {
                        for l in 0..LANES {
                            let o = p * mr + r0 + l;
                            let k = if o < cout { tap(o, i) } else { [T::zero(); 9] };
                            for (gt, kt) in g.iter_mut().zip(k) {
                                gt[l] = kt;
                            }
                        }
                        let mut u = [[T::zero(); LANES]; 36];
                        match variant {
                            Variant::F2x2 => u[..16].copy_from_slice(&transform_kernel(&g)),
                            Variant::F4x4 => u = transform_kernel_f4(&g),
                        }
                        for (xi, u) in u[..xis].iter().enumerate() {
                            let d: &mut [T; LANES] = (&mut panel[(xi * cin_pad + i) * mr + r0..]
                                [..LANES])
                                .try_into()
                                .expect("LANES elements");
                            *d = *u;
                        }
                    }
                }
            });
        Self {
            variant,
            cout,
            cin,
            micro,
            mr,
            panels,
            cin_pad,
            data,
        }
    }

    /// Packed micro-panel `p` of tile element `xi`: Cin x mr.
    pub(super) fn panel(&self, p: usize, xi: usize) -> &[T] {
        let start = (p * self.variant.xi() + xi) * self.cin_pad * self.mr;
        &self.data[start..start + self.cin * self.mr]
    }

    /// The transposed and flipped kernel (input and output channels swapped,
    /// taps flipped: the kernel of the input gradient) for a transposed read
    /// ([`super::micro::TransposedKernel`]): its micro-panel `q` (rows `q mr
    /// ..`, input channels of this kernel) of tile element `xi`, as the
    /// slice from its first block and the stride between blocks. F(2x2)
    /// only.
    ///
    /// Flipping the taps maps `G g` to `P G g`, `P` swapping the first and
    /// last of the 4 points (0 and infinity; `G` evaluates at 0, 1, -1,
    /// infinity, and the flip exchanges the first and last coefficients), so
    /// element `(i, j)` of the flipped kernel is element `(P i, P j)` of this
    /// one.
    pub(super) fn flipped_panel(&self, q: usize, xi: usize) -> (&[T], usize) {
        debug_assert_eq!(self.variant, Variant::F2x2);
        const P: [usize; 4] = [3, 1, 2, 0];
        let pxi = 4 * P[xi / 4] + P[xi % 4];
        let stride = self.variant.xi() * self.cin_pad * self.mr;
        (
            &self.data[pxi * self.cin_pad * self.mr + q * self.mr * self.mr..],
            stride,
        )
    }

    /// Micro-panels of the flipped kernel (its output channels, this
    /// kernel's input channels, in groups of `mr`).
    pub(super) fn flipped_panels(&self) -> usize {
        self.cin_pad / self.mr
    }
}

fn check_3x3(kh: usize, kw: usize) -> Result<()> {
    if (kh, kw) != (3, 3) {
        return Err(TensorError::InvalidParameter {
            op: "winograd",
            message: format!("Winograd F(m, 3x3) needs a 3 x 3 kernel, got {kh} x {kw}"),
        });
    }
    Ok(())
}

/// `G g G^T` with `G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]`,
/// for LANES kernels at once (`g[tap][lane]`, taps row-major).
fn transform_kernel<T: Element>(g: &[[T; LANES]; 9]) -> [[T; LANES]; 16] {
    let half = T::from_f64_lossy(0.5);
    let zero = [T::zero(); LANES];
    // G g: 4 x 3.
    let mut gg = [zero; 12];
    for c in 0..3 {
        for l in 0..LANES {
            let (g0, g1, g2) = (g[c][l], g[3 + c][l], g[6 + c][l]);
            gg[c][l] = g0;
            gg[3 + c][l] = (g0 + g1 + g2) * half;
            gg[6 + c][l] = (g0 - g1 + g2) * half;
            gg[9 + c][l] = g2;
        }
    }
    // (G g) G^T: 4 x 4.
    let mut u = [zero; 16];
    for r in 0..4 {
        for l in 0..LANES {
            let (a, b, c) = (gg[3 * r][l], gg[3 * r + 1][l], gg[3 * r + 2][l]);
            u[4 * r][l] = a;
            u[4 * r + 1][l] = (a + b + c) * half;
            u[4 * r + 2][l] = (a - b + c) * half;
            u[4 * r + 3][l] = c;
        }
    }
    u
}

/// `G g G^T` of F(4x4, 3x3) (points 0, 1, -1, 2, -2, infinity) with
/// `G = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6],
/// [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]]`, for LANES kernels at
/// once (`g[tap][lane]`, taps row-major). Computed in `f64` and rounded once
/// (the constants are not exact in binary), so an `f32` kernel gets the
/// correctly rounded transform.
fn transform_kernel_f4<T: Element>(g: &[[T; LANES]; 9]) -> [[T; LANES]; 36] {
    const G: [[f64; 3]; 6] = [
        [0.25, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];
    let mut u = [[T::zero(); LANES]; 36];
    for l in 0..LANES {
        let k: [f64; 9] = std::array::from_fn(|t| g[t][l].to_f64_lossless());
        // G g: 6 x 3.
        let mut gg = [[0f64; 3]; 6];
        for (r, gr) in G.iter().enumerate() {
            for c in 0..3 {
                gg[r][c] = gr[0] * k[c] + gr[1] * k[3 + c] + gr[2] * k[6 + c];
            }
        }
        // (G g) G^T: 6 x 6.
        for r in 0..6 {
            for (c, gc) in G.iter().enumerate() {
                let v = gg[r][0] * gc[0] + gg[r][1] * gc[1] + gg[r][2] * gc[2];
                u[6 * r + c][l] = T::from_f64_lossy(v);
            }
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_must_be_3x3() {
        let w = Tensor::<f32>::zeros([2, 2, 5, 5]);
        assert!(WinogradKernel::forward(&w).is_err());
    }
}
