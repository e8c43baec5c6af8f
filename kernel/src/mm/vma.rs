//! VMAs: what a range of an address space is (protection, private or
//! shared memory), and the set of them that `mmap_lock` guards.
//!
//! | field | guarded by |
//! |---|---|
//! | `VmaMap` (the VMAs, `brk`, the mmap cursor) | `AddressSpace::vmas`, the `mmap_lock`: read for lookups (faults), write for changes |
//! | `Vma` fields | the same: a `Vma` is changed only through a `&mut VmaMap` |
//! | `SharedMemory::pages` | its own spinlock (faults under the read lock add pages) |

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

use x86_64::structures::paging::{PageTableFlags, PhysFrame};

use super::frame::Frame;
use super::pages::PAGE;
use super::tlb::TlbGather;
use crate::sync::SpinLock;

/// At most this many VMAs per address space (Linux's vm.max_map_count):
/// past it, calls that would add one fail with ENOMEM.
pub const MAX_MAP_COUNT: usize = 65_530;
/// Lowest address mmap hands out on its own.
pub(super) const MMAP_MIN: u64 = 0x1_0000;

/// A software bit in a non-present entry: the page exists but its VMA is
/// PROT_NONE; the rest of the entry keeps the frame address.
pub(super) const PTE_PROT_NONE: u64 = 1 << 9;

bitflags::bitflags! {
    /// PROT_* bits of mmap and mprotect.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Prot: u32 {
        const READ = 1;
        const WRITE = 2;
        const EXEC = 4;
    }
}

impl Prot {
    /// Entry flags for a present page of a VMA with this protection.
    pub(super) fn pte_flags(self) -> PageTableFlags {
        let mut flags = PageTableFlags::PRESENT | PageTableFlags::USER_ACCESSIBLE;
        if self.contains(Prot::WRITE) {
            flags |= PageTableFlags::WRITABLE;
        }
        if !self.contains(Prot::EXEC) {
            flags |= PageTableFlags::NO_EXECUTE;
        }
        flags
    }

    pub(super) fn is_none(self) -> bool {
        self.is_empty()
    }
}

/// Anonymous memory shared by every VMA that maps it (MAP_SHARED).
#[derive(Debug, Default)]
pub struct SharedMemory {
    /// Page index -> frame, owned here.
    pages: SpinLock<BTreeMap<u64, PhysFrame>>,
}

impl SharedMemory {
    /// The frame for page `index`, allocated zeroed on first use.
    pub(super) fn page(&self, index: u64) -> Result<PhysFrame, FaultError> {
        if let Some(frame) = self.pages.lock().get(&index) {
            return Ok(*frame);
        }
        let fresh = Frame::alloc_zeroed_for_user().map_err(|_| FaultError::OutOfMemory)?;
        let mut pages = self.pages.lock();
        // Another fault may have inserted it meanwhile; keep theirs.
        Ok(*pages.entry(index).or_insert_with(|| fresh.into_raw()))
    }
}

impl SharedMemory {
    /// MADV_REMOVE: drops the pages `indices` from the object (they read back
    /// as zero); their frames are freed after the flush, with the gather's.
    pub(super) fn remove(&self, indices: core::ops::Range<u64>, gather: &mut TlbGather) {
        let mut pages = self.pages.lock();
        let doomed: Vec<u64> = pages.range(indices).map(|(&index, _)| index).collect();
        for index in doomed {
            if let Some(frame) = pages.remove(&index) {
                gather.frames.push(frame);
            }
        }
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // `&mut self` proves nobody else can reach the map: no lock, so the
        // frames are freed with interrupts on, however many there are.
        for (_, frame) in core::mem::take(self.pages.get_mut()) {
            // SAFETY: the object owned the frame; the last VMA mapping it is
            // gone and its entries were flushed before the VMA was dropped.
            drop(unsafe { Frame::from_raw(frame) });
        }
    }
}

#[derive(Clone, Debug)]
pub enum Backing {
    Private,
    Shared { memory: Arc<SharedMemory>, first_page: u64 },
}

#[derive(Clone, Debug)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    pub backing: Backing,
}

impl Vma {
    pub(super) fn can_merge_with(&self, next: &Vma) -> bool {
        self.end == next.start
            && self.prot == next.prot
            && match (&self.backing, &next.backing) {
                (Backing::Private, Backing::Private) => true,
                (Backing::Shared { memory: a, first_page: fa }, Backing::Shared { memory: b, first_page: fb }) => {
                    Arc::ptr_eq(a, b) && fa + (self.end - self.start) / PAGE == *fb
                }
                _ => false,
            }
    }

    /// The part of this VMA from `at` on (the caller keeps the front).
    pub(super) fn split_off(&mut self, at: u64) -> Vma {
        let mut back = self.clone();
        back.start = at;
        if let Backing::Shared { first_page, .. } = &mut back.backing {
            *first_page += (at - self.start) / PAGE;
        }
        self.end = at;
        back
    }

