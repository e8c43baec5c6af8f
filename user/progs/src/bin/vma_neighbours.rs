//! vma_neighbours: faults in one VMA must be safe while other threads split,
//! merge, unmap and remap the VMAs right next to it.
//!
//! Layout, private RW anonymous, at a fixed address far from everything else:
//!
//! ```text
//! BASE: [ L: 16 pages ][ X: 64 pages ][ R: 16 pages ]
//! ```
//!
//! - F, the faulter, owns X. Each round, batch by batch (4 pages), it drops
//!   the batch with MADV_DONTNEED, checks on every other page that it reads
//!   zero, and writes a pattern that depends on the page and the round
//!   (8 words spread over the page); then it reads all of X back and checks
//!   every pattern. X's protection is never changed by anyone.
//! - N1 owns L and N2 owns R. Each iteration: write and check their own pages;
//!   mprotect a middle part PROT_READ and back (split, then merge); munmap the
//!   whole neighbour and mmap it back with MAP_FIXED (it must read zero);
//!   mmap MAP_FIXED a fresh mapping over part of it; mprotect all of it
//!   PROT_NONE and back; mprotect a part that touches X's boundary (L's last
//!   pages up to X's start, R's first pages from X's end) PROT_READ or
//!   PROT_NONE and back; munmap such a boundary part and map it again. They
//!   keep a model of their pages and check each readable page after each
//!   step: data must survive splits and merges, and fresh pages read zero.
//!
//! With VMA merging (Linux) these changes grow and shrink X's own VMA: its
//! start or end moves while F faults in it.
//!
//! Each thread runs at least its fixed count (F: ROUNDS rounds, N1 and N2:
//! ITERS iterations) and keeps going until all three have, so they overlap
//! from start to end; the counts actually run are on `info:` lines.
//!
//! Usage: `vma_neighbours [ROUNDS [ITERS]]` (defaults [`DEFAULT_ROUNDS`],
//! [`DEFAULT_ITERS`]). Output: `vma_neighbours: faulter ok, N rounds`, `left
//! ok` and `right ok` lines and `vma_neighbours: all checks passed`, or a
//! `FAIL: ...` line and exit status 1.
#![no_std]
#![no_main]

use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};

use ulib::sys::*;
use ulib::{env, println, thread, Errno};

ulib::entry!(main);

const DEFAULT_ROUNDS: u64 = 800;
const DEFAULT_ITERS: u64 = 800;

const PAGE: usize = PAGE_SIZE;
const SIDE_PAGES: usize = 16;
const X_PAGES: usize = 64;
const BASE: usize = 0x2000_0000_0000;
const L_START: usize = BASE;
const X_START: usize = L_START + SIDE_PAGES * PAGE;
const X_END: usize = X_START + X_PAGES * PAGE;
const R_START: usize = X_END;
const END: usize = R_START + SIDE_PAGES * PAGE;
/// F drops and rewrites X in batches of this many pages.
const BATCH: usize = 4;

/// Where in each page the pattern goes (8-byte words, spread over the page).
const SAMPLES: [usize; 8] = [0, 520, 1048, 1560, 2056, 2568, 3080, 4088];

const RW: usize = PROT_READ | PROT_WRITE;

/// How many of the three threads have run their fixed count.
static REACHED: AtomicU32 = AtomicU32::new(0);

