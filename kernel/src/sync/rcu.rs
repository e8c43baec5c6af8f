//! Read-copy-update, quiescent-state based (QSBR).
//!
//! Readers pay almost nothing: `read_lock` disables preemption and bumps a
//! per-CPU depth counter; nothing is shared between CPUs on the read side. A
//! writer unpublishes an object (an atomic store or swap) and then either
//! waits (`synchronize_rcu`) or queues its destruction (`call_rcu`) until a
//! *grace period* (GP) has ended: a span in which every CPU passed a
//! *quiescent state* (QS), a point where it is outside any read section.
//! A reader that could have seen the old object was inside a section when the
//! GP began, so it has left by the time the GP ends.
//!
//! # Where CPUs pass quiescent states
//!
//! - any call of `sched::schedule()` (a context switch, a yield, a sleep, a
//!   preemption at the end of an interrupt). It debug-asserts that it is
//!   not called inside a read section: a section disables preemption, so
//!   only an explicit block or yield could get there, and that is a bug;
//! - the idle loop (`idle`);
//! - the way back to user mode (`on_return_to_user`);
//! - the timer tick, when it interrupted user mode or the idle thread outside
//!   any read section (preemption count and depth both zero). So CPUs asleep
//!   in `hlt` or running user code do not hold grace periods up. A busy
//!   kernel thread passes its QSs through `schedule()` (the tick preempts it,
//!   or it yields). Today every tick also ends in `schedule()` when the
//!   interrupted code is preemptible (user mode, idle), so the two overlap;
//!   the tick's own report does not rely on that.
//!
//! # Grace periods
//!
//! The bookkeeping (`GP_SEQ`, `COMPLETED`, `PENDING`, requests, each CPU's
//! last reported GP), its ordering argument and why the member set is
//! fixed at `init` are in `mmsync::rcu` (`kernel/mmsync`), which this file
//! calls and which the host model-checks with loom (`make model-test`).
//! Here: `GP` is that state, and `KernelCpus` gives it the current CPU,
//! each CPU's `CpuGp` and interrupt masking (reports run with interrupts
//! off, so they never nest). A writer unpublishes, then `next_gp` (a SeqCst
//! fence and load: the target is `GP_SEQ + 1`); a report loads `GP_SEQ`,
//! fences, and clears its bit. Every tick also tries to start a needed GP.
//!
//! # Callbacks
//!
//! `call_rcu` queues on this CPU's FIFO with target `GP_SEQ + 1`, loaded
//! after the caller's unpublish (fence, SeqCst load). Callbacks run on the
//! CPU that queued them, oldest first, once `COMPLETED >= target`: from the
//! idle loop, on the way back to user mode, and in the loops of
//! `synchronize_rcu` and `rcu_barrier`. They run in process context with
//! interrupts on and no spinlock held, pinned to the CPU (preemption
//! disabled), so they must not sleep; they may call `call_rcu`. The tick
//! only marks that the oldest callback is ready. A CPU that never idles and
//! never returns to user mode runs its callbacks late (when it does).

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::marker::PhantomData;
use core::sync::atomic::{compiler_fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use mmsync::rcu::{CpuGp, Cpus, GpState};

use crate::arch::percpu::{self, PreemptGuard, MAX_CPUS};
use crate::sync::{Level, SpinLock};

type Callback = Box<dyn FnOnce() + Send>;

/// One CPU's RCU state. Only the CPU itself changes `nesting`, `gp` and
/// its list; other CPUs read the counters (`rcu_barrier`).
struct CpuRcu {
    /// Read-section depth. Changed only by code running on this CPU while it
    /// is pinned; an interrupt handler that takes a section puts it back
    /// before it returns, so a plain load and store are enough.
    nesting: AtomicUsize,
    /// The last GP this CPU reported a QS for.
    gp: CpuGp,
    /// Callbacks queued here, oldest first, with the GP each waits for.
    /// Targets never decrease along the list (`GP_SEQ` only grows).
    callbacks: SpinLock<VecDeque<(u64, Callback)>>,
    /// Callbacks ever queued here and ever run here (monotonic).
    queued: AtomicU64,
    invoked: AtomicU64,
    /// Set by the tick: the oldest callback's GP has ended.
    ready: AtomicBool,
    /// A runner is invoking this CPU's callbacks (no re-entry from one).
    running: AtomicBool,
}

impl CpuRcu {
    const fn new() -> Self {
        CpuRcu {
            nesting: AtomicUsize::new(0),
            gp: CpuGp::new(),
            callbacks: SpinLock::new(Level::RcuCallbacks, VecDeque::new()),
            queued: AtomicU64::new(0),
            invoked: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            running: AtomicBool::new(false),
        }
    }
}

static CPUS: [CpuRcu; MAX_CPUS] = [const { CpuRcu::new() }; MAX_CPUS];

/// The grace periods (`mmsync::rcu`).
static GP: GpState = GpState::new();

/// What `GP` needs from the machine: this CPU, each CPU's `CpuGp`,
/// interrupt masking, and the kernel's debug checks.
struct KernelCpus;

impl Cpus for KernelCpus {
    fn current(&self) -> usize {
        percpu::cpu_id()
    }

    fn cpu(&self, cpu: usize) -> &CpuGp {
        &CPUS[cpu].gp
    }

    fn without_interrupts<R>(&self, f: impl FnOnce() -> R) -> R {
        let saved = crate::arch::disable_interrupts();
        let result = f();
        crate::arch::restore_interrupts(saved);
        result
    }

    fn check_quiescent(&self, cpu: usize) {
        debug_assert_eq!(CPUS[cpu].nesting.load(Ordering::Relaxed), 0, "a quiescent state inside an RCU read section");
    }

    fn check_members(&self, members: u64) {
        debug_assert_eq!(crate::arch::ipi::online().bits() & !members, 0, "a CPU came online after rcu::init");
    }
}

static CALLBACKS_QUEUED: AtomicU64 = AtomicU64::new(0);
static CALLBACKS_RUN: AtomicU64 = AtomicU64::new(0);

/// How long `synchronize_rcu` and `rcu_barrier` sleep between checks.
const POLL_NS: u64 = 1_000_000_000 / crate::arch::time::HZ;

/// Counters since boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RcuStats {
    /// Grace periods that ended.
    pub grace_periods: u64,
    /// `call_rcu` calls.
    pub callbacks_queued: u64,
    /// Callbacks that have run.
    pub callbacks_run: u64,
}

