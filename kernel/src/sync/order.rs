//! The lock order (`sync/mod.rs`), checked in debug builds.
//!
//! Every lock is built with its [`Level`]; taking a lock whose level is not
//! above every level already held panics with both locks' names, the first
//! time the wrong order happens (not only when it deadlocks).
//!
//! What is held is tracked in two places:
//! - spinlocks (and the scheduler's bare lock) per CPU, in
//!   `PerCpu::locks_held`: they keep interrupts off, so they are taken and
//!   released on one CPU, and no thread switches away holding one (the
//!   scheduler lock is taken by the thread switching away and released by
//!   the one switched to, on the same CPU, which this handles too);
//! - sleeping locks (`Mutex`, `RwSem`, VMA read locks) per thread, in
//!   `Thread::locks_held` (and `vma_locks_held`): they are held across
//!   sleeps and migrations.
//!
//! Every sleeping level is below every spinning one ([`Level::is_sleeping`],
//! checked at compile time), so a spinlock is checked against its CPU's set
//! alone, and a sleeping lock against its thread's set and, when interrupts
//! are off, its CPU's (a sleeping lock under a spinlock is the wrong order).
//! Interrupt handlers nest: they run only with interrupts on, so with no
//! spinlock held on their CPU, and the sleeping levels of the thread they
//! interrupted are all below theirs. NMI handlers use only `try_lock`.
//!
//! `try_lock` never waits, so it cannot close a deadlock cycle: it is not
//! checked, at any level. What it takes still counts as held (locks taken
//! under it are checked against it), unless its level is held already (one
//! bit per level; the outer holder's release clears it).
//!
//! Two locks of one level are never nested (the second is not above the
//! first): the kernel has no such nesting, so none needs an ordering rule of
//! its own (Linux's lock subclasses).

use core::fmt;
use core::sync::atomic::Ordering;

use crate::arch::{self, percpu};

/// Where a lock sits in the order, outermost first: a lock may be taken only
/// while every lock held is of a lower level. `sync/mod.rs` explains each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// An open file's offset (`fs::OpenFile::offset`, sleeping).
    FileOffset,
    /// The futex table (`task::futex`, sleeping; faults user pages in).
    Futex,
    /// An address space's `mmap_lock` (sleeping rwsem).
    MmapLock,
    /// Per-VMA locks (`mm::vma::lock`; readers only try).
    VmaLock,
    /// Statics of in-kernel tests that hold their state across a test.
    TestState,
    /// The process list (`task::process::PROCESSES`).
    ProcessList,
    /// A process's exit status.
    ProcessStatus,
    /// A process's thread lists.
    ProcessThreads,
    /// A process's resource limits.
    ProcessLimits,
    /// A process's signal actions.
    SignalActions,
    /// A thread's alternate signal stack.
    AltStack,
    /// A thread's restart block (`ThreadSignals::restart`, restart_syscall).
    SignalRestart,
    /// A process's fd table (`fs::FdTable`).
    FdTable,
    /// A shared mapping's page map (`mm::vma::SharedMemory`).
    SharedPages,
    /// The timer's sleeper list (`task::timer`).
    TimerSleepers,
    /// Wait-queue spinlocks (`task::wait`).
    WaitQueue,
    /// The scheduler lock (`task::sched::SCHED_LOCK`).
    Scheduler,
    /// A CPU's slot for the thread it switched away from (`sched::PREVIOUS`).
    PreviousThread,
    /// Kernel stack slots (`mm::kstack`).
    KernelStacks,
    /// RCU callback lists (one per CPU).
    RcuCallbacks,
    /// A CPU's cross-CPU call queue (`arch::ipi`).
    CallQueue,
    /// Result slots of a call run on every CPU (`ipi::on_each_cpu`).
    CallResults,
    /// The lockup detector's per-CPU watch and saved state.
    Watchdog,
    /// The kernel heap (`mm::heap`).
    Heap,
    /// A CPU's frame cache and zero pool (`mm::frame`); taken before the
    /// global bitmap when a batch moves between them.
    FrameCache,
    /// The frame allocator (`mm::frame`).
    Frames,
    /// The console (serial port): taken anywhere, takes nothing.
    Console,
}

impl Level {
    /// The last level of a sleeping lock; every later one spins.
    const LAST_SLEEPING: Level = Level::VmaLock;

    /// Whether locks of this level sleep (taken only where sleeping is allowed).
    pub const fn is_sleeping(self) -> bool {
        self as u8 <= Level::LAST_SLEEPING as u8
    }

    const fn bit(self) -> u32 {
        1 << self as u8
    }

