//! syscalls: the conformance test. Exercises every system call the kernel
//! implements, on its success paths and its error paths, and checks the exact
//! result Linux gives (the expected values were checked on Linux 6.18).
//!
//! One line per check: `ok: <what>` or `FAIL: <what>: expected X, got Y`;
//! values that differ between runs are printed on `info:` lines only. Last line:
//! `syscalls: N passed, M failed`; exit status 0 only if nothing failed.
//!
//! Whether a page is mapped is probed without dying: FUTEX_WAIT with a zero
//! timeout reads the word (EFAULT if it cannot), clock_gettime writes 16 bytes
//! (EFAULT if it cannot). All memory these tests poke at is scratch memory they
//! mapped themselves and only touch through raw pointers.
#![no_std]
#![no_main]

use core::arch::asm;
use core::fmt::Debug;
use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use ulib::sys::{self, nr, *};
use ulib::thread;
use ulib::{println, Errno};

ulib::entry!(main);

const PAGE: usize = PAGE_SIZE;
/// An address in the never-mapped first page.
const NULL_PAGE_PTR: usize = 0x10;
/// A canonical kernel-half address: never accessible from user mode.
const KERNEL_PTR: usize = 0xffff_8000_0000_0000;
/// A non-canonical address.
const NONCANONICAL: usize = 0x8000_0000_0000_0000;

struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn check<E: Debug, G: Debug>(&mut self, what: &str, pass: bool, expected: E, got: G) {
        if pass {
            self.passed += 1;
            println!("ok: {}", what);
        } else {
            self.failed += 1;
            println!("FAIL: {}: expected {:?}, got {:?}", what, expected, got);
        }
    }

    fn eq<T: PartialEq + Debug>(&mut self, what: &str, expected: T, got: T) {
        let pass = expected == got;
        self.check(what, pass, expected, got);
    }

    /// A check whose expectation is a property rather than a value.
    fn that<G: Debug>(&mut self, what: &str, pass: bool, expectation: &str, got: G) {
        self.check(what, pass, Text(expectation), got);
    }

    fn err<T: PartialEq + Debug>(&mut self, what: &str, expected: Errno, got: Result<T, Errno>) {
        self.eq(what, Err(expected), got);
    }
}

/// Prints as-is inside `expected ...`.
struct Text<'a>(&'a str);

impl Debug for Text<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.0)
    }
}

/// A raw system call, for the error paths the typed wrappers cannot express.
///
/// # Safety
/// As for [`sys::syscall6`]: the call may only affect memory this test owns as
/// scratch (accessed through raw pointers), or addresses the kernel must reject.
unsafe fn raw(n: usize, args: &[usize]) -> Result<usize, Errno> {
    // SAFETY: forwarded contract.
    sys::check(unsafe { syscall(n, args) })
}

/// Maps fresh scratch memory; the tests cannot go on without it.
fn map(len: usize, prot: usize, flags: usize) -> *mut u8 {
    // SAFETY: no MAP_FIXED in `flags` at the call sites: nothing is replaced.
    match unsafe { mmap(0, len, prot, flags | MAP_ANONYMOUS, -1, 0) } {
        Ok(p) => p,
        Err(e) => panic!("mmap of {} bytes of scratch memory failed: {:?}", len, e),
    }
}

fn map_rw(len: usize) -> *mut u8 {
    map(len, PROT_READ | PROT_WRITE, MAP_PRIVATE)
}

/// # Safety
/// `p` must be readable.
unsafe fn peek(p: *const u8) -> u8 {
    // SAFETY: forwarded contract.
    unsafe { ptr::read_volatile(p) }
}

/// # Safety
/// `p` must be writable scratch memory.
unsafe fn poke(p: *mut u8, v: u8) {
    // SAFETY: forwarded contract.
    unsafe { ptr::write_volatile(p, v) }
}

/// Whether the kernel can read the (4-aligned) word at `p`.
fn readable(p: usize) -> bool {
    let zero = Timespec::default();
    // SAFETY: FUTEX_WAIT only reads the word (or reports EFAULT); with a zero
    // timeout it returns at once whatever the word holds.
    let r = unsafe { futex(p as *const u32, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 0x5eed_f00d, &zero) };
    r != Err(Errno::EFAULT)
}

/// Whether the kernel can write the 16 bytes at `p` (it overwrites them).
///
/// # Safety
/// `p` must be scratch memory (or memory the kernel cannot write).
unsafe fn writable(p: usize) -> bool {
    // SAFETY: forwarded contract.
    unsafe { raw(nr::CLOCK_GETTIME, &[CLOCK_MONOTONIC, p]) }.is_ok()
}

/// Whether every page overlapping `[p, p + len)` passes `probe`: checked
/// before Rust code touches memory, so that a kernel that got a mapping wrong
/// produces a FAIL line instead of killing the whole test.
fn pages(p: *const u8, len: usize, probe: impl Fn(usize) -> bool) -> bool {
    let start = p as usize & !(PAGE - 1);
    (start..p as usize + len).step_by(PAGE).all(probe)
}

fn all_zero(p: *const u8, len: usize) -> bool {
    // SAFETY: every page of the range was just found readable.
    pages(p, len, readable) && (0..len).all(|i| unsafe { peek(p.add(i)) } == 0)
}

/// Writes the pattern for `seed` over `[p, p + len)` (`p` page-aligned), if
/// every page of it is writable.
fn fill(p: *mut u8, len: usize, seed: u8) {
    assert!((p as usize).is_multiple_of(PAGE));
    // SAFETY: the probe overwrites the first 16 bytes of each page, which the
    // fill overwrites anyway; callers pass scratch ranges.
    if !pages(p, len, |a| unsafe { writable(a) }) {
        return;
    }
    for i in 0..len {
        // SAFETY: the range is writable scratch memory.
        unsafe { poke(p.add(i), pattern(i, seed)) };
    }
}

/// Whether bytes `from..to` of a range filled from `base` with `seed` are intact.
fn matches_at(base: *const u8, from: usize, to: usize, seed: u8) -> bool {
    // SAFETY: every page of the range was just found readable.
    pages(base.wrapping_add(from), to - from, readable)
        && (from..to).all(|i| unsafe { peek(base.add(i)) } == pattern(i, seed))
}

fn matches(p: *const u8, len: usize, seed: u8) -> bool {
    matches_at(p, 0, len, seed)
}

fn pattern(i: usize, seed: u8) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add((i / PAGE) as u8).wrapping_add(seed) | 1
}

fn ms(ns: i128) -> i128 {
    ns / 1_000_000
}

fn main() -> i32 {
    let mut t = Tally { passed: 0, failed: 0 };
    println!("syscalls: checking each system call against Linux behaviour");
    identity(&mut t);
    output(&mut t);
    clocks(&mut t);
    sleeping(&mut t);
    futexes(&mut t);
    registers(&mut t);
    threads(&mut t);
    arch_prctl(&mut t);
    brk(&mut t);
    mmap_tests(&mut t);
    munmap_tests(&mut t);
    mprotect_tests(&mut t);
    madvise_tests(&mut t);
    uname_tests(&mut t);
    unimplemented(&mut t);
    println!("syscalls: {} passed, {} failed", t.passed, t.failed);
    if t.failed == 0 {
        0
    } else {
        1
    }
}

static MAIN_CLEAR_TID: AtomicU32 = AtomicU32::new(0);

fn identity(t: &mut Tally) {
    let pid = getpid();
    let tid = gettid();
    let ppid = getppid();
    println!("info: pid {} tid {} ppid {}", pid, tid, ppid);
    t.that("getpid returns a positive pid", pid as i32 > 0, "> 0", pid);
    t.eq("gettid equals getpid in the main thread", pid, tid);
    t.that("getppid returns a pid (>= 0)", ppid as i32 >= 0, ">= 0", ppid);
    t.eq("sched_yield returns 0", Ok(0), sched_yield());
    // SAFETY: the word is a static, valid for the whole run.
    let r = unsafe { set_tid_address(MAIN_CLEAR_TID.as_ptr()) };
    t.eq("set_tid_address returns the caller's tid", tid as usize, r);
}

