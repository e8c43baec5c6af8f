//! The kernel heap: `linked_list_allocator` over its own virtual range
//! (`layout::KERNEL_HEAP_START`), mapped at boot and grown on demand, with
//! free lists of small blocks in front of it (`SizeClasses`).
//!
//! Growing maps fresh frames at the top of the heap while the heap lock is
//! held, so the heap lock comes before the frame allocator lock (see `sync`).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use linked_list_allocator::Heap;
use x86_64::structures::paging::{Page, PageTableFlags};
use x86_64::VirtAddr;

use super::frame::{self, Frame, FRAME_SIZE};
use super::layout::{KERNEL_HEAP_MAX, KERNEL_HEAP_START};
use super::paging::{kernel_page_table, MapError};
use crate::sync::{Level, SpinLock};

const INITIAL_SIZE: u64 = 4 << 20;
/// Growth happens in steps of at least this much, to keep growth rare.
const GROWTH_STEP: u64 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes mapped for the heap.
    pub size: usize,
    /// Bytes handed out.
    pub used: usize,
}

struct HeapState {
    heap: Heap,
    /// End of the mapped part of the heap range.
    mapped_end: u64,
    small: SizeClasses,
}

/// Blocks of at most `MAX_SMALL` bytes come from one free list per power-of-two
/// size: O(1) to take and to give back. `linked_list_allocator`'s first fit
/// walks its list of holes, and a kernel that frees through RCU (a grace
/// period later, interleaved with new allocations) leaves thousands of them:
/// 65,000 mprotect calls spent minutes in it. Lists are refilled by carving a
/// `SLAB` from the heap; their blocks never go back to it (a workload that
/// once had many small objects keeps their memory for later ones).
struct SizeClasses {
    /// Head of each class's list of free blocks (the first word of a free
    /// block points at the next one).
    free: [*mut u8; CLASSES],
    /// Bytes on the free lists (not in use, though taken from the heap).
    free_bytes: usize,
}

const MIN_SMALL: usize = 16;
const MAX_SMALL: usize = 2048;
const CLASSES: usize = (MAX_SMALL / MIN_SMALL).trailing_zeros() as usize + 1;
const SLAB: usize = 16 * 1024;

impl SizeClasses {
    const fn new() -> Self {
        SizeClasses { free: [core::ptr::null_mut(); CLASSES], free_bytes: 0 }
    }

    /// The class of `layout`, if it is small: blocks of a class are aligned
    /// to their size (slabs are page-aligned), so the size covers the alignment.
    fn class_of(layout: Layout) -> Option<usize> {
        let size = layout.size().max(layout.align()).max(MIN_SMALL).next_power_of_two();
        (size <= MAX_SMALL).then(|| (size / MIN_SMALL).trailing_zeros() as usize)
    }

    fn block_size(class: usize) -> usize {
        MIN_SMALL << class
    }

    fn pop(&mut self, class: usize) -> Option<*mut u8> {
        let block = self.free[class];
        if block.is_null() {
            return None;
        }
        // SAFETY: `block` heads this class's list: a free block of ours, at
        // least 16 bytes and aligned to its size, whose first word links on.
        self.free[class] = unsafe { block.cast::<*mut u8>().read() };
        self.free_bytes -= Self::block_size(class);
        Some(block)
    }

    /// # Safety
    /// `block` is a block of `class` that nobody uses any more.
    unsafe fn push(&mut self, class: usize, block: *mut u8) {
        // SAFETY: the caller gives up the block, which has room for a word
        // and is aligned to at least 16 bytes.
        unsafe { block.cast::<*mut u8>().write(self.free[class]) };
        self.free[class] = block;
        self.free_bytes += Self::block_size(class);
    }
}

// SAFETY: `Heap` and the free lists hold raw pointers into the heap range,
// which belongs to the heap alone; all access is serialised by the `SpinLock`
// around it.
unsafe impl Send for HeapState {}

impl HeapState {
    /// Maps `bytes` more (page-rounded) at the top of the heap.
    fn map_more(&mut self, bytes: u64) -> Result<u64, MapError> {
        let bytes = bytes.next_multiple_of(FRAME_SIZE);
        if self.mapped_end + bytes > KERNEL_HEAP_START + KERNEL_HEAP_MAX {
            return Err(MapError::OutOfMemory);
        }
        let flags = PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
        let end = self.mapped_end + bytes;
        while self.mapped_end < end {
            let page = Page::containing_address(VirtAddr::new(self.mapped_end));
            // Zeroed, though the heap needs no zeroes: a frame that once held
            // code (the bootloader's, an exited program's) keeps QEMU's
            // translations of it, and under TCG every write to such a page
            // then takes a slow path (1,500 cycles for an Arc clone and drop
            // measured, against 86) until the whole page has been overwritten.
            let frame = Frame::alloc_zeroed().map_err(|_| MapError::OutOfMemory)?;
            kernel_page_table().map(page, frame.phys(), flags)?;
            // The heap owns the frame from here on; heap pages are never unmapped.
            let _ = frame.into_raw();
            // Keep what is mapped contiguous even if a later page fails.
            self.mapped_end += FRAME_SIZE;
        }
        Ok(bytes)
    }

