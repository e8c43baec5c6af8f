//! The Linux x86_64 system-call ABI: numbers, arguments (rdi, rsi, rdx, r10,
//! r8, r9), results in rax (negative errno on failure).
//!
//! Handlers are thin: decode and check arguments, call into `mm` or `task`,
//! map the typed error to an errno. Anything not implemented returns ENOSYS
//! and is logged once per number.

mod fs;
mod io;
mod membarrier;
mod memory;
pub mod restart;
mod signal;
mod startup;
mod thread;
mod time;

pub use startup::default_limits;

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::traps::TrapFrame;
use crate::mm::uaccess::Efault;

/// Linux errno values we return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
pub enum Errno {
    EPERM = 1,
    ENOENT = 2,
    ESRCH = 3,
    EINTR = 4,
    EIO = 5,
    E2BIG = 7,
    EBADF = 9,
    EAGAIN = 11,
    ENOMEM = 12,
    EACCES = 13,
    EFAULT = 14,
    EEXIST = 17,
    ENODEV = 19,
    ENOTDIR = 20,
    EISDIR = 21,
    EINVAL = 22,
    EMFILE = 24,
    ENOTTY = 25,
    ESPIPE = 29,
    ENAMETOOLONG = 36,
    ENOSYS = 38,
    EOVERFLOW = 75,
    ETIMEDOUT = 110,
    // Linux's restart codes: never seen by user space (`restart`).
    ERESTARTSYS = 512,
    ERESTARTNOINTR = 513,
    ERESTARTNOHAND = 514,
    #[allow(non_camel_case_types)]
    ERESTART_RESTARTBLOCK = 516,
}

impl From<Efault> for Errno {
    fn from(_: Efault) -> Self {
        Errno::EFAULT
    }
}

pub type SysResult = Result<u64, Errno>;

pub mod nr {
    pub const READ: u64 = 0;
    pub const WRITE: u64 = 1;
    pub const OPEN: u64 = 2;
    pub const CLOSE: u64 = 3;
    pub const FSTAT: u64 = 5;
    pub const LSEEK: u64 = 8;
    pub const MMAP: u64 = 9;
    pub const MPROTECT: u64 = 10;
    pub const MUNMAP: u64 = 11;
    pub const BRK: u64 = 12;
    pub const PREAD64: u64 = 17;
    pub const WRITEV: u64 = 20;
    pub const SCHED_YIELD: u64 = 24;
    pub const MREMAP: u64 = 25;
    pub const MADVISE: u64 = 28;
    pub const NANOSLEEP: u64 = 35;
    pub const GETPID: u64 = 39;
    pub const CLONE: u64 = 56;
    pub const EXIT: u64 = 60;
    pub const UNAME: u64 = 63;
    pub const GETPPID: u64 = 110;
    pub const ARCH_PRCTL: u64 = 158;
    pub const GETTID: u64 = 186;
    pub const FUTEX: u64 = 202;
    pub const SET_TID_ADDRESS: u64 = 218;
    pub const CLOCK_GETTIME: u64 = 228;
    pub const EXIT_GROUP: u64 = 231;
    pub const RT_SIGACTION: u64 = 13;
    pub const RT_SIGPROCMASK: u64 = 14;
    pub const RT_SIGRETURN: u64 = 15;
    pub const KILL: u64 = 62;
    pub const GETRLIMIT: u64 = 97;
    pub const RT_SIGPENDING: u64 = 127;
    pub const SIGALTSTACK: u64 = 131;
    pub const TKILL: u64 = 200;
    pub const SCHED_GETAFFINITY: u64 = 204;
    pub const TGKILL: u64 = 234;
    pub const SET_ROBUST_LIST: u64 = 273;
    pub const GET_ROBUST_LIST: u64 = 274;
    pub const PRLIMIT64: u64 = 302;
    pub const GETCPU: u64 = 309;
    pub const GETRANDOM: u64 = 318;
    pub const CLOCK_NANOSLEEP: u64 = 230;
    pub const OPENAT: u64 = 257;
    pub const RESTART_SYSCALL: u64 = 219;
    // Real programs (glibc and musl with pthreads).
    pub const IOCTL: u64 = 16;
    pub const MSYNC: u64 = 26;
    pub const MINCORE: u64 = 27;
    pub const READLINK: u64 = 89;
    pub const MLOCK: u64 = 149;
    pub const MUNLOCK: u64 = 150;
    pub const MLOCKALL: u64 = 151;
    pub const MUNLOCKALL: u64 = 152;
    pub const SETRLIMIT: u64 = 160;
    pub const SCHED_SETAFFINITY: u64 = 203;
    pub const NEWFSTATAT: u64 = 262;
    pub const READLINKAT: u64 = 267;
    pub const MEMBARRIER: u64 = 324;
    pub const MLOCK2: u64 = 325;
    pub const RSEQ: u64 = 334;
    pub const CLONE3: u64 = 435;
    pub const RT_SIGTIMEDWAIT: u64 = 128;
}

