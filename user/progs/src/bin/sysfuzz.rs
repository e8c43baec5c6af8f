//! sysfuzz: a system-call fuzzer. Four threads issue random system calls from
//! a seeded PRNG: every number the kernel implements except exit, an
//! allow-list of numbers it does not, and numbers no kernel has, with hostile
//! arguments (NULL, kernel and non-canonical pointers, pointers into holes and
//! into PROT_NONE and read-only pages, buffers running off the end of a
//! mapping, huge and negative lengths, every flag bit). Then a sanity phase
//! checks that the process is still whole: its memory, its threads, its own
//! data. The kernel must survive all of it, and the program must end exactly
//! as on Linux.
//!
//! Usage: `sysfuzz [SEED [ITERATIONS [THREAD-MASK [TRACE-FROM [KIND-MASK]]]]]`:
//! SEED in decimal or 0x-hex (default: from AT_RANDOM), ITERATIONS per thread
//! (default [`DEFAULT_ITERATIONS`]), THREAD-MASK which threads run (bit i for
//! thread i+1; default 0xf), TRACE-FROM the op from which every call and its
//! result are printed on `info:` lines, KIND-MASK which kinds of call are
//! made (bit k for the k-th line of the summary; default all). The last
//! three narrow a failing run down to a small reproducer. The seed is printed on an `info:`
//! line; passing it back replays the run (thread by thread: each thread's
//! calls depend only on the seed and its number; the interleaving is the
//! scheduler's).
//!
//! The calls must be harmless to the program itself on Linux, where it runs
//! as PID 1 and root (where dying panics the machine), so the generators
//! follow rules:
//! - Calls that destroy memory (munmap, mprotect, MAP_FIXED mmap, the
//!   destructive madvise advices) only get ranges inside the fuzz arena,
//!   ranges starting at or above the top of user space, ranges that overflow
//!   past it, or empty ones: never the program, its stack, thread stacks or
//!   the fixed pages below.
//! - The kernel may write only where nothing matters: the arena, each
//!   thread's scratch pages, read-only or PROT_NONE pages (it must refuse),
//!   and addresses that are never mapped (the NULL page below mmap_min_addr,
//!   the top page, kernel and non-canonical addresses). Values that are not
//!   pointers by construction are kept out of the user half.
//! - Nothing blocks for long: timeouts come only from constants of at most
//!   1 ms (or unreadable addresses), futex waits without one only on a
//!   private word with a mismatching value, reads of fds 0-2 have length 0
//!   (on Linux they are the console, open for reading and writing).
//! - Nothing reaches stdout: writes to fds 0-2 get buffers whose first byte
//!   is never readable, or length 0. Linux truncates fds, futex ops, clock
//!   ids, arch_prctl codes and madvise advices to 32 bits and system-call
//!   numbers to int, so every rule looks at the low 32 bits.
//! - clone gets only flag combinations every kernel must refuse; unimplemented
//!   numbers come from an allow-list of calls without side effects (no
//!   processes, files, signals, limits or scheduling changes), plus numbers at
//!   or above 512 (ENOSYS everywhere: Linux 6.12 has calls up to 462).
#![no_std]
#![no_main]

use core::fmt;
use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};

use ulib::rand::{self, Rng};
use ulib::sys::{self, nr, *};
use ulib::{env, println, thread, Errno};

ulib::entry!(main);

const THREADS: usize = 4;
/// Per thread; about 40 s on our kernel with 4 CPUs under QEMU's TCG.
const DEFAULT_ITERATIONS: u64 = 20_000;

const PAGE: usize = PAGE_SIZE;
/// The fuzz arena: the only place memory is destroyed. Far from the program
/// (0x400000), its break, and where kernels put mmaps (top-down from below
/// the stack).
const ARENA: usize = 0x2000_0000_0000;
const ARENA_PAGES: usize = 1024;
const ARENA_LEN: usize = ARENA_PAGES * PAGE;
const ARENA_END: usize = ARENA + ARENA_LEN;
/// Linux never maps below mmap_min_addr for a hint, and we never ask for it
/// (root could with MAP_FIXED): a pointer below it never reaches memory.
const NULL_LIMIT: usize = 0x1_0000;
/// Where a MAP_FIXED_NOREPLACE mmap goes when neither its address nor 0 may
/// take it: far from the program, its break and the NULL page region, and
/// above the arena, so that no length reaches into it.
const ASIDE: usize = 0x4000_0000_0000;
const KERNEL: usize = 0xffff_8000_0000_0000;
/// Scratch pages per thread the kernel may write into.
const SCRATCH_PAGES: usize = 2;
/// Pages of each extra break grown by a brk call, at most.
const BRK_MAX_PAGES: u64 = 1024;
/// How many FAIL lines each thread prints at most.
const MAX_REPORTS: u32 = 10;

static ONE_MS: Timespec = Timespec { tv_sec: 0, tv_nsec: 1_000_000 };
static ZERO_TS: Timespec = Timespec { tv_sec: 0, tv_nsec: 0 };
/// Invalid timeouts (EINVAL); never slept on.
static BAD_TS: [Timespec; 4] = [
    Timespec { tv_sec: 0, tv_nsec: 1_000_000_000 },
    Timespec { tv_sec: -1, tv_nsec: 0 },
    Timespec { tv_sec: 0, tv_nsec: -1 },
    Timespec { tv_sec: i64::MIN, tv_nsec: i64::MAX },
];

/// Known data in the program's own .data: a kernel that writes where it must
/// not may hit it, and the sanity phase looks.
static CANARY: [AtomicU32; 1024] = [const { AtomicU32::new(0) }; 1024];

fn canary_value(i: usize) -> u32 {
    (i as u32).wrapping_mul(0x9e37_79b9) ^ 0x5a5a_a5a5
}

/// Memory set up before the threads start and never destroyed by them.
#[derive(Clone, Copy)]
struct Layout {
    /// A PROT_READ page of zeros, directly followed by `none_page`.
    ro_page: usize,
    none_page: usize,
    /// Our own code (read-only).
    text: usize,
    pid: u32,
    ppid: u32,
}

/// The kinds of call, for the statistics (the order `Fuzzer::one` picks them in).
const KINDS: usize = 19;
const KIND_NAMES: [&str; KINDS] = [
    "read",
    "write",
    "writev",
    "mmap",
    "munmap",
    "mprotect",
    "madvise",
    "brk",
    "sched_yield",
    "nanosleep",
    "getpid/getppid/gettid",
    "clone",
    "futex",
    "arch_prctl",
    "set_tid_address",
    "clock_gettime",
    "uname",
    "allow-listed unimplemented",
    "numbers >= 512",
];
/// How often each kind is picked (the memory calls most: they are where the
/// kernel keeps the most state).
const WEIGHTS: [u32; KINDS] = [4, 6, 5, 14, 8, 9, 8, 4, 2, 1, 2, 2, 6, 3, 2, 4, 3, 10, 3];

#[derive(Clone, Copy, Default)]
struct Stats {
    calls: [u32; KINDS],
    ok: [u32; KINDS],
}

/// What a fuzz thread hands back.
#[derive(Clone, Copy, Default)]
struct Report {
    stats: Stats,
    failures: u32,
    iterations: u64,
}

