//! RCU's grace-period bookkeeping (quiescent-state based), without the
//! kernel: `kernel/src/sync/rcu.rs` keeps the read sections, the callback
//! lists and the hooks, and calls this for everything about grace periods.
//! The caller supplies the CPUs ([`Cpus`]: which one runs, its reported-GP
//! word, interrupt masking); the kernel's are real, a loom model's are its
//! threads.
//!
//! # Grace periods
//!
//! `gp_seq` counts GPs started, `completed` GPs ended; `completed` is
//! `gp_seq` or `gp_seq - 1` (one GP at a time). `pending` holds the CPUs that
//! have not yet passed a QS in GP `gp_seq`. Starting GP `g` stores
//! `pending = members` *then* publishes `gp_seq = g`. A CPU that loads
//! `gp_seq == g` and has not reported for `g` yet (its `reported < g`) clears
//! its bit with one `fetch_and`; the CPU that clears the last bit stores
//! `completed = g` and starts the next GP if someone asked for one
//! (`requested > g`). Nobody waits on another CPU's lock: only starting a GP
//! needs exclusion, and that is a try-lock (`starting`) whose holder
//! re-checks after releasing it.
//!
//! `members` is fixed at [`GpState::init`]: every CPU that reports is a
//! member of every GP, so when it loads `gp_seq == g` and has not reported
//! for `g`, its bit in `pending` is still set for `g` (only it clears it, and
//! GP `g` cannot end, nor `g + 1` start, without it).
//!
//! # Ordering argument
//!
//! A writer unpublishes with `W(ptr)`, then ([`GpState::next_gp`]) runs a
//! SeqCst fence `Fw` and a SeqCst load `Rw(gp_seq) = g - 1`, so it waits for
//! GP `g`. CPU `c` reports for `g` by `Rc(gp_seq) = g` (SeqCst), a SeqCst
//! fence `Fc`, then `fetch_and` on `pending` (SeqCst).
//!
//! 1. Every member's report for `g` happens before `completed = g` is seen:
//!    the `fetch_and`s of GP `g` form one RMW chain on `pending` from the
//!    starter's store; the last acquires all earlier ones, then stores
//!    `completed = g`, which the writer acquires.
//! 2. A read section on `c` that saw the old pointer lies wholly before `c`'s
//!    report for `g`: otherwise `Fw < Rw(gp_seq)` (program order),
//!    `Rw(gp_seq)` coherence-before `Ws(gp_seq = g)`, which happens before
//!    `Rc(gp_seq) < Fc`, so `Fw` precedes `Fc` in the SeqCst order, and the
//!    fence rule makes the section's load (after `Fc`) see `W(ptr)` (before
//!    `Fw`). Only fences and happens-before are used, which loom models.
//! 3. So every section that could hold the old object is sequenced before a
//!    report that happens before the GP's end is seen.
//!
//! Reports never nest (the caller runs them with interrupts masked,
//! [`Cpus::without_interrupts`]): an interrupted report finished by the tick
//! and then resumed could clear its bit in the next GP's mask with a load of
//! the old `gp_seq`, which step 2 does not cover.
//!
//! Starting: a requester stores `requested` (SeqCst) and then checks
//! `completed` and the try-lock; a completer stores `completed`, a lock
//! holder releases the lock (SeqCst), and each then re-checks `requested`.
//! (That liveness argument rests on SeqCst accesses, which loom treats as
//! acquire/release; the kernel's tick and the waiters' loops also retry
//! [`GpState::try_start_gp`], and so do the models.)

use crate::sync::{fence, AtomicBool, AtomicU64, Ordering};

/// Deliberately broken variants, for the models to prove they can fail.
/// Only loom builds can select one (`GpState::mutated`); the kernel always
/// runs `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// The bookkeeping as the kernel runs it.
    None,
    /// A report skips its SeqCst fence (`Fc`).
    NoReportFence,
    /// `next_gp` skips its SeqCst fence (`Fw`).
    NoUnpublishFence,
    /// A report does not check that it has not reported for the GP it
    /// loaded (neither the fast path nor `reported < gp`), so a stale
    /// report can count in a later GP.
    ReportIgnoresGp,
    /// A GP's number is published before its `pending` mask.
    PendingAfterGpSeq,
    /// `next_gp` returns the current GP instead of the next one.
    TargetCurrentGp,
}

