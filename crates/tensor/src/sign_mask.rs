//! ReLU's forward kernel and the sign mask that its backward rules read:
//! the two bits per element (`x > 0`, `x >= 0`) that every ReLU rule needs.

use crate::element::Element;
use crate::error::{Result, TensorError};
use crate::simd::has_avx2;
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Elements per parallel task (a whole number of mask words).
const CHUNK: usize = 1 << 14;

/// The signs of a ReLU's input, two bits per element: `x > 0` and `x >= 0`.
///
/// That is all any ReLU rule needs (standard: pass where `x > 0`; guided:
/// zero where `x < 0`), at 1/16 of the memory of a copy of the input.
///
/// Element `i` is bit `i % 64` of word `i / 64` of each bit vector. The
/// kernels that build and read the mask run in parallel over fixed runs of
/// whole words (16384 elements), are compiled for baseline x86-64 and for
/// AVX2 (chosen at run time), and apply the same operations either way, so
/// the results are the same bits whatever the CPU or the thread count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignMask {
    positive: Vec<u64>,
    non_negative: Vec<u64>,
    len: usize,
}

/// Elements per mask word.
const WORD: usize = 64;

/// Mask words per parallel chunk of [`CHUNK`] elements.
const CHUNK_WORDS: usize = CHUNK / WORD;

const _: () = assert!(CHUNK.is_multiple_of(WORD));

impl SignMask {
    /// Records the signs of `x`.
    pub fn of<T: Element>(x: &[T]) -> Self {
        let words = x.len().div_ceil(WORD);
        let mut positive = vec![0u64; words];
        let mut non_negative = vec![0u64; words];
        let avx2 = has_avx2();
        x.par_chunks(CHUNK)
            .zip(positive.par_chunks_mut(CHUNK_WORDS))
            .zip(non_negative.par_chunks_mut(CHUNK_WORDS))
            .for_each(|((x, p), nn)| {
                // SAFETY: AVX2 is used only where the CPU has it.
                unsafe { dispatch_signs(avx2, x, None, p, nn) }
            });
        Self {
            positive,
            non_negative,
            len: x.len(),
        }
    }

    /// Number of elements recorded.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no element was recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether element `i` was strictly positive.
    pub fn is_positive(&self, i: usize) -> bool {
        self.positive[i / 64] >> (i % 64) & 1 == 1
    }

    /// Whether element `i` was non-negative.
    pub fn is_non_negative(&self, i: usize) -> bool {
        self.non_negative[i / 64] >> (i % 64) & 1 == 1
    }

    /// Applies `f(g, positive, non_negative)` to every gradient element in
    /// place: the same values as [`SignMask::map`], written over `g` (no
    /// second buffer), for a caller that owns the gradient.
    ///
    /// # Errors
    /// [`TensorError::LengthMismatch`] if `g.len()` differs from
    /// [`SignMask::len`].
    pub fn apply<T: Element>(
        &self,
        g: &mut [T],
        f: impl Fn(T, bool, bool) -> T + Sync + Send,
    ) -> Result<()> {
        self.check_len("SignMask::apply", g.len())?;
        let avx2 = has_avx2();
        g.par_chunks_mut(CHUNK)
            .zip(self.positive.par_chunks(CHUNK_WORDS))
            .zip(self.non_negative.par_chunks(CHUNK_WORDS))
            .for_each(|((g, p), nn)| {
                // SAFETY: AVX2 is used only where the CPU has it.
                unsafe { dispatch_apply(avx2, g, p, nn, &f) }
            });
        Ok(())
    }

    /// [`SignMask::apply`] on elements `offset .. offset + g.len()` only
    /// (`g` holds them), sequentially: for a kernel that applies a ReLU
    /// rule to each block of a gradient as it computes it (an
    /// [`Epilogue`](crate::epilogue::Epilogue)). The same values as
    /// `apply` gives those elements. `f` must be a pure function of its
    /// arguments: a run shorter than a mask word is computed in a
    /// word-long copy, so `f` also sees (and its results for) padding
    /// values that are then dropped.
    ///
    /// # Errors
    /// [`TensorError::LengthMismatch`] if the range ends past
    /// [`SignMask::len`].
    pub fn apply_at<T: Element>(
        &self,
        g: &mut [T],
        offset: usize,
        f: impl Fn(T, bool, bool) -> T,
    ) -> Result<()> {
        let end = offset.checked_add(g.len()).filter(|&e| e <= self.len);
        if end.is_none() {
            return Err(TensorError::LengthMismatch {
                op: "SignMask::apply_at",
                shape: vec![self.len],
                expected: self.len,
                found: offset.saturating_add(g.len()),
            });
        }
        let avx2 = has_avx2();
        // SAFETY: AVX2 is used only where the CPU has it.
        unsafe { dispatch_apply_at(avx2, self, g, offset, &f) };
        Ok(())
    }

    fn check_len(&self, op: &'static str, found: usize) -> Result<()> {
        if found != self.len {
            return Err(TensorError::LengthMismatch {
                op,
                shape: vec![self.len],
                expected: self.len,
                found,
            });
        }
        Ok(())
    }

