//! fault_scale [N [FROM [PERCENT]]]: page-fault throughput on FROM (default 1) to N
//! threads (a benchmark; its figures are on `info:` lines). N defaults to
//! the CPU count (sched_getaffinity); thread `i` is pinned to CPU `i` where the
//! kernel has sched_setaffinity. Each case runs once short and untimed (a
//! warm-up), then once timed, for every thread count from FROM to N; rates are
//! aggregate: all threads' pages over the time from a barrier that starts
//! them to the barrier the last one reaches, on thread 0's TSC. PERCENT
//! scales the rounds (default 100).
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

use core::sync::atomic::{AtomicUsize, Ordering};

use ulib::bench::{self, Milli};
use ulib::println;
use ulib::sys::*;

ulib::entry!(main);

const PAGES: usize = 512;
const LEN: usize = PAGES * PAGE_SIZE;
/// Rounds per thread at 100% (each round faults 512 pages): about 0.5-1 s
/// per case on one thread of our kernel under QEMU TCG.
const ROUNDS: usize = 200;
const WARM_ROUNDS: usize = 10;

/// The rounds each thread runs in the current pass.
static ROUNDS_NOW: AtomicUsize = AtomicUsize::new(0);

fn own_map(_thread: usize, _arg: usize) {
    for _ in 0..ROUNDS_NOW.load(Ordering::Relaxed) {
        let p = mmap_anon(LEN, PROT_READ | PROT_WRITE).expect("mmap 512 pages");
        // SAFETY: our fresh mapping.
        unsafe { bench::touch(p, PAGES) };
        // SAFETY: nothing uses the mapping any more.
        unsafe { munmap(p, LEN) }.expect("munmap 512 pages");
    }
}

/// `rounds` of touch and MADV_DONTNEED over `pages` pages at `p`.
fn touch_dontneed(p: *mut u8, pages: usize, rounds: usize) {
    for _ in 0..rounds {
        // SAFETY: the caller's pages, written by this thread only.
        unsafe { bench::touch(p, pages) };
        // SAFETY: the pages hold no Rust values; dropping them is the point.
        unsafe { madvise(p, pages * PAGE_SIZE, MADV_DONTNEED) }.expect("madvise(MADV_DONTNEED)");
    }
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

fn own_dontneed(_thread: usize, _arg: usize) {
    let (base, p) = guarded_region(LEN);
    touch_dontneed(p, PAGES, ROUNDS_NOW.load(Ordering::Relaxed));
    // SAFETY: nothing uses the region any more.
    unsafe { munmap(base, LEN + 2 * PAGE_SIZE) }.expect("munmap");
}

/// `arg` is the shared region; thread `i` works on slice `i`.
fn shared_dontneed(thread: usize, arg: usize) {
    let p = (arg + thread * LEN) as *mut u8;
    touch_dontneed(p, PAGES, ROUNDS_NOW.load(Ordering::Relaxed));
}

/// One case on 1..=n threads: an `info:` line per thread count.
fn case(name: &str, from: usize, n: usize, rounds: usize, work: fn(usize, usize), arg: usize) {
    for threads in from..=n {
        ROUNDS_NOW.store(WARM_ROUNDS, Ordering::Relaxed);
        bench::parallel(threads, work, arg);
        ROUNDS_NOW.store(rounds, Ordering::Relaxed);
        let ticks = bench::parallel(threads, work, arg);
        let pages = (threads * rounds * PAGES) as u64;
        println!(
            "info: fault_scale: {}: {} threads: {} pages/Mtick",
            name,
            threads,
            Milli(bench::rate_milli(pages, ticks))
        );
    }
}

fn main() -> i32 {
    let n = bench::threads_from_arg(1);
    let from = ulib::env::arg(2).and_then(ulib::env::parse_u64).map_or(1, |f| f as usize).clamp(1, n);
    let rounds = (ROUNDS * bench::percent_from_arg(3) / 100).max(1);
    println!("fault_scale: own_map, own_dontneed, shared_dontneed on FROM to N threads");
    println!("info: fault_scale: {} to {} threads, {} rounds of {} pages per thread and case", from, n, rounds, PAGES);
    case("own_map", from, n, rounds, own_map, 0);
    case("own_dontneed", from, n, rounds, own_dontneed, 0);
    let (base, p) = guarded_region(n * LEN);
    case("shared_dontneed", from, n, rounds, shared_dontneed, p as usize);
    // SAFETY: nothing uses the region any more.
    unsafe { munmap(base, n * LEN + 2 * PAGE_SIZE) }.expect("munmap");
    bench::pinning_report("fault_scale");
    println!("fault_scale: done");
    0
}
