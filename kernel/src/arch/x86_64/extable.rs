//! Exception fix-ups: memory accesses that are allowed to fault.
//!
//! A copy through `copy_fallible` may touch an unmapped or protected kernel
//! page (a test probing an unmapped address, the lockup report reading a
//! stack). A copy through `copy_user` is the only way the kernel touches
//! user memory (`mm::uaccess` is built on it): it opens the SMAP window
//! (`stac`) around its one faulting instruction and closes it (`clac`) on
//! both ways out, the normal return and the fix-up. The page-fault handler
//! finds the faulting instruction here and resumes at its fix-up label,
//! which returns how many bytes were left instead of crashing. Any other
//! kernel access to a user address is a kernel bug (`mm::fault`).

use core::sync::atomic::{AtomicBool, Ordering};

use ::x86_64::VirtAddr;

use super::traps::TrapFrame;

/// SMAP is on (CR4.SMAP, `super::enable_paging_features`): the user-copy
/// routine and the trap entry (`traps.rs`) execute `stac`/`clac`, which
/// raise #UD on a CPU without SMAP. A byte the assembly tests.
#[unsafe(no_mangle)]
pub static KERNEL_SMAP_ENABLED: AtomicBool = AtomicBool::new(false);

pub fn smap_enabled() -> bool {
    KERNEL_SMAP_ENABLED.load(Ordering::Relaxed)
}

core::arch::global_asm!(
    r#"
    .text
    .global kernel_copy_fallible
    // rdi = destination, rsi = source, rdx = length.
    // Returns in rax the number of bytes NOT copied (0 on success).
kernel_copy_fallible:
    mov rcx, rdx
kernel_copy_fallible_insn:
    rep movsb
    xor eax, eax
    ret
kernel_copy_fallible_fixup:
    // rep movsb faults with rcx = bytes still to copy.
    mov rax, rcx
    ret
    .global kernel_copy_fallible_insn
    .global kernel_copy_fallible_fixup

    // The same for user memory, with the SMAP window open (RFLAGS.AC set)
    // for exactly the copy. An interrupt or fault inside the window runs
    // with AC clear (the trap entry clears it) and iretq restores it.
    .global kernel_copy_user
kernel_copy_user:
    mov rcx, rdx
    test byte ptr [rip + {smap}], 1
    jz 2f
    stac
2:
kernel_copy_user_insn:
    rep movsb
    xor eax, eax
    jmp 3f
kernel_copy_user_fixup:
    mov rax, rcx
3:
    test byte ptr [rip + {smap}], 1
    jz 4f
    clac
4:
    ret
    .global kernel_copy_user_insn
    .global kernel_copy_user_fixup

    // A locked compare-and-exchange of one user word (robust futexes), in
    // the same window. rdi = user address, esi = expected, edx = new.
    // Returns the old value in eax, or 1 << 32 if the access faulted.
    .global kernel_cmpxchg_user
kernel_cmpxchg_user:
    mov eax, esi
    test byte ptr [rip + {smap}], 1
    jz 2f
    stac
2:
kernel_cmpxchg_user_insn:
    lock cmpxchg dword ptr [rdi], edx
    jmp 3f
kernel_cmpxchg_user_fixup:
    movabs rax, 0x100000000
3:
    test byte ptr [rip + {smap}], 1
    jz 4f
    clac
4:
    ret
    .global kernel_cmpxchg_user_insn
    .global kernel_cmpxchg_user_fixup
"#,
    smap = sym KERNEL_SMAP_ENABLED,
);

unsafe extern "C" {
    fn kernel_copy_fallible(dst: *mut u8, src: *const u8, len: usize) -> usize;
    fn kernel_copy_fallible_insn();
    fn kernel_copy_fallible_fixup();
    fn kernel_copy_user(dst: *mut u8, src: *const u8, len: usize) -> usize;
    fn kernel_copy_user_insn();
    fn kernel_copy_user_fixup();
    fn kernel_cmpxchg_user(addr: *mut u32, expected: u32, new: u32) -> u64;
    fn kernel_cmpxchg_user_insn();
    fn kernel_cmpxchg_user_fixup();
}

/// The fix-up address for a fault at `rip`, if that instruction may fault.
pub fn fixup_for(rip: u64) -> Option<u64> {
    let fixups = [
        (kernel_copy_fallible_insn as *const () as usize, kernel_copy_fallible_fixup as *const () as usize),
        (kernel_copy_user_insn as *const () as usize, kernel_copy_user_fixup as *const () as usize),
        (kernel_cmpxchg_user_insn as *const () as usize, kernel_cmpxchg_user_fixup as *const () as usize),
    ];
    fixups.iter().find(|(insn, _)| *insn as u64 == rip).map(|(_, fixup)| *fixup as u64)
}

