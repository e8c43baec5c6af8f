//! Kernel stacks: fixed-size slots in the kernel-stacks range, each with an
//! unmapped guard page below it, so an overflow faults instead of silently
//! running into a neighbour.

use alloc::vec::Vec;

use x86_64::structures::paging::{Page, PageTableFlags};
use x86_64::VirtAddr;

use super::frame::{Frame, FRAME_SIZE};
use super::layout::KERNEL_STACKS_START;
use super::paging::{kernel_page_table, MapError};
use crate::arch::ipi::online;
use crate::arch::percpu::PreemptGuard;
use crate::arch::tlb::{shootdown, FlushScope};
use crate::sync::{Level, SpinLock};

/// Usable stack pages per slot.
pub const STACK_PAGES: u64 = 16;
/// One guard page, then the stack.
const SLOT_SIZE: u64 = (STACK_PAGES + 1) * FRAME_SIZE;
/// Slots in the range (the range is 512 GiB; this is far below it).
const MAX_SLOTS: u64 = 1 << 20;

struct Slots {
    next: u64,
    free: Vec<u64>,
}

static SLOTS: SpinLock<Slots> = SpinLock::new(Level::KernelStacks, Slots { next: 0, free: Vec::new() });

/// An owned kernel stack; unmapped, flushed everywhere and freed on drop.
#[derive(Debug)]
pub struct KernelStack {
    slot: u64,
}

impl KernelStack {
    /// Stack frames are zeroed, as heap pages are (see `heap.rs`, `map_more`:
    /// a page that once held code is slow to write under QEMU TCG until it
    /// has been overwritten whole).
    pub fn new() -> Result<KernelStack, MapError> {
        Self::with_frames(Frame::alloc_zeroed)
    }

    /// A stack for a user thread: its frames are charged like user memory
    /// (`Frame::alloc_for_user`), so threads cannot take the kernel's reserve.
    pub fn new_for_user() -> Result<KernelStack, MapError> {
        Self::with_frames(Frame::alloc_zeroed_for_user)
    }

    fn with_frames(alloc: fn() -> Result<Frame, super::frame::FrameError>) -> Result<KernelStack, MapError> {
        let slot = {
            let mut slots = SLOTS.lock();
            match slots.free.pop() {
                Some(slot) => slot,
                None if slots.next < MAX_SLOTS => {
                    slots.next += 1;
                    slots.next - 1
                }
                None => return Err(MapError::OutOfMemory),
            }
        };
        let stack = KernelStack { slot };
        for page in stack.pages() {
            let frame = alloc().map_err(|_| MapError::OutOfMemory)?;
            kernel_page_table().map(page, frame.phys(), PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE)?;
            let _ = frame.into_raw();
        }
        Ok(stack)
    }

    fn base(&self) -> VirtAddr {
        VirtAddr::new(KERNEL_STACKS_START + self.slot * SLOT_SIZE + FRAME_SIZE)
    }

    /// The initial stack pointer (stacks grow down).
    pub fn top(&self) -> VirtAddr {
        self.base() + STACK_PAGES * FRAME_SIZE
    }

    /// The unmapped page below the stack.
    pub fn guard_page(&self) -> VirtAddr {
        self.base() - FRAME_SIZE
    }

    fn pages(&self) -> impl Iterator<Item = Page> {
        let first = Page::containing_address(self.base());
        (0..STACK_PAGES).map(move |i| first + i)
    }
}

impl Drop for KernelStack {
    fn drop(&mut self) {
        // The last reference to a thread may go anywhere (a wait queue's
        // wake-up list, a process teardown), preemptible code included; a
        // shootdown must not migrate halfway (see `arch::ipi`).
        let _pin = PreemptGuard::new();
        let mut frames = Vec::with_capacity(STACK_PAGES as usize);
        for page in self.pages() {
            if let Ok(frame) = kernel_page_table().unmap(page) {
                frames.push(frame);
            }
        }
        // Kernel mappings may be cached on every CPU: flush them all first.
        shootdown(online(), FlushScope::Range { start: self.base(), pages: STACK_PAGES as usize });
        for frame in frames {
            // SAFETY: the frame backed this stack, its mapping is gone and no
            // CPU holds a translation to it any more.
            drop(unsafe { Frame::from_raw(frame) });
        }
        SLOTS.lock().free.push(self.slot);
    }
}
