//! fault_storm: how fast one thread's page faults go while another thread
//! keeps changing the address space (a benchmark; its output is figures).
//!
//! The faulting thread maps 512 pages (2 MiB, private anonymous RW, with a
//! PROT_NONE page on each side so that no other mapping merges with it) once,
//! then runs ROUNDS rounds of: write one byte to each of the 512 pages (512
//! demand-zero faults), drop them all with MADV_DONTNEED. Timed with rdtsc,
//! after one untimed round (so that the page tables exist in every case).
//!
//! - `alone`: the faulting thread by itself;
//! - `storm`: the same while a second thread loops mmap(4 pages, anonymous,
//!   no hint) / write one byte / munmap until the faulting thread is done; it
//!   counts its iterations ("storm ops").
//!
//! With one `mmap_lock` per address space every storm op excludes every
//! fault; with per-VMA locks (Linux 6.12) the faults need not wait. Rates are
//! faults per million TSC ticks; `keeps` is storm / alone. Each repetition
//! prints three lines, and a summary line gives medians and min-max.
//!
//! Usage: `fault_storm [ROUNDS [REPS]]` (defaults [`DEFAULT_ROUNDS`] and
//! [`DEFAULT_REPS`]). It runs unchanged on Linux, so the same binary measures
//! both kernels.
#![no_std]
#![no_main]

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ulib::sys::*;
use ulib::{env, println, thread};

ulib::entry!(main);

/// About 1-2 s per case on our kernel on 2 CPUs under QEMU's TCG.
const DEFAULT_ROUNDS: u64 = 800;
const DEFAULT_REPS: u64 = 3;
const MAX_REPS: usize = 99;

const PAGES: usize = 512;
const LEN: usize = PAGES * PAGE_SIZE;
const STORM_PAGES: usize = 4;

static STOP: AtomicBool = AtomicBool::new(false);
static STORM_OPS: AtomicU64 = AtomicU64::new(0);

/// `rounds` rounds of 512 write faults and one MADV_DONTNEED over `p`; the
/// TSC ticks they took.
fn fault_rounds(p: *mut u8, rounds: u64) -> u64 {
    let start = rdtsc();
    for _ in 0..rounds {
        for i in 0..PAGES {
            // SAFETY: inside our RW mapping, which only this thread uses.
            unsafe { ptr::write_volatile(p.add(i * PAGE_SIZE), 1) };
        }
        // SAFETY: the mapping holds no Rust values; dropping its pages is the point.
        unsafe { madvise(p, LEN, MADV_DONTNEED) }.expect("madvise(MADV_DONTNEED)");
    }
    rdtsc().wrapping_sub(start).max(1)
}

/// The storm thread: mmap 4 pages, write one byte, munmap, until STOP.
fn storm() {
    let mut ops = 0;
    while !STOP.load(Ordering::Relaxed) {
        let q = mmap_anon(STORM_PAGES * PAGE_SIZE, PROT_READ | PROT_WRITE).expect("storm mmap");
        // SAFETY: our fresh mapping.
        unsafe { ptr::write_volatile(q, 1) };
        // SAFETY: nothing uses the mapping any more.
        unsafe { munmap(q, STORM_PAGES * PAGE_SIZE) }.expect("storm munmap");
        ops += 1;
        STORM_OPS.store(ops, Ordering::Release);
    }
}

/// Faults per million TSC ticks, in thousandths.
fn rate_milli(rounds: u64, ticks: u64) -> u64 {
    (rounds as u128 * PAGES as u128 * 1_000_000_000 / ticks as u128) as u64
}

struct Milli(u64);

