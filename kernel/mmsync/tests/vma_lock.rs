//! Model: a fault's `vma_start_read` against a writer's section (start_write,
//! change the VMA, optionally detach it, bump `lock_seq`), with the very
//! functions the kernel calls (`mmsync::vma_lock`). Run by `make model-test`.
//!
//! Asserted in every execution loom explores:
//! - a reader that got the lock never overlaps the writer's exclusive
//!   section (from `start_write` returning to the bump): the writer flags
//!   it, and the VMA's data is a loom `UnsafeCell`, so any read not ordered
//!   with the writer's write by happens-before is a "causality violation";
//! - a reader never gets a VMA the writer detached (it then saw the
//!   writer's data, which only a detached VMA's writer wrote);
//! - a reader that got it after the unlock sees the writer's data: again
//!   the `UnsafeCell` (an unordered read is a violation), and the value.
#![cfg(loom)]

mod common;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use mmsync::vma_lock::{LockSeq, Mutation, ReadAbort, VmaLockState};

/// What the writer writes into the VMA in its section.
const WRITTEN: u64 = 7;

struct World {
    lock_seq: LockSeq,
    lock: VmaLockState,
    /// The VMA's contents (its range, protection, page-table entries).
    data: UnsafeCell<u64>,
    /// Set while the writer is in its exclusive section.
    writing: AtomicBool,
}

/// The writer's wait: the kernel sleeps on a wait queue; the model yields.
fn spin_until(drained: &mut dyn FnMut() -> bool) {
    while !drained() {
        thread::yield_now();
    }
}

/// What the reader of `reader_vs_writer` ended with.
const OUTCOMES: &[&str] = &["got it before the writer", "got it after the writer", "write-locked", "detached"];
const BEFORE: usize = 0;
const AFTER: usize = 1;
const LOCKED: usize = 2;
const DETACHED: usize = 3;

/// One reader, one writer; `detach`: the writer removes the VMA. Returns
/// the reader's outcome.
fn reader_vs_writer(mutation: Mutation, detach: bool) -> usize {
    let world = Arc::new(World {
        lock_seq: LockSeq::mutated(mutation),
        lock: VmaLockState::mutated(None, mutation),
        data: UnsafeCell::new(0),
        writing: AtomicBool::new(false),
    });

    let w = world.clone();
    let writer = thread::spawn(move || {
        let seq = w.lock_seq.begin_write();
        assert!(w.lock.start_write(seq, spin_until));
        // Idempotent within the section.
        assert!(!w.lock.start_write(seq, spin_until));
        w.writing.store(true, Ordering::Relaxed);
        // SAFETY: the writer's exclusive section; a reader touching `data`
        // meanwhile is the bug loom reports.
        w.data.with_mut(|p| unsafe { *p = WRITTEN });
        if detach {
            w.lock.detach(seq);
        }
        w.writing.store(false, Ordering::Relaxed);
        w.lock_seq.end_write(seq);
    });

    let outcome = match world.lock.start_read(&world.lock_seq, || {}) {
        Ok(()) => {
            assert!(!world.writing.load(Ordering::Relaxed), "a reader overlapped the writer's section");
            // SAFETY: we hold the read lock; a concurrent write is the bug
            // loom reports.
            let seen = world.data.with(|p| unsafe { *p });
            assert!(seen == 0 || seen == WRITTEN);
            if detach {
                assert_eq!(seen, 0, "a reader took the VMA after its writer detached it");
            }
            world.lock.read_unlock(|| {});
            if seen == 0 {
                BEFORE
            } else {
                AFTER
            }
        }
        Err(ReadAbort::WriteLocked) => LOCKED,
        Err(ReadAbort::Detached) => DETACHED,
    };
    writer.join().unwrap();
    outcome
}

