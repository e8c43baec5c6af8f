//! Threads: a kernel stack, saved CPU state and a scheduling state.

use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::arch::context::FpuState;
use crate::arch::traps::TrapFrame;
use crate::mm::kstack::KernelStack;
use crate::mm::paging::MapError;

use super::process::Process;

/// Where a thread is in its life. Transitions (see `sched`):
/// Runnable -> Running (picked), Running -> Runnable (preempted, yielded),
/// Running -> Blocked (waits), Blocked -> Runnable (woken), Running -> Exited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ThreadState {
    Runnable = 0,
    Running = 1,
    Blocked = 2,
    Exited = 3,
}

impl ThreadState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => ThreadState::Runnable,
            1 => ThreadState::Running,
            2 => ThreadState::Blocked,
            _ => ThreadState::Exited,
        }
    }
}

/// User threads whose `Thread` object exists, against `max_threads`.
static USER_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Linux's default threads-max: RAM / (8 × its 16 KiB kernel stack), at
/// least 20. Past it clone fails with EAGAIN, as on Linux (our stacks are
/// bigger, so threads can use up to half of RAM; the frame reserve keeps
/// the last of it for the kernel).
pub fn max_threads() -> usize {
    (crate::mm::frame::stats().total * crate::mm::frame::FRAME_SIZE as usize / (8 * 16 * 1024)).max(20)
}

/// Why a user thread could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError {
    /// `max_threads` user threads exist (EAGAIN).
    TooManyThreads,
    /// No memory for the kernel stack (ENOMEM).
    OutOfMemory,
}

/// Kernel threads are numbered apart from user ids (which start at 1 and
/// are shared by processes and threads, as on Linux).
static NEXT_KERNEL_TID: AtomicU32 = AtomicU32::new(1 << 30);

pub struct Thread {
    pub tid: u32,
    /// The user process; `None` for kernel threads.
    pub process: Option<Arc<Process>>,
    /// `None` for a CPU's boot context, which runs on the stack it booted on.
    kstack: Option<KernelStack>,
    /// Saved kernel stack pointer while not running. Written only by the
    /// CPU switching away from this thread, read only by the one switching to it.
    saved_rsp: UnsafeCell<u64>,
    state: AtomicU8,
    /// A CPU still runs on this thread's stack (until its switch away completes).
    pub(super) on_cpu: AtomicBool,
    /// FPU/SSE state, saved and restored only by the switching CPU.
    fpu: UnsafeCell<FpuState>,
    pub fs_base: AtomicU64,
    pub gs_base: AtomicU64,
    /// User address to clear and futex-wake when the thread exits (CLONE_CHILD_CLEARTID).
    pub clear_child_tid: AtomicU64,
    /// The CPU it last ran on (placement hint).
    pub(super) last_cpu: AtomicUsize,
    /// The CPUs it may run on, one bit each (sched_setaffinity); all by
    /// default. The scheduler places, steals and requeues only within it.
    affinity: AtomicU64,
    /// Set when a timed wait ended by its deadline rather than a wake-up.
    pub timed_out: AtomicBool,
    /// Set by `sched::interrupt`: interruptible waits return at once from now
    /// on (the thread's process is going down). Written under the scheduler
    /// lock, so a sleeper cannot miss it between its check and its sleep.
    interrupted: AtomicBool,
    /// The thread is in an interruptible wait (guarded by the scheduler lock).
    pub(super) interruptible: AtomicBool,
    /// This CPU's idle thread: never queued, never blocks.
    pub(super) is_idle: bool,
    /// VMA read locks it holds (debug builds count them, to check the lock
    /// order: no `mmap_lock` is taken while one is held; `mm::vma::lock`).
    pub vma_locks_held: AtomicU32,
    /// Debug builds: the levels of the sleeping locks it holds, one bit each
    /// (`sync::order`). Changed only by the thread itself.
    pub locks_held: AtomicU32,
    /// Signal mask, pending signals, alternate stack (`task::signal`).
    pub signals: super::signal::ThreadSignals,
}

