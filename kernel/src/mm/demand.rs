//! A demand-mapped kernel region: its pages get a zeroed frame on first touch,
//! from the page-fault handler. The kernel's first real #PF path; user memory
//! follows the same pattern under the address-space locks.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::structures::paging::{Page, PageTableFlags};
use x86_64::VirtAddr;

use super::frame::Frame;
use super::layout::{DEMAND_SIZE, DEMAND_START};
use super::paging::{kernel_page_table, MapError};
use crate::arch::tlb;
use crate::arch::traps::{FaultOutcome, PageFaultInfo};

static FAULTS: AtomicU64 = AtomicU64::new(0);

pub fn start() -> VirtAddr {
    VirtAddr::new(DEMAND_START)
}

pub fn size() -> u64 {
    DEMAND_SIZE
}

pub fn contains(addr: VirtAddr) -> bool {
    (DEMAND_START..DEMAND_START + DEMAND_SIZE).contains(&addr.as_u64())
}

/// Faults this region has resolved since boot.
pub fn faults() -> u64 {
    FAULTS.load(Ordering::Relaxed)
}

/// Maps a zeroed frame at the faulting page. Runs with interrupts off.
pub(super) fn handle_fault(info: &PageFaultInfo) -> FaultOutcome {
    if info.present || info.user || !contains(info.addr) {
        return FaultOutcome::Unhandled;
    }
    let Ok(frame) = Frame::alloc_zeroed() else {
        log::error!("out of memory for demand page {:#x}", info.addr.as_u64());
        return FaultOutcome::Unhandled;
    };
    let page = Page::containing_address(info.addr);
    match kernel_page_table().map(page, frame.phys(), PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE) {
        Ok(()) => {
            let _ = frame.into_raw();
            FAULTS.fetch_add(1, Ordering::Relaxed);
            FaultOutcome::Resolved
        }
        // Another CPU mapped it first; our frame is freed on drop.
        Err(MapError::AlreadyMapped) => FaultOutcome::Resolved,
        Err(err) => {
            log::error!("cannot map demand page {:#x}: {err:?}", info.addr.as_u64());
            FaultOutcome::Unhandled
        }
    }
}

/// Unmaps and frees the pages of `[addr, addr + len)` that were touched.
pub fn release(addr: VirtAddr, len: u64) {
    assert!(contains(addr) && (len == 0 || contains(addr + (len - 1))));
    let first = Page::containing_address(addr);
    let last = Page::containing_address(addr + len.max(1) - 1u64);
    for page in Page::range_inclusive(first, last) {
        if let Ok(frame) = kernel_page_table().unmap(page) {
            tlb::flush_page(page.start_address());
            // SAFETY: the frame was given to this page by `handle_fault`, the
            // mapping is gone and flushed, so nothing can reach it any more.
            drop(unsafe { Frame::from_raw(frame) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::extable::probe_read;

    #[test_case]
    fn first_touch_maps_a_zeroed_page_and_counts_the_fault() {
        let addr = start() + 0x10_0000u64;
        let before = faults();
        assert!(kernel_page_table().translate(addr).is_none());
        let ptr = addr.as_mut_ptr::<u64>();
        // SAFETY: the demand region is reserved for this use; the fault handler
        // maps a zeroed frame at the first access.
        let value = unsafe { ptr.read_volatile() };
        assert_eq!(value, 0);
        assert_eq!(faults(), before + 1);
        assert!(kernel_page_table().translate(addr).is_some());
        // SAFETY: the page is mapped now and belongs to this test.
        unsafe { ptr.write_volatile(99) };
        // SAFETY: as above.
        assert_eq!(unsafe { ptr.read_volatile() }, 99);
        assert_eq!(faults(), before + 1, "a second touch does not fault again");
        release(addr, 8);
    }

    #[test_case]
    fn released_pages_fault_in_fresh_and_zeroed() {
        let addr = start() + 0x20_0000u64;
        let ptr = addr.as_mut_ptr::<u8>();
        // SAFETY: demand-region page owned by this test.
        unsafe { ptr.write_volatile(5) };
        release(addr, 1);
        let before = faults();
        // SAFETY: as above; probing through the fix-up path faults the page in again.
        assert_eq!(unsafe { probe_read(addr) }, Ok(0));
        assert_eq!(faults(), before + 1);
        release(addr, 1);
    }

    #[test_case]
    fn frames_come_back_after_release() {
        let before = crate::mm::frame::stats().free;
        let base = start() + 0x40_0000u64;
        for i in 0..64u64 {
            // SAFETY: demand-region pages owned by this test.
            unsafe { (base + i * 4096).as_mut_ptr::<u8>().write_volatile(1) };
        }
        assert!(crate::mm::frame::stats().free <= before - 64);
        release(base, 64 * 4096);
        // Page-table pages stay (they are shared structure), the 64 data frames return.
        assert!(crate::mm::frame::stats().free >= before - 3);
    }
}
