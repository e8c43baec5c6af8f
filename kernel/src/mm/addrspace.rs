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

use super::frame::{self, Frame, FRAME_SIZE};
use super::layout::USER_END;
use super::paging::{kernel_page_table, PageTable, ADDR_MASK};
use crate::arch::ipi::CpuSet;
use crate::arch::percpu;
use crate::arch::tlb::{shootdown, FlushScope};
use crate::sync::{RwSem, SpinLock};

pub const PAGE: u64 = FRAME_SIZE;
/// The initial stack: its top, and how far it may extend down.
pub const STACK_TOP: u64 = USER_END;
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

impl Drop for SharedMemory {
    fn drop(&mut self) {
        for (_, frame) in core::mem::take(&mut *self.pages.lock()) {
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
    /// must be freed after the flush.
    fn zap(&self, vma: &Vma, start: u64, end: u64, gather: &mut TlbGather) {
        for page in (start..end).step_by(PAGE as usize) {
            let Some(pte) = self.pte(page, false) else { continue };
            let old = pte.swap(0, Ordering::AcqRel);
            if old == 0 {
                continue;
            }
            gather.add_page(page);
            if matches!(vma.backing, Backing::Private) {
                gather.frames.push(PhysFrame::containing_address(PhysAddr::new(old & ADDR_MASK)));
            }
        }
    }

    /// Rewrites the entries of [start, end) for protection `prot`.
    fn change_protection(&self, start: u64, end: u64, prot: Prot, gather: &mut TlbGather) {
        for page in (start..end).step_by(PAGE as usize) {
            let Some(pte) = self.pte(page, false) else { continue };
            let _ = pte.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                if old == 0 {
                    return None;
                }
                Some(if prot.is_none() {
                    (old & ADDR_MASK) | PTE_PROT_NONE
                } else {
                    (old & ADDR_MASK) | prot.pte_flags().bits()
                })
            });
            gather.add_page(page);
        }
    }

    /// mmap of anonymous memory; the system-call layer has checked the flags.
    pub fn mmap(&self, request: &MmapRequest) -> Result<u64, MapError> {
        let len = request.len.checked_add(PAGE - 1).ok_or(MapError::NoMemory)? & !(PAGE - 1);
        if len == 0 || len > USER_END {
            return Err(MapError::NoMemory);
        }
        let mut gather = TlbGather::new();
        let start = {
            let mut map = self.vmas.write();
            let start = if request.fixed || request.fixed_noreplace {
                let start = request.addr;
                if !start.is_multiple_of(PAGE) {
                    return Err(MapError::Invalid);
                }
                if start.checked_add(len).is_none_or(|end| end > USER_END) {
                    return Err(MapError::NoMemory);
                }
                if request.fixed_noreplace && map.overlaps(start, start + len) {
                    return Err(MapError::Exists);
                }
                start
            } else {
                let hint = request.addr & !(PAGE - 1);
                if hint >= MMAP_MIN
                    && hint.checked_add(len).is_some_and(|e| e <= USER_END)
                    && !map.overlaps(hint, hint + len)
                {
                    hint
                } else {
                    map.find_free(len).ok_or(MapError::NoMemory)?
                }
            };
            // A new VMA, plus one more if MAP_FIXED splits an existing one.
            if map.len() + 2 > MAX_MAP_COUNT {
                return Err(MapError::NoMemory);
            }
            if request.fixed {
                for vma in map.remove_range(start, start + len) {
                    self.zap(&vma, vma.start, vma.end, &mut gather);
                    gather.dropped_vmas.push(vma);
                }
            }
            let backing = if request.shared {
                Backing::Shared { memory: Arc::new(SharedMemory::default()), first_page: 0 }
            } else {
                Backing::Private
            };
            map.insert(Vma { start, end: start + len, prot: request.prot, backing });
            start
        };
        gather.finish(self);
        if request.populate {
            self.populate(start, start + len);
        }
        Ok(start)
    }

