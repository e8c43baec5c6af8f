//! Raw Linux x86_64 system calls and thin typed wrappers for the ones the kernel
//! implements. Wrappers that can only hurt the caller through their return value
//! are safe; those that can change memory Rust code may be using are `unsafe`.

use core::arch::asm;
use core::sync::atomic::AtomicU32;

use crate::errno::Errno;

/// Linux x86_64 system call numbers.
pub mod nr {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const OPEN: usize = 2;
    pub const CLOSE: usize = 3;
    pub const FSTAT: usize = 5;
    pub const LSEEK: usize = 8;
    pub const MMAP: usize = 9;
    pub const MPROTECT: usize = 10;
    pub const MUNMAP: usize = 11;
    pub const BRK: usize = 12;
    pub const PREAD64: usize = 17;
    pub const WRITEV: usize = 20;
    pub const SCHED_YIELD: usize = 24;
    pub const MADVISE: usize = 28;
    pub const NANOSLEEP: usize = 35;
    pub const GETPID: usize = 39;
    pub const CLONE: usize = 56;
    pub const EXIT: usize = 60;
    pub const UNAME: usize = 63;
    pub const MKDIR: usize = 83;
    pub const GETPPID: usize = 110;
    pub const ARCH_PRCTL: usize = 158;
    pub const MOUNT: usize = 165;
    pub const GETTID: usize = 186;
    pub const FUTEX: usize = 202;
    pub const SCHED_SETAFFINITY: usize = 203;
    pub const SCHED_GETAFFINITY: usize = 204;
    pub const SET_TID_ADDRESS: usize = 218;
    pub const CLOCK_GETTIME: usize = 228;
    pub const EXIT_GROUP: usize = 231;
    pub const OPENAT: usize = 257;
    pub const GETCPU: usize = 309;
}

pub const PROT_NONE: usize = 0;
pub const PROT_READ: usize = 1;
pub const PROT_WRITE: usize = 2;
pub const PROT_EXEC: usize = 4;
pub const PROT_SEM: usize = 0x8;
pub const PROT_GROWSDOWN: usize = 0x0100_0000;
pub const PROT_GROWSUP: usize = 0x0200_0000;

pub const MAP_SHARED: usize = 0x01;
pub const MAP_PRIVATE: usize = 0x02;
pub const MAP_SHARED_VALIDATE: usize = 0x03;
pub const MAP_FIXED: usize = 0x10;
pub const MAP_ANONYMOUS: usize = 0x20;
pub const MAP_32BIT: usize = 0x40;
pub const MAP_GROWSDOWN: usize = 0x100;
pub const MAP_DENYWRITE: usize = 0x800;
pub const MAP_EXECUTABLE: usize = 0x1000;
pub const MAP_LOCKED: usize = 0x2000;
pub const MAP_NORESERVE: usize = 0x4000;
pub const MAP_POPULATE: usize = 0x8000;
pub const MAP_NONBLOCK: usize = 0x10000;
pub const MAP_STACK: usize = 0x20000;
pub const MAP_HUGETLB: usize = 0x40000;
pub const MAP_SYNC: usize = 0x80000;
pub const MAP_FIXED_NOREPLACE: usize = 0x100000;
pub const MAP_UNINITIALIZED: usize = 0x400_0000;

