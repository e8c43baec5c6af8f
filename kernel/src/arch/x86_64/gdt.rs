//! Global descriptor table and task state segment, one pair per CPU.
//!
//! Segment layout (fixed by `syscall`/`sysret`, which derive selectors from STAR):
//! 0x08 kernel code, 0x10 kernel data, 0x18 user data, 0x20 user code, 0x28 TSS.
//!
//! The TSS holds the interrupt stack table: the double fault, NMI and machine
//! check handlers run on stacks of their own, so a kernel stack overflow is
//! still reported instead of escalating into a triple fault.

use core::cell::UnsafeCell;

use ::x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use ::x86_64::instructions::tables::load_tss;
use ::x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use ::x86_64::structures::tss::TaskStateSegment;
use ::x86_64::VirtAddr;
use spin::Once;

/// Interrupt-stack-table slots (0-based TSS indices; the IDT stores index + 1).
pub const IST_DOUBLE_FAULT: u16 = 0;
pub const IST_NMI: u16 = 1;
pub const IST_MACHINE_CHECK: u16 = 2;
const IST_COUNT: usize = 3;

/// Large enough for the panic path's formatting in a debug build.
pub const IST_STACK_SIZE: usize = 32 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct Selectors {
    pub kernel_code: SegmentSelector,
    pub kernel_data: SegmentSelector,
    pub user_data: SegmentSelector,
    pub user_code: SegmentSelector,
    pub tss: SegmentSelector,
}

#[repr(C, align(16))]
pub struct IstStack(UnsafeCell<[u8; IST_STACK_SIZE]>);

// SAFETY: the Rust code never reads or writes the stack's bytes; only the CPU
// does, through RSP, while running the one handler that owns that slot.
unsafe impl Sync for IstStack {}

impl IstStack {
    pub const fn new() -> Self {
        IstStack(UnsafeCell::new([0; IST_STACK_SIZE]))
    }

    fn top(&self) -> VirtAddr {
        VirtAddr::from_ptr(self.0.get()) + IST_STACK_SIZE as u64
    }
}

impl Default for IstStack {
    fn default() -> Self {
        Self::new()
    }
}

/// A CPU's TSS. Its RSP0 changes at every switch to a thread, so it lives in
/// an `UnsafeCell`; only its own CPU writes it (with interrupts off).
pub struct TssCell(UnsafeCell<TaskStateSegment>);

// SAFETY: each TSS is written only by the CPU that owns it, in `set_kernel_stack`
// with interrupts disabled; other CPUs never touch it.
unsafe impl Sync for TssCell {}

impl TssCell {
    /// The stack the CPU switches to on an interrupt or exception from user mode.
    pub fn set_kernel_stack(&self, top: VirtAddr) {
        let saved = super::disable_interrupts();
        // SAFETY: see the `Sync` impl: we are on the owning CPU with interrupts off.
        unsafe { (*self.0.get()).privilege_stack_table[0] = top };
        super::restore_interrupts(saved);
    }
}

/// One CPU's descriptor tables.
pub struct CpuTables {
    gdt: GlobalDescriptorTable,
    selectors: Selectors,
    pub tss: &'static TssCell,
}

static BOOT_IST: [IstStack; IST_COUNT] = [IstStack::new(), IstStack::new(), IstStack::new()];
static BOOT_TSS: Once<TssCell> = Once::new();
static BOOT_TABLES: Once<CpuTables> = Once::new();

/// Builds a TSS whose IST slots point at `stacks`.
pub fn new_tss(stacks: &'static [IstStack; IST_COUNT]) -> TssCell {
    let mut tss = TaskStateSegment::new();
    for (slot, stack) in stacks.iter().enumerate() {
        tss.interrupt_stack_table[slot] = stack.top();
    }
    TssCell(UnsafeCell::new(tss))
}

/// Builds the GDT for a CPU whose TSS is `tss`.
pub fn new_tables(tss: &'static TssCell) -> CpuTables {
    let mut gdt = GlobalDescriptorTable::new();
    let selectors = Selectors {
        kernel_code: gdt.append(Descriptor::kernel_code_segment()),
        kernel_data: gdt.append(Descriptor::kernel_data_segment()),
        user_data: gdt.append(Descriptor::user_data_segment()),
        user_code: gdt.append(Descriptor::user_code_segment()),
        // SAFETY: the TSS is 'static and stays valid; the CPU reads it through
        // this descriptor while we change only RSP0 (see `TssCell`).
        tss: gdt.append(unsafe { Descriptor::tss_segment_unchecked(tss.0.get()) }),
    };
    CpuTables { gdt, selectors, tss }
}

/// Loads `tables` on this CPU and reloads every segment register.
pub fn load(tables: &'static CpuTables) {
    tables.gdt.load();
    let s = tables.selectors;
    // SAFETY: the selectors index descriptors of the GDT just loaded, which
    // lives for 'static; code and data segments are flat 64-bit ones, and the
    // TSS descriptor points at a 'static TSS that no other CPU loads.
    unsafe {
        CS::set_reg(s.kernel_code);
        SS::set_reg(s.kernel_data);
        DS::set_reg(s.kernel_data);
        ES::set_reg(s.kernel_data);
        load_tss(s.tss);
    }
}

pub fn init_boot_cpu() {
    let tss = BOOT_TSS.call_once(|| new_tss(&BOOT_IST));
    load(BOOT_TABLES.call_once(|| new_tables(tss)));
}

pub fn boot_cpu_tables() -> &'static CpuTables {
    BOOT_TABLES.get().expect("GDT loaded on the boot CPU")
}

/// The selectors every CPU uses (all GDTs have the same layout).
pub fn selectors() -> Selectors {
    BOOT_TABLES.get().expect("GDT loaded on the boot CPU").selectors
}