fn output(t: &mut Tally) {
    let line = b"info: write(1) works\n";
    t.eq("write to stdout returns the full length", Ok(line.len()), write(1, line));
    t.eq("write of 0 bytes returns 0", Ok(0), write(1, b""));
    let eline = b"info: write(2) works\n";
    t.eq("write to stderr returns the full length", Ok(eline.len()), write(2, eline));
    t.err("write to fd 7 (not open) fails with EBADF", Errno::EBADF, write(7, b"x"));
    t.err("write to fd -1 fails with EBADF", Errno::EBADF, write(-1, b"x"));

    let scratch = map_rw(2 * PAGE);
    let page = scratch as usize;
    // SAFETY: page 1 of our scratch mapping becomes inaccessible; we never touch it again.
    unsafe { mprotect(scratch.add(PAGE), PAGE, PROT_NONE) }.unwrap();
    // SAFETY: write only reads user memory; every pointer here is unreadable
    // or our scratch.
    unsafe {
        t.err(
            "write from a NULL-page pointer fails with EFAULT",
            Errno::EFAULT,
            raw(nr::WRITE, &[1, NULL_PAGE_PTR, 8]),
        );
        t.err("write from a PROT_NONE page fails with EFAULT", Errno::EFAULT, raw(nr::WRITE, &[1, page + PAGE, 8]));
        t.err("write from a kernel address fails with EFAULT", Errno::EFAULT, raw(nr::WRITE, &[1, KERNEL_PTR, 8]));
        t.err(
            "write with pointer+length wrapping around fails with EFAULT",
            Errno::EFAULT,
            raw(nr::WRITE, &[1, page, usize::MAX - page + 2]),
        );
        t.err(
            "write checks the fd before the buffer (fd 7, bad buffer: EBADF)",
            Errno::EBADF,
            raw(nr::WRITE, &[7, NULL_PAGE_PTR, 8]),
        );
    }

    let parts: [&[u8]; 3] = [b"info: writev ", b"joins ", b"three parts\n"];
    let iov = [IoVec::new(parts[0]), IoVec::new(parts[1]), IoVec::new(parts[2])];
    let total = parts.iter().map(|p| p.len()).sum::<usize>();
    t.eq("writev of 3 iovecs returns the total length", Ok(total), writev(1, &iov));
    t.eq("writev of 0 iovecs returns 0", Ok(0), writev(1, &[]));
    t.err("writev to fd 7 fails with EBADF", Errno::EBADF, writev(7, &iov));
    static EMPTY: [IoVec; 1025] = [IoVec { base: ptr::null(), len: 0 }; 1025];
    t.eq("writev of 1024 (UIO_MAXIOV) empty iovecs returns 0", Ok(0), writev(1, &EMPTY[..1024]));
    t.err("writev of 1025 iovecs fails with EINVAL", Errno::EINVAL, writev(1, &EMPTY[..1025]));
    let skip_line = b"info: writev skips an empty iovec with a bad base\n";
    let skip = [IoVec { base: NULL_PAGE_PTR as *const u8, len: 0 }, IoVec::new(skip_line)];
    t.eq("writev ignores the base of a zero-length iovec", Ok(skip_line.len()), writev(1, &skip));
    let bad_base = [IoVec { base: NULL_PAGE_PTR as *const u8, len: 5 }];
    t.err("writev of an iovec with a bad base fails with EFAULT", Errno::EFAULT, writev(1, &bad_base));
    let negative = [IoVec { base: page as *const u8, len: usize::MAX }];
    t.err("writev of an iovec with a negative length fails with EINVAL", Errno::EINVAL, writev(1, &negative));
    // SAFETY: writev only reads user memory; the pointers are invalid or ours.
    unsafe {
        t.err(
            "writev with a count of -1 fails with EINVAL",
            Errno::EINVAL,
            raw(nr::WRITEV, &[1, iov.as_ptr() as usize, usize::MAX]),
        );
        t.err(
            "writev with an unreadable iovec array fails with EFAULT",
            Errno::EFAULT,
            raw(nr::WRITEV, &[1, page + PAGE, 1]),
        );
        t.err(
            "writev checks the fd before the iovecs (fd 7, count -1: EBADF)",
            Errno::EBADF,
            raw(nr::WRITEV, &[7, page + PAGE, usize::MAX]),
        );
    }

    let mut buf = [0u8; 8];
    t.eq("read of 0 bytes from stdin returns 0", Ok(0), read(0, &mut buf[..0]));
    t.err("read from fd 7 (not open) fails with EBADF", Errno::EBADF, read(7, &mut buf));
    t.err("read from fd -1 fails with EBADF", Errno::EBADF, read(-1, &mut buf));
    // SAFETY: the scratch mapping is unused from here on.
    unsafe { munmap(scratch, 2 * PAGE) }.unwrap();
}

fn clocks(t: &mut Tally) {
    let mono = clock_gettime(CLOCK_MONOTONIC);
    let real = clock_gettime(CLOCK_REALTIME);
    println!("info: CLOCK_MONOTONIC {:?}, CLOCK_REALTIME {:?}", mono, real);
    let valid =
        |r: &Result<Timespec, Errno>| r.is_ok_and(|ts| ts.tv_sec >= 0 && (0..1_000_000_000).contains(&ts.tv_nsec));
    t.that("clock_gettime(CLOCK_MONOTONIC) gives a valid timespec", valid(&mono), "Ok, sec >= 0, nsec < 1e9", mono);
    t.that("clock_gettime(CLOCK_REALTIME) gives a valid timespec", valid(&real), "Ok, sec >= 0, nsec < 1e9", real);

    let mut prev = monotonic_ns();
    let mut backwards = None;
    for _ in 0..1000 {
        let now = monotonic_ns();
        if now < prev {
            backwards = Some((prev, now));
        }
        prev = now;
    }
    t.that("CLOCK_MONOTONIC never goes backwards (1000 reads)", backwards.is_none(), "no decrease", backwards);

    let scratch = map_rw(PAGE);
    let page = scratch as usize;
    // SAFETY: clock_gettime writes 16 bytes: into our scratch page or, for the
    // bad pointers, nowhere. The page is made read-only before the last two uses
    // and not written by us afterwards.
    unsafe {
        let mut ts = Timespec::default();
        let p = &mut ts as *mut Timespec as usize;
        t.err("clock_gettime with clock id 100 fails with EINVAL", Errno::EINVAL, raw(nr::CLOCK_GETTIME, &[100, p]));
        t.err(
            "clock_gettime into a NULL-page pointer fails with EFAULT",
            Errno::EFAULT,
            raw(nr::CLOCK_GETTIME, &[CLOCK_MONOTONIC, NULL_PAGE_PTR]),
        );
        t.err(
            "clock_gettime into a kernel address fails with EFAULT",
            Errno::EFAULT,
            raw(nr::CLOCK_GETTIME, &[CLOCK_REALTIME, KERNEL_PTR]),
        );
        t.err(
            "clock_gettime into a timespec straddling the end of a mapping fails with EFAULT",
            Errno::EFAULT,
            raw(nr::CLOCK_GETTIME, &[CLOCK_MONOTONIC, page + PAGE - 8]),
        );
        mprotect(scratch, PAGE, PROT_READ).unwrap();
        t.err(
            "clock_gettime into a read-only page fails with EFAULT",
            Errno::EFAULT,
            raw(nr::CLOCK_GETTIME, &[CLOCK_MONOTONIC, page]),
        );
        t.eq("the read-only page was not modified", Some(0), readable(page).then(|| peek(scratch)));
        munmap(scratch, PAGE).unwrap();
    }
}

fn sleeping(t: &mut Tally) {
    let start = monotonic_ns();
    let r = nanosleep(&Timespec::from_nanos(10_000_000));
    let slept = (monotonic_ns() - start) as i128;
    println!("info: nanosleep(10 ms) took {} us", slept / 1000);
    t.eq("nanosleep(10 ms) returns 0", Ok(0), r);
    t.that("nanosleep(10 ms) sleeps at least 10 ms", slept >= 10_000_000, ">= 10 ms", Ms(slept));
    t.eq("nanosleep(0) returns 0", Ok(0), nanosleep(&Timespec::default()));
    let bad = |sec, nsec| Timespec { tv_sec: sec, tv_nsec: nsec };
    t.err("nanosleep with tv_nsec = 1e9 fails with EINVAL", Errno::EINVAL, nanosleep(&bad(0, 1_000_000_000)));
    t.err("nanosleep with tv_nsec = -1 fails with EINVAL", Errno::EINVAL, nanosleep(&bad(0, -1)));
    t.err("nanosleep with tv_sec = -1 fails with EINVAL", Errno::EINVAL, nanosleep(&bad(-1, 0)));
    // SAFETY: nanosleep reads req and writes rem only when interrupted (never here).
    unsafe {
        t.err(
            "nanosleep with a NULL-page request fails with EFAULT",
            Errno::EFAULT,
            raw(nr::NANOSLEEP, &[NULL_PAGE_PTR, 0]),
        );
        let req = Timespec::from_nanos(1_000_000);
        t.eq(
            "nanosleep ignores a bad rem pointer when not interrupted",
            Ok(0),
            raw(nr::NANOSLEEP, &[&req as *const Timespec as usize, NULL_PAGE_PTR]),
        );
    }
}

