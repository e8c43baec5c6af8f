//! A futex-based mutex (the three-state design from Drepper's "Futexes Are
//! Tricky"): uncontended lock and unlock are one atomic each; only contended
//! ones enter the kernel.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU32, Ordering};

use crate::sys::{futex_wait, futex_wake};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and someone may be sleeping in FUTEX_WAIT: unlock must wake.
const CONTENDED: u32 = 2;

pub struct Mutex<T> {
    state: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: the lock serialises all access to data, so sharing the Mutex only
// requires that T may be sent between threads.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    pub const fn new(value: T) -> Mutex<T> {
        Mutex { state: AtomicU32::new(UNLOCKED), data: UnsafeCell::new(value) }
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        if self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_err() {
            // Announce a sleeper before sleeping, so the holder's unlock wakes us.
            while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
                let _ = futex_wait(&self.state, CONTENDED, None);
            }
        }
        MutexGuard { mutex: self }
    }
}

pub struct MutexGuard<'a, T> {
    mutex: &'a Mutex<T>,
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: holding the guard means holding the lock.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: holding the guard means holding the lock, exclusively.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        if self.mutex.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            let _ = futex_wake(&self.mutex.state, 1);
        }
    }
}
