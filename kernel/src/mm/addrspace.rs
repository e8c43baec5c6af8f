//! A process's address space: its VMAs, its page table, and the CPUs that
//! have it loaded.
//!
//! Locking (this baseline: one lock per address space):
//! - `vmas` is the `mmap_lock`, a sleeping reader/writer semaphore, and the
//!   VMA set it guards. Page faults take it for reading; mmap, munmap,
//!   mprotect, madvise and brk for writing.
//! - Page-table entries are updated atomically (compare-and-swap), so faults
//!   on different pages under the read lock may run at once; two faults on
//!   one page race on the CAS and the loser frees its frame.
//! - `cpus` is atomic. A CPU sets its bit before loading the page table and
//!   clears it after loading another, so a shootdown that reads `cpus` after
//!   changing entries reaches every CPU that may cache them.
//! - Never touch user memory (a copy that may fault) while holding
//!   `mmap_lock`: the fault would take it again behind a waiting writer.
//!
//! Frames: a private page's frame is owned by its page-table entry and freed
//! by the unmapping path after the TLB flush (`TlbGather`). A shared page's
//! frame is owned by its `SharedMemory` object.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::{Page, PageTableFlags, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

use super::frame::{self, Frame};
use super::layout::USER_END;
use super::pages;
use super::paging::{kernel_page_table, PageTable, ADDR_MASK};
use crate::arch::ipi::CpuSet;
use crate::arch::percpu;
use crate::arch::tlb::{shootdown, FlushScope};
use crate::sync::{RwSem, SpinLock};

pub use super::pages::PAGE;
/// The initial stack: its top, and how far it may extend down. Linux puts
/// the stack top a random distance (up to 16 GiB) below TASK_SIZE, so that
/// the pages just below USER_END are never mapped there; we keep 1 GiB free.
pub const STACK_TOP: u64 = USER_END - (1 << 30);
pub const STACK_SIZE: u64 = 8 << 20;
/// Unmapped space kept below the stack (no mmap lands there).
pub const STACK_GUARD_GAP: u64 = 1 << 20;
/// At most this many VMAs per address space (Linux's vm.max_map_count):
/// past it, calls that would add one fail with ENOMEM.
pub const MAX_MAP_COUNT: usize = 65_530;
/// Lowest address mmap hands out on its own.
const MMAP_MIN: u64 = 0x1_0000;