/// How a generated argument is used by the call it is passed to.
#[derive(Clone, Copy)]
enum Arg {
    /// A number (never a user-half address the kernel could touch).
    Num,
    /// A pointer the kernel reads.
    In,
    /// A pointer the kernel may write a small, bounded amount to.
    Out,
    /// A file descriptor.
    Fd,
    /// A file descriptor that is not one of 0-2 (whose state some calls
    /// change: lseek moves the offset of a regular file, as stdout is when
    /// run natively).
    BadFd,
    /// A length or size.
    Len,
    /// A pointer the kernel may write up to a length's worth to: our scratch.
    Buf,
    /// Unused.
    No,
}

use Arg::{BadFd, Buf, Fd, In, Len, No, Num, Out};

/// Unimplemented calls that are harmless with any arguments on Linux as
/// PID 1 and root: queries that read or fill buffers, and hints.
const ALLOWED: &[(usize, &str, [Arg; 6])] = &[
    (5, "fstat", [Fd, Out, No, No, No, No]),
    (8, "lseek", [BadFd, Num, Num, No, No, No]),
    (14, "rt_sigprocmask", [Num, In, Out, Num, No, No]),
    (21, "access", [In, Num, No, No, No, No]),
    (26, "msync", [In, Len, Num, No, No, No]),
    (27, "mincore", [In, Len, Buf, No, No, No]),
    (36, "getitimer", [Num, Out, No, No, No, No]),
    (79, "getcwd", [Out, Len, No, No, No, No]),
    (89, "readlink", [In, Out, Len, No, No, No]),
    (95, "umask", [Num, No, No, No, No, No]),
    (96, "gettimeofday", [Out, Out, No, No, No, No]),
    (97, "getrlimit", [Num, Out, No, No, No, No]),
    (98, "getrusage", [Num, Out, No, No, No, No]),
    (99, "sysinfo", [Out, No, No, No, No, No]),
    (100, "times", [Out, No, No, No, No, No]),
    (102, "getuid", [No, No, No, No, No, No]),
    (104, "getgid", [No, No, No, No, No, No]),
    (107, "geteuid", [No, No, No, No, No, No]),
    (108, "getegid", [No, No, No, No, No, No]),
    (111, "getpgrp", [No, No, No, No, No, No]),
    (115, "getgroups", [Num, Out, No, No, No, No]),
    (118, "getresuid", [Out, Out, Out, No, No, No]),
    (120, "getresgid", [Out, Out, Out, No, No, No]),
    (121, "getpgid", [Num, No, No, No, No, No]),
    (124, "getsid", [Num, No, No, No, No, No]),
    (125, "capget", [Out, Out, No, No, No, No]),
    (127, "rt_sigpending", [Out, Num, No, No, No, No]),
    (131, "sigaltstack", [In, Out, No, No, No, No]),
    (137, "statfs", [In, Out, No, No, No, No]),
    (138, "fstatfs", [Fd, Out, No, No, No, No]),
    (139, "sysfs", [Num, In, Out, No, No, No]),
    (140, "getpriority", [Num, Num, No, No, No, No]),
    (143, "sched_getparam", [Num, Out, No, No, No, No]),
    (145, "sched_getscheduler", [Num, No, No, No, No, No]),
    (146, "sched_get_priority_max", [Num, No, No, No, No, No]),
    (147, "sched_get_priority_min", [Num, No, No, No, No, No]),
    (148, "sched_rr_get_interval", [Num, Out, No, No, No, No]),
    (201, "time", [Out, No, No, No, No, No]),
    (204, "sched_getaffinity", [Num, Len, Out, No, No, No]),
    (217, "getdents64", [Fd, Out, Len, No, No, No]),
    (229, "clock_getres", [Num, Out, No, No, No, No]),
    (239, "get_mempolicy", [Out, Out, Len, In, Num, No]),
    (262, "newfstatat", [Num, In, Out, Num, No, No]),
    (267, "readlinkat", [Num, In, Out, Len, No, No]),
    (269, "faccessat", [Num, In, Num, No, No, No]),
    (274, "get_robust_list", [Num, Out, Out, No, No, No]),
    (309, "getcpu", [Out, Out, In, No, No, No]),
    (315, "sched_getattr", [Num, Out, Len, Num, No, No]),
    (332, "statx", [Num, In, Num, Num, Out, No]),
    (439, "faccessat2", [Num, In, Num, Num, No, No]),
];

/// Advice values that never change memory contents or accessibility: the
/// only ones used outside the arena.
const HINTS: &[usize] = &[
    MADV_NORMAL,
    MADV_RANDOM,
    MADV_SEQUENTIAL,
    MADV_WILLNEED,
    MADV_DONTFORK,
    MADV_DOFORK,
    MADV_MERGEABLE,
    MADV_UNMERGEABLE,
    MADV_HUGEPAGE,
    MADV_NOHUGEPAGE,
    MADV_DONTDUMP,
    MADV_DODUMP,
    MADV_KEEPONFORK,
    MADV_COLD,
];

/// Flag bits of mmap worth setting on their own.
const MAP_BITS: &[usize] = &[
    MAP_FIXED,
    MAP_32BIT,
    MAP_GROWSDOWN,
    MAP_DENYWRITE,
    MAP_EXECUTABLE,
    MAP_LOCKED,
    MAP_NORESERVE,
    MAP_POPULATE,
    MAP_NONBLOCK,
    MAP_STACK,
    MAP_HUGETLB,
    MAP_SYNC,
    MAP_FIXED_NOREPLACE,
    MAP_UNINITIALIZED,
    0x200_0000,
    21 << 26,
    30 << 26,
];

/// arch_prctl codes that would change more than this thread's FS or GS base:
/// CPUID faulting, vDSO mapping, tagged addresses, shadow stacks.
fn dangerous_arch_prctl(code: u32) -> bool {
    matches!(code, 0x1012 | 0x2001..=0x2003 | 0x4002 | 0x4004 | 0x5001..=0x5004)
}

/// Linux compares futex commands after masking the private and clock flags.
fn futex_cmd(op: usize) -> u32 {
    op as u32 & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME) as u32
}

fn futex_may_block(op: usize) -> bool {
    matches!(
        futex_cmd(op) as usize,
        FUTEX_WAIT | FUTEX_LOCK_PI | FUTEX_WAIT_BITSET | FUTEX_WAIT_REQUEUE_PI | FUTEX_LOCK_PI2
    )
}

/// fds 0-2 (after Linux's truncation to unsigned int) are the console.
fn is_console(fd: usize) -> bool {
    fd as u32 <= 2
}

struct Fuzzer {
    rng: Rng,
    index: usize,
    tid: u32,
    layout: Layout,
    /// SCRATCH_PAGES writable pages, then a PROT_NONE guard page.
    scratch: usize,
    /// A page of iovecs none of which describes readable memory, then a guard
    /// page: what writev to the console gets.
    iov_page: usize,
    /// This thread's block (FS points at it) and its CLONE_CHILD_CLEARTID word.
    tcb: usize,
    tid_word: usize,
    stats: Stats,
    failures: u32,
    op: u64,
    /// Print every call from this op on (a replay aid: the last line before
    /// a hang names the call that hung).
    trace_from: u64,
    weights: [u32; KINDS],
}