    /// Faults in every page of [start, end) that its VMA allows (MAP_POPULATE).
    fn populate(&self, start: u64, end: u64) {
        let map = self.vmas.read();
        for page in (start..end).step_by(PAGE as usize) {
            if let Some(vma) = map.find(page) {
                let access = if vma.prot.contains(Prot::WRITE) { Access::Write } else { Access::Read };
                if self.handle_fault(vma, page, access).is_err() {
                    break;
                }
            }
        }
    }

    pub fn munmap(&self, start: u64, len: u64) -> Result<(), MapError> {
        let end = checked_range(start, len).ok_or(MapError::Invalid)?;
        let mut gather = TlbGather::new();
        {
            let mut map = self.vmas.write();
            // Unmapping the middle of a VMA splits it in two.
            if map.len() + 1 > MAX_MAP_COUNT {
                return Err(MapError::NoMemory);
            }
            for vma in map.remove_range(start, end) {
                self.zap(&vma, vma.start, vma.end, &mut gather);
                gather.dropped_vmas.push(vma);
            }
        }
        gather.finish(self);
        Ok(())
    }

    /// Applies `prot` to [start, end); fails with NoMemory at the first hole
    /// (VMAs before it keep the change, as on Linux).
    pub fn mprotect(&self, start: u64, len: u64, prot: Prot) -> Result<(), MapError> {
        let end =
            start.checked_add((len + PAGE - 1) & !(PAGE - 1)).filter(|&e| e <= USER_END).ok_or(MapError::NoMemory)?;
        let mut gather = TlbGather::new();
        let result = {
            let mut map = self.vmas.write();
            let mut result = Ok(());
            let mut cursor = start;
            if map.len() + 2 > MAX_MAP_COUNT {
                return Err(MapError::NoMemory);
            }
            map.split_at(start);
            map.split_at(end);
            while cursor < end {
                let Some(vma) = map.vmas.get_mut(&cursor) else {
                    result = Err(MapError::NoMemory);
                    break;
                };
                vma.prot = prot;
                let vma_end = vma.end;
                self.change_protection(cursor, vma_end, prot, &mut gather);
                cursor = vma_end;
            }
            let touched: Vec<u64> = map.vmas.range(start..=end).map(|(&k, _)| k).collect();
            for boundary in touched.into_iter().chain([end]) {
                map.merge_at(boundary);
            }
            result
        };
        gather.finish(self);
        result
    }

    /// MADV_DONTNEED: drops the pages of [start, end); private ones read back
    /// as zero afterwards, shared ones keep their contents. NoMemory if part of
    /// the range is unmapped (the mapped parts are still dropped).
    pub fn madvise_dontneed(&self, start: u64, len: u64) -> Result<(), MapError> {
        let end =
            start.checked_add((len + PAGE - 1) & !(PAGE - 1)).filter(|&e| e <= USER_END).ok_or(MapError::NoMemory)?;
        let mut gather = TlbGather::new();
        let result = {
            let map = self.vmas.read();
            let mut cursor = start;
            let mut result = Ok(());
            for vma in map.vmas.range(..end).map(|(_, v)| v).filter(|v| v.end > start) {
                if vma.start > cursor {
                    result = Err(MapError::NoMemory);
                }
                self.zap(vma, vma.start.max(start), vma.end.min(end), &mut gather);
                cursor = vma.end;
            }
            if cursor < end {
                result = Err(MapError::NoMemory);
            }
            result
        };
        gather.finish(self);
        result
    }

    /// Whether all of [start, start + len) is mapped (madvise's check).
    pub fn is_mapped(&self, start: u64, len: u64) -> bool {
        let end = start.saturating_add(len);
        let map = self.vmas.read();
        let mut cursor = start;
        for vma in map.vmas.range(..end).map(|(_, v)| v).filter(|v| v.end > start) {
            if vma.start > cursor {
                return false;
            }
            cursor = vma.end;
        }
        cursor >= end
    }

