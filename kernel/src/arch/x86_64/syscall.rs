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

use super::percpu::{KERNEL_STACK_OFFSET, USER_STACK_SCRATCH_OFFSET};
use super::traps::TrapFrame;
use crate::mm::layout::USER_END;

/// The `vector` of a trap frame built by a system call.
pub const SYSCALL_VECTOR: u64 = 0x100;

core::arch::global_asm!(
    r#"
    .text
    .global kernel_syscall_entry
kernel_syscall_entry:
    swapgs
    movq %rsp, %gs:{user_rsp}
    movq %gs:{kernel_rsp}, %rsp
    pushq ${user_ss}
    pushq %gs:{user_rsp}
    pushq %r11
    pushq ${user_cs}
    pushq %rcx
    pushq $0
    pushq ${vector}
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    call kernel_syscall_dispatch
    cli
    testb %al, %al
    jz 1f
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    movq 16(%rsp), %rcx
    movq 32(%rsp), %r11
    movq 40(%rsp), %rsp
    swapgs
    sysretq
1:
    jmp trap_return
"#,
    user_rsp = const USER_STACK_SCRATCH_OFFSET,
    kernel_rsp = const KERNEL_STACK_OFFSET,
    user_ss = const 0x1b,
    user_cs = const 0x23,
    vector = const SYSCALL_VECTOR,
    options(att_syntax)
);

unsafe extern "C" {
    fn kernel_syscall_entry();
}

/// Enables `syscall` on this CPU.
pub fn init_this_cpu() {
    let s = super::gdt::selectors();
    assert_eq!((s.user_data.0, s.user_code.0), (0x1b, 0x23), "entry code hard-codes the user selectors");
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
    frame.rip < USER_END && frame.cs == 0x23 && frame.ss == 0x1b && frame.rcx == frame.rip && frame.r11 == frame.rflags
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
