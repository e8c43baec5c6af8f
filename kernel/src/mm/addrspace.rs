//! A process's address space: its VMAs, its page table, and the CPUs that
//! have it loaded. The operations live one per file beside this one:
//! `mmap.rs`, `munmap.rs`, `mprotect.rs`, `mremap.rs`, `madvise.rs`, `brk.rs`, each an
//! `impl AddressSpace`; the VMAs in `vma.rs`; the gather in `tlb.rs`.
//!
//! Which lock guards which field (the VMAs' own are in `vma/mod.rs`; the
//! order among locks in `sync/mod.rs`):
//!
//! | field | guarded by |
//! |---|---|
//! | `mmap_lock` (the `VmaMap`: the writer's tree, brk) | itself, a sleeping rwsem: `MmapReadGuard` for lookups that must not race a change (the fallback fault path, populate, the loader), `MmapWriteGuard` for every change |
//! | `lock_seq` | written only under the `mmap_lock` for writing, at its release (release store); read by anyone (acquire) to tell whether a VMA is write-locked |
//! | `published` (the tree readers search) | RCU: replaced by the write guard's release, old versions freed after a grace period |
//! | page-table entries | no lock: each update is one atomic CAS or swap, made holding a lock that keeps the entry's VMA (`VmaLockHeld`); tables are freed only under the `mmap_lock` for writing, with the VMAs around them write-locked, after the flush |
//! | `cpus` | atomic; a CPU sets its bit before loading the page table and clears it after loading another, so a shootdown that reads `cpus` after changing entries reaches every CPU that may cache them |
//! | `stats` | atomic counters |
//!
//! - A TLB flush is done before the lock that kept the VMA is released
//!   (`TlbGather::finish` takes it).
//! - Never touch user memory (a copy that may fault) while holding
//!   `mmap_lock` or a VMA lock: the fault would wait for a writer that waits
//!   for us.
//!
//! Frames: a private page's frame is owned by its page-table entry and freed
//! by the unmapping path after the TLB flush (`TlbGather`). A shared page's
//! frame is owned by its `SharedMemory` object.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::structures::paging::{Page, PageTableFlags};
use x86_64::{PhysAddr, VirtAddr};

use super::frame::{self, Frame};
use super::layout::USER_END;
use super::paging::{kernel_page_table, PageTable, ADDR_MASK};
use super::tlb::TlbGather;
use super::vma::{MmapReadGuard, MmapWriteGuard, VmaLockHeld, VmaTree};
use crate::arch::ipi::CpuSet;
use crate::sync::rcu::RcuArc;
use crate::sync::{Level, RwSem};

pub use super::mmap::MmapRequest;
pub use super::mremap::MremapRequest;
pub use super::vma::{Access, Advice, Backing, FaultError, MapError, Prot, SharedMemory, Vma, VmaMap, MAX_MAP_COUNT};

