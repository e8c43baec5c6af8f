//! The kernel heap: `linked_list_allocator` over its own virtual range
//! (`layout::KERNEL_HEAP_START`), mapped at boot and grown on demand.
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
use crate::sync::SpinLock;

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
}

// SAFETY: `Heap` holds raw pointers into the heap range, which belongs to the
// heap alone; all access is serialised by the `SpinLock` around it.
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
            let frame = Frame::alloc().map_err(|_| MapError::OutOfMemory)?;
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
}

pub struct KernelHeap {
    state: SpinLock<HeapState>,
}

#[global_allocator]
static HEAP: KernelHeap =
    KernelHeap { state: SpinLock::new(HeapState { heap: Heap::empty(), mapped_end: KERNEL_HEAP_START }) };

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
    HeapStats { size: state.heap.size(), used: state.heap.used() }
}

// SAFETY: `alloc` returns blocks from `Heap::allocate_first_fit`, which are
// disjoint, inside mapped heap memory and fit `layout`; `dealloc` hands back
// exactly such blocks. All heap state is behind the lock.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut state = self.state.lock();
        loop {
            if let Ok(block) = state.heap.allocate_first_fit(layout) {
                return block.as_ptr();
            }
            if let Err(err) = state.grow_for(layout) {
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
                return core::ptr::null_mut();
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
        // SAFETY: the caller passes a block this allocator returned for `layout`.
        unsafe { self.state.lock().heap.deallocate(block, layout) };
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
        // `linked_list_allocator` keeps a free block's size and next pointer
        // in its first two words; everything after them must be poison.
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
    fn freed_memory_is_reused() {
        let before = stats().used;
        let first = Box::new([7u8; 512]);
        let addr = first.as_ptr() as usize;
        drop(first);
        assert_eq!(stats().used, before);
        let second = Box::new([9u8; 512]);
        assert_eq!(second.as_ptr() as usize, addr, "first fit hands the same block out again");
    }
}
