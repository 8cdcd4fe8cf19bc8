//! Byte-level mutations (the AFL / libFuzzer set): bit flips, byte sets,
//! small arithmetic, interesting integers, truncation, removed, duplicated
//! and inserted chunks, splicing with another corpus entry, dictionary
//! tokens and replaced decimal numbers. Every choice comes from the caller's
//! seeded RNG, so an input is a function of (seed, execution index).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Integers that sit on the edges parsers get wrong (as little- or
/// big-endian, 1, 2, 4 or 8 bytes wide).
pub const INTERESTING: [u64; 20] = [
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    16,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// Decimal numbers swapped in for a run of digits in text formats.
pub const INTERESTING_DECIMALS: [&str; 22] = [
    "0",
    "1",
    "-1",
    "2",
    "3",
    "7",
    "64",
    "255",
    "65536",
    "2147483647",
    "2147483648",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "1e999",
    "-1e999",
    "0.5",
    "-0",
    "1e-320",
];

/// The byte mutator of one target: its corpus (for splicing), its
/// dictionary and the largest input it makes.
pub struct Mutator<'a> {
    /// Corpus entries spliced in.
    pub seeds: &'a [Vec<u8>],
    /// Tokens inserted or overwritten (keywords, tags, field names).
    pub dictionary: &'a [Vec<u8>],
    /// Inputs are cut to this length.
    pub max_len: usize,
}

