//! A spinlock that keeps interrupts off while it is held.
//!
//! Interrupt handlers take some of the same locks as ordinary code (the
//! console, the heap); with interrupts enabled, a handler on the CPU that
//! already holds the lock would spin forever. Saving and restoring the
//! interrupt flag makes every `SpinLock` safe to take from any context.

use core::ops::{Deref, DerefMut};

use crate::arch::{self, InterruptState};

pub struct SpinLock<T> {
    inner: spin::Mutex<T>,
}

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> Self {
        SpinLock { inner: spin::Mutex::new(value) }
    }

    /// Disables interrupts on this CPU, then spins until the lock is ours.
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        let saved = arch::disable_interrupts();
        SpinLockGuard { guard: Some(self.inner.lock()), saved }
    }

    /// Takes the lock only if it is free right now.
    pub fn try_lock(&self) -> Option<SpinLockGuard<'_, T>> {
        let saved = arch::disable_interrupts();
        match self.inner.try_lock() {
            Some(guard) => Some(SpinLockGuard { guard: Some(guard), saved }),
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

impl<T: Default> Default for SpinLock<T> {
    fn default() -> Self {
        SpinLock::new(T::default())
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
        arch::restore_interrupts(self.saved);
    }
}
