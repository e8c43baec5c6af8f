//! mmfuzz: a model-based fuzzer of the mmap family. Each of four threads owns
//! a region of 256 pages at its own fixed address and keeps a model of it,
//! page by page: mapped or not, protection, private or shared (and which
//! shared object), and what it holds. From a seeded PRNG each thread runs
//! random mmap (MAP_FIXED, MAP_FIXED_NOREPLACE, hints), munmap, mprotect and
//! madvise calls over random subranges of its region, holes included, writes
//! patterns to writable pages, and checks every result, value and errno,
//! against what Linux does given the model; after each call it checks the
//! pages the call covered, from the kernel's side (a futex wait reads a word,
//! clock_gettime writes one) and from ours, and every so often the whole
//! region. All of this while the other threads change the same address space.
//!
//! Usage: `mmfuzz [SEED [OPS [THREADS]]]`: SEED in decimal or 0x-hex (default:
//! from AT_RANDOM), OPS per thread (default [`DEFAULT_OPS`]), THREADS 1-4
//! (default 4). Each thread's calls depend only on the seed and its index.
//!
//! Output: `mmfuzz: thread N: ok, K ops` per thread and `mmfuzz: all checks
//! passed`, or `FAIL: thread N op K: what, expected X got Y` and exit status 1.
//! There are no signal handlers, so no page the model calls inaccessible is
//! ever touched, and no page is touched before the kernel has confirmed that
//! it may be (a wrong answer there is a FAIL line rather than a SIGSEGV).
#![no_std]
#![no_main]

use core::fmt;
use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};

use ulib::rand::{self, Rng};
use ulib::sys::{self, nr, *};
use ulib::{env, println, thread, Errno};

ulib::entry!(main);

const MAX_THREADS: usize = 4;
/// Per thread; about 40 s on our kernel with 4 CPUs under QEMU's TCG.
const DEFAULT_OPS: u64 = 3000;

const PAGE: usize = PAGE_SIZE;
const PAGES: usize = 256;
const REGION_LEN: usize = PAGES * PAGE;
/// Thread i's region starts at REGION_BASE + i * REGION_STRIDE: far from the
/// program, its break and where kernels place mmaps, and far from each other,
/// so that a range running past one region's end finds a hole, not a neighbour.
const REGION_BASE: usize = 0x1000_0000_0000;
const REGION_STRIDE: usize = 0x10_0000_0000;
const REGIONS_END: usize = REGION_BASE + MAX_THREADS * REGION_STRIDE;

/// Where in each page the pattern goes (8-byte words, spread over the page).
const SAMPLES: [usize; 8] = [0, 520, 1048, 1560, 2056, 2568, 3080, 4088];
/// clock_gettime writes its 16 bytes here when probing writability: between
/// the samples, so the probe does not disturb the model.
const PROBE_OFFSET: usize = 16;

static ZERO_TS: Timespec = Timespec { tv_sec: 0, tv_nsec: 0 };

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backing {
    Private,
    /// A MAP_SHARED anonymous object, by number (each mmap makes a new one).
    Shared(u32),
}

#[derive(Clone, Copy)]
struct Page {
    mapped: bool,
    prot: usize,
    backing: Backing,
    /// 0 while the page reads as zeros, else the tag of the pattern in it.
    tag: u64,
}

const UNMAPPED: Page = Page { mapped: false, prot: PROT_NONE, backing: Backing::Private, tag: 0 };

impl Page {
    fn readable(&self) -> bool {
        self.mapped && self.prot & PROT_READ != 0
    }
    fn writable(&self) -> bool {
        self.mapped && self.prot & PROT_WRITE != 0
    }
}

fn word(tag: u64, k: usize) -> u64 {
    if tag == 0 {
        0
    } else {
        tag | k as u64
    }
}

fn prot_name(prot: usize) -> &'static str {
    match prot {
        PROT_NONE => "PROT_NONE",
        PROT_READ => "PROT_READ",
        p if p == PROT_READ | PROT_WRITE => "PROT_READ|PROT_WRITE",
        _ => "PROT_?",
    }
}

