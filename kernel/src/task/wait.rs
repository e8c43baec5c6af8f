//! Wait queues: block the running thread until a condition holds.
//!
//! A waiter marks itself `Blocked`, then checks its condition and queues
//! itself, all under the queue's lock; a waker changes the state the
//! condition looks at *before* calling `wake_*`, which takes the same lock.
//! So a wake-up between the check and the sleep cannot be lost. Waits are
//! uninterruptible (`wait_until`, `wait_until_deadline`: sleeping locks,
//! kernel sleeps) or interruptible (`wait_interruptible`: they end when the
//! thread's process goes down).

use alloc::collections::VecDeque;
use alloc::sync::Arc;

use super::sched::{self, current};
use super::thread::Thread;
use crate::sync::{Level, SpinLock};

/// Why a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The condition holds.
    Ready,
    /// The deadline passed first.
    TimedOut,
    /// The thread was interrupted first (`sched::interrupt`).
    Interrupted,
}

pub struct WaitQueue {
    waiters: SpinLock<VecDeque<Arc<Thread>>>,
}

impl WaitQueue {
    pub const fn new() -> Self {
        WaitQueue { waiters: SpinLock::new(Level::WaitQueue, VecDeque::new()) }
    }

    /// Sleeps until `cond()` returns true, however long that takes (sleeping
    /// locks). `cond` runs with the queue's spinlock held: it must not sleep
    /// (it may take leaf spinlocks).
    pub fn wait_until(&self, cond: impl FnMut() -> bool) {
        let woke = self.wait(None, false, cond);
        debug_assert_eq!(woke, Wake::Ready);
    }

    /// Sleeps until `cond()` holds, `deadline_ns` (monotonic clock) passes,
    /// or the thread is interrupted (its process is going down), whichever
    /// comes first; says which. For waits a user program asked for (futex,
    /// nanosleep): they must not keep a dying process alive.
    pub fn wait_interruptible(&self, deadline_ns: Option<u64>, cond: impl FnMut() -> bool) -> Wake {
        self.wait(deadline_ns, true, cond)
    }

    /// Like `wait_until`, but gives up at `deadline_ns` (monotonic clock).
    /// Returns whether `cond` became true.
    pub fn wait_until_deadline(&self, deadline_ns: u64, cond: impl FnMut() -> bool) -> bool {
        self.wait(Some(deadline_ns), false, cond) == Wake::Ready
    }

