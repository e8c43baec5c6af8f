//! Page tables: map, unmap, translate and change flags, over the physical map.
//!
//! Entries are read and written atomically, so several CPUs can work on one
//! table at once: a missing intermediate table is installed with a
//! compare-and-swap on its parent entry (the loser frees its copy), and a leaf
//! is installed only over an empty entry. Intermediate tables are never freed
//! here; freeing them is the unmap path's job, after the TLB flush.
//!
//! None of these functions flush the TLB: the caller knows which CPUs may hold
//! the old translation (`arch::tlb` and, later, shootdowns).

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use spin::Once;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::{Page, PageTableFlags, PhysFrame, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

use super::frame::Frame;
use super::phys_to_virt;
use super::vma::{MmapWriteGuard, VmaLockHeld};

pub use x86_64::structures::paging::PageTableFlags as Flags;

/// The end of the lower (user) half: the first 256 PML4 entries.
pub(crate) const USER_HALF_END: u64 = 1 << 47;

/// Physical address bits of an entry.
pub(crate) const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const ENTRIES: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The page already has a translation.
    AlreadyMapped,
    /// No frame for a missing page table.
    OutOfMemory,
    /// A huge page covers the address.
    HugePage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnmapError {
    NotMapped,
    HugePage,
}

/// Where an address leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    pub phys: PhysAddr,
    pub flags: PageTableFlags,
    /// 4 KiB, 2 MiB or 1 GiB.
    pub page_size: u64,
}

/// Why a walk stopped short of the entry it was looking for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WalkError {
    Missing,
    HugePage,
    OutOfMemory,
}

impl From<WalkError> for MapError {
    fn from(e: WalkError) -> Self {
        match e {
            WalkError::HugePage => MapError::HugePage,
            // `map` always creates missing tables, so "missing" cannot reach it.
            WalkError::Missing | WalkError::OutOfMemory => MapError::OutOfMemory,
        }
    }
}

/// The x86-64 layout for `mmsync::pgtable`: tables named by physical
/// address, 512 entries, 4 KiB pages.
struct KernelTables;

impl mmsync::pgtable::Tables for KernelTables {
    const PAGE_SHIFT: u32 = 12;
    const INDEX_BITS: u32 = 9;

    fn entry(&self, table: u64, index: usize) -> &AtomicU64 {
        &entries(PhysAddr::new(table))[index]
    }

    fn child(&self, value: u64) -> Option<u64> {
        (value & PageTableFlags::PRESENT.bits() != 0 && value & PageTableFlags::HUGE_PAGE.bits() == 0)
            .then_some(value & ADDR_MASK)
    }
}

/// A four-level page table, named by its root (PML4) frame.
#[derive(Debug)]
pub struct PageTable {
    root: PhysFrame,
}

static KERNEL_PAGE_TABLE: Once<PageTable> = Once::new();

/// Tables created in kernel walks (`for_user == false`): kept for good.
static KERNEL_TABLE_FRAMES: AtomicUsize = AtomicUsize::new(0);
/// User page-table pages allocated since boot, in every address space (the
/// freed ones are counted per space: `MmStats::tables_freed`).
static USER_TABLES_ALLOCATED: AtomicUsize = AtomicUsize::new(0);

pub fn user_tables_allocated() -> usize {
    USER_TABLES_ALLOCATED.load(Ordering::Relaxed)
}

/// Page-table frames the kernel's own mappings took (they are never freed).
pub fn kernel_table_frames() -> usize {
    KERNEL_TABLE_FRAMES.load(Ordering::Relaxed)
}

/// The kernel's page table: the one the bootloader built, which every address
/// space shares the upper half of.
pub fn kernel_page_table() -> &'static PageTable {
    KERNEL_PAGE_TABLE.get().expect("paging initialised")
}

pub(super) fn init() {
    let table = KERNEL_PAGE_TABLE.call_once(|| PageTable { root: Cr3::read().0 });
    // Create the PML4 entries of the kernel's own ranges now, so that address
    // spaces copied from the kernel half later see everything added below them.
    for start in super::layout::KERNEL_OWN_SLOTS {
        table
            .walk(VirtAddr::new(start), Some(intermediate_flags(PageTableFlags::WRITABLE)), 3, false)
            .expect("a frame for each kernel PML4 slot");
    }
}

