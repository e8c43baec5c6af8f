//! semantics: single checks of mmap/mprotect/madvise/futex behaviour where
//! our kernel differed from Linux 6.12 (every expectation checked there with
//! linux-peer). One line per check, `ok: <what>` or `FAIL: <what>: expected
//! X, got Y`, as in `syscalls`; the last line counts them and the exit status
//! is 0 only if nothing failed.
//!
//! Memory is probed without dying, as in `syscalls`: FUTEX_WAIT with a zero
//! timeout reads a word (EFAULT if it cannot); Rust code touches scratch
//! memory only through raw pointers after such a probe.
#![no_std]
#![no_main]

use core::fmt::Debug;
use core::ptr;
use core::sync::atomic::AtomicU32;

use ulib::sys::{self, nr, *};
use ulib::{println, thread, Errno};

ulib::entry!(main);

const PAGE: usize = PAGE_SIZE;
const ANON: usize = MAP_PRIVATE | MAP_ANONYMOUS;
const RW: usize = PROT_READ | PROT_WRITE;
const PROT_SEM: usize = 0x8;
const PROT_GROWSDOWN: usize = 0x0100_0000;
const PROT_GROWSUP: usize = 0x0200_0000;
const MAP_SHARED_VALIDATE: usize = 0x03;
const MAP_DROPPABLE: usize = 0x08;
const MADV_FREE: usize = 8;
const MADV_REMOVE: usize = 9;
const MADV_WIPEONFORK: usize = 18;
const MADV_KEEPONFORK: usize = 19;
const MADV_POPULATE_READ: usize = 22;
const MADV_POPULATE_WRITE: usize = 23;
const MADV_DONTNEED_LOCKED: usize = 24;

struct Tally {
    passed: u32,
    failed: u32,
}

impl Tally {
    fn eq<T: PartialEq + Debug>(&mut self, what: &str, expected: T, got: T) {
        if expected == got {
            self.passed += 1;
            println!("ok: {}", what);
        } else {
            self.failed += 1;
            println!("FAIL: {}: expected {:?}, got {:?}", what, expected, got);
        }
    }

    fn err(&mut self, what: &str, expected: Errno, got: Result<usize, Errno>) {
        self.eq(what, Err(expected), got);
    }

    fn ok(&mut self, what: &str, got: Result<usize, Errno>) {
        self.eq(what, Ok(0), got);
    }

    fn holds(&mut self, what: &str, holds: bool) {
        self.eq(what, true, holds);
    }
}

/// # Safety
/// As for [`sys::syscall6`]: only scratch memory may be affected.
unsafe fn raw(n: usize, args: &[usize]) -> Result<usize, Errno> {
    // SAFETY: forwarded contract.
    sys::check(unsafe { syscall(n, args) })
}

fn map(len: usize, prot: usize, flags: usize) -> usize {
    // SAFETY: no MAP_FIXED at the call sites: nothing is replaced.
    match unsafe { mmap(0, len, prot, flags, -1, 0) } {
        Ok(p) => p as usize,
        Err(e) => panic!("mmap of {} bytes of scratch memory failed: {:?}", len, e),
    }
}

fn unmap(p: usize, len: usize) {
    // SAFETY: scratch memory, not used any more.
    let _ = unsafe { munmap(p as *mut u8, len) };
}

fn advise(p: usize, len: usize, advice: usize) -> Result<usize, Errno> {
    // SAFETY: scratch memory, only accessed through raw pointers after a probe.
    unsafe { madvise(p as *mut u8, len, advice) }
}

fn protect(p: usize, len: usize, prot: usize) -> Result<usize, Errno> {
    // SAFETY: as above.
    unsafe { raw(nr::MPROTECT, &[p, len, prot]) }
}

/// Whether the kernel can read the word at `a`.
fn readable(a: usize) -> bool {
    let zero = Timespec::default();
    // SAFETY: FUTEX_WAIT only reads the word, or reports EFAULT.
    let r = unsafe { futex(a as *const u32, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 0x5eed_f00d, &zero) };
    r != Err(Errno::EFAULT)
}

fn pattern(i: usize, seed: u8) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(seed) | 1
}

/// Fills a read-write scratch page with the pattern for `seed`.
fn fill(p: usize, seed: u8) {
    for i in 0..PAGE {
        // SAFETY: callers pass read-write scratch pages.
        unsafe { ptr::write_volatile((p + i) as *mut u8, pattern(i, seed)) };
    }
}

