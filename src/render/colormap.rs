//! Colormaps: matplotlib's `jet`, `viridis`, `gray` and the diverging
//! `coolwarm`, sampled like matplotlib's 256-entry lookup tables.

use super::{RenderError, Result, ValueRange};
use image::Rgb;
use std::fmt;
use std::str::FromStr;

/// A colormap: maps a value in `[0, 1]` to a colour.
///
/// Each map is sampled like matplotlib's 256-entry lookup tables: `t` is
/// quantised to `i = min(floor(256 t), 255)` and the colour is the map's
/// value at `i / 255`, rounded to 8 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Colormap {
    /// matplotlib's `jet` (dark blue, cyan, yellow, dark red), the classic
    /// saliency look of TorchRay's and Grad-CAM's figures.
    #[default]
    Jet,
    /// matplotlib's perceptually uniform `viridis` (dark purple to yellow),
    /// through the `colorous` crate.
    Viridis,
    /// Black to white.
    Gray,
    /// matplotlib's diverging `coolwarm` (Moreland 2009: blue, light grey,
    /// red), for signed maps (LRP relevance): its range is centred on zero
    /// ([`Colormap::centred`]), so 0 is grey, negative blue, positive red.
    Coolwarm,
}

impl Colormap {
    /// Every colormap.
    pub const ALL: [Colormap; 4] = [
        Colormap::Jet,
        Colormap::Viridis,
        Colormap::Gray,
        Colormap::Coolwarm,
    ];

    /// Whether the colormap is diverging (centred on zero).
    pub fn is_diverging(self) -> bool {
        self == Colormap::Coolwarm
    }

    /// The range a map is stretched from: `range` itself, or, for a
    /// diverging colormap, `[-m, m]` with `m` its largest magnitude, so that
    /// zero takes the middle colour.
    pub fn centred(self, range: ValueRange) -> ValueRange {
        if !self.is_diverging() {
            return range;
        }
        let m = range.min.abs().max(range.max.abs());
        ValueRange { min: -m, max: m }
    }

    /// The colormap's name, as [`FromStr`] parses it.
    pub fn name(self) -> &'static str {
        match self {
            Colormap::Jet => "jet",
            Colormap::Viridis => "viridis",
            Colormap::Gray => "gray",
            Colormap::Coolwarm => "coolwarm",
        }
    }

    /// The colour of `t` (clamped to `[0, 1]`; NaN is 0).
    pub fn rgb(self, t: f32) -> Rgb<u8> {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let index = ((t * 256.0) as usize).min(255);
        let x = index as f64 / 255.0;
        match self {
            Colormap::Jet => Rgb(jet(x)),
            Colormap::Viridis => {
                let c = colorous::VIRIDIS.eval_continuous(x);
                Rgb([c.r, c.g, c.b])
            }
            Colormap::Gray => Rgb([index as u8; 3]),
            Colormap::Coolwarm => Rgb([COOLWARM_RED, COOLWARM_GREEN, COOLWARM_BLUE]
                .map(|knots| (piecewise_linear(knots, x) * 255.0).round() as u8)),
        }
    }
}

/// matplotlib's `jet` segment data, (x, value) knots per channel.
const JET_RED: &[(f64, f64)] = &[
    (0.0, 0.0),
    (0.35, 0.0),
    (0.66, 1.0),
    (0.89, 1.0),
    (1.0, 0.5),
];
const JET_GREEN: &[(f64, f64)] = &[
    (0.0, 0.0),
    (0.125, 0.0),
    (0.375, 1.0),
    (0.64, 1.0),
    (0.91, 0.0),
    (1.0, 0.0),
];
const JET_BLUE: &[(f64, f64)] = &[
    (0.0, 0.5),
    (0.11, 1.0),
    (0.34, 1.0),
    (0.65, 0.0),
    (1.0, 0.0),
];

