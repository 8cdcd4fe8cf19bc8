//! The transformed kernel `U = G g G^T` of F(2x2, 3x3), packed once per
//! weight in micro-panels of output channels for the micro-kernel.

use super::micro::{micro_kind, Micro};
use super::XI;
use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Kernel lanes transformed at once when packing (divides every panel height).
const LANES: usize = 6;

/// A 3 x 3 kernel transformed for F(2x2, 3x3) (`U = G g G^T`) and packed in
/// micro-panels: `[panel][xi][cin][mr]`, output channels padded with zeros to
/// a multiple of `mr`, the panel height of the micro-kernel chosen for this
/// CPU and element type.
#[derive(Clone, Debug)]
pub struct WinogradKernel<T> {
    pub(super) cout: usize,
    pub(super) cin: usize,
    pub(super) micro: Micro,
    pub(super) mr: usize,
    pub(super) panels: usize,
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
}

impl<T: Element> WinogradKernel<T> {
    /// The transformed kernel of a forward convolution with `weight`
    /// (Cout x Cin x 3 x 3).
    pub fn forward(weight: &Tensor<T>) -> Result<Self> {
        let [cout, cin, kh, kw] = weight.dims4("winograd kernel")?;
        check_3x3(kh, kw)?;
        let w = weight.data();
        Ok(Self::build(cout, cin, |o, i| {
            let s = &w[(o * cin + i) * 9..(o * cin + i + 1) * 9];
            std::array::from_fn(|t| s[t])
        }))
    }

    /// The transformed kernel of the convolution that computes the input
    /// gradient of a stride-1 convolution with `weight` (Cout x Cin x 3 x 3):
    /// input and output channels swapped, taps flipped.
    pub fn backward_input(weight: &Tensor<T>) -> Result<Self> {
        let [cout, cin, kh, kw] = weight.dims4("winograd kernel")?;
        check_3x3(kh, kw)?;
        let w = weight.data();
        // The new convolution maps Cout channels to Cin channels.
        Ok(Self::build(cin, cout, |o, i| {
            let s = &w[(i * cin + o) * 9..(i * cin + o + 1) * 9];
            std::array::from_fn(|t| s[8 - t])
        }))
    }

    fn build(cout: usize, cin: usize, tap: impl Fn(usize, usize) -> [T; 9] + Sync) -> Self {
        let micro = micro_kind::<T>();
        let mr = micro.mr();
        debug_assert_eq!(mr % LANES, 0);
        let panels = cout.div_ceil(mr);
        let mut data = vec![T::zero(); panels * XI * cin * mr];
        data.par_chunks_mut(XI * cin * mr)
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
                        let u = transform_kernel(&g);
                        for (xi, u) in u.iter().enumerate() {
                            let d: &mut [T; LANES] = (&mut panel[(xi * cin + i) * mr + r0..]
                                [..LANES])
                                .try_into()
                                .expect("LANES elements");
                            *d = *u;
                        }
                    }
                }
            });
        Self {
            cout,
            cin,
            micro,
            mr,
            panels,
            data,
        }
    }

    /// Packed micro-panel `p` of tile element `xi`: Cin x mr.
    pub(super) fn panel(&self, p: usize, xi: usize) -> &[T] {
        let len = self.cin * self.mr;
        let start = (p * XI + xi) * len;
        &self.data[start..start + len]
    }
}

fn check_3x3(kh: usize, kw: usize) -> Result<()> {
    if (kh, kw) != (3, 3) {
        return Err(TensorError::InvalidParameter {
            op: "winograd",
            message: format!("F(2x2, 3x3) needs a 3 x 3 kernel, got {kh} x {kw}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_must_be_3x3() {
        let w = Tensor::<f32>::zeros([2, 2, 5, 5]);
        assert!(WinogradKernel::forward(&w).is_err());
    }
}
