//! Per-CPU data, reached through the GS base.
//!
//! In kernel mode GS points at this CPU's `PerCpu`; in user mode the user's
//! GS base is live and ours waits in IA32_KERNEL_GS_BASE, swapped back by
//! `swapgs` on every entry from ring 3 (see `traps.rs`).
//!
//! Fields the CPU's own code changes are atomics or behind locks: another CPU
//! may read them (statistics, the call queue), and an interrupt handler on
//! the same CPU may run in the middle of an update.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use ::x86_64::registers::model_specific::{GsBase, KernelGsBase};
use ::x86_64::VirtAddr;

use super::ipi::CallQueue;
use crate::sync::SpinLock;

/// The most CPUs we manage (CPU sets are 64-bit masks).
pub const MAX_CPUS: usize = 64;

#[repr(C)]
pub struct PerCpu {
    /// Points at itself, so `gs:[0]` yields the structure's address.
    self_ptr: *const PerCpu,
    /// Kernel stack for entries from user mode (`syscall`, at `gs:[8]`).
    pub kernel_stack_top: AtomicU64,
    /// Where the `syscall` entry parks the user stack pointer (`gs:[16]`).
    pub user_stack_scratch: AtomicU64,
    /// Dense index, 0 for the boot CPU.
    pub cpu: usize,
    pub apic_id: u32,
    /// Timer interrupts taken on this CPU.
    pub ticks: AtomicU64,
    /// Cross-CPU calls waiting to run here.
    pub calls: SpinLock<CallQueue>,
    /// While non-zero the scheduler must not switch away (`PreemptGuard`).
    pub preempt_count: AtomicUsize,
    /// Set by the tick (or a wake-up IPI): switch at the next chance.
    pub need_resched: AtomicBool,
    /// The running thread, owned by the scheduler (`task::sched`), as a raw
    /// `Arc` pointer; 0 before the scheduler runs on this CPU.
    pub current_task: AtomicUsize,
    /// This CPU's TSS, whose RSP0 follows the running thread.
    pub tss: &'static super::gdt::TssCell,
}

// SAFETY: `self_ptr` is only ever the structure's own (immutable, 'static)
// address; every other field is Sync.
unsafe impl Sync for PerCpu {}
// SAFETY: as above.
unsafe impl Send for PerCpu {}

/// Offsets the assembly entry paths use; checked against the struct below.
pub const KERNEL_STACK_OFFSET: usize = 8;
pub const USER_STACK_SCRATCH_OFFSET: usize = 16;
const _: () = assert!(core::mem::offset_of!(PerCpu, kernel_stack_top) == KERNEL_STACK_OFFSET);
const _: () = assert!(core::mem::offset_of!(PerCpu, user_stack_scratch) == USER_STACK_SCRATCH_OFFSET);

static CPUS: [AtomicPtr<PerCpu>; MAX_CPUS] = [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];
static READY: AtomicBool = AtomicBool::new(false);

/// Creates CPU `cpu`'s data and points this CPU's GS base at it.
/// Called once per CPU, on that CPU, before anything uses `current()`.
pub fn init(cpu: usize, apic_id: u32, tss: &'static super::gdt::TssCell) {
    assert!(cpu < MAX_CPUS, "at most {MAX_CPUS} CPUs");
    let data: &'static mut PerCpu = alloc::boxed::Box::leak(alloc::boxed::Box::new(PerCpu {
        self_ptr: core::ptr::null(),
        kernel_stack_top: AtomicU64::new(0),
        user_stack_scratch: AtomicU64::new(0),
        cpu,
        apic_id,
        ticks: AtomicU64::new(0),
        calls: SpinLock::new(CallQueue::new()),
        preempt_count: AtomicUsize::new(0),
        need_resched: AtomicBool::new(false),
        current_task: AtomicUsize::new(0),
        tss,
    }));
    data.self_ptr = data;
    let ptr: *mut PerCpu = data;
    CPUS[cpu].store(ptr, Ordering::Release);
    GsBase::write(VirtAddr::from_ptr(ptr));
    KernelGsBase::write(VirtAddr::zero());
    READY.store(true, Ordering::Release);
}

/// This CPU's data.
pub fn current() -> &'static PerCpu {
    assert!(READY.load(Ordering::Acquire), "per-CPU data used before it exists");
    let ptr: *const PerCpu;
    // SAFETY: in kernel mode GS points at this CPU's 'static `PerCpu`, whose
    // first field is its own address (set up in `init`); the load has no side effects.
    unsafe { core::arch::asm!("mov {}, gs:[0]", out(reg) ptr, options(nostack, readonly, preserves_flags)) };
    // SAFETY: `ptr` is the leaked, never-freed `PerCpu` of this CPU.
    unsafe { &*ptr }
}

/// This CPU's index; 0 until per-CPU data exists (early boot is on CPU 0).
pub fn cpu_id() -> usize {
    if READY.load(Ordering::Acquire) {
        current().cpu
    } else {
        0
    }
}

/// CPU `cpu`'s data, if that CPU has been set up.
pub fn get(cpu: usize) -> Option<&'static PerCpu> {
    let ptr = CPUS.get(cpu)?.load(Ordering::Acquire);
    // SAFETY: non-null entries are leaked `PerCpu`s that live forever.
    (!ptr.is_null()).then(|| unsafe { &*ptr })
}

/// Keeps the current thread on this CPU (no preemption) while it lives.
/// Interrupts stay on; the tick just defers its switch.
pub struct PreemptGuard {
    _not_send: core::marker::PhantomData<*const ()>,
}

impl PreemptGuard {
    pub fn new() -> Self {
        if READY.load(Ordering::Acquire) {
            // A single instruction on our own GS: cannot be split by an
            // interrupt or a migration.
            // SAFETY: GS points at this CPU's PerCpu; the offset is that of
            // `preempt_count` (checked below).
            unsafe {
                core::arch::asm!("lock inc qword ptr gs:[{o}]", o = const PREEMPT_COUNT_OFFSET, options(nostack))
            };
        }
        PreemptGuard { _not_send: core::marker::PhantomData }
    }
}

impl Default for PreemptGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PreemptGuard {
    fn drop(&mut self) {
        if READY.load(Ordering::Acquire) {
            // SAFETY: as in `new`; we never migrated while the count was raised.
            unsafe {
                core::arch::asm!("lock dec qword ptr gs:[{o}]", o = const PREEMPT_COUNT_OFFSET, options(nostack))
            };
        }
    }
}

const PREEMPT_COUNT_OFFSET: usize = core::mem::offset_of!(PerCpu, preempt_count);

/// Whether the scheduler may switch away from the current thread now.
pub fn preemptible() -> bool {
    current().preempt_count.load(Ordering::Relaxed) == 0
}
