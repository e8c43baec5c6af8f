//! Page-fault policy: which faults the kernel resolves, and what happens to
//! the rest. The arch trap code decodes the fault and calls `handle_page_fault`.
//!
//! A fault on a user address (by the program, or by the kernel copying user
//! memory in `uaccess`) is resolved against the current process's VMAs under
//! its `mmap_lock` (read). If it cannot be resolved, a user-mode fault kills
//! the process with SIGSEGV (or SIGKILL when memory ran out) and a log line;
//! a kernel-mode one is left to the copy's fix-up, which returns EFAULT.
//!
//! A kernel-mode fault on a user address anywhere else (not at the user-copy
//! instruction with its SMAP window open) is a kernel bug: a stray pointer,
//! caught by SMAP (a read or write of a present user page) or SMEP (running
//! one), or simply a missing page. It is reported as a kernel fault, never
//! resolved: quietly mapping the page would hide the bug.

use x86_64::registers::rflags::RFlags;

use super::addrspace::{Access, FaultError};
use super::layout::USER_END;
use crate::arch::extable;
use crate::arch::traps::{FaultOutcome, PageFaultInfo, TrapFrame};
use crate::task::{self, Signal};

pub fn handle_page_fault(info: &PageFaultInfo, frame: &TrapFrame) -> FaultOutcome {
    if !info.user && super::demand::contains(info.addr) {
        return super::demand::handle_fault(info);
    }
    // Every fault in user mode is the process's business, wherever it points.
    if info.user {
        return user_fault(info, frame);
    }
    if info.addr.as_u64() < USER_END {
        return if !info.instruction_fetch && extable::in_user_copy(frame) {
            user_fault(info, frame)
        } else {
            FaultOutcome::StrayUserAccess
        };
    }
    FaultOutcome::Unhandled
}

fn user_fault(info: &PageFaultInfo, frame: &TrapFrame) -> FaultOutcome {
    let interrupts_were_on = RFlags::from_bits_truncate(frame.rflags).contains(RFlags::INTERRUPT_FLAG);
    // A kernel access to user memory where we may not sleep (interrupts or
    // preemption off): do not take mmap_lock; the fix-up reports EFAULT.
    if !info.user && (!interrupts_were_on || !crate::arch::percpu::preemptible()) {
        return FaultOutcome::Unhandled;
    }
    let Some(thread) = task::current_thread() else { return FaultOutcome::Unhandled };
    let Some(process) = thread.process.as_ref() else { return FaultOutcome::Unhandled };
    let access = match (info.instruction_fetch, info.write) {
        (true, _) => Access::Execute,
        (false, true) => Access::Write,
        (false, false) => Access::Read,
    };
    let addr = info.addr.as_u64();
    crate::arch::enable_interrupts();
    let result = {
        let map = process.mm.vmas.read();
        match map.find(addr).filter(|_| addr < USER_END) {
            Some(vma) => process.mm.handle_fault(vma, addr, access),
            None => Err(FaultError::NoMapping),
        }
    };
    let _ = crate::arch::disable_interrupts();
    match result {
        Ok(()) => FaultOutcome::Resolved,
        Err(FaultError::OutOfMemory) => {
            log::warn!(
                "pid {} (tid {}) killed: out of memory at a {} fault of {addr:#x}",
                process.pid,
                thread.tid,
                info.access()
            );
            process.kill(Signal::Kill);
            if info.user {
                FaultOutcome::Killed
            } else {
                FaultOutcome::Unhandled
            }
        }
        Err(reason) if info.user => {
            let why = match reason {
                FaultError::NoMapping => "no mapping at this address",
                _ => "the mapping's protection forbids it",
            };
            log::warn!(
                "pid {} (tid {}) killed by SIGSEGV: {} of {addr:#x}: {why} (rip {:#x})",
                process.pid,
                thread.tid,
                info.access(),
                frame.rip
            );
            process.kill(Signal::Segv);
            FaultOutcome::Killed
        }
        Err(_) => FaultOutcome::Unhandled,
    }
}
