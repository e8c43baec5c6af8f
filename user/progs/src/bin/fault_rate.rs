//! fault_rate: a page-fault benchmark. One thread touches one byte in each page
//! of a fresh 16 MiB anonymous mapping (each touch is a demand-zero fault:
//! MADV_NOHUGEPAGE keeps our fault-around and Linux's huge pages out) and
//! reports the rate in TSC ticks, on an `info:` line since it varies.
#![no_std]
#![no_main]

use ulib::println;
use ulib::sys::*;

ulib::entry!(main);

const LEN: usize = 16 << 20;

fn main() -> i32 {
    let pages = LEN / PAGE_SIZE;
    println!("fault_rate: touching one byte in each of the {} pages of a fresh 16 MiB mapping", pages);
    let p = match mmap_anon(LEN, PROT_READ | PROT_WRITE) {
        Ok(p) => p,
        Err(e) => {
            println!("FAIL: mmap: {:?}", e);
            return 1;
        }
    };
    // SAFETY: a hint on our fresh mapping.
    if let Err(e) = unsafe { madvise(p, LEN, MADV_NOHUGEPAGE) } {
        println!("FAIL: madvise: {:?}", e);
        return 1;
    }
    let start = rdtsc();
    for i in 0..pages {
        // SAFETY: inside our fresh mapping.
        unsafe { core::ptr::write_volatile(p.add(i * PAGE_SIZE), i as u8 | 1) };
    }
    let ticks = rdtsc().wrapping_sub(start).max(1);
    // SAFETY: inside our mapping, written above.
    let intact = (0..pages).all(|i| unsafe { core::ptr::read_volatile(p.add(i * PAGE_SIZE)) } == i as u8 | 1);
    // SAFETY: nothing uses the mapping any more.
    unsafe { munmap(p, LEN) }.expect("munmap");
    // Rate with three decimals, in integers (the programs are soft-float).
    let milli = pages as u128 * 1_000_000_000 / ticks as u128;
    println!(
        "info: fault_rate: {} faults in {} TSC ticks = {}.{:03} faults per million TSC ticks",
        pages,
        ticks,
        milli / 1000,
        milli % 1000
    );
    if intact {
        println!("fault_rate: all pages read back; done");
        0
    } else {
        println!("FAIL: fault_rate: a touched page did not keep its byte");
        1
    }
}
