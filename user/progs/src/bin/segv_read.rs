//! segv_read: reads an address with nothing mapped; must die of SIGSEGV (139).
#![no_std]
#![no_main]

use ulib::println;
use ulib::sys::*;

ulib::entry!(main);

fn main() -> i32 {
    // Map a page and unmap it untouched: an address we know is not mapped,
    // and never was accessed (so no TLB entry can hide the fault).
    let p = mmap_anon(PAGE_SIZE, PROT_READ | PROT_WRITE).expect("mmap");
    // SAFETY: nothing uses the fresh page.
    unsafe { munmap(p, PAGE_SIZE) }.expect("munmap");
    println!("segv_read: reading an unmapped address; this must be killed by SIGSEGV (status 139)");
    // SAFETY: deliberately not safe: this read must fault and the kernel must
    // kill us before it completes.
    let v = unsafe { core::ptr::read_volatile(p) };
    println!("FAIL: the read of an unmapped address returned {}", v);
    1
}
