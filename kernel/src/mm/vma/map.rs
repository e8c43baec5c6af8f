//! The VMA set under the `mmap_lock`: lookups for anyone holding it, and the
//! changes, which only an `MmapWriteGuard` can make. Every change write-locks
//! the VMAs it replaces or removes, detaches them, and puts in new VMAs that
//! are write-locked until the guard is dropped (see `lock.rs`).

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::{Advice, Backing, MmapWriteGuard, Prot, Vma, MMAP_MIN};

/// The VMAs, as a persistent B-tree whose versions RCU readers search.
pub type VmaTree = vmatree::Tree<Arc<Vma>>;

/// The VMA set and what else `mmap_lock` guards.
#[derive(Default)]
pub struct VmaMap {
    /// The writer's version of the tree; published when the write guard goes.
    pub(in crate::mm) tree: VmaTree,
    /// The tree changed since it was last published.
    pub(in crate::mm) dirty: bool,
    pub brk_start: u64,
    pub brk: u64,
    /// mmap allocates top-down below this.
    pub(in crate::mm) mmap_top: u64,
    /// Changes published so far (for the sampled checks).
    changes: u64,
}

impl VmaMap {
    /// No VMAs yet; mmap hands out addresses below `mmap_top`.
    pub(in crate::mm) fn new(mmap_top: u64) -> VmaMap {
        VmaMap { mmap_top, ..VmaMap::default() }
    }

    /// The VMA containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Arc<Vma>> {
        self.tree.find(addr)
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Vma>> {
        self.tree.iter()
    }

    /// The VMAs meeting [start, end), in order.
    pub(in crate::mm) fn range(&self, start: u64, end: u64) -> impl Iterator<Item = &Arc<Vma>> {
        self.tree.range(start, end)
    }

    /// The VMA starting at `start`.
    pub(in crate::mm) fn get(&self, start: u64) -> Option<&Arc<Vma>> {
        self.tree.get(start)
    }

    /// The last VMA starting below `addr`.
    pub(in crate::mm) fn prev(&self, addr: u64) -> Option<&Arc<Vma>> {
        self.tree.prev(addr)
    }

    /// The first VMA starting at or above `addr`.
    pub(in crate::mm) fn next(&self, addr: u64) -> Option<&Arc<Vma>> {
        self.tree.next(addr)
    }

    pub(in crate::mm) fn overlaps(&self, start: u64, end: u64) -> bool {
        self.tree.overlaps(start, end)
    }

    /// Whether [start, end) lies strictly inside one VMA, so that removing it
    /// leaves one VMA more than before.
    pub(in crate::mm) fn splits_one_vma(&self, start: u64, end: u64) -> bool {
        self.find(start).is_some_and(|vma| vma.start < start && end < vma.end)
    }

    /// Checks the tree's invariants in debug builds, each time a change is
    /// published: always while it is small, every 256th time once it is
    /// large (a check costs O(n); 65,530 VMAs are allowed).
    pub(in crate::mm) fn check_in_debug_builds(&mut self) {
        if !cfg!(debug_assertions) {
            return;
        }
        self.changes = self.changes.wrapping_add(1);
        if self.tree.len() <= 1024 || self.changes.is_multiple_of(256) {
            if let Err(err) = self.tree.check_invariants() {
                panic!("the VMA tree is broken: {err:?}");
            }
        }
    }

    /// The highest free range of `len` bytes below `mmap_top` (as Linux's
    /// top-down allocator); O(log n) through the tree's gap summaries.
    pub(in crate::mm) fn find_free(&self, len: u64) -> Option<u64> {
        self.tree.find_gap_top_down(MMAP_MIN, self.mmap_top, len)
    }

    /// Where a mapping of `len` bytes goes without MAP_FIXED: at the page of
    /// `hint` if that range is free (and not below MMAP_MIN), else the
    /// highest free range (Linux's get_unmapped_area).
    pub(in crate::mm) fn unmapped_area(&self, hint: u64, len: u64) -> Option<u64> {
        let hint = crate::mm::pages::round_down(hint);
        let fits = hint >= MMAP_MIN && crate::mm::pages::user_end(hint, len).is_some();
        if fits && !self.overlaps(hint, hint + len) {
            Some(hint)
        } else {
            self.find_free(len)
        }
    }
}