// SAFETY: the `UnsafeCell` fields are touched only under the scheduler's
// protocol: `saved_rsp` and `fpu` by the CPU switching to or away from the
// thread, with interrupts off, and `on_cpu` keeps two CPUs from doing so at once.
unsafe impl Sync for Thread {}
// SAFETY: as above.
unsafe impl Send for Thread {}

impl Thread {
    fn new(process: Option<Arc<Process>>, kstack: Option<KernelStack>, fpu: FpuState, is_idle: bool) -> Thread {
        let tid = match &process {
            Some(process) => process.next_tid(),
            None => NEXT_KERNEL_TID.fetch_add(1, Ordering::Relaxed),
        };
        Thread {
            tid,
            process,
            kstack,
            saved_rsp: UnsafeCell::new(0),
            state: AtomicU8::new(ThreadState::Runnable as u8),
            on_cpu: AtomicBool::new(false),
            fpu: UnsafeCell::new(fpu),
            fs_base: AtomicU64::new(0),
            gs_base: AtomicU64::new(0),
            clear_child_tid: AtomicU64::new(0),
            last_cpu: AtomicUsize::new(0),
            affinity: AtomicU64::new(u64::MAX),
            timed_out: AtomicBool::new(false),
            interrupted: AtomicBool::new(false),
            interruptible: AtomicBool::new(false),
            is_idle,
            vma_locks_held: AtomicU32::new(0),
            locks_held: AtomicU32::new(0),
            signals: super::signal::ThreadSignals::default(),
        }
    }

