//! x86_64 mechanisms: descriptor tables, traps, the legacy PIC, TLB control,
//! fault fix-ups and the QEMU exit device.

pub mod acpi;
pub mod apic;
pub mod context;
pub mod extable;
pub mod gdt;
pub mod ipi;
pub mod percpu;
pub mod pic;
pub mod qemu;
pub mod smp;
pub mod syscall;
pub mod time;
pub mod tlb;
pub mod traps;
pub mod watchdog;

use ::x86_64::instructions::interrupts;
use ::x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
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

pub use percpu::cpu_id;

/// Sets up the boot CPU: descriptor tables, traps, no legacy PIC interrupts,
/// no-execute pages and write protection in ring 0.
pub fn init_boot_cpu() {
    gdt::init_boot_cpu();
    traps::load_idt();
    pic::disable();
    enable_paging_features();
}

/// After memory management is up: per-CPU data, the local APIC, clocks and
/// the tick, then every other CPU. Logs `smp: N CPUs online`.
pub fn init_smp(rsdp: Option<u64>) {
    let topology = acpi::discover(rsdp).unwrap_or_else(|err| {
        log::warn!("smp: no CPU list from ACPI ({err:?}); running on the boot CPU only");
        acpi::CpuTopology { lapic_phys: 0xfee0_0000, apic_ids: alloc::vec::Vec::new() }
    });
    apic::init_boot_cpu(topology.lapic_phys);
    percpu::init(0, apic::id(), gdt::boot_cpu_tables().tss);
    syscall::init_this_cpu();
    traps::set_irq_handler(time::TIMER_VECTOR, time::handle_tick);
    traps::set_irq_handler(ipi::CALL_VECTOR, ipi::handle_call_ipi);
    traps::set_irq_handler(apic::ERROR_VECTOR, apic::handle_error);
    traps::set_irq_handler(apic::SPURIOUS_VECTOR, |_| {
        traps::SPURIOUS_INTERRUPTS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    });
    time::calibrate();
    crate::task::sched::init_boot_cpu();
    time::start_tick();
    ipi::mark_online(0);
    let started = smp::start_aps(&topology.apic_ids);
    crate::console::kernel_line(format_args!("smp: {started} CPUs online"));
    let (smep, smap) = smep_smap_enabled();
    let state = |on: bool| if on { "on" } else { "not available" };
    log::info!("cpu: SMEP {}, SMAP {}", state(smep), state(smap));
    log::debug!(
        "smp: {} APIC, APs started in {} ms, TSC {} MHz, APIC timer {} kHz",
        if apic::is_x2apic() { "x2" } else { "x" },
        smp::bring_up_ns() / 1_000_000,
        time::tsc_hz() / 1_000_000,
        time::apic_timer_hz() / 1000
    );
}

/// Stops every other CPU (they halt with interrupts off): for panics.
pub fn stop_other_cpus() {
    if ipi::online().len() > 1 {
        apic::send_ipi(apic::Destination::AllButSelf, apic::Delivery::Nmi);
    }
}

/// NX must be on before any page table entry carries the NX bit; WP makes the
/// kernel honour read-only pages too, so copy-on-write and our tests see faults.
pub(crate) fn enable_paging_features() {
    // SAFETY: setting EFER.NXE only makes bit 63 of page table entries meaningful
    // (no-execute); the bootloader's entries are valid with it on. The x86_64 crate
    // does the read-modify-write of the MSR.
    unsafe { Efer::update(|flags| flags.insert(EferFlags::NO_EXECUTE_ENABLE)) };
    // SAFETY: CR0.WP makes ring 0 respect read-only mappings; the kernel never
    // relies on writing through a read-only mapping. MP without EM: x87/SSE
    // instructions run natively (user programs use them; the kernel does not).
    unsafe {
        Cr0::update(|flags| {
            flags.insert(Cr0Flags::WRITE_PROTECT | Cr0Flags::MONITOR_COPROCESSOR);
            flags.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
        })
    };
    // SAFETY: OSFXSR/OSXMMEXCPT enable SSE and FXSAVE for user programs;
    // they change no mapping and no kernel state.
    unsafe { Cr4::update(|flags| flags.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE)) };
    let (smep, smap) = cpu_has_smep_smap();
    if smep {
        // SAFETY: with SMEP the CPU refuses to run user pages in ring 0; the
        // kernel never does (its code is all in the upper half, and the AP
        // trampoline page is a supervisor page that runs before this).
        unsafe { Cr4::update(|flags| flags.insert(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION)) };
    }
    if smap {
        // The user-copy routine and the trap entry start using stac/clac
        // before any user memory exists (this runs on the boot CPU before the
        // first address space, and every CPU has the same features).
        extable::KERNEL_SMAP_ENABLED.store(true, core::sync::atomic::Ordering::Relaxed);
        // SAFETY: with SMAP ring 0 may touch user pages only with RFLAGS.AC
        // set, which only `extable::copy_user` does, around its copy; every
        // other access to user memory is a bug we want to fault.
        unsafe { Cr4::update(|flags| flags.insert(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION)) };
    }
}

