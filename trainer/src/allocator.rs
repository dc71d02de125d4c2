//! mimalloc settings for training (`rnafm-train` uses mimalloc as its global allocator).
//!
//! A training step allocates and frees gigabytes of large tensor buffers. The system
//! allocator maps and unmaps each one and the kernel zeroes every fresh page: a third of a
//! paper-size step went to page faults. mimalloc with these settings keeps freed buffers
//! mapped for the next step (measured at the paper config: 8.0 s/step against 12.6 s with
//! mimalloc's defaults; peak RSS is set by the largest step either way).

use std::ffi::c_long;

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

// Option numbers in mimalloc v3's `mi_option_e` (what libmimalloc-sys 0.1.49 builds); the
// crate names only some of them. The test below checks them against their defaults.
const PURGE_DELAY: mi_option_t = 15;
const ARENA_RESERVE: mi_option_t = 23;

/// Never return freed memory to the OS, and reserve address space for arenas 16 GiB at a
/// time (so that tensor buffers come from a few arenas, not from fresh OS mappings). A
/// setting the user made through `MIMALLOC_PURGE_DELAY` / `MIMALLOC_ARENA_RESERVE` wins.
pub fn keep_freed_memory() {
    // SAFETY: plain option setters of mimalloc; any value is valid for both options.
    unsafe {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            mi_option_set(PURGE_DELAY, -1);
        }
        if std::env::var_os("MIMALLOC_ARENA_RESERVE").is_none() {
            // In KiB.
            mi_option_set(ARENA_RESERVE, 16 << 20);
        }
    }
}

/// (purge delay in ms, arena reserve in KiB) as mimalloc sees them now.
pub fn settings() -> (c_long, c_long) {
    // SAFETY: plain option getters.
    unsafe { (mi_option_get(PURGE_DELAY), mi_option_get(ARENA_RESERVE)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_numbers_are_purge_delay_and_arena_reserve() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
            || std::env::var_os("MIMALLOC_ARENA_RESERVE").is_some()
        {
            return; // the user's settings, not the defaults
        }
        // mimalloc v3's defaults identify the two options: 1000 ms and 1 GiB.
        assert_eq!(settings(), (1000, 1 << 20));
        keep_freed_memory();
        assert_eq!(settings(), (-1, 16 << 20));
    }
}
