//! Aborts on any single allocation above 256 MiB. The targets are built without a sanitizer
//! (librdkafka's C build does not link with one), and without one libFuzzer cannot see
//! allocations, so `-malloc_limit_mb` would miss a parser that sizes a buffer from a length
//! field; the abort makes libFuzzer report and save such an input as a crash.

use std::alloc::{GlobalAlloc, Layout, System};

const LIMIT: usize = 256 << 20;

pub struct Limited;

fn check(size: usize) {
    if size > LIMIT {
        // No formatting: it might allocate inside the allocator.
        let message = b"allocation above the fuzz limit of 256 MiB\n";
        // SAFETY: writes a static buffer to stderr.
        unsafe { libc_write(2, message.as_ptr(), message.len()) };
        std::process::abort();
    }
}

extern "C" {
    #[link_name = "write"]
    fn libc_write(fd: i32, buf: *const u8, count: usize) -> isize;
}

// SAFETY: every call is forwarded to the system allocator unchanged, after the size check.
unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}
