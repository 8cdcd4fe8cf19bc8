//! Which convolutions go through Winograd instead of im2col, and which
//! variant (F(2x2, 3x3) or F(4x4, 3x3)): decided by the shapes and the
//! [`WinogradPolicy`] in the parameters ([`super::Conv2dParams::kernels`])
//! only, never by the environment or the number of threads.

use super::ConvGeometry;
use crate::policy::WinogradPolicy;
use crate::winograd::Variant;

/// Whether a convolution with this geometry goes through Winograd: with
/// enough channels, and enough tiles (2 x 2 output blocks) to pay back
/// transforming the kernel (`min_tiles`, counted per image, so that a batch
/// takes the path each of its images takes alone and gives their bits). A
/// function of the shapes and the policy only, so a given layer always
/// takes the same path: under
/// [`WinogradPolicy::Off`] none does, under [`WinogradPolicy::All`] every
/// one Winograd can compute (3 x 3, stride 1, dilation 1, one group).
pub(super) fn use_winograd(g: &ConvGeometry, min_tiles: usize) -> bool {
    let policy = g.p.kernels.winograd;
    let shape_ok = g.kh == 3
        && g.kw == 3
        && g.p.stride == (1, 1)
        && g.p.dilation == (1, 1)
        && g.p.groups == 1
        && policy != WinogradPolicy::Off;
    if policy == WinogradPolicy::All {
        return shape_ok;
    }
    let tiles = g.ho.div_ceil(2) * g.wo.div_ceil(2);
    shape_ok
        && g.cin >= WINOGRAD_MIN_CHANNELS
        && g.cout >= WINOGRAD_MIN_CHANNELS
        && tiles >= min_tiles
}

/// The Winograd variant of a convolution whose kernel transform is cached
/// (the forward pass with a [`super::ForwardCache`], the input gradient with
/// a [`super::BackwardInputCache`]), or `None` for im2col: Winograd as
/// [`use_winograd`] decides, then F(4x4, 3x3) where [`f4_pays`] and
/// F(2x2, 3x3) elsewhere. [`WinogradPolicy::F2`] (or
/// [`WinogradPolicy::F4`]) makes every Winograd convolution use that
/// variant.
pub(super) fn cached_winograd_variant(g: &ConvGeometry, min_tiles: usize) -> Option<Variant> {
    if !use_winograd(g, min_tiles) {
        return None;
    }
    Some(match g.p.kernels.winograd {
        WinogradPolicy::F2 => Variant::F2x2,
        WinogradPolicy::F4 => Variant::F4x4,
        _ if f4_pays(g) => Variant::F4x4,
        _ => Variant::F2x2,
    })
}

/// Whether F(4x4, 3x3) beats F(2x2, 3x3) on this shape: outputs of at least
/// 56 x 56, or at least 28 x 28 with at most 128 x 128 channels. Measured on
/// VGG16's and ResNet-50's 3 x 3 layers (16 to 512 channels, 1 and 2
/// threads): 1.1x to 1.55x faster from 56 x 56 up, and at 28 x 28 with
/// 128 channels; about even or slower at 28 x 28 with 256 or 512 channels
/// (its kernel, 4x the weight, is reused over only 49 tiles per image);
/// slower at 14 x 14 and 7 x 7, where its 4 x 4 tiles overhang the output
/// by a third or more.
fn f4_pays(g: &ConvGeometry) -> bool {
    let side = g.ho.min(g.wo);
    side >= F4_MIN_SIDE || (side >= F4_MIN_SIDE_SMALL && g.cin * g.cout <= F4_SMALL_MAX_CHANNELS2)
}

