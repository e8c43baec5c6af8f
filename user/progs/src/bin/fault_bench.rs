//! fault_bench: the fault-path benchmark of issue 12 (its output is figures).
//!
//! Rates are pages faulted (one write of one byte to each page) per million
//! TSC ticks. Each case runs once untimed (a warm-up: our kernel's first pass
//! is much slower), then [`RUNS`] timed runs, printed one a line, then a line
//! with the median and min-max:
//!
//! 1. `map_touch_unmap`: mmap 512 pages (private anonymous RW, no address
//!    hint, no madvise), touch each, munmap; repeated. On our kernel the
//!    touches are a sequential run, so fault-around maps 15 of every 16
//!    pages (Linux 6.12's 64 KiB anonymous mTHP, the nearest thing, ships
//!    off); `map_touch_unmap_4k` is the same with MADV_NOHUGEPAGE after each
//!    mmap, one fault per page on both kernels.
//! 2. `touch_dontneed`: one long-lived 512-page mapping between PROT_NONE
//!    guard pages (so nothing merges with it), MADV_NOHUGEPAGE (4 KiB faults
//!    on Linux too): touch each page, MADV_DONTNEED the whole; repeated.
//! 3. `map_128m`: mmap 128 MiB, MADV_NOHUGEPAGE, touch each page, munmap.
//! 4. `two_threads`: case 2 by two threads at once, each on its own mapping;
//!    the aggregate rate (both threads' pages over the wall time, read on
//!    the main thread's TSC) and its ratio to case 2's median.
//! 5. `latency`: rdtsc before and after each first write to a page of a
//!    fresh mapping (MADV_NOHUGEPAGE), the mapping calls not counted; min,
//!    median and 99th percentile in TSC cycles, per run and over all runs.
//!
//! No arguments: the defaults are the benchmark, so that the same binary runs
//! unchanged under `linux-peer` (which passes none). `fault_bench CASE` runs
//! one case alone (`latency` for `make bench`, whose other programs cover
//! the rates; `two_threads` runs `touch_dontneed` first, its baseline), for
//! profiling one case (`boot --profile`); another word prints the cases and
//! exits with status 2.
#![no_std]
#![no_main]

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ulib::sys::*;
use ulib::{println, thread};

ulib::entry!(main);

const RUNS: usize = 3;

const PAGES: usize = 512;
const LEN: usize = PAGES * PAGE_SIZE;

/// Rounds per run: about 1.5-2.5 s a run on our kernel at SMP=2 (release
/// build, QEMU TCG, a quiet host), 30-35 s for the whole program; Linux 6.12
/// under linux-peer takes about 100 s (its touch_dontneed and map_128m are
/// 4-6 times slower).
const MAP_TOUCH_UNMAP_ROUNDS: u64 = 1000;
const TOUCH_DONTNEED_ROUNDS: u64 = 1200;
/// Fewer: two threads at once ran at 0.26-0.42 of the one-thread rate on our
/// kernel (13 s a run with 800 rounds each on a loaded host).
const TWO_THREADS_ROUNDS: u64 = 400;
const BIG_LEN: usize = 128 << 20;
const BIG_PAGES: usize = BIG_LEN / PAGE_SIZE;
const MAP_128M_ROUNDS: u64 = 16;
/// Latency: mappings of LAT_PAGES pages, LAT_MAPS of them per run.
const LAT_PAGES: usize = 1024;
const LAT_MAPS: usize = 16;
const LAT_SAMPLES: usize = LAT_PAGES * LAT_MAPS;

/// Pages per million ticks, in thousandths.
fn rate_milli(pages: u64, ticks: u64) -> u64 {
    (pages as u128 * 1_000_000_000 / ticks.max(1) as u128) as u64
}

struct Milli(u64);

impl core::fmt::Display for Milli {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // One decimal, rounded.
        let tenths = (self.0 + 50) / 100;
        write!(f, "{}.{}", tenths / 10, tenths % 10)
    }
}

/// (median, min, max) of the values.
fn stats(values: &mut [u64]) -> (u64, u64, u64) {
    values.sort_unstable();
    (values[values.len() / 2], values[0], values[values.len() - 1])
}

/// Writes one byte to each of the `pages` pages at `p`.
///
/// # Safety
/// `p` must start a writable mapping of at least `pages` pages that holds no
/// Rust values and that no other thread uses.
#[inline(always)]
unsafe fn touch(p: *mut u8, pages: usize) {
    for i in 0..pages {
        // SAFETY: inside the mapping, by the contract.
        unsafe { ptr::write_volatile(p.add(i * PAGE_SIZE), 1) };
    }
}

