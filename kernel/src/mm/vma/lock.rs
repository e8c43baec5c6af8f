//! The per-VMA lock (Linux 6.4's scheme, with Jann Horn's ordering fix) and
//! the guards of the `mmap_lock`.
//!
//! - A fault takes one VMA's lock for reading (`vma_start_read`), found in
//!   the RCU-published tree without taking the `mmap_lock`.
//! - A writer holds the `mmap_lock` for writing (an `MmapWriteGuard`) and
//!   write-locks each VMA before it changes or removes it
//!   (`MmapWriteGuard::start_write`): that waits for the VMA's readers to
//!   leave and stamps the VMA with the space's `lock_seq`.
//! - There is no per-VMA unlock. While `vma.seq == mm.lock_seq` the VMA is
//!   write-locked; dropping the write guard bumps `lock_seq` (a release
//!   store), which unlocks every VMA locked under it at once.
//! - A VMA taken out of the tree is marked detached before the bump, so a
//!   reader that found it in an older tree version fails once it is unlocked.
//!
//! Orderings: the writer stamps `seq` while holding the lock word and
//! releases the word with a release store; a reader takes the word with an
//! acquire RMW, so it sees the stamp. The reader then compares the stamp with
//! `lock_seq` read with acquire: equal means the writer is still in its
//! critical section; different means it left, and the acquire makes
//! everything it did (the detached flag, page-table changes) visible.

use alloc::sync::Arc;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::map::VmaMap;
use super::Vma;
use crate::mm::addrspace::AddressSpace;
use crate::sync::{ReadGuard, WriteGuard};
use crate::task::wait::WaitQueue;

/// Set in `VmaLock::state` while a writer waits for the readers to drain.
const WRITER: usize = 1 << (usize::BITS - 1);
/// A stamp no address space's `lock_seq` ever has.
const NEVER: u64 = u64::MAX;

/// The lock state of one VMA.
pub(in crate::mm) struct VmaLock {
    /// Readers, plus `WRITER` while a writer waits for them.
    state: AtomicUsize,
    /// The space's `lock_seq` of the write section that last locked this VMA.
    seq: AtomicU64,
    /// Taken out of the tree: no reader may use it any more.
    detached: AtomicBool,
    /// The writer sleeps here until the last reader leaves.
    drained: WaitQueue,
}

impl core::fmt::Debug for VmaLock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VmaLock")
            .field("state", &self.state)
            .field("seq", &self.seq)
            .field("detached", &self.detached)
            .finish_non_exhaustive()
    }
}

impl VmaLock {
    /// Unlocked, or write-locked in the write section stamped `seq`.
    pub(in crate::mm) fn new(seq: Option<u64>) -> VmaLock {
        VmaLock {
            state: AtomicUsize::new(0),
            seq: AtomicU64::new(seq.unwrap_or(NEVER)),
            detached: AtomicBool::new(false),
            drained: WaitQueue::new(),
        }
    }

    fn read_unlock(&self) {
        if self.state.fetch_sub(1, Ordering::Release) == WRITER | 1 {
            self.drained.wake_all();
        }
    }

    pub(in crate::mm) fn is_detached(&self) -> bool {
        self.detached.load(Ordering::Acquire)
    }
}

/// Debug builds count the VMA read locks each thread holds: taking the
/// `mmap_lock` with one held is the wrong order (sync/mod.rs) and could
/// deadlock (a writer holding the `mmap_lock` waits for our VMA lock), so it
/// panics at once instead.
fn count_vma_lock(held: bool) {
    if !cfg!(debug_assertions) {
        return;
    }
    if let Some(thread) = crate::task::current_thread() {
        if held {
            thread.vma_locks_held.fetch_add(1, Ordering::Relaxed);
        } else {
            thread.vma_locks_held.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn assert_no_vma_lock_held() {
    if cfg!(debug_assertions) {
        if let Some(thread) = crate::task::current_thread() {
            let held = thread.vma_locks_held.load(Ordering::Relaxed);
            assert!(held == 0, "lock order: the mmap_lock taken while holding {held} VMA lock(s)");
        }
    }
}

/// Why `vma_start_read` failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::mm) enum ReadAbort {
    /// A writer has it (or is waiting for its readers).
    WriteLocked,
    /// It left the tree after the caller found it.
    Detached,
}

/// Takes `vma`'s lock for reading, without waiting (Linux's vma_start_read):
/// fails if it is write-locked or detached. `lock_seq` is its space's.
pub(in crate::mm) fn vma_start_read(lock_seq: &AtomicU64, vma: Arc<Vma>) -> Result<VmaReadGuard, ReadAbort> {
    // Write-locked: fail before touching the shared lock word.
    if vma.lock.seq.load(Ordering::Relaxed) == lock_seq.load(Ordering::Acquire) {
        return Err(ReadAbort::WriteLocked);
    }
    let taken =
        vma.lock.state.fetch_update(Ordering::Acquire, Ordering::Relaxed, |s| (s & WRITER == 0).then_some(s + 1));
    if taken.is_err() {
        return Err(ReadAbort::WriteLocked);
    }
    count_vma_lock(true);
    let guard = VmaReadGuard { vma };
    // With the word held, the stamp is current (see the module doc); the
    // guard unlocks on the error paths.
    if guard.vma.lock.seq.load(Ordering::Relaxed) == lock_seq.load(Ordering::Acquire) {
        return Err(ReadAbort::WriteLocked);
    }
    if guard.vma.lock.is_detached() {
        return Err(ReadAbort::Detached);
    }
    Ok(guard)
}

/// A VMA held for reading: its range, protection and pages-to-be cannot
/// change until this is dropped (a writer waits for it).
pub struct VmaReadGuard {
    vma: Arc<Vma>,
}

impl Deref for VmaReadGuard {
    type Target = Vma;
    fn deref(&self) -> &Vma {
        &self.vma
    }
}

impl Drop for VmaReadGuard {
    fn drop(&mut self) {
        self.vma.lock.read_unlock();
        count_vma_lock(false);
    }
}

/// The `mmap_lock` held for reading: no VMA changes meanwhile.
pub struct MmapReadGuard<'a> {
    map: ReadGuard<'a, VmaMap>,
}

impl<'a> MmapReadGuard<'a> {
    pub(in crate::mm) fn new(mm: &'a AddressSpace) -> Self {
        assert_no_vma_lock_held();
        MmapReadGuard { map: mm.mmap_lock.read() }
    }
}

impl Deref for MmapReadGuard<'_> {
    type Target = VmaMap;
    fn deref(&self) -> &VmaMap {
        &self.map
    }
}