    /// The highest level in `held` (a set of bits), if any.
    fn highest(held: u32) -> Option<Level> {
        (held != 0).then(|| Level::ALL[(u32::BITS - 1 - held.leading_zeros()) as usize])
    }

    /// Every level, by number.
    const ALL: [Level; 27] = [
        Level::FileOffset,
        Level::Futex,
        Level::MmapLock,
        Level::VmaLock,
        Level::TestState,
        Level::ProcessList,
        Level::ProcessStatus,
        Level::ProcessThreads,
        Level::ProcessLimits,
        Level::SignalActions,
        Level::AltStack,
        Level::SignalRestart,
        Level::FdTable,
        Level::SharedPages,
        Level::TimerSleepers,
        Level::WaitQueue,
        Level::Scheduler,
        Level::PreviousThread,
        Level::KernelStacks,
        Level::RcuCallbacks,
        Level::CallQueue,
        Level::CallResults,
        Level::Watchdog,
        Level::Heap,
        Level::FrameCache,
        Level::Frames,
        Level::Console,
    ];
}

// The sets are `u32` masks, one bit per level; `ALL` lists each by number.
const _: () = assert!(Level::ALL.len() <= 32 && Level::ALL.len() == Level::Console as usize + 1);
const _: () = {
    let mut i = 0;
    while i < Level::ALL.len() {
        assert!(Level::ALL[i] as usize == i);
        i += 1;
    }
};

/// A lock taken out of order: `taking` while `held` (the highest held) was held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderViolation {
    pub taking: Level,
    pub held: Level,
}

impl fmt::Display for OrderViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lock order: taking {:?} (level {}) while holding {:?} (level {})",
            self.taking, self.taking as u8, self.held, self.held as u8
        )
    }
}

/// Whether `taking` may be taken while the levels in `held` are held: only
/// if it is above every one of them.
pub fn check(held: u32, taking: Level) -> Result<(), OrderViolation> {
    match Level::highest(held) {
        Some(top) if top >= taking => Err(OrderViolation { taking, held: top }),
        _ => Ok(()),
    }
}

#[cold]
fn violated(violation: OrderViolation) -> ! {
    // The panic path prints (the console lock): forget what this CPU holds
    // so that it is not reported again. Only pinned (interrupts off, as in
    // every spinlock's check): preemptible, we might clear another CPU's.
    if !arch::interrupts_enabled() {
        if let Some(cpu) = percpu::try_current() {
            cpu.locks_held.store(0, Ordering::Relaxed);
        }
    }
    panic!("{violation}");
}

/// A spinning lock of `level` is about to be taken on this CPU (interrupts
/// are off). `trying`: it does not wait, so the order is not checked.
/// Returns whether it recorded the level (the release must clear it).
#[inline]
pub(crate) fn spin_acquire(level: Level, trying: bool) -> bool {
    if !cfg!(debug_assertions) {
        return false;
    }
    debug_assert!(!level.is_sleeping());
    let Some(cpu) = percpu::try_current() else { return false };
    let held = cpu.locks_held.load(Ordering::Relaxed);
    if !trying {
        if let Err(violation) = check(held, level) {
            violated(violation);
        }
    }
    if held & level.bit() != 0 {
        return false;
    }
    // An NMI between the load and this RMW restores what it changed.
    cpu.locks_held.fetch_or(level.bit(), Ordering::Relaxed);
    true
}

/// A spinning lock `spin_acquire` recorded was released on this CPU.
#[inline]
pub(crate) fn spin_release(level: Level, recorded: bool) {
    if cfg!(debug_assertions) && recorded {
        if let Some(cpu) = percpu::try_current() {
            cpu.locks_held.fetch_and(!level.bit(), Ordering::Relaxed);
        }
    }
}

/// What the running thread holds (its sleeping locks), with its CPU's
/// spinlocks if interrupts are off (with them on it holds none).
fn held_here() -> u32 {
    let mut held = 0;
    if let Some(thread) = crate::task::current_thread() {
        held |= thread.locks_held.load(Ordering::Relaxed);
        if thread.vma_locks_held.load(Ordering::Relaxed) != 0 {
            held |= Level::VmaLock.bit();
        }
    }
    if !arch::interrupts_enabled() {
        if let Some(cpu) = percpu::try_current() {
            held |= cpu.locks_held.load(Ordering::Relaxed);
        }
    }
    held
}

/// A sleeping lock of `level` is about to be waited for.
#[inline]
pub(crate) fn sleeping_check(level: Level) {
    if cfg!(debug_assertions) {
        debug_assert!(level.is_sleeping());
        if let Err(violation) = check(held_here(), level) {
            violated(violation);
        }
    }
}