/// A raw result, printed as Ok(value) or the errno's name.
struct Ret(Result<usize, Errno>);

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(v) => write!(f, "Ok({:#x})", v),
            Err(e) => write!(f, "Err({:?})", e),
        }
    }
}

/// The operations, for the statistics and the recent-ops trail.
#[derive(Clone, Copy)]
enum Op {
    MapFixed,
    MapNoreplace,
    MapHint,
    Munmap,
    Mprotect,
    DontNeed,
    Hint,
    Write,
    Check,
    Edge,
}

const OPS: usize = 10;
const OP_NAMES: [&str; OPS] = [
    "mmap MAP_FIXED",
    "mmap NOREPLACE",
    "mmap hint",
    "munmap",
    "mprotect",
    "madvise DONTNEED",
    "madvise hint",
    "write",
    "check",
    "edge cases",
];
const WEIGHTS: [u32; OPS] = [14, 8, 6, 10, 14, 9, 3, 16, 4, 4];

/// What one thread did, for the summary.
#[derive(Clone, Copy, Default)]
struct Report {
    ops: u64,
    per_op: [u32; OPS],
}

struct Fuzzer {
    index: usize,
    rng: Rng,
    base: usize,
    pages: [Page; PAGES],
    next_object: u32,
    op: u64,
    /// The last few calls, printed when a check fails.
    trail: [(u64, Op, usize, usize, usize); 8],
    report: Report,
}

/// Why a thread stopped: the FAIL line has been printed.
struct Failed;

type Step = Result<(), Failed>;

impl Fuzzer {
    fn addr(&self, page: usize) -> usize {
        self.base + page * PAGE
    }

    fn fail(&self, what: fmt::Arguments, expected: fmt::Arguments, got: fmt::Arguments) -> Failed {
        println!("FAIL: thread {} op {}: {}, expected {} got {}", self.index + 1, self.op, what, expected, got);
        for &(op, kind, a, b, c) in self.trail.iter().filter(|t| t.0 != u64::MAX) {
            println!(
                "info: thread {} op {}: {} first page {} pages {} arg {:#x}",
                self.index + 1,
                op,
                OP_NAMES[kind as usize],
                a,
                b,
                c
            );
        }
        Failed
    }

    fn expect(&self, what: fmt::Arguments, want: Result<usize, Errno>, got: Result<usize, Errno>) -> Step {
        if want == got {
            Ok(())
        } else {
            Err(self.fail(what, format_args!("{}", Ret(want)), format_args!("{}", Ret(got))))
        }
    }

    fn record(&mut self, kind: Op, first: usize, n: usize, arg: usize) {
        self.trail.copy_within(1.., 0);
        self.trail[7] = (self.op, kind, first, n, arg);
        self.report.per_op[kind as usize] += 1;
    }

    /// A random subrange of the region: mostly short, sometimes all of it.
    fn subrange(&mut self) -> (usize, usize) {
        let first = self.rng.index(PAGES);
        let max = PAGES - first;
        let n = match self.rng.below(8) {
            0 => max,
            1 => 1 + self.rng.index(max),
            _ => 1 + self.rng.index(max.min(8)),
        };
        if self.rng.chance(1, 32) {
            (0, PAGES)
        } else {
            (first, n)
        }
    }

    /// `n` pages in bytes, sometimes short of a page at the end (the kernel
    /// rounds up).
    fn len_of(&mut self, n: usize) -> usize {
        let len = n * PAGE;
        if self.rng.chance(1, 4) {
            len - self.rng.range(1, PAGE as u64 - 1) as usize
        } else {
            len
        }
    }

    fn prot(&mut self) -> usize {
        self.rng.pick(&[PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE, PROT_READ | PROT_WRITE])
    }

