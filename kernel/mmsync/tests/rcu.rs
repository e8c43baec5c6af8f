//! Models of RCU's grace-period bookkeeping (`mmsync::rcu`, the code the
//! kernel's `sync/rcu.rs` calls), each loom thread a CPU. Run by
//! `make model-test`.
//!
//! - `rcu_lookup_vs_munmap`: the fault's lookup under RCU against munmap
//!   retiring the VMA. A reader CPU loads the published pointer in read
//!   sections and uses the object; the writer CPU unpublishes it, waits for
//!   the GP (`next_gp`, `request`, its own QSs) and frees it. Asserted: no
//!   use after free (a `freed` flag the reader checks, and the object is a
//!   loom `UnsafeCell` the free poisons: an unordered access is a violation).
//! - `rcu_callback_readiness`: three CPUs; one queues a callback (target =
//!   `next_gp()` after its unpublish) and polls for it; the others run read
//!   sections and report QSs. Asserted when it becomes ready: every CPU
//!   reported a QS for a GP at or after the target (so one that started
//!   after it was queued), and no CPU is inside a section that saw the old
//!   pointer. Then, with all threads joined, every CPU passes QSs until the
//!   GP ends: asserted it does (a lost report would hold it forever).
//!
//! Read sections need no code here: QSBR readers write nothing shared; a
//! section is simply the span between two QS reports of its CPU.
#![cfg(loom)]

mod common;

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use mmsync::rcu::{CpuGp, Cpus, GpState, Mutation};

const POISON: u64 = 0xdead;
const LIVE: u64 = 1;

/// An object readers reach through `World::published`.
struct Object {
    freed: AtomicBool,
    data: UnsafeCell<u64>,
}

impl Object {
    fn new() -> Object {
        Object { freed: AtomicBool::new(false), data: UnsafeCell::new(LIVE) }
    }

    /// What a reader inside a section does with the object it found.
    fn use_it(&self) {
        assert!(!self.freed.load(Ordering::Relaxed), "use after free: a reader used an object RCU freed");
        // SAFETY: the object is alive while a section that found it lasts
        // (what the model checks); an unordered free is what loom reports.
        let value = self.data.with(|p| unsafe { *p });
        assert_eq!(value, LIVE, "use after free: a reader saw the poison");
    }

    /// The writer frees it (a grace period after unpublishing it).
    fn free(&self) {
        self.freed.store(true, Ordering::Relaxed);
        // SAFETY: no reader can hold it any more (what the model checks).
        self.data.with_mut(|p| unsafe { *p = POISON });
    }
}

struct World {
    gp: GpState,
    cpus: Vec<CpuGp>,
    /// Index into `objects` of the published one.
    published: AtomicUsize,
    objects: [Object; 2],
    /// Per CPU: inside a section that holds object 0 (the unpublished one).
    holding_old: Vec<AtomicBool>,
}

impl World {
    fn new(mutation: Mutation, cpus: usize) -> Arc<World> {
        Arc::new(World {
            gp: GpState::mutated(mutation),
            cpus: (0..cpus).map(|_| CpuGp::new()).collect(),
            published: AtomicUsize::new(0),
            objects: [Object::new(), Object::new()],
            holding_old: (0..cpus).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    /// GP 1 running (all CPUs members) and GP 2 already asked for by an
    /// earlier caller, so GP 2 may be started by a CPU that never
    /// synchronised with this model's writer: what the fences are for.
    fn boot(&self) {
        let cpu0 = Cpu { world: self, id: 0 };
        self.gp.request(1, &cpu0);
        self.gp.init((1u64 << self.cpus.len()) - 1, &cpu0);
        self.gp.request(2, &cpu0);
        assert_eq!((self.gp.gp_seq(), self.gp.completed()), (1, 0));
    }

    fn cpu(&self, id: usize) -> Cpu<'_> {
        Cpu { world: self, id }
    }

    /// A read section on `cpu`: find the published object and use it.
    fn section(&self, cpu: usize) {
        let index = self.published.load(Ordering::Acquire);
        if index == 0 {
            self.holding_old[cpu].store(true, Ordering::Relaxed);
        }
        self.objects[index].use_it();
        if index == 0 {
            self.holding_old[cpu].store(false, Ordering::Relaxed);
        }
    }

    /// munmap's side: unpublish object 0 (`RcuArc::replace` swaps with
    /// SeqCst) and return the GP to wait for, asked for (`call_rcu`).
    fn unpublish(&self, cpu: &Cpu<'_>) -> u64 {
        self.published.store(1, Ordering::SeqCst);
        let target = self.gp.next_gp();
        self.gp.request(target, cpu);
        target
    }

    /// The waiter's loop (`synchronize_rcu`, a CPU's idle pass): its own
    /// QS, a start if one is wanted, then whether GP `target` ended.
    fn poll(&self, cpu: &Cpu<'_>, target: u64) -> bool {
        self.gp.quiescent_state(cpu);
        self.gp.try_start_gp(cpu);
        self.gp.completed() >= target
    }
}

/// A simulated CPU: a loom thread with a fixed id. Interrupt masking is a
/// no-op: a model thread never interrupts itself, so reports never nest.
struct Cpu<'a> {
    world: &'a World,
    id: usize,
}

impl Cpus for Cpu<'_> {
    fn current(&self) -> usize {
        self.id
    }

    fn cpu(&self, cpu: usize) -> &CpuGp {
        &self.world.cpus[cpu]
    }

