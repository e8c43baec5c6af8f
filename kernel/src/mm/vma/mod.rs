//! VMAs: what a range of an address space is (protection, private or
//! shared memory), the per-VMA lock (`lock.rs`) and the set of VMAs with
//! what else the `mmap_lock` guards (`map.rs`).
//!
//! Which lock guards which field (the address space's own fields are in
//! `addrspace.rs`):
//!
//! | field | guarded by |
//! |---|---|
//! | `Vma::{start, end, prot, backing}` | nothing: immutable while the VMA is reachable. A change makes new VMAs and detaches the old one (write-locked first) |
//! | `Vma::lock` (`VmaLock`) | its own atomics: see `lock.rs` for the protocol |
//! | `Vma::around` (`FaultAround`) | hint bits: immutable while reachable, as `prot` (madvise makes new VMAs under the mmap write lock); the run: relaxed atomics any fault on the VMA updates (`fault_around.rs`) |
//! | `VmaMap::tree`, `brk`, `brk_start`, `mmap_top` | the `mmap_lock`: read for lookups, write (an `MmapWriteGuard`) for changes |
//! | the published tree (`AddressSpace::published`) | RCU: readers search it under `rcu::read_lock`; the write guard publishes a new version when it is dropped |
//! | `SharedMemory::pages` | its own spinlock (faults under a read lock add pages) |

mod lock;
mod map;

pub(super) use lock::{vma_start_read, LockSeq, ReadAbort, VmaLock};
pub use lock::{MmapReadGuard, MmapWriteGuard, VmaLockHeld, VmaReadGuard};
pub use map::{VmaMap, VmaTree};

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;

use x86_64::structures::paging::{PageTableFlags, PhysFrame};

use super::fault_around::FaultAround;
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
#[derive(Debug)]
pub struct SharedMemory {
    /// The object's size in pages: the length it was mapped with. A page
    /// past it is SIGBUS, as Linux's shmem past its end (mremap can grow a
    /// mapping beyond its object).
    len_pages: u64,
    /// Page index -> frame, owned here.
    pages: SpinLock<BTreeMap<u64, PhysFrame>>,
}

impl SharedMemory {
    /// An object of `len_pages` pages, none allocated yet.
    pub fn new(len_pages: u64) -> SharedMemory {
        SharedMemory { len_pages, pages: SpinLock::new(crate::sync::Level::SharedPages, BTreeMap::new()) }
    }

    /// The frame for page `index`, allocated zeroed on first use.
    pub(super) fn page(&self, index: u64) -> Result<PhysFrame, FaultError> {
        if index >= self.len_pages {
            return Err(FaultError::BeyondObject);
        }
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

/// One mapping: a range, its protection and what backs it. Immutable once
/// in the tree: a change (a split, a merge, a new protection) replaces the
/// VMA by new ones and detaches the old, so an RCU reader holding the old one
/// sees a consistent, if stale, VMA and its `lock` tells it so.
#[derive(Debug)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub prot: Prot,
    pub backing: Backing,
    /// The per-VMA lock and its sequence number (`lock.rs`).
    pub(in crate::mm) lock: VmaLock,
    /// Fault-around hints and the current sequential run (`fault_around.rs`).
    pub(in crate::mm) around: FaultAround,
}

impl Vma {
    /// The same mapping over [start, end) (inside this one), with `prot`.
    pub(super) fn piece(&self, start: u64, end: u64, prot: Prot, lock: VmaLock) -> Vma {
        debug_assert!(self.start <= start && start < end && end <= self.end);
        let around = FaultAround::new();
        around.inherit(&self.around);
        Vma { start, end, prot, backing: self.backing_from(start), lock, around }
    }

    /// What backs this VMA from `addr` (inside it) on: private memory, or
    /// the same shared object at `addr`'s page of it.
    pub(super) fn backing_from(&self, addr: u64) -> Backing {
        debug_assert!(self.start <= addr && addr < self.end);
        match &self.backing {
            Backing::Private => Backing::Private,
            Backing::Shared { memory, first_page } => {
                Backing::Shared { memory: memory.clone(), first_page: first_page + (addr - self.start) / PAGE }
            }
        }
    }

    pub(super) fn can_merge_with(&self, next: &Vma) -> bool {
        self.end == next.start
            && self.prot == next.prot
            && self.around.hints() == next.around.hints()
            && match (&self.backing, &next.backing) {
                (Backing::Private, Backing::Private) => true,
                (Backing::Shared { memory: a, first_page: fa }, Backing::Shared { memory: b, first_page: fb }) => {
                    Arc::ptr_eq(a, b) && fa + (self.end - self.start) / PAGE == *fb
                }
                _ => false,
            }
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

impl vmatree::Span for Vma {
    fn start(&self) -> u64 {
        self.start
    }
    fn end(&self) -> u64 {
        self.end
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
    /// A shared page past the end of its object (SIGBUS).
    BeyondObject,
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
    /// mremap of a range that is not mapped, or not by one VMA (EFAULT).
    Unmapped,
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
    /// MADV_NOHUGEPAGE and MADV_HUGEPAGE: fault-around off and on again
    /// (`fault_around.rs`; we have no huge pages).
    NoHugePage,
    HugePage,
    /// MADV_RANDOM: fault-around off; MADV_NORMAL and MADV_SEQUENTIAL: on again
    /// (the last with a flag of its own, as Linux's VM_SEQ_READ).
    Random,
    Sequential,
    Normal,
    Hint,
}

impl Default for Prot {
    fn default() -> Self {
        Prot::empty()
    }
}
