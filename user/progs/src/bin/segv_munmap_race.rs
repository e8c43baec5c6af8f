//! segv_munmap_race: thread B reads a page over and over (so its CPU caches the
//! translation); thread A unmaps the page and, once munmap has returned, raises
//! a flag. B reads the flag before each read, so its first read after seeing
//! the flag comes strictly after munmap returned and must fault: the kernel
//! must have shot down every stale TLB entry. Must die of SIGSEGV (139).
#![no_std]
#![no_main]

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use ulib::sys::*;
use ulib::{println, thread};

ulib::entry!(main);

static PAGE: AtomicUsize = AtomicUsize::new(0);
static UNMAPPED: AtomicBool = AtomicBool::new(false);
static READS: AtomicU64 = AtomicU64::new(0);

fn reader() {
    let p = PAGE.load(Ordering::SeqCst) as *const u8;
    loop {
        let unmapped = UNMAPPED.load(Ordering::SeqCst);
        // SAFETY: deliberately not safe once `unmapped` is true: that read must
        // fault and the kernel must kill the process.
        let v = unsafe { ptr::read_volatile(p) };
        if unmapped {
            println!("FAIL: thread B read {} from the page after munmap had returned", v);
            exit_group(1);
        }
        READS.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() -> i32 {
    let p = mmap_anon(PAGE_SIZE, PROT_READ | PROT_WRITE).expect("mmap");
    // SAFETY: the fresh page is writable.
    unsafe { ptr::write_volatile(p, 7) };
    PAGE.store(p as usize, Ordering::SeqCst);
    println!("segv_munmap_race: thread B keeps reading a page; thread A unmaps it, then tells B;");
    println!("segv_munmap_race: B's next read must be killed by SIGSEGV (status 139)");
    let _b = thread::spawn(reader).expect("spawn");
    while READS.load(Ordering::Relaxed) < 100_000 {
        let _ = sched_yield();
    }
    // SAFETY: only thread B uses the page, and its use after this is the
    // deliberate faulting read.
    unsafe { munmap(p, PAGE_SIZE) }.expect("munmap");
    UNMAPPED.store(true, Ordering::SeqCst);
    sleep_ms(10_000);
    println!(
        "FAIL: still alive 10 s after the page was unmapped (thread B did {} reads)",
        READS.load(Ordering::Relaxed)
    );
    1
}