/// A 512-page RW region between two PROT_NONE guard pages, MADV_NOHUGEPAGE;
/// returns (base of the whole, start of the RW region).
fn guarded_region() -> (*mut u8, *mut u8) {
    let base = mmap_anon(LEN + 2 * PAGE_SIZE, PROT_READ | PROT_WRITE).expect("mmap 2 MiB + 2 guard pages");
    // SAFETY: the end pages of our fresh mapping hold nothing.
    unsafe { mprotect(base, PAGE_SIZE, PROT_NONE) }.expect("mprotect low guard");
    // SAFETY: as above.
    unsafe { mprotect(base.add(PAGE_SIZE + LEN), PAGE_SIZE, PROT_NONE) }.expect("mprotect high guard");
    // SAFETY: the page after the low guard starts the RW region.
    let p = unsafe { base.add(PAGE_SIZE) };
    // SAFETY: a hint; no data changes.
    unsafe { madvise(p, LEN, MADV_NOHUGEPAGE) }.expect("madvise(MADV_NOHUGEPAGE)");
    (base, p)
}

/// Case 1: `rounds` of mmap, touch, munmap of 512 pages (with
/// MADV_NOHUGEPAGE after the mmap if `per_page`); the ticks taken.
fn map_touch_unmap(rounds: u64, per_page: bool) -> u64 {
    let start = rdtsc();
    for _ in 0..rounds {
        let p = mmap_anon(LEN, PROT_READ | PROT_WRITE).expect("mmap 512 pages");
        if per_page {
            // SAFETY: a hint on our fresh mapping.
            unsafe { madvise(p, LEN, MADV_NOHUGEPAGE) }.expect("madvise(MADV_NOHUGEPAGE)");
        }
        // SAFETY: our fresh mapping.
        unsafe { touch(p, PAGES) };
        // SAFETY: nothing uses the mapping any more.
        unsafe { munmap(p, LEN) }.expect("munmap 512 pages");
    }
    rdtsc().wrapping_sub(start)
}

/// Case 2: `rounds` of touch and MADV_DONTNEED over the region at `p`.
fn touch_dontneed(p: *mut u8, rounds: u64) -> u64 {
    let start = rdtsc();
    for _ in 0..rounds {
        // SAFETY: the caller's region, used by this thread only.
        unsafe { touch(p, PAGES) };
        // SAFETY: the region holds no Rust values; dropping its pages is the point.
        unsafe { madvise(p, LEN, MADV_DONTNEED) }.expect("madvise(MADV_DONTNEED)");
    }
    rdtsc().wrapping_sub(start)
}

/// Case 3: `rounds` of mmap 128 MiB, MADV_NOHUGEPAGE, touch, munmap.
fn map_128m(rounds: u64) -> u64 {
    let start = rdtsc();
    for _ in 0..rounds {
        let p = mmap_anon(BIG_LEN, PROT_READ | PROT_WRITE).expect("mmap 128 MiB");
        // SAFETY: a hint on our fresh mapping.
        unsafe { madvise(p, BIG_LEN, MADV_NOHUGEPAGE) }.expect("madvise(MADV_NOHUGEPAGE)");
        // SAFETY: our fresh mapping.
        unsafe { touch(p, BIG_PAGES) };
        // SAFETY: nothing uses the mapping any more.
        unsafe { munmap(p, BIG_LEN) }.expect("munmap 128 MiB");
    }
    rdtsc().wrapping_sub(start)
}

static READY: AtomicBool = AtomicBool::new(false);
static GO: AtomicBool = AtomicBool::new(false);
static DONE: AtomicBool = AtomicBool::new(false);
static SECOND_TICKS: AtomicU64 = AtomicU64::new(0);

/// Case 4: case 2 on the main thread's region `p` and, at the same time, on
/// a second thread's own region; (aggregate ticks on the main thread's TSC,
/// the second thread's own ticks).
fn two_threads(p: *mut u8, rounds: u64) -> (u64, u64) {
    READY.store(false, Ordering::SeqCst);
    GO.store(false, Ordering::SeqCst);
    DONE.store(false, Ordering::SeqCst);
    let t = thread::spawn(move || {
        let (base, q) = guarded_region();
        // Its page tables exist before the clock starts, as in case 2.
        touch_dontneed(q, 1);
        READY.store(true, Ordering::Release);
        while !GO.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
        SECOND_TICKS.store(touch_dontneed(q, rounds), Ordering::Relaxed);
        DONE.store(true, Ordering::Release);
        // SAFETY: nothing uses the region any more.
        unsafe { munmap(base, LEN + 2 * PAGE_SIZE) }.expect("munmap");
    })
    .expect("spawn the second thread");
    while !READY.load(Ordering::Acquire) {
        let _ = sched_yield();
    }
    let start = rdtsc();
    GO.store(true, Ordering::Release);
    touch_dontneed(p, rounds);
    while !DONE.load(Ordering::Acquire) {
        let _ = sched_yield();
    }
    let ticks = rdtsc().wrapping_sub(start);
    t.join();
    (ticks, SECOND_TICKS.load(Ordering::Relaxed))
}

