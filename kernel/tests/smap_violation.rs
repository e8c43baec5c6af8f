//! A stray kernel read of a user page (not through `mm::uaccess`) must be a
//! kernel fault whose report names SMAP, not a read that quietly works (or
//! a fault resolved against the process's VMAs).
//!
//! The test maps and fills a user page in a fresh address space, loads it
//! on this CPU (interrupts off, so no switch takes it away) and reads the
//! page through a plain pointer. The panic handler checks the report.

#![no_std]
#![no_main]

use bootloader_api::{entry_point, BootInfo};
use kernel::mm::addrspace::{AddressSpace, MmapRequest, Prot};
use kernel::println;

entry_point!(main, config = &kernel::BOOTLOADER_CONFIG);

const USER_PAGE: u64 = 0x4000_0000;

fn main(boot_info: &'static mut BootInfo) -> ! {
    kernel::init(boot_info);
    println!("smap_violation::a_stray_kernel_read_of_user_memory_is_a_kernel_fault ... ");
    let mm = AddressSpace::new().expect("an address space");
    let request = MmapRequest {
        addr: USER_PAGE,
        len: 4096,
        prot: Prot::READ | Prot::WRITE,
        fixed: true,
        populate: true,
        ..Default::default()
    };
    mm.mmap(&request).expect("mmap a user page");
    mm.write_bytes(USER_PAGE, &0x5eed_u64.to_le_bytes()).expect("fill the user page");
    let _ = kernel::arch::disable_interrupts();
    kernel::mm::lazy_tlb::switch(Some(&mm));
    // SAFETY: deliberately wrong: the page is mapped (and present) in the
    // loaded address space, but the kernel must only read user memory
    // through uaccess; the test checks the panic that follows.
    let value = unsafe { (USER_PAGE as *const u64).read_volatile() };
    panic!("the stray read of a user page did not fault (it read {value:#x})");
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    kernel::testing::expect_panic_report(
        info,
        &[
            "page fault (#PF)",
            "read of 0x40000000",
            "protection violation, kernel mode",
            "a kernel read of user memory outside the user-copy routines",
            "SMAP violation",
        ],
    )
}
