//! The transformed kernel `U = G g G^T` of F(2x2, 3x3) or F(4x4, 3x3),
//! packed once per weight in micro-panels of output channels for the
//! micro-kernel.

#[cfg(target_arch = "x86_64")]
use super::kernel_avx512 as in_registers;
use super::micro::{micro_kind, Micro};
use super::taps::Taps;
use super::{Variant, MR, MR_AVX512};
use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::policy::SimdCap;
use crate::simd::{simd_level_capped, SimdLevel};
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// A 3 x 3 kernel transformed for F(2x2, 3x3) or F(4x4, 3x3)
/// (`U = G g G^T`) and packed in micro-panels: `[panel][xi][cin][mr]`
/// (`xi` over the 16 or 36 elements of a transformed tile), output and input
/// channels padded with zeros to a multiple of `mr`, the panel height of the
/// micro-kernel chosen for this CPU and element type under the [`SimdCap`]
/// it was made with. The kernel keeps that choice: [`super::conv3x3`] runs
/// its micro-kernel and the transforms of the same level.
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
    /// The level of the input and output transforms run with it.
    pub(super) level: SimdLevel,
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
    /// (Cout x Cin x 3 x 3), for `variant`, at the best SIMD level.
    pub fn forward_with(weight: &Tensor<T>, variant: Variant) -> Result<Self> {
        Self::forward_capped(weight, variant, SimdCap::Best)
    }

    /// [`WinogradKernel::forward_with`] for the micro-kernel and transforms
    /// of the best level at or below `simd`.
    pub fn forward_capped(weight: &Tensor<T>, variant: Variant, simd: SimdCap) -> Result<Self> {
        let [cout, cin, kh, kw] = weight.dims4("winograd kernel")?;
        check_weight(cout, cin, kh, kw)?;
        let taps = Taps::forward(weight.data(), cin);
        Ok(Self::build(variant, cout, cin, &taps, simd))
    }

    /// The transformed kernel (for `variant`) of the convolution that
    /// computes the input gradient of a stride-1 convolution with `weight`
    /// (Cout x Cin x 3 x 3): input and output channels swapped, taps
    /// flipped; at the best SIMD level.
    pub fn backward_input_with(weight: &Tensor<T>, variant: Variant) -> Result<Self> {
        Self::backward_input_capped(weight, variant, SimdCap::Best)
    }

    /// [`WinogradKernel::backward_input_with`] for the micro-kernel and
    /// transforms of the best level at or below `simd`.
    pub fn backward_input_capped(
        weight: &Tensor<T>,
        variant: Variant,
        simd: SimdCap,
    ) -> Result<Self> {
        let [cout, cin, kh, kw] = weight.dims4("winograd kernel")?;
        check_weight(cout, cin, kh, kw)?;
        // The new convolution maps Cout channels to Cin channels.
        let taps = Taps::backward_input(weight.data(), cin);
        Ok(Self::build(variant, cin, cout, &taps, simd))
    }

    /// Whether this kernel is the one a build under `simd` would make: the
    /// same micro-kernel (hence layout) and transform level. A cached kernel
    /// that is not is not used under that cap.
    pub(crate) fn built_for(&self, simd: SimdCap) -> bool {
        self.micro == micro_kind::<T>(simd) && self.level == simd_level_capped(simd)
    }

    fn build(variant: Variant, cout: usize, cin: usize, taps: &Taps<'_, T>, simd: SimdCap) -> Self {
        // The weight's shape was checked (`dims4`), so this holds.
        assert!(
            taps.covers(cout, cin),
            "winograd kernel: taps outside the weight"
        );
        let micro = micro_kind::<T>(simd);
        let mr = micro.mr();
        let panels = cout.div_ceil(mr);
        let cin_pad = cin.div_ceil(mr) * mr;
        let panel_len = variant.xi() * cin_pad * mr;
        let shape = PanelShape {
            variant,
            cout,
            cin,
            cin_pad,
        };
        let level = simd_level_capped(simd);
        let mut data: Vec<T> = Vec::with_capacity(panels * panel_len);
        data.spare_capacity_mut()[..panels * panel_len]
            .par_chunks_mut(panel_len)
            .enumerate()
            .for_each(|(p, panel)| match mr {
                // SAFETY: the level runs on this CPU (`simd_level_capped`), the
                // taps cover the kernels (asserted).
                MR_AVX512 => unsafe {
                    dispatch_panel::<T, MR_AVX512>(level, &shape, p, taps, panel)
                },
                MR => unsafe { dispatch_panel::<T, MR>(level, &shape, p, taps, panel) },
                _ => unreachable!("micro-panels are {MR} or {MR_AVX512} rows"),
            });
        // SAFETY: `build_panel` writes each panel's chunk whole: every tile
        // element, every (padded) input channel, all `mr` rows.
        unsafe { data.set_len(panels * panel_len) };
        Self {
            variant,
            cout,
            cin,
            micro,
            level,
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

fn check_weight(cout: usize, cin: usize, kh: usize, kw: usize) -> Result<()> {
    let message = if (kh, kw) != (3, 3) {
        format!("Winograd F(m, 3x3) needs a 3 x 3 kernel, got {kh} x {kw}")
    } else if cout == 0 || cin == 0 {
        format!("a {cout} x {cin} x 3 x 3 weight has no kernel to transform")
    } else {
        return Ok(());
    };
    Err(TensorError::InvalidParameter {
        op: "winograd",
        message,
    })
}

/// What a micro-panel of a kernel is built for.
pub(super) struct PanelShape {
    pub(super) variant: Variant,
    pub(super) cout: usize,
    pub(super) cin: usize,
    pub(super) cin_pad: usize,
}

/// # Safety
/// `level` must run on this CPU; `taps` must cover the shape's kernels
/// ([`Taps::covers`]).
unsafe fn dispatch_panel<T: Element, const L: usize>(
    level: SimdLevel,
    shape: &PanelShape,
    p: usize,
    taps: &Taps<'_, T>,
    panel: &mut [MaybeUninit<T>],
) {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => build_panel_avx512::<T, L>(shape, p, taps, panel),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => build_panel_avx2::<T, L>(shape, p, taps, panel),
        SimdLevel::Baseline => build_panel::<T, L>(shape, p, panel, |o0, lanes, i| {
            taps.gather_scalar(o0, lanes, i)
        }),
    }
}

/// # Safety
/// The CPU must have AVX-512F; `taps` must cover the shape's kernels.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn build_panel_avx512<T: Element, const L: usize>(
    shape: &PanelShape,
    p: usize,
    taps: &Taps<'_, T>,
    panel: &mut [MaybeUninit<T>],
) {
    if taps.vector_gathers::<L>() {
        // SAFETY: AVX-512F (this function's contract), `vector_gathers`
        // checked just above, and the taps cover the shape's kernels.
        unsafe { in_registers::build_panel::<T, L>(shape, p, taps, panel) }
    } else {
        build_panel::<T, L>(shape, p, panel, |o0, lanes, i| {
            taps.gather_scalar(o0, lanes, i)
        })
    }
}