pub use super::pages::PAGE;
/// The initial stack: its top, and how far it may extend down. Linux puts
/// the stack top a random distance (up to 16 GiB) below TASK_SIZE, so that
/// the pages just below USER_END are never mapped there; we keep 1 GiB free.
pub const STACK_TOP: u64 = USER_END - (1 << 30);
pub const STACK_SIZE: u64 = 8 << 20;
/// Unmapped space kept below the stack (no mmap lands there).
pub const STACK_GUARD_GAP: u64 = 1 << 20;
/// Counters of fault outcomes and TLB work.
#[derive(Debug, Default)]
pub struct MmStats {
    /// Faults handled holding only their VMA's read lock. With
    /// `mmap_lock_faults` it makes `faults()`: one counter per fault, not two.
    pub vma_lock_success: AtomicU64,
    /// The VMA-lock lookups of faults and of MADV_DONTNEED / MADV_FREE:
    /// those that found their VMA write-locked (then: the mmap lock).
    pub vma_lock_abort_locked: AtomicU64,
    /// Lookups that found a VMA already detached (then: one retry).
    pub vma_lock_abort_detached: AtomicU64,
    /// RCU lookups repeated after a detached VMA.
    pub vma_lock_retries: AtomicU64,
    /// Lookups that found no VMA (then: the mmap lock, to be sure).
    pub vma_lock_misses: AtomicU64,
    /// Faults handled under the mmap lock, by reason: the VMA lock failed
    /// (the counters above), or the boot option `--lock mmap`.
    pub mmap_lock_faults: AtomicU64,
    pub mmap_lock_forced: AtomicU64,
    /// VMAs write-locked by changes (each once per write section).
    pub vmas_write_locked: AtomicU64,
    pub shootdowns: AtomicU64,
    /// Flush IPIs this space's changes sent to other CPUs, and the lazy
    /// CPUs they did not need to interrupt (`lazy_tlb.rs`).
    pub ipis: AtomicU64,
    pub skipped_lazy: AtomicU64,
    /// Page-table pages freed by munmap and brk (teardown not counted).
    pub tables_freed: AtomicU64,
    /// Pages mapped ahead of a sequential run by fault-around
    /// (`fault_around.rs`), beyond the faulting pages counted in `faults`.
    pub fault_around_pages: AtomicU64,
}

impl MmStats {
    pub const fn new() -> MmStats {
        MmStats {
            vma_lock_success: AtomicU64::new(0),
            vma_lock_abort_locked: AtomicU64::new(0),
            vma_lock_abort_detached: AtomicU64::new(0),
            vma_lock_retries: AtomicU64::new(0),
            vma_lock_misses: AtomicU64::new(0),
            mmap_lock_faults: AtomicU64::new(0),
            mmap_lock_forced: AtomicU64::new(0),
            vmas_write_locked: AtomicU64::new(0),
            shootdowns: AtomicU64::new(0),
            ipis: AtomicU64::new(0),
            skipped_lazy: AtomicU64::new(0),
            tables_freed: AtomicU64::new(0),
            fault_around_pages: AtomicU64::new(0),
        }
    }

    /// Faults on user addresses, resolved or refused (each once, however it
    /// was locked; MAP_POPULATE and the loader's writes are not counted):
    /// each went through the VMA lock or the mmap lock.
    pub fn faults(&self) -> u64 {
        self.vma_lock_success.load(Ordering::Relaxed) + self.mmap_lock_faults.load(Ordering::Relaxed)
    }

    fn counters(&self) -> [&AtomicU64; 13] {
        [
            &self.vma_lock_success,
            &self.vma_lock_abort_locked,
            &self.vma_lock_abort_detached,
            &self.vma_lock_retries,
            &self.vma_lock_misses,
            &self.mmap_lock_faults,
            &self.mmap_lock_forced,
            &self.vmas_write_locked,
            &self.shootdowns,
            &self.ipis,
            &self.skipped_lazy,
            &self.tables_freed,
            &self.fault_around_pages,
        ]
    }

