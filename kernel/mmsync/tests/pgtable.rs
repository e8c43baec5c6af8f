//! Model: the freed-table rule. munmap frees the page tables no remaining
//! VMA needs (`mmsync::pgtable`, the code the kernel's `unlink_user_tables`
//! and `free_page_tables` run) while faults in the neighbouring VMA and in
//! the VMA being removed install tables and pages, and another CPU's MMU
//! walks the tables until it has flushed. Run by `make model-test`.
//!
//! A tiny two-level table: the root's two entries lead to leaf tables of
//! two 4 KiB pages each, so the root covers [0, 16 KiB):
//!
//! ```text
//!   page      0 | 1 |     2 | 3
//!   table     T0      |   T1
//!   VMA       A | B (munmap removes it)
//! ```
//!
//! T1 is linked at the start with B's page 2 in it; T0 is not: the fault in
//! A allocates it and links it by CAS on the root entry (as the kernel's
//! `walk`). The threads:
//! - munmap (the model's main thread), as `AddressSpace::munmap`: begins a
//!   write section, write-locks B (waits for its readers) and detaches it,
//!   zaps B's pages, unlinks the tables `pgtable::unlink_tables` picks with
//!   `pgtable::free_range` (floor: A's end), flushes (asks CPU A and waits
//!   for its answer), frees them, ends the section;
//! - CPU A: a fault on page 0 under A's read lock (`vma_lock`), which
//!   installs T0 and its page; then its MMU walks towards page 3 (a
//!   speculative walk may reach any linked table), answers the flush, and
//!   walks again;
//! - a fault on page 3 under B's read lock: installs its page into T1 (or a
//!   fresh table if T1 is gone), or finds B write-locked or detached.
//!
//! Asserted in every execution: no table is used after it is freed (each
//! table's memory is a loom `UnsafeCell` that freeing writes, so a use not
//! ordered before the free is a "causality violation"; one ordered after it
//! sees the poison), no table is freed with a translation in it, and at the
//! end A's page is still reachable and nothing is linked in the gap.
#![cfg(loom)]

mod common;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use mmsync::pgtable::{self, Tables};
use mmsync::vma_lock::{LockSeq, VmaLockState};

const PAGE: u64 = 4096;
/// Root, T0 (A's fault's fresh table), T1 (linked at the start), and the
/// fresh table B's fault would allocate if it found T1 gone.
const ROOT: u64 = 0;
const T0: u64 = 1;
const T1: u64 = 2;
const B_FRESH: u64 = 3;
const A_END: u64 = PAGE;
const B_RANGE: (u64, u64) = (PAGE, 4 * PAGE);
/// The end of the model's address space (the kernel's `USER_HALF_END`).
const TOP: u64 = 4 * PAGE;
const PRESENT: u64 = 1;
const LIVE: u64 = 0;
const POISON: u64 = 0x6b6b;

/// An entry leading to table or frame `n`.
fn link(n: u64) -> u64 {
    (n << 1) | PRESENT
}

/// What munmap does wrong, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    None,
    /// The shared floor/ceiling rule frees a table A still overlaps.
    FloorOffByOne,
    /// The tables are freed after the unlink but before the flush.
    FreeBeforeFlush,
    /// T1 is freed while still linked (then unlinked and flushed).
    FreeBeforeUnlink,
    /// munmap does not write-lock (nor detach) the VMA it removes.
    NoWriteLock,
}

struct Table {
    entries: [AtomicU64; 2],
    /// The table's memory: read on every use, poisoned when freed.
    memory: UnsafeCell<u64>,
}

struct World {
    tables: [Table; 4],
    lock_seq: LockSeq,
    vma_a: VmaLockState,
    vma_b: VmaLockState,
    flush_requested: AtomicBool,
    flush_answered: AtomicBool,
    /// munmap has finished its unlinking walk (for the outcome counts).
    walked: AtomicBool,
    bug: Bug,
}

impl Tables for World {
    const PAGE_SHIFT: u32 = 12;
    const INDEX_BITS: u32 = 1;

    fn entry(&self, table: u64, index: usize) -> &AtomicU64 {
        let table = &self.tables[table as usize];
        // SAFETY: a read of the table's memory; one racing with its free
        // is what loom reports.
        let state = table.memory.with(|p| unsafe { *p });
        assert_eq!(state, LIVE, "walked a freed page table");
        &table.entries[index]
    }

