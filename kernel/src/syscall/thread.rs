//! Threads and processes: clone (threads only), exit, exit_group, ids,
//! sched_yield, futex, arch_prctl, set_tid_address, uname.

use core::sync::atomic::Ordering;

use super::time::read_timespec;
use super::{current_process, Errno, SysResult};
use crate::arch::context;
use crate::arch::traps::TrapFrame;
use crate::mm::layout::USER_END;
use crate::mm::uaccess::{copy_to_user, write_user};
use crate::task::futex::{self, FutexError};
use crate::task::thread::SpawnError;
use crate::task::{self, sched, Thread};

pub fn getpid() -> SysResult {
    Ok(current_process().pid as u64)
}

/// The first process has no parent, as on Linux.
pub fn getppid() -> SysResult {
    Ok(current_process().parent_pid as u64)
}

pub fn gettid() -> SysResult {
    Ok(sched::current().tid as u64)
}

pub fn sched_yield() -> SysResult {
    sched::yield_now();
    Ok(0)
}

pub fn exit(code: u64) -> SysResult {
    task::exit_thread(code as u8)
}

pub fn exit_group(code: u64) -> SysResult {
    current_process().exit_group(code as u8);
    task::exit_thread(code as u8)
}

pub fn set_tid_address(tidptr: u64) -> SysResult {
    let thread = sched::current();
    thread.clear_child_tid.store(tidptr, Ordering::Release);
    Ok(thread.tid as u64)
}

const ARCH_SET_GS: u64 = 0x1001;
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;
const ARCH_GET_GS: u64 = 0x1004;

pub fn arch_prctl(code: u64, addr: u64) -> SysResult {
    let thread = sched::current();
    match code {
        ARCH_SET_FS | ARCH_SET_GS if addr >= USER_END => Err(Errno::EPERM),
        ARCH_SET_FS => {
            context::set_user_fs(addr);
            thread.fs_base.store(addr, Ordering::Relaxed);
            Ok(0)
        }
        ARCH_SET_GS => {
            context::set_user_gs(addr);
            thread.gs_base.store(addr, Ordering::Relaxed);
            Ok(0)
        }
        ARCH_GET_FS => write_user(addr, &context::user_fs()).map(|_| 0).map_err(Into::into),
        ARCH_GET_GS => write_user(addr, &context::user_gs()).map(|_| 0).map_err(Into::into),
        _ => Err(Errno::EINVAL),
    }
}

const CLONE_VM: u64 = 0x100;
const CLONE_FS: u64 = 0x200;
const CLONE_SIGHAND: u64 = 0x800;
const CLONE_THREAD: u64 = 0x1_0000;
const CLONE_NEWNS: u64 = 0x2_0000;
const CLONE_SETTLS: u64 = 0x8_0000;
const CLONE_PARENT_SETTID: u64 = 0x10_0000;
const CLONE_CHILD_CLEARTID: u64 = 0x20_0000;
const CLONE_CHILD_SETTID: u64 = 0x100_0000;

pub fn clone(frame: &TrapFrame, flags: u64, stack: u64, parent_tid: u64, child_tid: u64, tls: u64) -> SysResult {
    // The low byte is the exit signal, which threads ignore.
    start_thread(frame, flags & !CSIGNAL, stack, parent_tid, child_tid, tls)
}

const CSIGNAL: u64 = 0xff;
const CLONE_PIDFD: u64 = 0x1000;
const CLONE_PARENT: u64 = 0x8000;
/// Every flag clone knows (Linux's CLONE_LEGACY_FLAGS).
const CLONE_LEGACY_FLAGS: u64 = 0xffff_ffff;
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// `struct clone_args` up to `tls` (CLONE_ARGS_SIZE_VER0), and up to `cgroup` (VER2, Linux 6.12's).
const CLONE_ARGS_SIZE_VER0: u64 = 64;
const CLONE_ARGS_SIZE_VER2: u64 = 88;
/// Linux's MAX_PID_NS_LEVEL: the longest set_tid array.
const MAX_PID_NS_LEVEL: u64 = 32;

