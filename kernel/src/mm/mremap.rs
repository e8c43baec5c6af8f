//! mremap: a mapping grows or shrinks in place, or moves. A move carries the
//! page-table entries over to the new range (`PageTable::move_user_leaves`):
//! the frames stay where they are and no data is copied.
//!
//! The steps and errors are Linux 6.12's (mm/mremap.c), under the mmap
//! write lock throughout:
//! - shrinking (no MREMAP_FIXED) is munmap of the tail;
//! - growth is in place when the old range ends its VMA and the space after
//!   it is free; else a move with MREMAP_MAYMOVE, ENOMEM without;
//! - MREMAP_FIXED unmaps the destination first, MREMAP_DONTUNMAP leaves the
//!   old range mapped (and empty: a private page faults in zeroed, a shared
//!   one finds its object's page again);
//! - old_len 0 of shared memory maps the same object again at the new
//!   range (the old mapping stays); of private memory it is EINVAL.
//!
//! Locking: the VMA the pages leave is write-locked before its first entry
//! moves, and the new VMA is write-locked from birth (`new_vma`), so no fault
//! or MADV_DONTNEED runs on either range meanwhile; faults in other VMAs go
//! on under their own read locks. Every old translation that was present is
//! gathered and flushed before the guard is dropped, and the tables the old
//! range no longer needs are freed as munmap frees them (after the new VMA is
//! in, so that its tables are never among them).

use alloc::sync::Arc;

use x86_64::structures::paging::PageTableFlags;

use super::addrspace::AddressSpace;
use super::layout::USER_END;
use super::munmap::checked_range;
use super::pages;
use super::tlb::TlbGather;
use super::vma::{Backing, MapError, MmapWriteGuard, Vma, MAX_MAP_COUNT};

/// What an mremap call asks for, its flags decoded and checked and its
/// lengths page-aligned (as Linux's PAGE_ALIGN: a length near 2^64 wraps to 0)
/// by the system-call layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct MremapRequest {
    pub old_addr: u64,
    pub old_len: u64,
    pub new_len: u64,
    /// MREMAP_MAYMOVE.
    pub may_move: bool,
    /// MREMAP_FIXED: `new_addr` is where it goes.
    pub fixed: bool,
    /// MREMAP_DONTUNMAP: the old range stays mapped, empty.
    pub dont_unmap: bool,
    /// MREMAP_FIXED's address, or MREMAP_DONTUNMAP's hint.
    pub new_addr: u64,
}

impl AddressSpace {
    /// mremap; returns the mapping's address afterwards.
    pub fn mremap(&self, request: &MremapRequest) -> Result<u64, MapError> {
        let MremapRequest { old_addr: old, old_len, new_len, .. } = *request;
        let aligned = [old, old_len, new_len].into_iter().all(pages::is_aligned);
        if !aligned || new_len == 0 || (request.fixed || request.dont_unmap) && !request.may_move {
            return Err(MapError::Invalid);
        }
        let mut map = self.write_lock();
        if map.find(old).is_none() {
            return Err(MapError::Unmapped);
        }
        if request.fixed || request.dont_unmap {
            return self.mremap_to(&mut map, request);
        }
        if old_len >= new_len {
            // Shrinking is munmap of the tail (wherever its VMAs are).
            if old_len > new_len {
                let tail = old.checked_add(new_len).ok_or(MapError::Invalid)?;
                let end = checked_range(tail, old_len - new_len).ok_or(MapError::Invalid)?;
                self.munmap_locked(&mut map, tail, end)?;
            }
            return Ok(old);
        }
        let vma = vma_to_resize(&map, old, old_len, new_len)?;
        let delta = new_len - old_len;
        if old + old_len == vma.end {
            let end = vma.end.checked_add(delta).filter(|&end| end <= USER_END);
            if let Some(end) = end.filter(|&end| !map.overlaps(vma.end, end)) {
                map.extend(vma.start, end);
                return Ok(old);
            }
        }
        if !request.may_move {
            return Err(MapError::NoMemory);
        }
        let new = map.find_free(new_len).ok_or(MapError::NoMemory)?;
        self.move_vma(&mut map, &vma, (old, old_len), (new, new_len), false)
    }

