//! A kernel page fault outside every region the kernel resolves must panic with
//! a report that names the exception, the address and the access.

#![no_std]
#![no_main]

use core::fmt::Write;

use bootloader_api::{entry_point, BootInfo};
use kernel::arch::qemu::{exit, ExitCode};
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

/// Collects the panic message so the test can check its contents.
struct Buffer {
    bytes: [u8; 512],
    len: usize,
}

impl Write for Buffer {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let mut buffer = Buffer { bytes: [0; 512], len: 0 };
    let _ = write!(buffer, "{}", info.message());
    let message = core::str::from_utf8(&buffer.bytes[..buffer.len]).unwrap_or("");
    println!("report: {message}");
    let expected = ["page fault (#PF)", "vector 14", "write of 0xffffc180deadb000", "page not present", "rip 0x"];
    match expected.iter().find(|part| !message.contains(*part)) {
        None => {
            println!("[ok]\n1 passed, 0 failed");
            exit(ExitCode::Shutdown(0))
        }
        Some(missing) => {
            println!("[failed]: the report lacks '{missing}'\n0 passed, 1 failed");
            exit(ExitCode::Failure)
        }
    }
}
