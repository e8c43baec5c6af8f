//! Reading and writing user memory from the kernel.
//!
//! Every user pointer is range-checked (it must lie below `USER_END`, without
//! wrapping) and then copied with `copy_user`, so a pointer into an
//! unmapped or protected page becomes `Efault` instead of a kernel crash. A
//! copy may fault pages in (through the usual fault path), so callers must
//! not hold `mmap_lock` or any spinlock while copying.
//!
//! These functions are the only way the kernel touches user memory: with
//! SMAP on, `copy_user` alone opens the window (RFLAGS.AC) that lets ring 0
//! reach user pages, and the fault handler resolves kernel faults on user
//! addresses only at its copy instruction. Anything else is a kernel bug
//! and panics (`mm::fault`). The loader and the initial stack write new
//! processes' memory through the physical map, not through user addresses.

use super::layout::USER_END;
use crate::arch::extable::{cmpxchg_user, copy_user};

/// A bad user pointer: the system call returns EFAULT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Efault;

fn check_range(addr: u64, len: usize) -> Result<(), Efault> {
    match addr.checked_add(len as u64) {
        Some(end) if end <= USER_END => Ok(()),
        _ => Err(Efault),
    }
}

/// Copies `dst.len()` bytes from user address `src`.
pub fn copy_from_user(dst: &mut [u8], src: u64) -> Result<(), Efault> {
    check_range(src, dst.len())?;
    // SAFETY: the destination is our own buffer; the source is user memory
    // (never device memory: user mappings are anonymous RAM), and a fault is
    // fixed up into an error.
    unsafe { copy_user(dst.as_mut_ptr(), src as *const u8, dst.len()) }.map_err(|_| Efault)
}

/// Copies `src` to user address `dst`.
pub fn copy_to_user(dst: u64, src: &[u8]) -> Result<(), Efault> {
    check_range(dst, src.len())?;
    // SAFETY: the destination is below USER_END, so it is user memory, never
    // a kernel structure; writes that fault are fixed up into an error.
    unsafe { copy_user(dst as *mut u8, src.as_ptr(), src.len()) }.map_err(|_| Efault)
}

/// Plain data that may be copied to and from user memory byte for byte.
///
/// # Safety
/// Every bit pattern is a valid value, and the type has no padding bytes
/// (so copying it out leaks no kernel memory).
pub unsafe trait UserData: Copy + Default {}

// SAFETY: integers accept every bit pattern and have no padding.
unsafe impl UserData for u32 {}
// SAFETY: as above.
unsafe impl UserData for i32 {}
// SAFETY: as above.
unsafe impl UserData for u64 {}
// SAFETY: as above.
unsafe impl UserData for i64 {}

pub fn read_user<T: UserData>(addr: u64) -> Result<T, Efault> {
    let mut value = T::default();
    // SAFETY: `T: UserData` is plain data, so its bytes may be overwritten with any pattern.
    let bytes = unsafe { core::slice::from_raw_parts_mut(&mut value as *mut T as *mut u8, core::mem::size_of::<T>()) };
    copy_from_user(bytes, addr)?;
    Ok(value)
}

pub fn write_user<T: UserData>(addr: u64, value: &T) -> Result<(), Efault> {
    // SAFETY: `T: UserData` has no padding, so all its bytes are initialised.
    let bytes = unsafe { core::slice::from_raw_parts(value as *const T as *const u8, core::mem::size_of::<T>()) };
    copy_to_user(addr, bytes)
}

/// Atomically sets the user word at `addr` (4-byte aligned) to `new` if it
/// holds `expected`; returns what it held (robust futexes, whose owner
/// changes the word concurrently).
pub fn cmpxchg_user_u32(addr: u64, expected: u32, new: u32) -> Result<u32, Efault> {
    check_range(addr, 4)?;
    if !addr.is_multiple_of(4) {
        return Err(Efault);
    }
    // SAFETY: the range check puts the word below USER_END and it is aligned;
    // a fault is fixed up into an error.
    unsafe { cmpxchg_user(addr as *mut u32, expected, new) }.map_err(|_| Efault)
}
