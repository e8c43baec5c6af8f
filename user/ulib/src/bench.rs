//! What the benchmark programs share: the CPU count, pinning threads, a
//! spinning barrier, rates in thousandths, and counters from /proc/vmstat.
//! Everything works on Linux too (the same binaries measure both kernels).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::sys::{self, *};

/// The CPU count from the first call on: sched_getaffinity answers for the
/// calling thread, and once a thread has pinned itself (and its children
/// inherited that mask) it would say 1, and every later `pin` would pick
/// CPU 0.
static CPUS: AtomicUsize = AtomicUsize::new(0);

/// CPUs this process may run on (sched_getaffinity at the first call), at least 1.
pub fn cpu_count() -> usize {
    match CPUS.load(Ordering::Relaxed) {
        0 => {
            let n = sys::sched_getaffinity(0).map_or(1, |mask| (mask.count_ones() as usize).max(1));
            CPUS.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// The thread count a benchmark runs with: argv[`arg`] if it is a number,
/// else the CPU count.
pub fn threads_from_arg(arg: usize) -> usize {
    crate::env::arg(arg).and_then(crate::env::parse_u64).map_or_else(cpu_count, |n| n as usize).clamp(1, 64)
}

/// argv[`arg`] as the milliseconds a timed case runs (`default` if
/// absent): `make bench QUICK=1` runs shorter.
pub fn ms_from_arg(arg: usize, default: u64) -> u64 {
    crate::env::arg(arg).and_then(crate::env::parse_u64).unwrap_or(default).clamp(1, 600_000)
}

/// Set once some pinning failed (a kernel without sched_setaffinity).
static UNPINNED: AtomicBool = AtomicBool::new(false);

/// Pins the calling thread to CPU `cpu % cpu_count()`; on failure the
/// thread runs unpinned and [`pinning_report`] says so.
pub fn pin(cpu: usize) {
    let cpus = cpu_count();
    if sys::sched_setaffinity(0, 1u64 << (cpu % cpus).min(63)).is_err() {
        UNPINNED.store(true, Ordering::Relaxed);
    }
}

/// An `info:` line on whether [`pin`] worked, for the end of a run.
pub fn pinning_report(program: &str) {
    if UNPINNED.load(Ordering::Relaxed) {
        crate::println!("info: {}: sched_setaffinity failed, threads ran unpinned", program);
    } else {
        crate::println!("info: {}: threads pinned one per CPU", program);
    }
}

/// A barrier for `n` threads that spins, yielding the CPU between looks
/// (vCPUs may outnumber host cores, so a pure spin could starve the thread
/// it waits for). Reusable: each `wait` is one generation.
pub struct Barrier {
    n: AtomicUsize,
    arrived: AtomicUsize,
    generation: AtomicU32,
}

impl Barrier {
    pub const fn new(n: usize) -> Barrier {
        Barrier { n: AtomicUsize::new(n), arrived: AtomicUsize::new(0), generation: AtomicU32::new(0) }
    }

    /// Makes it a barrier for `n` threads; only while no thread waits on it.
    pub fn reset(&self, n: usize) {
        self.arrived.store(0, Ordering::SeqCst);
        self.n.store(n, Ordering::SeqCst);
    }

    pub fn wait(&self) {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n.load(Ordering::Relaxed) {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            spins += 1;
            if spins.is_multiple_of(64) {
                let _ = sched_yield();
            } else {
                core::hint::spin_loop();
            }
        }
    }
}

/// `count` per million `ticks`, in thousandths.
pub fn rate_milli(count: u64, ticks: u64) -> u64 {
    (count as u128 * 1_000_000_000 / ticks.max(1) as u128) as u64
}

/// A value in thousandths, printed with one decimal.
pub struct Milli(pub u64);

impl core::fmt::Display for Milli {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let tenths = (self.0 + 50) / 100;
        write!(f, "{}.{}", tenths / 10, tenths % 10)
    }
}

/// Writes one byte to each of `pages` pages from `p`.
///
/// # Safety
/// `p` must start a writable mapping of at least `pages` pages holding no
/// Rust values, whose pages no other thread writes at the same time.
#[inline(always)]
pub unsafe fn touch(p: *mut u8, pages: usize) {
    for i in 0..pages {
        // SAFETY: inside the mapping, by the contract.
        unsafe { core::ptr::write_volatile(p.add(i * PAGE_SIZE), 1) };
    }
}

/// Counters of /proc/vmstat, read into a fixed buffer.
pub struct Vmstat {
    buf: [u8; 4096],
    len: usize,
}

impl Vmstat {
    /// Reads /proc/vmstat (mounting /proc first if nothing is there, as on
    /// Linux booted with the program as init); None if it cannot.
    pub fn read() -> Option<Vmstat> {
        let fd = match sys::open(b"/proc/vmstat\0", O_RDONLY) {
            Ok(fd) => fd,
            Err(_) => {
                let _ = sys::mkdir(b"/proc\0", 0o555);
                let _ = sys::mount(b"proc\0", b"/proc\0", b"proc\0", 0);
                sys::open(b"/proc/vmstat\0", O_RDONLY).ok()?
            }
        };
        let mut v = Vmstat { buf: [0; 4096], len: 0 };
        // Linux's vmstat is longer than the buffer; the counters we look for
        // are either ours (a short file) or absent.
        while v.len < v.buf.len() {
            match sys::read(fd as i32, &mut v.buf[v.len..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => v.len += n,
            }
        }
        let _ = sys::close(fd);
        Some(v)
    }

    /// The value of counter `name`, if the file has it.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.buf[..self.len].split(|&b| b == b'\n').find_map(|line| {
            let rest = line.strip_prefix(name.as_bytes())?.strip_prefix(b" ")?;
            crate::env::parse_u64(rest)
        })
    }
}

