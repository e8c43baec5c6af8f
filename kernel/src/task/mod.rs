//! Threads, processes and scheduling.

pub mod cpio;
pub mod elf;
pub mod futex;
pub mod loader;
pub mod process;
pub mod sched;
pub mod signal;
pub mod thread;
pub mod timer;
pub mod wait;

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use crate::arch::traps::TrapFrame;
pub use process::{Process, Signal};
pub use thread::Thread;

/// The running thread, if the scheduler runs on this CPU.
pub fn current_thread() -> Option<Arc<Thread>> {
    if crate::arch::percpu::current_task() == 0 {
        return None;
    }
    Some(sched::current())
}

/// `f` with the running thread, if the scheduler runs on this CPU, without
/// taking a count of it (`sched::with_current`).
pub fn with_current_thread<R>(f: impl FnOnce(&Arc<Thread>) -> R) -> Option<R> {
    if crate::arch::percpu::current_task() == 0 {
        return None;
    }
    Some(sched::with_current(f))
}

/// Called on every way back to user mode (after a system call, an interrupt
/// or an exception from user mode): leave if the process is going down,
/// deliver a pending signal, switch if the tick asked for it.
pub fn return_to_user(frame: &mut TrapFrame) {
    loop {
        // Whether a kill came in while a signal was being delivered: look again.
        let killed = sched::with_current(|thread| {
            // Before the exit and signal checks: an interrupt after them stays set
            // for the next interruptible wait; one before them is seen by them.
            thread.clear_interrupted();
            if thread.process.as_ref().is_some_and(|p| p.is_exiting()) {
                exit_thread(0);
            }
            let Some(process) = thread.process.as_ref() else { return false };
            let mut delivery = signal::Delivery::None;
            if signal::pending(process, thread) != 0 {
                // Writing the frame may fault pages in: interrupts on.
                let interrupts = crate::arch::disable_interrupts();
                crate::arch::enable_interrupts();
                delivery = signal::deliver_pending(thread, process, frame);
                crate::arch::restore_interrupts(interrupts);
            }
            match delivery {
                signal::Delivery::Killed => return true,
                // No handler ran: an interrupted call starts again.
                signal::Delivery::None => crate::syscall::restart::without_handler(frame),
                signal::Delivery::Handler => {}
            }
            false
        });
        if killed {
            continue;
        }
        // A quiescent state; runs this CPU's ready RCU callbacks.
        crate::sync::rcu::on_return_to_user();
        if crate::arch::percpu::need_resched() {
            sched::schedule();
            continue;
        }
        return;
    }
}

/// Ends the running user thread with `code` (its process's status if it is
/// the last). Its robust futexes are marked FUTEX_OWNER_DIED (exit_group
/// too, as on Linux). CLONE_CHILD_CLEARTID: clears the word and wakes one
/// waiter, so a joining thread sees the exit.
pub fn exit_thread(code: u8) -> ! {
    let thread = sched::current();
    let process = thread.process.clone().expect("a user thread");
    let robust = thread.signals.robust_list.swap(0, Ordering::AcqRel);
    if robust != 0 {
        // Reading the list may fault pages in: interrupts on (an interrupt's
        // way back to user mode can end here with them off).
        let interrupts = crate::arch::disable_interrupts();
        crate::arch::enable_interrupts();
        futex::exit_robust_list(&mut futex::UserRobustMemory { mm_id: process.mm.id }, robust, thread.tid);
        crate::arch::restore_interrupts(interrupts);
    }
    let clear = thread.clear_child_tid.swap(0, Ordering::AcqRel);
    if clear != 0 && !process.is_exiting() {
        // A bad address is the program's problem, not ours: ignore the fault.
        let _ = crate::mm::uaccess::write_user(clear, &0u32);
        futex::wake(process.mm.id, clear, 1);
    }
    process.thread_exited(&thread, code);
    drop(process);
    drop(thread);
    sched::exit_current()
}

/// A CPU exception in user mode other than a page fault: the signal Linux
/// would send, to the thread's handler if it has one, else fatal with a log line.
pub fn user_exception(vector: u8, frame: &mut TrapFrame) {
    // si_code and si_addr as Linux's traps.c gives them.
    let (signal, code, addr) = match vector {
        0 => (Signal::Fpe, 1, frame.rip),          // FPE_INTDIV
        16 | 19 => (Signal::Fpe, 0, frame.rip),    // (Linux decodes the FPU status; we do not)
        1 => (Signal::Trap, 2, frame.rip),         // TRAP_TRACE
        3 => (Signal::Trap, signal::SI_KERNEL, 0), // int3
        6 => (Signal::Ill, 2, frame.rip),          // ILL_ILLOPN
        17 => (Signal::Bus, 1, 0),                 // BUS_ADRALN
        _ => (Signal::Segv, signal::SI_KERNEL, 0), // #GP and the rest
    };
    let info = signal::SigInfo::fault(signal as u32, code, addr);
    if signal::deliver_fault(frame, &info).is_ok() {
        return;
    }
    if let Some(thread) = current_thread() {
        if let Some(process) = thread.process.as_ref() {
            log::warn!(
                "pid {} (tid {}) killed by {signal:?}: exception {vector} (error code {:#x}) at rip {:#x}",
                process.pid,
                thread.tid,
                frame.error_code,
                frame.rip
            );
            process.kill(signal);
        }
    }
}