    fn grow_for(&mut self, layout: Layout) -> Result<(), MapError> {
        let needed = (layout.size() + layout.align()) as u64;
        let before = self.mapped_end;
        let result = self.map_more(needed.max(GROWTH_STEP));
        let grown = (self.mapped_end - before) as usize;
        if grown > 0 {
            // SAFETY: [before, mapped_end) was just mapped writable and lies
            // directly above the heap's current top.
            unsafe { self.heap.extend(grown) };
        }
        result.map(|_| ())
    }

    /// A block of `layout` from the linked-list heap, grown if need be.
    fn allocate_large(&mut self, layout: Layout) -> Result<*mut u8, MapError> {
        loop {
            if let Ok(block) = self.heap.allocate_first_fit(layout) {
                return Ok(block.as_ptr());
            }
            self.grow_for(layout)?;
        }
    }

    fn allocate(&mut self, layout: Layout) -> Result<*mut u8, MapError> {
        let Some(class) = SizeClasses::class_of(layout) else { return self.allocate_large(layout) };
        if let Some(block) = self.small.pop(class) {
            return Ok(block);
        }
        let slab = self.allocate_large(Layout::from_size_align(SLAB, 4096).expect("a valid layout"))?;
        let size = SizeClasses::block_size(class);
        for offset in (0..SLAB).step_by(size).rev() {
            // SAFETY: the slab is ours, fresh from the heap; its blocks of
            // `size` bytes are disjoint and aligned to `size`.
            unsafe { self.small.push(class, slab.add(offset)) };
        }
        Ok(self.small.pop(class).expect("just refilled"))
    }
}