/// A software bit in a non-present entry: the page exists but its VMA is
/// PROT_NONE; the rest of the entry keeps the frame address.
const PTE_PROT_NONE: u64 = 1 << 9;

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
    fn pte_flags(self) -> PageTableFlags {
        let mut flags = PageTableFlags::PRESENT | PageTableFlags::USER_ACCESSIBLE;
        if self.contains(Prot::WRITE) {
            flags |= PageTableFlags::WRITABLE;
        }
        if !self.contains(Prot::EXEC) {
            flags |= PageTableFlags::NO_EXECUTE;
        }
        flags
    }

    fn is_none(self) -> bool {
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
    fn page(&self, index: u64) -> Result<PhysFrame, FaultError> {
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
    fn remove(&self, indices: core::ops::Range<u64>, gather: &mut TlbGather) {
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
    fn can_merge_with(&self, next: &Vma) -> bool {
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
    fn split_off(&mut self, at: u64) -> Vma {
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

/// Whether replacing entry `old` by `new` takes a right away (presence,
/// write or execute), so that CPUs caching `old` must flush it.
fn loses_rights(old: u64, new: u64) -> bool {
    let present = PageTableFlags::PRESENT.bits();
    let writable = PageTableFlags::WRITABLE.bits();
    let no_exec = PageTableFlags::NO_EXECUTE.bits();
    old & present != 0
        && (new & present == 0
            || (old & writable != 0 && new & writable == 0)
            || (old & no_exec == 0 && new & no_exec != 0))
}

/// The VMA set and what else `mmap_lock` guards.
#[derive(Debug, Default)]
pub struct VmaMap {
    vmas: BTreeMap<u64, Vma>,
    pub brk_start: u64,
    pub brk: u64,
    /// mmap allocates top-down below this.
    mmap_top: u64,
    /// Where the last top-down search ended (a hint for the next one).
    mmap_cursor: u64,
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

    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.vmas.range(..end).next_back().is_some_and(|(_, v)| v.end > start)
    }

    /// Whether [start, end) lies strictly inside one VMA, so that removing it
    /// leaves one VMA more than before.
    fn splits_one_vma(&self, start: u64, end: u64) -> bool {
        self.find(start).is_some_and(|vma| vma.start < start && end < vma.end)
    }

    /// How many VMAs there would be after `mprotect(start, end, prot)`
    /// (stopping at the first hole, as the call does): splits add, merges
    /// with alike neighbours take away.
    fn count_after_mprotect(&self, start: u64, end: u64, prot: Prot) -> usize {
        let mut pieces: Vec<Vma> = Vec::new();
        let mut replaced = 0;
        if let Some(before) = self.vmas.range(..start).next_back().map(|(_, v)| v).filter(|v| v.end == start) {
            pieces.push(before.clone());
            replaced += 1;
        }
        let mut cursor = start;
        for vma in self.vmas.range(..end).map(|(_, v)| v).filter(|v| v.end > start) {
            if vma.start > cursor {
                break;
            }
            replaced += 1;
            let mut middle = vma.clone();
            if middle.start < start {
                let back = middle.split_off(start);
                pieces.push(core::mem::replace(&mut middle, back));
            }
            let tail = (middle.end > end).then(|| middle.split_off(end));
            middle.prot = prot;
            pieces.push(middle);
            pieces.extend(tail);
            cursor = vma.end;
        }
        if let Some(after) = self.vmas.get(&cursor.min(end)).filter(|_| cursor >= end) {
            pieces.push(after.clone());
            replaced += 1;
        }
        let merged = pieces.windows(2).filter(|pair| pair[0].can_merge_with(&pair[1])).count();
        self.vmas.len() - replaced + pieces.len() - merged
    }

    /// Splits the VMA that straddles `at`, if any.
    fn split_at(&mut self, at: u64) {
        let Some((&start, vma)) = self.vmas.range_mut(..at).next_back() else { return };
        if start < at && at < vma.end {
            let back = vma.split_off(at);
            self.vmas.insert(at, back);
        }
    }

    /// Removes and returns the VMAs (cut to size) inside [start, end).
    fn remove_range(&mut self, start: u64, end: u64) -> Vec<Vma> {
        self.split_at(start);
        self.split_at(end);
        let keys: Vec<u64> = self.vmas.range(start..end).map(|(&k, _)| k).collect();
        keys.into_iter().filter_map(|k| self.vmas.remove(&k)).collect()
    }

    fn insert(&mut self, vma: Vma) {
        let start = vma.start;
        let end = vma.end;
        self.vmas.insert(start, vma);
        self.merge_at(start);
        self.merge_at(end);
    }

    /// Merges the VMAs that meet at `addr` if they are alike.
    fn merge_at(&mut self, addr: u64) {
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
    fn find_free(&mut self, len: u64) -> Option<u64> {
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

/// Counters of fault outcomes and TLB work.
#[derive(Debug, Default)]
pub struct MmStats {
    pub faults: AtomicU64,
    pub shootdowns: AtomicU64,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub struct AddressSpace {
    pub id: u64,
    page_table: PageTable,
    /// The `mmap_lock` and the VMA set.
    pub vmas: RwSem<VmaMap>,
    /// CPUs that have this page table loaded.
    cpus: AtomicU64,
    pub stats: MmStats,
}

impl AddressSpace {
    /// An empty user half over a copy of the kernel half.
    pub fn new() -> Result<AddressSpace, MapError> {
        let root = Frame::alloc_zeroed().map_err(|_| MapError::NoMemory)?;
        let kernel_root = super::phys_to_virt(kernel_page_table().root().start_address()).as_ptr::<u64>();
        let new_root = super::phys_to_virt(root.start()).as_mut_ptr::<u64>();
        // SAFETY: both are root table frames reached through the physical map;
        // the kernel half's PML4 entries never change after boot (every kernel
        // range has its slot from the start), so a copy stays valid.
        unsafe { core::ptr::copy_nonoverlapping(kernel_root.add(256), new_root.add(256), 256) };
        // SAFETY: the root is ours; its tables live until `drop`.
        let page_table = unsafe { PageTable::from_root(root.into_raw()) };
        let map = VmaMap {
            mmap_top: STACK_TOP - STACK_SIZE - STACK_GUARD_GAP,
            mmap_cursor: STACK_TOP - STACK_SIZE - STACK_GUARD_GAP,
            ..VmaMap::default()
        };
        Ok(AddressSpace {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            page_table,
            vmas: RwSem::new(map),
            cpus: AtomicU64::new(0),
            stats: MmStats::default(),
        })
    }

    pub fn cpus(&self) -> CpuSet {
        CpuSet::from_bits(self.cpus.load(Ordering::SeqCst))
    }

    fn pte(&self, addr: u64, create: bool) -> Option<&'static AtomicU64> {
        self.page_table.user_pte(Page::containing_address(VirtAddr::new(addr)), create).ok()
    }

    /// Resolves a fault at `addr` in `vma` (which contains it) for `access`.
    /// Called with `mmap_lock` held for reading (or writing).
    pub fn handle_fault(&self, vma: &Vma, addr: u64, access: Access) -> Result<(), FaultError> {
        self.stats.faults.fetch_add(1, Ordering::Relaxed);
        if !vma.allows(access) {
            return Err(FaultError::AccessDenied);
        }
        let page = addr & !(PAGE - 1);
        let pte = self.pte(page, true).ok_or(FaultError::OutOfMemory)?;
        let flags = vma.prot.pte_flags().bits();
        loop {
            let old = pte.load(Ordering::Acquire);
            if old == 0 {
                let (phys, owned) = match &vma.backing {
                    Backing::Private => {
                        let frame = Frame::alloc_zeroed_for_user().map_err(|_| FaultError::OutOfMemory)?;
                        (frame.start().as_u64(), Some(frame))
                    }
                    Backing::Shared { memory, first_page } => {
                        let index = first_page + (page - vma.start) / PAGE;
                        (memory.page(index)?.start_address().as_u64(), None)
                    }
                };
                if pte.compare_exchange(0, phys | flags, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    if let Some(frame) = owned {
                        let _ = frame.into_raw();
                    }
                    return Ok(());
                }
                // Another CPU installed the page first: ours is dropped (freed).
                continue;
            }
            // Present (a stale TLB entry here) or PROT_NONE-parked: bring the
            // entry in line with the VMA and flush our own stale translation.
            let new = (old & ADDR_MASK) | flags;
            if old == new || pte.compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                crate::arch::tlb::flush_page(VirtAddr::new(page));
                return Ok(());
            }
        }
    }

    /// Maps `frame` (already filled) at the page `page` as private memory
    /// with `prot`. For loading programs and building the initial stack.
    pub fn map_frame(&self, page: u64, prot: Prot, frame: Frame) -> Result<(), MapError> {
        if !page.is_multiple_of(PAGE) || page >= USER_END {
            return Err(MapError::Invalid);
        }
        let mut map = self.vmas.write();
        if map.overlaps(page, page + PAGE) {
            return Err(MapError::Exists);
        }
        let pte = self.pte(page, true).ok_or(MapError::NoMemory)?;
        map.insert(Vma { start: page, end: page + PAGE, prot, backing: Backing::Private });
        let entry = if prot.is_none() { PTE_PROT_NONE } else { prot.pte_flags().bits() };
        pte.store(frame.into_raw().start_address().as_u64() | entry, Ordering::Release);
        Ok(())
    }

    /// Removes the translations of [start, end) in `vma` and collects what
    /// must be freed after the flush. Visits populated tables only.
    fn zap(&self, vma: &Vma, start: u64, end: u64, gather: &mut TlbGather) {
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

    /// Rewrites the entries of [start, end) for protection `prot`. Only
    /// entries that lose a right need a flush: a stale entry with fewer rights
    /// than the VMA allows just causes a spurious fault, which `handle_fault`
    /// repairs.
    fn change_protection(&self, start: u64, end: u64, prot: Prot, gather: &mut TlbGather) {
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

    /// Removes the VMAs (cut to size) in [start, end) and their translations;
    /// the caller holds the write lock and finishes `gather` before dropping it.
    fn unmap_locked(&self, map: &mut VmaMap, start: u64, end: u64, gather: &mut TlbGather) {
        for vma in map.remove_range(start, end) {
            self.zap(&vma, vma.start, vma.end, gather);
            gather.dropped_vmas.push(vma);
        }
    }

    /// mmap of anonymous memory; the system-call layer has checked the flags.
    pub fn mmap(&self, request: &MmapRequest) -> Result<u64, MapError> {
        let len = pages::round_up(request.len).filter(|&len| len != 0 && len <= USER_END).ok_or(MapError::NoMemory)?;
        let mut map = self.vmas.write();
        // As Linux's do_mmap: refused only once the count is above the limit.
        if map.len() > MAX_MAP_COUNT {
            return Err(MapError::NoMemory);
        }
        let start = if request.fixed || request.fixed_noreplace {
            let start = request.addr;
            // Linux checks the range (ENOMEM) before the alignment (EINVAL).
            if pages::user_end(start, len).is_none() {
                return Err(MapError::NoMemory);
            }
            if !pages::is_aligned(start) {
                return Err(MapError::Invalid);
            }
            if request.fixed_noreplace && map.overlaps(start, start + len) {
                return Err(MapError::Exists);
            }
            start
        } else {
            let hint = pages::round_down(request.addr);
            if hint >= MMAP_MIN && pages::user_end(hint, len).is_some() && !map.overlaps(hint, hint + len) {
                hint
            } else {
                map.find_free(len).ok_or(MapError::NoMemory)?
            }
        };
        let end = start + len;
        if map.splits_one_vma(start, end) && map.len() >= MAX_MAP_COUNT {
            return Err(MapError::NoMemory);
        }
        let mut gather = TlbGather::new();
        self.unmap_locked(&mut map, start, end, &mut gather);
        let backing = if request.shared {
            Backing::Shared { memory: Arc::new(SharedMemory::default()), first_page: 0 }
        } else {
            Backing::Private
        };
        map.insert(Vma { start, end, prot: request.prot, backing });
        gather.finish(self, &map);
        drop(map);
        if request.populate {
            let access = if request.prot.contains(Prot::WRITE) { Access::Write } else { Access::Read };
            // MAP_POPULATE is best effort: the mapping stands whatever happens.
            let _ = self.populate(start, end, access);
        }
        Ok(start)
    }

    /// Faults in every page of [start, end) for `access`, in order; stops at
    /// the first hole (NoMemory), at a VMA that forbids the access (Invalid,
    /// as MADV_POPULATE_* on Linux), or when memory runs out (NoMemory).
    fn populate(&self, start: u64, end: u64, access: Access) -> Result<(), MapError> {
        let map = self.vmas.read();
        let mut page = start;
        while page < end {
            let vma = map.find(page).ok_or(MapError::NoMemory)?;
            if !vma.allows(access) {
                return Err(MapError::Invalid);
            }
            let vma_end = vma.end.min(end);
            while page < vma_end {
                self.handle_fault(vma, page, access).map_err(|_| MapError::NoMemory)?;
                page += PAGE;
            }
        }
        Ok(())
    }

    pub fn munmap(&self, start: u64, len: u64) -> Result<(), MapError> {
        let end = checked_range(start, len).ok_or(MapError::Invalid)?;
        let mut map = self.vmas.write();
        // Linux refuses only a split that would leave one VMA more than the limit.
        if map.splits_one_vma(start, end) && map.len() >= MAX_MAP_COUNT {
            return Err(MapError::NoMemory);
        }
        let mut gather = TlbGather::new();
        self.unmap_locked(&mut map, start, end, &mut gather);
        gather.finish(self, &map);
        Ok(())
    }

    /// Applies `prot` to the page-aligned range [start, end); fails with
    /// NoMemory at the first hole (VMAs before it keep the change, as on
    /// Linux), or when the VMAs it would leave exceed the limit.
    pub fn mprotect(&self, start: u64, end: u64, prot: Prot) -> Result<(), MapError> {
        let mut map = self.vmas.write();
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
            let Some(vma) = map.vmas.get_mut(&cursor) else {
                result = Err(MapError::NoMemory);
                break;
            };
            let vma_end = vma.end;
            if vma.prot != prot {
                vma.prot = prot;
                self.change_protection(cursor, vma_end, prot, &mut gather);
            }
            cursor = vma_end;
        }
        let touched: Vec<u64> = map.vmas.range(start..=end).map(|(&k, _)| k).collect();
        for boundary in touched.into_iter().chain([start, end]) {
            map.merge_at(boundary);
        }
        gather.finish(self, &map);
        result
    }

    /// madvise on the page-aligned, non-empty range [start, end), with Linux's
    /// results: a hole makes the call fail with NoMemory once the rest is
    /// done; a VMA of the wrong kind fails it at once.
    pub fn madvise(&self, start: u64, end: u64, advice: Advice) -> Result<(), MapError> {
        match advice {
            Advice::PopulateRead => return self.populate(start, end, Access::Read),
            Advice::PopulateWrite => return self.populate(start, end, Access::Write),
            _ => {}
        }
        // Dropping pages needs only the read lock: a concurrent fault on a
        // dropped page installs a fresh one, which is what it would get after.
        let map = self.vmas.read();
        let mut gather = TlbGather::new();
        let mut result = Ok(());
        let mut cursor = start;
        for vma in map.vmas.range(..end).map(|(_, v)| v).filter(|v| v.end > start) {
            if vma.start > cursor {
                result = Err(MapError::NoMemory);
            }
            let (from, to) = (vma.start.max(start), vma.end.min(end));
            let shared = matches!(vma.backing, Backing::Shared { .. });
            match advice {
                Advice::DontNeed => self.zap(vma, from, to, &mut gather),
                // We never reclaim, so "free when memory is short" is "free now";
                // the program must not rely on the contents either way.
                Advice::Free if !shared => self.zap(vma, from, to, &mut gather),
                Advice::Remove if !shared => result = Err(MapError::Invalid),
                Advice::Remove if !vma.prot.contains(Prot::WRITE) => result = Err(MapError::Denied),
                Advice::Remove => {
                    self.zap(vma, from, to, &mut gather);
                    if let Backing::Shared { memory, first_page } = &vma.backing {
                        let first = first_page + (from - vma.start) / PAGE;
                        memory.remove(first..first + (to - from) / PAGE, &mut gather);
                    }
                }
                Advice::Free | Advice::WipeOnFork if shared => result = Err(MapError::Invalid),
                _ => {}
            }
            if matches!(result, Err(MapError::Invalid | MapError::Denied)) {
                break;
            }
            cursor = vma.end;
        }
        if result.is_ok() && cursor < end {
            result = Err(MapError::NoMemory);
        }
        gather.finish(self, &map);
        result
    }

    /// Whether a futex word other processes could share may live at `addr`
    /// (Linux's get_futex_key for non-private futexes): mapped, accessible,
    /// and writable if private (a read-only private page is refused).
    pub fn can_hold_shared_futex(&self, addr: u64) -> bool {
        self.vmas.read().find(addr).is_some_and(|vma| match vma.backing {
            Backing::Shared { .. } => !vma.prot.is_none(),
            Backing::Private => vma.prot.contains(Prot::WRITE),
        })
    }

    /// For mprotect with PROT_GROWSUP (`at_start`: a VMA contains `start`)
    /// or PROT_GROWSDOWN (a VMA meets [start, end)).
    pub fn has_vma_in(&self, start: u64, end: u64, at_start: bool) -> bool {
        let map = self.vmas.read();
        if at_start {
            map.find(start).is_some()
        } else {
            map.overlaps(start, end)
        }
    }

    /// brk: moves the program break; returns the break in effect afterwards.
    pub fn brk(&self, requested: u64) -> u64 {
        let mut map = self.vmas.write();
        let (base, old) = (map.brk_start, map.brk);
        if requested < base || requested > USER_END {
            return old;
        }
        // Both are at most USER_END, so rounding them up cannot overflow.
        let old_end = pages::round_up(old).unwrap_or(USER_END);
        let new_end = pages::round_up(requested).unwrap_or(USER_END);
        let mut gather = TlbGather::new();
        if new_end < old_end {
            self.unmap_locked(&mut map, new_end, old_end, &mut gather);
        } else if new_end > old_end {
            if map.overlaps(old_end, new_end) || map.len() > MAX_MAP_COUNT {
                return old;
            }
            map.insert(Vma { start: old_end, end: new_end, prot: Prot::READ | Prot::WRITE, backing: Backing::Private });
        }
        map.brk = requested;
        gather.finish(self, &map);
        requested
    }

    /// Sets where the heap starts (after the program's last segment).
    pub fn set_brk_start(&self, addr: u64) {
        let mut map = self.vmas.write();
        map.brk_start = addr;
        map.brk = addr;
    }

    /// Writes `bytes` at user address `addr` through this space's page table
    /// (which need not be loaded), faulting pages in as needed. For the loader.
    pub fn write_bytes(&self, addr: u64, bytes: &[u8]) -> Result<(), FaultError> {
        let map = self.vmas.read();
        let mut done = 0usize;
        while done < bytes.len() {
            let at = addr + done as u64;
            let vma = map.find(at).ok_or(FaultError::NoMapping)?;
            let pte = self.pte(at, true).ok_or(FaultError::OutOfMemory)?;
            if pte.load(Ordering::Acquire) & PageTableFlags::PRESENT.bits() == 0 {
                self.handle_fault(vma, at, Access::Read)?;
            }
            let phys = pte.load(Ordering::Acquire) & ADDR_MASK;
            let offset = (at % PAGE) as usize;
            let n = (PAGE as usize - offset).min(bytes.len() - done);
            let dst = super::phys_to_virt(PhysAddr::new(phys + offset as u64)).as_mut_ptr::<u8>();
            // SAFETY: the frame belongs to this address space's VMA and is
            // mapped through the physical map; n bytes fit in the page.
            unsafe { core::ptr::copy_nonoverlapping(bytes[done..].as_ptr(), dst, n) };
            done += n;
        }
        Ok(())
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        debug_assert!(self.cpus().is_empty(), "an address space is dropped while loaded");
        let mut gather = TlbGather::new();
        let vmas = core::mem::take(&mut self.vmas.write().vmas);
        for vma in vmas.into_values() {
            self.zap(&vma, vma.start, vma.end, &mut gather);
            gather.dropped_vmas.push(vma);
        }
        // No CPU has this space loaded: nothing to flush.
        gather.release();
        // SAFETY: no CPU uses the table (`cpus` is empty) and it holds no
        // translations any more; nothing else references it.
        unsafe { self.page_table.free_user_tables() };
        // SAFETY: the root frame came from `Frame::into_raw` in `new`.
        drop(unsafe { Frame::from_raw(self.page_table.root()) });
    }
}

/// What an mmap call asks for, already decoded from flags.
#[derive(Clone, Copy, Debug, Default)]
pub struct MmapRequest {
    pub addr: u64,
    pub len: u64,
    pub prot: Prot,
    pub shared: bool,
    pub fixed: bool,
    pub fixed_noreplace: bool,
    pub populate: bool,
}

impl Default for Prot {
    fn default() -> Self {
        Prot::empty()
    }
}

/// `start + len` page-rounded, if the range is aligned, non-empty and user space.
fn checked_range(start: u64, len: u64) -> Option<u64> {
    if !pages::is_aligned(start) || len == 0 {
        return None;
    }
    pages::user_end(start, len)
}

/// Pages whose translations were removed or reduced, and the frames to free
/// once every CPU has dropped them: gather, then flush, then free. Dropping
/// one with work still in it is a bug (checked in debug builds).
#[must_use = "finish() flushes the TLBs and frees the gathered frames"]
struct TlbGather {
    frames: Vec<PhysFrame>,
    /// VMAs removed (shared objects they hold are released after the flush).
    dropped_vmas: Vec<Vma>,
    first: u64,
    last: u64,
    pages: usize,
}

impl TlbGather {
    fn new() -> Self {
        TlbGather { frames: Vec::new(), dropped_vmas: Vec::new(), first: u64::MAX, last: 0, pages: 0 }
    }

    fn add_page(&mut self, page: u64) {
        self.first = self.first.min(page);
        self.last = self.last.max(page);
        self.pages += 1;
    }

    /// Flushes every CPU that has `mm` loaded, then frees. `_locked` borrows
    /// the `mmap_lock` guard under which the entries were changed, so the
    /// flush is done before that lock is released: a second munmap of the
    /// same range cannot return while another CPU still holds a translation.
    fn finish(mut self, mm: &AddressSpace, _locked: &VmaMap) {
        if self.pages > 0 {
            let span = ((self.last - self.first) / PAGE + 1) as usize;
            // Pinned: the set of CPUs to flush is "every one but this one".
            let _guard = percpu::PreemptGuard::new();
            let cpus = mm.cpus();
            if !cpus.is_empty() {
                mm.stats.shootdowns.fetch_add(1, Ordering::Relaxed);
                shootdown(cpus, FlushScope::Range { start: VirtAddr::new(self.first), pages: span });
            }
            self.pages = 0;
        }
        self.release();
    }

    /// Frees what was gathered, without a flush: for a space no CPU has loaded.
    fn release(mut self) {
        for frame in core::mem::take(&mut self.frames) {
            // SAFETY: the frame belonged to a private page (or a removed shared
            // page) whose entry is gone and whose translation every CPU has
            // dropped (`finish`, or no CPU ever loaded the space).
            drop(unsafe { Frame::from_raw(frame) });
        }
        drop(core::mem::take(&mut self.dropped_vmas));
        self.pages = 0;
    }
}

impl Drop for TlbGather {
    fn drop(&mut self) {
        debug_assert!(
            self.pages == 0 && self.frames.is_empty() && self.dropped_vmas.is_empty(),
            "a TlbGather with work in it was dropped without finish()"
        );
    }
}

/// Loads `next`'s page table on this CPU (or the kernel's, for kernel
/// threads) and moves this CPU between the spaces' `cpus` sets.
pub fn switch(prev: Option<&AddressSpace>, next: Option<&AddressSpace>) {
    if let (Some(a), Some(b)) = (prev, next) {
        if core::ptr::eq(a, b) {
            return;
        }
    }
    let bit = 1u64 << percpu::cpu_id();
    let root = match next {
        Some(next) => {
            next.cpus.fetch_or(bit, Ordering::SeqCst);
            next.page_table.root()
        }
        None => kernel_page_table().root(),
    };
    if Cr3::read().0 != root {
        // SAFETY: every page table shares the kernel half, so the code and
        // stack we run on stay mapped across the switch.
        unsafe { Cr3::write(root, Cr3Flags::empty()) };
    }
    if let Some(prev) = prev {
        prev.cpus.fetch_and(!bit, Ordering::SeqCst);
    }
}

/// Frames in use, for leak checks around a process's life: all allocated
/// frames but those the kernel keeps for itself once it has them (the heap,
/// which never shrinks, and the kernel's own page tables, e.g. those of the
/// kernel-stack range, which later stacks reuse).
pub fn frames_in_use() -> usize {
    frame::allocated() - super::heap::mapped_frames() - super::paging::kernel_table_frames()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: Prot = Prot::READ.union(Prot::WRITE);

    fn anon(addr: u64, len: u64, fixed: bool) -> MmapRequest {
        MmapRequest { addr, len, prot: RW, fixed, ..MmapRequest::default() }
    }

    fn ranges(mm: &AddressSpace) -> alloc::vec::Vec<(u64, u64, Prot)> {
        mm.vmas.read().iter().map(|v| (v.start, v.end, v.prot)).collect()
    }

    #[test_case]
    fn munmap_splits_and_mprotect_merges() {
        let mm = AddressSpace::new().unwrap();
        let base = 0x10_0000_0000;
        assert_eq!(mm.mmap(&anon(base, 4 * PAGE, true)), Ok(base));
        mm.mprotect(base + PAGE, base + 2 * PAGE, Prot::READ).unwrap();
        assert_eq!(
            ranges(&mm),
            [
                (base, base + PAGE, RW),
                (base + PAGE, base + 2 * PAGE, Prot::READ),
                (base + 2 * PAGE, base + 4 * PAGE, RW)
            ]
        );
        mm.mprotect(base + PAGE, base + 2 * PAGE, RW).unwrap();
        assert_eq!(ranges(&mm), [(base, base + 4 * PAGE, RW)], "alike neighbours merge back");
        mm.munmap(base + PAGE, 2 * PAGE).unwrap();
        assert_eq!(ranges(&mm), [(base, base + PAGE, RW), (base + 3 * PAGE, base + 4 * PAGE, RW)]);
    }

    #[test_case]
    fn errors_match_linux() {
        let mm = AddressSpace::new().unwrap();
        let base = 0x20_0000_0000;
        mm.mmap(&anon(base, PAGE, true)).unwrap();
        let noreplace = MmapRequest { fixed_noreplace: true, ..anon(base, PAGE, false) };
        assert_eq!(mm.mmap(&noreplace), Err(MapError::Exists));
        assert_eq!(mm.mmap(&anon(base + 1, PAGE, true)), Err(MapError::Invalid), "MAP_FIXED needs alignment");
        assert_eq!(mm.mprotect(base + PAGE, base + 2 * PAGE, RW), Err(MapError::NoMemory), "mprotect of a hole");
        assert_eq!(mm.munmap(base + 1, PAGE), Err(MapError::Invalid));
        assert_eq!(mm.munmap(USER_END, PAGE), Err(MapError::Invalid));
        assert_eq!(
            mm.madvise(base, base + 2 * PAGE, Advice::DontNeed),
            Err(MapError::NoMemory),
            "part of the range is a hole"
        );
    }

    #[test_case]
    fn faults_fill_pages_and_teardown_returns_every_frame() {
        let before = frame::allocated();
        let mm = AddressSpace::new().unwrap();
        let base = mm.mmap(&anon(0, 64 * PAGE, false)).unwrap();
        {
            let map = mm.vmas.read();
            let vma = map.find(base).unwrap().clone();
            for i in 0..64 {
                mm.handle_fault(&vma, base + i * PAGE, Access::Write).unwrap();
            }
            assert_eq!(mm.handle_fault(&vma, base, Access::Execute), Err(FaultError::AccessDenied));
        }
        mm.write_bytes(base + 5, b"hello").unwrap();
        assert!(frame::allocated() >= before + 64);
        mm.madvise(base, base + 32 * PAGE, Advice::DontNeed).unwrap();
        drop(mm);
        assert_eq!(frame::allocated(), before, "data and page-table frames all came back");
    }

    #[test_case]
    fn the_vma_count_is_capped_like_linux() {
        let mm = AddressSpace::new().unwrap();
        let base = 0x30_0000_0000;
        let page = |i: u64| base + i * PAGE;
        let pages = MAX_MAP_COUNT as u64 + 8;
        mm.mmap(&MmapRequest { prot: Prot::READ, ..anon(base, pages * PAGE, true) }).unwrap();
        // Every other page writable: each mprotect adds two VMAs until the cap.
        let mut refused = None;
        for i in (1..pages).step_by(2) {
            if let Err(err) = mm.mprotect(page(i), page(i + 1), RW) {
                refused = Some((i, err));
                break;
            }
        }
        let (at, err) = refused.expect("the cap was reached");
        assert_eq!(err, MapError::NoMemory);
        // Pages from `at - 1` on are still one read-only VMA.
        let tail = at - 1;
        let count = || mm.vmas.read().len();
        if count() == MAX_MAP_COUNT - 1 {
            // One split (at an end of the read-only tail) fits: fill up to the cap.
            mm.mprotect(page(pages - 1), page(pages), RW).unwrap();
        }
        assert_eq!(count(), MAX_MAP_COUNT);
        // At the cap, what would add a VMA is refused...
        assert_eq!(mm.munmap(page(tail + 1), PAGE), Err(MapError::NoMemory), "a hole in the middle of a VMA");
        assert_eq!(mm.mprotect(page(tail + 1), page(tail + 2), RW), Err(MapError::NoMemory));
        assert_eq!(count(), MAX_MAP_COUNT, "refusals change nothing");
        // ...and what does not is done, as on Linux.
        mm.munmap(page(tail), PAGE).expect("cutting the end off a VMA keeps the count");
        assert_eq!(count(), MAX_MAP_COUNT);
        mm.munmap(page(1), PAGE).expect("unmapping a whole VMA");
        assert_eq!(count(), MAX_MAP_COUNT - 1);
        mm.mprotect(page(3), page(4), Prot::READ).expect("a whole VMA that merges with both neighbours");
        assert_eq!(count(), MAX_MAP_COUNT - 3);
    }

    #[test_case]
    fn a_huge_prot_none_reservation_costs_only_its_populated_tables() {
        let mm = AddressSpace::new().unwrap();
        let len = 1 << 46;
        let base = mm.mmap(&MmapRequest { prot: Prot::empty(), ..anon(0, len, false) }).unwrap();
        let middle = base + len / 2;
        mm.mprotect(middle, middle + 4 * PAGE, RW).unwrap();
        {
            let map = mm.vmas.read();
            let vma = map.find(middle).unwrap().clone();
            for i in 0..4 {
                mm.handle_fault(&vma, middle + i * PAGE, Access::Write).unwrap();
            }
        }
        // Each of these once walked all 2^34 pages of the range, one by one.
        mm.mprotect(base, base + len, Prot::READ).unwrap();
        mm.madvise(base, base + len, Advice::DontNeed).unwrap();
        mm.munmap(base, len).unwrap();
        let again = mm.mmap(&MmapRequest { prot: Prot::empty(), ..anon(0, len, false) }).unwrap();
        mm.mprotect(again + PAGE, again + 2 * PAGE, RW).unwrap();
        drop(mm); // teardown walks the reservation too
    }

    #[test_case]
    fn freeing_a_large_shared_object_keeps_interrupts_on() {
        let memory = SharedMemory::default();
        let pages = 32 * 1024; // 128 MiB: long enough to span several ticks
        for index in 0..pages {
            memory.page(index).unwrap();
        }
        // Pinned, to read this CPU's tick counter before and after.
        let _pinned = percpu::PreemptGuard::new();
        let ticks = || percpu::current().ticks.load(Ordering::Relaxed);
        let (before, start) = (ticks(), crate::arch::time::now_ns());
        drop(memory);
        let (ticked, took) = (ticks() - before, crate::arch::time::now_ns() - start);
        log::info!("freeing 128 MiB of shared memory: {} ms, {ticked} ticks", took / 1_000_000);
        // The tick is 100 Hz. With interrupts off for the whole free (the
        // object's spinlock held), at most one tick gets in, after it.
        if took >= 50_000_000 {
            assert!(ticked >= 2, "{ticked} ticks in {} ms of freeing: interrupts were off", took / 1_000_000);
        }
    }

    #[test_case]
    fn munmap_flushes_other_cpus_before_it_releases_the_lock() {
        use crate::task::{sched, thread::Thread};
        use core::sync::atomic::AtomicBool;
        static HOLD_CPU: AtomicBool = AtomicBool::new(false);
        static HOLDING: AtomicBool = AtomicBool::new(false);
        static LOCK_WAS_HELD: AtomicBool = AtomicBool::new(false);
        static CHECKED: AtomicBool = AtomicBool::new(false);
        static SPACE: SpinLock<Option<Arc<AddressSpace>>> = SpinLock::new(None);

        /// Waits until the munmap is flushing (waiting for the held CPU),
        /// then tries the lock a second munmap would take; releases the CPU.
        extern "C" fn checker(_: usize) -> ! {
            let mm = SPACE.lock().clone().expect("the test's space");
            let _pinned = percpu::PreemptGuard::new();
            let give_up = crate::arch::time::now_ns() + 10_000_000_000;
            while mm.stats.shootdowns.load(Ordering::SeqCst) == 0 && crate::arch::time::now_ns() < give_up {
                core::hint::spin_loop();
            }
            LOCK_WAS_HELD.store(mm.vmas.try_write().is_none(), Ordering::SeqCst);
            CHECKED.store(true, Ordering::SeqCst);
            HOLD_CPU.store(false, Ordering::SeqCst);
            drop(mm);
            sched::exit_current()
        }

        let online = crate::arch::ipi::online();
        if online.len() < 3 {
            return; // needs us, a CPU that holds the flush up, and the checker's
        }
        let mm = Arc::new(AddressSpace::new().unwrap());
        let base = mm.mmap(&anon(0, PAGE, false)).unwrap();
        {
            let map = mm.vmas.read();
            let vma = map.find(base).unwrap().clone();
            mm.handle_fault(&vma, base, Access::Write).unwrap();
        }
        *SPACE.lock() = Some(mm.clone());
        let (held, checker_cpu) = {
            let _pinned = percpu::PreemptGuard::new();
            let me = percpu::cpu_id();
            let mut others = online.iter().filter(|&c| c != me);
            (others.next().unwrap(), others.next().unwrap())
        };
        // CPU `held` loads the space, then keeps its interrupts off (inside a
        // cross-CPU call) until the checker lets it go: our flush must wait.
        HOLD_CPU.store(true, Ordering::SeqCst);
        let on_held = mm.clone();
        crate::arch::ipi::call_async(
            CpuSet::single(held),
            alloc::boxed::Box::new(move || {
                switch(None, Some(&on_held));
                HOLDING.store(true, Ordering::SeqCst);
                while HOLD_CPU.load(Ordering::SeqCst) {
                    core::hint::spin_loop();
                }
                switch(Some(&on_held), None);
            }),
        );
        while !HOLDING.load(Ordering::SeqCst) {
            core::hint::spin_loop();
        }
        let thread = Thread::new_kernel(checker, 0).expect("a kernel thread");
        thread.prefer_cpu(checker_cpu);
        sched::enqueue(thread);
        mm.munmap(base, PAGE).unwrap();
        assert!(CHECKED.load(Ordering::SeqCst), "the checker ran while the flush waited");
        assert!(LOCK_WAS_HELD.load(Ordering::SeqCst), "the mmap lock was free while another CPU held the translation");
        *SPACE.lock() = None;
    }

    #[test_case]
    fn brk_grows_shrinks_and_refuses_to_overlap() {
        let mm = AddressSpace::new().unwrap();
        mm.set_brk_start(0x60_0000);
        assert_eq!(mm.brk(0), 0x60_0000, "brk(0) reports the break");
        assert_eq!(mm.brk(0x60_2345), 0x60_2345, "unaligned breaks are kept");
        assert_eq!(ranges(&mm), [(0x60_0000, 0x60_3000, RW)]);
        mm.mmap(&anon(0x70_0000, PAGE, true)).unwrap();
        assert_eq!(mm.brk(0x80_0000), 0x60_2345, "growing over a mapping is refused");
        assert_eq!(mm.brk(0x60_1000), 0x60_1000);
        assert_eq!(ranges(&mm)[0], (0x60_0000, 0x60_1000, RW));
    }
}