/// Nanoseconds, printed as milliseconds.
struct Ms(i128);

impl Debug for Ms {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ms", ms(self.0))
    }
}

fn futexes(t: &mut Tally) {
    let word = AtomicU32::new(5);
    let w = word.as_ptr();
    let ten_ms = Timespec::from_nanos(10_000_000);
    t.err("FUTEX_WAIT with a value that differs fails with EAGAIN", Errno::EAGAIN, futex_wait(&word, 6, None));
    // SAFETY: FUTEX_WAIT and FUTEX_WAKE only read the word; the bad addresses
    // are rejected; the timeouts are valid timespecs or rejected pointers.
    unsafe {
        t.err(
            "FUTEX_WAIT (shared) with a value that differs fails with EAGAIN",
            Errno::EAGAIN,
            futex(w, FUTEX_WAIT, 6, ptr::null()),
        );
        let start = monotonic_ns();
        let r = futex_wait(&word, 5, Some(&ten_ms));
        let waited = (monotonic_ns() - start) as i128;
        println!("info: FUTEX_WAIT with a 10 ms timeout took {} us", waited / 1000);
        t.err("FUTEX_WAIT with a 10 ms timeout fails with ETIMEDOUT", Errno::ETIMEDOUT, r);
        t.that("FUTEX_WAIT with a 10 ms timeout waits at least 10 ms", waited >= 10_000_000, ">= 10 ms", Ms(waited));
        let r = futex(w, FUTEX_WAIT, 5, &ten_ms);
        t.err("FUTEX_WAIT (shared) with a 10 ms timeout fails with ETIMEDOUT", Errno::ETIMEDOUT, r);
        t.err(
            "FUTEX_WAIT with a zero timeout fails with ETIMEDOUT",
            Errno::ETIMEDOUT,
            futex_wait(&word, 5, Some(&Timespec::default())),
        );
        t.err(
            "FUTEX_WAIT with tv_nsec = 1e9 fails with EINVAL",
            Errno::EINVAL,
            futex_wait(&word, 5, Some(&Timespec { tv_sec: 0, tv_nsec: 1_000_000_000 })),
        );
        t.err(
            "FUTEX_WAIT with tv_sec = -1 fails with EINVAL",
            Errno::EINVAL,
            futex_wait(&word, 5, Some(&Timespec { tv_sec: -1, tv_nsec: 0 })),
        );
        t.err(
            "FUTEX_WAIT with a bad timeout pointer fails with EFAULT",
            Errno::EFAULT,
            futex(w, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 5, NULL_PAGE_PTR as *const Timespec),
        );
        t.err(
            "FUTEX_WAIT reads the timeout before the word (bad timeout, wrong value: EFAULT)",
            Errno::EFAULT,
            futex(w, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 6, NULL_PAGE_PTR as *const Timespec),
        );
        t.err(
            "FUTEX_WAIT on an unaligned address fails with EINVAL",
            Errno::EINVAL,
            futex((w as usize + 1) as *const u32, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 5, ptr::null()),
        );
        t.err(
            "FUTEX_WAIT on a NULL-page address fails with EFAULT",
            Errno::EFAULT,
            futex(NULL_PAGE_PTR as *const u32, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 0, ptr::null()),
        );
        t.err(
            "FUTEX_WAIT on a kernel address fails with EFAULT",
            Errno::EFAULT,
            futex(KERNEL_PTR as *const u32, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 0, ptr::null()),
        );
        t.eq("FUTEX_WAKE with no waiters returns 0", Ok(0), futex_wake(&word, 1));
        t.eq("FUTEX_WAKE (shared) with no waiters returns 0", Ok(0), futex(w, FUTEX_WAKE, 1, ptr::null()));
        t.err(
            "FUTEX_WAKE on an unaligned address fails with EINVAL",
            Errno::EINVAL,
            futex((w as usize + 2) as *const u32, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, ptr::null()),
        );
        t.err(
            "futex with an unknown operation (99) fails with ENOSYS",
            Errno::ENOSYS,
            futex(w, 99 | FUTEX_PRIVATE_FLAG, 0, ptr::null()),
        );
    }
    futex_wakeups(t);
}

static WAIT_WORD: AtomicU32 = AtomicU32::new(0);
static WAITERS_READY: AtomicU32 = AtomicU32::new(0);

/// Repeats `f` (which returns how many waiters it woke) with short sleeps until
/// `want` have been woken in total or 10 s have passed; returns the per-call
/// counts seen (at most 8) and the total.
fn wake_until(want: usize, mut f: impl FnMut() -> Result<usize, Errno>) -> ([usize; 8], usize, Option<Errno>) {
    let mut seen = [0usize; 8];
    let mut n = 0;
    let mut total = 0;
    let deadline = monotonic_ns() + 10_000_000_000;
    while total < want && monotonic_ns() < deadline {
        match f() {
            Ok(0) => sleep_ms(1),
            Ok(k) => {
                if n < seen.len() {
                    seen[n] = k;
                    n += 1;
                }
                total += k;
            }
            Err(e) => return (seen, total, Some(e)),
        }
    }
    (seen, total, None)
}

fn futex_wakeups(t: &mut Tally) {
    // One waiter: keep waking until the wake reports it, so we know it was asleep.
    WAIT_WORD.store(0, Ordering::SeqCst);
    let h = thread::spawn(|| futex_wait(&WAIT_WORD, 0, None)).expect("spawn");
    let (_, total, err) = wake_until(1, || futex_wake(&WAIT_WORD, 1));
    t.eq("FUTEX_WAKE wakes a blocked waiter and returns 1", (1, None), (total, err));
    if total == 1 {
        t.eq("the woken FUTEX_WAIT returns 0", Ok(0), h.join());
    }

    // Three waiters, woken one per call: no call may wake more than one.
    WAITERS_READY.store(0, Ordering::SeqCst);
    let hs = [0, 1, 2].map(|_| {
        thread::spawn(|| {
            WAITERS_READY.fetch_add(1, Ordering::SeqCst);
            futex_wait(&WAIT_WORD, 0, None)
        })
        .expect("spawn")
    });
    while WAITERS_READY.load(Ordering::SeqCst) < 3 {
        let _ = sched_yield();
    }
    let (seen, total, err) = wake_until(3, || futex_wake(&WAIT_WORD, 1));
    let max_one = seen.iter().all(|&k| k <= 1);
    t.that(
        "FUTEX_WAKE with n = 1 wakes one waiter at a time, three waiters in all",
        max_one && total == 3 && err.is_none(),
        "each call 0 or 1, 3 in total",
        (seen, total, err),
    );
    if total == 3 {
        let rs = hs.map(|h| h.join());
        t.eq("the three woken waits return 0", [Ok(0), Ok(0), Ok(0)], rs);
    }

    // Shared (non-private) futex on a MAP_SHARED page, as a process-shared lock would use.
    let shared = map(PAGE, PROT_READ | PROT_WRITE, MAP_SHARED);
    let addr = shared as usize;
    let h = thread::spawn(move || {
        // SAFETY: the shared page is mapped until the main thread has joined us.
        unsafe { futex(addr as *const u32, FUTEX_WAIT, 0, ptr::null()) }
    })
    .expect("spawn");
    // SAFETY: a wake only looks the address up; the page is ours.
    let (_, total, err) = wake_until(1, || unsafe { futex(addr as *const u32, FUTEX_WAKE, 1, ptr::null()) });
    t.eq("FUTEX_WAKE (shared) on a MAP_SHARED page wakes the waiter", (1, None), (total, err));
    if total == 1 {
        t.eq("the woken shared FUTEX_WAIT returns 0", Ok(0), h.join());
        // SAFETY: the waiter has exited; nothing uses the page.
        unsafe { munmap(shared, PAGE) }.unwrap();
    }
}

