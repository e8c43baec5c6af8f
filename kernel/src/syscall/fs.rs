//! open, openat, close, read (fds from 3), pread64, lseek and fstat: the
//! files of `crate::fs` (a read-only /proc), with Linux's checks in Linux's
//! order. Fds 0-2 are the console (`io.rs`): lseek and pread64 on them say
//! ESPIPE, fstat a character device, as for Linux's /dev/console.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::{current_process, Errno, SysResult};
use crate::fs::{self, Access, FsError, OpenFile, WriteRefusal};
use crate::mm::uaccess::{copy_from_user, copy_to_user};

impl From<FsError> for Errno {
    fn from(error: FsError) -> Self {
        match error {
            FsError::NotFound => Errno::ENOENT,
            FsError::NotDirectory => Errno::ENOTDIR,
            FsError::IsDirectory => Errno::EISDIR,
            FsError::Exists => Errno::EEXIST,
            FsError::TooManyFiles => Errno::EMFILE,
        }
    }
}

const AT_FDCWD: i32 = -100;
const O_ACCMODE: u64 = 3;
const O_CREAT: u64 = 0o100;
const O_EXCL: u64 = 0o200;
const O_DIRECTORY: u64 = 0o200000;
const SEEK_SET: u64 = 0;
const SEEK_CUR: u64 = 1;
/// Linux's PATH_MAX, the terminating NUL included.
const PATH_MAX: usize = 4096;
/// Linux clamps every read to this many bytes.
const MAX_RW_COUNT: u64 = 0x7fff_f000;
const CONSOLE_FDS: u64 = 3;
const RLIMIT_NOFILE: usize = 7;

/// Copies the NUL-terminated string at `addr` (Linux's getname): EFAULT
/// for a bad pointer, ENAMETOOLONG past PATH_MAX, ENOENT if empty. Copies
/// page by page, so a string that ends before an unmapped page is fine.
fn user_path(addr: u64) -> Result<Vec<u8>, Errno> {
    let mut path = Vec::new();
    let mut at = addr;
    while path.len() < PATH_MAX {
        let to_page_end = (crate::mm::addrspace::PAGE - at % crate::mm::addrspace::PAGE) as usize;
        let n = to_page_end.min(PATH_MAX - path.len());
        let mut chunk = alloc::vec![0u8; n];
        copy_from_user(&mut chunk, at)?;
        if let Some(nul) = chunk.iter().position(|&b| b == 0) {
            path.extend_from_slice(&chunk[..nul]);
            return if path.is_empty() { Err(Errno::ENOENT) } else { Ok(path) };
        }
        path.extend_from_slice(&chunk);
        at += n as u64;
    }
    Err(Errno::ENAMETOOLONG)
}

fn file(fd: u64) -> Result<Arc<OpenFile>, Errno> {
    current_process().files.get(fd).ok_or(Errno::EBADF)
}

pub fn open(path: u64, flags: u64, mode: u64) -> SysResult {
    openat(AT_FDCWD as u32 as u64, path, flags, mode)
}

/// The node `path` names, relative to `dirfd` unless absolute (Linux's
/// path walk from a directory fd: ENOTDIR for the console, EBADF for a
/// closed fd).
fn resolve_at(process: &crate::task::Process, dirfd: u64, path: &[u8]) -> Result<fs::Node, Errno> {
    let mut path = path.to_vec();
    if path[0] != b'/' && dirfd as u32 as i32 != AT_FDCWD {
        // Relative to a directory fd: walk from that directory, written as
        // its path from the root (the working directory is the root).
        let dir = match process.files.get(dirfd) {
            _ if dirfd < CONSOLE_FDS => return Err(Errno::ENOTDIR),
            None => return Err(Errno::EBADF),
            Some(file) if !file.node.is_dir() => return Err(Errno::ENOTDIR),
            Some(file) => file.node,
        };
        let mut full = match dir {
            fs::Node::PidDir(pid) => alloc::format!("/proc/{pid}/").into_bytes(),
            fs::Node::ProcDir => b"/proc/".to_vec(),
            _ => b"/".to_vec(),
        };
        full.extend_from_slice(&path);
        path = full;
    }
    Ok(fs::resolve(&path, process.pid)?)
}

