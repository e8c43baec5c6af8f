//! The smallest program: one write(2), then exit_group(0).
#![no_std]
#![no_main]

use ulib::println;

ulib::entry!(main);

fn main() -> i32 {
    println!("Hello, world!");
    0
}