fn holds_pattern(p: usize, seed: u8) -> bool {
    // SAFETY: the page was just found readable.
    readable(p) && (0..PAGE).all(|i| unsafe { ptr::read_volatile((p + i) as *const u8) } == pattern(i, seed))
}

fn all_zero(p: usize) -> bool {
    // SAFETY: the page was just found readable.
    readable(p) && (0..PAGE).all(|i| unsafe { ptr::read_volatile((p + i) as *const u8) } == 0)
}

fn fixed_noreplace(t: &mut Tally) {
    let p = map(3 * PAGE, RW, ANON);
    fill(p + PAGE, 1);
    // SAFETY: the kernel must refuse (EEXIST); if it replaced the page, only
    // our scratch mapping changed.
    let r = unsafe { mmap(p + PAGE, PAGE, RW, ANON | MAP_FIXED | MAP_FIXED_NOREPLACE, -1, 0) }.map(|a| a as usize);
    t.err("MAP_FIXED|MAP_FIXED_NOREPLACE over an existing mapping fails with EEXIST", Errno::EEXIST, r);
    t.holds("... and the mapping keeps its data", holds_pattern(p + PAGE, 1));
    unmap(p + 2 * PAGE, PAGE);
    // SAFETY: the range was just unmapped: nothing is replaced.
    let r = unsafe { mmap(p + 2 * PAGE, PAGE, RW, ANON | MAP_FIXED | MAP_FIXED_NOREPLACE, -1, 0) }.map(|a| a as usize);
    t.eq("MAP_FIXED|MAP_FIXED_NOREPLACE on a free range maps exactly there", Ok(p + 2 * PAGE), r);
    unmap(p, 3 * PAGE);
}

fn dontneed_locked(t: &mut Tally) {
    let p = map(2 * PAGE, RW, ANON);
    fill(p, 2);
    fill(p + PAGE, 3);
    t.ok("madvise MADV_DONTNEED_LOCKED (24) on a private page returns 0", advise(p, PAGE, MADV_DONTNEED_LOCKED));
    t.holds("... and the page reads as zero, like MADV_DONTNEED", all_zero(p));
    t.holds("... and the next page keeps its data", holds_pattern(p + PAGE, 3));
    unmap(p, 2 * PAGE);
}

fn shared_futex_wake(t: &mut Tally) {
    // Page 0 unmapped, 1 PROT_NONE, 2 read-only never written, 3 read-only
    // after a write, 4 read-write.
    // (The MAP_SHARED page is mapped first, so that it cannot land in the hole.)
    let s = map(PAGE, PROT_READ, MAP_SHARED | MAP_ANONYMOUS);
    let p = map(5 * PAGE, RW, ANON);
    fill(p + 3 * PAGE, 4);
    fill(p + 4 * PAGE, 5);
    unmap(p, PAGE);
    protect(p + PAGE, PAGE, PROT_NONE).expect("mprotect PROT_NONE");
    protect(p + 2 * PAGE, 2 * PAGE, PROT_READ).expect("mprotect PROT_READ");
    let wake = |a: usize, op: usize| {
        // SAFETY: FUTEX_WAKE touches no memory the program uses.
        unsafe { futex(a as *const u32, op, 1, ptr::null()) }
    };
    let shared = FUTEX_WAKE;
    let private = FUTEX_WAKE | FUTEX_PRIVATE_FLAG;
    t.err("FUTEX_WAKE (shared) on an unmapped page fails with EFAULT", Errno::EFAULT, wake(p, shared));
    t.err("FUTEX_WAKE (shared) on a PROT_NONE page fails with EFAULT", Errno::EFAULT, wake(p + PAGE, shared));
    // Linux refuses shared futexes on read-only anonymous pages (they can
    // never change) and on the zero page a never-written one reads from.
    t.err(
        "FUTEX_WAKE (shared) on a never-written read-only private page fails with EFAULT",
        Errno::EFAULT,
        wake(p + 2 * PAGE, shared),
    );
    t.err(
        "FUTEX_WAKE (shared) on a written read-only private page fails with EFAULT",
        Errno::EFAULT,
        wake(p + 3 * PAGE, shared),
    );
    t.eq("FUTEX_WAKE (shared) on a read-write private page returns 0", Ok(0), wake(p + 4 * PAGE, shared));
    t.eq("FUTEX_WAKE (shared) on a read-only MAP_SHARED page returns 0", Ok(0), wake(s, shared));
    t.eq("FUTEX_WAKE_PRIVATE on an unmapped page returns 0", Ok(0), wake(p, private));
    t.eq("FUTEX_WAKE_PRIVATE on a PROT_NONE page returns 0", Ok(0), wake(p + PAGE, private));
    unmap(p, 5 * PAGE);
    unmap(s, PAGE);
}

