//! segv_write_ro: writes to a PROT_READ mapping; must die of SIGSEGV (139).
#![no_std]
#![no_main]

use ulib::println;
use ulib::sys::*;

ulib::entry!(main);

fn main() -> i32 {
    let p = mmap_anon(PAGE_SIZE, PROT_READ).expect("mmap");
    // SAFETY: a PROT_READ anonymous page is readable (and reads as zero).
    let v = unsafe { core::ptr::read_volatile(p) };
    println!("segv_write_ro: the PROT_READ page reads as {}; writing to it must be killed by SIGSEGV (status 139)", v);
    // SAFETY: deliberately not safe: this write must fault and the kernel must
    // kill us before it completes.
    unsafe { core::ptr::write_volatile(p, 1) };
    println!("FAIL: the write to a PROT_READ page succeeded");
    1
}
