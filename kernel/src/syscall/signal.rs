//! Signal system calls: rt_sigaction, rt_sigprocmask, rt_sigreturn,
//! rt_sigpending, sigaltstack, kill, tkill, tgkill. Argument checks in
//! Linux's order; the state and delivery are in `task::signal`.

use core::sync::atomic::Ordering;

use super::{current_process, Errno, SysResult};
use crate::arch::traps::TrapFrame;
use crate::mm::uaccess::{copy_to_user, read_user, write_user};
use crate::task::sched;
use crate::task::signal::{self, SigAction, SignalError, StackT, UNBLOCKABLE};

/// The kernel's sigset_t is 8 bytes.
const SIGSET_SIZE: u64 = 8;

impl From<SignalError> for Errno {
    fn from(e: SignalError) -> Self {
        match e {
            SignalError::Invalid => Errno::EINVAL,
            SignalError::NoSuchTarget => Errno::ESRCH,
            SignalError::OnAltStack => Errno::EPERM,
            SignalError::StackTooSmall => Errno::ENOMEM,
            SignalError::Fault => Errno::EFAULT,
        }
    }
}

pub fn rt_sigaction(signo: u64, act: u64, oldact: u64, sigsetsize: u64) -> SysResult {
    if sigsetsize != SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    let new = if act != 0 { Some(read_user::<SigAction>(act)?) } else { None };
    let old = signal::set_action(&current_process(), signo as u32, new)?;
    if oldact != 0 {
        write_user(oldact, &old)?;
    }
    Ok(0)
}

const SIG_BLOCK: u64 = 0;
const SIG_UNBLOCK: u64 = 1;
const SIG_SETMASK: u64 = 2;

pub fn rt_sigprocmask(how: u64, set: u64, oldset: u64, sigsetsize: u64) -> SysResult {
    if sigsetsize != SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    let thread = sched::current();
    let old = thread.signals.blocked.load(Ordering::Acquire);
    if set != 0 {
        let new = read_user::<u64>(set)? & !UNBLOCKABLE;
        let mask = match how {
            SIG_BLOCK => old | new,
            SIG_UNBLOCK => old & !new,
            SIG_SETMASK => new,
            _ => return Err(Errno::EINVAL),
        };
        // Only this thread changes its mask; unblocked pending signals are
        // delivered on the way out (return_to_user).
        thread.signals.blocked.store(mask, Ordering::Release);
    }
    if oldset != 0 {
        write_user(oldset, &old)?;
    }
    Ok(0)
}

pub fn rt_sigpending(set: u64, sigsetsize: u64) -> SysResult {
    if sigsetsize > SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    let thread = sched::current();
    let process = current_process();
    let pending = signal::pending(&process, &thread) & thread.signals.blocked.load(Ordering::Acquire);
    copy_to_user(set, &pending.to_le_bytes()[..sigsetsize as usize])?;
    Ok(0)
}

/// rt_sigreturn: a frame that does not check out kills the process with
/// SIGSEGV (Linux would send it one, which a handler could catch).
pub fn rt_sigreturn(frame: &mut TrapFrame) -> SysResult {
    let thread = sched::current();
    let process = current_process();
    match signal::sigreturn(&thread, frame) {
        Ok(rax) => Ok(rax),
        Err(bad) => {
            log::warn!("pid {} (tid {}) killed by SIGSEGV: {bad}", process.pid, thread.tid);
            process.kill(crate::task::Signal::Segv);
            Err(Errno::EFAULT)
        }
    }
}

pub fn sigaltstack(frame: &TrapFrame, ss: u64, old_ss: u64) -> SysResult {
    let new = if ss != 0 { Some(read_user::<StackT>(ss)?) } else { None };
    let old = signal::set_altstack(&sched::current(), new, frame.rsp)?;
    if old_ss != 0 {
        write_user(old_ss, &old)?;
    }
    Ok(0)
}

/// Signal 0 checks the target only.
fn check_signo(signo: u64) -> Result<u32, Errno> {
    let signo = signo as u32;
    if signo != 0 && !signal::valid(signo) {
        return Err(Errno::EINVAL);
    }
    Ok(signo)
}

/// kill: only this process can be named (its pid, 0 for its group, -pid);
/// there are no other processes to signal.
pub fn kill(pid: u64, signo: u64) -> SysResult {
    let signo = check_signo(signo)?;
    let process = current_process();
    let pid = pid as i32;
    if pid != 0 && pid.unsigned_abs() != process.pid {
        return Err(Errno::ESRCH);
    }
    if signo != 0 {
        signal::send_to_process(&process, signo);
    }
    Ok(0)
}

pub fn tgkill(tgid: u64, tid: u64, signo: u64) -> SysResult {
    let (tgid, tid) = (tgid as i32, tid as i32);
    if tgid <= 0 || tid <= 0 {
        return Err(Errno::EINVAL);
    }
    let signo = check_signo(signo)?;
    let process = current_process();
    if tgid as u32 != process.pid {
        return Err(Errno::ESRCH);
    }
    send_to_tid(&process, tid as u32, signo)
}

pub fn tkill(tid: u64, signo: u64) -> SysResult {
    let tid = tid as i32;
    if tid <= 0 {
        return Err(Errno::EINVAL);
    }
    let signo = check_signo(signo)?;
    send_to_tid(&current_process(), tid as u32, signo)
}

fn send_to_tid(process: &crate::task::Process, tid: u32, signo: u32) -> SysResult {
    let thread = process.find_thread(tid).ok_or(Errno::ESRCH)?;
    if signo != 0 {
        signal::send_to_thread(process, &thread, signo);
    }
    Ok(0)
}

/// rt_sigtimedwait (sigwait, sigtimedwait, sigwaitinfo): takes a pending
/// signal of `set` instead of running its handler, else sleeps with the
/// set unblocked until one comes (its value), `timeout` passes (EAGAIN) or
/// another signal's handler is due (EINTR, never restarted, as on Linux).
pub fn rt_sigtimedwait(set: u64, info: u64, timeout: u64, sigsetsize: u64) -> SysResult {
    if sigsetsize != SIGSET_SIZE {
        return Err(Errno::EINVAL);
    }
    let set = read_user::<u64>(set)? & !UNBLOCKABLE;
    let deadline = if timeout != 0 {
        Some(crate::arch::time::now_ns().saturating_add(super::time::read_timespec(timeout)?))
    } else {
        None
    };
    let thread = sched::current();
    let process = current_process();
    let mut taken = signal::dequeue(&thread, &process, set);
    if taken.is_none() {
        if deadline.is_some_and(|d| d <= crate::arch::time::now_ns()) {
            return Err(Errno::EAGAIN);
        }
        // Unblocked while waiting, so that senders wake this thread.
        let blocked = thread.signals.blocked.load(Ordering::Acquire);
        thread.signals.waiting.store(set & blocked, Ordering::Release);
        thread.signals.blocked.store(blocked & !set, Ordering::Release);
        let queue = crate::task::wait::WaitQueue::new();
        let wake = queue.wait_interruptible(deadline, || signal::pending(&process, &thread) & set != 0);
        thread.signals.blocked.store(blocked, Ordering::Release);
        thread.signals.waiting.store(0, Ordering::Release);
        taken = signal::dequeue(&thread, &process, set);
        if taken.is_none() && wake != crate::task::wait::Wake::TimedOut {
            return Err(Errno::EINTR);
        }
    }
    let Some(siginfo) = taken else { return Err(Errno::EAGAIN) };
    if info != 0 {
        write_user(info, &siginfo)?;
    }
    Ok(siginfo.signo as u64)
}
