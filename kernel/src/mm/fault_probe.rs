//! TSC probes on the user page-fault path, for the per-phase breakdown in
//! docs/performance.md. Compiled in only with the `fault-probes` feature
//! (`make run KERNEL_FEATURES=fault-probes`); without it every call is empty
//! and inlines to nothing.
//!
//! Each CPU keeps the time of its last mark and adds the cycles since then
//! to the phase being closed. A fault starts the clock in the trap handler
//! and closes one phase at each mark, in order; a fault that is preempted or
//! takes another path (the mmap-lock fallback, a shared page) is not
//! counted, so the figures are of the common case only: a private page,
//! found under its VMA's read lock, on one CPU from start to end.

/// The phases, each ending at its mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Trap handler entry (`page_fault`) to the fault code with interrupts on.
    Decode = 0,
    /// Into `AddressSpace::fault`: its counter and the lock-mode check.
    Enter,
    /// The VMA tree lookup under RCU, and the reference taken on the VMA.
    TreeLookup,
    /// `vma_start_read`: the VMA's read lock.
    VmaLock,
    /// The page-table walk to the leaf entry (tables allocated if missing).
    Walk,
    /// A frame from the frame allocator.
    Alloc,
    /// Zeroing it.
    Zero,
    /// The compare-and-swap that installs the entry.
    Install,
    /// The VMA unlock and the way back to the trap handler's exit.
    Unlock,
    /// `return_to_user`: signals, RCU quiescent state, preemption check.
    ReturnToUser,
}

pub const PHASES: usize = 10;

pub const NAMES: [&str; PHASES] = [
    "decode",
    "enter",
    "tree lookup",
    "vma read lock",
    "walk",
    "frame alloc",
    "zero",
    "install",
    "unlock",
    "return_to_user",
];

#[cfg(feature = "fault-probes")]
mod imp {
    use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use super::{Phase, PHASES};
    use crate::arch::percpu::{self, MAX_CPUS};

    struct CpuProbe {
        /// The TSC at the last mark, and the phase expected next.
        last: AtomicU64,
        next: AtomicUsize,
        sums: [AtomicU64; PHASES],
        /// Per phase, how many faults took cycles in each bucket.
        histogram: [[AtomicU64; BUCKETS]; PHASES],
        faults: AtomicU64,
    }

    /// Quarter powers of two: bucket `b` holds about 2^(b/4) cycles.
    const BUCKETS: usize = 160;

    fn bucket(cycles: u64) -> usize {
        if cycles < 4 {
            return cycles as usize;
        }
        let msb = 63 - cycles.leading_zeros() as usize;
        (4 * msb + ((cycles >> (msb - 2)) & 3) as usize).min(BUCKETS - 1)
    }

    /// The lower bound of bucket `b`'s cycles.
    fn bucket_floor(b: usize) -> u64 {
        if b < 8 {
            return b as u64;
        }
        let msb = b / 4;
        (1u64 << msb) | (((b % 4) as u64) << (msb - 2))
    }

    const NONE: usize = usize::MAX;

    static PROBES: [CpuProbe; MAX_CPUS] = [const {
        CpuProbe {
            last: AtomicU64::new(0),
            next: AtomicUsize::new(NONE),
            sums: [const { AtomicU64::new(0) }; PHASES],
            histogram: [const { [const { AtomicU64::new(0) }; BUCKETS] }; PHASES],
            faults: AtomicU64::new(0),
        }
    }; MAX_CPUS];

    fn this_cpu() -> &'static CpuProbe {
        // A migration between marks shows as a phase out of order on the
        // other CPU, which drops that fault: no pinning needed.
        &PROBES[percpu::cpu_id()]
    }

    pub fn start() {
        let probe = this_cpu();
        probe.last.store(crate::arch::read_tsc(), Ordering::Relaxed);
        probe.next.store(Phase::Decode as usize, Ordering::Relaxed);
    }

    pub fn mark(phase: Phase) {
        let now = crate::arch::read_tsc();
        let probe = this_cpu();
        let expected = probe.next.load(Ordering::Relaxed);
        if expected != phase as usize {
            probe.next.store(NONE, Ordering::Relaxed);
            return;
        }
        // Phases of this fault are kept apart until it completes.
        let cycles = now.saturating_sub(probe.last.load(Ordering::Relaxed));
        probe.sums[phase as usize].fetch_add(cycles, Ordering::Relaxed);
        probe.histogram[phase as usize][bucket(cycles)].fetch_add(1, Ordering::Relaxed);
        probe.last.store(now, Ordering::Relaxed);
        if phase as usize + 1 == PHASES {
            probe.faults.fetch_add(1, Ordering::Relaxed);
            probe.next.store(NONE, Ordering::Relaxed);
        } else {
            probe.next.store(phase as usize + 1, Ordering::Relaxed);
        }
    }

    /// Faults measured on every CPU and the cycles of each phase, summed.
    /// An incomplete fault's early phases are included: at most one per CPU.
    pub fn totals() -> (u64, [u64; PHASES]) {
        let mut sums = [0u64; PHASES];
        let mut faults = 0;
        for probe in &PROBES {
            faults += probe.faults.load(Ordering::Relaxed);
            for (sum, cpu_sum) in sums.iter_mut().zip(&probe.sums) {
                *sum += cpu_sum.load(Ordering::Relaxed);
            }
        }
        (faults, sums)
    }

    /// Per phase, the median cycles over every CPU (to a bucket: within 19%).
    pub fn medians() -> [u64; PHASES] {
        let mut out = [0u64; PHASES];
        for (phase, median) in out.iter_mut().enumerate() {
            let count = |b: usize| PROBES.iter().map(|p| p.histogram[phase][b].load(Ordering::Relaxed)).sum::<u64>();
            let total: u64 = (0..BUCKETS).map(count).sum();
            let mut seen = 0;
            for b in 0..BUCKETS {
                seen += count(b);
                if seen * 2 >= total && total > 0 {
                    *median = bucket_floor(b);
                    break;
                }
            }
        }
        out
    }
}

#[cfg(not(feature = "fault-probes"))]
mod imp {
    use super::{Phase, PHASES};

    #[inline(always)]
    pub fn start() {}

    #[inline(always)]
    pub fn mark(_phase: Phase) {}

    pub fn totals() -> (u64, [u64; PHASES]) {
        (0, [0; PHASES])
    }

    pub fn medians() -> [u64; PHASES] {
        [0; PHASES]
    }
}

pub use imp::{mark, medians, start, totals};

/// Whether the probes are compiled in.
pub const ENABLED: bool = cfg!(feature = "fault-probes");