    /// brk: moves the program break; returns the break in effect afterwards.
    pub fn brk(&self, requested: u64) -> u64 {
        let mut gather = TlbGather::new();
        let result = {
            let mut map = self.vmas.write();
            let (base, old) = (map.brk_start, map.brk);
            if requested < base || requested > USER_END {
                return old;
            }
            let old_end = (old + PAGE - 1) & !(PAGE - 1);
            let new_end = (requested + PAGE - 1) & !(PAGE - 1);
            if new_end < old_end {
                for vma in map.remove_range(new_end, old_end) {
                    self.zap(&vma, vma.start, vma.end, &mut gather);
                    gather.dropped_vmas.push(vma);
                }
            } else if new_end > old_end {
                if map.overlaps(old_end, new_end) || map.len() + 1 > MAX_MAP_COUNT {
                    return old;
                }
                map.insert(Vma {
                    start: old_end,
                    end: new_end,
                    prot: Prot::READ | Prot::WRITE,
                    backing: Backing::Private,
                });
            }
            map.brk = requested;
            requested
        };
        gather.finish(self);
        result
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
    if !start.is_multiple_of(PAGE) || len == 0 {
        return None;
    }
    let end = start.checked_add(len.checked_add(PAGE - 1)? & !(PAGE - 1))?;
    (end <= USER_END).then_some(end)
}

/// Pages whose translations were removed or changed, and the frames to free
/// once every CPU has dropped them: gather, then flush, then free.
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

    /// Flushes every CPU that has `mm` loaded, then frees.
    fn finish(self, mm: &AddressSpace) {
        if self.pages > 0 {
            let span = ((self.last - self.first) / PAGE + 1) as usize;
            let _guard = percpu::PreemptGuard::new();
            let cpus = mm.cpus();
            if !cpus.is_empty() {
                mm.stats.shootdowns.fetch_add(1, Ordering::Relaxed);
                shootdown(cpus, FlushScope::Range { start: VirtAddr::new(self.first), pages: span });
            }
        }
        self.release();
    }

    fn release(self) {
        for frame in self.frames {
            // SAFETY: the frame belonged to a private page whose entry is
            // gone and whose translation every CPU has dropped (`finish`).
            drop(unsafe { Frame::from_raw(frame) });
        }
        drop(self.dropped_vmas);
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

/// Frames in use, for leak checks around a process's life.
pub fn frames_in_use() -> usize {
    frame::allocated()
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
        mm.mprotect(base + PAGE, PAGE, Prot::READ).unwrap();
        assert_eq!(
            ranges(&mm),
            [
                (base, base + PAGE, RW),
                (base + PAGE, base + 2 * PAGE, Prot::READ),
                (base + 2 * PAGE, base + 4 * PAGE, RW)
            ]
        );
        mm.mprotect(base + PAGE, PAGE, RW).unwrap();
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
        assert_eq!(mm.mprotect(base + PAGE, PAGE, RW), Err(MapError::NoMemory), "mprotect of a hole");
        assert_eq!(mm.munmap(base + 1, PAGE), Err(MapError::Invalid));
        assert_eq!(mm.munmap(USER_END, PAGE), Err(MapError::Invalid));
        assert_eq!(mm.madvise_dontneed(base, 2 * PAGE), Err(MapError::NoMemory), "part of the range is a hole");
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
        mm.madvise_dontneed(base, 32 * PAGE).unwrap();
        drop(mm);
        assert_eq!(frame::allocated(), before, "data and page-table frames all came back");
    }

    #[test_case]
    fn the_vma_count_is_capped_like_linux() {
        let mm = AddressSpace::new().unwrap();
        let base = 0x30_0000_0000;
        let pages = MAX_MAP_COUNT as u64 + 8;
        mm.mmap(&MmapRequest { prot: Prot::READ, ..anon(base, pages * PAGE, true) }).unwrap();
        // Every other page writable: each mprotect adds VMAs until the cap.
        let mut refused = None;
        for i in (1..pages).step_by(2) {
            if let Err(err) = mm.mprotect(base + i * PAGE, PAGE, RW) {
                refused = Some((i, err));
                break;
            }
        }
        let (at, err) = refused.expect("the cap was reached");
        assert_eq!(err, MapError::NoMemory);
        assert!(mm.vmas.read().len() <= MAX_MAP_COUNT);
        assert!(at > MAX_MAP_COUNT as u64 - 8, "refused only near the cap (at page {at})");
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
