//! The scheduler: per-CPU run queues, preemption from the tick, work
//! stealing by idle CPUs, and the switch itself.
//!
//! One lock, `SCHED_LOCK`, guards every run queue and every thread's `state`
//! and `on_cpu` (the xv6 design). A CPU takes it before deciding to switch
//! and the thread it switches *to* releases it (`finish_switch`), so no other
//! CPU can pick, queue or wake a thread whose registers are half saved.
//! Rules that follow:
//! - A thread is in a run queue only while `Runnable` and not on a CPU.
//! - Blocking: the thread sets itself `Blocked` (under its wait queue's lock,
//!   see `wait`), then calls `schedule`. A waker that finds it still on its
//!   CPU only marks it `Runnable`; `schedule` then keeps running it.
//! - Interrupting (a process going down): `interrupt` sets the thread's flag
//!   under this lock, and `schedule` checks the flag of an interruptibly
//!   blocked thread under this lock too. So either the interrupter sees the
//!   thread `Blocked` and wakes it, or the thread sees the flag and does not
//!   sleep: the wake-up cannot fall between a waiter's check and its sleep.
//! - `SCHED_LOCK` is a leaf apart from what `finish_switch` does after
//!   releasing it. Spinning on it serves cross-CPU calls, so a CPU waiting for
//!   a TLB shootdown cannot be deadlocked by CPUs spinning here.
//!
//! (A fine-grained version with per-thread flags raced: a thread could be
//! queued while another CPU still ran it, and two CPUs then waited for each
//! other forever.)

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::arch::apic::{self, Delivery, Destination};
use crate::arch::ipi::{online, CpuSet};
use crate::arch::percpu::{self, MAX_CPUS};
use crate::sync::{Level, SpinLock};

use super::thread::{Thread, ThreadState};

pub const RESCHED_VECTOR: u8 = 0xf2;

/// The scheduler lock: acquired and released in different threads (across
/// a switch), so it is a bare flag rather than a guard-based lock. Callers
/// keep interrupts off while they hold it.
struct SchedLock(AtomicBool);

static SCHED_LOCK: SchedLock = SchedLock(AtomicBool::new(false));

impl SchedLock {
    /// Its level is recorded on this CPU (`sync::order`), and cleared by
    /// `release` on the same CPU, whichever thread releases it.
    fn acquire(&self) {
        crate::sync::order::spin_acquire(Level::Scheduler, false);
        while self.0.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            crate::arch::ipi::serve_calls();
            core::hint::spin_loop();
        }
    }

    fn release(&self) {
        self.0.store(false, Ordering::Release);
        crate::sync::order::spin_release(Level::Scheduler, true);
    }
}

/// The run queues, guarded by `SCHED_LOCK`.
struct RunQueues([UnsafeCell<VecDeque<Arc<Thread>>>; MAX_CPUS]);

// SAFETY: every access goes through `queues()`, which requires `SCHED_LOCK`.
unsafe impl Sync for RunQueues {}

static RUN_QUEUES: RunQueues = RunQueues([const { UnsafeCell::new(VecDeque::new()) }; MAX_CPUS]);
/// Queue lengths, readable without the lock (placement and idle checks).
static QUEUE_LEN: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
/// Whether each CPU runs a thread other than its idle thread (set at each
/// switch). With the queue length it makes the CPU's load: placement by
/// queue length alone put a new thread behind a busy CPU's running thread,
/// beside an idle CPU that never took it (it steals only from CPUs that are
/// busy *and* have threads waiting), and two threads shared one CPU for good.
static BUSY: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Threads on `cpu`: queued, plus the one running unless it is the idle one.
fn load(cpu: usize) -> usize {
    QUEUE_LEN[cpu].load(Ordering::Relaxed) + BUSY[cpu].load(Ordering::Relaxed) as usize
}

