//! unmap_cost: what mmap/munmap cost (a benchmark; figures on `info:` lines).
//!
//! 1. mmap + munmap of an untouched 128 MiB range, repeated;
//! 2. mmap of 128 MiB, a write to every page, munmap;
//! 3. a one-page munmap (page touched first) while 0, 1 or 3 other threads
//!    keep the address space loaded on other CPUs by spinning: its TSC cycles.
//!
//! Rates are per million TSC ticks. It runs unchanged on Linux, so the same
//! binary measures both kernels.
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

fn untouched(rounds: u64) -> u64 {
    let start = rdtsc();
    for _ in 0..rounds {
        let p = mmap_anon(BIG, PROT_READ | PROT_WRITE).expect("mmap 128 MiB");
        // SAFETY: our own fresh mapping, unused.
        unsafe { munmap(p, BIG) }.expect("munmap");
    }
    rdtsc().wrapping_sub(start)
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

/// Median cycles of a one-page munmap with `others` threads spinning.
fn one_page_munmap(others: usize) -> u64 {
    STOP.store(false, Ordering::SeqCst);
    SPINNING.store(0, Ordering::SeqCst);
    let mut spinners: [Option<ulib::thread::JoinHandle<()>>; 3] = [None, None, None];
    for slot in spinners.iter_mut().take(others) {
        *slot = Some(
            ulib::thread::spawn(|| {
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
    let mut cycles = [0u64; 101];
    for slot in cycles.iter_mut() {
        let p = mmap_anon(PAGE_SIZE, PROT_READ | PROT_WRITE).expect("mmap a page");
        // SAFETY: our fresh page.
        unsafe { core::ptr::write_volatile(p, 1) };
        let start = rdtsc();
        // SAFETY: nothing uses the page any more.
        unsafe { munmap(p, PAGE_SIZE) }.expect("munmap");
        *slot = rdtsc().wrapping_sub(start);
    }
    STOP.store(true, Ordering::SeqCst);
    for spinner in spinners.into_iter().flatten() {
        spinner.join();
    }
    cycles.sort_unstable();
    cycles[cycles.len() / 2]
}

fn main() -> i32 {
    println!("unmap_cost: mmap/munmap of 128 MiB untouched and touched, and one-page munmap beside 0, 1 and 3 spinning threads");
    let rounds = 200;
    let ticks = untouched(rounds);
    let (whole, frac) = per_million(rounds * 1000, ticks);
    println!("info: untouched 128 MiB mmap+munmap: {whole}.{frac:03} per 10^9 TSC ticks ({rounds} in {ticks} ticks)");
    let rounds = 3;
    let ticks = touched(rounds);
    let pages = rounds * (BIG / PAGE_SIZE) as u64;
    let (whole, frac) = per_million(pages, ticks);
    println!("info: touched 128 MiB map/touch/unmap: {whole}.{frac:03} pages per million TSC ticks ({rounds} rounds)");
    for others in [0, 1, 3] {
        println!(
            "info: one-page munmap with the space on {} CPUs: median {} TSC cycles",
            others + 1,
            one_page_munmap(others)
        );
    }
    println!("unmap_cost: done");
    0
}
