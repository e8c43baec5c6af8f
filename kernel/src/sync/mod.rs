//! Synchronisation primitives.
//!
//! Lock order, outermost first (a lock may only be taken while holding locks
//! that come before it in this list):
//!
//! 1. `mmap_lock` of an address space (later issues)
//! 2. per-VMA locks (later issues)
//! 3. page-table locks
//! 4. the kernel heap lock (`mm::heap`)
//! 5. the frame allocator lock (`mm::frame`)
//! 6. the console lock (`console`): may be taken anywhere, takes nothing itself

mod sleeping;
mod spinlock;

pub use sleeping::{Mutex, MutexGuard, ReadGuard, RwSem, WriteGuard};
pub use spinlock::{SpinLock, SpinLockGuard};