/// The run queue of `cpu`.
///
/// # Safety
/// The caller holds `SCHED_LOCK` and does not keep the reference past it.
unsafe fn queue(cpu: usize) -> &'static mut VecDeque<Arc<Thread>> {
    // SAFETY: exclusive under `SCHED_LOCK` (the caller's guarantee).
    unsafe { &mut *RUN_QUEUES.0[cpu].get() }
}

/// Each CPU's idle thread.
static IDLE: [spin::Once<Arc<Thread>>; MAX_CPUS] = [const { spin::Once::new() }; MAX_CPUS];
/// The thread each CPU switched away from, until the next thread releases it.
static PREVIOUS: [SpinLock<Option<Arc<Thread>>>; MAX_CPUS] =
    [const { SpinLock::new(Level::PreviousThread, None) }; MAX_CPUS];

/// The running thread.
pub fn current() -> Arc<Thread> {
    // One GS-relative load (not `percpu::current()` then the field: preempted
    // and migrated between the two, that read another CPU's thread).
    let ptr = percpu::current_task() as *const Thread;
    assert!(!ptr.is_null(), "no thread on this CPU yet");
    // `current_task` came from `Arc::into_raw` and owns one count while the
    // thread runs here, which it does until this code lets it switch away.
    // SAFETY: so the pointer is a live Arc allocation; we add the caller's count.
    unsafe {
        Arc::increment_strong_count(ptr);
        Arc::from_raw(ptr)
    }
}

/// Calls `f` with the running thread without taking a count of it: the two
/// atomic operations of `current()` (an increment and, at the end, a
/// decrement) are a noticeable part of a page fault and of every return to
/// user mode under emulation. `f` may block, switch and migrate. It runs *on*
/// this thread, which stays alive as long as it runs: while it runs, this
/// CPU's slot holds a count; while it waits or is queued, the run queue, a
/// wait queue or `PREVIOUS` does; a thread nobody holds never runs again, so
/// `f` never resumes on a freed thread. `f` keeps the thread past the call
/// only by cloning the `Arc`.
pub fn with_current<R>(f: impl FnOnce(&Arc<Thread>) -> R) -> R {
    let ptr = percpu::current_task() as *const Thread;
    assert!(!ptr.is_null(), "no thread on this CPU yet");
    // SAFETY: `current_task` came from `Arc::into_raw`, and the thread is
    // alive while this code runs on it (above). ManuallyDrop: the `Arc` made
    // here owns no count, so it must never be dropped.
    let thread = core::mem::ManuallyDrop::new(unsafe { Arc::from_raw(ptr) });
    f(&thread)
}

fn set_current(thread: Arc<Thread>) {
    let old = percpu::current().current_task.swap(Arc::into_raw(thread) as usize, Ordering::AcqRel);
    if old != 0 {
        // SAFETY: the slot's previous value came from `Arc::into_raw` and owned one count.
        drop(unsafe { Arc::from_raw(old as *const Thread) });
    }
}

/// Makes the code running on this CPU (the boot CPU's `kernel_main`) a thread,
/// and creates the CPU's idle thread. Boot CPU only.
pub fn init_boot_cpu() {
    let cpu = percpu::cpu_id();
    set_current(Thread::adopt_boot_context(false));
    // The boot context goes on as a thread of its own (kernel_main).
    BUSY[cpu].store(true, Ordering::Relaxed);
    let idle = Thread::new_idle(idle_thread_entry).expect("an idle thread");
    IDLE[cpu].call_once(|| idle);
    crate::arch::traps::set_irq_handler(RESCHED_VECTOR, handle_resched_ipi);
}

/// Makes an application processor's boot context its idle thread.
pub fn init_this_cpu_idle() {
    let cpu = percpu::cpu_id();
    let idle = Thread::adopt_boot_context(true);
    IDLE[cpu].call_once(|| idle.clone());
    set_current(idle);
}

extern "C" fn idle_thread_entry(_: usize) -> ! {
    idle_loop()
}

