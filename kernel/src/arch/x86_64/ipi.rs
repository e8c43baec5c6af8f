//! Cross-CPU calls: run a closure on a set of CPUs, optionally waiting until
//! all have run it. The TLB shootdown primitive is built on this.
//!
//! Each CPU has a queue of pending requests (in its `PerCpu`); the caller
//! queues a request on every target, sends each an IPI, runs the closure
//! locally if it is a target itself, and waits. While it waits it keeps
//! serving its own queue, so two CPUs calling each other at the same time,
//! or a target that is itself waiting on a call, cannot deadlock, even with
//! interrupts disabled.
//!
//! Rule: do not wait on a call while holding a lock that the called closure
//! (or any other call queued before it) takes.
//!
//! A call is pinned from start to end (a `PreemptGuard`): "this CPU" must be
//! one CPU for all of it. Unpinned, a caller could read its CPU id, migrate,
//! and then run the local part on its new CPU (which also gets the IPI)
//! while its old CPU gets nothing: a TLB shootdown that skips a CPU.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::apic::{self, Delivery, Destination};
use super::percpu::{self, MAX_CPUS};
use crate::sync::{Level, SpinLock};

pub const CALL_VECTOR: u8 = 0xf0;

/// A set of CPUs, by index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuSet(u64);

impl CpuSet {
    pub const fn empty() -> Self {
        CpuSet(0)
    }

    pub fn single(cpu: usize) -> Self {
        CpuSet(1 << cpu)
    }

    pub fn insert(&mut self, cpu: usize) {
        self.0 |= 1 << cpu;
    }

    pub fn remove(&mut self, cpu: usize) {
        self.0 &= !(1 << cpu);
    }

    pub fn contains(&self, cpu: usize) -> bool {
        cpu < MAX_CPUS && self.0 & (1 << cpu) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn iter(&self) -> impl Iterator<Item = usize> {
        let bits = self.0;
        (0..MAX_CPUS).filter(move |cpu| bits & (1 << cpu) != 0)
    }

    pub fn bits(&self) -> u64 {
        self.0
    }

    pub const fn from_bits(bits: u64) -> Self {
        CpuSet(bits)
    }
}

/// CPUs that finished bring-up.
static ONLINE: AtomicU64 = AtomicU64::new(0);

pub fn mark_online(cpu: usize) {
    ONLINE.fetch_or(1 << cpu, Ordering::AcqRel);
}

pub fn online() -> CpuSet {
    CpuSet(ONLINE.load(Ordering::Acquire))
}

/// Calls handled on this machine, for statistics.
pub static CALLS_HANDLED: AtomicU64 = AtomicU64::new(0);

struct CallRequest {
    /// Lifetime erased: for a waited call the caller's frame outlives every
    /// use (it waits for `pending == 0`); an owned call lives in the heap.
    func: *const (dyn Fn() + Sync),
    /// Targets that have not finished yet.
    pending: AtomicUsize,
    /// Heap-allocated (a call nobody waits for): the last target frees it.
    owned: bool,
}

/// A pointer to a request, as queued on a target CPU.
#[derive(Clone, Copy)]
struct RequestPtr(*const CallRequest);

// SAFETY: a request is only touched through atomics and the shared closure
// (which is Sync), and it outlives its time in any queue (see `CallRequest`).
unsafe impl Send for RequestPtr {}

const QUEUE_CAPACITY: usize = 32;

/// A CPU's pending calls: a fixed ring, so queuing never allocates.
pub struct CallQueue {
    slots: [Option<RequestPtr>; QUEUE_CAPACITY],
    head: usize,
    len: usize,
}

impl CallQueue {
    pub const fn new() -> Self {
        CallQueue { slots: [None; QUEUE_CAPACITY], head: 0, len: 0 }
    }

    fn push(&mut self, request: RequestPtr) -> bool {
        if self.len == QUEUE_CAPACITY {
            return false;
        }
        self.slots[(self.head + self.len) % QUEUE_CAPACITY] = Some(request);
        self.len += 1;
        true
    }