/// Case 5: one sample per page of LAT_MAPS fresh mappings into `out`.
fn latency(out: &mut [u32]) {
    let len = LAT_PAGES * PAGE_SIZE;
    for m in 0..LAT_MAPS {
        let p = mmap_anon(len, PROT_READ | PROT_WRITE).expect("mmap latency pages");
        // SAFETY: a hint on our fresh mapping.
        unsafe { madvise(p, len, MADV_NOHUGEPAGE) }.expect("madvise(MADV_NOHUGEPAGE)");
        for i in 0..LAT_PAGES {
            let t0 = rdtsc();
            // SAFETY: inside our fresh mapping.
            unsafe { ptr::write_volatile(p.add(i * PAGE_SIZE), 1) };
            let t1 = rdtsc();
            out[m * LAT_PAGES + i] = t1.wrapping_sub(t0).min(u32::MAX as u64) as u32;
        }
        // SAFETY: nothing uses the mapping any more.
        unsafe { munmap(p, len) }.expect("munmap latency pages");
    }
}

/// (min, median, p99) of sorted samples.
fn percentiles(sorted: &[u32]) -> (u32, u32, u32) {
    let n = sorted.len();
    (sorted[0], sorted[n / 2], sorted[(n * 99 / 100).min(n - 1)])
}

/// Runs `f` (returning pages and ticks) once untimed and RUNS times timed;
/// prints each run and the summary (with the ratio of the median to `base`,
/// if given); returns the median rate in thousandths.
fn case(name: &str, base: Option<u64>, mut f: impl FnMut() -> (u64, u64)) -> u64 {
    let pool = Counters::read();
    let (pages, ticks) = f();
    println!("info: fault_bench: {} warm-up: {} pages/Mtick", name, Milli(rate_milli(pages, ticks)));
    let mut rates = [0u64; RUNS];
    for (run, r) in rates.iter_mut().enumerate() {
        let t0 = monotonic_ns();
        let (pages, ticks) = f();
        let ms = (monotonic_ns() - t0) / 1_000_000;
        *r = rate_milli(pages, ticks);
        println!("fault_bench: {} run {}: {} pages/Mtick ({} ms)", name, run + 1, Milli(*r), ms);
    }
    let (m, lo, hi) = stats(&mut rates);
    match base {
        None => println!("fault_bench: {}: median {} ({}-{})", name, Milli(m), Milli(lo), Milli(hi)),
        Some(b) => {
            let ratio = m * 100 / b.max(1);
            println!(
                "fault_bench: {}: median {} ({}-{}) (x{}.{:02} of one thread)",
                name,
                Milli(m),
                Milli(lo),
                Milli(hi),
                ratio / 100,
                ratio % 100
            );
        }
    }
    Counters::report(pool, name);
    m
}

/// Our kernel's counters (in /proc/vmstat) at the start of a case; Linux
/// lacks most of them, and then nothing is reported.
struct Counters([u64; 6]);

