//! clock_gettime and nanosleep.

use super::{Errno, SysResult};
use crate::arch::time::now_ns;
use crate::mm::uaccess::{read_user, write_user};

const CLOCK_REALTIME: u64 = 0;
const CLOCK_MONOTONIC: u64 = 1;
const CLOCK_PROCESS_CPUTIME_ID: u64 = 2;
const CLOCK_THREAD_CPUTIME_ID: u64 = 3;
const CLOCK_MONOTONIC_RAW: u64 = 4;
const CLOCK_REALTIME_COARSE: u64 = 5;
const CLOCK_MONOTONIC_COARSE: u64 = 6;
const CLOCK_BOOTTIME: u64 = 7;

fn write_timespec(addr: u64, ns: u64) -> Result<(), Errno> {
    write_user(addr, &((ns / 1_000_000_000) as i64))?;
    // A pointer near 2^64 wraps here and fails the range check: EFAULT.
    write_user(addr.wrapping_add(8), &((ns % 1_000_000_000) as i64))?;
    Ok(())
}

pub fn clock_gettime(clock: u64, tp: u64) -> SysResult {
    let ns = match clock {
        CLOCK_REALTIME | CLOCK_REALTIME_COARSE => crate::arch::time::realtime_ns(),
        CLOCK_MONOTONIC | CLOCK_MONOTONIC_RAW | CLOCK_MONOTONIC_COARSE | CLOCK_BOOTTIME => now_ns(),
        // No per-thread CPU accounting yet: time since boot is an upper bound.
        CLOCK_PROCESS_CPUTIME_ID | CLOCK_THREAD_CPUTIME_ID => now_ns(),
        _ => return Err(Errno::EINVAL),
    };
    write_timespec(tp, ns)?;
    Ok(0)
}

/// A relative timeout from user memory, in nanoseconds; EINVAL if malformed.
pub fn read_timespec(addr: u64) -> Result<u64, Errno> {
    let sec = read_user::<i64>(addr)?;
    let nsec = read_user::<i64>(addr.wrapping_add(8))?;
    if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
        return Err(Errno::EINVAL);
    }
    Ok((sec as u64).saturating_mul(1_000_000_000).saturating_add(nsec as u64))
}

pub fn nanosleep(req: u64, rem: u64) -> SysResult {
    let ns = read_timespec(req)?;
    sleep_until(now_ns().saturating_add(ns), Some(rem))
}

/// Sleeps until `deadline_ns` (monotonic). A relative sleep (`rem` given,
/// 0 for none) interrupted by a signal writes the time left to `rem` and
/// returns ERESTART_RESTARTBLOCK, an absolute one ERESTARTNOHAND: EINTR
/// for the program whatever SA_RESTART says, as on Linux.
pub fn sleep_until(deadline_ns: u64, rem: Option<u64>) -> SysResult {
    let queue = crate::task::wait::WaitQueue::new();
    if queue.wait_interruptible(Some(deadline_ns), || false) != crate::task::wait::Wake::Interrupted {
        return Ok(0);
    }
    let Some(rem) = rem else { return Err(Errno::ERESTARTNOHAND) };
    let left = deadline_ns.saturating_sub(now_ns());
    if left == 0 {
        return Ok(0);
    }
    if rem != 0 {
        write_timespec(rem, left)?;
    }
    Err(super::restart::set_restart(crate::task::signal::Restart::Sleep { deadline_ns, rem }))
}