const RFLAGS_AC: u64 = 1 << 18;

/// Whether a kernel-mode fault at `frame` happened inside a user-copy
/// window: at the copy instruction of `copy_user`, with the SMAP window open
/// (AC set) when SMAP is on. Only such faults may touch user memory.
pub fn in_user_copy(frame: &TrapFrame) -> bool {
    let at_user_access = frame.rip == kernel_copy_user_insn as *const () as u64
        || frame.rip == kernel_cmpxchg_user_insn as *const () as u64;
    at_user_access && (!smap_enabled() || frame.rflags & RFLAGS_AC != 0)
}

/// A copy stopped by a fault; `remaining` bytes were not copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessFault {
    pub remaining: usize,
}

/// Copies `len` bytes of kernel memory, stopping at the first byte whose
/// access faults. Not for user memory: a fault on a user address here is a
/// kernel bug, reported as such (use `copy_user`, through `mm::uaccess`).
///
/// # Safety
/// 1. Every byte of `dst` that is mapped writable must be memory the caller
///    may overwrite (no live Rust reference to it, nor a kernel structure).
/// 2. Reads from `src` must have no side effects (no device memory).
pub unsafe fn copy_fallible(dst: *mut u8, src: *const u8, len: usize) -> Result<(), AccessFault> {
    // SAFETY: the caller guarantees (1) and (2); faults are turned into a
    // return value by the page-fault handler through `fixup_for`.
    let remaining = unsafe { kernel_copy_fallible(dst, src, len) };
    if remaining == 0 {
        Ok(())
    } else {
        Err(AccessFault { remaining })
    }
}

/// Copies `len` bytes to or from user memory, stopping at the first byte
/// whose access faults; the only kernel code that touches user addresses.
///
/// # Safety
/// As for `copy_fallible`; besides, the user range has been checked to lie
/// below `USER_END` (`mm::uaccess`), so the kernel side is the caller's buffer.
pub unsafe fn copy_user(dst: *mut u8, src: *const u8, len: usize) -> Result<(), AccessFault> {
    // SAFETY: the caller guarantees `copy_fallible`'s contract; faults at the copy instruction are
    // resolved or fixed up by the page-fault handler (`in_user_copy`, `fixup_for`), and the
    // routine closes the SMAP window on both ways out.
    let remaining = unsafe { kernel_copy_user(dst, src, len) };
    if remaining == 0 {
        Ok(())
    } else {
        Err(AccessFault { remaining })
    }
}

/// Atomically replaces the user word at `addr` with `new` if it holds
/// `expected`; returns the value it held (equal to `expected` if replaced).
///
/// # Safety
/// `addr` has been checked to lie below `USER_END` and be 4-byte aligned
/// (`mm::uaccess`), so it is user memory, never a kernel structure.
pub unsafe fn cmpxchg_user(addr: *mut u32, expected: u32, new: u32) -> Result<u32, AccessFault> {
    // SAFETY: the caller guarantees a user address; a fault at the exchange
    // is resolved or fixed up by the page-fault handler, and the routine
    // closes the SMAP window on both ways out.
    let result = unsafe { kernel_cmpxchg_user(addr, expected, new) };
    if result >> 32 != 0 {
        Err(AccessFault { remaining: 4 })
    } else {
        Ok(result as u32)
    }
}

/// Reads the byte at `addr`, or reports that reading it faults.
///
/// # Safety
/// `addr` must not be device memory (reads must have no side effects).
pub unsafe fn probe_read(addr: VirtAddr) -> Result<u8, AccessFault> {
    let mut byte = 0u8;
    // SAFETY: the destination is our local; the caller guarantees the source.
    unsafe { copy_fallible(&mut byte, addr.as_ptr(), 1) }.map(|()| byte)
}

/// Writes `value` at `addr`, or reports that writing it faults.
///
/// # Safety
/// If `addr` is mapped writable, the byte there must be the caller's to overwrite.
pub unsafe fn probe_write(addr: VirtAddr, value: u8) -> Result<(), AccessFault> {
    // SAFETY: the source is our local; the caller guarantees the destination.
    unsafe { copy_fallible(addr.as_mut_ptr(), &value, 1) }
}