impl Counters {
    const NAMES: [&'static str; 6] =
        ["pgfault", "zero_pool_hits", "zero_pool_misses", "zero_pool_filled", "tlb_shootdowns", "tlb_ipis"];

    fn read() -> Option<Counters> {
        let v = ulib::bench::Vmstat::read()?;
        let mut counts = [0; 6];
        for (count, name) in counts.iter_mut().zip(Self::NAMES) {
            *count = v.get(name)?;
        }
        Some(Counters(counts))
    }

    /// Prints how each counter grew since `start` (as `info:`: the figures
    /// explain a case's rate, they are not one).
    fn report(start: Option<Self>, name: &str) {
        if let (Some(start), Some(now)) = (start, Self::read()) {
            let d = |i: usize| now.0[i].wrapping_sub(start.0[i]);
            println!(
                "info: fault_bench: {}: pgfault +{}, zero pool hits +{} misses +{} filled +{}, tlb_shootdowns +{} tlb_ipis +{}",
                name,
                d(0),
                d(1),
                d(2),
                d(3),
                d(4),
                d(5)
            );
        }
    }
}

fn main() -> i32 {
    println!(
        "fault_bench: pages faulted per million TSC ticks; 1 warm-up + {} runs per case; 512-page cases: map_touch_unmap {} rounds, touch_dontneed {} rounds, two_threads {} rounds each; map_128m {} rounds; latency {} samples per run",
        RUNS, MAP_TOUCH_UNMAP_ROUNDS, TOUCH_DONTNEED_ROUNDS, TWO_THREADS_ROUNDS, MAP_128M_ROUNDS, LAT_SAMPLES
    );
    let t_all = monotonic_ns();
    let only = ulib::env::arg(1);
    if let Some(name) = only.filter(|name| !CASES.contains(name)) {
        println!(
            "fault_bench: unknown case {:?}; cases: map_touch_unmap map_touch_unmap_4k touch_dontneed map_128m two_threads latency",
            core::str::from_utf8(name).unwrap_or("?")
        );
        return 2;
    }
    if only != Some(b"latency") {
        rates(only);
    }
    if only.is_none() || only == Some(b"latency") {
        latencies();
    }
    println!("info: fault_bench: {} ms in all", (monotonic_ns() - t_all) / 1_000_000);
    ulib::bench::drain_console_before_exit();
    0
}

/// The names `fault_bench CASE` takes.
const CASES: [&[u8]; 6] =
    [b"map_touch_unmap", b"map_touch_unmap_4k", b"touch_dontneed", b"map_128m", b"two_threads", b"latency"];

/// Cases 1 to 4, or only the one named `only` (two_threads with its
/// baseline, touch_dontneed).
fn rates(only: Option<&[u8]>) {
    let wanted = |name: &str| only.is_none_or(|only| only == name.as_bytes());
    if wanted("map_touch_unmap") {
        case("map_touch_unmap", None, || {
            (MAP_TOUCH_UNMAP_ROUNDS * PAGES as u64, map_touch_unmap(MAP_TOUCH_UNMAP_ROUNDS, false))
        });
    }
    if wanted("map_touch_unmap_4k") {
        case("map_touch_unmap_4k", None, || {
            (MAP_TOUCH_UNMAP_ROUNDS * PAGES as u64, map_touch_unmap(MAP_TOUCH_UNMAP_ROUNDS, true))
        });
    }

    let (base, p) = guarded_region();
    let one = (wanted("touch_dontneed") || wanted("two_threads")).then(|| {
        case("touch_dontneed", None, || {
            (TOUCH_DONTNEED_ROUNDS * PAGES as u64, touch_dontneed(p, TOUCH_DONTNEED_ROUNDS))
        })
    });

    if wanted("map_128m") {
        case("map_128m", None, || (MAP_128M_ROUNDS * BIG_PAGES as u64, map_128m(MAP_128M_ROUNDS)));
    }

    let Some(one) = one.filter(|_| wanted("two_threads")) else {
        // SAFETY: nothing uses the region any more.
        unsafe { munmap(base, LEN + 2 * PAGE_SIZE) }.expect("munmap");
        return;
    };
    case("two_threads", Some(one), || {
        let (ticks, second) = two_threads(p, TWO_THREADS_ROUNDS);
        let pages = TWO_THREADS_ROUNDS * PAGES as u64;
        println!(
            "info: fault_bench: two_threads: the second thread's own rate {} pages/Mtick",
            Milli(rate_milli(pages, second))
        );
        (2 * pages, ticks)
    });
    // SAFETY: nothing uses the region any more.
    unsafe { munmap(base, LEN + 2 * PAGE_SIZE) }.expect("munmap");
}

/// Case 5.
fn latencies() {
    // The sample buffer is written before the runs so that recording a
    // sample never faults.
    let buf_len = (RUNS + 1) * LAT_SAMPLES * 4;
    let buf = mmap_anon(buf_len, PROT_READ | PROT_WRITE).expect("mmap the sample buffer");
    // SAFETY: our fresh mapping, as u32s (page-aligned), used only here.
    let all = unsafe { core::slice::from_raw_parts_mut(buf as *mut u32, (RUNS + 1) * LAT_SAMPLES) };
    all.fill(0);
    let (warm, samples) = all.split_at_mut(LAT_SAMPLES);
    let pool = Counters::read();
    latency(warm);
    warm.sort_unstable();
    let (lo, med, p99) = percentiles(warm);
    println!("info: fault_bench: latency warm-up: min {} median {} p99 {} cycles", lo, med, p99);
    for run in 0..RUNS {
        let s = &mut samples[run * LAT_SAMPLES..(run + 1) * LAT_SAMPLES];
        latency(s);
        s.sort_unstable();
        let (lo, med, p99) = percentiles(s);
        println!("fault_bench: latency run {}: min {} median {} p99 {} cycles", run + 1, lo, med, p99);
    }
    samples.sort_unstable();
    let (lo, med, p99) = percentiles(samples);
    println!("fault_bench: latency: min {} median {} p99 {} cycles ({} samples)", lo, med, p99, samples.len());
    Counters::report(pool, "latency");
    // SAFETY: nothing uses the buffer any more.
    unsafe { munmap(buf, buf_len) }.expect("munmap the sample buffer");
}
