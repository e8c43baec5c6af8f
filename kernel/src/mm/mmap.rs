//! mmap of anonymous memory, MAP_POPULATE, and mapping the loader's frames.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use super::addrspace::AddressSpace;
use super::frame::Frame;
use super::layout::USER_END;
use super::pages::{self, PAGE};
use super::tlb::TlbGather;
use super::vma::{Access, Backing, MapError, Prot, SharedMemory, MAX_MAP_COUNT, PTE_PROT_NONE};

/// What an mmap call asks for, already decoded from flags.
#[derive(Clone, Copy, Debug, Default)]
pub struct MmapRequest {
    pub addr: u64,
    pub len: u64,
    pub prot: Prot,
    pub shared: bool,
    pub fixed: bool,
    pub fixed_noreplace: bool,
    pub populate: bool,
}

impl AddressSpace {
    /// mmap of anonymous memory; the system-call layer has checked the flags.
    pub fn mmap(&self, request: &MmapRequest) -> Result<u64, MapError> {
        let len = pages::round_up(request.len).filter(|&len| len != 0 && len <= USER_END).ok_or(MapError::NoMemory)?;
        let mut map = self.write_lock();
        // As Linux's do_mmap: refused only once the count is above the limit.
        if map.len() > MAX_MAP_COUNT {
            return Err(MapError::NoMemory);
        }
        let start = if request.fixed || request.fixed_noreplace {
            let start = request.addr;
            // Linux checks the range (ENOMEM) before the alignment (EINVAL).
            if pages::user_end(start, len).is_none() {
                return Err(MapError::NoMemory);
            }
            if !pages::is_aligned(start) {
                return Err(MapError::Invalid);
            }
            if request.fixed_noreplace && map.overlaps(start, start + len) {
                return Err(MapError::Exists);
            }
            start
        } else {
            map.unmapped_area(request.addr, len).ok_or(MapError::NoMemory)?
        };
        let end = start + len;
        if map.splits_one_vma(start, end) && map.len() >= MAX_MAP_COUNT {
            return Err(MapError::NoMemory);
        }
        let mut gather = TlbGather::new();
        self.unmap_locked(&mut map, start, end, &mut gather);
        let backing = if request.shared {
            Backing::Shared { memory: Arc::new(SharedMemory::new(len / PAGE)), first_page: 0 }
        } else {
            Backing::Private
        };
        let vma = map.new_vma(start, end, request.prot, backing);
        map.insert(vma);
        gather.finish(self, &map);
        drop(map);
        if request.populate {
            let access = if request.prot.contains(Prot::WRITE) { Access::Write } else { Access::Read };
            // MAP_POPULATE is best effort: the mapping stands whatever happens.
            let _ = self.populate(start, end, access);
        }
        Ok(start)
    }

    /// Faults in every page of [start, end) for `access`, in order; stops at
    /// the first hole (NoMemory), at a VMA that forbids the access (Invalid,
    /// as MADV_POPULATE_* on Linux), or when memory runs out (NoMemory).
    pub(super) fn populate(&self, start: u64, end: u64, access: Access) -> Result<(), MapError> {
        let map = self.read_lock();
        let mut page = start;
        while page < end {
            let vma = map.find(page).ok_or(MapError::NoMemory)?;
            if !vma.allows(access) {
                return Err(MapError::Invalid);
            }
            let vma_end = vma.end.min(end);
            while page < vma_end {
                self.handle_fault(vma, page, access, &map).map_err(|_| MapError::NoMemory)?;
                page += PAGE;
            }
        }
        Ok(())
    }

    /// Maps `frame` (already filled) at the page `page` as private memory
    /// with `prot`. For loading programs and building the initial stack.
    pub fn map_frame(&self, page: u64, prot: Prot, frame: Frame) -> Result<(), MapError> {
        if !page.is_multiple_of(PAGE) || page >= USER_END {
            return Err(MapError::Invalid);
        }
        let mut map = self.write_lock();
        if map.overlaps(page, page + PAGE) {
            return Err(MapError::Exists);
        }
        let vma = map.new_vma(page, page + PAGE, prot, Backing::Private);
        map.insert(vma);
        let Some(pte) = self.pte(page, true, &map) else {
            // No frame for a page table: take the page's VMA back out.
            drop(map.remove_range(page, page + PAGE));
            return Err(MapError::NoMemory);
        };
        let entry = if prot.is_none() { PTE_PROT_NONE } else { prot.pte_flags().bits() };
        pte.store(frame.into_raw().start_address().as_u64() | entry, Ordering::Release);
        Ok(())
    }
}
