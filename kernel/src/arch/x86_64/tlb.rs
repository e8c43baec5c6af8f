//! Local TLB control. Cross-CPU shootdowns build on these (SMP issue).

use ::x86_64::registers::control::Cr3;
use ::x86_64::VirtAddr;

/// Drops this CPU's translation for the page holding `addr`.
pub fn flush_page(addr: VirtAddr) {
    ::x86_64::instructions::tlb::flush(addr);
}

/// Drops every non-global translation on this CPU by reloading CR3.
pub fn flush_all() {
    let (frame, flags) = Cr3::read();
    // SAFETY: writing back the current root and flags keeps the same address
    // space; the only effect is the TLB flush.
    unsafe { Cr3::write(frame, flags) };
}
