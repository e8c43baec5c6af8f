//! Trap entry: the interrupt descriptor table, one assembly stub per vector,
//! and the Rust dispatcher they all call.
//!
//! Every stub pushes a uniform frame (`TrapFrame`: all general registers, the
//! vector and an error code, then what the CPU pushed) so that handlers can
//! read and change any register, e.g. resume at a fix-up address after a
//! fault in `extable`, or (later) switch to user mode.

use core::fmt;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use ::x86_64::instructions::tables::lidt;
use ::x86_64::registers::control::Cr2;
use ::x86_64::structures::DescriptorTablePointer;
use ::x86_64::VirtAddr;
use spin::Once;

use super::gdt::{self, IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI};
use super::pic::PIC_VECTOR_BASE;

pub const VECTOR_BREAKPOINT: u8 = 3;
pub const VECTOR_NMI: u8 = 2;
pub const VECTOR_DOUBLE_FAULT: u8 = 8;
pub const VECTOR_PAGE_FAULT: u8 = 14;
pub const VECTOR_MACHINE_CHECK: u8 = 18;
/// First vector that is not a CPU exception.
pub const FIRST_IRQ_VECTOR: u8 = 32;

/// Registers saved on every trap, lowest address first.
#[repr(C)]
#[derive(Clone, Debug, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors that have none.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

// The entry paths: 256 interrupt stubs, 16 bytes apart from `trap_stubs`
// (so the IDT can compute each address), the common trap path, and the
// `syscall` entry (see `syscall.rs`). One block, so they share the register
// save/restore macros. Vectors where the CPU pushes an error code skip the
// dummy push. AT&T syntax because `push $vec` must be an immediate.
core::arch::global_asm!(
    r#"
    .macro push_gprs
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
    .endm

    .macro pop_gprs
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
    .endm

    .text
    .balign 16
    .global trap_stubs
trap_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp trap_common
    .set vec, vec + 1
    .endr

trap_common:
    // From user mode (CS RPL 3) the GS base is the user's: swap in the kernel's.
    testb $3, 24(%rsp)
    jz 1f
    swapgs
1:
    push_gprs
    mov %rsp, %rdi
    cld
    // Close the SMAP window: the CPU does not clear RFLAGS.AC on an
    // interrupt or exception, so one arriving during a user copy would run
    // (and maybe switch threads) with user memory open. iretq restores the
    // interrupted code's AC. (stac/clac are #UD without SMAP: test first.)
    testb $1, {smap}(%rip)
    jz 3f
    clac
3:
    call kernel_trap_dispatch
    .global trap_return
trap_return:
    pop_gprs
    testb $3, 24(%rsp)
    jz 2f
    swapgs
2:
    add $16, %rsp
    iretq

    // syscall: RCX = user RIP, R11 = user RFLAGS, interrupts off (SFMASK).
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
    pushq ${syscall_vector}
    push_gprs
    movq %rsp, %rdi
    cld
    call kernel_syscall_dispatch
    cli
    testb %al, %al
    jz trap_return
    pop_gprs
    movq 16(%rsp), %rcx
    movq 32(%rsp), %r11
    movq 40(%rsp), %rsp
    swapgs
    sysretq
"#,
    user_rsp = const super::percpu::USER_STACK_SCRATCH_OFFSET,
    kernel_rsp = const super::percpu::KERNEL_STACK_OFFSET,
    user_ss = const super::syscall::USER_SS,
    user_cs = const super::syscall::USER_CS,
    syscall_vector = const super::syscall::SYSCALL_VECTOR,
    smap = sym super::extable::KERNEL_SMAP_ENABLED,
    options(att_syntax)
);

unsafe extern "C" {
    fn trap_stubs();
}

const STUB_SIZE: u64 = 16;

/// One 16-byte IDT gate.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

/// Present, 64-bit interrupt gate (interrupts off on entry).
const INTERRUPT_GATE: u8 = 0x8e;
/// The same, reachable from ring 3 with `int` (breakpoint).
const USER_INTERRUPT_GATE: u8 = 0xee;

