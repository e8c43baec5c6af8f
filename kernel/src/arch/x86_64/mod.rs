//! x86_64 mechanisms: descriptor tables, traps, the legacy PIC, TLB control,
//! fault fix-ups and the QEMU exit device.

pub mod extable;
pub mod gdt;
pub mod pic;
pub mod qemu;
pub mod tlb;
pub mod traps;

use ::x86_64::instructions::interrupts;
use ::x86_64::registers::control::{Cr0, Cr0Flags};
use ::x86_64::registers::model_specific::{Efer, EferFlags};

pub use traps::TrapFrame;

/// Whether interrupts were enabled before `disable_interrupts`.
#[derive(Clone, Copy, Debug)]
#[must_use = "pass it to restore_interrupts"]
pub struct InterruptState(bool);

/// Turns interrupts off on this CPU and says whether they were on.
pub fn disable_interrupts() -> InterruptState {
    let enabled = interrupts::are_enabled();
    if enabled {
        interrupts::disable();
    }
    InterruptState(enabled)
}

/// Puts the interrupt flag back the way `disable_interrupts` found it.
pub fn restore_interrupts(state: InterruptState) {
    if state.0 {
        interrupts::enable();
    }
}

pub fn enable_interrupts() {
    interrupts::enable();
}

pub fn interrupts_enabled() -> bool {
    interrupts::are_enabled()
}

/// Index of the CPU we are running on. Only the boot CPU runs until SMP bring-up.
pub fn cpu_id() -> usize {
    0
}

/// Sets up the boot CPU: descriptor tables, traps, no legacy PIC interrupts,
/// no-execute pages and write protection in ring 0.
pub fn init_boot_cpu() {
    gdt::init_boot_cpu();
    traps::load_idt();
    pic::disable();
    enable_paging_features();
}

/// NX must be on before any page table entry carries the NX bit; WP makes the
/// kernel honour read-only pages too, so copy-on-write and our tests see faults.
fn enable_paging_features() {
    // SAFETY: setting EFER.NXE only makes bit 63 of page table entries meaningful
    // (no-execute); the bootloader's entries are valid with it on. The x86_64 crate
    // does the read-modify-write of the MSR.
    unsafe { Efer::update(|flags| flags.insert(EferFlags::NO_EXECUTE_ENABLE)) };
    // SAFETY: CR0.WP makes ring 0 respect read-only mappings; the kernel never
    // relies on writing through a read-only mapping.
    unsafe { Cr0::update(|flags| flags.insert(Cr0Flags::WRITE_PROTECT)) };
}

/// Halts this CPU for good, waking only to halt again.
pub fn halt_forever() -> ! {
    loop {
        interrupts::disable();
        ::x86_64::instructions::hlt();
    }
}

/// Reads the time-stamp counter.
pub fn read_tsc() -> u64 {
    // SAFETY: RDTSC has no side effects and is available on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}
