//! The input gradient of a depthwise convolution, as a gather: one task per
//! input plane, each column phase of a row summing the taps of that phase
//! over zero-padded rows of the output gradient.
//!
//! Input column `ix` is padded column `pc = ix + left`, which tap `kj`
//! reaches from output column `ox` when `pc = ox sw + kj dw`: with `pc`
//! split as `q sw + r`, the taps of phase `r` are those with
//! `kj dw mod sw = r`, and tap `kj` reads output column
//! `q - kj dw / sw`, contiguous in `q`. Rows are the same along the
//! other axis, without the split: row `iy` gathers from the output rows
//! `(iy + top - ki dh) / sh` that are whole numbers, an arithmetic
//! progression of `ki`, with zero rows above and below the output
//! gradient's so that every row sees all of its taps. Rows `sh` apart
//! then gather with the same taps from consecutive output rows: such rows
//! are summed `R` at a time (independent sums in flight), into a
//! phase-split row buffer that is then interleaved into the input
//! gradient's rows.

use super::geometry::{checked_len, lanes_for, too_large, Geometry};
use super::planes::{run_planes, PlaneKernel};
use super::DepthwiseParams;
use crate::element::Element;
use crate::epilogue::Epilogue;
use crate::error::{Result, TensorError};
use crate::simd::{simd_level, SimdLevel};
use crate::tensor::Tensor;
use std::mem::MaybeUninit;

const OP: &str = "depthwise_conv2d_backward_input";

/// Bytes of padded output-gradient rows one task keeps at a time.
const BAND_BYTES: usize = 64 << 10;

/// Gradient of [`super::depthwise_conv2d`] with respect to its input:
/// `grad` is the output gradient `[N, C M, Ho, Wo]`, `weight`
/// `[C M, 1, KH, KW]`, `input_shape` the input's `[N, C, H, W]`; returns
/// `[N, C, H, W]`.
///
/// Each element sums, in a fixed order (the `M` channels of its input
/// channel, then the taps in row-major order, zero padding included), the
/// output-gradient elements its taps reach.
///
/// # Errors
/// As [`super::depthwise_conv2d`] for the shapes and parameters, and
/// [`TensorError::ShapeMismatch`] if `grad` is not the output shape they
/// give.
pub fn depthwise_conv2d_backward_input<T: Element>(
    grad: &Tensor<T>,
    weight: &Tensor<T>,
    input_shape: &[usize],
    p: DepthwiseParams,
) -> Result<Tensor<T>> {
    backward_input_at(simd_level(), grad, weight, input_shape, p, None)
}

/// [`depthwise_conv2d_backward_input`] with `then` (if any) applied to every
/// element of the result, in place, by the task that computed it, as soon
/// as a band of rows of an input-gradient plane is final (see
/// [`Epilogue`]): the same bits as applying it afterwards. A saliency walk
/// passes the ReLU rule below the convolution here.
///
/// # Errors
/// As [`depthwise_conv2d_backward_input`], and the first error `then`
/// returns.
pub fn depthwise_conv2d_backward_input_then<T: Element>(
    grad: &Tensor<T>,
    weight: &Tensor<T>,
    input_shape: &[usize],
    p: DepthwiseParams,
    then: Option<Epilogue<'_, T>>,
) -> Result<Tensor<T>> {
    backward_input_at(simd_level(), grad, weight, input_shape, p, then)
}

/// The input gradient at a given SIMD level (which the CPU must run).
pub(super) fn backward_input_at<T: Element>(
    level: SimdLevel,
    grad: &Tensor<T>,
    weight: &Tensor<T>,
    input_shape: &[usize],
    p: DepthwiseParams,
    then: Option<Epilogue<'_, T>>,
) -> Result<Tensor<T>> {
    let g = Geometry::new(OP, input_shape, weight.shape(), p)?;
    if grad.shape() != g.output_shape() {
        return Err(TensorError::ShapeMismatch {
            op: OP,
            left: grad.shape().to_vec(),
            right: g.output_shape().to_vec(),
        });
    }
    let args = (grad.data(), weight.data(), &g, then);
    // Blocks of 4 rows of 8 or 16, or 2 of 32, as forward.
    match lanes_for(g.w.div_ceil(g.p.stride.1)) {
        8 => backward_input::<T, 8, 4>(level, args),
        16 => backward_input::<T, 16, 4>(level, args),
        _ => backward_input::<T, 32, 2>(level, args),
    }
}

