//! Wait queues: block the running thread until a condition holds.
//!
//! `wait_until(cond)` checks `cond` and, if false, marks the thread
//! `Blocked` and queues it, all under the queue's lock; a waker changes the
//! state `cond` looks at *before* calling `wake_*`, which takes the same lock.
//! So a wake-up between the check and the sleep cannot be lost.

use alloc::collections::VecDeque;
use alloc::sync::Arc;

use super::sched::{self, current};
use super::thread::Thread;
use crate::sync::SpinLock;

pub struct WaitQueue {
    waiters: SpinLock<VecDeque<Arc<Thread>>>,
}

impl WaitQueue {
    pub const fn new() -> Self {
        WaitQueue { waiters: SpinLock::new(VecDeque::new()) }
    }

    /// Sleeps until `cond()` returns true. `cond` runs with the queue's
    /// spinlock held: it must not sleep (it may take leaf spinlocks).
    pub fn wait_until(&self, mut cond: impl FnMut() -> bool) {
        loop {
            let thread = current();
            {
                let mut waiters = self.waiters.lock();
                if cond() {
                    return;
                }
                sched::prepare_to_block(&thread);
                waiters.push_back(thread);
            }
            sched::schedule();
        }
    }

    /// Like `wait_until`, but gives up at `deadline_ns` (monotonic clock).
    /// Returns whether `cond` became true.
    pub fn wait_until_deadline(&self, deadline_ns: u64, mut cond: impl FnMut() -> bool) -> bool {
        loop {
            let thread = current();
            {
                let mut waiters = self.waiters.lock();
                if cond() {
                    return true;
                }
                if crate::arch::time::now_ns() >= deadline_ns {
                    waiters.retain(|t| !Arc::ptr_eq(t, &thread));
                    return false;
                }
                sched::prepare_to_block(&thread);
                waiters.push_back(thread.clone());
            }
            let key = super::timer::wake_at(deadline_ns, thread);
            sched::schedule();
            super::timer::cancel(key);
        }
    }

    /// Wakes every waiter (each re-checks its condition).
    pub fn wake_all(&self) {
        let woken: VecDeque<Arc<Thread>> = core::mem::take(&mut *self.waiters.lock());
        for thread in &woken {
            sched::wake(thread);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.waiters.lock().is_empty()
    }
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}