/// The Winograd variant of a stride-1 input gradient, given the geometry
/// `tg` of its transposed convolution (which carries the forward
/// convolution's policy): as [`cached_winograd_variant`], except that under
/// [`WinogradPolicy::Auto`] F(4x4, 3x3) is kept only where its kernel is
/// small ([`F4_INPUT_GRADIENT_MAX_KERNEL`]). An F(2x2) input gradient reads the
/// forward pass's F(2x2) kernel transposed, with no kernel of its own; an
/// F(4x4) one needs its own (4x the weight), which for VGG16's 256 x 256
/// layers at 56 x 56 is 9.4 MB each: there F(2x2) costs ~1.5 ms per layer
/// and pass (measured 1.1-1.25x slower) and saves 19 MB of the peak.
pub(super) fn input_gradient_winograd_variant(
    tg: &ConvGeometry,
    min_tiles: usize,
) -> Option<Variant> {
    let variant = cached_winograd_variant(tg, min_tiles)?;
    let f4_kernel = Variant::F4x4.xi() * tg.cin * tg.cout;
    Some(
        if variant == Variant::F4x4
            && tg.p.kernels.winograd == WinogradPolicy::Auto
            && f4_kernel > F4_INPUT_GRADIENT_MAX_KERNEL
        {
            Variant::F2x2
        } else {
            variant
        },
    )
}

/// Whether a convolution's Winograd kernel for `variant` (of geometry
/// `g`, the forward pass's, for either direction) is kept in its cache, or
/// transformed on each call and dropped after it: an F(2x2) kernel is
/// dropped when it is large (at least [`TRANSIENT_MIN_KERNEL`] elements)
/// and serves many tiles per image (at least [`TRANSIENT_MIN_TILES`]),
/// where the transform costs little beside the product and the memory
/// counts.
///
/// - F(2x2): all six of VGG16's layers with 512 output channels (16.25 MiB
///   each, 8.3 for 256 -> 512): 90 MiB less at the peak, for 0.4 ms (256 ->
///   512) and 0.75 ms (512 -> 512) of transform per call and direction (2
///   threads, AVX-512); end to end, interleaved processes measured no cost
///   the host's noise resolves (VGG16 Grad-CAM -0.2% and +0.5%, guided
///   backprop -1.8% to +5.8%, with the 14 x 14 kernels made per call).
/// - F(4x4) kernels are always kept. Made per call by the same rule,
///   VGG16's two 256 x 256 layers at 56 x 56 (9.6 MiB each) would save 19
///   MiB (Grad-CAM 614 -> 594 MiB) for 2 x 0.77 ms per call: measured
///   +1.6% on Grad-CAM and +1.9% on guided backprop (interleaved
///   processes, 30 pairs), with the memory targets already met and the
///   time ones closer.
///
/// ResNet-50 keeps every kernel: its kernels as large serve 16 tiles.
pub(super) fn keeps_kernel(g: &ConvGeometry, variant: Variant) -> bool {
    let tiles = g.ho.div_ceil(2) * g.wo.div_ceil(2);
    let elements = variant.xi() * g.cin * g.cout;
    variant == Variant::F4x4 || elements < TRANSIENT_MIN_KERNEL || tiles < TRANSIENT_MIN_TILES
}

/// Elements (2 Mi, 8 MiB in `f32`) from which an F(2x2) kernel may be
/// transformed per call instead of kept ([`keeps_kernel`]).
const TRANSIENT_MIN_KERNEL: usize = 2 << 20;

/// Tiles per image from which it is ([`keeps_kernel`]): outputs from
/// 13 x 13.
const TRANSIENT_MIN_TILES: usize = 49;

/// Elements of the largest F(4x4) input-gradient kernel kept (2 Mi
/// elements, 8 MiB in `f32`): VGG16's 128 x 256 layer (4.7 MB) keeps
/// F(4x4), its 256 x 256 layers take F(2x2).
const F4_INPUT_GRADIENT_MAX_KERNEL: usize = 2 << 20;

/// Output side from which F(4x4, 3x3) wins at any channel count.
const F4_MIN_SIDE: usize = 56;
/// Output side from which F(4x4, 3x3) wins with few channels.
const F4_MIN_SIDE_SMALL: usize = 28;
/// Input times output channels up to which "few".
const F4_SMALL_MAX_CHANNELS2: usize = 128 * 128;

/// Input and output channels from which Winograd pays (measured: below it
/// the transforms cost more than the multiplies saved).
const WINOGRAD_MIN_CHANNELS: usize = 16;