impl Gate {
    fn new(handler: u64, selector: u16, type_attr: u8, ist_slot: Option<u16>) -> Self {
        Gate {
            offset_low: handler as u16,
            selector,
            ist: ist_slot.map_or(0, |slot| slot as u8 + 1),
            type_attr,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: Once<Idt> = Once::new();

fn build_idt() -> Idt {
    let code = gdt::selectors().kernel_code.0;
    let base = trap_stubs as *const () as u64;
    let mut idt = Idt([Gate::default(); 256]);
    for (vector, gate) in idt.0.iter_mut().enumerate() {
        let vector = vector as u8;
        let ist = match vector {
            VECTOR_DOUBLE_FAULT => Some(IST_DOUBLE_FAULT),
            VECTOR_NMI => Some(IST_NMI),
            VECTOR_MACHINE_CHECK => Some(IST_MACHINE_CHECK),
            _ => None,
        };
        let kind = if vector == VECTOR_BREAKPOINT { USER_INTERRUPT_GATE } else { INTERRUPT_GATE };
        *gate = Gate::new(base + vector as u64 * STUB_SIZE, code, kind, ist);
    }
    idt
}

/// Loads the (shared) IDT on this CPU.
pub fn load_idt() {
    let idt = IDT.call_once(build_idt);
    let pointer =
        DescriptorTablePointer { limit: (core::mem::size_of::<Idt>() - 1) as u16, base: VirtAddr::from_ptr(idt) };
    // SAFETY: the IDT is 'static and every gate points at a stub in
    // `trap_stubs` with the kernel code selector; IST slots exist in every TSS.
    unsafe { lidt(&pointer) };
}

/// How often each kind of event arrived, for tests and statistics.
pub static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);
pub static SPURIOUS_INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// A handler for an interrupt vector (>= 32). It must acknowledge the interrupt.
pub type IrqHandler = fn(&mut TrapFrame);

static IRQ_HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];

/// Routes `vector` to `handler` from now on.
pub fn set_irq_handler(vector: u8, handler: IrqHandler) {
    assert!(vector >= FIRST_IRQ_VECTOR, "vector {vector} is a CPU exception");
    IRQ_HANDLERS[vector as usize].store(handler as usize, Ordering::Release);
}

/// Called for a double fault instead of the panic report (the stack-overflow test).
static DOUBLE_FAULT_HOOK: AtomicUsize = AtomicUsize::new(0);

pub fn set_double_fault_hook(hook: fn(&TrapFrame) -> !) {
    DOUBLE_FAULT_HOOK.store(hook as usize, Ordering::Release);
}

/// What the kernel's page-fault policy decided (`mm::fault`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOutcome {
    /// The page is there now; retry the instruction.
    Resolved,
    /// Not ours to resolve: try a fix-up, else report.
    Unhandled,
    /// The faulting user process was killed; the thread leaves on its way out.
    Killed,
    /// The kernel touched a user address outside the user-copy routines
    /// (SMAP/SMEP, or a stray pointer): a kernel bug, reported, no fix-up.
    StrayUserAccess,
}

/// The access that faulted, decoded from the page-fault error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFaultInfo {
    pub addr: VirtAddr,
    /// The page was present: a protection violation, not a missing page.
    pub present: bool,
    pub write: bool,
    pub user: bool,
    pub instruction_fetch: bool,
}

impl PageFaultInfo {
    fn decode(addr: u64, error_code: u64) -> Self {
        PageFaultInfo {
            addr: VirtAddr::new_truncate(addr),
            present: error_code & 1 != 0,
            write: error_code & 2 != 0,
            user: error_code & 4 != 0,
            instruction_fetch: error_code & 16 != 0,
        }
    }

    pub fn access(&self) -> &'static str {
        match (self.instruction_fetch, self.write) {
            (true, _) => "execute",
            (false, true) => "write",
            (false, false) => "read",
        }
    }
}

impl fmt::Display for PageFaultInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {:#x} ({}, {} mode)",
            self.access(),
            self.addr.as_u64(),
            if self.present { "protection violation" } else { "page not present" },
            if self.user { "user" } else { "kernel" }
        )
    }
}

#[unsafe(no_mangle)]
extern "C" fn kernel_trap_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector as u8;
    match vector {
        VECTOR_BREAKPOINT if !frame.from_user() => {
            BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
        }
        VECTOR_PAGE_FAULT => page_fault(frame),
        VECTOR_NMI => {
            // GS is not trusted here: an NMI can arrive in the middle of an
            // entry path, before swapgs. A lockup report asks every CPU for
            // its state (and stops it); a panic on another CPU stops us.
            super::watchdog::handle_nmi(frame);
            if crate::panic::is_panicking() {
                super::halt_forever();
            }
            // Otherwise someone asked for a look inside (QEMU monitor `nmi`).
            crate::task::sched::debug_dump();
            // Straight back: never switch threads (or check signals) on the
            // NMI's own stack, which the next NMI would reuse.
            return;
        }
        VECTOR_DOUBLE_FAULT => {
            let hook = DOUBLE_FAULT_HOOK.load(Ordering::Acquire);
            if hook != 0 {
                // SAFETY: only `set_double_fault_hook` stores here, always a
                // `fn(&TrapFrame) -> !` converted to usize.
                let hook: fn(&TrapFrame) -> ! = unsafe { core::mem::transmute(hook) };
                hook(frame);
            }
            exception_report(frame)
        }
        0..FIRST_IRQ_VECTOR if frame.from_user() => crate::task::user_exception(vector, frame),
        0..FIRST_IRQ_VECTOR => exception_report(frame),
        _ => {
            let handler = IRQ_HANDLERS[vector as usize].load(Ordering::Acquire);
            if handler != 0 {
                // SAFETY: only `set_irq_handler` stores here, always an `IrqHandler`.
                let handler: IrqHandler = unsafe { core::mem::transmute(handler) };
                handler(frame);
            } else if (PIC_VECTOR_BASE..PIC_VECTOR_BASE + 16).contains(&vector) {
                // A spurious IRQ 7/15 from the masked legacy PICs.
                SPURIOUS_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
            } else {
                log::warn!("interrupt on vector {vector} with no handler");
            }
            // The tick or a wake-up may ask for a switch.
            crate::task::sched::preempt_point();
        }
    }
    if frame.from_user() {
        crate::task::return_to_user(frame);
        if vector == VECTOR_PAGE_FAULT {
            crate::mm::fault_probe::mark(crate::mm::fault_probe::Phase::ReturnToUser);
        }
    }
}

