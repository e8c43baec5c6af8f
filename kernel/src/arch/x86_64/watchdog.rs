//! The lockup detector: a CPU that stops making progress is reported, with
//! every CPU's state, and the run fails (`boot` exits with 102) instead of
//! hanging until a time-out says nothing.
//!
//! Two kinds of lockup, both checked from the timer tick:
//! - Hard: a CPU takes no tick at all (stuck with interrupts off). Each CPU
//!   watches one buddy, the next online CPU: when the buddy's tick count has
//!   not moved for `HARD_LOCKUP_NS`, the watcher reports it. On one CPU
//!   there is nobody to watch, so hard lockups go undetected there.
//! - Soft: a CPU takes ticks, but none of them finds it at a point where it
//!   could switch (user mode, or kernel code with preemption enabled: the
//!   idle loop, a preemptible thread) for `SOFT_LOCKUP_NS`: it spins with
//!   preemption disabled. The CPU notices that itself, at its own tick.
//!
//! The reporter stops each other CPU in turn with an NMI; each prints where
//! it was (RIP, interrupt flag, preemption count, current thread and a
//! frame-pointer backtrace) and halts. NMI handlers run on their own stack
//! (IST) at any point, even inside a lock holder, so everything here only
//! reads atomics, uses `try_lock`, and prints with `emergency_print`.
//!
//! Under QEMU's emulation on a loaded host a CPU can be starved for a while;
//! the thresholds are far above that. A watcher that itself did not run for
//! a while (or a VM that was paused) starts its observation over instead of
//! counting the gap against its buddy.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::apic::{self, Delivery, Destination};
use super::ipi::online;
use super::percpu::{self, MAX_CPUS};
use super::qemu::{exit, ExitCode};
use super::traps::TrapFrame;
use super::{extable, time};
use crate::console::emergency_print;
use crate::sync::{Level, SpinLock};

/// No tick for this long: a hard lockup.
pub const HARD_LOCKUP_NS: u64 = 10_000_000_000;
/// Ticks, but no preemption point for this long: a soft lockup.
pub const SOFT_LOCKUP_NS: u64 = 30_000_000_000;
/// A watcher whose own ticks are further apart than this was not running
/// itself (starved, or the VM was stopped): it starts over.
const WATCHER_GAP_NS: u64 = 2_000_000_000;
/// How long the reporter waits for a CPU to answer its NMI.
const NMI_ANSWER_NS: u64 = 2_000_000_000;
/// Return addresses printed per CPU.
const BACKTRACE_DEPTH: usize = 16;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockupKind {
    /// No timer tick: stuck with interrupts off.
    Hard,
    /// Ticks, but never preemptible: stuck with preemption disabled.
    Soft,
}

/// How long something has not happened, as one observer sees it. Pure logic
/// (no hardware), so it is unit-tested with made-up clocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stall {
    /// When the awaited event last happened (or the observation started).
    since_ns: u64,
    /// When the observer last looked.
    last_look_ns: u64,
}

impl Stall {
    /// Records a look at `now_ns`; `happened` says whether the event occurred
    /// since the last look. Returns for how long it has not.
    pub fn observe(&mut self, happened: bool, now_ns: u64) -> u64 {
        // The observer not looking for a while is no evidence: start over.
        let observer_gap = now_ns.saturating_sub(self.last_look_ns) > WATCHER_GAP_NS;
        if happened || observer_gap || self.since_ns == 0 {
            self.since_ns = now_ns;
        }
        self.last_look_ns = now_ns;
        now_ns.saturating_sub(self.since_ns)
    }
}

/// One CPU's watchdog state; only that CPU's tick touches it.
#[derive(Clone, Copy, Debug, Default)]
struct Watch {
    /// The CPU we watch for hard lockups, its tick count when we last looked,
    /// and how long it has not moved.
    buddy: Option<usize>,
    buddy_ticks: u64,
    buddy_stall: Stall,
    /// How long our own ticks have found no preemption point.
    own_stall: Stall,
}

static WATCH: [SpinLock<Watch>; MAX_CPUS] = [const { SpinLock::new(Level::Watchdog, Watch::new()) }; MAX_CPUS];

impl Watch {
    const fn new() -> Self {
        Watch {
            buddy: None,
            buddy_ticks: 0,
            buddy_stall: Stall { since_ns: 0, last_look_ns: 0 },
            own_stall: Stall { since_ns: 0, last_look_ns: 0 },
        }
    }
}

/// Set once the kernel is up (`arm`): during bring-up CPUs legitimately run
/// with interrupts off for seconds (the boot CPU while it starts the others).
static ARMED: AtomicBool = AtomicBool::new(false);

