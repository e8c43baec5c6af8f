//! Signals, as Linux x86_64 has them: per-process actions, per-thread masks
//! and pending sets (plus a process-wide pending set for `kill`), alternate
//! stacks, and delivery by building Linux's `rt_sigframe` on the user stack.
//!
//! Where delivery happens:
//! - synchronous faults (`deliver_fault`): from the page-fault and exception
//!   paths, to the faulting thread, at once; no handler (or the signal is
//!   blocked or ignored) means the caller kills the process as before;
//! - everything else (`deliver_pending`): from `return_to_user`, one signal
//!   per return (the next one goes after the handler's `rt_sigreturn`).
//!
//! Senders set the pending bit, then `sched::interrupt` the thread(s) that
//! do not block it, so an interruptible wait (futex, nanosleep) returns EINTR.
//! `return_to_user` clears the thread's interrupted flag before it looks at
//! the process's exit flag and the pending sets, so neither a signal nor an
//! exit_group can be lost between the two.
//!
//! An interrupted system call returns one of Linux's restart codes
//! (ERESTARTSYS and friends, `syscall::restart`); delivery turns it into
//! EINTR or a restart, by Linux's rules, SA_RESTART included.
//!
//! Not built: queued real-time signals (a second instance of a pending
//! signal merges), stop/continue (their default is ignored here), core dumps.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{sched, Process, Thread};
use crate::arch::context::FpuState;
use crate::arch::traps::TrapFrame;
use crate::mm::layout::USER_END;
use crate::mm::uaccess::{copy_from_user, copy_to_user, read_user, write_user, Efault, UserData};
use crate::sync::{Level, SpinLock};

pub const SIGTRAP: u32 = 5;
pub const SIGBUS: u32 = 7;
pub const SIGKILL: u32 = 9;
pub const SIGSEGV: u32 = 11;
pub const SIGSTOP: u32 = 19;
/// Signals are 1 to 64.
pub const NSIG: u32 = 64;

pub const SIG_DFL: u64 = 0;
pub const SIG_IGN: u64 = 1;

pub const SA_SIGINFO: u64 = 0x4;
pub const SA_RESTART: u64 = 0x1000_0000;
pub const SA_RESTORER: u64 = 0x0400_0000;
pub const SA_ONSTACK: u64 = 0x0800_0000;
pub const SA_NODEFER: u64 = 0x4000_0000;
pub const SA_RESETHAND: u64 = 0x8000_0000;

pub const SS_ONSTACK: u32 = 1;
pub const SS_DISABLE: u32 = 2;
pub const SS_AUTODISARM: u32 = 1 << 31;
pub const MINSIGSTKSZ: u64 = 2048;

/// si_code values.
pub const SI_USER: i32 = 0;
pub const SI_KERNEL: i32 = 0x80;
pub const SI_TKILL: i32 = -6;
pub const SEGV_MAPERR: i32 = 1;
pub const SEGV_ACCERR: i32 = 2;
pub const BUS_ADRERR: i32 = 2;

/// uc_flags Linux 6.12 sets on x86_64 (without XSAVE frames).
const UC_SIGCONTEXT_SS: u64 = 0x2;
const UC_STRICT_RESTORE_SS: u64 = 0x4;

/// The bit of `signo` in a signal set.
pub const fn bit(signo: u32) -> u64 {
    1 << (signo - 1)
}

/// Signals that can be neither caught nor blocked.
pub const UNBLOCKABLE: u64 = bit(SIGKILL) | bit(SIGSTOP);

/// Linux's names, for log lines.
pub fn name(signo: u32) -> &'static str {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    NAMES.get(signo.wrapping_sub(1) as usize).copied().unwrap_or("a real-time signal")
}

/// What SIG_DFL does with `signo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DefaultAction {
    Terminate,
    Ignore,
}

fn default_action(signo: u32) -> DefaultAction {
    match signo {
        // SIGCHLD, SIGCONT, SIGURG, SIGWINCH; and SIGSTOP, SIGTSTP, SIGTTIN,
        // SIGTTOU, whose stop we do not implement.
        17..=23 | 28 => DefaultAction::Ignore,
        _ => DefaultAction::Terminate,
    }
}

/// The kernel's `struct sigaction` on x86_64 (what rt_sigaction copies).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