/// Numbers already reported as unimplemented: one bit each up to 510, and
/// bit 511 for every larger number (so no program can flood the log).
static REPORTED: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

fn report_unimplemented(number: u64) {
    let bit = number.min(511) as usize;
    let word = &REPORTED[bit / 64];
    let first_time = word.fetch_or(1 << (bit % 64), Ordering::Relaxed) & (1 << (bit % 64)) == 0;
    if first_time {
        log::warn!("system call {number} is not implemented: returning ENOSYS");
    }
}

pub fn dispatch(frame: &mut TrapFrame) {
    restart::enter(frame);
    let a = [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9];
    // Arguments Linux declares `int` or `unsigned int` (fds, counts, clock
    // ids, futex ops, advice) use only their low 32 bits, as on Linux.
    let int = |v: u64| v as u32 as u64;
    let result = match frame.rax {
        // fds from 3 are files (`fs.rs`); 0-2 the console (`io.rs`).
        nr::READ if int(a[0]) >= 3 => fs::read(int(a[0]), a[1], a[2]),
        nr::READ => io::read(int(a[0]), a[1], a[2]),
        nr::WRITE if int(a[0]) >= 3 => fs::write(int(a[0]), a[1], a[2]),
        nr::WRITE => io::write(int(a[0]), a[1], a[2]),
        nr::WRITEV if int(a[0]) >= 3 => fs::writev(int(a[0]), a[1], int(a[2])),
        nr::WRITEV => io::writev(int(a[0]), a[1], int(a[2])),
        nr::MMAP => memory::mmap(a[0], a[1], a[2], a[3], int(a[4]), a[5]),
        nr::MPROTECT => memory::mprotect(a[0], a[1], a[2]),
        nr::MUNMAP => memory::munmap(a[0], a[1]),
        nr::BRK => memory::brk(a[0]),
        nr::MREMAP => memory::mremap(a[0], a[1], a[2], a[3], a[4]),
        nr::MADVISE => memory::madvise(a[0], a[1], int(a[2])),
        nr::SCHED_YIELD => thread::sched_yield(),
        nr::NANOSLEEP => time::nanosleep(a[0], a[1]),
        nr::GETPID => thread::getpid(),
        nr::GETPPID => thread::getppid(),
        nr::GETTID => thread::gettid(),
        nr::CLONE => thread::clone(frame, a[0], a[1], a[2], a[3], a[4]),
        nr::EXIT => thread::exit(a[0]),
        nr::EXIT_GROUP => thread::exit_group(a[0]),
        nr::UNAME => thread::uname(a[0]),
        nr::ARCH_PRCTL => thread::arch_prctl(int(a[0]), a[1]),
        nr::FUTEX => thread::futex(a[0], int(a[1]), a[2], a[3], a[4], a[5]),
        nr::SET_TID_ADDRESS => thread::set_tid_address(a[0]),
        nr::CLOCK_GETTIME => time::clock_gettime(int(a[0]), a[1]),
        nr::RT_SIGACTION => signal::rt_sigaction(int(a[0]), a[1], a[2], a[3]),
        nr::RT_SIGPROCMASK => signal::rt_sigprocmask(int(a[0]), a[1], a[2], a[3]),
        nr::RT_SIGRETURN => signal::rt_sigreturn(frame),
        nr::RT_SIGPENDING => signal::rt_sigpending(a[0], a[1]),
        nr::SIGALTSTACK => signal::sigaltstack(frame, a[0], a[1]),
        nr::KILL => signal::kill(int(a[0]), int(a[1])),
        nr::TKILL => signal::tkill(int(a[0]), int(a[1])),
        nr::TGKILL => signal::tgkill(int(a[0]), int(a[1]), int(a[2])),
        nr::SET_ROBUST_LIST => startup::set_robust_list(a[0], a[1]),
        nr::GET_ROBUST_LIST => startup::get_robust_list(int(a[0]), a[1], a[2]),
        nr::GETRLIMIT => startup::getrlimit(int(a[0]), a[1]),
        nr::PRLIMIT64 => startup::prlimit64(int(a[0]), int(a[1]), a[2], a[3]),
        nr::GETRANDOM => startup::getrandom(a[0], a[1], int(a[2])),
        nr::SCHED_GETAFFINITY => startup::sched_getaffinity(int(a[0]), int(a[1]), a[2]),
        nr::GETCPU => startup::getcpu(a[0], a[1], a[2]),
        nr::CLOCK_NANOSLEEP => startup::clock_nanosleep(int(a[0]), int(a[1]), a[2], a[3]),
        nr::RESTART_SYSCALL => restart::restart_syscall(),
        // Real programs (glibc and musl with pthreads).
        nr::IOCTL => io::ioctl(int(a[0]), int(a[1]), a[2]),
        nr::MSYNC => memory::msync(a[0], a[1], int(a[2])),
        nr::MINCORE => memory::mincore(a[0], a[1], a[2]),
        nr::READLINK => fs::readlink(a[0], a[1], int(a[2])),
        nr::READLINKAT => fs::readlinkat(int(a[0]), a[1], a[2], int(a[3])),
        nr::NEWFSTATAT => fs::newfstatat(int(a[0]), a[1], a[2], int(a[3])),
        nr::MLOCK => memory::mlock(a[0], a[1]),
        nr::MUNLOCK => memory::munlock(a[0], a[1]),
        nr::MLOCKALL => memory::mlockall(int(a[0])),
        nr::MUNLOCKALL => memory::munlockall(),
        nr::MLOCK2 => memory::mlock2(a[0], a[1], int(a[2])),
        nr::SETRLIMIT => startup::setrlimit(int(a[0]), a[1]),
        nr::SCHED_SETAFFINITY => startup::sched_setaffinity(int(a[0]), int(a[1]), a[2]),
        nr::MEMBARRIER => membarrier::membarrier(int(a[0]), int(a[1]), int(a[2])),
        nr::CLONE3 => thread::clone3(frame, a[0], a[1]),
        nr::RT_SIGTIMEDWAIT => signal::rt_sigtimedwait(a[0], a[1], a[2], a[3]),
        // As a Linux built without CONFIG_RSEQ: glibc then runs without it
        // (musl never registers), so it is not logged as missing.
        nr::RSEQ => Err(Errno::ENOSYS),
        nr::OPEN => fs::open(a[0], int(a[1]), int(a[2])),
        nr::OPENAT => fs::openat(int(a[0]), a[1], int(a[2]), int(a[3])),
        nr::CLOSE => fs::close(int(a[0])),
        nr::FSTAT => fs::fstat(int(a[0]), a[1]),
        nr::LSEEK => fs::lseek(int(a[0]), a[1], int(a[2])),
        nr::PREAD64 => fs::pread64(int(a[0]), a[1], a[2], a[3]),
        number => {
            report_unimplemented(number);
            Err(Errno::ENOSYS)
        }
    };
    frame.rax = match result {
        Ok(value) => value,
        Err(errno) => (-(errno as i64)) as u64,
    };
}

/// The running process (system calls only come from user threads).
fn current_process() -> alloc::sync::Arc<crate::task::Process> {
    crate::task::sched::current().process.clone().expect("system calls come from user threads")
}