/// clone3 (glibc's pthread_create uses it first): `struct clone_args` with
/// Linux's checks, then what clone does. Threads only, as clone.
pub fn clone3(frame: &TrapFrame, args: u64, size: u64) -> SysResult {
    if size > crate::mm::pages::PAGE {
        return Err(Errno::E2BIG);
    }
    if size < CLONE_ARGS_SIZE_VER0 {
        return Err(Errno::EINVAL);
    }
    let mut raw = [0u8; CLONE_ARGS_SIZE_VER2 as usize];
    let known = size.min(CLONE_ARGS_SIZE_VER2) as usize;
    crate::mm::uaccess::copy_from_user(&mut raw[..known], args)?;
    // A newer caller's extra fields must be zero (copy_struct_from_user).
    let mut rest = size - known as u64;
    let mut at = args + known as u64;
    while rest > 0 {
        let mut chunk = [0u8; 64];
        let n = rest.min(64) as usize;
        crate::mm::uaccess::copy_from_user(&mut chunk[..n], at)?;
        if chunk[..n].iter().any(|&b| b != 0) {
            return Err(Errno::E2BIG);
        }
        rest -= n as u64;
        at += n as u64;
    }
    let field = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    let (flags, _pidfd, child_tid, parent_tid, exit_signal) = (field(0), field(1), field(2), field(3), field(4));
    let (stack, stack_size, tls, set_tid, set_tid_size, cgroup) =
        (field(5), field(6), field(7), field(8), field(9), field(10));
    if set_tid_size > MAX_PID_NS_LEVEL || (set_tid == 0 && set_tid_size > 0) || (set_tid != 0 && set_tid_size == 0) {
        return Err(Errno::EINVAL);
    }
    if exit_signal & !CSIGNAL != 0 || (flags & CLONE_INTO_CGROUP != 0 && cgroup > i32::MAX as u64) {
        return Err(Errno::EINVAL);
    }
    // clone3_args_valid.
    if flags & !(CLONE_LEGACY_FLAGS | CLONE_CLEAR_SIGHAND | CLONE_INTO_CGROUP) != 0
        || flags & (CLONE_CLEAR_SIGHAND | CLONE_SIGHAND) == CLONE_CLEAR_SIGHAND | CLONE_SIGHAND
        || (flags & (CLONE_THREAD | CLONE_PARENT) != 0 && exit_signal != 0)
    {
        return Err(Errno::EINVAL);
    }
    let top = if stack == 0 {
        if stack_size != 0 {
            return Err(Errno::EINVAL);
        }
        0
    } else {
        let top = stack.checked_add(stack_size).filter(|&top| stack_size != 0 && top <= USER_END);
        top.ok_or(Errno::EINVAL)?
    };
    if set_tid != 0 {
        // Choosing the new thread's id is for checkpoint/restore, which needs CAP_CHECKPOINT_RESTORE
        // in a pid namespace; we have neither.
        return Err(Errno::EINVAL);
    }
    start_thread(frame, flags, top, parent_tid, child_tid, tls)
}

/// clone and clone3's common part: Linux's copy_process checks, then a new
/// thread of this process entering user mode where the caller returns to,
/// with rax 0 and `stack` (if not 0) as its stack pointer.
fn start_thread(frame: &TrapFrame, flags: u64, stack: u64, parent_tid: u64, child_tid: u64, tls: u64) -> SysResult {
    if flags & CLONE_THREAD != 0 && flags & CLONE_SIGHAND == 0 {
        return Err(Errno::EINVAL);
    }
    if flags & CLONE_SIGHAND != 0 && flags & CLONE_VM == 0 {
        return Err(Errno::EINVAL);
    }
    if flags & CLONE_FS != 0 && flags & CLONE_NEWNS != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & CLONE_PIDFD != 0 && flags & CLONE_THREAD != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & (CLONE_VM | CLONE_THREAD) != CLONE_VM | CLONE_THREAD {
        log::warn!("clone without CLONE_VM|CLONE_THREAD (a new process) is not supported: ENOSYS");
        return Err(Errno::ENOSYS);
    }
    let parent = sched::current();
    let process = current_process();
    let mut child_frame = frame.clone();
    child_frame.rax = 0;
    if stack != 0 {
        child_frame.rsp = stack;
    }
    let child = Thread::new_user(process.clone(), &child_frame, parent.fpu_snapshot()).map_err(|e| match e {
        SpawnError::TooManyThreads => Errno::EAGAIN,
        SpawnError::OutOfMemory => Errno::ENOMEM,
    })?;
    let fs = if flags & CLONE_SETTLS != 0 { tls } else { context::user_fs() };
    child.fs_base.store(fs, Ordering::Relaxed);
    child.gs_base.store(context::user_gs(), Ordering::Relaxed);
    child.signals.inherit_mask(&parent.signals);
    // As Linux's clone: the child inherits the CPU affinity.
    sched::set_affinity(&child, parent.affinity());
    let tid = child.tid;
    // Linux ignores faults on these two stores: so do we.
    if flags & CLONE_PARENT_SETTID != 0 {
        let _ = write_user(parent_tid, &tid);
    }
    if flags & CLONE_CHILD_SETTID != 0 {
        let _ = write_user(child_tid, &tid);
    }
    if flags & CLONE_CHILD_CLEARTID != 0 {
        child.clear_child_tid.store(child_tid, Ordering::Relaxed);
    }
    process.start_thread(child);
    Ok(tid as u64)
}

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAKE_BITSET: u64 = 10;
const FUTEX_PRIVATE_FLAG: u64 = 128;
const FUTEX_CLOCK_REALTIME: u64 = 256;

