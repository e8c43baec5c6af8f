//! Synchronisation primitives.
//!
//! Lock order, outermost first (a lock may only be taken while holding locks
//! that come before it in this list). Each lock is built with its
//! `order::Level` (the names in brackets), and debug builds panic, naming
//! both locks, when one is taken out of order (`order.rs`: spinlocks are
//! tracked per CPU, sleeping locks per thread; `try_lock` is not checked).
//!
//! 0. an open file's offset (`fs::OpenFile::offset`, sleeping mutex), held
//!    across the user copy of a read, which may fault (so it comes before
//!    2) [FileOffset]
//! 1. the futex table (`task::futex`, sleeping mutex): it reads the user
//!    word under it, which may fault the page in and so take 2 or 3
//!    [Futex]
//! 2. `mmap_lock` of an address space (`AddressSpace::mmap_lock`, sleeping
//!    rwsem, taken as `MmapReadGuard` / `MmapWriteGuard`; debug builds check
//!    that a thread holding a VMA lock never takes it) [MmapLock]
//! 3. per-VMA locks (`mm::vma::lock`): readers only try (a fault that fails
//!    falls back to 2, after dropping everything); a writer holds 2 and may
//!    sleep until a VMA's readers drain [VmaLock]
//! -  page-table entries: no lock, every update is an atomic CAS or swap
//! -  RCU read sections (`rcu::read_lock`): not a lock, but they disable
//!    preemption, so inside one no sleeping lock (0-3), no blocking, no
//!    `schedule()`, no `synchronize_rcu`/`rcu_barrier`; the spinlocks below
//!    may be taken inside, and a section may be entered holding any lock
//! 4. spinlocks, in this order: state of in-kernel tests [TestState]; the
//!    process list [ProcessList]; a process's exit status [ProcessStatus],
//!    thread lists [ProcessThreads], limits [ProcessLimits], signal actions
//!    [SignalActions]; a thread's alternate signal stack [AltStack], then its restart block [SignalRestart]; a
//!    process's fd table (`fs::FdTable`, only to look up, install, remove)
//!    [FdTable]; `SharedMemory` page maps [SharedPages]; the timer's
//!    sleepers [TimerSleepers]
//! 5. wait-queue spinlocks (`task::wait`) [WaitQueue]
//! 6. the scheduler lock (`task::sched`) [Scheduler], then `PREVIOUS` slots
//!    [PreviousThread]
//! 7. kernel stack slots (`mm::kstack`) [KernelStacks]
//! 8. RCU callback lists (`rcu`, one spinlock per CPU; `call_rcu` allocates
//!    under it) [RcuCallbacks]
//! 9. a CPU's cross-CPU call queue (`arch::ipi`; served while spinning on
//!    the scheduler lock) [CallQueue], the result slots of a call on every
//!    CPU [CallResults], the lockup detector's state [Watchdog]
//! 10. the kernel heap lock (`mm::heap`) [Heap]
//! 11. a CPU's frame cache and zero pool (`mm::frame`, one spinlock per CPU;
//!     a batch moves to or from the bitmap under it) [FrameCache], then the
//!     frame allocator's bitmap lock [Frames]
//! 12. the console lock (`console`): may be taken anywhere, takes nothing
//!     itself [Console]
//!
//! Sleeping locks (`Mutex`, `RwSem`) are never taken with a spinlock held, with
//! preemption disabled, or in interrupt handlers. No cross-CPU call is waited
//! for with a spinlock held (a CPU spinning on it would not serve the call).

pub mod order;
pub mod rcu;
mod sleeping;
mod spinlock;

pub use order::Level;
pub use rcu::{call_rcu, rcu_barrier, read_lock, synchronize_rcu, RcuArc, RcuReadGuard, RcuStats};
pub use sleeping::{Mutex, MutexGuard, ReadGuard, RwSem, WriteGuard};
pub use spinlock::{SpinLock, SpinLockGuard};