/// What the bookkeeping needs from the machine.
pub trait Cpus {
    /// The CPU this runs on. Stale the moment it returns unless the caller
    /// cannot migrate (inside `without_interrupts`).
    fn current(&self) -> usize;
    /// CPU `cpu`'s own GP state.
    fn cpu(&self, cpu: usize) -> &CpuGp;
    /// Runs `f` with this CPU's interrupts masked (so reports never nest).
    fn without_interrupts<R>(&self, f: impl FnOnce() -> R) -> R;
    /// Debug check, interrupts masked, before `cpu` reports a QS: the
    /// kernel asserts it is outside any read section.
    fn check_quiescent(&self, _cpu: usize) {}
    /// Debug check by whoever starts a GP over `members`: the kernel asserts
    /// that no CPU came online after `init`.
    fn check_members(&self, _members: u64) {}
}

/// One CPU's GP state: the last GP it reported a QS for. Only the CPU
/// itself changes it.
#[derive(Debug)]
pub struct CpuGp {
    reported: AtomicU64,
}

impl CpuGp {
    #[cfg(not(loom))]
    pub const fn new() -> CpuGp {
        CpuGp { reported: AtomicU64::new(0) }
    }

    #[cfg(loom)]
    pub fn new() -> CpuGp {
        CpuGp { reported: AtomicU64::new(0) }
    }

    /// The last GP this CPU reported a QS for.
    pub fn reported(&self) -> u64 {
        self.reported.load(Ordering::Relaxed)
    }
}

impl Default for CpuGp {
    fn default() -> Self {
        CpuGp::new()
    }
}

/// The grace-period state shared by all CPUs.
#[derive(Debug)]
pub struct GpState {
    /// Grace periods started.
    gp_seq: AtomicU64,
    /// Grace periods ended: `gp_seq` or `gp_seq - 1`.
    completed: AtomicU64,
    /// CPUs yet to pass a QS in GP `gp_seq`.
    pending: AtomicU64,
    /// The highest GP anybody waits for.
    requested: AtomicU64,
    /// Try-lock of whoever starts a GP.
    starting: AtomicBool,
    /// CPUs taking part in every GP (set by `init`); 0 before.
    members: AtomicU64,
    /// Grace periods that ended (a statistic).
    grace_periods: AtomicU64,
    #[cfg(loom)]
    mutation: Mutation,
}

impl GpState {
    /// Before `init`: no GP runs, none can start.
    #[cfg(not(loom))]
    pub const fn new() -> GpState {
        GpState {
            gp_seq: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            requested: AtomicU64::new(0),
            starting: AtomicBool::new(false),
            members: AtomicU64::new(0),
            grace_periods: AtomicU64::new(0),
        }
    }

    /// Before `init`: no GP runs, none can start.
    #[cfg(loom)]
    pub fn new() -> GpState {
        GpState::mutated(Mutation::None)
    }

    /// A broken variant (loom only).
    #[cfg(loom)]
    pub fn mutated(mutation: Mutation) -> GpState {
        GpState {
            gp_seq: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            requested: AtomicU64::new(0),
            starting: AtomicBool::new(false),
            members: AtomicU64::new(0),
            grace_periods: AtomicU64::new(0),
            mutation,
        }
    }

    #[cfg(loom)]
    fn mutation(&self) -> Mutation {
        self.mutation
    }

    #[cfg(not(loom))]
    #[inline(always)]
    fn mutation(&self) -> Mutation {
        Mutation::None
    }

    /// Fixes the members (a bit per CPU id) and starts a GP if callbacks
    /// queued before asked for one. Once, before anything waits for a GP.
    pub fn init(&self, members: u64, cpus: &impl Cpus) {
        assert!(members != 0, "RCU with no CPU online");
        let before = self.members.swap(members, Ordering::SeqCst);
        assert_eq!(before, 0, "rcu::init called twice");
        self.try_start_gp(cpus);
    }

    /// The members; 0 before `init`.
    pub fn members(&self) -> u64 {
        self.members.load(Ordering::Acquire)
    }

    /// The last GP started.
    pub fn gp_seq(&self) -> u64 {
        self.gp_seq.load(Ordering::SeqCst)
    }

    /// The last GP ended (acquire: every member's reports for it, and what
    /// they were sequenced after, are visible).
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// Grace periods that ended.
    pub fn grace_periods(&self) -> u64 {
        self.grace_periods.load(Ordering::Relaxed)
    }

