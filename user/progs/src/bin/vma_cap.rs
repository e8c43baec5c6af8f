//! vma_cap: the VMA limit (vm.max_map_count, 65,530 on Linux) refuses only
//! what would add VMAs. One-page mappings with alternating protections (so
//! they cannot merge) are placed side by side until mmap fails with ENOMEM;
//! then, at the cap:
//!  - munmap of a whole VMA removes one: Linux allows it;
//!  - mprotect of a whole VMA to its neighbours' protection merges three
//!    into one: allowed;
//!  - munmap or mprotect of the middle page of a 3-page VMA splits it in
//!    three: ENOMEM, and nothing changes;
//!  - changes at one end of a VMA: unmapping an end or moving a boundary to
//!    a neighbour adds no VMA (allowed), re-protecting an end alone does
//!    (ENOMEM);
//!  - mmap at the cap fails even where the new page would merge (Linux
//!    checks the count first).
//!
//! Each result is printed; the number of mappings (which depends on what the
//! kernel had mapped before) is on an `info:` line.
#![no_std]
#![no_main]

use ulib::sys::*;
use ulib::{println, Errno};

ulib::entry!(main);

const PAGE: usize = PAGE_SIZE;
/// Far from the program, its heap and the kernel's mmap area on both kernels.
const BASE: usize = 0x1000_0000_0000;
/// More than any kernel's cap: the fill stops at the first ENOMEM.
const MAX_PAGES: usize = 70_000;
/// The middle page of the 3-page VMA the tests split (an odd page number).
const K: usize = 1001;
const R: usize = PROT_READ;
const RW: usize = PROT_READ | PROT_WRITE;

fn page(i: usize) -> usize {
    BASE + i * PAGE
}

/// The protection of page `i` in the fill: even pages read-only, odd ones read-write.
fn prot_of(i: usize) -> usize {
    if i.is_multiple_of(2) {
        R
    } else {
        RW
    }
}

fn result(r: Result<usize, Errno>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.name().unwrap_or("unknown errno"),
    }
}

fn map_page(i: usize, prot: usize) -> Result<usize, Errno> {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    unsafe { mmap(page(i), PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) }.map(|a| a as usize)
}

fn unmap(i: usize, pages: usize) -> Result<usize, Errno> {
    // SAFETY: our own one-page mappings, never accessed by Rust code.
    unsafe { munmap(page(i) as *mut u8, pages * PAGE) }
}

fn protect(i: usize, pages: usize, prot: usize) -> Result<usize, Errno> {
    // SAFETY: as above.
    unsafe { mprotect(page(i) as *mut u8, pages * PAGE, prot) }
}

/// Whether the kernel can read page `i` (FUTEX_WAIT with a zero timeout
/// reads the word; EFAULT if it cannot). A read maps the shared zero page.
fn mapped(i: usize) -> bool {
    let zero = Timespec::default();
    // SAFETY: FUTEX_WAIT only reads the word, or reports EFAULT.
    let r = unsafe { futex(page(i) as *const u32, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 1, &zero) };
    r != Err(Errno::EFAULT)
}

/// Whether page `i` is mapped read-only. The write probe (clock_gettime into
/// the page) only succeeds if the page is writable, and only then faults a
/// page in: a write would give the VMA an anon_vma, and Linux does not merge
/// every VMA that has one with one that has none, which would change what
/// the boundary moves below do. So only pages that should be read-only are
/// probed for writing, and nothing here writes to a read-write page.
fn read_only(i: usize) -> bool {
    // SAFETY: clock_gettime writes 16 bytes into our page, or reports EFAULT.
    mapped(i) && unsafe { syscall(nr::CLOCK_GETTIME, &[CLOCK_MONOTONIC, page(i)]) } == -(Errno::EFAULT.0 as isize)
}