/// # Safety
/// The CPU must have AVX2; `taps` must cover the shape's kernels.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn build_panel_avx2<T: Element, const L: usize>(
    shape: &PanelShape,
    p: usize,
    taps: &Taps<'_, T>,
    panel: &mut [MaybeUninit<T>],
) {
    if taps.vector_gathers::<L>() {
        // SAFETY: as in `build_panel_avx512`, with AVX2.
        build_panel::<T, L>(shape, p, panel, |o0, lanes, i| unsafe {
            taps.gather_avx2(o0, lanes, i)
        })
    } else {
        build_panel::<T, L>(shape, p, panel, |o0, lanes, i| {
            taps.gather_scalar(o0, lanes, i)
        })
    }
}

/// Writes micro-panel `p` (`[xi][cin_pad][L]`, `L` = the panel height)
/// whole: the transformed taps of output channels `p L ..` (zero past
/// `cout`), zero rows for the padding input channels. Each input channel's
/// `L` kernels are transformed side by side, one lane each, so the
/// arithmetic runs `L` wide and each result row is one contiguous store;
/// every lane does the operations of the one-kernel transform in the same
/// order, so the values do not depend on `L` or the instruction set.
/// `gather(o0, lanes, i)` gives the taps of kernels `(o0 + l, i)` for the
/// first `lanes` lanes, zero in the others.
#[inline(always)]
fn build_panel<T: Element, const L: usize>(
    shape: &PanelShape,
    p: usize,
    panel: &mut [MaybeUninit<T>],
    gather: impl Fn(usize, usize, usize) -> [[T; L]; 9],
) {
    let &PanelShape {
        variant,
        cout,
        cin,
        cin_pad,
    } = shape;
    let mut put = |xi: usize, i: usize, u: &[T; L]| {
        let at = (xi * cin_pad + i) * L;
        for (d, &v) in panel[at..at + L].iter_mut().zip(u) {
            d.write(v);
        }
    };
    for i in 0..cin {
        // The taps of L output channels side by side.
        let g = gather(p * L, L.min(cout.saturating_sub(p * L)), i);
        match variant {
            Variant::F2x2 => {
                for (xi, u) in transform_kernel(&g).iter().enumerate() {
                    put(xi, i, u);
                }
            }
            Variant::F4x4 => {
                for (xi, u) in transform_kernel_f4(&g).iter().enumerate() {
                    put(xi, i, u);
                }
            }
        }
    }
    for xi in 0..variant.xi() {
        for i in cin..cin_pad {
            put(xi, i, &[T::zero(); L]);
        }
    }
}