static WAKE_WORD: AtomicU32 = AtomicU32::new(0);

/// FUTEX_WAKE's count is an int: 0xffffffff is -1, and Linux's wake loop
/// stops after the first waiter (`++woken >= count`), so each such call
/// wakes exactly one. Two waiters each sleep once; the wakes are repeated
/// (for up to 5 s) until both have been woken, since a waiter may not be
/// asleep yet.
fn futex_wake_minus_one(t: &mut Tally) {
    let waiter = || {
        // The word stays 0: the thread sleeps until a wake picks it.
        let _ = futex_wait(&WAKE_WORD, 0, None);
    };
    let a = thread::spawn(waiter).expect("spawn");
    let b = thread::spawn(waiter).expect("spawn");
    let mut counts = [0usize; 4];
    let (mut calls, mut total) = (0, 0);
    let deadline = monotonic_ns() + 5_000_000_000;
    while total < 2 && monotonic_ns() < deadline {
        match futex_wake(&WAKE_WORD, u32::MAX) {
            Ok(0) => sleep_ms(1),
            Ok(n) => {
                if calls < counts.len() {
                    counts[calls] = n;
                    calls += 1;
                }
                total += n;
            }
            Err(_) => break,
        }
    }
    t.eq("FUTEX_WAKE with a count of 0xffffffff (-1) wakes one waiter per call", [1, 1, 0, 0], counts);
    // Whatever happened, let both go (on a kernel that woke neither, too).
    while total < 2 {
        match futex_wake(&WAKE_WORD, 2) {
            Ok(n) => total += n,
            Err(_) => break,
        }
        sleep_ms(1);
    }
    a.join();
    b.join();
}

fn prot_bits(t: &mut Tally) {
    let p = map(PAGE, RW, ANON);
    fill(p, 6);
    t.err(
        "mprotect PROT_READ|PROT_GROWSDOWN on an ordinary mapping fails with EINVAL",
        Errno::EINVAL,
        protect(p, PAGE, PROT_READ | PROT_GROWSDOWN),
    );
    t.err(
        "mprotect PROT_READ|PROT_GROWSUP on an ordinary mapping fails with EINVAL",
        Errno::EINVAL,
        protect(p, PAGE, PROT_READ | PROT_GROWSUP),
    );
    t.ok("mprotect PROT_READ|PROT_WRITE|PROT_SEM is accepted", protect(p, PAGE, RW | PROT_SEM));
    t.holds("... and the page keeps its data", holds_pattern(p, 6));
    unmap(p, PAGE);
    // SAFETY: no MAP_FIXED: nothing is replaced.
    let r = unsafe { mmap(0, PAGE, RW | PROT_SEM, ANON, -1, 0) }.map(|a| a as usize);
    t.eq("mmap PROT_READ|PROT_WRITE|PROT_SEM is accepted", true, r.is_ok());
    if let Ok(q) = r {
        fill(q, 7);
        t.holds("... and the page is read-write", holds_pattern(q, 7));
        unmap(q, PAGE);
    }
}

fn advice_kinds(t: &mut Tally) {
    let p = map(PAGE, RW, ANON);
    let s = map(PAGE, RW, MAP_SHARED | MAP_ANONYMOUS);
    fill(p, 8);
    fill(s, 9);
    t.err("madvise MADV_REMOVE on private memory fails with EINVAL", Errno::EINVAL, advise(p, PAGE, MADV_REMOVE));
    t.holds("... and the page keeps its data", holds_pattern(p, 8));
    t.ok("madvise MADV_REMOVE on MAP_SHARED anonymous memory returns 0", advise(s, PAGE, MADV_REMOVE));
    t.holds("... and frees the page: it reads as zero", all_zero(s));
    fill(s, 9);
    t.err(
        "madvise MADV_FREE on MAP_SHARED anonymous memory fails with EINVAL",
        Errno::EINVAL,
        advise(s, PAGE, MADV_FREE),
    );
    t.holds("... and the page keeps its data", holds_pattern(s, 9));
    // Whether freed pages keep their data until reclaim is up to the kernel.
    t.ok("madvise MADV_FREE on private memory returns 0", advise(p, PAGE, MADV_FREE));
    t.err(
        "madvise MADV_WIPEONFORK on MAP_SHARED anonymous memory fails with EINVAL",
        Errno::EINVAL,
        advise(s, PAGE, MADV_WIPEONFORK),
    );
    t.ok("madvise MADV_WIPEONFORK on private memory returns 0", advise(p, PAGE, MADV_WIPEONFORK));
    t.ok("madvise MADV_KEEPONFORK on private memory returns 0", advise(p, PAGE, MADV_KEEPONFORK));
    t.ok("madvise MADV_KEEPONFORK on MAP_SHARED anonymous memory returns 0", advise(s, PAGE, MADV_KEEPONFORK));
    unmap(p, PAGE);
    unmap(s, PAGE);
}