    /// Returns `f(g[i], positive[i], non_negative[i])` for every element `i`:
    /// the same values as [`SignMask::apply`] on a copy of `g`, in one pass
    /// (`g` read once, the result written once).
    ///
    /// ```
    /// # use sightline_tensor::elementwise::SignMask;
    /// let mask = SignMask::of(&[-1.0f32, 0.0, 2.0]);
    /// // Guided backprop (TorchRay): zero where x < 0, then max(g, 0).
    /// let guided = |g: f32, _, nn| if nn { g.max(0.0) } else { 0.0 };
    /// let gx = mask.map(&[3.0, 3.0, -3.0], guided)?;
    /// assert_eq!(gx, [0.0, 3.0, 0.0]);
    /// # Ok::<(), sightline_tensor::TensorError>(())
    /// ```
    ///
    /// # Errors
    /// [`TensorError::LengthMismatch`] if `g.len()` differs from
    /// [`SignMask::len`].
    pub fn map<T: Element>(
        &self,
        g: &[T],
        f: impl Fn(T, bool, bool) -> T + Sync + Send,
    ) -> Result<Vec<T>> {
        self.check_len("SignMask::map", g.len())?;
        let avx2 = has_avx2();
        let write = |out: &mut [MaybeUninit<T>]| {
            out.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(self.positive.par_chunks(CHUNK_WORDS))
                .zip(self.non_negative.par_chunks(CHUNK_WORDS))
                .for_each(|(((o, g), p), nn)| {
                    // SAFETY: AVX2 is used only where the CPU has it.
                    unsafe { dispatch_map(avx2, g, o, p, nn, &f) }
                });
            Ok(())
        };
        // SAFETY: the chunks cover the output (as long as `g`), and every
        // task writes every element of its chunk.
        unsafe { Tensor::write_whole([g.len()], write) }.map(Tensor::into_vec)
    }
}

/// Clip in place: `x` becomes `min(max(x, lo), hi)` (an absent bound
/// clips nothing; NaN stays NaN, and is inside no bounds), and the returned
/// mask records, for each element, whether it was strictly inside the
/// bounds (`lo < x < hi`, the
/// "positive" bit: where hardtanh's gradient passes) and inside them
/// inclusively (`lo <= x <= hi`, the "non-negative" bit: where clamp's
/// passes). ReLU6 (`clip(x, 0, 6)`) then keeps two bits per element for its
/// backward, as a ReLU does, and reuses its input's buffer.
pub fn clip_in_place<T: Element>(x: &mut Tensor<T>, lo: Option<T>, hi: Option<T>) -> SignMask {
    let n = x.len();
    let words = n.div_ceil(WORD);
    let mut strict = vec![0u64; words];
    let mut inclusive = vec![0u64; words];
    // An absent bound is an infinite one: it clips nothing, and only NaN
    // fails the comparison (hardtanh's gradient is 0 at NaN too).
    let lo = lo.unwrap_or_else(T::neg_infinity);
    let hi = hi.unwrap_or_else(T::infinity);
    let avx2 = has_avx2();
    x.data_mut()
        .par_chunks_mut(CHUNK)
        .zip(strict.par_chunks_mut(CHUNK_WORDS))
        .zip(inclusive.par_chunks_mut(CHUNK_WORDS))
        // SAFETY: AVX2 is used only where the CPU has it.
        .for_each(|((x, s), inc)| unsafe { dispatch_clip(avx2, x, lo, hi, s, inc) });
    SignMask {
        positive: strict,
        non_negative: inclusive,
        len: n,
    }
}

/// Clips `x` to `[lo, hi]` in place and writes its two bits per element
/// into `s` (`lo < x < hi`) and `inc` (`lo <= x <= hi`), one word per 64
/// elements: with AVX2 intrinsics for `f32` where `avx2`, else the
/// scalar loop; the same bits either way.
///
/// # Safety
/// `avx2` only if the CPU has AVX2.
unsafe fn dispatch_clip<T: Element>(
    avx2: bool,
    x: &mut [T],
    lo: T,
    hi: T,
    s: &mut [u64],
    inc: &mut [u64],
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 && std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        // SAFETY: `T` is `f32` (so are the bounds: the conversions are exact).
        let x = unsafe { &mut *(x as *mut [T] as *mut [f32]) };
        let (lo, hi) = (lo.to_f64_lossless() as f32, hi.to_f64_lossless() as f32);
        // SAFETY: the caller's contract.
        return unsafe { clip_f32_avx2(x, lo, hi, s, inc) };
    }
    let _ = avx2;
    for ((x, s), inc) in x.chunks_mut(WORD).zip(s.iter_mut()).zip(inc.iter_mut()) {
        (*s, *inc) = clip_run(x, lo, hi);
    }
}

/// Up to 64 elements of [`dispatch_clip`] without intrinsics: the clipped
/// values in place, and the `(strict, inclusive)` words.
#[inline(always)]
fn clip_run<T: Element>(x: &mut [T], lo: T, hi: T) -> (u64, u64) {
    debug_assert!(x.len() <= WORD);
    let (mut sw, mut iw) = (0u64, 0u64);
    for (bit, v) in x.iter_mut().enumerate() {
        let a = *v;
        sw |= u64::from((a > lo) & (a < hi)) << bit;
        iw |= u64::from((a >= lo) & (a <= hi)) << bit;
        *v = if a < lo {
            lo
        } else if a > hi {
            hi
        } else {
            a
        };
    }
    (sw, iw)
}

