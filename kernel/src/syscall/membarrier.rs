//! membarrier: memory barriers on the CPUs running the caller's threads
//! (private expedited) or on every CPU (global), for user-space RCU and
//! garbage collectors. An IPI that runs a full fence on each target CPU is
//! the barrier: a CPU interrupted between two of a thread's instructions
//! orders them against everything before the call.

use core::sync::atomic::{fence, Ordering};

use super::{current_process, Errno, SysResult};
use crate::arch::ipi::{self, CpuSet};

const CMD_QUERY: u64 = 0;
const CMD_GLOBAL: u64 = 1 << 0;
const CMD_GLOBAL_EXPEDITED: u64 = 1 << 1;
const CMD_REGISTER_GLOBAL_EXPEDITED: u64 = 1 << 2;
const CMD_PRIVATE_EXPEDITED: u64 = 1 << 3;
const CMD_REGISTER_PRIVATE_EXPEDITED: u64 = 1 << 4;
const CMD_PRIVATE_EXPEDITED_SYNC_CORE: u64 = 1 << 5;
const CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: u64 = 1 << 6;
const CMD_PRIVATE_EXPEDITED_RSEQ: u64 = 1 << 7;
const CMD_GET_REGISTRATIONS: u64 = 1 << 9;
const CMD_FLAG_CPU: u64 = 1;

/// What QUERY answers: every command but the rseq ones (no rseq here, as a
/// Linux built without CONFIG_RSEQ).
const SUPPORTED: u64 = CMD_GET_REGISTRATIONS
    | CMD_GLOBAL
    | CMD_GLOBAL_EXPEDITED
    | CMD_REGISTER_GLOBAL_EXPEDITED
    | CMD_PRIVATE_EXPEDITED
    | CMD_REGISTER_PRIVATE_EXPEDITED
    | CMD_PRIVATE_EXPEDITED_SYNC_CORE
    | CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE;

/// A fence on each CPU of `cpus`, this one's included (an interrupt
/// return serialises the instruction stream too: SYNC_CORE's guarantee).
fn fence_on(cpus: CpuSet) {
    fence(Ordering::SeqCst);
    ipi::call_on(cpus, &|| fence(Ordering::SeqCst));
    fence(Ordering::SeqCst);
}

pub fn membarrier(cmd: u64, flags: u64, _cpu_id: u64) -> SysResult {
    let flags_allowed = if cmd == CMD_PRIVATE_EXPEDITED_RSEQ { CMD_FLAG_CPU } else { 0 };
    if flags & !flags_allowed != 0 {
        return Err(Errno::EINVAL);
    }
    let process = current_process();
    let registered = |command: u64| process.membarrier.load(Ordering::Acquire) & command != 0;
    match cmd {
        CMD_QUERY => Ok(SUPPORTED),
        // Every CPU passes through a quiescent state: a barrier on each.
        CMD_GLOBAL => {
            if ipi::online().len() > 1 {
                crate::sync::rcu::synchronize_rcu();
            }
            Ok(0)
        }
        // To the CPUs running processes that registered: any CPU may (a
        // superset is allowed), and processes are few.
        CMD_GLOBAL_EXPEDITED => {
            fence_on(ipi::online());
            Ok(0)
        }
        CMD_REGISTER_GLOBAL_EXPEDITED | CMD_REGISTER_PRIVATE_EXPEDITED | CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE => {
            process.membarrier.fetch_or(cmd, Ordering::AcqRel);
            Ok(0)
        }
        CMD_PRIVATE_EXPEDITED | CMD_PRIVATE_EXPEDITED_SYNC_CORE => {
            // Registration is the command's bit shifted once (Linux's EPERM without it).
            if !registered(cmd << 1) {
                return Err(Errno::EPERM);
            }
            // The CPUs with this address space loaded run its threads, or did last.
            fence_on(process.mm.cpus());
            Ok(0)
        }
        CMD_GET_REGISTRATIONS => Ok(process.membarrier.load(Ordering::Acquire)),
        _ => Err(Errno::EINVAL),
    }
}