// SAFETY: four u64s: every pattern is valid, no padding.
unsafe impl UserData for SigAction {}

/// `stack_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackT {
    pub sp: u64,
    pub flags: u32,
    pub pad: u32,
    pub size: u64,
}

// SAFETY: integers only, the u32 pair fills the 8 bytes between the u64s.
unsafe impl UserData for StackT {}

/// Linux's `struct sigcontext` (64-bit), 256 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct SigContext {
    r8: u64,
    r9: u64,
    r10: u64,
    r11: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
    rdi: u64,
    rsi: u64,
    rbp: u64,
    rbx: u64,
    rdx: u64,
    rax: u64,
    rcx: u64,
    rsp: u64,
    rip: u64,
    eflags: u64,
    cs: u16,
    gs: u16,
    fs: u16,
    ss: u16,
    err: u64,
    trapno: u64,
    oldmask: u64,
    cr2: u64,
    fpstate: u64,
    reserved: [u64; 8],
}

/// The kernel's `struct ucontext` (its sigset is 8 bytes), 304 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct UContext {
    flags: u64,
    link: u64,
    stack: StackT,
    mcontext: SigContext,
    sigmask: u64,
}

/// `siginfo_t`, 128 bytes: the union as words (si_addr, or si_pid and si_uid, at 16).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SigInfo {
    pub signo: i32,
    pub errno: i32,
    pub code: i32,
    pub pad: i32,
    pub fields: [u64; 14],
}

// SAFETY: four i32s then fourteen u64s (the i32s fill 16 bytes): every
// pattern is valid, no padding (the size assert below checks it).
unsafe impl UserData for SigInfo {}

impl SigInfo {
    /// A fault's: si_addr is the address.
    pub fn fault(signo: u32, code: i32, addr: u64) -> SigInfo {
        let mut fields = [0; 14];
        fields[0] = addr;
        SigInfo { signo: signo as i32, code, fields, ..SigInfo::default() }
    }

    /// One sent by `pid` (uid 0) with kill (SI_USER) or tgkill (SI_TKILL).
    fn sent(signo: u32, code: i32, pid: u32) -> SigInfo {
        let mut fields = [0; 14];
        fields[0] = pid as u64;
        SigInfo { signo: signo as i32, code, fields, ..SigInfo::default() }
    }
}

/// Linux's `struct rt_sigframe` without the FPU area (which follows at the
/// 64-byte-aligned address `uc.mcontext.fpstate` names), 440 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct RtSigFrame {
    pretcode: u64,
    uc: UContext,
    info: SigInfo,
}

// SAFETY: integers only; the u16 quartet of SigContext fills 8 bytes and
// every other field is 8-byte sized and aligned, so there is no padding
// (the size asserts below check it).
unsafe impl UserData for RtSigFrame {}

const _: () = assert!(core::mem::size_of::<SigContext>() == 256);
const _: () = assert!(core::mem::size_of::<UContext>() == 304);
const _: () = assert!(core::mem::size_of::<SigInfo>() == 128);
const _: () = assert!(core::mem::size_of::<RtSigFrame>() == 440);

const FPSTATE_SIZE: u64 = 512;

/// A thread's alternate signal stack.
#[derive(Clone, Copy, Debug, Default)]
struct AltStack {
    sp: u64,
    size: u64,
    /// As set: 0, SS_ONSTACK or SS_DISABLE, with SS_AUTODISARM.
    flags: u32,
}

impl AltStack {
    /// Linux's on_sig_stack (a stack that grows down: sp in (base, base + size]).
    fn contains(&self, sp: u64) -> bool {
        sp > self.sp && sp - self.sp <= self.size
    }

    /// Linux's sas_ss_flags as the user sees them at `sp`.
    fn flags_at(&self, sp: u64) -> u32 {
        if self.size == 0 {
            SS_DISABLE
        } else if self.contains(sp) {
            SS_ONSTACK
        } else {
            0
        }
    }
}