/// The 512 entries of the table in `frame`.
fn entries(frame: PhysAddr) -> &'static [AtomicU64; ENTRIES] {
    // SAFETY: `frame` is a page-table frame reached from a live root: the
    // physical map covers it, it is 4 KiB aligned, and page-table frames are
    // not freed while their table is reachable. Every access to an entry is
    // atomic, so sharing it with the MMU and other CPUs is sound.
    unsafe { &*phys_to_virt(frame).as_ptr::<[AtomicU64; ENTRIES]>() }
}

fn index(addr: VirtAddr, level: u8) -> usize {
    ((addr.as_u64() >> (12 + 9 * (level as u64 - 1))) & 0x1ff) as usize
}

/// Flags for intermediate entries: as permissive as the leaf needs, because
/// the effective rights are the intersection over all levels.
fn intermediate_flags(leaf: PageTableFlags) -> PageTableFlags {
    PageTableFlags::PRESENT | PageTableFlags::WRITABLE | (leaf & PageTableFlags::USER_ACCESSIBLE)
}

impl PageTable {
    /// # Safety
    /// `root` is a PML4 frame whose tables stay allocated while this value is
    /// used, and that nothing else frees or repurposes meanwhile.
    pub unsafe fn from_root(root: PhysFrame) -> PageTable {
        PageTable { root }
    }

    pub fn root(&self) -> PhysFrame {
        self.root
    }

