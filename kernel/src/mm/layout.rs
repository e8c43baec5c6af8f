//! The virtual address layout. Each kernel range has its own top-level (PML4)
//! slot, created at boot, so every address space can share the kernel half by
//! copying the upper 256 PML4 entries once.
//!
//! ```text
//! 0x0000_0000_0000_0000 .. 0x0000_7fff_ffff_f000  user space
//! 0xffff_8000_0000_0000 .. 0xffff_c000_0000_0000  placed by the bootloader: kernel image,
//!                                                 boot stack, boot info, ramdisk
//! 0xffff_c000_0000_0000  (PML4 384)               kernel heap
//! 0xffff_c080_0000_0000  (PML4 385)               demand-mapped kernel region
//! 0xffff_c100_0000_0000  (PML4 386)               kernel stacks (with guard pages)
//! 0xffff_c180_0000_0000  (PML4 387)               device memory (MMIO)
//! 0xffff_d000_0000_0000  (PML4 416)               all physical memory, 1:1 at an offset
//! ```

/// One page below the canonical boundary, as Linux's TASK_SIZE: mappings,
/// FS bases and user pointers must end at or below it.
pub const USER_END: u64 = 0x0000_7fff_ffff_f000;

pub const BOOTLOADER_RANGE_START: u64 = 0xffff_8000_0000_0000;
pub const BOOTLOADER_RANGE_END: u64 = 0xffff_bfff_ffff_f000;

pub const KERNEL_HEAP_START: u64 = 0xffff_c000_0000_0000;
/// The heap may grow to this size (one PML4 slot is 512 GiB; frames run out first).
pub const KERNEL_HEAP_MAX: u64 = 64 << 30;

pub const DEMAND_START: u64 = 0xffff_c080_0000_0000;
pub const DEMAND_SIZE: u64 = 1 << 30;

pub const KERNEL_STACKS_START: u64 = 0xffff_c100_0000_0000;
pub const MMIO_START: u64 = 0xffff_c180_0000_0000;

pub const PHYS_MAP_BASE: u64 = 0xffff_d000_0000_0000;

/// The PML4 slots of the kernel's own ranges, created at boot (see above).
pub const KERNEL_OWN_SLOTS: [u64; 4] = [KERNEL_HEAP_START, DEMAND_START, KERNEL_STACKS_START, MMIO_START];