    /// The CPU running this is outside any read section: reports a QS for
    /// the current GP if it has not yet, with interrupts masked. Returns
    /// the GP it reported for, if it reported.
    pub fn quiescent_state(&self, cpus: &impl Cpus) -> Option<u64> {
        // Fast path without masking interrupts: nothing new to report.
        // A stale CPU id (a migration) can only skip a report, which is safe.
        let hint = cpus.current();
        if self.mutation() != Mutation::ReportIgnoresGp
            && cpus.cpu(hint).reported.load(Ordering::Relaxed) == self.gp_seq.load(Ordering::Relaxed)
        {
            return None;
        }
        cpus.without_interrupts(|| self.report(cpus))
    }

    /// The report proper; interrupts are masked.
    fn report(&self, cpus: &impl Cpus) -> Option<u64> {
        let cpu = cpus.current();
        cpus.check_quiescent(cpu);
        let this = cpus.cpu(cpu);
        let bit = 1u64 << cpu;
        let mutation = self.mutation();
        let gp = self.gp_seq.load(Ordering::SeqCst);
        let last = this.reported.load(Ordering::Relaxed);
        let due = last < gp || (mutation == Mutation::ReportIgnoresGp && gp != 0);
        if !due || self.members.load(Ordering::Relaxed) & bit == 0 {
            return None;
        }
        // Fc of the ordering argument: sections after this report see
        // every unpublish done before GP `gp` was asked for.
        if mutation != Mutation::NoReportFence {
            fence(Ordering::SeqCst);
        }
        debug_assert!(mutation != Mutation::None || last + 1 == gp, "cpu {cpu} skipped a grace period");
        this.reported.store(gp, Ordering::Relaxed);
        let before = self.pending.fetch_and(!bit, Ordering::SeqCst);
        debug_assert!(mutation != Mutation::None || before & bit != 0, "cpu {cpu} reported twice for GP {gp}");
        if before == bit {
            self.complete(gp, cpus);
        }
        Some(gp)
    }

    /// Ends GP `gp` (the caller cleared the last bit of `pending`).
    fn complete(&self, gp: u64, cpus: &impl Cpus) {
        debug_assert!(
            self.mutation() != Mutation::None || self.completed.load(Ordering::Relaxed) + 1 == gp,
            "GP {gp} ended out of turn"
        );
        self.completed.store(gp, Ordering::SeqCst);
        self.grace_periods.fetch_add(1, Ordering::Relaxed);
        self.try_start_gp(cpus);
    }

    /// Whether no GP runs and somebody waits for one.
    pub fn gp_wanted(&self) -> bool {
        if self.members.load(Ordering::Acquire) == 0 {
            return false;
        }
        let gp = self.gp_seq.load(Ordering::SeqCst);
        self.completed.load(Ordering::SeqCst) == gp && self.requested.load(Ordering::SeqCst) > gp
    }

    /// Starts a GP if one is wanted and nobody else is starting one. Never
    /// waits: a busy try-lock means its holder will re-check after releasing.
    pub fn try_start_gp(&self, cpus: &impl Cpus) {
        while self.gp_wanted() {
            if self.starting.compare_exchange(false, true, Ordering::SeqCst, Ordering::Relaxed).is_err() {
                return;
            }
            // Re-checked under the lock: another starter may just have done it.
            if self.gp_wanted() {
                let members = self.members.load(Ordering::Relaxed);
                cpus.check_members(members);
                let gp = self.gp_seq.load(Ordering::Relaxed) + 1;
                if self.mutation() == Mutation::PendingAfterGpSeq {
                    self.gp_seq.store(gp, Ordering::SeqCst);
                    self.pending.store(members, Ordering::SeqCst);
                } else {
                    // The mask before the number: whoever sees GP `gp` sees its mask.
                    self.pending.store(members, Ordering::SeqCst);
                    self.gp_seq.store(gp, Ordering::SeqCst);
                }
            }
            self.starting.store(false, Ordering::SeqCst);
            // Loop: a request or completion that found the lock taken is ours.
        }
    }

    /// Asks for GP `target` to be started (once the one before it ended).
    pub fn request(&self, target: u64, cpus: &impl Cpus) {
        self.requested.fetch_max(target, Ordering::SeqCst);
        self.try_start_gp(cpus);
    }

    /// The GP that will have ended once every reader that might have seen an
    /// object unpublished before this call has left: the next one to start.
    pub fn next_gp(&self) -> u64 {
        // Fw of the ordering argument, after the caller's unpublish.
        let mutation = self.mutation();
        if mutation != Mutation::NoUnpublishFence {
            fence(Ordering::SeqCst);
        }
        let current = self.gp_seq.load(Ordering::SeqCst);
        if mutation == Mutation::TargetCurrentGp {
            current
        } else {
            current + 1
        }
    }
}

impl Default for GpState {
    fn default() -> Self {
        GpState::new()
    }
}