type Args<'a, T> = (&'a [T], &'a [T], &'a Geometry, Option<Epilogue<'a, T>>);

fn backward_input<T: Element, const L: usize, const R: usize>(
    level: SimdLevel,
    (grad, weight, g, then): Args<'_, T>,
) -> Result<Tensor<T>> {
    let kernel = InputGradPlanes::<T, L, R> {
        grad,
        weight,
        g,
        lay: GradLayout::new::<T>(g, L, R)?,
        then,
    };
    let work = g.h * g.w * g.m * g.taps();
    let write = |out: &mut [MaybeUninit<T>]| run_planes(level, &kernel, out, g.h * g.w, work);
    // SAFETY: `InputGradPlanes::plane` writes every element of its plane,
    // and the planes tile the output.
    unsafe { Tensor::write_whole([g.n, g.c, g.h, g.w], write) }
}

/// The taps of one column phase `r` of the input gradient.
#[derive(Clone, Debug)]
struct Phase {
    /// Phase entries `q_lo .. q_hi` are input columns (`q sw + r - left`).
    q_lo: usize,
    q_hi: usize,
    /// The taps `kj` of the phase, each with the offset `goff` of its run in
    /// a padded gradient row: entry `q` reads element `q + goff`.
    taps: Vec<(usize, usize)>,
}

/// The taps of an input row: the kernel rows `ki0, ki0 + ki_step, ...`
/// (`count` of them) reach it from padded gradient rows `oy, oy - oy_step,
/// ...` (output row `oy - zt`, zeros outside the output).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RowTaps {
    ki0: usize,
    count: usize,
    oy: usize,
}

/// The input rows `iy0 .. iy1` of a band and the padded gradient rows
/// `oy_lo .. oy_hi` they read.
#[derive(Clone, Copy, Debug)]
struct Band {
    iy0: usize,
    iy1: usize,
    oy_lo: usize,
    oy_hi: usize,
}

/// How a task lays out the padded output-gradient rows it reads, and the
/// taps of every row (the same for every plane).
#[derive(Clone, Debug)]
struct GradLayout {
    /// Zeros before the gradient's columns in a padded row: the largest
    /// `kj dw / sw`.
    off_max: usize,
    /// Elements of a padded gradient row.
    glen: usize,
    /// Gradient columns copied into a padded row (the others are never
    /// read).
    ncopy: usize,
    /// Zero rows above the output gradient's in the padded rows:
    /// `ceil((kh - 1) dh / sh)`.
    zt: usize,
    /// The bands of input rows.
    bands: Vec<Band>,
    /// Padded gradient rows per band, at most, per channel of the
    /// multiplier.
    grad_rows: usize,
    /// The column phases, at most `sw` of them.
    phases: Vec<Phase>,
    /// Step of the taps `ki` that reach one input row, and the matching
    /// (downward) step of the padded gradient rows.
    ki_step: usize,
    oy_step: usize,
    /// Elements of one phase of a row of the phase-split result buffer
    /// (entry `q` at `q`).
    plen: usize,
    /// The taps of each input row.
    row_taps: Vec<RowTaps>,
}