    fn pop(&mut self) -> Option<RequestPtr> {
        if self.len == 0 {
            return None;
        }
        let request = self.slots[self.head].take();
        self.head = (self.head + 1) % QUEUE_CAPACITY;
        self.len -= 1;
        request
    }
}

impl Default for CallQueue {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs every call queued for this CPU.
pub fn serve_calls() {
    // Pinned while serving: the queue is this CPU's, and each request must
    // run on the CPU it was queued for (a flush on the wrong CPU is no flush).
    let _pin = percpu::PreemptGuard::new();
    let calls = &percpu::current().calls;
    loop {
        // A statement of its own: the queue lock must not be held while the
        // call runs (a `while let` would keep the guard for the whole body).
        let next = calls.lock().pop();
        let Some(RequestPtr(request)) = next else { break };
        // SAFETY: a queued request stays valid until its `pending` count,
        // which includes us, reaches zero (see `CallRequest`).
        let req = unsafe { &*request };
        // Read before our decrement: once `pending` drops, a waiting caller
        // may return and its stack (the request) is gone.
        let owned = req.owned;
        // SAFETY: as above, the closure outlives the request.
        unsafe { (*req.func)() };
        CALLS_HANDLED.fetch_add(1, Ordering::Relaxed);
        if req.pending.fetch_sub(1, Ordering::AcqRel) == 1 && owned {
            // SAFETY: owned requests and their closures come from
            // `Box::into_raw` in `call_async`, and we were the last user.
            unsafe {
                drop(Box::from_raw(req.func as *mut (dyn Fn() + Sync)));
                drop(Box::from_raw(request as *mut CallRequest));
            }
        }
    }
}

pub fn handle_call_ipi(_frame: &mut super::TrapFrame) {
    apic::eoi();
    serve_calls();
}

/// Queues `request` on every CPU in `targets` and interrupts them.
/// The caller is pinned: `targets` was computed without this CPU.
fn post(targets: CpuSet, request: *const CallRequest) {
    debug_assert!(percpu::pinned(), "a cross-CPU call from code that can migrate");
    for cpu in targets.iter() {
        let target = percpu::get(cpu).expect("call to a CPU that is not online");
        while !target.calls.lock().push(RequestPtr(request)) {
            // The target's queue is full: it may be waiting on us. Help it along.
            serve_calls();
            core::hint::spin_loop();
        }
        apic::send_ipi(Destination::Apic(target.apic_id), Delivery::Fixed(CALL_VECTOR));
    }
}

/// Runs `f` on every CPU in `cpus` (this one included if it is in the set)
/// and returns when all of them have. The caller stays on its CPU for the
/// whole call (see the module comment).
pub fn call_on(cpus: CpuSet, f: &(dyn Fn() + Sync)) {
    let _pin = percpu::PreemptGuard::new();
    let me = percpu::cpu_id();
    let mut others = CpuSet(cpus.bits() & online().bits());
    others.remove(me);
    // SAFETY: erasing the lifetime is sound because we do not return before
    // every target has finished with `f` (the wait below).
    let func: *const (dyn Fn() + Sync) = unsafe { core::mem::transmute(f) };
    let request = CallRequest { func, pending: AtomicUsize::new(others.len()), owned: false };
    post(others, &request);
    if cpus.contains(me) {
        f();
    }
    while request.pending.load(Ordering::Acquire) != 0 {
        serve_calls();
        core::hint::spin_loop();
    }
}

/// Queues `f` on every CPU in `cpus` except this one, without waiting.
pub fn call_async(cpus: CpuSet, f: Box<dyn Fn() + Send + Sync>) {
    let _pin = percpu::PreemptGuard::new();
    let mut others = CpuSet(cpus.bits() & online().bits());
    others.remove(percpu::cpu_id());
    if others.is_empty() {
        return;
    }
    let func: *const (dyn Fn() + Sync) = Box::into_raw(f);
    let request = Box::into_raw(Box::new(CallRequest { func, pending: AtomicUsize::new(others.len()), owned: true }));
    post(others, request);
}

/// Runs `f` on each CPU in `cpus` and collects what each returned, by CPU.
pub fn run_on_each<R: Send>(cpus: CpuSet, f: impl Fn() -> R + Sync) -> Vec<(usize, R)> {
    let slots: Vec<SpinLock<Option<R>>> = (0..MAX_CPUS).map(|_| SpinLock::new(Level::CallResults, None)).collect();
    call_on(cpus, &|| {
        let result = f();
        *slots[percpu::cpu_id()].lock() = Some(result);
    });
    slots.into_iter().enumerate().filter_map(|(cpu, slot)| Some((cpu, slot.lock().take()?))).collect()
}

#[cfg(test)]
mod tests {
    use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

    use super::{call_on, online};
    use crate::arch::percpu::{self, MAX_CPUS};
    use crate::arch::time;
    use crate::task::wait::WaitQueue;
    use crate::task::{sched, Thread};

    const THREADS: usize = 8;
    const CALLS: u64 = 300;
    const FAST_TICK_HZ: u64 = 2000;

    static WRONG: AtomicU64 = AtomicU64::new(0);
    static DONE: AtomicUsize = AtomicUsize::new(0);
    static PARK: WaitQueue = WaitQueue::new();
    static GENERATION: AtomicU64 = AtomicU64::new(0);

    /// Calls every CPU over and over; each call must run exactly once on
    /// each target, whatever the caller's preemptions and migrations.
    extern "C" fn call_everyone(index: usize) -> ! {
        for call in 0..CALLS {
            let hits: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
            let targets = online();
            call_on(targets, &|| {
                hits[percpu::cpu_id()].fetch_add(1, Ordering::Relaxed);
            });
            for (cpu, hit) in hits.iter().enumerate() {
                if hit.load(Ordering::Relaxed) != targets.contains(cpu) as u32 {
                    WRONG.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Park now and then (woken by the test), so CPUs run dry and
            // steal preempted callers: that is what moves one mid-call.
            if call % 2 == index as u64 % 2 {
                let seen = GENERATION.load(Ordering::Acquire);
                PARK.wait_until(|| GENERATION.load(Ordering::Acquire) != seen);
            }
        }
        DONE.fetch_add(1, Ordering::AcqRel);
        sched::exit_current()
    }

    #[test_case]
    fn every_target_runs_a_call_once_while_callers_are_preempted_and_migrated() {
        assert!(online().len() >= 2, "this test needs at least 2 CPUs (SMP >= 2)");
        WRONG.store(0, Ordering::SeqCst);
        DONE.store(0, Ordering::SeqCst);
        time::set_tick_hz(FAST_TICK_HZ);
        for index in 0..THREADS {
            sched::enqueue(Thread::new_kernel(call_everyone, index).expect("a kernel thread"));
        }
        while DONE.load(Ordering::Acquire) < THREADS {
            GENERATION.fetch_add(1, Ordering::AcqRel);
            PARK.wake_all();
            sched::yield_now();
        }
        time::set_tick_hz(time::HZ);
        assert_eq!(WRONG.load(Ordering::Relaxed), 0, "a call skipped a CPU or ran twice on one");
    }
}
