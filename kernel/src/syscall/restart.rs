//! Restarting system calls a signal interrupted, by Linux's rules.
//!
//! A call that a signal cuts short returns one of four codes, never seen by
//! user space; on the way out (`task::return_to_user`) they become:
//!
//! | code                  | handler, SA_RESTART | handler, no SA_RESTART | no handler ran     |
//! |-----------------------|---------------------|------------------------|--------------------|
//! | ERESTARTSYS           | restart             | EINTR                  | restart            |
//! | ERESTARTNOINTR        | restart             | restart                | restart            |
//! | ERESTARTNOHAND        | EINTR               | EINTR                  | restart            |
//! | ERESTART_RESTARTBLOCK | EINTR               | EINTR                  | restart_syscall    |
//!
//! "Restart" rewinds rip over the 2-byte `syscall` and puts the number back
//! in rax: the same call with the same arguments. restart_syscall resumes a
//! timed wait with its first deadline (the thread's `signals.restart`).
//! An untimed FUTEX_WAIT returns ERESTARTSYS; a timed one, nanosleep and a
//! relative clock_nanosleep ERESTART_RESTARTBLOCK; an absolute
//! clock_nanosleep ERESTARTNOHAND. "No handler ran" happens when another
//! thread took a process-wide signal, or the signal was ignored on delivery.
//!
//! For a system call's frame, `error_code` holds the call's number (Linux's
//! orig_ax), or `NOT_A_SYSCALL` once the frame is not a call's any more
//! (rt_sigreturn restored it, or it was restarted).

use super::{nr, Errno, SysResult};
use crate::arch::syscall::SYSCALL_VECTOR;
use crate::arch::traps::TrapFrame;
use crate::task::signal::Restart;

/// `error_code` of a frame whose rax is not a system call's result.
const NOT_A_SYSCALL: u64 = u64::MAX;
/// The length of the `syscall` instruction.
const SYSCALL_INSN_LEN: u64 = 2;

/// Records the number of the call `frame` makes (its result overwrites rax).
pub fn enter(frame: &mut TrapFrame) {
    frame.error_code = frame.rax;
}

/// rax no longer holds a result (rt_sigreturn restored the program's).
pub fn forget_syscall(frame: &mut TrapFrame) {
    if frame.vector == SYSCALL_VECTOR {
        frame.error_code = NOT_A_SYSCALL;
    }
}

/// The restart code `frame`'s call returned, if any.
fn restart_code(frame: &TrapFrame) -> Option<Errno> {
    if frame.vector != SYSCALL_VECTOR || frame.error_code == NOT_A_SYSCALL {
        return None;
    }
    [Errno::ERESTARTSYS, Errno::ERESTARTNOINTR, Errno::ERESTARTNOHAND, Errno::ERESTART_RESTARTBLOCK]
        .into_iter()
        .find(|&code| frame.rax == (-(code as i64)) as u64)
}

fn rewind(frame: &mut TrapFrame, number: u64) {
    frame.rax = number;
    frame.rip = frame.rip.wrapping_sub(SYSCALL_INSN_LEN);
    frame.error_code = NOT_A_SYSCALL;
}

/// A handler is about to run (Linux's handle_signal): the call fails with
/// EINTR or is restarted, before the handler's frame saves the registers.
pub fn before_handler(frame: &mut TrapFrame, sa_restart: bool) {
    let number = frame.error_code;
    match restart_code(frame) {
        Some(Errno::ERESTARTSYS) if sa_restart => rewind(frame, number),
        Some(Errno::ERESTARTNOINTR) => rewind(frame, number),
        Some(_) => {
            frame.rax = (-(Errno::EINTR as i64)) as u64;
            frame.error_code = NOT_A_SYSCALL;
        }
        None => {}
    }
}

/// No handler ran: every interrupted call starts again (the timed waits
/// through restart_syscall).
pub fn without_handler(frame: &mut TrapFrame) {
    let number = frame.error_code;
    match restart_code(frame) {
        Some(Errno::ERESTART_RESTARTBLOCK) => rewind(frame, nr::RESTART_SYSCALL),
        Some(_) => rewind(frame, number),
        None => {}
    }
}