/// Tiles (per call) from which transforming the kernel on every call pays
/// (`conv2d` without a cache; measured in round 1: transforming a 512 x
/// 512 kernel cost about what Winograd saves on a 14 x 14 output; 28 x 28
/// won clearly). The transform has been about 3x faster since round 10
/// (vector gathers), which has not been measured against this threshold.
pub(super) const WINOGRAD_MIN_TILES: usize = 100;

/// The same when the transformed kernel is cached and reused: the forward
/// pass with a [`super::ForwardCache`] (kept by the layer) and the input
/// gradient with a [`super::BackwardInputCache`]. 7 x 7 outputs (16 tiles)
/// qualify: on ResNet-50's 512 x 512 layers at 7 x 7, F(2x2) took 1.3-1.6
/// ms forward and 1.6-2.1 ms backward against 2.1 ms each through im2col
/// (2 threads), and its one kernel (16 MB) replaces the two packed ones
/// (9.4 MB each); 5 x 5 (9 tiles) does not.
pub(super) const WINOGRAD_MIN_TILES_CACHED: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::Conv2dParams;
    use crate::policy::{KernelPolicy, SimdCap};

    fn geometry(cin: usize, cout: usize, side: usize) -> ConvGeometry {
        geometry_under(cin, cout, side, WinogradPolicy::Auto)
    }

    fn geometry_under(cin: usize, cout: usize, side: usize, w: WinogradPolicy) -> ConvGeometry {
        let p = Conv2dParams::new(1, 1).with_kernels(KernelPolicy::new(w, SimdCap::Best));
        ConvGeometry::new(&[1, cin, side, side], &[cout, cin, 3, 3], p).unwrap()
    }

    /// The path depends on each image's tiles, not the batch's: a 7 x 7
    /// output (16 tiles per image) and a 5 x 5 one (9) decide alike at
    /// batch 1, 2 and 16, so a batch gives the bits of its images alone.
    #[test]
    fn the_batch_size_does_not_change_the_path() {
        let p = Conv2dParams::new(1, 1);
        for side in [5, 7, 14] {
            let alone = ConvGeometry::new(&[1, 64, side, side], &[64, 64, 3, 3], p).unwrap();
            for n in [2, 16] {
                let batch = ConvGeometry::new(&[n, 64, side, side], &[64, 64, 3, 3], p).unwrap();
                for min in [WINOGRAD_MIN_TILES, WINOGRAD_MIN_TILES_CACHED] {
                    assert_eq!(
                        use_winograd(&alone, min),
                        use_winograd(&batch, min),
                        "{side} {n}"
                    );
                    assert_eq!(
                        cached_winograd_variant(&alone, min),
                        cached_winograd_variant(&batch, min)
                    );
                }
            }
        }
        // The 5 x 5 layer stays on im2col (9 tiles), the 7 x 7 one is on
        // Winograd with a cached kernel (16 tiles).
        let g = |n, side| ConvGeometry::new(&[n, 64, side, side], &[64, 64, 3, 3], p).unwrap();
        assert!(!use_winograd(&g(16, 5), WINOGRAD_MIN_TILES_CACHED));
        assert!(use_winograd(&g(1, 7), WINOGRAD_MIN_TILES_CACHED));
    }

    /// What each policy decides, in both directions, on a layer `Auto`
    /// sends through F(4x4) forward (64 x 64 at 56 x 56), one it sends
    /// through F(2x2) in the input gradient (256 x 256 at 56 x 56), one it
    /// keeps on im2col (8 channels) and one Winograd cannot compute
    /// (5 x 5).
    #[test]
    fn each_policy_decides_as_documented() {
        use Variant::{F2x2, F4x4};
        use WinogradPolicy::{All, Auto, Off, F2, F4};
        let min = WINOGRAD_MIN_TILES_CACHED;
        // (policy, forward and input gradient of 64 x 64, of 256 x 256, of
        // 8 x 8 channels)
        let want = [
            (Auto, [Some(F4x4); 2], [Some(F4x4), Some(F2x2)], [None; 2]),
            (Off, [None; 2], [None; 2], [None; 2]),
            (All, [Some(F4x4); 2], [Some(F4x4); 2], [Some(F4x4); 2]),
            (F2, [Some(F2x2); 2], [Some(F2x2); 2], [None; 2]),
            (F4, [Some(F4x4); 2], [Some(F4x4); 2], [None; 2]),
        ];
        for (policy, small, large, thin) in want {
            for (c, expected) in [(64, small), (256, large), (8, thin)] {
                let g = geometry_under(c, c, 56, policy);
                let got = [
                    cached_winograd_variant(&g, min),
                    input_gradient_winograd_variant(&g, min),
                ];
                assert_eq!(got, expected, "{policy} {c} channels");
                assert_eq!(use_winograd(&g, min), expected[0].is_some());
            }
            // A 5 x 5 kernel never goes through Winograd.
            let p = Conv2dParams::new(1, 2).with_kernels(KernelPolicy::new(policy, SimdCap::Best));
            let g = ConvGeometry::new(&[1, 64, 56, 56], &[64, 64, 5, 5], p).unwrap();
            assert_eq!(cached_winograd_variant(&g, min), None, "{policy}");
        }
        // Without a cache only `All` takes small outputs (7 x 7, 16 tiles).
        for policy in WinogradPolicy::ALL {
            let g = geometry_under(64, 64, 7, policy);
            assert_eq!(
                use_winograd(&g, WINOGRAD_MIN_TILES),
                policy == All,
                "{policy}"
            );
        }
    }

    /// Where F(4x4) wins, the forward pass takes it; the input gradient keeps
    /// it only while its own kernel is small, and reads the forward F(2x2)
    /// kernel instead on VGG16's 256 x 256 layers.
    #[test]
    fn input_gradient_keeps_f4_only_with_a_small_kernel() {
        let min = WINOGRAD_MIN_TILES_CACHED;
        for (cin, cout, side, backward) in [
            (64, 64, 224, Variant::F4x4),
            (128, 256, 56, Variant::F4x4),
            (256, 256, 56, Variant::F2x2),
            (512, 512, 28, Variant::F2x2),
        ] {
            let g = geometry(cin, cout, side);
            assert_eq!(input_gradient_winograd_variant(&g, min), Some(backward));
            let forward = if side >= F4_MIN_SIDE {
                Variant::F4x4
            } else {
                Variant::F2x2
            };
            assert_eq!(cached_winograd_variant(&g, min), Some(forward));
        }
        assert_eq!(
            input_gradient_winograd_variant(&geometry(512, 512, 7), min),
            Some(Variant::F2x2)
        );
        assert_eq!(
            input_gradient_winograd_variant(&geometry(512, 512, 5), min),
            None
        );
    }

    /// Only large F(2x2) kernels over many tiles are made per call:
    /// VGG16's 512-output-channel layers at 28 x 28 and 14 x 14 (49 tiles,
    /// as at 13 x 13), not 12 x 12 (36), not its 256 x 256 layers at
    /// 56 x 56 (F(2x2) in the input gradient, F(4x4) forward) or ResNet-50's
    /// 7 x 7 ones.
    #[test]
    fn large_kernels_over_many_tiles_are_made_per_call() {
        use Variant::{F2x2, F4x4};
        for (cin, cout, side, variant, keeps) in [
            (512, 512, 28, F2x2, false),
            (256, 512, 28, F2x2, false),
            (512, 512, 14, F2x2, false),
            (512, 512, 13, F2x2, false),
            (512, 512, 12, F2x2, true),
            (512, 512, 7, F2x2, true),
            (256, 256, 56, F2x2, true),
            (256, 256, 14, F2x2, true),
            (256, 256, 56, F4x4, true),
            (512, 512, 28, F4x4, true),
        ] {
            assert_eq!(
                keeps_kernel(&geometry(cin, cout, side), variant),
                keeps,
                "{cin} {cout} {side} {variant:?}"
            );
        }
    }
}
