//! Timed wake-ups: sleeping threads with a deadline, checked on every tick.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::sched;
use super::thread::Thread;
use crate::sync::{Level, SpinLock};

/// (deadline, sequence) -> thread; the sequence keeps equal deadlines apart.
static SLEEPERS: SpinLock<BTreeMap<(u64, u64), Arc<Thread>>> = SpinLock::new(Level::TimerSleepers, BTreeMap::new());
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A pending timed wake-up, to cancel when the wait ends early.
#[must_use = "cancel the wake-up when the wait ends, or the thread stays referenced until the deadline"]
pub struct TimerKey((u64, u64));

/// Wakes `thread` at `deadline_ns` if it is still blocked then.
pub fn wake_at(deadline_ns: u64, thread: Arc<Thread>) -> TimerKey {
    let key = (deadline_ns, SEQUENCE.fetch_add(1, Ordering::Relaxed));
    SLEEPERS.lock().insert(key, thread);
    TimerKey(key)
}

/// Drops a wake-up that is no longer needed (it may have fired already).
pub fn cancel(key: TimerKey) {
    SLEEPERS.lock().remove(&key.0);
}

/// How many pending wake-ups hold `thread` (diagnostics of a late teardown).
pub fn references_to(thread: &Arc<Thread>) -> usize {
    SLEEPERS.lock().values().filter(|t| Arc::ptr_eq(t, thread)).count()
}

/// Called from the tick: wakes every thread whose deadline has passed.
pub fn expire(now_ns: u64) {
    let due: Vec<Arc<Thread>> = {
        let mut sleepers = SLEEPERS.lock();
        let mut due = Vec::new();
        while let Some(entry) = sleepers.first_entry() {
            if entry.key().0 > now_ns {
                break;
            }
            due.push(entry.remove());
        }
        due
    };
    for thread in &due {
        thread.timed_out.store(true, Ordering::Release);
        sched::wake(thread);
    }
}

/// Sleeps for at least `ns` nanoseconds.
pub fn sleep_ns(ns: u64) {
    let deadline = crate::arch::time::now_ns().saturating_add(ns);
    let queue = super::wait::WaitQueue::new();
    queue.wait_until_deadline(deadline, || false);
}