pub const MADV_NORMAL: usize = 0;
pub const MADV_RANDOM: usize = 1;
pub const MADV_SEQUENTIAL: usize = 2;
pub const MADV_WILLNEED: usize = 3;
pub const MADV_DONTNEED: usize = 4;
pub const MADV_FREE: usize = 8;
pub const MADV_REMOVE: usize = 9;
pub const MADV_DONTFORK: usize = 10;
pub const MADV_DOFORK: usize = 11;
pub const MADV_MERGEABLE: usize = 12;
pub const MADV_UNMERGEABLE: usize = 13;
pub const MADV_HUGEPAGE: usize = 14;
pub const MADV_NOHUGEPAGE: usize = 15;
pub const MADV_DONTDUMP: usize = 16;
pub const MADV_DODUMP: usize = 17;
pub const MADV_WIPEONFORK: usize = 18;
pub const MADV_KEEPONFORK: usize = 19;
pub const MADV_COLD: usize = 20;
pub const MADV_PAGEOUT: usize = 21;
pub const MADV_POPULATE_READ: usize = 22;
pub const MADV_POPULATE_WRITE: usize = 23;
/// As MADV_DONTNEED, but also on VM_LOCKED mappings (Linux 5.18).
pub const MADV_DONTNEED_LOCKED: usize = 24;
pub const MADV_COLLAPSE: usize = 25;
/// Root only: poisons the pages (makes their frames unusable). Never fuzzed.
pub const MADV_HWPOISON: usize = 100;
pub const MADV_SOFT_OFFLINE: usize = 101;

pub const FUTEX_WAIT: usize = 0;
pub const FUTEX_WAKE: usize = 1;
pub const FUTEX_REQUEUE: usize = 3;
pub const FUTEX_CMP_REQUEUE: usize = 4;
pub const FUTEX_WAKE_OP: usize = 5;
pub const FUTEX_LOCK_PI: usize = 6;
pub const FUTEX_UNLOCK_PI: usize = 7;
pub const FUTEX_TRYLOCK_PI: usize = 8;
pub const FUTEX_WAIT_BITSET: usize = 9;
pub const FUTEX_WAKE_BITSET: usize = 10;
pub const FUTEX_WAIT_REQUEUE_PI: usize = 11;
pub const FUTEX_CMP_REQUEUE_PI: usize = 12;
pub const FUTEX_LOCK_PI2: usize = 13;
pub const FUTEX_PRIVATE_FLAG: usize = 128;
pub const FUTEX_CLOCK_REALTIME: usize = 256;

pub const CLOCK_REALTIME: usize = 0;
pub const CLOCK_MONOTONIC: usize = 1;

pub const ARCH_SET_GS: usize = 0x1001;
pub const ARCH_SET_FS: usize = 0x1002;
pub const ARCH_GET_FS: usize = 0x1003;
pub const ARCH_GET_GS: usize = 0x1004;

pub const CLONE_VM: usize = 0x100;
pub const CLONE_FS: usize = 0x200;
pub const CLONE_FILES: usize = 0x400;
pub const CLONE_SIGHAND: usize = 0x800;
pub const CLONE_THREAD: usize = 0x10000;
pub const CLONE_NEWNS: usize = 0x20000;
pub const CLONE_SYSVSEM: usize = 0x40000;
pub const CLONE_SETTLS: usize = 0x80000;
pub const CLONE_PARENT_SETTID: usize = 0x100000;
pub const CLONE_CHILD_CLEARTID: usize = 0x200000;

pub const PAGE_SIZE: usize = 4096;
/// Linux's TASK_SIZE on x86_64 (4-level paging): user mappings end at or below
/// it; the page above it is never mappable.
pub const USER_END: usize = 0x7fff_ffff_f000;