    fn call(&self, n: usize, args: [usize; 6]) -> Result<usize, Errno> {
        // SAFETY: every call made through here names addresses in this thread's own region, which
        // holds only test patterns and no Rust reference points into; pages are touched only
        // through raw pointers, after the model (checked against the kernel) says they may be.
        sys::check(unsafe { syscall6(n, args[0], args[1], args[2], args[3], args[4], args[5]) })
    }

    // ---- checking pages ----

    /// Checks page `i` against the model: the kernel's view first (can it
    /// read the first word, and does it hold what we expect; can it write),
    /// then, if the page is readable, every sample from user space.
    fn verify(&self, i: usize, why: &str) -> Step {
        let p = self.pages[i];
        let a = self.addr(i);
        let expected = word(p.tag, 0) as u32;
        // SAFETY: FUTEX_WAIT only reads the word (or says EFAULT); with a zero
        // timeout it returns at once.
        let r = unsafe { futex(a as *const u32, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, expected, &ZERO_TS) };
        let want = if p.readable() { Err(Errno::ETIMEDOUT) } else { Err(Errno::EFAULT) };
        if r != want {
            return Err(self.fail(
                format_args!(
                    "page {} ({:#x}) after {}: FUTEX_WAIT on its first word (the kernel reading it)",
                    i, a, why
                ),
                format_args!(
                    "{} ({})",
                    Ret(want),
                    if p.readable() { "readable, holding what was written" } else { "not readable" }
                ),
                format_args!("{}", Ret(r)),
            ));
        }
        let r = self.call(nr::CLOCK_GETTIME, [CLOCK_MONOTONIC, a + PROBE_OFFSET, 0, 0, 0, 0]);
        let ok = if p.writable() { r.is_ok() } else { r == Err(Errno::EFAULT) };
        if !ok {
            return Err(self.fail(
                format_args!("page {} ({:#x}) after {}: clock_gettime into it (the kernel writing it)", i, a, why),
                format_args!("{}", if p.writable() { "Ok" } else { "Err(EFAULT)" }),
                format_args!("{}", Ret(r)),
            ));
        }
        if p.readable() {
            for (k, &off) in SAMPLES.iter().enumerate() {
                // SAFETY: the model and the kernel agree the page is readable.
                let got = unsafe { ptr::read_volatile((a + off) as *const u64) };
                if got != word(p.tag, k) {
                    return Err(self.fail(
                        format_args!("page {} ({:#x}) after {}: word at offset {}", i, a, why, off),
                        format_args!("{:#x}", word(p.tag, k)),
                        format_args!("{:#x}", got),
                    ));
                }
            }
        }
        Ok(())
    }

    fn verify_range(&self, first: usize, n: usize, why: &str) -> Step {
        (first..first + n).try_for_each(|i| self.verify(i, why))
    }

    // ---- the operations ----

    fn map_fixed(&mut self) -> Step {
        let (first, n) = self.subrange();
        let len = self.len_of(n);
        let prot = self.prot();
        let shared = self.rng.chance(1, 3);
        let mut flags = MAP_FIXED | MAP_ANONYMOUS | if shared { MAP_SHARED } else { MAP_PRIVATE };
        if self.rng.chance(1, 4) {
            flags |= MAP_POPULATE;
        }
        if self.rng.chance(1, 4) {
            flags |= MAP_NORESERVE;
        }
        self.record(Op::MapFixed, first, n, flags);
        let a = self.addr(first);
        let r = self.call(nr::MMAP, [a, len, prot, flags, usize::MAX, 0]);
        self.expect(
            format_args!("mmap({:#x}, {:#x}, {}, MAP_FIXED flags {:#x})", a, len, prot_name(prot), flags),
            Ok(a),
            r,
        )?;
        self.install(first, n, prot, shared);
        self.verify_range(first, n, "mmap MAP_FIXED")
    }

    /// The model side of a successful new mapping.
    fn install(&mut self, first: usize, n: usize, prot: usize, shared: bool) {
        let backing = if shared {
            self.next_object += 1;
            Backing::Shared(self.next_object)
        } else {
            Backing::Private
        };
        for p in &mut self.pages[first..first + n] {
            *p = Page { mapped: true, prot, backing, tag: 0 };
        }
    }

