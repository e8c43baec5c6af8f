//! Memory management: physical frames, page tables, the kernel heap and
//! page-fault handling.

pub mod addrspace;
mod brk;
pub mod demand;
pub mod fault;
mod fault_around;
pub mod fault_probe;
pub mod frame;
pub mod heap;
pub mod kstack;
pub mod layout;
pub mod lazy_tlb;
mod madvise;
mod mlock;
mod mmap;
mod mprotect;
mod mremap;
mod munmap;
pub mod pages;
pub mod paging;
pub mod procfs;
mod tlb;
pub mod uaccess;
pub mod vma;

use bootloader_api::info::MemoryRegion;
use bootloader_api::BootInfo;
use spin::Once;
use x86_64::{PhysAddr, VirtAddr};

/// The virtual address of physical address `phys`, through the physical map.
pub fn phys_to_virt(phys: PhysAddr) -> VirtAddr {
    VirtAddr::new(layout::PHYS_MAP_BASE + phys.as_u64())
}

static BOOT_REGIONS: Once<&'static [MemoryRegion]> = Once::new();
static RAMDISK: Once<&'static [u8]> = Once::new();

/// Frames, page tables, then the heap (which needs both).
pub fn init(boot_info: &'static mut BootInfo) {
    let offset = boot_info.physical_memory_offset.into_option();
    assert_eq!(offset, Some(layout::PHYS_MAP_BASE), "the bootloader honours our physical map address");
    let regions: &'static [MemoryRegion] = &boot_info.memory_regions;
    BOOT_REGIONS.call_once(|| regions);
    frame::init(regions);
    paging::init();
    heap::init();
    if let Some(addr) = boot_info.ramdisk_addr.into_option() {
        let len = boot_info.ramdisk_len as usize;
        // SAFETY: the bootloader loaded the ramdisk at `addr`, mapped `len` bytes
        // there for the kernel's lifetime, and marked its frames as not usable,
        // so they are never handed out or written.
        RAMDISK.call_once(|| unsafe { core::slice::from_raw_parts(addr as *const u8, len) });
    }
}

/// Applies `boot --zero-pool` and `--fault-around`: the ramdisk files
/// `kernel.zeropool` and `kernel.faultaround`, each `on` or `off`.
pub fn set_switches_from_ramdisk(ramdisk: &[u8]) {
    type Switch = (&'static str, fn(bool));
    let switches: [Switch; 2] =
        [("kernel.zeropool", frame::set_zero_pool), ("kernel.faultaround", fault_around::set_enabled)];
    for (file, set) in switches {
        match crate::task::cpio::find(ramdisk, file).ok().flatten().map(|entry| entry.data.trim_ascii()) {
            None => {}
            Some(b"on") => set(true),
            Some(b"off") => set(false),
            Some(_) => log::warn!("{file} in the ramdisk says neither on nor off; keeping it on"),
        }
    }
}

/// The boot memory map, as the bootloader gave it.
pub fn boot_memory_regions() -> &'static [MemoryRegion] {
    BOOT_REGIONS.get().copied().unwrap_or(&[])
}

/// The ramdisk the bootloader loaded, if any.
pub fn ramdisk() -> Option<&'static [u8]> {
    RAMDISK.get().copied()
}
