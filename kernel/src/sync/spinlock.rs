//! A spinlock that keeps interrupts off while it is held.
//!
//! Interrupt handlers take some of the same locks as ordinary code (the
//! console, the heap); with interrupts enabled, a handler on the CPU that
//! already holds the lock would spin forever. Saving and restoring the
//! interrupt flag makes every `SpinLock` safe to take from any context.
//!
//! Each lock has its place in the lock order (`order::Level`), checked in
//! debug builds when it is taken.

use core::ops::{Deref, DerefMut};

use super::order::{self, Level};
use crate::arch::{self, InterruptState};

pub struct SpinLock<T> {
    inner: spin::Mutex<T>,
    level: Level,
}

impl<T> SpinLock<T> {
    /// A lock at `level` of the lock order (a spinning level).
    pub const fn new(level: Level, value: T) -> Self {
        assert!(!level.is_sleeping(), "a spinlock at a sleeping lock's level");
        SpinLock { inner: spin::Mutex::new(value), level }
    }

    /// Disables interrupts on this CPU, then spins until the lock is ours.
    /// Debug builds panic if a lock of its level or above is held here.
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        let saved = arch::disable_interrupts();
        let recorded = order::spin_acquire(self.level, false);
        SpinLockGuard { guard: Some(self.inner.lock()), saved, level: self.level, recorded }
    }

    /// Takes the lock only if it is free right now. Not order-checked (it
    /// cannot wait, so it closes no deadlock cycle); see `order`.
    pub fn try_lock(&self) -> Option<SpinLockGuard<'_, T>> {
        let saved = arch::disable_interrupts();
        match self.inner.try_lock() {
            Some(guard) => {
                let recorded = order::spin_acquire(self.level, true);
                Some(SpinLockGuard { guard: Some(guard), saved, level: self.level, recorded })
            }
            None => {
                arch::restore_interrupts(saved);
                None
            }
        }
    }

    /// The value, without locking: `&mut self` proves nobody else can reach it.
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }
}

impl<T> core::fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(if self.is_locked() { "SpinLock(locked)" } else { "SpinLock" })
    }
}

pub struct SpinLockGuard<'a, T> {
    // An `Option` only so that `drop` can release the lock before restoring
    // the interrupt flag; it is `Some` for the guard's whole life.
    guard: Option<spin::MutexGuard<'a, T>>,
    saved: InterruptState,
    level: Level,
    /// The order check recorded the level as held on this CPU.
    recorded: bool,
}

impl<T> Deref for SpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.guard.as_ref().expect("guard is live")
    }
}

impl<T> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_mut().expect("guard is live")
    }
}

impl<T> Drop for SpinLockGuard<'_, T> {
    fn drop(&mut self) {
        self.guard = None;
        order::spin_release(self.level, self.recorded);
        arch::restore_interrupts(self.saved);
    }
}
