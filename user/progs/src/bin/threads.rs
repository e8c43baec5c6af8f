//! threads: N threads (argv[1], default 16) each add to a shared counter under
//! the futex mutex; the main thread joins them all through their
//! CLONE_CHILD_CLEARTID words and checks the exact sum, and that each thread
//! saw its own tid (gettid = clone's result) and its own TLS (ARCH_GET_FS and
//! %fs:0 = the block given to CLONE_SETTLS, a thread-local word surviving
//! context switches).
#![no_std]
#![no_main]

use core::sync::atomic::Ordering;

use ulib::sync::Mutex;
use ulib::sys::*;
use ulib::{env, println, thread};

ulib::entry!(main);

const MAX_THREADS: usize = 512;
const ITERATIONS: u64 = 5000;

static COUNTER: Mutex<u64> = Mutex::new(0);

#[derive(Clone, Copy, Default)]
struct Report {
    tid: u32,
    fs: usize,
    fs_self: usize,
    tls_kept: bool,
}

fn worker(index: usize) -> Report {
    // SAFETY: threads made by thread::spawn have FS pointing at their Tcb.
    let tcb = unsafe { &*thread::tcb_via_fs() };
    tcb.slots[0].store(index, Ordering::Relaxed);
    let mut tls_kept = true;
    for i in 0..ITERATIONS {
        {
            let mut c = COUNTER.lock();
            // A plain read-modify-write: only mutual exclusion keeps it exact.
            let v = *c;
            if i % 512 == 0 {
                let _ = sched_yield();
            }
            *c = v + 1;
        }
        if i % 1024 == 0 {
            let _ = sched_yield();
            tls_kept &= tcb.slots[0].load(Ordering::Relaxed) == index;
        }
    }
    Report { tid: gettid(), fs: arch_get_fs().unwrap_or(0), fs_self: tcb as *const _ as usize, tls_kept }
}

fn main() -> i32 {
    let n = match env::arg(1) {
        None => 16,
        Some(a) => match env::parse_u64(a) {
            Some(v) if (1..=MAX_THREADS as u64).contains(&v) => v as usize,
            _ => {
                println!("threads: usage: threads [N], 1 <= N <= {}", MAX_THREADS);
                return 2;
            }
        },
    };
    println!("threads: {} threads each add 1 to a shared counter {} times under a futex mutex", n, ITERATIONS);
    let start = monotonic_ns();
    let mut handles: [Option<thread::JoinHandle<Report>>; MAX_THREADS] = [const { None }; MAX_THREADS];
    for (i, h) in handles.iter_mut().enumerate().take(n) {
        match thread::spawn(move || worker(i)) {
            Ok(j) => *h = Some(j),
            Err(e) => {
                println!("FAIL: threads: spawning thread {} failed: {:?}", i, e);
                return 1;
            }
        }
    }
    let mut bad_identity = 0;
    for (i, h) in handles.iter_mut().enumerate().take(n) {
        let h = h.take().expect("spawned");
        let (tid, tcb) = (h.tid(), h.tcb_addr());
        let r = h.join();
        if r.tid != tid || r.fs != tcb || r.fs_self != tcb || !r.tls_kept {
            bad_identity += 1;
            println!("FAIL: thread {}: tid {} (clone said {}), FS {:#x} and %fs:0 {:#x} (TLS block {:#x}), TLS word kept: {}",
                i, r.tid, tid, r.fs, r.fs_self, tcb, r.tls_kept);
        }
    }
    let total = *COUNTER.lock();
    let want = n as u64 * ITERATIONS;
    println!("info: threads: took {} ms", (monotonic_ns() - start) / 1_000_000);
    println!("threads: joined all {} threads; counter = {} (expected {})", n, total, want);
    if bad_identity == 0 {
        println!("threads: every thread saw its own tid and its own TLS");
    }
    if total == want && bad_identity == 0 {
        println!("threads: ok");
        0
    } else {
        println!("threads: FAIL");
        1
    }
}