/// Issues system call `nr` with six arguments and returns the raw result
/// (a negative errno on failure). Unused arguments may be anything.
///
/// # Safety
/// The call must not break Rust's memory model: it must not unmap, remap,
/// re-protect or overwrite memory that Rust code still uses, nor end the
/// current thread while other code expects it to return.
#[inline(always)]
pub unsafe fn syscall6(nr: usize, a0: usize, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize) -> isize {
    let ret: isize;
    // SAFETY: the caller upholds the contract above; `syscall` itself clobbers
    // only rcx (return address) and r11 (saved rflags).
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a0, in("rsi") a1, in("rdx") a2,
            in("r10") a3, in("r8") a4, in("r9") a5,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// [`syscall6`] with fewer arguments.
///
/// # Safety
/// As for [`syscall6`].
#[inline(always)]
pub unsafe fn syscall(nr: usize, args: &[usize]) -> isize {
    let a = |i: usize| args.get(i).copied().unwrap_or(0);
    // SAFETY: forwarded contract.
    unsafe { syscall6(nr, a(0), a(1), a(2), a(3), a(4), a(5)) }
}

/// Converts a raw return value: Linux reports errors as -1..=-4095.
pub fn check(ret: isize) -> Result<usize, Errno> {
    if (-4095..0).contains(&ret) {
        Err(Errno(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timespec {
    pub tv_sec: i64,
    pub tv_nsec: i64,
}

impl Timespec {
    pub const fn from_nanos(ns: u64) -> Timespec {
        Timespec { tv_sec: (ns / 1_000_000_000) as i64, tv_nsec: (ns % 1_000_000_000) as i64 }
    }
    pub fn as_nanos(&self) -> i128 {
        self.tv_sec as i128 * 1_000_000_000 + self.tv_nsec as i128
    }
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct IoVec {
    pub base: *const u8,
    pub len: usize,
}

// SAFETY: an IoVec only describes memory for the kernel; Rust code never
// dereferences its pointer, so sharing or sending one is harmless.
unsafe impl Sync for IoVec {}
// SAFETY: as above.
unsafe impl Send for IoVec {}

impl IoVec {
    pub fn new(buf: &[u8]) -> IoVec {
        IoVec { base: buf.as_ptr(), len: buf.len() }
    }
}

/// `struct utsname`: six NUL-terminated fields of 65 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Utsname {
    pub fields: [[u8; 65]; 6],
}

impl Utsname {
    /// Field `i` (0 sysname, 1 nodename, 2 release, 3 version, 4 machine,
    /// 5 domainname) up to its NUL, or None if it has none.
    pub fn field(&self, i: usize) -> Option<&[u8]> {
        let f = &self.fields[i];
        f.iter().position(|&b| b == 0).map(|n| &f[..n])
    }
}

pub fn read(fd: i32, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most buf.len() bytes into buf, which we own.
    check(unsafe { syscall(nr::READ, &[fd as usize, buf.as_mut_ptr() as usize, buf.len()]) })
}

pub fn write(fd: i32, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: the kernel only reads buf.
    check(unsafe { syscall(nr::WRITE, &[fd as usize, buf.as_ptr() as usize, buf.len()]) })
}

pub fn writev(fd: i32, iov: &[IoVec]) -> Result<usize, Errno> {
    // SAFETY: the kernel only reads the iovecs and the memory they describe
    // (and reports EFAULT for pointers that are not readable).
    check(unsafe { syscall(nr::WRITEV, &[fd as usize, iov.as_ptr() as usize, iov.len()]) })
}

pub const O_RDONLY: usize = 0;
pub const O_WRONLY: usize = 1;
pub const O_RDWR: usize = 2;
pub const O_CREAT: usize = 0o100;
pub const O_EXCL: usize = 0o200;
pub const O_DIRECTORY: usize = 0o200000;
pub const O_CLOEXEC: usize = 0o2000000;
pub const AT_FDCWD: i32 = -100;
pub const SEEK_SET: usize = 0;
pub const SEEK_CUR: usize = 1;
pub const SEEK_END: usize = 2;
pub const S_IFMT: u32 = 0o170000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFCHR: u32 = 0o020000;

/// openat(2); `path` must end in a NUL byte.
pub fn openat(dirfd: i32, path: &[u8], flags: usize) -> Result<usize, Errno> {
    assert_eq!(path.last(), Some(&0), "paths end in NUL");
    // SAFETY: the kernel only reads the path.
    check(unsafe { syscall(nr::OPENAT, &[dirfd as usize, path.as_ptr() as usize, flags, 0]) })
}

/// open(2); `path` must end in a NUL byte.
pub fn open(path: &[u8], flags: usize) -> Result<usize, Errno> {
    assert_eq!(path.last(), Some(&0), "paths end in NUL");
    // SAFETY: the kernel only reads the path.
    check(unsafe { syscall(nr::OPEN, &[path.as_ptr() as usize, flags, 0]) })
}

pub fn close(fd: usize) -> Result<usize, Errno> {
    // SAFETY: no memory is involved.
    check(unsafe { syscall(nr::CLOSE, &[fd]) })
}

pub fn lseek(fd: usize, offset: i64, whence: usize) -> Result<usize, Errno> {
    // SAFETY: no memory is involved.
    check(unsafe { syscall(nr::LSEEK, &[fd, offset as usize, whence]) })
}

pub fn pread(fd: usize, buf: &mut [u8], offset: i64) -> Result<usize, Errno> {
    // SAFETY: the kernel writes at most buf.len() bytes into buf, which we own.
    check(unsafe { syscall(nr::PREAD64, &[fd, buf.as_mut_ptr() as usize, buf.len(), offset as usize]) })
}

/// x86_64 `struct stat`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub pad0: u32,
    pub rdev: u64,
    pub size: i64,
    pub blksize: i64,
    pub blocks: i64,
    pub times: [u64; 6],
    pub unused: [i64; 3],
}

pub fn fstat(fd: usize) -> Result<Stat, Errno> {
    let mut st = Stat::default();
    // SAFETY: the kernel writes one struct stat into `st`, which we own.
    check(unsafe { syscall(nr::FSTAT, &[fd, &mut st as *mut Stat as usize]) })?;
    Ok(st)
}

/// mkdir(2); `path` must end in a NUL byte.
pub fn mkdir(path: &[u8], mode: usize) -> Result<usize, Errno> {
    assert_eq!(path.last(), Some(&0), "paths end in NUL");
    // SAFETY: the kernel only reads the path.
    check(unsafe { syscall(nr::MKDIR, &[path.as_ptr() as usize, mode]) })
}

/// mount(2) without data; every string must end in a NUL byte.
pub fn mount(source: &[u8], target: &[u8], fstype: &[u8], flags: usize) -> Result<usize, Errno> {
    for s in [source, target, fstype] {
        assert_eq!(s.last(), Some(&0), "strings end in NUL");
    }
    // SAFETY: the kernel only reads the strings; mounting changes no memory of ours.
    check(unsafe {
        syscall(nr::MOUNT, &[source.as_ptr() as usize, target.as_ptr() as usize, fstype.as_ptr() as usize, flags, 0])
    })
}

/// Ends the calling thread only (the process ends with its last thread).
pub fn exit(code: i32) -> ! {
    // SAFETY: the thread never returns into Rust code.
    unsafe { syscall(nr::EXIT, &[code as usize]) };
    unreachable!("exit returned")
}

/// Ends the whole process.
pub fn exit_group(code: i32) -> ! {
    // SAFETY: the process never returns into Rust code.
    unsafe { syscall(nr::EXIT_GROUP, &[code as usize]) };
    unreachable!("exit_group returned")
}

pub fn getpid() -> u32 {
    // SAFETY: no memory is involved.
    unsafe { syscall(nr::GETPID, &[]) as u32 }
}

pub fn gettid() -> u32 {
    // SAFETY: no memory is involved.
    unsafe { syscall(nr::GETTID, &[]) as u32 }
}

pub fn getppid() -> u32 {
    // SAFETY: no memory is involved.
    unsafe { syscall(nr::GETPPID, &[]) as u32 }
}

pub fn sched_yield() -> Result<usize, Errno> {
    // SAFETY: no memory is involved.
    check(unsafe { syscall(nr::SCHED_YIELD, &[]) })
}

/// getcpu(2): the CPU the caller runs on (by the time it returns, maybe no longer).
pub fn getcpu() -> Result<u32, Errno> {
    let mut cpu = 0u32;
    // SAFETY: the kernel writes one u32 into `cpu`; node and cache are NULL.
    check(unsafe { syscall(nr::GETCPU, &[&mut cpu as *mut u32 as usize, 0, 0]) })?;
    Ok(cpu)
}

/// sched_getaffinity(2) of thread `tid` (0: the caller), the first 64 CPUs.
pub fn sched_getaffinity(tid: u32) -> Result<u64, Errno> {
    let mut mask = 0u64;
    // SAFETY: the kernel writes at most 8 bytes (the length we give) into `mask`.
    check(unsafe { syscall(nr::SCHED_GETAFFINITY, &[tid as usize, 8, &mut mask as *mut u64 as usize]) })?;
    Ok(mask)
}

/// sched_setaffinity(2) of thread `tid` (0: the caller) to the CPUs in `mask`.
pub fn sched_setaffinity(tid: u32, mask: u64) -> Result<usize, Errno> {
    // SAFETY: the kernel only reads the 8 bytes of `mask`.
    check(unsafe { syscall(nr::SCHED_SETAFFINITY, &[tid as usize, 8, &mask as *const u64 as usize]) })
}

/// Anonymous `mmap`; returns the mapping's address.
///
/// # Safety
/// With MAP_FIXED the new mapping replaces whatever was at `addr`: nothing
/// Rust code still uses may live there.
pub unsafe fn mmap(addr: usize, len: usize, prot: usize, flags: usize, fd: i32, off: usize) -> Result<*mut u8, Errno> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall(nr::MMAP, &[addr, len, prot, flags, fd as usize, off]) }).map(|a| a as *mut u8)
}

/// A fresh private anonymous mapping at an address the kernel picks.
pub fn mmap_anon(len: usize, prot: usize) -> Result<*mut u8, Errno> {
    // SAFETY: without MAP_FIXED no existing mapping is touched.
    unsafe { mmap(0, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) }
}

/// # Safety
/// Nothing Rust code still uses may live in the range.
pub unsafe fn munmap(addr: *mut u8, len: usize) -> Result<usize, Errno> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall(nr::MUNMAP, &[addr as usize, len]) })
}