    fn child(&self, value: u64) -> Option<u64> {
        (value & PRESENT != 0).then_some(value >> 1)
    }

    fn mutation(&self) -> pgtable::Mutation {
        if self.bug == Bug::FloorOffByOne {
            pgtable::Mutation::FloorOffByOne
        } else {
            pgtable::Mutation::None
        }
    }
}

impl World {
    fn new(bug: Bug) -> World {
        let table = |entries: [u64; 2]| Table { entries: entries.map(AtomicU64::new), memory: UnsafeCell::new(LIVE) };
        World {
            // Frames 10 and up are pages.
            tables: [table([0, link(T1)]), table([0, 0]), table([link(10), 0]), table([0, 0])],
            lock_seq: LockSeq::new(),
            vma_a: VmaLockState::new(None),
            vma_b: VmaLockState::new(None),
            flush_requested: AtomicBool::new(false),
            flush_answered: AtomicBool::new(false),
            walked: AtomicBool::new(false),
            bug,
        }
    }

    /// A fault on `page` holding its VMA's read lock: the kernel's `walk`
    /// (a missing table is linked by CAS; the model's fresh one is
    /// `fresh`), then the page by CAS on the empty leaf entry. Returns
    /// whether it linked its fresh table.
    fn fault(&self, page: u64, fresh: u64, frame: u64) -> bool {
        let root_entry = self.entry(ROOT, (page / 2) as usize);
        let mut value = root_entry.load(Ordering::Acquire);
        let mut linked = false;
        if value == 0 {
            match root_entry.compare_exchange(0, link(fresh), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    value = link(fresh);
                    linked = true;
                }
                Err(current) => value = current,
            }
        }
        let table = self.child(value).expect("a table");
        let _ = self.entry(table, (page % 2) as usize).compare_exchange(
            0,
            link(frame),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        linked
    }

