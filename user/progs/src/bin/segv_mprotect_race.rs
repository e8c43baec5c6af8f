//! segv_mprotect_race: thread B writes a page over and over (so its CPU caches
//! a writable translation); thread A makes the page PROT_READ and, once
//! mprotect has returned, raises a flag. B checks the flag before each write,
//! so its first write after seeing it comes strictly after mprotect returned
//! and must fault. Must die of SIGSEGV (139).
#![no_std]
#![no_main]

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use ulib::sys::*;
use ulib::{println, thread};

ulib::entry!(main);

static PAGE: AtomicUsize = AtomicUsize::new(0);
static READ_ONLY: AtomicBool = AtomicBool::new(false);
static WRITES: AtomicU64 = AtomicU64::new(0);

fn writer() {
    let p = PAGE.load(Ordering::SeqCst) as *mut u8;
    let mut v = 0u8;
    loop {
        let read_only = READ_ONLY.load(Ordering::SeqCst);
        v = v.wrapping_add(1);
        // SAFETY: deliberately not safe once `read_only` is true: that write
        // must fault and the kernel must kill the process.
        unsafe { ptr::write_volatile(p, v) };
        if read_only {
            println!("FAIL: thread B wrote the page after mprotect(PROT_READ) had returned");
            exit_group(1);
        }
        WRITES.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() -> i32 {
    let p = mmap_anon(PAGE_SIZE, PROT_READ | PROT_WRITE).expect("mmap");
    PAGE.store(p as usize, Ordering::SeqCst);
    println!("segv_mprotect_race: thread B keeps writing a page; thread A makes it read-only, then tells B;");
    println!("segv_mprotect_race: B's next write must be killed by SIGSEGV (status 139)");
    let _b = thread::spawn(writer).expect("spawn");
    while WRITES.load(Ordering::Relaxed) < 100_000 {
        let _ = sched_yield();
    }
    // SAFETY: only thread B uses the page, and its write after this is the
    // deliberate faulting one.
    unsafe { mprotect(p, PAGE_SIZE, PROT_READ) }.expect("mprotect");
    READ_ONLY.store(true, Ordering::SeqCst);
    sleep_ms(10_000);
    println!(
        "FAIL: still alive 10 s after the page was made read-only (thread B did {} writes)",
        WRITES.load(Ordering::Relaxed)
    );
    1
}