    /// Linux's mremap_to: MREMAP_FIXED or MREMAP_DONTUNMAP.
    fn mremap_to(&self, map: &mut MmapWriteGuard, request: &MremapRequest) -> Result<u64, MapError> {
        let MremapRequest { old_addr: old, new_addr, new_len, .. } = *request;
        let mut old_len = request.old_len;
        if !pages::is_aligned(new_addr) || new_len > USER_END || new_addr > USER_END - new_len {
            return Err(MapError::Invalid);
        }
        if old.saturating_add(old_len) > new_addr && new_addr + new_len > old {
            return Err(MapError::Invalid);
        }
        // As Linux: room for the worst case (both ranges split) up front,
        // so that no step fails once something has been unmapped.
        if map.len() + 2 >= MAX_MAP_COUNT - 3 {
            return Err(MapError::NoMemory);
        }
        if request.fixed && new_len > 0 {
            self.munmap_locked(map, new_addr, new_addr + new_len)?;
        }
        if old_len > new_len {
            let tail = old.checked_add(new_len).ok_or(MapError::Invalid)?;
            let end = checked_range(tail, old_len - new_len).ok_or(MapError::Invalid)?;
            self.munmap_locked(map, tail, end)?;
            old_len = new_len;
        }
        let vma = vma_to_resize(map, old, old_len, new_len)?;
        let new =
            if request.fixed { new_addr } else { map.unmapped_area(new_addr, new_len).ok_or(MapError::NoMemory)? };
        self.move_vma(map, &vma, (old, old_len), (new, new_len), request.dont_unmap)
    }

    /// Moves [old, old + old_len) of `vma` to the free range [new, new +
    /// new_len): a new VMA with the same protection and backing, the old
    /// range's entries moved into it, and (unless `dont_unmap`) the old
    /// range unmapped.
    fn move_vma(
        &self,
        map: &mut MmapWriteGuard,
        vma: &Arc<Vma>,
        (old, old_len): (u64, u64),
        (new, new_len): (u64, u64),
        dont_unmap: bool,
    ) -> Result<u64, MapError> {
        if map.len() >= MAX_MAP_COUNT - 3 {
            return Err(MapError::NoMemory);
        }
        // No fault or zap of the old range from here on.
        map.start_write(vma);
        let mut gather = TlbGather::new();
        let present = PageTableFlags::PRESENT.bits();
        let moved = self.page_table.move_user_leaves((old, new, old_len), map, &mut |addr, entry| {
            // The old address loses its translation: flush it.
            if entry & present != 0 {
                gather.add_page(addr);
            }
        });
        if moved.is_err() {
            // Nothing moved; the tables made for the destination go again.
            self.free_page_tables(map, new, new + new_len, &mut gather);
            gather.finish(self, map);
            return Err(MapError::NoMemory);
        }
        let moved_vma = map.new_vma(new, new + new_len, vma.prot, vma.backing_from(old));
        moved_vma.around.inherit(&vma.around);
        // old_len 0 (shared memory mapped again) leaves the old range alone.
        let unmap_old = !dont_unmap && old_len > 0;
        if unmap_old {
            self.unmap_locked(map, old, old + old_len, &mut gather);
        }
        map.insert(moved_vma);
        if unmap_old {
            self.free_page_tables(map, old, old + old_len, &mut gather);
        }
        gather.finish(self, map);
        Ok(new)
    }
}

