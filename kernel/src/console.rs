//! The serial console (COM1) and the `log` back end.
//!
//! Kernel messages go through `log` and carry a `[kernel]` prefix so they can be
//! told apart from what user programs print; `print!`/`println!` write raw text.
//! Line feeds become CR LF, as a Linux serial console sends them.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550};

use crate::sync::{Level, SpinLock};

const COM1: u16 = 0x3f8;

/// Guards the UART so lines from different CPUs do not interleave mid-line.
static SERIAL: SpinLock<Option<Uart16550<PioBackend>>> = SpinLock::new(Level::Console, None);
/// Bytes sent to the console since boot (tests and statistics).
static BYTES_WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Sets up COM1 and installs the logger. Safe to call once, before anything logs.
pub fn init() {
    // SAFETY: COM1's eight ports are the standard PC serial port and nothing
    // else in the kernel drives them; the device is owned by `SERIAL` from here on.
    let mut uart = unsafe { Uart16550::new_port(COM1) }.expect("COM1 port range is valid");
    // With no UART present we still boot; output is simply lost.
    let _ = uart.init(Config::default());
    *SERIAL.lock() = Some(uart);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level_from_build());
}

/// Quiet by default: warnings and errors (plus the boot summary line,
/// which `kernel_line` prints regardless). See `set_level_from_ramdisk`.
fn level_from_build() -> log::LevelFilter {
    log::LevelFilter::Warn
}

fn parse_level(text: &str) -> Option<log::LevelFilter> {
    Some(match text.trim() {
        "off" => log::LevelFilter::Off,
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "info" => log::LevelFilter::Info,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        _ => return None,
    })
}

/// Applies a log level given at run time: `boot --log LEVEL` puts it in the
/// ramdisk as the file `kernel.log`.
pub fn set_level_from_ramdisk(ramdisk: &[u8]) {
    if let Ok(Some(entry)) = crate::task::cpio::find(ramdisk, "kernel.log") {
        match core::str::from_utf8(entry.data).ok().and_then(parse_level) {
            Some(level) => log::set_max_level(level),
            None => log::warn!("kernel.log in the ramdisk names no log level; keeping the default"),
        }
    }
}

pub fn bytes_written() -> u64 {
    BYTES_WRITTEN.load(Ordering::Relaxed)
}

struct SerialWriter<'a>(&'a mut Uart16550<PioBackend>);

impl Write for SerialWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(self.0, s.as_bytes());
        Ok(())
    }
}

fn write_bytes(uart: &mut Uart16550<PioBackend>, bytes: &[u8]) {
    for chunk in bytes.split_inclusive(|&b| b == b'\n') {
        match chunk.split_last() {
            Some((b'\n', line)) => {
                uart.send_bytes_exact(line);
                uart.send_bytes_exact(b"\r\n");
            }
            _ => uart.send_bytes_exact(chunk),
        }
    }
    BYTES_WRITTEN.fetch_add(bytes.len() as u64, Ordering::Relaxed);
}

/// A byte typed on the console, if one is waiting.
pub fn read_byte() -> Option<u8> {
    SERIAL.lock().as_mut().and_then(|uart| uart.try_receive_byte().ok())
}

/// A line that is always shown, whatever the log level (the boot summary).
pub fn kernel_line(args: fmt::Arguments) {
    _print(format_args!("[kernel] {args}\n"));
}

/// Writes raw bytes (a user program's output) to the console.
pub fn write(bytes: &[u8]) {
    if let Some(uart) = SERIAL.lock().as_mut() {
        write_bytes(uart, bytes);
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    if let Some(uart) = SERIAL.lock().as_mut() {
        let _ = SerialWriter(uart).write_fmt(args);
    }
}

/// Writes without taking the console lock: for the panic path, where the lock
/// may be held by the code that panicked or by a CPU that has been stopped.
pub fn emergency_print(args: fmt::Arguments) {
    // SAFETY: COM1 is a valid port range. Bypassing `SERIAL` can interleave bytes
    // with another writer, which is acceptable on the way down; the UART keeps
    // no state that a second handle could corrupt beyond garbled text.
    if let Ok(mut uart) = unsafe { Uart16550::new_port(COM1) } {
        let _ = SerialWriter(&mut uart).write_fmt(args);
    }
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::console::_print(format_args!($($arg)*)));
}

#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::console::_print(format_args!("{}\n", format_args!($($arg)*))));
}

struct KernelLogger;
static LOGGER: KernelLogger = KernelLogger;

impl log::Log for KernelLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warn",
            log::Level::Info => "info",
            log::Level::Debug => "debug",
            log::Level::Trace => "trace",
        };
        _print(format_args!("[kernel] {level}: {}\n", record.args()));
    }

    fn flush(&self) {}
}