/// The threads of [`parallel`] start and stop together here.
static GATE: Barrier = Barrier::new(1);
/// CLOCK_MONOTONIC nanoseconds at which [`keep_going`] turns false.
static DEADLINE_NS: AtomicU64 = AtomicU64::new(0);
static PAGES_DONE: AtomicU64 = AtomicU64::new(0);

/// Whether the current [`parallel`] run has time left (a clock_gettime:
/// call it once per round of work, not per page).
pub fn keep_going() -> bool {
    sys::monotonic_ns() < DEADLINE_NS.load(Ordering::Relaxed)
}

/// Runs `work(thread, arg)` on `n` threads at once (thread 0 is the caller),
/// thread `i` pinned to CPU `i`, for about `ms` milliseconds: each thread
/// works in rounds while [`keep_going`], and returns the pages it did.
/// Returns the TSC ticks thread 0 saw from the barrier that starts the
/// threads to the one the last reaches, and all threads' pages: an
/// aggregate rate however the host schedules the vCPUs, and a run time that
/// does not grow with the host's load. Thread creation is not timed.
pub fn parallel(n: usize, ms: u64, work: fn(usize, usize) -> u64, arg: usize) -> (u64, u64) {
    const MAX: usize = 64;
    let n = n.clamp(1, MAX);
    GATE.reset(n);
    PAGES_DONE.store(0, Ordering::SeqCst);
    pin(0);
    let mut others: [Option<crate::thread::JoinHandle<()>>; MAX] = [const { None }; MAX];
    for (i, slot) in others.iter_mut().enumerate().take(n).skip(1) {
        *slot = Some(
            crate::thread::spawn(move || {
                pin(i);
                GATE.wait();
                PAGES_DONE.fetch_add(work(i, arg), Ordering::Relaxed);
                GATE.wait();
            })
            .expect("spawn a benchmark thread"),
        );
    }
    DEADLINE_NS.store(sys::monotonic_ns() + ms * 1_000_000, Ordering::SeqCst);
    GATE.wait();
    let start = rdtsc();
    PAGES_DONE.fetch_add(work(0, arg), Ordering::Relaxed);
    GATE.wait();
    let ticks = rdtsc().wrapping_sub(start);
    for t in others.into_iter().flatten() {
        t.join();
    }
    (ticks, PAGES_DONE.load(Ordering::SeqCst))
}

/// Call last, before returning from main: when the program is PID 1 on
/// Linux (make bench boots it as /init), the kernel panics the moment it
/// exits, and console output still queued in the tty is lost; 300 ms lets
/// the serial port drain. Elsewhere (not PID 1) it does nothing. Our kernel
/// runs it as PID 1 too: the wait costs a boot 0.3 s.
pub fn drain_console_before_exit() {
    if sys::getpid() == 1 {
        sys::sleep_ms(300);
    }
}
