//! brk: the program break, grown and shrunk as one private VMA.

use super::addrspace::AddressSpace;
use super::layout::USER_END;
use super::pages;
use super::tlb::TlbGather;
use super::vma::{Backing, Prot, MAX_MAP_COUNT};

impl AddressSpace {
    /// brk: moves the program break; returns the break in effect afterwards.
    pub fn brk(&self, requested: u64) -> u64 {
        let mut map = self.write_lock();
        let (base, old) = (map.brk_start, map.brk);
        if requested < base || requested > USER_END {
            return old;
        }
        // Both are at most USER_END, so rounding them up cannot overflow.
        let old_end = pages::round_up(old).unwrap_or(USER_END);
        let new_end = pages::round_up(requested).unwrap_or(USER_END);
        let mut gather = TlbGather::new();
        if new_end < old_end {
            self.unmap_locked(&mut map, new_end, old_end, &mut gather);
            self.free_page_tables(&map, new_end, old_end, &mut gather);
        } else if new_end > old_end {
            if map.overlaps(old_end, new_end) || map.len() > MAX_MAP_COUNT {
                return old;
            }
            let heap = map.new_vma(old_end, new_end, Prot::READ | Prot::WRITE, Backing::Private);
            map.insert(heap);
        }
        map.brk = requested;
        gather.finish(self, &map);
        requested
    }

    /// Sets where the heap starts (after the program's last segment).
    pub fn set_brk_start(&self, addr: u64) {
        let mut map = self.write_lock();
        map.brk_start = addr;
        map.brk = addr;
    }
}