/// Prints as hex in FAIL lines.
struct Hex(usize);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A raw result, as Ok(value) or the errno's name.
struct Ret(isize);

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match sys::check(self.0) {
            Ok(v) => write!(f, "{:#x}", v),
            Err(e) => write!(f, "{:?}", e),
        }
    }
}

impl Fuzzer {
    fn call(&mut self, n: usize, a: [usize; 6]) -> isize {
        let trace = self.op >= self.trace_from;
        if trace {
            println!(
                "info: thread {} op {}: syscall {} ({:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x})",
                self.index + 1,
                self.op,
                n,
                a[0],
                a[1],
                a[2],
                a[3],
                a[4],
                a[5]
            );
        }
        // SAFETY: every argument comes from the generators below, which follow the rules at the top
        // of this file: the call can only affect the arena, scratch pages, memory the kernel must
        // refuse to touch, or mappings this thread made and unmaps itself.
        let r = unsafe { syscall6(n, a[0], a[1], a[2], a[3], a[4], a[5]) };
        if trace {
            println!("info: thread {} op {}: returned {}", self.index + 1, self.op, Ret(r));
        }
        r
    }

    fn fail(&mut self, what: fmt::Arguments, expected: fmt::Arguments, got: Ret) {
        self.failures += 1;
        if self.failures <= MAX_REPORTS {
            println!("FAIL: thread {} op {}: {}, expected {} got {}", self.index + 1, self.op, what, expected, got);
        }
    }

    fn expect_err(&mut self, what: fmt::Arguments, want: Errno, got: isize) {
        if sys::check(got) != Err(want) {
            self.fail(what, format_args!("{:?}", want), Ret(got));
        }
    }

    // ---- argument generators ----

    fn bits(&mut self) -> usize {
        self.rng.next_usize()
    }

    /// A random value moved out of the user half (bit 63 set), so that a
    /// kernel taking it as a pointer cannot reach our memory.
    fn folded(&mut self) -> usize {
        self.bits() | 1 << 63
    }

    /// Addresses that are never readable or writable: the NULL page region,
    /// the top page, kernel and non-canonical addresses.
    fn bad_ptr(&mut self) -> usize {
        match self.rng.below(9) {
            0 => 0,
            1 => self.rng.index(NULL_LIMIT),
            2 => self.high_bad_ptr(),
            _ => self.high_bad_ptr(),
        }
    }

    /// Bad addresses at or above the top of user space (no range starting
    /// there can cover user memory).
    fn high_bad_ptr(&mut self) -> usize {
        match self.rng.below(7) {
            0 => KERNEL + (self.bits() & 0x7fff_ffff_ffff),
            1 => self.rng.pick(&[
                KERNEL,
                usize::MAX,
                usize::MAX - 7,
                usize::MAX - 4095,
                0xffff_ffff_8000_0000,
                0xffff_c000_0000_0000,
                0xffff_d000_0000_0000,
            ]),
            2 => 0x8000_0000_0000 + self.rng.index(0xffff_0000_0000_0000),
            3 => {
                self.rng.pick(&[0x8000_0000_0000, 0x8000_0000_0000_0000, 0x0001_0000_0000_0000, 0x7fff_ffff_ffff_ffff])
            }
            4 => USER_END + self.rng.index(PAGE),
            5 => USER_END,
            _ => self.folded(),
        }
    }

    fn arena_ptr(&mut self) -> usize {
        match self.rng.below(4) {
            0 => ARENA + self.rng.index(ARENA_PAGES) * PAGE,
            1 => ARENA_END - 1 - self.rng.index(64),
            _ => ARENA + self.rng.index(ARENA_LEN),
        }
    }

    /// Where the kernel may write (and must refuse to, for some).
    fn out_ptr(&mut self) -> usize {
        let l = self.layout;
        match self.rng.below(12) {
            0..=2 => self.bad_ptr(),
            3..=5 => self.arena_ptr(),
            6 => self.scratch + self.rng.index(SCRATCH_PAGES * PAGE),
            7 => self.scratch + SCRATCH_PAGES * PAGE - 1 - self.rng.index(32),
            8 => l.ro_page + self.rng.index(PAGE),
            9 => l.ro_page + PAGE - 1 - self.rng.index(32),
            10 => l.none_page + self.rng.index(PAGE),
            _ => l.text + self.rng.index(256),
        }
    }

    /// What the kernel may read: contents do not matter.
    fn in_ptr(&mut self) -> usize {
        match self.rng.below(8) {
            0 => USER_END - 1 - self.rng.index(16),
            _ => self.out_ptr(),
        }
    }

    /// A timespec the kernel may read: at most 1 ms, invalid, or unreadable;
    /// never NULL, which means "no timeout" to futex.
    fn timespec_ptr(&mut self) -> usize {
        let l = self.layout;
        match self.rng.below(8) {
            0 | 1 => &ONE_MS as *const Timespec as usize,
            2 => &ZERO_TS as *const Timespec as usize,
            3 => &BAD_TS[self.rng.index(BAD_TS.len())] as *const Timespec as usize,
            // Zeros, or straddling into the PROT_NONE page.
            4 => l.ro_page + self.rng.index(PAGE),
            5 => l.none_page + self.rng.index(PAGE),
            _ => self.bad_ptr().max(1),
        }
    }

    /// A buffer the kernel may fill up to any length: it ends at a guard page.
    fn buf_ptr(&mut self) -> usize {
        match self.rng.below(4) {
            0 => self.bad_ptr(),
            _ => self.scratch + self.rng.index(SCRATCH_PAGES * PAGE),
        }
    }

    fn len(&mut self) -> usize {
        match self.rng.below(12) {
            0 => 0,
            1 => self.rng.range(1, 16) as usize,
            2 => self.rng.index(PAGE + 1),
            3 => self.rng.range(1, 64) as usize * PAGE,
            4 => (self.rng.range(1, 64) as usize * PAGE).wrapping_add(self.rng.range(0, 2) as usize).wrapping_sub(1),
            5 | 6 => self.rng.pick(&[
                usize::MAX,
                usize::MAX - 1,
                usize::MAX - PAGE + 1,
                usize::MAX - PAGE + 2,
                1 << 63,
                (1 << 63) - 1,
                USER_END,
                USER_END + 1,
                USER_END - PAGE,
                1 << 47,
                1 << 46,
                1 << 40,
                u32::MAX as usize,
                i32::MAX as usize,
                1 << 32,
            ]),
            7 => ARENA_LEN,
            8 => 1 << self.rng.below(64),
            9 => self.rng.index(1 << 30),
            _ => self.bits(),
        }
    }

    fn num(&mut self) -> usize {
        match self.rng.below(6) {
            0 => self.rng.index(16),
            1 => self.rng.index(1 << 16),
            2 => (self.rng.index(64) as isize - 32) as usize,
            3 => 1 << self.rng.below(64),
            _ => self.folded(),
        }
    }

    fn fd(&mut self) -> usize {
        let low: u32 = match self.rng.below(8) {
            0..=2 => self.rng.index(3) as u32,
            3 => u32::MAX,
            // Above Linux's largest possible descriptor (NR_OPEN, 2^20).
            4 | 5 => 0x0010_0000 + self.rng.below(1 << 30) as u32,
            _ => 0x8000_0000 | self.rng.next_u64() as u32,
        };
        let high: u32 = match self.rng.below(8) {
            0 => self.rng.next_u64() as u32,
            1 => u32::MAX,
            _ => 0,
        };
        (high as usize) << 32 | low as usize
    }