/// Starts watching. Called once every CPU is online and ticking.
pub fn arm() {
    ARMED.store(true, Ordering::Release);
}

/// The next online CPU after `cpu` (wrapping), if there is another one.
fn buddy_of(cpu: usize) -> Option<usize> {
    let cpus = online();
    cpus.iter().find(|&c| c > cpu).or_else(|| cpus.iter().next()).filter(|&c| c != cpu)
}

/// Called from every timer tick, with the interrupted context's frame.
pub fn tick(frame: &TrapFrame) {
    if !ARMED.load(Ordering::Acquire) || crate::panic::is_panicking() || REPORTER.load(Ordering::Acquire) != NONE {
        return;
    }
    let cpu = percpu::cpu_id();
    let now = time::now_ns();
    let Some(mut watch) = WATCH[cpu].try_lock() else { return };
    // A preemption point: the scheduler could switch here (the tick's own
    // `preempt_point` will, if asked). The tick does not raise the count,
    // so it is the interrupted code's.
    let preemptible = frame.from_user() || percpu::preempt_count() == 0;
    let soft = watch.own_stall.observe(preemptible, now);
    let buddy = buddy_of(cpu);
    let hard = match buddy.and_then(percpu::get) {
        Some(data) => {
            let ticks = data.ticks.load(Ordering::Relaxed);
            let moved = watch.buddy != buddy || ticks != watch.buddy_ticks;
            watch.buddy = buddy;
            watch.buddy_ticks = ticks;
            watch.buddy_stall.observe(moved, now)
        }
        None => 0,
    };
    drop(watch);
    if hard >= HARD_LOCKUP_NS {
        report(buddy.expect("a stalled buddy exists"), LockupKind::Hard, hard, cpu, frame);
    } else if soft >= SOFT_LOCKUP_NS {
        report(cpu, LockupKind::Soft, soft, cpu, frame);
    }
}

const NONE: usize = usize::MAX;
/// The CPU writing the report, or `NONE`.
static REPORTER: AtomicUsize = AtomicUsize::new(NONE);
/// The CPU found stuck.
static STUCK: AtomicUsize = AtomicUsize::new(NONE);
/// The CPU asked (by NMI) to describe itself, and the last one that did.
static ASKED: AtomicUsize = AtomicUsize::new(NONE);
static ANSWERED: AtomicUsize = AtomicUsize::new(NONE);

/// What one CPU said about itself, for the report hook (tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuState {
    /// It described itself (answered the NMI, or is the reporter).
    pub answered: bool,
    pub rip: u64,
    pub interrupts_on: bool,
    pub user_mode: bool,
}

/// The whole report, for the report hook.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    pub stuck_cpu: usize,
    pub kind: LockupKind,
    pub reporter: usize,
    pub cpus: [CpuState; MAX_CPUS],
}

static STATES: [SpinLock<CpuState>; MAX_CPUS] = [const { SpinLock::new(Level::Watchdog, CpuState::zero()) }; MAX_CPUS];

impl CpuState {
    const fn zero() -> Self {
        CpuState { answered: false, rip: 0, interrupts_on: false, user_mode: false }
    }
}

/// Called with the finished report instead of failing the run (test kernels
/// that check the report themselves).
static REPORT_HOOK: AtomicUsize = AtomicUsize::new(0);

pub fn set_report_hook(hook: fn(&Report) -> !) {
    REPORT_HOOK.store(hook as usize, Ordering::Release);
}