    fn map_noreplace(&mut self) -> Step {
        let (first, n) = self.subrange();
        let len = self.len_of(n);
        let prot = self.prot();
        let shared = self.rng.chance(1, 3);
        // MAP_FIXED with MAP_FIXED_NOREPLACE means NOREPLACE to Linux.
        let fixed = if self.rng.chance(1, 3) { MAP_FIXED } else { 0 };
        let flags = MAP_FIXED_NOREPLACE | fixed | MAP_ANONYMOUS | if shared { MAP_SHARED } else { MAP_PRIVATE };
        self.record(Op::MapNoreplace, first, n, flags);
        let a = self.addr(first);
        let occupied = self.pages[first..first + n].iter().any(|p| p.mapped);
        let r = self.call(nr::MMAP, [a, len, prot, flags, usize::MAX, 0]);
        let want = if occupied { Err(Errno::EEXIST) } else { Ok(a) };
        self.expect(
            format_args!(
                "mmap({:#x}, {:#x}, {}, MAP_FIXED_NOREPLACE flags {:#x}) over {}",
                a,
                len,
                prot_name(prot),
                flags,
                if occupied { "mapped pages" } else { "a hole" }
            ),
            want,
            r,
        )?;
        if r.is_ok() {
            self.install(first, n, prot, shared);
        }
        self.verify_range(first, n, "mmap MAP_FIXED_NOREPLACE")
    }

    fn map_hint(&mut self) -> Step {
        let (first, n) = self.subrange();
        let len = self.len_of(n);
        let prot = self.prot();
        let shared = self.rng.chance(1, 3);
        let flags = MAP_ANONYMOUS | if shared { MAP_SHARED } else { MAP_PRIVATE };
        self.record(Op::MapHint, first, n, flags);
        let a = self.addr(first);
        let free = self.pages[first..first + n].iter().all(|p| !p.mapped);
        let r = self.call(nr::MMAP, [a, len, prot, flags, usize::MAX, 0]);
        let what = format_args!("mmap({:#x}, {:#x}, {}, flags {:#x}) with a hint", a, len, prot_name(prot), flags);
        if free {
            // A free hint is taken as it is.
            self.expect(what, Ok(a), r)?;
            self.install(first, n, prot, shared);
            return self.verify_range(first, n, "mmap with a hint");
        }
        let got = match r {
            Ok(got) => got,
            Err(_) => return Err(self.fail(what, format_args!("an address elsewhere"), format_args!("{}", Ret(r)))),
        };
        let end = got + n * PAGE;
        if got < REGIONS_END && end > REGION_BASE {
            return Err(self.fail(
                what,
                format_args!("an address outside the fuzzers' regions (the hint range is occupied)"),
                format_args!("{}", Ret(r)),
            ));
        }
        let u = self.call(nr::MUNMAP, [got, len, 0, 0, 0, 0]);
        self.expect(format_args!("munmap({:#x}, {:#x}) of the mapping made elsewhere", got, len), Ok(0), u)?;
        self.verify_range(first, n, "mmap with a hint")
    }

    fn munmap(&mut self) -> Step {
        let (first, n) = self.subrange();
        let len = self.len_of(n);
        self.record(Op::Munmap, first, n, len);
        let a = self.addr(first);
        let r = self.call(nr::MUNMAP, [a, len, 0, 0, 0, 0]);
        self.expect(format_args!("munmap({:#x}, {:#x})", a, len), Ok(0), r)?;
        for p in &mut self.pages[first..first + n] {
            *p = UNMAPPED;
        }
        self.verify_range(first, n, "munmap")
    }

    /// The model side of mprotect over pages `first..first + n`, as Linux
    /// does it: every page up to the first hole changes; a hole anywhere in
    /// the range means ENOMEM.
    fn protect(&mut self, first: usize, n: usize, prot: usize) -> Result<usize, Errno> {
        for p in &mut self.pages[first..first + n] {
            if !p.mapped {
                return Err(Errno::ENOMEM);
            }
            p.prot = prot;
        }
        Ok(0)
    }

