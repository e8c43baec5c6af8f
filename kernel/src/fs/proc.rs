//! /proc, read-only: `/proc/self/maps` and `/proc/PID/maps` (for every live
//! process), `/proc/vmstat` and `/proc/meminfo`, with the directories that
//! lead there (`/`, `/proc`, `/proc/self`, `/proc/PID`). The text comes from
//! `mm::procfs`; this file only finds the node a path names and takes the
//! snapshot.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::FsError;
use crate::task::Process;

/// Why a write to a file open for writing fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteRefusal {
    /// The file has no write operation (EINVAL, before the buffer is checked).
    NoWriteOp,
    /// procfs's write found no handler (EIO, after the buffer is checked).
    NoHandler,
}

/// What a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    Root,
    ProcDir,
    PidDir(u32),
    Maps(u32),
    Vmstat,
    Meminfo,
}

impl Node {
    pub fn is_dir(self) -> bool {
        matches!(self, Node::Root | Node::ProcDir | Node::PidDir(_))
    }

    /// What a write to this file fails with, once the fd was opened for
    /// writing (root may open even 0444 files so): files with no write
    /// operation at all (the per-process ones) say EINVAL, /proc's own
    /// files, whose generic write finds no handler, EIO.
    pub fn write_refusal(self) -> WriteRefusal {
        match self {
            Node::Maps(_) | Node::Root | Node::ProcDir | Node::PidDir(_) => WriteRefusal::NoWriteOp,
            Node::Vmstat | Node::Meminfo => WriteRefusal::NoHandler,
        }
    }

    /// An inode number, stable per node (Linux's differ; nothing relies on them).
    pub fn inode(self) -> u64 {
        match self {
            Node::Root => 1,
            Node::ProcDir => 2,
            Node::Vmstat => 3,
            Node::Meminfo => 4,
            Node::PidDir(pid) => (pid as u64) << 8,
            Node::Maps(pid) => ((pid as u64) << 8) | 1,
        }
    }

    fn child(self, name: &[u8], self_pid: u32) -> Result<Node, FsError> {
        match self {
            Node::Root => match name {
                b"proc" => Ok(Node::ProcDir),
                _ => Err(FsError::NotFound),
            },
            Node::ProcDir => match name {
                b"self" => Ok(Node::PidDir(self_pid)),
                b"vmstat" => Ok(Node::Vmstat),
                b"meminfo" => Ok(Node::Meminfo),
                _ => parse_pid(name).filter(|&pid| process(pid).is_some()).map(Node::PidDir).ok_or(FsError::NotFound),
            },
            Node::PidDir(pid) => match name {
                b"maps" => Ok(Node::Maps(pid)),
                _ => Err(FsError::NotFound),
            },
            Node::Maps(_) | Node::Vmstat | Node::Meminfo => Err(FsError::NotDirectory),
        }
    }

    /// The file's text now (empty for directories).
    pub fn snapshot(self) -> Result<Vec<u8>, FsError> {
        Ok(match self {
            Node::Root | Node::ProcDir | Node::PidDir(_) => Vec::new(),
            Node::Maps(pid) => {
                let process = process(pid).ok_or(FsError::NotFound)?;
                crate::mm::procfs::maps(&process.mm).into_bytes()
            }
            Node::Vmstat => {
                let live = crate::task::process::live();
                let spaces: Vec<&crate::mm::addrspace::AddressSpace> = live.iter().map(|p| &*p.mm).collect();
                crate::mm::procfs::vmstat(&spaces).into_bytes()
            }
            Node::Meminfo => crate::mm::procfs::meminfo().into_bytes(),
        })
    }
}

/// A pid as /proc spells it: decimal, no sign, no leading zero.
fn parse_pid(name: &[u8]) -> Option<u32> {
    if name.is_empty() || name[0] == b'0' || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    core::str::from_utf8(name).ok()?.parse().ok()
}

fn process(pid: u32) -> Option<Arc<Process>> {
    crate::task::process::live().into_iter().find(|p| p.pid == pid)
}

/// The node `path` names, walked from the root (the only working directory
/// there is): empty components and `.` are skipped, `..` goes up (the root
/// is its own parent). A trailing slash requires a directory.
pub fn resolve(path: &[u8], self_pid: u32) -> Result<Node, FsError> {
    let mut stack: Vec<Node> = Vec::new();
    let mut node = Node::Root;
    for name in path.split(|&b| b == b'/') {
        match name {
            b"" | b"." => {
                if !node.is_dir() {
                    return Err(FsError::NotDirectory);
                }
            }
            b".." => {
                if !node.is_dir() {
                    return Err(FsError::NotDirectory);
                }
                node = stack.pop().unwrap_or(Node::Root);
            }
            _ => {
                let next = node.child(name, self_pid)?;
                stack.push(node);
                node = next;
            }
        }
    }
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test_case]
    fn paths_resolve_as_on_linux() {
        assert_eq!(resolve(b"/proc/self/maps", 7), Ok(Node::Maps(7)));
        assert_eq!(resolve(b"//proc/./self/../self/maps", 7), Ok(Node::Maps(7)));
        assert_eq!(resolve(b"proc/vmstat", 7), Ok(Node::Vmstat));
        assert_eq!(resolve(b"/../proc/meminfo", 7), Ok(Node::Meminfo));
        assert_eq!(resolve(b"/proc", 7), Ok(Node::ProcDir));
        assert_eq!(resolve(b"/proc/nope", 7), Err(FsError::NotFound));
        assert_eq!(resolve(b"/etc/passwd", 7), Err(FsError::NotFound));
        assert_eq!(resolve(b"/proc/vmstat/", 7), Err(FsError::NotDirectory));
        assert_eq!(resolve(b"/proc/vmstat/x", 7), Err(FsError::NotDirectory));
        assert_eq!(resolve(b"/proc/0123/maps", 7), Err(FsError::NotFound));
    }
}
