//! Gather, then flush, then free: what an unmapping path collects while it
//! changes page-table entries, and the one way to finish it.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use x86_64::structures::paging::{PageTableFlags, PhysFrame};
use x86_64::VirtAddr;

use super::addrspace::AddressSpace;
use super::frame::Frame;
use super::lazy_tlb::flush_targets;
use super::pages::PAGE;
use super::vma::{Vma, VmaLockHeld};
use crate::arch::percpu;
use crate::arch::tlb::{shootdown, FlushScope, STATS};

/// Whether replacing entry `old` by `new` takes a right away (presence,
/// write or execute), so that CPUs caching `old` must flush it.
pub(super) fn loses_rights(old: u64, new: u64) -> bool {
    let present = PageTableFlags::PRESENT.bits();
    let writable = PageTableFlags::WRITABLE.bits();
    let no_exec = PageTableFlags::NO_EXECUTE.bits();
    old & present != 0
        && (new & present == 0
            || (old & writable != 0 && new & writable == 0)
            || (old & no_exec == 0 && new & no_exec != 0))
}

/// Pages whose translations were removed or reduced, and the frames to free
/// once every CPU has dropped them: gather, then flush, then free. Dropping
/// one with work still in it is a bug (checked in debug builds).
#[must_use = "finish() flushes the TLBs and frees the gathered frames"]
pub(super) struct TlbGather {
    pub(super) frames: Vec<PhysFrame>,
    /// VMAs removed (shared objects they hold are released after the flush).
    pub(super) dropped_vmas: Vec<Arc<Vma>>,
    /// Page-table pages unlinked from the tree (freed after the flush, as
    /// other CPUs' paging-structure caches may still point into them).
    pub(super) tables: Vec<PhysFrame>,
    first: u64,
    last: u64,
    pages: usize,
}

impl TlbGather {
    pub(super) fn new() -> Self {
        TlbGather {
            frames: Vec::new(),
            dropped_vmas: Vec::new(),
            tables: Vec::new(),
            first: u64::MAX,
            last: 0,
            pages: 0,
        }
    }

    pub(super) fn add_page(&mut self, page: u64) {
        self.first = self.first.min(page);
        self.last = self.last.max(page);
        self.pages += 1;
    }

    /// Flushes every CPU that runs `mm` (lazy ones catch up when they come
    /// back, unless tables were freed: see `lazy_tlb.rs`), then frees. `_held` borrows
    /// the lock under which the entries were changed (the mmap lock or the
    /// VMA's read lock), so the flush is done before that lock is released:
    /// a second munmap of the same range cannot return while another CPU
    /// still holds a translation.
    pub(super) fn finish(mut self, mm: &AddressSpace, _held: &impl VmaLockHeld) {
        if self.pages > 0 || !self.tables.is_empty() {
            // A freed table needs every paging-structure cache emptied: a full flush.
            let scope = if self.tables.is_empty() {
                FlushScope::Range {
                    start: VirtAddr::new(self.first),
                    pages: ((self.last - self.first) / PAGE + 1) as usize,
                }
            } else {
                FlushScope::All
            };
            // Pinned: "this CPU" in the targets and in the flush is one CPU.
            let _guard = percpu::PreemptGuard::new();
            let (cpus, skipped) = flush_targets(mm, !self.tables.is_empty());
            STATS.skipped_lazy.fetch_add(skipped as u64, Ordering::Relaxed);
            mm.stats.skipped_lazy.fetch_add(skipped as u64, Ordering::Relaxed);
            if !cpus.is_empty() {
                let others = cpus.len() - usize::from(cpus.contains(percpu::cpu_id()));
                mm.stats.shootdowns.fetch_add(1, Ordering::Relaxed);
                mm.stats.ipis.fetch_add(others as u64, Ordering::Relaxed);
                shootdown(cpus, scope);
            }
            mm.stats.tables_freed.fetch_add(self.tables.len() as u64, Ordering::Relaxed);
            self.pages = 0;
        }
        self.release();
    }

    /// Frees what was gathered, without a flush: for a space no CPU has loaded.
    pub(super) fn release(mut self) {
        // Each frame was a private (or removed shared) page's, whose entry
        // held it once and is gone.
        // SAFETY: every CPU dropped those translations (`finish`, or no CPU
        // ever loaded the space), and no frame is in the list twice.
        unsafe { Frame::free_raw_all(&self.frames) };
        self.frames.clear();
        for table in core::mem::take(&mut self.tables) {
            // SAFETY: the table came from `Frame::into_raw` when a walk
            // installed it; it is unlinked and every CPU has flushed.
            drop(unsafe { Frame::from_raw(table) });
        }
        drop(core::mem::take(&mut self.dropped_vmas));
        self.pages = 0;
    }
}

impl Drop for TlbGather {
    fn drop(&mut self) {
        debug_assert!(
            self.pages == 0 && self.frames.is_empty() && self.dropped_vmas.is_empty() && self.tables.is_empty(),
            "a TlbGather with work in it was dropped without finish()"
        );
    }
}