    fn arg(&mut self, kind: Arg) -> usize {
        match kind {
            Num => self.num(),
            In => self.in_ptr(),
            Out => self.out_ptr(),
            Fd => self.fd(),
            BadFd => self.fd() | 0xff00_0000,
            Len => self.len(),
            Buf => self.buf_ptr(),
            No => self.bits(),
        }
    }

    /// A range destructive calls may get: inside the arena, starting at a bad
    /// high address, or running past the top of user space; sometimes
    /// unaligned or empty. With `wrap`, ranges running past the top wrap
    /// around 2^64: Linux's madvise (and mprotect, up to a hole) acts on
    /// every mapping in a range that merely ends above user space.
    fn destructive_range(&mut self, wrap: bool) -> (usize, usize) {
        match self.rng.below(12) {
            0..=6 => {
                let first = self.rng.index(ARENA_PAGES);
                let max = ARENA_PAGES - first;
                let pages =
                    if self.rng.chance(3, 4) { 1 + self.rng.index(max.min(16)) } else { 1 + self.rng.index(max) };
                let mut len = pages * PAGE;
                if self.rng.chance(1, 4) {
                    // Rounds up to the same pages.
                    len -= self.rng.index(PAGE);
                }
                let mut start = ARENA + first * PAGE;
                if self.rng.chance(1, 16) {
                    start += 1 + self.rng.index(PAGE - 1);
                }
                (start, len)
            }
            7 => (self.high_bad_ptr(), self.len()),
            8 | 9 => {
                let start = ARENA + self.rng.index(ARENA_PAGES) * PAGE;
                let len = if wrap { self.wrapping_len(start) } else { self.overflowing_len(start) };
                (start, len)
            }
            10 => (self.arena_ptr(), 0),
            _ => (ARENA, ARENA_LEN),
        }
    }

    /// A length that takes a range starting at `start` past the top of user
    /// space, so no kernel may map or unmap it.
    fn overflowing_len(&mut self, start: usize) -> usize {
        let past = USER_END - start;
        match self.rng.below(4) {
            0 => past + 1 + self.rng.index(PAGE),
            1 => past + PAGE * self.rng.range(1, 1 << 20) as usize,
            2 => past + 1 + self.rng.index(usize::MAX - past - 1),
            _ => self.wrapping_len(start),
        }
    }

    /// A length with which `start + len` (page-rounded) wraps around 2^64.
    fn wrapping_len(&mut self, start: usize) -> usize {
        let least = usize::MAX - start + 1;
        match self.rng.below(3) {
            0 => self.rng.pick(&[usize::MAX, usize::MAX - PAGE + 1, usize::MAX - PAGE + 2]),
            1 => least + self.rng.index(PAGE),
            _ => least + self.rng.index(start),
        }
    }

    fn prot(&mut self) -> usize {
        match self.rng.below(10) {
            0..=6 => self.rng.index(8),
            7 => self.rng.index(8) | self.rng.pick(&[PROT_GROWSDOWN, PROT_GROWSUP, PROT_GROWSDOWN | PROT_GROWSUP]),
            8 => self.rng.index(16) | 1 << self.rng.below(64),
            _ => self.bits(),
        }
    }

    // ---- the calls ----

    fn read(&mut self) -> isize {
        let fd = self.fd();
        let buf = self.out_ptr();
        let len = if is_console(fd) { 0 } else { self.len() };
        self.call(nr::READ, [fd, buf, len, 0, 0, 0])
    }

    fn write(&mut self) -> isize {
        let fd = self.fd();
        let (buf, len) = if !is_console(fd) {
            (self.in_ptr(), self.len())
        } else if self.rng.chance(1, 4) {
            (self.in_ptr(), 0)
        } else {
            (self.bad_ptr(), self.len())
        };
        let r = self.call(nr::WRITE, [fd, buf, len, 0, 0, 0]);
        if fd == 1 && buf >= NULL_LIMIT && len != 0 && len < USER_END {
            // A bad buffer of plausible length: every kernel says EFAULT.
            self.expect_err(format_args!("write(1, {}, {})", Hex(buf), Hex(len)), Errno::EFAULT, r);
        }
        r
    }

    /// Rewrites some entries of the console iovec page, keeping it safe:
    /// every entry is empty or starts at an unreadable address.
    fn stir_iovecs(&mut self) {
        for _ in 0..8 {
            let slot = self.iov_page + 16 * self.rng.index(PAGE / 16);
            let (base, len) = if self.rng.chance(1, 3) { (self.in_ptr(), 0) } else { (self.bad_ptr(), self.len()) };
            // SAFETY: the iovec page is this thread's alone and never given to
            // the kernel to write.
            unsafe {
                ptr::write_volatile(slot as *mut usize, base);
                ptr::write_volatile((slot + 8) as *mut usize, len);
            }
        }
    }

    fn writev(&mut self) -> isize {
        let fd = self.fd();
        let count = match self.rng.below(6) {
            0 => self.rng.index(4),
            1 => self.rng.index(64),
            2 => self.rng.pick(&[1024, 1025, 1023, usize::MAX, 1 << 31, u32::MAX as usize + 2]),
            3 => self.rng.index(2048),
            _ => self.len(),
        };
        let iov = if is_console(fd) {
            if self.rng.chance(1, 4) {
                self.bad_ptr()
            } else {
                self.stir_iovecs();
                // Reading past the page's last entry hits the guard page.
                self.iov_page + 16 * self.rng.index(PAGE / 16)
            }
        } else {
            // Not a descriptor: iovecs of anything.
            let at = self.scratch + 16 * self.rng.index(SCRATCH_PAGES * PAGE / 16);
            for k in 0..4 {
                let slot = at + 16 * k;
                if slot + 16 <= self.scratch + SCRATCH_PAGES * PAGE {
                    let (base, len) = (self.in_ptr(), self.len());
                    // SAFETY: scratch memory of this thread.
                    unsafe {
                        ptr::write_volatile(slot as *mut usize, base);
                        ptr::write_volatile((slot + 8) as *mut usize, len);
                    }
                }
            }
            if self.rng.chance(1, 2) {
                at
            } else {
                self.in_ptr()
            }
        };
        self.call(nr::WRITEV, [fd, iov, count, 0, 0, 0])
    }

