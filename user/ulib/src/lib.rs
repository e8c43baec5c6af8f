//! ulib: the smallest runtime that lets Rust programs run as static Linux
//! x86_64 executables without libc: `_start`, raw system calls, printing,
//! threads, a futex mutex and a seeded PRNG. Programs use it with
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! use ulib::println;
//! ulib::entry!(main);
//! fn main() -> i32 { println!("hi"); 0 }
//! ```

#![no_std]

pub mod bench;
pub mod env;
pub mod errno;
pub mod io;
pub mod rand;
pub mod sync;
pub mod sys;
pub mod thread;

pub use errno::Errno;

use core::arch::global_asm;

// Process entry. The kernel starts us with %rsp pointing at argc (16-byte
// aligned by the ABI, but we do not rely on that) and %rdx holding an
// atexit function (0 from Linux). %rbp is zeroed so that frame-pointer walks
// stop here.
global_asm!(
    ".globl _start",
    ".type _start,@function",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "mov rsi, rdx",
    "and rsp, -16",
    "call {start}",
    "ud2",
    ".size _start, . - _start",
    start = sym rt_start,
);

extern "Rust" {
    /// Defined by [`entry!`] in the program.
    fn __ulib_main() -> i32;
}

extern "C" fn rt_start(sp: *const usize, rdx: usize) -> ! {
    env::init(sp, rdx);
    // SAFETY: every program defines __ulib_main through entry!, with this signature.
    let code = unsafe { __ulib_main() };
    sys::exit_group(code)
}

/// The address of `_start`, i.e. what AT_ENTRY should be.
pub fn start_address() -> usize {
    extern "C" {
        fn _start();
    }
    _start as *const () as usize
}

/// Names the program's `fn main() -> i32`; its return value is the exit status.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        fn __ulib_main() -> i32 {
            let main: fn() -> i32 = $main;
            main()
        }
    };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    eprintln!("panic: {}", info);
    sys::exit_group(101)
}