pub fn stats() -> RcuStats {
    RcuStats {
        grace_periods: GP.grace_periods(),
        callbacks_queued: CALLBACKS_QUEUED.load(Ordering::Relaxed),
        callbacks_run: CALLBACKS_RUN.load(Ordering::Relaxed),
    }
}

/// Takes part the CPUs online now. Called once, when every CPU is up and
/// before anything waits for a grace period.
pub fn init() {
    // Callbacks queued during boot asked for GP 1: `init` starts it.
    GP.init(crate::arch::ipi::online().bits(), &KernelCpus);
}

/// A read section: while it lives this CPU is not preempted and passes no
/// quiescent state, so objects it can see are not freed. Not `Send` (nor
/// `Sync`): it belongs to this CPU. Sections nest. Inside one: no sleeping
/// lock, no blocking, no `schedule()`.
pub struct RcuReadGuard {
    // Dropped after `drop` has lowered the depth.
    _pin: PreemptGuard,
}

/// Enters a read section.
pub fn read_lock() -> RcuReadGuard {
    let pin = PreemptGuard::new();
    // Pinned: `cpu_id` is ours until the guard goes.
    let this = &CPUS[percpu::cpu_id()];
    this.nesting.store(this.nesting.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    // The section's loads stay after the depth rises, as the tick sees it
    // (it runs on this CPU).
    compiler_fence(Ordering::SeqCst);
    RcuReadGuard { _pin: pin }
}

impl Drop for RcuReadGuard {
    fn drop(&mut self) {
        compiler_fence(Ordering::SeqCst);
        let this = &CPUS[percpu::cpu_id()];
        let depth = this.nesting.load(Ordering::Relaxed);
        debug_assert!(depth > 0, "RCU read section depth underflow");
        this.nesting.store(depth - 1, Ordering::Relaxed);
    }
}

/// Whether this CPU is inside a read section (meaningful when pinned).
pub fn in_read_section() -> bool {
    CPUS[percpu::cpu_id()].nesting.load(Ordering::Relaxed) != 0
}

/// This CPU is outside any read section: report a QS for the current GP if
/// it has not yet. Disables interrupts for the report, so reports on one CPU
/// never nest (see `mmsync::rcu`).
fn quiescent_state() {
    GP.quiescent_state(&KernelCpus);
}

/// Starts a GP if one is wanted and nobody else is starting one.
fn try_start_gp() {
    GP.try_start_gp(&KernelCpus);
}

/// Asks for GP `target` to be started (once the one before it ended).
fn request(target: u64) {
    GP.request(target, &KernelCpus);
}

/// The GP that will have ended once every reader that might have seen an
/// object unpublished before this call has left: the next one to start.
fn next_gp() -> u64 {
    GP.next_gp()
}

/// Queues `f` to run once every read section that exists now has ended. It
/// runs on this CPU, after the callbacks queued here before it, in process
/// context with interrupts on and preemption disabled: it must not sleep.
pub fn call_rcu(f: impl FnOnce() + Send + 'static) {
    let callback: Callback = Box::new(f);
    let target = {
        let _pin = PreemptGuard::new();
        let this = &CPUS[percpu::cpu_id()];
        let mut list = this.callbacks.lock();
        // Under the list lock, so targets along the list never decrease.
        let target = next_gp();
        list.push_back((target, callback));
        this.queued.fetch_add(1, Ordering::Release);
        target
    };
    CALLBACKS_QUEUED.fetch_add(1, Ordering::Relaxed);
    request(target);
}

/// Runs this CPU's callbacks whose GP has ended, oldest first. Process
/// context only: does nothing with interrupts off or inside a read section.
/// Callbacks one `run_callbacks` call runs at most.
const BATCH: usize = 64;

fn run_callbacks() {
    if !crate::arch::interrupts_enabled() {
        return;
    }
    let _pin = PreemptGuard::new();
    let this = &CPUS[percpu::cpu_id()];
    if this.nesting.load(Ordering::Relaxed) != 0
        || this.queued.load(Ordering::Relaxed) == this.invoked.load(Ordering::Relaxed)
    {
        return;
    }
    if this.running.swap(true, Ordering::Relaxed) {
        return; // a callback called us
    }
    this.ready.store(false, Ordering::Relaxed);
    // A bounded batch: callbacks run with preemption off, and a CPU with
    // thousands queued must still reach the scheduler now and then (the
    // rest stay ready for its next idle pass or return to user mode).
    for _ in 0..BATCH {
        let done = GP.completed();
        // A statement of its own: the lock is not held while the callback runs.
        let next = {
            let mut list = this.callbacks.lock();
            match list.front() {
                Some(&(target, _)) if target <= done => list.pop_front(),
                _ => None,
            }
        };
        let Some((_, callback)) = next else {
            this.running.store(false, Ordering::Relaxed);
            return;
        };
        callback();
        this.invoked.fetch_add(1, Ordering::Release);
        CALLBACKS_RUN.fetch_add(1, Ordering::Relaxed);
    }
    this.ready.store(true, Ordering::Relaxed);
    this.running.store(false, Ordering::Relaxed);
}

fn assert_may_block(what: &str) {
    debug_assert!(!in_read_section(), "{what} inside an RCU read section");
    debug_assert!(
        percpu::preemptible() && crate::arch::interrupts_enabled(),
        "{what} with preemption or interrupts disabled"
    );
    assert!(GP.members() != 0, "{what} before rcu::init");
}

/// Blocks until every read section that exists now has ended: returns once
/// a GP that started after the call has ended. Sleeps, so not from a read
/// section, an interrupt handler, or with a spinlock held.
pub fn synchronize_rcu() {
    assert_may_block("synchronize_rcu");
    let target = next_gp();
    request(target);
    while GP.completed() < target {
        run_callbacks();
        try_start_gp();
        // The sleep goes through `schedule()`: this CPU's QS.
        crate::task::timer::sleep_ns(POLL_NS);
    }
}

/// Returns once every callback queued (on any CPU) before the call has run.
/// Each CPU runs its own callbacks in order, so it is enough that each has
/// run as many as it had queued.
pub fn rcu_barrier() {
    assert_may_block("rcu_barrier");
    let goal: [u64; MAX_CPUS] = core::array::from_fn(|cpu| CPUS[cpu].queued.load(Ordering::Acquire));
    loop {
        run_callbacks();
        if CPUS.iter().zip(goal.iter()).all(|(cpu, &goal)| cpu.invoked.load(Ordering::Acquire) >= goal) {
            return;
        }
        try_start_gp();
        // The sleep goes through `schedule()`: this CPU's QS.
        crate::task::timer::sleep_ns(POLL_NS);
    }
}

/// Hook: the start of `sched::schedule()` (interrupts off).
pub(crate) fn on_schedule() {
    debug_assert!(!in_read_section(), "schedule() inside an RCU read section");
    quiescent_state();
}

/// Hook: the idle loop, between looking for work and `hlt`.
/// Says whether ready callbacks are left for another pass.
pub(crate) fn on_idle() -> bool {
    quiescent_state();
    run_callbacks();
    CPUS[percpu::cpu_id()].ready.load(Ordering::Relaxed)
}

/// Hook: every way back to user mode (`task::return_to_user`), with
/// interrupts on (system calls) or off (interrupts and exceptions).
pub(crate) fn on_return_to_user() {
    quiescent_state();
    // A hint (we may migrate): a miss runs them on a later return.
    if CPUS[percpu::cpu_id()].ready.load(Ordering::Relaxed) {
        let saved = crate::arch::interrupts_enabled();
        if !saved {
            // The interrupt is handled (EOI sent); from here we are the
            // thread on its way out, which may take interrupts.
            crate::arch::enable_interrupts();
        }
        run_callbacks();
        if !saved {
            let _ = crate::arch::disable_interrupts();
        }
    }
}

/// Hook: the timer tick (interrupts off). `from_user`: it interrupted user
/// mode. Never runs callbacks, only marks them ready.
pub(crate) fn on_tick(from_user: bool) {
    let this = &CPUS[percpu::cpu_id()];
    // The tick raises neither count, so both are the interrupted code's.
    let idle_outside =
        crate::task::sched::running_idle() && percpu::preempt_count() == 0 && this.nesting.load(Ordering::Relaxed) == 0;
    if from_user || idle_outside {
        quiescent_state();
    }
    try_start_gp();
    // Never spins: the list's lock is only held with interrupts off, so on
    // this CPU it is free here, and no other CPU takes it.
    if let Some(list) = this.callbacks.try_lock() {
        let done = GP.completed();
        if list.front().is_some_and(|&(target, _)| target <= done) {
            this.ready.store(true, Ordering::Relaxed);
        }
    }
}

/// An `Arc<T>` published to RCU readers. Readers borrow the current value
/// for no longer than their read section (`read`) or take their own
/// reference (`clone_arc`); a writer swaps in a new value (`replace`) and
/// the old one is dropped after a grace period. Writers are serialised by
/// the caller.
pub struct RcuArc<T: Send + Sync + 'static> {
    /// From `Arc::into_raw`: the slot owns one count of it.
    ptr: AtomicPtr<T>,
    _owns: PhantomData<Arc<T>>,
}