/// What an idle CPU does: run anything runnable, else sleep until an interrupt.
pub fn idle_loop() -> ! {
    loop {
        schedule();
        crate::arch::ipi::serve_calls();
        // A quiescent state, and the time to run a batch of this CPU's RCU
        // callbacks; with more of them ready, go round again (through the
        // scheduler) instead of sleeping.
        let more_callbacks = crate::sync::rcu::on_idle();
        let cpu = percpu::cpu_id();
        // Queued threads elsewhere that may not run here are no work for us.
        let nothing_to_steal = NOTHING_TO_STEAL[cpu].swap(false, Ordering::Relaxed);
        let work = || !nothing_to_steal && has_work(cpu);
        if more_callbacks || work() {
            continue;
        }
        // Idle time zeroes frames for the fault path (any CPU's pool: the
        // CPU that faults is the one that is never idle). Something filled:
        // go round, through the scheduler, before looking again.
        if crate::mm::frame::fill_zero_pools(work) {
            continue;
        }
        // Checked with interrupts off, then `sti; hlt` back to back: a
        // wake-up IPI (for a thread, or a pool running low) cannot slip in
        // between the check and the halt.
        x86_64::instructions::interrupts::disable();
        if work() || crate::mm::frame::fill_wanted() {
            x86_64::instructions::interrupts::enable();
        } else {
            crate::mm::lazy_tlb::leave_before_halt();
            x86_64::instructions::interrupts::enable_and_hlt();
        }
    }
}

/// Pokes one idle CPU other than this one (if there is one) out of `hlt`,
/// so that its idle loop runs again (to refill zero pools). Any context.
pub fn wake_an_idle_cpu() {
    let me = percpu::cpu_id();
    if let Some(cpu) = online().iter().find(|&c| c != me && !BUSY[c].load(Ordering::Relaxed)) {
        if let Some(target) = percpu::get(cpu) {
            apic::send_ipi(Destination::Apic(target.apic_id), Delivery::Fixed(RESCHED_VECTOR));
        }
    }
}

/// Work for idle `cpu`: its own queue, or a thread waiting on a busy CPU
/// (an idle CPU with a queued thread was poked and takes it itself).
fn has_work(cpu: usize) -> bool {
    QUEUE_LEN[cpu].load(Ordering::Relaxed) > 0
        || online()
            .iter()
            .any(|c| c != cpu && QUEUE_LEN[c].load(Ordering::Relaxed) > 0 && BUSY[c].load(Ordering::Relaxed))
}

/// Queues `thread` on the least-loaded CPU (its last CPU on a tie) and pokes
/// that CPU if it is not us. Caller holds `SCHED_LOCK`.
fn enqueue_locked(thread: Arc<Thread>) {
    let last = thread.last_cpu.load(Ordering::Relaxed);
    let allowed = CpuSet::from_bits(online().bits() & thread.affinity());
    // An empty set cannot happen (sched_setaffinity wants an online CPU);
    // if it did, any CPU beats a thread that never runs.
    let allowed = if allowed.is_empty() { online() } else { allowed };
    let here = percpu::cpu_id();
    let mut best = if allowed.contains(last) {
        last
    } else if allowed.contains(here) {
        here
    } else {
        allowed.iter().next().expect("an allowed CPU")
    };
    for cpu in allowed.iter() {
        if load(cpu) < load(best) {
            best = cpu;
        }
    }
    // SAFETY: we hold SCHED_LOCK.
    unsafe { queue(best) }.push_back(thread);
    QUEUE_LEN[best].fetch_add(1, Ordering::Relaxed);
    if best != percpu::cpu_id() {
        if let Some(target) = percpu::get(best) {
            apic::send_ipi(Destination::Apic(target.apic_id), Delivery::Fixed(RESCHED_VECTOR));
        }
    } else {
        percpu::current().need_resched.store(true, Ordering::Relaxed);
    }
}

/// Makes a new thread runnable.
pub fn enqueue(thread: Arc<Thread>) {
    let saved = crate::arch::disable_interrupts();
    SCHED_LOCK.acquire();
    enqueue_locked(thread);
    SCHED_LOCK.release();
    crate::arch::restore_interrupts(saved);
}

