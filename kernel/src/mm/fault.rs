//! Page-fault policy: which faults the kernel resolves, and how.
//! The arch trap code decodes the fault and calls `handle_page_fault`.

use crate::arch::traps::{FaultOutcome, PageFaultInfo};

pub fn handle_page_fault(info: &PageFaultInfo) -> FaultOutcome {
    if !info.user && super::demand::contains(info.addr) {
        return super::demand::handle_fault(info);
    }
    FaultOutcome::Unhandled
}
