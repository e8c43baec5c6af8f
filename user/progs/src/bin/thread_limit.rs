//! thread_limit: creates threads (16 KiB stacks, each parked in FUTEX_WAIT)
//! until the kernel refuses one, and prints which step failed and how: the
//! stack's mmap, or clone. Linux refuses clone with EAGAIN once it has
//! threads-max threads (RAM / 128 KiB: about 4,000 with 512 MiB). Then every
//! thread is woken and joined, and memory must still work: the limit must be
//! a clean refusal, not a kernel that ran out of its own memory.
//!
//! The counts vary with RAM and kernel, so they are on `info:` lines only.
//! Not run natively by `make check`: on a big host it would create tens of
//! thousands of threads; the expected output is Linux's under linux-peer.
#![no_std]
#![no_main]

use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use ulib::sys::*;
use ulib::thread::{clone_raw, THREAD_FLAGS};
use ulib::{println, Errno};

ulib::entry!(main);

const PAGE: usize = PAGE_SIZE;
const STACK: usize = 16 * 1024;
/// Guard page, stack, and one page for the thread block (FS points there).
const REGION: usize = PAGE + STACK + PAGE;
/// Stop here even if the kernel never refuses (a kernel without a limit).
const MAX_THREADS: usize = 65_536;

/// 0 while the threads must stay parked; 1 once they may exit.
static GO: AtomicU32 = AtomicU32::new(0);
static PARKED: AtomicUsize = AtomicUsize::new(0);

/// The thread block at the bottom of the region's last page: %fs:0 must
/// point at itself (the TLS ABI), and the kernel clears `tid` at exit.
#[repr(C)]
struct Block {
    self_ptr: usize,
    tid: AtomicU32,
}

fn block_of(region: usize) -> *mut Block {
    (region + PAGE + STACK) as *mut Block
}

/// Each thread: wait until GO, then exit.
unsafe extern "C" fn parked(_: usize) -> ! {
    PARKED.fetch_add(1, Ordering::Relaxed);
    while GO.load(Ordering::Acquire) == 0 {
        let _ = futex_wait(&GO, 0, None);
    }
    exit(0)
}

enum Failure {
    Mmap(Errno),
    Mprotect(Errno),
    Clone(Errno),
}

/// Maps a region and starts a thread on it; returns the region.
fn start_thread() -> Result<usize, Failure> {
    let region = mmap_anon(REGION, PROT_READ | PROT_WRITE).map_err(Failure::Mmap)? as usize;
    // SAFETY: the lowest page of our fresh region becomes the stack guard.
    if let Err(e) = unsafe { mprotect(region as *mut u8, PAGE, PROT_NONE) } {
        // SAFETY: nothing uses the fresh region.
        let _ = unsafe { munmap(region as *mut u8, REGION) };
        return Err(Failure::Mprotect(e));
    }
    let block = block_of(region);
    // SAFETY: the block page is ours and writable; the thread's stack ends at
    // the block and both stay mapped until the thread has been joined.
    unsafe {
        block.write(Block { self_ptr: block as usize, tid: AtomicU32::new(u32::MAX) });
        let tid = (*block).tid.as_ptr();
        match clone_raw(THREAD_FLAGS, block as usize, tid, tid, block as usize, parked, 0) {
            Ok(_) => Ok(region),
            Err(e) => {
                let _ = munmap(region as *mut u8, REGION);
                Err(Failure::Clone(e))
            }
        }
    }
}

/// Waits until the thread on `region` has exited, then unmaps its region.
fn join(region: usize) {
    // SAFETY: the block stays mapped until the munmap below.
    let tid = unsafe { &(*block_of(region)).tid };
    loop {
        let v = tid.load(Ordering::Acquire);
        if v == 0 {
            break;
        }
        // Shared wait: the kernel's exit-time CLONE_CHILD_CLEARTID wake is a shared wake.
        // SAFETY: FUTEX_WAIT only reads the word.
        let _ = unsafe { futex(tid.as_ptr(), FUTEX_WAIT, v, ptr::null()) };
    }
    // SAFETY: the thread has exited: nothing runs on the region any more.
    let _ = unsafe { munmap(region as *mut u8, REGION) };
}

/// Maps 1 MiB, writes every page, reads it back, unmaps.
fn memory_works() -> Result<(), &'static str> {
    let len = 1 << 20;
    let p = mmap_anon(len, PROT_READ | PROT_WRITE).map_err(|_| "mmap failed")? as usize;
    for page in (p..p + len).step_by(PAGE) {
        // SAFETY: our fresh read-write mapping.
        unsafe { ptr::write_volatile(page as *mut usize, page) };
    }
    // SAFETY: as above.
    let intact = (p..p + len).step_by(PAGE).all(|page| unsafe { ptr::read_volatile(page as *const usize) } == page);
    // SAFETY: unused from here on.
    unsafe { munmap(p as *mut u8, len) }.map_err(|_| "munmap failed")?;
    if intact {
        Ok(())
    } else {
        Err("data differs")
    }
}

fn main() -> i32 {
    println!("thread_limit: threads with 16 KiB stacks, each parked in FUTEX_WAIT, until the kernel refuses one");
    // The regions of the live threads, in an array of our own (no heap here).
    let slots = match mmap_anon(MAX_THREADS * size_of::<usize>(), PROT_READ | PROT_WRITE) {
        Ok(p) => p as *mut usize,
        Err(e) => {
            println!("FAIL: mmap of the bookkeeping array: {:?}", e);
            return 1;
        }
    };
    let mut n = 0;
    let mut failure = None;
    while n < MAX_THREADS {
        match start_thread() {
            // SAFETY: n < MAX_THREADS: inside the array.
            Ok(region) => unsafe { slots.add(n).write(region) },
            Err(f) => {
                failure = Some(f);
                break;
            }
        }
        n += 1;
    }
    println!("info: {} threads started ({} parked so far)", n, PARKED.load(Ordering::Relaxed));
    let mut status = 0;
    match failure {
        Some(Failure::Mmap(e)) => println!("the mmap of a thread stack failed first: {:?}", e),
        Some(Failure::Mprotect(e)) => println!("the mprotect of a stack guard page failed first: {:?}", e),
        Some(Failure::Clone(e)) => println!("clone failed first: {:?}", e),
        None => {
            println!("FAIL: the kernel accepted {} threads without refusing one", MAX_THREADS);
            status = 1;
        }
    }
    GO.store(1, Ordering::Release);
    let _ = futex_wake(&GO, i32::MAX as u32);
    for i in 0..n {
        // SAFETY: slots 0..n were written above.
        join(unsafe { slots.add(i).read() });
    }
    println!("joined all");
    match memory_works() {
        Ok(()) => println!("memory still works: mapped, wrote and read back 1 MiB, unmapped"),
        Err(e) => {
            println!("FAIL: memory after the threads: {}", e);
            status = 1;
        }
    }
    status
}
