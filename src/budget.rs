//! The memory budget of a run: every large allocation is estimated before
//! it is made and refused when it would not fit.
//!
//! The default budget is [`DEFAULT_FRACTION`] of the memory the kernel says
//! is available (`MemAvailable` in `/proc/meminfo`, else `MemTotal`), or
//! [`FALLBACK_BYTES`] where neither can be read; `--max-memory SIZE`
//! (`4G`, `512M`, `1.5GiB`, or plain bytes) sets it. What one image of
//! `explain` needs is its decoded picture, the resized picture and the
//! resize's intermediate, the model input and one pass of the model
//! ([`crate::footprint`]); see `docs/reliability.md` for every other check.

use crate::footprint::pass_footprint;
use sightline_layers::Model;
use std::fmt;
use thiserror::Error;

/// Share of the available memory a run may plan to use by default (3/4:
/// the estimates are upper bounds, and the rest of the machine keeps room).
pub const DEFAULT_FRACTION: f64 = 0.75;

/// The budget when the machine's memory cannot be read (8 GiB).
pub const FALLBACK_BYTES: u64 = 8 << 30;

/// Memory of the process besides what the estimates count: the binary, the
/// thread pools, the allocator's slack (64 MiB).
pub const FIXED_BYTES: u64 = 64 << 20;

/// An allocation (or the allocations of one step) over the budget.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{what} needs about {}, more than the memory budget of {} ({source_note})", Bytes(*needed), Bytes(*budget))]
pub struct BudgetError {
    /// What asked for the memory.
    pub what: String,
    /// Bytes needed (an upper bound; `u64::MAX` when the count overflows).
    pub needed: u64,
    /// The budget in bytes.
    pub budget: u64,
    /// Where the budget came from.
    pub source_note: String,
}

/// A byte count printed with a binary unit (`1.5 GiB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == u64::MAX {
            return f.write_str("more than 16 EiB");
        }
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        let mut v = self.0 as f64;
        let mut u = 0;
        while v >= 1024.0 && u + 1 < units.len() {
            v /= 1024.0;
            u += 1;
        }
        if u == 0 {
            write!(f, "{} bytes", self.0)
        } else {
            write!(f, "{v:.1} {}", units[u])
        }
    }
}

/// How much memory a run may plan to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    bytes: u64,
    source_note: String,
}

/// Parses a size: a number with an optional unit `K`, `M`, `G`, `T` (powers
/// of 1024; `KiB`, `MB`, `g` ... accepted alike) or none (bytes): `4G`,
/// `512M`, `1.5GiB`, `1000000`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "`{s}`: expected a size such as 4G, 512M or 1000000 (bytes)"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}`: expected a size such as 4G, 512M or 1000000 (bytes)"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!(
            "`{s}`: the size must be at least 1 byte and below 16 EiB"
        ));
    }
    Ok(bytes as u64)
}

/// The `MemAvailable` (else `MemTotal`) line of `/proc/meminfo` text, in bytes.
pub fn meminfo_bytes(text: &str) -> Option<(u64, &'static str)> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    };
    field("MemAvailable:")
        .map(|b| (b, "MemAvailable"))
        .or_else(|| field("MemTotal:").map(|b| (b, "MemTotal")))
}

impl MemoryBudget {
    /// A budget of `bytes`, set by the user.
    pub fn new(bytes: u64) -> Self {
        Self {
            bytes,
            source_note: "--max-memory".into(),
        }
    }

    /// The default budget: [`DEFAULT_FRACTION`] of the machine's available
    /// memory (see the module's documentation).
    pub fn from_machine() -> Self {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self::from_meminfo(&text)
    }

    /// The default budget from `/proc/meminfo` text.
    pub fn from_meminfo(text: &str) -> Self {
        match meminfo_bytes(text) {
            Some((bytes, field)) => Self {
                bytes: (bytes as f64 * DEFAULT_FRACTION) as u64,
                source_note: format!(
                    "{:.0}% of {field} {}; --max-memory SIZE changes it",
                    DEFAULT_FRACTION * 100.0,
                    Bytes(bytes)
                ),
            },
            None => Self {
                bytes: FALLBACK_BYTES,
                source_note:
                    "the default, the machine's memory being unknown; --max-memory SIZE changes it"
                        .into(),
            },
        }
    }

    /// `--max-memory`: the size given, else the machine's default.
    pub fn from_option(size: Option<u64>) -> Self {
        size.map_or_else(Self::from_machine, Self::new)
    }

    /// The budget in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Refuses `needed` bytes (plus [`FIXED_BYTES`]) over the budget; `what`
    /// names what needs them.
    pub fn check(&self, what: impl Into<String>, needed: u64) -> Result<(), BudgetError> {
        if needed.saturating_add(FIXED_BYTES) <= self.bytes {
            return Ok(());
        }
        Err(BudgetError {
            what: what.into(),
            needed,
            budget: self.bytes,
            source_note: self.source_note.clone(),
        })
    }
}

/// Saturating product of sizes times `elem` bytes.
pub fn product(elem: u64, dims: &[u64]) -> u64 {
    dims.iter().fold(elem, |acc, &d| acc.saturating_mul(d))
}

/// Bytes of one model pass on `input_shape` (see [`pass_footprint`]), with
/// a second copy of the weights when `transformed_weights` (the excitation
/// rules recompute the layers with the positive parts of the weights).
/// A model whose memory cannot be estimated counts its input only.
pub fn model_pass_bytes(
    model: &Model<f32>,
    input_shape: &[usize],
    transformed_weights: bool,
) -> u64 {
    let threads = rayon::current_num_threads();
    match pass_footprint(model, input_shape, threads) {
        Ok(f) => {
            let extra = if transformed_weights { f.weights } else { 0 };
            f.total().saturating_add(extra)
        }
        Err(_) => product(
            4,
            &input_shape.iter().map(|&d| d as u64).collect::<Vec<_>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("64 kb").unwrap(), 64 << 10);
        assert_eq!(parse_size("1000000").unwrap(), 1_000_000);
        for bad in ["", "G", "-1G", "4X", "1e400", "0", "nan", "20000000T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_is_a_fraction_of_available_memory() {
        let text = "MemTotal:       24683772 kB\nMemFree: 1 kB\nMemAvailable:   4194304 kB\n";
        let b = MemoryBudget::from_meminfo(text);
        assert_eq!(b.bytes(), 3 << 30);
        let total_only = MemoryBudget::from_meminfo("MemTotal: 1048576 kB\n");
        assert_eq!(total_only.bytes(), 3 << 28);
        assert_eq!(MemoryBudget::from_meminfo("").bytes(), FALLBACK_BYTES);
    }

    #[test]
    fn checks_name_what_is_over() {
        let b = MemoryBudget::new(1 << 30);
        assert!(b.check("x", 100 << 20).is_ok());
        let e = b
            .check("the image a.png after resizing", 2 << 30)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the image a.png after resizing needs about 2.0 GiB, more than the memory budget \
             of 1.0 GiB (--max-memory)"
        );
        assert!(b
            .check("y", u64::MAX)
            .unwrap_err()
            .to_string()
            .contains("16 EiB"));
        assert_eq!(Bytes(512).to_string(), "512 bytes");
        assert_eq!(product(4, &[u64::MAX, 2]), u64::MAX);
    }
}
