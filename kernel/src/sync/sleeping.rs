//! Sleeping locks: a mutex and a reader/writer semaphore whose waiters block
//! (through `task::wait`) instead of spinning. They may be held across page
//! faults and other sleeps; they must not be taken in interrupt handlers.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::task::wait::WaitQueue;

pub struct Mutex<T> {
    locked: AtomicBool,
    waiters: WaitQueue,
    data: UnsafeCell<T>,
}

// SAFETY: the data is reached only through a guard, and `locked` admits one guard at a time.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    pub const fn new(value: T) -> Self {
        Mutex { locked: AtomicBool::new(false), waiters: WaitQueue::new(), data: UnsafeCell::new(value) }
    }

    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| MutexGuard { mutex: self })
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        if let Some(guard) = self.try_lock() {
            return guard;
        }
        let mut guard = None;
        self.waiters.wait_until(|| {
            guard = self.try_lock();
            guard.is_some()
        });
        guard.expect("wait_until returns once the lock was taken")
    }
}

pub struct MutexGuard<'a, T> {
    mutex: &'a Mutex<T>,
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
    data: UnsafeCell<T>,
}

// SAFETY: shared access only through read guards (many) or a write guard
// (one, excluding readers), enforced by `state`.
unsafe impl<T: Send + Sync> Sync for RwSem<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for RwSem<T> {}

impl<T> RwSem<T> {
    pub const fn new(value: T) -> Self {
        RwSem {
            state: AtomicUsize::new(0),
            writers_waiting: AtomicUsize::new(0),
            waiters: WaitQueue::new(),
            data: UnsafeCell::new(value),
        }
    }

    pub fn try_read(&self) -> Option<ReadGuard<'_, T>> {
        if self.writers_waiting.load(Ordering::Acquire) != 0 {
            return None;
        }
        self.try_read_ignoring_writers()
    }

    fn try_read_ignoring_writers(&self) -> Option<ReadGuard<'_, T>> {
        self.state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |s| (s & WRITER == 0).then_some(s + 1))
            .ok()
            .map(|_| ReadGuard { sem: self })
    }

    pub fn try_write(&self) -> Option<WriteGuard<'_, T>> {
        self.state
            .compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| WriteGuard { sem: self })
    }

    pub fn read(&self) -> ReadGuard<'_, T> {
        if let Some(guard) = self.try_read() {
            return guard;
        }
        let mut guard = None;
        self.waiters.wait_until(|| {
            guard = self.try_read();
            guard.is_some()
        });
        guard.expect("taken")
    }

    pub fn write(&self) -> WriteGuard<'_, T> {
        if let Some(guard) = self.try_write() {
            return guard;
        }
        self.writers_waiting.fetch_add(1, Ordering::AcqRel);
        let mut guard = None;
        self.waiters.wait_until(|| {
            guard = self.try_write();
            guard.is_some()
        });
        self.writers_waiting.fetch_sub(1, Ordering::AcqRel);
        // Readers held back for us may go once we are done; wake them then.
        guard.expect("taken")
    }

    fn release(&self) {
        self.waiters.wake_all();
    }
}

pub struct ReadGuard<'a, T> {
    sem: &'a RwSem<T>,
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
        if self.sem.state.fetch_sub(1, Ordering::Release) == 1 {
            self.sem.release();
        }
    }
}

pub struct WriteGuard<'a, T> {
    sem: &'a RwSem<T>,
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
        self.sem.state.store(0, Ordering::Release);
        self.sem.release();
    }
}