    fn mmap(&mut self) -> isize {
        let mut flags = match self.rng.below(8) {
            0..=3 => MAP_PRIVATE,
            4 | 5 => MAP_SHARED,
            6 => MAP_SHARED_VALIDATE,
            _ => self.rng.index(16),
        };
        if self.rng.chance(7, 8) {
            flags |= MAP_ANONYMOUS;
        }
        for _ in 0..self.rng.below(4) {
            flags |= self.rng.pick(MAP_BITS);
        }
        if self.rng.chance(1, 16) {
            flags |= self.bits() & !(MAP_FIXED | MAP_FIXED_NOREPLACE);
        }
        let replaces = flags & MAP_FIXED != 0;
        if replaces {
            // Huge pages in the arena (where the host has some reserved)
            // would make munmap of their parts fail: keep the arena small-paged.
            flags &= !MAP_HUGETLB;
        }
        let (addr, mut len) = if replaces {
            // Replacing (MAP_FIXED, alone or with NOREPLACE, which a buggy
            // kernel might ignore): the arena or a range no kernel may map.
            self.destructive_range(false)
        } else {
            let len = self.len();
            let addr = match self.rng.below(6) {
                0 => 0,
                1 => self.arena_ptr(),
                2 => self.out_ptr(),
                3 => self.high_bad_ptr(),
                // Anywhere in the user half but low memory: free ranges there
                // are nobody's.
                4 => self.rng.range(NULL_LIMIT as u64, USER_END as u64) as usize & !(PAGE - 1),
                _ => self.rng.pick(&[self.layout.ro_page, self.layout.text & !(PAGE - 1), 0x40_0000, self.scratch]),
            };
            // Nothing may land below NULL_LIMIT, or our never-readable
            // pointers would become readable (to a write to the console on
            // another thread, until we unmap it): root may map there with
            // MAP_FIXED_NOREPLACE, even at 0, and a hint is honoured above
            // the host's mmap_min_addr, which may be lower (4096 is common).
            let pinned = addr != 0 || flags & MAP_FIXED_NOREPLACE != 0;
            let addr = if pinned && addr < NULL_LIMIT { addr + ARENA } else { addr };
            // Nor huge pages in the arena, for a while (see above).
            let near_arena = (ARENA - (1 << 30)..ARENA_END + (1 << 30)).contains(&addr);
            // A MAP_GROWSDOWN mapping grows down to where the kernel faults
            // below it: keep it far above the NULL page region our bad
            // pointers point into (hosts may allow growth down to 4096).
            let low_stack = flags & MAP_GROWSDOWN != 0 && addr < 1 << 32;
            // Both go elsewhere: where the kernel likes (0) if the address is
            // a hint; MAP_FIXED_NOREPLACE would map at 0 itself, so ASIDE.
            let addr = if (flags & MAP_HUGETLB != 0 && near_arena) || low_stack {
                if flags & MAP_FIXED_NOREPLACE != 0 {
                    ASIDE
                } else {
                    0
                }
            } else {
                addr
            };
            (addr, len)
        };
        // Populating (MAP_POPULATE, or MAP_LOCKED) a big mapping would eat all
        // memory before any error: keep those small (the arena is small, and
        // lengths running past the top fail before anything is populated).
        if !replaces && flags & (MAP_POPULATE | MAP_LOCKED) != 0 && len > 64 * PAGE {
            len = self.rng.range(1, 64 * PAGE as u64) as usize;
        }
        let prot = self.prot();
        let fd = if self.rng.chance(1, 2) { usize::MAX } else { self.fd() };
        let off = match self.rng.below(4) {
            0 => self.rng.index(16) * PAGE,
            1 => self.bits(),
            _ => 0,
        };
        let r = self.call(nr::MMAP, [addr, len, prot, flags, fd, off]);
        let Ok(got) = sys::check(r) else { return r };
        let end = got.wrapping_add(len.wrapping_add(PAGE - 1) & !(PAGE - 1));
        if replaces {
            let in_arena = got >= ARENA && end <= ARENA_END && end > got;
            if got != addr || !in_arena {
                self.fail(
                    format_args!("mmap({}, {}, MAP_FIXED flags {})", Hex(addr), Hex(len), Hex(flags)),
                    format_args!("the address asked for, or an error"),
                    Ret(r),
                );
            }
            return r;
        }
        if flags & MAP_FIXED_NOREPLACE != 0 && got != addr {
            self.fail(
                format_args!("mmap({}, {}, MAP_FIXED_NOREPLACE flags {})", Hex(addr), Hex(len), Hex(flags)),
                format_args!("{} or an error", Hex(addr)),
                Ret(r),
            );
        }
        if got < NULL_LIMIT {
            // Our never-readable pointers are readable until the munmap
            // below: the generator must never ask for this.
            self.fail(
                format_args!("mmap({}, {}, flags {})", Hex(addr), Hex(len), Hex(flags)),
                format_args!("an address at or above {} (the generator asked for low memory)", Hex(NULL_LIMIT)),
                Ret(r),
            );
        }
        let l = self.layout;
        let clashes = |a: usize, b: usize| got < b && a < end;
        if end <= got
            || end > USER_END
            || got % PAGE != 0
            || clashes(l.ro_page, l.none_page + PAGE)
            || clashes(self.scratch, self.iov_page + 2 * PAGE)
            || clashes(0x40_0000, l.text + PAGE)
        {
            // Unmapping that would hurt us: report it and leave it.
            self.fail(
                format_args!("mmap({}, {}, flags {})", Hex(addr), Hex(len), Hex(flags)),
                format_args!("a free range"),
                Ret(r),
            );
            return r;
        }
        // A fresh mapping only we know about: give it back at once. Huge
        // pages (where a kernel has them) go only in whole huge pages (2 MiB
        // or 1 GiB on x86_64): retry with those if the length is refused.
        // Never round first: a kernel without huge pages mapped just `len`.
        let mut u = self.call(nr::MUNMAP, [got, len, 0, 0, 0, 0]);
        for huge in [2usize << 20, 1 << 30] {
            if u == -(Errno::EINVAL.0 as isize) && flags & MAP_HUGETLB != 0 {
                let rounded = len.checked_next_multiple_of(huge).unwrap_or(len);
                u = self.call(nr::MUNMAP, [got, rounded, 0, 0, 0, 0]);
            }
        }
        if u != 0 {
            self.fail(
                format_args!("munmap of a fresh mapping ({}, {})", Hex(got), Hex(len)),
                format_args!("0"),
                Ret(u),
            );
        }
        r
    }

    fn munmap(&mut self) -> isize {
        let (start, len) = self.destructive_range(false);
        let r = self.call(nr::MUNMAP, [start, len, 0, 0, 0, 0]);
        // munmap's result depends only on its arguments.
        let valid = start % PAGE == 0 && len != 0 && (ARENA..ARENA_END).contains(&start) && len <= ARENA_END - start;
        let want = if valid { Ok(0) } else { Err(Errno::EINVAL) };
        if sys::check(r) != want {
            self.fail(format_args!("munmap({}, {})", Hex(start), Hex(len)), format_args!("{:?}", want), Ret(r));
        }
        r
    }

    fn mprotect(&mut self) -> isize {
        let (start, len) = self.destructive_range(true);
        let prot = self.prot();
        self.call(nr::MPROTECT, [start, len, prot, 0, 0, 0])
    }

    fn madvise(&mut self) -> isize {
        if self.rng.chance(1, 3) {
            // Hints, anywhere: they must not change a byte.
            let advice = self.rng.pick(HINTS) | if self.rng.chance(1, 8) { self.bits() & !0xffff_ffff } else { 0 };
            let start = match self.rng.below(4) {
                0 => self.layout.ro_page,
                1 => self.scratch,
                2 => 0x40_0000,
                _ => self.in_ptr() & !(PAGE - 1),
            };
            let len = self.len();
            return self.call(nr::MADVISE, [start, len, advice, 0, 0, 0]);
        }
        let (start, len) = self.destructive_range(true);
        let mut advice = match self.rng.below(4) {
            0 | 1 => self.rng.index(26),
            2 => self.rng.pick(&[MADV_DONTNEED, MADV_FREE, MADV_DONTNEED_LOCKED, MADV_REMOVE, 102, 103, 104]),
            _ => self.bits(),
        };
        if matches!(advice as u32 as usize, MADV_HWPOISON | MADV_SOFT_OFFLINE) {
            advice = MADV_DONTNEED;
        }
        self.call(nr::MADVISE, [start, len, advice, 0, 0, 0])
    }

