//! many_vmas: builds 10,000 separate VMAs twice over and checks the memory
//! behind every one of them.
//!  1. 10,000 one-page mappings separated by one-page holes (one big mapping
//!     with every other page unmapped): written, verified, unmapped one by one.
//!  2. One 10,000-page mapping whose pages alternate between read-write and
//!     read-only (mprotect every other page): written before, verified after,
//!     merged back with a single mprotect, rewritten, verified, unmapped.
#![no_std]
#![no_main]

use core::ptr;

use ulib::println;
use ulib::sys::*;

ulib::entry!(main);

const N: usize = 10_000;
const PAGE: usize = PAGE_SIZE;

/// A word that is different for every page and every pass.
fn tag(i: usize, pass: usize) -> u64 {
    (i as u64) << 8 | pass as u64 | 0x5a5a_0000_0000_0000
}

/// # Safety
/// Page `i` of `base` must be readable.
unsafe fn read(base: *mut u8, i: usize) -> u64 {
    // SAFETY: forwarded contract; pages are 8-aligned.
    unsafe { ptr::read_volatile(base.add(i * PAGE) as *const u64) }
}

/// # Safety
/// Page `i` of `base` must be writable scratch memory.
unsafe fn write(base: *mut u8, i: usize, v: u64) {
    // SAFETY: forwarded contract.
    unsafe { ptr::write_volatile(base.add(i * PAGE + PAGE - 8) as *mut u64, v) };
    // SAFETY: forwarded contract.
    unsafe { ptr::write_volatile(base.add(i * PAGE) as *mut u64, v) }
}

/// # Safety
/// Page `i` of `base` must be readable.
unsafe fn intact(base: *mut u8, i: usize, v: u64) -> bool {
    // SAFETY: forwarded contract.
    unsafe { read(base, i) == v && ptr::read_volatile(base.add(i * PAGE + PAGE - 8) as *const u64) == v }
}

fn separate_mappings() -> Result<(), &'static str> {
    let base = mmap_anon(2 * N * PAGE, PROT_READ | PROT_WRITE).map_err(|_| "mmap of the region failed")?;
    // SAFETY: everything below happens inside our own mapping; pages are only
    // accessed while mapped (even pages), odd pages are unmapped first.
    unsafe {
        for i in 0..N {
            munmap(base.add((2 * i + 1) * PAGE), PAGE).map_err(|_| "munmap of a hole failed")?;
        }
        for i in 0..N {
            write(base, 2 * i, tag(i, 1));
        }
        if !(0..N).all(|i| intact(base, 2 * i, tag(i, 1))) {
            return Err("a one-page mapping lost its data");
        }
        for i in 0..N {
            munmap(base.add(2 * i * PAGE), PAGE).map_err(|_| "munmap of a one-page mapping failed")?;
        }
    }
    Ok(())
}

fn alternating_protections() -> Result<(), &'static str> {
    let base = mmap_anon(N * PAGE, PROT_READ | PROT_WRITE).map_err(|_| "mmap failed")?;
    // SAFETY: everything below happens inside our own mapping, and pages are
    // written only while writable.
    unsafe {
        for i in 0..N {
            write(base, i, tag(i, 2));
        }
        for i in (1..N).step_by(2) {
            mprotect(base.add(i * PAGE), PAGE, PROT_READ).map_err(|_| "mprotect of a page failed")?;
        }
        if !(0..N).all(|i| intact(base, i, tag(i, 2))) {
            return Err("a page lost its data after the protection changes");
        }
        for i in (0..N).step_by(2) {
            write(base, i, tag(i, 3));
        }
        if !(0..N).all(|i| intact(base, i, tag(i, 2 + (i % 2 == 0) as usize))) {
            return Err("a page lost its data after writes to its neighbours");
        }
        mprotect(base, N * PAGE, PROT_READ | PROT_WRITE).map_err(|_| "mprotect of the whole mapping failed")?;
        for i in 0..N {
            write(base, i, tag(i, 4));
        }
        if !(0..N).all(|i| intact(base, i, tag(i, 4))) {
            return Err("a page lost its data after merging");
        }
        munmap(base, N * PAGE).map_err(|_| "munmap failed")?;
    }
    Ok(())
}

fn main() -> i32 {
    let mut failed = false;
    let t0 = monotonic_ns();
    match separate_mappings() {
        Ok(()) => println!("many_vmas: {} one-page mappings separated by holes: written, verified, unmapped", N),
        Err(e) => {
            println!("FAIL: many_vmas: separate mappings: {}", e);
            failed = true;
        }
    }
    let t1 = monotonic_ns();
    match alternating_protections() {
        Ok(()) => println!(
            "many_vmas: one {}-page mapping with alternating protections ({} VMAs): verified, merged back, unmapped",
            N, N
        ),
        Err(e) => {
            println!("FAIL: many_vmas: alternating protections: {}", e);
            failed = true;
        }
    }
    let t2 = monotonic_ns();
    println!("info: many_vmas: part 1 took {} ms, part 2 {} ms", (t1 - t0) / 1_000_000, (t2 - t1) / 1_000_000);
    if failed {
        1
    } else {
        println!("many_vmas: ok");
        0
    }
}