impl Mutator<'_> {
    /// Applies 1, 2, 4 or 8 random mutations to `data`.
    pub fn mutate(&self, rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
        let rounds = 1usize << rng.gen_range(0..4);
        for _ in 0..rounds {
            self.mutate_once(rng, data);
        }
        data.truncate(self.max_len);
    }

    /// One mutation.
    pub fn mutate_once(&self, rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
        if data.is_empty() {
            let n = rng.gen_range(1..16);
            data.extend((0..n).map(|_| rng.gen::<u8>()));
            return;
        }
        let len = data.len();
        match rng.gen_range(0..14) {
            0 => {
                let i = rng.gen_range(0..len);
                data[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => {
                let i = rng.gen_range(0..len);
                data[i] = rng.gen();
            }
            2 => {
                let i = rng.gen_range(0..len);
                let d = rng.gen_range(1..=35u8);
                data[i] = if rng.gen() {
                    data[i].wrapping_add(d)
                } else {
                    data[i].wrapping_sub(d)
                };
            }
            3 => self.interesting_integer(rng, data),
            4 => data.truncate(rng.gen_range(0..len)),
            5 => {
                let (a, b) = chunk(rng, len);
                data.drain(a..b);
            }
            6 => {
                let (a, b) = chunk(rng, len);
                let piece = data[a..b].to_vec();
                let at = rng.gen_range(0..=data.len());
                data.splice(at..at, piece);
            }
            7 => {
                let n = rng.gen_range(1..=16);
                let at = rng.gen_range(0..=len);
                let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                data.splice(at..at, bytes);
            }
            8 => {
                // Copy a chunk over another place of the same input.
                let (a, b) = chunk(rng, len);
                let piece = data[a..b].to_vec();
                let at = rng.gen_range(0..len);
                let end = (at + piece.len()).min(len);
                data[at..end].copy_from_slice(&piece[..end - at]);
            }
            9 => self.splice(rng, data),
            10 | 11 => self.dictionary_token(rng, data),
            12 => replace_number(rng, data),
            _ => {
                // Repeat one byte (long runs, deep nesting).
                let i = rng.gen_range(0..len);
                let n = 1usize << rng.gen_range(1..10);
                let at = rng.gen_range(0..=len);
                data.splice(at..at, std::iter::repeat_n(data[i], n));
            }
        }
    }

    fn interesting_integer(&self, rng: &mut ChaCha8Rng, data: &mut [u8]) {
        let mut v = INTERESTING[rng.gen_range(0..INTERESTING.len())];
        if rng.gen_ratio(1, 4) {
            v = v.wrapping_neg();
        }
        let width = 1usize << rng.gen_range(0..4);
        if width > data.len() {
            return;
        }
        let at = rng.gen_range(0..=data.len() - width);
        if rng.gen() {
            data[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
        } else {
            data[at..at + width].copy_from_slice(&v.to_be_bytes()[8 - width..]);
        }
    }

    fn splice(&self, rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
        let Some(other) = pick(rng, self.seeds) else {
            return;
        };
        if other.is_empty() {
            return;
        }
        let cut = rng.gen_range(0..=data.len());
        let from = rng.gen_range(0..other.len());
        let take = rng.gen_range(1..=other.len() - from);
        data.truncate(cut);
        data.extend_from_slice(&other[from..from + take]);
    }

    fn dictionary_token(&self, rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
        let Some(token) = pick(rng, self.dictionary) else {
            return;
        };
        let at = rng.gen_range(0..=data.len());
        if rng.gen() || at + token.len() > data.len() {
            data.splice(at..at, token.iter().copied());
        } else {
            data[at..at + token.len()].copy_from_slice(token);
        }
    }
}

/// Replaces a run of ASCII digits (with its sign and fraction) by an
/// interesting decimal.
fn replace_number(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
    let start = rng.gen_range(0..data.len());
    let Some(first) = data[start..].iter().position(u8::is_ascii_digit) else {
        return;
    };
    let is_part = |c: u8| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E');
    let mut a = start + first;
    while a > 0 && is_part(data[a - 1]) {
        a -= 1;
    }
    if a > 0 && data[a - 1] == b'-' {
        a -= 1;
    }
    let mut b = start + first;
    while b < data.len() && is_part(data[b]) {
        b += 1;
    }
    let text = INTERESTING_DECIMALS[rng.gen_range(0..INTERESTING_DECIMALS.len())];
    data.splice(a..b, text.bytes());
}

/// A random non-empty range of `0..len` (`len > 0`), short ranges likelier.
fn chunk(rng: &mut ChaCha8Rng, len: usize) -> (usize, usize) {
    let a = rng.gen_range(0..len);
    let max = (len - a).min(1 << rng.gen_range(0..16));
    (a, a + rng.gen_range(1..=max))
}

/// A random element of `items`.
pub fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> Option<&'a T> {
    if items.is_empty() {
        None
    } else {
        Some(&items[rng.gen_range(0..items.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn mutator<'a>(seeds: &'a [Vec<u8>], dict: &'a [Vec<u8>]) -> Mutator<'a> {
        Mutator {
            seeds,
            dictionary: dict,
            max_len: 64,
        }
    }

    #[test]
    fn mutations_are_a_function_of_the_seed_and_respect_the_length_cap() {
        let seeds = vec![b"{\"a\": [1, 2.5, -3]}".to_vec(), vec![0u8; 40]];
        let dict = vec![b"null".to_vec()];
        let m = mutator(&seeds, &dict);
        let run = |seed: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..200)
                .map(|i| {
                    let mut d = seeds[i % 2].clone();
                    m.mutate(&mut rng, &mut d);
                    d
                })
                .collect::<Vec<_>>()
        };
        let (a, b, c) = (run(1), run(1), run(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|d| d.len() <= 64));
        // Most mutants differ from their seed.
        let changed = a
            .iter()
            .enumerate()
            .filter(|(i, d)| **d != seeds[i % 2])
            .count();
        assert!(changed > 150, "{changed} of 200 changed");
    }

    #[test]
    fn a_number_run_is_replaced_whole() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..50 {
            let mut d = b"w=-12.5e3;".to_vec();
            replace_number(&mut rng, &mut d);
            let s = String::from_utf8(d).unwrap();
            let inner = s.strip_prefix("w=").unwrap().strip_suffix(';').unwrap();
            // Unchanged when the scan starts past the number.
            assert!(
                inner == "-12.5e3" || INTERESTING_DECIMALS.contains(&inner),
                "{s}"
            );
        }
    }

    #[test]
    fn chunks_lie_inside_the_input() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for len in 1..50 {
            let (a, b) = chunk(&mut rng, len);
            assert!(a < b && b <= len);
        }
    }
}
