//! Running a kernel over planes in parallel, one task per plane, compiled
//! for the SIMD level of the CPU.

use crate::element::Element;
use crate::error::Result;
use crate::scratch::with_scratch;
use crate::simd::SimdLevel;
use rayon::prelude::*;

/// The work of one output plane (or one block of a fixed length) of a
/// kernel, written as `#[inline(always)]` code that [`run_planes`] compiles
/// once per SIMD level.
pub(super) trait PlaneKernel: Sync {
    /// The element type of the scratch buffer.
    type Elem: Element;
    /// The element type of the output (`T`, or uninitialised `T`).
    type Out: Send;

    /// Computes output block `index` into `out` (every element of it),
    /// with `scratch` of [`PlaneKernel::scratch_len`] elements (contents
    /// unspecified).
    fn plane(&self, index: usize, out: &mut [Self::Out], scratch: &mut [Self::Elem]) -> Result<()>;

    /// Elements of scratch one call of [`PlaneKernel::plane`] needs.
    fn scratch_len(&self) -> Result<usize>;

    /// Readies the scratch of a task for its planes: zeroes it (the padding
    /// of the kernels' copies, which they then leave alone).
    fn prepare(&self, scratch: &mut [Self::Elem]) {
        scratch.fill(<Self::Elem as num_traits::Zero>::zero());
    }
}

/// Elements of work (outputs, or products summed) below which a task takes
/// several planes: a task per 7 x 7 plane would cost more to schedule than
/// to compute.
const TASK_WORK: usize = 1 << 13;

/// Runs `kernel` on every block of `plane_len` elements of `out`, in
/// parallel, at SIMD level `level`; the first error is returned. Each task
/// takes whole planes (enough that it does about [`TASK_WORK`] of
/// `plane_work` each, while there are tasks for every thread), so each
/// plane is computed by one task, the same way whatever the thread count.
pub(super) fn run_planes<K: PlaneKernel>(
    level: SimdLevel,
    kernel: &K,
    out: &mut [K::Out],
    plane_len: usize,
    plane_work: usize,
) -> Result<()> {
    let scratch_len = kernel.scratch_len()?;
    let planes = out.len() / plane_len.max(1);
    let per_task = (TASK_WORK / plane_work.max(1))
        .min(planes / (4 * rayon::current_num_threads()))
        .max(1);
    out.par_chunks_mut(plane_len * per_task)
        .enumerate()
        .try_for_each(|(t, o)| {
            with_scratch(
                "depthwise conv scratch",
                scratch_len,
                |s: &mut [K::Elem]| run_at(level, kernel, t * per_task, plane_len, o, s),
            )?
        })
}

/// Planes `first ..` (as many as `out` holds) at SIMD level `level`.
fn run_at<K: PlaneKernel>(
    level: SimdLevel,
    kernel: &K,
    first: usize,
    plane_len: usize,
    out: &mut [K::Out],
    scratch: &mut [K::Elem],
) -> Result<()> {
    match level {
        // SAFETY: the level is one the CPU runs (`simd_level`, or
        // `SimdLevel::available` in tests).
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unsafe { planes_avx512(kernel, first, plane_len, out, scratch) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => unsafe { planes_avx2(kernel, first, plane_len, out, scratch) },
        SimdLevel::Baseline => planes(kernel, first, plane_len, out, scratch),
    }
}

#[inline(always)]
fn planes<K: PlaneKernel>(
    kernel: &K,
    first: usize,
    plane_len: usize,
    out: &mut [K::Out],
    scratch: &mut [K::Elem],
) -> Result<()> {
    kernel.prepare(scratch);
    for (i, o) in out.chunks_mut(plane_len).enumerate() {
        kernel.plane(first + i, o, scratch)?;
    }
    Ok(())
}

/// [`PlaneKernel::plane`] compiled for AVX2 (the same operations in the
/// same order, in wider registers).
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn planes_avx2<K: PlaneKernel>(
    kernel: &K,
    first: usize,
    plane_len: usize,
    out: &mut [K::Out],
    scratch: &mut [K::Elem],
) -> Result<()> {
    planes(kernel, first, plane_len, out, scratch)
}

/// [`PlaneKernel::plane`] compiled for AVX-512 (the same operations in the
/// same order, in wider registers).
///
/// # Safety
/// The CPU must have AVX-512 (foundation).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn planes_avx512<K: PlaneKernel>(
    kernel: &K,
    first: usize,
    plane_len: usize,
    out: &mut [K::Out],
    scratch: &mut [K::Elem],
) -> Result<()> {
    planes(kernel, first, plane_len, out, scratch)
}