pub fn openat(dirfd: u64, path: u64, flags: u64, _mode: u64) -> SysResult {
    let path = user_path(path)?;
    let process = current_process();
    let node = resolve_at(&process, dirfd, &path)?;
    if flags & (O_CREAT | O_EXCL) == O_CREAT | O_EXCL {
        return Err(FsError::Exists.into());
    }
    if flags & O_DIRECTORY != 0 && !node.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    // The caller is root (there are no other users): CAP_DAC_OVERRIDE opens
    // even these 0444 files for writing, as on Linux; the writes then fail.
    if flags & O_ACCMODE != 0 && node.is_dir() {
        return Err(FsError::IsDirectory.into());
    }
    let content = node.snapshot()?;
    // RLIMIT_NOFILE: the lowest free fd must be below the soft limit.
    let limit = process.limits.lock()[RLIMIT_NOFILE][0];
    Ok(process.files.install(Arc::new(OpenFile::new(node, Access::from_flags(flags), content)), limit)?)
}

pub fn close(fd: u64) -> SysResult {
    if fd < CONSOLE_FDS {
        // The console stays open: 0-2 are wired to it (`io.rs`).
        return Ok(0);
    }
    current_process().files.remove(fd).map(|_| 0).ok_or(Errno::EBADF)
}

/// Whether [base, base + len) is a user range (Linux's access_ok).
fn access_ok(base: u64, len: u64) -> bool {
    base.checked_add(len).is_some_and(|end| end <= crate::mm::layout::USER_END)
}

/// Copies up to `len` bytes of `file` from `pos` to `buf`; the bytes copied.
fn read_at(file: &OpenFile, buf: u64, len: u64, pos: u64) -> Result<u64, Errno> {
    if !file.access.read {
        return Err(Errno::EBADF);
    }
    if file.node.is_dir() {
        return Err(Errno::EISDIR);
    }
    if !access_ok(buf, len) {
        return Err(Errno::EFAULT);
    }
    let size = file.content.len() as u64;
    let start = pos.min(size);
    let end = start + len.min(MAX_RW_COUNT).min(size - start);
    copy_to_user(buf, &file.content[start as usize..end as usize])?;
    Ok(end - start)
}

/// read(2) of an fd from 3 (fd 0 is `io::read`).
pub fn read(fd: u64, buf: u64, len: u64) -> SysResult {
    let file = file(fd)?;
    let mut offset = file.offset.lock();
    let n = read_at(&file, buf, len, *offset)?;
    *offset += n;
    Ok(n)
}

/// write(2) and writev(2) of an fd from 3 (1 and 2 are `io.rs`'s): EBADF
/// unless opened for writing; then the file's refusal, in vfs_write's order
/// (EINVAL before the buffer is looked at, EIO after). The iovec array of
/// writev is not read before EIO (Linux reads it first: a bad array there
/// is EFAULT).
pub fn write(fd: u64, buf: u64, len: u64) -> SysResult {
    let file = file(fd)?;
    if !file.access.write {
        return Err(Errno::EBADF);
    }
    match file.node.write_refusal() {
        WriteRefusal::NoWriteOp => Err(Errno::EINVAL),
        WriteRefusal::NoHandler if !access_ok(buf, len) => Err(Errno::EFAULT),
        WriteRefusal::NoHandler => Err(Errno::EIO),
    }
}

pub fn writev(fd: u64, _iov: u64, _count: u64) -> SysResult {
    let file = file(fd)?;
    if !file.access.write {
        return Err(Errno::EBADF);
    }
    match file.node.write_refusal() {
        WriteRefusal::NoWriteOp => Err(Errno::EINVAL),
        WriteRefusal::NoHandler => Err(Errno::EIO),
    }
}

