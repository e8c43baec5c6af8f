//! Which page table each CPU has loaded, and lazy TLB mode.
//!
//! A CPU that switches to a kernel thread (or its idle thread) keeps the
//! user page table it had: every table maps the kernel half, and a CR3 load
//! costs a full TLB flush on both sides of the idle period. It stays in that
//! space's CPU set, marked *lazy*, until it loads another table.
//!
//! A flush of a space skips its lazy CPUs (`flush_targets`): it marks them
//! *stale* instead, and a stale CPU flushes its whole TLB when it comes back
//! to the space (`switch`). Nothing runs user code there meanwhile, and the
//! kernel reaches user memory only through `copy_user` on behalf of the
//! running thread, so the stale entries are never used. A flush that frees
//! page tables interrupts lazy CPUs too: their page walkers may still read
//! the table being freed (speculatively, through paging-structure caches).
//!
//! The race between a flusher skipping a CPU and that CPU leaving lazy mode
//! is a store-then-load on each side, both SeqCst: the flusher sets `stale`,
//! then reads `lazy`; the CPU clears `lazy`, then takes `stale`. At least one
//! of them sees the other's store, so a skipped CPU always catches up.
//!
//! An idle CPU about to halt drops a lazily kept table for the kernel's
//! (`leave_before_halt`): a halted CPU is never woken by a flush.
//!
//! A space stays alive while any CPU's bit is in its set: its `Drop` first
//! sends every such CPU to the kernel's table (`unload_everywhere`).

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use x86_64::registers::control::{Cr3, Cr3Flags};

use super::addrspace::AddressSpace;
use super::paging::kernel_page_table;
use crate::arch::ipi::{call_on, CpuSet};
use crate::arch::percpu::{self, MAX_CPUS};
use crate::arch::tlb::{flush_all, STATS};

/// One CPU's view (see the module comment). Only that CPU writes `loaded`;
/// flushers read `lazy` and set `stale`.
struct CpuTlb {
    /// The space whose table is in CR3; null for the kernel's own table.
    loaded: AtomicPtr<AddressSpace>,
    /// `loaded` is kept but not used: a kernel thread runs here.
    lazy: AtomicBool,
    /// A flush of `loaded` skipped this CPU while it was lazy.
    stale: AtomicBool,
}

impl CpuTlb {
    const fn new() -> Self {
        CpuTlb { loaded: AtomicPtr::new(ptr::null_mut()), lazy: AtomicBool::new(false), stale: AtomicBool::new(false) }
    }
}

static CPU_TLB: [CpuTlb; MAX_CPUS] = [const { CpuTlb::new() }; MAX_CPUS];

/// Makes this CPU run `next`'s page table (a user thread of it is about to
/// run), or, for `None` (a kernel thread), keeps whatever is loaded, lazily.
pub fn switch(next: Option<&AddressSpace>) {
    // Interrupts off: an `unload` call from another CPU must see this CPU
    // either before or after the switch, never halfway.
    let saved = crate::arch::disable_interrupts();
    let cpu = percpu::cpu_id();
    let state = &CPU_TLB[cpu];
    let loaded = state.loaded.load(Ordering::Relaxed);
    match next {
        None => {
            if !loaded.is_null() {
                state.lazy.store(true, Ordering::SeqCst);
            }
        }
        Some(next) if ptr::eq(loaded, next) => {
            state.lazy.store(false, Ordering::SeqCst);
            if state.stale.swap(false, Ordering::SeqCst) {
                STATS.lazy_catchups.fetch_add(1, Ordering::Relaxed);
                flush_all();
            }
        }
        Some(next) => {
            let bit = 1u64 << cpu;
            // Into the new set before the load: a flush that misses the bit
            // changed its entries before this CPU could cache them.
            next.cpus.fetch_or(bit, Ordering::SeqCst);
            state.lazy.store(false, Ordering::SeqCst);
            state.stale.store(false, Ordering::SeqCst);
            // SAFETY: every page table shares the kernel half, so the code and
            // stack we run on stay mapped across the switch.
            unsafe { Cr3::write(next.page_table.root(), Cr3Flags::empty()) };
            state.loaded.store(next as *const AddressSpace as *mut AddressSpace, Ordering::Relaxed);
            // SAFETY: `loaded` is alive while our bit is in its set (its
            // `Drop` unloads us first, and cannot get past us while our
            // interrupts are off); clearing the bit is our last access to it.
            if let Some(old) = unsafe { loaded.as_ref() } {
                old.cpus.fetch_and(!bit, Ordering::SeqCst);
            }
        }
    }
    crate::arch::restore_interrupts(saved);
}

