//! Threads made with clone(2) the way glibc makes them: a private mmap'd stack
//! below a guard page, a thread block at the stack top that FS points at
//! (CLONE_SETTLS), and the kernel writing the tid into the block at creation
//! (CLONE_PARENT_SETTID) and clearing it with a futex wake at exit
//! (CLONE_CHILD_CLEARTID), which is what `join` waits for.

use core::arch::asm;
use core::mem::{size_of, MaybeUninit};
use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::errno::Errno;
use crate::sys::{self, *};

/// Flags glibc uses for pthread_create.
pub const THREAD_FLAGS: usize = CLONE_VM
    | CLONE_FS
    | CLONE_FILES
    | CLONE_SIGHAND
    | CLONE_THREAD
    | CLONE_SYSVSEM
    | CLONE_SETTLS
    | CLONE_PARENT_SETTID
    | CLONE_CHILD_CLEARTID;

pub const DEFAULT_STACK: usize = 256 * 1024;

/// The start of every thread block; FS points here.
#[repr(C)]
pub struct Tcb {
    /// Points at this Tcb: the x86-64 TLS ABI requires %fs:0 to hold the thread pointer.
    self_ptr: *const Tcb,
    /// The tid while the thread lives, 0 once it has exited (written by the kernel).
    tid: AtomicU32,
    /// Thread-local words for the program's own use.
    pub slots: [AtomicUsize; 4],
}

impl Tcb {
    pub fn tid_word(&self) -> &AtomicU32 {
        &self.tid
    }
}

#[repr(C)]
struct Block<F, T> {
    tcb: Tcb,
    f: MaybeUninit<F>,
    result: MaybeUninit<T>,
}

/// The calling thread's block, found through %fs:0.
///
/// # Safety
/// The FS base must point at a live [`Tcb`]: true in threads made by [`spawn`],
/// not in the main thread (whose FS base is 0).
pub unsafe fn tcb_via_fs() -> *const Tcb {
    let p: *const Tcb;
    // SAFETY: by the contract, %fs:0 is the self pointer of a live Tcb.
    unsafe { asm!("mov {}, qword ptr fs:[0]", out(reg) p, options(nostack, readonly, preserves_flags)) };
    p
}

/// clone(2): starts a thread running `entry(arg)` on the stack that ends at
/// `stack_top`. Returns the child's tid.
///
/// # Safety
/// `stack_top` must be the 16-byte-aligned top of writable memory used by
/// nothing else and big enough for `entry`, mapped until the child has exited;
/// `ptid`, `ctid` and `tls` must be what `flags` asks the kernel to use; without
/// CLONE_VM-style flags the result is not a thread and this is not the right call.
pub unsafe fn clone_raw(
    flags: usize,
    stack_top: usize,
    ptid: *mut u32,
    ctid: *mut u32,
    tls: usize,
    entry: unsafe extern "C" fn(usize) -> !,
    arg: usize,
) -> Result<u32, Errno> {
    // The child starts with nothing but its stack pointer, so it finds what to
    // run there: pop arg, pop entry.
    let sp = (stack_top & !15) - 16;
    // SAFETY: the caller gave us the top of a writable stack we may use.
    unsafe {
        (sp as *mut usize).write(arg);
        ((sp + 8) as *mut usize).write(entry as usize);
    }
    let ret: isize;
    // The child path never leaves the asm: it runs on its own stack and `entry`
    // never returns; with the stack 16-aligned after the pops, `call` gives
    // entry the ABI's alignment.
    // SAFETY: the parent path is an ordinary syscall (rcx, r11 clobbered).
    unsafe {
        asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "pop rdi",
            "pop rax",
            "call rax",
            "ud2",
            "2:",
            inlateout("rax") nr::CLONE as isize => ret,
            in("rdi") flags, in("rsi") sp, in("rdx") ptid, in("r10") ctid, in("r8") tls,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    sys::check(ret).map(|t| t as u32)
}

/// What a spawned thread runs first.
///
/// # Safety
/// `arg` must be the address of a `Block<F, T>` that `spawn` initialised, used
/// by no one else until the thread has exited.
unsafe extern "C" fn thread_start<F: FnOnce() -> T, T>(arg: usize) -> ! {
    let block = arg as *mut Block<F, T>;
    // SAFETY: spawn wrote the closure into the block and never touches it
    // again; the result slot is ours until we exit, and join reads it only
    // after the kernel has cleared the tid, i.e. after we are gone.
    unsafe {
        let f = ptr::read((*block).f.as_ptr());
        let r = f();
        (*block).result.write(r);
    }
    sys::exit(0)
}

/// A running thread. Dropping it without `join` leaks its stack.
pub struct JoinHandle<T> {
    region: *mut u8,
    region_len: usize,
    tcb: *const Tcb,
    result: *mut MaybeUninit<T>,
    tid: u32,
}

// SAFETY: the handle only owns the thread's memory and its T result; moving it
// to another thread is fine when T may move between threads.
unsafe impl<T: Send> Send for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    /// The tid clone returned.
    pub fn tid(&self) -> u32 {
        self.tid
    }

    /// The address the thread's FS base was set to.
    pub fn tcb_addr(&self) -> usize {
        self.tcb as usize
    }

    /// The kernel-maintained tid word (the thread's tid, 0 after it exited).
    pub fn tid_word(&self) -> &AtomicU32 {
        // SAFETY: the block stays mapped until join consumes the handle.
        unsafe { (*self.tcb).tid_word() }
    }

    /// Waits until the kernel has cleared the tid word, then returns the result
    /// and unmaps the thread's stack.
    pub fn join(self) -> T {
        let word = self.tid_word();
        loop {
            let v = word.load(Ordering::Acquire);
            if v == 0 {
                break;
            }
            // Not FUTEX_PRIVATE_FLAG: Linux's exit-time wake of the
            // CLONE_CHILD_CLEARTID word is a shared futex wake (glibc waits the same way).
            // SAFETY: the kernel only reads the word.
            let _ = unsafe { futex(word.as_ptr(), FUTEX_WAIT, v, ptr::null()) };
        }
        // SAFETY: the thread wrote the result before exiting, and has exited:
        // nothing runs on the region any more.
        unsafe {
            let r = (*self.result).assume_init_read();
            let _ = munmap(self.region, self.region_len);
            r
        }
    }
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

pub fn spawn<F, T>(f: F) -> Result<JoinHandle<T>, Errno>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    spawn_with_stack(DEFAULT_STACK, f)
}