pub fn pread64(fd: u64, buf: u64, len: u64, pos: u64) -> SysResult {
    if (pos as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    if fd < CONSOLE_FDS {
        return Err(Errno::ESPIPE);
    }
    read_at(&*file(fd)?, buf, len, pos)
}

pub fn lseek(fd: u64, offset: u64, whence: u64) -> SysResult {
    if fd < CONSOLE_FDS {
        return Err(Errno::ESPIPE);
    }
    let file = file(fd)?;
    let mut current = file.offset.lock();
    // As seq_lseek: SEEK_SET and SEEK_CUR only, never below 0; past the end
    // is allowed (reads there return 0).
    let target = match whence {
        SEEK_SET => offset as i64,
        SEEK_CUR => (*current as i64).checked_add(offset as i64).ok_or(Errno::EINVAL)?,
        _ => return Err(Errno::EINVAL),
    };
    if target < 0 {
        return Err(Errno::EINVAL);
    }
    *current = target as u64;
    Ok(target as u64)
}

const S_IFCHR: u32 = 0o020000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
/// procfs's device (0:22 under Linux 6.12 with nothing else mounted first).
const PROC_DEV: u64 = 22;

/// x86_64 `struct stat` (144 bytes).
fn stat_bytes(dev: u64, ino: u64, nlink: u64, mode: u32, rdev: u64, blksize: u64) -> [u8; 144] {
    let mut st = [0u8; 144];
    let mut put = |at: usize, bytes: &[u8]| st[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, &dev.to_le_bytes());
    put(8, &ino.to_le_bytes());
    put(16, &nlink.to_le_bytes());
    put(24, &mode.to_le_bytes());
    put(40, &rdev.to_le_bytes());
    // st_size 0 at 48 (procfs files have no size), st_blksize at 56.
    put(56, &blksize.to_le_bytes());
    st
}

/// The console's `struct stat`: /dev/console, character device 5:1, as
/// Linux 6.12 shows fds 0-2 to /init (measured with linux-peer).
fn console_stat() -> [u8; 144] {
    stat_bytes(6, 1, 1, S_IFCHR | 0o600, (5 << 8) | 1, 4096)
}

fn node_stat(node: fs::Node) -> [u8; 144] {
    let (mode, nlink) = if node.is_dir() { (S_IFDIR | 0o555, 2) } else { (S_IFREG | 0o444, 1) };
    stat_bytes(PROC_DEV, node.inode(), nlink, mode, 0, 1024)
}

fn fd_stat(fd: u64) -> Result<[u8; 144], Errno> {
    if fd < CONSOLE_FDS {
        Ok(console_stat())
    } else {
        Ok(node_stat(file(fd)?.node))
    }
}

pub fn fstat(fd: u64, buf: u64) -> SysResult {
    let st = fd_stat(fd)?;
    copy_to_user(buf, &st)?;
    Ok(0)
}

const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_NO_AUTOMOUNT: u64 = 0x800;
const AT_EMPTY_PATH: u64 = 0x1000;
const AT_STATX_SYNC_TYPE: u64 = 0x6000;

/// newfstatat (glibc's fstat and stat): an empty path with AT_EMPTY_PATH
/// is fstat of `dirfd` (before the flags are checked, as in Linux's
/// vfs_fstatat); otherwise the path's node, where nothing is a symlink.
pub fn newfstatat(dirfd: u64, path: u64, buf: u64, flags: u64) -> SysResult {
    let name = if flags & AT_EMPTY_PATH != 0 {
        match user_path(path) {
            Err(Errno::ENOENT) => None,
            other => Some(other?),
        }
    } else {
        Some(user_path(path)?)
    };
    let st = match name {
        None if dirfd as u32 as i32 == AT_FDCWD => node_stat(fs::Node::Root),
        None => fd_stat(dirfd)?,
        Some(name) => {
            if flags & !(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH | AT_STATX_SYNC_TYPE) != 0 {
                return Err(Errno::EINVAL);
            }
            node_stat(resolve_at(&current_process(), dirfd, &name)?)
        }
    };
    copy_to_user(buf, &st)?;
    Ok(0)
}

pub fn readlink(path: u64, buf: u64, size: u64) -> SysResult {
    readlinkat(AT_FDCWD as u32 as u64, path, buf, size)
}

/// readlinkat: /proc/self is the one symlink (to the caller's pid);
/// /proc/self/exe does not exist here (ENOENT): there is no file system
/// the program was loaded from. Any other node is not a link: EINVAL.
pub fn readlinkat(dirfd: u64, path: u64, buf: u64, size: u64) -> SysResult {
    if size as u32 as i32 <= 0 {
        return Err(Errno::EINVAL);
    }
    let name = user_path(path)?;
    let process = current_process();
    let node = resolve_at(&process, dirfd, &name)?;
    let whole = if name[0] == b'/' { name.clone() } else { b"/".iter().chain(&name).copied().collect() };
    let is_self = matches!(node, fs::Node::PidDir(pid) if pid == process.pid)
        && matches!(whole.rsplit(|&b| b == b'/').next(), Some(b"self"));
    if !is_self {
        return Err(Errno::EINVAL);
    }
    let target = alloc::format!("{}", process.pid);
    let n = target.len().min(size as u32 as usize);
    copy_to_user(buf, &target.as_bytes()[..n])?;
    Ok(n as u64)
}
