//! Switching between threads' kernel stacks, and the user-visible CPU state
//! that goes with a thread (FPU/SSE registers, FS and GS bases).
//!
//! A thread that is not running is a saved stack pointer: its kernel stack
//! holds the callee-saved registers and a return address, pushed by
//! `context_switch`. A new thread's stack is built to look the same, with
//! the return address of a start routine.

use ::x86_64::registers::model_specific::{FsBase, KernelGsBase};
use ::x86_64::VirtAddr;

use super::traps::TrapFrame;

core::arch::global_asm!(
    r#"
    .text
    .global kernel_context_switch
    // rdi = where to save this thread's stack pointer, rsi = the next thread's.
kernel_context_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret

    // First run of a user thread: finish the switch, then leave for user
    // mode through the trap frame at the top of the stack.
    .global kernel_user_thread_start
kernel_user_thread_start:
    call kernel_finish_switch
    jmp trap_return

    // First run of a kernel thread: r12 = entry function, rbx = argument.
    // The switch ran with interrupts off; a kernel thread starts with them
    // on (like a user thread, whose frame says so), or the tick could never
    // preempt it.
    .global kernel_kernel_thread_start
kernel_kernel_thread_start:
    call kernel_finish_switch
    sti
    movq %rbx, %rdi
    callq *%r12
    ud2
"#,
    options(att_syntax)
);

unsafe extern "C" {
    fn kernel_context_switch(save_rsp: *mut u64, next_rsp: u64);
    fn kernel_user_thread_start();
    fn kernel_kernel_thread_start();
}

/// Saves the current stack pointer in `*save_rsp` and resumes the thread
/// whose saved stack pointer is `next_rsp`. Returns when someone switches back.
///
/// # Safety
/// 1. Interrupts are disabled.
/// 2. `next_rsp` was saved by `context_switch` or built by `prepare_*_stack`,
///    and the thread it belongs to is not running anywhere else.
/// 3. `save_rsp` stays valid until the current thread is resumed.
pub unsafe fn context_switch(save_rsp: *mut u64, next_rsp: u64) {
    // SAFETY: guaranteed by the caller (see above).
    unsafe { kernel_context_switch(save_rsp, next_rsp) }
}

/// Callee-saved registers and the return address, as `context_switch` pops them.
#[repr(C)]
struct SwitchFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    rbx: u64,
    rbp: u64,
    ret: u64,
}

/// Builds the first stack of a user thread below `stack_top`: `frame` (the
/// user state to enter) on top, a switch frame under it. Returns the saved
/// stack pointer to give `context_switch`.
///
/// # Safety
/// `stack_top` is the top of a mapped, writable, 16-byte-aligned kernel stack
/// with room for both frames, used by nothing else yet.
pub unsafe fn prepare_user_stack(stack_top: VirtAddr, frame: &TrapFrame) -> u64 {
    let trap = (stack_top.as_u64() - core::mem::size_of::<TrapFrame>() as u64) as *mut TrapFrame;
    let switch = (trap as u64 - core::mem::size_of::<SwitchFrame>() as u64) as *mut SwitchFrame;
    // SAFETY: both frames lie inside the caller's fresh stack.
    unsafe {
        trap.write(frame.clone());
        switch.write(SwitchFrame {
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            rbx: 0,
            rbp: 0,
            ret: kernel_user_thread_start as *const () as u64,
        });
    }
    switch as u64
}

/// Builds the first stack of a kernel thread that runs `entry(arg)`.
///
/// # Safety
/// As for `prepare_user_stack`.
pub unsafe fn prepare_kernel_stack(stack_top: VirtAddr, entry: extern "C" fn(usize) -> !, arg: usize) -> u64 {
    // Keep the start routine's `call` 16-byte aligned: the switch frame's
    // `ret` pops to an rsp that is a multiple of 16.
    let top = stack_top.as_u64() - 16;
    let switch = (top - core::mem::size_of::<SwitchFrame>() as u64) as *mut SwitchFrame;
    // SAFETY: the frame lies inside the caller's fresh stack.
    unsafe {
        switch.write(SwitchFrame {
            r15: 0,
            r14: 0,
            r13: 0,
            r12: entry as *const () as u64,
            rbx: arg as u64,
            rbp: 0,
            ret: kernel_kernel_thread_start as *const () as u64,
        })
    };
    switch as u64
}

/// The x87/SSE register file of a thread (FXSAVE format).
#[repr(C, align(16))]
#[derive(Clone)]
pub struct FpuState([u8; 512]);

impl FpuState {
    /// The state after `fninit` with SSE exceptions masked, as a new process gets it.
    pub fn new() -> Self {
        let mut area = [0u8; 512];
        area[0..2].copy_from_slice(&0x037fu16.to_le_bytes()); // FCW
        area[24..28].copy_from_slice(&0x1f80u32.to_le_bytes()); // MXCSR
        FpuState(area)
    }

    /// Stores this CPU's FPU registers here.
    pub fn save(&mut self) {
        // SAFETY: the area is 512 bytes, 16-byte aligned; FXSAVE only writes it.
        unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) self.0.as_mut_ptr(), options(nostack)) };
    }

    /// Loads this CPU's FPU registers from here.
    pub fn restore(&self) {
        // SAFETY: as above; the area holds a valid FXSAVE image (from `new` or
        // `save`; reserved MXCSR bits are never set), so FXRSTOR cannot fault.
        unsafe { core::arch::asm!("fxrstor64 [{}]", in(reg) self.0.as_ptr(), options(nostack, readonly)) };
    }
}

impl FpuState {
    /// The FXSAVE image, as a signal frame carries it.
    pub fn as_bytes(&self) -> &[u8; 512] {
        &self.0
    }

    /// An image from user memory (a signal frame's fpstate), if it is safe
    /// to load: None when MXCSR sets bits this CPU does not support (FXRSTOR
    /// would fault on them; Linux refuses such a frame too).
    pub fn from_user_bytes(bytes: &[u8; 512]) -> Option<FpuState> {
        let mxcsr = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
        (mxcsr & !mxcsr_mask() == 0).then_some(FpuState(*bytes))
    }
}

/// The MXCSR bits this CPU accepts (MXCSR_MASK from an FXSAVE image; 0 there means 0xffbf).
fn mxcsr_mask() -> u32 {
    static MASK: spin::Once<u32> = spin::Once::new();
    *MASK.call_once(|| {
        let saved = super::disable_interrupts();
        let mut probe = FpuState::new();
        // Our own registers are saved and put back untouched.
        probe.save();
        probe.restore();
        super::restore_interrupts(saved);
        match u32::from_le_bytes([probe.0[28], probe.0[29], probe.0[30], probe.0[31]]) {
            0 => 0xffbf,
            mask => mask,
        }
    })
}

impl Default for FpuState {
    fn default() -> Self {
        Self::new()
    }
}

/// The user's FS base (thread-local storage).
pub fn set_user_fs(base: u64) {
    FsBase::write(VirtAddr::new_truncate(base));
}

pub fn user_fs() -> u64 {
    FsBase::read().as_u64()
}

/// The user's GS base, parked in KERNEL_GS_BASE while the kernel runs.
pub fn set_user_gs(base: u64) {
    KernelGsBase::write(VirtAddr::new_truncate(base));
}

pub fn user_gs() -> u64 {
    KernelGsBase::read().as_u64()
}

/// Segment selectors of user mode, for building trap frames.
pub fn user_selectors() -> (u64, u64) {
    let s = super::gdt::selectors();
    (s.user_code.0 as u64, s.user_data.0 as u64)
}