    /// A thread that will enter user mode with `frame`.
    pub fn new_user(process: Arc<Process>, frame: &TrapFrame, fpu: FpuState) -> Result<Arc<Thread>, SpawnError> {
        let limit = max_threads();
        USER_THREADS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1))
            .map_err(|_| SpawnError::TooManyThreads)?;
        let stack = KernelStack::new_for_user().map_err(|_| {
            USER_THREADS.fetch_sub(1, Ordering::AcqRel);
            SpawnError::OutOfMemory
        })?;
        process.thread_objects.fetch_add(1, Ordering::AcqRel);
        let thread = Thread::new(Some(process), Some(stack), fpu, false);
        let top = thread.kernel_stack_top();
        // SAFETY: the stack is fresh, mapped and ours; its top is page aligned.
        let rsp = unsafe { crate::arch::context::prepare_user_stack(top, frame) };
        // SAFETY: the thread is not shared yet.
        unsafe { *thread.saved_rsp.get() = rsp };
        Ok(Arc::new(thread))
    }

    /// A kernel thread that runs `entry(arg)`; `entry` must end by calling `sched::exit_current`.
    pub fn new_kernel(entry: extern "C" fn(usize) -> !, arg: usize) -> Result<Arc<Thread>, MapError> {
        Self::new_kernel_thread(entry, arg, false)
    }

    /// A CPU's idle thread, running `entry`.
    pub(super) fn new_idle(entry: extern "C" fn(usize) -> !) -> Result<Arc<Thread>, MapError> {
        Self::new_kernel_thread(entry, 0, true)
    }

    fn new_kernel_thread(entry: extern "C" fn(usize) -> !, arg: usize, is_idle: bool) -> Result<Arc<Thread>, MapError> {
        let stack = KernelStack::new()?;
        let thread = Thread::new(None, Some(stack), FpuState::new(), is_idle);
        if is_idle {
            // Idle threads are never queued: they count as always running.
            thread.state.store(ThreadState::Running as u8, Ordering::Relaxed);
        }
        let top = thread.kernel_stack_top();
        // SAFETY: as in `new_user`.
        let rsp = unsafe { crate::arch::context::prepare_kernel_stack(top, entry, arg) };
        // SAFETY: as in `new_user`.
        unsafe { *thread.saved_rsp.get() = rsp };
        Ok(Arc::new(thread))
    }

    /// The context a CPU booted in, adopted as a thread (`is_idle` for idle loops).
    pub(super) fn adopt_boot_context(is_idle: bool) -> Arc<Thread> {
        let thread = Thread::new(None, None, FpuState::new(), is_idle);
        thread.state.store(ThreadState::Running as u8, Ordering::Relaxed);
        thread.on_cpu.store(true, Ordering::Relaxed);
        Arc::new(thread)
    }

    /// Asks the scheduler to place this (not yet started or blocked) thread
    /// on `cpu` when all queues are equally long: its last-CPU hint. Tests
    /// use it to run threads on chosen CPUs.
    pub fn prefer_cpu(&self, cpu: usize) {
        self.last_cpu.store(cpu, Ordering::Relaxed);
    }

    /// The CPUs this thread may run on.
    pub fn affinity(&self) -> u64 {
        self.affinity.load(Ordering::Relaxed)
    }

    /// Whether it may run on `cpu`.
    pub(super) fn may_run_on(&self, cpu: usize) -> bool {
        cpu < 64 && self.affinity() & (1 << cpu) != 0
    }

    /// Restricts it to the CPUs in `mask` (which must name an online one: the
    /// caller checks). A running thread moves at its next switch; the caller
    /// (`sched::set_affinity`) makes the current one switch at once.
    pub(super) fn store_affinity(&self, mask: u64) {
        self.affinity.store(mask, Ordering::Relaxed);
    }

    /// Whether interruptible waits must return (`sched::interrupt` was called).
    pub fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Ends an interruption once the signal that caused it is being
    /// delivered (`return_to_user`; an exiting process is checked after).
    pub(super) fn clear_interrupted(&self) {
        if self.interrupted.load(Ordering::Relaxed) {
            self.interrupted.store(false, Ordering::SeqCst);
        }
    }

    pub(super) fn set_interrupted(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
    }

    pub fn state(&self) -> ThreadState {
        ThreadState::from_u8(self.state.load(Ordering::SeqCst))
    }

    pub(super) fn set_state(&self, state: ThreadState) {
        self.state.store(state as u8, Ordering::SeqCst);
    }

    /// Top of the kernel stack (0 for a boot context: it never enters user mode).
    pub fn kernel_stack_top(&self) -> x86_64::VirtAddr {
        self.kstack.as_ref().map_or(x86_64::VirtAddr::zero(), KernelStack::top)
    }

    pub(super) fn saved_rsp_ptr(&self) -> *mut u64 {
        self.saved_rsp.get()
    }

    /// # Safety
    /// Only the CPU switching to or from this thread, with interrupts off.
    // The state is reached through `&self` because the thread is shared; the
    // switch protocol (not the borrow checker) makes the access exclusive.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn fpu_mut(&self) -> &mut FpuState {
        // SAFETY: exclusive by the caller's guarantee.
        unsafe { &mut *self.fpu.get() }
    }

    /// A copy of the FPU state (for a new thread). Called by the thread itself,
    /// whose registers are live: save them first.
    pub fn fpu_snapshot(&self) -> FpuState {
        let saved = crate::arch::disable_interrupts();
        // SAFETY: we are the running thread with interrupts off: no switch can
        // touch the area meanwhile.
        let fpu = unsafe { self.fpu_mut() };
        fpu.save();
        let copy = fpu.clone();
        crate::arch::restore_interrupts(saved);
        copy
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        // The kernel stack goes first, so leak checks that wait for this
        // count see its frames returned.
        drop(self.kstack.take());
        if let Some(process) = &self.process {
            process.thread_objects.fetch_sub(1, Ordering::AcqRel);
            USER_THREADS.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl core::fmt::Debug for Thread {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Thread").field("tid", &self.tid).field("state", &self.state()).finish()
    }
}