/// A thread's signal state.
pub struct ThreadSignals {
    pub blocked: AtomicU64,
    pub pending: AtomicU64,
    altstack: SpinLock<AltStack>,
    /// set_robust_list's head (walked at exit: `futex::exit_robust_list`).
    pub robust_list: AtomicU64,
    /// How restart_syscall resumes an interrupted timed wait (Linux's restart_block).
    pub restart: SpinLock<Option<Restart>>,
    /// The set rt_sigtimedwait waits for, unblocked meanwhile: still blocked
    /// for deciding what is ignored (Linux's real_blocked), so that a
    /// signal it waits for is not discarded.
    pub waiting: AtomicU64,
}

impl ThreadSignals {
    /// Whether `signo` counts as blocked when a sender decides it is ignored.
    fn holds(&self, signo: u32) -> bool {
        (self.blocked.load(Ordering::Acquire) | self.waiting.load(Ordering::Acquire)) & bit(signo) != 0
    }
}

/// A timed wait cut short by a signal whose handler did not run (another
/// thread took it, or it was ignored): the call resumes with its original
/// deadline through restart_syscall, which Linux's ERESTART_RESTARTBLOCK asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// nanosleep or a relative clock_nanosleep: until `deadline_ns`
    /// (monotonic), the time left written to `rem` if interrupted again.
    Sleep { deadline_ns: u64, rem: u64 },
    /// FUTEX_WAIT(_BITSET) with a timeout.
    FutexWait { addr: u64, expected: u32, deadline_ns: u64 },
}

impl Default for ThreadSignals {
    fn default() -> Self {
        ThreadSignals {
            blocked: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            altstack: SpinLock::new(Level::AltStack, AltStack::default()),
            robust_list: AtomicU64::new(0),
            restart: SpinLock::new(Level::SignalRestart, None),
            waiting: AtomicU64::new(0),
        }
    }
}