/// Populating memory the protection does not allow (read for PROT_NONE,
/// write for PROT_READ) is an incompatible mapping to Linux: EINVAL.
fn populate(t: &mut Tally) {
    let none = map(PAGE, PROT_NONE, ANON);
    let ro = map(PAGE, PROT_READ, ANON);
    let rw = map(PAGE, RW, ANON);
    t.err(
        "madvise MADV_POPULATE_READ on a PROT_NONE page fails with EINVAL",
        Errno::EINVAL,
        advise(none, PAGE, MADV_POPULATE_READ),
    );
    t.err(
        "madvise MADV_POPULATE_WRITE on a PROT_NONE page fails with EINVAL",
        Errno::EINVAL,
        advise(none, PAGE, MADV_POPULATE_WRITE),
    );
    t.err(
        "madvise MADV_POPULATE_WRITE on a PROT_READ page fails with EINVAL",
        Errno::EINVAL,
        advise(ro, PAGE, MADV_POPULATE_WRITE),
    );
    t.ok("madvise MADV_POPULATE_READ on a PROT_READ page returns 0", advise(ro, PAGE, MADV_POPULATE_READ));
    t.ok("madvise MADV_POPULATE_READ on a read-write page returns 0", advise(rw, PAGE, MADV_POPULATE_READ));
    t.ok("madvise MADV_POPULATE_WRITE on a read-write page returns 0", advise(rw, PAGE, MADV_POPULATE_WRITE));
    t.holds("... and the page reads as zero", all_zero(rw));
    unmap(none, PAGE);
    unmap(ro, PAGE);
    unmap(rw, PAGE);
    t.err(
        "madvise MADV_POPULATE_READ on an unmapped page fails with ENOMEM",
        Errno::ENOMEM,
        advise(none, PAGE, MADV_POPULATE_READ),
    );
}

fn map_types(t: &mut Tally) {
    // SAFETY: no MAP_FIXED: nothing is replaced.
    let r = unsafe { mmap(0, PAGE, RW, MAP_SHARED_VALIDATE | MAP_ANONYMOUS, -1, 0) }.map(|a| a as usize);
    t.err("mmap MAP_SHARED_VALIDATE|MAP_ANONYMOUS fails with EINVAL", Errno::EINVAL, r);
    if let Ok(q) = r {
        unmap(q, PAGE);
    }
    // SAFETY: as above.
    let r = unsafe { mmap(0, 2 * PAGE, RW, MAP_DROPPABLE | MAP_ANONYMOUS, -1, 0) }.map(|a| a as usize);
    t.eq("mmap MAP_DROPPABLE|MAP_ANONYMOUS (Linux 6.11) is accepted", true, r.is_ok());
    if let Ok(q) = r {
        t.holds("... and its pages read as zero", all_zero(q) && all_zero(q + PAGE));
        fill(q, 10);
        t.holds("... and are writable", holds_pattern(q, 10));
        unmap(q, 2 * PAGE);
    }
}

fn main() -> i32 {
    let mut t = Tally { passed: 0, failed: 0 };
    println!("semantics: single checks where our kernel differed from Linux");
    fixed_noreplace(&mut t);
    dontneed_locked(&mut t);
    shared_futex_wake(&mut t);
    futex_wake_minus_one(&mut t);
    prot_bits(&mut t);
    advice_kinds(&mut t);
    populate(&mut t);
    map_types(&mut t);
    println!("semantics: {} passed, {} failed", t.passed, t.failed);
    if t.failed == 0 {
        0
    } else {
        1
    }
}