const REG_NAMES: [&str; 12] = ["rbx", "rbp", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r12", "r13", "r14", "r15"];

/// Loads known values into every general register the kernel must preserve,
/// makes system call `n` (no arguments used), and returns the registers after
/// it, plus rcx, r11, the address after `syscall` and rflags before it.
fn registers_across(n: usize) -> ([u64; 12], u64, u64, u64, u64) {
    let mut out = [0u64; 16];
    // SAFETY: the asm saves and restores rbx and rbp itself (Rust cannot name
    // them as clobbers), declares every other register it changes, and calls a
    // system call that takes no arguments and touches no memory.
    unsafe {
        asm!(
            "push rbx",
            "push rbp",
            "push rdi",
            "lea rax, [rip + 3f]",
            "mov [rdi + 104], rax",
            "pushfq",
            "pop rax",
            "mov [rdi + 112], rax",
            "mov rax, r11",
            "mov rbx, 0x1111111111111101",
            "mov rbp, 0x2222222222222202",
            "mov rdx, 0x3333333333333303",
            "mov rsi, 0x4444444444444404",
            "mov rdi, 0x5555555555555505",
            "mov r8,  0x6666666666666606",
            "mov r9,  0x7777777777777707",
            "mov r10, 0x0888888888888808",
            "mov r12, 0x0999999999999909",
            "mov r13, 0x0aaaaaaaaaaaaa0a",
            "mov r14, 0x0bbbbbbbbbbbbb0b",
            "mov r15, 0x0ccccccccccccc0c",
            "syscall",
            "3:",
            "xchg rdi, [rsp]",
            "mov [rdi + 0], rbx",
            "mov [rdi + 8], rbp",
            "mov [rdi + 16], rdx",
            "mov [rdi + 24], rsi",
            "mov [rdi + 40], r8",
            "mov [rdi + 48], r9",
            "mov [rdi + 56], r10",
            "mov [rdi + 64], r12",
            "mov [rdi + 72], r13",
            "mov [rdi + 80], r14",
            "mov [rdi + 88], r15",
            "mov [rdi + 96], rcx",
            "mov [rdi + 120], r11",
            "pop rax",
            "mov [rdi + 32], rax",
            "pop rbp",
            "pop rbx",
            inout("rdi") out.as_mut_ptr() => _,
            inout("r11") n => _,
            out("rax") _, out("rcx") _, out("rdx") _, out("rsi") _,
            out("r8") _, out("r9") _, out("r10") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        );
    }
    let mut regs = [0u64; 12];
    regs.copy_from_slice(&out[..12]);
    (regs, out[12], out[15], out[13], out[14])
}

fn registers(t: &mut Tally) {
    for (n, name) in [(nr::GETPID, "getpid"), (nr::SCHED_YIELD, "sched_yield"), (999, "syscall 999 (ENOSYS)")] {
        let (regs, rcx, r11, ret_addr, flags) = registers_across(n);
        let want: [u64; 12] = [
            0x1111111111111101,
            0x2222222222222202,
            0x3333333333333303,
            0x4444444444444404,
            0x5555555555555505,
            0x6666666666666606,
            0x7777777777777707,
            0x0888888888888808,
            0x0999999999999909,
            0x0aaaaaaaaaaaaa0a,
            0x0bbbbbbbbbbbbb0b,
            0x0ccccccccccccc0c,
        ];
        let bad = (0..12).find(|&i| regs[i] != want[i]);
        let what = Fmt::new(format_args!("{} preserves rbx rbp rdx rsi rdi r8 r9 r10 r12-r15", name));
        match bad {
            None => t.that(what.as_str(), true, "", ()),
            Some(i) => t.that(what.as_str(), false, "unchanged registers", (REG_NAMES[i], Hex(regs[i]))),
        }
        let what = Fmt::new(format_args!("{} returns with rcx = return address, r11 = rflags", name));
        t.eq(what.as_str(), (Hex(ret_addr), Hex(flags)), (Hex(rcx), Hex(r11)));
    }
    t.that("xmm0-15 survive a system call", xmm_across_yields(0x5151_0000, 1), "unchanged", false);
    // More threads than this host's CPUs, each yielding: xmm state must follow
    // each thread through context switches.
    let hs = [1u64, 2, 3, 4, 5, 6].map(|k| thread::spawn(move || xmm_across_yields(k << 32, 300)).expect("spawn"));
    let ok = hs.map(|h| h.join());
    t.that("xmm0-15 survive 300 sched_yields in each of 6 threads", ok.iter().all(|&b| b), "all unchanged", ok);
}

#[derive(PartialEq)]
struct Hex(u64);

impl Debug for Hex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A small formatted string, for check names built at run time.
struct Fmt {
    buf: [u8; 160],
    len: usize,
}

impl Fmt {
    fn new(args: core::fmt::Arguments) -> Fmt {
        let mut f = Fmt { buf: [0; 160], len: 0 };
        let _ = core::fmt::write(&mut f, args);
        f
    }
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl core::fmt::Write for Fmt {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Puts a distinct value in each of xmm0-15 (both halves), makes `yields`
/// sched_yield calls, and reports whether all sixteen still hold their value.
/// The program is built soft-float, so the compiler keeps nothing in xmm
/// registers; the asm still saves and restores them.
fn xmm_across_yields(seed: u64, yields: usize) -> bool {
    let mut save = [0u64; 32];
    let mut after = [0u64; 32];
    // SAFETY: the asm writes only the two local arrays, restores xmm0-15 from
    // `save` before it ends, and declares every general register it changes.
    unsafe {
        asm!(
            "movdqu [{s} + 0], xmm0", "movdqu [{s} + 16], xmm1", "movdqu [{s} + 32], xmm2",
            "movdqu [{s} + 48], xmm3", "movdqu [{s} + 64], xmm4", "movdqu [{s} + 80], xmm5",
            "movdqu [{s} + 96], xmm6", "movdqu [{s} + 112], xmm7", "movdqu [{s} + 128], xmm8",
            "movdqu [{s} + 144], xmm9", "movdqu [{s} + 160], xmm10", "movdqu [{s} + 176], xmm11",
            "movdqu [{s} + 192], xmm12", "movdqu [{s} + 208], xmm13", "movdqu [{s} + 224], xmm14",
            "movdqu [{s} + 240], xmm15",
            "lea rax, [{seed} + 0]", "movq xmm0, rax", "punpcklqdq xmm0, xmm0",
            "lea rax, [{seed} + 1]", "movq xmm1, rax", "punpcklqdq xmm1, xmm1",
            "lea rax, [{seed} + 2]", "movq xmm2, rax", "punpcklqdq xmm2, xmm2",
            "lea rax, [{seed} + 3]", "movq xmm3, rax", "punpcklqdq xmm3, xmm3",
            "lea rax, [{seed} + 4]", "movq xmm4, rax", "punpcklqdq xmm4, xmm4",
            "lea rax, [{seed} + 5]", "movq xmm5, rax", "punpcklqdq xmm5, xmm5",
            "lea rax, [{seed} + 6]", "movq xmm6, rax", "punpcklqdq xmm6, xmm6",
            "lea rax, [{seed} + 7]", "movq xmm7, rax", "punpcklqdq xmm7, xmm7",
            "lea rax, [{seed} + 8]", "movq xmm8, rax", "punpcklqdq xmm8, xmm8",
            "lea rax, [{seed} + 9]", "movq xmm9, rax", "punpcklqdq xmm9, xmm9",
            "lea rax, [{seed} + 10]", "movq xmm10, rax", "punpcklqdq xmm10, xmm10",
            "lea rax, [{seed} + 11]", "movq xmm11, rax", "punpcklqdq xmm11, xmm11",
            "lea rax, [{seed} + 12]", "movq xmm12, rax", "punpcklqdq xmm12, xmm12",
            "lea rax, [{seed} + 13]", "movq xmm13, rax", "punpcklqdq xmm13, xmm13",
            "lea rax, [{seed} + 14]", "movq xmm14, rax", "punpcklqdq xmm14, xmm14",
            "lea rax, [{seed} + 15]", "movq xmm15, rax", "punpcklqdq xmm15, xmm15",
            "2:",
            "mov eax, 24",
            "syscall",
            "dec {n}",
            "jnz 2b",
            "movdqu [{a} + 0], xmm0", "movdqu [{a} + 16], xmm1", "movdqu [{a} + 32], xmm2",
            "movdqu [{a} + 48], xmm3", "movdqu [{a} + 64], xmm4", "movdqu [{a} + 80], xmm5",
            "movdqu [{a} + 96], xmm6", "movdqu [{a} + 112], xmm7", "movdqu [{a} + 128], xmm8",
            "movdqu [{a} + 144], xmm9", "movdqu [{a} + 160], xmm10", "movdqu [{a} + 176], xmm11",
            "movdqu [{a} + 192], xmm12", "movdqu [{a} + 208], xmm13", "movdqu [{a} + 224], xmm14",
            "movdqu [{a} + 240], xmm15",
            "movdqu xmm0, [{s} + 0]", "movdqu xmm1, [{s} + 16]", "movdqu xmm2, [{s} + 32]",
            "movdqu xmm3, [{s} + 48]", "movdqu xmm4, [{s} + 64]", "movdqu xmm5, [{s} + 80]",
            "movdqu xmm6, [{s} + 96]", "movdqu xmm7, [{s} + 112]", "movdqu xmm8, [{s} + 128]",
            "movdqu xmm9, [{s} + 144]", "movdqu xmm10, [{s} + 160]", "movdqu xmm11, [{s} + 176]",
            "movdqu xmm12, [{s} + 192]", "movdqu xmm13, [{s} + 208]", "movdqu xmm14, [{s} + 224]",
            "movdqu xmm15, [{s} + 240]",
            s = in(reg) save.as_mut_ptr(),
            a = in(reg) after.as_mut_ptr(),
            seed = in(reg) seed,
            n = inout(reg) yields.max(1) => _,
            out("rax") _, out("rcx") _, out("r11") _,
        );
    }
    (0..16).all(|i| after[2 * i] == seed + i as u64 && after[2 * i + 1] == seed + i as u64)
}

/// What a thread observed about itself.
#[derive(Debug, PartialEq, Clone, Copy)]
struct SelfView {
    tid: u32,
    pid: u32,
    ppid: u32,
    fs: Result<usize, Errno>,
    fs_self: usize,
    tid_word: u32,
}

static RAW_CHILD_WORD: AtomicU32 = AtomicU32::new(0);
static RAW_CHILD_TID: AtomicU32 = AtomicU32::new(0);

extern "C" fn raw_child(_arg: usize) -> ! {
    RAW_CHILD_TID.store(gettid(), Ordering::SeqCst);
    // SAFETY: the word is a static, valid for the whole run.
    unsafe { set_tid_address(RAW_CHILD_WORD.as_ptr()) };
    sys::exit(0)
}

extern "C" fn exit_at_once(_arg: usize) -> ! {
    sys::exit(0)
}

/// Waits (shared FUTEX_WAIT, as for a CLONE_CHILD_CLEARTID word) until `word`
/// is 0, for at most `secs` seconds; returns whether it became 0.
fn wait_cleared(word: &AtomicU32, secs: u64) -> bool {
    let deadline = monotonic_ns() + secs * 1_000_000_000;
    loop {
        let v = word.load(Ordering::SeqCst);
        if v == 0 {
            return true;
        }
        let now = monotonic_ns();
        if now >= deadline {
            return false;
        }
        let left = Timespec::from_nanos((deadline - now).min(100_000_000));
        // SAFETY: the kernel only reads the word.
        let _ = unsafe { futex(word.as_ptr(), FUTEX_WAIT, v, &left) };
    }
}

fn threads(t: &mut Tally) {
    let pid = getpid();
    let ppid = getppid();
    let h = thread::spawn(|| {
        // SAFETY: threads made by thread::spawn have FS pointing at their Tcb.
        let tcb = unsafe { thread::tcb_via_fs() };
        SelfView {
            tid: gettid(),
            pid: getpid(),
            ppid: getppid(),
            fs: arch_get_fs(),
            fs_self: tcb as usize,
            // SAFETY: our Tcb is live while we run.
            tid_word: unsafe { (*tcb).tid_word().load(Ordering::SeqCst) },
        }
    })
    .expect("spawn");
    let tid = h.tid();
    let tcb = h.tcb_addr();
    println!("info: clone made thread {}", tid);
    t.that("clone returns the new thread's tid (> 0, not ours)", tid as i32 > 0 && tid != gettid(), "> 0", tid);
    let word = h.tid_word();
    let cleared = wait_cleared(word, 10);
    t.that(
        "CLONE_CHILD_CLEARTID: the tid word is cleared (and woken) at thread exit",
        cleared,
        "0",
        word.load(Ordering::SeqCst),
    );
    if cleared {
        let v = h.join();
        let want = SelfView { tid, pid, ppid, fs: Ok(tcb), fs_self: tcb, tid_word: tid };
        t.eq("gettid in the thread is the tid clone returned", want.tid, v.tid);
        t.eq("getpid in the thread is the process's pid", want.pid, v.pid);
        t.eq("getppid in the thread is the process's parent", want.ppid, v.ppid);
        t.eq("CLONE_SETTLS: ARCH_GET_FS in the thread is the TLS pointer given to clone", want.fs, v.fs);
        t.eq("CLONE_SETTLS: %fs:0 in the thread reads the thread block's self pointer", want.fs_self, v.fs_self);
        t.eq("CLONE_PARENT_SETTID: the tid word holds the tid while the thread runs", want.tid_word, v.tid_word);
    }

    // set_tid_address from inside a thread redirects the exit-time clear.
    let stack = map_rw(16 * PAGE);
    RAW_CHILD_WORD.store(0xffff, Ordering::SeqCst);
    let flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
    // SAFETY: the stack is our fresh mapping, unmapped only after the child exited.
    let r = unsafe {
        thread::clone_raw(flags, stack as usize + 16 * PAGE, ptr::null_mut(), ptr::null_mut(), 0, raw_child, 0)
    };
    t.that("clone of a thread without SETTLS/SETTID/CLEARTID succeeds", r.is_ok(), "Ok(tid)", r);
    if let Ok(ctid) = r {
        let cleared = wait_cleared(&RAW_CHILD_WORD, 10);
        t.that(
            "set_tid_address in a thread: the kernel clears that word at exit",
            cleared,
            "0",
            RAW_CHILD_WORD.load(Ordering::SeqCst),
        );
        t.eq("that thread's gettid equals clone's return value", ctid, RAW_CHILD_TID.load(Ordering::SeqCst));
        if cleared {
            // SAFETY: the child has exited: nothing runs on its stack.
            unsafe { munmap(stack, 16 * PAGE) }.unwrap();
        }
    }

    // Invalid flag combinations. Should a kernel accept one anyway, the child
    // runs `exit_at_once` on a stack of its own that we never unmap, so the
    // mistake shows as a FAIL line rather than a crash.
    let spare = map_rw(4 * PAGE);
    let top = spare as usize + 4 * PAGE;
    // SAFETY: a valid, private stack that stays mapped; the entry only exits.
    let (a, b) = unsafe {
        (
            thread::clone_raw(CLONE_VM | CLONE_THREAD, top, ptr::null_mut(), ptr::null_mut(), 0, exit_at_once, 0),
            thread::clone_raw(CLONE_SIGHAND, top - 2 * PAGE, ptr::null_mut(), ptr::null_mut(), 0, exit_at_once, 0),
        )
    };
    t.err("clone with CLONE_THREAD but not CLONE_SIGHAND fails with EINVAL", Errno::EINVAL, a);
    t.err("clone with CLONE_SIGHAND but not CLONE_VM fails with EINVAL", Errno::EINVAL, b);
    if a.is_err() && b.is_err() {
        // SAFETY: no child was made: nothing uses the spare stack.
        unsafe { munmap(spare, 4 * PAGE) }.unwrap();
    }

    shared_address_space(t);
}

static MAILBOX: AtomicUsize = AtomicUsize::new(0);
static STEP: AtomicU32 = AtomicU32::new(0);

fn wait_step(n: u32) {
    while STEP.load(Ordering::SeqCst) < n {
        let _ = sched_yield();
    }
}

fn shared_address_space(t: &mut Tally) {
    STEP.store(0, Ordering::SeqCst);
    let h = thread::spawn(|| {
        let mut seen = [0u8; 4];
        // 1: a private mapping the main thread made after we started.
        wait_step(1);
        let p = MAILBOX.load(Ordering::SeqCst) as *mut u8;
        // SAFETY: the main thread mapped p and does not touch it until step 2.
        unsafe {
            seen[0] = peek(p);
            poke(p, 43);
        }
        STEP.store(2, Ordering::SeqCst);
        // 3: the main thread has unmapped it.
        wait_step(3);
        seen[1] = readable(p as usize) as u8;
        // 4: a MAP_SHARED mapping.
        STEP.store(4, Ordering::SeqCst);
        wait_step(5);
        let s = MAILBOX.load(Ordering::SeqCst) as *mut u8;
        // SAFETY: mapped by the main thread, which waits for step 6.
        unsafe {
            seen[2] = peek(s);
            poke(s, 77);
        }
        STEP.store(6, Ordering::SeqCst);
        seen
    })
    .expect("spawn");

    let p = map_rw(PAGE);
    // SAFETY: fresh scratch page.
    unsafe { poke(p, 42) };
    MAILBOX.store(p as usize, Ordering::SeqCst);
    STEP.store(1, Ordering::SeqCst);
    wait_step(2);
    // SAFETY: the thread wrote it and is now waiting for step 3.
    let back = unsafe { peek(p) };
    // SAFETY: the thread does not access p after step 2 except through the probe.
    unsafe { munmap(p, PAGE) }.unwrap();
    STEP.store(3, Ordering::SeqCst);
    wait_step(4);
    let s = map(PAGE, PROT_READ | PROT_WRITE, MAP_SHARED);
    // SAFETY: fresh scratch page.
    unsafe { poke(s, 76) };
    MAILBOX.store(s as usize, Ordering::SeqCst);
    STEP.store(5, Ordering::SeqCst);
    wait_step(6);
    // SAFETY: the thread is done with it.
    let shared_back = unsafe { peek(s) };
    let seen = h.join();
    t.eq("a thread sees a mapping made after it started (reads 42)", 42, seen[0]);
    t.eq("the main thread sees the thread's write to it (43)", 43, back);
    t.eq("after munmap in the main thread, the thread cannot read the page", 0, seen[1]);
    t.eq("a thread reads a MAP_SHARED anonymous page (76)", 76, seen[2]);
    t.eq("the main thread sees the thread's write to the MAP_SHARED page (77)", 77, shared_back);
    // SAFETY: nothing uses it any more.
    unsafe { munmap(s, PAGE) }.unwrap();
}

fn arch_prctl(t: &mut Tally) {
    let orig = arch_get_fs();
    println!("info: main thread FS base {:?}", orig);
    t.that("ARCH_GET_FS succeeds", orig.is_ok(), "Ok", orig);
    let orig = orig.unwrap_or(0);
    let scratch = map_rw(PAGE);
    // SAFETY: the main thread never reads thread-locals through %fs, so any FS
    // base is harmless while we test, and we restore the original one.
    unsafe {
        t.eq("ARCH_SET_FS to a page address returns 0", Ok(0), arch_set_fs(scratch as usize));
        t.eq("ARCH_GET_FS returns what ARCH_SET_FS set", Ok(scratch as usize), arch_get_fs());
        t.eq("ARCH_SET_FS to 0 returns 0", Ok(0), arch_set_fs(0));
        t.eq("ARCH_GET_FS then returns 0", Ok(0), arch_get_fs());
        t.err("ARCH_SET_FS to a non-canonical address fails with EPERM", Errno::EPERM, arch_set_fs(NONCANONICAL));
        t.err("ARCH_SET_FS to a kernel address fails with EPERM", Errno::EPERM, arch_set_fs(KERNEL_PTR));
        t.err(
            "ARCH_GET_FS into a NULL-page pointer fails with EFAULT",
            Errno::EFAULT,
            raw(nr::ARCH_PRCTL, &[ARCH_GET_FS, NULL_PAGE_PTR]),
        );
        t.err(
            "arch_prctl with an unknown code (0x9999) fails with EINVAL",
            Errno::EINVAL,
            raw(nr::ARCH_PRCTL, &[0x9999, scratch as usize]),
        );
        t.eq("ARCH_SET_FS back to the original returns 0", Ok(0), arch_set_fs(orig));
        munmap(scratch, PAGE).unwrap();
    }
}

fn brk(t: &mut Tally) {
    let cur = brk_current();
    println!("info: initial program break {:#x}", cur);
    t.that(
        "brk(0) returns the current break (non-zero, page-aligned)",
        cur != 0 && cur.is_multiple_of(PAGE),
        "page-aligned address",
        Hex(cur as u64),
    );
    t.that("the page at the initial break is not mapped", !readable(cur), "unreadable", ());
    // SAFETY: the break area above `cur` is ours alone: nothing else in this
    // program uses brk, and Rust code touches it only through raw pointers.
    unsafe {
        let grown = sys::brk(cur + 16 * PAGE);
        t.eq("brk(+64 KiB) returns the new break", cur + 16 * PAGE, grown);
        let p = cur as *mut u8;
        t.that("the grown break area reads as zero", all_zero(p, 16 * PAGE), "all zero", ());
        fill(p, 16 * PAGE, 3);
        t.that("the grown break area keeps what is written", matches(p, 16 * PAGE, 3), "pattern", ());
        t.eq("brk back to the start returns it", cur, sys::brk(cur));
        t.that(
            "after shrinking, the freed pages are not mapped",
            !readable(cur) && !readable(cur + 15 * PAGE),
            "unreadable",
            (readable(cur), readable(cur + 15 * PAGE)),
        );
        t.eq("brk(+64 KiB) again returns the new break", cur + 16 * PAGE, sys::brk(cur + 16 * PAGE));
        t.that("re-grown break pages read as zero", all_zero(p, 16 * PAGE), "all zero", ());
        t.eq("brk to an unaligned address returns exactly it", cur + 100, sys::brk(cur + 100));
        t.eq("brk(0) then reports the unaligned break", cur + 100, brk_current());
        t.that(
            "the page holding an unaligned break stays mapped",
            readable(cur) && !readable(cur + PAGE),
            "first page only",
            (readable(cur), readable(cur + PAGE)),
        );
        t.eq("brk below the initial break is refused (returns the current break)", cur + 100, sys::brk(PAGE));
        t.eq("brk back to the start", cur, sys::brk(cur));

        // brk must not grow over another mapping.
        let blocker = mmap(cur + 16 * PAGE, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        t.eq("MAP_FIXED_NOREPLACE a page 64 KiB above the break", Ok((cur + 16 * PAGE) as *mut u8), blocker);
        t.eq("brk over that mapping is refused (returns the current break)", cur, sys::brk(cur + 32 * PAGE));
        t.eq("brk up to below it is allowed", cur + 8 * PAGE, sys::brk(cur + 8 * PAGE));
        t.eq("brk back to the start", cur, sys::brk(cur));
        if let Ok(b) = blocker {
            munmap(b, PAGE).unwrap();
        }
    }
}

fn mmap_tests(t: &mut Tally) {
    let anon = MAP_PRIVATE | MAP_ANONYMOUS;
    let rw = PROT_READ | PROT_WRITE;
    let p = map_rw(4 * PAGE);
    t.that("mmap returns a page-aligned address", (p as usize).is_multiple_of(PAGE), "aligned", p);
    t.that("fresh anonymous memory reads as zero", all_zero(p, 4 * PAGE), "all zero", ());
    fill(p, 4 * PAGE, 9);
    t.that("anonymous memory keeps what is written", matches(p, 4 * PAGE, 9), "pattern", ());

    // SAFETY: MAP_FIXED is only used over our own scratch mapping `p` (whose
    // contents we then re-check through raw pointers) or at addresses where it
    // is rejected; everything else maps fresh memory or fails.
    unsafe {
        t.err("mmap of length 0 fails with EINVAL", Errno::EINVAL, mmap(0, 0, rw, anon, -1, 0));
        t.err(
            "mmap without MAP_PRIVATE or MAP_SHARED fails with EINVAL",
            Errno::EINVAL,
            mmap(0, PAGE, rw, MAP_ANONYMOUS, -1, 0),
        );
        t.err(
            "mmap MAP_FIXED at an unaligned address fails with EINVAL",
            Errno::EINVAL,
            mmap(p as usize + 1, PAGE, rw, anon | MAP_FIXED, -1, 0),
        );
        t.err("mmap with an unaligned offset fails with EINVAL", Errno::EINVAL, mmap(0, PAGE, rw, anon, -1, 100));
        t.err("mmap of 2^62 bytes fails with ENOMEM", Errno::ENOMEM, mmap(0, 1 << 62, rw, anon, -1, 0));
        t.err("mmap of length -4096 fails with ENOMEM", Errno::ENOMEM, mmap(0, usize::MAX - 4095, rw, anon, -1, 0));
        t.err(
            "mmap MAP_FIXED at a kernel address fails with ENOMEM",
            Errno::ENOMEM,
            mmap(KERNEL_PTR, PAGE, rw, anon | MAP_FIXED, -1, 0),
        );
        t.err(
            "mmap of a file with fd -1 (no MAP_ANONYMOUS) fails with EBADF",
            Errno::EBADF,
            mmap(0, PAGE, rw, MAP_PRIVATE, -1, 0),
        );

        let base = p as usize;
        t.err(
            "MAP_FIXED_NOREPLACE over an existing mapping fails with EEXIST",
            Errno::EEXIST,
            mmap(base + PAGE, PAGE, rw, anon | MAP_FIXED_NOREPLACE, -1, 0),
        );
        t.err(
            "MAP_FIXED_NOREPLACE partly over an existing mapping fails with EEXIST",
            Errno::EEXIST,
            mmap(base - PAGE, 2 * PAGE, rw, anon | MAP_FIXED_NOREPLACE, -1, 0),
        );
        t.err(
            "MAP_FIXED_NOREPLACE at an unaligned address fails with EINVAL",
            Errno::EINVAL,
            mmap(base + 1, PAGE, rw, anon | MAP_FIXED_NOREPLACE, -1, 0),
        );
        t.that("the failed MAP_FIXED_NOREPLACE left the mapping's data alone", matches(p, 4 * PAGE, 9), "pattern", ());

        let r = mmap(base + PAGE, PAGE, rw, anon | MAP_FIXED, -1, 0);
        t.eq("MAP_FIXED over page 1 of a mapping returns that address", Ok(p.add(PAGE)), r);
        t.that("the replaced page reads as zero", all_zero(p.add(PAGE), PAGE), "all zero", ());
        t.that(
            "the pages around it keep their data",
            matches(p, PAGE, 9) && matches_at(p, 2 * PAGE, 4 * PAGE, 9),
            "pattern",
            (),
        );
        munmap(p, 4 * PAGE).unwrap();

        // Address hints: honoured when the range is free, ignored when not.
        let probe = map_rw(8 * PAGE);
        munmap(probe, 8 * PAGE).unwrap();
        let hinted = mmap(probe as usize + 2 * PAGE, 2 * PAGE, rw, anon, -1, 0);
        t.eq("mmap honours a free, aligned address hint", Ok(probe.add(2 * PAGE)), hinted);
        let hint = 0x10_0000_0000usize;
        let high = mmap(hint, PAGE, rw, anon, -1, 0);
        t.eq("mmap honours a free hint far from other mappings (0x1000000000)", Ok(hint as *mut u8), high);
        if let Ok(h) = hinted {
            let other = mmap(h as usize, 2 * PAGE, rw, anon, -1, 0);
            let away = other.is_ok_and(|o| o as usize + 2 * PAGE <= h as usize || o as usize >= h as usize + 2 * PAGE);
            t.that("mmap with an occupied hint still succeeds, elsewhere", away, "Ok(non-overlapping)", other);
            if let Ok(o) = other {
                munmap(o, 2 * PAGE).unwrap();
            }
            munmap(h, 2 * PAGE).unwrap();
        }
        if let Ok(h) = high {
            munmap(h, PAGE).unwrap();
        }
        let hint = probe as usize + PAGE;
        let r = mmap(hint, PAGE, rw, anon | MAP_FIXED_NOREPLACE, -1, 0);
        t.eq("MAP_FIXED_NOREPLACE on a free range returns exactly that address", Ok(hint as *mut u8), r);
        if let Ok(q) = r {
            munmap(q, PAGE).unwrap();
        }

        for (flags, what) in [
            (anon | MAP_POPULATE, "MAP_POPULATE"),
            (anon | MAP_NORESERVE, "MAP_NORESERVE"),
            (anon | MAP_STACK, "MAP_STACK (accepted and ignored)"),
            (MAP_SHARED | MAP_ANONYMOUS, "MAP_SHARED"),
        ] {
            let r = mmap(0, 4 * PAGE, rw, flags, -1, 0);
            let good = r.is_ok_and(|q| {
                let zero = all_zero(q, 4 * PAGE);
                fill(q, 4 * PAGE, 5);
                zero && matches(q, 4 * PAGE, 5)
            });
            let what = Fmt::new(format_args!("mmap {}: zeroed, writable memory", what));
            t.that(what.as_str(), good, "Ok, zero, keeps data", r);
            if let Ok(q) = r {
                munmap(q, 4 * PAGE).unwrap();
            }
        }
        let r = mmap(0, PAGE, rw, anon, 7, 0);
        t.that("mmap MAP_ANONYMOUS ignores the fd (fd 7)", r.is_ok(), "Ok", r);
        if let Ok(q) = r {
            munmap(q, PAGE).unwrap();
        }
        let r = mmap(0, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC, anon, -1, 0);
        t.that("mmap PROT_READ|PROT_WRITE|PROT_EXEC succeeds", r.is_ok(), "Ok", r);
        if let Ok(q) = r {
            munmap(q, PAGE).unwrap();
        }
        let r = mmap(0, 2 * PAGE, PROT_NONE, anon, -1, 0);
        t.that(
            "mmap PROT_NONE succeeds and its pages cannot be read",
            r.is_ok_and(|q| !readable(q as usize) && !readable(q as usize + PAGE)),
            "Ok, unreadable",
            r,
        );
        if let Ok(q) = r {
            munmap(q, 2 * PAGE).unwrap();
        }
        let r = mmap(0, PAGE, PROT_READ, anon, -1, 0);
        t.that(
            "mmap PROT_READ: readable (zero) but the kernel cannot write it",
            r.is_ok_and(|q| readable(q as usize) && peek(q) == 0 && !writable(q as usize)),
            "Ok, read-only",
            r,
        );
        if let Ok(q) = r {
            munmap(q, PAGE).unwrap();
        }

        // A big sparse reservation costs nothing until touched.
        let big = 1usize << 30;
        let r = mmap(0, big, rw, anon | MAP_NORESERVE, -1, 0);
        let offsets = [0, big / 2, big - PAGE];
        let good = r.is_ok_and(|q| {
            // The middle of each page stays untouched by the probe and the poke.
            let mid = PAGE / 2;
            if !offsets.iter().all(|&off| readable(q as usize + off) && peek(q.add(off + mid)) == 0) {
                return false;
            }
            if !offsets.iter().all(|&off| writable(q as usize + off)) {
                return false;
            }
            for off in offsets {
                poke(q.add(off), 0x5a);
            }
            offsets.iter().all(|&off| peek(q.add(off)) == 0x5a && peek(q.add(off + mid)) == 0)
        });
        t.that("a 1 GiB MAP_NORESERVE mapping can be touched sparsely", good, "Ok", r);
        if let Ok(q) = r {
            t.eq("munmap of the 1 GiB mapping", Ok(0), munmap(q, big));
        }
    }
}

fn munmap_tests(t: &mut Tally) {
    let p = map_rw(8 * PAGE);
    let base = p as usize;
    fill(p, 8 * PAGE, 1);
    // SAFETY: every range unmapped here is our scratch mapping `p` (no longer
    // accessed where unmapped), a range we never mapped, or a rejected argument.
    unsafe {
        t.err("munmap at an unaligned address fails with EINVAL", Errno::EINVAL, munmap(p.add(1), PAGE));
        t.err("munmap of length 0 fails with EINVAL", Errno::EINVAL, munmap(p, 0));
        t.err("munmap at a kernel address fails with EINVAL", Errno::EINVAL, munmap(KERNEL_PTR as *mut u8, PAGE));
        t.err("munmap of a range wrapping past the top fails with EINVAL", Errno::EINVAL, munmap(p, usize::MAX - base));
        t.eq("munmap of the middle page of a mapping returns 0", Ok(0), munmap(p.add(3 * PAGE), PAGE));
        t.that(
            "the middle page is gone, its neighbours stay",
            !readable(base + 3 * PAGE) && matches(p, 3 * PAGE, 1) && matches_at(p, 4 * PAGE, 8 * PAGE, 1),
            "hole at page 3 only",
            (),
        );
        t.eq("munmap of an unaligned length (1 byte) unmaps the whole page", Ok(0), munmap(p.add(5 * PAGE), 1));
        t.that(
            "page 5 is gone, page 6 stays",
            !readable(base + 5 * PAGE) && readable(base + 6 * PAGE),
            "page 5 unreadable only",
            (),
        );
        t.eq("munmap of an already unmapped page returns 0", Ok(0), munmap(p.add(3 * PAGE), PAGE));
        t.eq("munmap across mappings and holes returns 0", Ok(0), munmap(p, 8 * PAGE));
        let gone = (0..8).all(|i| !readable(base + i * PAGE));
        t.that("all of it is gone", gone, "unreadable", ());
    }
}

fn mprotect_tests(t: &mut Tally) {
    let p = map_rw(6 * PAGE);
    let base = p as usize;
    fill(p, 6 * PAGE, 2);
    // SAFETY: all protection changes are on our scratch mapping `p`, which we
    // only access through raw pointers where the current protection allows.
    unsafe {
        t.err("mprotect at an unaligned address fails with EINVAL", Errno::EINVAL, mprotect(p.add(1), PAGE, PROT_READ));
        t.err(
            "mprotect with an unknown PROT bit (0x10) fails with EINVAL",
            Errno::EINVAL,
            mprotect(p, PAGE, PROT_READ | 0x10),
        );
        t.eq("mprotect of length 0 returns 0 (before checking prot)", Ok(0), mprotect(p, 0, 0x10));
        t.eq("mprotect page 1 PROT_READ returns 0", Ok(0), mprotect(p.add(PAGE), PAGE, PROT_READ));
        t.that(
            "the read-only page keeps its data, but the kernel cannot write it",
            matches_at(p, PAGE, 2 * PAGE, 2) && !writable(base + PAGE),
            "read-only",
            (),
        );
        t.eq("mprotect page 2 PROT_NONE returns 0", Ok(0), mprotect(p.add(2 * PAGE), PAGE, PROT_NONE));
        t.that("the PROT_NONE page cannot be read", !readable(base + 2 * PAGE), "unreadable", ());
        t.eq(
            "mprotect pages 1-2 back to PROT_READ|PROT_WRITE returns 0",
            Ok(0),
            mprotect(p.add(PAGE), 2 * PAGE, PROT_READ | PROT_WRITE),
        );
        t.that("their data survived the protection changes", matches(p, 6 * PAGE, 2), "pattern", ());
        t.eq(
            "mprotect with an unaligned length (1 byte) covers the page",
            Ok(0),
            mprotect(p.add(4 * PAGE), 1, PROT_READ),
        );
        t.that(
            "page 4 is read-only, page 5 still writable",
            !writable(base + 4 * PAGE) && writable(base + 5 * PAGE),
            "read-only / writable",
            (),
        );
        munmap(p.add(3 * PAGE), PAGE).unwrap();
        t.err("mprotect over a hole fails with ENOMEM", Errno::ENOMEM, mprotect(p, 6 * PAGE, PROT_READ));
        munmap(p, 6 * PAGE).unwrap();
        t.err("mprotect of an unmapped range fails with ENOMEM", Errno::ENOMEM, mprotect(p, PAGE, PROT_READ));
        t.err(
            "mprotect of a range wrapping past the top fails with ENOMEM",
            Errno::ENOMEM,
            mprotect(p, usize::MAX - base - PAGE, PROT_READ),
        );
    }
}

fn madvise_tests(t: &mut Tally) {
    let p = map_rw(6 * PAGE);
    fill(p, 6 * PAGE, 4);
    // SAFETY: advice is given on our scratch mappings, accessed only through raw
    // pointers, or rejected.
    unsafe {
        t.eq("madvise MADV_DONTNEED on page 1 returns 0", Ok(0), madvise(p.add(PAGE), PAGE, MADV_DONTNEED));
        t.that("MADV_DONTNEED: that private page reads as zero", all_zero(p.add(PAGE), PAGE), "all zero", ());
        t.that(
            "MADV_DONTNEED: the pages around it keep their data",
            matches(p, PAGE, 4) && matches_at(p, 2 * PAGE, 6 * PAGE, 4),
            "pattern",
            (),
        );
        fill(p.add(PAGE), PAGE, 8);
        t.that("the zapped page can be written again", matches(p.add(PAGE), PAGE, 8), "pattern", ());
        for (advice, name) in [
            (MADV_NORMAL, "MADV_NORMAL"),
            (MADV_RANDOM, "MADV_RANDOM"),
            (MADV_SEQUENTIAL, "MADV_SEQUENTIAL"),
            (MADV_WILLNEED, "MADV_WILLNEED"),
        ] {
            let what = Fmt::new(format_args!("madvise {} returns 0 and changes no data", name));
            let r = madvise(p.add(2 * PAGE), 4 * PAGE, advice);
            t.that(what.as_str(), r == Ok(0) && matches_at(p, 2 * PAGE, 6 * PAGE, 4), "Ok(0), pattern", r);
        }
        t.err(
            "madvise at an unaligned address fails with EINVAL",
            Errno::EINVAL,
            madvise(p.add(1), PAGE, MADV_DONTNEED),
        );
        t.err("madvise with an unknown advice (999) fails with EINVAL", Errno::EINVAL, madvise(p, PAGE, 999));
        t.eq("madvise of length 0 returns 0", Ok(0), madvise(p, 0, MADV_DONTNEED));
        t.err("madvise checks the advice first (unknown advice, length 0: EINVAL)", Errno::EINVAL, madvise(p, 0, 999));
        munmap(p.add(3 * PAGE), PAGE).unwrap();
        t.err(
            "madvise MADV_DONTNEED over a hole fails with ENOMEM",
            Errno::ENOMEM,
            madvise(p, 6 * PAGE, MADV_DONTNEED),
        );
        t.that("... after zapping the mapped pages before the hole", all_zero(p, 3 * PAGE), "all zero", ());
        munmap(p, 6 * PAGE).unwrap();
        t.err(
            "madvise MADV_WILLNEED of an unmapped range fails with ENOMEM",
            Errno::ENOMEM,
            madvise(p, PAGE, MADV_WILLNEED),
        );
        t.err(
            "madvise MADV_DONTNEED of an unmapped range fails with ENOMEM",
            Errno::ENOMEM,
            madvise(p, PAGE, MADV_DONTNEED),
        );

        let untouched = map_rw(4 * PAGE);
        t.eq(
            "madvise MADV_DONTNEED on never-touched pages returns 0",
            Ok(0),
            madvise(untouched, 4 * PAGE, MADV_DONTNEED),
        );
        munmap(untouched, 4 * PAGE).unwrap();

        // Shared anonymous memory lives in a shared object: DONTNEED drops only
        // this process's page-table entries, so the data is still there.
        let s = map(2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED);
        fill(s, 2 * PAGE, 6);
        t.eq("madvise MADV_DONTNEED on a MAP_SHARED mapping returns 0", Ok(0), madvise(s, 2 * PAGE, MADV_DONTNEED));
        t.that("MADV_DONTNEED on MAP_SHARED memory keeps its data", matches(s, 2 * PAGE, 6), "pattern", ());
        munmap(s, 2 * PAGE).unwrap();
    }
}

fn uname_tests(t: &mut Tally) {
    let u = uname();
    t.that("uname succeeds", u.is_ok(), "Ok", u.err());
    if let Ok(u) = u {
        let terminated = (0..6).all(|i| u.field(i).is_some());
        t.that("uname: all six fields are NUL-terminated", terminated, "NUL in each 65-byte field", ());
        let f = |i| ulib::io::Bytes(u.field(i).unwrap_or(b"?"));
        println!("info: uname: sysname '{}' release '{}' version '{}' machine '{}'", f(0), f(2), f(3), f(4));
        t.that("uname: sysname is not empty", u.field(0).is_some_and(|s| !s.is_empty()), "non-empty", ());
    }
    // SAFETY: the pointers are ones the kernel must reject.
    unsafe {
        t.err("uname into a NULL-page pointer fails with EFAULT", Errno::EFAULT, raw(nr::UNAME, &[NULL_PAGE_PTR]));
        t.err("uname into a kernel address fails with EFAULT", Errno::EFAULT, raw(nr::UNAME, &[KERNEL_PTR]));
    }
}

fn unimplemented(t: &mut Tally) {
    // SAFETY: no system call has these numbers.
    unsafe {
        t.err("system call 999 fails with ENOSYS", Errno::ENOSYS, raw(999, &[]));
        t.err("system call 100000 fails with ENOSYS", Errno::ENOSYS, raw(100_000, &[]));
        t.err("system call -1 fails with ENOSYS", Errno::ENOSYS, raw(usize::MAX, &[]));
    }
}