impl<T: Send + Sync + 'static> RcuArc<T> {
    pub fn new(value: Arc<T>) -> Self {
        RcuArc { ptr: AtomicPtr::new(Arc::into_raw(value).cast_mut()), _owns: PhantomData }
    }

    /// The current value, for as long as the read section lasts.
    pub fn read<'a>(&'a self, _guard: &'a RcuReadGuard) -> &'a T {
        let ptr = self.ptr.load(Ordering::Acquire);
        // The count `ptr` carries is given up only by `replace`, through
        // `call_rcu`, which waits until every read section that exists now
        // (ours: the guard is live for 'a and pins us) has ended, or by
        // `drop`, which needs `&mut self` and so no borrow like ours.
        // SAFETY: `ptr` came from `Arc::into_raw`; the object lives for 'a.
        unsafe { &*ptr }
    }

    /// Its own reference to the current value, which outlives the section.
    pub fn clone_arc(&self, _guard: &RcuReadGuard) -> Arc<T> {
        let ptr = self.ptr.load(Ordering::Acquire);
        // SAFETY: as in `read`: inside the section the object is alive and
        // its count is at least the slot's 1, so adding one is sound, and
        // `from_raw` takes over exactly the count we added.
        unsafe {
            Arc::increment_strong_count(ptr);
            Arc::from_raw(ptr)
        }
    }

    /// Publishes `new`; the old value is dropped once no reader can see it.
    pub fn replace(&self, new: Arc<T>) {
        // Release: readers that load `new` see it initialised. Acquire (and
        // SeqCst, for the GP ordering) on the old one we now own.
        let old = self.ptr.swap(Arc::into_raw(new).cast_mut(), Ordering::SeqCst);
        // SAFETY: `old` came from `Arc::into_raw`; the slot owned that count
        // and, after the swap, nobody else claims it.
        let old = unsafe { Arc::from_raw(old) };
        call_rcu(move || drop(old));
    }
}