/// Called by an idle CPU about to halt, interrupts off: a lazily kept table
/// is dropped for the kernel's, so that flushes of that space (even those
/// that free page tables, which interrupt lazy CPUs) leave the halted CPU
/// alone. The CR3 load costs this CPU a TLB refill when it runs the space
/// again, paid while it has nothing else to do.
pub fn leave_before_halt() {
    debug_assert!(!crate::arch::interrupts_enabled(), "leave_before_halt with interrupts on");
    let state = &CPU_TLB[percpu::cpu_id()];
    let loaded = state.loaded.load(Ordering::Relaxed);
    if !loaded.is_null() && state.lazy.load(Ordering::Relaxed) {
        // SAFETY: our bit is still in `loaded`'s set, so it is alive (its
        // `Drop` would have unloaded us first, and cannot while our
        // interrupts are off).
        unload(unsafe { &*loaded });
        STATS.lazy_leaves.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether this CPU has `mm` loaded and runs it (not lazily).
pub fn runs(mm: &AddressSpace) -> bool {
    let _pinned = percpu::PreemptGuard::new();
    let state = &CPU_TLB[percpu::cpu_id()];
    ptr::eq(state.loaded.load(Ordering::Relaxed), mm) && !state.lazy.load(Ordering::Relaxed)
}

/// The CPUs a flush of `mm`'s translations must interrupt (this one
/// included if it has `mm` loaded), and how many lazy CPUs it skipped,
/// marking them stale. With `tables_freed`, every CPU with `mm` loaded.
/// The caller is pinned, and flushes before it frees anything.
pub(super) fn flush_targets(mm: &AddressSpace, tables_freed: bool) -> (CpuSet, usize) {
    debug_assert!(percpu::pinned(), "flush targets computed on a CPU that can change");
    let loaded = mm.cpus();
    if tables_freed {
        return (loaded, 0);
    }
    let me = percpu::cpu_id();
    let mut targets = CpuSet::empty();
    let mut skipped = 0;
    for cpu in loaded.iter() {
        let state = &CPU_TLB[cpu];
        // The cheap read filters; the SeqCst pair decides (module comment).
        if cpu != me && state.lazy.load(Ordering::Relaxed) {
            state.stale.store(true, Ordering::SeqCst);
            if state.lazy.load(Ordering::SeqCst) {
                skipped += 1;
                continue;
            }
        }
        targets.insert(cpu);
    }
    (targets, skipped)
}

/// Sends this CPU to the kernel's table if it has `mm` loaded.
fn unload(mm: &AddressSpace) {
    let saved = crate::arch::disable_interrupts();
    let cpu = percpu::cpu_id();
    let state = &CPU_TLB[cpu];
    if ptr::eq(state.loaded.load(Ordering::Relaxed), mm) {
        debug_assert!(state.lazy.load(Ordering::Relaxed), "an address space is dropped while a CPU runs it");
        // SAFETY: the kernel's table maps the kernel half we run on.
        unsafe { Cr3::write(kernel_page_table().root(), Cr3Flags::empty()) };
        state.loaded.store(ptr::null_mut(), Ordering::Relaxed);
        state.lazy.store(false, Ordering::SeqCst);
        state.stale.store(false, Ordering::SeqCst);
        mm.cpus.fetch_and(!(1u64 << cpu), Ordering::SeqCst);
    }
    crate::arch::restore_interrupts(saved);
}

/// Sends every CPU that still has `mm` loaded (lazily: nothing of it runs
/// any more) to the kernel's table, so that `mm`'s tables can be freed.
pub(super) fn unload_everywhere(mm: &AddressSpace) {
    let cpus = mm.cpus();
    if !cpus.is_empty() {
        call_on(cpus, &|| unload(mm));
    }
    debug_assert!(mm.cpus().is_empty(), "an address space is still loaded after unloading it");
}

/// Lazy CPUs of `mm` (for tests).
#[cfg(test)]
pub(super) fn lazy_cpus(mm: &AddressSpace) -> CpuSet {
    let mut set = CpuSet::empty();
    for cpu in mm.cpus().iter() {
        if CPU_TLB[cpu].lazy.load(Ordering::SeqCst) {
            set.insert(cpu);
        }
    }
    set
}

/// Test helpers: kernel threads that load a space or go lazy on command.
#[cfg(test)]
pub(crate) mod workers {
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicU64, Ordering};

    use super::switch;
    use crate::arch::ipi::CpuSet;
    use crate::mm::addrspace::AddressSpace;
    use crate::sync::SpinLock;

    /// Kernel threads pinned one to each CPU of a set, which load an address
    /// space or go lazy on command (and never halt meanwhile: they spin).
    pub struct Workers {
        count: usize,
        seq: u64,
    }

    static WORKER_MM: SpinLock<Option<Arc<AddressSpace>>> = SpinLock::new(crate::sync::Level::TestState, None);
    static WORKER_CMD: AtomicU64 = AtomicU64::new(0);
    static WORKER_ACKS: AtomicU64 = AtomicU64::new(0);
    pub const LOAD: u64 = 1;
    pub const LAZY: u64 = 2;
    const EXIT: u64 = 3;

    extern "C" fn worker(_: usize) -> ! {
        let mut seen = 0;
        loop {
            let cmd = WORKER_CMD.load(Ordering::Acquire);
            if cmd >> 8 == seen {
                core::hint::spin_loop();
                continue;
            }
            seen = cmd >> 8;
            match cmd & 0xff {
                LOAD => {
                    let mm = WORKER_MM.lock().clone().expect("the workers' space");
                    switch(Some(&mm));
                }
                LAZY => switch(None),
                _ => {
                    // Lazy before the ack: the test may drop the space as
                    // soon as every worker has acked, and a worker that
                    // still ran it (it holds no reference) would be a CPU
                    // running a dropped space.
                    switch(None);
                    WORKER_ACKS.fetch_add(1, Ordering::AcqRel);
                    crate::task::sched::exit_current()
                }
            }
            WORKER_ACKS.fetch_add(1, Ordering::AcqRel);
        }
    }

    impl Workers {
        pub fn start(mm: &Arc<AddressSpace>, cpus: CpuSet) -> Workers {
            *WORKER_MM.lock() = Some(mm.clone());
            WORKER_CMD.store(0, Ordering::SeqCst);
            WORKER_ACKS.store(0, Ordering::SeqCst);
            for cpu in cpus.iter() {
                let thread = crate::task::thread::Thread::new_kernel(worker, 0).expect("a kernel thread");
                crate::task::sched::set_affinity(&thread, 1 << cpu);
                crate::task::sched::enqueue(thread);
            }
            Workers { count: cpus.len(), seq: 0 }
        }

        /// Runs `op` on every worker and waits until all have.
        pub fn command(&mut self, op: u64) {
            self.seq += 1;
            let target = WORKER_ACKS.load(Ordering::SeqCst) + self.count as u64;
            WORKER_CMD.store(self.seq << 8 | op, Ordering::SeqCst);
            while WORKER_ACKS.load(Ordering::SeqCst) < target {
                core::hint::spin_loop();
            }
        }
    }

    impl Drop for Workers {
        fn drop(&mut self) {
            self.command(EXIT);
            // The space's last reference must stay the test's.
            *WORKER_MM.lock() = None;
        }
    }
}