/// Linux's vma_to_resize: the VMA at `old`, if [old, old + old_len) lies in
/// it and may become `new_len` long.
fn vma_to_resize(map: &MmapWriteGuard, old: u64, old_len: u64, new_len: u64) -> Result<Arc<Vma>, MapError> {
    let vma = map.find(old).ok_or(MapError::Unmapped)?.clone();
    // Linux no longer duplicates private mappings this way: the copy would
    // share nothing with the original.
    if old_len == 0 && matches!(vma.backing, Backing::Private) {
        return Err(MapError::Invalid);
    }
    if old_len > vma.end - old {
        return Err(MapError::Unmapped);
    }
    if let Backing::Shared { first_page, .. } = vma.backing {
        let first = first_page + (old - vma.start) / pages::PAGE;
        if first.checked_add(new_len / pages::PAGE).is_none() {
            return Err(MapError::Invalid);
        }
    }
    Ok(vma)
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use x86_64::{PhysAddr, VirtAddr};

    use super::*;
    use crate::mm::addrspace::{frames_in_use, Access, FaultError, MmapRequest, Prot};
    use crate::mm::pages::PAGE;

    const RW: Prot = Prot::READ.union(Prot::WRITE);

    fn anon(addr: u64, len: u64) -> MmapRequest {
        MmapRequest { addr, len, prot: RW, fixed: addr != 0, ..MmapRequest::default() }
    }

    fn remap(old_addr: u64, old_len: u64, new_len: u64) -> MremapRequest {
        MremapRequest { old_addr, old_len, new_len, ..MremapRequest::default() }
    }

    fn ranges(mm: &AddressSpace) -> Vec<(u64, u64)> {
        mm.read_lock().iter().map(|v| (v.start, v.end)).collect()
    }

    /// The frame each page of [start, start + pages * PAGE) is mapped to.
    fn frames(mm: &AddressSpace, start: u64, pages: u64) -> Vec<Option<PhysAddr>> {
        (0..pages).map(|i| mm.page_table.translate(VirtAddr::new(start + i * PAGE)).map(|t| t.phys)).collect()
    }

    /// Faults in every page of the range and writes its index into it.
    fn fill(mm: &AddressSpace, start: u64, pages: u64, seed: u8) {
        for i in 0..pages {
            mm.write_bytes(start + i * PAGE, &[seed.wrapping_add(i as u8); 8]).unwrap();
        }
    }

    fn holds(mm: &AddressSpace, start: u64, pages: u64, seed: u8) -> bool {
        (0..pages).all(|i| mm.read_bytes(start + i * PAGE, 8) == Some([seed.wrapping_add(i as u8); 8].to_vec()))
    }

    /// Runs `test` on a fresh space and checks that every frame it took
    /// (pages and page tables) came back when the space went.
    fn without_leaks(test: impl FnOnce(&AddressSpace)) {
        let before = frames_in_use();
        let mm = AddressSpace::new().unwrap();
        test(&mm);
        drop(mm);
        // Old versions of the VMA tree (and the shared objects their VMAs
        // hold) go after a grace period.
        crate::sync::rcu::rcu_barrier();
        // Kernel stacks of threads an earlier test started (the TLB workers)
        // go once their CPUs have switched away from them: allow for that.
        let deadline = crate::arch::time::now_ns() + 10_000_000_000;
        while frames_in_use() != before && crate::arch::time::now_ns() < deadline {
            crate::task::timer::sleep_ns(1_000_000);
        }
        assert_eq!(frames_in_use(), before, "a frame leaked");
    }

    #[test_case]
    fn growth_in_place_keeps_the_address_and_the_frames() {
        without_leaks(|mm| {
            let base = 0x10_0000_0000;
            mm.mmap(&anon(base, 4 * PAGE)).unwrap();
            fill(mm, base, 4, 1);
            let before = frames(mm, base, 4);
            assert_eq!(mm.mremap(&remap(base, 4 * PAGE, 8 * PAGE)), Ok(base));
            assert_eq!(ranges(mm), [(base, base + 8 * PAGE)]);
            assert_eq!(frames(mm, base, 4), before);
            assert!(holds(mm, base, 4, 1));
            assert_eq!(frames(mm, base + 4 * PAGE, 4), [None; 4], "the new part is not populated");
            // Growth that meets an alike neighbour merges with it.
            mm.mmap(&anon(base + 10 * PAGE, 2 * PAGE)).unwrap();
            assert_eq!(mm.mremap(&remap(base, 8 * PAGE, 10 * PAGE)), Ok(base));
            assert_eq!(ranges(mm), [(base, base + 12 * PAGE)]);
        });
    }

    #[test_case]
    fn shrinking_unmaps_the_tail_and_frees_its_frames() {
        without_leaks(|mm| {
            let base = 0x11_0000_0000;
            mm.mmap(&anon(base, 8 * PAGE)).unwrap();
            fill(mm, base, 8, 2);
            let kept = frames(mm, base, 3);
            let in_use = frames_in_use();
            assert_eq!(mm.mremap(&remap(base, 8 * PAGE, 3 * PAGE)), Ok(base));
            assert_eq!(ranges(mm), [(base, base + 3 * PAGE)]);
            assert_eq!(frames(mm, base, 3), kept);
            assert_eq!(frames_in_use(), in_use - 5, "the tail's five frames were freed");
            assert_eq!(mm.mremap(&remap(base, 3 * PAGE, 3 * PAGE)), Ok(base), "the same length: nothing to do");
        });
    }

    #[test_case]
    fn a_move_carries_the_frames_and_frees_the_old_tables() {
        without_leaks(|mm| {
            let baseline = mm.page_table.user_table_count();
            let base = 0x12_0000_0000;
            mm.mmap(&anon(base, 16 * PAGE)).unwrap();
            // A neighbour stops growth in place.
            mm.mmap(&MmapRequest { prot: Prot::READ, ..anon(base + 16 * PAGE, PAGE) }).unwrap();
            fill(mm, base, 16, 3);
            let before = frames(mm, base, 16);
            let (in_use, tables) = (frames_in_use(), mm.page_table.user_table_count());
            assert_eq!(mm.mremap(&remap(base, 16 * PAGE, 64 * PAGE)), Err(MapError::NoMemory), "no MREMAP_MAYMOVE");
            let new = mm.mremap(&MremapRequest { may_move: true, ..remap(base, 16 * PAGE, 64 * PAGE) }).unwrap();
            assert_ne!(new, base);
            assert_eq!(frames(mm, new, 16), before, "the same frames, now at the new address");
            assert!(holds(mm, new, 16, 3));
            assert_eq!(frames(mm, base, 16), [None; 16], "nothing left at the old address");
            assert_eq!(ranges(mm), [(base + 16 * PAGE, base + 17 * PAGE), (new, new + 64 * PAGE)]);
            let tables_now = mm.page_table.user_table_count();
            assert_eq!(frames_in_use() + tables, in_use + tables_now, "no data frame was allocated or freed");
            mm.munmap(base + 16 * PAGE, PAGE).unwrap();
            mm.munmap(new, 64 * PAGE).unwrap();
            assert_eq!(mm.page_table.user_table_count(), baseline);
        });
    }

    /// The VMA the pages leave is write-locked before they move, even with
    /// MREMAP_DONTUNMAP (which keeps it): a move waits for a fault holding
    /// it, and new faults there wait for the move.
    #[test_case]
    fn a_move_waits_for_a_fault_in_the_vma_it_empties() {
        use crate::mm::fault::VmaLockFailure;
        use crate::sync::SpinLock;
        use crate::task::{sched, thread::Thread, timer};
        use core::sync::atomic::{AtomicBool, Ordering};
        static SPACE: SpinLock<Option<Arc<AddressSpace>>> = SpinLock::new(crate::sync::Level::TestState, None);
        static DONE: AtomicBool = AtomicBool::new(false);
        const BASE: u64 = 0x1a_0000_0000;

        extern "C" fn mover(_: usize) -> ! {
            let mm = SPACE.lock().clone().expect("the test's space");
            let request = MremapRequest { may_move: true, dont_unmap: true, ..remap(BASE, PAGE, PAGE) };
            mm.mremap(&request).expect("the move works");
            drop(mm);
            DONE.store(true, Ordering::SeqCst);
            sched::exit_current()
        }
        let done_within = |ms: u64| {
            let deadline = crate::arch::time::now_ns() + ms * 1_000_000;
            while !DONE.load(Ordering::SeqCst) && crate::arch::time::now_ns() < deadline {
                timer::sleep_ns(1_000_000);
            }
            DONE.load(Ordering::SeqCst)
        };

        let mm = Arc::new(AddressSpace::new().unwrap());
        mm.mmap(&anon(BASE, PAGE)).unwrap();
        mm.fault(BASE, Access::Write).unwrap();
        let reader = mm.lock_vma_under_rcu(BASE).expect("an unlocked VMA");
        *SPACE.lock() = Some(mm.clone());
        DONE.store(false, Ordering::SeqCst);
        sched::enqueue(Thread::new_kernel(mover, 0).expect("a kernel thread"));
        assert!(!done_within(300), "mremap moved pages out of a VMA a fault was using");
        assert_eq!(mm.lock_vma_under_rcu(BASE).err(), Some(VmaLockFailure::Locked), "the move is waiting");
        drop(reader);
        assert!(done_within(20_000), "the move never finished");
        *SPACE.lock() = None;
        assert_eq!(frames(&mm, BASE, 1), [None], "the page moved out");
    }

    /// The old range's tables are freed only after the new VMA is in: a
    /// move within one 2 MiB table keeps that table, which now holds the
    /// moved entries.
    #[test_case]
    fn a_move_within_one_page_table_keeps_the_table() {
        without_leaks(|mm| {
            let (src, dst) = (0x18_0000_0000, 0x18_0000_0000 + 64 * PAGE);
            mm.mmap(&anon(src, 4 * PAGE)).unwrap();
            fill(mm, src, 4, 9);
            let before = frames(mm, src, 4);
            let tables = mm.page_table.user_table_count();
            let fixed = MremapRequest { may_move: true, fixed: true, new_addr: dst, ..remap(src, 4 * PAGE, 4 * PAGE) };
            assert_eq!(mm.mremap(&fixed), Ok(dst));
            assert_eq!(mm.page_table.user_table_count(), tables, "the shared table stays");
            assert_eq!(frames(mm, dst, 4), before);
            assert!(holds(mm, dst, 4, 9));
        });
    }

    /// The old translations are flushed on every CPU that has the space
    /// loaded, even when no page table is freed (which would flush anyway).
    #[test_case]
    fn a_move_flushes_the_old_translations_on_every_cpu_of_the_space() {
        use crate::arch::percpu;
        use crate::mm::lazy_tlb::switch;
        use crate::mm::lazy_tlb::workers::{Workers, LOAD};
        use core::sync::atomic::Ordering;
        let mm = Arc::new(AddressSpace::new().unwrap());
        let base = 0x19_0000_0000;
        mm.mmap(&anon(base, PAGE)).unwrap();
        mm.fault(base, Access::Write).unwrap();
        // Pinned, so that "here" stays one CPU; loaded here and run on
        // every other CPU by a pinned kernel thread.
        let _pinned = percpu::PreemptGuard::new();
        let mut others = crate::arch::ipi::online();
        others.remove(percpu::cpu_id());
        switch(Some(&mm));
        let mut workers = Workers::start(&mm, others);
        workers.command(LOAD);
        let (ipis, shootdowns) = (mm.stats.ipis.load(Ordering::SeqCst), mm.stats.shootdowns.load(Ordering::SeqCst));
        let request =
            MremapRequest { may_move: true, dont_unmap: true, new_addr: base + PAGE, ..remap(base, PAGE, PAGE) };
        assert_eq!(mm.mremap(&request), Ok(base + PAGE), "moved within the same table");
        assert_eq!(mm.stats.shootdowns.load(Ordering::SeqCst), shootdowns + 1);
        assert_eq!(mm.stats.ipis.load(Ordering::SeqCst) - ipis, others.len() as u64, "one IPI per other CPU");
        drop(workers);
        switch(None);
    }

    #[test_case]
    fn mremap_fixed_over_a_mapping_replaces_that_part_of_it() {
        without_leaks(|mm| {
            let (src, dst) = (0x13_0000_0000, 0x13_4000_0000);
            mm.mmap(&anon(src, 4 * PAGE)).unwrap();
            mm.mmap(&anon(dst, 8 * PAGE)).unwrap();
            fill(mm, src, 4, 4);
            fill(mm, dst, 8, 5);
            let moving = frames(mm, src, 4);
            let staying = frames(mm, dst + 4 * PAGE, 4);
            let in_use = frames_in_use();
            let fixed = MremapRequest { may_move: true, fixed: true, new_addr: dst, ..remap(src, 4 * PAGE, 4 * PAGE) };
            assert_eq!(mm.mremap(&fixed), Ok(dst));
            assert_eq!(ranges(mm), [(dst, dst + 8 * PAGE)], "moved in, and merged with the rest");
            assert_eq!(frames(mm, dst, 4), moving);
            assert_eq!(frames(mm, dst + 4 * PAGE, 4), staying);
            assert!(holds(mm, dst, 4, 4));
            assert!(frames_in_use() <= in_use - 4, "the replaced pages' frames were freed");
            // Overlapping ranges and unaligned addresses are refused.
            let overlap = MremapRequest { new_addr: dst + PAGE, ..fixed };
            assert_eq!(mm.mremap(&MremapRequest { old_addr: dst, ..overlap }), Err(MapError::Invalid));
            let unaligned = MremapRequest { old_addr: dst, new_addr: src + 1, ..fixed };
            assert_eq!(mm.mremap(&unaligned), Err(MapError::Invalid));
        });
    }

    #[test_case]
    fn dontunmap_leaves_the_old_range_mapped_and_empty() {
        without_leaks(|mm| {
            let base = 0x14_0000_0000;
            mm.mmap(&anon(base, 4 * PAGE)).unwrap();
            fill(mm, base, 4, 6);
            let before = frames(mm, base, 4);
            let request = MremapRequest { may_move: true, dont_unmap: true, ..remap(base, 4 * PAGE, 4 * PAGE) };
            let new = mm.mremap(&request).unwrap();
            assert_eq!(frames(mm, new, 4), before);
            assert!(holds(mm, new, 4, 6));
            assert_eq!(frames(mm, base, 4), [None; 4]);
            assert!(ranges(mm).contains(&(base, base + 4 * PAGE)), "the old range is still mapped");
            mm.fault(base, Access::Read).unwrap();
            assert_eq!(mm.read_bytes(base, 8), Some([0; 8].to_vec()), "and faults in a zeroed page");
            assert_ne!(frames(mm, base, 1)[0], before[0]);
        });
    }

    #[test_case]
    fn shared_memory_moves_with_its_object_and_can_be_mapped_twice() {
        without_leaks(|mm| {
            let base = 0x15_0000_0000;
            mm.mmap(&MmapRequest { shared: true, ..anon(base, 4 * PAGE) }).unwrap();
            fill(mm, base, 4, 7);
            let before = frames(mm, base, 4);
            // old_len 0: the same object mapped again; the original stays.
            let twin = mm.mremap(&MremapRequest { may_move: true, ..remap(base, 0, 4 * PAGE) }).unwrap();
            assert_ne!(twin, base);
            for i in 0..4 {
                mm.fault(twin + i * PAGE, Access::Read).unwrap();
            }
            assert_eq!(frames(mm, twin, 4), before, "both map the same pages");
            assert_eq!(frames(mm, base, 4), before);
            mm.munmap(twin, 4 * PAGE).unwrap();
            // A neighbour, so that the growth below cannot be in place.
            mm.mmap(&anon(base + 4 * PAGE, PAGE)).unwrap();
            // A move from page 1 on: the object's pages 1.. go with it.
            let moved = mm.mremap(&MremapRequest { may_move: true, ..remap(base + PAGE, 3 * PAGE, 8 * PAGE) }).unwrap();
            assert_eq!(frames(mm, moved, 3), before[1..]);
            // DONTUNMAP: the old range refaults the object's page.
            let request = MremapRequest { may_move: true, dont_unmap: true, ..remap(moved, 8 * PAGE, 8 * PAGE) };
            let again = mm.mremap(&request).unwrap();
            assert_eq!(frames(mm, again, 3), before[1..]);
            mm.fault(moved, Access::Read).unwrap();
            assert_eq!(frames(mm, moved, 1)[0], before[1], "the old range still maps the object");
            // The object is 4 pages, so the grown mapping (from its page 1)
            // ends past it after 3: a touch there is SIGBUS, as on Linux.
            assert_eq!(mm.fault(again + 2 * PAGE, Access::Write), Ok(()));
            assert_eq!(mm.fault(again + 3 * PAGE, Access::Read), Err(FaultError::BeyondObject));
        });
    }

    #[test_case]
    fn errors_match_linux() {
        without_leaks(|mm| {
            let base = 0x16_0000_0000;
            mm.mmap(&anon(base, 4 * PAGE)).unwrap();
            let may_move = |r: MremapRequest| MremapRequest { may_move: true, ..r };
            assert_eq!(mm.mremap(&remap(base + 4 * PAGE, PAGE, 2 * PAGE)), Err(MapError::Unmapped), "a hole");
            assert_eq!(mm.mremap(&may_move(remap(base, 0, PAGE))), Err(MapError::Invalid), "old_len 0, private");
            mm.mprotect(base + 2 * PAGE, base + 4 * PAGE, Prot::READ).unwrap();
            assert_eq!(
                mm.mremap(&may_move(remap(base, 4 * PAGE, 8 * PAGE))),
                Err(MapError::Unmapped),
                "an old range over two VMAs"
            );
            assert_eq!(
                mm.mremap(&remap(base, PAGE, 2 * PAGE)),
                Err(MapError::NoMemory),
                "growth from inside a VMA without MREMAP_MAYMOVE"
            );
            assert_eq!(ranges(mm), [(base, base + 2 * PAGE), (base + 2 * PAGE, base + 4 * PAGE)], "nothing changed");
        });
    }

    /// A mover thread shuttles a mapping between two places while this
    /// thread faults a VMA that shares their page tables: its pages stay
    /// put, the moved ones keep their frames, nothing leaks.
    #[test_case]
    fn faults_beside_a_mapping_that_moves_keep_their_pages() {
        use crate::sync::SpinLock;
        use crate::task::{sched, thread::Thread, timer};
        use core::sync::atomic::{AtomicBool, Ordering};
        static SPACE: SpinLock<Option<Arc<AddressSpace>>> = SpinLock::new(crate::sync::Level::TestState, None);
        static DONE: AtomicBool = AtomicBool::new(false);
        static OK: AtomicBool = AtomicBool::new(false);
        const A: u64 = 0x17_0000_0000;
        const B: u64 = A + (4 << 20);
        const NEAR: u64 = A + (2 << 20) - PAGE;

        extern "C" fn mover(_: usize) -> ! {
            let mm = SPACE.lock().clone().expect("the test's space");
            let start = frames(&mm, A, 8);
            let mut ok = true;
            for round in 0..200 {
                let (from, to) = if round % 2 == 0 { (A, B) } else { (B, A) };
                let fixed =
                    MremapRequest { may_move: true, fixed: true, new_addr: to, ..remap(from, 8 * PAGE, 8 * PAGE) };
                ok &= mm.mremap(&fixed) == Ok(to) && frames(&mm, to, 8) == start;
            }
            OK.store(ok, Ordering::SeqCst);
            drop(mm);
            DONE.store(true, Ordering::SeqCst);
            sched::exit_current()
        }

        let before = frames_in_use();
        let mm = Arc::new(AddressSpace::new().unwrap());
        mm.mmap(&anon(A, 8 * PAGE)).unwrap();
        mm.mmap(&anon(NEAR, PAGE)).unwrap();
        fill(&mm, A, 8, 8);
        *SPACE.lock() = Some(mm.clone());
        DONE.store(false, Ordering::SeqCst);
        sched::enqueue(Thread::new_kernel(mover, 0).expect("a kernel thread"));
        let mut rounds = 0u64;
        while !DONE.load(Ordering::SeqCst) {
            mm.madvise(NEAR, NEAR + PAGE, crate::mm::addrspace::Advice::DontNeed).unwrap();
            mm.fault(NEAR, Access::Write).unwrap();
            assert!(mm.page_table.translate(VirtAddr::new(NEAR)).is_some(), "the neighbour lost its page");
            rounds += 1;
            if rounds.is_multiple_of(64) {
                timer::sleep_ns(100_000);
            }
        }
        assert!(OK.load(Ordering::SeqCst), "a move lost or changed a frame");
        assert!(holds(&mm, A, 8, 8), "the data came back to where it started");
        *SPACE.lock() = None;
        drop(mm);
        crate::sync::rcu::rcu_barrier();
        // The mover's kernel stack goes once its CPU has switched away from it.
        let deadline = crate::arch::time::now_ns() + 10_000_000_000;
        while frames_in_use() != before && crate::arch::time::now_ns() < deadline {
            timer::sleep_ns(1_000_000);
        }
        assert_eq!(frames_in_use(), before);
    }
}