    fn mprotect(&mut self) -> Step {
        let (first, n) = self.subrange();
        let len = self.len_of(n);
        let prot = self.prot();
        self.record(Op::Mprotect, first, n, prot);
        let a = self.addr(first);
        let r = self.call(nr::MPROTECT, [a, len, prot, 0, 0, 0]);
        let want = self.protect(first, n, prot);
        self.expect(format_args!("mprotect({:#x}, {:#x}, {})", a, len, prot_name(prot)), want, r)?;
        self.verify_range(first, n, "mprotect")
    }

    fn dontneed(&mut self) -> Step {
        let (first, n) = self.subrange();
        let len = self.len_of(n);
        let advice = if self.rng.chance(1, 3) { MADV_DONTNEED_LOCKED } else { MADV_DONTNEED };
        self.record(Op::DontNeed, first, n, advice);
        let a = self.addr(first);
        let r = self.call(nr::MADVISE, [a, len, advice, 0, 0, 0]);
        // Every mapped page is dropped, holes or not: private ones read back
        // as zeros, shared ones keep their contents.
        let mut want = Ok(0);
        for p in &mut self.pages[first..first + n] {
            if !p.mapped {
                want = Err(Errno::ENOMEM);
            } else if p.backing == Backing::Private {
                p.tag = 0;
            }
        }
        let name = if advice == MADV_DONTNEED { "MADV_DONTNEED" } else { "MADV_DONTNEED_LOCKED" };
        self.expect(format_args!("madvise({:#x}, {:#x}, {})", a, len, name), want, r)?;
        self.verify_range(first, n, name)
    }

    fn hint(&mut self) -> Step {
        let (first, n) = self.subrange();
        let len = self.len_of(n);
        let advice = self.rng.pick(&[MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL]);
        self.record(Op::Hint, first, n, advice);
        let a = self.addr(first);
        let r = self.call(nr::MADVISE, [a, len, advice, 0, 0, 0]);
        let want = if self.pages[first..first + n].iter().all(|p| p.mapped) { Ok(0) } else { Err(Errno::ENOMEM) };
        self.expect(format_args!("madvise({:#x}, {:#x}, {})", a, len, advice), want, r)?;
        self.verify_range(first, n, "a madvise hint")
    }

    fn write(&mut self) -> Step {
        let (first, n) = self.subrange();
        self.record(Op::Write, first, n, 0);
        for i in first..first + n {
            if !self.pages[i].writable() {
                continue;
            }
            // The kernel must agree before we touch the page.
            self.verify(i, "an earlier op")?;
            let tag = (self.index as u64 + 1) << 56 | (self.op & 0xf_ffff_ffff) << 20 | (i as u64) << 4;
            for (k, &off) in SAMPLES.iter().enumerate() {
                // SAFETY: the model and the kernel agree the page is writable;
                // it is ours and holds only the pattern.
                unsafe { ptr::write_volatile((self.addr(i) + off) as *mut u64, word(tag, k)) };
            }
            self.pages[i].tag = tag;
        }
        self.verify_range(first, n, "writing it")
    }

    fn check(&mut self) -> Step {
        self.record(Op::Check, 0, PAGES, 0);
        self.verify_range(0, PAGES, "everything so far")
    }

