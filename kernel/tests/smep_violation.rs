//! The kernel running code in a user page must be a kernel fault whose
//! report names SMEP, not code that quietly runs (a user program could
//! otherwise plant code for a kernel bug to jump to).
//!
//! The test maps an executable user page holding a `ret` in a fresh address
//! space, loads it on this CPU (interrupts off, so no switch takes it away)
//! and calls it. The panic handler checks the report.

#![no_std]
#![no_main]

use bootloader_api::{entry_point, BootInfo};
use kernel::mm::addrspace::{AddressSpace, MmapRequest, Prot};
use kernel::println;

entry_point!(main, config = &kernel::BOOTLOADER_CONFIG);

const USER_PAGE: u64 = 0x4000_0000;

fn main(boot_info: &'static mut BootInfo) -> ! {
    kernel::init(boot_info);
    println!("smep_violation::kernel_execution_of_a_user_page_is_a_kernel_fault ... ");
    let mm = AddressSpace::new().expect("an address space");
    let request = MmapRequest {
        addr: USER_PAGE,
        len: 4096,
        prot: Prot::READ | Prot::EXEC,
        fixed: true,
        populate: true,
        ..Default::default()
    };
    mm.mmap(&request).expect("mmap a user page");
    // `ret`: if it runs, the call below simply returns.
    mm.write_bytes(USER_PAGE, &[0xc3]).expect("fill the user page");
    let _ = kernel::arch::disable_interrupts();
    kernel::mm::lazy_tlb::switch(Some(&mm));
    // SAFETY: deliberately wrong: the page is mapped, present and holds a
    // `ret`, but the kernel must never run user code; the test checks the
    // panic that follows.
    let user_code: extern "C" fn() = unsafe { core::mem::transmute(USER_PAGE as usize) };
    user_code();
    panic!("the kernel ran a user page without a fault");
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    kernel::testing::expect_panic_report(
        info,
        &[
            "page fault (#PF)",
            "execute of 0x40000000",
            "protection violation, kernel mode",
            "rip 0x40000000",
            "the kernel executed user memory: SMEP violation",
        ],
    )
}