/// The running thread took a sleeping lock of `level`; returns whether it
/// recorded it (false: not a debug build, no thread yet, or already held).
#[inline]
pub(crate) fn sleeping_acquired(level: Level) -> bool {
    if !cfg!(debug_assertions) {
        return false;
    }
    let Some(thread) = crate::task::current_thread() else { return false };
    let held = thread.locks_held.load(Ordering::Relaxed);
    if held & level.bit() != 0 {
        return false;
    }
    // Only the thread itself changes its set, and never from an interrupt.
    thread.locks_held.store(held | level.bit(), Ordering::Relaxed);
    true
}

/// The running thread released a sleeping lock `sleeping_acquired` recorded.
#[inline]
pub(crate) fn sleeping_released(level: Level, recorded: bool) {
    if cfg!(debug_assertions) && recorded {
        if let Some(thread) = crate::task::current_thread() {
            thread.locks_held.fetch_and(!level.bit(), Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{Mutex, SpinLock};

    #[test_case]
    fn the_checker_refuses_a_lock_not_above_every_held_one() {
        let held = Level::MmapLock.bit() | Level::WaitQueue.bit();
        assert_eq!(check(held, Level::Heap), Ok(()));
        assert_eq!(check(0, Level::FileOffset), Ok(()));
        assert_eq!(
            check(held, Level::Futex),
            Err(OrderViolation { taking: Level::Futex, held: Level::WaitQueue }),
            "the futex table under a wait-queue lock"
        );
        assert_eq!(
            check(held, Level::WaitQueue),
            Err(OrderViolation { taking: Level::WaitQueue, held: Level::WaitQueue }),
            "two locks of one level nested"
        );
        // The panic message names both locks.
        let message = alloc::format!("{}", check(Level::Heap.bit(), Level::RcuCallbacks).unwrap_err());
        assert!(message.contains("Heap") && message.contains("RcuCallbacks"), "{message}");
    }

    #[test_case]
    fn spinlocks_taken_in_order_are_tracked_per_cpu_and_released() {
        let outer = SpinLock::new(Level::ProcessList, ());
        let inner = SpinLock::new(Level::FdTable, ());
        let cpu_held = || {
            let saved = arch::disable_interrupts();
            let held = percpu::try_current().expect("per-CPU data").locks_held.load(Ordering::Relaxed);
            arch::restore_interrupts(saved);
            held
        };
        let before = cpu_held();
        {
            let _outer = outer.lock();
            let _inner = inner.lock();
            let held = cpu_held();
            assert_eq!(
                held & (Level::ProcessList.bit() | Level::FdTable.bit()),
                Level::ProcessList.bit() | Level::FdTable.bit()
            );
            // What a third lock would be told, in either direction.
            assert!(check(held, Level::Heap).is_ok());
            assert_eq!(
                check(held, Level::ProcessList),
                Err(OrderViolation { taking: Level::ProcessList, held: Level::FdTable })
            );
            // try_lock of a lower level is allowed (it cannot wait).
            let lower = SpinLock::new(Level::TestState, ());
            assert!(lower.try_lock().is_some());
        }
        assert_eq!(cpu_held(), before);
    }

    #[test_case]
    fn a_sleeping_lock_is_tracked_per_thread_across_a_sleep() {
        let offset = Mutex::new(Level::FileOffset, 0u32);
        let thread = crate::task::current_thread().expect("tests run in a thread");
        let guard = offset.lock();
        assert_ne!(thread.locks_held.load(Ordering::Relaxed) & Level::FileOffset.bit(), 0);
        // Held across a switch (and maybe a migration): still this thread's.
        crate::task::sched::yield_now();
        assert_ne!(thread.locks_held.load(Ordering::Relaxed) & Level::FileOffset.bit(), 0);
        assert_eq!(
            check(held_here(), Level::FileOffset),
            Err(OrderViolation { taking: Level::FileOffset, held: Level::FileOffset })
        );
        assert!(check(held_here(), Level::MmapLock).is_ok());
        drop(guard);
        assert_eq!(thread.locks_held.load(Ordering::Relaxed) & Level::FileOffset.bit(), 0);
    }

    #[test_case]
    fn a_sleeping_lock_under_a_spinlock_is_refused() {
        let spin = SpinLock::new(Level::WaitQueue, ());
        let guard = spin.lock();
        assert_eq!(
            check(held_here(), Level::Futex),
            Err(OrderViolation { taking: Level::Futex, held: Level::WaitQueue })
        );
        drop(guard);
        assert!(check(held_here(), Level::Futex).is_ok());
    }
}