impl<T: Send + Sync + 'static> Drop for RcuArc<T> {
    fn drop(&mut self) {
        // `&mut self`: no reader borrows from us any more (`read` ties its
        // reference to `&self`); `clone_arc` users hold their own counts.
        let ptr = *self.ptr.get_mut();
        // SAFETY: the slot's count, from `Arc::into_raw`, given up once.
        drop(unsafe { Arc::from_raw(ptr) });
    }
}

#[cfg(test)]
mod tests {
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};

    use super::*;
    use crate::arch::{ipi, time};
    use crate::task::{sched, timer, Thread};

    const SECOND: u64 = 1_000_000_000;
    /// How long a test waits for what should take a few ticks before it
    /// calls it a hang.
    const PATIENCE_NS: u64 = 10 * SECOND;
    /// How long a test watches that something does not happen (20 ticks:
    /// many grace periods' worth if RCU ignored the reader).
    const WATCH_NS: u64 = 200_000_000;
    const NS_PER_TICK: u64 = SECOND / time::HZ;

    fn enough_cpus() -> bool {
        let enough = ipi::online().len() >= 2;
        if !enough {
            crate::print!("(skipped: the reader needs a CPU of its own, SMP >= 2) ");
        }
        enough
    }

    /// Sleeps until `cond` holds or `ns` passed; whether it holds.
    fn wait_for(ns: u64, cond: impl Fn() -> bool) -> bool {
        wait_polling(ns, 1_000_000, cond)
    }

    /// `wait_for`, looking every `poll_ns`.
    fn wait_polling(ns: u64, poll_ns: u64, cond: impl Fn() -> bool) -> bool {
        let deadline = time::now_ns() + ns;
        while !cond() {
            if time::now_ns() >= deadline {
                return cond();
            }
            timer::sleep_ns(poll_ns);
        }
        true
    }

    fn spawn(entry: extern "C" fn(usize) -> !, arg: usize, cpu: Option<usize>) {
        let thread = Thread::new_kernel(entry, arg).expect("a kernel thread");
        if let Some(cpu) = cpu {
            thread.prefer_cpu(cpu);
        }
        sched::enqueue(thread);
    }

    /// A function run by a kernel thread of its own, so that a test can
    /// give up on it (a broken grace period would block it forever).
    struct Job {
        f: fn(),
        done: AtomicBool,
    }

    impl Job {
        fn done(&self) -> bool {
            self.done.load(SeqCst)
        }
    }

    extern "C" fn run_job(arg: usize) -> ! {
        // SAFETY: `arg` came from `Arc::into_raw` in `start_job`, whose count
        // this thread now owns.
        let job = unsafe { Arc::from_raw(arg as *const Job) };
        (job.f)();
        job.done.store(true, SeqCst);
        drop(job);
        sched::exit_current()
    }

    /// Starts `f` in a kernel thread, preferably on this CPU.
    fn start_job(f: fn()) -> Arc<Job> {
        let job = Arc::new(Job { f, done: AtomicBool::new(false) });
        spawn(run_job, Arc::into_raw(job.clone()) as usize, Some(percpu::cpu_id()));
        job
    }

    /// Whether `f`, run by a thread of its own, returned within `ns`.
    /// Looks every 10 ticks: fewer wake-ups of the test thread, which
    /// otherwise lands now and then on a CPU a test wants left alone.
    fn finishes_within(ns: u64, f: fn()) -> bool {
        let job = start_job(f);
        wait_polling(ns, 10 * NS_PER_TICK, || job.done())
    }

    // What the world looked like the moment `rcu_barrier` returned (read
    // by the job itself: the test thread looks later, when callbacks may
    // have run anyway).
    static BARRIER_SAW_CALLBACK: AtomicBool = AtomicBool::new(false);
    static BARRIER_SAW_DROPS: AtomicUsize = AtomicUsize::new(0);
    static BARRIER_SAW_COUNTED: AtomicUsize = AtomicUsize::new(0);
    static BARRIER_SAW_RUN: AtomicU64 = AtomicU64::new(0);

    fn barrier_and_look() {
        rcu_barrier();
        BARRIER_SAW_CALLBACK.store(CALLBACK_RAN.load(SeqCst), SeqCst);
        BARRIER_SAW_DROPS.store(DROPS.load(SeqCst), SeqCst);
        BARRIER_SAW_COUNTED.store(COUNTED.load(SeqCst), SeqCst);
        BARRIER_SAW_RUN.store(stats().callbacks_run, SeqCst);
    }

    // The reader of the first tests and what it says.
    static INSIDE: AtomicBool = AtomicBool::new(false);
    static LEAVE: AtomicBool = AtomicBool::new(false);
    static LEFT: AtomicBool = AtomicBool::new(false);
    static READER_DONE: AtomicBool = AtomicBool::new(false);

    fn reset_reader() {
        for flag in [&INSIDE, &LEAVE, &LEFT, &READER_DONE] {
            flag.store(false, SeqCst);
        }
    }

    /// Spins inside a read section (preemption off: its CPU is all its own)
    /// until told to leave; says `LEFT` as its last act inside.
    extern "C" fn reader(_: usize) -> ! {
        {
            let _guard = read_lock();
            INSIDE.store(true, SeqCst);
            let give_up = time::now_ns() + PATIENCE_NS;
            while !LEAVE.load(SeqCst) && time::now_ns() < give_up {
                core::hint::spin_loop();
            }
            LEFT.store(true, SeqCst);
        }
        READER_DONE.store(true, SeqCst);
        sched::exit_current()
    }

    /// A CPU for a reader that spins with preemption off: not this one, on
    /// which the test thread and its jobs were started (they are woken onto
    /// their last CPU; one queued behind the spinner waits until an idle
    /// CPU steals it).
    fn reader_cpu() -> Option<usize> {
        let me = percpu::cpu_id();
        ipi::online().iter().find(|&c| c != me)
    }

    fn start_reader() {
        reset_reader();
        spawn(reader, 0, reader_cpu());
        assert!(wait_for(PATIENCE_NS, || INSIDE.load(SeqCst)), "the reader never entered its section");
    }

    static WRITER_SAW_LEFT: AtomicBool = AtomicBool::new(false);

    #[test_case]
    fn synchronize_rcu_waits_for_a_reader_already_inside_on_another_cpu() {
        if !enough_cpus() {
            return;
        }
        start_reader();
        WRITER_SAW_LEFT.store(false, SeqCst);
        let writer = start_job(|| {
            synchronize_rcu();
            WRITER_SAW_LEFT.store(LEFT.load(SeqCst), SeqCst);
        });
        timer::sleep_ns(WATCH_NS);
        let returned_early = writer.done();
        LEAVE.store(true, SeqCst);
        assert!(wait_for(PATIENCE_NS, || writer.done()), "synchronize_rcu did not return after the reader left");
        assert!(!returned_early, "synchronize_rcu returned while a reader that was inside before the call still was");
        assert!(WRITER_SAW_LEFT.load(SeqCst), "synchronize_rcu returned before the reader left");
        assert!(wait_for(PATIENCE_NS, || READER_DONE.load(SeqCst)));
    }

    static LATE_BASE: AtomicU64 = AtomicU64::new(0);
    static WRITER_DONE: AtomicBool = AtomicBool::new(false);
    static LATE_SAW_WRITER_DONE: AtomicBool = AtomicBool::new(false);

    /// Waits (outside any section) for the writer's grace period to start,
    /// passes a quiescent state of its own in it (a yield), then enters a
    /// section and stays until the writer returned (or patience runs out).
    extern "C" fn late_reader(_: usize) -> ! {
        let give_up = time::now_ns() + PATIENCE_NS;
        while GP.gp_seq() <= LATE_BASE.load(SeqCst) && time::now_ns() < give_up {
            sched::yield_now();
        }
        sched::yield_now();
        {
            let _guard = read_lock();
            INSIDE.store(true, SeqCst);
            let give_up = time::now_ns() + PATIENCE_NS;
            while !WRITER_DONE.load(SeqCst) && time::now_ns() < give_up {
                core::hint::spin_loop();
            }
            LATE_SAW_WRITER_DONE.store(WRITER_DONE.load(SeqCst), SeqCst);
        }
        READER_DONE.store(true, SeqCst);
        sched::exit_current()
    }

    #[test_case]
    fn synchronize_rcu_does_not_wait_for_a_reader_that_entered_after_it() {
        if !enough_cpus() {
            return;
        }
        // Nothing queued, no grace period running: the writer's call starts
        // GP `base + 1` itself, and nothing else starts one.
        assert!(finishes_within(PATIENCE_NS, rcu_barrier));
        assert!(wait_for(PATIENCE_NS, || GP.completed() == GP.gp_seq()));
        reset_reader();
        WRITER_DONE.store(false, SeqCst);
        LATE_SAW_WRITER_DONE.store(false, SeqCst);
        LATE_BASE.store(GP.gp_seq(), SeqCst);
        spawn(late_reader, 0, reader_cpu());
        let writer = start_job(|| {
            synchronize_rcu();
            WRITER_DONE.store(true, SeqCst);
        });
        assert!(wait_for(2 * PATIENCE_NS, || READER_DONE.load(SeqCst)), "the late reader never finished");
        assert!(INSIDE.load(SeqCst), "the late reader never entered");
        assert!(
            LATE_SAW_WRITER_DONE.load(SeqCst),
            "synchronize_rcu waited for a reader that entered its section after the grace period began"
        );
        assert!(wait_for(PATIENCE_NS, || writer.done()));
    }

    static CALLBACK_RAN: AtomicBool = AtomicBool::new(false);
    static CALLBACK_SAW_LEFT: AtomicBool = AtomicBool::new(false);

    #[test_case]
    fn a_callback_waits_for_a_reader_inside_and_runs_once_it_left() {
        if !enough_cpus() {
            return;
        }
        start_reader();
        CALLBACK_RAN.store(false, SeqCst);
        CALLBACK_SAW_LEFT.store(false, SeqCst);
        call_rcu(|| {
            CALLBACK_SAW_LEFT.store(LEFT.load(SeqCst), SeqCst);
            CALLBACK_RAN.store(true, SeqCst);
        });
        // Meanwhile this CPU idles, which is where its callbacks run.
        timer::sleep_ns(WATCH_NS);
        let ran_early = CALLBACK_RAN.load(SeqCst);
        LEAVE.store(true, SeqCst);
        assert!(finishes_within(PATIENCE_NS, barrier_and_look), "rcu_barrier did not return");
        assert!(!ran_early, "the callback ran while a reader that was inside before call_rcu still was");
        assert!(BARRIER_SAW_CALLBACK.load(SeqCst), "rcu_barrier returned before the callback ran");
        assert!(CALLBACK_SAW_LEFT.load(SeqCst), "the callback ran before the reader left");
        assert!(wait_for(PATIENCE_NS, || READER_DONE.load(SeqCst)));
    }

    const ROUNDS: u64 = 10;
    static ROUNDS_NS: AtomicU64 = AtomicU64::new(0);
    static LONGEST_NS: AtomicU64 = AtomicU64::new(0);

    /// `ROUNDS` calls of `synchronize_rcu`, timed.
    fn timed_synchronizes() {
        ROUNDS_NS.store(0, SeqCst);
        LONGEST_NS.store(0, SeqCst);
        for _ in 0..ROUNDS {
            let start = time::now_ns();
            synchronize_rcu();
            let took = time::now_ns() - start;
            ROUNDS_NS.fetch_add(took, SeqCst);
            LONGEST_NS.fetch_max(took, SeqCst);
        }
    }

    fn print_timing() {
        let mean_tenths = ROUNDS_NS.load(SeqCst) * 10 / ROUNDS / NS_PER_TICK;
        let longest_tenths = LONGEST_NS.load(SeqCst) * 10 / NS_PER_TICK;
        crate::print!(
            "(info: synchronize_rcu took {}.{} ticks on average, {}.{} at most) ",
            mean_tenths / 10,
            mean_tenths % 10,
            longest_tenths / 10,
            longest_tenths % 10
        );
    }

    #[test_case]
    fn grace_periods_end_while_every_other_cpu_is_idle() {
        assert!(wait_for(PATIENCE_NS, || sched::queue_lengths().iter().all(|&(_, n)| n == 0)), "threads left over");
        let before = stats().grace_periods;
        assert!(finishes_within(PATIENCE_NS, timed_synchronizes), "grace periods stopped with the other CPUs idle");
        assert!(stats().grace_periods >= before + ROUNDS);
        print_timing();
    }

    static STOP_BUSY: AtomicBool = AtomicBool::new(false);
    static BUSY_RUNNING: AtomicUsize = AtomicUsize::new(0);
    static BUSY_LOOPS: AtomicU64 = AtomicU64::new(0);

    /// Never sleeps: computes, yields, computes, until told to stop.
    extern "C" fn busy(_: usize) -> ! {
        BUSY_RUNNING.fetch_add(1, SeqCst);
        while !STOP_BUSY.load(SeqCst) {
            BUSY_LOOPS.fetch_add(1, SeqCst);
            time::spin_ns(2_000_000);
            sched::yield_now();
        }
        BUSY_RUNNING.fetch_sub(1, SeqCst);
        sched::exit_current()
    }

    /// One busy thread per CPU: with as many threads always runnable as
    /// there are CPUs, no CPU ever switches to its idle thread (however
    /// the scheduler moves them; with one busy thread and idle CPUs it moved
    /// it back and forth, so its CPUs idled in turn) and none runs user
    /// code: every quiescent state comes from `schedule()`, the yields and
    /// the tick's preemptions.
    #[test_case]
    fn grace_periods_end_while_the_other_cpus_run_busy_kernel_threads() {
        let cpus = ipi::online().len();
        STOP_BUSY.store(false, SeqCst);
        BUSY_LOOPS.store(0, SeqCst);
        for _ in 0..cpus {
            spawn(busy, 0, None);
        }
        assert!(wait_for(PATIENCE_NS, || BUSY_RUNNING.load(SeqCst) == cpus), "the busy threads never all ran");
        let loops_before = BUSY_LOOPS.load(SeqCst);
        let finished = finishes_within(PATIENCE_NS, timed_synchronizes);
        let loops = BUSY_LOOPS.load(SeqCst) - loops_before;
        STOP_BUSY.store(true, SeqCst);
        assert!(finished, "grace periods stopped while the CPUs ran busy kernel threads");
        assert!(loops > 0, "the busy threads did not run meanwhile");
        assert!(wait_for(PATIENCE_NS, || BUSY_RUNNING.load(SeqCst) == 0));
        print_timing();
    }

    static DROPS: AtomicUsize = AtomicUsize::new(0);
    static ARC_INTACT: AtomicBool = AtomicBool::new(false);
    const OLD: u64 = 0x0123_4567_89ab_cdef;
    const NEW: u64 = 0xfedc_ba98_7654_3210;

    /// Big enough that the heap's free-list header (two words, written over
    /// the counts of the `Arc` allocation) leaves the words poisoned.
    struct Tracked {
        words: [u64; 64],
    }

    impl Tracked {
        fn new(pattern: u64) -> Arc<Tracked> {
            Arc::new(Tracked { words: [pattern; 64] })
        }

        /// Every word is `pattern`, read from memory each time (a plain
        /// read through `&self` may be assumed unchanged by the compiler).
        fn intact(&self, pattern: u64) -> bool {
            // SAFETY: each `word` is a reference into `self`: valid, aligned.
            self.words.iter().all(|word| unsafe { core::ptr::read_volatile(word) } == pattern)
        }
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            DROPS.fetch_add(1, SeqCst);
        }
    }

    /// Holds a reference from `read` across the test's `replace`.
    extern "C" fn arc_reader(arg: usize) -> ! {
        // SAFETY: `arg` came from `Arc::into_raw` in the test, whose count
        // this thread now owns.
        let slot = unsafe { Arc::from_raw(arg as *const RcuArc<Tracked>) };
        {
            let guard = read_lock();
            let value = slot.read(&guard);
            let before = value.intact(OLD);
            INSIDE.store(true, SeqCst);
            let give_up = time::now_ns() + PATIENCE_NS;
            while !LEAVE.load(SeqCst) && time::now_ns() < give_up {
                core::hint::spin_loop();
            }
            ARC_INTACT.store(before && value.intact(OLD), SeqCst);
            LEFT.store(true, SeqCst);
        }
        drop(slot);
        READER_DONE.store(true, SeqCst);
        sched::exit_current()
    }

    #[test_case]
    fn an_rcu_arc_reader_sees_the_old_value_intact_until_it_leaves_and_it_is_dropped_once() {
        if !enough_cpus() {
            return;
        }
        reset_reader();
        DROPS.store(0, SeqCst);
        ARC_INTACT.store(false, SeqCst);
        let slot = Arc::new(RcuArc::new(Tracked::new(OLD)));
        spawn(arc_reader, Arc::into_raw(slot.clone()) as usize, reader_cpu());
        assert!(wait_for(PATIENCE_NS, || INSIDE.load(SeqCst)), "the reader never entered its section");
        slot.replace(Tracked::new(NEW));
        {
            let guard = read_lock();
            assert!(slot.read(&guard).intact(NEW), "a new reader does not see the new value");
        }
        timer::sleep_ns(WATCH_NS);
        let dropped_early = DROPS.load(SeqCst);
        LEAVE.store(true, SeqCst);
        assert!(wait_for(PATIENCE_NS, || READER_DONE.load(SeqCst)));
        assert!(finishes_within(PATIENCE_NS, barrier_and_look), "rcu_barrier did not return");
        assert!(ARC_INTACT.load(SeqCst), "the reader's value changed under it (freed and poisoned?)");
        assert_eq!(dropped_early, 0, "the old value was dropped while a reader still held it");
        assert_eq!(BARRIER_SAW_DROPS.load(SeqCst), 1, "after rcu_barrier the old value was dropped exactly once");
        assert_eq!(DROPS.load(SeqCst), 1, "the old value was dropped exactly once");

        // A count taken inside a section outlives it and any replace.
        let kept = {
            let guard = read_lock();
            slot.clone_arc(&guard)
        };
        slot.replace(Tracked::new(OLD));
        assert!(finishes_within(PATIENCE_NS, rcu_barrier), "rcu_barrier did not return");
        assert_eq!(DROPS.load(SeqCst), 1, "clone_arc's count keeps the replaced value alive");
        assert!(kept.intact(NEW));
        drop(kept);
        assert_eq!(DROPS.load(SeqCst), 2);
        // The reader dropped its count: ours is the last, and dropping the
        // RcuArc drops its current value at once.
        assert_eq!(Arc::strong_count(&slot), 1);
        drop(slot);
        assert_eq!(DROPS.load(SeqCst), 3);
    }

    static COUNTED: AtomicUsize = AtomicUsize::new(0);

    #[test_case]
    fn the_rcu_counters_count_grace_periods_and_callbacks() {
        assert!(finishes_within(PATIENCE_NS, rcu_barrier));
        COUNTED.store(0, SeqCst);
        let before = stats();
        for _ in 0..3 {
            call_rcu(|| {
                COUNTED.fetch_add(1, SeqCst);
            });
        }
        assert_eq!(stats().callbacks_queued, before.callbacks_queued + 3);
        assert!(finishes_within(PATIENCE_NS, barrier_and_look));
        let after = stats();
        assert_eq!(BARRIER_SAW_COUNTED.load(SeqCst), 3, "rcu_barrier returned before every callback ran");
        assert_eq!(BARRIER_SAW_RUN.load(SeqCst), before.callbacks_run + 3);
        assert_eq!(after.callbacks_run, before.callbacks_run + 3);
        assert!(after.grace_periods > before.grace_periods, "callbacks ran without a grace period");
        assert!(finishes_within(PATIENCE_NS, synchronize_rcu));
        let last = stats();
        assert!(last.grace_periods > after.grace_periods, "synchronize_rcu returned without a grace period");
        assert_eq!((last.callbacks_queued, last.callbacks_run), (after.callbacks_queued, after.callbacks_run));
    }

    #[test_case]
    fn rcu_read_sections_nest_and_pin() {
        let outer = read_lock();
        assert!(in_read_section() && !percpu::preemptible());
        let inner = read_lock();
        drop(inner);
        assert!(in_read_section() && !percpu::preemptible(), "the outer section still holds");
        drop(outer);
        // Unpinned again: whatever CPU we are on now is outside a section.
        assert!(!in_read_section());
    }
}
