//! The weight gradient of a depthwise convolution: one task per output
//! channel, summing over the batch in `L` lanes per tap (a run of `L`
//! output columns at a time), a few rows at a time in separate partial
//! sums, the lanes added up in order at the end.

use super::geometry::{Columns, Geometry};
use super::planes::{run_planes, PlaneKernel};
use super::DepthwiseParams;
use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::simd::{simd_level, SimdLevel};
use crate::tensor::Tensor;

const OP: &str = "depthwise_conv2d_backward_weight";

/// Gradient of [`super::depthwise_conv2d`] with respect to its weight,
/// summed over the batch: `grad` is the output gradient `[N, C M, Ho, Wo]`,
/// `x` the input `[N, C, H, W]`, `weight_shape` `[C M, 1, KH, KW]`;
/// returns a tensor of `weight_shape`.
///
/// The order of the sums is fixed by the shapes and the element type alone
/// (not the thread count nor the SIMD level): per tap, the products of a
/// row go by runs of `L` output columns (`L` from 8 to 32, by `Wo`; the
/// last run of a row is its last `L` columns, those of the runs before
/// with a zero gradient) to one of a few partial sums of `L` lanes (by
/// row), which are added to the tap's lanes band by band, and the lanes
/// added up in order at the end.
///
/// # Errors
/// As [`super::depthwise_conv2d`] for the shapes and parameters, and
/// [`TensorError::ShapeMismatch`] if `grad` is not the output shape they
/// give.
pub fn depthwise_conv2d_backward_weight<T: Element>(
    grad: &Tensor<T>,
    x: &Tensor<T>,
    weight_shape: &[usize],
    p: DepthwiseParams,
) -> Result<Tensor<T>> {
    backward_weight_at(simd_level(), grad, x, weight_shape, p)
}

/// The weight gradient at a given SIMD level (which the CPU must run).
pub(super) fn backward_weight_at<T: Element>(
    level: SimdLevel,
    grad: &Tensor<T>,
    x: &Tensor<T>,
    weight_shape: &[usize],
    p: DepthwiseParams,
) -> Result<Tensor<T>> {
    let g = Geometry::new(OP, x.shape(), weight_shape, p)?;
    if grad.shape() != g.output_shape() {
        return Err(TensorError::ShapeMismatch {
            op: OP,
            left: grad.shape().to_vec(),
            right: g.output_shape().to_vec(),
        });
    }
    let (grad, x) = (grad.data(), x.data());
    // Runs no wider than the rows (but 8); blocks of 4 rows of 8 or 16, or
    // 2 of 32.
    match g.wo {
        0..16 => backward_weight::<T, 8, 4>(level, grad, x, &g),
        16..32 => backward_weight::<T, 16, 4>(level, grad, x, &g),
        _ => backward_weight::<T, 32, 2>(level, grad, x, &g),
    }
}

fn backward_weight<T: Element, const L: usize, const R: usize>(
    level: SimdLevel,
    grad: &[T],
    x: &[T],
    g: &Geometry,
) -> Result<Tensor<T>> {
    let kernel = WeightGradBlocks::<T, L, R> {
        grad,
        x,
        g,
        cols: Columns::new::<T>(OP, g, L, R)?,
    };
    let mut gw = Tensor::zeros([g.cout(), 1, g.kh, g.kw]);
    let work = g.n * g.ho * g.wo * g.taps();
    run_planes(level, &kernel, gw.data_mut(), g.taps(), work)?;
    Ok(gw)
}

/// The weight gradient of one call, a block of `kh kw` per output channel;
/// `R` rows at a time, `L` lanes each.
struct WeightGradBlocks<'a, T, const L: usize, const R: usize> {
    grad: &'a [T],
    x: &'a [T],
    g: &'a Geometry,
    cols: Columns,
}

impl<T: Element, const L: usize, const R: usize> WeightGradBlocks<'_, T, L, R> {
    /// Elements of an output-gradient row as the kernel copies it: its
    /// whole runs of `L`, then one run for the rest.
    fn padded_width(&self) -> usize {
        self.g.wo.div_ceil(L) * L
    }
}