    fn brk(&mut self, initial: usize) -> isize {
        let cur = brk_current();
        let to = match self.rng.below(8) {
            0 => 0,
            1 | 2 => cur.wrapping_add(self.rng.range(1, BRK_MAX_PAGES * PAGE as u64) as usize),
            // Shrinking: only down to where the break started.
            3 | 4 => cur - self.rng.index(cur.saturating_sub(initial) + 1),
            5 => initial + self.rng.index(BRK_MAX_PAGES as usize * PAGE),
            6 => initial - 1 - self.rng.index(initial),
            _ => self.high_bad_ptr(),
        };
        let r = self.call(nr::BRK, [to, 0, 0, 0, 0, 0]);
        let got = r as usize;
        // brk never fails: it returns the new break or leaves the old one.
        if got != to && got < initial {
            self.fail(format_args!("brk({})", Hex(to)), format_args!("a break >= {}", Hex(initial)), Ret(r));
        }
        r
    }

    fn ids(&mut self) -> isize {
        let a = [self.bits(), self.bits(), self.bits(), self.bits(), self.bits(), self.bits()];
        let (n, want) = match self.rng.below(3) {
            0 => (nr::GETPID, self.layout.pid),
            1 => (nr::GETPPID, self.layout.ppid),
            _ => (nr::GETTID, self.tid),
        };
        let r = self.call(n, a);
        if r != want as isize {
            self.fail(format_args!("system call {} (an id)", n), format_args!("{}", want), Ret(r));
        }
        r
    }

    fn clone(&mut self) -> isize {
        let mut flags = if self.rng.chance(1, 2) { self.bits() } else { self.bits() & self.bits() & self.bits() };
        // Only combinations every kernel refuses before creating anything.
        match self.rng.below(3) {
            0 => flags = (flags | CLONE_THREAD) & !CLONE_SIGHAND,
            1 => flags = (flags | CLONE_SIGHAND) & !CLONE_VM,
            _ => flags |= CLONE_FS | CLONE_NEWNS,
        }
        // A bad stack, so that a child made by mistake dies at once rather
        // than running on ours.
        let stack = self.high_bad_ptr();
        let (ptid, ctid, tls) = (self.out_ptr(), self.out_ptr(), self.bits());
        let r = self.call(nr::CLONE, [flags, stack, ptid, ctid, tls, 0]);
        self.expect_err(format_args!("clone(flags {})", Hex(flags)), Errno::EINVAL, r);
        r
    }

    fn futex(&mut self, word: &AtomicU32) -> isize {
        let mut op = match self.rng.below(8) {
            0..=5 => self.rng.index(14),
            6 => self.rng.index(32),
            _ => self.bits(),
        };
        if self.rng.chance(1, 2) {
            op |= FUTEX_PRIVATE_FLAG;
        }
        if self.rng.chance(1, 8) {
            op |= FUTEX_CLOCK_REALTIME;
        }
        if self.rng.chance(1, 8) {
            op |= self.bits() & !0xffff_ffff;
        }
        let mine = word.as_ptr() as usize;
        let uaddr = match self.rng.below(5) {
            0 | 1 => mine,
            2 => mine + 1 + self.rng.index(3),
            _ => self.out_ptr(),
        };
        let current = word.load(Ordering::Relaxed);
        let val = match self.rng.below(3) {
            0 => current as usize,
            1 => current.wrapping_add(1 + self.rng.below(1000) as u32) as usize,
            _ => self.bits(),
        };
        let (uaddr2, val3) = (self.out_ptr(), if self.rng.chance(1, 2) { usize::MAX } else { self.bits() });
        // The oracle: a plain wait on our own word with the wrong value.
        if self.rng.chance(1, 8) {
            let op = FUTEX_WAIT | if self.rng.chance(1, 2) { FUTEX_PRIVATE_FLAG } else { 0 };
            let bad = current.wrapping_add(1) as usize | self.bits() & !0xffff_ffff;
            let timeout = if self.rng.chance(1, 2) { 0 } else { &ONE_MS as *const Timespec as usize };
            let r = self.call(nr::FUTEX, [mine, op, bad, timeout, 0, 0]);
            self.expect_err(format_args!("FUTEX_WAIT (op {}) with a value that differs", op), Errno::EAGAIN, r);
            return r;
        }
        let timeout = if futex_may_block(op) { self.timespec_ptr() } else { self.num() };
        let r = self.call(nr::FUTEX, [uaddr, op, val, timeout, uaddr2, val3]);
        // LOCK_PI on our word may have taken it: give it back.
        if futex_cmd(op) as usize == FUTEX_LOCK_PI || futex_cmd(op) as usize == FUTEX_LOCK_PI2 {
            word.store(0x5eed_0000 | self.index as u32, Ordering::Relaxed);
        }
        r
    }

    fn arch_prctl(&mut self) -> isize {
        let mut code = match self.rng.below(8) {
            0 | 1 => ARCH_SET_FS,
            2 => ARCH_SET_GS,
            3 => ARCH_GET_FS,
            4 => ARCH_GET_GS,
            5 => self.rng.pick(&[0x1011, 0x1021, 0x1022, 0x1023, 0x1024, 0x1025, 0x4001, 0x4003, 0x5005]),
            _ => self.bits(),
        };
        if dangerous_arch_prctl(code as u32) {
            code = 0x9999;
        }
        if self.rng.chance(1, 8) {
            code |= self.bits() & !0xffff_ffff;
        }
        let addr = match code as u32 as usize {
            ARCH_SET_FS | ARCH_SET_GS => match self.rng.below(3) {
                0 => self.bits(),
                1 => self.high_bad_ptr(),
                _ => self.in_ptr(),
            },
            _ => self.out_ptr(),
        };
        let r = self.call(nr::ARCH_PRCTL, [code, addr, 0, 0, 0, 0]);
        // Nothing here reads %fs or %gs, but ulib's thread code may: restore.
        self.call(nr::ARCH_PRCTL, [ARCH_SET_FS, self.tcb, 0, 0, 0, 0]);
        self.call(nr::ARCH_PRCTL, [ARCH_SET_GS, 0, 0, 0, 0, 0]);
        if code as u32 as usize == ARCH_GET_FS
            && addr >= self.scratch
            && addr + 8 <= self.scratch + SCRATCH_PAGES * PAGE
        {
            // SAFETY: scratch memory of this thread, just written by the kernel.
            let fs = unsafe { ptr::read_unaligned(addr as *const usize) };
            let tcb = self.tcb;
            if r == 0 && fs != tcb && code == ARCH_GET_FS {
                self.fail(format_args!("ARCH_GET_FS"), format_args!("{}", Hex(tcb)), Ret(fs as isize));
            }
        }
        r
    }

    fn set_tid_address(&mut self) -> isize {
        let p = self.out_ptr();
        let r = self.call(nr::SET_TID_ADDRESS, [p, 0, 0, 0, 0, 0]);
        let tid = self.tid;
        if r != tid as isize {
            self.fail(format_args!("set_tid_address({})", Hex(p)), format_args!("{}", tid), Ret(r));
        }
        r
    }