/// Whether a thread that has run `done` of its `min` steps should stop:
/// once all three have run their fixed counts.
fn should_stop(done: u64, min: u64) -> bool {
    if done == min {
        REACHED.fetch_add(1, Ordering::AcqRel);
    }
    done >= min && REACHED.load(Ordering::Acquire) == 3
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Word `k` of the pattern with `tag` in the page at `addr`: never 0, and
/// different for every page, word and tag.
fn pattern(tag: u64, addr: usize, k: usize) -> u64 {
    mix(mix(tag) ^ (addr + k) as u64) | 1
}

fn write_page(addr: usize, tag: u64) {
    for (k, off) in SAMPLES.iter().enumerate() {
        // SAFETY: callers pass a page of their own that is mapped writable.
        unsafe { ptr::write_volatile((addr + off) as *mut u64, pattern(tag, addr, k)) };
    }
}

/// Checks the page at `addr` against `tag` (0: must read zero); on a
/// mismatch prints a FAIL line naming `who` and `when`, and ends the process.
fn check_page(who: &str, when: &dyn core::fmt::Display, addr: usize, tag: u64) {
    for (k, off) in SAMPLES.iter().enumerate() {
        // SAFETY: callers pass a page of their own that is mapped readable.
        let got = unsafe { ptr::read_volatile((addr + off) as *const u64) };
        let want = if tag == 0 { 0 } else { pattern(tag, addr, k) };
        if got != want {
            println!(
                "FAIL: {}: {}: page {:#x} offset {}: expected {:#018x} ({}), got {:#018x}",
                who,
                when,
                addr,
                off,
                want,
                if tag == 0 { "zero" } else { "pattern" },
                got
            );
            exit_group(1);
        }
    }
}

fn fail_call(who: &str, when: &dyn core::fmt::Display, what: &str, r: Result<usize, Errno>) -> ! {
    println!("FAIL: {}: {}: {} returned {:?}", who, when, what, r);
    exit_group(1)
}

// ---------------------------------------------------------------------------
// F: the faulter in X.

struct Round(u64);

impl core::fmt::Display for Round {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "round {}", self.0)
    }
}

/// The faulter; returns the rounds it ran.
fn faulter(min_rounds: u64) -> u64 {
    let mut round = 0;
    loop {
        let when = Round(round);
        let tag = round + 1;
        for batch in (0..X_PAGES).step_by(BATCH) {
            let addr = X_START + batch * PAGE;
            // SAFETY: X is F's alone, and no Rust value lives there.
            let r = unsafe { madvise(addr as *mut u8, BATCH * PAGE, MADV_DONTNEED) };
            if r != Ok(0) {
                fail_call("faulter", &when, "madvise(X batch, MADV_DONTNEED)", r);
            }
            for i in batch..batch + BATCH {
                let page = X_START + i * PAGE;
                // Every other page is read first (it must be zero), the others
                // are written without a look: read faults and write faults.
                if (i as u64 + round) % 2 == 1 {
                    check_page("faulter", &when, page, 0);
                }
                write_page(page, tag);
            }
        }
        for i in 0..X_PAGES {
            check_page("faulter", &when, X_START + i * PAGE, tag);
        }
        round += 1;
        if should_stop(round, min_rounds) {
            return round;
        }
    }
}

// ---------------------------------------------------------------------------
// N1, N2: the neighbour changers in L and R.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

struct Neighbour {
    side: Side,
    start: usize,
    /// Per page: 0 while it reads zero, else the tag of its pattern.
    tags: [u64; SIDE_PAGES],
    /// Per page: its protection now.
    prots: [usize; SIDE_PAGES],
    next_tag: u64,
    iter: u64,
    step: &'static str,
}

impl core::fmt::Display for Neighbour {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "iteration {}, {}", self.iter, self.step)
    }
}

impl Neighbour {
    fn new(side: Side) -> Neighbour {
        Neighbour {
            side,
            start: if side == Side::Left { L_START } else { R_START },
            tags: [0; SIDE_PAGES],
            prots: [RW; SIDE_PAGES],
            // Tags of the two sides and F's (below 2^32) never meet.
            next_tag: if side == Side::Left { 1 << 32 } else { 2 << 32 },
            iter: 0,
            step: "",
        }
    }

