//! Test support: a direct, obviously-correct convolution and its adjoint,
//! and deterministic test data.

use super::{Conv2dParams, ConvGeometry};
use crate::tensor::Tensor;

/// Direct, obviously-correct convolution for comparison.
pub(super) fn naive(x: &Tensor<f64>, w: &Tensor<f64>, p: Conv2dParams) -> Tensor<f64> {
    let g = ConvGeometry::new(x.shape(), w.shape(), p).unwrap();
    let mut out = Tensor::zeros([g.n, g.cout, g.ho, g.wo]);
    for n in 0..g.n {
        for co in 0..g.cout {
            let grp = co / g.cout_g();
            for oy in 0..g.ho {
                for ox in 0..g.wo {
                    let mut s = 0.0;
                    for ci in 0..g.cin_g() {
                        for ki in 0..g.kh {
                            for kj in 0..g.kw {
                                let iy = (oy * p.stride.0 + ki * p.dilation.0) as isize
                                    - p.padding.0 as isize;
                                let ix = (ox * p.stride.1 + kj * p.dilation.1) as isize
                                    - p.padding.1 as isize;
                                if iy < 0 || ix < 0 || iy as usize >= g.h || ix as usize >= g.w {
                                    continue;
                                }
                                let c = grp * g.cin_g() + ci;
                                s += x.data()
                                    [((n * g.cin + c) * g.h + iy as usize) * g.w + ix as usize]
                                    * w.data()[((co * g.cin_g() + ci) * g.kh + ki) * g.kw + kj];
                            }
                        }
                    }
                    out.data_mut()[((n * g.cout + co) * g.ho + oy) * g.wo + ox] = s;
                }
            }
        }
    }
    out
}

pub(super) fn seq(shape: &[usize], mul: usize) -> Tensor<f64> {
    let n: usize = shape.iter().product();
    Tensor::from_vec(
        shape.to_vec(),
        (0..n)
            .map(|i| ((i * mul) % 17) as f64 / 8.0 - 1.0)
            .collect(),
    )
    .unwrap()
}

/// `<conv(x, w), g> = <x, conv_backward_input(g, w)>` checked element by
/// element: the input gradient from the naive convolution's adjoint.
pub(super) fn naive_backward_input(
    g: &Tensor<f64>,
    w: &Tensor<f64>,
    hw: (usize, usize),
    p: Conv2dParams,
) -> Tensor<f64> {
    let [n, _, _, _] = g.dims4("t").unwrap();
    let [_, cig, _, _] = w.dims4("t").unwrap();
    let shape = [n, cig * p.groups, hw.0, hw.1];
    let len: usize = shape.iter().product();
    let mut out = Tensor::zeros(shape.to_vec());
    for i in 0..len {
        let mut e = Tensor::zeros(shape.to_vec());
        e.data_mut()[i] = 1.0;
        let y = naive(&e, w, p);
        out.data_mut()[i] = y.data().iter().zip(g.data()).map(|(a, b)| a * b).sum();
    }
    out
}
