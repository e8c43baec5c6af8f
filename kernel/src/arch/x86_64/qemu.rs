//! Leaving QEMU: the `isa-debug-exit` device at port 0xf4 and a status byte on
//! the `debugcon` port 0xe9. The `boot` program reads both (see `boot/src/main.rs`).

use ::x86_64::instructions::port::Port;

const DEBUG_EXIT_PORT: u16 = 0xf4;
const DEBUGCON_PORT: u16 = 0xe9;

/// What the kernel tells `boot` when it stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// A normal end; `boot` exits with this status (init's, later).
    Shutdown(u8),
    /// A kernel failure: panic or failed test.
    Failure,
    /// A CPU stopped making progress (`watchdog`); `boot` exits with 102.
    Lockup,
}

pub fn exit(code: ExitCode) -> ! {
    let (status, device_code) = match code {
        ExitCode::Shutdown(status) => (status, 0x10u32),
        ExitCode::Failure => (0, 0x11u32),
        ExitCode::Lockup => (0, 0x12u32),
    };
    // SAFETY: ports 0xe9 and 0xf4 are QEMU's debugcon and isa-debug-exit devices,
    // which `boot` always attaches; writing them has no effect on memory. On a
    // machine without them the writes are ignored and we halt below.
    unsafe {
        Port::<u8>::new(DEBUGCON_PORT).write(status);
        Port::<u32>::new(DEBUG_EXIT_PORT).write(device_code);
    }
    super::halt_forever()
}
