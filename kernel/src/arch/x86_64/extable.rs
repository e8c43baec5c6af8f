//! Exception fix-ups: memory accesses that are allowed to fault.
//!
//! A copy through `copy_fallible` may touch an unmapped or protected page (a
//! bad user pointer, a test probing an unmapped address). The page-fault
//! handler finds the faulting instruction in `FIXUPS` and resumes at its
//! fix-up label, which returns how many bytes were left instead of crashing.

use ::x86_64::VirtAddr;

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
"#
);

unsafe extern "C" {
    fn kernel_copy_fallible(dst: *mut u8, src: *const u8, len: usize) -> usize;
    fn kernel_copy_fallible_insn();
    fn kernel_copy_fallible_fixup();
}

/// The fix-up address for a fault at `rip`, if that instruction may fault.
pub fn fixup_for(rip: u64) -> Option<u64> {
    let fixups = [(kernel_copy_fallible_insn as *const () as usize, kernel_copy_fallible_fixup as *const () as usize)];
    fixups.iter().find(|(insn, _)| *insn as u64 == rip).map(|(_, fixup)| *fixup as u64)
}

/// A copy stopped by a fault; `remaining` bytes were not copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessFault {
    pub remaining: usize,
}

/// Copies `len` bytes, stopping at the first byte whose access faults.
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
