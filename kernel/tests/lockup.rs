//! A CPU stuck with interrupts off must be found by the lockup detector:
//! a report with every CPU's state, then a failed run with its own status.
//!
//! CPU 1 spins with interrupts off; the boot CPU (its watcher) idles.
//! Two modes:
//! - by default (`cargo test`), a report hook checks the report (hard
//!   lockup of CPU 1, found by another CPU; every CPU described, CPU 1 with
//!   interrupts off and its RIP in the spinning function) and passes;
//! - with the test filter `exit-status`, the kernel stops as it would for a
//!   real lockup; tests/boot.rs boots it that way and checks boot's status
//!   (102) and the report's lines.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;

use bootloader_api::{entry_point, BootInfo};
use kernel::arch::ipi::{call_async, online, CpuSet};
use kernel::arch::qemu::{exit, ExitCode};
use kernel::arch::watchdog::{self, LockupKind, Report};
use kernel::println;

entry_point!(main, config = &kernel::BOOTLOADER_CONFIG);

/// The longest `spin_with_interrupts_off` can be (it is a few instructions).
const SPIN_FUNCTION_MAX_LEN: u64 = 64;

fn main(boot_info: &'static mut BootInfo) -> ! {
    kernel::init(boot_info);
    println!("lockup::a_cpu_spinning_with_interrupts_off_is_reported ... ");
    if online().len() < 2 {
        println!(
            "[failed]: needs at least 2 CPUs (SMP >= 2): one CPU cannot see its own hard lockup\n0 passed, 1 failed"
        );
        exit(ExitCode::Failure);
    }
    if kernel::testing::filter() != Some("exit-status") {
        watchdog::set_report_hook(check_report);
    }
    // The call runs in CPU 1's interrupt handler and never returns.
    call_async(CpuSet::single(1), Box::new(|| spin_with_interrupts_off()));
    // The boot CPU idles with interrupts on, taking ticks and watching CPU 1.
    loop {
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}

#[inline(never)]
fn spin_with_interrupts_off() -> ! {
    let _ = kernel::arch::disable_interrupts();
    loop {
        core::hint::spin_loop();
    }
}

fn check_report(report: &Report) -> ! {
    let spin = spin_with_interrupts_off as *const () as u64;
    let stuck = report.cpus[1];
    let problem = if report.kind != LockupKind::Hard {
        Some("not reported as a hard lockup")
    } else if report.stuck_cpu != 1 {
        Some("the wrong CPU was reported")
    } else if report.reporter == 1 {
        Some("the stuck CPU reported itself")
    } else if !stuck.answered {
        Some("CPU 1 did not describe itself")
    } else if stuck.interrupts_on {
        Some("CPU 1 was described with interrupts on")
    } else if !(spin..spin + SPIN_FUNCTION_MAX_LEN).contains(&stuck.rip) {
        Some("CPU 1's RIP is not in the spinning function")
    } else if online().iter().any(|cpu| !report.cpus[cpu].answered) {
        Some("not every CPU was described")
    } else {
        None
    };
    match problem {
        None => {
            println!("[ok]\n1 passed, 0 failed");
            exit(ExitCode::Shutdown(0))
        }
        Some(problem) => {
            println!("[failed]: {problem} ({report:?})\n0 passed, 1 failed");
            exit(ExitCode::Failure)
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    kernel::testing::test_panic_handler(info)
}
