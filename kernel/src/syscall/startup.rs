//! Calls glibc and musl make at start-up: set_robust_list, get_robust_list,
//! getrlimit, setrlimit, prlimit64, getrandom, sched_getaffinity,
//! sched_setaffinity, getcpu. (rseq stays ENOSYS, as a Linux built
//! without CONFIG_RSEQ: glibc then runs without it, musl never asks.)

use core::sync::atomic::{AtomicU64, Ordering};

use super::{current_process, Errno, SysResult};
use crate::mm::uaccess::{copy_to_user, read_user, write_user};
use crate::task::{sched, Process, Thread};

/// `struct robust_list_head` is three words.
const ROBUST_LIST_HEAD_SIZE: u64 = 24;

pub fn set_robust_list(head: u64, len: u64) -> SysResult {
    if len != ROBUST_LIST_HEAD_SIZE {
        return Err(Errno::EINVAL);
    }
    sched::current().signals.robust_list.store(head, Ordering::Release);
    Ok(0)
}

/// Thread `pid` of this process (0: the caller), as Linux's find_task_by_vpid within it.
fn thread_by_id(process: &Process, pid: u64) -> Result<alloc::sync::Arc<Thread>, Errno> {
    if pid as u32 == 0 {
        return Ok(sched::current());
    }
    process.find_thread(pid as u32).ok_or(Errno::ESRCH)
}

pub fn get_robust_list(pid: u64, head_ptr: u64, len_ptr: u64) -> SysResult {
    let thread = thread_by_id(&current_process(), pid)?;
    let head = thread.signals.robust_list.load(Ordering::Acquire);
    write_user(len_ptr, &ROBUST_LIST_HEAD_SIZE)?;
    write_user(head_ptr, &head)?;
    Ok(0)
}

const RLIM_INFINITY: u64 = u64::MAX;
const RLIM_NLIMITS: u64 = 16;

/// Linux's limits for init (INIT_RLIMITS, with fork_init's NPROC and SIGPENDING).
pub fn default_limits() -> [[u64; 2]; RLIM_NLIMITS as usize] {
    let threads = crate::task::thread::max_threads() as u64 / 2;
    const MIB8: u64 = 8 << 20;
    [
        [RLIM_INFINITY; 2],    // CPU
        [RLIM_INFINITY; 2],    // FSIZE
        [RLIM_INFINITY; 2],    // DATA
        [MIB8, RLIM_INFINITY], // STACK
        [0, RLIM_INFINITY],    // CORE
        [RLIM_INFINITY; 2],    // RSS
        [threads; 2],          // NPROC
        [1024, 4096],          // NOFILE
        [MIB8; 2],             // MEMLOCK
        [RLIM_INFINITY; 2],    // AS
        [RLIM_INFINITY; 2],    // LOCKS
        [threads; 2],          // SIGPENDING
        [819_200; 2],          // MSGQUEUE
        [0; 2],                // NICE
        [0; 2],                // RTPRIO
        [RLIM_INFINITY; 2],    // RTTIME
    ]
}

/// Linux's sysctl_nr_open: the highest RLIMIT_NOFILE maximum.
const NR_OPEN: u64 = 1 << 20;

/// prlimit64: limits are stored per process (we run as root, so raising
/// them is allowed, as on Linux); `setrlimit` says which bind.
pub fn prlimit64(pid: u64, resource: u64, new: u64, old: u64) -> SysResult {
    let new = if new != 0 {
        let cur = read_user::<u64>(new)?;
        let max = read_user::<u64>(new.wrapping_add(8))?;
        Some([cur, max])
    } else {
        None
    };
    let process = current_process();
    thread_by_id(&process, pid)?;
    let resource = resource as u32 as u64;
    if resource >= RLIM_NLIMITS {
        return Err(Errno::EINVAL);
    }
    if let Some([cur, max]) = new {
        if cur > max {
            return Err(Errno::EINVAL);
        }
        if resource == 7 && max > NR_OPEN {
            return Err(Errno::EPERM);
        }
    }
    let previous = {
        let mut limits = process.limits.lock();
        let previous = limits[resource as usize];
        if let Some(limit) = new {
            limits[resource as usize] = limit;
        }
        previous
    };
    if old != 0 {
        write_user(old, &previous[0])?;
        write_user(old.wrapping_add(8), &previous[1])?;
    }
    Ok(0)
}

/// setrlimit: prlimit64 on the caller with the new limit only. Enforced:
/// RLIMIT_NOFILE (open's EMFILE) and RLIMIT_AS (ENOMEM from mmap and mremap; brk stays).
/// RLIMIT_NPROC does not bind us: we run as root, which Linux exempts.
/// RLIMIT_STACK is read at exec, which there is none of after start-up.
pub fn setrlimit(resource: u64, rlim: u64) -> SysResult {
    // A NULL limit is EFAULT here (prlimit64 reads it as "no new limit").
    read_user::<u64>(rlim)?;
    read_user::<u64>(rlim.wrapping_add(8))?;
    prlimit64(0, resource, rlim, 0)
}