impl MmapWriteGuard<'_> {
    /// A new VMA, write-locked until this guard is dropped.
    pub(in crate::mm) fn new_vma(&self, start: u64, end: u64, prot: Prot, backing: Backing) -> Arc<Vma> {
        Arc::new(Vma { start, end, prot, backing, lock: self.new_lock(), around: Default::default() })
    }

    /// Takes the VMA starting at `start` out of the tree: write-locked, then
    /// detached.
    fn take(&mut self, start: u64) -> Option<Arc<Vma>> {
        let vma = self.tree.get(start)?.clone();
        self.start_write(&vma);
        self.tree.remove(start);
        self.dirty = true;
        self.detach(&vma);
        Some(vma)
    }

    fn put(&mut self, vma: Arc<Vma>) {
        self.tree.insert(vma);
        self.dirty = true;
    }

    /// Splits the VMA that straddles `at`, if any, into two new ones.
    pub(in crate::mm) fn split_at(&mut self, at: u64) {
        let Some(vma) = self.find(at).filter(|vma| vma.start < at).cloned() else { return };
        let old = self.take(vma.start).expect("found just now");
        let front = Arc::new(old.piece(old.start, at, old.prot, self.new_lock()));
        let back = Arc::new(old.piece(at, old.end, old.prot, self.new_lock()));
        self.put(front);
        self.put(back);
    }

    /// Removes and returns the VMAs (cut to size) inside [start, end); they
    /// are detached, and were write-locked first.
    pub(in crate::mm) fn remove_range(&mut self, start: u64, end: u64) -> Vec<Arc<Vma>> {
        self.split_at(start);
        self.split_at(end);
        let starts: Vec<u64> = self.range(start, end).map(|vma| vma.start).collect();
        starts.into_iter().filter_map(|at| self.take(at)).collect()
    }

    /// Inserts `vma` (made by `new_vma`; nothing overlaps it) and merges it
    /// with alike neighbours.
    pub(in crate::mm) fn insert(&mut self, vma: Arc<Vma>) {
        let (start, end) = (vma.start, vma.end);
        self.put(vma);
        self.merge_at(start);
        self.merge_at(end);
    }

    /// Grows the VMA starting at `start` to end at `end` (the range after it
    /// is free): a new VMA replaces it, merged with the next one if alike.
    pub(in crate::mm) fn extend(&mut self, start: u64, end: u64) {
        let Some(old) = self.take(start) else { return };
        debug_assert!(old.end <= end && !self.overlaps(old.end, end));
        let grown = self.new_vma(old.start, end, old.prot, old.backing.clone());
        grown.around.inherit(&old.around);
        self.insert(grown);
    }

    /// Gives the VMA starting at `start` the protection `prot` (as a new VMA);
    /// returns its end and whether the protection changed.
    pub(in crate::mm) fn set_prot(&mut self, start: u64, prot: Prot) -> Option<(u64, bool)> {
        let old = self.tree.get(start)?.clone();
        if old.prot == prot {
            return Some((old.end, false));
        }
        let old = self.take(start).expect("found just now");
        let new = Arc::new(old.piece(old.start, old.end, prot, self.new_lock()));
        self.put(new);
        Some((old.end, true))
    }

    /// Applies the fault-around hint `advice` to the VMA starting at `start`
    /// (as a new VMA, if its hints change); returns its end.
    pub(in crate::mm) fn set_hints(&mut self, start: u64, advice: Advice) -> Option<u64> {
        let old = self.tree.get(start)?.clone();
        let hints = old.around.hints_after(advice);
        if hints == old.around.hints() {
            return Some(old.end);
        }
        let old = self.take(start).expect("found just now");
        let new = Arc::new(old.piece(old.start, old.end, old.prot, self.new_lock()));
        new.around.set_hints(hints);
        self.put(new);
        Some(old.end)
    }

    /// Merges the VMAs that meet at `addr` if they are alike: both neighbours
    /// are write-locked and replaced by one new VMA.
    pub(in crate::mm) fn merge_at(&mut self, addr: u64) {
        let Some(prev) = self.prev(addr).filter(|prev| prev.end == addr) else { return };
        let Some(next) = self.tree.get(addr) else { return };
        if !prev.can_merge_with(next) {
            return;
        }
        let prev = self.take(prev.start).expect("found just now");
        let next = self.take(addr).expect("found just now");
        let merged = self.new_vma(prev.start, next.end, prev.prot, prev.backing.clone());
        merged.around.inherit(&prev.around);
        self.put(merged);
    }
}