fn handle_resched_ipi(_frame: &mut crate::arch::TrapFrame) {
    apic::eoi();
    percpu::current().need_resched.store(true, Ordering::Relaxed);
}

/// Takes the next thread for `cpu`: its own queue first, else one stolen
/// from the back of the busiest other queue. Caller holds `SCHED_LOCK`.
fn pick_next_locked(cpu: usize) -> Option<Arc<Thread>> {
    NOTHING_TO_STEAL[cpu].store(false, Ordering::Relaxed);
    // Our own queue, front first. A thread whose affinity changed while it
    // waited here moves to a CPU it may run on.
    loop {
        // SAFETY: we hold SCHED_LOCK.
        let Some(thread) = (unsafe { queue(cpu) }).pop_front() else { break };
        QUEUE_LEN[cpu].fetch_sub(1, Ordering::Relaxed);
        if thread.may_run_on(cpu) {
            return Some(thread);
        }
        enqueue_locked(thread);
        if QUEUE_LEN[cpu].load(Ordering::Relaxed) == 0 {
            break;
        }
    }
    // Else steal from the back of the longest other queue holding a thread
    // allowed here.
    let mut untried = online();
    untried.remove(cpu);
    while let Some(from) = untried.iter().max_by_key(|&c| QUEUE_LEN[c].load(Ordering::Relaxed)) {
        untried.remove(from);
        // SAFETY: we hold SCHED_LOCK.
        let queue = unsafe { queue(from) };
        if let Some(at) = queue.iter().rposition(|t| t.may_run_on(cpu)) {
            let thread = queue.remove(at)?;
            QUEUE_LEN[from].fetch_sub(1, Ordering::Relaxed);
            return Some(thread);
        }
    }
    NOTHING_TO_STEAL[cpu].store(true, Ordering::Relaxed);
    None
}

/// Set when this CPU last looked for work and found none it may run (the
/// queued threads elsewhere all excluded it): its idle loop then sleeps
/// until an interrupt instead of looking again at once.
static NOTHING_TO_STEAL: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// sched_setaffinity's core: restricts `thread` to `mask` (which names an
/// online CPU: the caller checks). The current thread moves at once if it
/// may no longer run here; others at their next switch or placement.
pub fn set_affinity(thread: &Arc<Thread>, mask: u64) {
    thread.store_affinity(mask);
    if Arc::ptr_eq(thread, &current()) && !thread.may_run_on(percpu::cpu_id()) {
        yield_now();
    }
}

/// Makes `thread` runnable if it is blocked. Idempotent: concurrent wakers
/// (a futex wake and a time-out) queue it once.
pub fn wake(thread: &Arc<Thread>) {
    let saved = crate::arch::disable_interrupts();
    SCHED_LOCK.acquire();
    if thread.state() == ThreadState::Blocked {
        thread.set_state(ThreadState::Runnable);
        // Still on its CPU (about to sleep): `schedule` will keep it running.
        if !thread.on_cpu.load(Ordering::Relaxed) {
            enqueue_locked(thread.clone());
        }
    }
    SCHED_LOCK.release();
    crate::arch::restore_interrupts(saved);
}

/// Interrupts `thread`: its interruptible waits return from now on. Wakes it
/// if it sleeps in one, and pokes its CPU if it runs elsewhere, so that it
/// notices on its way back to user mode.
pub fn interrupt(thread: &Arc<Thread>) {
    let saved = crate::arch::disable_interrupts();
    SCHED_LOCK.acquire();
    thread.set_interrupted();
    match thread.state() {
        ThreadState::Blocked if thread.interruptible.load(Ordering::Relaxed) => {
            thread.set_state(ThreadState::Runnable);
            if !thread.on_cpu.load(Ordering::Relaxed) {
                enqueue_locked(thread.clone());
            }
        }
        ThreadState::Running => {
            let cpu = thread.last_cpu.load(Ordering::Relaxed);
            if cpu != percpu::cpu_id() {
                if let Some(target) = percpu::get(cpu) {
                    apic::send_ipi(Destination::Apic(target.apic_id), Delivery::Fixed(RESCHED_VECTOR));
                }
            }
        }
        _ => {}
    }
    SCHED_LOCK.release();
    crate::arch::restore_interrupts(saved);
}

