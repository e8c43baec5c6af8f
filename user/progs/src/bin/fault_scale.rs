//! fault_scale [N [FROM [MS]]]: page-fault throughput on FROM (default 1) to N
//! threads (a benchmark; its figures are on `info:` lines). N defaults to
//! the CPU count (sched_getaffinity); thread `i` is pinned to CPU `i` where the
//! kernel has sched_setaffinity. Each case runs MS/10 milliseconds untimed (a
//! warm-up), then MS (default 1000) timed, for every thread count from FROM
//! to N; each thread works in rounds until the time is up. Rates are
//! aggregate: all threads' pages over the time from a barrier that starts
//! them to the barrier the last one reaches, on thread 0's TSC.
//!
//! - `own_map`: each thread mmaps 512 pages, writes one byte per page,
//!   munmaps; repeated. Faults and VMA changes, each thread its own VMA.
//! - `own_dontneed`: each thread its own long-lived 512-page mapping between
//!   guard pages: touch every page, MADV_DONTNEED the whole; repeated.
//! - `shared_dontneed`: the same on one mapping of N x 512 pages shared by
//!   all threads, each touching and dropping its own slice: one VMA, so
//!   every fault takes the same VMA lock (and page-table locks near slice
//!   boundaries).
//!
//! (All threads faulting one shared region that one thread then unmaps is
//! mapbench's `global`.)
#![no_std]
#![no_main]

use ulib::bench::{self, Milli};
use ulib::println;
use ulib::sys::*;

ulib::entry!(main);

const PAGES: usize = 512;
const LEN: usize = PAGES * PAGE_SIZE;
fn own_map(_thread: usize, _arg: usize) -> u64 {
    let mut pages = 0;
    while bench::keep_going() {
        let p = mmap_anon(LEN, PROT_READ | PROT_WRITE).expect("mmap 512 pages");
        // SAFETY: our fresh mapping.
        unsafe { bench::touch(p, PAGES) };
        // SAFETY: nothing uses the mapping any more.
        unsafe { munmap(p, LEN) }.expect("munmap 512 pages");
        pages += PAGES as u64;
    }
    pages
}

/// Rounds of touch and MADV_DONTNEED over `pages` pages at `p` while there
/// is time; the pages touched.
fn touch_dontneed(p: *mut u8, pages: usize) -> u64 {
    let mut done = 0;
    while bench::keep_going() {
        // SAFETY: the caller's pages, written by this thread only.
        unsafe { bench::touch(p, pages) };
        // SAFETY: the pages hold no Rust values; dropping them is the point.
        unsafe { madvise(p, pages * PAGE_SIZE, MADV_DONTNEED) }.expect("madvise(MADV_DONTNEED)");
        done += pages as u64;
    }
    done
}

/// A `len`-byte RW region between two PROT_NONE guard pages (so nothing
/// merges with it), MADV_NOHUGEPAGE (4 KiB faults on Linux too); returns
/// (base of the whole, start of the RW region).
fn guarded_region(len: usize) -> (*mut u8, *mut u8) {
    let base = mmap_anon(len + 2 * PAGE_SIZE, PROT_READ | PROT_WRITE).expect("mmap a guarded region");
    // SAFETY: the end pages of our fresh mapping hold nothing.
    unsafe { mprotect(base, PAGE_SIZE, PROT_NONE) }.expect("mprotect low guard");
    // SAFETY: as above.
    unsafe { mprotect(base.add(PAGE_SIZE + len), PAGE_SIZE, PROT_NONE) }.expect("mprotect high guard");
    // SAFETY: the page after the low guard starts the RW region.
    let p = unsafe { base.add(PAGE_SIZE) };
    // SAFETY: a hint; no data changes.
    unsafe { madvise(p, len, MADV_NOHUGEPAGE) }.expect("madvise(MADV_NOHUGEPAGE)");
    (base, p)
}

fn own_dontneed(_thread: usize, _arg: usize) -> u64 {
    let (base, p) = guarded_region(LEN);
    let pages = touch_dontneed(p, PAGES);
    // SAFETY: nothing uses the region any more.
    unsafe { munmap(base, LEN + 2 * PAGE_SIZE) }.expect("munmap");
    pages
}

/// `arg` is the shared region; thread `i` works on slice `i`.
fn shared_dontneed(thread: usize, arg: usize) -> u64 {
    touch_dontneed((arg + thread * LEN) as *mut u8, PAGES)
}

/// One case on `from..=n` threads: an `info:` line per thread count.
fn case(name: &str, from: usize, n: usize, ms: u64, work: fn(usize, usize) -> u64, arg: usize) {
    for threads in from..=n {
        bench::parallel(threads, (ms / 10).max(1), work, arg);
        let (ticks, pages) = bench::parallel(threads, ms, work, arg);
        println!(
            "info: fault_scale: {}: {} threads: {} pages/Mtick ({} pages)",
            name,
            threads,
            Milli(bench::rate_milli(pages, ticks)),
            pages
        );
    }
}

fn main() -> i32 {
    let n = bench::threads_from_arg(1);
    let from = ulib::env::arg(2).and_then(ulib::env::parse_u64).map_or(1, |f| f as usize).clamp(1, n);
    let ms = bench::ms_from_arg(3, 1000);
    println!("fault_scale: own_map, own_dontneed, shared_dontneed on FROM to N threads");
    println!("info: fault_scale: {} to {} threads, {} ms per case, rounds of {} pages", from, n, ms, PAGES);
    case("own_map", from, n, ms, own_map, 0);
    case("own_dontneed", from, n, ms, own_dontneed, 0);
    let (base, p) = guarded_region(n * LEN);
    case("shared_dontneed", from, n, ms, shared_dontneed, p as usize);
    // SAFETY: nothing uses the region any more.
    unsafe { munmap(base, n * LEN + 2 * PAGE_SIZE) }.expect("munmap");
    bench::pinning_report("fault_scale");
    println!("fault_scale: done");
    ulib::bench::drain_console_before_exit();
    0
}
