//! The per-VMA lock's state machine (Linux 6.4's scheme, with Jann Horn's
//! ordering fix), without the sleeping: the kernel wraps it in
//! `kernel/src/mm/vma/lock.rs` (wait queue, guards, counters).
//!
//! - A reader takes one VMA's lock with [`VmaLockState::start_read`] (Linux's
//!   vma_start_read), never waiting: it fails if the VMA is write-locked or
//!   detached.
//! - A writer holds the address space's `mmap_lock` for writing; its section
//!   is numbered by [`LockSeq::begin_write`]. [`VmaLockState::start_write`]
//!   sets the writer bit, waits (how is the caller's: the kernel sleeps, a
//!   model yields) until the readers drained, stamps the VMA with the
//!   section's number and releases the word.
//! - There is no per-VMA unlock. While `stamp == lock_seq` the VMA is
//!   write-locked; [`LockSeq::end_write`] bumps `lock_seq` with a release
//!   store, unlocking every VMA stamped in that section at once.
//! - A VMA taken out of the tree is [`VmaLockState::detach`]ed before the
//!   bump, so a reader that found it in an older tree fails once unlocked.
//!
//! Orderings: the writer stamps while it holds the word and releases the word
//! with a release store; a reader takes the word with an acquire RMW, so it
//! sees the stamp. The reader then compares the stamp with `lock_seq` read
//! with acquire: equal means the writer is still in its section; different
//! means it left, and the acquire (Jann Horn's fix) makes everything it did
//! before the bump (the detached flag, page-table changes) visible.

use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Set in the lock word while a writer waits for the readers to drain.
pub const WRITER: usize = 1 << (usize::BITS - 1);
/// A stamp no address space's `lock_seq` ever has.
pub const NEVER: u64 = u64::MAX;

/// Why [`VmaLockState::start_read`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAbort {
    /// A writer has it (or is waiting for its readers).
    WriteLocked,
    /// It left the tree after the caller found it.
    Detached,
}

/// Deliberately broken variants, for the models to prove they can fail.
/// Only loom builds can select one (`VmaLockState::mutated`,
/// `LockSeq::mutated`); the kernel always runs `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// The protocol as the kernel runs it.
    None,
    /// The reader skips the stamp re-check after taking the word.
    NoRecheck,
    /// The reader's re-check loads `lock_seq` Relaxed instead of Acquire
    /// (the bug Jann Horn's fix closed).
    RelaxedRecheck,
    /// The reader does not look at the detached flag.
    NoDetachedCheck,
    /// The writer releases the word before it stamps the VMA.
    StampAfterRelease,
    /// The writer does not wait for the readers to drain.
    NoDrainWait,
    /// `end_write` bumps `lock_seq` with a Relaxed store.
    RelaxedUnlock,
}

/// An address space's write-section counter (Linux's `mm_lock_seq`).
pub struct LockSeq {
    seq: AtomicU64,
    #[cfg(loom)]
    mutation: Mutation,
}

impl LockSeq {
    /// Section 0 is the first.
    #[cfg(not(loom))]
    pub const fn new() -> LockSeq {
        LockSeq { seq: AtomicU64::new(0) }
    }

    /// Section 0 is the first.
    #[cfg(loom)]
    pub fn new() -> LockSeq {
        LockSeq::mutated(Mutation::None)
    }

    /// A broken variant (loom only).
    #[cfg(loom)]
    pub fn mutated(mutation: Mutation) -> LockSeq {
        LockSeq { seq: AtomicU64::new(0), mutation }
    }

    #[cfg(loom)]
    fn mutation(&self) -> Mutation {
        self.mutation
    }

    #[cfg(not(loom))]
    #[inline(always)]
    fn mutation(&self) -> Mutation {
        Mutation::None
    }

    /// The number of the write section the caller (holding the `mmap_lock`
    /// for writing) is in: the stamp of the VMAs it locks.
    pub fn begin_write(&self) -> u64 {
        // Only writers change it, and the caller is the writer.
        self.seq.load(Ordering::Relaxed)
    }

    /// Ends write section `seq`: unlocks every VMA stamped `seq` and
    /// publishes what the section did to the readers that see the new value
    /// (they load it with acquire).
    pub fn end_write(&self, seq: u64) {
        let order = if self.mutation() == Mutation::RelaxedUnlock { Ordering::Relaxed } else { Ordering::Release };
        self.seq.store(seq + 1, order);
    }

    /// The current value, with acquire (what readers compare stamps with).
    pub fn load(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }
}

impl Default for LockSeq {
    fn default() -> Self {
        LockSeq::new()
    }
}

impl core::fmt::Debug for LockSeq {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("LockSeq").field(&self.seq.load(Ordering::Relaxed)).finish()
    }
}

/// The lock state of one VMA.
pub struct VmaLockState {
    /// Readers, plus `WRITER` while a writer waits for them.
    state: AtomicUsize,
    /// The `lock_seq` of the write section that last locked this VMA.
    seq: AtomicU64,
    /// Taken out of the tree: no reader may use it any more.
    detached: AtomicBool,
    #[cfg(loom)]
    mutation: Mutation,
}

impl core::fmt::Debug for VmaLockState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VmaLockState")
            .field("state", &self.state.load(Ordering::Relaxed))
            .field("seq", &self.seq.load(Ordering::Relaxed))
            .field("detached", &self.detached.load(Ordering::Relaxed))
            .finish()
    }
}

