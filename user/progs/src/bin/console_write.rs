//! console_write: write(2) and writev(2) to the console from a buffer that
//! runs from mapped memory into an unmapped hole. Linux's tty layer copies
//! the buffer in chunks of 2048 bytes and writes a chunk only if all of it
//! could be copied: it returns the bytes of the whole chunks written before
//! the fault, or EFAULT if there were none. The buffer holds 64-byte lines
//! ("buffer line NNN ..."), so the output shows exactly how much went out.
//!
//! Not run natively by `make check`: there stdout is a file, which takes
//! every byte up to the fault. The expected output is Linux's on the serial
//! console (linux-peer).
#![no_std]
#![no_main]

use core::ptr;

use ulib::sys::{self, nr, *};
use ulib::{println, Errno};

ulib::entry!(main);

const PAGE: usize = PAGE_SIZE;
const LINE: usize = 64;

/// Fills [p, p + len) with numbered 64-byte lines.
fn fill_lines(p: usize, len: usize) {
    for (n, line) in (p..p + len).step_by(LINE).enumerate() {
        let mut text = [b'.'; LINE];
        text[..12].copy_from_slice(b"buffer line ");
        text[12] = b'0' + (n / 100 % 10) as u8;
        text[13] = b'0' + (n / 10 % 10) as u8;
        text[14] = b'0' + (n % 10) as u8;
        text[15] = b' ';
        text[LINE - 1] = b'\n';
        // SAFETY: the caller passes read-write scratch memory.
        unsafe { ptr::copy_nonoverlapping(text.as_ptr(), line as *mut u8, LINE) };
    }
}

fn show(what: &str, r: Result<usize, Errno>) {
    match r {
        Ok(n) => println!("{} returned {}", what, n),
        Err(e) => println!("{} failed with {:?}", what, e),
    }
}

fn main() -> i32 {
    println!("console_write: writes whose buffer runs from mapped memory into a hole");
    // Two mapped pages of lines, then a hole.
    let p = mmap_anon(3 * PAGE, PROT_READ | PROT_WRITE).expect("mmap") as usize;
    // SAFETY: the third page of our fresh mapping holds nothing.
    unsafe { munmap((p + 2 * PAGE) as *mut u8, PAGE) }.expect("munmap");
    fill_lines(p, 2 * PAGE);
    let hole = p + 2 * PAGE;
    // SAFETY: write and writev only read user memory: our lines, or the hole.
    unsafe {
        println!("-- write(1, hole - 1024, 2048): 1024 bytes mapped");
        show("write", sys::check(syscall(nr::WRITE, &[1, hole - 1024, 2048])));
        println!("-- write(1, hole - 3072, 4096): 3072 bytes mapped");
        show("write", sys::check(syscall(nr::WRITE, &[1, hole - 3072, 4096])));
        println!("-- write(1, hole - 64, 128): 64 bytes mapped");
        show("write", sys::check(syscall(nr::WRITE, &[1, hole - 64, 128])));
        println!("-- write(1, hole - 2048, 2048): all mapped, ends at the hole");
        show("write", sys::check(syscall(nr::WRITE, &[1, hole - 2048, 2048])));
        println!("-- writev(1, [{{line 0, 64}}, {{hole - 128, 256}}]): the second runs into the hole");
        let iov = [IoVec { base: p as *const u8, len: 64 }, IoVec { base: (hole - 128) as *const u8, len: 256 }];
        show("writev", writev(1, &iov));
    }
    println!("console_write: done");
    0
}