impl core::fmt::Display for Milli {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// Tenths of a percent, as `P.p`.
struct Permille(u64);

impl core::fmt::Display for Permille {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

/// (median, min, max) of the values.
fn stats(values: &mut [u64]) -> (u64, u64, u64) {
    values.sort_unstable();
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

fn arg_or(i: usize, default: u64) -> Result<u64, ()> {
    match env::arg(i) {
        None => Ok(default),
        Some(a) => env::parse_u64(a).filter(|&v| v > 0).ok_or(()),
    }
}

fn main() -> i32 {
    let (Ok(rounds), Ok(reps)) = (arg_or(1, DEFAULT_ROUNDS), arg_or(2, DEFAULT_REPS)) else {
        println!("usage: fault_storm [ROUNDS [REPS]] (positive numbers, REPS at most {})", MAX_REPS);
        return 2;
    };
    if reps as usize > MAX_REPS {
        println!("usage: fault_storm [ROUNDS [REPS]] (positive numbers, REPS at most {})", MAX_REPS);
        return 2;
    }
    let reps = reps as usize;
    println!(
        "fault_storm: {} rounds of {} write faults + MADV_DONTNEED, alone and beside a thread looping mmap/touch/munmap of {} pages; {} repetitions",
        rounds, PAGES, STORM_PAGES, reps
    );

    let whole = LEN + 2 * PAGE_SIZE;
    let base = mmap_anon(whole, PROT_READ | PROT_WRITE).expect("mmap 2 MiB + 2 guard pages");
    // SAFETY: the end pages of our fresh mapping hold nothing.
    unsafe { mprotect(base, PAGE_SIZE, PROT_NONE) }.expect("mprotect low guard");
    // SAFETY: as above.
    unsafe { mprotect(base.add(PAGE_SIZE + LEN), PAGE_SIZE, PROT_NONE) }.expect("mprotect high guard");
    // SAFETY: the page after the low guard starts our RW region.
    let p = unsafe { base.add(PAGE_SIZE) };
    // One fault per 4 KiB page on Linux too (no transparent huge page).
    // SAFETY: a hint; no data changes.
    unsafe { madvise(p, LEN, MADV_NOHUGEPAGE) }.expect("madvise(MADV_NOHUGEPAGE)");

    // One untimed round first: the page tables exist from then on, in every
    // repetition alike.
    fault_rounds(p, 1);

    let mut alone = [0u64; MAX_REPS];
    let mut stormy = [0u64; MAX_REPS];
    let mut keeps = [0u64; MAX_REPS];
    // Repetition 0 is a warm-up, reported on `info:` lines only: the first
    // pass of both cases ran markedly slower on our kernel (about 55 against
    // 95 faults/Mtick alone) whatever came before it.
    for rep in 0..=reps {
        let t0 = monotonic_ns();
        let x = rate_milli(rounds, fault_rounds(p, rounds));
        let alone_ms = (monotonic_ns() - t0) / 1_000_000;
        if rep > 0 {
            println!("alone: {} faults/Mtick", Milli(x));
        }

        STOP.store(false, Ordering::SeqCst);
        STORM_OPS.store(0, Ordering::SeqCst);
        let t = thread::spawn(storm).expect("spawn the storm thread");
        // The storm is on before the clock starts.
        while STORM_OPS.load(Ordering::Acquire) == 0 {
            let _ = sched_yield();
        }
        let first = STORM_OPS.load(Ordering::Acquire);
        let t0 = monotonic_ns();
        let ticks = fault_rounds(p, rounds);
        let storm_ms = (monotonic_ns() - t0) / 1_000_000;
        let ops = STORM_OPS.load(Ordering::Acquire) - first;
        STOP.store(true, Ordering::SeqCst);
        t.join();
        let y = rate_milli(rounds, ticks);
        let k = y * 1000 / x.max(1);
        if rep == 0 {
            println!("info: warm-up: alone {} faults/Mtick, storm {} faults/Mtick", Milli(x), Milli(y));
            continue;
        }
        println!("storm: {} faults/Mtick ({} storm ops)", Milli(y), ops);
        println!("keeps: {}%", Permille(k));
        println!("info: repetition {}: alone {} ms, storm {} ms", rep, alone_ms, storm_ms);
        alone[rep - 1] = x;
        stormy[rep - 1] = y;
        keeps[rep - 1] = k;
    }
    // SAFETY: nothing uses the region any more.
    unsafe { munmap(base, whole) }.expect("munmap");

    let (am, al, ah) = stats(&mut alone[..reps]);
    let (sm, sl, sh) = stats(&mut stormy[..reps]);
    let (km, kl, kh) = stats(&mut keeps[..reps]);
    println!(
        "fault_storm: median of {}: alone {} faults/Mtick ({}-{}), storm {} faults/Mtick ({}-{}), keeps {}% ({}-{}%)",
        reps,
        Milli(am),
        Milli(al),
        Milli(ah),
        Milli(sm),
        Milli(sl),
        Milli(sh),
        Permille(km),
        Permille(kl),
        Permille(kh)
    );
    ulib::bench::drain_console_before_exit();
    0
}