/// # Safety
/// Rust code must not later access the range in a way the new protection forbids.
pub unsafe fn mprotect(addr: *mut u8, len: usize, prot: usize) -> Result<usize, Errno> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall(nr::MPROTECT, &[addr as usize, len, prot]) })
}

/// # Safety
/// MADV_DONTNEED discards private pages: no Rust value may live in the range.
pub unsafe fn madvise(addr: *mut u8, len: usize, advice: usize) -> Result<usize, Errno> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall(nr::MADVISE, &[addr as usize, len, advice]) })
}

/// The current program break (`brk(0)`, which never fails).
pub fn brk_current() -> usize {
    // SAFETY: brk(0) changes nothing.
    unsafe { syscall(nr::BRK, &[0]) as usize }
}

/// Moves the program break; returns the new break, or the old one if the move
/// was refused (brk never returns an errno).
///
/// # Safety
/// Shrinking unmaps memory: nothing Rust code still uses may live there.
pub unsafe fn brk(addr: usize) -> usize {
    // SAFETY: forwarded contract.
    unsafe { syscall(nr::BRK, &[addr]) as usize }
}

/// FUTEX_WAIT|FUTEX_PRIVATE_FLAG: sleeps while `*word == val`, for at most
/// `timeout` (relative, CLOCK_MONOTONIC).
pub fn futex_wait(word: &AtomicU32, val: u32, timeout: Option<&Timespec>) -> Result<usize, Errno> {
    let t = timeout.map_or(0, |t| t as *const Timespec as usize);
    // SAFETY: the kernel reads the word and the timespec, both valid references.
    check(unsafe { syscall(nr::FUTEX, &[word.as_ptr() as usize, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, val as usize, t]) })
}