impl VmaLockState {
    /// Unlocked, or write-locked in the write section `seq`.
    #[cfg(not(loom))]
    pub const fn new(seq: Option<u64>) -> VmaLockState {
        VmaLockState {
            state: AtomicUsize::new(0),
            seq: AtomicU64::new(match seq {
                Some(seq) => seq,
                None => NEVER,
            }),
            detached: AtomicBool::new(false),
        }
    }

    /// Unlocked, or write-locked in the write section `seq`.
    #[cfg(loom)]
    pub fn new(seq: Option<u64>) -> VmaLockState {
        VmaLockState::mutated(seq, Mutation::None)
    }

    /// A broken variant (loom only).
    #[cfg(loom)]
    pub fn mutated(seq: Option<u64>, mutation: Mutation) -> VmaLockState {
        VmaLockState {
            state: AtomicUsize::new(0),
            seq: AtomicU64::new(seq.unwrap_or(NEVER)),
            detached: AtomicBool::new(false),
            mutation,
        }
    }

    #[cfg(loom)]
    fn mutation(&self) -> Mutation {
        self.mutation
    }

    #[cfg(not(loom))]
    #[inline(always)]
    fn mutation(&self) -> Mutation {
        Mutation::None
    }

    /// The write section that last locked this VMA (`NEVER` if none).
    pub fn stamp(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// Whether it is write-locked now: stamped in the current section.
    pub fn is_write_locked(&self, lock_seq: &LockSeq) -> bool {
        self.seq.load(Ordering::Relaxed) == lock_seq.load()
    }

    /// Whether it left the tree (acquire: what its writer did before is visible).
    pub fn is_detached(&self) -> bool {
        self.detached.load(Ordering::Acquire)
    }

    /// Adds a reader unless a writer holds the word or waits for it. Acquire:
    /// a reader that gets it sees the stamp of the last writer that released it.
    pub fn try_read(&self) -> bool {
        self.state.fetch_update(Ordering::Acquire, Ordering::Relaxed, |s| (s & WRITER == 0).then_some(s + 1)).is_ok()
    }

    /// Drops a read taken by `try_read`; runs `wake_writer` if it was the
    /// last reader a waiting writer was waiting for.
    pub fn read_unlock(&self, wake_writer: impl FnOnce()) {
        if self.state.fetch_sub(1, Ordering::Release) == WRITER | 1 {
            wake_writer();
        }
    }

    /// Linux's vma_start_read: takes the lock for reading, without waiting.
    /// `lock_seq` is the VMA's address space's. On `Ok` the caller holds a
    /// read (drop it with `read_unlock`); on `Err` it holds nothing (a read
    /// taken and given back on the way may have run `wake_writer`).
    pub fn start_read(&self, lock_seq: &LockSeq, wake_writer: impl FnOnce()) -> Result<(), ReadAbort> {
        // Write-locked: fail before touching the shared lock word.
        if self.is_write_locked(lock_seq) {
            return Err(ReadAbort::WriteLocked);
        }
        if !self.try_read() {
            return Err(ReadAbort::WriteLocked);
        }
        // With the word held, the stamp is current (see the module doc).
        // Acquire on `lock_seq`: if the writer is gone, what it did is seen.
        let mutation = self.mutation();
        if mutation != Mutation::NoRecheck {
            let order = if mutation == Mutation::RelaxedRecheck { Ordering::Relaxed } else { Ordering::Acquire };
            if self.seq.load(Ordering::Relaxed) == lock_seq.seq.load(order) {
                self.read_unlock(wake_writer);
                return Err(ReadAbort::WriteLocked);
            }
        }
        if mutation != Mutation::NoDetachedCheck && self.is_detached() {
            self.read_unlock(wake_writer);
            return Err(ReadAbort::Detached);
        }
        Ok(())
    }

    /// Linux's vma_start_write, for the writer of section `seq` (it holds
    /// the `mmap_lock` for writing): sets the writer bit, so new readers
    /// fail; has `wait_until(drained)` return once `drained()` holds (the
    /// readers have left; `read_unlock` runs `wake_writer` for the last);
    /// stamps the VMA `seq` and releases the word. Returns false, doing
    /// nothing, if it is already locked in this section.
    pub fn start_write(&self, seq: u64, wait_until: impl FnOnce(&mut dyn FnMut() -> bool)) -> bool {
        if self.seq.load(Ordering::Relaxed) == seq {
            return false;
        }
        let mutation = self.mutation();
        self.state.fetch_or(WRITER, Ordering::Acquire);
        if mutation != Mutation::NoDrainWait {
            wait_until(&mut || self.state.load(Ordering::Acquire) == WRITER);
        }
        if mutation == Mutation::StampAfterRelease {
            self.state.fetch_and(!WRITER, Ordering::Release);
            self.seq.store(seq, Ordering::Relaxed);
            return true;
        }
        self.seq.store(seq, Ordering::Relaxed);
        // Release: a reader that takes the word next sees the stamp.
        self.state.store(0, Ordering::Release);
        true
    }

    /// Marks a VMA write-locked in section `seq` that left the tree as
    /// detached: from the section's end no reader takes it.
    pub fn detach(&self, seq: u64) {
        debug_assert_eq!(self.seq.load(Ordering::Relaxed), seq, "a VMA is detached unlocked");
        self.detached.store(true, Ordering::Release);
    }
}
