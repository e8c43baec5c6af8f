//! A panic on one CPU must name that CPU and stop all the others.
//! CPU 1 panics; its panic handler checks the message, then checks that the
//! boot CPU's timer tick count no longer moves (it was stopped by an NMI).

#![no_std]
#![no_main]

use core::sync::atomic::Ordering;

use bootloader_api::{entry_point, BootInfo};
use kernel::arch::ipi::{call_async, online, CpuSet};
use kernel::arch::qemu::{exit, ExitCode};
use kernel::arch::{percpu, time};
use kernel::println;

entry_point!(main, config = &kernel::BOOTLOADER_CONFIG);

fn main(boot_info: &'static mut BootInfo) -> ! {
    kernel::init(boot_info);
    println!("panic_on_ap::a_panic_stops_the_other_cpus ... ");
    if online().len() < 2 {
        println!("[failed]: needs at least 2 CPUs (SMP >= 2)\n0 passed, 1 failed");
        exit(ExitCode::Failure);
    }
    call_async(CpuSet::single(1), alloc_box(|| panic!("deliberate panic on an AP")));
    // The boot CPU idles with interrupts on, taking ticks, until it is stopped.
    loop {
        x86_64::instructions::interrupts::enable_and_hlt();
    }
}

extern crate alloc;
fn alloc_box(f: fn()) -> alloc::boxed::Box<dyn Fn() + Send + Sync> {
    alloc::boxed::Box::new(f)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = kernel::arch::disable_interrupts();
    kernel::panic::begin();
    kernel::arch::stop_other_cpus();
    let cpu = percpu::cpu_id();
    println!("panic on cpu {cpu}: {}", info.message());
    let boot_cpu_ticks = || percpu::get(0).unwrap().ticks.load(Ordering::Relaxed);
    let before = boot_cpu_ticks();
    time::spin_ns(200_000_000);
    let after = boot_cpu_ticks();
    if cpu == 1 && before == after {
        println!("[ok]\n1 passed, 0 failed");
        exit(ExitCode::Shutdown(0))
    }
    println!("[failed]: panicked on cpu {cpu}, boot CPU ticks {before} -> {after}\n0 passed, 1 failed");
    exit(ExitCode::Failure)
}