/// matplotlib's `coolwarm` segment data (Moreland's diverging map, made in
/// Msh space, at 33 control points), (x, value) knots per channel; linear
/// between, as matplotlib interpolates them.
const COOLWARM_RED: &[(f64, f64)] = &[
    (0.0, 0.2298057),
    (0.03125, 0.26623388),
    (0.0625, 0.30386891),
    (0.09375, 0.342804478),
    (0.125, 0.38301334),
    (0.15625, 0.424369608),
    (0.1875, 0.46666708),
    (0.21875, 0.509635204),
    (0.25, 0.552953156),
    (0.28125, 0.596262162),
    (0.3125, 0.639176211),
    (0.34375, 0.681291281),
    (0.375, 0.722193294),
    (0.40625, 0.761464949),
    (0.4375, 0.798691636),
    (0.46875, 0.833466556),
    (0.5, 0.865395197),
    (0.53125, 0.897787179),
    (0.5625, 0.924127593),
    (0.59375, 0.944468518),
    (0.625, 0.958852946),
    (0.65625, 0.96732803),
    (0.6875, 0.969954137),
    (0.71875, 0.966811177),
    (0.75, 0.958003065),
    (0.78125, 0.943660866),
    (0.8125, 0.923944917),
    (0.84375, 0.89904617),
    (0.875, 0.869186849),
    (0.90625, 0.834620542),
    (0.9375, 0.795631745),
    (0.96875, 0.752534934),
    (1.0, 0.705673158),
];
const COOLWARM_GREEN: &[(f64, f64)] = &[
    (0.0, 0.298717966),
    (0.03125, 0.353094838),
    (0.0625, 0.406535296),
    (0.09375, 0.458757618),
    (0.125, 0.50941904),
    (0.15625, 0.558148092),
    (0.1875, 0.604562568),
    (0.21875, 0.648280772),
    (0.25, 0.688929332),
    (0.28125, 0.726149107),
    (0.3125, 0.759599947),
    (0.34375, 0.788964712),
    (0.375, 0.813952739),
    (0.40625, 0.834302879),
    (0.4375, 0.849786142),
    (0.46875, 0.860207984),
    (0.5, 0.86541021),
    (0.53125, 0.848937047),
    (0.5625, 0.827384882),
    (0.59375, 0.800927443),
    (0.625, 0.769767752),
    (0.65625, 0.734132809),
    (0.6875, 0.694266682),
    (0.71875, 0.650421156),
    (0.75, 0.602842431),
    (0.78125, 0.551750968),
    (0.8125, 0.49730856),
    (0.84375, 0.439559467),
    (0.875, 0.378313092),
    (0.90625, 0.312874446),
    (0.9375, 0.24128379),
    (0.96875, 0.157246067),
    (1.0, 0.01555616),
];
const COOLWARM_BLUE: &[(f64, f64)] = &[
    (0.0, 0.753683153),
    (0.03125, 0.801466763),
    (0.0625, 0.84495867),
    (0.09375, 0.883725899),
    (0.125, 0.917387822),
    (0.15625, 0.945619588),
    (0.1875, 0.968154911),
    (0.21875, 0.98478814),
    (0.25, 0.995375608),
    (0.28125, 0.999836203),
    (0.3125, 0.998151185),
    (0.34375, 0.990363227),
    (0.375, 0.976574709),
    (0.40625, 0.956945269),
    (0.4375, 0.931688648),
    (0.46875, 0.901068838),
    (0.5, 0.865395561),
    (0.53125, 0.820880546),
    (0.5625, 0.774508472),
    (0.59375, 0.726736146),
    (0.625, 0.678007945),
    (0.65625, 0.628751763),
    (0.6875, 0.579375448),
    (0.71875, 0.530263762),
    (0.75, 0.481775914),
    (0.78125, 0.434243684),
    (0.8125, 0.387970225),
    (0.84375, 0.343229596),
    (0.875, 0.300267182),
    (0.90625, 0.259301199),
    (0.9375, 0.220525627),
    (0.96875, 0.184115123),
    (1.0, 0.150232812),
];

