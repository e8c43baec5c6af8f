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
use crate::sync::{Level, Mutex};

struct Waiter {
    woken: AtomicBool,
    queue: WaitQueue,
}

type Key = (u64, u64);

static FUTEXES: Mutex<BTreeMap<Key, VecDeque<Arc<Waiter>>>> = Mutex::new(Level::Futex, BTreeMap::new());

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

/// The owner's TID in a robust futex word.
pub const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
/// The owner died holding it (the next locker gets EOWNERDEAD).
pub const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
/// Someone sleeps on it: the unlocker must FUTEX_WAKE.
pub const FUTEX_WAITERS: u32 = 0x8000_0000;
/// Linux's ROBUST_LIST_LIMIT: a long or circular list ends here.
pub const ROBUST_LIST_LIMIT: usize = 2048;

/// What the robust-list walk needs of user memory and the futex table, so
/// that it can be tested on a fake list.
pub trait RobustMemory {
    fn read_u64(&mut self, addr: u64) -> Result<u64, Efault>;
    fn read_u32(&mut self, addr: u64) -> Result<u32, Efault>;
    /// Sets the word to `new` if it holds `expected`; returns what it held.
    fn cmpxchg_u32(&mut self, addr: u64, expected: u32, new: u32) -> Result<u32, Efault>;
    /// Wakes one waiter on `addr`.
    fn wake_one(&mut self, addr: u64);
}

/// The running process's memory and futexes.
pub struct UserRobustMemory {
    pub mm_id: u64,
}

impl RobustMemory for UserRobustMemory {
    fn read_u64(&mut self, addr: u64) -> Result<u64, Efault> {
        read_user::<u64>(addr)
    }
    fn read_u32(&mut self, addr: u64) -> Result<u32, Efault> {
        read_user::<u32>(addr)
    }
    fn cmpxchg_u32(&mut self, addr: u64, expected: u32, new: u32) -> Result<u32, Efault> {
        crate::mm::uaccess::cmpxchg_user_u32(addr, expected, new)
    }
    fn wake_one(&mut self, addr: u64) {
        wake(self.mm_id, addr, 1);
    }
}

