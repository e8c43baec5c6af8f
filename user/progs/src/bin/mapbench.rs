//! mapbench [N [FROM [MS]]]: the three mapbench workloads of RadixVM (Clements,
//! Kaashoek and Zeldovich, EuroSys 2013) on FROM (default 1) to N threads,
//! N defaulting to the CPU count, thread `i` pinned to CPU `i` where the
//! kernel has sched_setaffinity (a benchmark; figures on `info:` lines).
//! Each case and thread count runs MS (default 1000) milliseconds after an
//! untimed warm-up of MS/10. Rates are aggregate pages per million TSC
//! ticks on thread 0's clock.
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
/// Regions between two looks at the clock in `local` and `pipeline`.
const BATCH: usize = 8;
/// Pages per thread of a `global` round.
const GLOBAL_PAGES: usize = 64;

static THREADS_NOW: AtomicUsize = AtomicUsize::new(1);

fn map_touch() -> *mut u8 {
    let p = mmap_anon(REGION_LEN, PROT_READ | PROT_WRITE).expect("mmap a region");
    // SAFETY: our fresh mapping.
    unsafe { bench::touch(p, REGION) };
    p
}

fn local(_thread: usize, _arg: usize) -> u64 {
    let mut regions = 0;
    while bench::keep_going() {
        for _ in 0..BATCH {
            let p = map_touch();
            // SAFETY: nothing uses the region any more.
            unsafe { munmap(p, REGION_LEN) }.expect("munmap a region");
        }
        regions += BATCH as u64;
    }
    regions * REGION as u64
}

/// Slots of one thread's mailbox: regions handed to it, 0 when empty.
const SLOTS: usize = 16;
struct Mailbox {
    slots: [AtomicUsize; SLOTS],
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Mailbox = Mailbox { slots: [const { AtomicUsize::new(0) }; SLOTS] };
static MAILBOXES: [Mailbox; MAX_THREADS] = [EMPTY; MAX_THREADS];

/// How many regions each thread sent in all, once it has stopped sending
/// (`usize::MAX` before).
static SENT: [AtomicUsize; MAX_THREADS] = [const { AtomicUsize::new(usize::MAX) }; MAX_THREADS];

/// Thread `thread` maps regions into the next thread's mailbox while there
/// is time, and unmaps what its own mailbox holds until it has unmapped all
/// its predecessor sent. Each mailbox has one writer and one reader, which
/// go round its slots in order.
fn pipeline(thread: usize, _arg: usize) -> u64 {
    let n = THREADS_NOW.load(Ordering::Relaxed);
    let next = &MAILBOXES[(thread + 1) % n];
    let mine = &MAILBOXES[thread];
    let from = &SENT[(thread + n - 1) % n];
    let (mut sent, mut received, mut idle) = (0usize, 0usize, 0u32);
    let mut sending = true;
    loop {
        let mut progress = false;
        if sending && sent.is_multiple_of(BATCH) && !bench::keep_going() {
            sending = false;
            SENT[thread].store(sent, Ordering::Release);
        }
        let out = &next.slots[sent % SLOTS];
        if sending && out.load(Ordering::Acquire) == 0 {
            out.store(map_touch() as usize, Ordering::Release);
            sent += 1;
            progress = true;
        }
        let inbox = &mine.slots[received % SLOTS];
        let p = inbox.load(Ordering::Acquire);
        if p != 0 {
            // SAFETY: the sender wrote it and never touches it again.
            unsafe { munmap(p as *mut u8, REGION_LEN) }.expect("munmap a handed-over region");
            inbox.store(0, Ordering::Release);
            received += 1;
            progress = true;
        } else if !sending && from.load(Ordering::Acquire) == received {
            break;
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
    (received * REGION) as u64
}

static ROUND: Barrier = Barrier::new(1);
static GLOBAL_REGION: AtomicUsize = AtomicUsize::new(0);

/// Rounds until thread 0 sees the time is up (it maps nothing then, and a
/// zero region tells the others to stop).
fn global(thread: usize, _arg: usize) -> u64 {
    let n = THREADS_NOW.load(Ordering::Relaxed);
    let len = n * GLOBAL_PAGES * PAGE_SIZE;
    let mut pages = 0;
    loop {
        if thread == 0 {
            let p = if bench::keep_going() {
                let p = mmap_anon(len, PROT_READ | PROT_WRITE).expect("mmap the global region");
                // SAFETY: a hint on our fresh mapping.
                unsafe { madvise(p, len, MADV_NOHUGEPAGE) }.expect("madvise(MADV_NOHUGEPAGE)");
                p as usize
            } else {
                0
            };
            GLOBAL_REGION.store(p, Ordering::Release);
        }
        ROUND.wait();
        let region = GLOBAL_REGION.load(Ordering::Acquire);
        if region == 0 {
            return pages;
        }
        // SAFETY: this thread's slice of the live region; the others write theirs.
        unsafe { bench::touch((region + thread * GLOBAL_PAGES * PAGE_SIZE) as *mut u8, GLOBAL_PAGES) };
        pages += GLOBAL_PAGES as u64;
        ROUND.wait();
        if thread == 0 {
            // SAFETY: every thread is done with the region (the barrier).
            unsafe { munmap(region as *mut u8, len) }.expect("munmap");
        }
    }
}

fn case(name: &str, from: usize, n: usize, ms: u64, work: fn(usize, usize) -> u64) {
    for threads in from..=n {
        THREADS_NOW.store(threads, Ordering::Relaxed);
        let mut rate = 0;
        for timed in [false, true] {
            ROUND.reset(threads);
            for s in &SENT {
                s.store(usize::MAX, Ordering::Relaxed);
            }
            let (ticks, pages) = bench::parallel(threads, if timed { ms } else { (ms / 10).max(1) }, work, 0);
            rate = bench::rate_milli(pages, ticks);
        }
        println!("info: mapbench: {}: {} threads: {} pages/Mtick", name, threads, Milli(rate));
    }
}

fn main() -> i32 {
    let n = bench::threads_from_arg(1).min(MAX_THREADS);
    let from = ulib::env::arg(2).and_then(ulib::env::parse_u64).map_or(1, |f| f as usize).clamp(1, n);
    let ms = bench::ms_from_arg(3, 1000);
    println!("mapbench: local, pipeline, global on FROM to N threads");
    println!(
        "info: mapbench: {} to {} threads, {} ms per case; local and pipeline regions of {} pages, global {} pages per thread and round",
        from, n, ms, REGION, GLOBAL_PAGES
    );
    case("local", from, n, ms, local);
    case("pipeline", from, n, ms, pipeline);
    case("global", from, n, ms, global);
    bench::pinning_report("mapbench");
    println!("mapbench: done");
    ulib::bench::drain_console_before_exit();
    0
}