/// Marks the running thread as about to sleep (before `schedule`);
/// `interruptible` sleeps end early once the thread is interrupted.
pub fn prepare_to_block(thread: &Thread, interruptible: bool) {
    let saved = crate::arch::disable_interrupts();
    SCHED_LOCK.acquire();
    thread.interruptible.store(interruptible, Ordering::Relaxed);
    thread.set_state(ThreadState::Blocked);
    SCHED_LOCK.release();
    crate::arch::restore_interrupts(saved);
}

/// Undoes `prepare_to_block` for a thread that found its wait over before
/// sleeping (it is still on its CPU, so no waker has queued it).
pub fn cancel_block(thread: &Thread) {
    let saved = crate::arch::disable_interrupts();
    SCHED_LOCK.acquire();
    if matches!(thread.state(), ThreadState::Blocked | ThreadState::Runnable) {
        thread.set_state(ThreadState::Running);
    }
    SCHED_LOCK.release();
    crate::arch::restore_interrupts(saved);
}

/// Gives up the CPU: to another runnable thread if there is one.
/// A `Running` caller stays runnable; a `Blocked` one sleeps until woken;
/// an `Exited` one never returns.
pub fn schedule() {
    let saved = crate::arch::disable_interrupts();
    // Never inside an RCU read section (debug-asserted): a quiescent state.
    crate::sync::rcu::on_schedule();
    let cpu = percpu::cpu_id();
    percpu::current().need_resched.store(false, Ordering::Relaxed);
    let prev = current();
    SCHED_LOCK.acquire();
    let next = match prev.state() {
        // Woken before it got here: keep running.
        ThreadState::Runnable if !prev.is_idle => None,
        // Interrupted before it got here: the wait must not sleep.
        ThreadState::Blocked if prev.interruptible.load(Ordering::Relaxed) && prev.is_interrupted() => None,
        ThreadState::Running => pick_next_locked(cpu),
        _ => Some(pick_next_locked(cpu).unwrap_or_else(|| IDLE[cpu].get().expect("idle thread").clone())),
    };
    let Some(next) = next.filter(|next| !Arc::ptr_eq(next, &prev)) else {
        if !prev.is_idle {
            prev.set_state(ThreadState::Running);
        }
        SCHED_LOCK.release();
        crate::arch::restore_interrupts(saved);
        return;
    };
    if prev.state() == ThreadState::Running && !prev.is_idle {
        // Preempted or yielding: back of our queue. Nobody can take it
        // before the switch is complete (we hold SCHED_LOCK until then).
        prev.set_state(ThreadState::Runnable);
        if prev.may_run_on(cpu) {
            // SAFETY: we hold SCHED_LOCK.
            unsafe { queue(cpu) }.push_back(prev.clone());
            QUEUE_LEN[cpu].fetch_add(1, Ordering::Relaxed);
        } else {
            // Its affinity changed: to a CPU it may run on.
            enqueue_locked(prev.clone());
        }
    }
    switch_to(cpu, prev, next);
    crate::arch::restore_interrupts(saved);
}

