//! read, write, writev: the console is fds 0, 1 and 2.

use alloc::vec;

use super::{Errno, SysResult};
use crate::mm::uaccess::{copy_from_user, copy_to_user, read_user};

/// Linux's tty write copies this many bytes at a time and writes a step
/// only once it was copied whole.
const CHUNK: usize = 2048;
const IOV_MAX: u64 = 1024;
/// Linux clamps every read and write to this many bytes.
const MAX_RW_COUNT: u64 = 0x7fff_f000;

fn is_console_output(fd: u64) -> bool {
    fd == 1 || fd == 2
}

/// Writes the user buffers `segments` (checked ranges) to the console as one
/// stream, as Linux's tty layer does: in CHUNK-byte steps across buffer
/// boundaries; a step that faults is not written and ends the write, which
/// returns the bytes written before it, or EFAULT if there are none.
fn write_console(segments: &[(u64, u64)]) -> Result<u64, Errno> {
    let mut chunk = vec![0u8; CHUNK];
    let mut filled = 0;
    let mut written = 0u64;
    for &(base, len) in segments {
        let mut done = 0u64;
        while done < len {
            let n = ((len - done) as usize).min(CHUNK - filled);
            if copy_from_user(&mut chunk[filled..filled + n], base + done).is_err() {
                return if written > 0 { Ok(written) } else { Err(Errno::EFAULT) };
            }
            filled += n;
            done += n as u64;
            if filled == CHUNK {
                crate::console::write(&chunk);
                written += CHUNK as u64;
                filled = 0;
            }
        }
    }
    crate::console::write(&chunk[..filled]);
    Ok(written + filled as u64)
}

/// Whether [base, base + len) is a user range (Linux's access_ok).
fn access_ok(base: u64, len: u64) -> bool {
    base.checked_add(len).is_some_and(|end| end <= crate::mm::layout::USER_END)
}

pub fn write(fd: u64, buf: u64, len: u64) -> SysResult {
    if !is_console_output(fd) {
        return Err(Errno::EBADF);
    }
    // As vfs_write: the buffer's range first, then the count's sign.
    if !access_ok(buf, len) {
        return Err(Errno::EFAULT);
    }
    if (len as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    write_console(&[(buf, len.min(MAX_RW_COUNT))])
}

pub fn writev(fd: u64, iov: u64, count: u64) -> SysResult {
    if !is_console_output(fd) {
        return Err(Errno::EBADF);
    }
    if count > IOV_MAX {
        return Err(Errno::EINVAL);
    }
    // As Linux's import_iovec: copy the vectors (EFAULT), refuse a negative
    // length (EINVAL), then check each range (EFAULT) and clamp the total.
    let mut vectors = vec![(0u64, 0u64); count as usize];
    for (i, v) in vectors.iter_mut().enumerate() {
        // A vector array near 2^64 wraps and fails the range check: EFAULT.
        let at = iov.wrapping_add(i as u64 * 16);
        *v = (read_user::<u64>(at)?, read_user::<u64>(at.wrapping_add(8))?);
        if (v.1 as i64) < 0 {
            return Err(Errno::EINVAL);
        }
    }
    let mut total = 0;
    for (base, len) in vectors.iter_mut() {
        if !access_ok(*base, *len) {
            return Err(Errno::EFAULT);
        }
        *len = (*len).min(MAX_RW_COUNT - total);
        total += *len;
    }
    write_console(&vectors)
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

const TCGETS: u64 = 0x5401;
const TIOCGWINSZ: u64 = 0x5413;

/// The serial console's termios as Linux 6.12 reports it to /init under
/// QEMU (measured with linux-peer): ICRNL|IXON, OPOST|ONLCR, 115200 baud
/// CS8 CREAD HUPCL CLOCAL, ISIG ICANON ECHO ECHOE ECHOK ECHOCTL ECHOKE
/// IEXTEN, line discipline 0 and the default control characters.
fn console_termios() -> [u8; 36] {
    let mut t = [0u8; 36];
    for (i, flag) in [0o2400u32, 0o5, 0o6275, 0o105073].iter().enumerate() {
        t[i * 4..i * 4 + 4].copy_from_slice(&flag.to_le_bytes());
    }
    // c_line at 16, then c_cc[19]: INTR QUIT ERASE KILL EOF TIME MIN SWTC
    // START STOP SUSP EOL REPRINT DISCARD WERASE LNEXT EOL2.
    let cc = [3u8, 0o34, 0o177, 0o25, 4, 0, 1, 0, 0o21, 0o23, 0o32, 0, 0o22, 0o17, 0o27, 0o26, 0];
    t[17..17 + cc.len()].copy_from_slice(&cc);
    t
}

/// ioctl: the console answers TCGETS and TIOCGWINSZ (a serial line has no
/// size: 0 rows, 0 columns) as Linux's; everything else is ENOTTY, as it is
/// for the /proc files.
pub fn ioctl(fd: u64, request: u64, arg: u64) -> SysResult {
    if fd >= 3 {
        return match super::current_process().files.get(fd) {
            Some(_) => Err(Errno::ENOTTY),
            None => Err(Errno::EBADF),
        };
    }
    match request {
        TCGETS => copy_to_user(arg, &console_termios())?,
        TIOCGWINSZ => copy_to_user(arg, &[0u8; 8])?,
        _ => return Err(Errno::ENOTTY),
    }
    Ok(0)
}
