//! A `no_std` x86_64 kernel whose memory manager handles page faults from many
//! threads at once. See `docs/` and the README for the design.
//!
//! Layering: `arch` holds every instruction that touches the hardware and all
//! raw page-table access; `mm`, `sync` and `testing` build safe APIs on top.

#![no_std]
#![cfg_attr(test, no_main)]
#![feature(custom_test_frameworks)]
#![test_runner(crate::testing::test_runner)]
#![reexport_test_harness_main = "test_main"]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod arch;
pub mod console;
pub mod fs;
pub mod mm;
pub mod panic;
pub mod profile;
pub mod sync;
pub mod syscall;
pub mod task;
pub mod testing;

use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::BootInfo;

/// How the bootloader must lay out the kernel's address space (see `mm::layout`).
pub const BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    // All of physical memory at one fixed offset: page tables and frames are reached through it.
    config.mappings.physical_memory = Some(Mapping::FixedAddress(mm::layout::PHYS_MAP_BASE));
    // Keep everything the bootloader places itself in the upper half, below our own ranges,
    // so the lower half is free for user space.
    config.mappings.dynamic_range_start = Some(mm::layout::BOOTLOADER_RANGE_START);
    config.mappings.dynamic_range_end = Some(mm::layout::BOOTLOADER_RANGE_END);
    config.kernel_stack_size = 256 * 1024;
    config
};

/// Brings the boot CPU from the bootloader's hand-off to a working kernel:
/// console, descriptor tables and traps, frames, page tables, heap.
pub fn init(boot_info: &'static mut BootInfo) {
    console::init();
    arch::init_boot_cpu();
    let rsdp = boot_info.rsdp_addr.into_option();
    mm::init(boot_info);
    if let Some(ramdisk) = mm::ramdisk() {
        console::set_level_from_ramdisk(ramdisk);
        mm::fault::set_lock_mode_from_ramdisk(ramdisk);
        mm::set_switches_from_ramdisk(ramdisk);
        testing::read_filter(ramdisk);
    }
    arch::init_smp(rsdp);
    // Every CPU is up: they all take part in RCU grace periods.
    sync::rcu::init();
    arch::enable_interrupts();
    // Every CPU is online and ticking: from now on a CPU that stops is a lockup.
    arch::watchdog::arm();
}

/// Ends the run: QEMU exits and `boot` exits with `status`.
pub fn shutdown(status: u8) -> ! {
    arch::qemu::exit(arch::qemu::ExitCode::Shutdown(status))
}

#[cfg(test)]
bootloader_api::entry_point!(test_kernel_main, config = &BOOTLOADER_CONFIG);

#[cfg(test)]
fn test_kernel_main(boot_info: &'static mut BootInfo) -> ! {
    init(boot_info);
    // The unit tests run with idle CPUs filling zero pools (off by default
    // in booted kernels): so pool frames go through every test's
    // allocations, and the filler races the tests, as it does with
    // `boot --zero-pool on`.
    mm::frame::set_zero_pool(true);
    test_main();
    shutdown(0)
}

#[cfg(test)]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    testing::test_panic_handler(info)
}
