//! huge_prot_none: huge PROT_NONE reservations (as allocators and language
//! runtimes make them) cost nothing until parts are made accessible.
//!  1. mmap(NULL, 64 TiB, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS): Linux accepts
//!     it without MAP_NORESERVE (no overcommit charge without PROT_WRITE);
//!     1 MiB in the middle is made read-write, touched, checked; the whole
//!     reservation is unmapped.
//!  2. A 1 TiB PROT_NONE reservation with MAP_NORESERVE: a few pages spread
//!     over it are made read-write one by one, touched, checked; unmapped.
//!
//! After each munmap the pages must be gone. The work is proportional to the
//! pages touched, not to the size reserved: a kernel that walks every page of
//! the range (2^34 of them for 64 TiB) takes hours.
#![no_std]
#![no_main]

use core::ptr;

use ulib::sys::*;
use ulib::{println, Errno};

ulib::entry!(main);

const PAGE: usize = PAGE_SIZE;
const MIB: usize = 1 << 20;
const TIB: usize = 1 << 40;

/// Whether the kernel can read the word at `a` (FUTEX_WAIT with a zero
/// timeout reads it and returns at once, EFAULT if it cannot).
fn readable(a: usize) -> bool {
    let zero = Timespec::default();
    // SAFETY: FUTEX_WAIT only reads the word, or reports EFAULT.
    let r = unsafe { futex(a as *const u32, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 0x5eed_f00d, &zero) };
    r != Err(Errno::EFAULT)
}

fn tag(a: usize) -> u64 {
    a as u64 ^ 0xa5a5_5a5a_0000_0000
}

/// Writes a tag to the first and last word of each page of [a, a + len) and
/// reads them all back.
///
/// # Safety
/// The range must be ours, read-write, and unused by anything else.
unsafe fn touch(a: usize, len: usize) -> bool {
    for page in (a..a + len).step_by(PAGE) {
        // SAFETY: forwarded contract.
        unsafe {
            ptr::write_volatile(page as *mut u64, tag(page));
            ptr::write_volatile((page + PAGE - 8) as *mut u64, !tag(page));
        }
    }
    (a..a + len).step_by(PAGE).all(|page| {
        // SAFETY: as above.
        unsafe {
            ptr::read_volatile(page as *const u64) == tag(page)
                && ptr::read_volatile((page + PAGE - 8) as *const u64) == !tag(page)
        }
    })
}

fn result<T>(r: &Result<T, Errno>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.name().unwrap_or("unknown errno"),
    }
}

/// Part 1: returns false if something failed.
fn reserve_64t() -> bool {
    let len = 64 * TIB;
    // SAFETY: no MAP_FIXED: nothing existing is replaced.
    let r = unsafe { mmap(0, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) };
    println!("mmap 64 TiB PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS: {}", result(&r));
    let Ok(base) = r else { return false };
    let base = base as usize;
    println!("info: 64 TiB reservation at {:#x}", base);
    let mid = base + len / 2;
    println!("the middle is inaccessible before mprotect: {}", !readable(mid));
    // SAFETY: the range is inside our fresh reservation.
    let r = unsafe { mprotect(mid as *mut u8, MIB, PROT_READ | PROT_WRITE) };
    println!("mprotect 1 MiB in the middle to PROT_READ|PROT_WRITE: {}", result(&r));
    let mut good = r.is_ok();
    if good {
        // SAFETY: that 1 MiB is ours and read-write now.
        let ok = unsafe { touch(mid, MIB) };
        println!("wrote and read back its 256 pages: {}", if ok { "ok" } else { "FAIL: data differs" });
        good &= ok;
        println!("the pages around it stay inaccessible: {}", !readable(mid - PAGE) && !readable(mid + MIB));
    }
    // SAFETY: nothing uses the reservation any more.
    let r = unsafe { munmap(base as *mut u8, len) };
    println!("munmap of the whole 64 TiB: {}", result(&r));
    good &= r.is_ok();
    println!("the touched pages are gone: {}", !readable(mid) && !readable(mid + MIB - PAGE));
    good
}

/// Part 2: returns false if something failed.
fn reserve_1t() -> bool {
    let len = TIB;
    // SAFETY: no MAP_FIXED: nothing existing is replaced.
    let r = unsafe { mmap(0, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0) };
    println!("mmap 1 TiB PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE: {}", result(&r));
    let Ok(base) = r else { return false };
    let base = base as usize;
    println!("info: 1 TiB reservation at {:#x}", base);
    // Pages at both ends and a few in between, each made accessible on its own.
    let offsets = [0, PAGE, (len / 3) & !(PAGE - 1), len / 2, len - 2 * PAGE, len - PAGE];
    let mut good = true;
    for off in offsets {
        // SAFETY: the page is inside our fresh reservation.
        let r = unsafe { mprotect((base + off) as *mut u8, PAGE, PROT_READ | PROT_WRITE) };
        if r.is_err() {
            println!("FAIL: mprotect of the page at offset {:#x}: {}", off, result(&r));
            good = false;
        }
    }
    println!("mprotect of {} pages to PROT_READ|PROT_WRITE: {}", offsets.len(), if good { "ok" } else { "FAIL" });
    if good {
        // SAFETY: each of these pages is ours and read-write now.
        let ok = offsets.iter().all(|&off| unsafe { touch(base + off, PAGE) });
        println!("wrote and read back each of them: {}", if ok { "ok" } else { "FAIL: data differs" });
        good &= ok;
        println!("a page between them stays inaccessible: {}", !readable(base + 2 * PAGE));
    }
    // SAFETY: nothing uses the reservation any more.
    let r = unsafe { munmap(base as *mut u8, len) };
    println!("munmap of the whole 1 TiB: {}", result(&r));
    good &= r.is_ok();
    println!("the touched pages are gone: {}", offsets.iter().all(|&off| !readable(base + off)));
    good
}

fn main() -> i32 {
    println!("huge_prot_none: 64 TiB and 1 TiB PROT_NONE reservations, partly made accessible, then unmapped");
    let t0 = monotonic_ns();
    let a = reserve_64t();
    let t1 = monotonic_ns();
    let b = reserve_1t();
    let t2 = monotonic_ns();
    println!("info: part 1 took {} ms, part 2 {} ms", (t1 - t0) / 1_000_000, (t2 - t1) / 1_000_000);
    if a && b {
        println!("huge_prot_none: ok");
        0
    } else {
        println!("huge_prot_none: FAIL");
        1
    }
}
