//! mapbench [N [FROM [PERCENT]]]: the three mapbench workloads of RadixVM (Clements,
//! Kaashoek and Zeldovich, EuroSys 2013) on FROM (default 1) to N threads,
//! N defaulting to the CPU count, thread `i` pinned to CPU `i` where the
//! kernel has sched_setaffinity (a benchmark; figures on `info:` lines).
//! Rates are aggregate pages per million TSC ticks on thread 0's clock,
//! after an untimed warm-up of each case and thread count. PERCENT scales
//! the work (default 100).
//!
//! - `local`: each thread maps a 4-page region, writes each page, unmaps
//!   it; only the mapping CPU ever holds its translations, so an unmap
//!   needs no remote TLB flush (on a kernel that tracks which CPUs do).
//! - `pipeline`: thread `i` maps and writes a region and hands it to thread
//!   `i + 1` (mod N), which unmaps it: every unmap must flush one other
//!   CPU's TLB, a targeted shootdown rather than a broadcast.
//! - `global`: each round thread 0 maps one region of N x 64 pages, every
//!   thread writes its 64 pages, then thread 0 unmaps the whole: faults
//!   concurrent on one VMA and a shootdown of every CPU per round.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicUsize, Ordering};

use ulib::bench::{self, Barrier, Milli};
use ulib::println;
use ulib::sys::*;

ulib::entry!(main);

const MAX_THREADS: usize = 64;
/// Pages of a `local` or `pipeline` region.
const REGION: usize = 4;
const REGION_LEN: usize = REGION * PAGE_SIZE;
/// Regions per thread in `local` and `pipeline`.
const OPS: usize = 8000;
/// Pages per thread of a `global` round, and rounds.
const GLOBAL_PAGES: usize = 64;
const GLOBAL_ROUNDS: usize = 250;

/// Operations per thread in the current pass (a warm-up runs fewer).
static OPS_NOW: AtomicUsize = AtomicUsize::new(0);
static THREADS_NOW: AtomicUsize = AtomicUsize::new(1);

fn map_touch() -> *mut u8 {
    let p = mmap_anon(REGION_LEN, PROT_READ | PROT_WRITE).expect("mmap a region");
    // SAFETY: our fresh mapping.
    unsafe { bench::touch(p, REGION) };
    p
}

fn local(_thread: usize, _arg: usize) {
    for _ in 0..OPS_NOW.load(Ordering::Relaxed) {
        let p = map_touch();
        // SAFETY: nothing uses the region any more.
        unsafe { munmap(p, REGION_LEN) }.expect("munmap a region");
    }
}

/// Slots of one thread's mailbox: regions handed to it, 0 when empty.
const SLOTS: usize = 16;
struct Mailbox {
    slots: [AtomicUsize; SLOTS],
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Mailbox = Mailbox { slots: [const { AtomicUsize::new(0) }; SLOTS] };
static MAILBOXES: [Mailbox; MAX_THREADS] = [EMPTY; MAX_THREADS];

/// Thread `thread` maps regions into the next thread's mailbox and unmaps
/// what its own mailbox holds, until it has done OPS of each. Each mailbox
/// has one writer and one reader, which go round its slots in order.
fn pipeline(thread: usize, _arg: usize) {
    let ops = OPS_NOW.load(Ordering::Relaxed);
    let next = &MAILBOXES[(thread + 1) % THREADS_NOW.load(Ordering::Relaxed)];
    let mine = &MAILBOXES[thread];
    let (mut sent, mut received, mut idle) = (0, 0, 0u32);
    while sent < ops || received < ops {
        let mut progress = false;
        let out = &next.slots[sent % SLOTS];
        if sent < ops && out.load(Ordering::Acquire) == 0 {
            out.store(map_touch() as usize, Ordering::Release);
            sent += 1;
            progress = true;
        }
        let inbox = &mine.slots[received % SLOTS];
        let p = inbox.load(Ordering::Acquire);
        if received < ops && p != 0 {
            // SAFETY: the sender wrote it and never touches it again.
            unsafe { munmap(p as *mut u8, REGION_LEN) }.expect("munmap a handed-over region");
            inbox.store(0, Ordering::Release);
            received += 1;
            progress = true;
        }
        if progress {
            idle = 0;
        } else {
            idle += 1;
            if idle.is_multiple_of(64) {
                let _ = sched_yield();
            } else {
                core::hint::spin_loop();
            }
        }
    }
}

static ROUND: Barrier = Barrier::new(1);
static GLOBAL_REGION: AtomicUsize = AtomicUsize::new(0);

fn global(thread: usize, _arg: usize) {
    let n = THREADS_NOW.load(Ordering::Relaxed);
    let len = n * GLOBAL_PAGES * PAGE_SIZE;
    for _ in 0..OPS_NOW.load(Ordering::Relaxed) {
        if thread == 0 {
            let p = mmap_anon(len, PROT_READ | PROT_WRITE).expect("mmap the global region");
            // SAFETY: a hint on our fresh mapping.
            unsafe { madvise(p, len, MADV_NOHUGEPAGE) }.expect("madvise(MADV_NOHUGEPAGE)");
            GLOBAL_REGION.store(p as usize, Ordering::Release);
        }
        ROUND.wait();
        let p = GLOBAL_REGION.load(Ordering::Acquire) + thread * GLOBAL_PAGES * PAGE_SIZE;
        // SAFETY: this thread's slice of the live region; the others write theirs.
        unsafe { bench::touch(p as *mut u8, GLOBAL_PAGES) };
        ROUND.wait();
        if thread == 0 {
            // SAFETY: every thread is done with the region (the barrier).
            unsafe { munmap(GLOBAL_REGION.load(Ordering::Relaxed) as *mut u8, len) }.expect("munmap");
        }
    }
}

fn case(name: &str, from: usize, n: usize, work: fn(usize, usize), ops: usize, pages_per_op: usize) {
    for threads in from..=n {
        THREADS_NOW.store(threads, Ordering::Relaxed);
        ROUND.reset(threads);
        OPS_NOW.store(ops / 20, Ordering::Relaxed);
        bench::parallel(threads, work, 0);
        OPS_NOW.store(ops, Ordering::Relaxed);
        let ticks = bench::parallel(threads, work, 0);
        let pages = (threads * ops * pages_per_op) as u64;
        println!(
            "info: mapbench: {}: {} threads: {} pages/Mtick",
            name,
            threads,
            Milli(bench::rate_milli(pages, ticks))
        );
    }
}

fn main() -> i32 {
    let n = bench::threads_from_arg(1).min(MAX_THREADS);
    let from = ulib::env::arg(2).and_then(ulib::env::parse_u64).map_or(1, |f| f as usize).clamp(1, n);
    let percent = bench::percent_from_arg(3);
    let ops = (OPS * percent / 100).max(SLOTS);
    let rounds = (GLOBAL_ROUNDS * percent / 100).max(1);
    println!("mapbench: local, pipeline, global on FROM to N threads");
    println!(
        "info: mapbench: {} to {} threads; local and pipeline {} regions of {} pages per thread, global {} rounds of {} pages per thread",
        from, n, ops, REGION, rounds, GLOBAL_PAGES
    );
    case("local", from, n, local, ops, REGION);
    case("pipeline", from, n, pipeline, ops, REGION);
    case("global", from, n, global, rounds, GLOBAL_PAGES);
    bench::pinning_report("mapbench");
    println!("mapbench: done");
    0
}
