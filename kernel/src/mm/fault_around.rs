//! Anonymous fault-around: a fault that continues a sequential run through
//! private anonymous memory maps the next pages of its VMA too, up to the
//! next 64 KiB boundary, so that a program writing through a fresh mapping
//! takes one fault per 16 pages instead of one per page.
//!
//! It plays the part of Linux's multi-size THP for anonymous memory (64 KiB
//! folios), without the folio: each page is an ordinary 4 KiB frame, zeroed,
//! and can be dropped, protected or unmapped on its own. What it costs is
//! memory a program may never touch, so it is kept narrow:
//!
//! - Only for a run: the fault must land on the page right after the last
//!   fault (or fault-around) in the same VMA. A first fault, or faults that
//!   jump about, map one page, as before. (So a program that touches page 0
//!   and page 2 sees exactly those two resident in `mincore`, as on Linux.)
//! - Only within the VMA and its leaf page table (the 64 KiB block is
//!   aligned), only into empty entries: it stops at the first page already
//!   there.
//! - Not in VMAs advised MADV_NOHUGEPAGE or MADV_RANDOM, the two hints Linux
//!   reads as "no large anonymous folios" and "no read-ahead". As on Linux,
//!   these hints are VMA flags: madvise splits VMAs at the range's ends to
//!   set them, and VMAs whose hints differ do not merge.
//! - Only while memory is plentiful (`Frame::alloc_spare_batch`):
//!   it never takes a frame a program's own fault would need, and never
//!   causes an out-of-memory kill.
//!
//! The pages it maps are counted apart from faults (`MmStats::fault_around_pages`,
//! `pgfault_around` in `/proc/vmstat`): `pgfault` counts exceptions taken.

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use super::addrspace::AddressSpace;
use super::frame::Frame;
use super::pages::PAGE;
use super::vma::{Advice, Backing, Vma};

/// Whether fault-around is on (`boot --fault-around`; on by default).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns fault-around on or off for every VMA.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Pages per fault-around block (64 KiB), the faulting page included.
pub const BLOCK_PAGES: u64 = 16;

/// Hint bits (`FaultAround::hints`): Linux's VM_NOHUGEPAGE, VM_RAND_READ,
/// VM_HUGEPAGE and VM_SEQ_READ, so that the same madvise calls split and
/// merge VMAs as there. The first two turn fault-around off.
const NO_HUGE: u8 = 1;
const RANDOM: u8 = 2;
const HUGE: u8 = 4;
const SEQUENTIAL: u8 = 8;

/// A VMA's fault-around state.
#[derive(Debug)]
pub struct FaultAround {
    /// The hint bits, from madvise. Set before the VMA is published and
    /// fixed from then on, as its protection is (`VmaMap::set_hints` makes a
    /// new VMA to change them); atomic only so that it can be set through
    /// the `Arc`.
    hints: AtomicU8,
    /// A heuristic, read and written by faults with relaxed atomics: a stale
    /// value maps a few pages more or fewer, never a wrong one (the entries
    /// themselves are set by compare-and-swap).
    /// The page number (address / 4 KiB) a fault continuing the current run
    /// would hit; u64::MAX before the VMA's first fault.
    next: AtomicU64,
}

impl FaultAround {
    /// No hints, no run yet.
    pub const fn new() -> FaultAround {
        FaultAround { hints: AtomicU8::new(0), next: AtomicU64::new(u64::MAX) }
    }