impl ThreadSignals {
    /// A new thread's: the creator's mask, no alternate stack, nothing pending (as Linux's clone).
    pub fn inherit_mask(&self, parent: &ThreadSignals) {
        self.blocked.store(parent.blocked.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// A process's signal state: the actions and the process-wide pending set.
pub struct ProcessSignals {
    actions: SpinLock<[SigAction; NSIG as usize]>,
    pending: AtomicU64,
}

impl Default for ProcessSignals {
    fn default() -> Self {
        ProcessSignals {
            actions: SpinLock::new(Level::SignalActions, [SigAction::default(); NSIG as usize]),
            pending: AtomicU64::new(0),
        }
    }
}

fn action(process: &Process, signo: u32) -> SigAction {
    process.signals.actions.lock()[signo as usize - 1]
}

/// Whether `signo` would be thrown away: SIG_IGN, or SIG_DFL whose default
/// is to ignore, or SIG_DFL for init (Linux's SIGNAL_UNKILLABLE: pid 1
/// gets only the signals it has handlers for, SIGKILL included).
fn ignored(process: &Process, act: &SigAction, signo: u32) -> bool {
    match act.handler {
        SIG_IGN => true,
        SIG_DFL => default_action(signo) == DefaultAction::Ignore || process.pid == 1,
        _ => false,
    }
}

/// Errors of the signal system calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalError {
    /// A bad signal number, flag or size (EINVAL).
    Invalid,
    /// No such process or thread in this process (ESRCH).
    NoSuchTarget,
    /// sigaltstack while running on the alternate stack (EPERM).
    OnAltStack,
    /// An alternate stack smaller than MINSIGSTKSZ (ENOMEM).
    StackTooSmall,
    /// A bad user pointer (EFAULT).
    Fault,
}

impl From<Efault> for SignalError {
    fn from(_: Efault) -> Self {
        SignalError::Fault
    }
}

pub fn valid(signo: u32) -> bool {
    (1..=NSIG).contains(&signo)
}

/// rt_sigaction's core: installs `new` (if any), returns the old action.
pub fn set_action(process: &Process, signo: u32, new: Option<SigAction>) -> Result<SigAction, SignalError> {
    if !valid(signo) || (new.is_some() && bit(signo) & UNBLOCKABLE != 0) {
        return Err(SignalError::Invalid);
    }
    let mut actions = process.signals.actions.lock();
    let old = actions[signo as usize - 1];
    if let Some(mut new) = new {
        new.mask &= !UNBLOCKABLE;
        actions[signo as usize - 1] = new;
        // The thread list is below the actions in the lock order: let go
        // first (a signal sent meanwhile is discarded as one sent before).
        drop(actions);
        // Setting an action that ignores discards what is pending (POSIX).
        if ignored(process, &new, signo) {
            process.signals.pending.fetch_and(!bit(signo), Ordering::AcqRel);
            for thread in process.threads_snapshot() {
                thread.signals.pending.fetch_and(!bit(signo), Ordering::AcqRel);
            }
        }
    }
    Ok(old)
}

/// sigaltstack's core, Linux's do_sigaltstack: `sp` is the caller's user stack pointer.
pub fn set_altstack(thread: &Thread, new: Option<StackT>, sp: u64) -> Result<StackT, SignalError> {
    let mut alt = thread.signals.altstack.lock();
    let old = StackT { sp: alt.sp, flags: alt.flags_at(sp) | (alt.flags & SS_AUTODISARM), pad: 0, size: alt.size };
    if let Some(new) = new {
        if alt.contains(sp) {
            return Err(SignalError::OnAltStack);
        }
        let mode = new.flags & !SS_AUTODISARM;
        if mode != 0 && mode != SS_ONSTACK && mode != SS_DISABLE {
            return Err(SignalError::Invalid);
        }
        *alt = if mode == SS_DISABLE {
            AltStack { sp: 0, size: 0, flags: new.flags }
        } else if new.size < MINSIGSTKSZ {
            return Err(SignalError::StackTooSmall);
        } else {
            AltStack { sp: new.sp, size: new.size, flags: new.flags }
        };
    }
    Ok(old)
}

/// Sends `signo` to `thread` of `process` (tgkill, tkill; `sender` for si_pid).
pub fn send_to_thread(process: &Process, thread: &Arc<Thread>, signo: u32) {
    let act = action(process, signo);
    let blocked = thread.signals.blocked.load(Ordering::Acquire) & bit(signo) != 0;
    if ignored(process, &act, signo) && !thread.signals.holds(signo) {
        return;
    }
    if signo == SIGKILL {
        kill_process(process, thread.tid, signo, "sent by tgkill or tkill");
        return;
    }
    thread.signals.pending.fetch_or(bit(signo), Ordering::SeqCst);
    if !blocked {
        sched::interrupt(thread);
    }
}

/// Sends `signo` to the whole process (kill): any thread that does not block it takes it.
pub fn send_to_process(process: &Process, signo: u32) {
    let act = action(process, signo);
    // A blocked signal is never ignored: its action may change before it
    // is unblocked, or rt_sigtimedwait may take it (Linux's sig_ignored).
    let blocked =
        || process.threads_snapshot().iter().any(|t| t.signals.blocked.load(Ordering::Acquire) & bit(signo) != 0);
    if ignored(process, &act, signo) && !blocked() {
        return;
    }
    if signo == SIGKILL {
        kill_process(process, 0, signo, "sent by kill");
        return;
    }
    process.signals.pending.fetch_or(bit(signo), Ordering::SeqCst);
    for thread in process.threads_snapshot() {
        if thread.signals.blocked.load(Ordering::Acquire) & bit(signo) == 0 {
            sched::interrupt(&thread);
        }
    }
}

/// Pending signals of `thread` (its own and its process's).
pub fn pending(process: &Process, thread: &Thread) -> u64 {
    thread.signals.pending.load(Ordering::Acquire) | process.signals.pending.load(Ordering::Acquire)
}

fn kill_process(process: &Process, tid: u32, signo: u32, why: &str) {
    log::warn!("pid {} (tid {tid}) killed by {}: {why}", process.pid, name(signo));
    process.kill_by_signal(signo as u8);
}

/// Takes one pending signal of `set` off the running thread's (first) or its
/// process's pending set, with the siginfo it was sent with: what
/// rt_sigtimedwait returns instead of running a handler.
pub fn dequeue(thread: &Thread, process: &Process, set: u64) -> Option<SigInfo> {
    for (pending, code) in [(&thread.signals.pending, SI_TKILL), (&process.signals.pending, SI_USER)] {
        loop {
            let ready = pending.load(Ordering::Acquire) & set;
            if ready == 0 {
                break;
            }
            let signo = ready.trailing_zeros() + 1;
            if pending.fetch_and(!bit(signo), Ordering::AcqRel) & bit(signo) != 0 {
                return Some(SigInfo::sent(signo, code, process.pid));
            }
        }
    }
    None
}

/// What `deliver_pending` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// No signal needed a handler (none pending, or all ignored).
    None,
    /// A handler will run: `frame` now enters it.
    Handler,
    /// The process was killed (the default action, or a frame that could not be written).
    Killed,
}

/// Delivers one pending, unblocked signal to the running thread, whose user
/// state is `frame` (called by `return_to_user`). An interrupted system call
/// is restarted or fails with EINTR before the handler's frame is built.
pub fn deliver_pending(thread: &Arc<Thread>, process: &Process, frame: &mut TrapFrame) -> Delivery {
    loop {
        let blocked = thread.signals.blocked.load(Ordering::Acquire);
        let own = thread.signals.pending.load(Ordering::Acquire) & !blocked;
        let shared = process.signals.pending.load(Ordering::Acquire) & !blocked;
        let (set, ready) = if own != 0 {
            (&thread.signals.pending, own)
        } else if shared != 0 {
            (&process.signals.pending, shared)
        } else {
            return Delivery::None;
        };
        let signo = ready.trailing_zeros() + 1;
        // Another thread may take a process-wide signal first.
        if set.fetch_and(!bit(signo), Ordering::AcqRel) & bit(signo) == 0 {
            continue;
        }
        let act = action(process, signo);
        match act.handler {
            SIG_IGN => continue,
            SIG_DFL if ignored(process, &act, signo) => continue,
            SIG_DFL => {
                kill_process(process, thread.tid, signo, "its default action");
                return Delivery::Killed;
            }
            _ => {}
        }
        let code = if core::ptr::eq(set, &thread.signals.pending) { SI_TKILL } else { SI_USER };
        let info = SigInfo::sent(signo, code, process.pid);
        crate::syscall::restart::before_handler(frame, act.flags & SA_RESTART != 0);
        if let Err(why) = setup_frame(thread, process, frame, &act, &info) {
            log::warn!(
                "pid {} (tid {}) killed by SIGSEGV: could not deliver {}: {why}",
                process.pid,
                thread.tid,
                name(signo)
            );
            process.kill_by_signal(SIGSEGV as u8);
            return Delivery::Killed;
        }
        return Delivery::Handler;
    }
}

/// Why a synchronous signal was not delivered (the caller kills the process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotDelivered {
    /// No handler, or the signal is blocked or ignored.
    NoHandler,
    /// The signal frame could not be written.
    BadFrame(FrameError),
}

