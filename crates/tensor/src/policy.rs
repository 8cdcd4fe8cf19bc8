//! Which kernels a computation may use: a value ([`KernelPolicy`]) carried
//! by the convolution and pooling parameters (and, above them, by the tape
//! and the model), never read from the environment, so that a library
//! user's results depend only on what the program says.
//!
//! - [`WinogradPolicy`]: which 3 x 3 stride-1 convolutions go through
//!   Winograd, and with which variant (F(2x2, 3x3) or F(4x4, 3x3)).
//! - [`SimdCap`]: the highest instruction set the hand-vectorized kernels
//!   (Winograd transforms and micro-kernels, the packed products, max
//!   pooling) may use.
//!
//! The default ([`KernelPolicy::default`]: [`WinogradPolicy::Auto`],
//! [`SimdCap::Best`]) is what the kernels were tuned for; the others exist
//! to measure and to check accuracy (`sightline bench --winograd off`,
//! `--simd avx2`). Both enums parse from and print as the names the command
//! line takes ([`std::str::FromStr`], [`std::fmt::Display`]).

use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Which 3 x 3, stride-1, dilation-1, one-group convolutions go through
/// Winograd, and with which variant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WinogradPolicy {
    /// The shapes decide (enough channels and tiles to pay for the
    /// transforms), and F(4x4, 3x3) where its kernel is cached and the
    /// output large enough to gain from it: what the kernels were tuned for.
    #[default]
    Auto,
    /// No Winograd: im2col (or the packed products) everywhere.
    Off,
    /// Winograd for every convolution it can compute, whatever the channels
    /// and tiles (to check its accuracy on small models), with the variant
    /// [`WinogradPolicy::Auto`] would pick.
    All,
    /// The layers [`WinogradPolicy::Auto`] picks, F(2x2, 3x3) only (to
    /// measure what F(4x4, 3x3) gains).
    F2,
    /// The layers [`WinogradPolicy::Auto`] picks, F(4x4, 3x3) wherever the
    /// kernel is cached (to check its accuracy); an uncached convolution
    /// keeps F(2x2, 3x3).
    F4,
}

impl WinogradPolicy {
    /// Every policy, in the order of [`WinogradPolicy::NAMES`].
    pub const ALL: [WinogradPolicy; 5] = [
        WinogradPolicy::Auto,
        WinogradPolicy::Off,
        WinogradPolicy::All,
        WinogradPolicy::F2,
        WinogradPolicy::F4,
    ];

    /// The names the policies parse from and print as.
    pub const NAMES: [&'static str; 5] = ["auto", "off", "all", "f2", "f4"];

    /// The policy's name (`auto`, `off`, `all`, `f2`, `f4`).
    pub fn name(self) -> &'static str {
        match self {
            WinogradPolicy::Auto => "auto",
            WinogradPolicy::Off => "off",
            WinogradPolicy::All => "all",
            WinogradPolicy::F2 => "f2",
            WinogradPolicy::F4 => "f4",
        }
    }
}

/// The highest instruction set the hand-vectorized kernels may use; each
/// kernel takes the best level this CPU runs at or below the cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SimdCap {
    /// The best level this CPU runs (AVX-512, AVX2 or baseline).
    #[default]
    Best,
    /// At most AVX2 (with FMA for the micro-kernels): what a CPU without
    /// AVX-512 runs.
    Avx2,
    /// The baseline kernels (portable code, no fused multiply-adds in the
    /// micro-kernels).
    Generic,
}

impl SimdCap {
    /// Every cap, in the order of [`SimdCap::NAMES`].
    pub const ALL: [SimdCap; 3] = [SimdCap::Best, SimdCap::Avx2, SimdCap::Generic];

    /// The names the caps parse from and print as.
    pub const NAMES: [&'static str; 3] = ["best", "avx2", "generic"];

    /// The cap's name (`best`, `avx2`, `generic`).
    pub fn name(self) -> &'static str {
        match self {
            SimdCap::Best => "best",
            SimdCap::Avx2 => "avx2",
            SimdCap::Generic => "generic",
        }
    }
}

