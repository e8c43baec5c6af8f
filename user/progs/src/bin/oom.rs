//! oom: maps 64 GiB of MAP_NORESERVE anonymous memory and touches one byte per
//! page until the kernel runs out of memory and kills it (status 137, SIGKILL).
//! NOT run natively by `make check`: on a Linux host it would eat the machine.
#![no_std]
#![no_main]

use ulib::println;
use ulib::sys::*;

ulib::entry!(main);

const LEN: usize = 64 << 30;

fn main() -> i32 {
    println!("oom: touching one byte per page of a 64 GiB MAP_NORESERVE mapping;");
    println!("oom: the kernel must kill this with SIGKILL (status 137) when memory runs out");
    // SAFETY: no MAP_FIXED: nothing existing is replaced.
    let p = match unsafe { mmap(0, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0) } {
        Ok(p) => p,
        Err(e) => {
            println!("FAIL: mmap of 64 GiB with MAP_NORESERVE failed: {:?}", e);
            return 1;
        }
    };
    let step = 256 << 20;
    for off in (0..LEN).step_by(PAGE_SIZE) {
        // SAFETY: inside our mapping; only this loop uses it.
        unsafe { core::ptr::write_volatile(p.add(off), 1) };
        if (off + PAGE_SIZE).is_multiple_of(step) {
            println!("info: oom: touched {} MiB", (off + PAGE_SIZE) >> 20);
        }
    }
    println!("FAIL: touched all 64 GiB without being killed");
    1
}