/// Delivers a synchronous signal (a fault) to the running thread at once.
/// Called with interrupts off from a trap of user mode; turns them on to
/// write the frame (the copy may fault pages in).
pub fn deliver_fault(frame: &mut TrapFrame, info: &SigInfo) -> Result<(), NotDelivered> {
    let Some(thread) = super::current_thread() else { return Err(NotDelivered::NoHandler) };
    let Some(process) = thread.process.clone() else { return Err(NotDelivered::NoHandler) };
    let signo = info.signo as u32;
    let act = action(&process, signo);
    let blocked = thread.signals.blocked.load(Ordering::Acquire) & bit(signo) != 0;
    if blocked || act.handler == SIG_DFL || act.handler == SIG_IGN {
        return Err(NotDelivered::NoHandler);
    }
    let interrupts = crate::arch::disable_interrupts();
    crate::arch::enable_interrupts();
    let result = setup_frame(&thread, &process, frame, &act, info);
    crate::arch::restore_interrupts(interrupts);
    result.map_err(NotDelivered::BadFrame)
}

/// Why a signal frame could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The handler has no SA_RESTORER (x86_64 requires one).
    NoRestorer,
    /// The stack is not writable there.
    BadStack(u64),
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::NoRestorer => write!(f, "the handler has no SA_RESTORER"),
            FrameError::BadStack(addr) => write!(f, "cannot write the signal frame at {addr:#x}"),
        }
    }
}