    /// The entry for `addr` at `stop_level` (1 = the 4 KiB leaf). With
    /// `create`, missing tables on the way are allocated with those flags.
    /// Tables created for user pages come from the user side of the frame
    /// reserve (`for_user`), so a program cannot spend the kernel's last frames.
    fn walk(
        &self,
        addr: VirtAddr,
        create: Option<PageTableFlags>,
        stop_level: u8,
        for_user: bool,
    ) -> Result<&'static AtomicU64, WalkError> {
        self.walk_to_table(addr, create, stop_level, for_user).map(|table| &table[index(addr, stop_level)])
    }

    /// `walk`, returning the whole table at `stop_level` that holds `addr`'s
    /// entry.
    fn walk_to_table(
        &self,
        addr: VirtAddr,
        create: Option<PageTableFlags>,
        stop_level: u8,
        for_user: bool,
    ) -> Result<&'static [AtomicU64; ENTRIES], WalkError> {
        let mut table = self.root.start_address();
        for level in (stop_level + 1..=4).rev() {
            let entry = &entries(table)[index(addr, level)];
            let mut value = entry.load(Ordering::Acquire);
            if value & PageTableFlags::PRESENT.bits() == 0 {
                let Some(flags) = create else { return Err(WalkError::Missing) };
                let new = if for_user { Frame::alloc_zeroed_for_user() } else { Frame::alloc_zeroed() }
                    .map_err(|_| WalkError::OutOfMemory)?;
                let proposed = new.start().as_u64() | flags.bits();
                match entry.compare_exchange(value, proposed, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => {
                        let _table_frame = new.into_raw();
                        if for_user {
                            USER_TABLES_ALLOCATED.fetch_add(1, Ordering::Relaxed);
                        } else {
                            KERNEL_TABLE_FRAMES.fetch_add(1, Ordering::Relaxed);
                        }
                        value = proposed;
                    }
                    // Another CPU installed a table first: use theirs, free ours.
                    Err(current) => value = current,
                }
            } else if let Some(flags) = create {
                let missing = flags.bits() & !value;
                if missing & PageTableFlags::USER_ACCESSIBLE.bits() != 0 {
                    value = entry.fetch_or(missing, Ordering::AcqRel) | missing;
                }
            }
            if value & PageTableFlags::HUGE_PAGE.bits() != 0 {
                return Err(WalkError::HugePage);
            }
            table = PhysAddr::new(value & ADDR_MASK);
        }
        Ok(entries(table))
    }

    fn leaf(&self, page: Page<Size4KiB>) -> Result<&'static AtomicU64, UnmapError> {
        self.walk(page.start_address(), None, 1, false).map_err(|e| match e {
            WalkError::HugePage => UnmapError::HugePage,
            WalkError::Missing | WalkError::OutOfMemory => UnmapError::NotMapped,
        })
    }

    /// Maps `page` to `frame` with `flags` (PRESENT is implied). The frame is
    /// not owned by the table: the caller decides when it may be freed.
    pub fn map(&self, page: Page<Size4KiB>, frame: PhysFrame, flags: PageTableFlags) -> Result<(), MapError> {
        let entry = self.walk(page.start_address(), Some(intermediate_flags(flags)), 1, false)?;
        let value = frame.start_address().as_u64() | (flags | PageTableFlags::PRESENT).bits();
        entry
            .compare_exchange(0, value, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(|_| MapError::AlreadyMapped)
    }

    /// Removes the translation of `page` and returns the frame it led to.
    /// The caller must flush the TLBs that may hold it before reusing the frame.
    pub fn unmap(&self, page: Page<Size4KiB>) -> Result<PhysFrame, UnmapError> {
        let entry = self.leaf(page)?;
        let old = entry.swap(0, Ordering::AcqRel);
        if old & PageTableFlags::PRESENT.bits() == 0 {
            return Err(UnmapError::NotMapped);
        }
        Ok(PhysFrame::containing_address(PhysAddr::new(old & ADDR_MASK)))
    }

    /// Replaces the flags of a mapped page, keeping its frame; returns the old flags.
    /// The caller must flush the TLBs that may hold the old flags.
    pub fn update_flags(&self, page: Page<Size4KiB>, flags: PageTableFlags) -> Result<PageTableFlags, UnmapError> {
        let entry = self.leaf(page)?;
        let new_flags = (flags | PageTableFlags::PRESENT).bits() & !ADDR_MASK;
        entry
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                (old & PageTableFlags::PRESENT.bits() != 0).then_some((old & ADDR_MASK) | new_flags)
            })
            .map(|old| PageTableFlags::from_bits_truncate(old & !ADDR_MASK))
            .map_err(|_| UnmapError::NotMapped)
    }

    /// The leaf entry for `page`, creating missing tables with user-level
    /// intermediate flags when `create`. For the address-space code, which
    /// keeps its own entry formats (e.g. PROT_NONE pages) with atomic updates.
    ///
    /// User tables are freed by munmap (after the flush, with the VMAs around
    /// them write-locked), so the entry may be used only while a lock keeps
    /// the VMA it belongs to (`held`, an mmap guard or the VMA's read guard):
    /// the reference borrows it and cannot outlive it.
    pub(crate) fn user_pte<'held>(
        &self,
        page: Page<Size4KiB>,
        create: bool,
        _held: &'held impl VmaLockHeld,
    ) -> Result<&'held AtomicU64, MapError> {
        let flags = create.then(|| intermediate_flags(PageTableFlags::USER_ACCESSIBLE));
        self.walk(page.start_address(), flags, 1, true).map_err(|e| match e {
            WalkError::Missing => MapError::AlreadyMapped,
            other => MapError::from(other),
        })
    }

    /// `user_pte` for `count` consecutive pages from `page`, which must all
    /// lie in one leaf table (one 2 MiB-aligned block): their entries in
    /// order, bound to `held` in the same way.
    pub(crate) fn user_ptes<'held>(
        &self,
        page: Page<Size4KiB>,
        count: usize,
        create: bool,
        _held: &'held impl VmaLockHeld,
    ) -> Result<&'held [AtomicU64], MapError> {
        let addr = page.start_address();
        let first = index(addr, 1);
        assert!(count >= 1 && first + count <= ENTRIES, "{count} pages from {addr:?} cross a leaf table");
        let flags = create.then(|| intermediate_flags(PageTableFlags::USER_ACCESSIBLE));
        match self.walk_to_table(addr, flags, 1, true) {
            Ok(table) => Ok(&table[first..first + count]),
            Err(WalkError::Missing) => Err(MapError::AlreadyMapped),
            Err(other) => Err(MapError::from(other)),
        }
    }

    /// Calls `f(addr, entry)` for every non-empty leaf entry of user pages in
    /// [start, end) (present or not: PROT_NONE pages keep a non-zero entry),
    /// descending only into tables that exist. The cost is the number of
    /// populated tables in the range, not its length: unmapping a 1 TiB
    /// reservation with a few touched pages visits a few tables.
    ///
    /// The entry references live only for the call (the closure cannot keep
    /// them): the caller holds a lock that keeps the VMAs of the range (or
    /// owns the space outright), and tables are freed only under the mmap
    /// write lock, so none goes away during the walk.
    pub(crate) fn for_each_user_leaf(&self, start: u64, end: u64, mut f: impl FnMut(u64, &AtomicU64)) {
        fn visit(table: PhysAddr, level: u8, base: u64, start: u64, end: u64, f: &mut dyn FnMut(u64, &AtomicU64)) {
            let span = 1u64 << (12 + 9 * (level as u64 - 1));
            let first = ((start - base) / span) as usize;
            let last = ((end - 1 - base) / span) as usize;
            for (index, entry) in entries(table).iter().enumerate().take(last + 1).skip(first) {
                let value = entry.load(Ordering::Acquire);
                let addr = base + index as u64 * span;
                if level == 1 {
                    if value != 0 {
                        f(addr, entry);
                    }
                    continue;
                }
                if value & PageTableFlags::PRESENT.bits() == 0 || value & PageTableFlags::HUGE_PAGE.bits() != 0 {
                    continue;
                }
                let child = PhysAddr::new(value & ADDR_MASK);
                visit(child, level - 1, addr, start.max(addr), end.min(addr + span), f);
            }
        }
        let end = end.min(super::layout::USER_END);
        if start < end {
            visit(self.root.start_address(), 4, 0, start, end, &mut f);
        }
    }

    /// Moves the user leaf entries of [from, from + len) to the same offsets
    /// from `to` (mremap: the pages move, their data is not copied), and
    /// tells `moved(old_addr, entry)` of each entry moved. The tables the
    /// destination needs are made first, so the move itself cannot fail:
    /// on OutOfMemory nothing has moved (the tables already made stay, for
    /// the caller to free with the destination's floor and ceiling).
    ///
    /// Each entry is taken with one swap and stored into its empty
    /// destination, so its frame is owned by exactly one entry throughout.
    /// The caller flushes the old translations before it drops `_held`.
    /// Caller's contract (why the write guard): the VMAs of both ranges are
    /// write-locked (no fault or zap touches their entries meanwhile), the
    /// ranges do not overlap, and the destination has no entries.
    pub(crate) fn move_user_leaves(
        &self,
        (from, to, len): (u64, u64, u64),
        _held: &MmapWriteGuard<'_>,
        moved: &mut dyn FnMut(u64, u64),
    ) -> Result<(), MapError> {
        let create = Some(intermediate_flags(PageTableFlags::USER_ACCESSIBLE));
        let dest = |addr: u64| VirtAddr::new(addr - from + to);
        let mut failed = None;
        self.for_each_user_leaf(from, from + len, |addr, _| {
            if failed.is_none() {
                failed = self.walk(dest(addr), create, 1, true).err();
            }
        });
        if let Some(err) = failed {
            return Err(err.into());
        }
        self.for_each_user_leaf(from, from + len, |addr, entry| {
            let Ok(target) = self.walk(dest(addr), None, 1, true) else {
                // Made above and not freed since (that needs the write lock
                // we hold): unreachable, and the entry stays where it is.
                debug_assert!(false, "the destination table of {addr:#x} vanished");
                return;
            };
            let value = entry.swap(0, Ordering::AcqRel);
            if value == 0 {
                return;
            }
            if target.compare_exchange(0, value, Ordering::AcqRel, Ordering::Acquire).is_err() {
                // The destination was not empty (the contract is broken): keep the page where it was.
                debug_assert!(false, "mremap's destination {:#x} has an entry", dest(addr).as_u64());
                entry.store(value, Ordering::Release);
                return;
            }
            moved(addr, value);
        });
        Ok(())
    }

    /// Unlinks the user page tables that meet [start, end) and lie wholly in
    /// [floor, ceiling), with every table below them, and hands each table
    /// frame to `retire`. The frames must not be reused before every CPU
    /// that may have walked them has flushed (its paging-structure caches
    /// may still point into them): the caller gathers them for after the
    /// flush. Caller's contract: no mapping lies in [floor, ceiling) (so the
    /// tables hold no translations) and nothing walks that range meanwhile
    /// (the `mmap_lock` is held for writing and the VMAs that covered it
    /// were write-locked and removed; faults in the neighbouring VMAs walk
    /// only tables that overlap them, which are kept). Which tables go is
    /// `mmsync::pgtable`'s decision, model-checked on the host.
    pub(crate) fn unlink_user_tables(
        &self,
        (start, end): (u64, u64),
        (floor, ceiling): (u64, u64),
        retire: &mut dyn FnMut(PhysFrame),
    ) {
        /// Retires `table` (at `level`) and every table below it.
        fn retire_subtree(table: PhysAddr, level: u8, retire: &mut dyn FnMut(PhysFrame)) {
            for entry in entries(table).iter() {
                let value = entry.load(Ordering::Acquire);
                if level == 1 {
                    debug_assert_eq!(value, 0, "a page table freed with a translation in it");
                } else if value & PageTableFlags::PRESENT.bits() != 0 && value & PageTableFlags::HUGE_PAGE.bits() == 0 {
                    retire_subtree(PhysAddr::new(value & ADDR_MASK), level - 1, retire);
                }
            }
            retire(PhysFrame::containing_address(table));
        }
        let end = end.min(USER_HALF_END);
        // The walk and the floor/ceiling decision are shared with the host's
        // model of this against racing faults (`mmsync::pgtable`).
        mmsync::pgtable::unlink_tables(
            &KernelTables,
            self.root.start_address().as_u64(),
            4,
            (start, end),
            (floor, ceiling),
            &mut |table, level| retire_subtree(PhysAddr::new(table), level, retire),
        );
    }

    /// How many page-table pages the user half has (the root not counted).
    pub fn user_table_count(&self) -> usize {
        fn count(table: PhysAddr, level: u8, entries_to_scan: usize) -> usize {
            entries(table)
                .iter()
                .take(entries_to_scan)
                .map(|entry| entry.load(Ordering::Acquire))
                .filter(|&v| v & PageTableFlags::PRESENT.bits() != 0 && v & PageTableFlags::HUGE_PAGE.bits() == 0)
                .map(|v| if level > 2 { 1 + count(PhysAddr::new(v & ADDR_MASK), level - 1, ENTRIES) } else { 1 })
                .sum()
        }
        count(self.root.start_address(), 4, ENTRIES / 2)
    }

    /// Frees every page-table page of the lower (user) half. The leaf entries
    /// must already be empty (their frames released by the caller).
    ///
    /// # Safety
    /// No CPU has this table loaded and no CPU caches translations from it
    /// (it was flushed), and nothing walks it concurrently.
    pub(crate) unsafe fn free_user_tables(&self) {
        fn free_level(table: PhysAddr, level: u8, range: core::ops::Range<usize>) {
            for index in range {
                let value = entries(table)[index].swap(0, Ordering::AcqRel);
                if value & PageTableFlags::PRESENT.bits() == 0 || value & PageTableFlags::HUGE_PAGE.bits() != 0 {
                    continue;
                }
                let child = PhysAddr::new(value & ADDR_MASK);
                if level > 2 {
                    free_level(child, level - 1, 0..ENTRIES);
                }
                // SAFETY: `child` is a page-table frame this table owned
                // (installed by `walk` from `Frame::into_raw`), now unlinked.
                drop(unsafe { Frame::from_raw(PhysFrame::containing_address(child)) });
            }
        }
        free_level(self.root.start_address(), 4, 0..ENTRIES / 2);
    }

    /// Where `addr` leads, if anywhere (huge pages included).
    pub fn translate(&self, addr: VirtAddr) -> Option<Translation> {
        let mut table = self.root.start_address();
        for level in (1..=4u8).rev() {
            let value = entries(table)[index(addr, level)].load(Ordering::Acquire);
            if value & PageTableFlags::PRESENT.bits() == 0 {
                return None;
            }
            let huge = level > 1 && value & PageTableFlags::HUGE_PAGE.bits() != 0;
            if level == 1 || huge {
                let page_size = 1u64 << (12 + 9 * (level as u64 - 1));
                let base = value & ADDR_MASK & !(page_size - 1);
                return Some(Translation {
                    phys: PhysAddr::new(base + (addr.as_u64() & (page_size - 1))),
                    flags: PageTableFlags::from_bits_truncate(value & !ADDR_MASK),
                    page_size,
                });
            }
            table = PhysAddr::new(value & ADDR_MASK);
        }
        unreachable!("the loop returns at level 1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::extable::{probe_read, probe_write};
    use crate::arch::tlb;
    use x86_64::registers::model_specific::{Efer, EferFlags};

    /// A scratch page in the kernel-stacks slot, far from anything the kernel uses yet.
    fn scratch_page(n: u64) -> Page<Size4KiB> {
        Page::containing_address(VirtAddr::new(super::super::layout::KERNEL_STACKS_START + 0x7000_0000 + n * 4096))
    }

    const RW: PageTableFlags = PageTableFlags::WRITABLE.union(PageTableFlags::NO_EXECUTE);

    #[test_case]
    fn map_write_and_read_back_through_the_physical_map() {
        let table = kernel_page_table();
        let page = scratch_page(0);
        let frame = Frame::alloc_zeroed().unwrap();
        table.map(page, frame.phys(), RW).unwrap();
        let ptr = page.start_address().as_mut_ptr::<u64>();
        // SAFETY: the page was just mapped to a frame we own; nothing else uses it.
        unsafe { ptr.write_volatile(0xdead_beef_cafe_f00d) };
        // SAFETY: the frame is ours and mapped; this reads what we wrote.
        let through_phys = unsafe { *phys_to_virt(frame.start()).as_ptr::<u64>() };
        assert_eq!(through_phys, 0xdead_beef_cafe_f00d);
        assert_eq!(table.unmap(page), Ok(frame.phys()));
        tlb::flush_page(page.start_address());
    }

    #[test_case]
    fn translate_reports_frame_flags_and_size() {
        let table = kernel_page_table();
        let page = scratch_page(1);
        let frame = Frame::alloc_zeroed().unwrap();
        table.map(page, frame.phys(), RW).unwrap();
        let t = table.translate(page.start_address() + 0x123u64).expect("mapped");
        assert_eq!(t.phys, frame.start() + 0x123u64);
        assert_eq!(t.page_size, 4096);
        assert!(t.flags.contains(PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE));
        let _ = table.unmap(page).unwrap();
        tlb::flush_page(page.start_address());
        assert_eq!(table.translate(page.start_address()), None);
        // The physical map itself is reachable too (huge pages or not).
        let phys = frame.start();
        assert_eq!(table.translate(phys_to_virt(phys)).map(|t| t.phys), Some(phys));
    }

    #[test_case]
    fn access_after_unmap_faults() {
        let table = kernel_page_table();
        let page = scratch_page(2);
        let frame = Frame::alloc_zeroed().unwrap();
        table.map(page, frame.phys(), RW).unwrap();
        // SAFETY: the address is our scratch page (not device memory).
        assert_eq!(unsafe { probe_read(page.start_address()) }, Ok(0));
        let _ = table.unmap(page).unwrap();
        tlb::flush_page(page.start_address());
        // SAFETY: as above; now unmapped, so the read must fault and be fixed up.
        assert!(unsafe { probe_read(page.start_address()) }.is_err());
    }

    #[test_case]
    fn write_to_a_read_only_page_faults() {
        let table = kernel_page_table();
        let page = scratch_page(3);
        let frame = Frame::alloc_zeroed().unwrap();
        table.map(page, frame.phys(), RW).unwrap();
        // SAFETY: the scratch page is mapped to our frame.
        assert_eq!(unsafe { probe_write(page.start_address(), 7) }, Ok(()));
        let old = table.update_flags(page, PageTableFlags::NO_EXECUTE).unwrap();
        assert!(old.contains(PageTableFlags::WRITABLE));
        tlb::flush_page(page.start_address());
        // SAFETY: as above; the write must fault now that the page is read-only.
        assert!(unsafe { probe_write(page.start_address(), 8) }.is_err());
        // SAFETY: reading our own scratch page.
        assert_eq!(unsafe { probe_read(page.start_address()) }, Ok(7), "the failed write changed nothing");
        let _ = table.unmap(page).unwrap();
        tlb::flush_page(page.start_address());
    }

    #[test_case]
    fn typed_errors_for_double_map_and_missing_unmap() {
        let table = kernel_page_table();
        let page = scratch_page(4);
        let frame = Frame::alloc_zeroed().unwrap();
        table.map(page, frame.phys(), RW).unwrap();
        assert_eq!(table.map(page, frame.phys(), RW), Err(MapError::AlreadyMapped));
        let _ = table.unmap(page).unwrap();
        tlb::flush_page(page.start_address());
        assert_eq!(table.unmap(page), Err(UnmapError::NotMapped));
        assert_eq!(table.update_flags(page, RW), Err(UnmapError::NotMapped));
    }

    #[test_case]
    fn no_execute_is_enabled() {
        assert!(Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE));
        // Heap memory is data: it must not be executable.
        let boxed = alloc::boxed::Box::new(0u64);
        let t = kernel_page_table().translate(VirtAddr::from_ptr(&*boxed)).unwrap();
        assert!(t.flags.contains(PageTableFlags::NO_EXECUTE));
    }
}
