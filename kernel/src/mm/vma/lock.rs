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
//! The state machine (the lock word, stamp, detached flag, the reader's
//! check sequence and the writer's side, with their orderings) is
//! `mmsync::vma_lock`, model-checked on the host with loom (`make
//! model-test`); this file adds the wait queue the writer sleeps on, the
//! guards and the counters.

use alloc::sync::Arc;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::Ordering;

use mmsync::vma_lock::VmaLockState;
pub(in crate::mm) use mmsync::vma_lock::{LockSeq, ReadAbort};

use super::map::VmaMap;
use super::Vma;
use crate::mm::addrspace::AddressSpace;
use crate::sync::{ReadGuard, WriteGuard};
use crate::task::wait::WaitQueue;

/// The lock state of one VMA.
pub(in crate::mm) struct VmaLock {
    /// The word, the stamp and the detached flag (`mmsync::vma_lock`).
    state: VmaLockState,
    /// The writer sleeps here until the last reader leaves.
    drained: WaitQueue,
}

impl core::fmt::Debug for VmaLock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VmaLock").field("state", &self.state).finish_non_exhaustive()
    }
}

impl VmaLock {
    /// Unlocked, or write-locked in the write section stamped `seq`.
    pub(in crate::mm) fn new(seq: Option<u64>) -> VmaLock {
        VmaLock { state: VmaLockState::new(seq), drained: WaitQueue::new() }
    }

    fn read_unlock(&self) {
        self.state.read_unlock(|| self.drained.wake_all());
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

/// Takes `vma`'s lock for reading, without waiting (Linux's vma_start_read):
/// fails if it is write-locked or detached. `lock_seq` is its space's.
pub(in crate::mm) fn vma_start_read(lock_seq: &LockSeq, vma: Arc<Vma>) -> Result<VmaReadGuard, ReadAbort> {
    let lock = &vma.lock;
    lock.state.start_read(lock_seq, || lock.drained.wake_all())?;
    count_vma_lock(true);
    Ok(VmaReadGuard { vma })
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
        let seq = mm.lock_seq.begin_write();
        MmapWriteGuard { mm, seq, map }
    }

    /// Write-locks `vma` (Linux's vma_start_write): waits until its readers
    /// have left; new readers fail until this guard is dropped. Idempotent.
    pub(in crate::mm) fn start_write(&self, vma: &Vma) {
        // It may sleep until the readers drain: checked like a sleeping lock
        // (above the mmap_lock we hold). Not recorded as held: every VMA of
        // the section stays locked until the guard drops, and the mmap_lock
        // (recorded) already orders what this thread takes meanwhile.
        crate::sync::order::sleeping_check(crate::sync::Level::VmaLock);
        let lock = &vma.lock;
        if lock.state.start_write(self.seq, |drained| lock.drained.wait_until(drained)) {
            self.mm.stats.vmas_write_locked.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Marks a write-locked VMA that left the tree as detached.
    pub(in crate::mm) fn detach(&self, vma: &Vma) {
        vma.lock.state.detach(self.seq);
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
        self.mm.lock_seq.end_write(self.seq);
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
