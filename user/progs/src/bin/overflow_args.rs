//! overflow_args: system calls whose lengths and addresses overflow the
//! kernel's arithmetic: values near 2^64, near 2^63 and near USER_END (the top
//! of the 47-bit user space), lengths that wrap when rounded up to a page
//! (2^64 - 1, 2^64 - 4095, 2^64 - 4096), address + length wrapping past 2^64,
//! and mmap hints near the top. Also 32-bit arguments (fds, clock ids, futex
//! ops, madvise advice) passed with their upper half set: Linux declares them
//! `int`, so it ignores those bits.
//!
//! One line per call: the call, its arguments (`p` is a 3-page read-write
//! scratch mapping with an unmapped page above it) and `ok` or the errno
//! name, so the output must equal Linux's. mprotect comes last: on our
//! kernel mprotect(p, 2^64 - 1, ...) panicked ("attempt to add with overflow").
//!
//! Every call here either fails before touching memory or stays inside `p`:
//! a wrong success elsewhere (say, a munmap reaching the stack) would kill the
//! program, which the comparison shows too. Ranges that Linux walks VMA by VMA
//! past holes (madvise) only use harmless advice when they reach beyond `p`.
#![no_std]
#![no_main]

use core::fmt;
use core::ptr;

use ulib::sys::{self, nr, *};
use ulib::{println, Errno};

ulib::entry!(main);

const PAGE: usize = PAGE_SIZE;
/// Linux's TASK_SIZE on x86_64 with 4-level paging.
const USER_END: usize = 0x7fff_ffff_f000;
/// The last page of the 64-bit address space.
const TOP: usize = 0xffff_ffff_ffff_f000;
const MAX: usize = usize::MAX;
const HALF: usize = 1 << 63;
const ANON: usize = MAP_PRIVATE | MAP_ANONYMOUS;
const MADV_NORMAL: usize = 0;
const FUTEX_WAIT_BITSET: usize = 9;
/// What the scratch mapping's first bytes hold, so a write that wrongly
/// copies from it is recognisable in the output.
const MARK: &[u8; 8] = b"[pdata]\n";

/// `ok` or the errno's name.
struct Res(Result<usize, Errno>);

impl fmt::Display for Res {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(_) => f.write_str("ok"),
            Err(e) => write!(f, "{}", e),
        }
    }
}

/// `ok N` (a count that matters) or the errno's name.
struct Count(Result<usize, Errno>);

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(n) => write!(f, "ok {}", n),
            Err(e) => write!(f, "{}", e),
        }
    }
}

/// # Safety
/// As for [`sys::syscall6`]: the call may only affect the scratch mapping,
/// or must be one the kernel rejects.
unsafe fn raw(n: usize, args: &[usize]) -> Result<usize, Errno> {
    // SAFETY: forwarded contract.
    sys::check(unsafe { syscall(n, args) })
}

/// Whether the kernel can read the word at `a` (FUTEX_WAIT with a zero
/// timeout reads it and returns at once).
fn readable(a: usize) -> bool {
    let zero = Timespec::default();
    // SAFETY: FUTEX_WAIT only reads the word, or reports EFAULT.
    let r = unsafe { futex(a as *const u32, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 0x5eed_f00d, &zero) };
    r != Err(Errno::EFAULT)
}

/// Whether the kernel can write the 16 bytes at `a` (it overwrites them).
///
/// # Safety
/// `a` must be scratch memory or memory the kernel cannot write.
unsafe fn writable(a: usize) -> bool {
    // SAFETY: forwarded contract.
    unsafe { raw(nr::CLOCK_GETTIME, &[CLOCK_MONOTONIC, a]) }.is_ok()
}

/// The scratch mapping: 3 read-write pages, then a page that is unmapped, so
/// that any range from `p` up stops at a hole right after it.
struct Scratch {
    p: usize,
}

impl Scratch {
    fn new() -> Scratch {
        let p = mmap_anon(4 * PAGE, PROT_READ | PROT_WRITE).expect("mmap of the scratch mapping") as usize;
        // SAFETY: the fourth page of our fresh mapping holds nothing.
        unsafe { munmap((p + 3 * PAGE) as *mut u8, PAGE) }.expect("munmap of the hole");
        let s = Scratch { p };
        s.mark();
        s
    }