    fn name(&self) -> &'static str {
        match self.side {
            Side::Left => "left",
            Side::Right => "right",
        }
    }

    fn addr(&self, page: usize) -> usize {
        self.start + page * PAGE
    }

    /// Pages [from, to) of the part that touches X: L's last `n` pages, R's first `n`.
    fn at_x(&self, n: usize) -> (usize, usize) {
        match self.side {
            Side::Left => (SIDE_PAGES - n, SIDE_PAGES),
            Side::Right => (0, n),
        }
    }

    fn fail(&self, what: &str, r: Result<usize, Errno>) -> ! {
        fail_call(self.name(), self, what, r)
    }

    fn mprotect(&mut self, from: usize, to: usize, prot: usize) {
        // SAFETY: the pages are this thread's alone; it touches them only as
        // `prots` allows, which follows every change.
        let r = unsafe { mprotect(self.addr(from) as *mut u8, (to - from) * PAGE, prot) };
        if r != Ok(0) {
            self.fail("mprotect", r);
        }
        self.prots[from..to].fill(prot);
    }

    fn munmap(&mut self, from: usize, to: usize) {
        // SAFETY: as above; no Rust value lives in the pages.
        let r = unsafe { munmap(self.addr(from) as *mut u8, (to - from) * PAGE) };
        if r != Ok(0) {
            self.fail("munmap", r);
        }
        self.prots[from..to].fill(PROT_NONE);
        self.tags[from..to].fill(0);
    }

    /// A fresh private RW mapping over pages [from, to) with MAP_FIXED,
    /// whatever was there.
    fn map_fixed(&mut self, from: usize, to: usize) {
        let addr = self.addr(from);
        // SAFETY: only this thread's own pages are replaced, and no Rust value lives there.
        let r = unsafe { mmap(addr, (to - from) * PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) };
        if r != Ok(addr as *mut u8) {
            self.fail("mmap(MAP_FIXED)", r.map(|p| p as usize));
        }
        self.prots[from..to].fill(RW);
        self.tags[from..to].fill(0);
    }

    /// Writes a new pattern into pages [from, to) (all writable).
    fn write(&mut self, from: usize, to: usize) {
        let tag = self.next_tag;
        self.next_tag += 1;
        for page in from..to {
            write_page(self.addr(page), tag);
            self.tags[page] = tag;
        }
    }

    /// Writes a new pattern into the writable pages among [from, to).
    fn write_writable(&mut self, from: usize, to: usize) {
        let tag = self.next_tag;
        self.next_tag += 1;
        for page in from..to {
            if self.prots[page] & PROT_WRITE != 0 {
                write_page(self.addr(page), tag);
                self.tags[page] = tag;
            }
        }
    }

    /// Checks every readable page against the model.
    fn check(&self) {
        for page in 0..SIDE_PAGES {
            if self.prots[page] & PROT_READ != 0 {
                check_page(self.name(), self, self.addr(page), self.tags[page]);
            }
        }
    }

    /// One iteration: every kind of change, each followed by a check.
    fn iteration(&mut self) {
        let it = self.iter as usize;

        self.step = "write all";
        self.write(0, SIDE_PAGES);
        self.check();

        // Split the VMA in three, then merge it back.
        self.step = "middle PROT_READ";
        let a = 1 + it % 5;
        let b = a + 4 + it % 7;
        self.mprotect(a, b, PROT_READ);
        self.check();
        self.write_writable(0, SIDE_PAGES);
        self.check();
        self.step = "middle back to RW";
        self.mprotect(a, b, RW);
        self.check();
        self.write(a, b);
        self.check();

        // Away and back: the pages read zero.
        self.step = "munmap all, mmap MAP_FIXED";
        self.munmap(0, SIDE_PAGES);
        self.map_fixed(0, SIDE_PAGES);
        self.check();
        self.write_writable(it % 2, SIDE_PAGES);
        for page in (it % 2..SIDE_PAGES).step_by(2) {
            // Every other page back to zero, the rest keep the pattern.
            self.tags[page] = 0;
            // SAFETY: our own writable page; no Rust value lives there.
            let r = unsafe { madvise(self.addr(page) as *mut u8, PAGE, MADV_DONTNEED) };
            if r != Ok(0) {
                self.fail("madvise(MADV_DONTNEED)", r);
            }
        }
        self.check();

        // A fresh mapping over part of it (sometimes up to X's boundary).
        self.step = "mmap MAP_FIXED over a part";
        self.write(0, SIDE_PAGES);
        let c = it % 12;
        let d = (c + 1 + it * 7 % 9).min(SIDE_PAGES);
        let (c, d) = if self.side == Side::Right { (SIDE_PAGES - d, SIDE_PAGES - c) } else { (c, d) };
        self.map_fixed(c, d);
        self.check();
        self.write(c, d);
        self.check();

        // All of it inaccessible and back: the data stays.
        self.step = "all PROT_NONE and back";
        self.mprotect(0, SIDE_PAGES, PROT_NONE);
        self.mprotect(0, SIDE_PAGES, RW);
        self.check();

        // A part ending exactly at X's boundary: X's protection is not touched.
        self.step = "part at X's boundary PROT_READ/PROT_NONE and back";
        let n = 1 + it % SIDE_PAGES;
        let (from, to) = self.at_x(n);
        self.mprotect(from, to, if it.is_multiple_of(3) { PROT_NONE } else { PROT_READ });
        self.check();
        self.write_writable(0, SIDE_PAGES);
        self.check();
        self.mprotect(from, to, RW);
        self.check();

        // A hole next to X, then a fresh mapping there.
        self.step = "munmap at X's boundary and map again";
        let n = 1 + it * 5 % SIDE_PAGES;
        let (from, to) = self.at_x(n);
        self.munmap(from, to);
        self.check();
        self.map_fixed(from, to);
        self.check();
        self.write(0, SIDE_PAGES);
        self.check();
    }
}