    fn clock_gettime(&mut self) -> isize {
        let clock = match self.rng.below(5) {
            0 | 1 => self.rng.index(12),
            2 => (self.rng.index(64) as isize - 48) as usize,
            3 => self.rng.index(12) | self.bits() & !0xffff_ffff,
            _ => self.bits(),
        };
        let tp = self.out_ptr();
        self.call(nr::CLOCK_GETTIME, [clock, tp, 0, 0, 0, 0])
    }

    fn unimplemented(&mut self) -> isize {
        let (n, _, kinds) = ALLOWED[self.rng.index(ALLOWED.len())];
        let a = kinds.map(|k| self.arg(k));
        self.call(n, a)
    }

    fn no_such_call(&mut self) -> isize {
        // Linux looks at the low 32 bits as an int: keep those clear of every
        // real number (up to 469 in 6.18) and of the x32 range.
        let low = match self.rng.below(4) {
            0 => self.rng.range(512, 4096),
            1 => self.rng.range(0x4010_0000, u32::MAX as u64),
            2 => u32::MAX as u64,
            _ => self.rng.range(512, 0x3fff_ffff),
        } as usize;
        let high = if self.rng.chance(1, 4) { self.bits() & !0xffff_ffff } else { 0 };
        let n = high | low;
        let a = [self.bits(), self.out_ptr(), self.len(), self.num(), self.bits(), self.bits()];
        let r = self.call(n, a);
        self.expect_err(format_args!("system call {}", Hex(n)), Errno::ENOSYS, r);
        r
    }

    fn one(&mut self, word: &AtomicU32, initial_brk: usize) {
        let kind = self.rng.weighted(&self.weights);
        let r = match kind {
            0 => self.read(),
            1 => self.write(),
            2 => self.writev(),
            3 => self.mmap(),
            4 => self.munmap(),
            5 => self.mprotect(),
            6 => self.madvise(),
            7 => self.brk(initial_brk),
            8 => {
                let a = [self.bits(), self.bits(), 0, 0, 0, 0];
                let r = self.call(nr::SCHED_YIELD, a);
                if r != 0 {
                    self.fail(format_args!("sched_yield"), format_args!("0"), Ret(r));
                }
                r
            }
            9 => {
                let (req, rem) = (self.timespec_ptr(), self.out_ptr());
                self.call(nr::NANOSLEEP, [req, rem, 0, 0, 0, 0])
            }
            10 => self.ids(),
            11 => self.clone(),
            12 => self.futex(word),
            13 => self.arch_prctl(),
            14 => self.set_tid_address(),
            15 => self.clock_gettime(),
            16 => {
                let p = self.out_ptr();
                self.call(nr::UNAME, [p, 0, 0, 0, 0, 0])
            }
            17 => self.unimplemented(),
            _ => self.no_such_call(),
        };
        self.stats.calls[kind] += 1;
        if sys::check(r).is_ok() {
            self.stats.ok[kind] += 1;
        }
    }
}

/// What every fuzz thread is told.
#[derive(Clone, Copy)]
struct Run {
    layout: Layout,
    seed: u64,
    iterations: u64,
    initial_brk: usize,
    trace_from: u64,
    /// How often each kind of call is made (0: never, per KIND-MASK).
    weights: [u32; KINDS],
}

fn fuzz(index: usize, run: Run) -> Report {
    let Run { layout, seed, iterations, initial_brk, trace_from, weights } = run;
    // Two scratch pages, a guard, the iovec page, a guard.
    let region = match mmap_anon((SCRATCH_PAGES + 3) * PAGE, PROT_READ | PROT_WRITE) {
        Ok(p) => p as usize,
        Err(e) => {
            println!("sysfuzz: thread {}: no scratch memory: {:?}", index + 1, e);
            return Report { failures: 1, ..Report::default() };
        }
    };
    let iov_page = region + (SCRATCH_PAGES + 1) * PAGE;
    // SAFETY: fresh pages of ours; the guards are never accessed by us.
    unsafe {
        let _ = mprotect((region + SCRATCH_PAGES * PAGE) as *mut u8, PAGE, PROT_NONE);
        let _ = mprotect((iov_page + PAGE) as *mut u8, PAGE, PROT_NONE);
    }
    // SAFETY: threads made by thread::spawn have FS pointing at their Tcb.
    let tcb = unsafe { thread::tcb_via_fs() };
    // SAFETY: the Tcb lives until this thread is joined.
    let tid_word = unsafe { (*tcb).tid_word().as_ptr() as usize };
    let mut f = Fuzzer {
        rng: Rng::stream(seed, index as u64),
        index,
        tid: gettid(),
        layout,
        scratch: region,
        iov_page,
        tcb: tcb as usize,
        tid_word,
        stats: Stats::default(),
        failures: 0,
        op: 0,
        trace_from,
        weights,
    };
    // Start the console iovecs off safe: all empty.
    // SAFETY: our own fresh page.
    unsafe { ptr::write_bytes(iov_page as *mut u8, 0, PAGE) };
    let word = AtomicU32::new(0x5eed_0000 | index as u32);
    for op in 0..iterations {
        f.op = op;
        f.one(&word, initial_brk);
    }
    // Undo what would outlive the fuzzing: our FS base, and the word the
    // kernel clears at our exit (join waits for it).
    // SAFETY: our own block and its tid word, as ulib set them up.
    unsafe {
        let _ = arch_set_fs(f.tcb);
        set_tid_address(f.tid_word as *mut u32);
        let _ = munmap(region as *mut u8, (SCRATCH_PAGES + 3) * PAGE);
    }
    Report { stats: f.stats, failures: f.failures, iterations }
}

/// Whether the kernel can read the word at `p` (FUTEX_WAIT with a zero
/// timeout reads it, or says EFAULT).
fn readable(p: usize) -> bool {
    // SAFETY: FUTEX_WAIT only reads the word and returns at once.
    let r = unsafe { futex(p as *const u32, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 0x5eed_f00d, &ZERO_TS) };
    r != Err(Errno::EFAULT)
}

/// Whether the kernel can write the 16 bytes at `p` (it overwrites them).
///
/// # Safety
/// `p` must be scratch memory or memory the kernel cannot write.
unsafe fn writable(p: usize) -> bool {
    // SAFETY: forwarded contract.
    sys::check(unsafe { syscall(nr::CLOCK_GETTIME, &[CLOCK_MONOTONIC, p]) }).is_ok()
}