    /// The one wait loop. Its order is what makes every wake-up count:
    /// - the timer is armed before the thread can be seen blocked: preempted
    ///   between marking itself blocked and calling `schedule`, a thread is
    ///   switched out as a sleeper at once, and only a wake-up already in
    ///   place can end that sleep (a timer armed after it once never was);
    /// - the thread marks itself blocked, under the queue's lock, before it
    ///   checks: a waker that changes the condition afterwards takes the same
    ///   lock, finds it queued and blocked (or on its CPU: then `schedule`
    ///   sees it runnable), and an interrupt or timer finds it blocked.
    fn wait(&self, deadline_ns: Option<u64>, interruptible: bool, mut cond: impl FnMut() -> bool) -> Wake {
        loop {
            let thread = current();
            let timer = deadline_ns.map(|deadline| super::timer::wake_at(deadline, thread.clone()));
            let outcome = {
                let mut waiters = self.waiters.lock();
                sched::prepare_to_block(&thread, interruptible);
                let outcome = if cond() {
                    Some(Wake::Ready)
                } else if interruptible && thread.is_interrupted() {
                    Some(Wake::Interrupted)
                } else if deadline_ns.is_some_and(|deadline| crate::arch::time::now_ns() >= deadline) {
                    Some(Wake::TimedOut)
                } else {
                    None
                };
                match outcome {
                    Some(_) => {
                        waiters.retain(|t| !Arc::ptr_eq(t, &thread));
                        sched::cancel_block(&thread);
                    }
                    None => waiters.push_back(thread.clone()),
                }
                outcome
            };
            if outcome.is_none() {
                drop(thread);
                sched::schedule();
            }
            if let Some(timer) = timer {
                super::timer::cancel(timer);
            }
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    }

    /// Wakes every waiter (each re-checks its condition).
    pub fn wake_all(&self) {
        let woken: VecDeque<Arc<Thread>> = core::mem::take(&mut *self.waiters.lock());
        for thread in &woken {
            sched::wake(thread);
        }
    }

    /// How many times `thread` is queued here (diagnostics).
    pub fn references_to(&self, thread: &Arc<Thread>) -> usize {
        self.waiters.lock().iter().filter(|t| Arc::ptr_eq(t, thread)).count()
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

#[cfg(test)]
mod tests {
    use core::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::arch::percpu;
    use crate::arch::time::now_ns;
    use crate::task::thread::Thread;

    static QUEUE: WaitQueue = WaitQueue::new();
    static CHECKED: AtomicBool = AtomicBool::new(false);
    static INTERRUPTED: AtomicBool = AtomicBool::new(false);
    static RETURNED: AtomicBool = AtomicBool::new(false);

    /// Sleeps interruptibly; its first check of the condition holds still
    /// until the test has interrupted it, so the interrupt lands between the
    /// check and the sleep: the window where exit_group once lost its wake-up.
    extern "C" fn sleeper(_: usize) -> ! {
        let mut first = true;
        let wake = QUEUE.wait_interruptible(None, || {
            if first {
                first = false;
                CHECKED.store(true, Ordering::SeqCst);
                let give_up = now_ns() + 5_000_000_000;
                while !INTERRUPTED.load(Ordering::SeqCst) && now_ns() < give_up {
                    core::hint::spin_loop();
                }
            }
            false
        });
        RETURNED.store(wake == Wake::Interrupted, Ordering::SeqCst);
        sched::exit_current()
    }

    #[test_case]
    fn an_interrupt_between_check_and_sleep_is_not_lost() {
        if crate::arch::ipi::online().len() < 2 {
            return; // the sleeper must spin on another CPU than ours
        }
        let thread = Thread::new_kernel(sleeper, 0).expect("a kernel thread");
        {
            // Pinned, so that we stay off the CPU the sleeper is placed on.
            let _pinned = percpu::PreemptGuard::new();
            let me = percpu::cpu_id();
            let other = crate::arch::ipi::online().iter().find(|&c| c != me).expect("a second CPU");
            thread.prefer_cpu(other);
            sched::enqueue(thread.clone());
            while !CHECKED.load(Ordering::SeqCst) {
                core::hint::spin_loop();
            }
            sched::interrupt(&thread);
            INTERRUPTED.store(true, Ordering::SeqCst);
        }
        let give_up = now_ns() + 10_000_000_000;
        while !RETURNED.load(Ordering::SeqCst) && now_ns() < give_up {
            crate::task::timer::sleep_ns(1_000_000);
        }
        assert!(RETURNED.load(Ordering::SeqCst), "the interrupted sleeper went to sleep and never woke");
    }

    static SLEEPS_DONE: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);
    const SLEEPERS: usize = 8;
    const SLEEPS: usize = 200;

    extern "C" fn short_sleeper(_: usize) -> ! {
        for _ in 0..SLEEPS {
            crate::task::timer::sleep_ns(200_000);
        }
        SLEEPS_DONE.fetch_add(1, Ordering::SeqCst);
        sched::exit_current()
    }

    /// Timed sleeps under a fast tick: a preemption between "I am blocked"
    /// and arming the timer used to leave the sleeper asleep for good.
    #[test_case]
    fn timed_sleeps_always_wake_under_fast_preemption() {
        crate::arch::time::set_tick_hz(2000);
        for _ in 0..SLEEPERS {
            sched::enqueue(Thread::new_kernel(short_sleeper, 0).expect("a kernel thread"));
        }
        let give_up = now_ns() + 60_000_000_000;
        while SLEEPS_DONE.load(Ordering::SeqCst) < SLEEPERS && now_ns() < give_up {
            crate::task::timer::sleep_ns(10_000_000);
        }
        crate::arch::time::set_tick_hz(crate::arch::time::HZ);
        let done = SLEEPS_DONE.load(Ordering::SeqCst);
        assert_eq!(done, SLEEPERS, "{} of {SLEEPERS} sleepers never woke from a timed sleep", SLEEPERS - done);
    }

    extern "C" fn exit_at_once(_: usize) -> ! {
        sched::exit_current()
    }

    /// Exiting under a fast tick: nothing of an exited thread may stay
    /// referenced (a preemption inside `exit_current` once left one).
    #[test_case]
    fn exited_threads_are_freed_under_fast_preemption() {
        const THREADS: usize = 64;
        crate::arch::time::set_tick_hz(2000);
        let mut weak = alloc::vec::Vec::new();
        for _ in 0..THREADS {
            let thread = Thread::new_kernel(exit_at_once, 0).expect("a kernel thread");
            weak.push(Arc::downgrade(&thread));
            sched::enqueue(thread);
        }
        let give_up = now_ns() + 20_000_000_000;
        while weak.iter().any(|w| w.strong_count() > 0) && now_ns() < give_up {
            crate::task::timer::sleep_ns(5_000_000);
        }
        crate::arch::time::set_tick_hz(crate::arch::time::HZ);
        let alive = weak.iter().filter(|w| w.strong_count() > 0).count();
        assert_eq!(alive, 0, "{alive} of {THREADS} exited threads are still referenced");
    }
}