/// The kernel choices of a computation: carried by [`crate::Conv2dParams`]
/// (both) and [`crate::MaxPool2dParams`] (the SIMD cap), and set from the
/// tape or the model above them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KernelPolicy {
    /// Which convolutions go through Winograd, and which variant.
    pub winograd: WinogradPolicy,
    /// The highest instruction set of the hand-vectorized kernels.
    pub simd: SimdCap,
}

impl KernelPolicy {
    /// A policy from its two parts.
    pub fn new(winograd: WinogradPolicy, simd: SimdCap) -> Self {
        Self { winograd, simd }
    }

    /// Every combination of [`WinogradPolicy`] and [`SimdCap`], the default
    /// first.
    pub fn all() -> impl Iterator<Item = KernelPolicy> {
        WinogradPolicy::ALL
            .into_iter()
            .flat_map(|w| SimdCap::ALL.into_iter().map(move |s| Self::new(w, s)))
    }
}

impl fmt::Display for WinogradPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for SimdCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for KernelPolicy {
    /// `winograd=auto simd=best`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "winograd={} simd={}", self.winograd, self.simd)
    }
}

/// A policy name that is not one of the accepted ones.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("unknown {option} policy {value:?}: expected one of {}", .accepted.join(", "))]
pub struct PolicyParseError {
    /// Which option was being parsed (`winograd` or `simd`).
    pub option: &'static str,
    /// The value given.
    pub value: String,
    /// The names accepted.
    pub accepted: &'static [&'static str],
}

/// The item of `all` whose name (`name`) is `s`, or the error naming
/// `option`, the value and the accepted names.
fn parse_named<P: Copy>(
    option: &'static str,
    s: &str,
    all: &[P],
    names: &'static [&'static str],
    name: fn(P) -> &'static str,
) -> Result<P, PolicyParseError> {
    all.iter()
        .copied()
        .find(|&p| name(p) == s)
        .ok_or_else(|| PolicyParseError {
            option,
            value: s.to_string(),
            accepted: names,
        })
}

impl FromStr for WinogradPolicy {
    type Err = PolicyParseError;

    /// `auto`, `off`, `all`, `f2` or `f4`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_named(
            "winograd",
            s,
            &WinogradPolicy::ALL,
            &WinogradPolicy::NAMES,
            WinogradPolicy::name,
        )
    }
}

impl FromStr for SimdCap {
    type Err = PolicyParseError;

    /// `best`, `avx2` or `generic`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_named("simd", s, &SimdCap::ALL, &SimdCap::NAMES, SimdCap::name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_to_their_policies() {
        for (p, name) in WinogradPolicy::ALL.into_iter().zip(WinogradPolicy::NAMES) {
            assert_eq!(p.to_string(), name);
            assert_eq!(name.parse::<WinogradPolicy>(), Ok(p));
        }
        for (c, name) in SimdCap::ALL.into_iter().zip(SimdCap::NAMES) {
            assert_eq!(c.to_string(), name);
            assert_eq!(name.parse::<SimdCap>(), Ok(c));
        }
        assert_eq!("f4".parse(), Ok(WinogradPolicy::F4));
        assert_eq!("generic".parse(), Ok(SimdCap::Generic));
    }

    #[test]
    fn a_bad_name_is_an_error_naming_it_and_the_accepted_ones() {
        let e = "F2".parse::<WinogradPolicy>().unwrap_err();
        assert_eq!(e.option, "winograd");
        assert_eq!(e.value, "F2");
        assert_eq!(
            e.to_string(),
            r#"unknown winograd policy "F2": expected one of auto, off, all, f2, f4"#
        );
        let e = "avx512".parse::<SimdCap>().unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"unknown simd policy "avx512": expected one of best, avx2, generic"#
        );
        assert!("".parse::<SimdCap>().is_err());
        assert!("0".parse::<WinogradPolicy>().is_err());
    }

    #[test]
    fn the_default_is_auto_at_the_best_level() {
        let p = KernelPolicy::default();
        assert_eq!(p, KernelPolicy::new(WinogradPolicy::Auto, SimdCap::Best));
        assert_eq!(p.to_string(), "winograd=auto simd=best");
        let all: Vec<KernelPolicy> = KernelPolicy::all().collect();
        assert_eq!(all.len(), 15);
        assert_eq!(all[0], p);
        assert!(all.contains(&KernelPolicy::new(WinogradPolicy::F4, SimdCap::Generic)));
    }
}
