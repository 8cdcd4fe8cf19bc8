//! Elementwise sweeps compiled for the widest vector unit the CPU has
//! (AVX-512, AVX2, or the baseline), for the activations whose element is
//! straight-line arithmetic (the sigmoid and SiLU with their vectorizable
//! exponential): [`Tensor::map`]'s loop is built for the baseline only.
//!
//! The element function is the same at every width and made of IEEE
//! additions, multiplications, divisions and bit moves (never fused), so
//! every width gives the same bits; large sweeps are cut into fixed chunks,
//! one task each, so the thread count does not change them either.

use crate::element::Element;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Elements from which a sweep runs on all threads.
const PAR_MIN: usize = 1 << 16;
/// Elements per task.
const PAR_CHUNK: usize = 1 << 14;

/// The vector width a sweep is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Width {
    /// The target's baseline (SSE2 on x86-64).
    Base,
    /// AVX2.
    Avx2,
    /// AVX-512 (foundation).
    Avx512,
}

impl Width {
    /// The widest this CPU runs.
    pub(super) fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Width::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Width::Avx2;
            }
        }
        Width::Base
    }

    /// Whether this CPU runs it.
    #[cfg(test)]
    pub(super) fn available(self) -> bool {
        match self {
            Width::Base => true,
            #[cfg(target_arch = "x86_64")]
            Width::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Width::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// `out[i] = f(a[i], b[i])`: the loop every width compiles. `a` and `b`
/// are at least as long as `out`.
#[inline(always)]
fn write_loop<T: Element>(out: &mut [MaybeUninit<T>], a: &[T], b: &[T], f: &impl Fn(T, T) -> T) {
    let (a, b) = (&a[..out.len()], &b[..out.len()]);
    for ((o, &u), &v) in out.iter_mut().zip(a).zip(b) {
        o.write(f(u, v));
    }
}

/// `out[i] = f(out[i], a[i])`: the loop every width compiles. `a` is at
/// least as long as `out`.
#[inline(always)]
fn update_loop<T: Element>(out: &mut [T], a: &[T], f: &impl Fn(T, T) -> T) {
    let a = &a[..out.len()];
    for (o, &v) in out.iter_mut().zip(a) {
        *o = f(*o, v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn write_avx2<T: Element>(
    out: &mut [MaybeUninit<T>],
    a: &[T],
    b: &[T],
    f: &impl Fn(T, T) -> T,
) {
    write_loop(out, a, b, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn write_avx512<T: Element>(
    out: &mut [MaybeUninit<T>],
    a: &[T],
    b: &[T],
    f: &impl Fn(T, T) -> T,
) {
    write_loop(out, a, b, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn update_avx2<T: Element>(out: &mut [T], a: &[T], f: &impl Fn(T, T) -> T) {
    update_loop(out, a, f)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn update_avx512<T: Element>(out: &mut [T], a: &[T], f: &impl Fn(T, T) -> T) {
    update_loop(out, a, f)
}

/// `out[i] = f(a[i], b[i])` at `width` (the baseline where the CPU lacks it).
pub(super) fn write_at<T: Element>(
    width: Width,
    out: &mut [MaybeUninit<T>],
    a: &[T],
    b: &[T],
    f: &impl Fn(T, T) -> T,
) {
    match width {
        #[cfg(target_arch = "x86_64")]
        Width::Avx512 if std::arch::is_x86_feature_detected!("avx512f") => {
            // SAFETY: the CPU has AVX-512F (checked just above).
            unsafe { write_avx512(out, a, b, f) }
        }
        #[cfg(target_arch = "x86_64")]
        Width::Avx2 if std::arch::is_x86_feature_detected!("avx2") => {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { write_avx2(out, a, b, f) }
        }
        _ => write_loop(out, a, b, f),
    }
}

/// `out[i] = f(out[i], a[i])` at `width` (the baseline where the CPU lacks it).
pub(super) fn update_at<T: Element>(width: Width, out: &mut [T], a: &[T], f: &impl Fn(T, T) -> T) {
    match width {
        #[cfg(target_arch = "x86_64")]
        Width::Avx512 if std::arch::is_x86_feature_detected!("avx512f") => {
            // SAFETY: the CPU has AVX-512F (checked just above).
            unsafe { update_avx512(out, a, f) }
        }
        #[cfg(target_arch = "x86_64")]
        Width::Avx2 if std::arch::is_x86_feature_detected!("avx2") => {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { update_avx2(out, a, f) }
        }
        _ => update_loop(out, a, f),
    }
}

/// `out[i] = f(a[i], b[i])` for every element of `out` (`a` and `b` as
/// long), on all threads when large, at the widest vector width.
pub(super) fn write_all<T: Element>(
    out: &mut [MaybeUninit<T>],
    a: &[T],
    b: &[T],
    f: impl Fn(T, T) -> T + Sync,
) {
    let width = Width::best();
    if out.len() < PAR_MIN {
        write_at(width, out, a, b, &f);
    } else {
        out.par_chunks_mut(PAR_CHUNK)
            .zip(a.par_chunks(PAR_CHUNK))
            .zip(b.par_chunks(PAR_CHUNK))
            .for_each(|((o, a), b)| write_at(width, o, a, b, &f));
    }
}

/// `out[i] = f(out[i], a[i])` for every element of `out` (`a` as long), on
/// all threads when large, at the widest vector width.
pub(super) fn update_all<T: Element>(out: &mut [T], a: &[T], f: impl Fn(T, T) -> T + Sync) {
    let width = Width::best();
    if out.len() < PAR_MIN {
        update_at(width, out, a, &f);
    } else {
        out.par_chunks_mut(PAR_CHUNK)
            .zip(a.par_chunks(PAR_CHUNK))
            .for_each(|(o, a)| update_at(width, o, a, &f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_width_writes_and_updates_every_element() {
        let a: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5 - 100.0).collect();
        for width in [Width::Base, Width::Avx2, Width::Avx512] {
            let mut out = vec![MaybeUninit::new(f32::NAN); 999];
            write_at(width, &mut out, &a, &a[1..], &|u, v| u * 2.0 + v);
            // SAFETY: every element was written (initialised to NaN anyway).
            let out: Vec<f32> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
            assert!((0..999).all(|i| out[i] == a[i] * 2.0 + a[i + 1]));
            let mut acc = vec![1.0f32; 1000];
            update_at(width, &mut acc, &a, &|o, v| o + v);
            assert!(acc.iter().zip(&a).all(|(o, v)| *o == 1.0 + v));
        }
        assert!(Width::Base.available() && Width::best().available());
    }
}