fn jet(x: f64) -> [u8; 3] {
    [JET_RED, JET_GREEN, JET_BLUE].map(|knots| (piecewise_linear(knots, x) * 255.0).round() as u8)
}

/// Linear interpolation between sorted knots (x, y), clamped at both ends.
fn piecewise_linear(knots: &[(f64, f64)], x: f64) -> f64 {
    let mut prev = knots[0];
    for &(kx, ky) in knots {
        if x <= kx {
            if kx == prev.0 {
                return ky;
            }
            return prev.1 + (ky - prev.1) * (x - prev.0) / (kx - prev.0);
        }
        prev = (kx, ky);
    }
    prev.1
}

impl fmt::Display for Colormap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Colormap {
    type Err = RenderError;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        let s = if s == "grey" { "gray".to_string() } else { s };
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                RenderError::Invalid(format!(
                    "unknown colormap `{s}`; known: jet, viridis, gray, coolwarm"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colormaps_end_points() {
        // matplotlib: jet(0) = (0, 0, 0.5), jet(1) = (0.5, 0, 0).
        assert_eq!(Colormap::Jet.rgb(0.0), Rgb([0, 0, 128]));
        assert_eq!(Colormap::Jet.rgb(1.0), Rgb([128, 0, 0]));
        // jet(0.5) at LUT index 128 (x = 128/255): green full, red and blue partial.
        let Rgb([r, g, b]) = Colormap::Jet.rgb(0.5);
        assert_eq!(g, 255);
        assert!(r > 100 && r < 140 && b > 110 && b < 150, "{r} {b}");
        // viridis: #440154 at 0, #fde725 at 1.
        assert_eq!(Colormap::Viridis.rgb(0.0), Rgb([0x44, 0x01, 0x54]));
        assert_eq!(Colormap::Viridis.rgb(1.0), Rgb([0xfd, 0xe7, 0x25]));
        assert_eq!(Colormap::Gray.rgb(0.0), Rgb([0, 0, 0]));
        assert_eq!(Colormap::Gray.rgb(1.0), Rgb([255, 255, 255]));
        assert_eq!(Colormap::Gray.rgb(0.5), Rgb([128, 128, 128]));
        // Clamped and NaN-safe.
        assert_eq!(Colormap::Gray.rgb(-3.0), Colormap::Gray.rgb(0.0));
        assert_eq!(Colormap::Gray.rgb(7.0), Colormap::Gray.rgb(1.0));
        assert_eq!(Colormap::Jet.rgb(f32::NAN), Colormap::Jet.rgb(0.0));
    }

    #[test]
    fn colormaps_match_matplotlib_luts() {
        // matplotlib's `colormaps[name](i)[:3] * 255`, rounded, at LUT indices 64, 128, 200.
        let expected = [
            (
                Colormap::Jet,
                [[0, 128, 255], [125, 255, 122], [255, 119, 0]],
            ),
            (
                Colormap::Viridis,
                [[59, 82, 139], [33, 145, 140], [112, 207, 87]],
            ),
            (Colormap::Gray, [[64; 3], [128; 3], [200; 3]]),
            (
                Colormap::Coolwarm,
                [[141, 176, 254], [221, 220, 220], [240, 139, 110]],
            ),
        ];
        for (cmap, colours) in expected {
            for (i, want) in [64, 128, 200].into_iter().zip(colours) {
                let Rgb(got) = cmap.rgb((i as f32 + 0.5) / 256.0);
                let close = got
                    .iter()
                    .zip(want)
                    .all(|(&g, w)| (i32::from(g) - w).abs() <= 1);
                assert!(close, "{cmap} at {i}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn names_parse() {
        for c in Colormap::ALL {
            assert_eq!(c.name().parse::<Colormap>().unwrap(), c);
        }
        assert_eq!("GREY".parse::<Colormap>().unwrap(), Colormap::Gray);
        assert!("hot"
            .parse::<Colormap>()
            .unwrap_err()
            .to_string()
            .contains("hot"));
    }
}
