//! The local APIC: interrupts between CPUs (IPIs), end-of-interrupt, the
//! per-CPU timer. x2APIC (MSRs) when the CPU has it, else xAPIC (MMIO).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ::x86_64::registers::model_specific::Msr;
use ::x86_64::structures::paging::{Page, PageTableFlags, PhysFrame};
use ::x86_64::{PhysAddr, VirtAddr};

use crate::mm::layout::MMIO_START;
use crate::mm::paging::kernel_page_table;

/// Where the xAPIC registers are mapped (uncached), in the MMIO slot.
const XAPIC_VIRT: u64 = MMIO_START;
const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;

// Register offsets (xAPIC MMIO; the x2APIC MSR is 0x800 + offset / 16).
const REG_ID: u32 = 0x20;
const REG_TPR: u32 = 0x80;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_ESR: u32 = 0x280;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
const REG_LVT_TIMER: u32 = 0x320;
const REG_LVT_ERROR: u32 = 0x370;
const REG_TIMER_INITIAL: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3e0;

const ICR_DELIVERY_PENDING: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_TRIGGER_LEVEL: u32 = 1 << 15;
const LVT_MASKED: u32 = 1 << 16;
const LVT_TIMER_PERIODIC: u32 = 1 << 17;
/// Divide the timer's input clock by 16.
const TIMER_DIVIDE_16: u32 = 0b0011;

pub const SPURIOUS_VECTOR: u8 = 0xff;
pub const ERROR_VECTOR: u8 = 0xfe;

static X2APIC: AtomicBool = AtomicBool::new(false);
static MAPPED: AtomicBool = AtomicBool::new(false);
/// Errors the APIC reported (ESR), for diagnostics.
pub static ERRORS: AtomicU64 = AtomicU64::new(0);

/// Whom an IPI goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    Apic(u32),
    AllButSelf,
}

/// How the target handles it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Fixed(u8),
    Nmi,
    Init,
    InitDeassert,
    Startup(u8),
}

fn read(reg: u32) -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: x2APIC mode is on and `reg` is an architectural APIC register.
        unsafe { Msr::new(0x800 + reg / 16).read() as u32 }
    } else {
        // SAFETY: the xAPIC page is mapped uncached at XAPIC_VIRT (see `init_boot_cpu`)
        // and `reg` is a register offset inside it; registers are 32-bit aligned.
        unsafe { ((XAPIC_VIRT + reg as u64) as *const u32).read_volatile() }
    }
}

fn write(reg: u32, value: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: as in `read`; writing APIC registers affects only interrupt delivery.
        unsafe { Msr::new(0x800 + reg / 16).write(value as u64) }
    } else {
        // SAFETY: as in `read`.
        unsafe { ((XAPIC_VIRT + reg as u64) as *mut u32).write_volatile(value) }
    }
}

fn cpu_has_x2apic() -> bool {
    let leaf = core::arch::x86_64::__cpuid(1);
    leaf.ecx & (1 << 21) != 0
}

/// Chooses the APIC mode and maps the xAPIC registers; on the boot CPU, once.
pub fn init_boot_cpu(lapic_phys: u64) {
    if cpu_has_x2apic() {
        X2APIC.store(true, Ordering::Relaxed);
    } else if !MAPPED.swap(true, Ordering::Relaxed) {
        let flags = PageTableFlags::WRITABLE
            | PageTableFlags::NO_CACHE
            | PageTableFlags::WRITE_THROUGH
            | PageTableFlags::NO_EXECUTE;
        let page = Page::containing_address(VirtAddr::new(XAPIC_VIRT));
        let frame = PhysFrame::containing_address(PhysAddr::new(lapic_phys));
        kernel_page_table().map(page, frame, flags).expect("map the local APIC");
    }
    init_this_cpu();
}

/// Enables this CPU's local APIC in the chosen mode.
pub fn init_this_cpu() {
    let mut msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: enabling the APIC (and x2APIC mode when the CPU has it) in
    // IA32_APIC_BASE keeps its base address; the kernel owns the APIC.
    unsafe {
        let mut base = msr.read() | APIC_BASE_ENABLE;
        if X2APIC.load(Ordering::Relaxed) {
            base |= APIC_BASE_X2APIC;
        }
        msr.write(base);
    }
    write(REG_TPR, 0);
    write(REG_LVT_ERROR, ERROR_VECTOR as u32);
    write(REG_ESR, 0);
    write(REG_SVR, 0x100 | SPURIOUS_VECTOR as u32);
    eoi();
}

pub fn is_x2apic() -> bool {
    X2APIC.load(Ordering::Relaxed)
}

pub fn id() -> u32 {
    let raw = read(REG_ID);
    if is_x2apic() {
        raw
    } else {
        raw >> 24
    }
}

pub fn eoi() {
    write(REG_EOI, 0);
}

/// Sends an IPI. Interrupts stay off while the ICR is written, so a handler
/// on this CPU cannot interleave an IPI of its own.
pub fn send_ipi(destination: Destination, delivery: Delivery) {
    let mut low = match delivery {
        Delivery::Fixed(vector) => vector as u32,
        Delivery::Nmi => 0b100 << 8,
        Delivery::Init => (0b101 << 8) | ICR_LEVEL_ASSERT | ICR_TRIGGER_LEVEL,
        Delivery::InitDeassert => (0b101 << 8) | ICR_TRIGGER_LEVEL,
        Delivery::Startup(page) => (0b110 << 8) | page as u32,
    };
    let target = match destination {
        Destination::Apic(id) => id,
        Destination::AllButSelf => {
            low |= 0b11 << 18;
            0
        }
    };
    let saved = super::disable_interrupts();
    if is_x2apic() {
        // SAFETY: the x2APIC ICR is one 64-bit MSR; writing it sends the IPI.
        unsafe { Msr::new(0x830).write(((target as u64) << 32) | low as u64) };
    } else {
        write(REG_ICR_HIGH, target << 24);
        write(REG_ICR_LOW, low);
        while read(REG_ICR_LOW) & ICR_DELIVERY_PENDING != 0 {
            core::hint::spin_loop();
        }
    }
    super::restore_interrupts(saved);
}

/// Starts the timer counting down from `count` (input clock / 16), masked:
/// for calibration.
pub fn timer_start_oneshot_masked(count: u32) {
    write(REG_TIMER_DIVIDE, TIMER_DIVIDE_16);
    write(REG_LVT_TIMER, LVT_MASKED);
    write(REG_TIMER_INITIAL, count);
}

pub fn timer_current() -> u32 {
    read(REG_TIMER_CURRENT)
}

/// A periodic interrupt on `vector` every `count` timer ticks (input clock / 16).
pub fn timer_start_periodic(vector: u8, count: u32) {
    write(REG_TIMER_DIVIDE, TIMER_DIVIDE_16);
    write(REG_LVT_TIMER, vector as u32 | LVT_TIMER_PERIODIC);
    write(REG_TIMER_INITIAL, count);
}

/// The error interrupt: count, clear and acknowledge.
pub fn handle_error(_frame: &mut super::TrapFrame) {
    write(REG_ESR, 0);
    let status = read(REG_ESR);
    ERRORS.fetch_add(1, Ordering::Relaxed);
    log::warn!("local APIC error, ESR {status:#x}");
    eoi();
}