fn main() -> i32 {
    println!("vma_cap: one-page mappings with alternating protections until mmap fails, then changes at the cap");
    // Pages K-1..=K+1 are one read-only 3-page VMA ("V") from the start; its
    // neighbours are read-write, the rest alternates.
    let mut n = 0;
    let err = loop {
        if n == MAX_PAGES {
            break None;
        }
        let r = if n == K - 1 {
            // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
            let r = unsafe { mmap(page(n), 3 * PAGE, R, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) };
            n += 2;
            r.map(|a| a as usize)
        } else {
            map_page(n, prot_of(n))
        };
        if let Err(e) = r {
            break Some(e);
        }
        n += 1;
    };
    println!("info: {} pages mapped before mmap failed", n);
    match err {
        Some(_) if n < 2 * K => {
            println!("FAIL: mmap failed after only {} pages", n);
            return 1;
        }
        Some(e) => println!("mmap of one more page at the cap: {:?}", e),
        None => {
            println!("FAIL: {} pages mapped and mmap never failed", MAX_PAGES);
            return 1;
        }
    }
    // j: a read-write one-page VMA between two read-only ones, far from V.
    let j = (n / 2) | 1;

    let r = unmap(j, 1);
    println!("munmap of a whole one-page VMA: {}", result(r));
    if r.is_ok() {
        println!("mmap of it again (back at the cap): {}", result(map_page(j, RW)));
    }

    let r = protect(j, 1, R);
    println!("mprotect of a whole VMA to its neighbours' protection (three merge into one): {}", result(r));
    println!("... the three pages are read-only: {}", (j - 1..=j + 1).all(read_only));
    // Two more one-page VMAs at the end of the run bring us back to the cap.
    println!(
        "mmap of two more pages (back at the cap): {}, {}",
        result(map_page(n, prot_of(n))),
        result(map_page(n + 1, prot_of(n + 1)))
    );
    println!("mmap of one more page: {}", result(map_page(n + 2, prot_of(n + 2))));
    let _ = unmap(n + 2, 1);
    let k = K;
    // V = pages k-1..=k+1, read-only; k-2 and k+2 are read-write.
    let v_intact = || (k - 1..=k + 1).all(read_only) && mapped(k - 2) && mapped(k + 2);
    println!("the 3-page VMA is read-only, its neighbours mapped: {}", v_intact());

    println!("munmap of the middle page of a 3-page VMA (a split): {}", result(unmap(k, 1)));
    println!("... the VMA is unchanged: {}", v_intact());
    println!("mprotect of the middle page of a 3-page VMA to read-write: {}", result(protect(k, 1, RW)));
    println!("... the VMA is unchanged: {}", v_intact());

    println!(
        "mprotect of the first page of the VMA to PROT_NONE (a split at one end): {}",
        result(protect(k - 1, 1, PROT_NONE))
    );
    println!("... the VMA is unchanged: {}", v_intact());
    println!(
        "mprotect of the last page of the VMA to PROT_NONE (a split at one end): {}",
        result(protect(k + 1, 1, PROT_NONE))
    );
    println!("... the VMA is unchanged: {}", v_intact());

    let r = protect(k - 1, 1, RW);
    println!(
        "mprotect of the first page of the VMA to its left neighbour's protection (the boundary moves): {}",
        result(r)
    );
    if r.is_ok() {
        println!("... and back (the boundary moves back): {}", result(protect(k - 1, 1, R)));
    }
    println!("... the VMA is as before: {}", v_intact());

    // Unmapping an end leaves the count as it was, so mapping the page again
    // is refused (mmap checks the count before it looks for a merge); with
    // page 0 (a whole VMA) unmapped first it is mapped and merges back.
    let remap = |i: usize| {
        println!("mmap of it again (it would merge back): {}", result(map_page(i, R)));
        println!("munmap of page 0, a whole VMA: {}", result(unmap(0, 1)));
        println!("mmap of it again now (it merges back): {}", result(map_page(i, R)));
        println!("mmap of page 0 again (back at the cap): {}", result(map_page(0, prot_of(0))));
    };
    let r = unmap(k + 1, 1);
    println!("munmap of the last page of the VMA (it shrinks): {}", result(r));
    if r.is_ok() {
        println!("... the page is gone, the rest stays: {}", !mapped(k + 1) && read_only(k - 1) && read_only(k));
        remap(k + 1);
    }
    println!("... the VMA is as before: {}", v_intact());
    let r = unmap(k - 1, 1);
    println!("munmap of the first page of the VMA (it shrinks): {}", result(r));
    if r.is_ok() {
        println!("... the page is gone, the rest stays: {}", !mapped(k - 1) && read_only(k) && read_only(k + 1));
        remap(k - 1);
    }
    println!("... the VMA is as before: {}", v_intact());
    println!("mmap of one more page: {}", result(map_page(n + 2, prot_of(n + 2))));
    let _ = unmap(n + 2, 1);

    let r = unmap(k - 1, 3);
    println!("munmap of the whole 3-page VMA: {}", result(r));
    println!("munmap of everything: {}", result(unmap(0, n + 2)));
    println!("... all gone: {}", [0, 1, k, n - 1, n, n + 1].iter().all(|&i| !mapped(i)));
    0
}