    /// A new VMA made from `from` (a split, a new protection, a move) keeps its hints.
    pub fn inherit(&self, from: &FaultAround) {
        self.hints.store(from.hints.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The hint bits (VMAs merge only if theirs are equal).
    pub fn hints(&self) -> u8 {
        self.hints.load(Ordering::Relaxed)
    }

    /// The hint bits after `advice`, as Linux's madvise_vma_behavior and
    /// hugepage_madvise change its flags: each of MADV_HUGEPAGE and
    /// MADV_NOHUGEPAGE sets its bit and clears the other's; MADV_RANDOM and
    /// MADV_SEQUENTIAL likewise; MADV_NORMAL clears both of theirs.
    pub fn hints_after(&self, advice: Advice) -> u8 {
        let hints = self.hints();
        match advice {
            Advice::NoHugePage => (hints & !HUGE) | NO_HUGE,
            Advice::HugePage => (hints & !NO_HUGE) | HUGE,
            Advice::Random => (hints & !SEQUENTIAL) | RANDOM,
            Advice::Sequential => (hints & !RANDOM) | SEQUENTIAL,
            Advice::Normal => hints & !(RANDOM | SEQUENTIAL),
            _ => hints,
        }
    }

    /// Sets the hint bits of a VMA not yet published.
    pub fn set_hints(&self, hints: u8) {
        self.hints.store(hints, Ordering::Relaxed);
    }

    /// Whether madvise left fault-around on.
    pub fn allowed(&self) -> bool {
        self.hints() & (NO_HUGE | RANDOM) == 0
    }
}

impl Default for FaultAround {
    fn default() -> Self {
        FaultAround::new()
    }
}

/// How many pages a fault at `page` (page-aligned, inside `vma`) should map:
/// 1, or up to the end of its 64 KiB block (and of the VMA) when it
/// continues a run in private memory fault-around may use. Never crosses a
/// leaf table: blocks are aligned and 512 is a multiple of 16.
pub fn window(vma: &Vma, page: u64) -> usize {
    let number = page / PAGE;
    if !matches!(vma.backing, Backing::Private)
        || !vma.around.allowed()
        || !ENABLED.load(Ordering::Relaxed)
        || vma.around.next.load(Ordering::Relaxed) != number
    {
        return 1;
    }
    let block_end = (number / BLOCK_PAGES + 1) * BLOCK_PAGES;
    (block_end.min(vma.end / PAGE) - number) as usize
}

impl AddressSpace {
    /// After a fault installed `page` in `vma`: fills the empty entries
    /// `rest` (those of the pages right after it, from `window`) with zeroed
    /// frames of entry flags `flags`, stopping at the first one already
    /// there or when memory is not plentiful; then records where the run
    /// goes on. Returns the pages it mapped. The caller holds a lock that
    /// keeps `vma` (its read lock or the mmap lock), so no zap runs meanwhile.
    pub(super) fn fault_around(&self, vma: &Vma, page: u64, rest: &[AtomicU64], flags: u64) -> u64 {
        let empty = rest.iter().take_while(|entry| entry.load(Ordering::Acquire) == 0).count();
        let mut mapped = 0;
        let mut racing = false;
        // One allocation for the window; frames left when the run ends are freed.
        Frame::alloc_spare_batch(empty, |mut frame, zeroed| {
            if racing {
                return;
            }
            if !zeroed {
                crate::arch::zero_page(frame.bytes_mut());
            }
            let entry = &rest[mapped as usize];
            let phys = frame.start().as_u64();
            if entry.compare_exchange(0, phys | flags, Ordering::AcqRel, Ordering::Acquire).is_err() {
                // A fault on that page won the race: ours is freed, the run ends.
                racing = true;
                return;
            }
            let _ = frame.into_raw();
            mapped += 1;
        });
        if mapped > 0 {
            self.stats.fault_around_pages.fetch_add(mapped, Ordering::Relaxed);
        }
        vma.around.next.store(page / PAGE + 1 + mapped, Ordering::Relaxed);
        mapped
    }

    /// After a fault that mapped `page` alone: a run may start here.
    pub(super) fn note_fault(vma: &Vma, page: u64) {
        if matches!(vma.backing, Backing::Private) {
            vma.around.next.store(page / PAGE + 1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use x86_64::VirtAddr;

    use super::*;
    use crate::mm::addrspace::{Access, MapError, MmapRequest, Prot};

    /// 64 KiB-aligned, so that blocks start where the test says.
    const BASE: u64 = 0x41_0000_0000;

    /// A space with a private read-write mapping of `pages` pages at BASE.
    fn space(pages: u64, shared: bool) -> AddressSpace {
        let mm = AddressSpace::new().expect("a space");
        let request = MmapRequest {
            addr: BASE,
            fixed: true,
            len: pages * PAGE,
            prot: Prot::READ | Prot::WRITE,
            shared,
            ..MmapRequest::default()
        };
        mm.mmap(&request).expect("mmap");
        mm
    }

    fn fault(mm: &AddressSpace, page: u64) {
        mm.fault(BASE + page * PAGE, Access::Write).expect("the fault resolves");
    }

    /// The pages of [0, pages) with an entry.
    fn present(mm: &AddressSpace, pages: u64) -> Vec<u64> {
        (0..pages).filter(|&i| mm.page_table.translate(VirtAddr::new(BASE + i * PAGE)).is_some()).collect()
    }

    fn around(mm: &AddressSpace) -> u64 {
        mm.stats.fault_around_pages.load(Ordering::Relaxed)
    }

    #[test_case]
    fn a_sequential_run_maps_up_to_the_end_of_each_64k_block() {
        let mm = space(64, false);
        fault(&mm, 0);
        assert_eq!(present(&mm, 64), [0], "a first fault maps its page alone");
        fault(&mm, 1);
        assert_eq!(present(&mm, 64), (0..16).collect::<Vec<_>>(), "the run maps to the block's end");
        assert_eq!(around(&mm), 14);
        fault(&mm, 16);
        assert_eq!(present(&mm, 64), (0..32).collect::<Vec<_>>(), "the next block, whole");
        assert_eq!(around(&mm), 29);
        assert_eq!(mm.stats.faults(), 3, "three exceptions");
    }

    #[test_case]
    fn switched_off_it_maps_one_page_per_fault() {
        let mm = space(32, false);
        set_enabled(false);
        for page in 0..4 {
            fault(&mm, page);
        }
        set_enabled(true);
        assert_eq!(present(&mm, 32), [0, 1, 2, 3]);
        fault(&mm, 4);
        assert_eq!(present(&mm, 32), (0..16).collect::<Vec<_>>(), "on again, the run goes on");
    }

    #[test_case]
    fn faults_that_jump_map_only_their_own_pages() {
        let mm = space(64, false);
        for page in [0, 2, 5, 4, 40] {
            fault(&mm, page);
        }
        assert_eq!(present(&mm, 64), [0, 2, 4, 5, 40]);
        assert_eq!(around(&mm), 0);
    }

    #[test_case]
    fn it_stops_at_the_vma_end_and_at_a_page_already_there() {
        let mm = space(8, false);
        fault(&mm, 0);
        fault(&mm, 1);
        assert_eq!(present(&mm, 16), (0..8).collect::<Vec<_>>(), "pages 1-7, not past the VMA");
        assert_eq!(around(&mm), 6);

        let mm = space(32, false);
        fault(&mm, 10);
        fault(&mm, 0);
        fault(&mm, 1);
        assert_eq!(present(&mm, 32), (0..=10).collect::<Vec<_>>(), "the run stops at page 10");
        assert_eq!(around(&mm), 8);
    }

    #[test_case]
    fn madv_nohugepage_and_random_turn_it_off_and_their_opposites_on() {
        let pairs = [
            (Advice::NoHugePage, Advice::HugePage),
            (Advice::Random, Advice::Normal),
            (Advice::Random, Advice::Sequential),
        ];
        for (off, on) in pairs {
            let mm = space(32, false);
            mm.madvise(BASE, BASE + 32 * PAGE, off).expect("madvise");
            for page in 0..4 {
                fault(&mm, page);
            }
            assert_eq!(present(&mm, 32), [0, 1, 2, 3], "{off:?}: one page per fault");
            mm.madvise(BASE, BASE + 32 * PAGE, on).expect("madvise");
            // The VMA is a new one: its run starts again.
            fault(&mm, 4);
            fault(&mm, 5);
            assert_eq!(present(&mm, 32), (0..16).collect::<Vec<_>>(), "{on:?}: runs map ahead again");
        }
    }

    #[test_case]
    fn a_hint_on_part_of_a_vma_splits_it_as_on_linux() {
        let mm = space(32, false);
        mm.madvise(BASE + 16 * PAGE, BASE + 32 * PAGE, Advice::NoHugePage).expect("madvise");
        assert_eq!(mm.read_lock().len(), 2, "the hinted half is a VMA of its own");
        for page in [0, 1, 16, 17, 18] {
            fault(&mm, page);
        }
        assert_eq!(present(&mm, 32), (0..19).collect::<Vec<_>>(), "the first half maps ahead, the second not");
        assert_eq!(around(&mm), 14);
        // MADV_HUGEPAGE sets a flag of its own, as on Linux: still two.
        mm.madvise(BASE + 16 * PAGE, BASE + 32 * PAGE, Advice::HugePage).expect("madvise");
        assert_eq!(mm.read_lock().len(), 2, "VM_HUGEPAGE against no flag");
        mm.madvise(BASE, BASE + 16 * PAGE, Advice::HugePage).expect("madvise");
        assert_eq!(mm.read_lock().len(), 1, "alike again, the halves merge");
        mm.madvise(BASE + 16 * PAGE, BASE + 32 * PAGE, Advice::Random).expect("madvise");
        mm.madvise(BASE + 16 * PAGE, BASE + 32 * PAGE, Advice::Normal).expect("madvise");
        assert_eq!(mm.read_lock().len(), 1, "MADV_NORMAL undoes MADV_RANDOM");
        // A hint that changes nothing splits nothing.
        mm.madvise(BASE + 4 * PAGE, BASE + 8 * PAGE, Advice::Normal).expect("madvise");
        assert_eq!(mm.read_lock().len(), 1);
        // A hole: the rest takes the hint, the call says ENOMEM.
        mm.munmap(BASE + 8 * PAGE, PAGE).expect("munmap");
        assert_eq!(mm.madvise(BASE, BASE + 32 * PAGE, Advice::Random), Err(MapError::NoMemory));
        assert_eq!(mm.read_lock().len(), 2, "both sides of the hole took it");
        assert!(mm.read_lock().range(BASE, BASE + 32 * PAGE).all(|vma| !vma.around.allowed()));
    }

    #[test_case]
    fn shared_memory_and_populate_map_only_what_they_are_asked() {
        let mm = space(32, true);
        fault(&mm, 0);
        fault(&mm, 1);
        assert_eq!(present(&mm, 32), [0, 1], "shared memory: one page per fault");

        let mm = space(32, false);
        mm.madvise(BASE, BASE + 2 * PAGE, Advice::PopulateWrite).expect("populate");
        assert_eq!(present(&mm, 32), [0, 1], "populate: the pages asked for");
    }

    #[test_case]
    fn pages_mapped_ahead_are_zero_private_and_writable() {
        let mm = space(16, false);
        fault(&mm, 0);
        fault(&mm, 1);
        let mut frames = Vec::new();
        for page in 2..16 {
            let t = mm.page_table.translate(VirtAddr::new(BASE + page * PAGE)).expect("mapped ahead");
            assert!(t.flags.contains(x86_64::structures::paging::PageTableFlags::WRITABLE));
            assert!(t.flags.contains(x86_64::structures::paging::PageTableFlags::USER_ACCESSIBLE));
            // SAFETY: the frame is mapped in `mm` only, which no CPU runs;
            // reading it through the physical map races with nothing.
            let bytes = unsafe { &*crate::mm::phys_to_virt(t.phys).as_ptr::<[u8; 4096]>() };
            assert!(bytes.iter().all(|&b| b == 0), "page {page} is not zero");
            frames.push(t.phys);
        }
        frames.sort_unstable();
        frames.dedup();
        assert_eq!(frames.len(), 14, "each page has a frame of its own");
    }
}