    pub fn allows(&self, access: Access) -> bool {
        match access {
            // x86 cannot map write- or exec-only pages: both imply read.
            Access::Read => !self.prot.is_none(),
            Access::Write => self.prot.contains(Prot::WRITE),
            Access::Execute => self.prot.contains(Prot::EXEC),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Execute,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    /// No VMA covers the address.
    NoMapping,
    /// The VMA does not allow the access.
    AccessDenied,
    OutOfMemory,
}

/// Errors of the mmap family, mapped to errno by the system-call layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// An argument is malformed (EINVAL).
    Invalid,
    /// No room, no memory, or a range that is not mapped (ENOMEM).
    NoMemory,
    /// MAP_FIXED_NOREPLACE over an existing mapping (EEXIST).
    Exists,
    /// The mapping's protection forbids it (EACCES: MADV_REMOVE of read-only memory).
    Denied,
}

/// The madvise advice that does something to anonymous memory; every other
/// valid advice is a `Hint` (checked, then nothing to do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advice {
    /// MADV_DONTNEED and MADV_DONTNEED_LOCKED: drop the pages; private ones
    /// read back as zero, shared ones keep their contents.
    DontNeed,
    /// MADV_FREE: private memory only.
    Free,
    /// MADV_REMOVE: shared writable memory only; the contents are gone.
    Remove,
    /// MADV_WIPEONFORK: private memory only (there is no fork yet).
    WipeOnFork,
    PopulateRead,
    PopulateWrite,
    Hint,
}

/// The VMA set and what else `mmap_lock` guards.
#[derive(Debug, Default)]
pub struct VmaMap {
    pub(super) vmas: BTreeMap<u64, Vma>,
    pub brk_start: u64,
    pub brk: u64,
    /// mmap allocates top-down below this.
    pub(super) mmap_top: u64,
    /// Where the last top-down search ended (a hint for the next one).
    pub(super) mmap_cursor: u64,
}

impl VmaMap {
    /// The VMA containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Vma> {
        self.vmas.range(..=addr).next_back().map(|(_, v)| v).filter(|v| addr < v.end)
    }

    pub fn len(&self) -> usize {
        self.vmas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vmas.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Vma> {
        self.vmas.values()
    }

    pub(super) fn overlaps(&self, start: u64, end: u64) -> bool {
        self.vmas.range(..end).next_back().is_some_and(|(_, v)| v.end > start)
    }

    /// Whether [start, end) lies strictly inside one VMA, so that removing it
    /// leaves one VMA more than before.
    pub(super) fn splits_one_vma(&self, start: u64, end: u64) -> bool {
        self.find(start).is_some_and(|vma| vma.start < start && end < vma.end)
    }

    /// Splits the VMA that straddles `at`, if any.
    pub(super) fn split_at(&mut self, at: u64) {
        let Some((&start, vma)) = self.vmas.range_mut(..at).next_back() else { return };
        if start < at && at < vma.end {
            let back = vma.split_off(at);
            self.vmas.insert(at, back);
        }
    }

    /// Removes and returns the VMAs (cut to size) inside [start, end).
    pub(super) fn remove_range(&mut self, start: u64, end: u64) -> Vec<Vma> {
        self.split_at(start);
        self.split_at(end);
        let keys: Vec<u64> = self.vmas.range(start..end).map(|(&k, _)| k).collect();
        keys.into_iter().filter_map(|k| self.vmas.remove(&k)).collect()
    }

    pub(super) fn insert(&mut self, vma: Vma) {
        let start = vma.start;
        let end = vma.end;
        self.vmas.insert(start, vma);
        self.merge_at(start);
        self.merge_at(end);
    }

    /// Merges the VMAs that meet at `addr` if they are alike.
    pub(super) fn merge_at(&mut self, addr: u64) {
        let Some(prev) = self.vmas.range(..addr).next_back().map(|(_, v)| v.clone()) else { return };
        let Some(next) = self.vmas.get(&addr).cloned() else { return };
        if prev.can_merge_with(&next) {
            self.vmas.remove(&addr);
            if let Some(p) = self.vmas.get_mut(&prev.start) {
                p.end = next.end;
            }
        }
    }

    /// A free range of `len` bytes, top-down from below `mmap_top`.
    pub(super) fn find_free(&mut self, len: u64) -> Option<u64> {
        let cursor = self.mmap_cursor.min(self.mmap_top);
        if let Some(start) = cursor.checked_sub(len) {
            if start >= MMAP_MIN && !self.overlaps(start, cursor) {
                self.mmap_cursor = start;
                return Some(start);
            }
        }
        let mut gap_end = self.mmap_top;
        for vma in self.vmas.range(..self.mmap_top).rev().map(|(_, v)| v).chain(core::iter::once(&Vma {
            start: 0,
            end: MMAP_MIN,
            prot: Prot::empty(),
            backing: Backing::Private,
        })) {
            let top = gap_end.min(self.mmap_top);
            if vma.end <= top && top - vma.end >= len {
                self.mmap_cursor = top - len;
                return Some(top - len);
            }
            gap_end = gap_end.min(vma.start);
        }
        None
    }
}

impl Default for Prot {
    fn default() -> Self {
        Prot::empty()
    }
}