    fn mark(&self) {
        // SAFETY: the first page is ours and writable (mark is only called when it is).
        unsafe { ptr::copy_nonoverlapping(MARK.as_ptr(), self.p as *mut u8, MARK.len()) };
    }

    /// How the pages of `p` look now: protection as the kernel sees it, and
    /// whether the mark survived.
    fn state(&self) -> State {
        State(self.p)
    }

    /// Back to read-write with the mark, whatever a call did to it.
    fn restore(&self) {
        // SAFETY: the scratch mapping is ours; nothing lives in it but the mark.
        let r = unsafe { mprotect(self.p as *mut u8, 3 * PAGE, PROT_READ | PROT_WRITE) };
        if r.is_ok() {
            self.mark();
        } else {
            println!("FAIL: could not restore the scratch mapping: {:?}", r);
        }
    }
}

struct State(usize);

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.0;
        // The probes look at the second page, so that the write probe leaves
        // the mark on the first alone.
        let probe = p + PAGE;
        if !readable(probe) {
            return f.write_str("p inaccessible");
        }
        // SAFETY: the probe page is scratch memory.
        let rw = if unsafe { writable(probe) } { "read-write" } else { "read-only" };
        let mut mark = [0u8; 8];
        if readable(p) {
            // SAFETY: the kernel just read the first page, so we can too.
            unsafe { ptr::copy_nonoverlapping(p as *const u8, mark.as_mut_ptr(), 8) };
        }
        let data = if &mark == MARK {
            "data intact"
        } else if mark == [0; 8] {
            "data zeroed"
        } else {
            "data changed"
        };
        write!(f, "p {}, {}", rw, data)
    }
}

