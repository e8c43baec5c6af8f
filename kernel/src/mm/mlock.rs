//! mincore, msync, mlock and munlock: walks over the VMAs of a range with
//! Linux's answers for holes. Nothing is ever reclaimed or written back
//! here (no swap, no files), so a locked page is just a populated one and
//! msync of anonymous memory has nothing to write.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::addrspace::AddressSpace;
use super::pages::PAGE;
use super::vma::{Access, Backing, MapError, Prot};

impl AddressSpace {
    /// mincore over the page-aligned [start, end): one byte per page, 1 if
    /// a frame is mapped there. Stops at the first page no VMA covers and
    /// says so (the call then fails with ENOMEM after copying the rest).
    pub fn residency(&self, start: u64, end: u64) -> (Vec<u8>, bool) {
        let map = self.read_lock();
        let mut bytes = Vec::new();
        let mut page = start;
        while page < end {
            let Some(vma) = map.find(page) else { return (bytes, true) };
            while page < vma.end.min(end) {
                let mapped = self.pte(page, false, &map).is_some_and(|pte| pte.load(Ordering::Acquire) != 0);
                bytes.push(mapped as u8);
                page += PAGE;
            }
        }
        (bytes, false)
    }

    /// msync's walk over the page-aligned, non-empty [start, end) (Linux's
    /// order): a hole fails MS_SYNC alone at once, any other flags only
    /// after the rest of the range was synced; past the last VMA is ENOMEM.
    pub fn msync(&self, start: u64, end: u64, sync_only: bool) -> Result<(), MapError> {
        let map = self.read_lock();
        let mut cursor = start;
        let mut hole = false;
        for vma in map.range(start, end) {
            if vma.start > cursor {
                if sync_only {
                    return Err(MapError::NoMemory);
                }
                hole = true;
            }
            cursor = vma.end;
            if cursor >= end {
                return if hole { Err(MapError::NoMemory) } else { Ok(()) };
            }
        }
        Err(MapError::NoMemory)
    }

    /// mlock (`populate`) or munlock of the page-aligned, non-empty [start,
    /// end): ENOMEM if a hole is in it, else mlock faults every page in,
    /// for writing where the mapping is private and writable (as Linux's
    /// populate breaks copy-on-write), for reading elsewhere; a PROT_NONE
    /// mapping cannot be populated (ENOMEM, as Linux's EFAULT from
    /// get_user_pages turns into for mlock).
    pub fn mlock(&self, start: u64, end: u64, populate: bool) -> Result<(), MapError> {
        let map = self.read_lock();
        let mut cursor = start;
        for vma in map.range(start, end) {
            if vma.start > cursor {
                return Err(MapError::NoMemory);
            }
            cursor = vma.end;
        }
        if cursor < end {
            return Err(MapError::NoMemory);
        }
        if !populate {
            return Ok(());
        }
        for vma in map.range(start, end) {
            if vma.prot.is_none() {
                return Err(MapError::NoMemory);
            }
            let private_writable = vma.prot.contains(Prot::WRITE) && matches!(vma.backing, Backing::Private);
            let access = if private_writable { Access::Write } else { Access::Read };
            let mut page = vma.start.max(start);
            while page < vma.end.min(end) {
                self.handle_fault(vma, page, access, &map).map_err(|_| MapError::NoMemory)?;
                page += PAGE;
            }
        }
        Ok(())
    }

    /// mlockall(MCL_CURRENT): populates every accessible mapping, as
    /// Linux's mm_populate, which ignores the errors.
    pub fn populate_all(&self) {
        let map = self.read_lock();
        for vma in map.iter() {
            if vma.prot.is_none() {
                continue;
            }
            let private_writable = vma.prot.contains(Prot::WRITE) && matches!(vma.backing, Backing::Private);
            let access = if private_writable { Access::Write } else { Access::Read };
            let mut page = vma.start;
            while page < vma.end {
                if self.handle_fault(vma, page, access, &map).is_err() {
                    break;
                }
                page += PAGE;
            }
        }
    }

    /// Bytes mapped, all VMAs together (Linux's total_vm, for RLIMIT_AS).
    pub fn mapped_bytes(&self) -> u64 {
        self.read_lock().iter().map(|vma| vma.end - vma.start).sum()
    }

    /// Bytes of [start, end) that VMAs cover (a MAP_FIXED mapping replaces them).
    pub fn mapped_bytes_in(&self, start: u64, end: u64) -> u64 {
        self.read_lock().range(start, end).map(|vma| vma.end.min(end) - vma.start.max(start)).sum()
    }
}
