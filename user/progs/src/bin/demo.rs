//! demo: what `make run` shows. Four threads at once each map anonymous
//! memory, write every page (each write a page fault), make half of it
//! read-only, read everything back, and unmap it; the main thread then says
//! what each one saw.
#![no_std]
#![no_main]

use core::ptr;

use ulib::sys::*;
use ulib::{println, thread};

ulib::entry!(main);

const THREADS: usize = 4;
const PAGES: usize = 64;

#[derive(Clone, Copy)]
struct Seen {
    tid: u32,
    addr: usize,
    written: usize,
    intact: usize,
    error: Option<&'static str>,
}

fn work(index: usize) -> Seen {
    let mut seen = Seen { tid: gettid(), addr: 0, written: 0, intact: 0, error: None };
    let len = PAGES * PAGE_SIZE;
    let p = match mmap_anon(len, PROT_READ | PROT_WRITE) {
        Ok(p) => p,
        Err(_) => {
            seen.error = Some("mmap failed");
            return seen;
        }
    };
    seen.addr = p as usize;
    let value = |page: usize| (index * PAGES + page) as u64 + 1;
    // SAFETY: the mapping is ours; the upper half is only read once read-only.
    unsafe {
        for page in 0..PAGES {
            ptr::write_volatile(p.add(page * PAGE_SIZE) as *mut u64, value(page));
            seen.written += 1;
        }
        if mprotect(p.add(len / 2), len / 2, PROT_READ).is_err() {
            seen.error = Some("mprotect failed");
        }
        seen.intact =
            (0..PAGES).filter(|&page| ptr::read_volatile(p.add(page * PAGE_SIZE) as *const u64) == value(page)).count();
        if munmap(p, len).is_err() {
            seen.error = Some("munmap failed");
        }
    }
    seen
}

fn main() -> i32 {
    println!(
        "demo: {} threads each map {} KiB of anonymous memory and write one word to each of its {} pages,",
        THREADS,
        PAGES * PAGE_SIZE / 1024,
        PAGES
    );
    println!("demo: make the upper half read-only with mprotect, read every page back, and unmap it.");
    let start = monotonic_ns();
    let handles = [0, 1, 2, 3].map(|i| thread::spawn(move || work(i)));
    let mut all_ok = true;
    for (i, h) in handles.into_iter().enumerate() {
        let seen = match h {
            Ok(h) => h.join(),
            Err(e) => {
                println!("demo: thread {}: could not be started: {:?}", i + 1, e);
                all_ok = false;
                continue;
            }
        };
        println!("info: demo: thread {} is tid {}, its memory was at {:#x}", i + 1, seen.tid, seen.addr);
        let ok = seen.error.is_none() && seen.intact == PAGES;
        all_ok &= ok;
        println!(
            "demo: thread {}: wrote {} pages, {} made read-only, read back {} of {} intact, unmapped: {}",
            i + 1,
            seen.written,
            PAGES / 2,
            seen.intact,
            PAGES,
            seen.error.unwrap_or(if ok { "ok" } else { "FAIL" })
        );
    }
    println!("info: demo: took {} us", (monotonic_ns() - start) / 1000);
    if all_ok {
        println!("demo: every thread saw exactly what it wrote; done");
        0
    } else {
        println!("demo: FAIL");
        1
    }
}