    /// Error paths whose outcome Linux fixes exactly, on our own region:
    /// lengths past the top of user space, unaligned starts, contradictory
    /// protections, and one mprotect over the region's end (it stops at the
    /// hole after it).
    fn edge(&mut self) -> Step {
        let (first, n) = self.subrange();
        let a = self.addr(first);
        let kind = self.rng.below(8);
        self.record(Op::Edge, first, n, kind as usize);
        let past_top = USER_END - a + PAGE * self.rng.range(1, 16) as usize;
        let wraps = self.rng.pick(&[usize::MAX, usize::MAX - PAGE + 2, usize::MAX - a + 1 + PAGE]);
        let rw = PROT_READ | PROT_WRITE;
        match kind {
            0 => {
                let r = self.call(nr::MUNMAP, [a, past_top, 0, 0, 0, 0]);
                self.expect(format_args!("munmap({:#x}, {:#x}) past the top", a, past_top), Err(Errno::EINVAL), r)?;
            }
            1 => {
                let flags = MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS;
                let r = self.call(nr::MMAP, [a, past_top, rw, flags, usize::MAX, 0]);
                self.expect(
                    format_args!("mmap MAP_FIXED({:#x}, {:#x}) past the top", a, past_top),
                    Err(Errno::ENOMEM),
                    r,
                )?;
            }
            2 => {
                let r = self.call(nr::MPROTECT, [a, wraps, PROT_READ, 0, 0, 0]);
                self.expect(format_args!("mprotect({:#x}, {:#x}) wrapping around", a, wraps), Err(Errno::ENOMEM), r)?;
            }
            3 => {
                let r = self.call(nr::MADVISE, [a, wraps, MADV_DONTNEED, 0, 0, 0]);
                self.expect(format_args!("madvise({:#x}, {:#x}) wrapping around", a, wraps), Err(Errno::EINVAL), r)?;
            }
            4 => {
                let off = self.rng.range(1, PAGE as u64 - 1) as usize;
                let call = self.rng.pick(&[nr::MUNMAP, nr::MPROTECT, nr::MADVISE]);
                let r = self.call(call, [a + off, n * PAGE, PROT_READ, 0, 0, 0]);
                self.expect(format_args!("system call {} at unaligned {:#x}", call, a + off), Err(Errno::EINVAL), r)?;
            }
            5 => {
                // Both growth directions at once is EINVAL, checked before
                // the length (so even for length 0).
                let len = if self.rng.chance(1, 2) { 0 } else { n * PAGE };
                let r = self.call(nr::MPROTECT, [a, len, PROT_READ | PROT_GROWSDOWN | PROT_GROWSUP, 0, 0, 0]);
                self.expect(
                    format_args!("mprotect({:#x}, {:#x}, PROT_READ|PROT_GROWSDOWN|PROT_GROWSUP)", a, len),
                    Err(Errno::EINVAL),
                    r,
                )?;
            }
            6 => {
                // Length 0 is checked before the protection bits.
                let r = self.call(nr::MPROTECT, [a, 0, 0x80, 0, 0, 0]);
                self.expect(format_args!("mprotect({:#x}, 0, 0x80)", a), Ok(0), r)?;
            }
            _ => {
                // To the top of user space: changes pages up to the first
                // hole, which is at the region's end at the latest.
                let prot = self.prot();
                let len = USER_END - a;
                let r = self.call(nr::MPROTECT, [a, len, prot, 0, 0, 0]);
                let want = match self.protect(first, PAGES - first, prot) {
                    Ok(_) => Err(Errno::ENOMEM),
                    e => e,
                };
                self.expect(format_args!("mprotect({:#x}, {:#x}, {}) to the top", a, len, prot_name(prot)), want, r)?;
                return self.verify_range(first, PAGES - first, "mprotect to the top");
            }
        }
        self.verify_range(first, n, "a failed call")
    }

    fn one(&mut self) -> Step {
        match self.rng.weighted(&WEIGHTS) {
            0 => self.map_fixed(),
            1 => self.map_noreplace(),
            2 => self.map_hint(),
            3 => self.munmap(),
            4 => self.mprotect(),
            5 => self.dontneed(),
            6 => self.hint(),
            7 => self.write(),
            8 => self.check(),
            _ => self.edge(),
        }
    }
}

