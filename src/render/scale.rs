//! How values are stretched to a colormap: per map or over a shared range.

use super::{RenderError, Result};
use std::fmt;
use std::str::FromStr;

/// How maps are stretched to the colormap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Normalize {
    /// Each map to its own (min, max): shows the shape of every map, but
    /// hides how strong one is compared with another.
    #[default]
    PerMap,
    /// One (min, max) per method, shared by its maps over the whole run:
    /// a method's maps compare across images and classes.
    Shared,
    /// One (min, max) shared by every map of the run, across methods too
    /// (Captum issue 1103): equal values get equal colours everywhere.
    SharedAll,
}

impl Normalize {
    /// The name, as [`FromStr`] parses it.
    pub fn name(self) -> &'static str {
        match self {
            Normalize::PerMap => "per-map",
            Normalize::Shared => "shared",
            Normalize::SharedAll => "shared-all",
        }
    }
}

impl fmt::Display for Normalize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Normalize {
    type Err = RenderError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "per-map" | "per_map" | "permap" => Ok(Normalize::PerMap),
            "shared" => Ok(Normalize::Shared),
            "shared-all" | "shared_all" => Ok(Normalize::SharedAll),
            other => Err(RenderError::Invalid(format!(
                "unknown normalisation `{other}`; known: per-map, shared, shared-all"
            ))),
        }
    }
}

/// The range of values stretched to `[0, 1]`: `min` takes the colormap's
/// first colour, `max` its last.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValueRange {
    /// The value shown with the first colour.
    pub min: f32,
    /// The value shown with the last colour.
    pub max: f32,
}

impl ValueRange {
    /// The (min, max) of the finite values, or `None` when there is none.
    pub fn of(values: &[f32]) -> Option<Self> {
        Self::shared([values])
    }

    /// One (min, max) over the finite values of several maps, or `None`
    /// when none has a finite value.
    pub fn shared<'a>(maps: impl IntoIterator<Item = &'a [f32]>) -> Option<Self> {
        let mut range: Option<Self> = None;
        for &v in maps.into_iter().flatten() {
            if !v.is_finite() {
                continue;
            }
            range = Some(match range {
                None => Self { min: v, max: v },
                Some(r) => Self {
                    min: r.min.min(v),
                    max: r.max.max(v),
                },
            });
        }
        range
    }

    /// The union of two ranges.
    pub fn union(self, other: Self) -> Self {
        Self {
            min: self.min.min(other.min),
            max: self.max.max(other.max),
        }
    }

    /// `v` scaled to `[0, 1]` (clamped); 0 when the range is a single value
    /// or `v` is not finite.
    pub fn scale(self, v: f32) -> f32 {
        let span = self.max - self.min;
        if !v.is_finite() || span <= 0.0 || !span.is_finite() {
            return 0.0;
        }
        ((v - self.min) / span).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!("shared".parse::<Normalize>().unwrap(), Normalize::Shared);
        assert_eq!("per-map".parse::<Normalize>().unwrap(), Normalize::PerMap);
        assert!("global".parse::<Normalize>().is_err());
    }

    #[test]
    fn ranges_skip_non_finite_and_share() {
        let a = [1.0, f32::NAN, 3.0];
        let b = [-2.0, f32::INFINITY, 0.5];
        assert_eq!(ValueRange::of(&a), Some(ValueRange { min: 1.0, max: 3.0 }));
        let shared = ValueRange::shared([&a[..], &b[..]]).unwrap();
        assert_eq!(
            shared,
            ValueRange {
                min: -2.0,
                max: 3.0
            }
        );
        assert_eq!(ValueRange::of(&[f32::NAN]), None);
        assert_eq!(shared.scale(-2.0), 0.0);
        assert_eq!(shared.scale(3.0), 1.0);
        assert_eq!(shared.scale(0.5), 0.5);
        assert_eq!(shared.scale(9.0), 1.0);
        // A constant map is drawn with the first colour, not divided by zero.
        assert_eq!(ValueRange { min: 2.0, max: 2.0 }.scale(2.0), 0.0);
    }
}
