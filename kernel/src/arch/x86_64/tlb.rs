//! TLB control: local flushes, and shootdowns on other CPUs through
//! cross-CPU calls (which wait for every target to finish).

use ::x86_64::registers::control::Cr3;
use ::x86_64::VirtAddr;

use core::sync::atomic::{AtomicU64, Ordering};

use super::ipi::{call_on, CpuSet};

/// Above this many pages a full flush is cheaper than `invlpg` per page
/// (Linux uses the same ceiling).
pub const FLUSH_CEILING_PAGES: usize = 33;

/// Drops this CPU's translation for the page holding `addr`.
pub fn flush_page(addr: VirtAddr) {
    ::x86_64::instructions::tlb::flush(addr);
}

/// Drops every non-global translation on this CPU by reloading CR3.
pub fn flush_all() {
    let (frame, flags) = Cr3::read();
    // SAFETY: writing back the current root and flags keeps the same address
    // space; the only effect is the TLB flush.
    unsafe { Cr3::write(frame, flags) };
}

/// What to flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushScope {
    /// `pages` pages from `start` (a full flush above the ceiling).
    Range {
        start: VirtAddr,
        pages: usize,
    },
    All,
}

/// Flushes `scope` on this CPU.
pub fn flush_local(scope: FlushScope) {
    match scope {
        FlushScope::Range { start, pages } if pages <= FLUSH_CEILING_PAGES => {
            STATS.invlpg_pages.fetch_add(pages as u64, Ordering::Relaxed);
            for i in 0..pages as u64 {
                flush_page(start + i * 4096);
            }
        }
        _ => {
            STATS.full_flushes.fetch_add(1, Ordering::Relaxed);
            flush_all()
        }
    }
}

/// Flushes `scope` on every CPU in `cpus` (this one too, if it is in the set),
/// returning only when all have done it.
///
/// The caller must be pinned (a `PreemptGuard`, or interrupts off) from
/// before it computes `cpus` until this returns, so that "this CPU" in the
/// set and in the flush is the same CPU; checked in debug builds.
pub fn shootdown(cpus: CpuSet, scope: FlushScope) {
    debug_assert!(super::percpu::pinned(), "a TLB shootdown from code that can migrate: pin first (PreemptGuard)");
    if cpus.is_empty() {
        return;
    }
    let mut others = cpus;
    others.remove(super::percpu::cpu_id());
    STATS.shootdowns.fetch_add(1, Ordering::Relaxed);
    STATS.ipis.fetch_add(others.len() as u64, Ordering::Relaxed);
    let start = super::read_tsc();
    call_on(cpus, &move || flush_local(scope));
    if !others.is_empty() {
        STATS.remote_waits.fetch_add(1, Ordering::Relaxed);
        STATS.remote_wait_cycles.fetch_add(super::read_tsc().saturating_sub(start), Ordering::Relaxed);
    }
}

/// Machine-wide TLB counters.
#[derive(Debug, Default)]
pub struct TlbStats {
    /// `shootdown` calls with a non-empty CPU set.
    pub shootdowns: AtomicU64,
    /// Flush requests sent to other CPUs (one IPI each).
    pub ipis: AtomicU64,
    /// Pages flushed one by one with `invlpg`, on any CPU.
    pub invlpg_pages: AtomicU64,
    /// Full flushes (CR3 reloads), on any CPU.
    pub full_flushes: AtomicU64,
    /// Shootdowns that involved other CPUs, and the TSC cycles their callers
    /// spent from sending the IPIs until the last CPU had flushed.
    pub remote_waits: AtomicU64,
    pub remote_wait_cycles: AtomicU64,
    /// CPUs a flush left alone because they had the space loaded only
    /// lazily (running a kernel thread), and the full flushes such CPUs did
    /// when they came back to it (`mm/lazy_tlb.rs`).
    pub skipped_lazy: AtomicU64,
    pub lazy_catchups: AtomicU64,
    /// Idle CPUs that dropped a lazily kept table before halting.
    pub lazy_leaves: AtomicU64,
}

pub static STATS: TlbStats = TlbStats {
    shootdowns: AtomicU64::new(0),
    ipis: AtomicU64::new(0),
    invlpg_pages: AtomicU64::new(0),
    full_flushes: AtomicU64::new(0),
    remote_waits: AtomicU64::new(0),
    remote_wait_cycles: AtomicU64::new(0),
    skipped_lazy: AtomicU64::new(0),
    lazy_catchups: AtomicU64::new(0),
    lazy_leaves: AtomicU64::new(0),
};
