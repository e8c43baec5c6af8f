//! The kernel's panic report: message, location and CPU on the console, then
//! a failing exit so `boot` (and `make`) see it.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::qemu::{exit, ExitCode};
use crate::console::emergency_print;

static PANICKING: AtomicBool = AtomicBool::new(false);

pub fn is_panicking() -> bool {
    PANICKING.load(Ordering::SeqCst)
}

/// Marks the kernel as going down; false if it already was.
pub fn begin() -> bool {
    !PANICKING.swap(true, Ordering::SeqCst)
}

pub fn report(info: &core::panic::PanicInfo) -> ! {
    let _ = crate::arch::disable_interrupts();
    if !begin() {
        // A panic while reporting a panic: say no more, just stop.
        exit(ExitCode::Failure);
    }
    crate::arch::stop_other_cpus();
    let cpu = crate::arch::cpu_id();
    match info.location() {
        Some(at) => emergency_print(format_args!(
            "[kernel] panic on cpu {cpu} at {}:{}: {}\n",
            at.file(),
            at.line(),
            info.message()
        )),
        None => emergency_print(format_args!("[kernel] panic on cpu {cpu}: {}\n", info.message())),
    }
    exit(ExitCode::Failure)
}
