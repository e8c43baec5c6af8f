//! madvise: dropping, freeing, removing and populating pages.

use super::addrspace::AddressSpace;
use super::fault::{lock_mode, LockMode};
use super::pages::PAGE;
use super::tlb::TlbGather;
use super::vma::{Access, Advice, Backing, MapError, Prot, MAX_MAP_COUNT};
use alloc::vec::Vec;

impl AddressSpace {
    /// madvise on the page-aligned, non-empty range [start, end), with Linux's
    /// results: a hole makes the call fail with NoMemory once the rest is
    /// done; a VMA of the wrong kind fails it at once.
    pub fn madvise(&self, start: u64, end: u64, advice: Advice) -> Result<(), MapError> {
        match advice {
            Advice::PopulateRead => return self.populate(start, end, Access::Read),
            Advice::PopulateWrite => return self.populate(start, end, Access::Write),
            Advice::NoHugePage | Advice::HugePage | Advice::Random | Advice::Sequential | Advice::Normal => {
                return self.set_hints(start, end, advice)
            }
            _ => {}
        }
        // Dropping pages needs only a read lock: a concurrent fault on a
        // dropped page installs a fresh one, which is what it would get after.
        // Within one VMA, its read lock does (as Linux does it): a thread
        // that drops and refaults its pages does not wait for mmap writers.
        if matches!(advice, Advice::DontNeed | Advice::Free) && lock_mode() == LockMode::PerVma {
            if let Ok(vma) = self.lock_vma_under_rcu(start) {
                let private = matches!(vma.backing, Backing::Private);
                if end <= vma.end && (advice == Advice::DontNeed || private) {
                    let mut gather = TlbGather::new();
                    self.zap(&vma, start, end, &mut gather);
                    gather.finish(self, &vma);
                    return Ok(());
                }
            }
        }
        let map = self.read_lock();
        let mut gather = TlbGather::new();
        let mut result = Ok(());
        let mut cursor = start;
        for vma in map.range(start, end) {
            if vma.start > cursor {
                result = Err(MapError::NoMemory);
            }
            let (from, to) = (vma.start.max(start), vma.end.min(end));
            let shared = matches!(vma.backing, Backing::Shared { .. });
            match advice {
                Advice::DontNeed => self.zap(vma, from, to, &mut gather),
                // We never reclaim, so "free when memory is short" is "free now";
                // the program must not rely on the contents either way.
                Advice::Free if !shared => self.zap(vma, from, to, &mut gather),
                Advice::Remove if !shared => result = Err(MapError::Invalid),
                Advice::Remove if !vma.prot.contains(Prot::WRITE) => result = Err(MapError::Denied),
                Advice::Remove => {
                    self.zap(vma, from, to, &mut gather);
                    if let Backing::Shared { memory, first_page } = &vma.backing {
                        let first = first_page + (from - vma.start) / PAGE;
                        memory.remove(first..first + (to - from) / PAGE, &mut gather);
                    }
                }
                Advice::Free | Advice::WipeOnFork if shared => result = Err(MapError::Invalid),
                _ => {}
            }
            if matches!(result, Err(MapError::Invalid | MapError::Denied)) {
                break;
            }
            cursor = vma.end;
        }
        if result.is_ok() && cursor < end {
            result = Err(MapError::NoMemory);
        }
        gather.finish(self, &map);
        result
    }
}

impl AddressSpace {
    /// The fault-around hints (`fault_around.rs`) on [start, end), as VMA
    /// flags, the way Linux sets VM_NOHUGEPAGE and VM_RAND_READ: VMAs are
    /// split at the range's ends, take the hint, and merge again with alike
    /// neighbours. A hole fails the call with NoMemory once the rest is done;
    /// a split beyond the VMA limit fails it at once.
    fn set_hints(&self, start: u64, end: u64, advice: Advice) -> Result<(), MapError> {
        let mut map = self.write_lock();
        // Split only where the hint changes something (as Linux's
        // vma_modify), and not past the VMA limit.
        let splits: Vec<u64> = [start, end]
            .into_iter()
            .filter(|&at| {
                map.find(at).is_some_and(|vma| vma.start < at && vma.around.hints_after(advice) != vma.around.hints())
            })
            .collect();
        if map.len() + splits.len() > MAX_MAP_COUNT {
            return Err(MapError::NoMemory);
        }
        for at in splits {
            map.split_at(at);
        }
        let starts: Vec<u64> = map.range(start, end).map(|vma| vma.start).collect();
        let mut result = Ok(());
        let mut cursor = start;
        for at in starts {
            if at > cursor {
                result = Err(MapError::NoMemory);
            }
            cursor = map.set_hints(at, advice).expect("a VMA starts there");
        }
        if cursor < end {
            result = Err(MapError::NoMemory);
        }
        let touched: Vec<u64> = map.range(start, end + 1).map(|vma| vma.start).collect();
        for boundary in touched.into_iter().chain([start, end]) {
            map.merge_at(boundary);
        }
        result
    }
}
