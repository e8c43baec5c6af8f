//! The `syscall` instruction's entry and exit.
//!
//! Entry switches to the thread's kernel stack (from `PerCpu`) and builds a
//! `TrapFrame` like an interrupt would, so system calls, faults and
//! interrupts share one frame format and one slow exit (`trap_return`).
//! The fast exit is `sysretq`, used only when it is safe: a canonical user
//! return address (sysret with a non-canonical RCX faults in ring 0 on
//! Intel CPUs, with the user's stack pointer) and unmodified selectors.

use ::x86_64::registers::model_specific::{Efer, EferFlags, LStar, SFMask, Star};
use ::x86_64::registers::rflags::RFlags;
use ::x86_64::VirtAddr;

use super::traps::TrapFrame;
use crate::mm::layout::USER_END;

/// The `vector` of a trap frame built by a system call (the entry code is
/// in `traps.rs`, next to the interrupt entry it shares macros with).
pub const SYSCALL_VECTOR: u64 = 0x100;
/// User selectors the entry code pushes (checked against the GDT in `init_this_cpu`).
pub const USER_SS: u64 = 0x1b;
pub const USER_CS: u64 = 0x23;

unsafe extern "C" {
    fn kernel_syscall_entry();
}

/// Enables `syscall` on this CPU.
pub fn init_this_cpu() {
    let s = super::gdt::selectors();
    assert_eq!(
        (s.user_data.0 as u64, s.user_code.0 as u64),
        (USER_SS, USER_CS),
        "entry code hard-codes the user selectors"
    );
    Star::write(s.user_code, s.user_data, s.kernel_code, s.kernel_data).expect("GDT layout fits sysret");
    LStar::write(VirtAddr::new(kernel_syscall_entry as *const () as u64));
    // Entry runs with interrupts off (until the stack is switched), DF clear,
    // no single-stepping or alignment checks.
    SFMask::write(
        RFlags::INTERRUPT_FLAG
            | RFlags::TRAP_FLAG
            | RFlags::DIRECTION_FLAG
            | RFlags::ALIGNMENT_CHECK
            | RFlags::NESTED_TASK,
    );
    // SAFETY: enabling SCE only makes `syscall` usable; LSTAR/STAR are set above.
    unsafe { Efer::update(|f| f.insert(EferFlags::SYSTEM_CALL_EXTENSIONS)) };
}

/// Whether returning with `sysretq` is safe for this frame.
fn sysret_safe(frame: &TrapFrame) -> bool {
    frame.rip < USER_END
        && frame.cs == USER_CS
        && frame.ss == USER_SS
        && frame.rcx == frame.rip
        && frame.r11 == frame.rflags
}

#[unsafe(no_mangle)]
extern "C" fn kernel_syscall_dispatch(frame: &mut TrapFrame) -> bool {
    super::enable_interrupts();
    crate::syscall::dispatch(frame);
    crate::task::return_to_user(frame);
    let _ = super::disable_interrupts();
    // sysret takes RIP from RCX and RFLAGS from R11; if the kernel changed
    // the frame (a new thread, a restart) use iretq, which restores all of it.
    sysret_safe(frame)
}
