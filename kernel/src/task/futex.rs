//! Futexes: sleep until a user word changes, wake sleepers on a word.
//!
//! Waiters are keyed by (address space, user address). The table is behind
//! a sleeping mutex, so reading the user word under it may fault the page in.
//! A waiter checks the word and queues itself under the table lock, and a
//! waker takes the same lock, so a wake between the check and the sleep is
//! not lost.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use super::wait::{WaitQueue, Wake};
use crate::mm::uaccess::{read_user, Efault};
use crate::sync::Mutex;

struct Waiter {
    woken: AtomicBool,
    queue: WaitQueue,
}

type Key = (u64, u64);

static FUTEXES: Mutex<BTreeMap<Key, VecDeque<Arc<Waiter>>>> = Mutex::new(BTreeMap::new());

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FutexError {
    /// The word did not hold the expected value (EAGAIN).
    WouldBlock,
    /// The deadline passed (ETIMEDOUT).
    TimedOut,
    /// The process is exiting (EINTR).
    Interrupted,
    Fault,
}

impl From<Efault> for FutexError {
    fn from(_: Efault) -> Self {
        FutexError::Fault
    }
}

/// FUTEX_WAIT: sleeps while `*addr == expected`, until woken or `deadline_ns`.
pub fn wait(mm_id: u64, addr: u64, expected: u32, deadline_ns: Option<u64>) -> Result<(), FutexError> {
    let key = (mm_id, addr);
    let waiter = Arc::new(Waiter { woken: AtomicBool::new(false), queue: WaitQueue::new() });
    {
        let mut table = FUTEXES.lock();
        if read_user::<u32>(addr)? != expected {
            return Err(FutexError::WouldBlock);
        }
        table.entry(key).or_default().push_back(waiter.clone());
    }
    let wake = waiter.queue.wait_interruptible(deadline_ns, || waiter.woken.load(Ordering::Acquire));
    if wake == Wake::Ready || waiter.woken.load(Ordering::Acquire) {
        return Ok(());
    }
    // Not woken by FUTEX_WAKE: take ourselves off the list, unless a waker
    // got to us in the meantime (then the wake counts).
    let mut table = FUTEXES.lock();
    if waiter.woken.load(Ordering::Acquire) {
        return Ok(());
    }
    if let Some(list) = table.get_mut(&key) {
        list.retain(|w| !Arc::ptr_eq(w, &waiter));
        if list.is_empty() {
            table.remove(&key);
        }
    }
    match wake {
        Wake::Interrupted => Err(FutexError::Interrupted),
        _ => Err(FutexError::TimedOut),
    }
}

/// How many futex wait queues hold `thread` (diagnostics of a late teardown;
/// gives up rather than wait for the table).
pub fn references_to(thread: &Arc<super::thread::Thread>) -> usize {
    let Some(table) = FUTEXES.try_lock() else { return 0 };
    table.values().flatten().map(|waiter| waiter.queue.references_to(thread)).sum()
}

/// FUTEX_WAKE: wakes up to `count` waiters on `addr`; returns how many.
pub fn wake(mm_id: u64, addr: u64, count: usize) -> usize {
    let mut table = FUTEXES.lock();
    let key = (mm_id, addr);
    let Some(list) = table.get_mut(&key) else { return 0 };
    let mut woken = 0;
    while woken < count {
        let Some(waiter) = list.pop_front() else { break };
        waiter.woken.store(true, Ordering::Release);
        waiter.queue.wake_all();
        woken += 1;
    }
    if list.is_empty() {
        table.remove(&key);
    }
    woken
}
