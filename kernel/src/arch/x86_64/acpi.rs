//! CPU discovery from the ACPI MADT, through the `acpi` crate.

use alloc::vec::Vec;
use core::ptr::NonNull;

use acpi::{AcpiHandler, AcpiTables, InterruptModel, PhysicalMapping};
use x86_64::PhysAddr;

use crate::mm::phys_to_virt;

/// What the kernel needs to know about the machine's CPUs.
#[derive(Clone, Debug)]
pub struct CpuTopology {
    /// Physical address of the local APIC registers.
    pub lapic_phys: u64,
    /// APIC ids of the CPUs that may be started, boot CPU first.
    pub apic_ids: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyError {
    NoRsdp,
    Tables,
    NoApic,
}

/// ACPI tables are ordinary RAM (or ROM) below the top of physical memory,
/// all of which the physical map covers: "mapping" is adding the offset.
#[derive(Clone, Copy)]
struct PhysMapHandler;

impl AcpiHandler for PhysMapHandler {
    unsafe fn map_physical_region<T>(&self, physical_address: usize, size: usize) -> PhysicalMapping<Self, T> {
        let virt = phys_to_virt(PhysAddr::new(physical_address as u64));
        let ptr = NonNull::new(virt.as_mut_ptr::<T>()).expect("the physical map is not at 0");
        // SAFETY: the physical map covers every physical address the firmware
        // tables use, for the kernel's whole life, so `size` bytes at `ptr` are mapped.
        unsafe { PhysicalMapping::new(physical_address, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

pub fn discover(rsdp: Option<u64>) -> Result<CpuTopology, TopologyError> {
    let rsdp = rsdp.ok_or(TopologyError::NoRsdp)?;
    // SAFETY: the bootloader found the RSDP at this physical address.
    let tables = unsafe { AcpiTables::from_rsdp(PhysMapHandler, rsdp as usize) }.map_err(|_| TopologyError::Tables)?;
    let platform = tables.platform_info().map_err(|_| TopologyError::Tables)?;
    let InterruptModel::Apic(apic) = platform.interrupt_model else {
        return Err(TopologyError::NoApic);
    };
    let mut apic_ids = Vec::new();
    if let Some(processors) = platform.processor_info {
        apic_ids.push(processors.boot_processor.local_apic_id);
        apic_ids.extend(
            processors
                .application_processors
                .iter()
                .filter(|p| p.state != acpi::platform::ProcessorState::Disabled)
                .map(|p| p.local_apic_id),
        );
    }
    Ok(CpuTopology { lapic_phys: apic.local_apic_address, apic_ids })
}
