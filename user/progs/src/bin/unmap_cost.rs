//! unmap_cost: what mmap/munmap cost (a benchmark; figures on `info:` lines).
//!
//! 1. mmap + munmap of an untouched 128 MiB range, repeated: the median
//!    TSC cycles of one pair;
//! 2. mmap of 128 MiB, a write to every page, munmap: pages per million
//!    TSC ticks;
//! 3. a one-page munmap (page touched first) while 0 to N-1 other threads
//!    (N: the CPU count, or argv[1]) keep the address space loaded on other
//!    CPUs by spinning, each pinned to its own CPU where the kernel has
//!    sched_setaffinity: the median TSC cycles, and the TLB-flush IPIs per
//!    munmap from /proc/vmstat's `tlb_ipis` (ours; Linux has no such
//!    counter, which an `info:` line says).
//!
//! It runs unchanged on Linux, so the same binary measures both kernels.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ulib::println;
use ulib::sys::*;

ulib::entry!(main);

const BIG: usize = 128 << 20;

fn per_million(count: u64, ticks: u64) -> (u64, u64) {
    let milli = count as u128 * 1_000_000_000 / ticks.max(1) as u128;
    ((milli / 1000) as u64, (milli % 1000) as u64)
}

/// Median cycles of an mmap + munmap pair of an untouched 128 MiB range.
fn untouched() -> u64 {
    let mut cycles = [0u64; 201];
    for slot in cycles.iter_mut() {
        let start = rdtsc();
        let p = mmap_anon(BIG, PROT_READ | PROT_WRITE).expect("mmap 128 MiB");
        // SAFETY: our own fresh mapping, unused.
        unsafe { munmap(p, BIG) }.expect("munmap");
        *slot = rdtsc().wrapping_sub(start);
    }
    cycles.sort_unstable();
    cycles[cycles.len() / 2]
}

fn touched(rounds: u64) -> u64 {
    let start = rdtsc();
    for _ in 0..rounds {
        let p = mmap_anon(BIG, PROT_READ | PROT_WRITE).expect("mmap 128 MiB");
        for i in 0..BIG / PAGE_SIZE {
            // SAFETY: inside our fresh mapping.
            unsafe { core::ptr::write_volatile(p.add(i * PAGE_SIZE), 1) };
        }
        // SAFETY: nothing uses the mapping any more.
        unsafe { munmap(p, BIG) }.expect("munmap");
    }
    rdtsc().wrapping_sub(start)
}

static STOP: AtomicBool = AtomicBool::new(false);
static SPINNING: AtomicUsize = AtomicUsize::new(0);

const MUNMAPS: usize = 101;
const MAX_CPUS: usize = 64;

/// Median cycles of a one-page munmap with `others` threads spinning, and
/// the TLB IPIs per munmap in hundredths (None without the counter).
fn one_page_munmap(others: usize) -> (u64, Option<u64>) {
    STOP.store(false, Ordering::SeqCst);
    SPINNING.store(0, Ordering::SeqCst);
    ulib::bench::pin(0);
    let mut spinners: [Option<ulib::thread::JoinHandle<()>>; MAX_CPUS] = [const { None }; MAX_CPUS];
    for (cpu, slot) in spinners.iter_mut().enumerate().skip(1).take(others) {
        *slot = Some(
            ulib::thread::spawn(move || {
                ulib::bench::pin(cpu);
                SPINNING.fetch_add(1, Ordering::SeqCst);
                while !STOP.load(Ordering::Relaxed) {
                    core::hint::spin_loop();
                }
            })
            .expect("spawn a spinner"),
        );
    }
    while SPINNING.load(Ordering::SeqCst) < others {
        let _ = sched_yield();
    }
    let ipis_before = ulib::bench::Vmstat::read().and_then(|v| v.get("tlb_ipis"));
    let mut cycles = [0u64; MUNMAPS];
    for slot in cycles.iter_mut() {
        let p = mmap_anon(PAGE_SIZE, PROT_READ | PROT_WRITE).expect("mmap a page");
        // SAFETY: our fresh page.
        unsafe { core::ptr::write_volatile(p, 1) };
        let start = rdtsc();
        // SAFETY: nothing uses the page any more.
        unsafe { munmap(p, PAGE_SIZE) }.expect("munmap");
        *slot = rdtsc().wrapping_sub(start);
    }
    // Read before the spinners stop (reading it opens a file: no munmap).
    let ipis_after = ulib::bench::Vmstat::read().and_then(|v| v.get("tlb_ipis"));
    STOP.store(true, Ordering::SeqCst);
    for spinner in spinners.into_iter().flatten() {
        spinner.join();
    }
    cycles.sort_unstable();
    let ipis = match (ipis_before, ipis_after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) * 100 / MUNMAPS as u64),
        _ => None,
    };
    (cycles[cycles.len() / 2], ipis)
}

fn main() -> i32 {
    let cpus = ulib::bench::threads_from_arg(1).min(MAX_CPUS);
    println!("unmap_cost: mmap/munmap of 128 MiB untouched and touched, and one-page munmap beside 0 to N-1 spinning threads");
    println!("info: untouched 128 MiB mmap+munmap: median {} TSC cycles", untouched());
    let rounds = 3;
    let ticks = touched(rounds);
    let pages = rounds * (BIG / PAGE_SIZE) as u64;
    let (whole, frac) = per_million(pages, ticks);
    println!("info: touched 128 MiB map/touch/unmap: {whole}.{frac:03} pages per million TSC ticks ({rounds} rounds)");
    let mut counted = true;
    for others in 0..cpus {
        let (cycles, ipis) = one_page_munmap(others);
        println!("info: one-page munmap with the space on {} CPUs: median {} TSC cycles", others + 1, cycles);
        match ipis {
            Some(h) => println!(
                "info: one-page munmap with the space on {} CPUs: {}.{:02} IPIs per munmap",
                others + 1,
                h / 100,
                h % 100
            ),
            None => counted = false,
        }
    }
    if !counted {
        println!("info: unmap_cost: no tlb_ipis in /proc/vmstat, IPIs not counted");
    }
    ulib::bench::pinning_report("unmap_cost");
    println!("unmap_cost: done");
    ulib::bench::drain_console_before_exit();
    0
}