/// A neighbour changer; returns the iterations it ran.
fn neighbour(side: Side, min_iters: u64) -> u64 {
    let mut n = Neighbour::new(side);
    loop {
        n.iteration();
        n.iter += 1;
        if should_stop(n.iter, min_iters) {
            return n.iter;
        }
    }
}

fn arg_or(i: usize, default: u64) -> Option<u64> {
    match env::arg(i) {
        None => Some(default),
        Some(a) => env::parse_u64(a).filter(|&v| v > 0),
    }
}

fn main() -> i32 {
    let (Some(rounds), Some(iters)) = (arg_or(1, DEFAULT_ROUNDS), arg_or(2, DEFAULT_ITERS)) else {
        println!("usage: vma_neighbours [ROUNDS [ITERS]] (positive numbers)");
        return 2;
    };
    println!(
        "vma_neighbours: [L {} pages][X {} pages][R {} pages] at {:#x}: a faulter in X, L and R changed next to it",
        SIDE_PAGES, X_PAGES, SIDE_PAGES, BASE
    );
    println!("vma_neighbours: at least {} faulter rounds and {} iterations on each side", rounds, iters);
    // SAFETY: nothing lives at BASE (far from the program, its stacks and
    // its heap); MAP_FIXED_NOREPLACE would refuse if it did.
    let r = unsafe { mmap(BASE, END - BASE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) };
    if r != Ok(BASE as *mut u8) {
        println!("FAIL: mmap of the three regions at {:#x} returned {:?}", BASE, r);
        return 1;
    }
    let t0 = monotonic_ns();
    let f = thread::spawn(move || faulter(rounds)).expect("spawn F");
    let n1 = thread::spawn(move || neighbour(Side::Left, iters)).expect("spawn N1");
    let n2 = thread::spawn(move || neighbour(Side::Right, iters)).expect("spawn N2");
    let f_rounds = f.join();
    let left = n1.join();
    let right = n2.join();
    let ms = (monotonic_ns() - t0) / 1_000_000;
    println!("info: {} ms: faulter {} rounds, left {} iterations, right {} iterations", ms, f_rounds, left, right);
    // X still holds F's last round, and its protection was never changed.
    for i in 0..X_PAGES {
        check_page("main", &Round(f_rounds - 1), X_START + i * PAGE, f_rounds);
    }
    println!("vma_neighbours: faulter ok, {} rounds", rounds);
    println!("vma_neighbours: left ok, {} iterations", iters);
    println!("vma_neighbours: right ok, {} iterations", iters);
    // SAFETY: every thread is done with the regions.
    let r = unsafe { munmap(BASE as *mut u8, END - BASE) };
    if r != Ok(0) {
        println!("FAIL: munmap of the three regions returned {:?}", r);
        return 1;
    }
    println!("vma_neighbours: all checks passed");
    0
}
