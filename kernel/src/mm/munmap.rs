//! munmap, and the removal of VMAs and their pages that mmap(MAP_FIXED) and
//! brk share with it.

use core::sync::atomic::Ordering;

use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

use super::addrspace::AddressSpace;
use super::pages;
use super::paging::{ADDR_MASK, USER_HALF_END};
use super::tlb::TlbGather;
use super::vma::{Backing, MapError, MmapWriteGuard, Vma, MAX_MAP_COUNT};

impl AddressSpace {
    pub fn munmap(&self, start: u64, len: u64) -> Result<(), MapError> {
        let end = checked_range(start, len).ok_or(MapError::Invalid)?;
        let mut map = self.write_lock();
        self.munmap_locked(&mut map, start, end)
    }

    /// munmap of the page-aligned range [start, end) under the write lock
    /// (mremap unmaps with it too): removes the VMAs and their pages, frees
    /// the tables no VMA needs, and flushes before it returns.
    pub(super) fn munmap_locked(&self, map: &mut MmapWriteGuard, start: u64, end: u64) -> Result<(), MapError> {
        // Linux refuses only a split that would leave one VMA more than the limit.
        if map.splits_one_vma(start, end) && map.len() >= MAX_MAP_COUNT {
            return Err(MapError::NoMemory);
        }
        let mut gather = TlbGather::new();
        self.unmap_locked(map, start, end, &mut gather);
        self.free_page_tables(map, start, end, &mut gather);
        gather.finish(self, map);
        Ok(())
    }

    /// After [start, end) was unmapped: unlinks the page tables that no VMA
    /// left needs (those wholly between the neighbouring VMAs, Linux's
    /// free_pgtables floor and ceiling) into `gather`, which frees them
    /// after the flush. Faults may run meanwhile in other VMAs (under their
    /// read locks), but they walk only tables that cover their own VMA, and
    /// none of those is wholly in the gap; a fault in the gap finds no VMA,
    /// or a new one still write-locked, and waits for the mmap lock.
    pub(super) fn free_page_tables(&self, map: &MmapWriteGuard, start: u64, end: u64, gather: &mut TlbGather) {
        let (floor, ceiling) = mmsync::pgtable::free_range(
            map.prev(start).map(|vma| vma.end),
            map.next(end).map(|vma| vma.start),
            USER_HALF_END,
        );
        self.page_table.unlink_user_tables((start, end), (floor, ceiling), &mut |table| gather.tables.push(table));
    }

    /// Removes the VMAs (cut to size) in [start, end) and their translations
    /// (each VMA write-locked first); the caller finishes `gather` before
    /// dropping the guard.
    pub(super) fn unmap_locked(&self, map: &mut MmapWriteGuard, start: u64, end: u64, gather: &mut TlbGather) {
        for vma in map.remove_range(start, end) {
            self.zap(&vma, vma.start, vma.end, gather);
            gather.dropped_vmas.push(vma);
        }
    }

    /// Removes the translations of [start, end) in `vma` and collects what
    /// must be freed after the flush. Visits populated tables only.
    pub(super) fn zap(&self, vma: &Vma, start: u64, end: u64, gather: &mut TlbGather) {
        let private = matches!(vma.backing, Backing::Private);
        self.page_table.for_each_user_leaf(start, end, |page, pte| {
            let old = pte.swap(0, Ordering::AcqRel);
            if old == 0 {
                return;
            }
            gather.add_page(page);
            if private {
                gather.frames.push(PhysFrame::containing_address(PhysAddr::new(old & ADDR_MASK)));
            }
        });
    }
}

/// `start + len` page-rounded, if the range is aligned, non-empty and user space.
pub(super) fn checked_range(start: u64, len: u64) -> Option<u64> {
    if !pages::is_aligned(start) || len == 0 {
        return None;
    }
    pages::user_end(start, len)
}