/// The sanity phase: whatever the fuzzing did, the process must still work.
fn sanity(layout: &Layout, initial_brk: usize) -> Result<(), &'static str> {
    // SAFETY: the break area is ours alone (nothing in this program allocates
    // from it); the threads are gone.
    if unsafe { sys::brk(initial_brk) } != initial_brk || brk_current() != initial_brk {
        return Err("brk does not go back to where it started");
    }
    // SAFETY: the arena is fuzz territory; nothing lives there.
    if unsafe { munmap(ARENA as *mut u8, ARENA_LEN) } != Ok(0) {
        return Err("munmap of the arena failed");
    }
    if (0..ARENA_PAGES).any(|i| readable(ARENA + i * PAGE)) {
        return Err("the arena is still readable after munmap");
    }
    if CANARY.iter().enumerate().any(|(i, c)| c.load(Ordering::Relaxed) != canary_value(i)) {
        return Err("the program's data changed");
    }
    if !readable(layout.ro_page) || readable(layout.none_page) || readable(layout.none_page + PAGE - 4) {
        return Err("the read-only or PROT_NONE page changed protection");
    }
    // SAFETY: the read-only page is readable (just checked).
    if (0..PAGE).any(|i| unsafe { ptr::read_volatile((layout.ro_page + i) as *const u8) } != 0) {
        return Err("the read-only page was written");
    }
    // SAFETY: the kernel cannot write a read-only page (if it can, that is
    // what we report).
    if unsafe { writable(layout.ro_page) } {
        return Err("the kernel can write the read-only page");
    }
    if getpid() != layout.pid || getppid() != layout.ppid {
        return Err("getpid or getppid changed");
    }
    match uname() {
        Ok(u) if u.field(0) == Some(b"Linux") => {}
        _ => return Err("uname does not say Linux"),
    }

    let pages = 64;
    let len = pages * PAGE;
    let p = mmap_anon(len, PROT_READ | PROT_WRITE).map_err(|_| "mmap of 64 pages failed")? as usize;
    let word = |i: usize| (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
    // SAFETY: a fresh mapping of ours; the upper half is only read once read-only.
    unsafe {
        for i in 0..pages {
            ptr::write_volatile((p + i * PAGE + 8 * (i % 512)) as *mut u64, word(i));
        }
        if mprotect((p + len / 2) as *mut u8, len / 2, PROT_READ).is_err() {
            return Err("mprotect of fresh memory failed");
        }
        if writable(p + len / 2) || !writable(p + 16) {
            return Err("protection of fresh memory is wrong");
        }
        if (0..pages).any(|i| ptr::read_volatile((p + i * PAGE + 8 * (i % 512)) as *const u64) != word(i)) {
            return Err("fresh memory lost what was written");
        }
        if munmap(p as *mut u8, len) != Ok(0) || readable(p) || readable(p + len - PAGE) {
            return Err("munmap of fresh memory failed");
        }
    }

    let handles = [1u64, 2, 3, 4]
        .map(|k| thread::spawn(move || (gettid(), (1..=1000u64).map(|i| i * i * k).sum::<u64>())).map_err(|_| ()));
    let mut tids = [0u32; 4];
    for (i, h) in handles.into_iter().enumerate() {
        let h = h.map_err(|_| "thread spawn failed")?;
        let (tid, sum) = h.join();
        if sum != 333_833_500 * (i as u64 + 1) {
            return Err("a new thread computed a wrong sum");
        }
        tids[i] = tid;
    }
    if tids.iter().enumerate().any(|(i, &t)| t == 0 || t == layout.pid || tids[..i].contains(&t)) {
        return Err("new threads do not have distinct tids");
    }
    Ok(())
}

const USAGE: &str = "sysfuzz: usage: sysfuzz [SEED [ITERATIONS [THREAD-MASK [TRACE-FROM [KIND-MASK]]]]]";

/// argv[i] as a number, `default` if absent; None if it is not a number.
fn num_arg(i: usize, default: u64) -> Option<u64> {
    match env::arg(i) {
        None => Some(default),
        Some(a) => env::parse_num(a),
    }
}

fn main() -> i32 {
    let (Some(seed), Some(iterations), Some(mask), Some(trace_from), Some(kinds)) = (
        rand::seed_from_arg_or_auxv(1),
        num_arg(2, DEFAULT_ITERATIONS),
        num_arg(3, (1 << THREADS) - 1),
        num_arg(4, u64::MAX),
        num_arg(5, (1 << KINDS) - 1),
    ) else {
        println!("{}", USAGE);
        return 2;
    };
    if mask == 0 || mask >= 1 << THREADS || kinds & ((1 << KINDS) - 1) == 0 {
        println!("{}", USAGE);
        return 2;
    }
    println!("info: seed {:#x}", seed);
    println!("info: replay: sysfuzz {:#x} {} {:#x}", seed, iterations, mask);
    println!("sysfuzz: {} threads issue random system calls with hostile arguments", mask.count_ones());

    for (i, c) in CANARY.iter().enumerate() {
        c.store(canary_value(i), Ordering::Relaxed);
    }
    // The arena must be free: nothing of ours may live where memory is destroyed.
    // SAFETY: MAP_FIXED_NOREPLACE never replaces anything.
    let arena = unsafe { mmap(ARENA, ARENA_LEN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) };
    if arena != Ok(ARENA as *mut u8) {
        println!("sysfuzz: the arena at {:#x} is not free: {:?}", ARENA, arena);
        return 1;
    }
    let fixed = match mmap_anon(2 * PAGE, PROT_READ) {
        Ok(p) => p as usize,
        Err(e) => {
            println!("sysfuzz: mmap failed: {:?}", e);
            return 1;
        }
    };
    // SAFETY: the second page of our fresh mapping; we never access it.
    if unsafe { mprotect((fixed + PAGE) as *mut u8, PAGE, PROT_NONE) }.is_err() {
        println!("sysfuzz: mprotect failed");
        return 1;
    }
    let layout = Layout {
        ro_page: fixed,
        none_page: fixed + PAGE,
        text: main as *const () as usize,
        pid: getpid(),
        ppid: getppid(),
    };
    let initial_brk = brk_current();
    println!("info: pid {} ppid {} break {:#x} ro page {:#x}", layout.pid, layout.ppid, initial_brk, fixed);

    let start = monotonic_ns();
    let mut weights = WEIGHTS;
    for (k, w) in weights.iter_mut().enumerate() {
        if kinds & 1 << k == 0 {
            *w = 0;
        }
    }
    let run = Run { layout, seed, iterations, initial_brk, trace_from, weights };
    let handles = [0, 1, 2, 3].map(|i| (mask & 1 << i != 0).then(|| thread::spawn(move || fuzz(i, run))));
    let mut total = Stats::default();
    let mut failures = 0;
    let mut started = 0;
    for (i, h) in handles.into_iter().enumerate() {
        let r = match h {
            None => continue,
            Some(Ok(h)) => h.join(),
            Some(Err(e)) => {
                println!("sysfuzz: thread {} could not be started: {:?}", i + 1, e);
                failures += 1;
                continue;
            }
        };
        started += 1;
        failures += r.failures;
        for k in 0..KINDS {
            total.calls[k] += r.stats.calls[k];
            total.ok[k] += r.stats.ok[k];
        }
        println!("info: thread {}: {} calls, {} failed checks", i + 1, r.iterations, r.failures);
    }
    println!("info: fuzzing took {} ms", (monotonic_ns() - start) / 1_000_000);
    for (k, name) in KIND_NAMES.iter().enumerate().take(KINDS) {
        println!("info: {:>26}: {:>6} calls, {:>6} succeeded", name, total.calls[k], total.ok[k]);
    }
    println!("sysfuzz: {} threads done", started);
    match sanity(&layout, initial_brk) {
        Ok(()) => println!("sysfuzz: sanity ok"),
        Err(why) => {
            println!("sysfuzz: sanity FAIL: {}", why);
            return 1;
        }
    }
    if failures > 0 {
        println!("sysfuzz: {} checks failed", failures);
        return 1;
    }
    0
}