/// Builds the rt_sigframe for `act` on the thread's stack (or its alternate
/// stack) and points `frame` at the handler (Linux's setup_rt_frame).
fn setup_frame(
    thread: &Thread,
    process: &Process,
    frame: &mut TrapFrame,
    act: &SigAction,
    info: &SigInfo,
) -> Result<(), FrameError> {
    if act.flags & SA_RESTORER == 0 {
        return Err(FrameError::NoRestorer);
    }
    let signo = info.signo as u32;
    let blocked = thread.signals.blocked.load(Ordering::Acquire);
    let (alt, on_alt) = {
        let mut alt = thread.signals.altstack.lock();
        let saved = *alt;
        let switch = act.flags & SA_ONSTACK != 0 && saved.size != 0 && !saved.contains(frame.rsp);
        if switch && saved.flags & SS_AUTODISARM != 0 {
            *alt = AltStack::default();
        }
        (saved, switch)
    };
    // Below the red zone, or at the top of the alternate stack.
    let sp = if on_alt { alt.sp.wrapping_add(alt.size) } else { frame.rsp.wrapping_sub(128) };
    let fpstate = sp.wrapping_sub(FPSTATE_SIZE) & !63;
    let frame_addr = (fpstate.wrapping_sub(core::mem::size_of::<RtSigFrame>() as u64) & !15).wrapping_sub(8);
    let fpu = thread.fpu_snapshot();
    let (cs, ss) = crate::arch::context::user_selectors();
    let cr2 = if frame.vector == 14 { info.fields[0] } else { 0 };
    let trapno = if frame.vector < 32 { frame.vector } else { 0 };
    let mcontext = SigContext {
        r8: frame.r8,
        r9: frame.r9,
        r10: frame.r10,
        r11: frame.r11,
        r12: frame.r12,
        r13: frame.r13,
        r14: frame.r14,
        r15: frame.r15,
        rdi: frame.rdi,
        rsi: frame.rsi,
        rbp: frame.rbp,
        rbx: frame.rbx,
        rdx: frame.rdx,
        rax: frame.rax,
        rcx: frame.rcx,
        rsp: frame.rsp,
        rip: frame.rip,
        eflags: frame.rflags,
        cs: cs as u16,
        gs: 0,
        fs: 0,
        ss: ss as u16,
        err: if trapno != 0 { frame.error_code } else { 0 },
        trapno,
        oldmask: blocked,
        cr2,
        fpstate,
        reserved: [0; 8],
    };
    let sigframe = RtSigFrame {
        pretcode: act.restorer,
        uc: UContext {
            flags: UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS,
            link: 0,
            stack: StackT {
                sp: alt.sp,
                flags: alt.flags_at(frame.rsp) | (alt.flags & SS_AUTODISARM),
                pad: 0,
                size: alt.size,
            },
            mcontext,
            sigmask: blocked,
        },
        info: *info,
    };
    let mut area = *fpu.as_bytes();
    // No XSAVE extension: the software-reserved bytes hold no magic.
    area[464..512].fill(0);
    copy_to_user(fpstate, &area).map_err(|_| FrameError::BadStack(fpstate))?;
    write_user(frame_addr, &sigframe).map_err(|_| FrameError::BadStack(frame_addr))?;

    let mut mask = act.mask;
    if act.flags & SA_NODEFER == 0 {
        mask |= bit(signo);
    }
    thread.signals.blocked.store((blocked | mask) & !UNBLOCKABLE, Ordering::Release);
    if act.flags & SA_RESETHAND != 0 {
        process.signals.actions.lock()[signo as usize - 1] = SigAction::default();
    }
    frame.rdi = signo as u64;
    frame.rsi = frame_addr + core::mem::offset_of!(RtSigFrame, info) as u64;
    frame.rdx = frame_addr + core::mem::offset_of!(RtSigFrame, uc) as u64;
    frame.rax = 0;
    frame.rsp = frame_addr;
    frame.rip = act.handler;
    frame.cs = cs;
    frame.ss = ss;
    frame.rflags &= !(RFLAGS_DF | RFLAGS_RF | RFLAGS_TF);
    // The handler starts with a clean FPU, as on Linux.
    FpuState::new().restore();
    Ok(())
}