fn fuzz(index: usize, seed: u64, ops: u64) -> Result<Report, ()> {
    let base = REGION_BASE + index * REGION_STRIDE;
    let mut f = Fuzzer {
        index,
        rng: Rng::stream(seed, index as u64),
        base,
        pages: [UNMAPPED; PAGES],
        next_object: 0,
        op: 0,
        trail: [(u64::MAX, Op::Check, 0, 0, 0); 8],
        report: Report::default(),
    };
    // The region must start out free (and so known to the model).
    let flags = MAP_FIXED_NOREPLACE | MAP_PRIVATE | MAP_ANONYMOUS;
    let r = f.call(nr::MMAP, [base, REGION_LEN, PROT_NONE, flags, usize::MAX, 0]);
    f.expect(format_args!("mmap MAP_FIXED_NOREPLACE of the whole free region"), Ok(base), r).map_err(|_| ())?;
    let r = f.call(nr::MUNMAP, [base, REGION_LEN, 0, 0, 0, 0]);
    f.expect(format_args!("munmap of the whole region"), Ok(0), r).map_err(|_| ())?;
    for op in 1..=ops {
        f.op = op;
        f.one().map_err(|_| ())?;
    }
    f.op = ops + 1;
    f.check().map_err(|_| ())?;
    let r = f.call(nr::MUNMAP, [base, REGION_LEN, 0, 0, 0, 0]);
    f.expect(format_args!("munmap of the whole region at the end"), Ok(0), r).map_err(|_| ())?;
    f.pages = [UNMAPPED; PAGES];
    f.verify_range(0, PAGES, "the final munmap").map_err(|_| ())?;
    f.report.ops = ops;
    Ok(f.report)
}

/// Set once any thread has printed a FAIL line: the others stop printing.
static FAILED: AtomicU32 = AtomicU32::new(0);

fn main() -> i32 {
    let usage = || {
        println!("mmfuzz: usage: mmfuzz [SEED [OPS [THREADS]]], THREADS 1-{}", MAX_THREADS);
        2
    };
    let Some(seed) = rand::seed_from_arg_or_auxv(1) else { return usage() };
    let ops = match env::arg(2).map(env::parse_num) {
        None => DEFAULT_OPS,
        Some(Some(n)) => n,
        Some(None) => return usage(),
    };
    let threads = match env::arg(3).map(env::parse_num) {
        None => MAX_THREADS,
        Some(Some(n)) if (1..=MAX_THREADS as u64).contains(&n) => n as usize,
        Some(_) => return usage(),
    };
    println!("info: seed {:#x}", seed);
    println!("info: replay: mmfuzz {:#x} {} {}", seed, ops, threads);
    println!(
        "mmfuzz: {} threads each fuzz mmap, munmap, mprotect and madvise over {} pages of their own, checked against a model",
        threads, PAGES
    );
    let start = monotonic_ns();
    let mut handles = [const { None }; MAX_THREADS];
    for (i, h) in handles.iter_mut().enumerate().take(threads) {
        *h = Some(thread::spawn(move || {
            let r = fuzz(i, seed, ops);
            if r.is_err() {
                // The FAIL line is out; end the whole run here, before other
                // threads bury it or the state changes further.
                FAILED.store(1, Ordering::SeqCst);
                sys::exit_group(1);
            }
            r
        }));
    }
    let mut reports = [Report::default(); MAX_THREADS];
    for (i, h) in handles.into_iter().enumerate().take(threads) {
        match h {
            Some(Ok(h)) => match h.join() {
                Ok(r) => reports[i] = r,
                Err(()) => return 1,
            },
            _ => {
                println!("mmfuzz: thread {} could not be started", i + 1);
                return 1;
            }
        }
    }
    println!("info: took {} ms", (monotonic_ns() - start) / 1_000_000);
    for (k, name) in OP_NAMES.iter().enumerate().take(OPS) {
        let total: u32 = reports[..threads].iter().map(|r| r.per_op[k]).sum();
        println!("info: {:>16}: {}", name, total);
    }
    for (i, r) in reports[..threads].iter().enumerate() {
        println!("mmfuzz: thread {}: ok, {} ops", i + 1, r.ops);
    }
    if FAILED.load(Ordering::SeqCst) != 0 {
        return 1;
    }
    println!("mmfuzz: all checks passed");
    0
}