    /// Adds every counter of `other` to ours.
    fn add(&self, other: &MmStats) {
        for (mine, theirs) in self.counters().into_iter().zip(other.counters()) {
            mine.fetch_add(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

/// The counters of every address space already dropped (each adds its own
/// at the end), so that system-wide sums (`/proc/vmstat`) need only add the
/// live ones: the fault path never touches a counter shared by all CPUs.
pub static RETIRED_STATS: MmStats = MmStats::new();

impl core::fmt::Display for MmStats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let faults = self.faults();
        let success = get(&self.vma_lock_success);
        let percent = if faults == 0 { 0.0 } else { success as f64 * 100.0 / faults as f64 };
        write!(
            f,
            "{faults} faults, {success} under the VMA lock ({percent:.1}%), {} under the mmap lock ({} forced); \
             VMA-lock lookups: {} write-locked, {} detached, {} retries, {} misses; {} VMAs write-locked, \
             {} shootdowns, {} IPIs, {} lazy CPUs skipped, {} page tables freed; {} pages mapped by fault-around",
            get(&self.mmap_lock_faults),
            get(&self.mmap_lock_forced),
            get(&self.vma_lock_abort_locked),
            get(&self.vma_lock_abort_detached),
            get(&self.vma_lock_retries),
            get(&self.vma_lock_misses),
            get(&self.vmas_write_locked),
            get(&self.shootdowns),
            get(&self.ipis),
            get(&self.skipped_lazy),
            get(&self.tables_freed),
            get(&self.fault_around_pages),
        )
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub struct AddressSpace {
    pub id: u64,
    pub(super) page_table: PageTable,
    /// The `mmap_lock` and the writer's VMA set; taken through
    /// `MmapReadGuard::new` and `MmapWriteGuard::new`.
    pub(super) mmap_lock: RwSem<VmaMap>,
    /// Bumped as the mmap write lock is released (`vma/lock.rs`).
    pub(super) lock_seq: super::vma::LockSeq,
    /// The VMA tree as RCU readers see it.
    pub(super) published: RcuArc<VmaTree>,
    /// CPUs that have this page table loaded, running it or lazily
    /// (`lazy_tlb.rs`).
    pub(super) cpus: AtomicU64,
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
        let map = VmaMap::new(STACK_TOP - STACK_SIZE - STACK_GUARD_GAP);
        Ok(AddressSpace {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            page_table,
            mmap_lock: RwSem::new(Level::MmapLock, map),
            lock_seq: super::vma::LockSeq::new(),
            published: RcuArc::new(alloc::sync::Arc::new(VmaTree::default())),
            cpus: AtomicU64::new(0),
            stats: MmStats::default(),
        })
    }

    /// The `mmap_lock` for reading: the VMAs stay as they are meanwhile.
    pub fn read_lock(&self) -> MmapReadGuard<'_> {
        MmapReadGuard::new(self)
    }

    /// The `mmap_lock` for writing: the one way to change VMAs.
    pub(super) fn write_lock(&self) -> MmapWriteGuard<'_> {
        MmapWriteGuard::new(self)
    }

    pub fn cpus(&self) -> CpuSet {
        CpuSet::from_bits(self.cpus.load(Ordering::SeqCst))
    }

    /// The entry of `addr`, as long as `held` keeps its VMA (and so its table).
    /// `pte` for `count` consecutive pages in one leaf table (`user_ptes`).
    pub(super) fn ptes<'held>(
        &self,
        addr: u64,
        count: usize,
        create: bool,
        held: &'held impl VmaLockHeld,
    ) -> Option<&'held [AtomicU64]> {
        self.page_table.user_ptes(Page::containing_address(VirtAddr::new(addr)), count, create, held).ok()
    }

    pub(super) fn pte<'held>(
        &self,
        addr: u64,
        create: bool,
        held: &'held impl VmaLockHeld,
    ) -> Option<&'held AtomicU64> {
        self.page_table.user_pte(Page::containing_address(VirtAddr::new(addr)), create, held).ok()
    }

    /// Whether a futex word other processes could share may live at `addr`
    /// (Linux's get_futex_key for non-private futexes): mapped, accessible,
    /// and writable if private (a read-only private page is refused).
    pub fn can_hold_shared_futex(&self, addr: u64) -> bool {
        self.read_lock().find(addr).is_some_and(|vma| match vma.backing {
            Backing::Shared { .. } => !vma.prot.is_none(),
            Backing::Private => vma.prot.contains(Prot::WRITE),
        })
    }

    /// Writes `bytes` at user address `addr` through this space's page table
    /// (which need not be loaded), faulting pages in as needed. For the loader.
    pub fn write_bytes(&self, addr: u64, bytes: &[u8]) -> Result<(), FaultError> {
        let map = self.read_lock();
        let mut done = 0usize;
        while done < bytes.len() {
            let at = addr + done as u64;
            let vma = map.find(at).ok_or(FaultError::NoMapping)?;
            let pte = self.pte(at, true, &map).ok_or(FaultError::OutOfMemory)?;
            if pte.load(Ordering::Acquire) & PageTableFlags::PRESENT.bits() == 0 {
                self.handle_fault(vma, at, Access::Read, &map)?;
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

#[cfg(test)]
impl AddressSpace {
    /// The `len` bytes at `addr` (within one page), if it is mapped: for
    /// tests that check what a page holds without running in the space.
    pub(super) fn read_bytes(&self, addr: u64, len: usize) -> Option<alloc::vec::Vec<u8>> {
        let map = self.read_lock();
        let value = self.pte(addr, false, &map)?.load(Ordering::Acquire);
        if value & PageTableFlags::PRESENT.bits() == 0 || (addr % PAGE) as usize + len > PAGE as usize {
            return None;
        }
        let src = super::phys_to_virt(PhysAddr::new((value & ADDR_MASK) + addr % PAGE)).as_ptr::<u8>();
        let mut bytes = alloc::vec![0; len];
        // SAFETY: the frame is mapped in this space and `map` keeps it so;
        // the physical map covers it and `len` bytes fit in the page.
        unsafe { core::ptr::copy_nonoverlapping(src, bytes.as_mut_ptr(), len) };
        Some(bytes)
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        // CPUs idling on this table (lazy TLB) must leave it before it goes.
        super::lazy_tlb::unload_everywhere(self);
        let mut gather = TlbGather::new();
        let tree = core::mem::take(&mut self.mmap_lock.write().tree);
        for vma in tree.iter() {
            self.zap(vma, vma.start, vma.end, &mut gather);
        }
        // No CPU has this space loaded: nothing to flush.
        gather.release();
        // SAFETY: no CPU uses the table (`cpus` is empty) and it holds no
        // translations any more; nothing else references it.
        unsafe { self.page_table.free_user_tables() };
        // SAFETY: the root frame came from `Frame::into_raw` in `new`.
        drop(unsafe { Frame::from_raw(self.page_table.root()) });
        RETIRED_STATS.add(&self.stats);
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
    use alloc::sync::Arc;

    use super::*;
    use crate::arch::percpu;
    use crate::mm::lazy_tlb::switch;
    use crate::mm::lazy_tlb::workers::{Workers, LAZY, LOAD};
    use crate::sync::SpinLock;
    use x86_64::registers::control::Cr3;

    const RW: Prot = Prot::READ.union(Prot::WRITE);

    fn anon(addr: u64, len: u64, fixed: bool) -> MmapRequest {
        MmapRequest { addr, len, prot: RW, fixed, ..MmapRequest::default() }
    }

    fn ranges(mm: &AddressSpace) -> alloc::vec::Vec<(u64, u64, Prot)> {
        mm.read_lock().iter().map(|v| (v.start, v.end, v.prot)).collect()
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
        for i in 0..64 {
            mm.fault(base + i * PAGE, Access::Write).unwrap();
        }
        assert_eq!(mm.fault(base, Access::Execute), Err(FaultError::AccessDenied));
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
        let count = || mm.read_lock().len();
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
        for i in 0..4 {
            mm.fault(middle + i * PAGE, Access::Write).unwrap();
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
        let pages = 32 * 1024; // 128 MiB: long enough to span several ticks
        let memory = SharedMemory::new(pages);
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
        static SPACE: SpinLock<Option<Arc<AddressSpace>>> = SpinLock::new(Level::TestState, None);

        /// Waits until the munmap is flushing (waiting for the held CPU),
        /// then tries the lock a second munmap would take; releases the CPU.
        extern "C" fn checker(_: usize) -> ! {
            let mm = SPACE.lock().clone().expect("the test's space");
            let _pinned = percpu::PreemptGuard::new();
            let give_up = crate::arch::time::now_ns() + 10_000_000_000;
            while mm.stats.shootdowns.load(Ordering::SeqCst) == 0 && crate::arch::time::now_ns() < give_up {
                core::hint::spin_loop();
            }
            LOCK_WAS_HELD.store(mm.mmap_lock.try_write().is_none(), Ordering::SeqCst);
            CHECKED.store(true, Ordering::SeqCst);
            HOLD_CPU.store(false, Ordering::SeqCst);
            drop(mm);
            // Unpinned before exiting: a guard left alive would keep this
            // CPU's preemption count raised for good (`exit_current` checks).
            drop(_pinned);
            sched::exit_current()
        }

        let online = crate::arch::ipi::online();
        if online.len() < 3 {
            return; // needs us, a CPU that holds the flush up, and the checker's
        }
        let mm = Arc::new(AddressSpace::new().unwrap());
        let base = mm.mmap(&anon(0, PAGE, false)).unwrap();
        mm.fault(base, Access::Write).unwrap();
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
                switch(Some(&on_held));
                HOLDING.store(true, Ordering::SeqCst);
                while HOLD_CPU.load(Ordering::SeqCst) {
                    core::hint::spin_loop();
                }
                switch(None);
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
    fn page_tables_go_with_the_last_mapping_that_needed_them() {
        let mm = AddressSpace::new().unwrap();
        let touch = |addr: u64| mm.fault(addr, Access::Write).unwrap();
        let baseline = mm.page_table.user_table_count();
        // Three mappings: two sharing one 2 MiB table, one 600 GiB away.
        let near = 0x40_0000_0000;
        let far = near + (600 << 30);
        mm.mmap(&anon(near, PAGE, true)).unwrap();
        mm.mmap(&anon(near + 4 * PAGE, PAGE, true)).unwrap();
        mm.mmap(&anon(far, 4 << 20, true)).unwrap();
        for addr in [near, near + 4 * PAGE, far, far + (2 << 20)] {
            touch(addr);
        }
        // near: a PDPT, a PD and a PT; far: another PML4 slot, so 1 + 1 + 2.
        assert_eq!(mm.page_table.user_table_count(), baseline + 7);
        mm.munmap(near, PAGE).unwrap();
        assert_eq!(mm.page_table.user_table_count(), baseline + 7, "the neighbour still needs the table");
        assert!(mm.page_table.translate(VirtAddr::new(near + 4 * PAGE)).is_some(), "and its page");
        mm.munmap(near + 4 * PAGE, PAGE).unwrap();
        assert_eq!(mm.page_table.user_table_count(), baseline + 4);
        mm.munmap(far, 4 << 20).unwrap();
        assert_eq!(mm.page_table.user_table_count(), baseline, "back to the baseline");
        assert_eq!(mm.stats.tables_freed.load(Ordering::Relaxed), 7);
        // A brk shrink frees what the heap's tail needed, too.
        mm.set_brk_start(0x7000_0000);
        mm.brk(0x7000_0000 + (4 << 20));
        touch(0x7000_0000 + (3 << 20));
        mm.brk(0x7000_0000);
        assert_eq!(mm.page_table.user_table_count(), baseline);
    }

    /// The flush IPIs `mm`'s changes sent, and the lazy CPUs they skipped.
    fn flush_counts(mm: &AddressSpace) -> (u64, u64) {
        (mm.stats.ipis.load(Ordering::SeqCst), mm.stats.skipped_lazy.load(Ordering::SeqCst))
    }

    /// Every online CPU but this one (the caller is pinned).
    fn other_cpus() -> CpuSet {
        let mut set = crate::arch::ipi::online();
        set.remove(percpu::cpu_id());
        set
    }

    #[test_case]
    fn a_munmap_interrupts_exactly_the_other_cpus_that_run_the_space() {
        let mm = Arc::new(AddressSpace::new().unwrap());
        // A neighbour keeps the page tables, so no munmap below frees one
        // (which would interrupt lazy CPUs too).
        let keep = mm.mmap(&anon(0x40_0000_0000, PAGE, true)).unwrap();
        mm.fault(keep, Access::Write).unwrap();
        let unmap_one_page = || {
            let base = mm.mmap(&anon(keep + PAGE, PAGE, true)).unwrap();
            mm.fault(base, Access::Write).unwrap();
            let before = flush_counts(&mm);
            mm.munmap(base, PAGE).unwrap();
            assert_eq!(mm.stats.tables_freed.load(Ordering::SeqCst), 0, "the neighbour keeps the tables");
            let after = flush_counts(&mm);
            (after.0 - before.0, after.1 - before.1)
        };
        assert_eq!(unmap_one_page(), (0, 0), "loaded nowhere: nothing to flush");
        // Loaded here only (a single-threaded process): a local flush, no IPI.
        // Pinned so that "here" stays one CPU; the mmap lock is ours alone,
        // so taking it never sleeps.
        let _pinned = percpu::PreemptGuard::new();
        switch(Some(&mm));
        assert_eq!(unmap_one_page(), (0, 0), "loaded only here");
        // Running on every other CPU too: one IPI to each, no more.
        let others = other_cpus();
        let mut workers = Workers::start(&mm, others);
        workers.command(LOAD);
        assert_eq!(unmap_one_page(), (others.len() as u64, 0), "one IPI per other CPU running the space");
        drop(workers);
        switch(None);
    }

    #[test_case]
    fn lazy_cpus_are_not_interrupted_and_flush_when_they_come_back() {
        use crate::arch::tlb::STATS;
        use crate::mm::lazy_tlb::lazy_cpus;
        let mm = Arc::new(AddressSpace::new().unwrap());
        // Both pages in one page table (2 MiB aligned), so that the first
        // munmap frees no table.
        let keep = mm.mmap(&anon(0x40_0000_0000, 2 * PAGE, true)).unwrap();
        let page = keep + PAGE;
        mm.fault(keep, Access::Write).unwrap();
        mm.fault(page, Access::Write).unwrap();
        let _pinned = percpu::PreemptGuard::new();
        let others = other_cpus();
        // Each other CPU runs the space, then a kernel thread: lazy.
        let mut workers = Workers::start(&mm, others);
        workers.command(LOAD);
        workers.command(LAZY);
        assert_eq!(lazy_cpus(&mm), others);
        let before = flush_counts(&mm);
        mm.munmap(page, PAGE).unwrap();
        let after = flush_counts(&mm);
        assert_eq!(after.0 - before.0, 0, "no IPI to a lazy CPU");
        assert_eq!(after.1 - before.1, others.len() as u64, "each lazy CPU skipped once");
        // Back to the space: each skipped CPU flushes everything first.
        let catchups = STATS.lazy_catchups.load(Ordering::SeqCst);
        workers.command(LOAD);
        assert_eq!(STATS.lazy_catchups.load(Ordering::SeqCst) - catchups, others.len() as u64);
        // A munmap that frees page tables interrupts lazy CPUs as well: their
        // page walkers may still hold the tables.
        workers.command(LAZY);
        let before = flush_counts(&mm);
        mm.munmap(keep, PAGE).unwrap();
        assert!(mm.stats.tables_freed.load(Ordering::SeqCst) > 0, "the last mapping's tables go");
        assert_eq!(flush_counts(&mm).0 - before.0, others.len() as u64, "every CPU with the tables loaded");
        // With the workers gone, the CPUs idle: before halting they drop the
        // table they kept (bounded wait: a liveness check, not a timing one).
        drop(workers);
        let mut spins = 0u64;
        while mm.cpus().bits() & others.bits() != 0 && spins < 2_000_000_000 {
            core::hint::spin_loop();
            spins += 1;
        }
        assert_eq!(mm.cpus().bits() & others.bits(), 0, "idle CPUs leave a lazily kept space before they halt");
        // The last reference sends any CPU still holding it to the kernel's table.
        let root = mm.page_table.root();
        drop(mm);
        for (cpu, loaded) in crate::arch::ipi::run_on_each(others, Cr3::read) {
            assert_ne!(loaded.0, root, "CPU {cpu} still has a dropped space's table loaded");
        }
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
