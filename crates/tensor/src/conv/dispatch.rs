//! Which convolutions go through Winograd F(2x2, 3x3) instead of im2col:
//! decided by the shapes (and `SIGHTLINE_WINOGRAD`) only, never by the
//! number of threads.

use super::ConvGeometry;
use std::sync::OnceLock;

/// Whether a convolution with this geometry goes through Winograd
/// F(2x2, 3x3): with enough channels, and enough tiles (2 x 2 output blocks)
/// to pay back transforming the kernel (`min_tiles`). A function of the
/// shapes only, so a given layer always takes the same path.
pub(super) fn use_winograd(g: &ConvGeometry, min_tiles: usize) -> bool {
    let mode = winograd_mode();
    let shape_ok = g.kh == 3
        && g.kw == 3
        && g.p.stride == (1, 1)
        && g.p.dilation == (1, 1)
        && g.p.groups == 1
        && mode != WinogradMode::Off;
    if mode == WinogradMode::All {
        return shape_ok;
    }
    let tiles = g.n * g.ho.div_ceil(2) * g.wo.div_ceil(2);
    shape_ok
        && g.cin >= WINOGRAD_MIN_CHANNELS
        && g.cout >= WINOGRAD_MIN_CHANNELS
        && tiles >= min_tiles
}

/// Input and output channels from which Winograd pays (measured: below it
/// the transforms cost more than the multiplies saved).
const WINOGRAD_MIN_CHANNELS: usize = 16;

/// Tiles (per call) from which transforming the kernel on every call pays
/// (`conv2d` without a cache; measured: transforming a 512 x 512 kernel
/// costs about what Winograd saves on a 14 x 14 output; 28 x 28 wins
/// clearly).
pub(super) const WINOGRAD_MIN_TILES: usize = 100;

/// The same when the transformed kernel is cached and reused: the forward
/// pass with a [`super::ForwardCache`] (kept by the layer) and the input
/// gradient with a [`super::BackwardInputCache`]. 14 x 14 outputs (49
/// tiles) qualify, 7 x 7 (16 tiles) do not.
pub(super) const WINOGRAD_MIN_TILES_CACHED: usize = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WinogradMode {
    Off,
    Auto,
    All,
}

/// `SIGHTLINE_WINOGRAD=0` turns Winograd off (to compare against im2col),
/// `SIGHTLINE_WINOGRAD=all` uses it for every 3 x 3 stride-1 convolution it
/// can compute (to check its accuracy on small models); read once.
fn winograd_mode() -> WinogradMode {
    static MODE: OnceLock<WinogradMode> = OnceLock::new();
    *MODE.get_or_init(|| match std::env::var("SIGHTLINE_WINOGRAD").as_deref() {
        Ok("0") | Ok("off") => WinogradMode::Off,
        Ok("all") => WinogradMode::All,
        _ => WinogradMode::Auto,
    })
}
