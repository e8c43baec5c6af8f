//! Files: a per-process table of open files, and the one file system there
//! is, a read-only /proc (`proc.rs`), always there without mounting.
//!
//! Fds 0, 1 and 2 are the console (`syscall/io.rs`) and are not in the
//! table; files opened here get the lowest free fd from 3. A /proc file's
//! text is made when it is opened (a snapshot, as Linux's seq_file
//! effectively makes for small files) and read from that copy.
//!
//! | field | guarded by |
//! |---|---|
//! | `FdTable::slots` | its spinlock (held only to look up, install or remove; never across a user copy) |
//! | `OpenFile::offset` | its sleeping mutex, held across the user copy of a read so that reads and seeks of one fd are ordered (Linux's f_pos_lock) |
//! | `OpenFile::{node, content}` | nothing: immutable |

mod proc;

use alloc::sync::Arc;
use alloc::vec::Vec;

pub use proc::{resolve, Node, WriteRefusal};

use crate::sync::{Level, Mutex, SpinLock};

/// The first fd the table hands out (0-2 are the console).
pub const FIRST_FD: u64 = 3;
/// Linux's default RLIMIT_NOFILE (soft) for init: fds 0 to 1023.
pub const MAX_FDS: u64 = 1024;

/// Why a path or a file operation failed; the system-call layer maps each
/// to Linux's errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsError {
    /// ENOENT: no such file.
    NotFound,
    /// ENOTDIR: a path component (or a trailing slash) names a file.
    NotDirectory,
    /// EISDIR: a directory opened for writing, or read.
    IsDirectory,
    /// EEXIST: O_CREAT | O_EXCL on a file that exists.
    Exists,
    /// EMFILE: every fd up to MAX_FDS is taken.
    TooManyFiles,
}

/// How a file was opened (O_ACCMODE). Access mode 3 gives neither right,
/// as on Linux.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub read: bool,
    pub write: bool,
}

impl Access {
    pub const READ: Access = Access { read: true, write: false };

    pub fn from_flags(flags: u64) -> Access {
        match flags & 3 {
            0 => Access { read: true, write: false },
            1 => Access { read: false, write: true },
            2 => Access { read: true, write: true },
            _ => Access { read: false, write: false },
        }
    }
}

/// An open file: what it is, how it was opened, its text (for /proc files,
/// made at open), and the file offset.
pub struct OpenFile {
    pub node: Node,
    pub access: Access,
    pub content: Vec<u8>,
    pub offset: Mutex<u64>,
}

impl OpenFile {
    pub fn new(node: Node, access: Access, content: Vec<u8>) -> OpenFile {
        OpenFile { node, access, content, offset: Mutex::new(Level::FileOffset, 0) }
    }
}

/// A process's open files (shared by its threads, as with CLONE_FILES).
pub struct FdTable {
    /// Slot i is fd FIRST_FD + i.
    slots: SpinLock<Vec<Option<Arc<OpenFile>>>>,
}

impl Default for FdTable {
    fn default() -> Self {
        FdTable::new()
    }
}

impl FdTable {
    pub const fn new() -> FdTable {
        FdTable { slots: SpinLock::new(Level::FdTable, Vec::new()) }
    }

    /// Puts `file` at the lowest free fd and returns that fd; EMFILE if that
    /// is not below `limit` (RLIMIT_NOFILE) and MAX_FDS.
    pub fn install(&self, file: Arc<OpenFile>, limit: u64) -> Result<u64, FsError> {
        let mut slots = self.slots.lock();
        let max = MAX_FDS.min(limit).saturating_sub(FIRST_FD);
        let index = match slots.iter().position(Option::is_none) {
            Some(free) if (free as u64) < max => free,
            Some(_) => return Err(FsError::TooManyFiles),
            None if (slots.len() as u64) < max => {
                slots.push(None);
                slots.len() - 1
            }
            None => return Err(FsError::TooManyFiles),
        };
        slots[index] = Some(file);
        Ok(FIRST_FD + index as u64)
    }

    fn index(fd: u64) -> Option<usize> {
        fd.checked_sub(FIRST_FD).map(|i| i as usize)
    }

    /// The file open at `fd`, if any.
    pub fn get(&self, fd: u64) -> Option<Arc<OpenFile>> {
        let index = Self::index(fd)?;
        self.slots.lock().get(index).cloned().flatten()
    }

    /// Closes `fd`: the file goes when its last user is done with it.
    pub fn remove(&self, fd: u64) -> Option<Arc<OpenFile>> {
        let index = Self::index(fd)?;
        let mut slots = self.slots.lock();
        let file = slots.get_mut(index)?.take();
        while slots.last().is_some_and(Option::is_none) {
            slots.pop();
        }
        file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<OpenFile> {
        Arc::new(OpenFile::new(Node::Vmstat, Access::READ, Vec::new()))
    }

    #[test_case]
    fn fds_are_the_lowest_free_from_3() {
        let table = FdTable::new();
        assert_eq!(table.install(file(), MAX_FDS), Ok(3));
        assert_eq!(table.install(file(), MAX_FDS), Ok(4));
        assert_eq!(table.install(file(), MAX_FDS), Ok(5));
        assert!(table.remove(4).is_some());
        assert!(table.remove(4).is_none(), "closed twice");
        assert!(table.get(4).is_none());
        assert_eq!(table.install(file(), MAX_FDS), Ok(4), "the hole is reused");
        assert!(table.get(2).is_none() && table.get(0).is_none(), "the console is not in the table");
        for fd in 6..MAX_FDS {
            assert_eq!(table.install(file(), MAX_FDS), Ok(fd));
        }
        assert_eq!(table.install(file(), MAX_FDS), Err(FsError::TooManyFiles));
    }

    #[test_case]
    fn the_fd_limit_bounds_the_lowest_free_fd() {
        let table = FdTable::new();
        assert_eq!(table.install(file(), 5), Ok(3));
        assert_eq!(table.install(file(), 5), Ok(4));
        assert_eq!(table.install(file(), 5), Err(FsError::TooManyFiles), "fd 5 is at the limit");
        assert!(table.remove(3).is_some());
        assert_eq!(table.install(file(), 5), Ok(3));
        assert_eq!(table.install(file(), 3), Err(FsError::TooManyFiles), "a limit of 3 leaves no file fd");
    }
}