impl GradLayout {
    fn new<T>(g: &Geometry, lanes: usize, block_rows: usize) -> Result<Self> {
        let (sh, sw) = g.p.stride;
        let (dh, dw) = g.p.dilation;
        let (top, left) = (g.p.pads.top, g.p.pads.left);
        let overflow = || too_large(OP, &[g.h, g.w, g.kh, g.kw]);
        let off_max = g.max_phase_offset();
        let q_end = |r: usize| (left + g.w).saturating_sub(r).div_ceil(sw);
        let phases: Vec<Phase> = (0..sw.min(g.w + left))
            .map(|r| Phase {
                q_lo: left.saturating_sub(r).div_ceil(sw),
                q_hi: q_end(r),
                taps: (0..g.kw)
                    .filter(|kj| kj * dw % sw == r)
                    .map(|kj| (kj, off_max - kj * dw / sw))
                    .collect(),
            })
            .collect();
        let glen = off_max
            .checked_add(q_end(0))
            .and_then(|l| l.checked_add(lanes))
            .ok_or_else(overflow)?;
        let ncopy = g.wo.min(glen - off_max);
        let reach = (g.kh - 1) * dh;
        let zt = reach.div_ceil(sh);
        let ki_step = sh / gcd(sh, dh);
        let oy_step = ki_step * dh / sh;
        // Every input row: the first kernel row with `(pr - ki dh) / sh`
        // whole, the others every `ki_step`; padded gradient row
        // `zt + (pr - ki dh) / sh` (exact, `pr - ki dh` possibly negative).
        let row_taps = (0..g.h)
            .map(|iy| {
                let pr = iy.checked_add(top)?;
                let Some(ki0) = (0..g.kh.min(ki_step)).find(|ki| ki * dh % sh == pr % sh) else {
                    return Some(RowTaps {
                        ki0: 0,
                        count: 0,
                        oy: 0,
                    });
                };
                let at = ki0 * dh;
                let oy = if pr >= at {
                    zt.checked_add((pr - at) / sh)?
                } else {
                    zt - (at - pr) / sh
                };
                Some(RowTaps {
                    ki0,
                    count: (g.kh - 1 - ki0) / ki_step + 1,
                    oy,
                })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(overflow)?;
        // Bands of input rows whose gradient rows fit in BAND_BYTES (at
        // least one block of rows of each residue), and the gradient rows
        // each reads.
        let per_row = g.m.saturating_mul(glen);
        let budget = (BAND_BYTES / std::mem::size_of::<T>().max(1) / per_row).max(1);
        let rows = budget
            .saturating_mul(sh)
            .saturating_sub(reach)
            .max(block_rows.saturating_mul(sh))
            .clamp(1, g.h);
        let bands: Vec<Band> = (0..g.h)
            .step_by(rows)
            .map(|iy0| {
                let iy1 = (iy0 + rows).min(g.h);
                let span = row_taps[iy0..iy1].iter().filter(|t| t.count > 0);
                let oy_lo = span
                    .clone()
                    .map(|t| t.oy - (t.count - 1) * oy_step)
                    .min()
                    .unwrap_or(0);
                let oy_hi = span.map(|t| t.oy + 1).max().unwrap_or(0);
                Band {
                    iy0,
                    iy1,
                    oy_lo,
                    oy_hi: oy_hi.max(oy_lo),
                }
            })
            .collect();
        // (At least one, so that the rows split in chunks, even where no output
        // reaches the input.)
        let grad_rows = bands
            .iter()
            .map(|b| b.oy_hi - b.oy_lo)
            .max()
            .unwrap_or(0)
            .max(1);
        let plen = q_end(0).checked_add(lanes).ok_or_else(overflow)?;
        checked_len(OP, &[g.m, grad_rows, glen])?
            .checked_add(checked_len(OP, &[block_rows, phases.len(), plen])?)
            .ok_or_else(overflow)?;
        Ok(Self {
            off_max,
            glen,
            ncopy,
            zt,
            bands,
            grad_rows,
            phases,
            ki_step,
            oy_step,
            plen,
            row_taps,
        })
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The input-gradient planes of one call, in blocks of `R` rows (`sh`
/// apart) of `L` entries of a phase.
struct InputGradPlanes<'a, T, const L: usize, const R: usize> {
    grad: &'a [T],
    weight: &'a [T],
    g: &'a Geometry,
    lay: GradLayout,
    then: Option<Epilogue<'a, T>>,
}

impl<T: Element, const L: usize, const R: usize> PlaneKernel for InputGradPlanes<'_, T, L, R> {
    type Elem = T;
    type Out = MaybeUninit<T>;

    fn scratch_len(&self) -> Result<usize> {
        let lay = &self.lay;
        crate::scratch::scratch_len(
            "depthwise input gradient",
            &[
                &[self.g.m, lay.grad_rows, lay.glen],
                &[R, lay.phases.len(), lay.plen],
            ],
        )
    }

    /// Input-gradient plane `index` (image `index / C`, channel
    /// `index % C`).
    #[inline(always)]
    fn plane(&self, index: usize, out: &mut [MaybeUninit<T>], scratch: &mut [T]) -> Result<()> {
        let (g, lay) = (self.g, &self.lay);
        let (n, c) = (index / g.c, index % g.c);
        let sh = g.p.stride.0;
        let (w, wo, taps) = (g.w, g.wo, g.taps());
        let howo = g.ho * wo;
        let grads = &self.grad[(n * g.cout() + c * g.m) * howo..][..g.m * howo];
        let kernels = &self.weight[c * g.m * taps..][..g.m * taps];
        let per_channel = lay.grad_rows * lay.glen;
        let (rows, result) = scratch.split_at_mut(g.m * per_channel);
        let row_len = lay.phases.len() * lay.plen;
        for band in &lay.bands {
            for (gp, dst) in grads
                .chunks_exact(howo)
                .zip(rows.chunks_exact_mut(per_channel))
            {
                for (oy, d) in (band.oy_lo..band.oy_hi).zip(dst.chunks_exact_mut(lay.glen)) {
                    match oy.checked_sub(lay.zt).filter(|&oy| oy < g.ho) {
                        // The padding of the rows is zero from `prepare`
                        // on: only the values are copied.
                        Some(oy) => d[lay.off_max..lay.off_max + lay.ncopy]
                            .copy_from_slice(&gp[oy * wo..][..lay.ncopy]),
                        None => d.fill(T::zero()),
                    }
                }
            }
            // Rows iy0 + res, iy0 + res + sh, ...: the same taps one
            // gradient row further down each; blocks of R of them.
            let (iy0, iy1) = (band.iy0, band.iy1);
            for res in 0..sh.min(iy1 - iy0) {
                let count_in_class = (iy1 - iy0 - res).div_ceil(sh);
                for b0 in (0..count_in_class).step_by(R) {
                    let nr = R.min(count_in_class - b0);
                    let iy_of = |rr: usize| iy0 + res + (b0 + rr) * sh;
                    let t = lay.row_taps[iy_of(0)];
                    debug_assert!((1..nr).all(|rr| {
                        let u = lay.row_taps[iy_of(rr)];
                        (u.ki0, u.count) == (t.ki0, t.count) && (t.count == 0 || u.oy == t.oy + rr)
                    }));
                    self.rows_block(kernels, rows, result, t, band.oy_lo, nr);
                    for rr in 0..nr {
                        let line = &mut out[iy_of(rr) * w..][..w];
                        self.write_row(&result[rr * row_len..][..row_len], line);
                    }
                }
            }
            if let Some(then) = self.then {
                let band = &mut out[iy0 * w..iy1 * w];
                // SAFETY: the loop above wrote every element of rows
                // iy0..iy1: each row of each residue class once, and every
                // input column of a row (`write_row`).
                let band = unsafe { &mut *(band as *mut [MaybeUninit<T>] as *mut [T]) };
                then(band, index * g.h * w + iy0 * w)?;
            }
        }
        Ok(())
    }
}

impl<T: Element, const L: usize, const R: usize> InputGradPlanes<'_, T, L, R> {
    /// Sums the taps of `nr` rows into rows `0 .. nr` of `result` (phase
    /// split, entry `q` of phase `r` at `r plen + q`): rows whose taps are
    /// `t` for the first, and the same taps one gradient row further down
    /// for each next one, with the band's gradient rows from `oy_lo` on in
    /// `grad_rows`. Rows `nr .. R` recompute the first and are not stored.
    #[inline(always)]
    fn rows_block(
        &self,
        kernels: &[T],
        grad_rows: &[T],
        result: &mut [T],
        t: RowTaps,
        oy_lo: usize,
        nr: usize,
    ) {
        let (g, lay) = (self.g, &self.lay);
        let taps = g.taps();
        let per_channel = lay.grad_rows * lay.glen;
        let row_len = lay.phases.len() * lay.plen;
        let row0 = if t.count == 0 { 0 } else { t.oy - oy_lo };
        let base: [usize; R] =
            std::array::from_fn(|rr| (row0 + if rr < nr { rr } else { 0 }) * lay.glen);
        for (r, phase) in lay.phases.iter().enumerate() {
            for q0 in (phase.q_lo..phase.q_hi).step_by(L) {
                let mut acc = [[T::zero(); L]; R];
                for (k, gr) in kernels
                    .chunks_exact(taps)
                    .zip(grad_rows.chunks_exact(per_channel))
                {
                    for j in 0..t.count {
                        let kr = &k[(t.ki0 + j * lay.ki_step) * g.kw..][..g.kw];
                        let back = j * lay.oy_step * lay.glen;
                        for &(kj, goff) in &phase.taps {
                            let wv = kr[kj];
                            for (acc, &base) in acc.iter_mut().zip(&base) {
                                let run = &gr[base - back + q0 + goff..][..L];
                                for (a, &v) in acc.iter_mut().zip(run) {
                                    *a += wv * v;
                                }
                            }
                        }
                    }
                }
                for (rr, acc) in acc.iter().enumerate().take(nr) {
                    result[rr * row_len + r * lay.plen + q0..][..L].copy_from_slice(acc);
                }
            }
        }
    }
    /// Writes the input columns of a phase-split result row into `line`.
    #[inline(always)]
    fn write_row(&self, result: &[T], line: &mut [MaybeUninit<T>]) {
        let (g, lay) = (self.g, &self.lay);
        let (sw, left, w) = (g.p.stride.1, g.p.pads.left, g.w);
        if sw == 1 {
            line.write_copy_of_slice(&result[left..][..w]);
            return;
        }
        if let (2, [_, _]) = (sw, &lay.phases[..]) {
            // Input column 2j + e is entry j + (e + left) / 2 of phase
            // (e + left) mod 2.
            let at = |e: usize| ((e + left) % 2) * lay.plen + (e + left) / 2;
            let (even, odd) = (&result[at(0)..], &result[at(1)..]);
            for ((pair, &a), &b) in line.chunks_exact_mut(2).zip(even).zip(odd) {
                pair[0].write(a);
                pair[1].write(b);
            }
            if w % 2 == 1 {
                line[w - 1].write(even[w / 2]);
            }
            return;
        }
        for (r, phase) in lay.phases.iter().enumerate() {
            let entries = &result[r * lay.plen..][phase.q_lo..phase.q_hi];
            for (q, &v) in (phase.q_lo..).zip(entries) {
                line[q * sw + r - left].write(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::depthwise::Pads2d;

    /// The taps of each row are exactly those with a whole output row
    /// (padded gradient row less `zt`) and the bands' gradient rows cover
    /// them, for strides and dilations that share factors and not.
    #[test]
    fn row_taps_are_the_taps_with_a_whole_output_row() {
        for (sh, dh, kh, h, top) in [
            (2, 1, 3, 11, 1),
            (2, 2, 3, 12, 2),
            (3, 2, 5, 17, 4),
            (1, 3, 3, 9, 0),
            (1, 1, 3, 300, 1),
        ] {
            let p = DepthwiseParams {
                stride: (sh, 1),
                pads: Pads2d::from_onnx([top, 0, 1, 0]),
                dilation: (dh, 1),
            };
            let g = Geometry::new(OP, &[1, 1, h, 400], &[1, 1, kh, 1], p).unwrap();
            let lay = GradLayout::new::<f64>(&g, 8, 2).unwrap();
            for iy in 0..h {
                let pr = (iy + top) as isize;
                let want: Vec<(usize, isize)> = (0..kh)
                    .filter(|&ki| (pr - (ki * dh) as isize).rem_euclid(sh as isize) == 0)
                    .map(|ki| (ki, (pr - (ki * dh) as isize) / sh as isize))
                    .collect();
                let t = lay.row_taps[iy];
                let got: Vec<(usize, isize)> = (0..t.count)
                    .map(|j| {
                        let oy = t.oy - j * lay.oy_step;
                        (t.ki0 + j * lay.ki_step, oy as isize - lay.zt as isize)
                    })
                    .collect();
                assert_eq!(got, want, "sh {sh} dh {dh} row {iy}");
                let band = lay
                    .bands
                    .iter()
                    .find(|b| (b.iy0..b.iy1).contains(&iy))
                    .unwrap();
                for j in 0..t.count {
                    assert!((band.oy_lo..band.oy_hi).contains(&(t.oy - j * lay.oy_step)));
                }
            }
            assert!(lay.bands.len() > 1 || h < 100, "{h} rows in one band");
        }
    }
}