/// [`dispatch_clip`] for `f32` with AVX2 intrinsics: per 8 elements, the
/// four ordered compares (false for NaN) give both bits by `movemask`, and
/// two blends the value, as [`clip_run`]'s selects do (`x < lo` takes `lo`;
/// otherwise `x > hi` takes `hi`; NaN stays).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn clip_f32_avx2(x: &mut [f32], lo: f32, hi: f32, s: &mut [u64], inc: &mut [u64]) {
    use std::arch::x86_64::*;
    let (lov, hiv) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
    let word = |x: &mut [f32; WORD]| {
        let (mut sw, mut iw) = (0u64, 0u64);
        for k in 0..WORD / 8 {
            // SAFETY: elements `8k..8k + 8` of `x` exist.
            unsafe {
                let p = x.as_mut_ptr().add(8 * k);
                let v = _mm256_loadu_ps(p);
                let gt_lo = _mm256_cmp_ps::<_CMP_GT_OQ>(v, lov);
                let lt_hi = _mm256_cmp_ps::<_CMP_LT_OQ>(v, hiv);
                let ge_lo = _mm256_cmp_ps::<_CMP_GE_OQ>(v, lov);
                let le_hi = _mm256_cmp_ps::<_CMP_LE_OQ>(v, hiv);
                let strict = _mm256_movemask_ps(_mm256_and_ps(gt_lo, lt_hi)) as u8;
                let inclusive = _mm256_movemask_ps(_mm256_and_ps(ge_lo, le_hi)) as u8;
                sw |= u64::from(strict) << (8 * k);
                iw |= u64::from(inclusive) << (8 * k);
                let below = _mm256_cmp_ps::<_CMP_LT_OQ>(v, lov);
                let above = _mm256_andnot_ps(below, _mm256_cmp_ps::<_CMP_GT_OQ>(v, hiv));
                let r = _mm256_blendv_ps(_mm256_blendv_ps(v, lov, below), hiv, above);
                _mm256_storeu_ps(p, r);
            }
        }
        (sw, iw)
    };
    let (xw, xt) = x.as_chunks_mut::<WORD>();
    let full = xw.len();
    for ((x, s), inc) in xw.iter_mut().zip(&mut *s).zip(&mut *inc) {
        (*s, *inc) = word(x);
    }
    if !xt.is_empty() {
        (s[full], inc[full]) = clip_run(xt, lo, hi);
    }
}

/// ReLU forward: `max(x, 0)` and the sign mask of `x`, in one pass over `x`.
///
/// An element `v` becomes `0` where `v <= 0` (also `-0.0`) and stays `v`
/// elsewhere (also NaN).
pub fn relu<T: Element>(x: &Tensor<T>) -> (Tensor<T>, SignMask) {
    let xs = x.data();
    let n = xs.len();
    let words = n.div_ceil(WORD);
    let mut positive = vec![0u64; words];
    let mut non_negative = vec![0u64; words];
    let avx2 = has_avx2();
    let write = |out: &mut [MaybeUninit<T>]| {
        out.par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK))
            .zip(positive.par_chunks_mut(CHUNK_WORDS))
            .zip(non_negative.par_chunks_mut(CHUNK_WORDS))
            .for_each(|(((o, x), p), nn)| {
                // SAFETY: AVX2 is used only where the CPU has it.
                unsafe { dispatch_signs(avx2, x, Some(o), p, nn) }
            });
        Ok(())
    };
    // SAFETY: the chunks cover the output (the input's shape), and every
    // task writes every element of its chunk.
    let out =
        unsafe { Tensor::write_whole(x.shape().to_vec(), write) }.expect("the writer cannot fail");
    let mask = SignMask {
        positive,
        non_negative,
        len: n,
    };
    (out, mask)
}

/// [`relu`] in place: `x` becomes `max(x, 0)` (the same bits as `relu`
/// gives) and the signs it had are returned. For a ReLU whose input nothing
/// else holds (a convolution's output on its way to the next layer): no
/// new buffer, and each run of 16384 elements is read once from memory and
/// written back while in cache, where `relu` writes a fresh buffer.
pub fn relu_in_place<T: Element>(x: &mut Tensor<T>) -> SignMask {
    let n = x.len();
    let words = n.div_ceil(WORD);
    let mut positive = vec![0u64; words];
    let mut non_negative = vec![0u64; words];
    let avx2 = has_avx2();
    x.data_mut()
        .par_chunks_mut(CHUNK)
        .zip(positive.par_chunks_mut(CHUNK_WORDS))
        .zip(non_negative.par_chunks_mut(CHUNK_WORDS))
        .for_each(|((x, p), nn)| {
            // SAFETY: AVX2 is used only where the CPU has it.
            unsafe { dispatch_signs(avx2, x, None, p, nn) };
            x.iter_mut().for_each(|v| *v = relu_value(*v));
        });
    SignMask {
        positive,
        non_negative,
        len: n,
    }
}

/// Sign words of `x` (`x.len().div_ceil(64)` of each kind) and, if `out` is
/// given (as long as `x`), `x` with every `v <= 0` replaced by `0`.
///
/// # Safety
/// `avx2` only if the CPU has AVX2.
unsafe fn dispatch_signs<T: Element>(
    avx2: bool,
    x: &[T],
    out: Option<&mut [MaybeUninit<T>]>,
    p: &mut [u64],
    nn: &mut [u64],
) {
    assert!(out.as_ref().is_none_or(|o| o.len() == x.len()));
    assert!(p.len() == x.len().div_ceil(WORD) && nn.len() == p.len());
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        use std::any::TypeId;
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            // SAFETY: `T` is `f32`.
            let x = &*(x as *const [T] as *const [f32]);
            let out = out.map(|o| &mut *(o as *mut [MaybeUninit<T>] as *mut [MaybeUninit<f32>]));
            return signs_f32_avx2(x, out, p, nn);
        }
        return signs_avx2(x, out, p, nn);
    }
    let _ = avx2;
    signs(x, out, p, nn)
}

/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn signs_avx2<T: Element>(
    x: &[T],
    out: Option<&mut [MaybeUninit<T>]>,
    p: &mut [u64],
    nn: &mut [u64],
) {
    signs(x, out, p, nn)
}

