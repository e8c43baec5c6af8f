//! Model: the freed-table rule. munmap frees the page tables no remaining
//! VMA needs (`mmsync::pgtable`, the code the kernel's `unlink_user_tables`
//! and `free_page_tables` run) while faults in the neighbouring VMA and in
//! the VMA being removed install tables and pages, and another CPU's MMU
//! walks the tables until it has flushed. Run by `make model-test`.
//!
//! A tiny two-level table: the root's two entries lead to leaf tables of
//! two 4 KiB pages each, so the root covers [0, 16 KiB). Two layouts, one
//! per side of the rule (the floor, the ceiling):
//!
//! ```text
//!   page      0 | 1 |     2 | 3            0 | 1 |     2 | 3
//!   table     A's     |   gap              gap     |   A's
//!   VMA       A | B (removed)              B (removed)     | A
//! ```
//!
//! The gap table is linked at the start with one of B's pages in it; A's
//! table is not: the fault in A (the neighbour) allocates it and links it
//! by CAS on the root entry (as the kernel's `walk`). The threads:
//! - munmap (the model's main thread), as `AddressSpace::munmap`: begins a
//!   write section, write-locks B (waits for its readers) and detaches it,
//!   zaps B's pages, unlinks the tables `pgtable::unlink_tables` picks with
//!   `pgtable::free_range` (A's end is the floor, or its start the
//!   ceiling), flushes (asks CPU A and waits for its answer), frees them,
//!   ends the section;
//! - CPU A: a fault on A's page under A's read lock (`vma_lock`), which
//!   installs A's table and the page; then its MMU walks towards the page
//!   B's fault wants (a speculative walk may reach any linked table),
//!   answers the flush, and walks again;
//! - a fault on a page of B under B's read lock: installs its page into the
//!   gap table (or a fresh table if that is gone), or finds B write-locked
//!   or detached.
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
/// The root, A's fault's fresh table, the gap table (linked at the start),
/// and the fresh table B's fault would allocate if it found the gap gone.
const ROOT: u64 = 0;
const A_TABLE: u64 = 1;
const GAP: u64 = 2;
const B_FRESH: u64 = 3;
/// The end of the model's address space (the kernel's `USER_HALF_END`).
const TOP: u64 = 4 * PAGE;
const PRESENT: u64 = 1;
const LIVE: u64 = 0;
const POISON: u64 = 0x6b6b;
/// Frames of pages: B's page linked at the start, A's, B's fault's.
const B_OLD_FRAME: u64 = 10;
const A_FRAME: u64 = 11;
const B_FRAME: u64 = 12;

/// Which side of the removed VMA the remaining one is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// A = page 0 before B = pages 1-3: A's end is the floor.
    Floor,
    /// B = pages 0-2 before A = page 3: A's start is the ceiling.
    Ceiling,
}

/// Page numbers and ranges of one layout.
struct Layout {
    /// A's page; its table's root slot is `a_page / 2`.
    a_page: u64,
    /// B's page linked (in the gap table) at the start.
    b_old_page: u64,
    /// The page B's fault wants (in the gap table).
    b_page: u64,
    /// B's range, which munmap removes.
    b_range: (u64, u64),
    /// `free_range`'s arguments: the previous VMA's end, the next one's start.
    neighbours: (Option<u64>, Option<u64>),
}

impl Side {
    fn layout(self) -> Layout {
        match self {
            Side::Floor => Layout {
                a_page: 0,
                b_old_page: 2,
                b_page: 3,
                b_range: (PAGE, 4 * PAGE),
                neighbours: (Some(PAGE), None),
            },
            Side::Ceiling => Layout {
                a_page: 3,
                b_old_page: 1,
                b_page: 0,
                b_range: (0, 3 * PAGE),
                neighbours: (None, Some(3 * PAGE)),
            },
        }
    }
}

/// An entry leading to table or frame `n`.
fn link(n: u64) -> u64 {
    (n << 1) | PRESENT
}

/// What munmap does wrong, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    None,
    /// The shared rule's floor is a page low (a table A still overlaps goes).
    FloorOffByOne,
    /// The shared rule's ceiling is a page high (the same on the other side).
    CeilingOffByOne,
    /// The tables are freed after the unlink but before the flush.
    FreeBeforeFlush,
    /// The gap table is freed while still linked (then unlinked and flushed).
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
    layout: Layout,
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
        match self.bug {
            Bug::FloorOffByOne => pgtable::Mutation::FloorOffByOne,
            Bug::CeilingOffByOne => pgtable::Mutation::CeilingOffByOne,
            _ => pgtable::Mutation::None,
        }
    }
}

