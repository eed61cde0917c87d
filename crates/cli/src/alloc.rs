//! The process's allocator: the system's, asking Linux for transparent huge pages on every
//! allocation of 2 MiB or more before it is touched.
//!
//! An engine's columns are a few vectors of 30M entries, and its reports walk them while
//! indexing per-fan vectors of 1M entries at random. With 4 KiB pages those lookups miss the
//! TLB most of the time: on the 1M-fan brand, retention through a running server took 1.10 s
//! and LTV 0.93 s; the same server with huge pages (glibc's `hugetlb` tunable) took about
//! 0.8 and 0.65 s. Machines are commonly set to `madvise` (huge pages only where asked,
//! Debian's default), so this asks: `madvise(MADV_HUGEPAGE)` on the allocation's whole 2 MiB
//! pages, before the first write, so the faults that fill it take huge pages directly. A
//! vector that grows by `realloc` keeps the advice when glibc moves its mapping (`mremap`)
//! and gets it anew when the allocation is copied. Where the kernel says no (`never`, or no
//! THP at all) nothing changes. `SIYU_HUGE_PAGES=off` turns it off.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

/// Allocations at least this large are advised.
const HUGE: usize = 2 << 20;

pub struct Allocator;

/// Makes glibc serve every allocation of [`HUGE`] or more from a fresh mapping, as it does at
/// first: its threshold otherwise rises as large blocks are freed (up to 32 MiB), and a block
/// carved from the heap's already-touched pages would take the advice too late. Call first
/// thing in `main`.
pub fn init() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if enabled() {
        // SAFETY: sets one of glibc's malloc parameters; no memory is touched.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, HUGE as libc::c_int);
        }
    }
}

/// 0: not read yet; 1: on; 2: off.
static STATE: AtomicU8 = AtomicU8::new(0);

fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            // `std::env::var` allocates; an allocator must not. `getenv` does not.
            // SAFETY: a NUL-terminated name; the result is read before anything can change
            // the environment on this thread, and only compared.
            let off = unsafe {
                let v = libc::getenv(c"SIYU_HUGE_PAGES".as_ptr());
                !v.is_null() && std::ffi::CStr::from_ptr(v).to_bytes() == b"off"
            };
            STATE.store(if off { 2 } else { 1 }, Ordering::Relaxed);
            !off
        }
    }
}

/// Advises the whole huge pages inside `[ptr, ptr + size)`.
fn advise(ptr: *mut u8, size: usize) {
    if ptr.is_null() || size < HUGE || !enabled() {
        return;
    }
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + size) & !(HUGE - 1);
    #[cfg(target_os = "linux")]
    if end > start {
        // SAFETY: the range lies inside an allocation this process owns; MADV_HUGEPAGE
        // changes no contents, only how later faults are served. A failure is harmless.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, end);
}

// SAFETY: every call is forwarded to `System` with the same arguments; `advise` only adds a
// hint on memory `System` just handed out.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded. (Zeroed memory of this size comes from a
        // fresh mapping, untouched until written: advising it after is still in time.)
        let p = unsafe { System.alloc_zeroed(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        advise(p, new_size);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_allocations_are_advised_and_still_hold_what_is_written() {
        let a = Allocator;
        let layout = Layout::from_size_align(8 << 20, 8).unwrap();
        // SAFETY: a valid layout; the memory is written within bounds, then freed once.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            p.write_bytes(7, layout.size());
            let q = a.realloc(p, layout, 16 << 20);
            assert!(!q.is_null());
            assert_eq!(*q.add((8 << 20) - 1), 7);
            a.dealloc(q, Layout::from_size_align(16 << 20, 8).unwrap());
        }
        // Small ones are left alone (and work).
        let v: Vec<u64> = (0..1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 499_500);
    }
}