/// Linux's handle_futex_death for one non-PI robust futex word at `addr`
/// held by the exiting thread `tid`: marks it FUTEX_OWNER_DIED (keeping
/// FUTEX_WAITERS) and wakes one waiter. `pending` is the list_op_pending
/// entry, whose lock or unlock may have been cut short. Err ends the walk.
fn futex_death(mem: &mut impl RobustMemory, addr: u64, tid: u32, pi: bool, pending: bool) -> Result<(), Efault> {
    if !addr.is_multiple_of(4) {
        return Err(Efault);
    }
    loop {
        let value = mem.read_u32(addr)?;
        // An unlock that cleared the word but died before waking: wake for it.
        if pending && !pi && value == 0 {
            mem.wake_one(addr);
            return Ok(());
        }
        if value & FUTEX_TID_MASK != tid {
            return Ok(());
        }
        let new = (value & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
        // The word changes under us when a waiter sets FUTEX_WAITERS: retry.
        if mem.cmpxchg_u32(addr, value, new)? != value {
            continue;
        }
        // PI futexes are woken by their PI state, which we do not have.
        if !pi && value & FUTEX_WAITERS != 0 {
            mem.wake_one(addr);
        }
        return Ok(());
    }
}

/// A list pointer: the entry, and bit 0 (the futex is PI).
fn robust_entry(mem: &mut impl RobustMemory, at: u64) -> Result<(u64, bool), Efault> {
    let raw = mem.read_u64(at)?;
    Ok((raw & !1, raw & 1 != 0))
}

/// Linux's exit_robust_list: walks the `struct robust_list_head` at `head`
/// (next, futex_offset, list_op_pending) of the exiting thread `tid`. A
/// fault ends the walk silently, and so does ROBUST_LIST_LIMIT entries.
pub fn exit_robust_list(mem: &mut impl RobustMemory, head: u64, tid: u32) {
    let Ok((mut entry, mut pi)) = robust_entry(mem, head) else { return };
    let Ok(offset) = mem.read_u64(head.wrapping_add(8)) else { return };
    let Ok((pending, pending_pi)) = robust_entry(mem, head.wrapping_add(16)) else { return };
    let mut limit = ROBUST_LIST_LIMIT;
    while entry != head {
        // The next entry first: the death handling may free this one.
        let next = robust_entry(mem, entry);
        // A pending lock may already be on the list: handle it once.
        if entry != pending && futex_death(mem, entry.wrapping_add(offset), tid, pi, false).is_err() {
            return;
        }
        let Ok((next_entry, next_pi)) = next else { return };
        entry = next_entry;
        pi = next_pi;
        limit -= 1;
        if limit == 0 {
            break;
        }
    }
    if pending != 0 {
        let _ = futex_death(mem, pending.wrapping_add(offset), tid, pending_pi, true);
    }
}

#[cfg(test)]
mod tests {
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;

    use super::*;

    /// A fake user memory of 8-byte words (futex words in their low half).
    #[derive(Default)]
    struct Fake {
        words: BTreeMap<u64, u64>,
        woken: Vec<u64>,
        reads: usize,
    }

    impl RobustMemory for Fake {
        fn read_u64(&mut self, addr: u64) -> Result<u64, Efault> {
            self.reads += 1;
            self.words.get(&addr).copied().ok_or(Efault)
        }
        fn read_u32(&mut self, addr: u64) -> Result<u32, Efault> {
            self.words.get(&addr).map(|&w| w as u32).ok_or(Efault)
        }
        fn cmpxchg_u32(&mut self, addr: u64, expected: u32, new: u32) -> Result<u32, Efault> {
            let word = self.words.get_mut(&addr).ok_or(Efault)?;
            let old = *word as u32;
            if old == expected {
                *word = new as u64;
            }
            Ok(old)
        }
        fn wake_one(&mut self, addr: u64) {
            self.woken.push(addr);
        }
    }

    const HEAD: u64 = 0x1000;
    /// Where an entry's futex word is, from its list node.
    const OFFSET: u64 = 0x10;

    /// A list of `owners.len()` entries at 0x2000, 0x2100, ...; entry i's word holds owners[i].
    fn list(owners: &[u32], pending: u64) -> Fake {
        let mut fake = Fake::default();
        let entries: Vec<u64> = (0..owners.len() as u64).map(|i| 0x2000 + i * 0x100).collect();
        fake.words.insert(HEAD, entries.first().copied().unwrap_or(HEAD));
        fake.words.insert(HEAD + 8, OFFSET);
        fake.words.insert(HEAD + 16, pending);
        for (i, &entry) in entries.iter().enumerate() {
            fake.words.insert(entry, entries.get(i + 1).copied().unwrap_or(HEAD));
            fake.words.insert(entry + OFFSET, owners[i] as u64);
        }
        fake
    }

    #[test_case]
    fn robust_walk_marks_only_the_exiting_threads_futexes() {
        let mut fake = list(&[7, 8, 7 | FUTEX_WAITERS], 0);
        exit_robust_list(&mut fake, HEAD, 7);
        assert_eq!(fake.words[&(0x2000 + OFFSET)], FUTEX_OWNER_DIED as u64);
        assert_eq!(fake.words[&(0x2100 + OFFSET)], 8, "another thread's lock is left alone");
        assert_eq!(fake.words[&(0x2200 + OFFSET)], (FUTEX_OWNER_DIED | FUTEX_WAITERS) as u64);
        assert_eq!(fake.woken, [0x2200 + OFFSET], "only a futex with waiters is woken");
    }

    #[test_case]
    fn robust_walk_handles_the_pending_op() {
        // Pending and on the list: handled once. A cleared pending word is woken.
        let mut fake = list(&[7 | FUTEX_WAITERS], 0x2000);
        exit_robust_list(&mut fake, HEAD, 7);
        assert_eq!(fake.woken, [0x2000 + OFFSET]);
        let mut fake = list(&[], 0x3000);
        fake.words.insert(0x3000 + OFFSET, 0);
        exit_robust_list(&mut fake, HEAD, 7);
        assert_eq!(fake.woken, [0x3000 + OFFSET], "an unlock cut short before its wake is completed");
    }

    #[test_case]
    fn robust_walk_stops_at_a_fault_and_at_the_limit() {
        let mut fake = list(&[7, 7], 0);
        fake.words.remove(&0x2000); // entry 0's next pointer is unreadable
        exit_robust_list(&mut fake, HEAD, 7);
        assert_eq!(fake.words[&(0x2000 + OFFSET)], FUTEX_OWNER_DIED as u64, "the entry itself is handled");
        assert_eq!(fake.words[&(0x2100 + OFFSET)], 7, "the walk ends at the fault");
        // A circular list: an entry that points to itself.
        let mut fake = list(&[9], 0);
        fake.words.insert(0x2000, 0x2000);
        exit_robust_list(&mut fake, HEAD, 7);
        assert_eq!(fake.reads, 3 + ROBUST_LIST_LIMIT, "the head's three words, then one per entry up to the limit");
    }
}
