//! A kernel stack overflow must end in the double-fault handler, running on its
//! own IST stack, not in a triple fault. Passing means that handler ran.

#![no_std]
#![no_main]

use bootloader_api::{entry_point, BootInfo};
use kernel::arch::qemu::{exit, ExitCode};
use kernel::arch::traps::{set_double_fault_hook, TrapFrame, VECTOR_DOUBLE_FAULT};
use kernel::println;

entry_point!(main, config = &kernel::BOOTLOADER_CONFIG);

fn main(boot_info: &'static mut BootInfo) -> ! {
    kernel::init(boot_info);
    set_double_fault_hook(on_double_fault);
    println!("stack_overflow::recursion_hits_the_guard_page ... ");
    recurse(0);
    panic!("the recursion returned instead of overflowing");
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let local = [depth; 16];
    // Use the array so the frame cannot be optimised away.
    core::hint::black_box(&local);
    recurse(depth + 1) + core::hint::black_box(local[3])
}

fn on_double_fault(frame: &TrapFrame) -> ! {
    assert_eq!(frame.vector, VECTOR_DOUBLE_FAULT as u64);
    println!("[ok]");
    println!("1 passed, 0 failed");
    exit(ExitCode::Shutdown(0))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    kernel::testing::test_panic_handler(info)
}
