//! Which page tables munmap may free, and their unlinking: the kernel's
//! `PageTable::unlink_user_tables` and `AddressSpace::free_page_tables`
//! (`kernel/src/mm/paging.rs`, `munmap.rs`) call this; `tests/pgtable.rs`
//! model-checks it against faults installing tables next to the munmap.
//!
//! The rule (Linux's free_pgtables floor and ceiling): after [start, end) is
//! unmapped, a table may be freed only if it lies wholly between the
//! neighbouring VMAs, in [floor, ceiling) with floor the previous VMA's end
//! and ceiling the next one's start. Such a table serves no VMA, so no fault
//! walks it: a fault walks only tables that cover its own VMA, under that
//! VMA's read lock, and munmap write-locks every VMA it removes. A table
//! that a remaining VMA overlaps stays, even if that VMA has no page in it
//! yet: a fault there may be installing one (by CAS on the parent entry,
//! then into the table) at this very moment.
//!
//! The table layout is the caller's ([`Tables`]): the kernel's four levels
//! of 512 entries, or a model's two levels of two, with loom's atomics.

use crate::sync::{AtomicU64, Ordering};

/// Deliberately broken variants, for the model to prove it can fail. Only
/// a loom build's [`Tables`] can select one; the kernel's is always `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// The rule as the kernel runs it.
    None,
    /// The floor is one page too low: a table the previous VMA still
    /// overlaps (by its last page) is freed.
    FloorOffByOne,
    /// The ceiling is one page too high: a table the next VMA still
    /// overlaps (by its first page) is freed.
    CeilingOffByOne,
}

/// A page-table layout: where entries are and what they lead to.
pub trait Tables {
    /// log2 of the size of the smallest page (the span of a leaf entry).
    const PAGE_SHIFT: u32;
    /// log2 of the entries per table.
    const INDEX_BITS: u32;

    /// Entry `index` of the table named `table` (an address, a frame, a
    /// model's number: whatever the caller's entries lead to).
    fn entry(&self, table: u64, index: usize) -> &AtomicU64;

    /// The table an entry at a level above the leaves leads to, if it leads
    /// to one (present and not a huge page).
    fn child(&self, value: u64) -> Option<u64>;

    /// The broken variant to run (loom models only).
    fn mutation(&self) -> Mutation {
        Mutation::None
    }
}

/// The address span of one entry of a level-`level` table (1: the leaves).
pub fn entry_span<T: Tables>(level: u8) -> u64 {
    1u64 << (T::PAGE_SHIFT + T::INDEX_BITS * (level as u32 - 1))
}

/// The range page tables may be freed in after an unmap: from the previous
/// VMA's end (`prev_end`, none: 0) to the next one's start (`next_start`,
/// none: `top`, the end of the user half).
pub fn free_range(prev_end: Option<u64>, next_start: Option<u64>, top: u64) -> (u64, u64) {
    (prev_end.unwrap_or(0), next_start.unwrap_or(top))
}

/// Whether a table covering [`table.0`, `table.1`) may be freed given the
/// free range `keep` (from [`free_range`]): only if it lies wholly inside.
pub fn may_free(table: (u64, u64), keep: (u64, u64), mutation: Mutation, page: u64) -> bool {
    let (floor, ceiling) = match mutation {
        Mutation::None => keep,
        Mutation::FloorOffByOne => (keep.0.saturating_sub(page), keep.1),
        Mutation::CeilingOffByOne => (keep.0, keep.1 + page),
    };
    floor <= table.0 && table.1 <= ceiling
}

/// Unlinks the tables below `root` (a level-`root_level` table covering
/// addresses from 0) that meet [`range.0`, `range.1`) and that
/// [`may_free`] allows given `keep`: each one's parent entry is cleared
/// (release), then `unlinked(table, level)` is called with it (the caller
/// retires it and everything below it, to be freed after the TLB flush).
/// Tables it may not free are descended into, down to level 2.
///
/// Caller's contract: nothing is mapped in `keep` and no fault walks tables
/// wholly in it (the VMAs that covered them are write-locked or gone).
pub fn unlink_tables<T: Tables>(
    tables: &T,
    root: u64,
    root_level: u8,
    range: (u64, u64),
    keep: (u64, u64),
    unlinked: &mut dyn FnMut(u64, u8),
) {
    fn visit<T: Tables>(
        tables: &T,
        table: u64,
        level: u8,
        base: u64,
        range: (u64, u64),
        keep: (u64, u64),
        unlinked: &mut dyn FnMut(u64, u8),
    ) {
        let span = entry_span::<T>(level);
        let first = ((range.0 - base) / span) as usize;
        let last = ((range.1 - 1 - base) / span) as usize;
        for index in first..=last {
            let entry = tables.entry(table, index);
            let Some(child) = tables.child(entry.load(Ordering::Acquire)) else { continue };
            let child_start = base + index as u64 * span;
            let child_end = child_start + span;
            if may_free((child_start, child_end), keep, tables.mutation(), entry_span::<T>(1)) {
                entry.store(0, Ordering::Release);
                unlinked(child, level - 1);
            } else if level > 2 {
                let clipped = (range.0.max(child_start), range.1.min(child_end));
                visit(tables, child, level - 1, child_start, clipped, keep, unlinked);
            }
        }
    }
    if range.0 < range.1 {
        visit(tables, root, root_level, 0, range, keep, unlinked);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_freed_only_wholly_between_the_neighbours() {
        let page = 4096;
        let keep = free_range(Some(0x1000), Some(0x40_0000), 1 << 47);
        assert_eq!(keep, (0x1000, 0x40_0000));
        // The table of [0, 2 MiB) holds the previous VMA's page 0: kept.
        assert!(!may_free((0, 0x20_0000), keep, Mutation::None, page));
        assert!(may_free((0x20_0000, 0x40_0000), keep, Mutation::None, page));
        // Touching the next VMA's first page: kept.
        assert!(!may_free((0x20_0000, 0x40_1000), keep, Mutation::None, page));
        // The broken floor frees the previous VMA's table.
        assert!(may_free((0, 0x20_0000), keep, Mutation::FloorOffByOne, page));
        assert!(may_free((0x20_0000, 0x40_1000), keep, Mutation::CeilingOffByOne, page));
        assert_eq!(free_range(None, None, 1 << 47), (0, 1 << 47));
    }
}