impl<T: Element, const L: usize, const R: usize> PlaneKernel for WeightGradBlocks<'_, T, L, R> {
    type Elem = T;
    type Out = T;

    fn scratch_len(&self) -> Result<usize> {
        crate::scratch::scratch_len(
            "depthwise weight gradient",
            &[
                &[self.cols.band_len],
                &[self.cols.band_rows, self.padded_width()],
                &[self.g.taps(), L],
            ],
        )
    }

    /// The taps of output channel `o`: for each band of output rows and
    /// each tap, the products of each block of `R` rows summed in `R`
    /// partial sums of `L` lanes (row `rr` of a block in sum `rr`, the rows
    /// past the last whole block in sum 0), added to the tap's lanes in
    /// order; the lanes are added up in order at the end.
    #[inline(always)]
    fn plane(&self, o: usize, out: &mut [T], scratch: &mut [T]) -> Result<()> {
        let (g, cols) = (self.g, &self.cols);
        let gl = self.padded_width();
        let (band, rest) = scratch.split_at_mut(cols.band_len);
        let (grows, lanes) = rest.split_at_mut(cols.band_rows * gl);
        let lanes = &mut lanes[..g.taps() * L];
        lanes.fill(T::zero());
        let (hw, howo, wo) = (g.h * g.w, g.ho * g.wo, g.wo);
        let (sh, dh, row_len) = (g.p.stride.0, g.p.dilation.0, cols.row_len);
        // The last, partial run of a row: rows at least L wide take the last
        // L columns, those already summed with a zero gradient, so that
        // every product is of a column of the output; narrower rows mask
        // the input past `wo` instead (`keep`): a product with the zero
        // gradient there would be NaN, not 0, for an infinite input that
        // is no term of the sum.
        let full = wo - wo % L;
        let overlap = full < wo && wo >= L;
        let last = if overlap { wo - L } else { full };
        let keep: [bool; L] = std::array::from_fn(|l| l < wo - full);
        for n in 0..g.n {
            let src = &self.x[(n * g.c + o / g.m) * hw..][..hw];
            let gp = &self.grad[(n * g.cout() + o) * howo..][..howo];
            for oy0 in (0..g.ho).step_by(cols.band_rows) {
                let oy1 = (oy0 + cols.band_rows).min(g.ho);
                let rows = Columns::rows_in(g, oy1 - oy0).unwrap_or(0);
                cols.fill(g, src, oy0 * sh, rows, band);
                // The gradient rows: whole runs of L, then the last L
                // columns with those of the whole runs zeroed (or, narrower
                // than L, the row and zeros).
                for (d, s) in grows
                    .chunks_exact_mut(gl)
                    .zip(gp[oy0 * wo..oy1 * wo].chunks_exact(wo))
                {
                    d[..full].copy_from_slice(&s[..full]);
                    if overlap {
                        d[full..].copy_from_slice(&s[wo - L..]);
                        d[full..full + L - (wo - full)].fill(T::zero());
                    } else if full < wo {
                        d[..wo].copy_from_slice(s);
                    }
                }
                let nrows = oy1 - oy0;
                let whole = nrows - nrows % R;
                let x_at = |r: usize, c0: usize| &grows[r * gl + c0..][..L];
                for (tap, lane) in lanes.chunks_exact_mut(L).enumerate() {
                    let (ki, kj) = (tap / g.kw, tap % g.kw);
                    let start = ki * dh * row_len + cols.tap_start[kj];
                    let y_at = |r: usize, c0: usize| &band[r * sh * row_len + start + c0..][..L];
                    let mut acc = [[T::zero(); L]; R];
                    // (Written out loop by loop, with no helper taking or
                    // returning the sums: so they stay in registers.)
                    for r0 in (0..whole).step_by(R) {
                        for c0 in (0..full).step_by(L) {
                            for (rr, acc) in acc.iter_mut().enumerate() {
                                let (x, y) = (x_at(r0 + rr, c0), y_at(r0 + rr, c0));
                                for ((a, &x), &y) in acc.iter_mut().zip(x).zip(y) {
                                    *a += x * y;
                                }
                            }
                        }
                        if overlap {
                            for (rr, acc) in acc.iter_mut().enumerate() {
                                let (x, y) = (x_at(r0 + rr, full), y_at(r0 + rr, last));
                                for ((a, &x), &y) in acc.iter_mut().zip(x).zip(y) {
                                    *a += x * y;
                                }
                            }
                        } else if full < wo {
                            for (rr, acc) in acc.iter_mut().enumerate() {
                                let (x, y) = (x_at(r0 + rr, full), y_at(r0 + rr, full));
                                for (((a, &x), &y), &k) in acc.iter_mut().zip(x).zip(y).zip(&keep) {
                                    *a += x * if k { y } else { T::zero() };
                                }
                            }
                        }
                    }
                    // The rows past the last whole block, in sum 0.
                    for r in whole..nrows {
                        for c0 in (0..full).step_by(L) {
                            let (x, y) = (x_at(r, c0), y_at(r, c0));
                            for ((a, &x), &y) in acc[0].iter_mut().zip(x).zip(y) {
                                *a += x * y;
                            }
                        }
                        if overlap {
                            let (x, y) = (x_at(r, full), y_at(r, last));
                            for ((a, &x), &y) in acc[0].iter_mut().zip(x).zip(y) {
                                *a += x * y;
                            }
                        } else if full < wo {
                            let (x, y) = (x_at(r, full), y_at(r, full));
                            for (((a, &x), &y), &k) in acc[0].iter_mut().zip(x).zip(y).zip(&keep) {
                                *a += x * if k { y } else { T::zero() };
                            }
                        }
                    }
                    for acc in &acc {
                        for (l, &a) in lane.iter_mut().zip(acc) {
                            *l += a;
                        }
                    }
                }
            }
        }
        for (d, lane) in out.iter_mut().zip(lanes.chunks_exact(L)) {
            *d = lane.iter().fold(T::zero(), |s, &v| s + v);
        }
        Ok(())
    }
}