/// Linux's get_futex_key after its alignment check: the word must be in user
/// space, and a non-private futex (keyed by its page) must sit in memory
/// that suits a shared word.
fn futex_key_check(addr: u64, op: u64) -> Result<(), Errno> {
    // Linux's access_ok for a small size checks the start against the top.
    if addr > USER_END {
        return Err(Errno::EFAULT);
    }
    if op & FUTEX_PRIVATE_FLAG == 0 && !current_process().mm.can_hold_shared_futex(addr) {
        return Err(Errno::EFAULT);
    }
    Ok(())
}

pub fn futex(addr: u64, op: u64, val: u64, timeout: u64, _addr2: u64, val3: u64) -> SysResult {
    let command = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    if op & FUTEX_CLOCK_REALTIME != 0 && command != FUTEX_WAIT_BITSET {
        return Err(Errno::ENOSYS);
    }
    let mm_id = current_process().mm.id;
    match command {
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            if command == FUTEX_WAIT_BITSET && val3 as u32 == 0 {
                return Err(Errno::EINVAL);
            }
            // The timeout is read (and checked) before the futex word, as on Linux.
            let deadline = if timeout == 0 {
                None
            } else {
                let ns = read_timespec(timeout)?;
                let now = crate::arch::time::now_ns();
                Some(match command {
                    FUTEX_WAIT => now.saturating_add(ns),
                    // WAIT_BITSET takes an absolute time on the chosen clock.
                    _ if op & FUTEX_CLOCK_REALTIME != 0 => {
                        now.saturating_add(ns.saturating_sub(crate::arch::time::realtime_ns()))
                    }
                    _ => ns,
                })
            };
            if !addr.is_multiple_of(4) {
                return Err(Errno::EINVAL);
            }
            futex_key_check(addr, op)?;
            futex_wait_until(addr, val as u32, deadline)
        }
        FUTEX_WAKE | FUTEX_WAKE_BITSET => {
            if !addr.is_multiple_of(4) || (command == FUTEX_WAKE_BITSET && val3 as u32 == 0) {
                return Err(Errno::EINVAL);
            }
            futex_key_check(addr, op)?;
            // Linux wakes at least one waiter whatever the count (0 and negatives too).
            let count = (val as i32).max(1) as usize;
            Ok(futex::wake(mm_id, addr, count) as u64)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// FUTEX_WAIT's sleep. Interrupted by a signal, an untimed wait returns
/// ERESTARTSYS (restarted under SA_RESTART), a timed one
/// ERESTART_RESTARTBLOCK (EINTR whenever a handler runs), as on Linux.
pub fn futex_wait_until(addr: u64, expected: u32, deadline_ns: Option<u64>) -> SysResult {
    let mm_id = current_process().mm.id;
    futex::wait(mm_id, addr, expected, deadline_ns).map(|()| 0).map_err(|e| match e {
        FutexError::WouldBlock => Errno::EAGAIN,
        FutexError::TimedOut => Errno::ETIMEDOUT,
        FutexError::Interrupted => match deadline_ns {
            None => Errno::ERESTARTSYS,
            Some(deadline_ns) => {
                super::restart::set_restart(crate::task::signal::Restart::FutexWait { addr, expected, deadline_ns })
            }
        },
        FutexError::Fault => Errno::EFAULT,
    })
}

/// `struct utsname`: six fields of 65 bytes.
pub fn uname(buf: u64) -> SysResult {
    let fields: [&str; 6] = ["Linux", "(none)", "6.12.0-pervma", "#1 SMP per-VMA kernel", "x86_64", "(none)"];
    let mut out = [0u8; 6 * 65];
    for (i, field) in fields.iter().enumerate() {
        out[i * 65..i * 65 + field.len()].copy_from_slice(field.as_bytes());
    }
    copy_to_user(buf, &out)?;
    Ok(0)
}
