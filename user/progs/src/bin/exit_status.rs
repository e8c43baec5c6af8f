//! exit_status: exits with the status given in argv[1] (default 42) through
//! exit_group; the shell sees it modulo 256.
#![no_std]
#![no_main]

use ulib::{env, println};

ulib::entry!(main);

fn main() -> i32 {
    let status = match env::arg(1) {
        None => 42,
        Some(a) => match env::parse_u64(a) {
            Some(v) => v as i32,
            None => {
                println!("exit_status: usage: exit_status [STATUS]");
                return 2;
            }
        },
    };
    println!("exit_status: exiting with status {}", status);
    status
}