pub struct KernelHeap {
    state: SpinLock<HeapState>,
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap {
    state: SpinLock::new(
        Level::Heap,
        HeapState { heap: Heap::empty(), mapped_end: KERNEL_HEAP_START, small: SizeClasses::new() },
    ),
};

pub(super) fn init() {
    let mut state = HEAP.state.lock();
    state.map_more(INITIAL_SIZE).expect("memory for the initial kernel heap");
    // SAFETY: the range was just mapped writable, is used by nothing else, and
    // the heap is initialised exactly once (mapped_end was at the start).
    unsafe { state.heap.init(KERNEL_HEAP_START as *mut u8, INITIAL_SIZE as usize) };
}

/// Frames mapped for the heap (it never gives them back).
pub fn mapped_frames() -> usize {
    ((HEAP.state.lock().mapped_end - KERNEL_HEAP_START) / FRAME_SIZE) as usize
}

pub fn stats() -> HeapStats {
    let state = HEAP.state.lock();
    HeapStats { size: state.heap.size(), used: state.heap.used() - state.small.free_bytes }
}

// SAFETY: `alloc` returns blocks from `Heap::allocate_first_fit`, or blocks
// of a size class (carved from such a block, aligned to their size), which
// are disjoint, inside mapped heap memory and fit `layout`; `dealloc` hands
// back exactly such blocks, each to where it came from (the class follows
// from the layout). All heap state is behind the lock.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut state = self.state.lock();
        match state.allocate(layout) {
            Ok(block) => block,
            Err(err) => {
                let (size, used) = (state.heap.size(), state.heap.used());
                drop(state);
                log::error!(
                    "kernel heap out of memory: {} bytes (align {}) requested, {} KiB of {} KiB used, \
                     {} frames free, growth failed: {:?}",
                    layout.size(),
                    layout.align(),
                    used / 1024,
                    size / 1024,
                    frame::stats().free,
                    err
                );
                core::ptr::null_mut()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let block = NonNull::new(ptr).expect("dealloc of a null pointer");
        if cfg!(debug_assertions) {
            // Poisoned so a use after free shows (RCU readers, stale
            // pointers). Before `deallocate`, which writes its free-list
            // header into the first bytes of the block.
            // SAFETY: the caller hands back `layout.size()` bytes at `ptr`
            // that this allocator gave out and nobody uses any more; until
            // `deallocate` they are still ours to write.
            unsafe { ptr.write_bytes(frame::POISON_BYTE, layout.size()) };
        }
        let mut state = self.state.lock();
        match SizeClasses::class_of(layout) {
            // SAFETY: the caller passes a block `alloc` returned for `layout`,
            // so one of this class, and uses it no more.
            Some(class) => unsafe { state.small.push(class, ptr) },
            // SAFETY: the caller passes a block this allocator returned for `layout`.
            None => unsafe { state.heap.deallocate(block, layout) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec::Vec;

    #[test_case]
    fn box_holds_its_value() {
        let a = Box::new(41u64);
        let b = Box::new(1u64);
        assert_eq!(*a + *b, 42);
        let range = KERNEL_HEAP_START..KERNEL_HEAP_START + KERNEL_HEAP_MAX;
        assert!(range.contains(&(&*a as *const u64 as u64)), "heap memory comes from the heap range");
    }

    #[test_case]
    fn vec_grows_and_keeps_its_contents() {
        let mut v = Vec::new();
        for i in 0..10_000u64 {
            v.push(i * 3);
        }
        assert_eq!(v.len(), 10_000);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 3));
    }

    #[test_case]
    fn large_allocation_grows_the_heap() {
        let before = stats();
        let big = alloc::vec![0xa5u8; 12 << 20];
        assert!(big.iter().all(|&b| b == 0xa5));
        assert!(stats().size >= before.size + (12 << 20) || before.size - before.used >= 12 << 20);
        drop(big);
        assert_eq!(stats().used, before.used);
    }

    #[test_case]
    fn freed_blocks_are_poisoned_in_debug_builds() {
        if !cfg!(debug_assertions) {
            return;
        }
        const SIZE: usize = 1000;
        // A free block keeps the allocator's links in its first words (one
        // for a small block, two in `linked_list_allocator`); everything after
        // them must be poison.
        const HEADER: usize = 2 * core::mem::size_of::<usize>();
        let layout = Layout::from_size_align(SIZE, 8).unwrap();
        // No tick on this CPU between the free and the reads (a tick
        // handler could allocate the block again); other CPUs are idle.
        let saved = crate::arch::disable_interrupts();
        // SAFETY: a fresh block of `SIZE` bytes for `layout`, written only
        // while it is ours, handed back once with the same layout.
        let block = unsafe {
            let block = alloc::alloc::alloc(layout);
            assert!(!block.is_null());
            block.write_bytes(0x11, SIZE);
            alloc::alloc::dealloc(block, layout);
            block
        };
        let mut seen = [0u8; SIZE - HEADER];
        for (i, byte) in seen.iter_mut().enumerate() {
            // Reading freed memory is outside what the language defines; it
            // is acceptable in this test of our own allocator because the
            // heap range stays mapped for good (heap pages are never
            // unmapped), `u8` has no invalid values, a volatile read is a
            // real load the compiler cannot reason away, and nothing relies
            // on the value but the assertion below.
            // SAFETY: `block + HEADER + i` lies in the mapped heap range
            // (inside the block just freed); see above.
            *byte = unsafe { block.add(HEADER + i).read_volatile() };
        }
        crate::arch::restore_interrupts(saved);
        let wrong = seen.iter().filter(|&&b| b != frame::POISON_BYTE).count();
        assert_eq!(wrong, 0, "{wrong} of {} freed bytes are not poison", seen.len());
    }

    #[test_case]
    fn small_blocks_are_aligned_disjoint_and_come_back() {
        let before = stats().used;
        let mut blocks: Vec<(*mut u8, Layout)> = Vec::new();
        for round in 0..300usize {
            for size in [1usize, 8, 24, 100, 512, 700, 2048] {
                let align = if round % 2 == 0 { 8 } else { size.next_power_of_two().min(64) };
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero-sized layout; the block is written only
                // within its size and freed once below, with the same layout.
                let block = unsafe { alloc::alloc::alloc(layout) };
                assert!(!block.is_null() && (block as usize).is_multiple_of(align), "{size} bytes at {block:p}");
                // SAFETY: as above.
                unsafe { block.write_bytes((blocks.len() % 251) as u8, size) };
                blocks.push((block, layout));
            }
        }
        for (i, &(block, layout)) in blocks.iter().enumerate() {
            // SAFETY: a live block of `layout.size()` bytes, written above.
            let bytes = unsafe { core::slice::from_raw_parts(block, layout.size()) };
            assert!(bytes.iter().all(|&b| b == (i % 251) as u8), "block {i} was overwritten by another");
        }
        for (block, layout) in blocks.drain(..) {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { alloc::alloc::dealloc(block, layout) };
        }
        drop(blocks);
        assert_eq!(stats().used, before, "every small block came back");
    }

    #[test_case]
    fn freed_memory_is_reused() {
        let before = stats().used;
        let first = Box::new([7u8; 512]);
        let addr = first.as_ptr() as usize;
        drop(first);
        assert_eq!(stats().used, before);
        let second = Box::new([9u8; 512]);
        assert_eq!(second.as_ptr() as usize, addr, "the free list hands the same block out again");
    }
}
