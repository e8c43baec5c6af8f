//! Sleeping locks: a mutex and a reader/writer semaphore whose waiters block
//! (through `task::wait`) instead of spinning. They may be held across page
//! faults and other sleeps; they must not be taken in interrupt handlers.
//! Each has its level in the lock order, checked in debug builds
//! (`order`): per thread, since they are held across sleeps.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::order::{self, Level};
use crate::task::wait::WaitQueue;

pub struct Mutex<T> {
    locked: AtomicBool,
    waiters: WaitQueue,
    level: Level,
    data: UnsafeCell<T>,
}

// SAFETY: the data is reached only through a guard, and `locked` admits one guard at a time.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    /// A mutex at `level` of the lock order (a sleeping level).
    pub const fn new(level: Level, value: T) -> Self {
        assert!(level.is_sleeping(), "a sleeping lock at a spinlock's level");
        Mutex { locked: AtomicBool::new(false), waiters: WaitQueue::new(), level, data: UnsafeCell::new(value) }
    }

    fn try_take(&self) -> bool {
        self.locked.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Not order-checked (it cannot wait); what it takes counts as held.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.try_take().then(|| MutexGuard { mutex: self, recorded: order::sleeping_acquired(self.level) })
    }

    /// Debug builds panic if a lock of its level or above is held.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        order::sleeping_check(self.level);
        if !self.try_take() {
            self.waiters.wait_until(|| self.try_take());
        }
        MutexGuard { mutex: self, recorded: order::sleeping_acquired(self.level) }
    }
}

pub struct MutexGuard<'a, T> {
    mutex: &'a Mutex<T>,
    /// The order check recorded the level as held by this thread.
    recorded: bool,
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held by us.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and `&mut self` makes the access unique.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        order::sleeping_released(self.mutex.level, self.recorded);
        self.mutex.locked.store(false, Ordering::Release);
        // All, not one: a queue may hold stale entries of threads woken by
        // other means (a time-out, a kill), and waking only such an entry
        // would leave a real waiter asleep with the mutex free.
        self.mutex.waiters.wake_all();
    }
}

/// Writer bit in `RwSem::state`; the rest counts readers.
const WRITER: usize = 1 << (usize::BITS - 1);

/// A reader/writer semaphore. Writers are preferred once waiting: new
/// readers queue behind a waiting writer, so a stream of faults cannot
/// starve `mmap`.
pub struct RwSem<T> {
    state: AtomicUsize,
    writers_waiting: AtomicUsize,
    waiters: WaitQueue,
    level: Level,
    data: UnsafeCell<T>,
}

// SAFETY: shared access only through read guards (many) or a write guard
// (one, excluding readers), enforced by `state`.
unsafe impl<T: Send + Sync> Sync for RwSem<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for RwSem<T> {}

impl<T> RwSem<T> {
    /// A semaphore at `level` of the lock order (a sleeping level).
    pub const fn new(level: Level, value: T) -> Self {
        assert!(level.is_sleeping(), "a sleeping lock at a spinlock's level");
        RwSem {
            state: AtomicUsize::new(0),
            writers_waiting: AtomicUsize::new(0),
            waiters: WaitQueue::new(),
            level,
            data: UnsafeCell::new(value),
        }
    }

    fn try_take_read(&self) -> bool {
        self.writers_waiting.load(Ordering::Acquire) == 0
            && self
                .state
                .fetch_update(Ordering::Acquire, Ordering::Relaxed, |s| (s & WRITER == 0).then_some(s + 1))
                .is_ok()
    }

    fn try_take_write(&self) -> bool {
        self.state.compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Not order-checked (it cannot wait); what it takes counts as held.
    pub fn try_read(&self) -> Option<ReadGuard<'_, T>> {
        self.try_take_read().then(|| ReadGuard { sem: self, recorded: order::sleeping_acquired(self.level) })
    }

    /// Not order-checked (it cannot wait); what it takes counts as held.
    pub fn try_write(&self) -> Option<WriteGuard<'_, T>> {
        self.try_take_write().then(|| WriteGuard { sem: self, recorded: order::sleeping_acquired(self.level) })
    }

    /// Debug builds panic if a lock of its level or above is held.
    pub fn read(&self) -> ReadGuard<'_, T> {
        order::sleeping_check(self.level);
        if !self.try_take_read() {
            self.waiters.wait_until(|| self.try_take_read());
        }
        ReadGuard { sem: self, recorded: order::sleeping_acquired(self.level) }
    }

    /// Debug builds panic if a lock of its level or above is held.
    pub fn write(&self) -> WriteGuard<'_, T> {
        order::sleeping_check(self.level);
        if !self.try_take_write() {
            self.writers_waiting.fetch_add(1, Ordering::AcqRel);
            self.waiters.wait_until(|| self.try_take_write());
            // Readers held back for us may go once we are done; wake them then.
            self.writers_waiting.fetch_sub(1, Ordering::AcqRel);
        }
        WriteGuard { sem: self, recorded: order::sleeping_acquired(self.level) }
    }

    fn release(&self) {
        self.waiters.wake_all();
    }
}

pub struct ReadGuard<'a, T> {
    sem: &'a RwSem<T>,
    /// The order check recorded the level as held by this thread.
    recorded: bool,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read guard excludes writers.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        order::sleeping_released(self.sem.level, self.recorded);
        if self.sem.state.fetch_sub(1, Ordering::Release) == 1 {
            self.sem.release();
        }
    }
}

pub struct WriteGuard<'a, T> {
    sem: &'a RwSem<T>,
    /// The order check recorded the level as held by this thread.
    recorded: bool,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write guard is exclusive.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above.
        unsafe { &mut *self.sem.data.get() }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        order::sleeping_released(self.sem.level, self.recorded);
        self.sem.state.store(0, Ordering::Release);
        self.sem.release();
    }
}
