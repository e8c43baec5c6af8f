//! mprotect: new protection for a range, splitting and merging VMAs.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::addrspace::AddressSpace;
use super::paging::ADDR_MASK;
use super::tlb::{loses_rights, TlbGather};
use super::vma::{MapError, Prot, Vma, VmaLock, VmaMap, MAX_MAP_COUNT, PTE_PROT_NONE};

impl AddressSpace {
    /// Applies `prot` to the page-aligned range [start, end); fails with
    /// NoMemory at the first hole (VMAs before it keep the change, as on
    /// Linux), or when the VMAs it would leave exceed the limit.
    pub fn mprotect(&self, start: u64, end: u64, prot: Prot) -> Result<(), MapError> {
        let mut map = self.write_lock();
        if map.find(start).is_none() {
            return Err(MapError::NoMemory);
        }
        // Refused only if it adds VMAs beyond the limit (Linux refuses a split
        // at the limit, not a merge or a moved boundary). Counting the result
        // costs a walk of the range: only near the limit.
        if map.len() + 2 > MAX_MAP_COUNT {
            let after = map.count_after_mprotect(start, end, prot);
            if after > MAX_MAP_COUNT && after > map.len() {
                return Err(MapError::NoMemory);
            }
        }
        let mut gather = TlbGather::new();
        map.split_at(start);
        map.split_at(end);
        let mut result = Ok(());
        let mut cursor = start;
        while cursor < end {
            // The old VMA is write-locked (its faults are done) before its
            // entries change; the new one stays locked until we are done.
            let Some((vma_end, changed)) = map.set_prot(cursor, prot) else {
                result = Err(MapError::NoMemory);
                break;
            };
            if changed {
                self.change_protection(cursor, vma_end, prot, &mut gather);
            }
            cursor = vma_end;
        }
        let touched: Vec<u64> = map.range(start, end + 1).map(|vma| vma.start).collect();
        for boundary in touched.into_iter().chain([start, end]) {
            map.merge_at(boundary);
        }
        gather.finish(self, &map);
        result
    }

    /// Rewrites the entries of [start, end) for protection `prot`. Only
    /// entries that lose a right need a flush: a stale entry with fewer rights
    /// than the VMA allows just causes a spurious fault, which `handle_fault`
    /// repairs.
    pub(super) fn change_protection(&self, start: u64, end: u64, prot: Prot, gather: &mut TlbGather) {
        let bits = if prot.is_none() { PTE_PROT_NONE } else { prot.pte_flags().bits() };
        self.page_table.for_each_user_leaf(start, end, |page, pte| {
            let update = pte.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                (old != 0 && old & !ADDR_MASK != bits).then_some((old & ADDR_MASK) | bits)
            });
            if let Ok(old) = update {
                if loses_rights(old, (old & ADDR_MASK) | bits) {
                    gather.add_page(page);
                }
            }
        });
    }

    /// For mprotect with PROT_GROWSUP (`at_start`: a VMA contains `start`)
    /// or PROT_GROWSDOWN (a VMA meets [start, end)).
    pub fn has_vma_in(&self, start: u64, end: u64, at_start: bool) -> bool {
        let map = self.read_lock();
        if at_start {
            map.find(start).is_some()
        } else {
            map.overlaps(start, end)
        }
    }
}

impl VmaMap {
    /// How many VMAs there would be after `mprotect(start, end, prot)`
    /// (stopping at the first hole, as the call does): splits add, merges
    /// with alike neighbours take away.
    fn count_after_mprotect(&self, start: u64, end: u64, prot: Prot) -> usize {
        let piece = |vma: &Vma, from: u64, to: u64, prot: Prot| vma.piece(from, to, prot, VmaLock::new(None));
        let mut pieces: Vec<Vma> = Vec::new();
        let mut replaced = 0;
        if let Some(before) = self.prev(start).filter(|v| v.end == start) {
            pieces.push(piece(before, before.start, before.end, before.prot));
            replaced += 1;
        }
        let mut cursor = start;
        for vma in self.range(start, end) {
            if vma.start > cursor {
                break;
            }
            replaced += 1;
            let (from, to) = (vma.start.max(start), vma.end.min(end));
            if vma.start < from {
                pieces.push(piece(vma, vma.start, from, vma.prot));
            }
            pieces.push(piece(vma, from, to, prot));
            if to < vma.end {
                pieces.push(piece(vma, to, vma.end, vma.prot));
            }
            cursor = vma.end;
        }
        if let Some(after) = self.get(cursor.min(end)).filter(|_| cursor >= end) {
            pieces.push(piece(after, after.start, after.end, after.prot));
            replaced += 1;
        }
        let merged = pieces.windows(2).filter(|pair| pair[0].can_merge_with(&pair[1])).count();
        self.len() - replaced + pieces.len() - merged
    }
}