/// Whether the CPU has SMEP and SMAP (CPUID leaf 7, subleaf 0, EBX bits 7 and 20).
fn cpu_has_smep_smap() -> (bool, bool) {
    // Leaf 0 says whether leaf 7 exists.
    if core::arch::x86_64::__cpuid(0).eax < 7 {
        return (false, false);
    }
    let ebx = core::arch::x86_64::__cpuid_count(7, 0).ebx;
    (ebx & (1 << 7) != 0, ebx & (1 << 20) != 0)
}

/// Whether SMEP and SMAP are on (for the boot log and fault reports).
pub fn smep_smap_enabled() -> (bool, bool) {
    let cr4 = Cr4::read();
    (
        cr4.contains(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION),
        cr4.contains(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION),
    )
}

/// Halts this CPU for good, waking only to halt again.
pub fn halt_forever() -> ! {
    loop {
        interrupts::disable();
        ::x86_64::instructions::hlt();
    }
}

/// Sets the 4 KiB `page` to zero: 64 rounds of eight 8-byte stores. Fewer
/// instructions than the generic memset's loop, which matters under QEMU's
/// TCG (a fault's page zeroing was a sixth of fault_storm's kernel time);
/// `rep stosb`/`stosq`, the fastest on hardware with ERMS, is emulated a
/// byte or word at a time there and was three times slower.
pub fn zero_page(page: &mut [u8; 4096]) {
    // SAFETY: the loop writes 64 * 64 = 4096 bytes from rdi = the page, which
    // the exclusive borrow gives us; rdi and rcx are marked clobbered.
    unsafe {
        core::arch::asm!(
            "2:",
            "mov qword ptr [rdi], {zero}",
            "mov qword ptr [rdi + 8], {zero}",
            "mov qword ptr [rdi + 16], {zero}",
            "mov qword ptr [rdi + 24], {zero}",
            "mov qword ptr [rdi + 32], {zero}",
            "mov qword ptr [rdi + 40], {zero}",
            "mov qword ptr [rdi + 48], {zero}",
            "mov qword ptr [rdi + 56], {zero}",
            "add rdi, 64",
            "dec rcx",
            "jnz 2b",
            zero = in(reg) 0u64,
            inout("rdi") page.as_mut_ptr() => _,
            inout("rcx") 64usize => _,
            options(nostack)
        );
    }
}

/// Reads the time-stamp counter.
pub fn read_tsc() -> u64 {
    // SAFETY: RDTSC has no side effects and is available on every x86_64 CPU.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// A random word from RDRAND, if CPUID lists it (None also when the CPU has
/// no entropy ready after ten tries, as Intel advises).
pub fn rdrand() -> Option<u64> {
    static HAS_RDRAND: spin::Once<bool> = spin::Once::new();
    if !*HAS_RDRAND.call_once(|| core::arch::x86_64::__cpuid(1).ecx & (1 << 30) != 0) {
        return None;
    }
    for _ in 0..10 {
        let value: u64;
        let ok: u8;
        // SAFETY: CPUID says the CPU has RDRAND; it only writes the two
        // registers named and the flags.
        unsafe {
            core::arch::asm!("rdrand {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok, options(nomem, nostack))
        };
        if ok != 0 {
            return Some(value);
        }
    }
    None
}