/// `G g G^T` with `G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]`,
/// for L kernels at once (`g[tap][lane]`, taps row-major).
#[inline(always)]
fn transform_kernel<T: Element, const L: usize>(g: &[[T; L]; 9]) -> [[T; L]; 16] {
    let half = T::from_f64_lossy(0.5);
    let zero = [T::zero(); L];
    // G g: 4 x 3.
    let mut gg = [zero; 12];
    for c in 0..3 {
        for l in 0..L {
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
        for l in 0..L {
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
/// [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]]`, for L kernels at
/// once (`g[tap][lane]`, taps row-major). Computed in `f64` and rounded once
/// (the constants are not exact in binary), so an `f32` kernel gets the
/// correctly rounded transform.
#[inline(always)]
fn transform_kernel_f4<T: Element, const L: usize>(g: &[[T; L]; 9]) -> [[T; L]; 36] {
    const G: [[f64; 3]; 6] = F4_G;
    let k: [[f64; L]; 9] =
        std::array::from_fn(|t| std::array::from_fn(|l| g[t][l].to_f64_lossless()));
    // G g: 6 x 3.
    let mut gg = [[[0f64; L]; 3]; 6];
    for (r, gr) in G.iter().enumerate() {
        for c in 0..3 {
            for l in 0..L {
                gg[r][c][l] = gr[0] * k[c][l] + gr[1] * k[3 + c][l] + gr[2] * k[6 + c][l];
            }
        }
    }
    // (G g) G^T: 6 x 6.
    let mut u = [[T::zero(); L]; 36];
    for r in 0..6 {
        for (c, gc) in G.iter().enumerate() {
            for l in 0..L {
                let v = gg[r][0][l] * gc[0] + gg[r][1][l] * gc[1] + gg[r][2][l] * gc[2];
                u[6 * r + c][l] = T::from_f64_lossy(v);
            }
        }
    }
    u
}

/// `G` of F(4x4, 3x3): the kernel's values at the points 0, 1, -1, 2, -2
/// and infinity, with the interpolation's scale folded in.
pub(super) const F4_G: [[f64; 3]; 6] = [
    [0.25, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Tap `t` of kernel `(o, i)`, read from a weight by hand.
    type TapAt<'a, T> = dyn Fn(usize, usize, usize) -> T + 'a;

    /// Builds micro-panel `p` of a shape into a buffer.
    type BuildPanel<'a, T> = dyn Fn(usize, &PanelShape, &mut [MaybeUninit<T>]) + 'a;

    /// Every build of a micro-panel (each instruction set, 12 and 6 lanes,
    /// for a convolution and for its input gradient, whose taps the vector
    /// gathers read with other strides) holds, in each lane, the bits of the
    /// one-kernel transform of the taps read from the weight by hand, and
    /// zeros past the output and input channels. 14 and 22 output channels
    /// leave partial panels of 2 and 10 lanes (an AVX2 gather of 2 of 4).
    fn panels_are_the_one_kernel_transform<T: Element>() {
        for (cout, cin) in [(14, 5), (22, 3)] {
            let w: Vec<T> = (0..cout * cin * 9)
                .map(|k| T::from_f64_lossy(((k * 31 + k / 9 * 7) % 17) as f64 / 7.0 - 1.1))
                .collect();
            // A `cout x cin` weight, and a `cin x cout` one whose input
            // gradient has `cout` output channels, its taps flipped.
            let forward = |o: usize, i: usize, t: usize| w[(o * cin + i) * 9 + t];
            let flipped = |o: usize, i: usize, t: usize| w[(i * cout + o) * 9 + 8 - t];
            let layouts: [(Taps<'_, T>, &TapAt<'_, T>); 2] = [
                (Taps::forward(&w, cin), &forward),
                (Taps::backward_input(&w, cout), &flipped),
            ];
            for (taps, tap) in layouts {
                assert!(taps.covers(cout, cin));
                for variant in [Variant::F2x2, Variant::F4x4] {
                    check_panels(&taps, tap, variant, cout, cin);
                }
            }
        }
    }

    fn check_panels<T: Element>(
        taps: &Taps<'_, T>,
        tap: &TapAt<'_, T>,
        variant: Variant,
        cout: usize,
        cin: usize,
    ) {
        let xis = variant.xi();
        let one = |o: usize, i: usize| -> Vec<T> {
            let g: [[T; 1]; 9] = std::array::from_fn(|t| [tap(o, i, t)]);
            match variant {
                Variant::F2x2 => transform_kernel(&g).iter().map(|u| u[0]).collect(),
                Variant::F4x4 => transform_kernel_f4(&g).iter().map(|u| u[0]).collect(),
            }
        };
        for level in SimdLevel::available() {
            let check = |l: usize, build: &BuildPanel<'_, T>| {
                let cin_pad = cin.div_ceil(l) * l;
                let shape = PanelShape {
                    variant,
                    cout,
                    cin,
                    cin_pad,
                };
                for p in 0..cout.div_ceil(l) {
                    let mut panel =
                        vec![MaybeUninit::new(T::from_f64_lossy(f64::NAN)); xis * cin_pad * l];
                    build(p, &shape, &mut panel);
                    for xi in 0..xis {
                        for i in 0..cin_pad {
                            for r in 0..l {
                                // SAFETY: initialised above (NaN) and rewritten.
                                let got =
                                    unsafe { panel[(xi * cin_pad + i) * l + r].assume_init() };
                                let o = p * l + r;
                                // The same bits where a kernel is; zero (of
                                // either sign: F(4x4)'s negative constants
                                // make -0) in the padding.
                                let bits = |v: T| v.to_f64_lossless().to_bits();
                                let right = if o < cout && i < cin {
                                    bits(got) == bits(one(o, i)[xi])
                                } else {
                                    got == T::zero()
                                };
                                assert!(
                                    right && got.is_finite(),
                                    "{variant:?} {level:?} L {l} p {p} xi {xi} i {i} r {r}"
                                );
                            }
                        }
                    }
                }
            };
            // SAFETY: `available` lists only levels this CPU runs; the taps
            // cover the kernels (asserted by the caller).
            check(MR_AVX512, &|p, sh, panel| unsafe {
                dispatch_panel::<T, MR_AVX512>(level, sh, p, taps, panel)
            });
            check(MR, &|p, sh, panel| unsafe {
                dispatch_panel::<T, MR>(level, sh, p, taps, panel)
            });
        }
    }

    #[test]
    fn panels_are_the_one_kernel_transform_f32() {
        panels_are_the_one_kernel_transform::<f32>();
    }

    #[test]
    fn panels_are_the_one_kernel_transform_f64() {
        panels_are_the_one_kernel_transform::<f64>();
    }

    #[test]
    fn kernel_must_be_3x3() {
        let w = Tensor::<f32>::zeros([2, 2, 5, 5]);
        assert!(WinogradKernel::forward(&w).is_err());
    }

    /// A weight without output or input channels is an error, not a panic.
    #[test]
    fn weight_must_have_channels() {
        for shape in [[0, 4, 3, 3], [4, 0, 3, 3]] {
            let w = Tensor::<f32>::zeros(shape);
            for k in [
                WinogradKernel::forward(&w),
                WinogradKernel::backward_input(&w),
            ] {
                let e = k.unwrap_err().to_string();
                assert!(e.contains("no kernel to transform"), "{shape:?}: {e}");
            }
        }
    }
}