/// See [`dispatch_signs`]. Each word is built from 64 branch-free compares
/// (and the output from as many selects), which the compiler vectorizes.
#[inline(always)]
fn signs<T: Element>(x: &[T], out: Option<&mut [MaybeUninit<T>]>, p: &mut [u64], nn: &mut [u64]) {
    let (xw, xt) = x.as_chunks::<WORD>();
    let full = xw.len();
    match out {
        Some(out) => {
            let (ow, ot) = out.as_chunks_mut::<WORD>();
            for (((x, o), p), nn) in xw.iter().zip(ow).zip(&mut *p).zip(&mut *nn) {
                (*p, *nn) = signs_run(x, Some(o));
            }
            if !xt.is_empty() {
                (p[full], nn[full]) = signs_run(xt, Some(ot));
            }
        }
        None => {
            for ((x, p), nn) in xw.iter().zip(&mut *p).zip(&mut *nn) {
                (*p, *nn) = signs_run(x, None);
            }
            if !xt.is_empty() {
                (p[full], nn[full]) = signs_run(xt, None);
            }
        }
    }
}

/// The `(positive, non_negative)` bits of up to 64 elements (element `b` in
/// bit `b`), and their ReLU written into `out` if given (as long as `x`).
#[inline(always)]
fn signs_run<T: Element>(x: &[T], out: Option<&mut [MaybeUninit<T>]>) -> (u64, u64) {
    debug_assert!(x.len() <= WORD);
    let zero = T::zero();
    if let Some(out) = out {
        for (o, &v) in out.iter_mut().zip(x) {
            o.write(relu_value(v));
        }
    }
    let (mut p, mut nn) = (0u64, 0u64);
    for (b, &v) in x.iter().enumerate() {
        p |= u64::from(v > zero) << b;
        nn |= u64::from(v >= zero) << b;
    }
    (p, nn)
}

/// `0` where `v <= 0`, else `v` (NaN stays NaN).
#[inline(always)]
fn relu_value<T: Element>(v: T) -> T {
    if v <= T::zero() {
        T::zero()
    } else {
        v
    }
}

/// [`signs`] for `f32` with AVX2 intrinsics: per 8 elements, three compares
/// with 0 (`>`, `>=` and `<=`, ordered: false for NaN), two `movemask`s
/// and one `andnot` (`v <= 0` gives `+0.0`, the bits of `T::zero()`).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn signs_f32_avx2(
    x: &[f32],
    out: Option<&mut [MaybeUninit<f32>]>,
    p: &mut [u64],
    nn: &mut [u64],
) {
    use std::arch::x86_64::*;
    // One word: 8 vectors of 8 elements (a closure, so it inherits AVX2).
    let word = |x: &[f32; WORD], out: Option<&mut [MaybeUninit<f32>; WORD]>| {
        let zero = _mm256_setzero_ps();
        let out = out.map(|o| o.as_mut_ptr() as *mut f32);
        let (mut p, mut nn) = (0u64, 0u64);
        for k in 0..WORD / 8 {
            // SAFETY: elements `8k..8k + 8` of `x` (and of `out`) exist.
            unsafe {
                let v = _mm256_loadu_ps(x.as_ptr().add(8 * k));
                let gt = _mm256_cmp_ps::<_CMP_GT_OQ>(v, zero);
                let ge = _mm256_cmp_ps::<_CMP_GE_OQ>(v, zero);
                p |= u64::from(_mm256_movemask_ps(gt) as u8) << (8 * k);
                nn |= u64::from(_mm256_movemask_ps(ge) as u8) << (8 * k);
                if let Some(o) = out {
                    let le = _mm256_cmp_ps::<_CMP_LE_OQ>(v, zero);
                    _mm256_storeu_ps(o.add(8 * k), _mm256_andnot_ps(le, v));
                }
            }
        }
        (p, nn)
    };
    let (xw, xt) = x.as_chunks::<WORD>();
    let full = xw.len();
    match out {
        Some(out) => {
            let (ow, ot) = out.as_chunks_mut::<WORD>();
            for (((x, o), p), nn) in xw.iter().zip(ow).zip(&mut *p).zip(&mut *nn) {
                (*p, *nn) = word(x, Some(o));
            }
            if !xt.is_empty() {
                (p[full], nn[full]) = signs_run(xt, Some(ot));
            }
        }
        None => {
            for ((x, p), nn) in xw.iter().zip(&mut *p).zip(&mut *nn) {
                (*p, *nn) = word(x, None);
            }
            if !xt.is_empty() {
                (p[full], nn[full]) = signs_run(xt, None);
            }
        }
    }
}

/// Expands a byte into 8 bools (bit `j` to element `j`).
static BYTE_BITS: [[bool; 8]; 256] = byte_bits();

const fn byte_bits() -> [[bool; 8]; 256] {
    let mut t = [[false; 8]; 256];
    let mut i = 0;
    while i < 256 {
        let mut j = 0;
        while j < 8 {
            t[i][j] = (i >> j) & 1 == 1;
            j += 1;
        }
        i += 1;
    }
    t
}

/// The 64 bits of a mask word as bools (bit `b` to element `b`), through a
/// byte table so that the loops that read them vectorize.
#[inline(always)]
fn word_bits(word: u64) -> [bool; WORD] {
    let mut bits = [false; WORD];
    for (k, dst) in bits.as_chunks_mut::<8>().0.iter_mut().enumerate() {
        *dst = BYTE_BITS[usize::from((word >> (8 * k)) as u8)];
    }
    bits
}