/// Reports a lockup of `stuck` (seen by `me`, interrupted at `frame`) and
/// stops the kernel. Returns only if another CPU is already reporting.
fn report(stuck: usize, kind: LockupKind, stalled_ns: u64, me: usize, frame: &TrapFrame) {
    if REPORTER.compare_exchange(NONE, me, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return;
    }
    STUCK.store(stuck, Ordering::Release);
    let secs = stalled_ns / 1_000_000_000;
    match kind {
        LockupKind::Hard => emergency_print(format_args!(
            "[kernel] lockup: cpu {stuck} took no timer tick for {secs} s: hard lockup (stuck with interrupts \
             off); every CPU's state follows\n"
        )),
        LockupKind::Soft => emergency_print(format_args!(
            "[kernel] lockup: cpu {stuck} reached no preemption point (scheduler, idle, user mode) for {secs} s: \
             soft lockup (stuck with preemption disabled); every CPU's state follows\n"
        )),
    }
    emergency_print(format_args!("[kernel] lockup: kernel image at {:#x}; addresses below as +offset\n", image_base()));
    // The stuck CPU first, then the rest in order, the reporter last.
    if stuck == me {
        describe(me, frame, "stuck, reporting");
    }
    let others = core::iter::once(stuck).chain(online().iter().filter(|&c| c != stuck)).filter(|&c| c != me);
    for cpu in others {
        ask(cpu);
    }
    if stuck != me {
        describe(me, frame, "reporting");
    }
    emergency_print(format_args!("[kernel] lockup: scheduler state (locks are not tracked):\n"));
    crate::task::sched::debug_dump();
    let mut cpus = [CpuState::default(); MAX_CPUS];
    for (state, slot) in cpus.iter_mut().zip(STATES.iter()) {
        if let Some(saved) = slot.try_lock() {
            *state = *saved;
        }
    }
    let hook = REPORT_HOOK.load(Ordering::Acquire);
    if hook != 0 {
        // SAFETY: only `set_report_hook` stores here, always a `fn(&Report) -> !`.
        let hook: fn(&Report) -> ! = unsafe { core::mem::transmute(hook) };
        hook(&Report { stuck_cpu: stuck, kind, reporter: me, cpus });
    }
    emergency_print(format_args!("[kernel] lockup: stopping the kernel\n"));
    exit(ExitCode::Lockup)
}

/// Stops `cpu` with an NMI and waits (a bounded time) for it to describe itself.
fn ask(cpu: usize) {
    let Some(data) = percpu::get(cpu) else { return };
    ASKED.store(cpu, Ordering::Release);
    apic::send_ipi(Destination::Apic(data.apic_id), Delivery::Nmi);
    let deadline = time::now_ns() + NMI_ANSWER_NS;
    while ANSWERED.load(Ordering::Acquire) != cpu {
        if time::now_ns() > deadline {
            emergency_print(format_args!("[kernel] lockup: cpu {cpu}: no answer to the NMI\n"));
            return;
        }
        core::hint::spin_loop();
    }
}

/// The NMI handler's part: if a report is being written, describe this CPU
/// (when asked) and halt. Returns false when no report is in progress.
/// GS is not used: the NMI may have hit an entry path before `swapgs`.
pub fn handle_nmi(frame: &TrapFrame) -> bool {
    if REPORTER.load(Ordering::Acquire) == NONE {
        return false;
    }
    let apic_id = apic::id();
    let cpu = online().iter().find(|&c| percpu::get(c).is_some_and(|d| d.apic_id == apic_id));
    if let Some(cpu) = cpu.filter(|&c| ASKED.load(Ordering::Acquire) == c) {
        describe(cpu, frame, if STUCK.load(Ordering::Acquire) == cpu { "stuck" } else { "stopped by NMI" });
        ANSWERED.store(cpu, Ordering::Release);
    }
    super::halt_forever()
}

/// Prints what `cpu` was doing when `frame` was saved, and records it.
fn describe(cpu: usize, frame: &TrapFrame, role: &str) {
    let interrupts_on = frame.rflags & (1 << 9) != 0;
    let user_mode = frame.from_user();
    if let Some(mut state) = STATES[cpu].try_lock() {
        *state = CpuState { answered: true, rip: frame.rip, interrupts_on, user_mode };
    }
    let data = percpu::get(cpu);
    let preempt = data.map_or(0, |d| d.preempt_count.load(Ordering::Relaxed));
    emergency_print(format_args!(
        "[kernel] lockup: cpu {cpu} ({role}): {} rip {:#x} ({}), interrupts {}, preempt count {preempt}, {}\n",
        if user_mode { "user mode," } else { "kernel mode," },
        frame.rip,
        Offset(frame.rip),
        if interrupts_on { "on" } else { "off" },
        CurrentThread(data.map_or(0, |d| d.current_task.load(Ordering::Relaxed)))
    ));
    if !user_mode {
        emergency_print(format_args!("[kernel] lockup:   backtrace:{}\n", Backtrace(frame.rbp)));
    }
}

/// The running thread behind a `current_task` value.
struct CurrentThread(usize);

impl fmt::Display for CurrentThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ptr = self.0 as *const crate::task::Thread;
        if ptr.is_null() {
            return write!(f, "no thread yet");
        }
        // SAFETY: diagnostics only, as in `sched::debug_dump`: the pointer is
        // the CPU's current thread, freed only after the CPU switched away
        // from it, and this CPU is stopped (or stuck) right now.
        let thread = unsafe { &*ptr };
        match &thread.process {
            Some(process) => write!(f, "current thread tid {} of pid {}", thread.tid, process.pid),
            None => write!(f, "current thread tid {} (kernel thread)", thread.tid),
        }
    }
}

