//! Keeps freed memory in the process for the next pass: how tensor buffers
//! are reused across calls.
//!
//! A saliency pass allocates and frees the same tensor sizes again and again
//! (activations, gradients, several MB each). glibc returns large blocks to
//! the kernel on free (they are `mmap`ed, or trimmed off the top of the
//! heap), so every pass page-faults its buffers in again: ~10% of a ResNet-50
//! forward pass here. Raising the mmap and trim thresholds keeps them in the
//! heap for reuse. glibc caps the mmap threshold at 32 MiB, so blocks above
//! it (the activations of a batch: 103 MB for VGG16's first layers at batch
//! 8) were still mapped and faulted in on every pass, until `M_MMAP_MAX` 0
//! turned `mmap` off for the heap altogether: VGG16 guided backprop at
//! batch 8 went 5-8% faster with 20-40 MiB less peak, batch 1 unchanged.
//! Peak memory is unchanged (what a pass needs at once); the
//! process just does not hand it back between passes. All threads share one
//! heap (`M_ARENA_MAX` 1): with trimming off, per-thread arenas would each
//! keep their own high-water mark, and memory freed by a worker thread could
//! not serve the next pass's allocations on another (measured: 2-5 MiB less
//! peak on VGG16; the kernels allocate rarely, so the shared lock costs
//! nothing measurable).

/// Largest block served from the heap instead of `mmap` (glibc's ceiling for
/// this setting on 64-bit targets); `M_MMAP_MAX` 0 then serves the larger
/// ones from the heap too (glibc still maps memory if the heap cannot grow).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Applies the settings; a no-op where the C library is not glibc.
///
/// The `sightline` command calls it first thing. A program that embeds the
/// library and explains many images should call it once at start-up (it is
/// safe at any time, but threads that already made their own `malloc`
/// arenas keep them): after the first pass, no tensor buffer page-faults in
/// again (VGG16 guided backprop: about 13,000 minor page faults per call
/// without it, none with it). It changes the settings of the whole process's
/// `malloc`, which is why the library never calls it on its own.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters, which glibc
    // updates under its main arena's lock, so any thread may call it at any
    // time; blocks already allocated keep working under either setting
    // (the arena limit only bounds arenas made afterwards). A refused
    // setting (return value 0) leaves glibc's default, which is also
    // correct.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_MAX, 0);
    }
}
