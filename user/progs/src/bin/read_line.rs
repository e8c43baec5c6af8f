//! Reads one line from standard input (fd 0) and says what it got. With no
//! input at all (stdin at end of file) it gets 0 bytes.
#![no_std]
#![no_main]

use ulib::println;

ulib::entry!(main);

fn main() -> i32 {
    let mut buf = [0u8; 128];
    match ulib::sys::read(0, &mut buf) {
        Ok(n) => {
            let text = core::str::from_utf8(&buf[..n]).unwrap_or("(not UTF-8)");
            println!("read_line: got {n} bytes: {:?}", text);
            0
        }
        Err(e) => {
            println!("read_line: read failed: {:?}", e);
            1
        }
    }
}