/// Switches from `prev` (the running thread) to `next`. Interrupts are off
/// and `SCHED_LOCK` is held; `finish_switch` on `next` releases it.
fn switch_to(cpu: usize, prev: Arc<Thread>, next: Arc<Thread>) {
    prev.on_cpu.store(false, Ordering::Relaxed);
    next.on_cpu.store(true, Ordering::Relaxed);
    BUSY[cpu].store(!next.is_idle, Ordering::Relaxed);
    if !next.is_idle {
        next.set_state(ThreadState::Running);
    }
    next.last_cpu.store(cpu, Ordering::Relaxed);

    // User-visible CPU state: FPU registers, FS/GS bases, the address space.
    // SAFETY: interrupts are off and both threads are owned by this CPU now
    // (`prev` runs here; `next` cannot be taken by anyone under SCHED_LOCK).
    unsafe {
        prev.fpu_mut().save();
        next.fpu_mut().restore();
    }
    if prev.process.is_some() {
        prev.fs_base.store(crate::arch::context::user_fs(), Ordering::Relaxed);
        prev.gs_base.store(crate::arch::context::user_gs(), Ordering::Relaxed);
    }
    if next.process.is_some() {
        crate::arch::context::set_user_fs(next.fs_base.load(Ordering::Relaxed));
        crate::arch::context::set_user_gs(next.gs_base.load(Ordering::Relaxed));
    }
    // Borrowed, not cloned: nothing on this stack may hold a reference
    // across the switch (an exiting thread never comes back to drop it).
    crate::mm::lazy_tlb::switch(next.process.as_ref().map(|p| &*p.mm));
    let top = next.kernel_stack_top();
    if top.as_u64() != 0 {
        let this = percpu::current();
        this.tss.set_kernel_stack(top);
        this.kernel_stack_top.store(top.as_u64(), Ordering::Relaxed);
    }

    let save = prev.saved_rsp_ptr();
    // SAFETY: `next` is not running anywhere (it was queued or idle, and
    // SCHED_LOCK keeps others off it).
    let next_rsp = unsafe { *next.saved_rsp_ptr() };
    *PREVIOUS[cpu].lock() = Some(prev);
    set_current(next);
    // SAFETY: interrupts are off; `next_rsp` is `next`'s saved stack pointer
    // and `next` runs nowhere else; `save` points into `prev`, which
    // `PREVIOUS` keeps alive until `finish_switch` on the next thread.
    unsafe { crate::arch::context::context_switch(save, next_rsp) };
    // Back on `prev`'s stack: someone switched to us.
    finish_switch();
}

/// Runs on the thread just switched to: releases the scheduler lock, then
/// the thread switched away from.
#[unsafe(no_mangle)]
pub extern "C" fn kernel_finish_switch() {
    finish_switch();
}

fn finish_switch() {
    SCHED_LOCK.release();
    let prev = PREVIOUS[percpu::cpu_id()].lock().take();
    // If it exited, this may be the last reference: its stack is freed now
    // that no CPU runs on it (and with no lock held: that takes a shootdown).
    drop(prev);
}

/// Ends the running thread. Its resources go when the last reference does.
pub fn exit_current() -> ! {
    // The preemption count is the CPU's: a guard still alive on this
    // stack (it is never dropped) would leave the CPU pinned for whoever
    // runs there next. A test's helper thread once did.
    assert!(percpu::preemptible(), "a thread exits pinned (a PreemptGuard or RCU read section still alive)");
    // Interrupts off from here to the switch: a thread preempted once it is
    // `Exited` is never run again, so anything still on its stack stays for
    // good. It once was preempted between marking itself exited and dropping
    // its own reference, and that reference kept the thread (its kernel
    // stack) and its process alive forever.
    let _ = crate::arch::disable_interrupts();
    {
        let thread = current();
        thread.set_state(ThreadState::Exited);
    }
    schedule();
    unreachable!("an exited thread was scheduled again");
}

/// Whether this CPU runs its idle thread. Caller pinned (the tick).
pub fn running_idle() -> bool {
    let ptr = percpu::current_task() as *const Thread;
    // SAFETY: a non-null `current_task` is the running thread's `Arc`
    // pointer, which owns a count while it runs here; pinned, it cannot
    // switch away (and drop that count) while we read one field.
    !ptr.is_null() && unsafe { (*ptr).is_idle }
}

/// Called at the end of an interrupt: switch if the tick asked for it.
pub fn preempt_point() {
    let this = percpu::current();
    if this.need_resched.load(Ordering::Relaxed)
        && this.preempt_count.load(Ordering::Relaxed) == 0
        && this.current_task.load(Ordering::Relaxed) != 0
    {
        schedule();
    }
}

