//! The allocator of the examples that train or evaluate models (`#[path] mod alloc;`): mimalloc,
//! told to keep freed memory for reuse.
//!
//! A training step allocates and frees hundreds of activation-sized tensors. With glibc's
//! allocator (or mimalloc's defaults), freed blocks go back to the kernel and the next step
//! faults them in again, zero-filled page by page: on the 5.9M-parameter Gemma at one thread
//! that was ~20% of a step's time (`clear_page_erms` in `perf`). Keeping them mapped has a
//! price in memory: freed blocks of one size are not always reused for another, so the peak
//! grows (a full fine-tuning step on the 270M shapes: 9.0 → 11.1 GiB, for 26.7 → 38.2 tok/s).
//! A service embedding kwx chooses its own allocator; this is what the examples choose.
#![allow(dead_code, unreachable_pub, missing_docs)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (`mimalloc.h`); libmimalloc-sys does
/// not export it ("not exposed as constants for stability reasons"), so it is checked against
/// its default before use.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// The default purge delay of the mimalloc that libmimalloc-sys 0.1.49 builds, in milliseconds
/// (`MIMALLOC_VERBOSE=1` lists `option 'purge_delay': 1000`).
const DEFAULT_PURGE_DELAY_MS: std::ffi::c_long = 1000;

/// Tells mimalloc never to return freed pages to the kernel (`purge_delay = -1`, what
/// `MIMALLOC_PURGE_DELAY=-1` sets). Call first in `main`. Returns whether the option was set:
/// `false` when the option at that index does not hold that default (another mimalloc layout,
/// or `MIMALLOC_PURGE_DELAY` set by the user), leaving mimalloc as it is.
#[allow(unsafe_code)]
pub fn keep_freed_memory() -> bool {
    // SAFETY: `mi_option_get`/`mi_option_set` read and write one of mimalloc's global option
    // values; they take no pointers and are documented as callable at any time.
    unsafe {
        if libmimalloc_sys::mi_option_get(PURGE_DELAY) != DEFAULT_PURGE_DELAY_MS {
            return false;
        }
        libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
    }
    true
}

/// [`keep_freed_memory`], saying on stderr when it left mimalloc as it was.
pub fn setup() {
    if !keep_freed_memory() {
        eprintln!(
            "note: mimalloc's purge_delay is not at its default (MIMALLOC_PURGE_DELAY set?); \
             leaving it as it is"
        );
    }
}