/// # Safety
/// `avx2` only if the CPU has AVX2.
unsafe fn dispatch_map<T: Element, F: Fn(T, bool, bool) -> T>(
    avx2: bool,
    g: &[T],
    out: &mut [MaybeUninit<T>],
    p: &[u64],
    nn: &[u64],
    f: &F,
) {
    assert!(out.len() == g.len() && p.len() == g.len().div_ceil(WORD) && nn.len() == p.len());
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        return map_avx2(g, out, p, nn, f);
    }
    let _ = avx2;
    map_words(g, out, p, nn, f)
}

/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn map_avx2<T: Element, F: Fn(T, bool, bool) -> T>(
    g: &[T],
    out: &mut [MaybeUninit<T>],
    p: &[u64],
    nn: &[u64],
    f: &F,
) {
    map_words(g, out, p, nn, f)
}

/// `out = f(g, positive, non_negative)` over the words `p`, `nn` of `g`
/// (`out` as long as `g`): the bits of each word are expanded to bools,
/// then `f` runs over its 64 elements in a straight loop (vectorized where
/// `f` is selects and max).
#[inline(always)]
fn map_words<T: Element, F: Fn(T, bool, bool) -> T>(
    g: &[T],
    out: &mut [MaybeUninit<T>],
    p: &[u64],
    nn: &[u64],
    f: &F,
) {
    let (gw, gt) = g.as_chunks::<WORD>();
    let (ow, ot) = out.as_chunks_mut::<WORD>();
    let full = gw.len();
    for (((g, o), &p), &nn) in gw.iter().zip(ow).zip(p).zip(nn) {
        let (pb, nb) = (word_bits(p), word_bits(nn));
        for b in 0..WORD {
            o[b].write(f(g[b], pb[b], nb[b]));
        }
    }
    if !gt.is_empty() {
        let (pb, nb) = (word_bits(p[full]), word_bits(nn[full]));
        for (((o, &v), &p), &nn) in ot.iter_mut().zip(gt).zip(&pb).zip(&nb) {
            o.write(f(v, p, nn));
        }
    }
}

/// [`map_words`] in place, with AVX2 where `avx2`.
///
/// # Safety
/// `avx2` only if the CPU has AVX2; `p` and `nn` cover `g`.
unsafe fn dispatch_apply<T: Element, F: Fn(T, bool, bool) -> T>(
    avx2: bool,
    g: &mut [T],
    p: &[u64],
    nn: &[u64],
    f: &F,
) {
    assert!(p.len() == g.len().div_ceil(WORD) && nn.len() == p.len());
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        return apply_avx2(g, p, nn, f);
    }
    let _ = avx2;
    apply_words(g, p, nn, f)
}

/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn apply_avx2<T: Element, F: Fn(T, bool, bool) -> T>(
    g: &mut [T],
    p: &[u64],
    nn: &[u64],
    f: &F,
) {
    apply_words(g, p, nn, f)
}

/// `g = f(g, positive, non_negative)` over the words `p`, `nn` of `g`, as
/// [`map_words`] does into a second buffer.
#[inline(always)]
fn apply_words<T: Element, F: Fn(T, bool, bool) -> T>(g: &mut [T], p: &[u64], nn: &[u64], f: &F) {
    let (gw, gt) = g.as_chunks_mut::<WORD>();
    let full = gw.len();
    for ((g, &p), &nn) in gw.iter_mut().zip(p).zip(nn) {
        let (pb, nb) = (word_bits(p), word_bits(nn));
        for b in 0..WORD {
            g[b] = f(g[b], pb[b], nb[b]);
        }
    }
    if !gt.is_empty() {
        let (pb, nb) = (word_bits(p[full]), word_bits(nn[full]));
        for ((v, &p), &nn) in gt.iter_mut().zip(&pb).zip(&nb) {
            *v = f(*v, p, nn);
        }
    }
}

/// # Safety
/// `avx2` only if the CPU has AVX2; `offset + g.len()` is at most
/// `mask.len`.
unsafe fn dispatch_apply_at<T: Element, F: Fn(T, bool, bool) -> T>(
    avx2: bool,
    mask: &SignMask,
    g: &mut [T],
    offset: usize,
    f: &F,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        return apply_at_avx2(mask, g, offset, f);
    }
    let _ = avx2;
    apply_at_words(mask, g, offset, f)
}

/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn apply_at_avx2<T: Element, F: Fn(T, bool, bool) -> T>(
    mask: &SignMask,
    g: &mut [T],
    offset: usize,
    f: &F,
) {
    apply_at_words(mask, g, offset, f)
}

/// The loop of [`SignMask::apply_at`] (whose caller checked the range).
#[inline(always)]
fn apply_at_words<T: Element, F: Fn(T, bool, bool) -> T>(
    mask: &SignMask,
    g: &mut [T],
    offset: usize,
    f: &F,
) {
    // Runs of up to 64 elements, each with its bits shifted out of the
    // one or two mask words it straddles into one word, then applied as
    // `apply` applies a word.
    let shifted = |words: &[u64], bit: usize| {
        let (k, s) = (bit / WORD, bit % WORD);
        let lo = words[k] >> s;
        match (s, words.get(k + 1)) {
            (0, _) | (_, None) => lo,
            (_, Some(&hi)) => lo | hi << (WORD - s),
        }
    };
    for (c, run) in g.chunks_mut(WORD).enumerate() {
        let bit = offset + c * WORD;
        let (pb, nb) = (
            word_bits(shifted(&mask.positive, bit)),
            word_bits(shifted(&mask.non_negative, bit)),
        );
        // A whole word in one fixed-length loop (vectorized); a shorter run
        // (an epilogue's row of a few tiles) through a word-long copy, so it
        // takes the same loop rather than an element-at-a-time one.
        let apply_word = |w: &mut [T; WORD]| {
            for b in 0..WORD {
                w[b] = f(w[b], pb[b], nb[b]);
            }
        };
        match run.as_mut_array::<WORD>() {
            Some(w) => apply_word(w),
            None => {
                let mut w = [T::zero(); WORD];
                w[..run.len()].copy_from_slice(run);
                apply_word(&mut w);
                run.copy_from_slice(&w[..run.len()]);
            }
        }
    }
}