fn mmap_tests(s: &Scratch) {
    println!("-- mmap");
    let none_cases: [(usize, usize, usize, &str); 16] = [
        (0, MAX, ANON, "MAP_PRIVATE|MAP_ANONYMOUS"),
        (0, MAX - 4094, ANON, "MAP_PRIVATE|MAP_ANONYMOUS"),
        (0, MAX - 4095, ANON, "MAP_PRIVATE|MAP_ANONYMOUS"),
        (0, HALF, ANON, "MAP_PRIVATE|MAP_ANONYMOUS"),
        (0, HALF + 1, ANON, "MAP_PRIVATE|MAP_ANONYMOUS"),
        (0, USER_END + 1, ANON, "MAP_PRIVATE|MAP_ANONYMOUS"),
        (0, USER_END, ANON, "MAP_PRIVATE|MAP_ANONYMOUS"),
        (0, MAX - 4095, MAP_SHARED | MAP_ANONYMOUS, "MAP_SHARED|MAP_ANONYMOUS"),
        (TOP, PAGE, ANON | MAP_FIXED, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED"),
        // Unaligned and out of range: Linux checks the range first (ENOMEM).
        // (At TOP + 1 it would return the address itself, which is -4095.)
        (TOP - PAGE + 1, PAGE, ANON | MAP_FIXED, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED"),
        (USER_END, PAGE, ANON | MAP_FIXED, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED"),
        (USER_END - PAGE, 2 * PAGE, ANON | MAP_FIXED, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED"),
        (HALF, PAGE, ANON | MAP_FIXED, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED"),
        (TOP - PAGE, 3 * PAGE, ANON | MAP_FIXED, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED"),
        (0x1_0000, MAX - 0xffff, ANON | MAP_FIXED, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED"),
        (TOP, PAGE, ANON | MAP_FIXED_NOREPLACE, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE"),
    ];
    for (addr, len, flags, fname) in none_cases {
        mmap_case(addr, len, PROT_NONE, "PROT_NONE", flags, fname, 0);
    }
    let rw = PROT_READ | PROT_WRITE;
    for len in [MAX, MAX - 4095, HALF, USER_END] {
        mmap_case(0, len, rw, "PROT_READ|PROT_WRITE", ANON, "MAP_PRIVATE|MAP_ANONYMOUS", 0);
    }
    // Hints the kernel must ignore (they do not fit below USER_END) or may take.
    for (hint, len) in [
        (MAX, PAGE),
        (TOP, PAGE),
        (TOP, 2 * PAGE),
        (HALF, PAGE),
        (HALF - PAGE, PAGE),
        (USER_END, PAGE),
        (USER_END - PAGE, PAGE),
        (USER_END - PAGE, 2 * PAGE),
        (USER_END + 1, PAGE),
        (TOP, 1 << 40),
    ] {
        mmap_case(hint, len, rw, "PROT_READ|PROT_WRITE", ANON, "MAP_PRIVATE|MAP_ANONYMOUS", 0);
    }
    // Offsets: ignored for anonymous memory once page-aligned.
    mmap_case(0, PAGE, rw, "PROT_READ|PROT_WRITE", ANON, "MAP_PRIVATE|MAP_ANONYMOUS", TOP);
    mmap_case(0, PAGE, rw, "PROT_READ|PROT_WRITE", MAP_SHARED | MAP_ANONYMOUS, "MAP_SHARED|MAP_ANONYMOUS", TOP);
    mmap_case(0, PAGE, rw, "PROT_READ|PROT_WRITE", ANON, "MAP_PRIVATE|MAP_ANONYMOUS", MAX);
    println!("after mmap: {}", s.state());
}

/// One mmap call; a success must be a page-aligned range inside user space,
/// and is unmapped again.
fn mmap_case(addr: usize, len: usize, prot: usize, pname: &str, flags: usize, fname: &str, off: usize) {
    // SAFETY: MAP_FIXED appears only with ranges outside user space, which
    // the kernel must reject; without it nothing existing is replaced.
    let r = unsafe { mmap(addr, len, prot, flags, -1, off) }.map(|a| a as usize);
    let verdict = match r {
        Ok(a) if a.is_multiple_of(PAGE) && a.checked_add(len).is_some_and(|e| e <= USER_END) => "ok",
        Ok(_) => "ok, but outside user space",
        Err(_) => "",
    };
    match r {
        Ok(a) => {
            println!("info: mmap({:#x}, {:#x}) returned {:#x}", addr, len, a);
            println!("mmap({:#x}, {:#x}, {}, {}, -1, {:#x}) = {}", addr, len, pname, fname, off, verdict);
            // SAFETY: the fresh mapping is unused.
            let _ = unsafe { munmap(a as *mut u8, len) };
        }
        Err(e) => println!("mmap({:#x}, {:#x}, {}, {}, -1, {:#x}) = {}", addr, len, pname, fname, off, e),
    }
}

fn munmap_tests(s: &Scratch) {
    println!("-- munmap");
    let p = s.p;
    // SAFETY: each of these must be rejected: none of them is a range inside
    // user space that the kernel could legitimately unmap.
    unsafe {
        for (addr, len, name) in [
            (TOP, PAGE, "TOP"),
            (MAX & !(PAGE - 1), PAGE, "2^64-4096"),
            (HALF, PAGE, "2^63"),
            (USER_END, PAGE, "USER_END"),
            (USER_END, 0, "USER_END"),
            (USER_END - PAGE, 2 * PAGE, "USER_END-4096"),
            (0x1000, MAX - 0xfff, "0x1000"),
        ] {
            println!("munmap({}, {:#x}) = {}", name, len, Res(munmap(addr as *mut u8, len)));
        }
        for len in [MAX, MAX - 4094, MAX - 4095, HALF, USER_END + 1 - p, USER_END - p + PAGE, MAX - p + 1] {
            println!("munmap(p, {}) = {}", Len(len, p), Res(munmap(p as *mut u8, len)));
        }
    }
    println!("after munmap: {}", s.state());
}

/// A length, printed symbolically when it depends on `p`.
struct Len(usize, usize);

impl fmt::Display for Len {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (len, p) = (self.0, self.1);
        if len == USER_END - p {
            f.write_str("USER_END-p")
        } else if len == USER_END + 1 - p {
            f.write_str("USER_END-p+1")
        } else if len == USER_END - p + PAGE {
            f.write_str("USER_END-p+4096")
        } else if len == (MAX - p).wrapping_add(1) {
            f.write_str("2^64-p")
        } else if len == (MAX - p).wrapping_sub(4095) {
            f.write_str("2^64-4096-p")
        } else {
            write!(f, "{:#x}", len)
        }
    }
}

fn madvise_tests(s: &Scratch) {
    println!("-- madvise");
    let p = s.p;
    // SAFETY: MADV_DONTNEED only reaches p (whose data we do not rely on) or
    // ranges the kernel must reject; the long ranges from p use MADV_NORMAL,
    // which changes no data anywhere.
    unsafe {
        for (addr, len, name) in [
            (TOP, PAGE, "TOP"),
            (TOP - PAGE, PAGE, "TOP-4096"),
            (TOP, 0, "TOP"),
            (HALF, PAGE, "2^63"),
            (USER_END, PAGE, "USER_END"),
            (USER_END - PAGE, 2 * PAGE, "USER_END-4096"),
        ] {
            println!(
                "madvise({}, {:#x}, MADV_DONTNEED) = {}",
                name,
                len,
                Res(madvise(addr as *mut u8, len, MADV_DONTNEED))
            );
        }
        // Each of these wraps past 2^64 once page-rounded: rejected before any
        // VMA is visited (a range reaching TOP instead would zap the stack).
        for len in [MAX, MAX - 4094, MAX - 4095, MAX - p + 1] {
            let r = madvise(p as *mut u8, len, MADV_DONTNEED);
            println!("madvise(p, {}, MADV_DONTNEED) = {}; {}", Len(len, p), Res(r), s.state());
            s.restore();
        }
        for len in [HALF, USER_END - p, USER_END - p + PAGE, MAX - 4095 - p] {
            let r = madvise(p as *mut u8, len, MADV_NORMAL);
            println!("madvise(p, {}, MADV_NORMAL) = {}", Len(len, p), Res(r));
        }
        println!("madvise(0, 2^64-4096, MADV_NORMAL) = {}", Res(madvise(ptr::null_mut(), MAX - 4095, MADV_NORMAL)));
    }
    println!("after madvise: {}", s.state());
}

fn brk_tests() {
    println!("-- brk");
    let start = brk_current();
    for (addr, name) in [
        (MAX, "2^64-1"),
        (MAX - 4094, "2^64-4095"),
        (TOP, "TOP"),
        (HALF, "2^63"),
        (HALF - 1, "2^63-1"),
        (USER_END + 1, "USER_END+1"),
        (USER_END, "USER_END"),
        (USER_END - PAGE, "USER_END-4096"),
        (0x7fff_ffff_ffff, "2^47-1"),
    ] {
        // SAFETY: none of these may move the break (another mapping or the
        // end of user space is in the way); if one does, it only grows.
        let r = unsafe { brk(addr) };
        let what = if r == start { "unchanged" } else { "moved" };
        println!("brk({}) = {}", name, what);
        if r != start {
            println!("info: brk({:#x}) returned {:#x}", addr, r);
            // SAFETY: shrinking back releases only what the bad move added.
            unsafe { brk(start) };
        }
    }
}

fn futex_tests() {
    println!("-- futex");
    let word = core::sync::atomic::AtomicU32::new(5);
    let w = word.as_ptr() as usize;
    let wake = FUTEX_WAKE | FUTEX_PRIVATE_FLAG;
    let wait = FUTEX_WAIT | FUTEX_PRIVATE_FLAG;
    let addrs = [
        (MAX - 3, "2^64-4"),
        (TOP, "TOP"),
        (HALF, "2^63"),
        (HALF - 4, "2^63-4"),
        (0x7fff_ffff_fffc, "2^47-4"),
        (USER_END, "USER_END"),
    ];
    // SAFETY: FUTEX_WAKE touches no memory; FUTEX_WAIT only reads the word
    // (the values differ, so nobody sleeps); the timeouts are read only.
    unsafe {
        for (a, name) in addrs {
            println!("futex({}, FUTEX_WAKE_PRIVATE, 1) = {}", name, Count(raw(nr::FUTEX, &[a, wake, 1])));
            println!("futex({}, FUTEX_WAKE, 1) = {}", name, Count(raw(nr::FUTEX, &[a, FUTEX_WAKE, 1])));
            println!("futex({}, FUTEX_WAIT_PRIVATE, 0, NULL) = {}", name, Res(raw(nr::FUTEX, &[a, wait, 0, 0])));
        }
        for (t, name) in [
            (MAX - 7, "2^64-8"),
            (MAX - 15, "2^64-16"),
            (TOP, "TOP"),
            (HALF - 8, "2^63-8"),
            (USER_END, "USER_END"),
            (USER_END - 8, "USER_END-8"),
        ] {
            println!(
                "futex(&word, FUTEX_WAIT_PRIVATE, 6, timeout={}) = {}",
                name,
                Res(raw(nr::FUTEX, &[w, wait, 6, t]))
            );
        }
        let far = Timespec { tv_sec: i64::MAX, tv_nsec: 999_999_999 };
        let t = &far as *const Timespec as usize;
        println!("futex(&word, FUTEX_WAIT_PRIVATE, 6, {{2^63-1 s}}) = {}", Res(raw(nr::FUTEX, &[w, wait, 6, t])));
        println!(
            "futex(&word, FUTEX_WAIT_BITSET_PRIVATE, 6, {{2^63-1 s}}, ~0) = {}",
            Res(raw(nr::FUTEX, &[w, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, 6, t, 0, 0xffff_ffff]))
        );
        let bad = Timespec { tv_sec: i64::MIN, tv_nsec: 0 };
        println!(
            "futex(&word, FUTEX_WAIT_PRIVATE, 5, {{-2^63 s}}) = {}",
            Res(raw(nr::FUTEX, &[w, wait, 5, &bad as *const Timespec as usize]))
        );
        let bad = Timespec { tv_sec: 0, tv_nsec: i64::MAX };
        println!(
            "futex(&word, FUTEX_WAIT_PRIVATE, 5, {{0, 2^63-1 ns}}) = {}",
            Res(raw(nr::FUTEX, &[w, wait, 5, &bad as *const Timespec as usize]))
        );
        println!("futex(&word, FUTEX_WAKE_PRIVATE, 2^32-1) = {}", Count(raw(nr::FUTEX, &[w, wake, 0xffff_ffff])));
        println!("futex(&word, FUTEX_WAKE_PRIVATE, 2^63) = {}", Count(raw(nr::FUTEX, &[w, wake, HALF])));
    }
}

fn write_tests(s: &Scratch) {
    println!("-- write");
    let p = s.p;
    // SAFETY: write only reads user memory: `p` (our scratch) or addresses
    // the kernel must reject before copying anything.
    unsafe {
        for (buf, len, name) in [
            (TOP, PAGE, "TOP"),
            (MAX, 1, "2^64-1"),
            (MAX, 0, "2^64-1"),
            (HALF, 1, "2^63"),
            (HALF, 0, "2^63"),
            (USER_END, 1, "USER_END"),
            (USER_END, 0, "USER_END"),
            (USER_END - 1, 2, "USER_END-1"),
            (0x7fff_ffff_ffff, 0, "2^47-1"),
            (0x10, MAX - 0xf, "0x10"),
        ] {
            println!("write(1, {}, {:#x}) = {}", name, len, Count(raw(nr::WRITE, &[1, buf, len])));
        }
        for len in [MAX, MAX - 4094, HALF, HALF - 1, USER_END + 1 - p, MAX - p + 1] {
            println!("write(1, p, {}) = {}", Len(len, p), Count(raw(nr::WRITE, &[1, p, len])));
        }
    }
}

fn writev_tests(s: &Scratch) {
    println!("-- writev");
    let p = s.p as *const u8;
    let null = 0x10 as *const u8;
    let iov = |base: *const u8, len: usize| IoVec { base, len };
    let cases: [(&str, &[IoVec]); 10] = [
        ("{TOP, 4096}", &[iov(TOP as *const u8, PAGE)]),
        ("{2^64-8, 8}", &[iov((MAX - 7) as *const u8, 8)]),
        ("{p, 2^63}", &[iov(p, HALF)]),
        ("{p, 2^64-1}", &[iov(p, MAX)]),
        ("{0x10, 2^62}", &[iov(null, 1 << 62)]),
        ("{0x10, 2^62}, {0x10, 2^62}", &[iov(null, 1 << 62), iov(null, 1 << 62)]),
        ("{0x10, 2^63-1}, {0x10, 1}", &[iov(null, HALF - 1), iov(null, 1)]),
        ("{0x10, 8}, {0x10, 2^64-1}", &[iov(null, 8), iov(null, MAX)]),
        ("{TOP, 8}, {p, 8}", &[iov(TOP as *const u8, 8), iov(p, 8)]),
        ("{p, 8}, {TOP, 8}", &[iov(p, 8), iov(TOP as *const u8, 8)]),
    ];
    for (name, v) in cases {
        println!("writev(1, [{}]) = {}", name, Count(writev(1, v)));
    }
    // SAFETY: writev only reads the iovec array and what it describes; these
    // arrays are unreadable, or the count is rejected.
    unsafe {
        let good = [iov(MARK.as_ptr(), 8)];
        let g = good.as_ptr() as usize;
        for (a, n, name) in [
            (TOP, 1, "TOP, 1"),
            (MAX - 7, 1, "2^64-8, 1"),
            (MAX - 15, 1, "2^64-16, 1"),
            (USER_END - 8, 1, "USER_END-8, 1"),
            (HALF, 1, "2^63, 1"),
            (g, MAX, "iov, 2^64-1"),
            (g, 0x1_0000_0001, "iov, 2^32+1"),
        ] {
            println!("writev(1, {}) = {}", name, Count(raw(nr::WRITEV, &[1, a, n])));
        }
    }
}

fn time_tests() {
    println!("-- nanosleep");
    // SAFETY: nanosleep reads the request and (only when interrupted) writes
    // rem; clock_gettime writes 16 bytes: at addresses the kernel must reject.
    unsafe {
        for (a, name) in [
            (TOP, "TOP"),
            (MAX - 7, "2^64-8"),
            (MAX - 15, "2^64-16"),
            (HALF, "2^63"),
            (HALF - 8, "2^63-8"),
            (USER_END, "USER_END"),
            (USER_END - 8, "USER_END-8"),
        ] {
            println!("nanosleep({}, NULL) = {}", name, Res(raw(nr::NANOSLEEP, &[a, 0])));
        }
        let short = Timespec { tv_sec: 0, tv_nsec: 1000 };
        let s = &short as *const Timespec as usize;
        for (rem, name) in [(MAX - 15, "2^64-16"), (TOP, "TOP")] {
            println!("nanosleep({{0, 1000 ns}}, rem={}) = {}", name, Res(raw(nr::NANOSLEEP, &[s, rem])));
        }
        for (sec, nsec, name) in [
            (i64::MIN, 0, "{-2^63, 0}"),
            (0, i64::MAX, "{0, 2^63-1}"),
            (0, i64::MIN, "{0, -2^63}"),
            (0, 1_000_000_000 + (1 << 32), "{0, 2^32+1e9}"),
        ] {
            let t = Timespec { tv_sec: sec, tv_nsec: nsec };
            println!("nanosleep({}, NULL) = {}", name, Res(raw(nr::NANOSLEEP, &[&t as *const Timespec as usize, 0])));
        }

        println!("-- clock_gettime");
        for (a, name) in [
            (TOP, "TOP"),
            (MAX - 7, "2^64-8"),
            (MAX - 15, "2^64-16"),
            (HALF, "2^63"),
            (HALF - 16, "2^63-16"),
            (USER_END, "USER_END"),
            (0x7fff_ffff_fff0, "2^47-16"),
        ] {
            println!(
                "clock_gettime(CLOCK_MONOTONIC, {}) = {}",
                name,
                Res(raw(nr::CLOCK_GETTIME, &[CLOCK_MONOTONIC, a]))
            );
        }
        let mut ts = Timespec::default();
        let t = &mut ts as *mut Timespec as usize;
        for (clock, name) in [
            (MAX, "2^64-1"),
            (0xffff_ffff, "2^32-1"),
            (HALF, "2^63"),
            (0x1_0000_0001, "2^32+1 (1 in the low half)"),
            (HALF | 1, "2^63+1 (1 in the low half)"),
        ] {
            println!("clock_gettime({}, &ts) = {}", name, Res(raw(nr::CLOCK_GETTIME, &[clock, t])));
        }
    }
}

/// Arguments Linux declares `int` or `unsigned int`: it never sees their upper half.
fn upper_half_tests(s: &Scratch) {
    println!("-- 32-bit arguments with the upper half set");
    let p = s.p;
    let word = core::sync::atomic::AtomicU32::new(5);
    let msg = b"info: written through fd 2^32+1\n";
    // SAFETY: write reads our buffer; FUTEX_WAKE touches no memory; MADV_NORMAL
    // changes no data; mmap without MAP_FIXED replaces nothing.
    unsafe {
        println!(
            "write(2^32+1, msg, {}) = {}",
            msg.len(),
            Count(raw(nr::WRITE, &[0x1_0000_0001, msg.as_ptr() as usize, msg.len()]))
        );
        println!(
            "write(2^32+7, msg, {}) = {}",
            msg.len(),
            Count(raw(nr::WRITE, &[0x1_0000_0007, msg.as_ptr() as usize, msg.len()]))
        );
        println!(
            "futex(&word, 2^32+FUTEX_WAKE_PRIVATE, 1) = {}",
            Count(raw(nr::FUTEX, &[word.as_ptr() as usize, 0x1_0000_0000 | FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1]))
        );
        println!(
            "madvise(p, 4096, 2^32+MADV_NORMAL) = {}",
            Res(raw(nr::MADVISE, &[p, PAGE, 0x1_0000_0000 | MADV_NORMAL]))
        );
        println!(
            "mprotect(p, 4096, 2^32+PROT_READ|PROT_WRITE) = {}",
            Res(raw(nr::MPROTECT, &[p, PAGE, 0x1_0000_0000 | PROT_READ | PROT_WRITE]))
        );
        // fd 0: the console on Linux and ours, /dev/null under `make check`;
        // none of them can be mapped.
        let r = raw(nr::MMAP, &[0, PAGE, PROT_READ, MAP_PRIVATE, 0x1_0000_0000, 0]);
        println!("mmap(0, 4096, PROT_READ, MAP_PRIVATE, fd 2^32+0, 0) = {}", Res(r));
        if let Ok(a) = r {
            let _ = munmap(a as *mut u8, PAGE);
        }
        let r = raw(nr::MMAP, &[0, PAGE, 0x1_0000_0000 | PROT_READ | PROT_WRITE, ANON, MAX, 0]);
        println!("mmap(0, 4096, 2^32+PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = {}", Res(r));
        if let Ok(a) = r {
            let _ = munmap(a as *mut u8, PAGE);
        }
    }
    println!("after the 32-bit arguments: {}", s.state());
}

fn mprotect_tests(s: &Scratch) {
    println!("-- mprotect");
    let p = s.p;
    // SAFETY: protections change only inside p (Linux stops at the hole above
    // it), or the kernel must reject the range; p is restored after each.
    unsafe {
        for (addr, len, name) in [
            (TOP, PAGE, "TOP"),
            (TOP - PAGE, PAGE, "TOP-4096"),
            (HALF, PAGE, "2^63"),
            (HALF - PAGE, PAGE, "2^63-4096"),
            (USER_END, PAGE, "USER_END"),
        ] {
            println!("mprotect({}, {:#x}, PROT_READ) = {}", name, len, Res(mprotect(addr as *mut u8, len, PROT_READ)));
        }
        for len in [USER_END - p, USER_END - p + PAGE, HALF, MAX - p - 4095, MAX - p + 1, MAX - 4095, MAX - 4094, MAX] {
            let r = mprotect(p as *mut u8, len, PROT_READ);
            println!("mprotect(p, {}, PROT_READ) = {}; {}", Len(len, p), Res(r), s.state());
            s.restore();
        }
        println!("mprotect(USER_END, 2^64-1, PROT_READ) = {}", Res(mprotect(USER_END as *mut u8, MAX, PROT_READ)));
        println!("mprotect(p, 2^64-1, 0x10) = {}", Res(mprotect(p as *mut u8, MAX, 0x10)));
    }
    println!("after mprotect: {}", s.state());
}

fn main() -> i32 {
    println!("overflow_args: system calls with lengths and addresses near 2^64, 2^63 and USER_END");
    let s = Scratch::new();
    println!("info: p = {:#x}", s.p);
    println!("start: {}", s.state());
    mmap_tests(&s);
    munmap_tests(&s);
    madvise_tests(&s);
    brk_tests();
    futex_tests();
    write_tests(&s);
    writev_tests(&s);
    time_tests();
    upper_half_tests(&s);
    mprotect_tests(&s);
    println!("overflow_args: done");
    0
}
