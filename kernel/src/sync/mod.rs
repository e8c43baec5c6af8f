//! Synchronisation primitives.
//!
//! Lock order, outermost first (a lock may only be taken while holding locks
//! that come before it in this list):
//!
//! 0. an open file's offset (`fs::OpenFile::offset`, sleeping mutex), held
//!    across the user copy of a read, which may fault (so it comes before 1)
//! 1. `mmap_lock` of an address space (`AddressSpace::mmap_lock`, sleeping
//!    rwsem, taken as `MmapReadGuard` / `MmapWriteGuard`; debug builds check
//!    that a thread holding a VMA lock never takes it)
//! 2. per-VMA locks (`mm::vma::lock`): readers only try (a fault that fails
//!    falls back to 1, after dropping everything); a writer holds 1 and may
//!    sleep until a VMA's readers drain
//! 3. page-table entries: no lock, every update is an atomic CAS or swap
//! 4. the futex table (`task::futex`, sleeping mutex; may fault user pages in,
//!    which takes 1, so 1 is never held while taking it)
//! 5. RCU read sections (`rcu::read_lock`): not a lock, but they disable
//!    preemption, so inside one no sleeping lock (1, 2, 4), no blocking, no
//!    `schedule()`, no `synchronize_rcu`/`rcu_barrier`; the spinlocks below
//!    may be taken inside, and a section may be entered holding any lock
//! 6. wait-queue spinlocks (`task::wait`), `SharedMemory` page maps, a
//!    process's fd table (`fs::FdTable`, only to look up, install, remove)
//! 7. the scheduler lock (`task::sched`), then `PREVIOUS` slots
//! 8. RCU callback lists (`rcu`, one spinlock per CPU; `call_rcu` allocates
//!    under it)
//! 9. the kernel heap lock (`mm::heap`)
//! 10. the frame allocator lock (`mm::frame`)
//! 11. the console lock (`console`): may be taken anywhere, takes nothing itself
//!
//! Sleeping locks (`Mutex`, `RwSem`) are never taken with a spinlock held, with
//! preemption disabled, or in interrupt handlers. No cross-CPU call is waited
//! for with a spinlock held (a CPU spinning on it would not serve the call).

pub mod rcu;
mod sleeping;
mod spinlock;

pub use rcu::{call_rcu, rcu_barrier, read_lock, synchronize_rcu, RcuArc, RcuReadGuard, RcuStats};
pub use sleeping::{Mutex, MutexGuard, ReadGuard, RwSem, WriteGuard};
pub use spinlock::{SpinLock, SpinLockGuard};
