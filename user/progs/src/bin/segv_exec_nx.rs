//! segv_exec_nx: calls into a PROT_READ|PROT_WRITE page holding a `ret`; the
//! page is not executable (NX), so this must die of SIGSEGV (139).
#![no_std]
#![no_main]

use ulib::println;
use ulib::sys::*;

ulib::entry!(main);

fn main() -> i32 {
    let p = mmap_anon(PAGE_SIZE, PROT_READ | PROT_WRITE).expect("mmap");
    // SAFETY: the fresh page is writable.
    unsafe { core::ptr::write_volatile(p, 0xc3) }; // ret
    println!("segv_exec_nx: calling a `ret` in a non-executable page; this must be killed by SIGSEGV (status 139)");
    // SAFETY: deliberately not safe: fetching the instruction must fault (the
    // page lacks PROT_EXEC) and the kernel must kill us.
    let f: extern "C" fn() = unsafe { core::mem::transmute(p) };
    f();
    println!("FAIL: code in a PROT_READ|PROT_WRITE page ran");
    1
}
