//! Per-CPU data, reached through the GS base.
//!
//! In kernel mode GS points at this CPU's `PerCpu`; in user mode the user's
//! GS base is live and ours waits in IA32_KERNEL_GS_BASE, swapped back by
//! `swapgs` on every entry from ring 3 (see `traps.rs`).
//!
//! Fields the CPU's own code changes are atomics or behind locks: another CPU
//! may read them (statistics, the call queue), and an interrupt handler on
//! the same CPU may run in the middle of an update.
//!
//! Preemptible code may be moved to another CPU between any two
//! instructions. So "this CPU's data" means something only (a) for as long as
//! the caller is pinned (interrupts off, or a `PreemptGuard`), or (b) for a
//! single GS-relative instruction, which no migration can split. `current()`
//! hands out a reference and so demands (a), checked in debug builds;
//! `current_task()`, `cpu_id()`, `need_resched()` and `preempt_count()` are
//! (b): one load each, correct at the instant it executes. What they return
//! about "this CPU" (not about the thread) may be stale a moment later
//! unless the caller is pinned.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use ::x86_64::registers::model_specific::{GsBase, KernelGsBase};
use ::x86_64::VirtAddr;

use super::ipi::CallQueue;
use crate::sync::{Level, SpinLock};

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
    /// Debug builds: the levels of the spinlocks held on this CPU, one bit
    /// each (`sync::order`). Changed only on this CPU, interrupts off.
    pub locks_held: AtomicU32,
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

// Offsets of the fields read with one GS-relative instruction. `#[repr(C)]`
// fixes the layout; the sizes checked here are the operand sizes of the
// loads below (a field changing type must change its load too).
const CPU_OFFSET: usize = core::mem::offset_of!(PerCpu, cpu);
const CURRENT_TASK_OFFSET: usize = core::mem::offset_of!(PerCpu, current_task);
const NEED_RESCHED_OFFSET: usize = core::mem::offset_of!(PerCpu, need_resched);
const PREEMPT_COUNT_OFFSET: usize = core::mem::offset_of!(PerCpu, preempt_count);
const _: () = assert!(core::mem::size_of::<usize>() == 8 && core::mem::size_of::<AtomicUsize>() == 8);
const _: () = assert!(core::mem::size_of::<AtomicBool>() == 1);

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
        calls: SpinLock::new(Level::CallQueue, CallQueue::new()),
        preempt_count: AtomicUsize::new(0),
        need_resched: AtomicBool::new(false),
        current_task: AtomicUsize::new(0),
        tss,
        locks_held: AtomicU32::new(0),
    }));
    data.self_ptr = data;
    let ptr: *mut PerCpu = data;
    CPUS[cpu].store(ptr, Ordering::Release);
    GsBase::write(VirtAddr::from_ptr(ptr));
    KernelGsBase::write(VirtAddr::zero());
    READY.store(true, Ordering::Release);
}

/// This CPU's data. The caller must be pinned (interrupts off or a
/// `PreemptGuard`) for as long as it uses the reference: preempted and moved
/// to another CPU, it would go on using the old CPU's data (the bug this
/// rule fixed: reading the current thread through it returned whatever
/// thread the old CPU had switched to). Checked in debug builds. For a
/// single field from preemptible code use the one-instruction readers below.
pub fn current() -> &'static PerCpu {
    assert!(READY.load(Ordering::Acquire), "per-CPU data used before it exists");
    debug_assert!(pinned(), "percpu::current() from preemptible code: pin first (PreemptGuard)");
    let ptr: *const PerCpu;
    // SAFETY: in kernel mode GS points at this CPU's 'static `PerCpu`, whose
    // first field is its own address (set up in `init`); the load has no side effects.
    unsafe { core::arch::asm!("mov {}, gs:[0]", out(reg) ptr, options(nostack, readonly, preserves_flags)) };
    // SAFETY: `ptr` is the leaked, never-freed `PerCpu` of this CPU.
    unsafe { &*ptr }
}

/// This CPU's data, or None while this CPU has none yet (early boot, an
/// AP before its `init`: `park_gs` points its GS at zeros). For the lock
/// order checks, which run in every lock, from the first. Pinned callers
/// only, as `current()`.
pub fn try_current() -> Option<&'static PerCpu> {
    if !READY.load(Ordering::Acquire) {
        return None;
    }
    let ptr: *const PerCpu;
    // SAFETY: READY is set, so this CPU's GS points at its `PerCpu` or (an
    // AP before `init`) at `EARLY_GS`, whose first word is null; a load.
    unsafe { core::arch::asm!("mov {}, gs:[0]", out(reg) ptr, options(nostack, readonly, preserves_flags)) };
    // SAFETY: non-null, it is this CPU's leaked, never-freed `PerCpu`.
    (!ptr.is_null()).then(|| unsafe { &*ptr })
}