fn page_fault(frame: &mut TrapFrame) {
    crate::mm::fault_probe::start();
    let info = PageFaultInfo::decode(Cr2::read_raw(), frame.error_code);
    match crate::mm::fault::handle_page_fault(&info, frame) {
        FaultOutcome::Resolved | FaultOutcome::Killed => return,
        FaultOutcome::StrayUserAccess => exception_report(frame),
        FaultOutcome::Unhandled => {}
    }
    if !frame.from_user() {
        if let Some(fixup) = super::extable::fixup_for(frame.rip) {
            frame.rip = fixup;
            return;
        }
    }
    exception_report(frame)
}

fn exception_name(vector: u8) -> &'static str {
    const NAMES: [&str; 32] = [
        "divide error (#DE)",
        "debug (#DB)",
        "non-maskable interrupt (NMI)",
        "breakpoint (#BP)",
        "overflow (#OF)",
        "bound range exceeded (#BR)",
        "invalid opcode (#UD)",
        "device not available (#NM)",
        "double fault (#DF)",
        "coprocessor segment overrun",
        "invalid TSS (#TS)",
        "segment not present (#NP)",
        "stack-segment fault (#SS)",
        "general protection fault (#GP)",
        "page fault (#PF)",
        "reserved",
        "x87 floating-point error (#MF)",
        "alignment check (#AC)",
        "machine check (#MC)",
        "SIMD floating-point error (#XM)",
        "virtualization exception (#VE)",
        "control protection exception (#CP)",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "hypervisor injection exception (#HV)",
        "VMM communication exception (#VC)",
        "security exception (#SX)",
        "reserved",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("interrupt")
}

/// An exception the kernel cannot handle: panic with everything we know.
/// Formats without allocating: the fault may have hit inside the heap.
fn exception_report(frame: &TrapFrame) -> ! {
    panic!("{}", ExceptionReport(frame))
}

struct ExceptionReport<'a>(&'a TrapFrame);

impl fmt::Display for ExceptionReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frame = self.0;
        let vector = frame.vector as u8;
        write!(f, "unhandled {} (vector {vector}) on cpu {}", exception_name(vector), super::cpu_id())?;
        let info = PageFaultInfo::decode(Cr2::read_raw(), frame.error_code);
        if vector == VECTOR_PAGE_FAULT {
            write!(f, ": {info}, cr2 {:#x}", info.addr.as_u64())?;
        }
        write!(
            f,
            "\n  error code {:#x}, rip {:#x}, cs {:#x}, rflags {:#x}, rsp {:#x}",
            frame.error_code, frame.rip, frame.cs, frame.rflags, frame.rsp
        )?;
        if vector == VECTOR_PAGE_FAULT && !info.user && info.addr.as_u64() < crate::mm::layout::USER_END {
            write!(f, "\n  {}", StrayUserAccess(&info))?;
        }
        Ok(())
    }
}

/// Why a kernel-mode fault on a user address is a kernel bug, naming the
/// protection that caught it.
struct StrayUserAccess<'a>(&'a PageFaultInfo);

impl fmt::Display for StrayUserAccess<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = self.0;
        let (smep, smap) = super::smep_smap_enabled();
        if info.instruction_fetch {
            write!(f, "the kernel executed user memory")?;
            if info.present && smep {
                write!(f, ": SMEP violation")?;
            }
        } else {
            write!(f, "a kernel {} of user memory outside the user-copy routines (mm::uaccess)", info.access())?;
            if info.present && smap {
                write!(f, ": SMAP violation")?;
            }
        }
        Ok(())
    }
}