pub fn getrlimit(resource: u64, rlim: u64) -> SysResult {
    let resource = resource as u32 as u64;
    if resource >= RLIM_NLIMITS {
        return Err(Errno::EINVAL);
    }
    let [cur, max] = current_process().limits.lock()[resource as usize];
    write_user(rlim, &cur)?;
    write_user(rlim.wrapping_add(8), &max)?;
    Ok(0)
}

const GRND_NONBLOCK: u64 = 1;
const GRND_RANDOM: u64 = 2;
const GRND_INSECURE: u64 = 4;

/// getrandom: RDRAND where the CPU has it, else the TSC through splitmix64
/// (not cryptographic; no program here needs it to be).
pub fn getrandom(buf: u64, len: u64, flags: u64) -> SysResult {
    let flags = flags as u32 as u64;
    if flags & !(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) != 0
        || flags & (GRND_INSECURE | GRND_RANDOM) == GRND_INSECURE | GRND_RANDOM
    {
        return Err(Errno::EINVAL);
    }
    let len = len.min(i32::MAX as u64);
    let mut done = 0u64;
    let mut chunk = [0u8; 256];
    while done < len {
        for word in chunk.chunks_exact_mut(8) {
            word.copy_from_slice(&random_u64().to_le_bytes());
        }
        let n = (len - done).min(chunk.len() as u64);
        if copy_to_user(buf.wrapping_add(done), &chunk[..n as usize]).is_err() {
            return if done > 0 { Ok(done) } else { Err(Errno::EFAULT) };
        }
        done += n;
        if current_process().is_exiting() {
            break;
        }
    }
    Ok(done)
}

fn random_u64() -> u64 {
    if let Some(value) = crate::arch::rdrand() {
        return value;
    }
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed) ^ crate::arch::read_tsc();
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn sched_getaffinity(pid: u64, len: u64, mask: u64) -> SysResult {
    let len = len as u32 as u64;
    let cpus = crate::arch::smp::cpu_count() as u64;
    if len * 8 < cpus || !len.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    let thread = thread_by_id(&current_process(), pid)?;
    let online = if cpus >= 64 { u64::MAX } else { (1u64 << cpus) - 1 };
    // Linux copies cpumask_size() bytes: one word for up to 64 CPUs.
    write_user(mask, &(thread.affinity() & online))?;
    Ok(8)
}

/// sched_setaffinity: a mask must name an online CPU (EINVAL otherwise);
/// the thread then runs only on the online CPUs in it (the caller moves at
/// once if it is on another). A mask shorter than a word is padded with zeros, a longer one is
/// read and its extra bits ignored, as Linux's get_user_cpu_mask does.
pub fn sched_setaffinity(pid: u64, len: u64, mask: u64) -> SysResult {
    let len = len as u32 as usize;
    let mut bytes = [0u8; 8];
    let n = len.min(8);
    crate::mm::uaccess::copy_from_user(&mut bytes[..n], mask)?;
    let thread = thread_by_id(&current_process(), pid)?;
    let cpus = crate::arch::smp::cpu_count() as u64;
    let online = if cpus >= 64 { u64::MAX } else { (1u64 << cpus) - 1 };
    let mask = u64::from_le_bytes(bytes) & online;
    if mask == 0 {
        return Err(Errno::EINVAL);
    }
    sched::set_affinity(&thread, mask);
    Ok(0)
}

pub fn getcpu(cpu: u64, node: u64, _cache: u64) -> SysResult {
    let id = crate::arch::cpu_id() as u32;
    if cpu != 0 {
        write_user(cpu, &id)?;
    }
    if node != 0 {
        write_user(node, &0u32)?;
    }
    Ok(0)
}

const CLOCK_REALTIME: u64 = 0;
const CLOCK_MONOTONIC: u64 = 1;
const CLOCK_PROCESS_CPUTIME_ID: u64 = 2;
const CLOCK_BOOTTIME: u64 = 7;
const TIMER_ABSTIME: u64 = 1;

/// clock_nanosleep (glibc's nanosleep and sleep use it): relative or
/// absolute (TIMER_ABSTIME) on the realtime, monotonic and boot-time
/// clocks; interrupted by a signal whose handler runs it returns EINTR and,
/// when relative, stores the time left in `rem` (`time::sleep_until`).
pub fn clock_nanosleep(clock: u64, flags: u64, req: u64, rem: u64) -> SysResult {
    let realtime = match clock {
        CLOCK_REALTIME => true,
        // Without CPU-time accounting the process clock is time since boot, as clock_gettime says.
        CLOCK_MONOTONIC | CLOCK_BOOTTIME | CLOCK_PROCESS_CPUTIME_ID => false,
        _ => return Err(Errno::EINVAL),
    };
    let ns = super::time::read_timespec(req)?;
    let now = crate::arch::time::now_ns();
    let absolute = flags & TIMER_ABSTIME != 0;
    let deadline = match (absolute, realtime) {
        (false, _) => now.saturating_add(ns),
        (true, true) => now.saturating_add(ns.saturating_sub(crate::arch::time::realtime_ns())),
        (true, false) => ns,
    };
    super::time::sleep_until(deadline, (!absolute).then_some(rem))
}
