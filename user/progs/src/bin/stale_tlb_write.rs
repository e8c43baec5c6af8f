//! stale_tlb_write: a write must never land in a page through a translation
//! that munmap has removed. Regression test for "munmap drops the mmap write
//! lock before the TLB flush": between the two, another munmap of the same
//! page finds nothing to do and returns at once, although the first one's
//! stale translations may still be cached on other CPUs.
//!
//! Each round uses a page P of its own (rounds cycle through 1024 pages):
//!  1. W writes to P (its CPU now caches P's translation), then polls FLAG,
//!     which lives in another page.
//!  2. U1 and U2 leave a spin barrier together. U1 munmaps P. U2 waits until
//!     P is gone (a probe through a system call, so nobody dies), munmaps P
//!     too (with a correct kernel this returns only once every CPU has
//!     dropped P's translation), maps a fresh page at P with MAP_FIXED,
//!     writes the marker M there and raises FLAG.
//!  3. W, on seeing FLAG, writes V to P and acknowledges.
//!  4. U2 reads P: it must hold V. M means W's write went through a stale
//!     translation into the old, unmapped page.
//!
//! W only touches P while it is certainly mapped: before the round starts,
//! and after U2 has mapped it again (U1's munmap is over by then).
//!
//! The window is short: on our kernel (4 CPUs, QEMU) about one round in
//! 1,000 to 2,000 lost its write, none on 2 CPUs. Hence many rounds (5,000; no round
//! starts after 15 s, and the count run is on an `info:` line). Only the
//! waits that race spin; the other hand-overs sleep in FUTEX_WAIT, leaving
//! the emulated CPUs to the racing threads.
#![no_std]
#![no_main]

use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use ulib::sys::*;
use ulib::{println, thread, Errno};

ulib::entry!(main);

const PAGE: usize = PAGE_SIZE;
const ROUNDS: u32 = 5_000;
/// Rounds cycle through this many pages: a page comes back long after its
/// last round ended.
const PAGES: usize = 1024;
/// No round starts after this long (a bound on the run on a slow machine;
/// the count of rounds run is on an info line).
const TIME_LIMIT_NS: u64 = 15_000_000_000;
const M: u64 = 0x4d4d_4d4d_4d4d_4d4d;
const V: u64 = 0x5656_5656_5656_5656;
const NONE: u32 = u32::MAX;
/// In ROUND and W_READY: no more rounds.
const STOP: u32 = u32::MAX - 1;

static BASE: AtomicUsize = AtomicUsize::new(0);
/// The round W may start (writes P, then reports W_READY).
static ROUND: AtomicU32 = AtomicU32::new(NONE);
static W_READY: AtomicU32 = AtomicU32::new(NONE);
/// The barrier: U1 and U2 each add one per round.
static ARRIVED: AtomicU32 = AtomicU32::new(0);
static U1_DONE: AtomicU32 = AtomicU32::new(NONE);
/// Raised by U2 once P is mapped again and holds M.
static FLAG: AtomicU32 = AtomicU32::new(NONE);
/// Raised by W once it has written V.
static ACK: AtomicU32 = AtomicU32::new(NONE);

fn page(round: u32) -> usize {
    BASE.load(Ordering::Relaxed) + round as usize % PAGES * PAGE
}

/// Spins until `done()`, yielding now and then so that with fewer CPUs than
/// threads the others still run. For the two waits whose timing is the
/// test: W waiting for FLAG, and U1 and U2 leaving the barrier together.
fn spin_until(done: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !done() {
        spins += 1;
        if spins.is_multiple_of(256) {
            let _ = sched_yield();
        } else {
            core::hint::spin_loop();
        }
    }
}

/// Waits (asleep after a short spin) until `word` holds `value` (true) or
/// STOP (false). For the hand-overs whose timing does not matter: sleeping
/// threads leave the (emulated, shared) CPUs to the ones that race.
fn wait_for(word: &AtomicU32, value: u32) -> bool {
    let arrived = |v| v == value || v == STOP;
    for _ in 0..100 {
        let v = word.load(Ordering::Acquire);
        if arrived(v) {
            return v == value;
        }
        core::hint::spin_loop();
    }
    loop {
        let v = word.load(Ordering::Acquire);
        if arrived(v) {
            return v == value;
        }
        let _ = futex_wait(word, v, None);
    }
}

fn set(word: &AtomicU32, value: u32) {
    word.store(value, Ordering::Release);
    let _ = futex_wake(word, i32::MAX as u32);
}

/// U1 and U2 leave together: each adds one per round and waits for the other.
fn barrier(round: u32) {
    ARRIVED.fetch_add(1, Ordering::AcqRel);
    spin_until(|| ARRIVED.load(Ordering::Acquire) >= 2 * (round + 1));
}