    /// An MMU's walk towards `page`: whatever table is linked, it may read.
    /// Returns whether it reached a table.
    fn hardware_walk(&self, page: u64) -> bool {
        let value = self.entry(ROOT, (page / 2) as usize).load(Ordering::Acquire);
        match self.child(value) {
            Some(table) => {
                let _ = self.entry(table, (page % 2) as usize).load(Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// munmap's zap of [start, end): takes every leaf entry (the kernel's
    /// `for_each_user_leaf` and swap).
    fn zap(&self, start: u64, end: u64) {
        for page in start / PAGE..end / PAGE {
            let value = self.entry(ROOT, (page / 2) as usize).load(Ordering::Acquire);
            if let Some(table) = self.child(value) {
                self.entry(table, (page % 2) as usize).swap(0, Ordering::AcqRel);
            }
        }
    }

    /// Frees a leaf table: it must be empty (the kernel's debug assertion),
    /// then its memory is poisoned.
    fn free(&self, table: u64) {
        for entry in &self.tables[table as usize].entries {
            assert_eq!(entry.load(Ordering::Acquire), 0, "a page table freed with a translation in it");
        }
        // SAFETY: the free; an access not ordered before it is the bug
        // loom reports.
        self.tables[table as usize].memory.with_mut(|p| unsafe { *p = POISON });
    }
}

fn spin_until(done: &mut dyn FnMut() -> bool) {
    while !done() {
        thread::yield_now();
    }
}

const OUTCOMES: &[&str] = &[
    "A linked its table before munmap's walk",
    "A linked its table after munmap's walk",
    "B's fault ran before munmap locked B",
    "B's fault found B locked or detached",
    "A's MMU reached T1 before the flush",
    "A's MMU found T1 unlinked",
];
const A_BEFORE: usize = 0;
const A_AFTER: usize = 1;
const B_RAN: usize = 2;
const B_REFUSED: usize = 3;
const MMU_REACHED: usize = 4;
const MMU_MISSED: usize = 5;

fn munmap_vs_faults(bug: Bug, outcomes: Option<&common::Outcomes>) {
    let world = Arc::new(World::new(bug));

    let w = world.clone();
    let cpu_a = thread::spawn(move || {
        w.vma_a.start_read(&w.lock_seq, || {}).expect("A is never write-locked");
        let linked = w.fault(0, T0, 11);
        let walked = w.walked.load(Ordering::Relaxed);
        w.vma_a.read_unlock(|| {});
        assert!(linked, "only A's fault links T0");
        // The MMU may walk into any linked table until it has flushed.
        let reached = w.hardware_walk(3);
        spin_until(&mut || w.flush_requested.load(Ordering::Acquire));
        w.flush_answered.store(true, Ordering::Release);
        // After the flush nothing leads to T1 any more.
        assert!(!w.hardware_walk(3) || w.bug != Bug::None, "T1 reachable after the flush");
        (walked, reached)
    });

    let w = world.clone();
    let fault_b = thread::spawn(move || {
        if w.vma_b.start_read(&w.lock_seq, || {}).is_ok() {
            w.fault(3, B_FRESH, 12);
            w.vma_b.read_unlock(|| {});
            true
        } else {
            false
        }
    });

    // munmap(B): the kernel's `munmap`, `unmap_locked` and `free_page_tables`.
    let seq = world.lock_seq.begin_write();
    if bug != Bug::NoWriteLock {
        world.vma_b.start_write(seq, spin_until);
        world.vma_b.detach(seq);
    }
    world.zap(B_RANGE.0, B_RANGE.1);
    let keep = pgtable::free_range(Some(A_END), None, TOP);
    if bug == Bug::FreeBeforeUnlink {
        world.free(T1);
    }
    let mut unlinked = Vec::new();
    pgtable::unlink_tables(&*world, ROOT, 2, B_RANGE, keep, &mut |table, level| {
        assert_eq!(level, 1);
        unlinked.push(table)
    });
    world.walked.store(true, Ordering::Relaxed);
    let mut freed = bug == Bug::FreeBeforeUnlink;
    if bug == Bug::FreeBeforeFlush {
        unlinked.iter().for_each(|&t| world.free(t));
        freed = true;
    }
    // The flush: every CPU of the space answers before the tables go.
    world.flush_requested.store(true, Ordering::Release);
    spin_until(&mut || world.flush_answered.load(Ordering::Acquire));
    if !freed {
        unlinked.iter().for_each(|&t| world.free(t));
    }
    world.lock_seq.end_write(seq);

    let (a_linked_after_walk, mmu_reached) = cpu_a.join().unwrap();
    let b_ran = fault_b.join().unwrap();

    // What stays: A's page, through T0; nothing in B's gap.
    let root = &world.tables[ROOT as usize].entries;
    assert_eq!(root[0].load(Ordering::Relaxed), link(T0), "A's page table was unlinked");
    assert_eq!(world.entry(T0, 0).load(Ordering::Relaxed), link(11), "A's page was lost");
    assert_eq!(root[1].load(Ordering::Relaxed), 0, "a fault linked a table into the unmapped gap");
    assert_eq!(unlinked, [T1]);

    if let Some(outcomes) = outcomes {
        outcomes.record(if a_linked_after_walk { A_AFTER } else { A_BEFORE });
        outcomes.record(if b_ran { B_RAN } else { B_REFUSED });
        outcomes.record(if mmu_reached { MMU_REACHED } else { MMU_MISSED });
    }
}

const BUGS: &[&str] = &[
    "Causality violation",
    "walked a freed page table",
    "freed with a translation in it",
    "A's page table was unlinked",
    "A's page was lost",
    "linked a table into the unmapped gap",
];

#[test]
fn pgtable_munmap_vs_faults() {
    let outcomes = common::Outcomes::new(OUTCOMES);
    let seen = outcomes.clone();
    common::check("page tables: munmap vs faults installing tables", Some(2), move || {
        munmap_vs_faults(Bug::None, Some(&seen))
    });
    outcomes.require("munmap vs faults", &[A_BEFORE, A_AFTER, B_RAN, B_REFUSED, MMU_REACHED, MMU_MISSED]);
}

#[test]
fn broken_pgtable_floor_off_by_one() {
    common::expect_bug("page tables: floor one page low", Some(2), BUGS, || munmap_vs_faults(Bug::FloorOffByOne, None));
}

#[test]
fn broken_pgtable_free_before_flush() {
    common::expect_bug("page tables: freed before the flush", Some(2), BUGS, || {
        munmap_vs_faults(Bug::FreeBeforeFlush, None)
    });
}

#[test]
fn broken_pgtable_free_before_unlink() {
    common::expect_bug("page tables: freed before the unlink", Some(2), BUGS, || {
        munmap_vs_faults(Bug::FreeBeforeUnlink, None)
    });
}

#[test]
fn broken_pgtable_no_write_lock() {
    common::expect_bug("page tables: munmap without the VMA write lock", Some(2), BUGS, || {
        munmap_vs_faults(Bug::NoWriteLock, None)
    });
}