/// Starts a thread with a stack of `stack_size` bytes (rounded up to pages).
pub fn spawn_with_stack<F, T>(stack_size: usize, f: F) -> Result<JoinHandle<T>, Errno>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let stack = round_up(stack_size.max(PAGE_SIZE), PAGE_SIZE);
    let block_len = round_up(size_of::<Block<F, T>>(), PAGE_SIZE);
    let len = PAGE_SIZE + stack + block_len;
    let region = mmap_anon(len, PROT_READ | PROT_WRITE)?;
    // SAFETY: the lowest page of our fresh mapping holds nothing; making it
    // inaccessible turns a stack overflow into a fault instead of silent corruption.
    if let Err(e) = unsafe { mprotect(region, PAGE_SIZE, PROT_NONE) } {
        // SAFETY: nothing uses the fresh region yet.
        let _ = unsafe { munmap(region, len) };
        return Err(e);
    }
    // SAFETY: page-aligned, inside the fresh mapping, big enough for a Block.
    let block = unsafe { region.add(PAGE_SIZE + stack) } as *mut Block<F, T>;
    // SAFETY: the block memory is ours, writable and suitably aligned.
    unsafe {
        block.write(Block {
            tcb: Tcb {
                self_ptr: block as *const Tcb,
                // Non-zero before the kernel stores the tid, so that join can never
                // see 0 before the thread has run.
                tid: AtomicU32::new(u32::MAX),
                slots: Default::default(),
            },
            f: MaybeUninit::new(f),
            result: MaybeUninit::uninit(),
        });
    }
    // SAFETY: the block was initialised just above.
    let tid_ptr = unsafe { (*block).tcb.tid.as_ptr() };
    // SAFETY: the stack (ending at the block), the block and the tid word in it
    // stay mapped until join unmaps them, which is after the thread has exited;
    // thread_start gets the Block<F, T> it expects.
    let res = unsafe {
        clone_raw(THREAD_FLAGS, block as usize, tid_ptr, tid_ptr, block as usize, thread_start::<F, T>, block as usize)
    };
    match res {
        Ok(tid) => Ok(JoinHandle {
            region,
            region_len: len,
            tcb: block as *const Tcb,
            // SAFETY: points into the block we own.
            result: unsafe { ptr::addr_of_mut!((*block).result) },
            tid,
        }),
        Err(e) => {
            // SAFETY: no thread was created; drop the closure we moved in and unmap.
            unsafe {
                drop(ptr::read((*block).f.as_ptr()));
                let _ = munmap(region, len);
            }
            Err(e)
        }
    }
}