    fn without_interrupts<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

/// How often the writer polls before it gives up (and frees nothing):
/// loom explores bounded programs, and safety is what is checked.
const POLLS: usize = 3;

/// CPU 0 unpublishes, waits for the GP and frees; CPU 1 reads. Returns
/// whether the writer freed (in this execution).
fn lookup_vs_munmap(mutation: Mutation) -> bool {
    let world = World::new(mutation, 2);
    world.boot();
    let w = world.clone();
    let reader = thread::spawn(move || {
        let cpu = w.cpu(1);
        w.gp.quiescent_state(&cpu);
        w.section(1);
        w.gp.quiescent_state(&cpu);
        w.section(1);
        w.gp.quiescent_state(&cpu);
    });
    let cpu = world.cpu(0);
    // The writer's CPU was outside any section until now.
    world.gp.quiescent_state(&cpu);
    let target = world.unpublish(&cpu);
    let mut freed = false;
    for _ in 0..POLLS {
        if world.poll(&cpu, target) {
            world.objects[0].free();
            freed = true;
            break;
        }
        thread::yield_now();
    }
    reader.join().unwrap();
    freed
}

/// CPU 0 queues a callback and polls for it; CPUs 1.. read and report.
/// Returns whether the callback became ready during the concurrent phase.
fn callback_readiness(mutation: Mutation, cpus: usize) -> bool {
    let world = World::new(mutation, cpus);
    world.boot();
    let readers: Vec<_> = (1..cpus)
        .map(|id| {
            let w = world.clone();
            thread::spawn(move || {
                let cpu = w.cpu(id);
                w.section(id);
                w.gp.quiescent_state(&cpu);
                w.section(id);
                w.gp.quiescent_state(&cpu);
            })
        })
        .collect();
    let cpu = world.cpu(0);
    let target = world.unpublish(&cpu);
    let check_ready = |world: &World| {
        for c in 0..cpus {
            let reported = world.cpus[c].reported();
            assert!(
                reported >= target,
                "a callback for GP {target} became ready with cpu {c} last reporting for GP {reported}"
            );
            assert!(
                !world.holding_old[c].load(Ordering::Relaxed),
                "a callback became ready while cpu {c} was inside a section holding the old object"
            );
        }
    };
    let mut ready = false;
    for _ in 0..2 {
        if world.poll(&cpu, target) {
            check_ready(&world);
            ready = true;
            break;
        }
        thread::yield_now();
    }
    for reader in readers {
        reader.join().unwrap();
    }
    // Everyone joined: from here the world is sequential. Every CPU keeps
    // passing QSs (as idle and user-mode CPUs do); the GP must end.
    for _ in 0..4 {
        if world.gp.completed() >= target {
            break;
        }
        for c in 0..cpus {
            world.gp.quiescent_state(&world.cpu(c));
            world.gp.try_start_gp(&world.cpu(c));
        }
    }
    assert!(world.gp.completed() >= target, "the grace period never ended: a report was lost");
    check_ready(&world);
    ready
}

#[test]
fn rcu_lookup_vs_munmap() {
    let outcomes = common::Outcomes::new(&["freed", "gave up waiting"]);
    let seen = outcomes.clone();
    common::check("rcu: fault lookup vs munmap", None, move || {
        seen.record(if lookup_vs_munmap(Mutation::None) { 0 } else { 1 })
    });
    outcomes.require("fault lookup vs munmap", &[0]);
}

#[test]
fn rcu_callback_readiness_2_cpus() {
    let outcomes = common::Outcomes::new(&["ready while others ran", "ready only after"]);
    let seen = outcomes.clone();
    common::check("rcu: callback readiness, 2 CPUs", None, move || {
        seen.record(if callback_readiness(Mutation::None, 2) { 0 } else { 1 })
    });
    outcomes.require("callback readiness, 2 CPUs", &[0, 1]);
}

#[test]
fn rcu_callback_readiness_3_cpus() {
    let outcomes = common::Outcomes::new(&["ready while others ran", "ready only after"]);
    let seen = outcomes.clone();
    common::check("rcu: callback readiness, 3 CPUs", Some(4), move || {
        seen.record(if callback_readiness(Mutation::None, 3) { 0 } else { 1 })
    });
    outcomes.require("callback readiness, 3 CPUs", &[0, 1]);
}

const UAF: &[&str] = &["use after free", "Causality violation"];

#[test]
fn broken_rcu_target_current_gp() {
    common::expect_bug("rcu: target is the current GP", Some(3), UAF, || {
        lookup_vs_munmap(Mutation::TargetCurrentGp);
    });
}

#[test]
fn broken_rcu_no_report_fence() {
    common::expect_bug("rcu: report without its fence", Some(3), UAF, || {
        lookup_vs_munmap(Mutation::NoReportFence);
    });
}

#[test]
fn broken_rcu_no_unpublish_fence() {
    common::expect_bug("rcu: next_gp without its fence", Some(3), UAF, || {
        lookup_vs_munmap(Mutation::NoUnpublishFence);
    });
}

#[test]
fn broken_rcu_report_ignores_gp() {
    common::expect_bug("rcu: report does not check its GP", Some(3), &["became ready with cpu"], || {
        callback_readiness(Mutation::ReportIgnoresGp, 2);
    });
}

#[test]
fn broken_rcu_pending_after_gp_seq() {
    common::expect_bug("rcu: pending mask stored after gp_seq", Some(3), &["never ended"], || {
        callback_readiness(Mutation::PendingAfterGpSeq, 2);
    });
}
