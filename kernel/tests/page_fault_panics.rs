//! A kernel page fault outside every region the kernel resolves must panic with
//! a report that names the exception, the address and the access.

#![no_std]
#![no_main]

use bootloader_api::{entry_point, BootInfo};
use kernel::println;

entry_point!(main, config = &kernel::BOOTLOADER_CONFIG);

const BAD_ADDRESS: u64 = 0xffff_c180_dead_b000;

fn main(boot_info: &'static mut BootInfo) -> ! {
    kernel::init(boot_info);
    println!("page_fault_panics::stray_write_is_reported ... ");
    // SAFETY: deliberately invalid: the address is in the unused MMIO slot,
    // so the write faults; the test checks the panic that follows.
    unsafe { (BAD_ADDRESS as *mut u64).write_volatile(1) };
    panic!("the stray write did not fault");
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    kernel::testing::expect_panic_report(
        info,
        &["page fault (#PF)", "vector 14", "write of 0xffffc180deadb000", "page not present", "rip 0x"],
    )
}