impl World {
    fn new(side: Side, bug: Bug) -> World {
        let layout = side.layout();
        let table = |entries: [u64; 2]| Table { entries: entries.map(AtomicU64::new), memory: UnsafeCell::new(LIVE) };
        let with = |index: u64, value: u64| {
            let mut entries = [0; 2];
            entries[index as usize] = value;
            entries
        };
        World {
            tables: [
                table(with(layout.b_old_page / 2, link(GAP))),
                table([0, 0]),
                table(with(layout.b_old_page % 2, link(B_OLD_FRAME))),
                table([0, 0]),
            ],
            layout,
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
    "A's MMU reached the gap table before the flush",
    "A's MMU found the gap table unlinked",
];
const A_BEFORE: usize = 0;
const A_AFTER: usize = 1;
const B_RAN: usize = 2;
const B_REFUSED: usize = 3;
const MMU_REACHED: usize = 4;
const MMU_MISSED: usize = 5;

fn munmap_vs_faults(side: Side, bug: Bug, outcomes: Option<&common::Outcomes>) {
    let world = Arc::new(World::new(side, bug));
    let (a_page, b_page, b_range) = (world.layout.a_page, world.layout.b_page, world.layout.b_range);

    let w = world.clone();
    let cpu_a = thread::spawn(move || {
        w.vma_a.start_read(&w.lock_seq, || {}).expect("A is never write-locked");
        let linked = w.fault(a_page, A_TABLE, A_FRAME);
        let walked = w.walked.load(Ordering::Relaxed);
        w.vma_a.read_unlock(|| {});
        assert!(linked, "only A's fault links A's table");
        // The MMU may walk into any linked table until it has flushed.
        let reached = w.hardware_walk(b_page);
        spin_until(&mut || w.flush_requested.load(Ordering::Acquire));
        w.flush_answered.store(true, Ordering::Release);
        // After the flush nothing leads to the gap table any more.
        assert!(!w.hardware_walk(b_page) || w.bug != Bug::None, "the gap table reachable after the flush");
        (walked, reached)
    });

    let w = world.clone();
    let fault_b = thread::spawn(move || {
        if w.vma_b.start_read(&w.lock_seq, || {}).is_ok() {
            w.fault(b_page, B_FRESH, B_FRAME);
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
    world.zap(b_range.0, b_range.1);
    let (prev_end, next_start) = world.layout.neighbours;
    let keep = pgtable::free_range(prev_end, next_start, TOP);
    if bug == Bug::FreeBeforeUnlink {
        world.free(GAP);
    }
    let mut unlinked = Vec::new();
    pgtable::unlink_tables(&*world, ROOT, 2, b_range, keep, &mut |table, level| {
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

    // What stays: A's page, through A's table; nothing in B's gap.
    let root = &world.tables[ROOT as usize].entries;
    let (a_slot, gap_slot) = ((a_page / 2) as usize, (b_page / 2) as usize);
    assert_eq!(root[a_slot].load(Ordering::Relaxed), link(A_TABLE), "A's page table was unlinked");
    assert_eq!(world.entry(A_TABLE, (a_page % 2) as usize).load(Ordering::Relaxed), link(A_FRAME), "A's page was lost");
    assert_eq!(root[gap_slot].load(Ordering::Relaxed), 0, "a fault linked a table into the unmapped gap");
    assert_eq!(unlinked, [GAP]);

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

fn check_side(side: Side) {
    let outcomes = common::Outcomes::new(OUTCOMES);
    let seen = outcomes.clone();
    let name = format!("page tables ({side:?}): munmap vs faults installing tables");
    common::check(&name, Some(2), move || munmap_vs_faults(side, Bug::None, Some(&seen)));
    outcomes.require(&name, &[A_BEFORE, A_AFTER, B_RAN, B_REFUSED, MMU_REACHED, MMU_MISSED]);
}

#[test]
fn pgtable_munmap_vs_faults_floor() {
    check_side(Side::Floor);
}

#[test]
fn pgtable_munmap_vs_faults_ceiling() {
    check_side(Side::Ceiling);
}

#[test]
fn broken_pgtable_floor_off_by_one() {
    common::expect_bug("page tables: floor one page low", Some(2), BUGS, || {
        munmap_vs_faults(Side::Floor, Bug::FloorOffByOne, None)
    });
}

#[test]
fn broken_pgtable_ceiling_off_by_one() {
    common::expect_bug("page tables: ceiling one page high", Some(2), BUGS, || {
        munmap_vs_faults(Side::Ceiling, Bug::CeilingOffByOne, None)
    });
}

#[test]
fn broken_pgtable_free_before_flush() {
    common::expect_bug("page tables: freed before the flush", Some(2), BUGS, || {
        munmap_vs_faults(Side::Floor, Bug::FreeBeforeFlush, None)
    });
}

#[test]
fn broken_pgtable_free_before_unlink() {
    common::expect_bug("page tables: freed before the unlink", Some(2), BUGS, || {
        munmap_vs_faults(Side::Floor, Bug::FreeBeforeUnlink, None)
    });
}

#[test]
fn broken_pgtable_no_write_lock() {
    common::expect_bug("page tables: munmap without the VMA write lock", Some(2), BUGS, || {
        munmap_vs_faults(Side::Ceiling, Bug::NoWriteLock, None)
    });
}
