//! `print!`-style output straight to write(2), without a global buffer: each
//! macro call formats into a stack buffer and is written in as few write calls
//! as possible, so lines from different threads do not get interleaved.

use core::fmt;

use crate::sys;

const BUF: usize = 512;

pub struct FdWriter {
    fd: i32,
    len: usize,
    buf: [u8; BUF],
}

impl FdWriter {
    pub const fn new(fd: i32) -> FdWriter {
        FdWriter { fd, len: 0, buf: [0; BUF] }
    }

    pub fn flush(&mut self) {
        write_all(self.fd, &self.buf[..self.len]);
        self.len = 0;
    }
}

impl fmt::Write for FdWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut bytes = s.as_bytes();
        while !bytes.is_empty() {
            if self.len == BUF {
                self.flush();
            }
            let n = bytes.len().min(BUF - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

/// Writes all of `bytes`, retrying short writes; gives up silently on an error
/// (there is nowhere left to report it).
pub fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match sys::write(fd, bytes) {
            Ok(0) | Err(_) => return,
            Ok(n) => bytes = &bytes[n..],
        }
    }
}

#[doc(hidden)]
pub fn _print(fd: i32, args: fmt::Arguments) {
    let mut w = FdWriter::new(fd);
    let _ = fmt::Write::write_fmt(&mut w, args);
    w.flush();
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::io::_print(1, format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::io::_print(1, format_args!("\n")) };
    ($($arg:tt)*) => { $crate::io::_print(1, format_args!("{}\n", format_args!($($arg)*))) };
}

#[macro_export]
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::io::_print(2, format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! eprintln {
    () => { $crate::io::_print(2, format_args!("\n")) };
    ($($arg:tt)*) => { $crate::io::_print(2, format_args!("{}\n", format_args!($($arg)*))) };
}

/// Displays a byte string (argv entries, uname fields) as text, escaping
/// anything that is not printable ASCII.
pub struct Bytes<'a>(pub &'a [u8]);

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in self.0 {
            if (0x20..0x7f).contains(&b) {
                fmt::Write::write_char(f, b as char)?;
            } else {
                write!(f, "\\x{:02x}", b)?;
            }
        }
        Ok(())
    }
}