/// What an AP's GS points at from its first instruction in Rust until
/// `init`: zeros, so every GS-relative read (`cpu_id`, `current_task`,
/// `try_current`) sees "CPU 0, no thread, no per-CPU data" instead of
/// faulting on address 0 once the boot CPU has set READY.
static EARLY_GS: [u64; core::mem::size_of::<PerCpu>().div_ceil(8)] = [0; core::mem::size_of::<PerCpu>().div_ceil(8)];

/// Points this CPU's GS at `EARLY_GS` (an AP, before anything takes a lock).
pub fn park_gs() {
    GsBase::write(VirtAddr::from_ptr(EARLY_GS.as_ptr()));
}

/// Reads the 8-byte field at byte offset `$offset` of this CPU's `PerCpu`
/// in one instruction (`mov reg, gs:[offset]`). Not `pure`: the value
/// changes behind the compiler's back (a switch, a migration), so every use
/// must really load; no `readonly` either, so the compiler also keeps later
/// memory accesses after it, as for an acquire load.
///
/// Callers make sure per-CPU data exists (`READY`), that we run in kernel
/// mode (GS is the kernel's), and that the offset names an 8-byte field.
macro_rules! gs_load_u64 {
    ($offset:expr) => {{
        let value: u64;
        // SAFETY: the caller checked READY, so GS points at this CPU's
        // 'static `PerCpu`; the offset is that of an 8-byte field inside
        // it (see the offset constants); a load has no side effects.
        unsafe {
            core::arch::asm!(
                "mov {}, qword ptr gs:[{o}]",
                out(reg) value,
                o = const $offset,
                options(nostack, preserves_flags)
            )
        };
        value
    }};
}

/// The running thread, as the raw `Arc` pointer the scheduler stored
/// (0 before the scheduler runs here). One GS-relative load, so it is the
/// calling thread even if it is preempted and migrated around the call:
/// at the instant of the load, this CPU was running the caller.
pub fn current_task() -> usize {
    if !READY.load(Ordering::Acquire) {
        return 0;
    }
    gs_load_u64!(CURRENT_TASK_OFFSET) as usize
}

/// This CPU's index; 0 until per-CPU data exists (early boot is on CPU 0).
/// One GS-relative load: the CPU the caller ran on when it executed. Unless
/// the caller is pinned it may be elsewhere by the time it uses the value,
/// so preemptible code may use it only as a hint (placement, statistics,
/// "is this CPU probably me"); anything that must act on this CPU pins first.
pub fn cpu_id() -> usize {
    if !READY.load(Ordering::Acquire) {
        return 0;
    }
    gs_load_u64!(CPU_OFFSET) as usize
}

/// Whether this CPU has been asked to switch (by the tick or a wake-up).
/// One GS-relative load; a stale answer after a migration costs at most one
/// needless or one late `schedule()`, never correctness.
pub fn need_resched() -> bool {
    if !READY.load(Ordering::Acquire) {
        return false;
    }
    let value: u8;
    // SAFETY: per-CPU data exists and `need_resched` is a 1-byte AtomicBool
    // at this offset; a load has no side effects.
    unsafe {
        core::arch::asm!(
            "mov {}, byte ptr gs:[{o}]",
            out(reg_byte) value,
            o = const NEED_RESCHED_OFFSET,
            options(nostack, preserves_flags)
        )
    };
    value != 0
}

/// This CPU's preemption-disable count, in one GS-relative load. Non-zero
/// means the caller holds a `PreemptGuard` (or runs inside code that does):
/// the count is raised only by the thread running on this CPU and it cannot
/// be switched away while it is raised, so a non-zero value is never stale.
pub fn preempt_count() -> usize {
    if !READY.load(Ordering::Acquire) {
        return 0;
    }
    gs_load_u64!(PREEMPT_COUNT_OFFSET) as usize
}

/// Whether the caller cannot be moved to another CPU right now: interrupts
/// are off (the tick cannot preempt it) or preemption is disabled. Before
/// per-CPU data exists only the boot CPU runs, so everything is pinned.
pub fn pinned() -> bool {
    !READY.load(Ordering::Acquire) || !super::interrupts_enabled() || preempt_count() != 0
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
    /// Whether `new` raised the count (not before per-CPU data exists), so
    /// that `drop` lowers it exactly when it was raised, even if per-CPU
    /// data appeared in between.
    counted: bool,
    _not_send: core::marker::PhantomData<*const ()>,
}

impl PreemptGuard {
    pub fn new() -> Self {
        let counted = READY.load(Ordering::Acquire);
        if counted {
            // A single instruction on our own GS: cannot be split by an
            // interrupt or a migration.
            // SAFETY: GS points at this CPU's PerCpu; the offset is that of
            // `preempt_count` (checked below).
            unsafe {
                core::arch::asm!("lock inc qword ptr gs:[{o}]", o = const PREEMPT_COUNT_OFFSET, options(nostack))
            };
        }
        PreemptGuard { counted, _not_send: core::marker::PhantomData }
    }
}

