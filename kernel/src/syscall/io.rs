//! read, write, writev: the console is fds 0, 1 and 2.

use alloc::vec;

use super::{Errno, SysResult};
use crate::mm::uaccess::{copy_from_user, copy_to_user, read_user};

/// Bytes copied from user memory per step (and the unit of partial writes).
const CHUNK: usize = 512;
const IOV_MAX: u64 = 1024;

fn is_console_output(fd: u64) -> bool {
    fd == 1 || fd == 2
}

/// Writes `len` bytes from `buf` to the console; like a Linux tty, a fault
/// after some bytes went out returns the count so far, before any: EFAULT.
fn write_console(buf: u64, len: u64) -> Result<u64, Errno> {
    let mut chunk = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(CHUNK as u64) as usize;
        if copy_from_user(&mut chunk[..n], buf.wrapping_add(done)).is_err() {
            return if done > 0 { Ok(done) } else { Err(Errno::EFAULT) };
        }
        crate::console::write(&chunk[..n]);
        done += n as u64;
    }
    Ok(done)
}

pub fn write(fd: u64, buf: u64, len: u64) -> SysResult {
    if !is_console_output(fd) {
        return Err(Errno::EBADF);
    }
    // As vfs_write: the buffer's range first, then the count's sign.
    if buf.checked_add(len).is_none_or(|end| end > crate::mm::layout::USER_END) {
        return Err(Errno::EFAULT);
    }
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    write_console(buf, len)
}

pub fn writev(fd: u64, iov: u64, count: u64) -> SysResult {
    if !is_console_output(fd) {
        return Err(Errno::EBADF);
    }
    if count > IOV_MAX {
        return Err(Errno::EINVAL);
    }
    // Read and check every vector first, as Linux does before writing.
    let mut vectors = vec![(0u64, 0u64); count as usize];
    let mut total: u64 = 0;
    for (i, v) in vectors.iter_mut().enumerate() {
        let base = read_user::<u64>(iov + i as u64 * 16)?;
        let len = read_user::<u64>(iov + i as u64 * 16 + 8)?;
        total = total.checked_add(len).filter(|&t| (t as i64) >= 0).ok_or(Errno::EINVAL)?;
        *v = (base, len);
    }
    let mut written = 0;
    for (base, len) in vectors {
        match write_console(base, len) {
            Ok(n) => {
                written += n;
                if n < len {
                    break;
                }
            }
            Err(e) if written == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(written)
}

pub fn read(fd: u64, buf: u64, len: u64) -> SysResult {
    if fd != 0 {
        // fds 1 and 2 are the console opened for writing only; others are not open.
        return Err(Errno::EBADF);
    }
    if len == 0 {
        return Ok(0);
    }
    // Blocks until a line (or a full buffer) has arrived, like a tty in
    // canonical mode; the serial port is polled every tick.
    let mut line = vec![0u8; len.min(4096) as usize];
    let mut got = 0;
    let process = super::current_process();
    while got < line.len() {
        match crate::console::read_byte() {
            Some(byte) => {
                line[got] = if byte == b'\r' { b'\n' } else { byte };
                got += 1;
                if line[got - 1] == b'\n' {
                    break;
                }
            }
            None if got > 0 => break,
            None => {
                if process.is_exiting() {
                    return Err(Errno::EINTR);
                }
                crate::task::timer::sleep_ns(10_000_000);
            }
        }
    }
    copy_to_user(buf, &line[..got])?;
    Ok(got as u64)
}