const RFLAGS_CF: u64 = 1 << 0;
const RFLAGS_PF: u64 = 1 << 2;
const RFLAGS_AF: u64 = 1 << 4;
const RFLAGS_ZF: u64 = 1 << 6;
const RFLAGS_SF: u64 = 1 << 7;
const RFLAGS_TF: u64 = 1 << 8;
const RFLAGS_DF: u64 = 1 << 10;
const RFLAGS_OF: u64 = 1 << 11;
const RFLAGS_RF: u64 = 1 << 16;
const RFLAGS_AC: u64 = 1 << 18;
/// What rt_sigreturn takes from the frame (Linux's FIX_EFLAGS); IF, IOPL,
/// NT, VM and the rest stay as the kernel had them.
const USER_RFLAGS: u64 = RFLAGS_CF
    | RFLAGS_PF
    | RFLAGS_AF
    | RFLAGS_ZF
    | RFLAGS_SF
    | RFLAGS_TF
    | RFLAGS_DF
    | RFLAGS_OF
    | RFLAGS_RF
    | RFLAGS_AC;

/// Why rt_sigreturn refused a frame (the process is killed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadFrame {
    Unreadable(u64),
    BadRip(u64),
    BadRsp(u64),
    BadFpstate(u64),
    BadMxcsr,
}

impl core::fmt::Display for BadFrame {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BadFrame::Unreadable(a) => write!(f, "rt_sigreturn frame at {a:#x} is unreadable"),
            BadFrame::BadRip(a) => write!(f, "rt_sigreturn to rip {a:#x}, not a user address"),
            BadFrame::BadRsp(a) => write!(f, "rt_sigreturn to rsp {a:#x}, not a user address"),
            BadFrame::BadFpstate(a) => write!(f, "rt_sigreturn fpstate at {a:#x} is unreadable"),
            BadFrame::BadMxcsr => write!(f, "rt_sigreturn fpstate sets MXCSR bits this CPU does not have"),
        }
    }
}

/// rt_sigreturn: restores the state the frame at `rsp - 8` holds (the
/// handler's `ret` popped the restorer address). Returns the restored rax.
pub fn sigreturn(thread: &Thread, frame: &mut TrapFrame) -> Result<u64, BadFrame> {
    let handler_sp = frame.rsp;
    let addr = frame.rsp.wrapping_sub(8);
    let sigframe: RtSigFrame = read_user(addr).map_err(|_| BadFrame::Unreadable(addr))?;
    let mc = &sigframe.uc.mcontext;
    if mc.rip >= USER_END {
        return Err(BadFrame::BadRip(mc.rip));
    }
    if mc.rsp >= USER_END {
        return Err(BadFrame::BadRsp(mc.rsp));
    }
    let fpu = if mc.fpstate == 0 {
        FpuState::new()
    } else {
        let mut area = [0u8; FPSTATE_SIZE as usize];
        copy_from_user(&mut area, mc.fpstate).map_err(|_| BadFrame::BadFpstate(mc.fpstate))?;
        FpuState::from_user_bytes(&area).ok_or(BadFrame::BadMxcsr)?
    };
    let (cs, ss) = crate::arch::context::user_selectors();
    frame.r8 = mc.r8;
    frame.r9 = mc.r9;
    frame.r10 = mc.r10;
    frame.r11 = mc.r11;
    frame.r12 = mc.r12;
    frame.r13 = mc.r13;
    frame.r14 = mc.r14;
    frame.r15 = mc.r15;
    frame.rdi = mc.rdi;
    frame.rsi = mc.rsi;
    frame.rbp = mc.rbp;
    frame.rbx = mc.rbx;
    frame.rdx = mc.rdx;
    frame.rax = mc.rax;
    frame.rcx = mc.rcx;
    frame.rsp = mc.rsp;
    frame.rip = mc.rip;
    frame.rflags = (frame.rflags & !USER_RFLAGS) | (mc.eflags & USER_RFLAGS);
    // The restored rax is the program's, not a result to restart on.
    crate::syscall::restart::forget_syscall(frame);
    frame.cs = cs;
    frame.ss = ss;
    fpu.restore();
    thread.signals.blocked.store(sigframe.uc.sigmask & !UNBLOCKABLE, Ordering::Release);
    // Linux restores the alternate stack too, as sigaltstack from the
    // handler's stack would (so not while the handler runs on it), and
    // ignores every error but a bad pointer, which cannot happen here.
    let _ = set_altstack(thread, Some(sigframe.uc.stack), handler_sp);
    Ok(mc.rax)
}