/// Two readers and a writer that detaches (a reader's unlock wakes a
/// writer waiting for two).
fn two_readers_vs_writer(mutation: Mutation) {
    let world = Arc::new(World {
        lock_seq: LockSeq::mutated(mutation),
        lock: VmaLockState::mutated(None, mutation),
        data: UnsafeCell::new(0),
        writing: AtomicBool::new(false),
    });
    let reader = |world: Arc<World>| {
        move || {
            if world.lock.start_read(&world.lock_seq, || {}).is_ok() {
                assert!(!world.writing.load(Ordering::Relaxed), "a reader overlapped the writer's section");
                // SAFETY: read lock held (see above).
                let seen = world.data.with(|p| unsafe { *p });
                assert_eq!(seen, 0, "a reader took the VMA after its writer detached it");
                world.lock.read_unlock(|| {});
            }
        }
    };
    let r1 = thread::spawn(reader(world.clone()));
    let r2 = thread::spawn(reader(world.clone()));
    let seq = world.lock_seq.begin_write();
    world.lock.start_write(seq, spin_until);
    world.writing.store(true, Ordering::Relaxed);
    // SAFETY: the writer's exclusive section (see above).
    world.data.with_mut(|p| unsafe { *p = WRITTEN });
    world.lock.detach(seq);
    world.writing.store(false, Ordering::Relaxed);
    world.lock_seq.end_write(seq);
    r1.join().unwrap();
    r2.join().unwrap();
}

const BUGS: &[&str] = &["Causality violation", "overlapped", "after its writer detached"];

#[test]
fn vma_reader_vs_writer() {
    let outcomes = common::Outcomes::new(OUTCOMES);
    let seen = outcomes.clone();
    common::check("vma lock: reader vs writer", None, move || seen.record(reader_vs_writer(Mutation::None, false)));
    outcomes.require("reader vs writer", &[BEFORE, AFTER, LOCKED]);
}

#[test]
fn vma_reader_vs_detaching_writer() {
    let outcomes = common::Outcomes::new(OUTCOMES);
    let seen = outcomes.clone();
    common::check("vma lock: reader vs detaching writer", None, move || {
        seen.record(reader_vs_writer(Mutation::None, true))
    });
    outcomes.require("reader vs detaching writer", &[BEFORE, LOCKED, DETACHED]);
}

#[test]
fn vma_two_readers_vs_detaching_writer() {
    common::check("vma lock: two readers vs detaching writer", Some(4), || two_readers_vs_writer(Mutation::None));
}

#[test]
fn broken_vma_no_recheck() {
    common::expect_bug("vma: no stamp re-check", None, BUGS, || {
        reader_vs_writer(Mutation::NoRecheck, false);
    });
}

#[test]
fn broken_vma_relaxed_recheck() {
    common::expect_bug("vma: Relaxed re-check (no Jann Horn fix)", None, BUGS, || {
        reader_vs_writer(Mutation::RelaxedRecheck, false);
    });
}

#[test]
fn broken_vma_relaxed_recheck_detached() {
    common::expect_bug("vma: Relaxed re-check, detaching writer", None, BUGS, || {
        reader_vs_writer(Mutation::RelaxedRecheck, true);
    });
}

#[test]
fn broken_vma_no_detached_check() {
    common::expect_bug("vma: no detached check", None, BUGS, || {
        reader_vs_writer(Mutation::NoDetachedCheck, true);
    });
}

#[test]
fn broken_vma_stamp_after_release() {
    common::expect_bug("vma: stamp after releasing the word", None, BUGS, || {
        reader_vs_writer(Mutation::StampAfterRelease, false);
    });
}

#[test]
fn broken_vma_no_drain_wait() {
    common::expect_bug("vma: writer does not wait for readers", None, BUGS, || {
        reader_vs_writer(Mutation::NoDrainWait, false);
    });
}

#[test]
fn broken_vma_relaxed_unlock() {
    common::expect_bug("vma: Relaxed lock_seq bump", None, BUGS, || {
        reader_vs_writer(Mutation::RelaxedUnlock, false);
    });
}