/// FUTEX_WAKE|FUTEX_PRIVATE_FLAG: wakes up to `n` waiters; returns how many.
pub fn futex_wake(word: &AtomicU32, n: u32) -> Result<usize, Errno> {
    // SAFETY: the kernel does not access memory for a wake.
    check(unsafe { syscall(nr::FUTEX, &[word.as_ptr() as usize, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n as usize]) })
}

/// Raw futex(2) with a timeout pointer (NULL for none).
///
/// # Safety
/// `uaddr` must be a valid address for the operation (or one the caller wants
/// the kernel to reject); `timeout` NULL or a valid timespec.
pub unsafe fn futex(uaddr: *const u32, op: usize, val: u32, timeout: *const Timespec) -> Result<usize, Errno> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall(nr::FUTEX, &[uaddr as usize, op, val as usize, timeout as usize]) })
}

pub fn clock_gettime(clock: usize) -> Result<Timespec, Errno> {
    let mut ts = Timespec::default();
    // SAFETY: the kernel writes one timespec into ts.
    check(unsafe { syscall(nr::CLOCK_GETTIME, &[clock, &mut ts as *mut Timespec as usize]) })?;
    Ok(ts)
}

/// CLOCK_MONOTONIC in nanoseconds (0 if the clock is unavailable).
pub fn monotonic_ns() -> u64 {
    clock_gettime(CLOCK_MONOTONIC).map_or(0, |t| t.as_nanos() as u64)
}