#[cfg(test)]
mod clip_tests {
    use super::*;

    /// Values, bits and bounds of `clip_in_place` against the scalar
    /// definitions, on a length that is not a multiple of a word, with
    /// values on both bounds, outside them, NaN and signed zeros.
    /// The AVX2 clip gives the scalar loop's values and words, bit for bit.
    #[test]
    fn clip_avx2_matches_the_scalar_loop() {
        if !has_avx2() {
            return;
        }
        let specials = [
            0.0f32,
            -0.0,
            6.0,
            6.5,
            -1.0,
            f32::NAN,
            f32::INFINITY,
            -f32::INFINITY,
        ];
        let xs: Vec<f32> = (0..1000)
            .map(|i| {
                if i % 7 == 0 {
                    specials[i % 8]
                } else {
                    (i as f32 * 0.37) % 9.0 - 2.0
                }
            })
            .collect();
        for (lo, hi) in [
            (0.0f32, 6.0f32),
            (f32::NEG_INFINITY, 6.0),
            (0.0, f32::INFINITY),
            (3.0, 1.0),
        ] {
            let words = xs.len().div_ceil(WORD);
            let (mut a, mut b) = (xs.clone(), xs.clone());
            let (mut sa, mut ia) = (vec![0u64; words], vec![0u64; words]);
            let (mut sb, mut ib) = (vec![0u64; words], vec![0u64; words]);
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe {
                dispatch_clip(true, &mut a, lo, hi, &mut sa, &mut ia);
                dispatch_clip(false, &mut b, lo, hi, &mut sb, &mut ib);
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a), bits(&b), "({lo}, {hi})");
            assert_eq!((sa, ia), (sb, ib), "({lo}, {hi})");
        }
    }

    #[test]
    fn clip_in_place_clips_and_records_where_the_gradient_passes() {
        let specials = [0.0f32, -0.0, 6.0, 6.5, -1.0, 3.0, f32::NAN, 5.999];
        let xs: Vec<f32> = (0..70_001).map(|i| specials[i % 8]).collect();
        for (lo, hi) in [
            (Some(0.0f32), Some(6.0f32)),
            (None, Some(6.0)),
            (Some(0.0), None),
        ] {
            let mut t = Tensor::from_vec([xs.len()], xs.clone()).unwrap();
            let mask = clip_in_place(&mut t, lo, hi);
            for (i, (&x, &y)) in xs.iter().zip(t.data()).enumerate() {
                let mut want = x;
                if let Some(l) = lo.filter(|&l| x < l) {
                    want = l;
                }
                if let Some(h) = hi.filter(|&h| x > h) {
                    want = h;
                }
                assert_eq!(y.to_bits(), want.to_bits(), "{i}: {x}");
                // An absent bound passes everything but NaN.
                let strict = lo.map_or(!x.is_nan(), |l| x > l) && hi.map_or(!x.is_nan(), |h| x < h);
                let inclusive =
                    lo.map_or(!x.is_nan(), |l| x >= l) && hi.map_or(!x.is_nan(), |h| x <= h);
                assert_eq!(mask.is_positive(i), strict, "{i}: {x}");
                assert_eq!(mask.is_non_negative(i), inclusive, "{i}: {x}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu_and_mask() {
        let x = Tensor::<f32>::from_vec([5], vec![-1.0, 0.0, 2.0, -0.0, 3.0]).unwrap();
        let (y, m) = relu(&x);
        assert_eq!(y.data(), &[0.0, 0.0, 2.0, 0.0, 3.0]);
        assert_eq!(
            (0..5).map(|i| m.is_positive(i)).collect::<Vec<_>>(),
            [false, false, true, false, true]
        );
        assert_eq!(
            (0..5).map(|i| m.is_non_negative(i)).collect::<Vec<_>>(),
            [false, true, true, true, true]
        );
        let mut g = vec![1.0f32; 5];
        m.apply(&mut g, |g, p, _| if p { g } else { 0.0 }).unwrap();
        assert_eq!(g, [0.0, 0.0, 1.0, 0.0, 1.0]);
    }

    /// Any range, aligned to the mask's words or not, short or long, gets
    /// the values `apply` gives it; a range past the end is an error.
    #[test]
    fn apply_at_a_range_matches_apply() {
        let n = 1000;
        let x: Vec<f32> = (0..n)
            .map(|i| match i % 7 {
                0 => 0.0,
                1 => -0.0,
                k => (k as f32 - 3.5) * (i as f32 * 0.01 + 0.3),
            })
            .collect();
        let m = SignMask::of(&x);
        let g: Vec<f32> = (0..n).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        let guided = |g: f32, _: bool, nn: bool| if nn { g.max(0.0) } else { 0.0 };
        let mut want = g.clone();
        m.apply(&mut want, guided).unwrap();
        for &(off, len) in &[
            (0, n),
            (0, 64),
            (3, 5),
            (60, 10),
            (64, 128),
            (13, 700),
            (999, 1),
            (5, 0),
        ] {
            let mut part = g[off..off + len].to_vec();
            m.apply_at(&mut part, off, guided).unwrap();
            assert_eq!(part, want[off..off + len], "{off}+{len}");
        }
        assert!(m.apply_at(&mut [0.0f32; 2], n - 1, guided).is_err());
        assert!(m.apply_at(&mut [0.0f32; 1], usize::MAX, guided).is_err());
    }

    /// In place, the same bits and the same mask as `relu`, in `f32` (the
    /// AVX2 sign kernel) and `f64`, over several parallel chunks and a
    /// partial last word, with zeros of both signs and NaN.
    #[test]
    fn relu_in_place_matches_relu() {
        fn case<T: Element>(to: impl Fn(f64) -> T) {
            let n = 2 * CHUNK + 75;
            let x: Vec<T> = (0..n)
                .map(|i| match i % 9 {
                    0 => to(0.0),
                    1 => to(-0.0),
                    2 => to(f64::NAN),
                    k => to((k as f64 - 5.5) * (i as f64 * 1e-3 + 0.2)),
                })
                .collect();
            let x = Tensor::from_vec([n], x).unwrap();
            let (want, want_mask) = relu(&x);
            let mut got = x.clone();
            let mask = relu_in_place(&mut got);
            assert_eq!(mask, want_mask);
            for (g, w) in got.data().iter().zip(want.data()) {
                assert!(g.to_f64_lossless().to_bits() == w.to_f64_lossless().to_bits());
            }
        }
        case::<f32>(|v| v as f32);
        case::<f64>(|v| v);
    }

    #[test]
    fn mask_spans_many_words() {
        let x: Vec<f64> = (0..70_000).map(|i| (i % 3) as f64 - 1.0).collect();
        let m = SignMask::of(&x);
        let mut g = vec![1.0; x.len()];
        m.apply(&mut g, |g, _, nn| if nn { g } else { 0.0 })
            .unwrap();
        for (i, v) in g.iter().enumerate() {
            assert_eq!(*v, if i % 3 == 0 { 0.0 } else { 1.0 });
        }
    }

    /// Exact bit patterns, to compare results bit for bit (NaN included).
    trait Bits: Element {
        fn bits(self) -> u64;
    }
    impl Bits for f32 {
        fn bits(self) -> u64 {
            u64::from(self.to_bits())
        }
    }
    impl Bits for f64 {
        fn bits(self) -> u64 {
            self.to_bits()
        }
    }

    fn same_bits<T: Bits>(a: &[T], b: &[T]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.bits() == y.bits())
    }

    /// Lengths around the word (64) and chunk (`CHUNK`) boundaries.
    const LENGTHS: [usize; 9] = [
        0,
        1,
        63,
        64,
        65,
        1000,
        64 * 256 + 7,
        CHUNK - 1,
        3 * CHUNK + 65,
    ];

    /// Deterministic values mixing `0.0`, `-0.0`, NaN, infinities, tiny,
    /// negative and positive values.
    fn values<T: Element>(len: usize, seed: u64) -> Vec<T> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let v = match s % 16 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => f64::NAN,
                    3 => -f64::NAN,
                    4 => f64::INFINITY,
                    5 => f64::NEG_INFINITY,
                    6 => 1e-40,
                    7 => -1e-40,
                    _ => (s >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0,
                };
                T::from_f64_lossy(v)
            })
            .collect()
    }

    /// The ReLU rules of the autograd crate, and one that uses both bits.
    fn rules<T: Element>() -> Vec<fn(T, bool, bool) -> T> {
        vec![
            |g, p, _| if p { g } else { T::zero() },
            |g, _, nn| if nn { g.max(T::zero()) } else { T::zero() },
            |g, p, _| if p { g.max(T::zero()) } else { T::zero() },
            |g, _, _| g.max(T::zero()),
            |g, p, nn| match (p, nn) {
                (true, _) => g + g,
                (false, true) => g,
                (false, false) => -g,
            },
        ]
    }

    /// The fused ReLU against a plain scalar loop, bit for bit.
    fn fused_relu_matches_scalar<T: Bits>() {
        for (i, &len) in LENGTHS.iter().enumerate() {
            let x = values::<T>(len, i as u64 + 1);
            let (y, m) = relu(&Tensor::from_vec([len], x.clone()).unwrap());
            let want: Vec<T> = x
                .iter()
                .map(|&v| if v <= T::zero() { T::zero() } else { v })
                .collect();
            assert!(same_bits(y.data(), &want), "len {len}");
            assert_eq!(m.len(), len);
            assert_eq!(m, SignMask::of(&x), "len {len}");
            for (j, &v) in x.iter().enumerate() {
                assert_eq!(m.is_positive(j), v > T::zero(), "len {len}, {j}");
                assert_eq!(m.is_non_negative(j), v >= T::zero(), "len {len}, {j}");
            }
            // Bits past the end stay clear.
            if len % 64 != 0 {
                let last = m.positive[len / 64] | m.non_negative[len / 64];
                assert_eq!(last >> (len % 64), 0, "len {len}");
            }
        }
    }

    #[test]
    fn fused_relu_matches_scalar_f32() {
        fused_relu_matches_scalar::<f32>();
    }

    #[test]
    fn fused_relu_matches_scalar_f64() {
        fused_relu_matches_scalar::<f64>();
    }

    #[test]
    fn relu_keeps_nan_and_zeroes_negative_zero() {
        let x = Tensor::<f32>::from_vec([4], vec![f32::NAN, -0.0, -f32::NAN, 0.0]).unwrap();
        let (y, m) = relu(&x);
        assert!(y.data()[0].is_nan() && y.data()[2].is_nan());
        assert_eq!(y.data()[1].to_bits(), 0);
        assert_eq!(y.data()[3].to_bits(), 0);
        assert!(!m.is_positive(0) && !m.is_non_negative(0));
        assert!(!m.is_positive(1) && m.is_non_negative(1));
    }

    /// `map` and `apply` against a plain scalar loop, bit for bit.
    fn map_and_apply_match_scalar<T: Bits>() {
        for (i, &len) in LENGTHS.iter().enumerate() {
            let x = values::<T>(len, 100 + i as u64);
            let g = values::<T>(len, 200 + i as u64);
            let m = SignMask::of(&x);
            for (r, f) in rules::<T>().into_iter().enumerate() {
                let want: Vec<T> = (0..len)
                    .map(|j| f(g[j], x[j] > T::zero(), x[j] >= T::zero()))
                    .collect();
                assert!(
                    same_bits(&m.map(&g, f).unwrap(), &want),
                    "len {len}, rule {r}"
                );
                let mut h = g.clone();
                m.apply(&mut h, f).unwrap();
                assert!(same_bits(&h, &want), "len {len}, rule {r}");
            }
        }
    }

    #[test]
    fn map_and_apply_match_scalar_f32() {
        map_and_apply_match_scalar::<f32>();
    }

    #[test]
    fn map_and_apply_match_scalar_f64() {
        map_and_apply_match_scalar::<f64>();
    }

    #[test]
    fn map_rejects_a_gradient_of_another_length() {
        let m = SignMask::of(&[1.0f32; 65]);
        assert!(matches!(
            m.map(&[1.0f32; 64], |g, _, _| g),
            Err(TensorError::LengthMismatch {
                expected: 65,
                found: 64,
                ..
            })
        ));
        assert!(m.apply(&mut [1.0f32; 66], |g, _, _| g).is_err());
    }

    /// One and two threads give the same bits (relu, mask, map, apply).
    fn thread_count_does_not_matter<T: Bits>() {
        let len = 3 * CHUNK + 65;
        let x = Tensor::from_vec([len], values::<T>(len, 7)).unwrap();
        let g = values::<T>(len, 8);
        let guided = |g: T, _: bool, nn: bool| if nn { g.max(T::zero()) } else { T::zero() };
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let (y, m) = relu(&x);
                let mapped = m.map(&g, guided).unwrap();
                let mut applied = g.clone();
                m.apply(&mut applied, guided).unwrap();
                (y, SignMask::of(x.data()), m, mapped, applied)
            })
        };
        let (a, b) = (run(1), run(2));
        assert!(same_bits(a.0.data(), b.0.data()));
        assert_eq!(a.1, b.1);
        assert_eq!(a.2, b.2);
        assert_eq!(a.1, a.2);
        assert!(same_bits(&a.3, &b.3));
        assert!(same_bits(&a.4, &b.4));
        assert!(same_bits(&a.3, &a.4));
    }

    #[test]
    fn thread_count_does_not_matter_f32() {
        thread_count_does_not_matter::<f32>();
    }

    #[test]
    fn thread_count_does_not_matter_f64() {
        thread_count_does_not_matter::<f64>();
    }

    /// The baseline and AVX2 builds of the kernels give the same bits.
    fn baseline_and_avx2_agree<T: Bits>() {
        if !has_avx2() {
            return;
        }
        for (i, &len) in LENGTHS.iter().enumerate() {
            let x = values::<T>(len, 300 + i as u64);
            let g = values::<T>(len, 400 + i as u64);
            let words = len.div_ceil(WORD);
            let signs = |avx2: bool| {
                let mut out = vec![MaybeUninit::uninit(); len];
                let (mut p, mut nn) = (vec![0; words], vec![0; words]);
                // SAFETY: AVX2 only where the CPU has it (checked above).
                unsafe { dispatch_signs(avx2, &x, Some(&mut out), &mut p, &mut nn) };
                // SAFETY: every element was written.
                let out: Vec<T> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
                (out, p, nn)
            };
            let (a, b) = (signs(false), signs(true));
            assert!(same_bits(&a.0, &b.0), "len {len}");
            assert_eq!((&a.1, &a.2), (&b.1, &b.2), "len {len}");
            let (p, nn) = (a.1, a.2);
            for (r, f) in rules::<T>().into_iter().enumerate() {
                let map = |avx2: bool| {
                    let mut out = vec![MaybeUninit::uninit(); len];
                    // SAFETY: as above.
                    unsafe { dispatch_map(avx2, &g, &mut out, &p, &nn, &f) };
                    // SAFETY: every element was written.
                    out.iter()
                        .map(|v| unsafe { v.assume_init() })
                        .collect::<Vec<T>>()
                };
                assert!(same_bits(&map(false), &map(true)), "len {len}, rule {r}");
                // The epilogue's form, on a run that starts and ends inside
                // words.
                let mask = SignMask {
                    positive: p.clone(),
                    non_negative: nn.clone(),
                    len,
                };
                let (off, run) = (len / 3, len / 2);
                let at = |avx2: bool| {
                    let mut part = g[off..off + run].to_vec();
                    // SAFETY: as above; the run ends inside the mask.
                    unsafe { dispatch_apply_at(avx2, &mask, &mut part, off, &f) };
                    part
                };
                assert!(same_bits(&at(false), &at(true)), "len {len}, rule {r}");
            }
        }
    }

    #[test]
    fn baseline_and_avx2_agree_f32() {
        baseline_and_avx2_agree::<f32>();
    }

    #[test]
    fn baseline_and_avx2_agree_f64() {
        baseline_and_avx2_agree::<f64>();
    }
}
