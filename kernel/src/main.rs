//! The kernel binary: boot, show that memory management works, shut down.

#![no_std]
#![no_main]

use bootloader_api::{entry_point, BootInfo};
use kernel::mm::{demand, frame, heap};

entry_point!(kernel_main, config = &kernel::BOOTLOADER_CONFIG);

fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
    let started = kernel::arch::read_tsc();
    kernel::init(boot_info);
    let frames = frame::stats();
    log::info!(
        "boot: {} MiB usable, {} MiB free, heap {} KiB",
        frames.total * 4 / 1024,
        frames.free * 4 / 1024,
        heap::stats().size / 1024
    );
    for r in kernel::mm::boot_memory_regions() {
        log::debug!("memory {:#x}..{:#x} {:?}", r.start, r.end, r.kind);
    }
    demo_demand_paging();
    log::info!("boot: done in {} M TSC cycles; shutting down", (kernel::arch::read_tsc() - started) / 1_000_000);
    kernel::shutdown(0)
}

/// Touches pages of the demand-mapped region: each first touch is a real #PF
/// that the kernel resolves by mapping a zeroed frame.
fn demo_demand_paging() {
    const PAGES: u64 = 16;
    let before = demand::faults();
    let base = demand::start();
    for i in 0..PAGES {
        let ptr = (base + i * 4096).as_mut_ptr::<u64>();
        // SAFETY: the demand region is reserved for this; the page-fault handler
        // maps a zeroed frame on first touch and nothing else uses these pages.
        unsafe { ptr.write_volatile(i) };
    }
    let faults = demand::faults() - before;
    log::info!("demand paging: touched {PAGES} pages, {faults} page faults resolved");
    demand::release(base, PAGES * 4096);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    kernel::panic::report(info)
}