pub fn nanosleep(req: &Timespec) -> Result<usize, Errno> {
    // SAFETY: the kernel reads req; rem is NULL.
    check(unsafe { syscall(nr::NANOSLEEP, &[req as *const Timespec as usize, 0]) })
}

pub fn sleep_ms(ms: u64) {
    let _ = nanosleep(&Timespec::from_nanos(ms * 1_000_000));
}

/// The calling thread's FS base (ARCH_GET_FS).
pub fn arch_get_fs() -> Result<usize, Errno> {
    let mut fs = 0usize;
    // SAFETY: the kernel writes one word into fs.
    check(unsafe { syscall(nr::ARCH_PRCTL, &[ARCH_GET_FS, &mut fs as *mut usize as usize]) })?;
    Ok(fs)
}

/// Sets the calling thread's FS base (ARCH_SET_FS).
///
/// # Safety
/// Code that reads thread-locals through %fs (e.g. [`crate::thread::tcb_via_fs`])
/// must not run in this thread unless `base` points at a live thread block.
pub unsafe fn arch_set_fs(base: usize) -> Result<usize, Errno> {
    // SAFETY: forwarded contract.
    check(unsafe { syscall(nr::ARCH_PRCTL, &[ARCH_SET_FS, base]) })
}

/// Makes the kernel clear `*tidptr` and futex-wake it when this thread exits.
/// Returns the caller's tid.
///
/// # Safety
/// `tidptr` must stay valid memory until the thread has exited.
pub unsafe fn set_tid_address(tidptr: *mut u32) -> usize {
    // SAFETY: forwarded contract.
    unsafe { syscall(nr::SET_TID_ADDRESS, &[tidptr as usize]) as usize }
}

pub fn uname() -> Result<Utsname, Errno> {
    let mut u = Utsname { fields: [[0; 65]; 6] };
    // SAFETY: the kernel writes one struct utsname into u.
    check(unsafe { syscall(nr::UNAME, &[&mut u as *mut Utsname as usize]) })?;
    Ok(u)
}

/// The time-stamp counter; the lfence keeps it from being read before
/// earlier instructions have completed.
#[inline(always)]
pub fn rdtsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: lfence and rdtsc only read the TSC into edx:eax.
    unsafe { asm!("lfence", "rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (hi as u64) << 32 | lo as u64
}