/// Saves how restart_syscall resumes the running thread's wait.
pub fn set_restart(restart: Restart) -> Errno {
    *crate::task::sched::current().signals.restart.lock() = Some(restart);
    Errno::ERESTART_RESTARTBLOCK
}

/// restart_syscall (219): resumes the wait saved by `set_restart`; with
/// none saved, EINTR (Linux's do_no_restart_syscall).
pub fn restart_syscall() -> SysResult {
    let saved = crate::task::sched::current().signals.restart.lock().take();
    match saved {
        Some(Restart::Sleep { deadline_ns, rem }) => super::time::sleep_until(deadline_ns, Some(rem)),
        Some(Restart::FutexWait { addr, expected, deadline_ns }) => {
            super::thread::futex_wait_until(addr, expected, Some(deadline_ns))
        }
        None => Err(Errno::EINTR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NANOSLEEP_AT: u64 = 0x40_1002;

    /// The frame of a system call `number` at `NANOSLEEP_AT - 2` that returned `errno`.
    fn returned(number: u64, errno: Errno) -> TrapFrame {
        let mut frame = TrapFrame { vector: SYSCALL_VECTOR, rax: number, rip: NANOSLEEP_AT, ..TrapFrame::default() };
        enter(&mut frame);
        frame.rax = (-(errno as i64)) as u64;
        frame
    }

    fn eintr() -> u64 {
        (-(Errno::EINTR as i64)) as u64
    }

    #[test_case]
    fn a_handler_turns_restart_codes_into_eintr_or_a_restart() {
        // (code, SA_RESTART, restarted?) as Linux's handle_signal decides.
        let cases = [
            (Errno::ERESTARTSYS, true, true),
            (Errno::ERESTARTSYS, false, false),
            (Errno::ERESTARTNOINTR, false, true),
            (Errno::ERESTARTNOHAND, true, false),
            (Errno::ERESTART_RESTARTBLOCK, true, false),
        ];
        for (code, sa_restart, restarted) in cases {
            let mut frame = returned(nr::FUTEX, code);
            before_handler(&mut frame, sa_restart);
            if restarted {
                assert_eq!((frame.rax, frame.rip), (nr::FUTEX, NANOSLEEP_AT - 2), "{code:?} restarts");
            } else {
                assert_eq!((frame.rax, frame.rip), (eintr(), NANOSLEEP_AT), "{code:?} is EINTR");
            }
            // Done once: the return to the handler's frame does not redo it.
            let again = frame.clone();
            without_handler(&mut frame);
            assert_eq!((frame.rax, frame.rip), (again.rax, again.rip));
        }
    }

    #[test_case]
    fn without_a_handler_every_code_restarts() {
        for code in [Errno::ERESTARTSYS, Errno::ERESTARTNOINTR, Errno::ERESTARTNOHAND] {
            let mut frame = returned(nr::NANOSLEEP, code);
            without_handler(&mut frame);
            assert_eq!((frame.rax, frame.rip), (nr::NANOSLEEP, NANOSLEEP_AT - 2), "{code:?}");
        }
        let mut frame = returned(nr::NANOSLEEP, Errno::ERESTART_RESTARTBLOCK);
        without_handler(&mut frame);
        assert_eq!((frame.rax, frame.rip), (nr::RESTART_SYSCALL, NANOSLEEP_AT - 2));
    }

    #[test_case]
    fn other_results_and_frames_are_left_alone() {
        let mut frame = returned(nr::FUTEX, Errno::EAGAIN);
        without_handler(&mut frame);
        before_handler(&mut frame, true);
        assert_eq!((frame.rax, frame.rip), ((-(Errno::EAGAIN as i64)) as u64, NANOSLEEP_AT));
        // rt_sigreturn restored a program's rax that happens to look like a code.
        let mut frame = returned(nr::RT_SIGRETURN, Errno::ERESTARTSYS);
        forget_syscall(&mut frame);
        without_handler(&mut frame);
        assert_eq!(frame.rip, NANOSLEEP_AT);
        // An interrupt's frame: rax is the program's.
        let mut frame = TrapFrame { vector: 32, rax: (-(Errno::ERESTARTSYS as i64)) as u64, ..TrapFrame::default() };
        without_handler(&mut frame);
        assert_eq!(frame.rip, 0);
    }
}