/// Whether page `a` is mapped, asked through FUTEX_WAIT (which reads the
/// word in the kernel and reports EFAULT instead of killing us).
fn mapped(a: usize) -> bool {
    let zero = Timespec::default();
    // SAFETY: FUTEX_WAIT with a zero timeout only reads the word.
    let r = unsafe { futex(a as *const u32, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 0x5eed_f00d, &zero) };
    r != Err(Errno::EFAULT)
}

fn writer() {
    for round in 0..ROUNDS {
        if !wait_for(&ROUND, round) {
            return;
        }
        let p = page(round) as *mut u64;
        // SAFETY: P is mapped: U1 unmaps it only after W_READY.
        unsafe { ptr::write_volatile(p, 1) };
        set(&W_READY, round);
        spin_until(|| FLAG.load(Ordering::Acquire) == round);
        // SAFETY: U2 mapped P again before raising FLAG, and U1's munmap
        // had already removed the old mapping: nothing unmaps it now.
        unsafe { ptr::write_volatile(p, V) };
        set(&ACK, round);
    }
}

fn unmapper1() {
    for round in 0..ROUNDS {
        if !wait_for(&W_READY, round) {
            return;
        }
        barrier(round);
        // SAFETY: only W uses P, and not until U2 has mapped it again.
        let _ = unsafe { munmap(page(round) as *mut u8, PAGE) };
        set(&U1_DONE, round);
    }
}

/// U2, which also runs the rounds; returns (rounds run, lost writes, other
/// values, rounds in which U1's munmap had not returned yet when U2 had the
/// answer).
fn unmapper2() -> (u32, u32, u32, u32) {
    let (mut lost, mut other, mut overlapped) = (0, 0, 0);
    let deadline = monotonic_ns() + TIME_LIMIT_NS;
    for round in 0..ROUNDS {
        if monotonic_ns() > deadline {
            set(&ROUND, STOP);
            set(&W_READY, STOP);
            return (round, lost, other, overlapped);
        }
        set(&ROUND, round);
        wait_for(&W_READY, round);
        barrier(round);
        let p = page(round);
        spin_until(|| !mapped(p));
        // SAFETY: P is already unmapped (U1); nothing else lives there.
        let _ = unsafe { munmap(p as *mut u8, PAGE) };
        // SAFETY: P is free; MAP_FIXED places the fresh page exactly there.
        let r = unsafe { mmap(p, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) };
        if r != Ok(p as *mut u8) {
            println!("FAIL: round {}: mmap MAP_FIXED at P returned {:?}", round, r);
            exit_group(1);
        }
        // SAFETY: our fresh page.
        unsafe { ptr::write_volatile(p as *mut u64, M) };
        FLAG.store(round, Ordering::Release);
        wait_for(&ACK, round);
        // SAFETY: still our page; W is done with it.
        let v = unsafe { ptr::read_volatile(p as *const u64) };
        if U1_DONE.load(Ordering::Acquire) != round {
            overlapped += 1;
        }
        match v {
            V => {}
            M => {
                lost += 1;
                println!("info: round {}: W's write was lost (P still holds M)", round);
            }
            _ => {
                other += 1;
                println!("info: round {}: P holds {:#x}", round, v);
            }
        }
        wait_for(&U1_DONE, round);
    }
    (ROUNDS, lost, other, overlapped)
}

fn main() -> i32 {
    println!("stale_tlb_write: up to {} rounds: W caches P's translation, U1 and U2 both munmap P,", ROUNDS);
    println!("stale_tlb_write: U2 maps P again and writes M, then W writes V: P must hold V");
    let len = PAGES * PAGE;
    let base = mmap_anon(len, PROT_READ | PROT_WRITE).expect("mmap of the pages") as usize;
    BASE.store(base, Ordering::Relaxed);
    let t0 = monotonic_ns();
    let w = thread::spawn(writer).expect("spawn W");
    let u1 = thread::spawn(unmapper1).expect("spawn U1");
    let u2 = thread::spawn(unmapper2).expect("spawn U2");
    let (rounds, lost, other, overlapped) = u2.join();
    u1.join();
    w.join();
    let ms = (monotonic_ns() - t0) / 1_000_000;
    println!(
        "info: {} rounds in {} ms; U1's munmap was still running when U2 read P in {} rounds",
        rounds, ms, overlapped
    );
    println!("writes lost through a stale translation: {}", lost);
    println!("other values found in P: {}", other);
    // SAFETY: every thread is done with the pages.
    let _ = unsafe { munmap(base as *mut u8, len) };
    if lost == 0 && other == 0 {
        0
    } else {
        1
    }
}