unsafe extern "C" {
    /// The start of the kernel's ELF image (its header), defined by the linker.
    static __ehdr_start: u8;
    /// The end of its code, defined by the linker.
    static etext: u8;
}

/// Whether `addr` lies in the kernel's code.
fn in_kernel_text(addr: u64) -> bool {
    // SAFETY: only the address of the linker-defined symbol is taken.
    let end = unsafe { &etext as *const u8 as u64 };
    (image_base()..end).contains(&addr)
}

/// Where the kernel image was loaded: addresses minus this are what
/// `llvm-addr2line -e target/x86_64-unknown-none/debug/kernel` expects.
pub fn image_base() -> u64 {
    // SAFETY: only the address of the linker-defined symbol is taken.
    unsafe { &__ehdr_start as *const u8 as u64 }
}

/// An address as an offset into the kernel image.
struct Offset(u64);

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{:#x}", self.0.wrapping_sub(image_base()))
    }
}

/// Return addresses along the frame-pointer chain from `rbp` (the kernel is
/// built with `-C force-frame-pointers=yes`: each frame holds the caller's
/// rbp, then the return address). Only words inside kernel stacks are read,
/// with fault fix-ups, so a garbage chain ends the walk instead of faulting.
/// Return addresses point after the call: `llvm-addr2line` of the offset
/// minus one names the calling line.
struct Backtrace(u64);

fn on_a_kernel_stack(addr: u64) -> bool {
    use crate::mm::layout::{BOOTLOADER_RANGE_END, BOOTLOADER_RANGE_START, KERNEL_STACKS_START, MMIO_START};
    (KERNEL_STACKS_START..MMIO_START).contains(&addr) || (BOOTLOADER_RANGE_START..BOOTLOADER_RANGE_END).contains(&addr)
}

fn read_stack_word(addr: u64) -> Option<u64> {
    if !addr.is_multiple_of(8) || !on_a_kernel_stack(addr) || !on_a_kernel_stack(addr + 8) {
        return None;
    }
    let mut word = 0u64;
    // SAFETY: the destination is our local; the source is in a kernel stack
    // range (plain RAM or unmapped, never device memory), and a fault is
    // fixed up into an error.
    unsafe { extable::copy_fallible(&mut word as *mut u64 as *mut u8, addr as *const u8, 8) }.ok()?;
    Some(word)
}

impl fmt::Display for Backtrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rbp = self.0;
        let mut printed = 0;
        while printed < BACKTRACE_DEPTH {
            let (Some(next), Some(ret)) = (read_stack_word(rbp), read_stack_word(rbp + 8)) else { break };
            // The first frames of a CPU's boot stack return into the
            // bootloader or the AP trampoline: the chain ends there.
            if !in_kernel_text(ret) {
                break;
            }
            write!(f, " {}", Offset(ret))?;
            printed += 1;
            // Frames of callers lie above (stacks grow down); anything else is
            // the end of the chain (or garbage).
            if next <= rbp {
                break;
            }
            rbp = next;
        }
        if printed == 0 {
            write!(f, " (no frames)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Stall, WATCHER_GAP_NS};

    const MS: u64 = 1_000_000;

    #[test_case]
    fn a_stall_grows_while_nothing_happens_and_resets_when_it_does() {
        let mut stall = Stall::default();
        assert_eq!(stall.observe(false, 1000 * MS), 0, "the first look starts the observation");
        assert_eq!(stall.observe(false, 1010 * MS), 10 * MS);
        let mut now = 1010 * MS;
        for _ in 0..1000 {
            now += 10 * MS;
            stall.observe(false, now);
        }
        assert_eq!(stall.observe(false, now + 10 * MS), 10_020 * MS);
        assert_eq!(stall.observe(true, now + 20 * MS), 0, "it happened: no stall");
        assert_eq!(stall.observe(false, now + 30 * MS), 10 * MS);
    }

    #[test_case]
    fn an_observer_that_did_not_look_for_a_while_starts_over() {
        let mut stall = Stall::default();
        stall.observe(false, 1000 * MS);
        stall.observe(false, 1500 * MS);
        // The observer itself was stopped for longer than the allowed gap
        // (a starved vCPU, a paused VM): its gap says nothing about the buddy.
        assert_eq!(stall.observe(false, 1500 * MS + WATCHER_GAP_NS + 1), 0);
        assert_eq!(stall.observe(false, 1510 * MS + WATCHER_GAP_NS + 1), 10 * MS);
    }
}