/// Yields the CPU to a runnable thread, if any (`sched_yield`).
pub fn yield_now() {
    schedule();
}

/// How many run queues hold `thread` (diagnostics of a late teardown).
pub fn references_to(thread: &Arc<Thread>) -> usize {
    let saved = crate::arch::disable_interrupts();
    SCHED_LOCK.acquire();
    // SAFETY: we hold SCHED_LOCK.
    let count =
        online().iter().map(|cpu| unsafe { queue(cpu) }.iter().filter(|t| Arc::ptr_eq(t, thread)).count()).sum();
    SCHED_LOCK.release();
    crate::arch::restore_interrupts(saved);
    count
}

/// Threads queued on each online CPU (statistics, tests).
pub fn queue_lengths() -> alloc::vec::Vec<(usize, usize)> {
    online().iter().map(|c| (c, QUEUE_LEN[c].load(Ordering::Relaxed))).collect()
}

/// Prints every CPU's scheduler state and every user thread (for hangs:
/// an NMI from the QEMU monitor calls it). Uses `try_lock` only.
pub fn debug_dump() {
    for cpu in online().iter() {
        let Some(this) = percpu::get(cpu) else { continue };
        let current = this.current_task.load(Ordering::Relaxed) as *const Thread;
        // SAFETY: diagnostics only: the thread may be switching, but Thread
        // objects are freed only after their CPU left them; a torn read of
        // a tid is harmless here.
        let tid = if current.is_null() { 0 } else { unsafe { (*current).tid } };
        let queued = QUEUE_LEN[cpu].load(Ordering::Relaxed);
        let previous = PREVIOUS[cpu].try_lock().map(|p| p.as_ref().map(|t| t.tid));
        crate::console::emergency_print(format_args!(
            "cpu {cpu}: current tid {tid}, previous {previous:?}, need_resched {}, preempt {}, queued {}\n",
            this.need_resched.load(Ordering::Relaxed),
            this.preempt_count.load(Ordering::Relaxed),
            queued
        ));
    }
    super::process::debug_dump();
}

#[cfg(test)]
mod tests {
    use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use super::*;
    use crate::arch::time;

    /// The CPUs each affinity-test thread ran on, one bit each.
    static RAN_ON: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
    static DONE: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn pinned_worker(index: usize) -> ! {
        for _ in 0..200 {
            RAN_ON[index].fetch_or(1 << percpu::cpu_id(), Ordering::Relaxed);
            yield_now();
        }
        DONE.fetch_add(1, Ordering::AcqRel);
        exit_current()
    }

    #[test_case]
    fn threads_run_only_on_the_cpus_of_their_affinity() {
        let cpus = online();
        assert!(cpus.len() >= 2, "this test needs at least 2 CPUs (SMP >= 2)");
        DONE.store(0, Ordering::SeqCst);
        // Preempted often, so that placement, requeueing and stealing all
        // get their chances to move a thread where it must not go.
        time::set_tick_hz(1000);
        let last = cpus.iter().last().expect("a CPU");
        for (index, slot) in RAN_ON.iter().enumerate() {
            slot.store(0, Ordering::SeqCst);
            let thread = Thread::new_kernel(pinned_worker, index).expect("a kernel thread");
            // Two threads on the last CPU alone, two on CPU 0 alone, all
            // placed first on the other CPU.
            let (cpu, hint) = if index % 2 == 0 { (last, 0) } else { (0, last) };
            set_affinity(&thread, 1 << cpu);
            thread.prefer_cpu(hint);
            enqueue(thread);
        }
        while DONE.load(Ordering::Acquire) < RAN_ON.len() {
            yield_now();
        }
        time::set_tick_hz(time::HZ);
        for (index, slot) in RAN_ON.iter().enumerate() {
            let want = if index % 2 == 0 { 1u64 << last } else { 1 };
            assert_eq!(slot.load(Ordering::SeqCst), want, "thread {index} ran outside its affinity");
        }
    }
}