/// The `mmap_lock` held for writing. The only way to change VMAs (its
/// methods in `map.rs`), and the proof `start_write` asks for. Dropping it
/// publishes the new tree, then unlocks every VMA locked under it.
pub struct MmapWriteGuard<'a> {
    mm: &'a AddressSpace,
    /// `mm.lock_seq` during this write section: the stamp of locked VMAs.
    seq: u64,
    map: WriteGuard<'a, VmaMap>,
}

impl<'a> MmapWriteGuard<'a> {
    pub(in crate::mm) fn new(mm: &'a AddressSpace) -> Self {
        assert_no_vma_lock_held();
        let map = mm.mmap_lock.write();
        // Only writers change it, and we are the writer.
        let seq = mm.lock_seq.load(Ordering::Relaxed);
        MmapWriteGuard { mm, seq, map }
    }

    /// Write-locks `vma` (Linux's vma_start_write): waits until its readers
    /// have left; new readers fail until this guard is dropped. Idempotent.
    pub(in crate::mm) fn start_write(&self, vma: &Vma) {
        let lock = &vma.lock;
        if lock.seq.load(Ordering::Relaxed) == self.seq {
            return;
        }
        lock.state.fetch_or(WRITER, Ordering::Acquire);
        lock.drained.wait_until(|| lock.state.load(Ordering::Acquire) == WRITER);
        lock.seq.store(self.seq, Ordering::Relaxed);
        lock.state.store(0, Ordering::Release);
        self.mm.stats.vmas_write_locked.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks a write-locked VMA that left the tree as detached.
    pub(in crate::mm) fn detach(&self, vma: &Vma) {
        debug_assert_eq!(vma.lock.seq.load(Ordering::Relaxed), self.seq, "a VMA is detached unlocked");
        vma.lock.detached.store(true, Ordering::Release);
    }

    /// A lock for a VMA made in this section: write-locked from birth, so no
    /// fault uses it before the operation that makes it is complete.
    pub(in crate::mm) fn new_lock(&self) -> VmaLock {
        VmaLock::new(Some(self.seq))
    }
}

impl Deref for MmapWriteGuard<'_> {
    type Target = VmaMap;
    fn deref(&self) -> &VmaMap {
        &self.map
    }
}

impl DerefMut for MmapWriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut VmaMap {
        &mut self.map
    }
}

impl Drop for MmapWriteGuard<'_> {
    fn drop(&mut self) {
        if self.map.dirty {
            self.map.dirty = false;
            self.map.check_in_debug_builds();
            self.mm.published.replace(Arc::new(self.map.tree.clone()));
        }
        // Unlocks every VMA stamped `seq`, and publishes what we did to the
        // readers that will see the new value (they load it with acquire).
        self.mm.lock_seq.store(self.seq + 1, Ordering::Release);
        // `map` (the rwsem) is released after this, as fields drop last.
    }
}

/// Held, it keeps the VMAs its holder looked up from changing: the `mmap_lock`
/// (either way) for all of them, a `VmaReadGuard` for its own VMA.
/// Operations that read or change page-table entries of a VMA ask for one.
pub trait VmaLockHeld: private::Sealed {}
impl VmaLockHeld for MmapReadGuard<'_> {}
impl VmaLockHeld for MmapWriteGuard<'_> {}
impl VmaLockHeld for VmaReadGuard {}

mod private {
    pub trait Sealed {}
    impl Sealed for super::MmapReadGuard<'_> {}
    impl Sealed for super::MmapWriteGuard<'_> {}
    impl Sealed for super::VmaReadGuard {}
}