impl Default for PreemptGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PreemptGuard {
    fn drop(&mut self) {
        if self.counted {
            // SAFETY: as in `new`; we never migrated while the count was raised.
            unsafe {
                core::arch::asm!("lock dec qword ptr gs:[{o}]", o = const PREEMPT_COUNT_OFFSET, options(nostack))
            };
        }
    }
}

/// Whether the scheduler may switch away from the current thread now.
pub fn preemptible() -> bool {
    preempt_count() == 0
}

#[cfg(test)]
mod tests {
    use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

    use super::cpu_id;
    use crate::arch::{ipi, time};
    use crate::task::wait::WaitQueue;
    use crate::task::{sched, Thread};

    const THREADS: usize = 12;
    const ROUNDS: u64 = 2000;
    const CHECKS_PER_ROUND: u64 = 25;
    /// Twenty times the normal tick: many more points where a thread is
    /// preempted, so more chances to be preempted between two instructions
    /// of a racy accessor and resume on another CPU.
    const FAST_TICK_HZ: u64 = 2000;

    static EXPECTED_TID: [AtomicU32; THREADS] = [const { AtomicU32::new(0) }; THREADS];
    static WRONG: AtomicU64 = AtomicU64::new(0);
    static MIGRATIONS: AtomicU64 = AtomicU64::new(0);
    static CHECKS: AtomicU64 = AtomicU64::new(0);
    static DONE: AtomicUsize = AtomicUsize::new(0);
    /// Where the askers park now and then; the test's own thread wakes them.
    /// A wait queue with an explicit waker rather than a timed sleep: at this
    /// tick rate `timer::sleep_ns` hangs now and then (a thread preempted in
    /// `wait_until_deadline` after marking itself blocked but before arming
    /// its timer is switched out as blocked, and nothing wakes it).
    static PARK: WaitQueue = WaitQueue::new();
    static GENERATION: AtomicU64 = AtomicU64::new(0);

    /// Asks "who am I?" over and over, through both ways the kernel reads
    /// the current thread, and counts every answer that is not itself.
    extern "C" fn ask_who_am_i(index: usize) -> ! {
        let me = EXPECTED_TID[index].load(Ordering::Acquire);
        let mut cpu = cpu_id();
        for round in 0..ROUNDS {
            for _ in 0..CHECKS_PER_ROUND {
                if sched::current().tid != me {
                    WRONG.fetch_add(1, Ordering::Relaxed);
                }
                if crate::task::current_thread().is_none_or(|t| t.tid != me) {
                    WRONG.fetch_add(1, Ordering::Relaxed);
                }
                let now = cpu_id();
                if now != cpu {
                    MIGRATIONS.fetch_add(1, Ordering::Relaxed);
                    cpu = now;
                }
            }
            CHECKS.fetch_add(2 * CHECKS_PER_ROUND, Ordering::Relaxed);
            // Now and then park, so CPUs run dry and steal threads that were
            // preempted (anywhere, possibly mid-read) from the back of other
            // queues: that is what moves a preempted thread to another CPU.
            if round % 2 == 0 {
                let seen = GENERATION.load(Ordering::Acquire);
                PARK.wait_until(|| GENERATION.load(Ordering::Acquire) != seen);
            }
        }
        DONE.fetch_add(1, Ordering::AcqRel);
        sched::exit_current()
    }

    #[test_case]
    fn the_current_thread_is_always_the_caller_under_fast_preemption() {
        assert!(ipi::online().len() >= 2, "this test needs at least 2 CPUs (SMP >= 2)");
        WRONG.store(0, Ordering::SeqCst);
        MIGRATIONS.store(0, Ordering::SeqCst);
        CHECKS.store(0, Ordering::SeqCst);
        DONE.store(0, Ordering::SeqCst);
        time::set_tick_hz(FAST_TICK_HZ);
        for (index, expected) in EXPECTED_TID.iter().enumerate() {
            let thread = Thread::new_kernel(ask_who_am_i, index).expect("a kernel thread");
            expected.store(thread.tid, Ordering::Release);
            sched::enqueue(thread);
        }
        while DONE.load(Ordering::Acquire) < THREADS {
            GENERATION.fetch_add(1, Ordering::AcqRel);
            PARK.wake_all();
            sched::yield_now();
        }
        time::set_tick_hz(time::HZ);
        crate::print!(
            "(info: {} checks, {} migrations seen) ",
            CHECKS.load(Ordering::Relaxed),
            MIGRATIONS.load(Ordering::Relaxed)
        );
        assert_eq!(WRONG.load(Ordering::Relaxed), 0, "current() returned another thread");
    }
}
